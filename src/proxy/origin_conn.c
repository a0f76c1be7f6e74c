/*
 * origin_conn — connections to origins and the per-thread idle pool.
 *
 * A connection is taken from its origin's idle list (most recently used
 * first, so the rest can time out) or opened non-blocking. While idle it
 * stays registered with epoll: any input, hang-up or error means the origin
 * closed it or misbehaves, and it is closed at once, so a reused connection
 * is almost always alive (the client code still replays a request whose
 * reused connection died before answering). Idle connections are closed
 * after `timeouts.keepalive` and capped per origin.
 */
#include "proxy/proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/thread.h"

static void oc_free(struct origin_conn *oc)
{
    struct proxy_thread *pt = oc->pt;
    timer_cancel(&pt->w->loop, &oc->idle_timer);
    if (oc->io.fd >= 0) {
        proxy_origin_tls_keep_session(pt, oc);
        tp_close(&pt->w->loop, &oc->tp, &oc->io);
        oc->io.fd = -1;
    }
    buf_put(&pt->bufs, oc->in);
    slab_free(&pt->origin_conn_slab, oc);
}

static void idle_unlink(struct origin_conn *oc)
{
    struct origin_rt *rt = &oc->pt->origins[oc->origin_id];
    for (struct origin_conn **pp = &rt->idle; *pp; pp = &(*pp)->next) {
        if (*pp == oc) {
            *pp = oc->next;
            rt->num_idle--;
            break;
        }
    }
    oc->next = NULL;
}

static void oc_event_cb(struct loop *loop, struct io_watch *io, uint32_t events)
{
    (void)loop;
    struct origin_conn *oc = (struct origin_conn *)io;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        oc->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP))
        oc->peer_closed = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        oc->writable = true;
    tp_events(&oc->tp, events, &oc->readable, &oc->writable);
    if (oc->state == OC_IDLE) {
        if (oc->readable) { /* closed by the origin, or unsolicited bytes */
            idle_unlink(oc);
            oc_free(oc);
        }
        return;
    }
    if (oc->client)
        client_origin_event(oc->client);
}

static void oc_idle_timeout_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct origin_conn *oc = (struct origin_conn *)((char *)t - offsetof(struct origin_conn, idle_timer));
    if (oc->state != OC_IDLE)
        return; /* in use again: the timer stays armed across uses (see origin_conn_acquire) */
    idle_unlink(oc);
    oc_free(oc);
}

static struct origin_conn *oc_alloc(struct proxy_thread *pt)
{
    struct origin_conn *oc = slab_alloc(&pt->origin_conn_slab);
    if (!oc)
        return NULL;
    *oc = (struct origin_conn){.pt = pt};
    oc->io.fd = -1;
    timer_init(&oc->idle_timer, oc_idle_timeout_cb);
    return oc;
}

struct origin_conn *origin_conn_acquire(struct proxy_thread *pt, const struct snapshot *s,
                                        size_t pool, size_t origin, bool fresh_only, int *err)
{
    struct worker *w = pt->w;
    const struct origin_shared *os = s->pools[pool].origins[origin];
    struct origin_rt *rt = proxy_origin_rt(pt, os);
    if (!rt) { /* removed since the exchange began: nothing to connect to */
        *err = -ENOENT;
        return NULL;
    }
    const struct addr *a = &s->cfg->pools[pool].origins[origin].addr;
    struct origin_conn *oc = fresh_only ? NULL : rt->idle;
    while (oc && !addr_equal(&oc->addr, a)) { /* the origin was re-addressed */
        rt->idle = oc->next;
        rt->num_idle--;
        oc_free(oc);
        oc = rt->idle;
    }
    if (oc) {
        rt->idle = oc->next;
        rt->num_idle--;
        oc->next = NULL;
        /* The idle timer stays armed: if it comes due while the connection
         * is in use it does nothing, and when the connection is idle again
         * re-arming it only postpones it (no heap sift per request). */
        oc->state = OC_ACTIVE;
        oc->reused = true;
        return oc;
    }

    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    if (rc < 0 && errno != EINPROGRESS) {
        *err = -errno;
        close(fd);
        return NULL;
    }
    oc = oc_alloc(pt);
    if (!oc) {
        close(fd);
        *err = -ENOMEM;
        return NULL;
    }
    oc->origin_id = os->id;
    oc->generation = os->generation;
    oc->addr = *a;
    oc->os = os;
    oc->tcp_up = rc == 0;
    oc->state = rc == 0 ? OC_ACTIVE : OC_CONNECTING;
    oc->writable = rc == 0;
    if (proxy_origin_tls_start(pt, s, pool, origin, oc, fd) < 0) {
        close(fd);
        oc->io.fd = -1;
        oc_free(oc);
        *err = -ENOMEM;
        return NULL;
    }
    if (tp_is_tls(&oc->tp))
        oc->state = OC_CONNECTING; /* until its handshake is done */
    rc = tp_watch(&w->loop, &oc->tp, &oc->io, fd, oc_event_cb, !oc->tcp_up);
    if (rc < 0) {
        tp_free(&oc->tp);
        close(fd);
        oc->io.fd = -1;
        oc_free(oc);
        *err = rc;
        return NULL;
    }
    return oc;
}

int origin_conn_connect_result(struct origin_conn *oc)
{
    if (!oc->tcp_up) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(oc->io.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            return -errno;
        if (soerr)
            return -soerr;
        oc->tcp_up = true;
    }
    if (tp_is_tls(&oc->tp)) {
        int rc = proxy_origin_tls_handshake(oc->pt, oc);
        if (rc <= 0)
            return rc; /* -EINPROGRESS: under way; else it failed (logged) */
    }
    oc->state = OC_ACTIVE;
    return 0;
}

void origin_conn_release(struct origin_conn *oc, bool reusable)
{
    struct proxy_thread *pt = oc->pt;
    struct worker *w = pt->w;
    struct origin_rt *rt = &pt->origins[oc->origin_id];
    oc->client = NULL;
    proxy_origin_tls_keep_session(pt, oc);
    if (!reusable || w->stopping || rt->generation != oc->generation ||
        rt->num_idle >= pt->max_idle_per_origin || oc->peer_closed ||
        (oc->in && buf_len(oc->in) > 0) || tp_has_pending(&oc->tp)) {
        oc_free(oc);
        return;
    }
    if (oc->readable) {
        /* Input pending after a complete response: only EAGAIN means clean. */
        char probe;
        ssize_t n = recv(oc->io.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            oc_free(oc);
            return;
        }
        oc->readable = false;
    }
    buf_put(&pt->bufs, oc->in);
    oc->in = NULL;
    oc->state = OC_IDLE;
    oc->next = rt->idle;
    rt->idle = oc;
    rt->num_idle++;
    timer_arm(&w->loop, &oc->idle_timer,
              (uint64_t)(pt->cur->snap->cfg->timeouts.keepalive * 1000.0));
}

void origin_conn_close_idle(struct proxy_thread *pt, struct origin_rt *rt)
{
    (void)pt;
    while (rt->idle) {
        struct origin_conn *oc = rt->idle;
        rt->idle = oc->next;
        rt->num_idle--;
        oc_free(oc);
    }
}
