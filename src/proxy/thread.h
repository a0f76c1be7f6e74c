/*
 * thread — the proxy's state on one worker thread.
 *
 * A `struct proxy_thread` is the `app` of a core worker: the worker runs the
 * loop and accepts connections; this holds everything the proxy needs per
 * thread without sharing — the snapshots in use, per-origin run-time state
 * (steering slots, idle origin connections), the buffer cache, slabs of
 * connection records and exchanges, the cookie MAC contexts and the parser
 * scratch.
 *
 * Configuration arrives as snapshots (snapshot/snapshot.h) through the worker's
 * mailbox. Adopting one: start accepting on its new listening sockets, stop
 * on removed ones, build this thread's steering slots for its pools. Each
 * exchange counts as a user of the snapshot it started on (`struct
 * snap_use`, plain counters, no atomics) and routes on it until it ends —
 * retries included — with the steering slots built for that snapshot; a
 * snapshot the thread has moved past is released when its last exchange
 * ends.
 *
 * Per-origin state is indexed by the origin's id (origin_shared.id); when the
 * id's generation changes the slot is reset, so a removed origin's idle
 * connections are never handed to a new one.
 */
#ifndef LIMPET_PROXY_THREAD_H
#define LIMPET_PROXY_THREAD_H

#include <stdbool.h>

#include "balance/steer.h"
#include "snapshot/snapshot.h"
#include "core/buffer.h"
#include "core/slab.h"
#include "core/worker.h"
#include "http/h1.h"

struct client;
struct origin_conn;
struct transport;
struct ssl_session_st;
struct token_ctx;
struct token_keys;

/* Per-thread state of one origin, indexed by origin id. */
struct origin_rt {
    uint32_t generation;           /* origin_shared.generation it belongs to */
    struct steer_slot steer;       /* round-robin weight, requests in flight */
    struct origin_conn *idle;      /* idle keep-alive connections (LIFO) */
    unsigned num_idle;
    struct ssl_session_st *tls_session;  /* origin tls: the last session, for resumption */
    uint64_t tls_session_of;       /* the tls_client id the session was made with */
    uint64_t tls_logged_ms;        /* the last TLS failure logged (one a second at most) */
};

/* How many of this thread's exchanges use a snapshot, and this thread's
 * steering slots for its pools. */
struct snap_use {
    struct snapshot *snap;         /* one reference held */
    unsigned users;                /* exchanges started on it and not ended */
    struct steer_slot ***pool_slots;  /* [pool][origin]: slots of this thread */
    uint32_t *pool_cursor;         /* [pool]: this thread's place in each pool's order */
    struct snap_use *next;         /* retired list */
};

struct proxy_thread {
    struct worker *w;              /* the core worker this state belongs to */
    struct snap_use *cur;          /* the snapshot new exchanges use */
    struct snap_use *retired;      /* older snapshots still in use */
    struct origin_rt *origins;     /* [SNAPSHOT_MAX_ORIGINS] */
    bool *candidate_scratch;       /* sized for the largest pool of any snapshot in use */
    size_t candidate_cap;
    struct buf_pool bufs;          /* buffer cache, trimmed by trim_timer */
    struct timer trim_timer;
    struct slab client_slab;       /* struct client records */
    struct slab exchange_slab;     /* struct exchange, held only while a request is open */
    struct slab origin_conn_slab;  /* struct origin_conn */
    struct client *clients;        /* every open client connection */
    struct client *idle_head, *idle_tail;  /* connections between requests, longest idle first */
    struct exchange *wait_head, *wait_tail;  /* exchanges waiting for a max_connections slot */
    struct timer queue_timer;      /* looks at them again (slots free on any thread) */
    unsigned max_idle_per_origin;  /* idle origin connections kept per origin */
    struct token_ctx *token_ctx;   /* cookie MAC contexts for cur's keys */
    const struct token_keys *token_keys;  /* the keys token_ctx is bound to */
    struct h1_request req;         /* parser scratch: heads are handled synchronously */
    struct h1_response resp;
    struct h1_semantics sem;
};

/* Creates a worker whose owner is the proxy, on snapshot s (taking a
 * reference). Returns NULL after logging. */
struct worker *proxy_worker_new(unsigned id, unsigned num_workers, struct snapshot *s,
                                int access_log_fd);
/* Thread-safe: offers a newer snapshot (the worker takes its own reference). */
void proxy_worker_offer_snapshot(struct worker *w, struct snapshot *s);

static inline struct proxy_thread *proxy_thread_of(const struct worker *w)
{
    return w->app;
}

/* The snapshot new exchanges use, with a user counted; pair with snap_use_put. */
struct snap_use *proxy_snapshot_get(struct proxy_thread *pt);
void proxy_snapshot_put(struct proxy_thread *pt, struct snap_use *use);

/* The per-thread state of an origin of a snapshot, reset if its id was
 * reused by a newer origin; NULL when the origin is older than the one that
 * holds its id now (it was removed: nothing of it may be used). */
struct origin_rt *proxy_origin_rt(struct proxy_thread *pt, const struct origin_shared *os);

/* The listener l accepts for, as an index into s's listeners; -1 when s has
 * it no more. */
long proxy_listener_index(const struct proxy_thread *pt, const struct snapshot *s,
                          const struct listener *l);
/* Sets up the transport of a connection accepted on l: TLS when its listener
 * has tls. Returns 0, or -1 when out of memory. */
int proxy_transport_accept(struct proxy_thread *pt, struct listener *l, struct transport *tp,
                           int fd);
/* Starts TLS on a new connection to origin (pool, origin) of s when the
 * origin has tls (resuming the thread's last session with it). 0 or -1. */
int proxy_origin_tls_start(struct proxy_thread *pt, const struct snapshot *s, size_t pool,
                           size_t origin, struct origin_conn *oc, int fd);
/* Drives the handshake of oc: 1 done, -EINPROGRESS under way (readiness
 * flags set), -EPROTO failed (logged with the origin and the reason). */
int proxy_origin_tls_handshake(struct proxy_thread *pt, struct origin_conn *oc);
/* Keeps oc's TLS session for the next connection to its origin. */
void proxy_origin_tls_keep_session(struct proxy_thread *pt, struct origin_conn *oc);

#endif
