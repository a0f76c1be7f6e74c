/*
 * client — a client connection and the exchange of one request/response.
 *
 * States: CS_READ_HEAD (waiting for a request head; the buffer is released
 * while nothing is pending), CS_EXCHANGE (request forwarded, response
 * relayed), CS_SEND_ERROR (a response limpet made itself, then close) and
 * CS_LINGER (write side shut, input drained briefly so the client reads the
 * last response instead of a reset).
 *
 * client_drive() runs the current state's step until nothing can progress:
 * every socket is edge-triggered and its readiness is kept in flags, so a
 * step reads only when there is room and writes only when there is data.
 * Pipelined requests wait in the input buffer and are parsed only after the
 * previous response has been sent, so they are answered in order.
 *
 * One timer per connection; its deadline is recomputed from the state after
 * each drive: request_header while a head is incomplete, keepalive between
 * requests, connect while an origin connection is opening, server while
 * waiting on the origin, client while waiting on the client.
 */
#include "proxy/proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "affinity/hll.h"
#include "core/addr.h"
#include "core/log.h"
#include "core/worker.h"

#define LINGER_MS 2000u
#define CLIENTS_KEPT_FREE 32
#define CONTINUE_WAIT_MS 250u     /* origin's time to answer Expect: 100-continue itself */     /* closed connections' objects kept for reuse */
#define RETRY_AFTER_SECONDS 5

enum step { STEP_BLOCKED, STEP_PROGRESS, STEP_CLOSED };

static uint64_t seconds_ms(double s) { return (uint64_t)(s * 1000.0); }

/* ---- lifetime ---- */

static void client_io_cb(struct loop *loop, struct io_watch *io, uint32_t events);
static void client_timer_cb(struct loop *loop, struct timer *t);
static void client_drive(struct client *c);

static void detach_origin(struct client *c, bool reusable)
{
    struct exchange *ex = &c->ex;
    struct origin_conn *oc = ex->oc;
    if (!oc)
        return;
    struct steer_slot *slot = &c->worker->origins[oc->origin_id].steer;
    if (slot->active > 0)
        slot->active--;
    STAT_ADD(c->worker->stats.origins[oc->origin_id].active, -1);
    ex->oc = NULL;
    origin_conn_release(oc, reusable);
}

/* The configuration a client connection currently works with. */
static const struct config *client_cfg(const struct client *c)
{
    return c->ex.use ? c->ex.use->snap->cfg : c->worker->cur->snap->cfg;
}

/* What routing may look at for c's exchange: its snapshot (retries included)
 * and this worker's state for it. Built per call: the scratch may move. */
static struct route_ctx exchange_route_ctx(const struct client *c)
{
    struct worker *w = c->worker;
    struct route_ctx rc = {
        .snap = c->ex.use->snap, .lb = c->ex.lb, .client_family = c->peer_family,
        .now_ms = w->loop.now_ms, .pool_slots = c->ex.use->pool_slots,
        .candidates = w->candidate_scratch, .rng = &w->rng, .origin_stats = w->stats.origins,
    };
    memcpy(rc.client_addr, c->peer_addr, sizeof(rc.client_addr));
    return rc;
}

/* Ends the exchange's hold on its origin connection and snapshot. */
static void release_exchange(struct client *c, bool origin_reusable)
{
    detach_origin(c, origin_reusable);
    worker_snapshot_put(c->worker, c->ex.use);
    c->ex.use = NULL;
}

void client_close(struct client *c)
{
    struct worker *w = c->worker;
    release_exchange(c, false);
    timer_cancel(&w->loop, &c->timer);
    loop_unwatch(&w->loop, &c->io);
    close(c->io.fd);
    buf_put(&w->bufs, c->in);
    c->in = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    if (w->num_free_clients < CLIENTS_KEPT_FREE) {
        c->next = w->free_clients;
        w->free_clients = c;
        w->num_free_clients++;
    } else {
        pages_free(c, sizeof(*c));
    }
    worker_client_closed(w);
}

void client_accept(struct listener *l, int fd, const struct sockaddr *peer)
{
    struct worker *w = l->worker;
    struct client *c = w->free_clients;
    if (c) {
        w->free_clients = c->next;
        w->num_free_clients--;
    } else {
        c = pages_alloc(sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
    }
    memset(c, 0, offsetof(struct client, ex));
    memset(&c->ex, 0, offsetof(struct exchange, req_iov));
    c->worker = w;
    c->listener = l;
    c->state = CS_READ_HEAD;
    c->last_io_ms = c->head_start_ms = w->loop.now_ms;
    sockaddr_ip_string(peer, c->ip, sizeof(c->ip));
    if (peer->sa_family == AF_INET6) {
        c->peer_family = 6;
        memcpy(c->peer_addr, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
    } else {
        c->peer_family = 4;
        memcpy(c->peer_addr, &((const struct sockaddr_in *)peer)->sin_addr, 4);
    }
    c->ip_len = (uint8_t)strlen(c->ip);
    timer_init(&c->timer, client_timer_cb);
    if (loop_watch(&w->loop, &c->io, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                   client_io_cb) < 0) {
        close(fd);
        pages_free(c, sizeof(*c));
        return;
    }
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->num_clients++;
    atomic_store_explicit(&w->stats.client_connections, w->num_clients, memory_order_relaxed);
    STAT_ADD(w->stats.accepted, 1);
    timer_arm(&w->loop, &c->timer, seconds_ms(w->cur->snap->cfg->timeouts.request_header));
}

void client_stop_idle(struct worker *w)
{
    struct client *c = w->clients;
    while (c) {
        struct client *next = c->next;
        if (c->state == CS_READ_HEAD && (!c->in || buf_len(c->in) == 0))
            client_close(c);
        else if (c->state == CS_EXCHANGE)
            c->ex.client_keep_alive = false;
        c = next;
    }
}

/* ---- access log ---- */

/* Counts the exchange and writes its access-log line. */
static void record_exchange(struct worker *w, const struct client *c, int status, double seconds)
{
    const struct exchange *ex = &c->ex;
    unsigned cls = stats_status_class(status);
    if (ex->use && ex->lb >= 0) {
        struct lb_stats *ls = &w->stats.lbs[ex->use->snap->lb_ids[ex->lb]];
        STAT_ADD(ls->status[cls], 1);
        STAT_ADD(ls->affinity[ex->aff.reason], 1);
        STAT_ADD(ls->duration[stats_duration_bucket(seconds)], 1);
        STAT_ADD(ls->duration_sum_us, (uint64_t)(seconds * 1e6));
        if (ex->aff.pool >= 0 && ex->aff.origin >= 0) {
            const struct origin_shared *os =
                ex->use->snap->pools[ex->aff.pool].origins[ex->aff.origin];
            struct origin_stats *st = &w->stats.origins[os->id];
            STAT_ADD(st->requests, 1);
            STAT_ADD(st->status[cls], 1);
        }
    }
}

static void log_exchange(struct client *c, int status)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    const struct config *cfg = client_cfg(c);
    long lb = ex->use ? ex->lb : c->listener->lb_index;
    const struct cfg_pool *pool = ex->use && ex->aff.pool >= 0 ? &cfg->pools[ex->aff.pool] : NULL;
    uint64_t now_us = clock_wall_us();
    double seconds = ex->start_us ? (double)(now_us - ex->start_us) / 1e6 : 0.0;
    record_exchange(w, c, status, seconds);
    struct access_entry e = {
        .time_us = ex->start_us ? ex->start_us : now_us,
        .client = c->ip,
        .method = ex->method, .method_len = ex->method_len,
        .path = ex->path, .path_len = ex->path_len,
        .status = status,
        .bytes = ex->bytes_out,
        .duration_ms = seconds * 1000.0,
        .load_balancer = lb >= 0 ? cfg->load_balancers[lb].name : NULL,
        .pool = pool ? pool->name : NULL,
        .origin = pool && ex->aff.origin >= 0 ? pool->origins[ex->aff.origin].name : NULL,
        .affinity = ex->use ? affinity_reason_name(ex->aff.reason) : NULL,
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

/* Ends the exchange (if any) with a response of limpet's own, then closes. */
static void send_error(struct client *c, int status)
{
    struct exchange *ex = &c->ex;
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
    if (c->state == CS_READ_HEAD && ex->method_len == 0) {
        ex->path_len = 0;
        ex->start_us = 0;
        ex->start_ms = 0;
    }
    log_exchange(c, status);
    release_exchange(c, false);
    c->err_data = ex->req_extra;
    c->err_left = (size_t)n;
    c->state = CS_SEND_ERROR;
    c->close_deadline_ms = c->worker->loop.now_ms + seconds_ms(client_cfg(c)->timeouts.client);
}

static void start_linger(struct client *c)
{
    shutdown(c->io.fd, SHUT_WR);
    c->state = CS_LINGER;
    c->close_deadline_ms = c->worker->loop.now_ms + LINGER_MS;
}

static enum step step_send_error(struct client *c)
{
    while (c->err_left > 0) {
        if (!c->writable)
            return STEP_BLOCKED;
        ssize_t n = send(c->io.fd, c->err_data, c->err_left, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->writable = false;
                return STEP_BLOCKED;
            }
            client_close(c);
            return STEP_CLOSED;
        }
        c->err_data += n;
        c->err_left -= (size_t)n;
    }
    start_linger(c);
    return STEP_PROGRESS;
}

static enum step step_linger(struct client *c)
{
    char sink[4096];
    while (c->readable) {
        ssize_t n = recv(c->io.fd, sink, sizeof(sink), 0);
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

static void copy_for_log(struct exchange *ex, const struct h1_request *req)
{
    ex->method_len = (uint8_t)(req->method_len < sizeof(ex->method) ? req->method_len
                                                                     : sizeof(ex->method));
    memcpy(ex->method, req->method, ex->method_len);
    ex->path_len = (uint16_t)(req->target_len < LOG_PATH_MAX ? req->target_len : LOG_PATH_MAX);
    memcpy(ex->path, req->target, ex->path_len);
}

/* Parses the request head at req_start into the worker's scratch (again,
 * for a replay). Returns 0, or the status to refuse it with. */
static int parse_request(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    int r = h1_parse_request(c->in->data + ex->req_start, c->in->end - ex->req_start,
                             client_cfg(c)->limits.max_header_bytes, &w->req);
    if (r <= 0)
        return r == H1_INVALID && w->req.error.status ? w->req.error.status : 400;
    if (h1_request_semantics(&w->req, &w->sem) < 0)
        return w->sem.error.status ? w->sem.error.status : 400;
    return 0;
}

/* Un-skips the Upgrade field of an upgrade being passed on (the parser
 * treats it as hop-by-hop, as it is for everything else). */
static void keep_upgrade_field(const struct h1_header *h, size_t n, struct h1_semantics *sem)
{
    for (size_t i = 0; i < n; i++)
        if (h1_token_eq(h[i].name, h[i].name_len, "upgrade"))
            sem->skip[i] = false;
}

/* An upgrade limpet passes on: any protocol but h2c (SPEC §4). */
static bool wants_upgrade(const struct h1_request *req, const struct h1_semantics *sem)
{
    if (!sem->upgrade)
        return false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct h1_header *h = &req->headers[i];
        if (!h1_token_eq(h->name, h->name_len, "upgrade"))
            continue;
        for (size_t k = 0; k + 3 <= h->value_len; k++)
            if (h1_token_eq(h->value + k, 3, "h2c"))
                return false;
    }
    return true;
}

/* Builds the outgoing head from the parsed request and the routing decision;
 * false when it is too fragmented to send (the request is refused). */
static bool build_request_head(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    if (ex->upgrade)
        keep_upgrade_field(w->req.headers, w->req.num_headers, &w->sem);
    char affinity[160];
    size_t affinity_len = affinity_header_value(ex->use->snap, ex->lb, &ex->aff, affinity,
                                                sizeof(affinity));
    return forward_request_head(ex, c->in->data + ex->req_start, ex->head_len, &w->req, &w->sem,
                                c->ip, c->ip_len, affinity, affinity_len);
}

/* Counts the session toward the origin's distinct-sessions estimate. */
static void note_session(struct client *c)
{
    struct exchange *ex = &c->ex;
    const struct origin_shared *os = ex->use->snap->pools[ex->aff.pool].origins[ex->aff.origin];
    if (!ex->aff.session_hash)
        return;
    struct origin_stats *st = &c->worker->stats.origins[os->id];
    uint64_t now = clock_wall_us() / 1000000u;
    if (!st->sessions) {
        struct hll_window *win = malloc(sizeof(*win)); /* once per origin and worker */
        if (!win)
            return;
        double ttl = ex->use->snap->cfg->load_balancers[ex->lb].session_affinity_ttl;
        hll_window_init(win, ttl > 0 ? (uint32_t)ttl : 86400, now);
        __atomic_store_n(&st->sessions, win, __ATOMIC_RELEASE); /* readers: admin API */
    }
    hll_window_add(st->sessions, hll_mix64(ex->aff.session_hash), now);
}

static enum step start_exchange(struct client *c, size_t head_len)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    memset(ex, 0, offsetof(struct exchange, req_iov));
    ex->aff.pool = ex->aff.origin = -1;
    ex->start_us = clock_wall_us();
    ex->start_ms = w->loop.now_ms;
    ex->req_start = c->in->start;
    ex->head_len = (uint32_t)head_len;
    ex->use = worker_snapshot_get(w);
    ex->lb = c->listener->lb_index;
    copy_for_log(ex, &w->req);

    int status = parse_request(c);
    if (status) {
        send_error(c, status);
        return STEP_PROGRESS;
    }
    const struct h1_semantics *sem = &w->sem;
    ex->replayable = true;
    ex->req_body = sem->body;
    ex->content_length = ex->req_left = sem->body == H1_BODY_LENGTH ? sem->content_length : 0;
    h1_chunked_init(&ex->req_chunk);
    ex->is_head = ex->method_len == 4 && memcmp(ex->method, "HEAD", 4) == 0;
    ex->client_keep_alive = sem->keep_alive && !w->stopping;
    ex->minor_version = w->req.minor_version;
    ex->upgrade = wants_upgrade(&w->req, sem);
    ex->expect_continue = sem->expect_continue && sem->body != H1_BODY_NONE;
    c->in->start = ex->req_start + ex->head_len;
    ex->req_scan = c->in->start;
    c->state = CS_EXCHANGE;
    struct route_ctx rc = exchange_route_ctx(c);
    if (ex->lb < 0 || affinity_decide(&rc, w->token_ctx, &c->pin, &w->req, &ex->aff) < 0) {
        send_error(c, 503);
        return STEP_PROGRESS;
    }
    note_session(c);
    if (!build_request_head(c))
        send_error(c, 431);
    return STEP_PROGRESS;
}

static enum step step_read_head(struct client *c)
{
    struct worker *w = c->worker;
    for (;;) {
        if (c->in && buf_len(c->in) > 0) {
            int r = h1_parse_request(c->in->data + c->in->start, buf_len(c->in),
                                     client_cfg(c)->limits.max_header_bytes, &w->req);
            if (r > 0)
                return start_exchange(c, (size_t)r);
            if (r == H1_INVALID) {
                memset(&c->ex, 0, offsetof(struct exchange, req_iov));
                send_error(c, w->req.error.status ? w->req.error.status : 400);
                return STEP_PROGRESS;
            }
        } else if (w->stopping || c->peer_closed) {
            client_close(c);
            return STEP_CLOSED;
        }
        if (!c->readable) {
            if (c->in && buf_len(c->in) == 0) {
                buf_put(&w->bufs, c->in);
                c->in = NULL;
            }
            return STEP_BLOCKED;
        }
        if (!c->in) {
            c->in = buf_get(&w->bufs);
            if (!c->in) {
                client_close(c);
                return STEP_CLOSED;
            }
        }
        if (c->in->start > 0)
            buf_compact(c->in);
        bool was_empty = buf_len(c->in) == 0;
        ssize_t n = recv(c->io.fd, c->in->data + c->in->end, buf_space(c->in), 0);
        if (n > 0) {
            if (was_empty)
                c->head_start_ms = w->loop.now_ms;
            c->in->end += (uint32_t)n;
            c->last_io_ms = w->loop.now_ms;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            continue;
        }
        client_close(c); /* EOF or error between requests (a partial head is dropped) */
        return STEP_CLOSED;
    }
}

/* ---- origin side: connecting, failures, replay ---- */

static bool method_idempotent(const struct exchange *ex)
{
    static const char *const idempotent[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
        if (ex->method_len == strlen(idempotent[i]) &&
            memcmp(ex->method, idempotent[i], ex->method_len) == 0)
            return true;
    return false;
}

/* Chooses another origin for a retry (unless the same origin is to be tried
 * on a fresh connection) and rebuilds the head for it. */
static int reroute(struct client *c)
{
    struct exchange *ex = &c->ex;
    if (!ex->fresh_conn_only || ex->aff.pool < 0) {
        struct route_ctx rc = exchange_route_ctx(c);
        if (affinity_reroute(&rc, c->worker->token_ctx, &ex->aff) < 0)
            return -1;
    }
    if (parse_request(c) != 0 || !build_request_head(c))
        return -1;
    return 0;
}

/* Opens (or reuses) a connection to the exchange's origin; on an immediate
 * failure tries other origins as failover allows. */
static enum step connect_origin(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    for (;;) {
        if (ex->attempts > 0 && reroute(c) < 0) {
            send_error(c, ex->connect_failed_any ? 503 : 502);
            return STEP_PROGRESS;
        }
        ex->attempts++;
        int err = 0;
        struct origin_conn *oc = origin_conn_acquire(w, ex->use->snap, (size_t)ex->aff.pool,
                                                     (size_t)ex->aff.origin, ex->fresh_conn_only,
                                                     &err);
        ex->fresh_conn_only = false;
        if (oc) {
            oc->client = c;
            ex->oc = oc;
            ex->connect_start_ms = ex->origin_io_ms = w->loop.now_ms;
            ex->req_sent_on_conn = 0;
            w->origins[oc->origin_id].steer.active++;
            STAT_ADD(w->stats.origins[oc->origin_id].active, 1);
            return STEP_PROGRESS;
        }
        if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM) {
            send_error(c, 503); /* limpet's own shortage, not the origin's fault */
            return STEP_PROGRESS;
        }
        struct route_ctx rc = exchange_route_ctx(c);
        route_origin_failed(&rc, (size_t)ex->aff.pool, (size_t)ex->aff.origin, err);
        ex->connect_failed_any = true;
        if (!affinity_failover(&rc, &ex->aff)) {
            send_error(c, 502);
            return STEP_PROGRESS;
        }
    }
}

/* The connection could not be opened (refused, unreachable, timed out):
 * nothing was sent, so another origin may take the request if failover allows. */
static enum step connect_failed(struct client *c, int err)
{
    struct exchange *ex = &c->ex;
    struct route_ctx rc = exchange_route_ctx(c);
    route_origin_failed(&rc, (size_t)ex->aff.pool, (size_t)ex->aff.origin, err);
    ex->connect_failed_any = true;
    detach_origin(c, false);
    if (!affinity_failover(&rc, &ex->aff)) {
        send_error(c, 502);
        return STEP_PROGRESS;
    }
    return connect_origin(c);
}

/* Puts the request back as it was before anything was sent. */
static void rewind_request(struct client *c)
{
    struct exchange *ex = &c->ex;
    c->in->start = ex->req_start + ex->head_len;
    ex->req_scan = c->in->start;
    ex->req_left = ex->content_length;
    h1_chunked_init(&ex->req_chunk);
    ex->req_chunk_done = ex->req_head_sent = ex->req_done = false;
}

/* The origin connection failed or closed before the response was complete. */
static enum step origin_failed(struct client *c)
{
    struct exchange *ex = &c->ex;
    bool reused = ex->oc && ex->oc->reused;
    size_t consumed = c->in ? c->in->start - ex->req_start : 0;
    bool may_replay = !ex->resp_any_byte && ex->replayable &&
                      ex->aff.tried.n < ROUTE_MAX_ATTEMPTS &&
                      (ex->req_sent_on_conn == 0 ||
                       (method_idempotent(ex) &&
                        consumed <= client_cfg(c)->limits.retry_buffer_bytes));
    struct route_ctx rc = exchange_route_ctx(c);
    if (may_replay && (reused || affinity_failover(&rc, &ex->aff))) {
        rewind_request(c);
        if (!reused)
            route_origin_failed(&rc, (size_t)ex->aff.pool, (size_t)ex->aff.origin, ECONNRESET);
        detach_origin(c, false);
        ex->fresh_conn_only = reused; /* a stale keep-alive connection: same origin, new conn */
        return connect_origin(c);
    }
    if (!ex->resp_head_sent) {
        send_error(c, 502);
        return STEP_PROGRESS;
    }
    log_exchange(c, ex->status); /* cut off mid-response: the client sees the abort */
    client_close(c);
    return STEP_CLOSED;
}

/* ---- request forwarding ---- */

/* Body bytes in the input buffer that are ready to send; -1 on bad chunking. */
static long request_body_ready(struct client *c)
{
    struct exchange *ex = &c->ex;
    struct buf *in = c->in;
    switch (ex->req_body) {
    case H1_BODY_LENGTH: {
        uint64_t avail = buf_len(in);
        return (long)(avail < ex->req_left ? avail : ex->req_left);
    }
    case H1_BODY_CHUNKED:
        if (!ex->req_chunk_done && ex->req_scan < in->end) {
            bool done = false;
            long r = h1_chunked_scan(&ex->req_chunk, in->data + ex->req_scan,
                                     in->end - ex->req_scan, &done);
            if (r < 0)
                return -1;
            ex->req_scan += (uint32_t)r;
            ex->req_chunk_done = done;
        }
        return (long)(ex->req_scan - in->start);
    default:
        return 0;
    }
}

static bool request_body_complete(const struct client *c)
{
    const struct exchange *ex = &c->ex;
    switch (ex->req_body) {
    case H1_BODY_LENGTH:
        return ex->req_left == 0;
    case H1_BODY_CHUNKED:
        return ex->req_chunk_done && c->in->start == ex->req_scan;
    default:
        return true;
    }
}

static void consume_request_body(struct client *c, size_t n)
{
    if (n)
        c->ex.body_started = true;
    c->in->start += (uint32_t)n;
    if (c->ex.req_body == H1_BODY_LENGTH)
        c->ex.req_left -= n;
}

static unsigned remaining_iov(const struct iovec *iov, unsigned from, unsigned to, size_t *bytes)
{
    size_t total = 0;
    for (unsigned i = from; i < to; i++)
        total += iov[i].iov_len;
    *bytes = total;
    return to - from;
}

static enum step send_request(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    struct origin_conn *oc = ex->oc;
    enum step result = STEP_BLOCKED;

    while (!ex->req_done) {
        long ready = request_body_ready(c);
        if (ready < 0) {
            if (!ex->resp_head_sent) {
                send_error(c, 400);
                return STEP_PROGRESS;
            }
            client_close(c);
            return STEP_CLOSED;
        }
        if (!ex->req_head_sent || ready > 0) {
            if (!oc->writable)
                break;
            struct iovec iov[HEAD_IOV_MAX + 1];
            size_t head_bytes = 0;
            unsigned n_iov = 0;
            if (!ex->req_head_sent) {
                n_iov = remaining_iov(ex->req_iov, ex->req_iov_i, ex->req_iov_n, &head_bytes);
                memcpy(iov, ex->req_iov + ex->req_iov_i, n_iov * sizeof(*iov));
            }
            if (ready > 0) {
                iov[n_iov].iov_base = c->in->data + c->in->start;
                iov[n_iov].iov_len = (size_t)ready;
                n_iov++;
            }
            ssize_t n = writev(oc->io.fd, iov, (int)n_iov);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    oc->writable = false;
                    break;
                }
                return origin_failed(c);
            }
            ex->req_sent_on_conn += (uint64_t)n;
            ex->origin_io_ms = w->loop.now_ms;
            result = STEP_PROGRESS;
            size_t written = (size_t)n;
            if (!ex->req_head_sent) {
                size_t part = written < head_bytes ? written : head_bytes;
                ex->req_head_sent = iov_advance(ex->req_iov, ex->req_iov_n, &ex->req_iov_i, part);
                if (ex->req_head_sent)
                    ex->head_sent_ms = w->loop.now_ms;
                written -= part;
            }
            consume_request_body(c, written);
            continue;
        }
        if (request_body_complete(c)) {
            ex->req_done = true;
            break;
        }
        /* Need more body bytes from the client. */
        if (!c->readable)
            break;
        if (buf_space(c->in) == 0) {
            size_t moved = buf_compact(c->in);
            ex->req_scan -= (uint32_t)moved;
            ex->replayable = false;
        }
        ssize_t n = recv(c->io.fd, c->in->data + c->in->end, buf_space(c->in), 0);
        if (n > 0) {
            c->in->end += (uint32_t)n;
            c->last_io_ms = w->loop.now_ms;
            result = STEP_PROGRESS;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            break;
        }
        log_exchange(c, 0); /* the client left in the middle of its request body */
        client_close(c);
        return STEP_CLOSED;
    }
    return result;
}

/* ---- response relaying ---- */

static long response_body_ready(struct exchange *ex, struct buf *in)
{
    switch (ex->resp_body) {
    case H1_BODY_LENGTH: {
        uint64_t avail = buf_len(in);
        return (long)(avail < ex->resp_left ? avail : ex->resp_left);
    }
    case H1_BODY_CHUNKED:
        if (!ex->resp_chunk_done && ex->resp_scan < in->end) {
            bool done = false;
            char *raw = in->data + ex->resp_scan;
            size_t raw_len = in->end - ex->resp_scan;
            if (ex->dechunk) {
                /* Decoded data stays at resp_scan; the undecoded tail follows it. */
                size_t data_len = 0;
                long r = h1_chunked_decode(&ex->resp_chunk, raw, raw_len, &data_len, &done);
                if (r < 0)
                    return -1;
                size_t tail = raw_len - (size_t)r;
                memmove(raw + data_len, raw + r, tail);
                ex->resp_scan += (uint32_t)data_len;
                in->end = ex->resp_scan + (uint32_t)tail;
            } else {
                long r = h1_chunked_scan(&ex->resp_chunk, raw, raw_len, &done);
                if (r < 0)
                    return -1;
                ex->resp_scan += (uint32_t)r;
            }
            ex->resp_chunk_done = done;
        }
        return (long)(ex->resp_scan - in->start);
    case H1_BODY_UNTIL_CLOSE:
        return (long)buf_len(in);
    default:
        return 0;
    }
}

static bool response_body_complete(const struct exchange *ex, const struct buf *in)
{
    switch (ex->resp_body) {
    case H1_BODY_LENGTH:
        return ex->resp_left == 0;
    case H1_BODY_CHUNKED:
        return ex->resp_chunk_done && in->start == ex->resp_scan;
    case H1_BODY_UNTIL_CLOSE:
        return ex->origin_eof && buf_len(in) == 0;
    default:
        return true;
    }
}

/* The Set-Cookie field limpet adds to the response (into ex->resp_extra). */
static size_t format_set_cookie(struct client *c)
{
    struct exchange *ex = &c->ex;
    if (!ex->aff.set_cookie || ex->aff.reason == REASON_FAILOVER_TEMPORARY)
        return 0;
    const struct snapshot *s = ex->use->snap;
    int n = snprintf(ex->resp_extra, sizeof(ex->resp_extra), "Set-Cookie: %s=%s%s\r\n",
                     s->cfg->load_balancers[ex->lb].attributes.cookie_name, ex->aff.cookie_value,
                     s->aff->lbs[ex->lb].cookie_attrs);
    return n > 0 && (size_t)n < sizeof(ex->resp_extra) ? (size_t)n : 0;
}

/* The prefix app_cookie "prefix" mode puts on the application's cookie. */
static const char *app_cookie_prefix(const struct client *c)
{
    const struct exchange *ex = &c->ex;
    const struct snapshot *s = ex->use->snap;
    const struct cfg_load_balancer *lb = &s->cfg->load_balancers[ex->lb];
    if (lb->session_affinity != AFFINITY_APP_COOKIE ||
        lb->attributes.app_cookie.mode != APP_COOKIE_PREFIX)
        return NULL;
    return s->aff->pools[ex->aff.pool].app_prefix[ex->aff.origin];
}

/* Parses a response head waiting in oc->in. Returns STEP_BLOCKED when more
 * bytes are needed, STEP_PROGRESS when parsed (or a 502 was started). */
static enum step parse_response_head(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    struct buf *in = ex->oc->in;
    const char *head = in->data + in->start;
    int r = h1_parse_response(head, buf_len(in), BUF_SIZE, &w->resp);
    if (r == H1_NEED_MORE)
        return STEP_BLOCKED;
    struct h1_semantics *sem = &w->sem;
    if (r < 0 || (w->resp.status == 101 && !ex->upgrade) ||
        h1_response_semantics(&w->resp, ex->method, ex->method_len, sem) < 0) {
        send_error(c, 502);
        return STEP_PROGRESS;
    }
    if (w->resp.status == 101) {
        /* The origin switches protocols: pass its Upgrade on, then tunnel. */
        ex->tunnel = true;
        ex->status = 101;
        ex->resp_body = H1_BODY_NONE;
        keep_upgrade_field(w->resp.headers, w->resp.num_headers, sem);
        size_t set_cookie_len = format_set_cookie(c);
        if (!forward_response_head(ex, head, (size_t)r, &w->resp, sem, ex->resp_extra,
                                   set_cookie_len, NULL)) {
            send_error(c, 502);
            return STEP_PROGRESS;
        }
        in->start += (uint32_t)r;
        ex->resp_head_parsed = true;
        return STEP_PROGRESS;
    }
    if (w->resp.status < 200) {
        /* Interim response: passed on to HTTP/1.1 clients, dropped for 1.0;
         * a 100 after the one limpet already sent is dropped too. */
        if (w->resp.status == 100 && ex->continue_sent) {
            in->start += (uint32_t)r;
            return STEP_PROGRESS;
        }
        ex->continue_sent |= w->resp.status == 100;
        ex->interim = true;
        ex->resp_body = H1_BODY_NONE;
        if (!forward_response_head(ex, head, (size_t)r, &w->resp, sem, NULL, 0, NULL)) {
            send_error(c, 502);
            return STEP_PROGRESS;
        }
        if (ex->minor_version == 0)
            ex->resp_iov_i = ex->resp_iov_n;
        in->start += (uint32_t)r;
        ex->resp_head_parsed = true;
        return STEP_PROGRESS;
    }
    ex->status = w->resp.status;
    ex->resp_body = sem->body;
    ex->resp_left = sem->body == H1_BODY_LENGTH ? sem->content_length : 0;
    h1_chunked_init(&ex->resp_chunk);
    ex->resp_keep_alive = sem->keep_alive && sem->body != H1_BODY_UNTIL_CLOSE;
    if (sem->body == H1_BODY_CHUNKED && ex->minor_version == 0) {
        /* An HTTP/1.0 client cannot read chunked framing: send the data alone,
         * delimited by closing the connection. */
        ex->dechunk = true;
        for (size_t i = 0; i < w->resp.num_headers; i++)
            if (h1_token_eq(w->resp.headers[i].name, w->resp.headers[i].name_len,
                            "transfer-encoding"))
                sem->skip[i] = true;
    }
    ex->close_client = !ex->client_keep_alive || w->stopping || !ex->req_done ||
                       sem->body == H1_BODY_UNTIL_CLOSE || ex->dechunk;
    size_t set_cookie_len = format_set_cookie(c);
    if (!forward_response_head(ex, head, (size_t)r, &w->resp, sem, ex->resp_extra,
                               set_cookie_len, app_cookie_prefix(c))) {
        send_error(c, 502);
        return STEP_PROGRESS;
    }
    in->start += (uint32_t)r;
    ex->resp_scan = in->start;
    ex->resp_head_parsed = true;
    return STEP_PROGRESS;
}

/* The 101 is out: the exchange is logged and the connection becomes a tunnel. */
static enum step start_tunnel(struct client *c)
{
    struct exchange *ex = &c->ex;
    log_exchange(c, 101);
    worker_snapshot_put(c->worker, ex->use);
    ex->use = NULL;
    c->state = CS_TUNNEL;
    return STEP_PROGRESS;
}

static enum step step_tunnel(struct client *c)
{
    if (!tunnel_step(c)) { /* tunnel_step moves all it can before returning */
        client_close(c);
        return STEP_CLOSED;
    }
    return STEP_BLOCKED;
}

static enum step relay_response(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    struct origin_conn *oc = ex->oc;
    enum step result = STEP_BLOCKED;

    while (!ex->resp_done) {
        if (ex->tunnel && ex->resp_head_sent)
            return start_tunnel(c);
        if (ex->resp_head_parsed) {
            long ready = response_body_ready(ex, oc->in);
            if (ready < 0) {
                if (!ex->resp_head_sent) {
                    send_error(c, 502);
                    return STEP_PROGRESS;
                }
                log_exchange(c, ex->status);
                client_close(c);
                return STEP_CLOSED;
            }
            if (!ex->resp_head_sent || ready > 0) {
                if (!c->writable)
                    break;
                struct iovec iov[HEAD_IOV_MAX + 1];
                size_t head_bytes = 0;
                unsigned n_iov = 0;
                if (!ex->resp_head_sent) {
                    n_iov = remaining_iov(ex->resp_iov, ex->resp_iov_i, ex->resp_iov_n,
                                          &head_bytes);
                    memcpy(iov, ex->resp_iov + ex->resp_iov_i, n_iov * sizeof(*iov));
                }
                if (ready > 0) {
                    iov[n_iov].iov_base = oc->in->data + oc->in->start;
                    iov[n_iov].iov_len = (size_t)ready;
                    n_iov++;
                }
                ssize_t n = n_iov ? writev(c->io.fd, iov, (int)n_iov) : 0;
                if (n < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        c->writable = false;
                        break;
                    }
                    log_exchange(c, ex->status); /* the client went away */
                    client_close(c);
                    return STEP_CLOSED;
                }
                c->last_io_ms = w->loop.now_ms;
                ex->bytes_out += (uint64_t)n;
                result = STEP_PROGRESS;
                size_t written = (size_t)n;
                if (!ex->resp_head_sent) {
                    size_t part = written < head_bytes ? written : head_bytes;
                    ex->resp_head_sent =
                        iov_advance(ex->resp_iov, ex->resp_iov_n, &ex->resp_iov_i, part);
                    written -= part;
                }
                if (written) { /* body bytes (a head limpet made has no buffer behind it) */
                    oc->in->start += (uint32_t)written;
                    if (ex->resp_body == H1_BODY_LENGTH)
                        ex->resp_left -= written;
                }
                if (ex->interim && ex->resp_head_sent)
                    ex->interim = ex->resp_head_parsed = ex->resp_head_sent = false;
                continue;
            }
            if (response_body_complete(ex, oc->in)) {
                ex->resp_done = true;
                break;
            }
        } else if (oc->in && buf_len(oc->in) > 0 && !ex->origin_eof) {
            enum step s = parse_response_head(c);
            if (s == STEP_PROGRESS)
                return STEP_PROGRESS;
        }

        /* Read more from the origin. */
        if (!oc->readable)
            break;
        if (!oc->in) {
            oc->in = buf_get(&w->bufs);
            if (!oc->in) {
                client_close(c);
                return STEP_CLOSED;
            }
        }
        if (buf_len(oc->in) == 0) {
            oc->in->start = oc->in->end = 0;
            ex->resp_scan = 0;
        }
        if (buf_space(oc->in) == 0) {
            if (oc->in->start == 0) {
                if (!ex->resp_head_parsed) { /* head larger than a buffer */
                    send_error(c, 502);
                    return STEP_PROGRESS;
                }
                break; /* full: wait for the client to take some */
            }
            ex->resp_scan -= (uint32_t)buf_compact(oc->in);
        }
        ssize_t n = recv(oc->io.fd, oc->in->data + oc->in->end, buf_space(oc->in), 0);
        if (n > 0) {
            oc->in->end += (uint32_t)n;
            ex->resp_any_byte = true;
            ex->origin_io_ms = w->loop.now_ms;
            result = STEP_PROGRESS;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            oc->readable = false;
            break;
        }
        /* The origin closed (or reset) the connection. */
        oc->readable = false;
        if (ex->resp_head_parsed && ex->resp_body == H1_BODY_UNTIL_CLOSE && n == 0) {
            ex->origin_eof = true;
            ex->resp_keep_alive = false;
            result = STEP_PROGRESS;
            continue;
        }
        return origin_failed(c);
    }
    return result;
}

/* ---- the exchange ---- */

static enum step finish_exchange(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    log_exchange(c, ex->status);
    struct route_ctx rc = exchange_route_ctx(c);
    route_origin_succeeded(&rc, (size_t)ex->aff.pool, (size_t)ex->aff.origin, ex->status);
    release_exchange(c, ex->resp_keep_alive && ex->req_done && !ex->origin_eof);
    c->requests++;
    if (ex->close_client || !ex->req_done || w->stopping) {
        start_linger(c);
        return STEP_PROGRESS;
    }
    c->state = CS_READ_HEAD;
    c->head_start_ms = w->loop.now_ms;
    memset(ex, 0, offsetof(struct exchange, req_iov));
    return STEP_PROGRESS;
}

static enum step step_exchange(struct client *c)
{
    struct exchange *ex = &c->ex;
    if (!ex->oc) {
        enum step s = connect_origin(c);
        if (s != STEP_PROGRESS || c->state != CS_EXCHANGE)
            return s;
    }
    struct origin_conn *oc = ex->oc;
    if (oc->state == OC_CONNECTING) {
        if (!oc->writable)
            return STEP_BLOCKED;
        int rc = origin_conn_connect_result(oc);
        if (rc < 0)
            return connect_failed(c, rc);
    }
    enum step sent = send_request(c);
    if (sent == STEP_CLOSED || c->state != CS_EXCHANGE || ex->oc != oc)
        return sent == STEP_CLOSED ? STEP_CLOSED : STEP_PROGRESS;
    enum step relayed = relay_response(c);
    if (relayed == STEP_CLOSED || c->state != CS_EXCHANGE || ex->oc != oc)
        return relayed == STEP_CLOSED ? STEP_CLOSED : STEP_PROGRESS;
    if (ex->resp_done && (ex->req_done || ex->close_client))
        return finish_exchange(c);
    return sent == STEP_PROGRESS || relayed == STEP_PROGRESS ? STEP_PROGRESS : STEP_BLOCKED;
}

/* ---- timers and events ---- */

/* Whether the exchange waits on the origin (server timeout) rather than on
 * the client (client timeout): the request is all sent, or the origin is not
 * taking its body, and the client is taking the response. */
static bool waiting_on_origin(const struct client *c)
{
    const struct exchange *ex = &c->ex;
    return !ex->resp_done && c->writable && ex->oc &&
           (ex->req_done || !ex->oc->writable);
}

/* A client waiting for "100 Continue" that the origin has not sent yet. */
static bool continue_pending(const struct client *c)
{
    const struct exchange *ex = &c->ex;
    return ex->expect_continue && !ex->continue_sent && ex->req_head_sent && !ex->req_done &&
           !ex->body_started && !ex->resp_head_parsed && !ex->resp_any_byte;
}

/* Answers the client's Expect: 100-continue on the origin's behalf. */
static void send_own_continue(struct client *c)
{
    static const char continue_head[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct exchange *ex = &c->ex;
    ex->continue_sent = ex->interim = ex->resp_head_parsed = true;
    ex->resp_body = H1_BODY_NONE;
    ex->resp_iov[0].iov_base = (void *)continue_head;
    ex->resp_iov[0].iov_len = sizeof(continue_head) - 1;
    ex->resp_iov_n = 1;
    ex->resp_iov_i = 0;
}

static uint64_t client_deadline(const struct client *c)
{
    const struct cfg_timeouts *t = &client_cfg(c)->timeouts;
    const struct exchange *ex = &c->ex;
    switch (c->state) {
    case CS_READ_HEAD:
        if ((!c->in || buf_len(c->in) == 0) && c->requests > 0)
            return c->last_io_ms + seconds_ms(t->keepalive);
        return c->head_start_ms + seconds_ms(t->request_header);
    case CS_EXCHANGE: {
        if (ex->oc && ex->oc->state == OC_CONNECTING)
            return ex->connect_start_ms + seconds_ms(t->connect);
        if (continue_pending(c))
            return ex->head_sent_ms + CONTINUE_WAIT_MS;
        if (waiting_on_origin(c))
            return ex->origin_io_ms + seconds_ms(t->server);
        return c->last_io_ms + seconds_ms(t->client);
    }
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
    struct loop *loop = &c->worker->loop;
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
    struct exchange *ex = &c->ex;
    switch (c->state) {
    case CS_READ_HEAD:
        if (c->in && buf_len(c->in) > 0) {
            memset(ex, 0, offsetof(struct exchange, req_iov));
            send_error(c, 408);
            break;
        }
        client_close(c);
        return;
    case CS_EXCHANGE:
        if (continue_pending(c)) {
            send_own_continue(c);
            break;
        }
        if (ex->oc && ex->oc->state == OC_CONNECTING) {
            if (connect_failed(c, -ETIMEDOUT) == STEP_CLOSED)
                return;
            break;
        }
        if (waiting_on_origin(c) && !ex->resp_head_sent) {
            send_error(c, 504);
            break;
        }
        log_exchange(c, ex->status);
        client_close(c);
        return;
    case CS_SEND_ERROR:
    case CS_LINGER:
    case CS_TUNNEL:
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
        case CS_EXCHANGE: s = step_exchange(c); break;
        case CS_SEND_ERROR: s = step_send_error(c); break;
        case CS_LINGER: s = step_linger(c); break;
        case CS_TUNNEL: s = step_tunnel(c); break;
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
    client_drive(c);
}

void client_origin_event(struct client *c)
{
    client_drive(c);
}
