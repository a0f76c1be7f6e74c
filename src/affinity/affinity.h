/*
 * affinity — which origin a request's session belongs to (SPEC §3).
 *
 * Two halves:
 *  - affinity_tables_build() runs on the control thread when a snapshot is
 *    built: it loads the cookie keys, derives every origin's cookie key and
 *    app_cookie prefix, builds the Maglev tables of each pool (one over the
 *    usable origins for new sessions, one that also keeps draining origins
 *    for sessions already there) and the Set-Cookie attribute string of
 *    each load balancer. Everything is immutable afterwards.
 *  - affinity_decide() runs per request on a worker: it finds the session's
 *    key (limpet's cookie, the client address, header values, the
 *    application's cookie), maps it to a pinned origin, checks that origin is
 *    still usable (or draining within drain_duration), and otherwise picks a
 *    new one by pool steering or consistent hash. The decision says what to
 *    tell the origin (X-Limpet-Affinity), what to change in the forwarded
 *    Cookie header and which Set-Cookie to add to the response. It
 *    allocates nothing.
 */
#ifndef LIMPET_AFFINITY_AFFINITY_H
#define LIMPET_AFFINITY_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "affinity/token.h"
#include "balance/maglev.h"
#include "core/stats.h"

struct snapshot;
struct client;
struct h1_request;

#define APP_PREFIX_LEN 8          /* characters of an app_cookie prefix */

struct affinity_origin_key {
    uint64_t key;                 /* cookie origin key (for one signing key) */
    uint16_t pool, origin;
};

struct affinity_pool {
    struct maglev usable;         /* new sessions: healthy, enabled, weight > 0 */
    struct maglev serving;        /* also draining origins still within drain_duration */
    char (*app_prefix)[APP_PREFIX_LEN + 1];  /* [key * num_origins + origin]; key 0 signs */
};

struct affinity_lb {
    char *cookie_attrs;           /* "; Path=/; Max-Age=…; HttpOnly; SameSite=Lax[; Secure]" */
};

struct affinity_tables {
    struct token_keys *keys;      /* owned unless it is the process's random key */
    bool keys_owned;
    unsigned num_keys;
    struct affinity_origin_key *by_key;  /* sorted by key: every (signing key, origin) */
    size_t num_by_key;
    struct affinity_pool *pools;  /* [cfg->num_pools] */
    struct affinity_lb *lbs;      /* [cfg->num_load_balancers] */
};

/* Builds the tables for s (s->cfg and s->pools must be set). Returns NULL with
 * err set on failure (e.g. an unreadable secret file). */
struct affinity_tables *affinity_tables_build(const struct snapshot *s, char *err,
                                              size_t err_size);
void affinity_tables_free(struct affinity_tables *t, const struct snapshot *s);

/* What a routing decision asks the proxy to do beside choosing the origin. */
struct affinity_decision {
    enum affinity_reason reason;
    bool pinned;                  /* the session already belonged to the chosen origin */
    long previous_pool, previous_origin;  /* origin the session moved from, or -1 */
    bool set_cookie;              /* send limpet's cookie (value in cookie_value) */
    char cookie_value[TOKEN_TEXT_MAX + 1];
    struct token token;           /* the session's token (valid when has_token) */
    bool has_token;
    const char *strip_cookie;     /* cookie name to remove from the forwarded Cookie */
    size_t strip_cookie_len;
    const char *app_cookie;       /* app_cookie name whose value loses its prefix */
    size_t app_cookie_len;
    size_t app_prefix_strip;      /* bytes of prefix + separator to remove */
    uint64_t session_hash;        /* for the distinct-sessions estimate; 0: none */
};

/*
 * Decides the origin of a new exchange on client c (whose exchange has its
 * snapshot and load balancer set, and whose parsed request is req). Sets
 * ex->pool/origin and fills d. Returns 0, or -1 when no origin is usable.
 */
int affinity_decide(struct client *c, const struct h1_request *req, struct affinity_decision *d);

/* After a connect failure to the decided origin: whether to try another one,
 * per zero_downtime_failover, updating d (reason, cookie). */
bool affinity_failover(struct client *c, struct affinity_decision *d);

/* After a retry chose another origin (ex->pool/origin): issues the cookie a
 * sticky failover or a moved cookie session needs. */
void affinity_rerouted(struct client *c, struct affinity_decision *d);

/* Issues limpet's cookie for the exchange's origin (keeping the session id
 * and start of d->token when d->has_token). */
void affinity_issue_cookie(struct client *c, struct affinity_decision *d);

/* Formats the X-Limpet-Affinity value for d into buf; returns its length (0: none). */
size_t affinity_header_value(const struct client *c, const struct affinity_decision *d,
                             char *buf, size_t size);

/* The client address bytes that consistent hashing uses (IPv6: its /64). */
size_t affinity_client_key(const struct client *c, uint8_t out[16]);

#endif
