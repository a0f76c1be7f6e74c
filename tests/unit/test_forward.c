/* Unit tests for proxy/forward: the outgoing heads limpet builds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>

#include "proxy/proxy.h"

static struct exchange ex;
static struct h1_request req;
static struct h1_response resp;
static struct h1_semantics sem;
static char out[8192];

static const char *join(const struct iovec *iov, unsigned n)
{
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    out[len] = '\0';
    return out;
}

static const char *rewrite_request(const char *head)
{
    memset(&ex, 0, sizeof(ex));
    int r = h1_parse_request(head, strlen(head), 16384, &req);
    assert_int_equal(r, (int)strlen(head));
    assert_int_equal(h1_request_semantics(&req, &sem), 0);
    forward_request_head(&ex, head, (size_t)r, &req, &sem, "192.0.2.7", 9, NULL, 0);
    return join(ex.req_iov, ex.req_iov_n);
}

static void test_adds_forwarded_fields(void **state)
{
    (void)state;
    const char *out = rewrite_request("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\n"
                                      "Accept: */*\r\n\r\n");
    assert_string_equal(out, "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                             "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                             "X-Forwarded-Host: example.com\r\n\r\n");
}

static void test_adds_proto_affinity_and_upgrade_fields(void **state)
{
    (void)state;
    const char *head = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                       "Upgrade: websocket\r\n\r\n";
    memset(&ex, 0, sizeof(ex));
    ex.tls = true;
    ex.upgrade = true;
    int r = h1_parse_request(head, strlen(head), 16384, &req);
    assert_int_equal(r, (int)strlen(head));
    assert_int_equal(h1_request_semantics(&req, &sem), 0);
    assert_true(forward_request_head(&ex, head, (size_t)r, &req, &sem, "2001:db8::5", 11,
                                     "reassigned; previous=o2", 23));
    const char *out = join(ex.req_iov, ex.req_iov_n);
    assert_non_null(strstr(out, "\r\nX-Forwarded-For: 2001:db8::5\r\n"
                                "X-Forwarded-Proto: https\r\n"
                                "X-Limpet-Affinity: reassigned; previous=o2\r\n"
                                "Connection: upgrade\r\n"));
}

static void test_unchanged_fields_are_one_span(void **state)
{
    (void)state;
    rewrite_request("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    /* request line and the four kept fields are contiguous: one iovec */
    assert_int_equal(ex.req_iov[0].iov_len, strlen("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n"));
}

static void test_appends_to_existing_x_forwarded_for(void **state)
{
    (void)state;
    const char *out = rewrite_request("GET / HTTP/1.1\r\nHost: h\r\n"
                                      "X-Forwarded-For: 10.0.0.1\r\n"
                                      "X-Forwarded-For: 10.0.0.2 \r\n"
                                      "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n");
    assert_non_null(strstr(out, "X-Forwarded-For: 10.0.0.1\r\n"));
    assert_non_null(strstr(out, "X-Forwarded-For: 10.0.0.2, 192.0.2.7\r\n"));
    assert_null(strstr(out, "https")); /* the client's claims are replaced */
    assert_null(strstr(out, "evil"));
    assert_non_null(strstr(out, "X-Forwarded-Proto: http\r\n"));
    assert_non_null(strstr(out, "X-Forwarded-Host: h\r\n"));
}

static void test_removes_hop_by_hop_and_connection_named(void **state)
{
    (void)state;
    const char *out = rewrite_request("GET / HTTP/1.1\r\nHost: h\r\n"
                                      "Connection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
                                      "X-Secret: s\r\nTE: trailers\r\nProxy-Connection: x\r\n"
                                      "Upgrade: foo\r\nX-Kept: k\r\n\r\n");
    assert_null(strstr(out, "Connection"));
    assert_null(strstr(out, "Keep-Alive"));
    assert_null(strstr(out, "X-Secret"));
    assert_null(strstr(out, "TE:"));
    assert_null(strstr(out, "Upgrade"));
    assert_non_null(strstr(out, "X-Kept: k\r\n"));
}

static void test_keeps_transfer_encoding_for_verbatim_body(void **state)
{
    (void)state;
    const char *out = rewrite_request("POST / HTTP/1.1\r\nHost: h\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n");
    assert_non_null(strstr(out, "Transfer-Encoding: chunked\r\n"));
    assert_int_equal(sem.body, H1_BODY_CHUNKED);
}

static const char *rewrite_response(const char *head, bool close_client, int minor)
{
    memset(&ex, 0, sizeof(ex));
    ex.close_client = close_client;
    ex.minor_version = minor;
    int r = h1_parse_response(head, strlen(head), 65536, &resp);
    assert_int_equal(r, (int)strlen(head));
    assert_int_equal(h1_response_semantics(&resp, "GET", 3, &sem), 0);
    forward_response_head(&ex, head, (size_t)r, &resp, &sem, NULL, 0, NULL);
    return join(ex.resp_iov, ex.resp_iov_n);
}

static void test_response_connection_field(void **state)
{
    (void)state;
    const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
                    "Keep-Alive: timeout=5\r\n\r\n";
    assert_string_equal(rewrite_response(h, false, 1), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert_string_equal(rewrite_response(h, true, 1),
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
    assert_string_equal(rewrite_response(h, false, 0),
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
}

static void test_iov_advance(void **state)
{
    (void)state;
    char a[] = "abc", b[] = "defg";
    struct iovec iov[2] = {{a, 3}, {b, 4}};
    unsigned i = 0;
    assert_false(iov_advance(iov, 2, &i, 2));
    assert_int_equal(i, 0);
    assert_int_equal(iov[0].iov_len, 1);
    assert_false(iov_advance(iov, 2, &i, 3));
    assert_int_equal(i, 1);
    assert_memory_equal(iov[1].iov_base, "fg", 2);
    assert_true(iov_advance(iov, 2, &i, 2));
    assert_int_equal(i, 2);
}

/* The client a trusted proxy names in X-Forwarded-For. */
static const char *xff_client(const char *fields, const char *trusted_text)
{
    static char head[1024], ip[64];
    snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", fields);
    int r = h1_parse_request(head, strlen(head), 16384, &req);
    assert_int_equal(r, (int)strlen(head));
    assert_int_equal(h1_request_semantics(&req, &sem), 0);
    struct cfg_cidr trusted[4];
    size_t n = 0;
    char list[128];
    snprintf(list, sizeof(list), "%s", trusted_text);
    for (char *tok = strtok(list, " "); tok; tok = strtok(NULL, " ")) {
        char *slash = strchr(tok, '/');
        *slash = '\0';
        assert_int_equal(addr_parse_ip(tok, &trusted[n].net), 0);
        trusted[n++].prefix_len = (unsigned)atoi(slash + 1);
    }
    uint8_t family, addr[16];
    if (!forward_client_from_xff(&req, &sem, trusted, n, &family, addr))
        return "none";
    inet_ntop(family == 6 ? AF_INET6 : AF_INET, addr, ip, sizeof(ip));
    return ip;
}

static void test_client_from_x_forwarded_for(void **state)
{
    (void)state;
    const char *t = "10.0.0.0/8 ::1/128";
    assert_string_equal(xff_client("X-Forwarded-For: 198.51.100.9\r\n", t), "198.51.100.9");
    /* the right-most entry that is not trusted */
    assert_string_equal(xff_client("X-Forwarded-For: 203.0.113.1, 198.51.100.9, 10.1.1.1\r\n", t),
                        "198.51.100.9");
    /* several fields are one list, in order */
    assert_string_equal(xff_client("X-Forwarded-For: 203.0.113.1\r\n"
                                   "X-Forwarded-For: 10.2.2.2, ::1\r\n", t), "203.0.113.1");
    /* all trusted: the left-most */
    assert_string_equal(xff_client("X-Forwarded-For: 10.0.0.5,10.9.9.9\r\n", t), "10.0.0.5");
    /* ports and brackets */
    assert_string_equal(xff_client("X-Forwarded-For: [2001:db8::5]:4711\r\n", t), "2001:db8::5");
    assert_string_equal(xff_client("X-Forwarded-For: [2001:db8::6]\r\n", t), "2001:db8::6");
    assert_string_equal(xff_client("X-Forwarded-For: 198.51.100.7:80\r\n", t), "198.51.100.7");
    assert_string_equal(xff_client("X-Forwarded-For: 2001:db8::8\r\n", t), "2001:db8::8");
    /* not an address: no further back than the last trusted entry */
    assert_string_equal(xff_client("X-Forwarded-For: 198.51.100.9, unknown, 10.3.3.3\r\n", t),
                        "10.3.3.3");
    assert_string_equal(xff_client("X-Forwarded-For: 198.51.100.9, garbage\r\n", t), "none");
    assert_string_equal(xff_client("X-Forwarded-For: 198.51.100.9,,10.3.3.3\r\n", t), "10.3.3.3");
    assert_string_equal(xff_client("X-Forwarded-For: 1.2.3.4:99999x\r\n", t), "none");
    assert_string_equal(xff_client("X-Forwarded-For: [::1\r\n", t), "none");
    assert_string_equal(xff_client("X-Forwarded-For: \r\n", t), "none");
    assert_string_equal(xff_client("Accept: */*\r\n", t), "none");
    /* a field Connection names is hop-by-hop: not believed */
    assert_string_equal(xff_client("X-Forwarded-For: 198.51.100.9\r\n"
                                   "Connection: X-Forwarded-For\r\n", t), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adds_forwarded_fields),
        cmocka_unit_test(test_adds_proto_affinity_and_upgrade_fields),
        cmocka_unit_test(test_unchanged_fields_are_one_span),
        cmocka_unit_test(test_appends_to_existing_x_forwarded_for),
        cmocka_unit_test(test_removes_hop_by_hop_and_connection_named),
        cmocka_unit_test(test_keeps_transfer_encoding_for_verbatim_body),
        cmocka_unit_test(test_response_connection_field),
        cmocka_unit_test(test_iov_advance),
        cmocka_unit_test(test_client_from_x_forwarded_for),
    };
    return cmocka_run_group_tests_name("forward", tests, NULL, NULL);
}
