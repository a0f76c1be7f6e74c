/*
 * Unit tests for src/affinity/token.c: the affinity cookie value (SPEC §3).
 *
 * Key files are written into a fresh mkdtemp() directory per test binary.
 * Times are fixed unix seconds (T0) so expiry edges are exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "affinity/token.h"

#define T0 1700000000u

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char KEY_OLD[] = "old-secret-0123456789abcdef";
static const char KEY_NEW[] = "new-secret-fedcba9876543210";

static char tmpdir[64];

/* Writes `content` to tmpdir/name and returns the path (static buffer per call site). */
static const char *write_file(const char *name, const char *content, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    return path;
}

static struct token_keys *load_text(const char *name, const char *content)
{
    char path[256], err[256];
    struct token_keys *keys = NULL;
    int rc = token_keys_load(write_file(name, content, path, sizeof path), &keys, err, sizeof err);
    if (rc != 0)
        fail_msg("loading %s: %s", name, err);
    assert_non_null(keys);
    return keys;
}

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/limpet-token-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */

/* Keys from one seed are the same keys (an upgrade hands the seed on); another
 * seed's keys reject the cookie. */
/* Frees the three contexts and their three key sets a test compared. */
static void free_three(struct token_ctx *ca, struct token_ctx *cb, struct token_ctx *cc,
                       struct token_keys *a, struct token_keys *b, struct token_keys *c)
{
    token_ctx_free(ca);
    token_ctx_free(cb);
    token_ctx_free(cc);
    token_keys_free(a);
    token_keys_free(b);
    token_keys_free(c);
}

static void test_keys_from_a_seed(void **state)
{
    (void)state;
    uint8_t seed[TOKEN_SEED_BYTES], other[TOKEN_SEED_BYTES];
    assert_int_equal(token_random_seed(seed), 0);
    assert_int_equal(token_random_seed(other), 0);
    assert_memory_not_equal(seed, other, TOKEN_SEED_BYTES);
    struct token_keys *a = token_keys_from_seed(seed), *b = token_keys_from_seed(seed),
                      *c = token_keys_from_seed(other);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    struct token_ctx *ca = token_ctx_new(a), *cb = token_ctx_new(b), *cc = token_ctx_new(c);
    char text[TOKEN_TEXT_MAX + 1];
    assert_int_equal(token_issue(ca, token_origin_key(a, "app", "s1"), NULL, T0, text),
                     TOKEN_TEXT_MAX);
    struct token t;
    assert_int_equal(token_verify(cb, text, TOKEN_TEXT_MAX, T0, 3600, 0, &t), TOKEN_VALID);
    assert_true(t.origin_key == token_origin_key(b, "app", "s1"));
    assert_int_not_equal(token_verify(cc, text, TOKEN_TEXT_MAX, T0, 3600, 0, &t), TOKEN_VALID);
    free_three(ca, cb, cc, a, b, c);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct token_keys *keys = token_keys_random();
    assert_non_null(keys);
    assert_int_equal(token_keys_count(keys), 1);
    struct token_ctx *ctx = token_ctx_new(keys);
    assert_non_null(ctx);
    assert_ptr_equal(token_ctx_keys(ctx), keys);

    uint64_t ok = token_origin_key(keys, "app", "s1");
    char text[TOKEN_TEXT_MAX + 1];
    assert_int_equal(token_issue(ctx, ok, NULL, T0, text), TOKEN_TEXT_MAX);
    assert_int_equal(strlen(text), TOKEN_TEXT_MAX);

    struct token t;
    assert_int_equal(token_verify(ctx, text, strlen(text), T0, 3600, 0, &t), TOKEN_VALID);
    assert_int_equal(t.version, TOKEN_VERSION);
    assert_int_equal(t.key_id, token_keys_id(keys, 0));
    assert_int_equal(t.key_index, 0);
    assert_true(t.origin_key == ok);
    assert_int_equal(t.session_start, T0);
    assert_int_equal(t.issued, T0);

    /* Re-issue keeps the session, moves the issue time. */
    char text2[TOKEN_TEXT_MAX + 1];
    assert_int_equal(token_issue(ctx, ok, &t, T0 + 100, text2), TOKEN_TEXT_MAX);
    assert_string_not_equal(text, text2);
    struct token t2;
    assert_int_equal(token_verify(ctx, text2, TOKEN_TEXT_MAX, T0 + 100, 3600, 0, &t2), TOKEN_VALID);
    assert_true(t2.session_id == t.session_id);
    assert_int_equal(t2.session_start, T0);
    assert_int_equal(t2.issued, T0 + 100);

    /* Re-issue to another origin (sticky failover) keeps the session too. */
    uint64_t ok2 = token_origin_key(keys, "app", "s2");
    assert_true(ok2 != ok);
    assert_int_equal(token_issue(ctx, ok2, &t2, T0 + 200, text2), TOKEN_TEXT_MAX);
    assert_int_equal(token_verify(ctx, text2, TOKEN_TEXT_MAX, T0 + 200, 3600, 0, &t2), TOKEN_VALID);
    assert_true(t2.origin_key == ok2);
    assert_true(t2.session_id == t.session_id);

    /* A second context on the same keys verifies the first one's tokens. */
    struct token_ctx *other = token_ctx_new(keys);
    assert_int_equal(token_verify(other, text, TOKEN_TEXT_MAX, T0, 3600, 0, NULL), TOKEN_VALID);
    token_ctx_free(other);
    token_ctx_free(ctx);
    token_keys_free(keys);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_fresh_session_ids_differ(void **state)
{
    (void)state;
    enum { N = 5000 }; /* spans many refills of the random pool */
    struct token_keys *keys = token_keys_random();
    struct token_ctx *ctx = token_ctx_new(keys);
    uint64_t *ids = malloc(N * sizeof *ids);
    assert_non_null(ids);
    char text[TOKEN_TEXT_MAX + 1];
    struct token t;
    for (int i = 0; i < N; i++) {
        assert_int_equal(token_issue(ctx, 1, NULL, T0, text), TOKEN_TEXT_MAX);
        assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0, 0, 0, &t), TOKEN_VALID);
        ids[i] = t.session_id;
    }
    qsort(ids, N, sizeof *ids, cmp_u64);
    for (int i = 1; i < N; i++)
        assert_true(ids[i] != ids[i - 1]);
    free(ids);
    token_ctx_free(ctx);
    token_keys_free(keys);
}

static void test_text_is_cookie_safe(void **state)
{
    (void)state;
    struct token_keys *keys = token_keys_random();
    struct token_ctx *ctx = token_ctx_new(keys);
    char text[TOKEN_TEXT_MAX + 2];
    for (int i = 0; i < 2000; i++) {
        text[TOKEN_TEXT_MAX + 1] = 'Z'; /* must not be written */
        uint64_t ok = (uint64_t)i * 0x9e3779b97f4a7c15ull;
        assert_int_equal(token_issue(ctx, ok, NULL, T0 + (uint32_t)i, text), TOKEN_TEXT_MAX);
        assert_int_equal(text[TOKEN_TEXT_MAX], '\0');
        assert_int_equal(text[TOKEN_TEXT_MAX + 1], 'Z');
        assert_int_equal(strspn(text, alphabet), TOKEN_TEXT_MAX);
    }
    token_ctx_free(ctx);
    token_keys_free(keys);
}

static void test_every_single_change_rejected(void **state)
{
    (void)state;
    struct token_keys *keys = token_keys_random();
    struct token_ctx *ctx = token_ctx_new(keys);
    char good[TOKEN_TEXT_MAX + 1], v[TOKEN_TEXT_MAX + 2];
    assert_int_equal(token_issue(ctx, 42, NULL, T0, good), TOKEN_TEXT_MAX);
    assert_int_equal(token_verify(ctx, good, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_VALID);

    int tried = 0;
    for (size_t pos = 0; pos < TOKEN_TEXT_MAX; pos++) {
        for (const char *c = alphabet; *c; c++) {
            if (*c == good[pos])
                continue;
            memcpy(v, good, sizeof good);
            v[pos] = *c;
            struct token t;
            enum token_verdict r = token_verify(ctx, v, TOKEN_TEXT_MAX, T0, 0, 0, &t);
            if (r != TOKEN_BAD_MAC && r != TOKEN_MALFORMED)
                fail_msg("changing offset %zu to '%c' gave %s", pos, *c, token_verdict_name(r));
            assert_true(t.session_id == 0 && t.origin_key == 0); /* nothing leaks out */
            tried++;
        }
        /* Characters outside base64url. */
        for (const char *c = "=+/. \"%;,\x80"; *c; c++) {
            memcpy(v, good, sizeof good);
            v[pos] = *c;
            assert_int_equal(token_verify(ctx, v, TOKEN_TEXT_MAX, T0, 0, 0, NULL),
                             TOKEN_MALFORMED);
        }
        v[pos] = '\0'; /* an embedded NUL */
        assert_int_equal(token_verify(ctx, v, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_MALFORMED);
    }
    assert_int_equal(tried, TOKEN_TEXT_MAX * 63);

    for (size_t len = 0; len < TOKEN_TEXT_MAX; len++) {
        assert_int_equal(token_verify(ctx, good, len, T0, 0, 0, NULL), TOKEN_MALFORMED);
        assert_int_equal(token_verify(ctx, good + TOKEN_TEXT_MAX - len, len, T0, 0, 0, NULL),
                         TOKEN_MALFORMED);
    }
    for (const char *c = alphabet; *c; c++) {
        memcpy(v, good, TOKEN_TEXT_MAX);
        v[TOKEN_TEXT_MAX] = *c;
        assert_int_equal(token_verify(ctx, v, TOKEN_TEXT_MAX + 1, T0, 0, 0, NULL),
                         TOKEN_MALFORMED);
        v[0] = *c;
        memcpy(v + 1, good, TOKEN_TEXT_MAX);
        assert_int_equal(token_verify(ctx, v, TOKEN_TEXT_MAX + 1, T0, 0, 0, NULL),
                         TOKEN_MALFORMED);
    }
    /* The original still verifies (the context was not disturbed by failures). */
    assert_int_equal(token_verify(ctx, good, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_VALID);
    token_ctx_free(ctx);
    token_keys_free(keys);
}

static void test_wrong_key_is_bad_mac(void **state)
{
    (void)state;
    struct token_keys *a = load_text("a.key", "key-number-one-aaaaaaaaaaaa\n");
    uint8_t id = token_keys_id(a, 0);
    /* Find another key with the same id, so the MAC itself (not the id) rejects. */
    struct token_keys *b = NULL;
    for (int i = 0; i < 100000 && !b; i++) {
        char line[64], err[128];
        snprintf(line, sizeof line, "colliding-key-%08d", i);
        struct token_keys *k;
        assert_int_equal(token_keys_parse("mem", line, strlen(line), &k, err, sizeof err), 0);
        if (token_keys_id(k, 0) == id)
            b = k;
        else
            token_keys_free(k);
    }
    assert_non_null(b);
    struct token_keys *c = load_text("c.key", "a-completely-different-key\n");

    struct token_ctx *ca = token_ctx_new(a), *cb = token_ctx_new(b), *cc = token_ctx_new(c);
    char text[TOKEN_TEXT_MAX + 1];
    assert_int_equal(token_issue(ca, 7, NULL, T0, text), TOKEN_TEXT_MAX);
    assert_int_equal(token_verify(ca, text, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_VALID);
    assert_int_equal(token_verify(cb, text, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_BAD_MAC);
    assert_int_equal(token_verify(cc, text, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_BAD_MAC);
    free_three(ca, cb, cc, a, b, c);
}

static void test_key_rotation(void **state)
{
    (void)state;
    char text[256];
    struct token_keys *old = load_text("old.key", KEY_OLD);
    snprintf(text, sizeof text, "# rotated\n%s\n%s\n", KEY_NEW, KEY_OLD);
    struct token_keys *both = load_text("both.key", text);
    snprintf(text, sizeof text, "%s\n", KEY_NEW);
    struct token_keys *fresh = load_text("new.key", text);
    assert_int_equal(token_keys_count(both), 2);
    assert_int_equal(token_keys_id(both, 1), token_keys_id(old, 0));
    assert_int_equal(token_keys_id(both, 0), token_keys_id(fresh, 0));

    struct token_ctx *c_old = token_ctx_new(old), *c_both = token_ctx_new(both),
                     *c_new = token_ctx_new(fresh);
    char t_old[TOKEN_TEXT_MAX + 1], t_new[TOKEN_TEXT_MAX + 1];
    uint64_t ok_old = token_origin_key(old, "app", "s1");
    assert_int_equal(token_issue(c_old, ok_old, NULL, T0, t_old), TOKEN_TEXT_MAX);

    /* Old cookies verify under [new, old], by key #1; their origin key is key #1's. */
    struct token t;
    assert_int_equal(token_verify(c_both, t_old, TOKEN_TEXT_MAX, T0 + 5, 0, 0, &t), TOKEN_VALID);
    assert_int_equal(t.key_index, 1);
    assert_int_equal(t.key_id, token_keys_id(old, 0));
    assert_true(t.origin_key == token_origin_key_with(both, 1, "app", "s1"));
    assert_true(t.origin_key != token_origin_key(both, "app", "s1"));

    /* Re-issued and new tokens are signed with the new (first) key. */
    uint64_t ok_new = token_origin_key(both, "app", "s1");
    assert_true(ok_new == token_origin_key(fresh, "app", "s1"));
    assert_int_equal(token_issue(c_both, ok_new, &t, T0 + 5, t_new), TOKEN_TEXT_MAX);
    struct token tn;
    assert_int_equal(token_verify(c_new, t_new, TOKEN_TEXT_MAX, T0 + 5, 0, 0, &tn), TOKEN_VALID);
    assert_int_equal(tn.key_id, token_keys_id(fresh, 0));
    assert_int_equal(tn.key_index, 0);
    assert_true(tn.session_id == t.session_id);
    assert_int_equal(token_verify(c_old, t_new, TOKEN_TEXT_MAX, T0 + 5, 0, 0, NULL),
                     TOKEN_BAD_MAC);

    /* Once the old key leaves the file, its cookies stop verifying. */
    assert_int_equal(token_verify(c_new, t_old, TOKEN_TEXT_MAX, T0 + 5, 0, 0, NULL),
                     TOKEN_BAD_MAC);
    token_ctx_free(c_old);
    token_ctx_free(c_both);
    token_ctx_free(c_new);
    token_keys_free(old);
    token_keys_free(both);
    token_keys_free(fresh);
}

static void test_expiry(void **state)
{
    (void)state;
    struct token_keys *keys = token_keys_random();
    struct token_ctx *ctx = token_ctx_new(keys);
    char text[TOKEN_TEXT_MAX + 1];
    struct token t;
    assert_int_equal(token_issue(ctx, 1, NULL, T0, text), TOKEN_TEXT_MAX);

    /* TTL: valid through issued + ttl, expired one second later. */
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 3600, 3600, 0, NULL), TOKEN_VALID);
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 3601, 3600, 0, &t),
                     TOKEN_EXPIRED);
    assert_int_equal(t.issued, T0); /* authentic fields are still reported */
    /* TTL 0: no expiry, even ten years on. */
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 315360000u, 0, 0, NULL),
                     TOKEN_VALID);

    /* max_life counts from the session start, across re-issues. */
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0, 0, 0, &t), TOKEN_VALID);
    assert_int_equal(token_issue(ctx, 1, &t, T0 + 1000, text), TOKEN_TEXT_MAX);
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 1200, 3600, 1200, NULL),
                     TOKEN_VALID);
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 1201, 3600, 1200, &t),
                     TOKEN_TOO_OLD);
    assert_int_equal(t.session_start, T0);
    assert_int_equal(t.issued, T0 + 1000);
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 1201, 3600, 0, NULL),
                     TOKEN_VALID);

    /* From the future beyond the allowed skew. */
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 1000 - TOKEN_FUTURE_SKEW, 0, 0,
                                  NULL), TOKEN_VALID);
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 1000 - TOKEN_FUTURE_SKEW - 1, 0,
                                  0, NULL), TOKEN_FUTURE);

    /* Sliding expiry: re-issue once older than half the TTL. */
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0 + 1000, 0, 0, &t), TOKEN_VALID);
    assert_false(token_needs_refresh(&t, T0 + 1000 + 50, 100));
    assert_true(token_needs_refresh(&t, T0 + 1000 + 51, 100));
    assert_false(token_needs_refresh(&t, T0 + 1000 + 99999, 0));
    assert_false(token_needs_refresh(&t, T0, 100)); /* issued after now */
    token_ctx_free(ctx);
    token_keys_free(keys);
}

static void test_oversized_and_empty(void **state)
{
    (void)state;
    struct token_keys *keys = token_keys_random();
    struct token_ctx *ctx = token_ctx_new(keys);
    char good[TOKEN_TEXT_MAX + 1];
    assert_int_equal(token_issue(ctx, 1, NULL, T0, good), TOKEN_TEXT_MAX);
    size_t big_len = 5000;
    char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 'A', big_len);
    memcpy(big, good, TOKEN_TEXT_MAX); /* a valid token followed by junk */
    struct token t;
    t.session_id = 99;
    assert_int_equal(token_verify(ctx, big, big_len, T0, 0, 0, &t), TOKEN_MALFORMED);
    assert_true(t.session_id == 0);
    assert_int_equal(token_verify(ctx, "", 0, T0, 0, 0, &t), TOKEN_MALFORMED);
    assert_int_equal(token_verify(ctx, NULL, 0, T0, 0, 0, NULL), TOKEN_MALFORMED);
    assert_int_equal(token_verify(ctx, NULL, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_MALFORMED);
    free(big);
    token_ctx_free(ctx);
    token_keys_free(keys);
}

static void test_origin_key_depends_on_name_and_secret(void **state)
{
    (void)state;
    char text[256];
    struct token_keys *a1 = load_text("a1.key", KEY_OLD);
    /* Same secret, loaded separately, with comments, blank lines, spaces, CRLF, and
     * an extra verify-only key after it. */
    snprintf(text, sizeof text, "# comment\n\n  \t%s  \r\n%s\r\n", KEY_OLD, KEY_NEW);
    struct token_keys *a2 = load_text("a2.key", text);
    struct token_keys *b = load_text("b.key", KEY_NEW);

    uint64_t k = token_origin_key(a1, "app", "s1");
    assert_true(k != 0);
    assert_true(token_origin_key(a2, "app", "s1") == k);
    assert_int_equal(token_keys_id(a1, 0), token_keys_id(a2, 0));
    assert_true(token_origin_key(a1, "app", "s1") == k); /* deterministic */
    assert_true(token_origin_key(b, "app", "s1") != k);   /* other secret */
    assert_true(token_origin_key(a1, "app", "s2") != k);  /* other origin */
    assert_true(token_origin_key(a1, "api", "s1") != k);  /* other pool */
    assert_true(token_origin_key(a1, "a/b", "c") != token_origin_key(a1, "a", "b/c"));
    assert_true(token_origin_key_with(a2, 1, "app", "s1") == token_origin_key(b, "app", "s1"));
    assert_true(token_origin_key_with(a2, 5, "app", "s1") == 0); /* no such key */

    /* Tokens of one set verify under the other: same secret, same key. */
    struct token_ctx *c1 = token_ctx_new(a1), *c2 = token_ctx_new(a2);
    char tok[TOKEN_TEXT_MAX + 1];
    assert_int_equal(token_issue(c1, k, NULL, T0, tok), TOKEN_TEXT_MAX);
    assert_int_equal(token_verify(c2, tok, TOKEN_TEXT_MAX, T0, 0, 0, NULL), TOKEN_VALID);
    token_ctx_free(c1);
    token_ctx_free(c2);
    token_keys_free(a1);
    token_keys_free(a2);
    token_keys_free(b);
}

static void test_keys_load_errors(void **state)
{
    (void)state;
    char path[256], err[256], text[2048];
    struct token_keys *keys = (struct token_keys *)&keys; /* must be reset to NULL */

    snprintf(path, sizeof path, "%s/missing.key", tmpdir);
    assert_int_equal(token_keys_load(path, &keys, err, sizeof err), -ENOENT);
    assert_null(keys);
    assert_non_null(strstr(err, path));

    write_file("short.key", "# header\n0123456789abcdef0\n\n  short-key  \n", path, sizeof path);
    assert_int_equal(token_keys_load(path, &keys, err, sizeof err), -EINVAL);
    assert_null(keys);
    char want[300];
    snprintf(want, sizeof want, "%s:4: key is 9 bytes long", path);
    if (!strstr(err, want))
        fail_msg("got \"%s\"", err);

    size_t n = 0;
    for (int i = 0; i < 17; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "key-number-%02d-xxxxxxxxxx\n", i);
    write_file("many.key", text, path, sizeof path);
    assert_int_equal(token_keys_load(path, &keys, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "%s:17: more than 16 keys", path);
    if (!strstr(err, want))
        fail_msg("got \"%s\"", err);

    /* Exactly 16 is fine. */
    text[n - 25] = '\0';
    write_file("sixteen.key", text, path, sizeof path);
    assert_int_equal(token_keys_load(path, &keys, err, sizeof err), 0);
    assert_int_equal(token_keys_count(keys), 16);
    token_keys_free(keys);

    write_file("empty.key", "# only a comment\n\n   \n", path, sizeof path);
    assert_int_equal(token_keys_load(path, &keys, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "no key"));

    /* A 16-byte key with no final newline is accepted. */
    write_file("edge.key", "0123456789abcdef", path, sizeof path);
    assert_int_equal(token_keys_load(path, &keys, err, sizeof err), 0);
    assert_int_equal(token_keys_count(keys), 1);
    token_keys_free(keys);
    token_keys_free(NULL);
}

static void test_inspect(void **state)
{
    (void)state;
    struct token_keys *keys = load_text("i.key", KEY_OLD);
    struct token_ctx *ctx = token_ctx_new(keys);
    uint64_t ok = token_origin_key(keys, "app", "s1");
    char text[TOKEN_TEXT_MAX + 1], line[512], hex[32];
    assert_int_equal(token_issue(ctx, ok, NULL, T0, text), TOKEN_TEXT_MAX);
    struct token t;
    assert_int_equal(token_verify(ctx, text, TOKEN_TEXT_MAX, T0, 0, 0, &t), TOKEN_VALID);

    struct token_inspection ins;
    assert_int_equal(token_inspect(keys, text, TOKEN_TEXT_MAX, T0 + 10, 0, 0, &ins), 0);
    assert_int_equal(ins.verdict, TOKEN_VALID);
    assert_true(ins.decoded && ins.authentic);
    assert_true(ins.token.origin_key == ok && ins.token.session_id == t.session_id);
    assert_int_equal(ins.token.issued, T0);
    token_inspection_format(&ins, line, sizeof line);
    snprintf(hex, sizeof hex, "origin_key=%016llx", (unsigned long long)ok);
    assert_non_null(strstr(line, hex));
    assert_non_null(strstr(line, "verdict=valid"));
    assert_non_null(strstr(line, "session_start=1700000000"));

    /* TTL checked only when given. */
    assert_int_equal(token_inspect(keys, text, TOKEN_TEXT_MAX, T0 + 100, 50, 0, &ins), 0);
    assert_int_equal(ins.verdict, TOKEN_EXPIRED);
    assert_non_null(strstr(ins.why, "100 s ago"));

    /* Tampered: fields are shown but not authentic. */
    text[20] = text[20] == 'A' ? 'B' : 'A';
    assert_int_equal(token_inspect(keys, text, TOKEN_TEXT_MAX, T0, 0, 0, &ins), 0);
    assert_int_equal(ins.verdict, TOKEN_BAD_MAC);
    assert_true(ins.decoded);
    assert_false(ins.authentic);
    token_inspection_format(&ins, line, sizeof line);
    assert_non_null(strstr(line, "verdict=bad-mac authentic=no"));

    assert_int_equal(token_inspect(keys, "abc!", 4, T0, 0, 0, &ins), 0);
    assert_int_equal(ins.verdict, TOKEN_MALFORMED);
    assert_false(ins.decoded);
    assert_non_null(strstr(ins.why, "4 characters"));
    memset(text, 'A', TOKEN_TEXT_MAX);
    text[9] = '*';
    assert_int_equal(token_inspect(keys, text, TOKEN_TEXT_MAX, T0, 0, 0, &ins), 0);
    assert_int_equal(ins.verdict, TOKEN_MALFORMED);
    assert_non_null(strstr(ins.why, "offset 9"));
    token_ctx_free(ctx);
    token_keys_free(keys);
}

static void test_verdict_names(void **state)
{
    (void)state;
    assert_string_equal(token_verdict_name(TOKEN_VALID), "valid");
    assert_string_equal(token_verdict_name(TOKEN_MALFORMED), "malformed");
    assert_string_equal(token_verdict_name(TOKEN_BAD_MAC), "bad-mac");
    assert_string_equal(token_verdict_name(TOKEN_EXPIRED), "expired");
    assert_string_equal(token_verdict_name(TOKEN_TOO_OLD), "too-old");
    assert_string_equal(token_verdict_name(TOKEN_FUTURE), "future");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_keys_from_a_seed),
        cmocka_unit_test(test_fresh_session_ids_differ),
        cmocka_unit_test(test_text_is_cookie_safe),
        cmocka_unit_test(test_every_single_change_rejected),
        cmocka_unit_test(test_wrong_key_is_bad_mac),
        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_oversized_and_empty),
        cmocka_unit_test(test_origin_key_depends_on_name_and_secret),
        cmocka_unit_test(test_keys_load_errors),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_verdict_names),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
