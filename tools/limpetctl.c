/*
 * limpetctl — command-line client of limpet's admin API (SPEC §6), and
 * `probe`, a cookie-keeping HTTP session for checking affinity against any
 * load balancer.
 *
 *   limpetctl [--admin URL]... [--token-file F] [--json] COMMAND ...
 *
 * Each admin command is one HTTP/1.1 request per admin URL (--admin may be
 * repeated to change several instances; each one's result is reported,
 * prefixed with its URL). Output is one line per result, or the API's JSON
 * with --json. Exit status: 0 success, 1 an API or connection error (its
 * message on stderr), 2 bad usage.
 *
 * How it works. Blocking sockets with timeouts; responses are parsed with
 * limpet's own parser (http/h1.h) and bodies with jansson, the code the
 * daemon uses. `probe` sends its first request alone (as a browser loads a
 * page before its resources), then the rest over -c keep-alive connections
 * on as many threads, sharing one cookie jar under a mutex, and reports the
 * origin of each answer (--origin-header), whether the session stayed on one
 * origin, and latency percentiles. The cookie jar file uses the Netscape
 * format that curl reads and writes (-b/-c).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/admin.h"
#include "http/h1.h"

#define EXIT_API 1
#define EXIT_USAGE 2
#define MAX_ADMINS 32
#define MAX_HEADERS 32
#define IO_TIMEOUT_S 10
#define MAX_RESPONSE_HEAD 65536
#define MAX_RESPONSE_BODY (64u * 1024 * 1024)
#define PROBE_MAX_REQUESTS 1000000
#define PROBE_MAX_CONCURRENCY 256

static const char usage_text[] =
    "usage: limpetctl [--admin URL]... [--token-file F] [--json] COMMAND\n"
    "\n"
    "  status\n"
    "  lb list | lb show NAME\n"
    "  lb set NAME [--session-affinity MODE] [--ttl S] [--samesite V] [--secure V]\n"
    "              [--failover MODE] [--drain-duration S]\n"
    "  pool list | pool show NAME\n"
    "  origin drain|enable|disable POOL ORIGIN\n"
    "  origin weight POOL ORIGIN N\n"
    "  origin add POOL NAME ADDRESS [--weight N] [--route R] [--state S]\n"
    "  origin remove POOL NAME\n"
    "  reload\n"
    "  state | state clear\n"
    "  cookie decode VALUE [--load-balancer NAME]\n"
    "  probe URL [-n N] [-c CONCURRENCY] [-H 'Name: value']... [--cookie-jar FILE]\n"
    "            [--origin-header NAME]\n"
    "\n"
    "--admin defaults to http://127.0.0.1:8081 and may be repeated to apply a\n"
    "command to several limpet instances. Exit status: 0 ok, 1 API error, 2 usage.\n";

static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("limpetctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    fputs(usage_text, stderr);
    exit(EXIT_USAGE);
}

/* ------------------------------------------------------------------------ */
/* URLs and connections                                                     */

struct url {
    char host[272];                 /* without brackets */
    char port[8];
    char hostport[272];             /* for Host: */
    char path[2048];                /* path and query ("/" at least) */
};

/* Parses "http://host[:port][/path]" (the scheme may be left out). */
static bool url_parse(const char *text, struct url *u)
{
    const char *p = text;
    if (strncasecmp(p, "https://", 8) == 0)
        return false;
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    size_t auth_len = strcspn(p, "/?#");
    const char *rest = p + auth_len;
    char auth[272];
    if (auth_len == 0 || auth_len >= sizeof(auth))
        return false;
    memcpy(auth, p, auth_len);
    auth[auth_len] = '\0';
    snprintf(u->hostport, sizeof(u->hostport), "%s", auth);
    char *port = NULL;
    if (auth[0] == '[') {
        char *end = strchr(auth, ']');
        if (!end)
            return false;
        *end = '\0';
        snprintf(u->host, sizeof(u->host), "%s", auth + 1);
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return false;
    } else {
        port = strrchr(auth, ':');
        if (port)
            *port++ = '\0';
        snprintf(u->host, sizeof(u->host), "%s", auth);
    }
    if (port && (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5))
        return false;
    snprintf(u->port, sizeof(u->port), "%s", port ? port : "80");
    size_t path_len = strcspn(rest, "#");
    if (path_len >= sizeof(u->path) - 1)
        return false;
    if (path_len == 0 || rest[0] != '/') {
        u->path[0] = '/';
        memcpy(u->path + 1, rest, path_len);
        u->path[path_len + 1] = '\0';
    } else {
        memcpy(u->path, rest, path_len);
        u->path[path_len] = '\0';
    }
    return u->host[0] != '\0';
}

struct conn {
    int fd;                         /* -1: not connected */
    char *buf;                      /* bytes read and not yet consumed */
    size_t len, cap;
};

static int conn_open(struct conn *c, const struct url *u, char *err, size_t err_size)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(res);
            c->fd = fd;
            c->len = 0;
            return 0;
        }
        saved = errno;
        close(fd);
    }
    freeaddrinfo(res);
    snprintf(err, err_size, "cannot connect to %s: %s", u->hostport, strerror(saved));
    return -1;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more into c->buf; returns bytes read, 0 at EOF, -1 on error. */
static ssize_t read_more(struct conn *c)
{
    if (c->cap - c->len < 16384) {
        size_t cap = c->cap ? c->cap * 2 : 65536;
        char *grown = realloc(c->buf, cap);
        if (!grown)
            return -1;
        c->buf = grown;
        c->cap = cap;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            c->len += (size_t)n;
        return n;
    }
}

struct header {
    char *name, *value;
};

struct response {
    int status;
    struct header headers[MAX_HEADERS];     /* the first MAX_HEADERS fields */
    size_t num_headers;
    char *body;                             /* NUL-terminated */
    size_t body_len;
    bool keep_alive;
};

static void response_free(struct response *r)
{
    for (size_t i = 0; i < r->num_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->body);
    *r = (struct response){0};
}

static const char *response_header(const struct response *r, const char *name)
{
    for (size_t i = 0; i < r->num_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* Reads one response to a request with method `method`. Returns 0, or -1
 * with err set (the connection is then unusable). */
static int read_response(struct conn *c, const char *method, struct response *r, char *err,
                         size_t err_size)
{
    static _Thread_local struct h1_response hr;
    static _Thread_local struct h1_semantics sem;
    struct h1_chunked ch;
    size_t scanned = 0;             /* chunked: body bytes scanned so far */
    bool chunk_done = false, eof = false;
    *r = (struct response){0};
    for (;;) {
        int head = c->len ? h1_parse_response(c->buf, c->len, MAX_RESPONSE_HEAD, &hr)
                          : H1_NEED_MORE;
        if (head == H1_INVALID || (head > 0 &&
            h1_response_semantics(&hr, method, strlen(method), &sem) < 0)) {
            snprintf(err, err_size, "malformed response (%s)",
                     head == H1_INVALID ? hr.error.reason : sem.error.reason);
            return -1;
        }
        if (head > 0 && hr.status >= 100 && hr.status < 200 && hr.status != 101) {
            memmove(c->buf, c->buf + head, c->len - (size_t)head);
            c->len -= (size_t)head;
            continue;       /* interim response */
        }
        size_t total = 0;
        bool complete = false;
        if (head > 0) {
            size_t h = (size_t)head;
            switch (sem.body) {
            case H1_BODY_NONE:
                complete = true;
                total = h;
                break;
            case H1_BODY_LENGTH:
                if (sem.content_length > MAX_RESPONSE_BODY) {
                    snprintf(err, err_size, "response body too large");
                    return -1;
                }
                total = h + (size_t)sem.content_length;
                complete = c->len >= total;
                break;
            case H1_BODY_CHUNKED:
                if (scanned == 0 && !chunk_done)
                    h1_chunked_init(&ch);
                if (!chunk_done) {
                    long n = h1_chunked_scan(&ch, c->buf + h + scanned, c->len - h - scanned,
                                             &chunk_done);
                    if (n < 0) {
                        snprintf(err, err_size, "malformed chunked body");
                        return -1;
                    }
                    scanned += (size_t)n;
                }
                complete = chunk_done;
                total = h + scanned;
                break;
            case H1_BODY_UNTIL_CLOSE:
                complete = eof;
                total = c->len;
                break;
            }
        }
        if (complete) {
            size_t h = (size_t)head;
            r->status = hr.status;
            for (size_t i = 0; i < hr.num_headers && r->num_headers < MAX_HEADERS; i++) {
                struct header *hd = &r->headers[r->num_headers++];
                hd->name = strndup(hr.headers[i].name, hr.headers[i].name_len);
                hd->value = strndup(hr.headers[i].value, hr.headers[i].value_len);
            }
            size_t body_len = total - h;
            if (sem.body == H1_BODY_CHUNKED) {
                bool done;
                h1_chunked_init(&ch);
                h1_chunked_decode(&ch, c->buf + h, body_len, &body_len, &done);
            }
            r->body = malloc(body_len + 1);
            if (r->body) {
                memcpy(r->body, c->buf + h, body_len);
                r->body[body_len] = '\0';
                r->body_len = body_len;
            }
            r->keep_alive = sem.keep_alive && sem.body != H1_BODY_UNTIL_CLOSE;
            memmove(c->buf, c->buf + total, c->len - total);
            c->len -= total;
            return r->body ? 0 : -1;
        }
        if (c->len > MAX_RESPONSE_HEAD + MAX_RESPONSE_BODY) {
            snprintf(err, err_size, "response too large");
            return -1;
        }
        ssize_t n = read_more(c);
        if (n == 0 && head > 0 && sem.body == H1_BODY_UNTIL_CLOSE) {
            eof = true;
            continue;
        }
        if (n <= 0) {
            snprintf(err, err_size, n == 0 ? "connection closed before a complete response"
                     : errno == EAGAIN ? "timed out waiting for the response" : "read: %s",
                     strerror(errno));
            return -1;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Admin API calls                                                          */

struct options {
    const char *admins[MAX_ADMINS];
    size_t num_admins;
    char *token;                    /* from --token-file, or NULL */
    bool json;
};

/* Percent-encodes s as one path segment or query value into out. */
static void encode_component(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s && n + 4 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out[n++] = (char)ch;
        } else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
}

struct api_result {
    int status;                     /* HTTP status; 0: no response */
    json_t *body;                   /* parsed body (NULL when not JSON) */
    char error[1024];               /* what went wrong, for humans */
};

/* One API call to admin URL base: method path (already encoded), body
 * (may be NULL). */
static void api_call(const struct options *o, const char *base, const char *method,
                     const char *path, const json_t *body, struct api_result *res)
{
    struct url u;
    struct conn c = {.fd = -1};
    struct response r = {0};
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char *req = NULL;
    *res = (struct api_result){0};
    if (!url_parse(base, &u)) {
        snprintf(res->error, sizeof(res->error), "bad admin URL \"%s\" (want http://HOST:PORT)",
                 base);
        goto out;
    }
    size_t prefix = strlen(u.path);
    while (prefix > 0 && u.path[prefix - 1] == '/')
        prefix--;
    int n = asprintf(&req, "%s %.*s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: limpetctl/%s\r\n"
                     "Accept: application/json\r\n%s%s%s%sContent-Length: %zu\r\n\r\n%s",
                     method, (int)prefix, u.path, path, u.hostport, LIMPET_VERSION,
                     o->token ? "Authorization: Bearer " : "", o->token ? o->token : "",
                     o->token ? "\r\n" : "",
                     text ? "Content-Type: application/json\r\n" : "",
                     text ? strlen(text) : 0, text ? text : "");
    if (n < 0) {
        req = NULL;
        snprintf(res->error, sizeof(res->error), "out of memory");
        goto out;
    }
    if (conn_open(&c, &u, res->error, sizeof(res->error)) < 0)
        goto out;
    if (send_all(c.fd, req, (size_t)n) < 0) {
        snprintf(res->error, sizeof(res->error), "cannot send to %s: %s", u.hostport,
                 strerror(errno));
        goto out;
    }
    if (read_response(&c, method, &r, res->error, sizeof(res->error)) < 0)
        goto out;
    res->status = r.status;
    json_error_t jerr;
    res->body = json_loadb(r.body, r.body_len, 0, &jerr);
    const char *msg = json_string_value(json_object_get(json_object_get(res->body, "error"),
                                                        "message"));
    if (r.status >= 400)
        snprintf(res->error, sizeof(res->error), "%s", msg ? msg : r.body);
    else if (!res->body)
        snprintf(res->error, sizeof(res->error), "the answer is not JSON (is %s a limpet "
                 "admin address?)", base);
out:
    response_free(&r);
    conn_close(&c);
    free(c.buf);
    free(req);
    free(text);
}

/* ---- output ---- */

static const char *jstr(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "-";
}

static long long jint(const json_t *obj, const char *key)
{
    return (long long)json_number_value(json_object_get(obj, key));
}

/* A JSON scalar or array of scalars as text ("a, b"; "-" for null). */
static void scalar_text(const json_t *v, char *out, size_t size)
{
    if (json_is_string(v)) {
        snprintf(out, size, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(out, size, "%g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        size_t n = 0, i;
        json_t *item;
        out[0] = '\0';
        json_array_foreach(v, i, item) {
            char one[256];
            scalar_text(item, one, sizeof(one));
            n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s", i ? "," : "", one);
            if (n >= size)
                break;
        }
        if (json_array_size(v) == 0)
            snprintf(out, size, "-");
    } else if (json_is_object(v)) {
        char *dump = json_dumps(v, JSON_COMPACT);
        snprintf(out, size, "%s", dump ? dump : "{}");
        free(dump);
    } else {
        snprintf(out, size, "-");
    }
}

static void print_lb_line(const char *prefix, const json_t *lb)
{
    char pools[512], fallback[128];
    scalar_text(json_object_get(lb, "default_pools"), pools, sizeof(pools));
    scalar_text(json_object_get(lb, "fallback_pool"), fallback, sizeof(fallback));
    const json_t *attrs = json_object_get(lb, "session_affinity_attributes");
    char listen[512];
    scalar_text(json_object_get(lb, "listen"), listen, sizeof(listen));
    printf("%s%s  affinity=%s ttl=%lld samesite=%s secure=%s failover=%s drain=%g "
           "pools=%s fallback=%s listen=%s\n",
           prefix, jstr(lb, "name"), jstr(lb, "session_affinity"),
           jint(lb, "session_affinity_ttl"), jstr(attrs, "samesite"), jstr(attrs, "secure"),
           jstr(attrs, "zero_downtime_failover"),
           json_number_value(json_object_get(attrs, "drain_duration")), pools, fallback, listen);
}

/* "key: value" lines for every scalar under obj, keys joined with '.'. */
static void print_flat(const char *prefix, const char *path, const json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        char full[256];
        snprintf(full, sizeof(full), "%s%s%s", path, *path ? "." : "", key);
        if (json_is_object(v)) {
            print_flat(prefix, full, v);
        } else {
            char text[1024];
            scalar_text(v, text, sizeof(text));
            printf("%s%s: %s\n", prefix, full, text);
        }
    }
}

static void print_origin_line(const char *prefix, const char *pool, const json_t *o)
{
    char drain[64] = "";
    const json_t *df = json_object_get(o, "draining_for");
    if (json_is_number(df))
        snprintf(drain, sizeof(drain), " (for %.0fs)", json_number_value(df));
    printf("%s%s/%s  %s  %s%s  %s  weight=%lld active=%lld requests=%lld sessions=%lld\n",
           prefix, pool, jstr(o, "name"), jstr(o, "address"), jstr(o, "state"), drain,
           json_is_true(json_object_get(o, "healthy")) ? "up" : "DOWN",
           jint(o, "weight"), jint(o, "active_connections"), jint(o, "requests"),
           jint(o, "sessions"));
}

static void print_pool_line(const char *prefix, const json_t *p)
{
    const json_t *s = json_object_get(p, "summary");
    char lbs[512];
    scalar_text(json_object_get(p, "load_balancers"), lbs, sizeof(lbs));
    printf("%s%s  origins=%lld up=%lld usable=%lld draining=%lld disabled=%lld steering=%s "
           "load_balancers=%s\n",
           prefix, jstr(p, "name"), jint(s, "origins"), jint(s, "up"), jint(s, "usable"),
           jint(s, "draining"), jint(s, "disabled"), jstr(p, "origin_steering"), lbs);
}

/* ---- commands ---- */

enum command_kind {
    CMD_STATUS, CMD_LB_LIST, CMD_LB_SHOW, CMD_LB_SET, CMD_POOL_LIST, CMD_POOL_SHOW,
    CMD_ORIGIN_STATE, CMD_ORIGIN_WEIGHT, CMD_ORIGIN_ADD, CMD_ORIGIN_REMOVE, CMD_RELOAD,
    CMD_STATE, CMD_STATE_CLEAR, CMD_COOKIE_DECODE,
};

struct command {
    enum command_kind kind;
    const char *method;
    char path[4096];                /* API path, encoded */
    json_t *body;                   /* request body or NULL */
    const char *pool, *name;        /* for messages */
};

/* Prints what one successful call returned. */
static void print_result(const struct command *cmd, const char *prefix, const json_t *b)
{
    size_t i;
    json_t *item;
    switch (cmd->kind) {
    case CMD_STATUS:
        printf("%s%s  version=%s uptime=%llds workers=%lld generation=%lld reloads=%lld "
               "config=%s\n", prefix, jstr(b, "state"), jstr(b, "version"), jint(b, "uptime"),
               jint(b, "workers"), jint(b, "generation"), jint(b, "reloads"), jstr(b, "config"));
        break;
    case CMD_LB_LIST:
        json_array_foreach(json_object_get(b, "load_balancers"), i, item)
            print_lb_line(prefix, item);
        break;
    case CMD_LB_SHOW:
        print_flat(prefix, "", b);
        break;
    case CMD_LB_SET:
        print_lb_line(prefix, b);
        break;
    case CMD_POOL_LIST:
        json_array_foreach(json_object_get(b, "pools"), i, item)
            print_pool_line(prefix, item);
        break;
    case CMD_POOL_SHOW:
        print_pool_line(prefix, b);
        json_array_foreach(json_object_get(b, "origins"), i, item)
            print_origin_line(prefix, jstr(b, "name"), item);
        break;
    case CMD_ORIGIN_STATE:
    case CMD_ORIGIN_WEIGHT:
        print_origin_line(prefix, cmd->pool, b);
        break;
    case CMD_ORIGIN_ADD:
        printf("%s%s/%s: added (%s, %s, weight %lld)\n", prefix, cmd->pool, jstr(b, "name"),
               jstr(b, "address"), jstr(b, "state"), jint(b, "weight"));
        break;
    case CMD_ORIGIN_REMOVE:
        printf("%s%s/%s: removed\n", prefix, cmd->pool, cmd->name);
        break;
    case CMD_RELOAD:
        printf("%sreloaded %s (generation %lld)\n", prefix, jstr(b, "config"),
               jint(b, "generation"));
        break;
    case CMD_STATE:
        if (json_array_size(json_object_get(b, "changes")) == 0)
            printf("%sno run-time changes recorded (state file: %s)\n", prefix,
                   jstr(b, "state_file"));
        json_array_foreach(json_object_get(b, "changes"), i, item) {
            const json_t *origin = json_object_get(item, "origin");
            char what[512], set[1024];
            if (json_object_get(item, "load_balancer"))
                snprintf(what, sizeof(what), "%s", jstr(item, "load_balancer"));
            else
                snprintf(what, sizeof(what), "%s/%s", jstr(item, "pool"),
                         json_is_object(origin) ? jstr(origin, "name") : jstr(item, "origin"));
            scalar_text(json_object_get(item, json_is_object(origin) ? "origin" : "set"),
                        set, sizeof(set));
            printf("%s%s %s %s\n", prefix, jstr(item, "op"), what,
                   json_object_get(item, "set") || json_is_object(origin) ? set : "");
        }
        break;
    case CMD_STATE_CLEAR:
        printf("%sforgot %lld run-time changes\n", prefix, jint(b, "forgotten"));
        break;
    case CMD_COOKIE_DECODE: {
        const json_t *t = json_object_get(b, "token");
        const json_t *origin = json_object_get(t, "origin");
        char where[300] = "-";
        if (json_is_object(origin))
            snprintf(where, sizeof(where), "%s/%s", jstr(origin, "pool"), jstr(origin, "name"));
        printf("%s%s origin=%s\n", prefix, jstr(b, "summary"), where);
        break;
    }
    }
}

/*
 * After `origin drain`: the load balancers using the pool with session
 * affinity and drain_duration 0 keep no session on a draining origin, so
 * the drain moves its sessions at their next request, as disable does. Says
 * so on stderr (stdout keeps one line per result). Nothing is said when
 * the API cannot tell.
 */
static void note_drain_duration(const struct options *o, const char *admin, const char *prefix,
                                const struct command *cmd)
{
    struct api_result pool, lbs;
    char path[1100], enc[512], names[512] = "";
    size_t n = 0, count = 0, i;
    json_t *lb, *used;
    encode_component(cmd->pool, enc, sizeof(enc));
    snprintf(path, sizeof(path), "/api/v1/pools/%s", enc);
    api_call(o, admin, "GET", path, NULL, &pool);
    api_call(o, admin, "GET", "/api/v1/load_balancers", NULL, &lbs);
    json_array_foreach(json_object_get(lbs.body, "load_balancers"), i, lb) {
        const char *name = jstr(lb, "name");
        bool uses = false;
        size_t j;
        json_array_foreach(json_object_get(pool.body, "load_balancers"), j, used)
            uses |= strcmp(json_string_value(used) ? json_string_value(used) : "", name) == 0;
        const json_t *drain = json_object_get(json_object_get(lb, "session_affinity_attributes"),
                                              "drain_duration");
        if (!uses || strcmp(jstr(lb, "session_affinity"), "none") == 0 ||
            !json_is_number(drain) || json_number_value(drain) != 0)
            continue;
        if (n < sizeof(names))
            n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", count ? ", " : "", name);
        count++;
    }
    if (count)
        fprintf(stderr, "limpetctl: %snote: drain_duration is 0 for load balancer%s %s, so "
                "draining %s/%s moves its sessions at their next request, as disable does; "
                "to let them stay: limpetctl lb set %s --drain-duration SECONDS\n", prefix,
                count > 1 ? "s" : "", names, cmd->pool, cmd->name,
                count > 1 ? "NAME" : names);
    json_decref(pool.body);
    json_decref(lbs.body);
}

static void need_args(int argc, int want, const char *what)
{
    if (argc != want)
        die_usage("%s", what);
}

/* Value of a command option at argv[*i] ("--name VALUE"); advances *i. */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        die_usage("%s needs a value", argv[*i]);
    return argv[++*i];
}

static json_t *number_arg(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end)
        die_usage("%s: not a number: %s", opt, v);
    return d == floor(d) && fabs(d) < 9e15 ? json_integer((json_int_t)d) : json_real(d);
}

/* Builds the request of an admin command from its words. */
static void parse_command(int argc, char **argv, struct command *cmd)
{
    char a[512], b[512];
    const char *w0 = argv[0], *w1 = argc > 1 ? argv[1] : "";
    *cmd = (struct command){.method = "GET"};
    if (strcmp(w0, "status") == 0) {
        need_args(argc, 1, "status takes no argument");
        cmd->kind = CMD_STATUS;
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/status");
    } else if (strcmp(w0, "lb") == 0 && strcmp(w1, "list") == 0) {
        need_args(argc, 2, "usage: lb list");
        cmd->kind = CMD_LB_LIST;
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/load_balancers");
    } else if (strcmp(w0, "lb") == 0 && strcmp(w1, "show") == 0) {
        need_args(argc, 3, "usage: lb show NAME");
        cmd->kind = CMD_LB_SHOW;
        encode_component(argv[2], a, sizeof(a));
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/load_balancers/%s", a);
    } else if (strcmp(w0, "lb") == 0 && strcmp(w1, "set") == 0) {
        if (argc < 4)
            die_usage("usage: lb set NAME --session-affinity MODE --ttl S ... (at least one)");
        cmd->kind = CMD_LB_SET;
        cmd->method = "PATCH";
        encode_component(argv[2], a, sizeof(a));
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/load_balancers/%s", a);
        json_t *body = json_object(), *attrs = json_object();
        for (int i = 3; i < argc; i++) {
            const char *opt = argv[i];
            if (strcmp(opt, "--session-affinity") == 0)
                json_object_set_new(body, "session_affinity",
                                    json_string(option_value(argc, argv, &i)));
            else if (strcmp(opt, "--ttl") == 0)
                json_object_set_new(body, "session_affinity_ttl",
                                    number_arg(opt, option_value(argc, argv, &i)));
            else if (strcmp(opt, "--samesite") == 0)
                json_object_set_new(attrs, "samesite", json_string(option_value(argc, argv, &i)));
            else if (strcmp(opt, "--secure") == 0)
                json_object_set_new(attrs, "secure", json_string(option_value(argc, argv, &i)));
            else if (strcmp(opt, "--failover") == 0)
                json_object_set_new(attrs, "zero_downtime_failover",
                                    json_string(option_value(argc, argv, &i)));
            else if (strcmp(opt, "--drain-duration") == 0)
                json_object_set_new(attrs, "drain_duration",
                                    number_arg(opt, option_value(argc, argv, &i)));
            else
                die_usage("lb set: unknown option %s", opt);
        }
        if (json_object_size(attrs))
            json_object_set_new(body, "session_affinity_attributes", attrs);
        else
            json_decref(attrs);
        cmd->body = body;
    } else if (strcmp(w0, "pool") == 0 && strcmp(w1, "list") == 0) {
        need_args(argc, 2, "usage: pool list");
        cmd->kind = CMD_POOL_LIST;
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/pools");
    } else if (strcmp(w0, "pool") == 0 && strcmp(w1, "show") == 0) {
        need_args(argc, 3, "usage: pool show NAME");
        cmd->kind = CMD_POOL_SHOW;
        encode_component(argv[2], a, sizeof(a));
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/pools/%s", a);
    } else if (strcmp(w0, "origin") == 0 && (strcmp(w1, "drain") == 0 ||
               strcmp(w1, "enable") == 0 || strcmp(w1, "disable") == 0)) {
        need_args(argc, 4, "usage: origin drain|enable|disable POOL ORIGIN");
        cmd->kind = CMD_ORIGIN_STATE;
        cmd->method = "PATCH";
        cmd->pool = argv[2];
        cmd->name = argv[3];
        encode_component(argv[2], a, sizeof(a));
        encode_component(argv[3], b, sizeof(b));
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/pools/%s/origins/%s", a, b);
        cmd->body = json_pack("{s:s}", "state", strcmp(w1, "drain") == 0 ? "draining"
                                               : strcmp(w1, "enable") == 0 ? "enabled"
                                               : "disabled");
    } else if (strcmp(w0, "origin") == 0 && strcmp(w1, "weight") == 0) {
        need_args(argc, 5, "usage: origin weight POOL ORIGIN N");
        cmd->kind = CMD_ORIGIN_WEIGHT;
        cmd->method = "PATCH";
        cmd->pool = argv[2];
        cmd->name = argv[3];
        encode_component(argv[2], a, sizeof(a));
        encode_component(argv[3], b, sizeof(b));
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/pools/%s/origins/%s", a, b);
        cmd->body = json_pack("{s:o}", "weight", number_arg("weight", argv[4]));
    } else if (strcmp(w0, "origin") == 0 && strcmp(w1, "add") == 0) {
        if (argc < 5)
            die_usage("usage: origin add POOL NAME ADDRESS [--weight N] [--route R] [--state S]");
        cmd->kind = CMD_ORIGIN_ADD;
        cmd->method = "POST";
        cmd->pool = argv[2];
        cmd->name = argv[3];
        encode_component(argv[2], a, sizeof(a));
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/pools/%s/origins", a);
        json_t *body = json_pack("{s:s, s:s}", "name", argv[3], "address", argv[4]);
        for (int i = 5; i < argc; i++) {
            const char *opt = argv[i];
            if (strcmp(opt, "--weight") == 0)
                json_object_set_new(body, "weight", number_arg(opt, option_value(argc, argv, &i)));
            else if (strcmp(opt, "--route") == 0)
                json_object_set_new(body, "route", json_string(option_value(argc, argv, &i)));
            else if (strcmp(opt, "--state") == 0)
                json_object_set_new(body, "state", json_string(option_value(argc, argv, &i)));
            else
                die_usage("origin add: unknown option %s", opt);
        }
        cmd->body = body;
    } else if (strcmp(w0, "origin") == 0 && strcmp(w1, "remove") == 0) {
        need_args(argc, 4, "usage: origin remove POOL NAME");
        cmd->kind = CMD_ORIGIN_REMOVE;
        cmd->method = "DELETE";
        cmd->pool = argv[2];
        cmd->name = argv[3];
        encode_component(argv[2], a, sizeof(a));
        encode_component(argv[3], b, sizeof(b));
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/pools/%s/origins/%s", a, b);
    } else if (strcmp(w0, "reload") == 0) {
        need_args(argc, 1, "reload takes no argument");
        cmd->kind = CMD_RELOAD;
        cmd->method = "POST";
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/reload");
    } else if (strcmp(w0, "state") == 0 && (argc == 1 || strcmp(w1, "show") == 0)) {
        need_args(argc, argc == 1 ? 1 : 2, "usage: state [show] | state clear");
        cmd->kind = CMD_STATE;
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/state");
    } else if (strcmp(w0, "state") == 0 && strcmp(w1, "clear") == 0) {
        need_args(argc, 2, "usage: state clear");
        cmd->kind = CMD_STATE_CLEAR;
        cmd->method = "DELETE";
        snprintf(cmd->path, sizeof(cmd->path), "/api/v1/state");
    } else if (strcmp(w0, "cookie") == 0 && strcmp(w1, "decode") == 0) {
        if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--load-balancer") == 0))
            die_usage("usage: cookie decode VALUE [--load-balancer NAME]");
        cmd->kind = CMD_COOKIE_DECODE;
        char value[2048];
        encode_component(argv[2], value, sizeof(value));
        int n = snprintf(cmd->path, sizeof(cmd->path), "/api/v1/affinity/decode?cookie=%s",
                         value);
        if (argc == 5) {
            encode_component(argv[4], a, sizeof(a));
            snprintf(cmd->path + n, sizeof(cmd->path) - (size_t)n, "&load_balancer=%s", a);
        }
    } else {
        die_usage("unknown command: %s%s%s", w0, argc > 1 ? " " : "", w1);
    }
}

static int run_admin_command(const struct options *o, int argc, char **argv)
{
    struct command cmd;
    parse_command(argc, argv, &cmd);
    int status = 0;
    json_t *all = o->json && o->num_admins > 1 ? json_array() : NULL;
    for (size_t i = 0; i < o->num_admins; i++) {
        struct api_result res;
        char prefix[600] = "";
        if (o->num_admins > 1)
            snprintf(prefix, sizeof(prefix), "%s: ", o->admins[i]);
        api_call(o, o->admins[i], cmd.method, cmd.path, cmd.body, &res);
        bool ok = res.status >= 200 && res.status < 300 && res.body;
        if (!ok)
            status = EXIT_API;
        if (all) {
            json_array_append_new(all, json_pack("{s:s, s:i, s:O*, s:s*}", "admin", o->admins[i],
                                                 "status", res.status, "response", res.body,
                                                 "error", ok ? NULL : res.error));
        } else if (o->json && res.body) {
            char *text = json_dumps(res.body, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            if (text)
                printf("%s\n", text);
            free(text);
        } else if (ok) {
            print_result(&cmd, prefix, res.body);
            if (cmd.kind == CMD_ORIGIN_STATE && strcmp(argv[1], "drain") == 0)
                note_drain_duration(o, o->admins[i], prefix, &cmd);
        }
        if (!ok)
            fprintf(stderr, "limpetctl: %s%s\n", prefix, res.error);
        json_decref(res.body);
    }
    if (all) {
        char *text = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(all);
    }
    json_decref(cmd.body);
    return status;
}

/* ------------------------------------------------------------------------ */
/* probe                                                                    */

struct cookie {
    char *name, *value, *path;
    time_t expires;                 /* 0: session cookie */
    bool httponly, secure;
};

struct jar {
    pthread_mutex_t lock;
    struct cookie *cookies;
    size_t count;
};

static void cookie_free(struct cookie *c)
{
    free(c->name);
    free(c->value);
    free(c->path);
}

/* Removes cookie i. */
static void jar_remove(struct jar *j, size_t i)
{
    cookie_free(&j->cookies[i]);
    j->cookies[i] = j->cookies[--j->count];
}

/* Adds or replaces (same name and path); an expired one deletes. Takes ownership. */
static void jar_put(struct jar *j, struct cookie c)
{
    for (size_t i = 0; i < j->count; i++) {
        if (strcmp(j->cookies[i].name, c.name) == 0 && strcmp(j->cookies[i].path, c.path) == 0) {
            jar_remove(j, i);
            break;
        }
    }
    if (c.expires && c.expires <= time(NULL)) {
        cookie_free(&c);
        return;
    }
    struct cookie *grown = realloc(j->cookies, (j->count + 1) * sizeof(*grown));
    if (!grown) {
        cookie_free(&c);
        return;
    }
    j->cookies = grown;
    j->cookies[j->count++] = c;
}

static char *trimmed(const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return strndup(s, n);
}

/* Applies one Set-Cookie value (RFC 6265 §5.2, host-only cookies). */
static void jar_set_cookie(struct jar *j, const char *header, const char *request_path)
{
    size_t pair_len = strcspn(header, ";");
    const char *eq = memchr(header, '=', pair_len);
    if (!eq)
        return;
    struct cookie c = {.name = trimmed(header, (size_t)(eq - header)),
                       .value = trimmed(eq + 1, pair_len - (size_t)(eq - header) - 1)};
    bool has_max_age = false;
    for (const char *p = header + pair_len; *p == ';';) {
        p++;
        size_t n = strcspn(p, ";");
        char *attr = trimmed(p, n);
        p += n;
        if (!attr)
            continue;
        char *val = strchr(attr, '=');
        if (val)
            *val++ = '\0';
        if (strcasecmp(attr, "Max-Age") == 0 && val) {
            long secs = strtol(val, NULL, 10);
            c.expires = secs <= 0 ? 1 : time(NULL) + secs;
            has_max_age = true;
        } else if (strcasecmp(attr, "Expires") == 0 && val && !has_max_age) {
            struct tm tm = {0};
            if (strptime(val, "%a, %d %b %Y %H:%M:%S GMT", &tm))
                c.expires = timegm(&tm);
            if (c.expires == 0)
                c.expires = 1;
        } else if (strcasecmp(attr, "Path") == 0 && val && val[0] == '/') {
            free(c.path);
            c.path = strdup(val);
        } else if (strcasecmp(attr, "HttpOnly") == 0) {
            c.httponly = true;
        } else if (strcasecmp(attr, "Secure") == 0) {
            c.secure = true;
        }
        free(attr);
    }
    if (!c.path) {
        /* Default path: the request path up to its last '/'. */
        const char *last = strrchr(request_path, '/');
        size_t n = last && last != request_path ? (size_t)(last - request_path) : 1;
        c.path = strndup(request_path, n);
    }
    if (!c.name || !c.value || !c.path || !*c.name) {
        cookie_free(&c);
        return;
    }
    jar_put(j, c);
}

static bool path_matches(const char *cookie_path, const char *path)
{
    size_t n = strlen(cookie_path);
    return strncmp(cookie_path, path, n) == 0 &&
           (cookie_path[n - 1] == '/' || path[n] == '\0' || path[n] == '/' || path[n] == '?');
}

/* "a=1; b=2" for a request to path (malloc'd; "" when none). */
static char *jar_header(struct jar *j, const char *path)
{
    size_t cap = 1;
    time_t now = time(NULL);
    for (size_t i = 0; i < j->count; i++)
        cap += strlen(j->cookies[i].name) + strlen(j->cookies[i].value) + 3;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < j->count; i++) {
        const struct cookie *c = &j->cookies[i];
        if ((c->expires && c->expires <= now) || !path_matches(c->path, path))
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s%s=%s", n ? "; " : "", c->name, c->value);
    }
    return out;
}

/* Netscape cookie file lines for host (curl -b/-c). Missing file: empty jar. */
static int jar_load(struct jar *j, const char *file, const char *host)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    char line[8192];
    while (fgets(line, sizeof(line), f)) {
        bool httponly = strncmp(line, "#HttpOnly_", 10) == 0;
        char *p = httponly ? line + 10 : line;
        if (*p == '#' || *p == '\n')
            continue;
        p[strcspn(p, "\r\n")] = '\0';
        char *field[7];
        int n = 0;
        for (char *save = NULL, *t = strtok_r(p, "\t", &save); t && n < 7;
             t = strtok_r(NULL, "\t", &save))
            field[n++] = t;
        if (n < 6)
            continue;
        const char *domain = field[0][0] == '.' ? field[0] + 1 : field[0];
        if (strcasecmp(domain, host) != 0)
            continue;
        struct cookie c = {.name = strdup(field[5]), .value = strdup(n == 7 ? field[6] : ""),
                           .path = strdup(field[2]), .expires = (time_t)strtoll(field[4], NULL, 10),
                           .httponly = httponly, .secure = strcmp(field[3], "TRUE") == 0};
        if (!c.name || !c.value || !c.path) {
            cookie_free(&c);
            continue;
        }
        jar_put(j, c);
    }
    fclose(f);
    return 0;
}

static int jar_save(const struct jar *j, const char *file, const char *host)
{
    FILE *f = fopen(file, "w");
    if (!f)
        return -1;
    fprintf(f, "# Netscape HTTP Cookie File\n# written by limpetctl probe\n\n");
    for (size_t i = 0; i < j->count; i++) {
        const struct cookie *c = &j->cookies[i];
        fprintf(f, "%s%s\tFALSE\t%s\t%s\t%lld\t%s\t%s\n", c->httponly ? "#HttpOnly_" : "",
                host, c->path, c->secure ? "TRUE" : "FALSE", (long long)c->expires, c->name,
                c->value);
    }
    return fclose(f) == 0 ? 0 : -1;
}

struct probe_result {
    int status;                     /* 0: failed */
    char origin[128];               /* --origin-header value, "-" when absent */
    double ms;                      /* request sent → response complete */
    bool set_cookie;                /* the answer set a cookie */
    char error[160];
};

struct probe {
    struct url url;
    const char *origin_header;
    const char *headers[MAX_HEADERS];   /* -H values, "Name: value" */
    size_t num_headers;
    bool host_given;                    /* a -H set Host */
    long requests, concurrency;
    struct jar jar;
    struct probe_result *results;
    pthread_mutex_t next_lock;
    long next;                          /* next request index to send */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sends request i over c (reconnecting when needed), fills its result. */
static void probe_one(struct probe *p, struct conn *c, long i)
{
    struct probe_result *r = &p->results[i];
    char *cookies, *req = NULL;
    pthread_mutex_lock(&p->jar.lock);
    cookies = jar_header(&p->jar, p->url.path);
    pthread_mutex_unlock(&p->jar.lock);
    if (!cookies) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        return;
    }
    /* -H headers, a -H Cookie merged with the jar's cookies. */
    size_t extra_len = strlen(cookies) + 16;
    for (size_t h = 0; h < p->num_headers; h++)
        extra_len += strlen(p->headers[h]) + 4;
    char *extra = calloc(1, extra_len);
    const char *given_cookie = NULL;
    for (size_t h = 0; extra && h < p->num_headers; h++) {
        if (strncasecmp(p->headers[h], "Cookie:", 7) == 0) {
            given_cookie = p->headers[h] + 7 + strspn(p->headers[h] + 7, " \t");
            continue;
        }
        strcat(extra, p->headers[h]);
        strcat(extra, "\r\n");
    }
    if (extra && (*cookies || given_cookie)) {
        strcat(extra, "Cookie: ");
        strcat(extra, cookies);
        if (given_cookie) {
            strcat(extra, *cookies ? "; " : "");
            strcat(extra, given_cookie);
        }
        strcat(extra, "\r\n");
    }
    int n = extra ? asprintf(&req, "GET %s HTTP/1.1\r\n%s%s%sUser-Agent: limpetctl-probe/%s\r\n"
                             "%s\r\n",
                             p->url.path, p->host_given ? "" : "Host: ",
                             p->host_given ? "" : p->url.hostport, p->host_given ? "" : "\r\n",
                             LIMPET_VERSION, extra) : -1;
    free(extra);
    free(cookies);
    if (n < 0) {
        req = NULL;
        snprintf(r->error, sizeof(r->error), "out of memory");
        return;
    }
    struct response resp;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = c->fd >= 0;
        if (c->fd < 0 && conn_open(c, &p->url, r->error, sizeof(r->error)) < 0)
            break;
        double start = now_ms();
        if (send_all(c->fd, req, (size_t)n) < 0 ||
            read_response(c, "GET", &resp, r->error, sizeof(r->error)) < 0) {
            conn_close(c);
            if (reused)
                continue;   /* the server closed an idle keep-alive connection */
            break;
        }
        r->ms = now_ms() - start;
        r->status = resp.status;
        r->error[0] = '\0';
        const char *origin = response_header(&resp, p->origin_header);
        snprintf(r->origin, sizeof(r->origin), "%s", origin ? origin : "-");
        pthread_mutex_lock(&p->jar.lock);
        for (size_t h = 0; h < resp.num_headers; h++)
            if (strcasecmp(resp.headers[h].name, "Set-Cookie") == 0) {
                jar_set_cookie(&p->jar, resp.headers[h].value, p->url.path);
                r->set_cookie = true;
            }
        pthread_mutex_unlock(&p->jar.lock);
        if (!resp.keep_alive)
            conn_close(c);
        response_free(&resp);
        break;
    }
    free(req);
}

static void *probe_thread(void *arg)
{
    struct probe *p = arg;
    struct conn c = {.fd = -1};
    for (;;) {
        pthread_mutex_lock(&p->next_lock);
        long i = p->next < p->requests ? p->next++ : -1;
        pthread_mutex_unlock(&p->next_lock);
        if (i < 0)
            break;
        probe_one(p, &c, i);
    }
    conn_close(&c);
    free(c.buf);
    return NULL;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile(const double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil(q * (double)n);
    return v[rank ? rank - 1 : 0];
}

static long count_arg(const char *opt, const char *v, long max)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > max)
        die_usage("%s: want a number 1..%ld, not %s", opt, max, v);
    return n;
}

static int run_probe(const struct options *o, int argc, char **argv)
{
    struct probe p = {.origin_header = "X-Served-By", .requests = 10, .concurrency = 1};
    const char *url = NULL, *jar_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-n") == 0)
            p.requests = count_arg(a, option_value(argc, argv, &i), PROBE_MAX_REQUESTS);
        else if (strcmp(a, "-c") == 0)
            p.concurrency = count_arg(a, option_value(argc, argv, &i), PROBE_MAX_CONCURRENCY);
        else if (strcmp(a, "-H") == 0) {
            const char *h = option_value(argc, argv, &i);
            const char *colon = strchr(h, ':');
            if (!colon || colon == h || strpbrk(h, "\r\n"))
                die_usage("-H wants 'Name: value', not %s", h);
            if (p.num_headers == MAX_HEADERS)
                die_usage("at most %d -H options", MAX_HEADERS);
            p.headers[p.num_headers++] = h;
            p.host_given |= strncasecmp(h, "Host:", 5) == 0;
        } else if (strcmp(a, "--cookie-jar") == 0)
            jar_file = option_value(argc, argv, &i);
        else if (strcmp(a, "--origin-header") == 0)
            p.origin_header = option_value(argc, argv, &i);
        else if (a[0] == '-')
            die_usage("probe: unknown option %s", a);
        else if (!url)
            url = a;
        else
            die_usage("probe: one URL only");
    }
    if (!url)
        die_usage("usage: probe URL [-n N] [-c CONCURRENCY] [-H 'Name: value'] "
                  "[--cookie-jar FILE] [--origin-header NAME]");
    if (!url_parse(url, &p.url))
        die_usage("probe: bad URL %s (want http://HOST[:PORT][/PATH]; https is not supported)",
                  url);
    pthread_mutex_init(&p.jar.lock, NULL);
    pthread_mutex_init(&p.next_lock, NULL);
    if (jar_file && jar_load(&p.jar, jar_file, p.url.host) < 0) {
        fprintf(stderr, "limpetctl: cannot read cookie jar %s: %s\n", jar_file, strerror(errno));
        return EXIT_API;
    }
    p.results = calloc((size_t)p.requests, sizeof(*p.results));
    if (!p.results) {
        fprintf(stderr, "limpetctl: out of memory\n");
        return EXIT_API;
    }

    /* The first request alone, like a page before its resources; then the rest. */
    struct conn first = {.fd = -1};
    probe_one(&p, &first, 0);
    conn_close(&first);
    free(first.buf);
    p.next = 1;
    long threads = p.concurrency < p.requests - 1 ? p.concurrency : p.requests - 1;
    pthread_t tids[PROBE_MAX_CONCURRENCY];
    long started = 0;
    for (long t = 0; t < threads; t++, started++)
        if (pthread_create(&tids[t], NULL, probe_thread, &p) != 0)
            break;
    if (started == 0 && p.requests > 1)
        probe_thread(&p);
    for (long t = 0; t < started; t++)
        pthread_join(tids[t], NULL);

    /* Report. */
    double *lat = calloc((size_t)p.requests, sizeof(double));
    size_t ok = 0, moves = 0;
    const char *last = NULL;
    json_t *origins = json_object(), *list = json_array();
    for (long i = 0; i < p.requests; i++) {
        const struct probe_result *r = &p.results[i];
        if (r->status) {
            if (lat)
                lat[ok] = r->ms;
            ok++;
            json_t *count = json_object_get(origins, r->origin);
            json_object_set_new(origins, r->origin,
                                json_integer(count ? json_integer_value(count) + 1 : 1));
            if (last && strcmp(last, r->origin) != 0)
                moves++;
            last = r->origin;
        }
        json_array_append_new(list, json_pack("{s:I, s:i, s:s?, s:f, s:b, s:s?}",
                                              "n", (json_int_t)i + 1, "status", r->status,
                                              "origin", r->status ? r->origin : NULL,
                                              "ms", r->ms, "set_cookie", r->set_cookie,
                                              "error", r->status ? NULL : r->error));
        if (!o->json) {
            if (r->status)
                printf("#%-4ld %d  %-20s %8.2f ms%s\n", i + 1, r->status, r->origin, r->ms,
                       r->set_cookie ? "  set-cookie" : "");
            else
                printf("#%-4ld ---  error: %s\n", i + 1, r->error);
        }
    }
    if (lat)
        qsort(lat, ok, sizeof(double), compare_double);
    double p50 = lat ? percentile(lat, ok, 0.50) : 0, p90 = lat ? percentile(lat, ok, 0.90) : 0,
           p99 = lat ? percentile(lat, ok, 0.99) : 0;
    bool sticky = ok > 0 && json_object_size(origins) == 1 && strcmp(last, "-") != 0;
    long failed = p.requests - (long)ok;
    if (o->json) {
        json_t *report = json_pack("{s:s, s:I, s:I, s:o, s:b, s:I, s:{s:f, s:f, s:f}, s:o}",
                                   "url", url, "requests", (json_int_t)p.requests,
                                   "failed", (json_int_t)failed, "origins", origins,
                                   "sticky", sticky, "moves", (json_int_t)moves,
                                   "latency_ms", "p50", p50, "p90", p90, "p99", p99,
                                   "results", list);
        char *text = report ? json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(report);
    } else {
        const char *key;
        json_t *v;
        printf("origins:");
        json_object_foreach(origins, key, v)
            printf(" %s=%" JSON_INTEGER_FORMAT, key, json_integer_value(v));
        printf("%s\n", ok ? "" : " none");
        if (sticky)
            printf("session stayed on one origin: yes (%s)\n", last);
        else if (ok && strcmp(last, "-") == 0 && json_object_size(origins) == 1)
            printf("session stayed on one origin: unknown (no %s header in the answers)\n",
                   p.origin_header);
        else
            printf("session stayed on one origin: no (%zu moves between %zu origins)\n", moves,
                   json_object_size(origins));
        printf("latency: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  (%ld requests, %ld failed)\n",
               p50, p90, p99, p.requests, failed);
        json_decref(origins);
        json_decref(list);
    }
    int status = failed ? EXIT_API : 0;
    if (jar_file && jar_save(&p.jar, jar_file, p.url.host) < 0) {
        fprintf(stderr, "limpetctl: cannot write cookie jar %s: %s\n", jar_file, strerror(errno));
        status = EXIT_API;
    }
    free(lat);
    for (size_t i = 0; i < p.jar.count; i++)
        cookie_free(&p.jar.cookies[i]);
    free(p.jar.cookies);
    free(p.results);
    return status;
}

/* ------------------------------------------------------------------------ */

static char *read_token(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "limpetctl: --token-file %s: %s\n", file, strerror(errno));
        exit(EXIT_USAGE);
    }
    char buf[4097];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *t = trimmed(buf, strcspn(buf, "\r\n"));
    if (!t || !*t || strpbrk(t, "\r\n")) {
        fprintf(stderr, "limpetctl: --token-file %s: empty\n", file);
        exit(EXIT_USAGE);
    }
    return t;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    if (!rest)
        return EXIT_API;
    /* Global options may stand anywhere; the other words form the command. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--admin") == 0) {
            if (o.num_admins == MAX_ADMINS)
                die_usage("at most %d --admin options", MAX_ADMINS);
            o.admins[o.num_admins++] = option_value(argc, argv, &i);
        } else if (strcmp(a, "--token-file") == 0) {
            free(o.token);
            o.token = read_token(option_value(argc, argv, &i));
        } else if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 ||
                   strcmp(a, "--version") == 0) {
            if (a[2] == 'v')
                printf("limpetctl %s\n", LIMPET_VERSION);
            else
                fputs(usage_text, stdout);
            free(o.token);
            free(rest);
            return 0;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0)
        die_usage("no command");
    if (o.num_admins == 0)
        o.admins[o.num_admins++] = "http://127.0.0.1:8081";
    int status = strcmp(rest[0], "probe") == 0 ? run_probe(&o, nrest, rest)
                                               : run_admin_command(&o, nrest, rest);
    free(o.token);
    free(rest);
    return status;
}
