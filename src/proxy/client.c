/*
 * client — a client connection: reading request heads, responses limpet
 * makes itself, closing, timers.
 *
 * States: CS_READ_HEAD (waiting for a request head; the buffer is released
 * while nothing is pending), CS_EXCHANGE (a request forwarded and its
 * response relayed: exchange.c), CS_SEND_ERROR (a response limpet made
 * itself, then close), CS_LINGER (write side shut, input drained briefly so
 * the client reads the last response instead of a reset) and CS_TUNNEL
 * (after a 101: tunnel.c). On a proxy_protocol listener a connection starts
 * in CS_PROXY_HEADER, waiting for the PROXY protocol header that sets the
 * client address; a missing, malformed or late one closes it unanswered.
 *
 * The connection record is small and comes from the thread's slab; between
 * requests it holds no buffer and no exchange.
 *
 * client_drive() runs the current state's step until nothing can progress:
 * every socket is edge-triggered and its readiness is kept in flags, so a
 * step reads only when there is room and writes only when there is data.
 * Pipelined requests wait in the input buffer and are parsed only after the
 * previous response has been sent, so they are answered in order.
 *
 * Connections idle between requests are kept in a list, the longest idle
 * first: at the connection limit the worker closes the first of them to
 * admit a new client (client_reclaim_idle).
 *
 * One timer per connection; its deadline is recomputed from the state after
 * each drive: request_header while a head is incomplete, keepalive between
 * requests, connect while an origin connection is opening, server while
 * waiting on the origin, client while waiting on the client (request_header
 * covers a PROXY header too).
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/log.h"
#include "http/proxy_protocol.h"
#include "proxy/thread.h"

#define LINGER_MS 2000u
#define RETRY_AFTER_SECONDS 5

static uint64_t seconds_ms(double s) { return (uint64_t)(s * 1000.0); }

/* ---- lifetime ---- */

static void client_io_cb(struct loop *loop, struct io_watch *io, uint32_t events);
static void client_timer_cb(struct loop *loop, struct timer *t);
static void client_drive(struct client *c);

/* The configuration a client connection currently works with. */
const struct config *client_cfg(const struct client *c)
{
    return c->ex && c->ex->use ? c->ex->use->snap->cfg : c->pt->cur->snap->cfg;
}

/* Gives the connection an exchange record, from the thread's slab (the
 * request's snapshot is taken when its head is complete). Returns false when
 * out of memory. */
bool client_open_exchange(struct client *c)
{
    struct exchange *ex = slab_alloc(&c->pt->exchange_slab);
    if (!ex)
        return false;
    memset(ex, 0, offsetof(struct exchange, req_iov));
    ex->aff.pool = ex->aff.origin = -1;
    ex->lb = c->listener->tag;
    ex->tls = tp_is_tls(&c->tp);
    c->ex = ex;
    return true;
}

const char *client_ip_of(struct client *c, size_t *len)
{
    struct exchange *ex = c->ex;
    if (ex->client_ip_len == 0)
        ex->client_ip_len = (uint8_t)ip_text(c->peer_family, c->peer_addr, ex->client_ip);
    *len = ex->client_ip_len;
    return ex->client_ip;
}

/* Ends the exchange's hold on its origin connection and snapshot (its
 * record stays: an error response may still be sent from it). */
void client_release_exchange(struct client *c, bool origin_reusable)
{
    if (!c->ex)
        return;
    exchange_dequeue(c);
    exchange_detach_origin(c, origin_reusable);
    proxy_snapshot_put(c->pt, c->ex->use);
    c->ex->use = NULL;
}

/* Ends the exchange: its origin connection, its snapshot and its record. */
void client_end_exchange(struct client *c, bool origin_reusable)
{
    if (!c->ex)
        return;
    client_release_exchange(c, origin_reusable);
    slab_free(&c->pt->exchange_slab, c->ex);
    c->ex = NULL;
}

/* ---- the idle list (connections between requests, longest idle first) ---- */

static void idle_remove(struct client *c)
{
    if (!c->idle_listed)
        return;
    struct proxy_thread *pt = c->pt;
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        pt->idle_head = c->idle_next;
    if (c->idle_next)
        c->idle_next->idle_prev = c->idle_prev;
    else
        pt->idle_tail = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
    c->idle_listed = false;
}

static void idle_add(struct client *c)
{
    if (c->idle_listed)
        return;
    struct proxy_thread *pt = c->pt;
    c->idle_prev = pt->idle_tail;
    c->idle_next = NULL;
    if (pt->idle_tail)
        pt->idle_tail->idle_next = c;
    else
        pt->idle_head = c;
    pt->idle_tail = c;
    c->idle_listed = true;
    worker_conn_idle(pt->w); /* at the limit, accepting may resume by reclaiming it */
}

bool client_reclaim_idle(struct proxy_thread *pt)
{
    if (!pt->idle_head)
        return false;
    client_close(pt->idle_head);
    return true;
}

void client_close(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    struct worker *w = pt->w;
    idle_remove(c);
    client_end_exchange(c, false);
    timer_cancel(&w->loop, &c->timer);
    tp_close(&w->loop, &c->tp, &c->io);
    buf_put(&pt->bufs, c->in);
    c->in = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        pt->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    slab_free(&pt->client_slab, c);
    worker_conn_closed(w);
}

/* Sets the client address (from a PROXY protocol header). */
static void client_set_address(struct client *c, uint8_t family, const uint8_t *addr)
{
    c->peer_family = family;
    memset(c->peer_addr, 0, sizeof(c->peer_addr));
    memcpy(c->peer_addr, addr, family == 6 ? 16 : 4);
}

/* Whether connections accepted on l start with a PROXY protocol header. */
static bool listener_proxy_protocol(const struct proxy_thread *pt, const struct listener *l)
{
    const struct snapshot *s = pt->cur->snap;
    for (size_t i = 0; i < s->cfg->num_listeners; i++)
        if (s->listeners[i]->fds[pt->w->id] == l->io.fd)
            return s->cfg->listeners[i].proxy_protocol;
    return false;
}

void client_accept(struct proxy_thread *pt, struct listener *l, int fd,
                   const struct sockaddr *peer)
{
    struct worker *w = pt->w;
    struct client *c = slab_alloc(&pt->client_slab);
    if (!c) {
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->pt = pt;
    c->listener = l;
    c->state = listener_proxy_protocol(pt, l) ? CS_PROXY_HEADER : CS_READ_HEAD;
    c->last_io_ms = c->head_start_ms = w->loop.now_ms;
    if (peer->sa_family == AF_INET6) {
        c->peer_family = 6;
        memcpy(c->peer_addr, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
    } else {
        c->peer_family = 4;
        memcpy(c->peer_addr, &((const struct sockaddr_in *)peer)->sin_addr, 4);
    }
    timer_init(&c->timer, client_timer_cb);
    if (proxy_transport_accept(pt, l, &c->tp, fd) < 0) {
        close(fd);
        slab_free(&pt->client_slab, c);
        return;
    }
    if (tp_watch(&w->loop, &c->tp, &c->io, fd, client_io_cb, false) < 0) {
        tp_free(&c->tp);
        close(fd);
        slab_free(&pt->client_slab, c);
        return;
    }
    c->next = pt->clients;
    if (pt->clients)
        pt->clients->prev = c;
    pt->clients = c;
    worker_conn_opened(w);
    timer_arm(&w->loop, &c->timer, seconds_ms(pt->cur->snap->cfg->timeouts.request_header));
}

void client_stop_idle(struct proxy_thread *pt)
{
    struct client *c = pt->clients;
    while (c) {
        struct client *next = c->next;
        if ((c->state == CS_READ_HEAD || c->state == CS_PROXY_HEADER) &&
            (!c->in || buf_len(c->in) == 0))
            client_close(c);
        else if (c->state == CS_EXCHANGE)
            c->ex->client_keep_alive = false;
        c = next;
    }
}

unsigned client_close_all(struct proxy_thread *pt)
{
    unsigned cut = 0;
    while (pt->clients) {
        struct client *c = pt->clients;
        if (c->state == CS_EXCHANGE && c->ex) {
            /* status: the one sent, or 0 when the response had not begun */
            c->ex->aborted = true;
            client_log_exchange(c, c->ex->resp_state >= RESP_BODY ? c->ex->status : 0);
            cut++;
        }
        client_close(c);
    }
    return cut;
}

/* ---- access log ---- */

/* Counts the exchange and writes its access-log line. */
static void record_exchange(struct worker *w, const struct client *c, int status,
                            double seconds)
{
    const struct exchange *ex = c->ex;
    unsigned cls = stats_status_class(status);
    if (ex->use && ex->lb >= 0) {
        struct lb_stats *ls = &w->stats.lbs[ex->use->snap->lb_ids[ex->lb]];
        STAT_ADD(ls->status[cls], 1);
        STAT_ADD(ls->affinity[ex->aff.reason], 1);
        STAT_ADD(ls->duration[stats_duration_bucket(seconds)], 1);
        STAT_ADD(ls->duration_sum_us, (uint64_t)(seconds * 1e6));
        if (ex->aff.pool >= 0 && ex->aff.origin >= 0) {
            const struct origin_shared *os = ex->use->snap->pools[ex->aff.pool].origins[ex->aff.origin];
            struct origin_stats *st = &w->stats.origins[os->id];
            STAT_ADD(st->requests, 1);
            STAT_ADD(st->status[cls], 1);
        }
    }
}

void client_log_exchange(struct client *c, int status)
{
    struct worker *w = c->pt->w;
    struct exchange *ex = c->ex;
    const struct config *cfg = client_cfg(c);
    long lb = ex->use ? ex->lb : c->listener->tag;
    const struct cfg_pool *pool = ex->use && ex->aff.pool >= 0 ? &cfg->pools[ex->aff.pool] : NULL;
    uint64_t now_us = clock_wall_us();
    double seconds = ex->start_us ? (double)(now_us - ex->start_us) / 1e6 : 0.0;
    record_exchange(w, c, status, seconds);
    size_t ip_len;
    struct access_entry e = {
        .time_us = ex->start_us ? ex->start_us : now_us,
        .client = client_ip_of(c, &ip_len),
        .method = ex->method, .method_len = ex->method_len,
        .path = ex->path, .path_len = ex->path_len,
        .status = status,
        .bytes = ex->bytes_out,
        .duration_ms = seconds * 1000.0,
        .load_balancer = lb >= 0 ? cfg->load_balancers[lb].name : NULL,
        .pool = pool ? pool->name : NULL,
        .origin = pool && ex->aff.origin >= 0 ? pool->origins[ex->aff.origin].name : NULL,
        .affinity = ex->use ? affinity_reason_name(ex->aff.reason) : NULL,
        .aborted = ex->aborted,
    };
    worker_log_written(w, access_log_append(w->access_log, &e));
}

/* ---- responses limpet makes itself ---- */

static const char *status_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Ends the exchange with a response of limpet's own, then closes. A request
 * refused before its exchange began gets one for the response (or, with no
 * memory for it, only the close). */
void client_send_error(struct client *c, int status)
{
    c->state = CS_SEND_ERROR;
    c->err_left = 0;
    c->close_deadline_ms = c->pt->w->loop.now_ms + seconds_ms(client_cfg(c)->timeouts.client);
    if (!c->ex && !client_open_exchange(c))
        return;
    struct exchange *ex = c->ex;
    const char *reason = status_reason(status);
    char retry[40] = "";
    if (status == 503)
        snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", RETRY_AFTER_SECONDS);
    int body_len = (int)strlen(reason) + 5;
    int n = snprintf(ex->req_extra, sizeof(ex->req_extra),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "%sConnection: close\r\n\r\n%d %s\n",
                     status, reason, body_len, retry, status, reason);
    ex->bytes_out = (uint64_t)n;
    client_log_exchange(c, status);
    client_release_exchange(c, false);
    c->err_data = ex->req_extra;
    c->err_left = (uint32_t)n;
}

static const char *redirect_reason(int status)
{
    switch (status) {
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 307: return "Temporary Redirect";
    default: return "Permanent Redirect";
    }
}

void client_send_redirect(struct client *c, int status, const char *host, size_t host_len,
                          const char *port, const char *target, size_t target_len)
{
    /* An absolute-form target names its own host: keep its path only. */
    if (target_len > 7 && strncasecmp(target, "http://", 7) == 0) {
        const char *auth = target + 7, *end = target + target_len;
        const char *slash = memchr(auth, '/', (size_t)(end - auth));
        host = auth;
        host_len = (size_t)((slash ? slash : end) - auth);
        target = slash ? slash : "/";
        target_len = slash ? (size_t)(end - slash) : 1;
    }
    if (!host || host_len == 0) {
        client_send_error(c, 400);
        return;
    }
    /* the host without its port: "example.com:80" → "example.com", "[::1]:80" → "[::1]" */
    const char *from = host[0] == '[' ? memchr(host, ']', host_len) : NULL;
    from = from ? from : host;
    const char *colon = memchr(from, ':', host_len - (size_t)(from - host));
    if (colon)
        host_len = (size_t)(colon - host);
    struct buf *b = c->in;
    size_t need = 128 + host_len + strlen(port) + target_len;
    if (!b || BUF_SIZE - b->end < need) {
        client_send_error(c, 414);
        return;
    }
    /* Written after the request in the input buffer (the connection closes
     * after it, so nothing is read there again). */
    char *out = b->data + b->end;
    int n = snprintf(out, BUF_SIZE - b->end,
                     "HTTP/1.1 %d %s\r\nLocation: https://%.*s%s%.*s\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n",
                     status, redirect_reason(status), (int)host_len, host, port, (int)target_len,
                     target);
    c->state = CS_SEND_ERROR;
    c->close_deadline_ms = c->pt->w->loop.now_ms + seconds_ms(client_cfg(c)->timeouts.client);
    c->ex->bytes_out = (uint64_t)n;
    client_log_exchange(c, status);
    client_release_exchange(c, false);
    c->err_data = out;
    c->err_left = (uint32_t)n;
}

void client_linger(struct client *c)
{
    tp_shutdown(&c->tp, c->io.fd);
    c->state = CS_LINGER;
    c->close_deadline_ms = c->pt->w->loop.now_ms + LINGER_MS;
}

static enum step step_send_error(struct client *c)
{
    while (c->err_left > 0) {
        if (!c->writable)
            return STEP_BLOCKED;
        ssize_t n = tp_send(&c->tp, c->io.fd, c->err_data, c->err_left, true); /* then linger */
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->writable = false;
                return STEP_BLOCKED;
            }
            client_close(c);
            return STEP_CLOSED;
        }
        c->err_data += n;
        c->err_left -= (uint32_t)n;
    }
    client_linger(c);
    return STEP_PROGRESS;
}

ssize_t client_read(struct client *c, bool raw)
{
    size_t want = buf_space(c->in);
    char *to = c->in->data + c->in->end;
    ssize_t n = raw ? tp_recv_raw(&c->tp, c->io.fd, to, want) : tp_recv(&c->tp, c->io.fd, to, want);
    if (n > 0) {
        c->in->end += (uint32_t)n;
        c->last_io_ms = c->pt->w->loop.now_ms;
        /* Edge-triggered: a short read emptied the socket, and new bytes (or
         * the peer's close) will raise a new edge. */
        bool drained = raw ? tp_raw_drained(&c->tp, (size_t)n, want)
                           : tp_drained(&c->tp, (size_t)n, want);
        if (drained && !c->peer_closed)
            c->readable = false;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = false;
        return 0;
    }
    return -1;
}

static enum step step_linger(struct client *c)
{
    char sink[4096];
    while (c->readable) {
        ssize_t n = tp_recv(&c->tp, c->io.fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            return STEP_BLOCKED;
        }
        break; /* EOF or error: the client has everything */
    }
    if (c->readable || c->peer_closed) {
        client_close(c);
        return STEP_CLOSED;
    }
    return STEP_BLOCKED;
}

/* ---- request head ---- */

/* Whether the bytes of a partial head received since the last look hold the
 * end of the head (an empty line; a bare LF one too, which the parser then
 * refuses). The parser runs once on a head that arrives whole; one that
 * arrives in pieces is scanned only from where the last look stopped, and
 * parsed when its end is there or it reached the size limit. */
static bool head_may_be_complete(struct client *c, size_t limit)
{
    const char *data = c->in->data + c->in->start;
    size_t len = buf_len(c->in);
    if (c->head_scan == 0 || len >= limit)
        return true;
    size_t from = c->head_scan > 3 ? c->head_scan - 3 : 0;
    for (const char *p = memchr(data + from, '\n', len - from); p;
         p = memchr(p + 1, '\n', (size_t)(data + len - p - 1))) {
        const char *next = p + 1;
        if (next < data + len && *next == '\r')
            next++;
        if (next < data + len && *next == '\n')
            return true;
    }
    c->head_scan = (uint32_t)len;
    return false;
}

static enum step step_read_head(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    struct worker *w = pt->w;
    size_t limit = client_cfg(c)->limits.max_header_bytes;
    for (;;) {
        if (c->in && buf_len(c->in) > 0 && head_may_be_complete(c, limit)) {
            int r = h1_parse_request(c->in->data + c->in->start, buf_len(c->in), limit,
                                     &pt->req);
            if (r > 0)
                return exchange_start(c, (size_t)r);
            if (r == H1_INVALID) {
                c->head_scan = 0;
                client_send_error(c, pt->req.error.status ? pt->req.error.status : 400);
                return STEP_PROGRESS;
            }
            c->head_scan = (uint32_t)buf_len(c->in);
        } else if ((!c->in || buf_len(c->in) == 0) && (w->stopping || c->peer_closed)) {
            client_close(c);
            return STEP_CLOSED;
        }
        if (!c->readable) {
            if (c->in && buf_len(c->in) == 0) {
                buf_put(&pt->bufs, c->in);
                c->in = NULL;
            }
            if (!c->in && c->requests > 0)
                idle_add(c); /* between requests */
            return STEP_BLOCKED;
        }
        if (!c->in) {
            c->in = buf_get(&pt->bufs);
            if (!c->in) {
                client_close(c);
                return STEP_CLOSED;
            }
        }
        if (c->in->start > 0)
            buf_compact(c->in);
        bool was_empty = buf_len(c->in) == 0;
        ssize_t n = client_read(c, false);
        if (n > 0) {
            idle_remove(c);
            if (was_empty)
                c->head_start_ms = w->loop.now_ms;
        }
        if (n >= 0)
            continue;
        client_close(c); /* EOF or error between requests (a partial head is dropped) */
        return STEP_CLOSED;
    }
}

/* ---- PROXY protocol header ---- */

/* Reads the PROXY protocol header a proxy_protocol listener requires: its
 * address becomes the client's; bytes after it are the first request's. */
static enum step step_proxy_header(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    for (;;) {
        if (c->in && buf_len(c->in) > 0) {
            struct pp_header h;
            int r = pp_parse(c->in->data + c->in->start, buf_len(c->in), BUF_SIZE, &h);
            if (r > 0) {
                c->in->start += (uint32_t)r;
                if (h.has_addr)
                    client_set_address(c, h.family, h.src);
                c->state = CS_READ_HEAD;
                return STEP_PROGRESS;
            }
            if (r == PP_INVALID) {
                client_close(c); /* strict: nothing is answered to a malformed header */
                return STEP_CLOSED;
            }
        }
        if (!c->readable)
            return STEP_BLOCKED;
        if (!c->in) {
            c->in = buf_get(&pt->bufs);
            if (!c->in) {
                client_close(c);
                return STEP_CLOSED;
            }
        }
        if (buf_space(c->in) > 0 && client_read(c, true) >= 0)
            continue;
        client_close(c); /* closed (or full) before a whole header */
        return STEP_CLOSED;
    }
}

/* ---- tunnels ---- */

static enum step step_tunnel(struct client *c)
{
    if (!tunnel_step(c)) { /* tunnel_step moves all it can before returning */
        client_close(c);
        return STEP_CLOSED;
    }
    return STEP_BLOCKED;
}

/* ---- timers and events ---- */

static uint64_t client_deadline(const struct client *c)
{
    const struct cfg_timeouts *t = &client_cfg(c)->timeouts;
    const struct exchange *ex = c->ex;
    switch (c->state) {
    case CS_PROXY_HEADER:
        return c->head_start_ms + seconds_ms(t->request_header);
    case CS_READ_HEAD:
        if ((!c->in || buf_len(c->in) == 0) && c->requests > 0)
            return c->last_io_ms + seconds_ms(t->keepalive);
        return c->head_start_ms + seconds_ms(t->request_header);
    case CS_EXCHANGE:
        return exchange_deadline(c);
    case CS_SEND_ERROR:
    case CS_LINGER:
        return c->close_deadline_ms;
    case CS_TUNNEL: {
        uint64_t last = c->last_io_ms > ex->origin_io_ms ? c->last_io_ms : ex->origin_io_ms;
        return last + seconds_ms(t->client);
    }
    }
    return c->last_io_ms;
}

static void client_update_timer(struct client *c)
{
    struct loop *loop = &c->pt->w->loop;
    uint64_t deadline = client_deadline(c);
    timer_arm(loop, &c->timer, deadline > loop->now_ms ? deadline - loop->now_ms : 0);
}

static void client_timer_cb(struct loop *loop, struct timer *t)
{
    struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
    if (client_deadline(c) > loop->now_ms) { /* activity moved the deadline */
        client_update_timer(c);
        return;
    }
    switch (c->state) {
    case CS_READ_HEAD:
        if (c->in && buf_len(c->in) > 0) {
            client_send_error(c, 408);
            break;
        }
        client_close(c);
        return;
    case CS_EXCHANGE:
        if (exchange_timeout(c) == STEP_CLOSED)
            return;
        break;
    case CS_SEND_ERROR:
    case CS_LINGER:
    case CS_TUNNEL:
    case CS_PROXY_HEADER: /* no whole PROXY header within request_header */
        client_close(c);
        return;
    }
    client_drive(c);
}

static void client_drive(struct client *c)
{
    for (;;) {
        enum step s = STEP_BLOCKED;
        switch (c->state) {
        case CS_READ_HEAD: s = step_read_head(c); break;
        case CS_EXCHANGE: s = exchange_step(c); break;
        case CS_SEND_ERROR: s = step_send_error(c); break;
        case CS_LINGER: s = step_linger(c); break;
        case CS_TUNNEL: s = step_tunnel(c); break;
        case CS_PROXY_HEADER: s = step_proxy_header(c); break;
        }
        if (s == STEP_CLOSED)
            return;
        if (s == STEP_BLOCKED)
            break;
    }
    client_update_timer(c);
}

static void client_io_cb(struct loop *loop, struct io_watch *io, uint32_t events)
{
    (void)loop;
    struct client *c = (struct client *)io;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        c->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP))
        c->peer_closed = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->writable = true;
    tp_events(&c->tp, events, &c->readable, &c->writable);
    client_drive(c);
}

void client_origin_event(struct client *c)
{
    client_drive(c);
}
