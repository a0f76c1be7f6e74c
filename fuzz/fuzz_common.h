/*
 * fuzz_common — helpers shared by the libFuzzer targets in fuzz/.
 *
 * Each target copies the fuzzer's input into a heap block of exactly its size
 * (so AddressSanitizer catches a read one byte past the end, which the
 * fuzzer's own buffer might hide) and checks invariants with FUZZ_CHECK, which
 * aborts: libFuzzer then reports a crash and saves the input.
 */
#ifndef LIMPET_FUZZ_COMMON_H
#define LIMPET_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* A heap copy of data[0..size) with nothing after it (malloc(0) avoided). */
static inline char *fuzz_dup(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    FUZZ_CHECK(p != NULL);
    if (size)
        memcpy(p, data, size);
    return p;
}

/* True when [p, p+n) lies within [base, base+len). */
static inline int fuzz_within(const char *base, size_t len, const char *p, size_t n)
{
    return p >= base && n <= len && (size_t)(p - base) <= len - n;
}

/* xorshift64: reproducible split points derived from the input. */
static inline uint64_t fuzz_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline uint64_t fuzz_seed(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ULL ^ size; /* FNV-1a */
    for (size_t i = 0; i < size && i < 64; i++)
        h = (h ^ data[i]) * 1099511628211ULL;
    return h;
}

#endif
