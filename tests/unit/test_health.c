/* Unit tests for health: the rise/fall state machine, expected_codes matching,
 * the spread of checks over an interval, and probes against an in-process
 * origin served from the same loop (status and body checks, chunked bodies,
 * interim responses, refused connections, timeouts, tcp monitors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "core/addr.h"
#include "core/loop.h"
#include "health/health.h"
#include "health/probe.h"

/* ---- rise / fall ---- */

static void test_down_after_retries_up_after_rise(void **state)
{
    (void)state;
    struct health_counts c = {.up = true};
    assert_int_equal(health_count(&c, false, 3, 2), HEALTH_SAME);
    assert_int_equal(health_count(&c, false, 3, 2), HEALTH_SAME);
    assert_true(c.up);
    assert_int_equal(health_count(&c, false, 3, 2), HEALTH_WENT_DOWN);
    assert_false(c.up);
    assert_int_equal(health_count(&c, false, 3, 2), HEALTH_SAME); /* already down */
    assert_int_equal(health_count(&c, true, 3, 2), HEALTH_SAME);
    assert_int_equal(health_count(&c, true, 3, 2), HEALTH_WENT_UP);
    assert_true(c.up);
    assert_int_equal(health_count(&c, true, 3, 2), HEALTH_SAME);
}

static void test_failures_must_be_consecutive(void **state)
{
    (void)state;
    struct health_counts c = {.up = true};
    health_count(&c, false, 2, 2);
    health_count(&c, true, 2, 2);   /* a pass in between starts over */
    assert_int_equal(health_count(&c, false, 2, 2), HEALTH_SAME);
    assert_int_equal(health_count(&c, false, 2, 2), HEALTH_WENT_DOWN);
    health_count(&c, true, 2, 2);
    health_count(&c, false, 2, 2);  /* a failure in between starts over */
    assert_int_equal(health_count(&c, true, 2, 2), HEALTH_SAME);
    assert_int_equal(health_count(&c, true, 2, 2), HEALTH_WENT_UP);
}

static void test_alternating_never_flips(void **state)
{
    (void)state;
    struct health_counts up = {.up = true}, down = {.up = false};
    for (int i = 0; i < 200; i++) {
        assert_int_equal(health_count(&up, i % 2 == 0, 2, 2), HEALTH_SAME);
        assert_int_equal(health_count(&down, i % 2 == 1, 2, 2), HEALTH_SAME);
    }
    assert_true(up.up);
    assert_false(down.up);
}

static void test_retries_and_rise_of_one(void **state)
{
    (void)state;
    struct health_counts c = {.up = true};
    assert_int_equal(health_count(&c, false, 1, 1), HEALTH_WENT_DOWN);
    assert_int_equal(health_count(&c, true, 1, 1), HEALTH_WENT_UP);
}

/* ---- expected_codes ---- */

static void test_codes(void **state)
{
    (void)state;
    assert_true(health_codes_match("200", 200));
    assert_false(health_codes_match("200", 201));
    assert_false(health_codes_match("200", 500));
    assert_true(health_codes_match("2xx", 204));
    assert_true(health_codes_match("2xx", 299));
    assert_false(health_codes_match("2xx", 302));
    assert_true(health_codes_match("200,302", 302));
    assert_false(health_codes_match("200,302", 301));
    assert_true(health_codes_match("200, 302,3xx", 304));
    assert_true(health_codes_match(" 5xx", 503));
    assert_false(health_codes_match("200, 302,3xx", 404));
    assert_false(health_codes_match("2xx", 0));
    assert_false(health_codes_match("2xx", 2000));
}

/* ---- schedule ---- */

static void test_phase_in_range_and_stable(void **state)
{
    (void)state;
    for (uint64_t interval = 1; interval < 5000; interval = interval * 3 + 1) {
        uint64_t ph = health_phase_ms("app", "s1", interval);
        assert_true(ph < interval);
        assert_int_equal(ph, health_phase_ms("app", "s1", interval));
    }
    assert_int_not_equal(health_phase_ms("app", "s1", 1000000),
                         health_phase_ms("app", "s2", 1000000));
    assert_int_not_equal(health_phase_ms("app", "s1", 1000000),
                         health_phase_ms("app-dr", "s1", 1000000));
}

/* 1,000 origins over a 10 s interval: every second gets its share, ±40 %. */
static void test_phases_spread_evenly(void **state)
{
    (void)state;
    unsigned buckets[10] = {0};
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        buckets[health_phase_ms(i % 2 ? "app" : "app-eu", name, 10000) / 1000]++;
    }
    for (int b = 0; b < 10; b++) {
        assert_true(buckets[b] >= 60);
        assert_true(buckets[b] <= 140);
    }
}

static void test_next_due(void **state)
{
    (void)state;
    assert_int_equal(health_next_due(10500, 1000, 600), 10600);
    assert_int_equal(health_next_due(10500, 1000, 200), 11200);
    assert_int_equal(health_next_due(10500, 1000, 500), 11500); /* strictly later */
    assert_int_equal(health_next_due(10000, 1000, 0), 11000);
    for (uint64_t now = 0; now < 3000; now += 7) {
        uint64_t t = health_next_due(now, 300, 123);
        assert_true(t > now && t <= now + 300);
        assert_int_equal(t % 300, 123);
    }
}

/* ---- probes against an in-process origin ---- */

struct fake_origin {
    struct loop *loop;
    struct io_watch listen, conn;
    const char *answer;       /* sent once the request head is in; NULL: stay silent */
    char request[4096];
    size_t request_len;
};

struct probe_result {
    bool done, pass;
    char reason[PROBE_REASON_MAX];
};

static struct probe_result result;

static void conn_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    struct fake_origin *o = (struct fake_origin *)((char *)w - offsetof(struct fake_origin, conn));
    ssize_t n = read(w->fd, o->request + o->request_len,
                     sizeof(o->request) - 1 - o->request_len);
    if (n <= 0) {
        loop_unwatch(loop, w);
        return;
    }
    o->request_len += (size_t)n;
    o->request[o->request_len] = '\0';
    if (!strstr(o->request, "\r\n\r\n") || !o->answer)
        return;
    assert_int_equal(write(w->fd, o->answer, strlen(o->answer)), (ssize_t)strlen(o->answer));
    shutdown(w->fd, SHUT_WR);
}

static void accept_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    struct fake_origin *o = (struct fake_origin *)((char *)w - offsetof(struct fake_origin, listen));
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(loop_watch(loop, &o->conn, fd, EPOLLIN, conn_cb), 0);
}

/* A listening socket on 127.0.0.1 (or a closed port when listening is
 * false); fills a. Returns the fd (-1 when closed). */
static int open_port(struct addr *a, bool listening)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    memcpy(&a->ss, &sin, sizeof(sin));
    a->len = sizeof(sin);
    if (listening) {
        assert_int_equal(listen(fd, 8), 0);
        return fd;
    }
    close(fd);
    return -1;
}

static void probe_result_cb(struct probe *p, bool pass, const char *reason)
{
    result.done = true;
    result.pass = pass;
    snprintf(result.reason, sizeof(result.reason), "%s", reason);
    p->loop->stop = true;
}

static struct cfg_monitor monitor(enum monitor_type type, const char *codes, const char *body)
{
    static struct cfg_header_kv headers[] = {{"Host", "app.internal"}, {"X-Check", "1"},
                                            {"Connection", "keep-alive"}};
    return (struct cfg_monitor){
        .name = "m", .type = type, .method = "GET", .path = "/status",
        .expected_codes = (char *)codes, .expected_body = (char *)body,
        .interval = 1, .timeout = 0.3, .retries = 2, .rise = 2,
        .headers = headers, .num_headers = 3,
    };
}

/* Runs one probe of mon against an origin answering `answer` (listening
 * false: nothing listens). Fills result; returns the origin's request. */
static const char *run_probe(const struct cfg_monitor *mon, const char *answer, bool listening)
{
    static struct fake_origin o;
    struct loop loop;
    assert_int_equal(loop_init(&loop, NULL), 0);
    memset(&o, 0, sizeof(o));
    o.answer = answer;
    memset(&result, 0, sizeof(result));
    struct addr a;
    int lfd = open_port(&a, listening);
    if (lfd >= 0)
        assert_int_equal(loop_watch(&loop, &o.listen, lfd, EPOLLIN, accept_cb), 0);
    struct probe p;
    probe_init(&p, &loop, probe_result_cb);
    if (probe_start(&p, mon, &a, "127.0.0.1:1", NULL) < 0) {
        result.done = true;
        snprintf(result.reason, sizeof(result.reason), "%s", p.reason);
    } else {
        loop_run(&loop);
    }
    assert_true(result.done);
    assert_false(probe_running(&p));
    if (o.conn.events)
        loop_unwatch(&loop, &o.conn);
    if (o.conn.fd > 0)
        close(o.conn.fd);
    if (lfd >= 0)
        close(lfd);
    loop_fini(&loop);
    return o.request;
}

static void test_probe_request_and_body(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", "RUNNING");
    const char *req = run_probe(&mon, "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n"
                                      "{\"state\":\"RUNNING\"}", true);
    assert_true(result.pass);
    assert_string_equal(result.reason, "");
    assert_string_equal(req, "GET /status HTTP/1.1\r\nHost: app.internal\r\nX-Check: 1\r\n"
                             "Connection: close\r\n\r\n");
}

static void test_probe_host_defaults_to_address(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "2xx", NULL);
    mon.num_headers = 0;
    const char *req = run_probe(&mon, "HTTP/1.1 204 No Content\r\n\r\n", true);
    assert_true(result.pass);
    assert_string_equal(req, "GET /status HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
                             "Connection: close\r\n\r\n");
}

static void test_probe_body_missing(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", "RUNNING");
    run_probe(&mon, "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n{\"state\":\"FAILED\"}", true);
    assert_false(result.pass);
    assert_string_equal(result.reason, "expected body \"RUNNING\" not found");
}

static void test_probe_chunked_body_is_decoded(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", "RUNNING");
    run_probe(&mon, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nRUN\r\n4\r\nNING\r\n0\r\n\r\n", true);
    assert_true(result.pass);
    /* the framing between the chunks is not part of the body */
    mon.expected_body = "RUN\r\n4";
    run_probe(&mon, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nRUN\r\n4\r\nNING\r\n0\r\n\r\n", true);
    assert_false(result.pass);
}

static void test_probe_body_until_close(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", "RUNNING");
    run_probe(&mon, "HTTP/1.0 200 OK\r\n\r\nstate: RUNNING\n", true);
    assert_true(result.pass);
    run_probe(&mon, "HTTP/1.0 200 OK\r\n\r\nstate: STOPPED\n", true);
    assert_string_equal(result.reason, "expected body \"RUNNING\" not found");
}

static void test_probe_status(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "2xx", "RUNNING");
    run_probe(&mon, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 7\r\n\r\nRUNNING", true);
    assert_false(result.pass);
    assert_string_equal(result.reason, "unexpected status 503 (expected 2xx)");
    mon = monitor(MONITOR_HTTP, "200,302", NULL);
    run_probe(&mon, "HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n", true);
    assert_true(result.pass);
}

static void test_probe_skips_interim_responses(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", "ok");
    run_probe(&mon, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true);
    assert_true(result.pass);
}

static void test_probe_invalid_or_cut_response(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", NULL);
    run_probe(&mon, "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", true);
    assert_false(result.pass);
    assert_memory_equal(result.reason, "invalid response: ", 18);
    run_probe(&mon, "HTTP/1.1 200 OK\r\nContent-Len", true);
    assert_string_equal(result.reason, "connection closed in the middle of the response head");
    run_probe(&mon, "", true);
    assert_string_equal(result.reason, "connection closed without a response");
    mon.expected_body = "RUNNING";
    run_probe(&mon, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true);
    assert_string_equal(result.reason, "connection closed in the middle of the response body");
}

static void test_probe_refused(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", NULL);
    run_probe(&mon, NULL, false);
    assert_false(result.pass);
    assert_string_equal(result.reason, "connect: Connection refused");
    mon = monitor(MONITOR_TCP, "200", NULL);
    run_probe(&mon, NULL, false);
    assert_string_equal(result.reason, "connect: Connection refused");
}

static void test_probe_timeout(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_HTTP, "200", NULL);
    uint64_t start = clock_ms();
    run_probe(&mon, NULL, true);
    uint64_t took = clock_ms() - start;
    assert_false(result.pass);
    assert_string_equal(result.reason, "timed out after 0.3s");
    assert_true(took >= 290 && took < 2000);
}

static void test_probe_tcp(void **state)
{
    (void)state;
    struct cfg_monitor mon = monitor(MONITOR_TCP, "200", "RUNNING");
    const char *req = run_probe(&mon, NULL, true);
    assert_true(result.pass);
    assert_string_equal(req, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_down_after_retries_up_after_rise),
        cmocka_unit_test(test_failures_must_be_consecutive),
        cmocka_unit_test(test_alternating_never_flips),
        cmocka_unit_test(test_retries_and_rise_of_one),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_phase_in_range_and_stable),
        cmocka_unit_test(test_phases_spread_evenly),
        cmocka_unit_test(test_next_due),
        cmocka_unit_test(test_probe_request_and_body),
        cmocka_unit_test(test_probe_host_defaults_to_address),
        cmocka_unit_test(test_probe_body_missing),
        cmocka_unit_test(test_probe_chunked_body_is_decoded),
        cmocka_unit_test(test_probe_body_until_close),
        cmocka_unit_test(test_probe_status),
        cmocka_unit_test(test_probe_skips_interim_responses),
        cmocka_unit_test(test_probe_invalid_or_cut_response),
        cmocka_unit_test(test_probe_refused),
        cmocka_unit_test(test_probe_timeout),
        cmocka_unit_test(test_probe_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
