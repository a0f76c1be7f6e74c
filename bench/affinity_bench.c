/*
 * affinity_bench — cost of one affinity-cookie decision (verify the client's
 * cookie, issue its refreshed value), the per-request work of src/affinity/
 * token.c, plus the raw MAC figures behind its choice of SipHash over
 * HMAC-SHA256.
 *
 * Standalone (its own main; links only token.c and libcrypto):
 *   cc -O2 -std=c17 -D_GNU_SOURCE -Isrc bench/affinity_bench.c \
 *      src/affinity/token.c -lcrypto -o build/affinity_bench
 *   build/affinity_bench [N]          (N defaults to 1000000)
 *
 * Each decision verifies the previous iteration's token and re-issues it, so
 * the loop cannot be hoisted; one thread, one token_ctx, like a worker. Exits
 * non-zero if any verify fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "affinity/token.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ns per MAC of 26 bytes with a kept context re-initialised without its key. */
static double raw_mac_ns(const char *alg, const OSSL_PARAM *params, size_t keylen, long n)
{
    static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";
    unsigned char msg[26] = "abcdefghijklmnopqrstuvwxyz", out[64];
    size_t outl;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, alg, NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    if (!ctx || !EVP_MAC_init(ctx, key, keylen, params)) {
        EVP_MAC_CTX_free(ctx);
        return -1;
    }
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        msg[0] = (unsigned char)i;
        if (!EVP_MAC_init(ctx, NULL, 0, NULL) || !EVP_MAC_update(ctx, msg, sizeof msg) ||
            !EVP_MAC_final(ctx, out, &outl, sizeof out))
            break;
    }
    double t = (now_ns() - t0) / (double)n;
    EVP_MAC_CTX_free(ctx);
    return t;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n <= 0)
        n = 1000000;
    const unsigned now = 1700000000u, ttl = 82800u;

    struct token_keys *keys = token_keys_random();
    struct token_ctx *ctx = keys ? token_ctx_new(keys) : NULL;
    if (!ctx) {
        fprintf(stderr, "affinity_bench: cannot set up keys/context\n");
        return 1;
    }
    uint64_t origin = token_origin_key(keys, "app", "s1");
    char text[TOKEN_TEXT_MAX + 1];
    struct token tok;
    token_issue(ctx, origin, NULL, now, text);

    /* Warm-up, then the decision loop. */
    for (long i = 0; i < n / 10; i++)
        if (token_verify(ctx, text, TOKEN_TEXT_MAX, now, ttl, 0, &tok) == TOKEN_VALID)
            token_issue(ctx, origin, &tok, now, text);
    long bad = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (token_verify(ctx, text, TOKEN_TEXT_MAX, now, ttl, 0, &tok) != TOKEN_VALID) {
            bad++;
            continue;
        }
        token_issue(ctx, origin, &tok, now, text);
    }
    double decision = (now_ns() - t0) / (double)n;

    t0 = now_ns();
    for (long i = 0; i < n; i++)
        bad += token_verify(ctx, text, TOKEN_TEXT_MAX, now, ttl, 0, &tok) != TOKEN_VALID;
    double verify = (now_ns() - t0) / (double)n;

    t0 = now_ns();
    for (long i = 0; i < n; i++)
        token_issue(ctx, origin, NULL, now, text); /* fresh sessions: includes the random pool */
    double issue = (now_ns() - t0) / (double)n;

    char junk[5000];
    memset(junk, 'A', sizeof junk);
    t0 = now_ns();
    for (long i = 0; i < n; i++)
        bad += token_verify(ctx, junk, sizeof junk, now, ttl, 0, NULL) != TOKEN_MALFORMED;
    double oversized = (now_ns() - t0) / (double)n;

    size_t size16 = 16;
    OSSL_PARAM sip[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size16),
                        OSSL_PARAM_construct_end()};
    OSSL_PARAM hmac[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    double sip_ns = raw_mac_ns("SIPHASH", sip, 16, n);
    double hmac_ns = raw_mac_ns("HMAC", hmac, 32, n);

    printf("affinity decision (verify + issue): %.0f ns\n", decision);
    printf("  verify: %.0f ns, issue (new session): %.0f ns, reject 5 kB value: %.1f ns\n",
           verify, issue, oversized);
    printf("  raw MAC, 26 bytes, kept context: SipHash-2-4-128 %.0f ns, HMAC-SHA256 %.0f ns\n",
           sip_ns, hmac_ns);
    token_ctx_free(ctx);
    token_keys_free(keys);
    if (bad) {
        fprintf(stderr, "affinity_bench: %ld unexpected verdicts\n", bad);
        return 1;
    }
    return 0;
}
