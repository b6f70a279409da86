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

#endif /* ARCANA_H */
