/*
 * worker — a worker thread: its loop, listeners, free lists and per-origin
 * state (see worker.h).
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

#include "proxy/proxy.h"

#define ACCEPT_BATCH 64
#define LOG_FLUSH_MS 100
#define IDLE_ORIGIN_CONNS_PER_ORIGIN 256
#define BUFFERS_KEPT_FREE 1024
#define ACCEPT_RESUME_MS 100

static int listener_open(const struct cfg_listener *cfg)
{
    const struct addr *a = &cfg->addr;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 4096) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static void set_listeners_paused(struct worker *w, bool paused)
{
    for (size_t i = 0; i < w->num_listeners; i++) {
        struct listener *l = &w->listeners[i];
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
                /* Out of descriptors: stop accepting until a connection closes,
                 * instead of spinning on a listener that stays readable. */
                log_error("accept: %s; pausing new connections for %d ms", strerror(errno),
                          ACCEPT_RESUME_MS);
                set_listeners_paused(w, true);
                timer_arm(loop, &w->accept_resume_timer, ACCEPT_RESUME_MS);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        client_accept(l, fd, (struct sockaddr *)&peer);
    }
}

void worker_client_closed(struct worker *w)
{
    w->num_clients--;
    if (w->stopping) {
        if (w->num_clients == 0)
            w->loop.stop = true;
        return;
    }
    if (w->num_clients < w->max_clients && !timer_armed(&w->accept_resume_timer))
        set_listeners_paused(w, false);
}

static void accept_resume_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    struct worker *w = loop->owner;
    if (!w->stopping && w->num_clients < w->max_clients)
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

/* Runs on the worker's loop after worker_stop(). */
static void wake_cb(struct loop *loop)
{
    struct worker *w = loop->owner;
    if (!atomic_load(&w->stop_requested) || w->stopping)
        return;
    w->stopping = true;
    for (size_t i = 0; i < w->num_listeners; i++) {
        struct listener *l = &w->listeners[i];
        if (l->io.fd >= 0) {
            loop_unwatch(loop, &l->io);
            close(l->io.fd);
            l->io.fd = -1;
        }
    }
    origin_conn_close_all_idle(w);
    client_stop_idle(w);
    if (w->num_clients == 0)
        loop->stop = true;
    else
        timer_arm(loop, &w->grace_timer, (uint64_t)(w->cfg->timeouts.grace * 1000.0));
}

static int alloc_runtime(struct worker *w)
{
    const struct config *cfg = w->cfg;
    size_t largest = 1;
    w->pools = calloc(cfg->num_pools, sizeof(*w->pools));
    if (!w->pools)
        return -ENOMEM;
    for (size_t p = 0; p < cfg->num_pools; p++) {
        size_t n = cfg->pools[p].num_origins;
        if (n > largest)
            largest = n;
        w->pools[p].origins = calloc(n, sizeof(*w->pools[p].origins));
        w->pools[p].slots = calloc(n, sizeof(*w->pools[p].slots));
        if (!w->pools[p].origins || !w->pools[p].slots)
            return -ENOMEM;
    }
    w->candidate_scratch = calloc(largest, sizeof(bool));
    w->listeners = calloc(cfg->num_listeners, sizeof(*w->listeners));
    w->access_log = malloc(sizeof(*w->access_log));
    if (!w->candidate_scratch || !w->listeners || !w->access_log)
        return -ENOMEM;
    return 0;
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    while (w->clients)
        client_close(w->clients);
    if (w->pools)
        origin_conn_close_all_idle(w);
    while (w->free_clients) {
        struct client *c = w->free_clients;
        w->free_clients = c->next;
        free(c);
    }
    while (w->free_origin_conns) {
        struct origin_conn *oc = w->free_origin_conns;
        w->free_origin_conns = oc->next;
        free(oc);
    }
    for (size_t i = 0; w->listeners && i < w->num_listeners; i++)
        if (w->listeners[i].io.fd >= 0)
            close(w->listeners[i].io.fd);
    if (w->access_log && w->access_log->fd >= 0)
        access_log_flush(w->access_log);
    for (size_t p = 0; w->pools && p < w->cfg->num_pools; p++) {
        free(w->pools[p].origins);
        free(w->pools[p].slots);
    }
    free(w->pools);
    free(w->candidate_scratch);
    free(w->listeners);
    free(w->access_log);
    buf_pool_fini(&w->bufs);
    loop_fini(&w->loop);
    free(w);
}

struct worker *worker_new(unsigned id, const struct config *cfg, int access_log_fd,
                          unsigned max_clients)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("worker %u: out of memory", id);
        return NULL;
    }
    w->id = id;
    w->cfg = cfg;
    w->loop.epfd = w->loop.wake_fd = -1;
    buf_pool_init(&w->bufs, BUFFERS_KEPT_FREE);
    atomic_init(&w->stop_requested, false);
    timer_init(&w->log_flush_timer, log_flush_cb);
    timer_init(&w->grace_timer, grace_expired_cb);
    timer_init(&w->accept_resume_timer, accept_resume_cb);
    w->max_idle_per_origin = IDLE_ORIGIN_CONNS_PER_ORIGIN;
    w->max_clients = max_clients ? max_clients : 1;
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
        w->rng = clock_ms() ^ ((uint64_t)id << 32);

    int rc = loop_init(&w->loop, w);
    if (rc == 0)
        rc = alloc_runtime(w);
    if (rc < 0) {
        log_error("worker %u: %s", id, strerror(-rc));
        worker_free(w);
        return NULL;
    }
    w->loop.wake_cb = wake_cb;
    w->access_log->fd = access_log_fd;
    w->access_log->len = 0;
    w->num_listeners = cfg->num_listeners;
    for (size_t i = 0; i < cfg->num_listeners; i++)
        w->listeners[i].io.fd = -1;
    for (size_t i = 0; i < cfg->num_listeners; i++) {
        struct listener *l = &w->listeners[i];
        l->cfg = &cfg->listeners[i];
        l->worker = w;
        int fd = listener_open(l->cfg);
        if (fd < 0 || (rc = loop_watch(&w->loop, &l->io, fd, EPOLLIN, accept_cb)) < 0) {
            if (fd >= 0)
                close(fd);
            log_error("listen[%zu]: cannot listen on %s: %s", i, l->cfg->address,
                      strerror(fd < 0 ? -fd : -rc));
            worker_free(w);
            return NULL;
        }
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
