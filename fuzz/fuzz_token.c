/*
 * fuzz_token — libFuzzer target: limpet's affinity cookie token
 * (src/affinity/token.c).
 *
 * Every input is used three ways:
 *  1. as a secret file (token_keys_parse): no crash, a refusal has a message,
 *     a success 1..TOKEN_KEYS_MAX keys;
 *  2. as a cookie value (token_verify, token_inspect): a value that is not
 *     exactly TOKEN_TEXT_MAX long is malformed; inspect and verify agree;
 *  3. as the fields of a token that is issued, then verified (VALID, fields
 *     as issued, also by a key set where the signing key has been rotated to
 *     second place), then changed in one character chosen by the input: the
 *     changed value must never verify.
 */
#include <stdbool.h>

#include "affinity/token.h"
#include "fuzz_common.h"

static const char KEYS_A[] = "fuzz-signing-key-0123456789abcdef\nfuzz-older-key-0123456789abcdef\n";
static const char KEYS_B[] = "fuzz-newer-key-0123456789abcdefgh\nfuzz-signing-key-0123456789abcdef\n";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static struct token_keys *keys_a, *keys_b;
static struct token_ctx *ctx_a, *ctx_b;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    FUZZ_CHECK(token_keys_parse("a", KEYS_A, sizeof(KEYS_A) - 1, &keys_a, err, sizeof err) == 0);
    FUZZ_CHECK(token_keys_parse("b", KEYS_B, sizeof(KEYS_B) - 1, &keys_b, err, sizeof err) == 0);
    ctx_a = token_ctx_new(keys_a);
    ctx_b = token_ctx_new(keys_b);
    FUZZ_CHECK(ctx_a && ctx_b);
    return 0;
}

static uint64_t take(const uint8_t *data, size_t size, size_t *pos, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++, (*pos)++)
        v = (v << 8) | (*pos < size ? data[*pos] : 0);
    return v;
}

static bool verified(enum token_verdict v)
{
    return v == TOKEN_VALID || v == TOKEN_EXPIRED || v == TOKEN_TOO_OLD || v == TOKEN_FUTURE;
}

static void as_key_file(const uint8_t *data, size_t size)
{
    struct token_keys *k = NULL;
    char err[256] = "";
    int r = token_keys_parse("fuzz", (const char *)data, size, &k, err, sizeof err);
    if (r == 0) {
        FUZZ_CHECK(k != NULL);
        unsigned n = token_keys_count(k);
        FUZZ_CHECK(n >= 1 && n <= TOKEN_KEYS_MAX);
        token_keys_free(k);
    } else {
        FUZZ_CHECK(r < 0 && k == NULL && err[0] != '\0');
    }
}

static void as_cookie_value(const uint8_t *data, size_t size)
{
    char *v = fuzz_dup(data, size);
    struct token tok;
    uint32_t now = 1700000000u;
    enum token_verdict r = token_verify(ctx_a, v, size, now, 3600, 86400, &tok);
    FUZZ_CHECK(r >= TOKEN_VALID && r <= TOKEN_FUTURE);
    FUZZ_CHECK(token_verdict_name(r) != NULL);
    if (size != TOKEN_TEXT_MAX)
        FUZZ_CHECK(r == TOKEN_MALFORMED);
    struct token_inspection ins;
    FUZZ_CHECK(token_inspect(keys_a, v, size, now, 3600, 86400, &ins) == 0);
    FUZZ_CHECK(ins.verdict == r);
    FUZZ_CHECK(ins.authentic == verified(r));
    char line[512];
    FUZZ_CHECK(token_inspection_format(&ins, line, sizeof line) > 0);
    free(v);
}

static void issue_and_tamper(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    uint64_t origin_key = take(data, size, &pos, 8);
    uint32_t now = (uint32_t)take(data, size, &pos, 4);
    bool with_previous = take(data, size, &pos, 1) & 1;
    struct token prev = {0};
    prev.session_id = take(data, size, &pos, 8);
    prev.session_start = (uint32_t)take(data, size, &pos, 4);
    unsigned where = (unsigned)take(data, size, &pos, 1) % TOKEN_TEXT_MAX;
    unsigned delta = 1 + (unsigned)take(data, size, &pos, 1) % 63;

    char text[TOKEN_TEXT_MAX + 1];
    size_t n = token_issue(ctx_a, origin_key, with_previous ? &prev : NULL, now, text);
    FUZZ_CHECK(n == TOKEN_TEXT_MAX && strlen(text) == TOKEN_TEXT_MAX);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(strchr(B64, text[i]) != NULL);

    struct token tok;
    FUZZ_CHECK(token_verify(ctx_a, text, n, now, 0, 0, &tok) == TOKEN_VALID);
    FUZZ_CHECK(tok.origin_key == origin_key && tok.issued == now && tok.key_index == 0);
    FUZZ_CHECK(tok.session_start <= now);
    if (with_previous) {
        FUZZ_CHECK(tok.session_id == prev.session_id);
        FUZZ_CHECK(tok.session_start == (prev.session_start < now ? prev.session_start : now));
    } else {
        FUZZ_CHECK(tok.session_start == now);
    }
    FUZZ_CHECK(!token_needs_refresh(&tok, now, 0));

    /* after a rotation the old signing key still verifies, as key 1 */
    struct token tok_b;
    FUZZ_CHECK(token_verify(ctx_b, text, n, now, 0, 0, &tok_b) == TOKEN_VALID);
    FUZZ_CHECK(tok_b.key_index == 1 && tok_b.origin_key == origin_key);

    /* one character changed: never verifies */
    const char *at = strchr(B64, text[where]);
    text[where] = B64[((size_t)(at - B64) + delta) % 64];
    FUZZ_CHECK(!verified(token_verify(ctx_a, text, n, now, 0, 0, &tok)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_key_file(data, size);
    as_cookie_value(data, size);
    issue_and_tamper(data, size);
    return 0;
}
