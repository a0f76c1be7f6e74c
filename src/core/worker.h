/*
 * worker — one thread, one event loop, and everything its connections need
 * without sharing: buffer and object free lists, per-origin run-time state
 * (steering slots, idle origin connections), the access-log buffer, a
 * random generator and parser scratch space.
 *
 * Configuration arrives as snapshots (config/snapshot.h). The control thread
 * puts a referenced snapshot in the worker's mailbox and wakes it; the worker
 * adopts it between events: it starts accepting on new listening sockets,
 * stops on removed ones, and rebuilds its per-pool views. Each exchange
 * counts as a user of the snapshot it started on (`struct snap_use`, plain
 * counters, no atomics); a snapshot the worker has moved past is released
 * when its last exchange ends.
 *
 * Per-origin state is indexed by the origin's id (origin_shared.id); when the
 * id's generation changes the slot is reset, so a removed origin's idle
 * connections are never handed to a new one.
 *
 * A stopping worker closes its listeners and idle connections, lets requests
 * in flight finish, and leaves its loop when no client connection remains or
 * `timeouts.grace` has passed.
 */
#ifndef LIMPET_CORE_WORKER_H
#define LIMPET_CORE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "balance/steer.h"
#include "config/snapshot.h"
#include "core/buffer.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/stats.h"
#include "http/h1.h"

struct client;
struct origin_conn;
struct token_ctx;
struct token_keys;

struct listener {
    struct io_watch io;            /* the listening socket (fd -1 once closed) */
    struct worker *worker;
    long lb_index;                 /* load balancer in the current snapshot; -1: none */
    bool paused;                   /* not accepting: at max connections */
    struct listener *next;
};

/* Per-thread state of one origin, indexed by origin id. */
struct origin_rt {
    uint32_t generation;           /* origin_shared.generation it belongs to */
    struct steer_slot steer;       /* round-robin weight, requests in flight */
    struct origin_conn *idle;      /* idle keep-alive connections (LIFO) */
    unsigned num_idle;
};

/* How many of this worker's exchanges use a snapshot. */
struct snap_use {
    struct snapshot *snap;         /* one reference held */
    unsigned users;                /* exchanges started on it and not ended */
    struct snap_use *next;         /* retired list */
    struct steer_slot ***pool_slots;  /* per pool of snap: this worker's slot of each origin */
};

struct worker {
    unsigned id;
    pthread_t thread;
    struct loop loop;
    struct snap_use *cur;          /* the snapshot new exchanges use */
    struct snap_use *retired;      /* older snapshots still in use */
    _Atomic(struct snapshot *) mailbox;  /* newest snapshot offered, not adopted yet */
    struct listener *listeners;    /* open and closed listeners */
    struct origin_rt *origins;     /* [SNAPSHOT_MAX_ORIGINS] */
    bool *candidate_scratch;       /* sized for the largest pool of any adopted snapshot */
    size_t candidate_cap;
    struct buf_pool bufs;
    struct client *free_clients;   /* free list of client objects */
    unsigned num_free_clients;
    struct origin_conn *free_origin_conns;
    struct client *clients;        /* every open client connection */
    unsigned num_clients;
    unsigned max_clients;          /* this worker's share of max_connections */
    unsigned num_workers;
    unsigned max_idle_per_origin;  /* idle origin connections kept per origin */
    uint64_t rng;
    struct token_ctx *token_ctx;   /* cookie MAC contexts for cur's keys */
    const struct token_keys *token_keys;  /* the keys token_ctx is bound to */
    struct h1_request req;         /* parser scratch: heads are handled synchronously */
    struct h1_response resp;
    struct h1_semantics sem;
    struct access_log *access_log;
    struct timer log_flush_timer;
    struct worker_stats stats;     /* written by this worker only; read by the admin API */
    atomic_bool stop_requested;    /* set by worker_stop() from another thread */
    bool stopping;                 /* the loop has seen stop_requested */
    struct timer grace_timer;
    struct timer accept_resume_timer; /* resumes accepting after EMFILE and friends */
    bool accept_starved;           /* accept failed for lack of descriptors or memory */
};

/* Creates a worker on snapshot s (taking a reference). Returns NULL after logging. */
struct worker *worker_new(unsigned id, unsigned num_workers, struct snapshot *s,
                          int access_log_fd);
int worker_start(struct worker *w);
/* Thread-safe: offers a newer snapshot (the worker takes its own reference). */
void worker_offer_snapshot(struct worker *w, struct snapshot *s);
void worker_stop(struct worker *w);   /* thread-safe */
void worker_join_and_free(struct worker *w);
/* Frees a worker whose thread never started. */
void worker_free(struct worker *w);

/* The snapshot new exchanges use, with a user counted; pair with worker_snapshot_put. */
struct snap_use *worker_snapshot_get(struct worker *w);
void worker_snapshot_put(struct worker *w, struct snap_use *use);

/* The per-thread state of an origin of snapshot s, reset if its id was reused. */
struct origin_rt *worker_origin_rt(struct worker *w, const struct origin_shared *os);

/* Called by connections when the worker's connection count drops. */
void worker_client_closed(struct worker *w);
/* Asks for an access-log flush soon (arms the flush timer). */
void worker_log_written(struct worker *w, int flush_now);

#endif
