/*
 * arcana.h — Arcana guest SDK for C (freestanding wasm32, no libc needed).
 *
 * The raw Extism kernel ABI (module "extism:host/env") plus the Arcana host
 * function convention (module "extism:host/user"): every host function is
 * `(i64 offset of a JSON request block) -> i64 offset of a JSON reply block`.
 * arcana_contract.h (generated from the kernel's tables, included below)
 * declares every host function as arcana_host_<name> and every error code as
 * ARCANA_ERR_<CODE>. Below: input and output helpers, a typed binding of every
 * host function (arcana_log, arcana_auth_*, arcana_store_*, arcana_kv_*,
 * arcana_queue_*, arcana_event_emit, arcana_http_fetch; their return convention
 * is stated before arcana_log), envelope readers (arcana_param,
 * arcana_body_json, ...) and a router (arcana_route) for one export serving
 * several [[route]]s.
 *
 *   #include "arcana.h"
 *
 *   ARCANA_EXPORT(ping) int32_t ping(void) {
 *       arcana_host_call_str(arcana_host_log, "{\"level\":\"info\",\"message\":\"ping\"}");
 *       arcana_output_str("{\"status\":200,\"body\":{\"pong\":true}}");
 *       return 0;
 *   }
 *
 * Build: python -m ziglang cc --target=wasm32-freestanding -Os -nostdlib \
 *          -Wl,--no-entry -I sdk/c -o plugin.wasm src/main.c
 * (`arcana plugin build` does this and embeds plugin.toml.)
 */
#ifndef ARCANA_H
#define ARCANA_H

#include <stdint.h>
#include <stddef.h>

typedef uint64_t ArcanaOffset; /* offset of a block in Extism kernel memory */

#define ARCANA_IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define ARCANA_ENV(name) ARCANA_IMPORT("extism:host/env", name)
/* Mark a handler: ARCANA_EXPORT(hello) int32_t hello(void) { ... } */
#define ARCANA_EXPORT(name) __attribute__((export_name(#name)))
/* Declare host function `name` as `uint64_t arcana_host_<name>(uint64_t)`
 * (arcana_contract.h already declares every host function of the kernel;
 * declaring one again is harmless). */
#define ARCANA_HOST_FN(name) \
    ARCANA_IMPORT(ARCANA_HOST_NAMESPACE, #name) extern ArcanaOffset arcana_host_##name(ArcanaOffset request);

typedef ArcanaOffset (*ArcanaHostFn)(ArcanaOffset request);

#include "arcana_contract.h"

/* The reply arcana_host_call gives when the host answers with no reply at all
 * (offset 0: it could not allocate one, or its dispatch failed). */
#define ARCANA_HOST_CALL_FAILED "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"host call failed\"}}"

/* ---- extism:host/env ---------------------------------------------------- */
ARCANA_ENV("input_length") extern uint64_t extism_input_length(void);
ARCANA_ENV("input_load_u8") extern uint8_t extism_input_load_u8(uint64_t offset);
ARCANA_ENV("input_load_u64") extern uint64_t extism_input_load_u64(uint64_t offset);
ARCANA_ENV("alloc") extern ArcanaOffset extism_alloc(uint64_t size);
ARCANA_ENV("free") extern void extism_free(ArcanaOffset block);
ARCANA_ENV("length") extern uint64_t extism_length(ArcanaOffset block);
ARCANA_ENV("load_u8") extern uint8_t extism_load_u8(ArcanaOffset offset);
ARCANA_ENV("load_u64") extern uint64_t extism_load_u64(ArcanaOffset offset);
ARCANA_ENV("store_u8") extern void extism_store_u8(ArcanaOffset offset, uint8_t value);
ARCANA_ENV("store_u64") extern void extism_store_u64(ArcanaOffset offset, uint64_t value);
ARCANA_ENV("output_set") extern void extism_output_set(ArcanaOffset block, uint64_t length);
ARCANA_ENV("error_set") extern void extism_error_set(ArcanaOffset block);

/* ---- helpers ------------------------------------------------------------ */

static inline size_t arcana_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Copy `len` bytes into a new kernel block; returns its offset. */
static inline ArcanaOffset arcana_store(const void *data, uint64_t len) {
    const uint8_t *p = (const uint8_t *)data;
    ArcanaOffset block = extism_alloc(len);
    for (uint64_t i = 0; i < len; i++) extism_store_u8(block + i, p[i]);
    return block;
}

/* Copy up to `cap` bytes of kernel block `block` into `buf`; returns its full length. */
static inline uint64_t arcana_load(ArcanaOffset block, void *buf, uint64_t cap) {
    uint64_t len = extism_length(block);
    uint8_t *p = (uint8_t *)buf;
    for (uint64_t i = 0; i < len && i < cap; i++) p[i] = extism_load_u8(block + i);
    return len;
}

/* Copy up to `cap` input bytes into `buf`; returns the full input length. */
static inline uint64_t arcana_input(void *buf, uint64_t cap) {
    uint64_t len = extism_input_length();
    uint8_t *p = (uint8_t *)buf;
    for (uint64_t i = 0; i < len && i < cap; i++) p[i] = extism_input_load_u8(i);
    return len;
}

/* The whole input copied into a new kernel block (no guest memory used). */
static inline ArcanaOffset arcana_input_block(uint64_t *len_out) {
    uint64_t len = extism_input_length();
    ArcanaOffset block = extism_alloc(len);
    uint64_t i = 0;
    for (; i + 8 <= len; i += 8) extism_store_u64(block + i, extism_input_load_u64(i));
    for (; i < len; i++) extism_store_u8(block + i, extism_input_load_u8(i));
    *len_out = len;
    return block;
}

/* Set the call's output bytes. */
static inline void arcana_output(const void *data, uint64_t len) {
    extism_output_set(arcana_store(data, len), len);
}

static inline void arcana_output_str(const char *s) { arcana_output(s, arcana_strlen(s)); }

/* Output {"error":{"code":code,"message":message}}; `code` is one of
 * ARCANA_ERR_*. `message` must not need JSON escaping; returns 0 so
 * handlers can `return arcana_fail(ARCANA_ERR_NOT_FOUND, "...")`. */
static inline int32_t arcana_fail(const char *code, const char *message) {
    const char *parts[5] = {"{\"error\":{\"code\":\"", code, "\",\"message\":\"", message, "\"}}"};
    uint64_t total = 0, at = 0;
    for (int i = 0; i < 5; i++) total += arcana_strlen(parts[i]);
    ArcanaOffset block = extism_alloc(total);
    for (int i = 0; i < 5; i++)
        for (const char *c = parts[i]; *c; c++) extism_store_u8(block + at++, (uint8_t)*c);
    extism_output_set(block, total);
    return 0;
}

/* Call a host function with a JSON request; copies up to `cap` reply bytes
 * into `reply` and returns the reply's full length. A failure is the reply
 * {"error":{"code","message"}}; when the host gives no reply at all, the
 * reply is ARCANA_HOST_CALL_FAILED (INTERNAL), never an empty one. */
static inline uint64_t arcana_host_call(ArcanaHostFn fn, const char *request, uint64_t request_len,
                                        char *reply, uint64_t cap) {
    ArcanaOffset req = arcana_store(request, request_len);
    ArcanaOffset rep = fn(req);
    extism_free(req);
    if (rep == 0) {
        static const char failed[] = ARCANA_HOST_CALL_FAILED;
        for (uint64_t i = 0; i < sizeof failed - 1 && i < cap; i++) reply[i] = failed[i];
        return sizeof failed - 1;
    }
    uint64_t len = arcana_load(rep, reply, cap);
    extism_free(rep);
    return len;
}

/* Call a host function with a NUL-terminated JSON request, ignoring the reply. */
static inline void arcana_host_call_str(ArcanaHostFn fn, const char *request) {
    char ignored[1];
    (void)arcana_host_call(fn, request, arcana_strlen(request), ignored, 0);
}

/* ---- typed helpers: queue and events ----------------------------------- */

/* One piece of a JSON request: `text` verbatim (ARCANA_RAW) or as a quoted,
 * escaped JSON string (ARCANA_STR). A NULL text is written as `null`. */
typedef enum { ARCANA_RAW = 0, ARCANA_STR = 1 } ArcanaPartKind;
typedef struct {
    const char *text;
    ArcanaPartKind kind;
} ArcanaPart;

/* Write `part` at `block + at` (when block != 0); returns the bytes it takes. */
static inline uint64_t arcana_put_part(ArcanaOffset block, uint64_t at, ArcanaPart part) {
    static const char hex[] = "0123456789abcdef";
    if (part.text == 0) part = (ArcanaPart){"null", ARCANA_RAW};
    uint64_t n = 0;
    if (part.kind == ARCANA_STR && block) extism_store_u8(block + at + n, '"');
    if (part.kind == ARCANA_STR) n++;
    for (const unsigned char *c = (const unsigned char *)part.text; *c; c++) {
        char esc[6] = {*c};
        uint64_t len = 1;
        if (part.kind == ARCANA_STR && (*c == '"' || *c == '\\')) {
            esc[0] = '\\', esc[1] = (char)*c, len = 2;
        } else if (part.kind == ARCANA_STR && *c < 0x20) {
            esc[0] = '\\', esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[*c >> 4], esc[5] = hex[*c & 15];
            len = 6;
        }
        for (uint64_t i = 0; i < len; i++, n++)
            if (block) extism_store_u8(block + at + n, (uint8_t)esc[i]);
    }
    if (part.kind == ARCANA_STR && block) extism_store_u8(block + at + n, '"');
    if (part.kind == ARCANA_STR) n++;
    return n;
}

/* Call `fn` with the request made of `parts` joined (no copy in guest memory). */
static inline uint64_t arcana_host_call_parts(ArcanaHostFn fn, const ArcanaPart *parts, int n_parts,
                                              char *reply, uint64_t cap) {
    uint64_t total = 0;
    for (int i = 0; i < n_parts; i++) total += arcana_put_part(0, total, parts[i]);
    ArcanaOffset req = extism_alloc(total);
    for (uint64_t i = 0, at = 0; i < (uint64_t)n_parts; i++) at += arcana_put_part(req, at, parts[i]);
    ArcanaOffset rep = fn(req);
    extism_free(req);
    if (rep == 0) {
        static const char failed[] = ARCANA_HOST_CALL_FAILED;
        for (uint64_t i = 0; i < sizeof failed - 1 && i < cap; i++) reply[i] = failed[i];
        return sizeof failed - 1;
    }
    uint64_t len = arcana_load(rep, reply, cap);
    extism_free(rep);
    return len;
}

/* Set the output to `parts` joined (strings escaped as in arcana_host_call_parts); returns 0:
 *   ArcanaPart out[] = {{"{\"status\":200,\"body\":{\"id\":", ARCANA_RAW}, {id, ARCANA_STR}, {"}}", ARCANA_RAW}};
 *   return arcana_output_parts(out, 3); */
static inline int32_t arcana_output_parts(const ArcanaPart *parts, int n_parts) {
    uint64_t total = 0;
    for (int i = 0; i < n_parts; i++) total += arcana_put_part(0, total, parts[i]);
    ArcanaOffset block = extism_alloc(total);
    for (uint64_t i = 0, at = 0; i < (uint64_t)n_parts; i++) at += arcana_put_part(block, at, parts[i]);
    extism_output_set(block, total);
    return 0;
}

/* `value` in decimal into `buf` (at least 21 bytes); returns buf. */
static inline const char *arcana_i64_text(int64_t value, char *buf) {
    char digits[20];
    int n = 0;
    uint64_t v = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do digits[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    int at = 0;
    if (value < 0) buf[at++] = '-';
    while (n) buf[at++] = digits[--n];
    buf[at] = 0;
    return buf;
}

/* queue_enqueue (grant `queue`): a job of `type` (one of the plugin's [[job]]
 * types) with `payload_json` (JSON text, NULL for null). `priority` NULL is
 * "normal"; `max_retries` < 0 and `dedupe_key` NULL leave the host's defaults.
 * Reply {"id", "created"} or {"error": ...}. */
static inline uint64_t arcana_queue_enqueue(const char *type, const char *payload_json, const char *priority,
                                            uint64_t delay_ms, int32_t max_retries, const char *dedupe_key,
                                            char *reply, uint64_t cap) {
    char delay[21], retries[21];
    const ArcanaPart parts[] = {
        {"{\"type\":", ARCANA_RAW},       {type, ARCANA_STR},
        {",\"payload\":", ARCANA_RAW},    {payload_json, ARCANA_RAW},
        {",\"priority\":", ARCANA_RAW},   {priority ? priority : "normal", ARCANA_STR},
        {",\"delay_ms\":", ARCANA_RAW},   {arcana_i64_text((int64_t)delay_ms, delay), ARCANA_RAW},
        {",\"max_retries\":", ARCANA_RAW}, {max_retries < 0 ? 0 : arcana_i64_text(max_retries, retries), ARCANA_RAW},
        {",\"dedupe_key\":", ARCANA_RAW}, {dedupe_key, ARCANA_STR},
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_queue_enqueue, parts, sizeof parts / sizeof parts[0], reply, cap);
}

/* queue_status (grant `queue`) of a job this plugin enqueued: reply {"job": {...}} or NOT_FOUND. */
static inline uint64_t arcana_queue_status(const char *id, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {{"{\"id\":", ARCANA_RAW}, {id, ARCANA_STR}, {"}", ARCANA_RAW}};
    return arcana_host_call_parts(arcana_host_queue_status, parts, 3, reply, cap);
}

/* event_emit (grant `events`): `topic` (one the manifest's events patterns
 * match) with `payload_json` (a JSON object as text, NULL for {}). Reply {} or {"error": ...}. */
static inline uint64_t arcana_event_emit(const char *topic, const char *payload_json, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {
        {"{\"topic\":", ARCANA_RAW}, {topic, ARCANA_STR},
        {",\"payload\":", ARCANA_RAW}, {payload_json ? payload_json : "{}", ARCANA_RAW},
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_event_emit, parts, 5, reply, cap);
}

/* ---- typed helper: http ------------------------------------------------- */

/* http_fetch (grant `http`; the manifest lists the hosts: http = ["api.example.com"]):
 * `method` NULL is GET; `headers_json` a JSON object of header names to string
 * values (NULL for none); `body` text sent as UTF-8 (NULL for none);
 * `timeout_ms` 0 leaves the host's default. Reply {"status", "headers", "body"
 * (or "body_base64"), "truncated", "url"} for any status the server answered,
 * or {"error": ...}: FORBIDDEN (host not granted, address refused),
 * VALIDATION_FAILED, PAYLOAD_TOO_LARGE, PLUGIN_TIMEOUT, SERVICE_UNAVAILABLE
 * (down, or its circuit breaker is open: "retry_after" seconds), RATE_LIMITED. */
static inline uint64_t arcana_http_fetch(const char *method, const char *url, const char *headers_json,
                                         const char *body, uint32_t timeout_ms, char *reply, uint64_t cap) {
    char timeout[21];
    const ArcanaPart parts[] = {
        {"{\"method\":", ARCANA_RAW},   {method ? method : "GET", ARCANA_STR},
        {",\"url\":", ARCANA_RAW},      {url, ARCANA_STR},
        {",\"headers\":", ARCANA_RAW},  {headers_json ? headers_json : "{}", ARCANA_RAW},
        {",\"body\":", ARCANA_RAW},     {body, ARCANA_STR},
        {",\"timeout_ms\":", ARCANA_RAW}, {timeout_ms ? arcana_i64_text(timeout_ms, timeout) : 0, ARCANA_RAW},
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_http_fetch, parts, sizeof parts / sizeof parts[0], reply, cap);
}


/* ---- typed bindings: the return convention ------------------------------ */
/*
 * Every arcana_<capability>_<function> helper below (and the queue, events and
 * http ones above) builds the JSON request for you (strings JSON-escaped, JSON
 * arguments passed through as text), calls the host, copies up to `cap` bytes of
 * the host's reply into `reply` and returns the reply's FULL length (more than
 * `cap` means it was cut). The reply is the host's JSON: the documented result
 * on success, or {"error":{"code":"NOT_FOUND","message":"..."}} on failure
 * (a host that gives no reply at all gives ARCANA_HOST_CALL_FAILED). Nothing
 * traps: test the reply with arcana_reply_is_error and pass it on with
 * arcana_output (the handler then answers with the host's code):
 *
 *   char reply[1024];
 *   uint64_t n = arcana_store_get("notes", "n1", reply, sizeof reply);
 *   if (arcana_reply_is_error(reply, n)) { arcana_output(reply, n); return 0; }  // 404 for NOT_FOUND
 *
 * arcana_log alone returns nothing: logging never fails a handler.
 */

/* 1 when `reply` (as filled by a helper returning `len`; the buffer holds at
 * least 9 bytes) is the host's {"error": ...}, else 0. The host writes an error
 * reply with "error" as its only top-level member and a result never has one. */
static inline int arcana_reply_is_error(const char *reply, uint64_t len) {
    static const char key[] = "\"error\"";
    uint64_t at = 0;
    while (at < len && (reply[at] == ' ' || reply[at] == '\n' || reply[at] == '\r' || reply[at] == '\t')) at++;
    if (at >= len || reply[at] != '{') return 0;
    at++;
    while (at < len && (reply[at] == ' ' || reply[at] == '\n' || reply[at] == '\r' || reply[at] == '\t')) at++;
    for (uint64_t i = 0; i < sizeof key - 1; i++, at++)
        if (at >= len || reply[at] != key[i]) return 0;
    return 1;
}

/* An optional integer member: `,"name":<value>` when `present`, else nothing. */
#define ARCANA__OPT_INT(name, present, value, buf) \
    {(present) ? ",\"" name "\":" : "", ARCANA_RAW}, {(present) ? arcana_i64_text((value), (buf)) : "", ARCANA_RAW}

/* ---- typed helper: log -------------------------------------------------- */

/* log (grant `log`): `level` "debug", "info" (NULL), "warn" or "error";
 * `fields_json` a JSON object of structured fields (NULL for none). The reply
 * is ignored: logging never fails a handler. */
static inline void arcana_log_fields(const char *level, const char *message, const char *fields_json) {
    char ignored[1];
    const ArcanaPart parts[] = {
        {"{\"level\":", ARCANA_RAW},   {level ? level : "info", ARCANA_STR},
        {",\"message\":", ARCANA_RAW}, {message ? message : "", ARCANA_STR},
        {",\"fields\":", ARCANA_RAW},  {fields_json ? fields_json : "{}", ARCANA_RAW},
        {"}", ARCANA_RAW},
    };
    (void)arcana_host_call_parts(arcana_host_log, parts, sizeof parts / sizeof parts[0], ignored, 0);
}

/* log (grant `log`) without fields: arcana_log("info", "saved"). */
static inline void arcana_log(const char *level, const char *message) { arcana_log_fields(level, message, 0); }

/* ---- typed helpers: auth ------------------------------------------------ */

/* auth_hash_password (grant `auth`): reply {"hash"} (Argon2id, the kernel's parameters). */
static inline uint64_t arcana_auth_hash_password(const char *password, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {{"{\"password\":", ARCANA_RAW}, {password, ARCANA_STR}, {"}", ARCANA_RAW}};
    return arcana_host_call_parts(arcana_host_auth_hash_password, parts, 3, reply, cap);
}

/* auth_verify_password (grant `auth`): whether `password` matches `hash`; reply {"valid": true|false}. */
static inline uint64_t arcana_auth_verify_password(const char *hash, const char *password, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {
        {"{\"hash\":", ARCANA_RAW}, {hash, ARCANA_STR}, {",\"password\":", ARCANA_RAW}, {password, ARCANA_STR},
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_auth_verify_password, parts, 5, reply, cap);
}

/* auth_check_role (grant `auth`): whether the calling request's principal holds `role`; reply {"has_role"}. */
static inline uint64_t arcana_auth_check_role(const char *role, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {{"{\"role\":", ARCANA_RAW}, {role, ARCANA_STR}, {"}", ARCANA_RAW}};
    return arcana_host_call_parts(arcana_host_auth_check_role, parts, 3, reply, cap);
}

/* auth_issue_token (grant `auth.issue`): an access token for `sub` with
 * `roles_json` (a JSON array of strings, NULL for []); `ttl_s` 0 is the host's
 * default (900), at most 3600. Reply {"access_token", "expires_in"}. */
static inline uint64_t arcana_auth_issue_token(const char *sub, const char *roles_json, uint32_t ttl_s,
                                               char *reply, uint64_t cap) {
    char ttl[21];
    const ArcanaPart parts[] = {
        {"{\"sub\":", ARCANA_RAW}, {sub, ARCANA_STR},
        {",\"roles\":", ARCANA_RAW}, {roles_json ? roles_json : "[]", ARCANA_RAW},
        ARCANA__OPT_INT("ttl_s", ttl_s != 0, (int64_t)ttl_s, ttl),
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_auth_issue_token, parts, sizeof parts / sizeof parts[0], reply, cap);
}

/* ---- typed helpers: store (documents) ----------------------------------- */
/* Grant `store`. A version argument < 0 means none: any version. */

/* store_get: the document `id` of `collection`; reply {"doc"} or NOT_FOUND. */
static inline uint64_t arcana_store_get(const char *collection, const char *id, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {
        {"{\"collection\":", ARCANA_RAW}, {collection, ARCANA_STR}, {",\"id\":", ARCANA_RAW}, {id, ARCANA_STR},
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_store_get, parts, 5, reply, cap);
}

/* store_put: create or replace `doc_json` (a JSON object); `id` NULL generates
 * one; `expected_version` < 0 replaces whatever is there, 0 creates only, N
 * replaces only version N (CONFLICT otherwise). Reply {"doc"}: the stored document. */
static inline uint64_t arcana_store_put(const char *collection, const char *id, const char *doc_json,
                                        int64_t expected_version, char *reply, uint64_t cap) {
    char version[21];
    const ArcanaPart parts[] = {
        {"{\"collection\":", ARCANA_RAW}, {collection, ARCANA_STR},
        {",\"id\":", ARCANA_RAW},         {id, ARCANA_STR},
        {",\"doc\":", ARCANA_RAW},        {doc_json ? doc_json : "{}", ARCANA_RAW},
        ARCANA__OPT_INT("expected_version", expected_version >= 0, expected_version, version),
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_store_put, parts, sizeof parts / sizeof parts[0], reply, cap);
}

/* store_delete: only at `expected_version` when it is >= 0; reply {"deleted": true}, NOT_FOUND or CONFLICT. */
static inline uint64_t arcana_store_delete(const char *collection, const char *id, int64_t expected_version,
                                           char *reply, uint64_t cap) {
    char version[21];
    const ArcanaPart parts[] = {
        {"{\"collection\":", ARCANA_RAW}, {collection, ARCANA_STR}, {",\"id\":", ARCANA_RAW}, {id, ARCANA_STR},
        ARCANA__OPT_INT("expected_version", expected_version >= 0, expected_version, version),
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_store_delete, parts, sizeof parts / sizeof parts[0], reply, cap);
}

/* store_query: documents of `collection` matching `filter_json` (a JSON object
 * such as {"tags":{"$contains":"work"}}, NULL for all), sorted by `sort` (NULL:
 * created_at) in `order` ("asc" or "desc"; NULL: asc), page `page` (0: 1) of
 * `size` (0: the operator's default). Reply {"items", "total", "page", "size"}. */
static inline uint64_t arcana_store_query(const char *collection, const char *filter_json, const char *sort,
                                          const char *order, uint32_t page, uint32_t size, char *reply, uint64_t cap) {
    char page_text[21], size_text[21];
    const ArcanaPart parts[] = {
        {"{\"collection\":", ARCANA_RAW}, {collection, ARCANA_STR},
        {",\"filter\":", ARCANA_RAW},     {filter_json, ARCANA_RAW},
        {",\"sort\":", ARCANA_RAW},       {sort, ARCANA_STR},
        {",\"order\":", ARCANA_RAW},      {order, ARCANA_STR},
        ARCANA__OPT_INT("page", page != 0, (int64_t)page, page_text),
        ARCANA__OPT_INT("size", size != 0, (int64_t)size, size_text),
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_store_query, parts, sizeof parts / sizeof parts[0], reply, cap);
}

/* store_batch: `ops_json`, a JSON array of {"op": "put"|"delete", "collection",
 * "id"?, "doc"?, "expected_version"?}, applied all or none (the error names
 * ops[i]). Reply {"results": [{"doc"} | {"deleted": true}, ...]}. */
static inline uint64_t arcana_store_batch(const char *ops_json, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {{"{\"ops\":", ARCANA_RAW}, {ops_json ? ops_json : "[]", ARCANA_RAW}, {"}", ARCANA_RAW}};
    return arcana_host_call_parts(arcana_host_store_batch, parts, 3, reply, cap);
}

/* ---- typed helpers: store (key-value) ----------------------------------- */

/* kv_get (grant `store`): reply {"found": true|false, "value"} (value null when not found). */
static inline uint64_t arcana_kv_get(const char *key, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {{"{\"key\":", ARCANA_RAW}, {key, ARCANA_STR}, {"}", ARCANA_RAW}};
    return arcana_host_call_parts(arcana_host_kv_get, parts, 3, reply, cap);
}

/* kv_set (grant `store`): `key` to `value_json` (any JSON value as text);
 * `ttl_s` 0 keeps it forever, else it expires after that many seconds. Reply {}. */
static inline uint64_t arcana_kv_set(const char *key, const char *value_json, uint32_t ttl_s, char *reply, uint64_t cap) {
    char ttl[21];
    const ArcanaPart parts[] = {
        {"{\"key\":", ARCANA_RAW}, {key, ARCANA_STR},
        {",\"value\":", ARCANA_RAW}, {value_json, ARCANA_RAW},
        ARCANA__OPT_INT("ttl", ttl_s != 0, (int64_t)ttl_s, ttl),
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_kv_set, parts, sizeof parts / sizeof parts[0], reply, cap);
}

/* kv_delete (grant `store`): reply {"deleted": true|false} (whether it was there). */
static inline uint64_t arcana_kv_delete(const char *key, char *reply, uint64_t cap) {
    const ArcanaPart parts[] = {{"{\"key\":", ARCANA_RAW}, {key, ARCANA_STR}, {"}", ARCANA_RAW}};
    return arcana_host_call_parts(arcana_host_kv_delete, parts, 3, reply, cap);
}

/* kv_incr (grant `store`): add `by` to the integer at `key` (missing counts as
 * 0), atomically; reply {"value": <the new value>} (VALIDATION_FAILED on a non-integer). */
static inline uint64_t arcana_kv_incr(const char *key, int64_t by, char *reply, uint64_t cap) {
    char by_text[21];
    const ArcanaPart parts[] = {
        {"{\"key\":", ARCANA_RAW}, {key, ARCANA_STR}, {",\"by\":", ARCANA_RAW}, {arcana_i64_text(by, by_text), ARCANA_RAW},
        {"}", ARCANA_RAW},
    };
    return arcana_host_call_parts(arcana_host_kv_incr, parts, 5, reply, cap);
}

/* ---- reading the envelope ----------------------------------------------- */
/*
 * A small reader of the input envelope, straight from the Extism input (no copy
 * of the whole envelope in guest memory, no allocation): arcana_envelope_text
 * reads a top-level string member ("method", "route", "path", "kind", ...),
 * arcana_param a path parameter, arcana_query a query parameter's first value.
 * Each decodes the JSON string (escapes included) into `buf`, copying up to
 * `cap` bytes, and returns its full length in bytes, or -1 when the member is
 * absent or not a string. `buf` is not NUL-terminated: use the length.
 */

typedef struct {
    uint64_t at, len;    /* position in the input, input length */
    uint64_t word_at;    /* offset of the cached 8 bytes (UINT64_MAX: none) */
    uint64_t word;
} ArcanaScan;

static inline ArcanaScan arcana__scan_at(uint64_t at) {
    ArcanaScan s = {at, extism_input_length(), UINT64_MAX, 0};
    return s;
}

/* The input byte at `at` (8 bytes are fetched per host call), or -1 past the end. */
static inline int arcana__byte_at(ArcanaScan *s, uint64_t at) {
    if (at >= s->len) return -1;
    uint64_t base = at & ~(uint64_t)7;
    if (base + 8 > s->len) return extism_input_load_u8(at);
    if (s->word_at != base) s->word = extism_input_load_u64(base), s->word_at = base;
    return (int)((s->word >> (8 * (at - base))) & 0xff);
}

static inline int arcana__peek(ArcanaScan *s) { return arcana__byte_at(s, s->at); }

static inline void arcana__ws(ArcanaScan *s) {
    for (int c = arcana__peek(s); c == ' ' || c == '\n' || c == '\r' || c == '\t'; c = arcana__peek(s)) s->at++;
}

static inline int arcana__hex(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static inline int32_t arcana__u16(ArcanaScan *s) {
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = arcana__hex(arcana__peek(s));
        if (h < 0) return -1;
        v = v * 16 + h, s->at++;
    }
    return v;
}

/* Decode the next character of a JSON string (the scan is inside it) into
 * `out` as UTF-8; returns its byte count, 0 at the closing quote (consumed),
 * -1 on malformed input. */
static inline int arcana__char(ArcanaScan *s, uint8_t out[4]) {
    int c = arcana__peek(s);
    if (c < 0) return -1;
    s->at++;
    if (c == '"') return 0;
    if (c != '\\') return out[0] = (uint8_t)c, 1;
    c = arcana__peek(s);
    s->at++;
    switch (c) {
    case '"': case '\\': case '/': return out[0] = (uint8_t)c, 1;
    case 'b': return out[0] = '\b', 1;
    case 'f': return out[0] = '\f', 1;
    case 'n': return out[0] = '\n', 1;
    case 'r': return out[0] = '\r', 1;
    case 't': return out[0] = '\t', 1;
    case 'u': break;
    default: return -1;
    }
    int32_t cp = arcana__u16(s);
    if (cp < 0) return -1;
    if (cp >= 0xd800 && cp < 0xdc00 && arcana__peek(s) == '\\' && arcana__byte_at(s, s->at + 1) == 'u') {
        s->at += 2;
        int32_t low = arcana__u16(s);
        if (low < 0xdc00 || low > 0xdfff) return -1;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    if (cp < 0x80) return out[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return out[0] = (uint8_t)(0xc0 | cp >> 6), out[1] = (uint8_t)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12), out[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
        out[2] = (uint8_t)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18), out[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)), out[3] = (uint8_t)(0x80 | (cp & 63));
    return 4;
}

/* The scan is at a JSON string: decode it into `buf` (up to `cap` bytes; `buf`
 * may be NULL to measure) and return its full length, or -1 when malformed. */
static inline int64_t arcana__string(ArcanaScan *s, char *buf, uint64_t cap) {
    if (arcana__peek(s) != '"') return -1;
    s->at++;
    int64_t n = 0;
    uint8_t ch[4];
    for (int k; (k = arcana__char(s, ch)) != 0; n += k) {
        if (k < 0) return -1;
        for (int i = 0; i < k; i++)
            if (buf && (uint64_t)(n + i) < cap) buf[n + i] = (char)ch[i];
    }
    return n;
}

/* The scan is at a JSON string: 1 when it decodes to exactly `text` (consumed either way). */
static inline int arcana__string_is(ArcanaScan *s, const char *text) {
    if (arcana__peek(s) != '"') return 0;
    s->at++;
    int same = 1;
    uint64_t n = 0;
    uint8_t ch[4];
    for (int k; (k = arcana__char(s, ch)) != 0;) {
        if (k < 0) return 0;
        for (int i = 0; i < k; i++, n++)
            if (same && (text[n] == 0 || (uint8_t)text[n] != ch[i])) same = 0;  /* never read past text's end */
    }
    return same && text[n] == 0;
}

/* Skip the JSON value at the scan; 0 when malformed. */
static inline int arcana__skip(ArcanaScan *s) {
    arcana__ws(s);
    int c = arcana__peek(s);
    if (c == '"') return arcana__string(s, 0, 0) >= 0;
    if (c != '{' && c != '[') {  /* a number, true, false or null */
        while ((c = arcana__peek(s)) >= 0 && c != ',' && c != '}' && c != ']' && c != ' ' && c != '\n' && c != '\r' && c != '\t')
            s->at++;
        return 1;
    }
    uint64_t depth = 0;
    while ((c = arcana__peek(s)) >= 0) {
        if (c == '"') {
            if (arcana__string(s, 0, 0) < 0) return 0;
            continue;
        }
        s->at++;
        if (c == '{' || c == '[') depth++;
        if ((c == '}' || c == ']') && --depth == 0) return 1;
    }
    return 0;
}

/* The scan is at a JSON object: move it to the value of member `key`; 0 when there is none. */
static inline int arcana__member(ArcanaScan *s, const char *key) {
    arcana__ws(s);
    if (arcana__peek(s) != '{') return 0;
    s->at++;
    for (;;) {
        arcana__ws(s);
        if (arcana__peek(s) != '"') return 0;  /* '}' (the end) or malformed */
        int found = arcana__string_is(s, key);
        arcana__ws(s);
        if (arcana__peek(s) != ':') return 0;
        s->at++;
        arcana__ws(s);
        if (found) return 1;
        if (!arcana__skip(s)) return 0;
        arcana__ws(s);
        if (arcana__peek(s) != ',') return 0;
        s->at++;
    }
}

/* The string at envelope member `key`, or inside it at `sub` when `sub` is not NULL. */
static inline int64_t arcana__envelope_string(const char *key, const char *sub, char *buf, uint64_t cap) {
    ArcanaScan s = arcana__scan_at(0);
    if (!arcana__member(&s, key) || (sub && !arcana__member(&s, sub))) return -1;
    return arcana__string(&s, buf, cap);
}

/* A top-level string member of the envelope: "kind", "method", "path", "route", "request_id", ... */
static inline int64_t arcana_envelope_text(const char *key, char *buf, uint64_t cap) {
    return arcana__envelope_string(key, 0, buf, cap);
}

/* The path parameter `name` (the route template's {name}), decoded. */
static inline int64_t arcana_param(const char *name, char *buf, uint64_t cap) {
    return arcana__envelope_string("params", name, buf, cap);
}

/* The first value of query parameter `name`. */
static inline int64_t arcana_query(const char *name, char *buf, uint64_t cap) {
    ArcanaScan s = arcana__scan_at(0);
    if (!arcana__member(&s, "query") || !arcana__member(&s, name)) return -1;
    if (arcana__peek(&s) == '[') s.at++, arcana__ws(&s);
    return arcana__string(&s, buf, cap);
}

/* The string member `name` of the JSON body (an object), decoded. */
static inline int64_t arcana_body_text(const char *name, char *buf, uint64_t cap) {
    return arcana__envelope_string("body", name, buf, cap);
}

/* The JSON text of body member `name` (of the whole body when `name` is NULL),
 * as it is in the envelope (ready to pass to a helper taking JSON text); -1 when absent. */
static inline int64_t arcana_body_json(const char *name, char *buf, uint64_t cap) {
    ArcanaScan s = arcana__scan_at(0);
    if (!arcana__member(&s, "body") || (name && !arcana__member(&s, name))) return -1;
    uint64_t start = s.at;
    if (!arcana__skip(&s)) return -1;
    for (uint64_t i = start; i < s.at && i - start < cap; i++) buf[i - start] = (char)arcana__byte_at(&s, i);
    return (int64_t)(s.at - start);
}

/* ---- router: one export, several routes --------------------------------- */
/*
 * Each [[route]] of plugin.toml may name the same handler; the kernel matches
 * the path and hands over the envelope with "method" and "route" (the matched
 * path template, as written in the manifest). arcana_route calls the handler
 * of the first entry whose method and route template equal the envelope's
 * (exact strings: "/api/v1/notes/{id}", not a path). A template with no entry
 * for the method answers METHOD_NOT_ALLOWED (405) naming the methods it has,
 * a template with no entry NOT_FOUND (404):
 *
 *   static int32_t get_note(void);  static int32_t put_note(void);
 *   static const ArcanaRoute routes[] = {
 *       {"GET", "/api/v1/notes/{id}", get_note},
 *       {"PUT", "/api/v1/notes/{id}", put_note},
 *   };
 *   ARCANA_EXPORT(notes) int32_t notes(void) { return arcana_route(routes, 2); }
 *
 * A handler reads the rest of the envelope itself (arcana_param, arcana_input, ...).
 */
typedef int32_t (*ArcanaHandler)(void);
typedef struct {
    const char *method;   /* "GET", "POST", ... as in plugin.toml */
    const char *route;    /* the [[route]] path template, e.g. "/api/v1/notes/{id}" */
    ArcanaHandler handler;
} ArcanaRoute;

/* Append NUL-terminated `text` to `buf` (of `cap` bytes, kept NUL-terminated) at *at. */
static inline void arcana__append(char *buf, uint64_t cap, uint64_t *at, const char *text) {
    for (; *text && *at + 1 < cap; text++) buf[(*at)++] = *text;
    buf[*at] = 0;
}

/* Answer {"error": {"code", "message"}} with `message` JSON-escaped; returns 0. */
static inline int32_t arcana_fail_text(const char *code, const char *message) {
    const ArcanaPart parts[] = {
        {"{\"error\":{\"code\":", ARCANA_RAW}, {code, ARCANA_STR},
        {",\"message\":", ARCANA_RAW},        {message, ARCANA_STR},
        {"}}", ARCANA_RAW},
    };
    return arcana_output_parts(parts, 5);
}

/* Dispatch this call to the handler of `table` (of `n` entries) matching the
 * envelope's method and route template; see above. */
static inline int32_t arcana_route(const ArcanaRoute *table, int n) {
    ArcanaScan method = arcana__scan_at(0), route = arcana__scan_at(0);
    int has_method = arcana__member(&method, "method") && arcana__peek(&method) == '"';
    int has_route = arcana__member(&route, "route") && arcana__peek(&route) == '"';
    uint64_t method_at = method.at, route_at = route.at;
    int route_known = 0;
    for (int i = 0; i < n && has_route; i++) {
        route.at = route_at;
        if (!arcana__string_is(&route, table[i].route)) continue;
        route_known = 1;
        method.at = method_at;
        if (has_method && arcana__string_is(&method, table[i].method)) return table[i].handler();
    }
    static char message[512], text[256];
    uint64_t at = 0;
    message[0] = 0;
    int64_t len = 0;
    if (has_method) {
        method.at = method_at;
        len = arcana__string(&method, text, sizeof text - 1);
        text[len < 0 ? 0 : (uint64_t)len < sizeof text - 1 ? (uint64_t)len : sizeof text - 1] = 0;
        arcana__append(message, sizeof message, &at, text);
        arcana__append(message, sizeof message, &at, " ");
    }
    if (has_route) {
        route.at = route_at;
        len = arcana__string(&route, text, sizeof text - 1);
        text[len < 0 ? 0 : (uint64_t)len < sizeof text - 1 ? (uint64_t)len : sizeof text - 1] = 0;
    } else {
        text[0] = 0;
    }
    if (!route_known) {
        arcana__append(message, sizeof message, &at, has_route ? text : "(no route: not an http envelope)");
        arcana__append(message, sizeof message, &at, ": no handler in this plugin's router");
        return arcana_fail_text(ARCANA_ERR_NOT_FOUND, message);
    }
    arcana__append(message, sizeof message, &at, "is not allowed on ");
    arcana__append(message, sizeof message, &at, text);
    arcana__append(message, sizeof message, &at, " (allowed: ");
    for (int i = 0, listed = 0; i < n; i++) {
        route.at = route_at;
        if (!arcana__string_is(&route, table[i].route)) continue;
        if (listed++) arcana__append(message, sizeof message, &at, ", ");
        arcana__append(message, sizeof message, &at, table[i].method);
    }
    arcana__append(message, sizeof message, &at, ")");
    return arcana_fail_text(ARCANA_ERR_METHOD_NOT_ALLOWED, message);
}

#endif /* ARCANA_H */
