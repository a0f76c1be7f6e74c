/*
 * probe — one non-blocking health check (see probe.h).
 *
 * States follow the socket: connecting (EPOLLOUT, then SO_ERROR), sending the
 * request (EPOLLOUT while it does not fit), reading the response (EPOLLIN).
 * The response head and the body after it share one buffer of
 * PROBE_HEAD_MAX + PROBE_BODY_MAX bytes; a chunked body is decoded in place
 * (h1_chunked_decode) so expected_body is searched in the payload, never in
 * the framing. One timer bounds the whole check. Every way out goes through
 * finish(), which releases everything before reporting.
 */
#include "health/probe.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "core/tls.h"
#include "health/health.h"

#define PROBE_BUF_SIZE (PROBE_HEAD_MAX + PROBE_BODY_MAX)

static void io_cb(struct loop *loop, struct io_watch *w, uint32_t events);
static void deadline_cb(struct loop *loop, struct timer *t);

void probe_init(struct probe *p, struct loop *loop,
                void (*done)(struct probe *p, bool pass, const char *reason))
{
    memset(p, 0, sizeof(*p));
    p->io.fd = -1;
    p->loop = loop;
    p->done = done;
    timer_init(&p->deadline, deadline_cb);
}

/* Frees what a check holds; the probe is idle afterwards. */
static void release(struct probe *p)
{
    if (p->io.fd >= 0) {
        loop_unwatch(p->loop, &p->io);
        tp_free(&p->tp);
        close(p->io.fd);
        p->io.fd = -1;
    }
    timer_cancel(p->loop, &p->deadline);
    free(p->req);
    free(p->buf);
    free(p->method);
    free(p->expected_codes);
    free(p->expected_body);
    p->req = p->buf = p->method = p->expected_codes = p->expected_body = NULL;
}

void probe_cancel(struct probe *p)
{
    release(p);
}

/* Ends the check and reports it; p must not be touched afterwards. */
static void finish(struct probe *p, bool pass)
{
    if (pass)
        p->reason[0] = '\0';
    release(p);
    p->done(p, pass, p->reason);
}

__attribute__((format(printf, 2, 3)))
static void fail(struct probe *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
    va_end(ap);
    finish(p, false);
}

/* The request of an http monitor; NULL when out of memory. */
static char *build_request(const struct cfg_monitor *mon, const char *host, size_t *len)
{
    char *req = NULL;
    FILE *f = open_memstream(&req, len);
    if (!f)
        return NULL;
    for (size_t i = 0; i < mon->num_headers; i++)
        if (h1_token_eq(mon->headers[i].name, strlen(mon->headers[i].name), "Host"))
            host = mon->headers[i].value;
    fprintf(f, "%s %s HTTP/1.1\r\nHost: %s\r\n", mon->method, mon->path, host);
    for (size_t i = 0; i < mon->num_headers; i++) {
        const struct cfg_header_kv *kv = &mon->headers[i];
        size_t n = strlen(kv->name);
        if (!h1_token_eq(kv->name, n, "Host") && !h1_token_eq(kv->name, n, "Connection"))
            fprintf(f, "%s: %s\r\n", kv->name, kv->value);
    }
    fputs("Connection: close\r\n\r\n", f);
    if (fclose(f) != 0) {
        free(req);
        return NULL;
    }
    return req;
}

/* Copies what an http check needs from mon. Returns 0 or -1 (out of memory). */
static int prepare_http(struct probe *p, const struct cfg_monitor *mon, const char *host)
{
    p->req = build_request(mon, host, &p->req_len);
    p->buf = malloc(PROBE_BUF_SIZE);
    p->method = strdup(mon->method);
    p->expected_codes = strdup(mon->expected_codes);
    if (mon->expected_body && !(p->expected_body = strdup(mon->expected_body)))
        return -1;
    return p->req && p->buf && p->method && p->expected_codes ? 0 : -1;
}

/* Whether a failed socket() or connect() is limpet's problem, not the origin's. */
static bool local_error(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM ||
           err == EADDRNOTAVAIL || err == EAGAIN;
}

/* Gives up starting a check: sets the reason, releases, returns code. */
__attribute__((format(printf, 3, 4)))
static int refuse_start(struct probe *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
    va_end(ap);
    release(p);
    return code;
}

int probe_start(struct probe *p, const struct cfg_monitor *mon, const struct addr *addr,
                const char *host, const struct tls_client *tls)
{
    p->tcp_only = mon->type == MONITOR_TCP;
    p->connected = p->head_done = p->tls_done = false;
    p->tp = (struct transport){.ssl = NULL};
    if (mon->type == MONITOR_HTTPS && !tls)
        return refuse_start(p, PROBE_LOCAL_ERROR, "https monitor: the origin has no tls");
    p->timeout_s = mon->timeout;
    p->req_sent = p->len = p->head_len = p->body_len = 0;
    if (!p->tcp_only && prepare_http(p, mon, host) < 0)
        return refuse_start(p, PROBE_LOCAL_ERROR, "out of memory");
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return refuse_start(p, PROBE_LOCAL_ERROR, "socket: %s", strerror(errno));
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 &&
        errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return refuse_start(p, local_error(err) ? PROBE_LOCAL_ERROR : PROBE_FAILED,
                            "connect: %s", strerror(err));
    }
    if (mon->type == MONITOR_HTTPS && tls_connect(&p->tp, tls, fd, NULL) < 0) {
        close(fd);
        return refuse_start(p, PROBE_LOCAL_ERROR, "out of memory");
    }
    int rc = loop_watch(p->loop, &p->io, fd, EPOLLOUT, io_cb);
    if (rc < 0)
        tp_free(&p->tp);
    uint64_t timeout_ms = (uint64_t)(mon->timeout * 1000.0);
    if (rc == 0)
        rc = timer_arm(p->loop, &p->deadline, timeout_ms ? timeout_ms : 1);
    if (rc < 0)
        return refuse_start(p, PROBE_LOCAL_ERROR, "cannot watch the check: %s",
                            strerror(-rc));
    return PROBE_STARTED;
}

static void deadline_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct probe *p = (struct probe *)((char *)t - offsetof(struct probe, deadline));
    fail(p, "%stimed out after %gs", p->connected ? "" : "connect: ", p->timeout_s);
}

/* ---- the response ---- */

/* The verdict on the body seen so far; returns true when the check ended. */
static bool judge_body(struct probe *p, bool complete)
{
    if (memmem(p->buf + p->head_len, p->body_len, p->expected_body,
               strlen(p->expected_body))) {
        finish(p, true);
        return true;
    }
    if (complete || p->len == PROBE_BUF_SIZE) {
        fail(p, "expected body \"%.60s\" not found", p->expected_body);
        return true;
    }
    return false;
}

/* Takes the body bytes after what was already taken; returns true when the
 * check ended. */
static bool take_body(struct probe *p)
{
    char *raw = p->buf + p->head_len + p->body_len;
    size_t raw_len = p->len - p->head_len - p->body_len;
    bool complete = false;
    switch (p->sem.body) {
    case H1_BODY_NONE:
        complete = true;
        break;
    case H1_BODY_LENGTH:
        if (raw_len > p->sem.content_length - p->body_len)
            raw_len = (size_t)(p->sem.content_length - p->body_len);
        p->body_len += raw_len;
        complete = p->body_len == p->sem.content_length;
        break;
    case H1_BODY_CHUNKED: {
        size_t data_len = 0;
        if (h1_chunked_decode(&p->chunk, raw, raw_len, &data_len, &complete) < 0) {
            fail(p, "invalid response: bad chunked framing");
            return true;
        }
        p->body_len += data_len;
        break;
    }
    case H1_BODY_UNTIL_CLOSE:
        p->body_len += raw_len;
        break;
    }
    p->len = p->head_len + p->body_len;
    return judge_body(p, complete);
}

/* Accepts a parsed head of head_len bytes; returns true when the check ended. */
static bool take_head(struct probe *p, const struct h1_response *resp, int head_len)
{
    if (!health_codes_match(p->expected_codes, resp->status)) {
        fail(p, "unexpected status %d (expected %s)", resp->status, p->expected_codes);
        return true;
    }
    if (!p->expected_body) {
        finish(p, true);
        return true;
    }
    if (h1_response_semantics(resp, p->method, strlen(p->method), &p->sem) < 0) {
        fail(p, "invalid response: %s", p->sem.error.reason);
        return true;
    }
    p->head_done = true;
    p->head_len = (size_t)head_len;
    p->body_len = 0;
    h1_chunked_init(&p->chunk);
    return take_body(p);
}

/* Looks at the bytes received; returns true when the check ended. */
static bool take_bytes(struct probe *p)
{
    if (p->head_done)
        return take_body(p);
    for (;;) {
        struct h1_response resp;
        int rc = h1_parse_response(p->buf, p->len, PROBE_HEAD_MAX, &resp);
        if (rc == H1_NEED_MORE)
            return false;
        if (rc == H1_INVALID) {
            fail(p, "invalid response: %s", resp.error.reason);
            return true;
        }
        if (resp.status >= 200 || resp.status == 101)
            return take_head(p, &resp, rc);
        /* an interim response (100 Continue, 103 Early Hints): skip it */
        memmove(p->buf, p->buf + rc, p->len - (size_t)rc);
        p->len -= (size_t)rc;
    }
}

/* The origin closed its side. */
static void take_eof(struct probe *p)
{
    if (!p->head_done)
        fail(p, "connection closed %s", p->len ? "in the middle of the response head"
                                               : "without a response");
    else if (p->sem.body == H1_BODY_UNTIL_CLOSE)
        judge_body(p, true);
    else
        fail(p, "connection closed in the middle of the response body");
}

static void read_response(struct probe *p)
{
    for (;;) {
        ssize_t n = tp_recv(&p->tp, p->io.fd, p->buf + p->len, PROBE_BUF_SIZE - p->len);
        if (n > 0) {
            p->len += (size_t)n;
            if (take_bytes(p))
                return;
            continue;
        }
        if (n == 0) {
            take_eof(p);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno != EINTR) {
            fail(p, "read: %s", strerror(errno));
            return;
        }
    }
}

/* ---- connecting and sending ---- */

/* Returns true when the check ended. */
static bool send_request(struct probe *p)
{
    while (p->req_sent < p->req_len) {
        ssize_t n = tp_send(&p->tp, p->io.fd, p->req + p->req_sent, p->req_len - p->req_sent,
                            false);
        if (n > 0) {
            p->req_sent += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (n < 0 && errno == EINTR)
            continue;
        fail(p, "send: %s", n < 0 ? strerror(errno) : "nothing written");
        return true;
    }
    int rc = loop_modify(p->loop, &p->io, EPOLLIN);
    if (rc < 0) {
        fail(p, "cannot watch the check: %s", strerror(-rc));
        return true;
    }
    return false;
}

/* Returns true when the check ended. */
static bool complete_connect(struct probe *p)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(p->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        fail(p, "connect: %s", strerror(err));
        return true;
    }
    p->connected = true;
    if (p->tcp_only) {
        finish(p, true);
        return true;
    }
    return false;
}

/* One step of an https check's handshake. Returns true when the check
 * ended or waits for the socket; false when the handshake is done. */
static bool handshake(struct probe *p)
{
    char why[256];
    int rc = tls_handshake(&p->tp, why, sizeof(why));
    if (rc < 0) {
        fail(p, "%s", why);
        return true;
    }
    /* the socket is watched level-triggered: only for what the handshake awaits */
    uint32_t events = rc == 1 || !(p->tp.flags & TP_WRITE_WANTS_READ) ? EPOLLOUT : EPOLLIN;
    int err = loop_modify(p->loop, &p->io, events);
    if (err < 0) {
        fail(p, "cannot watch the check: %s", strerror(-err));
        return true;
    }
    p->tls_done = rc == 1;
    return rc != 1;
}

static void io_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    struct probe *p = (struct probe *)((char *)w - offsetof(struct probe, io));
    if (!p->connected && complete_connect(p))
        return;
    if (tp_is_tls(&p->tp) && !p->tls_done) {
        if (handshake(p))
            return;
        events |= EPOLLOUT; /* the request can go now */
    }
    if (events & EPOLLOUT && p->req_sent < p->req_len &&
        (send_request(p) || p->req_sent < p->req_len))
        return;
    read_response(p);
}
