/*
 * token — making and checking limpet's affinity cookie (layout in token.h).
 *
 * MAC choice: SipHash-2-4 with a 128-bit tag, through EVP_MAC ("SIPHASH").
 * Measured on the dev box (OpenSSL 3.0.19, x86-64 with SHA-NI), one MAC over
 * the 26 authenticated bytes, 1e6 iterations:
 *
 *                          re-init, same key   init with key   EVP_MAC_CTX_dup
 *   HMAC-SHA256               523 ns             1985 ns         1294 ns
 *   SipHash-2-4-128           139 ns              192 ns          194 ns
 *
 * A decision is one verify plus one issue, i.e. two MACs: HMAC-SHA256 costs
 * ~1.05 µs before any other work (over the 1 µs budget, and its re-init in
 * OpenSSL 3.0 copies digest contexts), SipHash ~0.28 µs. SipHash is a PRF
 * designed as a MAC for short inputs with a 128-bit key; a 128-bit tag leaves
 * forgery at 2^-128 per try. So SipHash. bench/affinity_bench.c reprints
 * the raw figures and times a whole decision: ~310-345 ns (verify ~170,
 * issue ~145) on an idle machine.
 *
 * Fast path: each struct token_ctx holds one EVP_MAC_CTX per key, keyed once
 * in token_ctx_new. Per MAC it calls EVP_MAC_init(ctx, NULL, 0, NULL), which
 * in OpenSSL 3 restarts SipHash with the key already set. OpenSSL documents
 * that NULL-key re-init only loosely, so token_ctx_new checks it against a
 * one-shot EVP_Q_mac and, if it ever differs, falls back to re-keying on
 * every call (192 ns instead of 139). Session ids come from a per-context
 * pool of RAND_bytes output refilled 1 KiB at a time (128 ids per call).
 *
 * Keys: each line of the secret file is input keying material; HKDF-SHA256
 * (EVP_KDF, distinct "info" labels) derives from it the 16-byte SipHash key
 * and the 1-byte key id, so the id reveals nothing usable about the key and
 * lines of any length ≥ 16 bytes work. The origin key is the first 8 bytes of
 * the MAC of "origin:" pool NUL origin (NUL, not "/", so no two name pairs
 * collide).
 *
 * Base64url here is plain table code (an encoding, not a crypto primitive).
 * Verification rejects a wrong length before touching the bytes, so a huge
 * cookie costs one comparison.
 *
 * Invariants: struct token_keys never changes after load and may be read by
 * any thread; struct token_ctx is used by one thread at a time; nothing on
 * the issue/verify path allocates. Not fork-safe: a child must not keep
 * using its parent's context (its random pool would repeat the parent's).
 */
#include "affinity/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define MAC_KEY_LEN   16u
#define MAC_LEN       16u
#define SIGNED_LEN    (TOKEN_BIN_LEN - MAC_LEN)   /* 26 bytes under the MAC */
#define RAND_POOL     1024u
#define KEY_FILE_MAX  65536u

#define KDF_SALT      "limpet affinity cookie"
#define KDF_INFO_MAC  "mac key v1"
#define KDF_INFO_ID   "key id v1"

struct token_key {
    uint8_t id;                       /* HKDF(line, "key id v1")[0] */
    uint8_t mac[MAC_KEY_LEN];         /* HKDF(line, "mac key v1") */
};

struct token_keys {
    unsigned count;                   /* 1..TOKEN_KEYS_MAX; key[0] signs */
    struct token_key key[TOKEN_KEYS_MAX];
};

struct token_ctx {
    const struct token_keys *keys;    /* not owned */
    int reinit;                       /* NULL-key EVP_MAC_init keeps the key */
    size_t rand_left;                 /* unused bytes at the start of rand_pool */
    EVP_MAC_CTX *mac[TOKEN_KEYS_MAX]; /* one keyed context per key */
    uint8_t rand_pool[RAND_POOL];
};

/* ------------------------------------------------------------------------ */
/* Keys.                                                                    */

static int hkdf(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t *out,
                size_t out_len)
{
    int ok = 0;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (kctx) {
        OSSL_PARAM p[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)KDF_SALT,
                                              sizeof KDF_SALT - 1),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
            OSSL_PARAM_construct_end(),
        };
        ok = EVP_KDF_derive(kctx, out, out_len, p) == 1;
    }
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : -1;
}

static int key_derive(const uint8_t *ikm, size_t len, struct token_key *k)
{
    if (hkdf(ikm, len, KDF_INFO_MAC, k->mac, sizeof k->mac) < 0 ||
        hkdf(ikm, len, KDF_INFO_ID, &k->id, 1) < 0)
        return -1;
    return 0;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int token_keys_parse(const char *name, const char *text, size_t len, struct token_keys **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    struct token_keys *keys = calloc(1, sizeof *keys);
    if (!keys) {
        snprintf(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    size_t pos = 0;
    unsigned line = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t b = pos, e = end;
        pos = nl ? end + 1 : len;
        line++;
        while (b < e && is_space((unsigned char)text[b]))
            b++;
        while (e > b && is_space((unsigned char)text[e - 1]))
            e--;
        if (b == e || text[b] == '#')
            continue;
        if (e - b < TOKEN_KEY_MIN_LEN) {
            snprintf(err, errlen, "%s:%u: key is %zu bytes long; a key needs at least %u",
                     name, line, e - b, TOKEN_KEY_MIN_LEN);
            goto fail;
        }
        if (keys->count == TOKEN_KEYS_MAX) {
            snprintf(err, errlen, "%s:%u: more than %u keys", name, line, TOKEN_KEYS_MAX);
            goto fail;
        }
        if (key_derive((const uint8_t *)text + b, e - b, &keys->key[keys->count]) < 0) {
            snprintf(err, errlen, "%s:%u: key derivation failed (OpenSSL)", name, line);
            goto fail;
        }
        keys->count++;
    }
    if (keys->count == 0) {
        snprintf(err, errlen, "%s: no key (one key per line, at least %u bytes each)", name,
                 TOKEN_KEY_MIN_LEN);
        goto fail;
    }
    *out = keys;
    return 0;
fail:
    token_keys_free(keys);
    return -EINVAL;
}

int token_keys_load(const char *path, struct token_keys **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char *buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, KEY_FILE_MAX + 1, f);
    int rc;
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: read error", path);
    } else if (n > KEY_FILE_MAX) {
        rc = -EFBIG;
        snprintf(err, errlen, "%s: larger than %u bytes; not a key file?", path, KEY_FILE_MAX);
    } else {
        rc = token_keys_parse(path, buf, n, out, err, errlen);
    }
    OPENSSL_cleanse(buf, n);
    free(buf);
    fclose(f);
    return rc;
}

int token_random_seed(uint8_t seed[TOKEN_SEED_BYTES])
{
    return RAND_bytes(seed, TOKEN_SEED_BYTES) == 1 ? 0 : -1;
}

struct token_keys *token_keys_from_seed(const uint8_t seed[TOKEN_SEED_BYTES])
{
    struct token_keys *keys = calloc(1, sizeof *keys);
    if (!keys)
        return NULL;
    if (key_derive(seed, TOKEN_SEED_BYTES, &keys->key[0]) < 0) {
        token_keys_free(keys);
        return NULL;
    }
    keys->count = 1;
    return keys;
}

struct token_keys *token_keys_random(void)
{
    uint8_t seed[TOKEN_SEED_BYTES];
    struct token_keys *keys = token_random_seed(seed) == 0 ? token_keys_from_seed(seed) : NULL;
    OPENSSL_cleanse(seed, sizeof seed);
    return keys;
}

void token_keys_free(struct token_keys *keys)
{
    if (!keys)
        return;
    OPENSSL_cleanse(keys, sizeof *keys);
    free(keys);
}

unsigned token_keys_count(const struct token_keys *keys)
{
    return keys->count;
}

uint8_t token_keys_id(const struct token_keys *keys, unsigned index)
{
    return index < keys->count ? keys->key[index].id : 0;
}

/* ------------------------------------------------------------------------ */
/* MAC.                                                                     */

static EVP_MAC_CTX *mac_new(const struct token_key *k)
{
    size_t size = MAC_LEN;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context keeps its own reference */
    if (ctx && EVP_MAC_init(ctx, k->mac, sizeof k->mac, p) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static int mac_rekey(EVP_MAC_CTX *ctx, const struct token_key *k)
{
    size_t size = MAC_LEN;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(ctx, k->mac, sizeof k->mac, p) == 1 ? 0 : -1;
}

/* Fast path: MAC of msg under key idx with the context's keyed EVP_MAC_CTX. */
static int mac_compute(struct token_ctx *c, unsigned idx, const uint8_t *msg, size_t len,
                       uint8_t tag[MAC_LEN])
{
    EVP_MAC_CTX *m = c->mac[idx];
    size_t outl = 0;
    if (c->reinit ? EVP_MAC_init(m, NULL, 0, NULL) != 1 : mac_rekey(m, &c->keys->key[idx]) < 0)
        return -1;
    if (EVP_MAC_update(m, msg, len) != 1 || EVP_MAC_final(m, tag, &outl, MAC_LEN) != 1 ||
        outl != MAC_LEN)
        return -1;
    return 0;
}

/* Slow path reference: a one-shot MAC, independent of any kept context. */
static int mac_oneshot(const struct token_key *k, const uint8_t *msg, size_t len,
                       uint8_t tag[MAC_LEN])
{
    size_t size = MAC_LEN, outl = 0;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_Q_mac(NULL, "SIPHASH", NULL, NULL, p, k->mac, sizeof k->mac, msg, len, tag,
                   MAC_LEN, &outl) || outl != MAC_LEN)
        return -1;
    return 0;
}

uint64_t token_origin_key_with(const struct token_keys *keys, unsigned key_index,
                               const char *pool, const char *origin)
{
    if (key_index >= keys->count)
        return 0;
    static const char prefix[] = "origin:";
    uint64_t v = 0;
    uint8_t tag[MAC_LEN];
    size_t outl = 0;
    EVP_MAC_CTX *m = mac_new(&keys->key[key_index]);
    if (m && EVP_MAC_update(m, (const uint8_t *)prefix, sizeof prefix - 1) == 1 &&
        EVP_MAC_update(m, (const uint8_t *)pool, strlen(pool)) == 1 &&
        EVP_MAC_update(m, (const uint8_t *)"", 1) == 1 &&
        EVP_MAC_update(m, (const uint8_t *)origin, strlen(origin)) == 1 &&
        EVP_MAC_final(m, tag, &outl, MAC_LEN) == 1 && outl == MAC_LEN) {
        for (int i = 0; i < 8; i++)
            v = v << 8 | tag[i];
    }
    EVP_MAC_CTX_free(m);
    return v;
}

uint64_t token_origin_key(const struct token_keys *keys, const char *pool, const char *origin)
{
    return token_origin_key_with(keys, 0, pool, origin);
}

/* ------------------------------------------------------------------------ */
/* Contexts.                                                                */

/* Does NULL-key re-init restart the MAC with the same key? (See the top.) */
static int reinit_works(struct token_ctx *c)
{
    static const uint8_t probe[SIGNED_LEN] = "limpet re-init self check";
    uint8_t want[MAC_LEN], got[MAC_LEN];
    if (mac_oneshot(&c->keys->key[0], probe, sizeof probe, want) < 0)
        return 0;
    c->reinit = 1;
    for (int round = 0; round < 2; round++) /* twice: after a final, too */
        if (mac_compute(c, 0, probe, sizeof probe, got) < 0 ||
            CRYPTO_memcmp(got, want, MAC_LEN) != 0)
            return 0;
    return 1;
}

struct token_ctx *token_ctx_new(const struct token_keys *keys)
{
    struct token_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->keys = keys;
    for (unsigned i = 0; i < keys->count; i++)
        if (!(c->mac[i] = mac_new(&keys->key[i])))
            goto fail;
    c->reinit = reinit_works(c); /* when 0, mac_compute re-keys on every call */
    return c;
fail:
    token_ctx_free(c);
    return NULL;
}

void token_ctx_free(struct token_ctx *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < TOKEN_KEYS_MAX; i++)
        EVP_MAC_CTX_free(c->mac[i]);
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

const struct token_keys *token_ctx_keys(const struct token_ctx *c)
{
    return c->keys;
}

static int random_u64(struct token_ctx *c, uint64_t *out)
{
    if (c->rand_left < sizeof *out) {
        if (RAND_bytes(c->rand_pool, sizeof c->rand_pool) != 1)
            return -1;
        c->rand_left = sizeof c->rand_pool;
    }
    c->rand_left -= sizeof *out;
    memcpy(out, c->rand_pool + c->rand_left, sizeof *out);
    memset(c->rand_pool + c->rand_left, 0, sizeof *out); /* used once only */
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Encoding.                                                                */

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Character → value + 1; 0 = not base64url. */
static const uint8_t b64_value[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
    ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

/* 42 bytes → 56 characters (14 groups of 3 → 4). */
static void b64url_encode(const uint8_t bin[TOKEN_BIN_LEN], char *out)
{
    for (unsigned i = 0, o = 0; i < TOKEN_BIN_LEN; i += 3, o += 4) {
        uint32_t v = (uint32_t)bin[i] << 16 | (uint32_t)bin[i + 1] << 8 | bin[i + 2];
        out[o] = b64_alphabet[v >> 18];
        out[o + 1] = b64_alphabet[(v >> 12) & 63];
        out[o + 2] = b64_alphabet[(v >> 6) & 63];
        out[o + 3] = b64_alphabet[v & 63];
    }
    out[TOKEN_TEXT_MAX] = '\0';
}

/* 56 characters → 42 bytes. Returns -1 - offset of the first bad character, or 0. */
static long b64url_decode(const char *in, uint8_t bin[TOKEN_BIN_LEN])
{
    for (unsigned i = 0, o = 0; i < TOKEN_TEXT_MAX; i += 4, o += 3) {
        uint32_t v = 0;
        for (unsigned j = 0; j < 4; j++) {
            uint8_t d = b64_value[(unsigned char)in[i + j]];
            if (!d)
                return -1 - (long)(i + j);
            v = v << 6 | (uint32_t)(d - 1);
        }
        bin[o] = (uint8_t)(v >> 16);
        bin[o + 1] = (uint8_t)(v >> 8);
        bin[o + 2] = (uint8_t)v;
    }
    return 0;
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void unpack(const uint8_t bin[TOKEN_BIN_LEN], struct token *t)
{
    t->version = bin[0];
    t->key_id = bin[1];
    t->key_index = 0;
    t->origin_key = get_be(bin + 2, 8);
    t->session_id = get_be(bin + 10, 8);
    t->session_start = (uint32_t)get_be(bin + 18, 4);
    t->issued = (uint32_t)get_be(bin + 22, 4);
}

/* ------------------------------------------------------------------------ */
/* Issue and verify.                                                        */

size_t token_issue(struct token_ctx *c, uint64_t origin_key, const struct token *previous,
                   uint32_t now, char *out)
{
    uint8_t bin[TOKEN_BIN_LEN];
    uint64_t session_id;
    uint32_t start = now;
    if (previous) {
        session_id = previous->session_id;
        if (previous->session_start < now)
            start = previous->session_start;
    } else if (random_u64(c, &session_id) < 0) {
        out[0] = '\0';
        return 0;
    }
    bin[0] = TOKEN_VERSION;
    bin[1] = c->keys->key[0].id;
    put_be(bin + 2, origin_key, 8);
    put_be(bin + 10, session_id, 8);
    put_be(bin + 18, start, 4);
    put_be(bin + 22, now, 4);
    if (mac_compute(c, 0, bin, SIGNED_LEN, bin + SIGNED_LEN) < 0) {
        out[0] = '\0';
        return 0;
    }
    b64url_encode(bin, out);
    return TOKEN_TEXT_MAX;
}

/* Index of the key whose MAC matches; -1: no key has this id; -2: none matched. */
static int find_key(struct token_ctx *c, const uint8_t bin[TOKEN_BIN_LEN])
{
    int rc = -1;
    uint8_t tag[MAC_LEN];
    for (unsigned i = 0; i < c->keys->count; i++) {
        if (c->keys->key[i].id != bin[1])
            continue;
        rc = -2;
        if (mac_compute(c, i, bin, SIGNED_LEN, tag) == 0 &&
            CRYPTO_memcmp(tag, bin + SIGNED_LEN, MAC_LEN) == 0)
            return (int)i;
    }
    return rc;
}

static enum token_verdict check_times(const struct token *t, uint32_t now, uint32_t ttl,
                                      uint32_t max_life)
{
    uint64_t n = now;
    if (t->issued > n + TOKEN_FUTURE_SKEW || t->session_start > n + TOKEN_FUTURE_SKEW)
        return TOKEN_FUTURE;
    if (ttl && (uint64_t)t->issued + ttl < n)
        return TOKEN_EXPIRED;
    if (max_life && (uint64_t)t->session_start + max_life < n)
        return TOKEN_TOO_OLD;
    return TOKEN_VALID;
}

enum token_verdict token_verify(struct token_ctx *c, const char *value, size_t len,
                                uint32_t now, uint32_t ttl, uint32_t max_life,
                                struct token *out)
{
    uint8_t bin[TOKEN_BIN_LEN];
    struct token t;
    if (out)
        memset(out, 0, sizeof *out);
    if (len != TOKEN_TEXT_MAX || !value || b64url_decode(value, bin) < 0 ||
        bin[0] != TOKEN_VERSION)
        return TOKEN_MALFORMED;
    int idx = find_key(c, bin);
    if (idx < 0)
        return TOKEN_BAD_MAC;
    unpack(bin, &t);
    t.key_index = (uint8_t)idx;
    if (out)
        *out = t;
    return check_times(&t, now, ttl, max_life);
}

bool token_needs_refresh(const struct token *tok, uint32_t now, uint32_t ttl)
{
    return ttl > 0 && now > tok->issued && now - tok->issued > ttl / 2;
}

const char *token_verdict_name(enum token_verdict v)
{
    switch (v) {
    case TOKEN_VALID: return "valid";
    case TOKEN_MALFORMED: return "malformed";
    case TOKEN_BAD_MAC: return "bad-mac";
    case TOKEN_EXPIRED: return "expired";
    case TOKEN_TOO_OLD: return "too-old";
    case TOKEN_FUTURE: return "future";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* For humans.                                                              */

int token_inspect(const struct token_keys *keys, const char *value, size_t len, uint32_t now,
                  uint32_t ttl, uint32_t max_life, struct token_inspection *out)
{
    uint8_t bin[TOKEN_BIN_LEN];
    memset(out, 0, sizeof *out);
    out->verdict = TOKEN_MALFORMED;
    if (len != TOKEN_TEXT_MAX || !value) {
        snprintf(out->why, sizeof out->why,
                 "value is %zu characters long; a limpet token has exactly %u", len,
                 TOKEN_TEXT_MAX);
        return 0;
    }
    long bad = b64url_decode(value, bin);
    if (bad < 0) {
        snprintf(out->why, sizeof out->why,
                 "character 0x%02x at offset %ld is not base64url ([A-Za-z0-9_-])",
                 (unsigned char)value[-1 - bad], -1 - bad);
        return 0;
    }
    out->token.version = bin[0];
    out->token.key_id = bin[1];
    if (bin[0] != TOKEN_VERSION) {
        snprintf(out->why, sizeof out->why, "format version %u is unknown (this limpet reads %u)",
                 bin[0], TOKEN_VERSION);
        return 0;
    }
    unpack(bin, &out->token);
    out->decoded = true;

    struct token_ctx *c = token_ctx_new(keys);
    if (!c)
        return -ENOMEM;
    int idx = find_key(c, bin);
    token_ctx_free(c);
    if (idx == -1) {
        out->verdict = TOKEN_BAD_MAC;
        snprintf(out->why, sizeof out->why,
                 "no loaded key has id 0x%02x: signed by a key no longer in the secret file, "
                 "by another deployment, or forged", bin[1]);
        return 0;
    }
    if (idx < 0) {
        out->verdict = TOKEN_BAD_MAC;
        snprintf(out->why, sizeof out->why,
                 "MAC does not verify with the loaded key(s) of id 0x%02x: tampered or forged",
                 bin[1]);
        return 0;
    }
    out->authentic = true;
    out->token.key_index = (uint8_t)idx;
    const struct token *t = &out->token;
    out->verdict = check_times(t, now, ttl, max_life);
    switch (out->verdict) {
    case TOKEN_FUTURE:
        snprintf(out->why, sizeof out->why,
                 "issued at %u / session started at %u, more than %u s after now (%u): clocks "
                 "disagree", t->issued, t->session_start, TOKEN_FUTURE_SKEW, now);
        break;
    case TOKEN_EXPIRED:
        snprintf(out->why, sizeof out->why, "issued %u s ago; the TTL is %u s",
                 now - t->issued, ttl);
        break;
    case TOKEN_TOO_OLD:
        snprintf(out->why, sizeof out->why, "session began %u s ago; max_life is %u s",
                 now - t->session_start, max_life);
        break;
    default:
        snprintf(out->why, sizeof out->why, "MAC verified with key #%d (id 0x%02x)%s", idx,
                 bin[1], ttl ? "" : "; TTL not checked");
        break;
    }
    return 0;
}

int token_inspection_format(const struct token_inspection *ins, char *buf, size_t len)
{
    const struct token *t = &ins->token;
    if (!ins->decoded)
        return snprintf(buf, len, "verdict=%s why=\"%s\"", token_verdict_name(ins->verdict),
                        ins->why);
    return snprintf(buf, len,
                    "verdict=%s authentic=%s version=%u key_id=0x%02x origin_key=%016llx "
                    "session_id=%016llx session_start=%u issued=%u why=\"%s\"",
                    token_verdict_name(ins->verdict), ins->authentic ? "yes" : "no",
                    t->version, t->key_id, (unsigned long long)t->origin_key,
                    (unsigned long long)t->session_id, t->session_start, t->issued, ins->why);
}
