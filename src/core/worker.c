/*
 * worker — a worker thread: its loop, listeners, mailbox and stop (see
 * worker.h).
 */
#include "core/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/uring.h"

#define ACCEPT_BATCH 64
#define ACCEPT_RESUME_MS 100
#define LOG_FLUSH_MS 100

/* ---- listeners ---- */

static void set_listeners_paused(struct worker *w, bool paused)
{
    for (struct listener *l = w->listeners; l; l = l->next) {
        if (l->io.fd < 0 || l->paused == paused)
            continue;
        if (loop_modify(&w->loop, &l->io, paused ? 0 : EPOLLIN) == 0)
            l->paused = paused;
    }
}

static void accept_cb(struct loop *loop, struct io_watch *io, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)io;
    struct worker *w = loop->owner;
    for (int i = 0; i < ACCEPT_BATCH && l->io.fd >= 0; i++) {
        if (w->num_conns >= w->max_conns) {
            /* A connection is waiting (the listener was readable): make room
             * by closing one the owner can spare. Only on the first look:
             * later ones may find the backlog empty, and the listener stays
             * readable while clients wait. */
            if (i > 0)
                return;
            if (!w->ops->reclaim_cb || !w->ops->reclaim_cb(w) || w->num_conns >= w->max_conns) {
                set_listeners_paused(w, true);
                return;
            }
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead of
                 * spinning on a listener that stays readable. */
                if (!w->accept_starved) /* once per shortage, not every retry */
                    log_error("accept: %s; pausing new connections, retrying every %d ms",
                              strerror(errno), ACCEPT_RESUME_MS);
                w->accept_starved = true;
                set_listeners_paused(w, true);
                timer_arm(loop, &w->accept_resume_timer, ACCEPT_RESUME_MS);
            }
            return;
        }
        if (w->accept_starved) {
            w->accept_starved = false;
            log_error("accept: accepting connections again");
        }
        STAT_ADD(w->stats.accepted, 1);
        w->ops->accept_cb(l, fd, (struct sockaddr *)&peer);
    }
}

static void accept_resume_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    struct worker *w = loop->owner;
    if (!w->stopping && w->num_conns < w->max_conns)
        set_listeners_paused(w, false);
}

struct listener *worker_listen(struct worker *w, int fd, long tag)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->worker = w;
    l->tag = tag;
    bool paused = w->num_conns >= w->max_conns || timer_armed(&w->accept_resume_timer);
    /* Accepted sockets inherit TCP_NODELAY from their listener: set once here
     * (the socket may come from an older process or systemd) rather than by
     * a system call per connection. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* HTTP clients speak first (so do PROXY protocol senders and TLS
     * clients): the kernel hands a connection over once its first bytes are
     * there, so its first receive finds them instead of waiting for them
     * with a poll of its own. A connection that stays silent is handed over
     * after a second, and its header timeout runs from then on. */
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one));
    if (loop_watch(&w->loop, &l->io, fd, paused ? 0 : EPOLLIN, accept_cb) < 0) {
        free(l);
        return NULL;
    }
    l->paused = paused;
    l->next = w->listeners;
    w->listeners = l;
    return l;
}

void worker_unlisten(struct worker *w, struct listener *l)
{
    if (l->io.fd < 0)
        return;
    loop_unwatch(&w->loop, &l->io);
    l->io.fd = -1; /* the socket itself belongs to whoever registered it */
}

void worker_set_max_conns(struct worker *w, unsigned max_conns)
{
    w->max_conns = max_conns ? max_conns : 1;
    if (!w->stopping && w->num_conns < w->max_conns && !timer_armed(&w->accept_resume_timer))
        set_listeners_paused(w, false); /* the limit may have been raised */
}

/* ---- connection counts, logs, stop ---- */

void worker_conn_opened(struct worker *w)
{
    w->num_conns++;
    atomic_store_explicit(&w->stats.client_connections, w->num_conns, memory_order_relaxed);
}

void worker_conn_closed(struct worker *w)
{
    w->num_conns--;
    atomic_store_explicit(&w->stats.client_connections, w->num_conns, memory_order_relaxed);
    if (w->stopping || w->retiring) {
        if (w->num_conns == 0)
            w->loop.stop = true;
        return;
    }
    if (w->num_conns < w->max_conns && !timer_armed(&w->accept_resume_timer))
        set_listeners_paused(w, false);
}

void worker_conn_idle(struct worker *w)
{
    if (w->num_conns >= w->max_conns && !w->stopping && w->ops->reclaim_cb &&
        !timer_armed(&w->accept_resume_timer))
        set_listeners_paused(w, false);
}

static void log_flush_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    struct worker *w = loop->owner;
    access_log_flush(w->access_log);
}

void worker_log_written(struct worker *w, int flush_now)
{
    if (flush_now) {
        access_log_flush(w->access_log);
        timer_cancel(&w->loop, &w->log_flush_timer);
    } else if (!timer_armed(&w->log_flush_timer) && w->access_log->len > 0) {
        timer_arm(&w->loop, &w->log_flush_timer, LOG_FLUSH_MS);
    }
}

static void grace_expired_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    loop->stop = true;
}

static void begin_stop(struct worker *w, uint64_t grace_ms)
{
    w->stopping = true;
    timer_cancel(&w->loop, &w->retire_timer);
    for (struct listener *l = w->listeners; l; l = l->next)
        worker_unlisten(w, l);
    w->ops->stop_cb(w);
    if (w->num_conns == 0)
        w->loop.stop = true;
    else if (!timer_armed(&w->grace_timer))
        timer_arm(&w->loop, &w->grace_timer, grace_ms);
}

/* Retiring ran for half the grace period: the idle connections left are
 * closed, the others have the other half. */
static void retire_expired_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    struct worker *w = loop->owner;
    begin_stop(w, w->grace_ms - w->grace_ms / 2);
}

static void begin_retire(struct worker *w)
{
    w->retiring = true;
    for (struct listener *l = w->listeners; l; l = l->next)
        worker_unlisten(w, l);
    if (w->ops->retire_cb)
        w->ops->retire_cb(w);
    if (w->num_conns == 0)
        w->loop.stop = true;
    else
        timer_arm(&w->loop, &w->retire_timer, w->grace_ms / 2);
}

/* Runs on the worker's loop after worker_offer(), worker_stop() or
 * worker_retire(). */
static void wake_cb(struct loop *loop)
{
    struct worker *w = loop->owner;
    void *offered = atomic_exchange(&w->mailbox, NULL);
    if (offered)
        w->ops->adopt_cb(w, offered);
    if (atomic_load(&w->stop_requested) && !w->stopping)
        begin_stop(w, w->grace_ms);
    else if (atomic_load(&w->retire_requested) && !w->stopping && !w->retiring)
        begin_retire(w);
}

void worker_offer(struct worker *w, void *offered)
{
    void *older = atomic_exchange(&w->mailbox, offered);
    if (older)
        w->ops->discard_cb(older); /* offered before and never adopted */
    loop_wake(&w->loop);
}

/* ---- lifetime ---- */

void worker_free(struct worker *w)
{
    if (!w)
        return;
    if (w->ops && w->ops->fini_cb)
        w->ops->fini_cb(w);
    while (w->listeners) {
        struct listener *l = w->listeners;
        w->listeners = l->next;
        worker_unlisten(w, l);
        free(l);
    }
    if (w->access_log && w->access_log->fd >= 0)
        access_log_flush(w->access_log);
    void *offered = atomic_exchange(&w->mailbox, NULL);
    if (offered && w->ops)
        w->ops->discard_cb(offered);
    if (w->stats.origins)
        for (size_t i = 0; i < STATS_MAX_ORIGINS; i++)
            free(w->stats.origins[i].sessions);
    free(w->stats.origins);
    free(w->access_log);
    loop_fini(&w->loop);
    free(w);
}

struct worker *worker_new(unsigned id, unsigned num_workers, const struct worker_ops *ops,
                          void *app, int access_log_fd)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("worker %u: out of memory", id);
        return NULL;
    }
    w->id = id;
    w->num_workers = num_workers ? num_workers : 1;
    w->ops = ops;
    w->app = app;
    w->max_conns = 1;
    w->loop.epfd = w->loop.wake_fd = -1;
    atomic_init(&w->stop_requested, false);
    atomic_init(&w->retire_requested, false);
    atomic_init(&w->mailbox, NULL);
    timer_init(&w->log_flush_timer, log_flush_cb);
    timer_init(&w->grace_timer, grace_expired_cb);
    timer_init(&w->retire_timer, retire_expired_cb);
    timer_init(&w->accept_resume_timer, accept_resume_cb);
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
        w->rng = clock_ms() ^ ((uint64_t)id << 32);

    int rc = loop_init(&w->loop, w);
    w->access_log = malloc(sizeof(*w->access_log));
    w->stats.origins = calloc(STATS_MAX_ORIGINS, sizeof(*w->stats.origins));
    if (rc == 0 && (!w->access_log || !w->stats.origins))
        rc = -ENOMEM;
    if (rc < 0) {
        log_error("worker %u: %s", id, strerror(-rc));
        w->ops = NULL; /* the owner's state was never attached */
        worker_free(w);
        return NULL;
    }
    w->loop.wake_cb = wake_cb;
    w->access_log->fd = access_log_fd;
    w->access_log->len = 0;
    return w;
}

/* Plain connections go through an io_uring when the kernel allows it
 * (LIMPET_IO=epoll keeps them on epoll). The ring belongs to this thread. */
static void open_ring(struct worker *w)
{
    const char *io = getenv("LIMPET_IO");
    if (io && strcmp(io, "epoll") == 0)
        return;
    int rc = uring_open(&w->loop);
    if (rc < 0 && w->id == 0)
        log_error("io_uring unavailable (%s): connections use epoll", strerror(-rc));
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    open_ring(w);
    loop_run(&w->loop);
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    return rc ? -rc : 0;
}

void worker_stop(struct worker *w)
{
    atomic_store(&w->stop_requested, true);
    loop_wake(&w->loop);
}

void worker_retire(struct worker *w)
{
    atomic_store(&w->retire_requested, true);
    loop_wake(&w->loop);
}

void worker_join_and_free(struct worker *w)
{
    pthread_join(w->thread, NULL);
    worker_free(w);
}
