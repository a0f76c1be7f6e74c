/*
 * route — picks the pool and origin of a request (SPEC §2 steering, §5
 * passive checks), from a narrow input: a `struct route_ctx`.
 *
 * A route_ctx says everything a routing decision may look at: the snapshot
 * the exchange started on and its load balancer, the client address, the
 * loop's clock, and the calling thread's steering slots, scratch, generator
 * and counters. The caller (the proxy, through the affinity layer) fills one
 * in for each call; routing never sees a socket, a buffer or a worker, and
 * never changes snapshot: a retry routes on the snapshot its exchange started
 * with, which the exchange keeps referenced until it ends, so every pool and
 * origin index (in `struct route_tried`, in a decision) stays valid for it.
 *
 * Layering: proxy → affinity → route → balance (steer, Maglev). This module
 * includes nothing from affinity/, proxy/ or the worker; affinity calls it,
 * never the other way round.
 *
 * It also owns each snapshot's per-pool steering tables (`struct route_hash`:
 * a pair of Maglev tables, the round-robin order, the origins' name hashes):
 * built on the control thread with the snapshot, immutable afterwards, read
 * by steering here and by the hashed affinity modes. Steering first looks at
 * the one origin its table names and scans the pool only when that origin
 * cannot take the request (docs/design.md).
 */
#ifndef LIMPET_BALANCE_ROUTE_H
#define LIMPET_BALANCE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance/maglev.h"
#include "balance/steer.h"
#include "core/stats.h"

struct snapshot;
struct origin_stats;
struct origin_shared;

#define ROUTE_MAX_POOLS 64        /* pools in one steering order */
#define ROUTE_MAX_ATTEMPTS 8      /* origins tried for one request */

/* What a routing decision may look at. Filled by the caller per call; read only. */
struct route_ctx {
    const struct snapshot *snap;  /* the snapshot the exchange started on (held for its life) */
    long lb;                      /* load balancer index in snap; < 0: none */
    uint8_t client_family;        /* 4 or 6 */
    uint8_t client_addr[16];      /* client address bytes (4 used for IPv4) */
    uint64_t now_ms;              /* the loop's monotonic clock (clock_ms) */
    struct steer_slot ***pool_slots;  /* this thread's steering slots for snap: [pool][origin] */
    uint32_t *pool_cursor;        /* this thread's place in each pool's order: [pool]
                                   * (route_cursors_carry) */
    bool *candidates;             /* scratch, at least the largest pool of snap */
    uint64_t *rng;                /* this thread's generator (steer_random) */
    struct origin_stats *origin_stats;  /* this thread's counters, by origin id */
};

/* The origins already tried for one request (indexes in the ctx's snapshot). */
struct route_tried {
    struct {
        uint16_t pool, origin;    /* a tried origin */
    } at[ROUTE_MAX_ATTEMPTS];     /* in the order they were chosen */
    unsigned n;                   /* entries used */
};

/* A pool's consistent-hash tables, part of a snapshot (s->hash[pool]). */
struct route_hash {
    struct maglev usable;         /* new sessions: healthy, enabled, weight > 0 */
    struct maglev serving;        /* also draining origins still within drain_duration */
    uint64_t *name_hash;          /* [num_origins]: hash of each origin's name (second choice) */
    bool equal_weights;           /* every origin of the pool has the same weight */
    uint32_t *order;              /* round robin and random: the usable origins, each as
                                   * often as its weight (reduced by their gcd), interleaved */
    uint32_t order_len;           /* 0: none (nothing usable, or over ROUTE_ORDER_MAX) */
};

#define ROUTE_ORDER_MAX 65536     /* longest order built (weights reduced by their gcd) */

/* Sets a thread's cursors for s ([cfg->num_pools]): where it was in the pool
 * of the same name in its previous snapshot `prev` (cursors `prev_cursors`),
 * so a reload or a health flip does not send the next session back to the
 * pool's first origin; a new pool (or no prev) starts at its beginning. */
void route_cursors_carry(const struct snapshot *s, uint32_t *cursors, const struct snapshot *prev,
                         const uint32_t *prev_cursors);

/* Builds the tables of every pool of s (s->cfg and s->pools set), on the
 * control thread. Returns the [cfg->num_pools] array, or NULL when out of memory. */
struct route_hash *route_hash_build(const struct snapshot *s);
/* Frees what route_hash_build returned (NULL is fine). */
void route_hash_free(struct route_hash *h, const struct snapshot *s);

/* The client address bytes consistent hashing uses (IPv6: its /64); returns their count. */
size_t route_client_key(const struct route_ctx *ctx, uint8_t out[16]);

/* Usable for a new request: healthy, enabled, weight > 0, not in passive backoff. */
bool route_origin_usable(const struct route_ctx *ctx, size_t pool, size_t origin);

/*
 * The pools a new session of ctx's load balancer may use, in the order its
 * steering_policy prefers (region pools for geo, a weighted draw for random —
 * by key_hash when given, so a hashed session keeps its pool — then
 * default_pools), the fallback pool last (*fallback_last). Returns how many
 * indexes were written to pools (at most max).
 */
size_t route_pool_order(const struct route_ctx *ctx, long *pools, size_t max,
                        bool *fallback_last, const uint64_t *key_hash);

/*
 * Chooses a pool and origin among the usable ones not in `tried`, by the
 * pool order and each pool's origin_steering, and adds it to `tried`.
 * Within a pool, origins at their max_connections are passed over while
 * another has room (when none has, one of them is chosen: the request then
 * waits for it), and an origin within its slow_start takes part with a
 * probability growing linearly from near 0 to 1 over that time.
 * Returns 0 with *pool, *origin set (and *fallback true when it came from the
 * fallback pool), or -1 when nothing is left: no usable origin, ROUTE_MAX_ATTEMPTS
 * tried already, or no load balancer.
 */
int route_choose(const struct route_ctx *ctx, struct route_tried *tried, long *pool,
                 long *origin, bool *fallback);

/* Whether route_choose would find an origin not in `tried` (nothing chosen,
 * no steering state moved). */
bool route_any_left(const struct route_ctx *ctx, const struct route_tried *tried);

/*
 * For a new session waiting in pool's queue: an origin of the pool with a
 * max_connections slot free now, usable and not tried (`current`, the one it
 * waits for, excepted), by the pool's steering; -1 when none.
 */
long route_choose_with_room(const struct route_ctx *ctx, const struct route_tried *tried,
                            size_t pool, size_t current);

/* Whether origin (pool, origin) of s is at its max_connections (0: never). */
bool route_origin_full(const struct snapshot *s, size_t pool, size_t origin);

/* Takes one of origin (pool, origin)'s max_connections slots (an atomic
 * count shared by every worker): true when taken (*held then names the
 * origin to give it back to; NULL for an unlimited origin, which counts
 * nothing), false when it is at its limit. */
bool route_slot_take(const struct snapshot *s, size_t pool, size_t origin,
                     struct origin_shared **held);
/* Gives a slot back (NULL: nothing held). */
void route_slot_release(struct origin_shared *held);

/* Adds (pool, origin) to `tried` unless it is full; returns false when full. */
bool route_tried_add(struct route_tried *tried, size_t pool, size_t origin);

/* Without a monitor: consecutive failures other than refused connects that
 * take an origin out (the default `retries` of a monitor). */
#define ROUTE_PASSIVE_RETRIES 2

/*
 * Passive health of origin (pool, origin) of ctx's snapshot (SPEC §5):
 *  - route_origin_failed: a failed connect (err: errno, either sign) counts a
 *    failure and starts the origin's backoff at once;
 *  - route_origin_passive_failure: a reset/close before a response or a
 *    response timeout (or a 5xx, for route_origin_answered) counts a failure;
 *    an origin without a monitor is taken out (backoff, logged with the kinds)
 *    after ROUTE_PASSIVE_RETRIES in a row, a monitored one by health.c at
 *    its monitor's retries;
 *  - route_origin_answered: a complete response with `status` to a request
 *    sent when the origin's passive_epoch was `epoch` (origin_shared): a 5xx counts as a failure when the pool's passive.http_5xx is
 *    set; anything else ends the streak (and the backoff, "reachable again")
 *    unless a failure was recorded since the request was sent.
 */
void route_origin_failed(const struct route_ctx *ctx, size_t pool, size_t origin, int err);
void route_origin_passive_failure(const struct route_ctx *ctx, size_t pool, size_t origin,
                                  enum passive_kind kind);
void route_origin_answered(const struct route_ctx *ctx, size_t pool, size_t origin, int status,
                           unsigned epoch);

/* "3 failures seen by live traffic (2 timeouts, 1 reset)": the origin's
 * current streak, into buf; returns its length. */
struct origin_shared;
size_t route_passive_describe(const struct origin_shared *os, char *buf, size_t size);

#endif
