/*
 * admin — the admin HTTP server on the control loop (see admin.h).
 *
 * How it works. One non-blocking listening socket on ctl->loop; each
 * connection (struct admin_conn) has a growing input buffer, a growing
 * output buffer and one idle timer. Requests are parsed in place with
 * h1_parse_request()/h1_request_semantics(); bodies may be Content-Length
 * or chunked (decoded in place once complete). A request is handled only
 * when the previous response has been written out, so pipelined requests
 * are answered in order and a client that does not read stops being read
 * (back-pressure). Responses are built whole by api.c and written with
 * write(2); what the socket does not take waits for EPOLLOUT.
 *
 * Before routing, each request passes the checks of admin.h: the Bearer
 * token (SHA-256 of the presented token compared with CRYPTO_memcmp, so
 * neither content nor length leaks through timing) for /api/ and /metrics;
 * without a token, a loopback Host; for POST, PATCH and DELETE, an Origin
 * header (when a browser sends one) naming this very host.
 *
 * Limits: ADMIN_MAX_CONNS connections (more are closed at once), heads of
 * ADMIN_MAX_HEAD bytes, bodies of ADMIN_MAX_BODY bytes (413 beyond), and
 * ADMIN_IDLE_MS without progress closes a connection.
 */
#include "admin/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/api.h"
#include "control/control.h"
#include "control/upgrade.h"
#include "core/addr.h"
#include "core/log.h"
#include "http/h1.h"

#define ADMIN_MAX_CONNS 256
#define ADMIN_MAX_HEAD 16384
#define ADMIN_MAX_BODY (1024 * 1024)
#define ADMIN_IDLE_MS 60000
#define ADMIN_READ_CHUNK 16384
#define ADMIN_TOKEN_MAX 4096
#define ADMIN_ACCEPT_PAUSE_MS 100

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct admin_conn {
    struct io_watch io;             /* the client socket */
    struct timer idle;              /* closes it after ADMIN_IDLE_MS without progress */
    struct admin *admin;
    struct admin_conn *prev, *next; /* admin->conns */
    char *in;                       /* bytes received and not yet handled */
    size_t in_len, in_cap;
    char *out;                      /* response bytes not yet written */
    size_t out_len, out_sent, out_cap;
    bool sent_continue;             /* 100 Continue sent for the pending request */
    bool peer_closed;               /* EOF read: answer what arrived, then close */
    bool closing;                   /* close once out is written */
    char peer[64];                  /* the client's "IP:port" ("[v6]:port"), for the log */
};

/* Parser scratch (control thread only; heads are handled synchronously). */
static struct h1_request scratch_req;
static struct h1_semantics scratch_sem;

static void conn_close(struct admin_conn *c)
{
    struct admin *a = c->admin;
    loop_unwatch(&a->ctl->loop, &c->io);
    timer_cancel(&a->ctl->loop, &c->idle);
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->num_conns--;
    free(c->in);
    free(c->out);
    free(c);
    if (a->winding_down && a->num_conns == 0)
        a->ctl->loop.stop = true; /* the last request in flight was answered */
}

/* ---- output ---- */

static bool out_append(struct admin_conn *c, const char *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        char *grown = realloc(c->out, cap);
        if (!grown)
            return false;
        c->out = grown;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return true;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

/* Queues reply as a response; head_only leaves the body out (HEAD). */
static void queue_reply(struct admin_conn *c, const struct admin_reply *r, bool head_only)
{
    char head[1024];
    bool html = strncmp(r->content_type, "text/html", 9) == 0;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "%s%s%s%s%s%s"
                     "\r\n",
                     r->status, reason_phrase(r->status), r->content_type, r->body_len,
                     r->allow ? "Allow: " : "", r->allow ? r->allow : "", r->allow ? "\r\n" : "",
                     r->status == 401 ? "WWW-Authenticate: Bearer realm=\"limpet admin\"\r\n" : "",
                     html ? "Content-Security-Policy: default-src 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n"
                            "Referrer-Policy: no-referrer\r\n" : "",
                     c->closing ? "Connection: close\r\n" : "");
    const char *body = r->body ? r->body : r->static_body;
    if (n < 0 || !out_append(c, head, (size_t)n) ||
        (!head_only && r->body_len && !out_append(c, body, r->body_len)))
        c->closing = true;      /* out of memory: give up on this connection */
}

/* An error answered outside api.c (parser refusals, limits, auth). */
static void queue_error(struct admin_conn *c, int status, const char *code, const char *msg,
                        bool close_after)
{
    struct admin_reply r = {0};
    reply_error(&r, status, code, "%s", msg);
    c->closing |= close_after;
    queue_reply(c, &r, false);
    free(r.body);
}

static void process_input(struct admin_conn *c);

/* Writes what is queued; closes or resumes reading when it is all out. */
static void flush_output(struct admin_conn *c)
{
    struct admin *a = c->admin;
    while (c->out_sent < c->out_len) {
        ssize_t w = write(c->io.fd, c->out + c->out_sent, c->out_len - c->out_sent);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            if (!(c->io.events & EPOLLOUT))
                loop_modify(&a->ctl->loop, &c->io, EPOLLOUT);
            return;
        }
        if (w <= 0) {
            conn_close(c);
            return;
        }
        c->out_sent += (size_t)w;
    }
    c->out_len = c->out_sent = 0;
    if (c->closing) {
        conn_close(c);
        return;
    }
    if (c->io.events != EPOLLIN)
        loop_modify(&a->ctl->loop, &c->io, EPOLLIN);
    if (c->in_len > 0)
        process_input(c);   /* a pipelined request waits there */
}

/* ---- request checks ---- */

static const struct h1_header *find_header(const struct h1_request *req, const char *name)
{
    for (size_t i = 0; i < req->num_headers; i++)
        if (h1_token_eq(req->headers[i].name, req->headers[i].name_len, name))
            return &req->headers[i];
    return NULL;
}

static void token_digest(const char *token, size_t len, unsigned char out[ADMIN_TOKEN_DIGEST])
{
    unsigned int n = ADMIN_TOKEN_DIGEST;
    if (EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, ADMIN_TOKEN_DIGEST);
}

/* Authorization: Bearer <token> matches the configured token. */
static bool authorized(const struct admin *a, const struct h1_request *req)
{
    const struct h1_header *h = find_header(req, "Authorization");
    if (!h || h->value_len < 7 || !h1_token_eq(h->value, 6, "Bearer") || h->value[6] != ' ')
        return false;
    const char *t = h->value + 7;
    size_t n = h->value_len - 7;
    while (n > 0 && *t == ' ')
        t++, n--;
    unsigned char d[ADMIN_TOKEN_DIGEST];
    token_digest(t, n, d);
    return CRYPTO_memcmp(d, a->token_digest, sizeof(d)) == 0;
}

/* Host names a loopback address or "localhost" (with or without a port),
 * or is absent (HTTP/1.0). */
static bool loopback_host(const struct h1_header *host)
{
    char name[128];
    if (!host)
        return true;        /* HTTP/1.0 without Host: no browser sends that */
    if (host->value_len == 0 || host->value_len >= sizeof(name))
        return false;
    memcpy(name, host->value, host->value_len);
    name[host->value_len] = '\0';
    char *end = name[0] == '[' ? strchr(name, ']') : strrchr(name, ':');
    if (name[0] == '[') {
        if (!end)
            return false;
        *end = '\0';
        memmove(name, name + 1, strlen(name + 1) + 1);
    } else if (end) {
        *end = '\0';
    }
    struct addr a;
    return strcasecmp(name, "localhost") == 0 ||
           (addr_parse_ip(name, &a) == 0 && addr_is_loopback(&a));
}

/* A browser's Origin, when sent, must be this host ("http://" + Host). */
static bool same_origin(const struct h1_request *req)
{
    const struct h1_header *origin = find_header(req, "Origin");
    if (!origin)
        return true;
    const struct h1_header *host = find_header(req, "Host");
    return host && origin->value_len == host->value_len + 7 &&
           h1_token_eq(origin->value, 7, "http://") &&
           strncasecmp(origin->value + 7, host->value, host->value_len) == 0;
}

/* ---- requests ---- */

static enum admin_method method_of(const struct h1_request *req)
{
    static const struct { const char *name; enum admin_method m; } methods[] = {
        {"GET", METHOD_GET}, {"HEAD", METHOD_HEAD}, {"POST", METHOD_POST},
        {"PATCH", METHOD_PATCH}, {"DELETE", METHOD_DELETE},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (req->method_len == strlen(methods[i].name) &&
            memcmp(req->method, methods[i].name, req->method_len) == 0)
            return methods[i].m;
    return METHOD_OTHER;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The percent-decoded path of an origin-form target (malloc'd), the raw
 * query in *query (malloc'd). False when out of memory. */
static bool split_target(const char *t, size_t len, char **path, char **query)
{
    const char *q = memchr(t, '?', len);
    size_t plen = q ? (size_t)(q - t) : len;
    *path = malloc(plen + 1);
    *query = q ? strndup(q + 1, len - plen - 1) : strdup("");
    if (!*path || !*query) {
        free(*path);
        free(*query);
        return false;
    }
    size_t n = 0;
    for (size_t i = 0; i < plen; i++) {
        int hi, lo;
        if (t[i] == '%' && i + 2 < plen && (hi = hex_digit(t[i + 1])) >= 0 &&
            (lo = hex_digit(t[i + 2])) >= 0 && (hi || lo)) {
            (*path)[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            (*path)[n++] = t[i];
        }
    }
    (*path)[n] = '\0';
    return true;
}

/* Handles one complete request whose body is body[0..body_len). */
static void handle_request(struct admin_conn *c, const struct h1_request *req,
                           const struct h1_semantics *sem, const char *body, size_t body_len)
{
    struct admin *a = c->admin;
    struct admin_request r = {.method = method_of(req), .body = body, .body_len = body_len,
                              .peer = c->peer};
    struct admin_reply reply = {0};
    if (!sem->keep_alive || req->minor_version == 0 || a->winding_down)
        c->closing = true;
    if (req->target_len == 0 || req->target[0] != '/') {
        queue_error(c, 400, "bad_request", "the request target must be a path (\"/...\")",
                    true);
        return;
    }
    if (!split_target(req->target, req->target_len, &r.path, &r.query)) {
        queue_error(c, 500, "internal", "out of memory", true);
        return;
    }
    bool protected = strncmp(r.path, "/api/", 5) == 0 || strcmp(r.path, "/metrics") == 0;
    bool changes = r.method == METHOD_POST || r.method == METHOD_PATCH ||
                   r.method == METHOD_DELETE;
    if (!a->has_token && !loopback_host(sem->host)) {
        reply_error(&reply, 403, "forbidden", "without admin.token_file only requests naming "
                    "a loopback host (127.0.0.1, [::1], localhost) are served");
    } else if (changes && a->winding_down) {
        reply_error(&reply, 409, "stopping", "this limpet is stopping (or another process "
                    "took over from it): send the change to the limpet that runs on");
    } else if (changes && !same_origin(req)) {
        reply_error(&reply, 403, "forbidden", "a change must come from this page's own origin "
                    "(the Origin header names another site)");
    } else if (protected && a->has_token && !authorized(a, req)) {
        reply_error(&reply, 401, "unauthorized", find_header(req, "Authorization")
                    ? "wrong token" : "this call needs Authorization: Bearer <token>");
    } else {
        api_handle(a, &r, &reply);
    }
    queue_reply(c, &reply, r.method == METHOD_HEAD);
    free(reply.body);
    free(r.path);
    free(r.query);
}

/* Handles every complete request in c->in while nothing is left to write. */
static void process_input(struct admin_conn *c)
{
    while (!c->closing && c->out_len == 0 && c->in_len > 0) {
        struct h1_request *req = &scratch_req;
        struct h1_semantics *sem = &scratch_sem;
        int head = h1_parse_request(c->in, c->in_len, ADMIN_MAX_HEAD, req);
        if (head == H1_NEED_MORE)
            break;
        if (head == H1_INVALID) {
            queue_error(c, req->error.status, "bad_request", req->error.reason, true);
            break;
        }
        if (h1_request_semantics(req, sem) < 0) {
            queue_error(c, sem->error.status, "bad_request", sem->error.reason, true);
            break;
        }
        size_t body_off = (size_t)head, body_len = 0, consumed = (size_t)head;
        bool complete = true;
        if (sem->body == H1_BODY_LENGTH) {
            if (sem->content_length > ADMIN_MAX_BODY) {
                queue_error(c, 413, "too_large", "request bodies are limited to 1 MiB", true);
                break;
            }
            body_len = (size_t)sem->content_length;
            consumed += body_len;
            complete = c->in_len >= consumed;
        } else if (sem->body == H1_BODY_CHUNKED) {
            struct h1_chunked ch;
            bool done = false;
            h1_chunked_init(&ch);
            long n = h1_chunked_scan(&ch, c->in + body_off, c->in_len - body_off, &done);
            if (n < 0) {
                queue_error(c, 400, "bad_request", "bad chunked body", true);
                break;
            }
            if (!done && c->in_len - body_off > ADMIN_MAX_BODY) {
                queue_error(c, 413, "too_large", "request bodies are limited to 1 MiB", true);
                break;
            }
            complete = done;
            if (done) {
                h1_chunked_init(&ch);
                h1_chunked_decode(&ch, c->in + body_off, (size_t)n, &body_len, &done);
                consumed += (size_t)n;
            }
        }
        if (!complete) {
            if (sem->expect_continue && !c->sent_continue) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->sent_continue = true;
                if (write(c->io.fd, cont, sizeof(cont) - 1) < 0)
                    c->closing = true;
            }
            break;
        }
        handle_request(c, req, sem, c->in + body_off, body_len);
        c->sent_continue = false;
        memmove(c->in, c->in + consumed, c->in_len - consumed);
        c->in_len -= consumed;
    }
    if (c->peer_closed)
        c->closing = true;
    if (c->out_len > 0)
        flush_output(c);
    else if (c->closing)
        conn_close(c);
}

static void conn_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    struct admin_conn *c = container_of(w, struct admin_conn, io);
    timer_arm(loop, &c->idle, ADMIN_IDLE_MS);
    if (events & EPOLLOUT) {
        flush_output(c);
        return;
    }
    if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
        conn_close(c);
        return;
    }
    for (;;) {
        if (c->in_cap - c->in_len < ADMIN_READ_CHUNK) {
            if (c->in_cap >= ADMIN_MAX_HEAD + ADMIN_MAX_BODY + ADMIN_READ_CHUNK)
                break;  /* the parser or the body limit refuses it below */
            char *grown = realloc(c->in, c->in_cap + ADMIN_READ_CHUNK);
            if (!grown) {
                conn_close(c);
                return;
            }
            c->in = grown;
            c->in_cap += ADMIN_READ_CHUNK;
        }
        ssize_t n = read(w->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == 0)
            c->peer_closed = true;
        else if (errno == EINTR)
            continue;
        else if (errno != EAGAIN) {
            conn_close(c);
            return;
        }
        break;
    }
    if (c->closing)
        c->in_len = 0;      /* the last answer is queued: the rest is not read */
    process_input(c);
}

static void idle_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    conn_close(container_of(t, struct admin_conn, idle));
}

/* "127.0.0.1:51234" or "[::1]:51234": who made a change, in the log. */
static void format_peer(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    sockaddr_ip_string((const struct sockaddr *)ss, ip, sizeof(ip));
    unsigned port = ss->ss_family == AF_INET6
                        ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                        : ntohs(((const struct sockaddr_in *)ss)->sin_port);
    snprintf(out, size, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

static void accept_resume_cb(struct loop *loop, struct timer *t)
{
    struct admin *a = container_of(t, struct admin, accept_resume);
    loop_modify(loop, &a->listener, EPOLLIN);
}

static void accept_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    struct admin *a = container_of(w, struct admin, listener);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(w->fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The listener stays readable: stop watching it for a
                 * moment rather than spin on the control thread. */
                log_error("admin: accept: %s; pausing for %d ms", strerror(errno),
                          ADMIN_ACCEPT_PAUSE_MS);
                loop_modify(loop, w, 0);
                timer_arm(loop, &a->accept_resume, ADMIN_ACCEPT_PAUSE_MS);
            }
            return;
        }
        struct admin_conn *c = a->num_conns < ADMIN_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->admin = a;
        format_peer(&peer, c->peer, sizeof(c->peer));
        timer_init(&c->idle, idle_cb);
        if (loop_watch(loop, &c->io, fd, EPOLLIN, conn_cb) < 0) {
            close(fd);
            free(c);
            continue;
        }
        timer_arm(loop, &c->idle, ADMIN_IDLE_MS);
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->num_conns++;
    }
}

/* ---- life cycle ---- */

/* Reads the token file into a digest. Returns 0, or -1 after logging. */
static int load_token(struct admin *a, const char *path)
{
    char buf[ADMIN_TOKEN_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_error("admin.token_file %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    int err = errno;
    close(fd);
    if (n < 0 || n > ADMIN_TOKEN_MAX) {
        log_error("admin.token_file %s: %s", path, n < 0 ? strerror(err) : "longer than 4096 bytes");
        return -1;
    }
    size_t start = 0, end = (size_t)n;
    while (start < end && (buf[start] == ' ' || buf[start] == '\t' || buf[start] == '\r' ||
                           buf[start] == '\n'))
        start++;
    while (end > start && (buf[end - 1] == ' ' || buf[end - 1] == '\t' ||
                           buf[end - 1] == '\r' || buf[end - 1] == '\n'))
        end--;
    if (end == start) {
        log_error("admin.token_file %s: empty (the token is the file's content)", path);
        return -1;
    }
    token_digest(buf + start, end - start, a->token_digest);
    OPENSSL_cleanse(buf, sizeof(buf));
    a->has_token = true;
    return 0;
}

struct admin *admin_new(struct control *ctl, const struct config *cfg)
{
    const struct cfg_admin *conf = &cfg->admin;
    if (!addr_is_loopback(&conf->addr) && !conf->token_file) {
        log_error("admin.address %s is not a loopback address: refusing to serve the admin "
                  "API there without a token (set admin.token_file, or use 127.0.0.1)",
                  conf->address);
        return NULL;
    }
    struct admin *a = calloc(1, sizeof(*a));
    if (!a || state_init(&a->state, conf->state_file) < 0 ||
        !(a->address = strdup(conf->address)) ||
        (conf->token_file && !(a->token_file = strdup(conf->token_file)))) {
        log_error("admin: out of memory");
        admin_free(a);
        return NULL;
    }
    a->ctl = ctl;
    a->listener.fd = -1;
    timer_init(&a->accept_resume, accept_resume_cb);
    if (conf->token_file && load_token(a, conf->token_file) < 0) {
        admin_free(a);
        return NULL;
    }
    state_load(&a->state);
    int fd = upgrade_take_socket(UPGRADE_ADMIN, &conf->addr); /* from an upgraded limpet */
    if (fd < 0)
        fd = addr_listen(&conf->addr, false, 64);
    if (fd < 0) {
        log_error("admin: cannot listen on %s: %s", conf->address, strerror(-fd));
        admin_free(a);
        return NULL;
    }
    a->listener.fd = fd;
    return a;
}

int admin_start(struct admin *a)
{
    int rc = loop_watch(&a->ctl->loop, &a->listener, a->listener.fd, EPOLLIN, accept_cb);
    if (rc < 0) {
        log_error("admin: cannot watch %s: %s", a->address, strerror(-rc));
        return -1;
    }
    log_error("admin API and dashboard on http://%s/%s", a->address,
              a->has_token ? " (token required)" : "");
    return 0;
}

static bool same_string(const char *x, const char *y)
{
    return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

struct config *admin_config_loaded(struct admin *a, struct config *cfg)
{
    if (!a)
        return cfg;
    if (!cfg->admin.enabled || !same_string(cfg->admin.address, a->address) ||
        !same_string(cfg->admin.token_file, a->token_file) ||
        !same_string(cfg->admin.state_file, a->state.path))
        log_error("admin: a change of the admin settings takes effect at the next start");
    if (!a->state.path) {
        state_clear(&a->state);
        return cfg;
    }
    return state_apply(&a->state, cfg);
}

int admin_listen_fd(const struct admin *a, const char **address)
{
    if (!a)
        return -1;
    *address = a->address;
    return a->listener.fd;
}

void admin_stop_accepting(struct admin *a)
{
    if (!a || a->listener.fd < 0)
        return;
    timer_cancel(&a->ctl->loop, &a->accept_resume);
    if (a->listener.events)
        loop_modify(&a->ctl->loop, &a->listener, 0);
}

unsigned admin_wind_down(struct admin *a, bool keep_between_requests)
{
    if (!a)
        return 0;
    admin_stop_accepting(a);
    a->winding_down = true;
    for (struct admin_conn *c = a->conns, *next; c; c = next) {
        next = c->next;
        if (!keep_between_requests && c->in_len == 0 && c->out_len == 0)
            conn_close(c);
    }
    return a->num_conns;
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    while (a->conns)
        conn_close(a->conns);
    timer_cancel(&a->ctl->loop, &a->accept_resume);
    if (a->listener.fd >= 0) {
        loop_unwatch(&a->ctl->loop, &a->listener);
        close(a->listener.fd);
    }
    state_fini(&a->state);
    free(a->address);
    free(a->token_file);
    free(a);
}
