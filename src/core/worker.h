/*
 * worker — one thread, one event loop, its listening sockets and counters.
 *
 * The worker knows nothing of HTTP or of configuration snapshots: whoever
 * creates it (the proxy) passes a table of callbacks and its own per-thread
 * state (`app`). The worker accepts connections on the listening sockets the
 * owner registers and hands each accepted socket to the owner's accept
 * callback. At its share of the connection limit it asks the owner to
 * reclaim a connection (close one idle between requests, the longest idle
 * first) and accepts in its place; when the owner has none it pauses
 * accepting until a connection closes or becomes idle (the owner reports
 * connections opened, closed and gone idle).
 *
 * Another thread talks to a worker in two ways only: worker_offer() puts an
 * object (a snapshot, for the proxy) in a one-slot mailbox and wakes the
 * loop, which hands it to the owner's adopt callback between events; and
 * worker_stop() asks it to stop. A stopping worker closes its listeners,
 * tells the owner (which closes what is idle), and leaves its loop when no
 * connection remains or its grace period has passed.
 *
 * worker_retire() is the gentler stop of a process whose listening sockets
 * another process has taken over (an upgrade): the worker stops accepting at
 * once but keeps serving the connections it holds, each closed after its
 * next response (the owner answers with "Connection: close" while
 * `retiring`), so a keep-alive client is never cut off between two requests.
 * Half the grace period later the connections still idle are closed as by
 * worker_stop(), and the rest have the other half to finish.
 */
#ifndef LIMPET_CORE_WORKER_H
#define LIMPET_CORE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/stats.h"

struct worker;

struct listener {
    struct io_watch io;            /* the listening socket (fd -1 once closed) */
    struct worker *worker;
    long tag;                      /* the owner's: what connections accepted here serve */
    bool paused;                   /* not accepting: at max connections or out of fds */
    struct listener *next;
};

/* What the owner of a worker does on its thread. */
struct worker_ops {
    /* An accepted, non-blocking socket (the owner closes it on failure). */
    void (*accept_cb)(struct listener *l, int fd, const struct sockaddr *peer);
    /* An object offered with worker_offer(); its reference passes to the owner. */
    void (*adopt_cb)(struct worker *w, void *offered);
    /* Releases an offered object the worker never adopted (any thread). */
    void (*discard_cb)(void *offered);
    /* Stopping: close idle connections; the rest close after their response. */
    void (*stop_cb)(struct worker *w);
    /* Retiring: keep every connection, but none is kept alive after its
     * current response (optional). */
    void (*retire_cb)(struct worker *w);
    /* At the connection limit, with a client waiting to be accepted: close the
     * connection idle the longest to make room. Returns false when there is
     * none (accepting then pauses). May be NULL. */
    bool (*reclaim_cb)(struct worker *w);
    /* The loop is over (or never ran): free every connection and the app state. */
    void (*fini_cb)(struct worker *w);
};

struct worker {
    unsigned id;
    unsigned num_workers;
    pthread_t thread;
    struct loop loop;
    const struct worker_ops *ops;
    void *app;                     /* the owner's per-thread state */
    _Atomic(void *) mailbox;       /* newest object offered, not adopted yet */
    struct listener *listeners;    /* open and closed listeners */
    unsigned num_conns;            /* connections the owner holds open */
    unsigned max_conns;            /* this worker's share of max_connections */
    uint64_t grace_ms;             /* how long a stop waits for connections */
    uint64_t rng;                  /* this thread's random generator state */
    struct access_log *access_log;
    struct timer log_flush_timer;
    struct worker_stats stats;     /* written by this worker only; read by the admin API */
    atomic_bool stop_requested;    /* set by worker_stop() from another thread */
    atomic_bool retire_requested;  /* set by worker_retire() from another thread */
    bool stopping;                 /* the loop has seen stop_requested (or retiring ran out) */
    bool retiring;                 /* not accepting; connections close after their response */
    struct timer grace_timer;
    struct timer retire_timer;     /* retiring → stopping, half the grace period on */
    struct timer accept_resume_timer; /* resumes accepting after EMFILE and friends */
    bool accept_starved;           /* accept failed for lack of descriptors or memory */
};

/* Creates a worker (not started). Returns NULL after logging. */
struct worker *worker_new(unsigned id, unsigned num_workers, const struct worker_ops *ops,
                          void *app, int access_log_fd);
int worker_start(struct worker *w);
/* Thread-safe: offers an object to the owner's adopt callback (replacing
 * one offered before and not adopted yet, which is discarded). */
void worker_offer(struct worker *w, void *offered);
void worker_stop(struct worker *w);   /* thread-safe */
void worker_retire(struct worker *w); /* thread-safe; see above */
void worker_join_and_free(struct worker *w);
/* Frees a worker whose thread never started (or has ended). */
void worker_free(struct worker *w);

/* ---- for the owner, on the worker's thread ---- */

/* Starts accepting on fd (owned by the caller) for `tag`. Returns NULL on failure. */
struct listener *worker_listen(struct worker *w, int fd, long tag);
/* Stops accepting on l (the listener stays in the list, closed, for its tag). */
void worker_unlisten(struct worker *w, struct listener *l);
/* Sets the connection limit; accepting resumes when it was raised. */
void worker_set_max_conns(struct worker *w, unsigned max_conns);
void worker_conn_opened(struct worker *w);
void worker_conn_closed(struct worker *w);
/* A connection became reclaimable (idle between requests): accepting paused
 * at the limit resumes, to reclaim it for the next client. */
void worker_conn_idle(struct worker *w);
/* Asks for an access-log flush soon (arms the flush timer), or now. */
void worker_log_written(struct worker *w, int flush_now);

#endif
