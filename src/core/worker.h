/*
 * worker — one thread, one event loop, its listeners and everything its
 * connections need without sharing: buffer and object free lists, per-origin
 * run-time state (steering slots, idle origin connections, passive failure
 * backoff), the access-log buffer and a random generator.
 *
 * The main thread creates workers (opening their SO_REUSEPORT listeners, so
 * bind errors are reported before anything runs), starts their threads, and
 * later asks them to stop with worker_stop() (thread-safe: a flag and a wake).
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
#include "config/config.h"
#include "core/buffer.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/h1.h"

struct client;
struct origin_conn;

struct listener {
    struct io_watch io;            /* the listening socket */
    const struct cfg_listener *cfg;
    struct worker *worker;
    bool paused;                   /* not accepting: at max connections */
};

/* Per-thread state of one origin. */
struct origin_rt {
    struct origin_conn *idle;      /* idle keep-alive connections (LIFO) */
    unsigned num_idle;
    unsigned connect_failures;     /* consecutive, for the passive backoff */
    uint64_t retry_after_ms;       /* not chosen before this time after failures */
};

struct pool_rt {
    struct origin_rt *origins;     /* one per config origin */
    struct steer_slot *slots;      /* steering state, one per config origin */
};

struct worker {
    unsigned id;
    pthread_t thread;
    struct loop loop;
    const struct config *cfg;
    struct listener *listeners;    /* one per config listener */
    size_t num_listeners;
    struct pool_rt *pools;         /* one per config pool */
    bool *candidate_scratch;       /* sized for the largest pool */
    struct buf_pool bufs;
    struct client *free_clients;   /* free list of client objects */
    struct origin_conn *free_origin_conns;
    struct client *clients;        /* every open client connection */
    unsigned num_clients;
    unsigned max_clients;          /* this worker's share of max_connections */
    unsigned max_idle_per_origin;  /* idle origin connections kept per origin */
    uint64_t rng;
    struct h1_request req;         /* parser scratch: heads are handled synchronously */
    struct h1_response resp;
    struct h1_semantics sem;
    struct access_log *access_log;
    struct timer log_flush_timer;
    atomic_bool stop_requested;    /* set by worker_stop() from another thread */
    bool stopping;                 /* the loop has seen stop_requested */
    struct timer grace_timer;
    struct timer accept_resume_timer; /* resumes accepting after EMFILE and friends */
};

/* Creates a worker for cfg and opens its listeners. Returns NULL after logging. */
struct worker *worker_new(unsigned id, const struct config *cfg, int access_log_fd,
                          unsigned max_clients);
int worker_start(struct worker *w);
void worker_stop(struct worker *w);   /* thread-safe */
void worker_join_and_free(struct worker *w);
/* Frees a worker whose thread never started. */
void worker_free(struct worker *w);

/* Called by connections when the worker's connection count drops. */
void worker_client_closed(struct worker *w);
/* Asks for an access-log flush soon (arms the flush timer). */
void worker_log_written(struct worker *w, int flush_now);

#endif
