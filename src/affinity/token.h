/*
 * token — limpet's affinity cookie value (SPEC §3 "limpet's cookie").
 *
 * A token names the origin a session is pinned to, by an origin key derived
 * from the origin's *name* and the secret (never its address), plus a random
 * session id, the session's start time, the token's issue time and the id of
 * the key that signed it. It is authenticated with SipHash-2-4 (128-bit tag)
 * through OpenSSL's EVP_MAC; it is NOT encrypted: anyone can base64-decode
 * the fields, nobody without the key can make or change one.
 *
 * Binary layout (42 bytes, integers big-endian), then base64url without
 * padding (56 characters from [A-Za-z0-9_-], cookie-safe):
 *
 *   0  version        1   TOKEN_VERSION
 *   1  key id         1   byte derived from the signing key (not secret)
 *   2  origin key     8   token_origin_key*() of the pinned origin
 *  10  session id     8   random, from a per-context CSPRNG pool
 *  18  session start  4   unix seconds the session began (for max_life)
 *  22  issued         4   unix seconds this value was made (TTL, sliding expiry)
 *  26  MAC           16   SipHash-2-4-128 over bytes 0..25 with the key
 *
 * Since 42 bytes encode to exactly 56 characters, every 56-character string
 * decodes to one byte string and back (no padding or spare bits), so any
 * change to a valid value changes the authenticated bytes.
 *
 * Keys (struct token_keys): immutable after loading and shared by all
 * threads. The first key signs, every key verifies; a token records the id
 * of its key, and verification tries only keys with that id. Origin keys are
 * derived per key: a token verified by key i carries an origin key made with
 * key i (token.key_index tells which), so after a rotation the router matches
 * old cookies with token_origin_key_with(keys, tok.key_index, ...) and
 * re-issues them with token_origin_key() (key 0) without logging anyone out.
 *
 * Contexts (struct token_ctx): one per thread, bound to one key set (which
 * must outlive it): pre-initialised MAC contexts, one per key, and a pool of
 * random bytes refilled with RAND_bytes in batches. Never share a context
 * between threads. Issue and verify allocate nothing.
 */
#ifndef LIMPET_AFFINITY_TOKEN_H
#define LIMPET_AFFINITY_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_VERSION     1u
#define TOKEN_KEYS_MAX    16u   /* keys a secret file may hold */
#define TOKEN_KEY_MIN_LEN 16u   /* shortest accepted key line, bytes */
#define TOKEN_BIN_LEN     42u   /* binary token, MAC included */
#define TOKEN_TEXT_MAX    56u   /* encoded length (always exactly this) */
#define TOKEN_FUTURE_SKEW 300u  /* seconds a token may be "from the future" (clock skew) */

struct token_keys;              /* opaque; immutable after load */
struct token_ctx;               /* opaque; per thread */

struct token {
    uint8_t version;            /* TOKEN_VERSION */
    uint8_t key_id;             /* id of the key that signed it */
    uint8_t key_index;          /* after verify: index of the key that verified it (0 = signing key) */
    uint64_t origin_key;        /* origin the session is pinned to */
    uint64_t session_id;        /* random, kept across re-issues */
    uint32_t session_start;     /* unix seconds the session began */
    uint32_t issued;            /* unix seconds this value was made */
};

enum token_verdict {
    TOKEN_VALID = 0,
    TOKEN_MALFORMED,            /* bad length, characters or version */
    TOKEN_BAD_MAC,              /* forged, tampered, or signed by a key not loaded */
    TOKEN_EXPIRED,              /* ttl > 0 and issued + ttl < now */
    TOKEN_TOO_OLD,              /* max_life > 0 and session_start + max_life < now */
    TOKEN_FUTURE,               /* issued or session_start > now + TOKEN_FUTURE_SKEW */
};

/*
 * Loads keys from `path`: one key per line, the line's bytes without
 * surrounding whitespace (and trailing \r\n); blank lines and lines starting
 * with '#' are ignored; a key shorter than TOKEN_KEY_MIN_LEN bytes, more than
 * TOKEN_KEYS_MAX keys, or no key at all is refused. Returns 0 and sets *out,
 * or a negative errno with a message naming the file (and line) in err.
 */
int token_keys_load(const char *path, struct token_keys **out, char *err, size_t errlen);

/* Loads keys from memory (same rules; `name` is used in messages). */
int token_keys_parse(const char *name, const char *text, size_t len,
                     struct token_keys **out, char *err, size_t errlen);

/* One random 32-byte key (no secret_file). NULL when out of memory or entropy. */
struct token_keys *token_keys_random(void);

/* The same, from a seed of TOKEN_SEED_BYTES the caller keeps (and may hand to
 * a successor: equal seeds give equal keys). token_random_seed() makes one;
 * it returns -1 when the system has no entropy to give. */
#define TOKEN_SEED_BYTES 32
int token_random_seed(uint8_t seed[TOKEN_SEED_BYTES]);
struct token_keys *token_keys_from_seed(const uint8_t seed[TOKEN_SEED_BYTES]);

/* Wipes and frees; NULL is fine. */
void token_keys_free(struct token_keys *keys);

/* Number of keys (1..TOKEN_KEYS_MAX). */
unsigned token_keys_count(const struct token_keys *keys);

/* Id byte of key `index` (0 = signing key). */
uint8_t token_keys_id(const struct token_keys *keys, unsigned index);

/*
 * Origin key of origin `origin` in pool `pool` under the signing key: the
 * first 8 bytes of the MAC of "origin:" pool NUL origin. Depends only on the
 * two names and the key. Slow path (load time): allocates a MAC context.
 * Returns 0 only if OpenSSL fails (a real key is 0 with probability 2^-64).
 */
uint64_t token_origin_key(const struct token_keys *keys, const char *pool, const char *origin);

/* Same under key `key_index` (to match tokens verified by an older key). */
uint64_t token_origin_key_with(const struct token_keys *keys, unsigned key_index,
                               const char *pool, const char *origin);

/* A context for one thread, bound to `keys` (which must outlive it). NULL on failure. */
struct token_ctx *token_ctx_new(const struct token_keys *keys);
void token_ctx_free(struct token_ctx *ctx);
const struct token_keys *token_ctx_keys(const struct token_ctx *ctx);

/*
 * Makes a token for `origin_key`, signed with key 0, issued at `now`. With
 * previous == NULL it starts a new session (fresh random session id,
 * session_start = now); otherwise it keeps previous->session_id and
 * previous->session_start (clamped to now). Writes TOKEN_TEXT_MAX characters
 * and a NUL to out (room for TOKEN_TEXT_MAX + 1). Returns TOKEN_TEXT_MAX, or
 * 0 when OpenSSL fails (then out is "").
 */
size_t token_issue(struct token_ctx *ctx, uint64_t origin_key, const struct token *previous,
                   uint32_t now, char *out);

/*
 * Checks an encoded value. Values whose length is not TOKEN_TEXT_MAX are
 * MALFORMED without being read. Checks, in order: length, characters,
 * version, MAC (constant-time compare), FUTURE, EXPIRED (only when ttl > 0),
 * TOO_OLD (only when max_life > 0). `out` (may be NULL) is filled when the
 * MAC verified (VALID, EXPIRED, TOO_OLD, FUTURE), zeroed otherwise.
 */
enum token_verdict token_verify(struct token_ctx *ctx, const char *value, size_t len,
                                uint32_t now, uint32_t ttl, uint32_t max_life,
                                struct token *out);

/* True when a valid token should be re-issued (sliding expiry): ttl > 0 and
 * it is older than half the TTL. */
bool token_needs_refresh(const struct token *tok, uint32_t now, uint32_t ttl);

/* "valid", "malformed", "bad-mac", "expired", "too-old", "future". */
const char *token_verdict_name(enum token_verdict verdict);

/* ---- For humans: `limpetctl cookie decode`, GET /api/v1/affinity/decode ---- */

struct token_inspection {
    enum token_verdict verdict;
    bool decoded;               /* `token` holds the value's fields (maybe unauthenticated) */
    bool authentic;             /* the MAC verified with key `token.key_index` */
    struct token token;
    char why[160];              /* one sentence: why this verdict */
};

/*
 * Decodes and checks `value` like token_verify (pass ttl 0 to skip the TTL
 * check, max_life 0 to skip that one) and explains the verdict. Fields are
 * reported even when the MAC does not verify (then authentic is false).
 * Slow path: allocates a context. Returns 0, or -ENOMEM.
 */
int token_inspect(const struct token_keys *keys, const char *value, size_t len, uint32_t now,
                  uint32_t ttl, uint32_t max_life, struct token_inspection *out);

/*
 * One line, e.g. "verdict=valid version=1 key_id=0x3a origin_key=9f0c...
 * session_id=... session_start=1700000000 issued=1700000100 why=...".
 * Returns what snprintf returns.
 */
int token_inspection_format(const struct token_inspection *ins, char *buf, size_t len);

#endif
