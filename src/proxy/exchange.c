/*
 * exchange — one request/response exchange: routing, the origin connection,
 * forwarding the request, relaying the response, retries.
 *
 * An exchange starts when a complete request head has been parsed
 * (exchange_start): it takes the current snapshot, which it keeps to its
 * end — retries included — decides the origin (affinity), and builds the
 * outgoing head as an iovec of spans of the client's buffer. exchange_step()
 * then makes all the progress it can on both directions:
 *
 *   request   REQ_HEAD → REQ_BODY → REQ_DONE     (head + body in one sendmsg)
 *   response  RESP_WAIT_HEAD → RESP_HEAD → RESP_BODY → RESP_DONE
 *             (a 1xx head goes back to RESP_WAIT_HEAD once sent; a 101
 *             turns the connection into a tunnel)
 *
 * Bodies are followed by body cursors (body.h). Every failure on the origin
 * side goes through exchange_failure_decide(), the one place that says
 * whether a request is retried on a new connection, on another origin, or
 * answered with 502/503 — nothing non-idempotent is ever sent twice.
 *
 * Origin limits: before its connection is acquired an exchange takes one of
 * its origin's max_connections slots (an atomic count in origin_shared,
 * shared by every worker), given back when it lets go of the origin. With no
 * slot free it waits in its pool's queue — a list of this thread's waiting
 * exchanges, linked through the exchanges themselves, counted against the
 * pool's queue.max in pool_shared — until a slot frees (looked at again at
 * once when this thread frees one, and every QUEUE_POLL_MS for those freed
 * by other threads): a pinned session for its own origin, a new one for any
 * origin of the pool with room. A full queue or a wait past queue.timeout
 * is answered 503 with Retry-After.
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "affinity/hll.h"
#include "core/addr.h"
#include "core/log.h"
#include "proxy/thread.h"

#define CONTINUE_WAIT_MS 250u     /* origin's time to answer Expect: 100-continue itself */
#define QUEUE_POLL_MS 10u         /* waiting exchanges look for slots freed elsewhere */

static uint64_t seconds_ms(double s) { return (uint64_t)(s * 1000.0); }

/* What routing may look at for c's exchange: its snapshot (retries included)
 * and this thread's state for it. Built per call: the scratch may move. */
static struct route_ctx exchange_route_ctx(const struct client *c)
{
    struct proxy_thread *pt = c->pt;
    const struct exchange *ex = c->ex;
    struct route_ctx rc = {
        .snap = ex->use->snap, .lb = ex->lb,
        .client_family = ex->forwarded_client ? ex->fwd_family : c->peer_family,
        .now_ms = pt->w->loop.now_ms, .pool_slots = ex->use->pool_slots,
        .pool_cursor = ex->use->pool_cursor,
        .candidates = pt->candidate_scratch, .rng = &pt->w->rng,
        .origin_stats = pt->w->stats.origins,
    };
    memcpy(rc.client_addr, ex->forwarded_client ? ex->fwd_addr : c->peer_addr,
           sizeof(rc.client_addr));
    return rc;
}

/* ---- the request head ---- */

static void copy_for_log(struct exchange *ex, const struct h1_request *req)
{
    ex->method_len = (uint8_t)(req->method_len < sizeof(ex->method) ? req->method_len
                                                                     : sizeof(ex->method));
    memcpy(ex->method, req->method, ex->method_len);
    ex->path_len = (uint16_t)(req->target_len < LOG_PATH_MAX ? req->target_len : LOG_PATH_MAX);
    memcpy(ex->path, req->target, ex->path_len);
}

/* Parses the exchange's request head again into the thread's scratch, for a
 * retry (the scratch has served other connections since). Returns 0, or the
 * status to refuse it with. */
static int reparse_request(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    struct exchange *ex = c->ex;
    int r = h1_parse_request(c->in->data + ex->req_start, c->in->end - ex->req_start,
                             client_cfg(c)->limits.max_header_bytes, &pt->req);
    if (r <= 0)
        return r == H1_INVALID && pt->req.error.status ? pt->req.error.status : 400;
    if (h1_request_semantics(&pt->req, &pt->sem) < 0)
        return pt->sem.error.status ? pt->sem.error.status : 400;
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
    struct proxy_thread *pt = c->pt;
    struct exchange *ex = c->ex;
    if (ex->upgrade)
        keep_upgrade_field(pt->req.headers, pt->req.num_headers, &pt->sem);
    char affinity[160];
    size_t affinity_len = affinity_header_value(ex->use->snap, ex->lb, &ex->aff, affinity,
                                                sizeof(affinity));
    size_t ip_len;
    const char *ip = client_ip_of(c, &ip_len);
    return forward_request_head(ex, c->in->data + ex->req_start, ex->head_len, &pt->req,
                                &pt->sem, ip, ip_len, affinity, affinity_len);
}

/* Counts the session toward the origin's distinct-sessions estimate. */
static void note_session(struct client *c)
{
    struct exchange *ex = c->ex;
    const struct origin_shared *os = ex->use->snap->pools[ex->aff.pool].origins[ex->aff.origin];
    if (!ex->aff.session_hash)
        return;
    struct origin_stats *st = &c->pt->w->stats.origins[os->id];
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

/* A request from a trusted proxy: its client is the one X-Forwarded-For names. */
static void take_forwarded_client(struct client *c)
{
    struct exchange *ex = c->ex;
    const struct config *cfg = ex->use->snap->cfg;
    if (cfg->num_trusted_proxies == 0 ||
        !cfg_cidrs_contain(cfg->trusted_proxies, cfg->num_trusted_proxies, c->peer_family,
                           c->peer_addr) ||
        !forward_client_from_xff(&c->pt->req, &c->pt->sem, cfg->trusted_proxies,
                                 cfg->num_trusted_proxies, &ex->fwd_family, ex->fwd_addr))
        return;
    ex->client_ip_len = (uint8_t)ip_text(ex->fwd_family, ex->fwd_addr, ex->client_ip);
    ex->forwarded_client = true;
}

/* What the request's listener asks for: HSTS on responses over TLS, or a
 * redirect to https (then answered here: returns true). */
static bool apply_listener(struct client *c)
{
    struct exchange *ex = c->ex;
    const struct snapshot *s = ex->use->snap;
    long li = proxy_listener_index(c->pt, s, c->listener);
    if (li < 0)
        return false;
    if (ex->tls)
        ex->hsts = s->listen[li].hsts;
    unsigned redirect = s->cfg->listeners[li].redirect_to_https;
    if (!redirect)
        return false;
    const struct h1_request *req = &c->pt->req;
    const struct h1_header *host = c->pt->sem.host;
    client_send_redirect(c, (int)redirect, host ? host->value : NULL, host ? host->value_len : 0,
                         s->listen[li].https_port, req->target, req->target_len);
    return true;
}

enum step exchange_start(struct client *c, size_t head_len)
{
    struct proxy_thread *pt = c->pt;
    struct worker *w = pt->w;
    if (!client_open_exchange(c)) {
        client_close(c);
        return STEP_CLOSED;
    }
    struct exchange *ex = c->ex;
    ex->start_us = clock_wall_us();
    ex->start_ms = w->loop.now_ms;
    ex->req_start = c->in->start;
    ex->head_len = (uint32_t)head_len;
    ex->use = proxy_snapshot_get(pt);
    copy_for_log(ex, &pt->req);

    if (h1_request_semantics(&pt->req, &pt->sem) < 0) {
        client_send_error(c, pt->sem.error.status ? pt->sem.error.status : 400);
        return STEP_PROGRESS;
    }
    if (apply_listener(c))
        return STEP_PROGRESS; /* redirected to https */
    const struct h1_semantics *sem = &pt->sem;
    c->in->start = ex->req_start + ex->head_len;
    ex->replayable = true;
    body_cursor_init(&ex->req_body, sem->body, sem->content_length, c->in->start, false);
    ex->is_head = ex->method_len == 4 && memcmp(ex->method, "HEAD", 4) == 0;
    ex->client_keep_alive = sem->keep_alive && !w->stopping && !w->retiring;
    ex->minor_version = pt->req.minor_version;
    ex->upgrade = wants_upgrade(&pt->req, sem);
    ex->expect_continue = sem->expect_continue && sem->body != H1_BODY_NONE;
    c->state = CS_EXCHANGE;
    take_forwarded_client(c);
    ex->pin_set_here = !c->pin.set;
    struct route_ctx rc = exchange_route_ctx(c);
    if (ex->lb < 0 || affinity_decide(&rc, pt->token_ctx, &c->pin, &pt->req, &ex->aff) < 0) {
        client_send_error(c, 503);
        return STEP_PROGRESS;
    }
    note_session(c);
    if (!build_request_head(c))
        client_send_error(c, 431);
    return STEP_PROGRESS;
}

/* ---- failures and retries ---- */

static bool method_idempotent(const struct exchange *ex)
{
    static const char *const idempotent[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
        if (ex->method_len == strlen(idempotent[i]) &&
            memcmp(ex->method, idempotent[i], ex->method_len) == 0)
            return true;
    return false;
}

/* Whether the request may be sent again: nothing came back, and nothing of
 * it reached an origin or it is idempotent and still held whole within
 * retry_buffer_bytes (SPEC §3). */
static bool may_replay(const struct client *c)
{
    const struct exchange *ex = c->ex;
    size_t consumed = c->in ? c->in->start - ex->req_start : 0;
    return !ex->resp_any_byte && ex->replayable && ex->aff.tried.n < ROUTE_MAX_ATTEMPTS &&
           (ex->req_sent_on_conn == 0 ||
            (method_idempotent(ex) && consumed <= client_cfg(c)->limits.retry_buffer_bytes));
}

/*
 * What a failure on the origin side means for the exchange: the one place
 * that decides retries. May update the affinity decision (a failover moves
 * or keeps the session per zero_downtime_failover).
 */
static enum failure_action exchange_failure_decide(struct client *c, enum origin_failure kind)
{
    struct exchange *ex = c->ex;
    struct route_ctx rc = exchange_route_ctx(c);
    switch (kind) {
    case FAIL_SHORTAGE:
        return ACT_ANSWER_503; /* limpet's own shortage, not the origin's fault */
    case FAIL_CONNECT:
        if (affinity_failover(&rc, &ex->aff))
            return ACT_RETRY_ELSEWHERE;
        /* zero_downtime_failover "none": the session may not go elsewhere. 502
         * (its origin failed) while another origin could serve; 503 when none
         * could: nothing reached an application (SPEC §5) */
        return route_any_left(&rc, &ex->aff.tried) ? ACT_ANSWER_502 : ACT_ANSWER_503;
    case FAIL_BROKEN:
        if (may_replay(c)) {
            if (ex->oc && ex->oc->reused)
                return ACT_RETRY_FRESH; /* a stale keep-alive connection: not the origin's fault */
            if (affinity_failover(&rc, &ex->aff))
                return ACT_RETRY_ELSEWHERE;
        }
        /* 502 while the final head has not gone out (an interim one may have) */
        return ex->resp_state < RESP_BODY ? ACT_ANSWER_502 : ACT_ABORT;
    }
    return ACT_ANSWER_502;
}

/* Puts the request back as it was before anything was sent. */
static void rewind_request(struct client *c)
{
    struct exchange *ex = c->ex;
    c->in->start = ex->req_start + ex->head_len;
    body_cursor_init(&ex->req_body, ex->req_body.framing, ex->req_body.length, c->in->start,
                     false);
    ex->req_state = REQ_HEAD;
}

static enum step connect_origin(struct client *c);
static bool admit(struct client *c, enum step *step);

/* Gives back the exchange's max_connections slot; waiting exchanges of this
 * thread look for it at once. */
static void release_slot(struct client *c)
{
    struct exchange *ex = c->ex;
    if (!ex->slot)
        return;
    route_slot_release(ex->slot);
    ex->slot = NULL;
    struct proxy_thread *pt = c->pt;
    if (pt->wait_head)
        timer_arm(&pt->w->loop, &pt->queue_timer, 0);
}

void exchange_detach_origin(struct client *c, bool reusable)
{
    struct exchange *ex = c->ex;
    if (ex)
        release_slot(c);
    struct origin_conn *oc = ex ? ex->oc : NULL;
    if (!oc)
        return;
    struct steer_slot *slot = &c->pt->origins[oc->origin_id].steer;
    if (slot->active > 0)
        slot->active--;
    STAT_ADD(c->pt->w->stats.origins[oc->origin_id].active, -1);
    ex->oc = NULL;
    origin_conn_release(oc, reusable);
}

/* Acts on a failure of the exchange's origin (err: the errno, for the log). */
static enum step origin_failure(struct client *c, enum origin_failure kind, int err)
{
    struct exchange *ex = c->ex;
    enum failure_action action = exchange_failure_decide(c, kind);
    struct route_ctx rc = exchange_route_ctx(c);
    size_t pool = (size_t)ex->aff.pool, origin = (size_t)ex->aff.origin;
    if (kind == FAIL_CONNECT) {
        route_origin_failed(&rc, pool, origin, err);
        ex->connect_failed_any = true;
    } else if (kind == FAIL_BROKEN && action != ACT_RETRY_FRESH) {
        /* A reused connection closed before anything came back is the usual
         * keep-alive race (retried fresh, or 502 when it may not be), not
         * the origin's failure; otherwise a reset or close before the
         * response is a passive failure (SPEC §5). */
        bool stale = ex->oc && ex->oc->reused && !ex->resp_any_byte;
        if (!stale && ex->resp_state == RESP_WAIT_HEAD)
            route_origin_passive_failure(&rc, pool, origin, PASSIVE_RESET);
        ex->reached_origin = true;
    }
    switch (action) {
    case ACT_RETRY_FRESH:
    case ACT_RETRY_ELSEWHERE:
        if (kind == FAIL_BROKEN)
            rewind_request(c);
        exchange_detach_origin(c, false);
        ex->fresh_conn_only = action == ACT_RETRY_FRESH;
        return connect_origin(c);
    case ACT_ANSWER_502:
    case ACT_ANSWER_503:
        client_send_error(c, action == ACT_ANSWER_503 ? 503 : 502);
        return STEP_PROGRESS;
    case ACT_ABORT:
        client_log_exchange(c, ex->status); /* cut off mid-response: the client sees the abort */
        client_close(c);
        return STEP_CLOSED;
    }
    return STEP_PROGRESS;
}

/* Chooses another origin for a retry (unless the same origin is to be tried
 * on a fresh connection) and rebuilds the head for it. */
static int reroute(struct client *c)
{
    struct exchange *ex = c->ex;
    if (!ex->fresh_conn_only || ex->aff.pool < 0) {
        struct route_ctx rc = exchange_route_ctx(c);
        if (affinity_reroute(&rc, c->pt->token_ctx, &ex->aff) < 0)
            return -1;
    }
    if (reparse_request(c) != 0 || !build_request_head(c))
        return -1;
    return 0;
}

/* Opens (or reuses) a connection to the exchange's origin; on an immediate
 * failure tries other origins as failover allows. */
static enum step connect_origin(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    struct worker *w = pt->w;
    struct exchange *ex = c->ex;
    bool admitted = ex->admitted; /* out of the queue: routed, and holding its slot */
    ex->admitted = false;
    if (ex->attempts > 0 && !admitted && reroute(c) < 0) {
        /* nothing left to try: 503 when no origin even took a connection */
        client_send_error(c, ex->reached_origin ? 502 : 503);
        return STEP_PROGRESS;
    }
    enum step waiting;
    if (!admitted && !admit(c, &waiting))
        return waiting;
    ex->attempts++;
    int err = 0;
    struct origin_conn *oc = origin_conn_acquire(pt, ex->use->snap, (size_t)ex->aff.pool,
                                                 (size_t)ex->aff.origin, ex->fresh_conn_only, &err);
    ex->fresh_conn_only = false;
    if (!oc) {
        bool shortage = err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
        return origin_failure(c, shortage ? FAIL_SHORTAGE : FAIL_CONNECT, err);
    }
    oc->client = c;
    ex->oc = oc;
    ex->connect_start_ms = ex->origin_io_ms = w->loop.now_ms;
    ex->req_sent_on_conn = 0;
    pt->origins[oc->origin_id].steer.active++;
    STAT_ADD(w->stats.origins[oc->origin_id].active, 1);
    return STEP_PROGRESS;
}

/* ---- sending: the request to the origin, the response to the client ---- */

static unsigned remaining_iov(const struct iovec *iov, unsigned from, unsigned to, size_t *bytes)
{
    size_t total = 0;
    for (unsigned i = from; i < to; i++)
        total += iov[i].iov_len;
    *bytes = total;
    return to - from;
}

/* Writes what is left of a head (when head_pending) and `ready` body bytes
 * at body in one sendmsg; `last`: the connection closes after them (see
 * tp_writev). Returns the bytes written, 0 when the socket is full
 * (*writable cleared), or -1 on an error. *head_done tells whether the head
 * is all out. */
static ssize_t send_head_and_body(struct transport *tp, int fd, bool *writable, struct iovec *head_iov,
                                  unsigned head_n, unsigned *head_i, bool head_pending,
                                  bool *head_done, const char *body, size_t ready,
                                  size_t *body_written, bool last)
{
    struct iovec iov[HEAD_IOV_MAX + 1];
    size_t head_bytes = 0;
    unsigned n_iov = 0;
    if (head_pending) {
        n_iov = remaining_iov(head_iov, *head_i, head_n, &head_bytes);
        memcpy(iov, head_iov + *head_i, n_iov * sizeof(*iov));
    }
    if (ready > 0) {
        iov[n_iov].iov_base = (void *)body;
        iov[n_iov].iov_len = ready;
        n_iov++;
    }
    *head_done = !head_pending || head_bytes == 0;
    *body_written = 0;
    if (n_iov == 0)
        return 0;
    ssize_t n = tp_writev(tp, fd, iov, (int)n_iov, last);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *writable = false;
            return 0;
        }
        return -1;
    }
    if ((size_t)n < head_bytes + ready)
        *writable = false; /* the socket is full: wait for its next edge */
    size_t written = (size_t)n;
    if (head_pending) {
        size_t part = written < head_bytes ? written : head_bytes;
        *head_done = iov_advance(head_iov, head_n, head_i, part);
        written -= part;
    }
    *body_written = written;
    return n;
}

static enum step send_request(struct client *c)
{
    struct worker *w = c->pt->w;
    struct exchange *ex = c->ex;
    struct origin_conn *oc = ex->oc;
    enum step result = STEP_BLOCKED;

    while (ex->req_state != REQ_DONE) {
        long ready = body_ready(&ex->req_body, c->in);
        if (ready < 0) {
            if (ex->resp_state < RESP_BODY) {
                client_send_error(c, 400);
                return STEP_PROGRESS;
            }
            client_close(c);
            return STEP_CLOSED;
        }
        if (ex->req_state == REQ_HEAD || ready > 0) {
            if (!oc->writable)
                break;
            if (ex->req_sent_on_conn == 0) /* only an answer to what follows is a recovery */
                ex->passive_epoch = atomic_load(
                    &ex->use->snap->pools[ex->aff.pool].origins[ex->aff.origin]->passive_epoch);
            bool head_done;
            size_t body_written;
            ssize_t n = send_head_and_body(&oc->tp, oc->io.fd, &oc->writable, ex->req_iov, ex->req_iov_n,
                                           &ex->req_iov_i, ex->req_state == REQ_HEAD,
                                           &head_done, c->in->data + c->in->start,
                                           (size_t)ready, &body_written, false);
            if (n < 0)
                return origin_failure(c, FAIL_BROKEN, errno);
            if (n == 0)
                break;
            ex->req_sent_on_conn += (uint64_t)n;
            ex->origin_io_ms = w->loop.now_ms;
            result = STEP_PROGRESS;
            if (ex->req_state == REQ_HEAD && head_done) {
                ex->req_state = REQ_BODY;
                ex->head_sent_ms = w->loop.now_ms;
            }
            if (body_written)
                ex->body_started = true;
            body_consumed(&ex->req_body, c->in, body_written);
            continue;
        }
        if (body_complete(&ex->req_body, c->in)) {
            ex->req_state = REQ_DONE;
            break;
        }
        /* Need more body bytes from the client. */
        if (!c->readable)
            break;
        if (buf_space(c->in) == 0) {
            body_rebase(&ex->req_body, buf_compact(c->in));
            ex->replayable = false;
        }
        ssize_t n = client_read(c, false);
        if (n > 0) {
            result = STEP_PROGRESS;
            continue;
        }
        if (n == 0)
            break;
        client_log_exchange(c, 0); /* the client left in the middle of its request body */
        client_close(c);
        return STEP_CLOSED;
    }
    return result;
}

/* The Set-Cookie field limpet adds to the response (into ex->resp_extra):
 * its own cookie, or the route cookie of app_cookie route mode with "issue"
 * (NAME=<separator><route>, Apache's ROUTEID=.<route>). */
static size_t format_set_cookie(struct client *c)
{
    struct exchange *ex = c->ex;
    if (ex->aff.reason == REASON_FAILOVER_TEMPORARY)
        return 0;
    const struct snapshot *s = ex->use->snap;
    const struct cfg_affinity_attributes *a = &s->cfg->load_balancers[ex->lb].attributes;
    const char *attrs = s->aff->lbs[ex->lb].cookie_attrs[ex->tls];
    int n;
    if (ex->aff.set_cookie)
        n = snprintf(ex->resp_extra, sizeof(ex->resp_extra), "Set-Cookie: %s=%s%s\r\n",
                     a->cookie_name, ex->aff.cookie_value, attrs);
    else if (ex->aff.set_route_cookie)
        n = snprintf(ex->resp_extra, sizeof(ex->resp_extra), "Set-Cookie: %s=%s%s%s\r\n",
                     a->app_cookie.name, a->app_cookie.separator,
                     s->cfg->pools[ex->aff.pool].origins[ex->aff.origin].route, attrs);
    else
        return 0;
    return n > 0 && (size_t)n < sizeof(ex->resp_extra) ? (size_t)n : 0;
}

/* The prefix app_cookie "prefix" mode puts on the application's cookie. */
static const char *app_cookie_prefix(const struct client *c)
{
    const struct exchange *ex = c->ex;
    const struct snapshot *s = ex->use->snap;
    const struct cfg_load_balancer *lb = &s->cfg->load_balancers[ex->lb];
    if (lb->session_affinity != AFFINITY_APP_COOKIE ||
        lb->attributes.app_cookie.mode != APP_COOKIE_PREFIX)
        return NULL;
    return s->aff->pools[ex->aff.pool].app_prefix[ex->aff.origin];
}

/* Parses a response head waiting in oc->in (RESP_WAIT_HEAD). Returns
 * STEP_BLOCKED when more bytes are needed, STEP_PROGRESS when parsed (state
 * RESP_HEAD, or a 100 dropped) or a 502 was started. */
static enum step parse_response_head(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    struct exchange *ex = c->ex;
    struct buf *in = ex->oc->in;
    const char *head = in->data + in->start;
    int r = h1_parse_response(head, buf_len(in), BUF_SIZE, &pt->resp);
    if (r == H1_NEED_MORE)
        return STEP_BLOCKED;
    struct h1_semantics *sem = &pt->sem;
    int status = pt->resp.status;
    if (r < 0 || (status == 101 && !ex->upgrade) ||
        h1_response_semantics(&pt->resp, ex->method, ex->method_len, sem) < 0) {
        client_send_error(c, 502);
        return STEP_PROGRESS;
    }
    const char *set_cookie = NULL, *app_prefix = NULL;
    size_t set_cookie_len = 0;
    if (status == 101) {
        /* The origin switches protocols: pass its Upgrade on, then tunnel. */
        ex->status = 101;
        keep_upgrade_field(pt->resp.headers, pt->resp.num_headers, sem);
        set_cookie_len = format_set_cookie(c);
        set_cookie = ex->resp_extra;
    } else if (status < 200) {
        /* Interim response: passed on to HTTP/1.1 clients, dropped for 1.0;
         * a 100 after the one limpet already sent is dropped too. */
        if (status == 100 && ex->continue_sent) {
            in->start += (uint32_t)r;
            return STEP_PROGRESS;
        }
        ex->continue_sent |= status == 100;
    } else {
        ex->status = status;
        bool decode = sem->body == H1_BODY_CHUNKED && ex->minor_version == 0;
        if (decode) {
            /* An HTTP/1.0 client cannot read chunked framing: send the data
             * alone, delimited by closing the connection. */
            for (size_t i = 0; i < pt->resp.num_headers; i++)
                if (h1_token_eq(pt->resp.headers[i].name, pt->resp.headers[i].name_len,
                                "transfer-encoding"))
                    sem->skip[i] = true;
        }
        body_cursor_init(&ex->resp_body, sem->body, sem->content_length, in->start + (uint32_t)r,
                         decode);
        ex->resp_keep_alive = sem->keep_alive && sem->body != H1_BODY_UNTIL_CLOSE;
        ex->close_client = !ex->client_keep_alive || pt->w->stopping ||
                           ex->req_state != REQ_DONE || sem->body == H1_BODY_UNTIL_CLOSE ||
                           decode;
        set_cookie_len = format_set_cookie(c);
        set_cookie = ex->resp_extra;
        app_prefix = app_cookie_prefix(c);
    }
    if (!forward_response_head(ex, head, (size_t)r, &pt->resp, sem, set_cookie, set_cookie_len,
                               app_prefix)) {
        client_send_error(c, 502);
        return STEP_PROGRESS;
    }
    if (status < 200 && status != 101 && ex->minor_version == 0)
        ex->resp_iov_i = ex->resp_iov_n; /* nothing to send: dropped for HTTP/1.0 */
    in->start += (uint32_t)r;
    ex->head_status = status;
    ex->resp_state = RESP_HEAD;
    return STEP_PROGRESS;
}

/* The 101 is out: the exchange is logged and the connection becomes a tunnel. */
static enum step start_tunnel(struct client *c)
{
    struct exchange *ex = c->ex;
    client_log_exchange(c, 101);
    release_slot(c); /* the request is over; the tunnel holds no slot */
    proxy_snapshot_put(c->pt, ex->use);
    ex->use = NULL;
    c->state = CS_TUNNEL;
    return STEP_PROGRESS;
}

/* Reads from the origin into its buffer. Returns STEP_PROGRESS when bytes
 * (or an until-close body's end) arrived, STEP_BLOCKED when nothing can be
 * read now, else what handling the failure returned. */
static enum step read_origin(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    struct exchange *ex = c->ex;
    struct origin_conn *oc = ex->oc;
    if (!oc->readable)
        return STEP_BLOCKED;
    if (!oc->in) {
        oc->in = buf_get(&pt->bufs);
        if (!oc->in) {
            client_close(c);
            return STEP_CLOSED;
        }
    }
    if (buf_len(oc->in) == 0) {
        body_rebase(&ex->resp_body, oc->in->start);
        oc->in->start = oc->in->end = 0;
    }
    if (buf_space(oc->in) == 0) {
        if (oc->in->start == 0) {
            if (ex->resp_state == RESP_WAIT_HEAD) { /* head larger than a buffer */
                client_send_error(c, 502);
                return STEP_PROGRESS;
            }
            return STEP_BLOCKED; /* full: wait for the client to take some */
        }
        body_rebase(&ex->resp_body, buf_compact(oc->in));
    }
    size_t want = buf_space(oc->in);
    ssize_t n = tp_recv(&oc->tp, oc->io.fd, oc->in->data + oc->in->end, want);
    if (n > 0) {
        if (tp_drained(&oc->tp, (size_t)n, want) && !oc->peer_closed)
            oc->readable = false; /* drained: the next bytes raise an edge */
        oc->in->end += (uint32_t)n;
        ex->resp_any_byte = true;
        ex->origin_io_ms = pt->w->loop.now_ms;
        return STEP_PROGRESS;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        oc->readable = false;
        return STEP_BLOCKED;
    }
    /* The origin closed (or reset) the connection. */
    oc->readable = false;
    if (ex->resp_state == RESP_BODY && ex->resp_body.framing == H1_BODY_UNTIL_CLOSE && n == 0) {
        ex->resp_body.eof = true;
        ex->resp_keep_alive = false;
        return STEP_PROGRESS;
    }
    return origin_failure(c, FAIL_BROKEN, n < 0 ? errno : ECONNRESET);
}

static enum step relay_response(struct client *c)
{
    struct worker *w = c->pt->w;
    struct exchange *ex = c->ex;
    struct origin_conn *oc = ex->oc;
    enum step result = STEP_BLOCKED;

    while (ex->resp_state != RESP_DONE) {
        if (ex->resp_state == RESP_WAIT_HEAD) {
            if (oc->in && buf_len(oc->in) > 0) {
                enum step s = parse_response_head(c);
                if (s == STEP_PROGRESS)
                    return STEP_PROGRESS;
            }
        } else {
            /* A final head goes out with the body bytes already here. */
            bool final = ex->resp_state == RESP_BODY ||
                         (ex->head_status >= 200 && ex->head_status != 101);
            long ready = final ? body_ready(&ex->resp_body, oc->in) : 0;
            if (ready < 0) {
                if (ex->resp_state == RESP_HEAD) {
                    client_send_error(c, 502);
                    return STEP_PROGRESS;
                }
                client_log_exchange(c, ex->status); /* bad chunking after the head went out */
                client_close(c);
                return STEP_CLOSED;
            }
            if (ex->resp_state == RESP_HEAD || ready > 0) {
                if (!c->writable)
                    break;
                bool head_done;
                size_t body_written;
                const char *body = ready > 0 ? oc->in->data + oc->in->start : NULL;
                /* the connection closes after the response's last bytes */
                bool last = final && ex->close_client && ex->head_status != 101 &&
                            body_ends_after(&ex->resp_body, oc->in, (size_t)ready);
                ssize_t n = send_head_and_body(&c->tp, c->io.fd, &c->writable, ex->resp_iov,
                                               ex->resp_iov_n, &ex->resp_iov_i,
                                               ex->resp_state == RESP_HEAD, &head_done, body,
                                               (size_t)ready, &body_written, last);
                if (n < 0) {
                    client_log_exchange(c, ex->status); /* the client went away */
                    client_close(c);
                    return STEP_CLOSED;
                }
                if (n == 0 && !head_done)
                    break;
                c->last_io_ms = w->loop.now_ms;
                ex->bytes_out += (uint64_t)n;
                result = STEP_PROGRESS;
                if (body_written)
                    body_consumed(&ex->resp_body, oc->in, body_written);
                if (ex->resp_state == RESP_HEAD && head_done) {
                    if (ex->head_status == 101)
                        return start_tunnel(c);
                    ex->resp_state = ex->head_status < 200 ? RESP_WAIT_HEAD : RESP_BODY;
                }
                continue;
            }
            if (body_complete(&ex->resp_body, oc->in)) {
                ex->resp_state = RESP_DONE;
                break;
            }
        }
        enum step s = read_origin(c);
        if (s == STEP_BLOCKED)
            break;
        if (s == STEP_CLOSED || c->state != CS_EXCHANGE || c->ex->oc != oc)
            return s;
        result = STEP_PROGRESS;
    }
    return result;
}

/* ---- the exchange as a whole ---- */

static enum step finish_exchange(struct client *c)
{
    struct worker *w = c->pt->w;
    struct exchange *ex = c->ex;
    client_log_exchange(c, ex->status);
    struct route_ctx rc = exchange_route_ctx(c);
    route_origin_answered(&rc, (size_t)ex->aff.pool, (size_t)ex->aff.origin, ex->status,
                          ex->passive_epoch);
    bool origin_reusable = ex->resp_keep_alive && ex->req_state == REQ_DONE &&
                           !ex->resp_body.eof;
    c->requests++;
    if (ex->close_client || ex->req_state != REQ_DONE || w->stopping) {
        client_release_exchange(c, origin_reusable);
        if (ex->req_state == REQ_DONE && (!c->in || buf_len(c->in) == 0) && !c->readable &&
            !tp_is_tls(&c->tp)) {
            /* Nothing unread to turn the close into a reset: close at once
             * rather than wait for the client's FIN (over TLS the orderly end
             * of client_linger sends close_notify, which marks a complete
             * close-delimited body). */
            client_close(c);
            return STEP_CLOSED;
        }
        client_linger(c);
        return STEP_PROGRESS;
    }
    client_end_exchange(c, origin_reusable);
    c->state = CS_READ_HEAD;
    c->head_start_ms = w->loop.now_ms;
    return STEP_PROGRESS;
}

enum step exchange_step(struct client *c)
{
    struct exchange *ex = c->ex;
    if (!ex->oc) {
        if (ex->queued_in)
            return STEP_BLOCKED; /* waiting for a slot */
        enum step s = connect_origin(c);
        if (s != STEP_PROGRESS || c->state != CS_EXCHANGE)
            return s;
    }
    struct origin_conn *oc = ex->oc;
    if (oc->state == OC_CONNECTING) {
        if (!oc->writable)
            return STEP_BLOCKED;
        int rc = origin_conn_connect_result(oc);
        if (rc == -EINPROGRESS)
            return STEP_BLOCKED; /* the TLS handshake is under way */
        if (rc < 0)
            return origin_failure(c, FAIL_CONNECT, rc);
    }
    enum step sent = send_request(c);
    if (sent == STEP_CLOSED || c->state != CS_EXCHANGE || ex->oc != oc)
        return sent == STEP_CLOSED ? STEP_CLOSED : STEP_PROGRESS;
    enum step relayed = relay_response(c);
    if (relayed == STEP_CLOSED || c->state != CS_EXCHANGE || ex->oc != oc)
        return relayed == STEP_CLOSED ? STEP_CLOSED : STEP_PROGRESS;
    if (ex->resp_state == RESP_DONE && (ex->req_state == REQ_DONE || ex->close_client))
        return finish_exchange(c);
    return sent == STEP_PROGRESS || relayed == STEP_PROGRESS ? STEP_PROGRESS : STEP_BLOCKED;
}

/* ---- timeouts ---- */

/* Whether the exchange waits on the origin (server timeout) rather than on
 * the client (client timeout): the request is all sent, or the origin is not
 * taking its body, and the client is taking the response. */
static bool waiting_on_origin(const struct client *c)
{
    const struct exchange *ex = c->ex;
    return ex->resp_state != RESP_DONE && c->writable && ex->oc &&
           (ex->req_state == REQ_DONE || !ex->oc->writable);
}

/* A client waiting for "100 Continue" that the origin has not sent yet. */
static bool continue_pending(const struct client *c)
{
    const struct exchange *ex = c->ex;
    return ex->expect_continue && !ex->continue_sent && ex->req_state == REQ_BODY &&
           !ex->body_started && ex->resp_state == RESP_WAIT_HEAD && !ex->resp_any_byte;
}

/* Answers the client's Expect: 100-continue on the origin's behalf. */
static void send_own_continue(struct client *c)
{
    static const char continue_head[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct exchange *ex = c->ex;
    ex->continue_sent = true;
    ex->head_status = 100;
    ex->resp_state = RESP_HEAD;
    ex->resp_iov[0].iov_base = (void *)continue_head;
    ex->resp_iov[0].iov_len = sizeof(continue_head) - 1;
    ex->resp_iov_n = 1;
    ex->resp_iov_i = 0;
}

uint64_t exchange_deadline(const struct client *c)
{
    const struct cfg_timeouts *t = &client_cfg(c)->timeouts;
    const struct exchange *ex = c->ex;
    if (ex->queued_in)
        return ex->queued_ms +
               seconds_ms(ex->use->snap->cfg->pools[ex->aff.pool].queue.timeout);
    if (ex->oc && ex->oc->state == OC_CONNECTING)
        return ex->connect_start_ms + seconds_ms(t->connect);
    if (continue_pending(c))
        return ex->head_sent_ms + CONTINUE_WAIT_MS;
    if (waiting_on_origin(c))
        return ex->origin_io_ms + seconds_ms(t->server);
    return c->last_io_ms + seconds_ms(t->client);
}

enum step exchange_timeout(struct client *c)
{
    struct exchange *ex = c->ex;
    if (ex->queued_in) {
        atomic_fetch_add_explicit(&ex->queued_in->queue_timeouts, 1, memory_order_relaxed);
        client_send_error(c, 503); /* waited queue.timeout for a slot */
        return STEP_PROGRESS;
    }
    if (continue_pending(c)) {
        send_own_continue(c);
        return STEP_PROGRESS;
    }
    if (ex->oc && ex->oc->state == OC_CONNECTING)
        return origin_failure(c, FAIL_CONNECT, -ETIMEDOUT);
    if (waiting_on_origin(c) && ex->resp_state < RESP_BODY) {
        struct route_ctx rc = exchange_route_ctx(c); /* a passive failure (SPEC §5) */
        route_origin_passive_failure(&rc, (size_t)ex->aff.pool, (size_t)ex->aff.origin,
                                     PASSIVE_TIMEOUT);
        client_send_error(c, 504);
        return STEP_PROGRESS;
    }
    client_log_exchange(c, ex->status);
    client_close(c);
    return STEP_CLOSED;
}

/* ---- origin limits: max_connections slots and the pool's queue ---- */

/* A max_connections slot on the exchange's origin, or, for a session not
 * pinned to it, on another origin of its pool that has room now (the
 * decision moves there). */
static bool take_slot(struct client *c)
{
    struct exchange *ex = c->ex;
    const struct snapshot *s = ex->use->snap;
    size_t pool = (size_t)ex->aff.pool, origin = (size_t)ex->aff.origin;
    if (route_slot_take(s, pool, origin, &ex->slot))
        return true;
    if (ex->aff.pinned)
        return false; /* a pinned session waits for its own origin */
    struct route_ctx rc = exchange_route_ctx(c);
    long other = route_choose_with_room(&rc, &ex->aff.tried, pool, origin);
    if (other < 0 || !route_slot_take(s, pool, (size_t)other, &ex->slot))
        return false;
    if ((size_t)other != origin) {
        affinity_move_within_pool(&rc, c->pt->token_ctx, &ex->aff, (size_t)other);
        if (ex->pin_set_here) { /* the connection follows its first request */
            const struct origin_shared *os = s->pools[pool].origins[other];
            c->pin.id = os->id;
            c->pin.generation = os->generation;
        }
    }
    return true;
}

/* Lets the exchange go on to its origin (true), or puts it in its pool's
 * queue (false, *step STEP_BLOCKED), or refuses it when the queue is full
 * (false, *step STEP_PROGRESS: a 503 is on its way). */
static bool admit(struct client *c, enum step *step)
{
    struct exchange *ex = c->ex;
    if (take_slot(c))
        return true;
    struct proxy_thread *pt = c->pt;
    const struct snapshot *s = ex->use->snap;
    struct pool_shared *ps = s->pools[ex->aff.pool].shared;
    unsigned max = s->cfg->pools[ex->aff.pool].queue.max;
    if (atomic_fetch_add(&ps->queued, 1) >= max) {
        atomic_fetch_sub(&ps->queued, 1);
        atomic_fetch_add_explicit(&ps->queue_full, 1, memory_order_relaxed);
        client_send_error(c, 503);
        *step = STEP_PROGRESS;
        return false;
    }
    ex->queued_in = ps;
    ex->queued_ms = pt->w->loop.now_ms;
    ex->waiter = c;
    ex->wait_next = NULL;
    ex->wait_prev = pt->wait_tail;
    if (pt->wait_tail)
        pt->wait_tail->wait_next = ex;
    else
        pt->wait_head = ex;
    pt->wait_tail = ex;
    if (!timer_armed(&pt->queue_timer))
        timer_arm(&pt->w->loop, &pt->queue_timer, QUEUE_POLL_MS);
    *step = STEP_BLOCKED;
    return false;
}

void exchange_dequeue(struct client *c)
{
    struct exchange *ex = c->ex;
    if (!ex || !ex->queued_in)
        return;
    struct proxy_thread *pt = c->pt;
    if (ex->wait_prev)
        ex->wait_prev->wait_next = ex->wait_next;
    else
        pt->wait_head = ex->wait_next;
    if (ex->wait_next)
        ex->wait_next->wait_prev = ex->wait_prev;
    else
        pt->wait_tail = ex->wait_prev;
    ex->wait_prev = ex->wait_next = NULL;
    atomic_fetch_sub(&ex->queued_in->queued, 1);
    ex->queued_in = NULL;
}

void exchange_run_queue(struct proxy_thread *pt)
{
    /* In arrival order; an exchange let go is driven at once (it cannot
     * touch another waiting one: a slot it frees re-arms the timer). */
    struct exchange *next;
    for (struct exchange *ex = pt->wait_head; ex; ex = next) {
        next = ex->wait_next;
        struct client *c = ex->waiter;
        if (!take_slot(c))
            continue;
        exchange_dequeue(c);
        ex->admitted = true;
        client_origin_event(c);
    }
    if (pt->wait_head)
        timer_arm(&pt->w->loop, &pt->queue_timer, QUEUE_POLL_MS);
}
