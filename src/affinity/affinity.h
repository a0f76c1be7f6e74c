/*
 * affinity — which origin a request's session belongs to (SPEC §3).
 *
 * Two halves:
 *  - affinity_tables_build() runs on the control thread when a snapshot is
 *    built: it loads the cookie keys, derives every origin's cookie key and
 *    app_cookie prefix, and the Set-Cookie attribute string of each load
 *    balancer. Everything is immutable afterwards. (The pools' Maglev tables
 *    are the snapshot's route_hash, balance/route.h.)
 *  - affinity_decide() runs per request on a worker: it finds the session's
 *    key (limpet's cookie, the client address, header values, the
 *    application's cookie), maps it to a pinned origin, checks that origin is
 *    still usable (or draining within drain_duration), and otherwise picks a
 *    new one by pool steering or consistent hash. The decision says which
 *    origin, why, what to tell the origin (X-Limpet-Affinity), what to change
 *    in the forwarded Cookie header and which Set-Cookie to add to the
 *    response. affinity_failover() and affinity_reroute() move it to another
 *    origin after a connect failure. Nothing allocates.
 *
 * Inputs are narrow: a route_ctx (the exchange's snapshot and load balancer,
 * the client address, the thread's steering state), the parsed request, the
 * thread's token context and the connection's pin. No socket, buffer or
 * worker: a decision can be unit-tested from a config and a request head.
 * Layering: proxy → affinity → route → balance; nothing here includes proxy/
 * or the worker. Every index in a decision belongs to ctx->snap, which the
 * caller keeps referenced while the decision is in use (its strip_cookie and
 * app_cookie point into that snapshot's config).
 */
#ifndef LIMPET_AFFINITY_AFFINITY_H
#define LIMPET_AFFINITY_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "affinity/token.h"
#include "balance/route.h"
#include "core/stats.h"

struct snapshot;
struct h1_request;

#define APP_PREFIX_LEN 8          /* characters of an app_cookie prefix */

struct affinity_origin_key {
    uint64_t key;                 /* cookie origin key (for one signing key) */
    uint16_t pool, origin;        /* the origin it names */
};

struct affinity_pool {
    char (*app_prefix)[APP_PREFIX_LEN + 1];  /* [key * num_origins + origin]; key 0 signs */
    uint64_t *origin_key;         /* [origin]: cookie origin key under the signing key */
};

struct affinity_lb {
    char *cookie_attrs[2];        /* [request over TLS]: "; Path=/; Max-Age=…; HttpOnly;
                                   * SameSite=Lax[; Secure]" (secure Auto: Secure over TLS) */
};

struct affinity_tables {
    struct token_keys *keys;      /* owned unless it is the process's random key */
    bool keys_owned;              /* keys are freed with the tables */
    unsigned num_keys;            /* token_keys_count(keys) */
    struct affinity_origin_key *by_key;  /* sorted by key: every (signing key, origin) */
    size_t num_by_key;            /* entries in by_key */
    struct affinity_pool *pools;  /* [cfg->num_pools] */
    struct affinity_lb *lbs;      /* [cfg->num_load_balancers] */
};

/* Builds the tables for s (s->cfg and s->pools must be set). Returns NULL with
 * err set on failure (e.g. an unreadable secret file). */
struct affinity_tables *affinity_tables_build(const struct snapshot *s, char *err,
                                              size_t err_size);
void affinity_tables_free(struct affinity_tables *t, const struct snapshot *s);

/* Without secret_file the cookies are signed with a random key. An upgrade
 * hands its seed to the successor (control thread): affinity_random_seed()
 * gives it (false when no random key was made: a secret_file is used), and
 * affinity_adopt_random_seed(), called before the first snapshot is built,
 * makes the successor sign and verify with the same key. */
bool affinity_random_seed(uint8_t seed[TOKEN_SEED_BYTES]);
void affinity_adopt_random_seed(const uint8_t seed[TOKEN_SEED_BYTES], long from_pid);

/* The origin a client connection's first request went to: its keyless
 * requests follow it (SPEC §3). Zeroed with the connection. */
struct affinity_pin {
    bool set;                     /* the connection's first request chose an origin */
    uint32_t id, generation;      /* that origin (origin_shared id and generation) */
};

/* A request's routing decision: the origin, why, and what the proxy must
 * change beside choosing it. Indexes are in the snapshot it was decided on. */
struct affinity_decision {
    long pool, origin;            /* the chosen origin; -1 before a decision */
    enum affinity_reason reason;  /* outcome, logged and counted */
    struct route_tried tried;     /* origins tried for this request */
    bool pinned;                  /* the session already belonged to the chosen origin */
    long previous_pool, previous_origin;  /* origin the session moved from, or -1 */
    bool set_cookie;              /* send limpet's cookie (value in cookie_value) */
    bool set_route_cookie;        /* app_cookie route mode with "issue": send
                                   * NAME=<separator><route of the chosen origin> */
    char cookie_value[TOKEN_TEXT_MAX + 1];  /* limpet's cookie value to set */
    struct token token;           /* the session's token (valid when has_token) */
    bool has_token;               /* token holds a verified or freshly issued token */
    const char *strip_cookie;     /* cookie name to remove from the forwarded Cookie */
    size_t strip_cookie_len;      /* its length */
    const char *app_cookie;       /* app_cookie name whose value loses its prefix */
    size_t app_cookie_len;        /* its length */
    size_t app_prefix_strip;      /* bytes of prefix + separator to remove */
    uint64_t session_hash;        /* for the distinct-sessions estimate; 0: none */
};

/*
 * Decides the origin of a new request `req` on ctx (its snapshot and load
 * balancer), with the thread's token context `tokens` (bound to the keys of
 * ctx->snap) and the connection's pin, which it sets from the decision when
 * the connection had none. Fills d. Returns 0, or -1 when no origin is usable
 * or ctx has no load balancer (d then names no origin and its reason is
 * REASON_NONE).
 */
int affinity_decide(const struct route_ctx *ctx, struct token_ctx *tokens,
                    struct affinity_pin *pin, const struct h1_request *req,
                    struct affinity_decision *d);

/* After a connect failure to d's origin: whether to try another one, per
 * zero_downtime_failover, updating d (reason, previous origin, cookie). */
bool affinity_failover(const struct route_ctx *ctx, struct affinity_decision *d);

/* Moves d to another origin not tried yet, on the same snapshot (a retry),
 * issuing the cookie a sticky failover or a moved cookie session needs.
 * Returns 0, or -1 when no other origin is usable. */
int affinity_reroute(const struct route_ctx *ctx, struct token_ctx *tokens,
                     struct affinity_decision *d);

/* Moves d, a decision that is not pinned (a new session waiting for room in
 * its pool), to another origin of the same pool, re-issuing the cookie it
 * was to set for the new origin. */
void affinity_move_within_pool(const struct route_ctx *ctx, struct token_ctx *tokens,
                               struct affinity_decision *d, size_t origin);

/* Formats the X-Limpet-Affinity value of d, decided on load balancer lb of s,
 * into buf; returns its length (0: none, e.g. session_affinity "none"). */
size_t affinity_header_value(const struct snapshot *s, long lb,
                             const struct affinity_decision *d, char *buf, size_t size);

#endif
