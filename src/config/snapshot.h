/*
 * snapshot — the immutable, reference-counted view of the configuration that
 * the data path reads, and the per-origin state that outlives snapshots.
 *
 * The control thread (main.c's loop: reloads, health checks, the admin API)
 * builds a new snapshot whenever something changes — a reloaded file, an API
 * edit, an origin going up or down — and publishes it with one atomic pointer
 * into each worker's mailbox, then wakes the workers. A worker adopts the newest snapshot between
 * events; each exchange keeps the snapshot it started with until it ends, so
 * requests in flight finish on the configuration they began with.
 *
 * Origins are identified across snapshots by (pool name, origin name): the
 * `struct origin_shared` of an origin carries what must survive a reload —
 * health, when a drain began — and an `id`, unique among live origins and
 * below SNAPSHOT_MAX_ORIGINS, that workers use to index their own per-origin
 * arrays (idle connections, steering state, counters). When an origin
 * disappears its id may be reused later; `generation` then differs, which
 * tells a worker to forget what it kept under that id.
 *
 * Listening sockets are opened here, on the control thread, one per worker
 * per address (SO_REUSEPORT), so a bind error is reported to whoever asked
 * for the change; an address present before and after a reload keeps its
 * sockets, and its clients never see a refused connection.
 */
#ifndef LIMPET_CONFIG_SNAPSHOT_H
#define LIMPET_CONFIG_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/stats.h"

struct affinity_tables;
struct route_hash;

#define SNAPSHOT_MAX_ORIGINS STATS_MAX_ORIGINS

struct origin_shared {
    uint32_t id;                    /* index into per-worker arrays */
    uint32_t generation;            /* changes each time the id is reused */
    char *pool, *name;              /* identity */
    atomic_uint refs;               /* snapshots holding it */
    atomic_bool healthy;            /* health verdict (monitor and passive checks) */
    atomic_ullong drain_started_ms; /* monotonic ms when draining began; 0: not draining */
    atomic_uint passive_failures;   /* consecutive failures seen by live traffic */
    atomic_ullong retry_after_ms;   /* passive backoff: not chosen before (monotonic ms) */
    bool drain_end_logged;          /* control thread: the end of this drain was logged */
};

struct listen_socket {
    char *address;                  /* as written in the config */
    atomic_uint refs;               /* snapshots holding it */
    unsigned num_fds;
    int *fds;                       /* one listening socket per worker */
};

struct snapshot_pool {
    struct origin_shared **origins; /* [cfg->pools[i].num_origins] */
};

struct snapshot {
    atomic_uint refs;
    uint64_t generation;            /* increases with every publication */
    struct config *cfg;             /* owned */
    struct snapshot_pool *pools;    /* [cfg->num_pools] */
    struct listen_socket **listeners;  /* [cfg->num_listeners] */
    uint32_t *lb_ids;               /* [cfg->num_load_balancers]: stable id per name, < STATS_MAX_LBS */
    struct route_hash *hash;        /* [cfg->num_pools]: Maglev tables (balance/route.h) */
    struct affinity_tables *aff;    /* cookie keys, origin keys, cookie attributes */
};

/* Must be called once before anything else; num_workers fixes the number of
 * listening sockets opened per address. */
void snapshot_system_init(unsigned num_workers);

/*
 * Builds a snapshot for cfg (taking ownership of it on success): resolves
 * origin identities, opens listening sockets for new addresses. On failure
 * returns NULL with a message in err (cfg is left to the caller).
 */
struct snapshot *snapshot_build(struct config *cfg, char *err, size_t err_size);

/* The current snapshot (control thread only; the system holds a reference). */
struct snapshot *snapshot_current(void);
/* Makes s current (the caller's reference passes to the system) and releases
 * the previous one. Workers receive snapshots through their own mailboxes
 * (worker_offer_snapshot), never by reading this pointer. */
void snapshot_set_current(struct snapshot *s);
struct snapshot *snapshot_ref(struct snapshot *s);
void snapshot_release(struct snapshot *s);

/* Usable for new requests: healthy, enabled, weight > 0. */
bool snapshot_origin_usable(const struct snapshot *s, size_t pool, size_t origin);

/* Looks up an origin by pool and origin name in s; returns false when absent. */
bool snapshot_find_origin(const struct snapshot *s, const char *pool, const char *origin,
                          size_t *pool_index, size_t *origin_index);

#endif
