/*
 * worker — a worker thread: its loop, listeners, snapshot adoption, free
 * lists and per-origin state (see worker.h).
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

#include "affinity/affinity.h"
#include "affinity/hll.h"
#include "proxy/proxy.h"

#define ACCEPT_BATCH 64
#define ACCEPT_RESUME_MS 100
#define LOG_FLUSH_MS 100
#define IDLE_ORIGIN_CONNS_PER_ORIGIN 256
#define BUFFERS_KEPT_FREE 64

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
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (w->num_clients >= w->max_clients) {
            set_listeners_paused(w, true);
            return;
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
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        client_accept(l, fd, (struct sockaddr *)&peer);
    }
}

static void accept_resume_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    struct worker *w = loop->owner;
    if (!w->stopping && w->num_clients < w->max_clients)
        set_listeners_paused(w, false);
}

static void close_listener(struct worker *w, struct listener *l)
{
    if (l->io.fd < 0)
        return;
    loop_unwatch(&w->loop, &l->io);
    l->io.fd = -1; /* the socket itself belongs to the snapshot's listen_socket */
}

/* The index in s of the load balancer named like index lb of `from`, or -1. */
static long same_load_balancer(const struct snapshot *from, long lb, const struct snapshot *s)
{
    if (!from || lb < 0)
        return -1;
    const char *name = from->cfg->load_balancers[lb].name;
    for (size_t i = 0; i < s->cfg->num_load_balancers; i++)
        if (strcmp(s->cfg->load_balancers[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Watches the listening sockets of s this worker does not watch yet, stops
 * watching those s no longer has, and points each at its load balancer.
 * Connections accepted on a removed address keep being served by the load
 * balancer of the same name, while there is one. */
static int sync_listeners(struct worker *w, const struct snapshot *s)
{
    const struct snapshot *old = w->cur ? w->cur->snap : NULL;
    for (struct listener *l = w->listeners; l; l = l->next) {
        bool kept = false;
        for (size_t i = 0; i < s->cfg->num_listeners && l->io.fd >= 0; i++) {
            if (s->listeners[i]->fds[w->id] == l->io.fd) {
                l->lb_index = (long)s->cfg->listeners[i].load_balancer;
                kept = true;
            }
        }
        if (!kept) {
            close_listener(w, l);
            l->lb_index = same_load_balancer(old, l->lb_index, s);
        }
    }
    for (size_t i = 0; i < s->cfg->num_listeners; i++) {
        int fd = s->listeners[i]->fds[w->id];
        bool known = false;
        for (struct listener *l = w->listeners; l; l = l->next)
            known |= l->io.fd == fd;
        if (known)
            continue;
        struct listener *l = calloc(1, sizeof(*l));
        if (!l)
            return -ENOMEM;
        l->worker = w;
        l->lb_index = (long)s->cfg->listeners[i].load_balancer;
        int rc = loop_watch(&w->loop, &l->io, fd, EPOLLIN, accept_cb);
        if (rc < 0) {
            free(l);
            return rc;
        }
        l->next = w->listeners;
        w->listeners = l;
    }
    return 0;
}

/* ---- snapshots ---- */

/* Points use->pool_slots at this worker's steering slot of each origin of its snapshot. */
static int build_pool_slots(struct worker *w, struct snap_use *use)
{
    const struct snapshot *s = use->snap;
    const struct config *cfg = s->cfg;
    struct steer_slot ***slots = calloc(cfg->num_pools, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    size_t largest = 1;
    for (size_t p = 0; p < cfg->num_pools; p++) {
        size_t n = cfg->pools[p].num_origins;
        largest = n > largest ? n : largest;
        slots[p] = calloc(n, sizeof(**slots));
        if (!slots[p]) {
            for (size_t q = 0; q < p; q++)
                free(slots[q]);
            free(slots);
            return -ENOMEM;
        }
        for (size_t o = 0; o < n; o++)
            slots[p][o] = &worker_origin_rt(w, s->pools[p].origins[o])->steer;
    }
    if (largest > w->candidate_cap) {
        bool *c = realloc(w->candidate_scratch, largest * sizeof(bool));
        if (!c) {
            for (size_t p = 0; p < cfg->num_pools; p++)
                free(slots[p]);
            free(slots);
            return -ENOMEM;
        }
        w->candidate_scratch = c;
        w->candidate_cap = largest;
    }
    use->pool_slots = slots;
    return 0;
}

/* Releases a snapshot use no exchange needs any more (and its snapshot reference). */
static void snap_use_free(struct snap_use *use)
{
    for (size_t p = 0; use->pool_slots && p < use->snap->cfg->num_pools; p++)
        free(use->pool_slots[p]);
    free(use->pool_slots);
    snapshot_release(use->snap);
    free(use);
}

static void retire(struct worker *w, struct snap_use *use)
{
    if (use->users == 0) {
        snap_use_free(use);
        return;
    }
    use->next = w->retired;
    w->retired = use;
}

/* Binds the worker's cookie MAC contexts to the keys of s. */
static int sync_token_ctx(struct worker *w, const struct snapshot *s)
{
    if (w->token_keys == s->aff->keys)
        return 0;
    struct token_ctx *ctx = token_ctx_new(s->aff->keys);
    if (!ctx)
        return -ENOMEM;
    token_ctx_free(w->token_ctx);
    w->token_ctx = ctx;
    w->token_keys = s->aff->keys;
    return 0;
}

/* Makes s (whose reference the caller passes) the snapshot of new exchanges. */
static int adopt(struct worker *w, struct snapshot *s)
{
    struct snap_use *use = calloc(1, sizeof(*use));
    if (use)
        use->snap = s;
    int rc = use ? build_pool_slots(w, use) : -ENOMEM;
    if (rc == 0)
        rc = sync_token_ctx(w, s);
    if (rc == 0 && !w->stopping)
        rc = sync_listeners(w, s);
    if (rc < 0) {
        log_error("worker %u: cannot adopt configuration: %s", w->id, strerror(-rc));
        if (use)
            snap_use_free(use);
        else
            snapshot_release(s);
        return rc;
    }
    struct snap_use *old = w->cur;
    w->cur = use;
    unsigned per_worker = s->cfg->limits.max_connections / w->num_workers;
    w->max_clients = per_worker ? per_worker : 1;
    if (!w->stopping && w->num_clients < w->max_clients && !timer_armed(&w->accept_resume_timer))
        set_listeners_paused(w, false); /* the limit may have been raised */
    if (old)
        retire(w, old);
    return 0;
}

struct snap_use *worker_snapshot_get(struct worker *w)
{
    w->cur->users++;
    return w->cur;
}

void worker_snapshot_put(struct worker *w, struct snap_use *use)
{
    if (!use)
        return;
    use->users--;
    if (use == w->cur || use->users > 0)
        return;
    for (struct snap_use **pp = &w->retired; *pp; pp = &(*pp)->next) {
        if (*pp == use) {
            *pp = use->next;
            break;
        }
    }
    snap_use_free(use);
}

void worker_offer_snapshot(struct worker *w, struct snapshot *s)
{
    struct snapshot *older = atomic_exchange(&w->mailbox, snapshot_ref(s));
    snapshot_release(older); /* offered before and never adopted */
    loop_wake(&w->loop);
}

static void reset_origin_stats(struct origin_stats *st)
{
    atomic_store_explicit(&st->requests, 0, memory_order_relaxed);
    for (unsigned c = 0; c < STATUS_CLASSES; c++)
        atomic_store_explicit(&st->status[c], 0, memory_order_relaxed);
    atomic_store_explicit(&st->connect_failures, 0, memory_order_relaxed);
    atomic_store_explicit(&st->active, 0, memory_order_relaxed);
    struct hll_window *sessions = st->sessions;
    if (sessions) /* cleared, not freed: a reader may be copying it */
        hll_window_init(sessions, sessions->window, sessions->start);
}

struct origin_rt *worker_origin_rt(struct worker *w, const struct origin_shared *os)
{
    struct origin_rt *rt = &w->origins[os->id];
    if (rt->generation != os->generation) {
        /* The id belongs to another origin now: forget the old one's
         * connections and counters. */
        bool reused = rt->generation != 0;
        origin_conn_close_idle(w, rt);
        memset(rt, 0, sizeof(*rt));
        rt->generation = os->generation;
        if (reused)
            reset_origin_stats(&w->stats.origins[os->id]);
    }
    return rt;
}

/* ---- counters, logs, stop ---- */

void worker_client_closed(struct worker *w)
{
    w->num_clients--;
    atomic_store_explicit(&w->stats.client_connections, w->num_clients, memory_order_relaxed);
    if (w->stopping) {
        if (w->num_clients == 0)
            w->loop.stop = true;
        return;
    }
    if (w->num_clients < w->max_clients && !timer_armed(&w->accept_resume_timer))
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

static void begin_stop(struct worker *w)
{
    w->stopping = true;
    for (struct listener *l = w->listeners; l; l = l->next)
        close_listener(w, l);
    for (size_t i = 0; i < SNAPSHOT_MAX_ORIGINS; i++)
        origin_conn_close_idle(w, &w->origins[i]);
    client_stop_idle(w);
    if (w->num_clients == 0)
        w->loop.stop = true;
    else
        timer_arm(&w->loop, &w->grace_timer,
                  (uint64_t)(w->cur->snap->cfg->timeouts.grace * 1000.0));
}

/* Runs on the worker's loop after worker_offer_snapshot() or worker_stop(). */
static void wake_cb(struct loop *loop)
{
    struct worker *w = loop->owner;
    struct snapshot *s = atomic_exchange(&w->mailbox, NULL);
    if (s)
        adopt(w, s);
    if (atomic_load(&w->stop_requested) && !w->stopping)
        begin_stop(w);
}

/* ---- lifetime ---- */

void worker_free(struct worker *w)
{
    if (!w)
        return;
    while (w->clients)
        client_close(w->clients);
    if (w->origins) {
        for (size_t i = 0; i < SNAPSHOT_MAX_ORIGINS; i++)
            origin_conn_close_idle(w, &w->origins[i]);
    }
    while (w->free_clients) {
        struct client *c = w->free_clients;
        w->free_clients = c->next;
        pages_free(c, sizeof(*c));
    }
    while (w->free_origin_conns) {
        struct origin_conn *oc = w->free_origin_conns;
        w->free_origin_conns = oc->next;
        free(oc);
    }
    while (w->listeners) {
        struct listener *l = w->listeners;
        w->listeners = l->next;
        close_listener(w, l);
        free(l);
    }
    if (w->access_log && w->access_log->fd >= 0)
        access_log_flush(w->access_log);
    token_ctx_free(w->token_ctx); /* before the keys it is bound to go */
    while (w->retired) {
        struct snap_use *use = w->retired;
        w->retired = use->next;
        snap_use_free(use);
    }
    if (w->cur)
        snap_use_free(w->cur);
    snapshot_release(atomic_exchange(&w->mailbox, NULL));
    free(w->origins);
    if (w->stats.origins)
        for (size_t i = 0; i < SNAPSHOT_MAX_ORIGINS; i++)
            free(w->stats.origins[i].sessions);
    free(w->stats.origins);
    free(w->candidate_scratch);
    free(w->access_log);
    buf_pool_fini(&w->bufs);
    loop_fini(&w->loop);
    free(w);
}

struct worker *worker_new(unsigned id, unsigned num_workers, struct snapshot *s,
                          int access_log_fd)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("worker %u: out of memory", id);
        return NULL;
    }
    w->id = id;
    w->num_workers = num_workers ? num_workers : 1;
    w->loop.epfd = w->loop.wake_fd = -1;
    buf_pool_init(&w->bufs, BUFFERS_KEPT_FREE);
    atomic_init(&w->stop_requested, false);
    atomic_init(&w->mailbox, NULL);
    timer_init(&w->log_flush_timer, log_flush_cb);
    timer_init(&w->grace_timer, grace_expired_cb);
    timer_init(&w->accept_resume_timer, accept_resume_cb);
    w->max_idle_per_origin = IDLE_ORIGIN_CONNS_PER_ORIGIN;
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
        w->rng = clock_ms() ^ ((uint64_t)id << 32);

    int rc = loop_init(&w->loop, w);
    w->origins = calloc(SNAPSHOT_MAX_ORIGINS, sizeof(*w->origins));
    w->access_log = malloc(sizeof(*w->access_log));
    w->stats.origins = calloc(SNAPSHOT_MAX_ORIGINS, sizeof(*w->stats.origins));
    if (rc == 0 && (!w->origins || !w->access_log || !w->stats.origins))
        rc = -ENOMEM;
    if (rc < 0) {
        log_error("worker %u: %s", id, strerror(-rc));
        worker_free(w);
        return NULL;
    }
    w->loop.wake_cb = wake_cb;
    w->access_log->fd = access_log_fd;
    w->access_log->len = 0;
    if (adopt(w, snapshot_ref(s)) < 0) {
        worker_free(w);
        return NULL;
    }
    return w;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
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

void worker_join_and_free(struct worker *w)
{
    pthread_join(w->thread, NULL);
    worker_free(w);
}
