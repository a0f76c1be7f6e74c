/*
 * test_demo_origin — the demo origin over real loopback sockets.
 *
 * One origin named "t1" is started on a free 127.0.0.1 port (found by
 * binding a throwaway socket to port 0) for the whole group; each test talks to it with plain
 * blocking sockets (5 s receive timeout, so a missing answer fails instead of
 * hanging) and a tiny response reader that keeps leftover bytes, so
 * pipelined answers can be read one by one. demo_origin_stop() at the end,
 * under ASan, checks that stopping frees everything, open connections too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "demo/demo_origin.h"

static struct demo_origin *origin;
static int origin_port;

struct client {
    int fd;
    size_t len;            /* bytes received but not consumed yet */
    char buf[1 << 20];
};

struct response {
    int status;
    char head[4096];       /* NUL-terminated head, without the final CRLF CRLF */
    long content_length;   /* -1 when absent */
    size_t body_len;
    char body[16384];      /* NUL-terminated */
};

/* A port the kernel just called free (addr_parse refuses port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sin.sin_port);
}

/* Starts an origin on a free loopback port (retrying if another process
 * takes the port between the probe and the bind). */
static int start_on_free_port(const char *name, struct demo_origin **out)
{
    for (int attempt = 0; attempt < 10; attempt++) {
        char addr[64];
        int port = free_port();
        if (port <= 0)
            return -1;
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
        int rc = demo_origin_start(addr, name, out);
        if (rc == 0)
            return demo_origin_port(*out) == port ? 0 : -1;
        if (rc != -EADDRINUSE)
            return -1;
    }
    return -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (start_on_free_port("t1", &origin) != 0)
        return -1;
    origin_port = demo_origin_port(origin);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    demo_origin_stop(origin);
    origin = NULL;
    return 0;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static struct client *client_new(void)
{
    struct client *cl = malloc(sizeof(*cl));
    assert_non_null(cl);
    cl->fd = connect_port(origin_port);
    cl->len = 0;
    return cl;
}

static void client_free(struct client *cl)
{
    close(cl->fd);
    free(cl);
}

static void send_all(struct client *cl, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(cl->fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void send_str(struct client *cl, const char *s)
{
    send_all(cl, s, strlen(s));
}

/* Receives more bytes; returns how many (0 at EOF, -1 on timeout/error). */
static ssize_t client_recv(struct client *cl)
{
    if (cl->len == sizeof(cl->buf))
        return -1;
    ssize_t n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
    if (n > 0)
        cl->len += (size_t)n;
    return n;
}

static void client_consume(struct client *cl, size_t n)
{
    memmove(cl->buf, cl->buf + n, cl->len - n);
    cl->len -= n;
}

/* Value of a header field in r->head (first one), or NULL. */
static const char *header_value(const struct response *r, const char *name, char *out,
                                size_t size)
{
    size_t name_len = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line) {
        line += 2;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (*v == ' ')
                v++;
            const char *end = strstr(v, "\r\n");
            size_t len = end ? (size_t)(end - v) : strlen(v);
            if (len >= size)
                len = size - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        line = strstr(line, "\r\n");
    }
    return NULL;
}

/* Reads one response (no body for HEAD). Returns 0, or -1 on EOF/timeout
 * before a complete response. */
static int read_response(struct client *cl, struct response *r, bool head_only)
{
    char *end;
    while (!(end = memmem(cl->buf, cl->len, "\r\n\r\n", 4)))
        if (client_recv(cl) <= 0)
            return -1;
    size_t head_len = (size_t)(end - cl->buf);
    assert_true(head_len < sizeof(r->head));
    memcpy(r->head, cl->buf, head_len);
    r->head[head_len] = '\0';
    client_consume(cl, head_len + 4);

    assert_int_equal(strncmp(r->head, "HTTP/1.1 ", 9), 0);
    r->status = atoi(r->head + 9);
    char v[64];
    r->content_length = header_value(r, "Content-Length", v, sizeof(v)) ? atol(v) : -1;

    r->body_len = 0;
    r->body[0] = '\0';
    if (head_only || r->status == 100)
        return 0;
    assert_true(r->content_length >= 0);
    size_t want = (size_t)r->content_length;
    assert_true(want < sizeof(r->body));
    while (cl->len < want)
        if (client_recv(cl) <= 0)
            return -1;
    memcpy(r->body, cl->buf, want);
    r->body[want] = '\0';
    r->body_len = want;
    client_consume(cl, want);
    return 0;
}

/* True when the server closes the connection with nothing more to say. */
static bool reads_eof(struct client *cl)
{
    return cl->len == 0 && client_recv(cl) == 0;
}

/* The demo_session id set by r, or "" when it sets none. */
static void set_cookie_id(const struct response *r, char id[33])
{
    char v[256];
    id[0] = '\0';
    if (!header_value(r, "Set-Cookie", v, sizeof(v)))
        return;
    assert_int_equal(strncmp(v, "demo_session=", 13), 0);
    assert_string_equal(v + 45, "; Path=/; HttpOnly; SameSite=Lax");
    memcpy(id, v + 13, 32);
    id[32] = '\0';
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
}

static void get(struct client *cl, const char *request, struct response *r)
{
    send_str(cl, request);
    assert_int_equal(read_response(cl, r, false), 0);
}

/* ---- tests ---- */

static void test_status(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response r;
    char v[128];
    get(cl, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    assert_string_equal(header_value(&r, "Content-Type", v, sizeof(v)), "application/json");
    assert_string_equal(header_value(&r, "X-Served-By", v, sizeof(v)), "t1");
    assert_null(header_value(&r, "Set-Cookie", v, sizeof(v)));
    assert_null(header_value(&r, "Connection", v, sizeof(v)));

    /* with a query string, and in absolute form */
    get(cl, "GET /status?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    get(cl, "GET http://x/status HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    client_free(cl);
}

static void test_page_and_visits(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response r;
    char v[128], id[33], id2[33], req[512];

    get(cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_value(&r, "Content-Type", v, sizeof(v)),
                        "text/html; charset=utf-8");
    assert_string_equal(header_value(&r, "X-Served-By", v, sizeof(v)), "t1");
    assert_int_equal((size_t)r.content_length, strlen(r.body));
    set_cookie_id(&r, id);
    assert_int_equal(strlen(id), 32);
    assert_non_null(strstr(r.body, "<h1>t1</h1>"));
    assert_non_null(strstr(r.body, "visit 1 of this session on t1"));
    assert_non_null(strstr(r.body, "with cookie affinity you stay on this origin"));
    assert_null(strstr(r.body, "http://")); /* self-contained */
    assert_null(strstr(r.body, "https://"));

    /* the cookie sent back: same session, count goes up, no new cookie */
    snprintf(req, sizeof(req), "GET /page HTTP/1.1\r\nHost: x\r\nCookie: demo_session=%s\r\n\r\n",
             id);
    get(cl, req, &r);
    set_cookie_id(&r, id2);
    assert_string_equal(id2, "");
    assert_non_null(strstr(r.body, "visit 2 of this session on t1"));

    /* among other cookies, on a new connection */
    struct client *cl2 = client_new();
    snprintf(req, sizeof(req),
             "GET /x?y HTTP/1.1\r\nHost: x\r\nCookie: a=1; demo_session=%s; b=\"2\"\r\n\r\n", id);
    get(cl2, req, &r);
    set_cookie_id(&r, id2);
    assert_string_equal(id2, "");
    assert_non_null(strstr(r.body, "visit 3 of this session on t1"));

    /* unknown id first, then the known one in a second Cookie field */
    snprintf(req, sizeof(req),
             "GET / HTTP/1.1\r\nHost: x\r\nCookie: demo_session=00000000000000000000000000000000"
             "\r\nCookie: z=9;demo_session=%s\r\n\r\n", id);
    get(cl2, req, &r);
    assert_non_null(strstr(r.body, "visit 4 of this session on t1"));

    /* an unknown or malformed id gets a fresh session */
    get(cl2, "GET / HTTP/1.1\r\nHost: x\r\nCookie: demo_session=ffffffffffffffffffffffffffffffff"
             "\r\n\r\n", &r);
    set_cookie_id(&r, id2);
    assert_int_equal(strlen(id2), 32);
    assert_string_not_equal(id2, id);
    assert_non_null(strstr(r.body, "visit 1 of this session on t1"));
    get(cl2, "GET / HTTP/1.1\r\nHost: x\r\nCookie: demo_session=xyz; other=1\r\n\r\n", &r);
    set_cookie_id(&r, id2);
    assert_int_equal(strlen(id2), 32);
    assert_non_null(strstr(r.body, "visit 1 of this session on t1"));

    /* a cookie merely ending in demo_session is another cookie */
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nCookie: xdemo_session=%s\r\n\r\n",
             id);
    get(cl2, req, &r);
    set_cookie_id(&r, id2);
    assert_int_equal(strlen(id2), 32);

    client_free(cl2);
    client_free(cl);
}

static void test_head(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response get_r, head_r;
    char v[128];

    get(cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &get_r);
    send_str(cl, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(cl, &head_r, true), 0);
    assert_int_equal(head_r.status, 200);
    assert_int_equal(head_r.content_length, get_r.content_length);
    assert_non_null(header_value(&head_r, "Set-Cookie", v, sizeof(v)));
    assert_string_equal(header_value(&head_r, "X-Served-By", v, sizeof(v)), "t1");

    send_str(cl, "HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(cl, &head_r, true), 0);
    assert_int_equal(head_r.content_length, 19);

    /* no body came: the next answer follows the head directly */
    get(cl, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", &get_r);
    assert_string_equal(get_r.body, "{\"state\":\"RUNNING\"}");
    assert_int_equal(cl->len, 0);
    client_free(cl);
}

static void test_pipelined(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response r;
    char v[128];

    send_str(cl, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(header_value(&r, "X-Served-By", v, sizeof(v)), "t1");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "visit 1 of this session on t1"));
    client_free(cl);
}

/* Thousands of pipelined requests, written faster than the answers are read
 * through a small receive window: the origin's socket fills up, so it must
 * keep unsent output, wait for EPOLLOUT, stop reading meanwhile and go on,
 * answering everything in order (the visit count of one session rises by one
 * per page, so any reordering shows). */
static void test_pipelined_backpressure(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct response r;
    char id[33], req[256];

    struct client *cl = malloc(sizeof(*cl));
    assert_non_null(cl);
    cl->len = 0;
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(cl->fd >= 0);
    int small = 4096;
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)origin_port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);

    get(cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    set_cookie_id(&r, id);
    int page_len = snprintf(req, sizeof(req),
                            "GET / HTTP/1.1\r\nHost: x\r\nCookie: demo_session=%s\r\n\r\n", id);
    static const char status_req[] = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = 0;
    char *burst = malloc((size_t)N * (size_t)page_len);
    assert_non_null(burst);
    for (int i = 0; i < N; i++) {
        const char *s = i % 2 ? status_req : req;
        size_t n = i % 2 ? sizeof(status_req) - 1 : (size_t)page_len;
        memcpy(burst + len, s, n);
        len += n;
    }

    /* Write without blocking; read one answer whenever the write would block. */
    size_t sent = 0;
    int got = 0;
    unsigned visits = 1;
    bool paused = false;
    while (got < N) {
        if (sent < len) {
            ssize_t n = send(cl->fd, burst + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                sent += (size_t)n;
                continue;
            }
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        }
        if (!paused) {
            usleep(100 * 1000); /* let the origin fill its socket */
            paused = true;
        }
        assert_int_equal(read_response(cl, &r, false), 0);
        assert_int_equal(r.status, 200);
        if (got % 2) {
            assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
        } else {
            char want[64];
            snprintf(want, sizeof(want), "visit %u of this session on t1", ++visits);
            assert_non_null(strstr(r.body, want));
        }
        got++;
    }
    free(burst);
    client_free(cl);
}

static void test_keep_alive_and_close(void **state)
{
    (void)state;
    struct response r;
    char v[128];

    /* HTTP/1.1: persistent by default */
    struct client *cl = client_new();
    get(cl, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    get(cl, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    /* Connection: close is honoured and said */
    get(cl, "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
    assert_string_equal(header_value(&r, "Connection", v, sizeof(v)), "close");
    assert_true(reads_eof(cl));
    client_free(cl);

    /* HTTP/1.0: closes unless asked to keep alive */
    cl = client_new();
    get(cl, "GET / HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_value(&r, "Connection", v, sizeof(v)), "close");
    assert_true(reads_eof(cl));
    client_free(cl);

    cl = client_new();
    get(cl, "GET /status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r);
    assert_string_equal(header_value(&r, "Connection", v, sizeof(v)), "keep-alive");
    get(cl, "GET /status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    client_free(cl);
}

/* A client that sends its requests and shuts down its side (printf | nc)
 * still gets every answer, then the close. */
static void test_half_close(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response r;
    send_str(cl, "GET /status HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(shutdown(cl->fd, SHUT_WR), 0);
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_non_null(strstr(r.body, "visit 1 of this session on t1"));
    assert_true(reads_eof(cl));
    client_free(cl);
}

static void test_malformed(void **state)
{
    (void)state;
    struct response r;
    char v[128];

    struct client *cl = client_new();
    get(cl, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(header_value(&r, "Connection", v, sizeof(v)), "close");
    assert_string_equal(header_value(&r, "X-Served-By", v, sizeof(v)), "t1");
    assert_true(reads_eof(cl));
    client_free(cl);

    /* garbage after a good request: the good one is answered first */
    cl = client_new();
    send_str(cl, "GET /status HTTP/1.1\r\nHost: x\r\n\r\nHELLO\r\n\r\n");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 400);
    assert_true(reads_eof(cl));
    client_free(cl);

    /* HTTP/1.1 without Host */
    cl = client_new();
    get(cl, "GET / HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    assert_true(reads_eof(cl));
    client_free(cl);
}

static void test_head_too_large(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response r;
    char line[1100];
    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Big: ", 7);
    memcpy(line + sizeof(line) - 2, "\r\n", 2);

    send_str(cl, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 20; i++) /* 22000 bytes > 16 KiB */
        send_all(cl, line, sizeof(line));
    send_str(cl, "\r\n");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 431);
    client_free(cl);
}

static void test_request_bodies(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response r;

    /* Content-Length and chunked bodies, pipelined with a GET in one write */
    send_str(cl, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
                 "PUT /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
                 "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "visit 1 of this session on t1"));
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");

    /* a body arriving in pieces, larger than the input buffer */
    send_str(cl, "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n");
    char chunk[10000];
    memset(chunk, 'b', sizeof(chunk));
    for (int i = 0; i < 4; i++) {
        send_all(cl, chunk, sizeof(chunk));
        usleep(5000);
    }
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");

    /* a broken chunked body is a 400 */
    send_str(cl, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 400);
    assert_true(reads_eof(cl));
    client_free(cl);
}

static void test_expect_continue(void **state)
{
    (void)state;
    struct client *cl = client_new();
    struct response r;
    send_str(cl, "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                 "Expect: 100-continue\r\n\r\n");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 100);
    send_str(cl, "data");
    assert_int_equal(read_response(cl, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"state\":\"RUNNING\"}");
    client_free(cl);
}

static void test_start_errors(void **state)
{
    (void)state;
    struct demo_origin *o = NULL;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", origin_port);
    assert_int_equal(demo_origin_start(addr, "t2", &o), -EADDRINUSE);
    assert_int_equal(demo_origin_start("localhost:80", "t2", &o), -EINVAL);
    assert_int_equal(demo_origin_start("127.0.0.1:0", "t2", &o), -EINVAL);
    assert_int_equal(demo_origin_start("127.0.0.1:9", "", &o), -EINVAL);
    assert_int_equal(demo_origin_start("127.0.0.1:9", "a b", &o), -EINVAL);
    assert_null(o);
    assert_int_equal(demo_origin_run(addr, "t2"), 1);
}

/* Stopping an origin with open connections (idle, mid-head, mid-body,
 * unread answers) frees them all (ASan reports leaks otherwise). */
static void test_stop_with_connections(void **state)
{
    (void)state;
    struct demo_origin *o = NULL;
    assert_int_equal(start_on_free_port("stopme", &o), 0);
    int port = demo_origin_port(o);
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = connect_port(port);
    const char *msgs[] = {"", "GET / HTTP/1.1\r\nHo",
                          "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
                          "GET / HTTP/1.1\r\nHost: x\r\n\r\n"};
    for (int i = 1; i < 4; i++)
        assert_true(send(fds[i], msgs[i], strlen(msgs[i]), 0) > 0);
    char buf[64];
    assert_true(recv(fds[3], buf, sizeof(buf), 0) > 0); /* the origin has seen them */
    demo_origin_stop(o);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    demo_origin_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_page_and_visits),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_pipelined_backpressure),
        cmocka_unit_test(test_keep_alive_and_close),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_request_bodies),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_stop_with_connections),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
