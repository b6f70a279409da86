/*
 * arcana.h — Arcana guest SDK for C (freestanding wasm32, no libc needed).
 *
 * The raw Extism kernel ABI (module "extism:host/env") plus the Arcana host
 * function convention (module "extism:host/user"): every host function is
 * `(i64 offset of a JSON request block) -> i64 offset of a JSON reply block`.
 * arcana_contract.h (generated from the kernel's tables, included below)
 * declares every host function as arcana_host_<name> and every error code as
 * ARCANA_ERR_<CODE>.
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

#endif /* ARCANA_H */
