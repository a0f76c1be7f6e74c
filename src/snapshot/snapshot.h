/*
 * snapshot — the immutable, reference-counted view of the configuration that
 * the data path reads, and the per-origin state that outlives snapshots.
 *
 * The control thread builds a new snapshot whenever something changes and
 * publishes it to every worker, which adopts it between events; each exchange
 * keeps the snapshot it started with until it ends, so requests in flight
 * finish on the configuration they began with (control/snapshot_build.h
 * builds and publishes them; this file is what the data path may read).
 *
 * A snapshot has two layers:
 *  - its base (`struct snapshot_base`): the validated configuration, origin
 *    identities, listening sockets, cookie keys and attributes — rebuilt only
 *    when the configuration changes (a reload or an API edit);
 *  - the routing tables over the origins usable now (Maglev tables, `hash`)
 *    — rebuilt on a health flip too, sharing the base by reference, without
 *    validating the configuration again or reading any file.
 * For brevity the snapshot repeats its base's pointers (cfg, pools, …).
 *
 * Origins are identified across snapshots by (pool name, origin name): the
 * `struct origin_shared` of an origin carries what must survive a reload —
 * health, when a drain began — and an `id`, unique among live origins and
 * below SNAPSHOT_MAX_ORIGINS, that workers use to index their own per-origin
 * arrays. When an origin disappears its id may be reused later; `generation`
 * then differs, which tells a worker to forget what it kept under that id.
 * Pools likewise have a `struct pool_shared` (keyed by pool name): how many
 * requests wait in the pool's queue, on all workers.
 *
 * Whoever builds a layer sets its free callback, so releasing the last
 * reference (on any thread) frees what the builder made without this layer
 * knowing the layers above it.
 */
#ifndef LIMPET_SNAPSHOT_SNAPSHOT_H
#define LIMPET_SNAPSHOT_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/stats.h"
#include "snapshot/settings.h"

struct affinity_tables;
struct route_hash;
struct ssl_ctx_st;
struct tls_client;
struct tls_counters;

#define SNAPSHOT_MAX_ORIGINS STATS_MAX_ORIGINS

struct origin_shared {
    uint32_t id;                    /* index into per-worker arrays */
    uint32_t generation;            /* changes each time the id is reused */
    char *pool, *name;              /* identity */
    atomic_uint refs;               /* snapshot bases holding it */
    atomic_bool healthy;            /* health verdict (monitor and passive checks) */
    atomic_ullong drain_started_ms; /* monotonic ms when draining began; 0: not draining */
    atomic_uint passive_failures;   /* consecutive failures seen by live traffic */
    atomic_ullong retry_after_ms;   /* passive backoff: not chosen before (monotonic ms) */
    /* Passive checks (balance/route.c; zero from calloc): */
    atomic_uint passive_streak[PASSIVE_KINDS];   /* passive_failures by kind */
    atomic_ullong passive_total[PASSIVE_KINDS];  /* every failure since start, by kind */
    atomic_uint passive_epoch;      /* + 1 at every failure: only an answer to a request
                                     * sent after the last one is a recovery */
    atomic_bool passive_out;        /* no monitor: live traffic took it out (logged) */
    atomic_ullong passive_outs, passive_backs;  /* no monitor: times out / back (metrics) */
    bool drain_end_logged;          /* control thread: the end of this drain was logged */
    atomic_uint in_flight;          /* requests holding one of its max_connections slots */
    atomic_ullong up_since_ms;      /* monotonic ms it came back (up, or enabled); 0: never
                                     * came back (slow_start ramps from then) */
    int last_state;                 /* control thread: configured state of the last base
                                     * built (-1: none yet) */
};

/* What outlives snapshots for a pool, keyed by its name. */
struct pool_shared {
    char *name;
    atomic_uint refs;               /* snapshot bases holding it */
    atomic_uint queued;             /* requests waiting in its queue, all workers */
    atomic_ullong queue_full;       /* requests refused (503): the queue was full */
    atomic_ullong queue_timeouts;   /* requests refused (503): waited queue.timeout */
};

struct listen_socket {
    char *address;                  /* as written in the config */
    atomic_uint refs;               /* snapshot bases holding it */
    unsigned num_fds;               /* at least one per worker */
    int *fds;                       /* listening sockets: fds[j] is watched by worker
                                       j % workers (more than one per worker only when
                                       taken over from a process that ran more) */
};

struct snapshot_pool {
    struct origin_shared **origins; /* [cfg->pools[i].num_origins] */
    struct pool_shared *shared;     /* the pool's queue count */
    struct tls_client **tls;        /* [num_origins]: TLS to the origin (origin tls), NULL: plain;
                                     * NULL altogether when no origin of the pool has tls */
};

/* What a listener's connections use beside its socket (control/tls_build.c). */
struct snapshot_listener {
    struct ssl_ctx_st *tls;         /* TLS server context (core/tls.h), NULL: plain HTTP */
    struct tls_counters *tls_stats; /* [workers]: handshake counters of this address */
    char *hsts;                     /* "Strict-Transport-Security: max-age=N\r\n", or NULL */
    char https_port[8];             /* redirect_to_https: ":PORT" of the load balancer's
                                     * TLS listener ("" when it is 443 or there is none) */
};

/* What only a configuration change rebuilds. */
struct snapshot_base {
    atomic_uint refs;               /* snapshots sharing it */
    struct config *cfg;             /* owned */
    struct snapshot_pool *pools;    /* [cfg->num_pools] */
    struct listen_socket **listeners;  /* [cfg->num_listeners] */
    struct snapshot_listener *listen;  /* [cfg->num_listeners]: TLS context, HSTS, redirect */
    uint32_t *lb_ids;               /* [cfg->num_load_balancers]: stable id per name, < STATS_MAX_LBS */
    struct affinity_tables *aff;    /* cookie keys, origin keys, cookie attributes */
    void (*free_cb)(struct snapshot_base *b);  /* frees it all (set by the builder) */
};

struct snapshot {
    atomic_uint refs;
    uint64_t generation;            /* increases with every publication */
    struct snapshot_base *base;     /* one reference held */
    struct config *cfg;             /* = base->cfg */
    struct snapshot_pool *pools;    /* = base->pools */
    struct listen_socket **listeners;  /* = base->listeners */
    struct snapshot_listener *listen;  /* = base->listen */
    uint32_t *lb_ids;               /* = base->lb_ids */
    struct affinity_tables *aff;    /* = base->aff */
    struct route_hash *hash;        /* [cfg->num_pools]: Maglev tables over usable origins */
    void (*free_cb)(struct snapshot *s);  /* frees the routing layer (set by the builder) */
};

struct snapshot *snapshot_ref(struct snapshot *s);
/* Drops a reference; the last one frees the snapshot (and its base when it
 * was the base's last user). Any thread. */
void snapshot_release(struct snapshot *s);
struct snapshot_base *snapshot_base_ref(struct snapshot_base *b);
void snapshot_base_release(struct snapshot_base *b);

/* Usable for new requests: healthy, enabled, weight > 0. */
bool snapshot_origin_usable(const struct snapshot *s, size_t pool, size_t origin);
/* Healthy as reported (API, dashboard, metrics): its monitor says so, or, in a
 * pool without a monitor, live traffic has not taken it out (passive checks). */
bool snapshot_origin_healthy(const struct snapshot *s, size_t pool, size_t origin);

/* Looks up an origin by pool and origin name in s; returns false when absent. */
bool snapshot_find_origin(const struct snapshot *s, const char *pool, const char *origin,
                          size_t *pool_index, size_t *origin_index);

#endif
