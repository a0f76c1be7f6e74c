/*
 * test_h1 — unit tests for the HTTP/1.x head parser, the request/response
 * semantics and the chunked-body scanner (src/http/h1.c).
 *
 * Most cases feed a literal message and assert the verdict: 0 when the head is
 * accepted (and its semantics derived), otherwise the HTTP status of the
 * refusal. Incremental behaviour is checked by parsing every prefix of valid
 * messages and by splitting chunked bodies at every byte position, and one
 * case places inputs right before a PROT_NONE page so any over-read crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/h1.h"

#define L(lit) lit, (sizeof(lit) - 1)
#define BIG 65536

static struct h1_request rq;
static struct h1_response rs;
static struct h1_semantics sem;

/* Verdict on a request: 0 accepted (whole input is the head), the error
 * status when refused, -2 when more bytes are needed, -3 when the head ended
 * before the end of the input. */
static int req_verdict(const char *s, size_t n)
{
    int rc = h1_parse_request(s, n, BIG, &rq);
    if (rc == H1_INVALID) {
        assert_non_null(rq.error.reason);
        return rq.error.status;
    }
    if (rc == H1_NEED_MORE)
        return -2;
    if ((size_t)rc != n)
        return -3;
    if (h1_request_semantics(&rq, &sem) < 0) {
        assert_non_null(sem.error.reason);
        return sem.error.status;
    }
    return 0;
}
#define REQ(lit) req_verdict(L(lit))

static int resp_verdict(const char *s, size_t n, const char *method)
{
    int rc = h1_parse_response(s, n, BIG, &rs);
    if (rc == H1_INVALID) {
        assert_non_null(rs.error.reason);
        return rs.error.status;
    }
    if (rc == H1_NEED_MORE)
        return -2;
    if ((size_t)rc != n)
        return -3;
    if (h1_response_semantics(&rs, method, strlen(method), &sem) < 0) {
        assert_non_null(sem.error.reason);
        return sem.error.status ? sem.error.status : -4;
    }
    return 0;
}
#define RESP(lit, m) resp_verdict(L(lit), m)

/* A GET/1.1 with a Host and the given extra field lines. */
#define GET11(fields) "GET / HTTP/1.1\r\nHost: example.com\r\n" fields "\r\n"
#define POST11(fields) "POST /submit HTTP/1.1\r\nHost: example.com\r\n" fields "\r\n"

static bool header_is(const struct h1_header *h, const char *name, const char *value)
{
    return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0 &&
           h->value_len == strlen(value) && memcmp(h->value, value, h->value_len) == 0;
}

/* ---- request line ------------------------------------------------------- */

static void test_simple_get(void **state)
{
    (void)state;
    static const char m[] = "GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    int rc = h1_parse_request(m, sizeof(m) - 1, BIG, &rq);
    assert_int_equal(rc, sizeof(m) - 1);
    assert_ptr_equal(rq.method, m);
    assert_int_equal(rq.method_len, 3);
    assert_ptr_equal(rq.target, m + 4);
    assert_int_equal(rq.target_len, strlen("/index.html?x=1"));
    assert_int_equal(rq.minor_version, 1);
    assert_int_equal(rq.request_line_len, strlen("GET /index.html?x=1 HTTP/1.1\r\n"));
    assert_int_equal(rq.num_headers, 1);
    assert_int_equal(h1_request_semantics(&rq, &sem), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_true(sem.keep_alive);
    assert_false(sem.expect_continue);
    assert_false(sem.upgrade);
    assert_ptr_equal(sem.host, &rq.headers[0]);
    assert_false(sem.skip[0]);
}

static void test_header_pointers(void **state)
{
    (void)state;
    static const char m[] = "GET / HTTP/1.1\r\n"
                            "Host:example.com\r\n"
                            "X-Pad: \t  spaced  value \t\r\n"
                            "X-Empty:\r\n"
                            "X-Blank:   \r\n"
                            "x-obs: caf\xc3\xa9\tok\r\n"
                            "\r\n";
    int rc = h1_parse_request(m, sizeof(m) - 1, BIG, &rq);
    assert_int_equal(rc, sizeof(m) - 1);
    assert_int_equal(rq.num_headers, 5);
    const char *l1 = m + strlen("GET / HTTP/1.1\r\n");
    assert_ptr_equal(rq.headers[0].line, l1);
    assert_int_equal(rq.headers[0].line_len, strlen("Host:example.com\r\n"));
    assert_ptr_equal(rq.headers[0].name, l1);
    assert_int_equal(rq.headers[0].name_len, 4);
    assert_ptr_equal(rq.headers[0].value, l1 + 5);
    assert_int_equal(rq.headers[0].value_len, strlen("example.com"));

    const char *l2 = l1 + rq.headers[0].line_len;
    assert_ptr_equal(rq.headers[1].line, l2);
    assert_int_equal(rq.headers[1].line_len, strlen("X-Pad: \t  spaced  value \t\r\n"));
    assert_ptr_equal(rq.headers[1].value, l2 + strlen("X-Pad: \t  "));
    assert_true(header_is(&rq.headers[1], "X-Pad", "spaced  value"));

    assert_true(header_is(&rq.headers[2], "X-Empty", ""));
    assert_int_equal(rq.headers[2].line_len, strlen("X-Empty:\r\n"));
    assert_true(header_is(&rq.headers[3], "X-Blank", ""));
    assert_true(header_is(&rq.headers[4], "x-obs", "caf\xc3\xa9\tok"));
    assert_ptr_equal(rq.headers[4].line + rq.headers[4].line_len, m + sizeof(m) - 3);
}

static void test_need_more_every_prefix(void **state)
{
    (void)state;
    static const char m[] = "\r\nPOST /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n"
                            "Content-Length: 5\r\nX-A:  b \r\nConnection: keep-alive\r\n\r\n";
    size_t n = sizeof(m) - 1;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(h1_parse_request(m, i, BIG, &rq), H1_NEED_MORE);
    assert_int_equal(h1_parse_request(m, n, BIG, &rq), (int)n);
    assert_int_equal(rq.num_headers, 4);
}

static void test_pipelined_bytes_after_head(void **state)
{
    (void)state;
    static const char m[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    int rc = h1_parse_request(m, sizeof(m) - 1, BIG, &rq);
    assert_int_equal(rc, strlen("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_int_equal(rq.target_len, 2);
    assert_memory_equal(rq.target, "/1", 2);
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    static const char m[] = "\r\n\r\nGET / HTTP/1.0\r\n\r\n";
    assert_int_equal(h1_parse_request(m, sizeof(m) - 1, BIG, &rq), sizeof(m) - 1);
    assert_ptr_equal(rq.method, m + 4);
    assert_int_equal(rq.request_line_len, strlen("GET / HTTP/1.0\r\n"));
    assert_int_equal(rq.minor_version, 0);
    assert_int_equal(REQ("\nGET / HTTP/1.0\r\n\r\n"), 400);
    assert_int_equal(REQ("\r\rGET / HTTP/1.0\r\n\r\n"), 400);
}

static void test_versions(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(rq.minor_version, 0);
    assert_int_equal(REQ("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    assert_int_equal(REQ("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
    assert_int_equal(REQ("GET / HTTP/0.9\r\n\r\n"), 505);
    assert_int_equal(REQ("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/2\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / \r\nHost: a\r\n\r\n"), 400);
}

static void test_method_and_separators(void **state)
{
    (void)state;
    assert_int_equal(REQ("get / HTTP/1.1\r\nHost: a\r\n\r\n"), 0); /* a token */
    assert_int_equal(REQ("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n"), 400); /* * not OPTIONS */
    assert_int_equal(REQ("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ(" / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\n"), -2);
}

static void test_target_bytes(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /a|b{c}~!$&'()*+,;=:@%20 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
}

static void test_target_forms(void **state)
{
    (void)state;
    assert_int_equal(REQ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(REQ("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 0);
    assert_int_equal(REQ("CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(REQ("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"), 0);
    assert_int_equal(REQ("GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n"), 0);
    assert_int_equal(REQ("GET http://user@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET http://example.com/#frag HTTP/1.1\r\nHost: example.com\r\n\r\n"), 400);
    assert_int_equal(REQ("GET http://example.com#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void test_target_fragment(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_string_equal(rq.error.reason, "fragment in request-target");
    assert_int_equal(REQ("GET /# HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /a?b#c HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /a/b/c/d/e/f/g/h#i HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET # HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET /a%23b HTTP/1.1\r\nHost: a\r\n\r\n"), 0); /* encoded: fine */
}

/* RFC 9112 §3.2.2: absolute-form and Host must name the same authority. */
static void test_absolute_form_host(void **state)
{
    (void)state;
#define ABS(target, host) REQ("GET " target " HTTP/1.1\r\nHost: " host "\r\n\r\n")
    assert_int_equal(ABS("http://example.com/", "example.com"), 0);
    assert_int_equal(ABS("http://example.com", "example.com"), 0);
    assert_int_equal(ABS("http://example.com?q", "example.com"), 0);
    assert_int_equal(ABS("http://EXAMPLE.com/", "example.COM"), 0);
    assert_int_equal(ABS("http://example.com/", "example.com:80"), 0);
    assert_int_equal(ABS("http://example.com:80/", "example.com"), 0);
    assert_int_equal(ABS("http://example.com:0080/", "example.com"), 0);
    assert_int_equal(ABS("https://example.com/", "example.com:443"), 0);
    assert_int_equal(ABS("HTTPS://example.com:443/", "Example.com"), 0);
    assert_int_equal(ABS("http://example.com:8080/x", "example.com:8080"), 0);
    assert_int_equal(ABS("http://127.0.0.1:8080/x", "127.0.0.1:8080"), 0);
    assert_int_equal(ABS("http://[::1]/x", "[::1]:80"), 0);
    assert_int_equal(ABS("http://[::A]/x", "[::a]"), 0);
    assert_int_equal(ABS("http://%41.example/x", "%41.EXAMPLE"), 0);

    assert_int_equal(ABS("http://example.com/", "other.example"), 400);
    assert_string_equal(sem.error.reason, "Host does not match request-target");
    assert_int_equal(ABS("http://example.com/", "example.com.evil"), 400);
    assert_int_equal(ABS("http://example.com/", "example.co"), 400);
    assert_int_equal(ABS("http://example.com/", "example.com:8080"), 400);
    assert_int_equal(ABS("http://example.com:8080/", "example.com"), 400);
    assert_int_equal(ABS("http://example.com:8080/", "example.com:8081"), 400);
    assert_int_equal(ABS("https://example.com/", "example.com:80"), 400);
    assert_int_equal(ABS("http://example.com/", "example.com:443"), 400);
    assert_int_equal(ABS("http://[::1]/", "[::2]"), 400);
    assert_int_equal(ABS("http://[::1]/", "127.0.0.1"), 400);
    assert_int_equal(ABS("http://a.example/", "a.example."), 400);
#undef ABS
    /* no Host: still refused on HTTP/1.1, fine on HTTP/1.0 */
    assert_int_equal(REQ("GET http://example.com/ HTTP/1.1\r\n\r\n"), 400);
    assert_int_equal(REQ("GET http://example.com/ HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(REQ("GET http://example.com/ HTTP/1.0\r\nHost: other\r\n\r\n"), 400);
    /* origin-form, "*" and authority-form are not compared */
    assert_int_equal(REQ("GET /x HTTP/1.1\r\nHost: anything\r\n\r\n"), 0);
    assert_int_equal(REQ("OPTIONS * HTTP/1.1\r\nHost: anything\r\n\r\n"), 0);
    assert_int_equal(REQ("CONNECT http.example:443 HTTP/1.1\r\nHost: other:443\r\n\r\n"), 0);
}

static void test_request_line_414(void **state)
{
    (void)state;
    const size_t max = H1_MAX_REQUEST_LINE;
    static char m[H1_MAX_REQUEST_LINE + 64];
    /* exactly H1_MAX_REQUEST_LINE bytes before the CRLF: accepted */
    size_t tlen = max - strlen("GET  HTTP/1.1");
    memcpy(m, "GET /", 5);
    memset(m + 5, 'a', tlen - 1);
    size_t n = 4 + tlen;
    memcpy(m + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    n += 22;
    assert_int_equal(h1_parse_request(m, n, BIG, &rq), (int)n);
    assert_int_equal(rq.request_line_len, max + 2);

    /* one more byte: 414, complete or not */
    memcpy(m, "GET /", 5);
    memset(m + 5, 'a', tlen);
    n = 4 + tlen + 1;
    memcpy(m + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    assert_int_equal(h1_parse_request(m, n + 22, BIG, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 414);
    assert_int_equal(h1_parse_request(m, max + 2, BIG, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 414);
    assert_int_equal(h1_parse_request(m, max + 1, BIG, &rq), H1_NEED_MORE);
}

static void test_head_limit_in_request_line_414(void **state)
{
    (void)state;
    static const char m[] = "GET /a-rather-long-target HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(h1_parse_request(m, 20, 20, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 414);
    assert_int_equal(h1_parse_request(m, 19, 20, &rq), H1_NEED_MORE);
}

static void test_head_limit_431(void **state)
{
    (void)state;
    static const char m[] = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Long: aaaaaaaaaaaaaaaa\r\n\r\n";
    size_t n = sizeof(m) - 1;
    assert_int_equal(h1_parse_request(m, n, n, &rq), (int)n); /* exactly at the limit */
    assert_int_equal(h1_parse_request(m, n, n - 1, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 431);
    assert_int_equal(h1_parse_request(m, n - 1, n - 1, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 431);
    assert_int_equal(h1_parse_request(m, n - 2, n - 1, &rq), H1_NEED_MORE);
    /* the limit reached among the fields, whatever len is */
    assert_int_equal(h1_parse_request(m, n, 20, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 431);
    assert_int_equal(h1_parse_request(m, n - 2, 16 + 19, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 431);
}

static void test_head_limit_with_trailing_bytes(void **state)
{
    (void)state;
    static const char m[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODYBODYBODY";
    size_t head = strlen("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(h1_parse_request(m, sizeof(m) - 1, head, &rq), (int)head);
}

/* ---- field lines -------------------------------------------------------- */

static void test_bare_lf(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nc\r\n\r\n"), 400);
}

static void test_bare_cr(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\n\rX"), 400);
    assert_int_equal(REQ("GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void test_control_chars_in_value(void **state)
{
    (void)state;
    assert_int_equal(REQ(GET11("X-A: \x0b" "b\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\x0b\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: \x0c" "b\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\x0c\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: \0b\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\0\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\0c\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\x7f" "c\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\x1b" "c\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\tc \xff\r\n")), 0);
}

/* Long values and targets are scanned a word at a time: a bad byte must be
 * found at every position, HTAB and obs-text accepted at every position. */
static void test_bad_byte_every_position(void **state)
{
    (void)state;
    static const unsigned char bad_value[] = {0x00, 0x01, 0x0a, 0x0b, 0x0d, 0x1f, 0x7f};
    static const unsigned char bad_target[] = {0x00, 0x09, 0x7f, 0x80, 0xff, 0x1f, '#'};
    char m[256];
    for (size_t pos = 0; pos < 40; pos++) {
        for (size_t k = 0; k < sizeof(bad_value); k++) {
            int n = snprintf(m, sizeof(m), "GET / HTTP/1.1\r\nHost: a\r\nX-V: v%040dv\r\n\r\n", 0);
            m[strlen("GET / HTTP/1.1\r\nHost: a\r\nX-V: v") + pos] = (char)bad_value[k];
            assert_int_equal(req_verdict(m, (size_t)n), 400);
        }
        int n = snprintf(m, sizeof(m), "GET / HTTP/1.1\r\nHost: a\r\nX-V: v%040dv\r\n\r\n", 0);
        m[strlen("GET / HTTP/1.1\r\nHost: a\r\nX-V: v") + pos] = '\t';
        m[strlen("GET / HTTP/1.1\r\nHost: a\r\nX-V: v") + (pos + 7) % 40] = (char)0xe9;
        assert_int_equal(req_verdict(m, (size_t)n), 0);
        assert_int_equal(rq.headers[1].value_len, 42);
        for (size_t k = 0; k < sizeof(bad_target); k++) {
            n = snprintf(m, sizeof(m), "GET /%040d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
            m[5 + pos] = (char)bad_target[k];
            assert_int_equal(req_verdict(m, (size_t)n), 400);
        }
    }
}

static void test_obs_fold(void **state)
{
    (void)state;
    assert_int_equal(REQ(GET11("X-A: b\r\n c\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A: b\r\n\tc\r\n")), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
}

static void test_field_name_errors(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), 400);
    assert_int_equal(REQ(GET11(": a\r\n")), 400);
    assert_int_equal(REQ(GET11("X(A): a\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A a\r\n")), 400);
    assert_int_equal(REQ(GET11("X-A\r\n")), 400);
    assert_int_equal(REQ(GET11("X\0A: a\r\n")), 400);
    assert_int_equal(REQ(GET11("X\xc3\xa9: a\r\n")), 400);
}

/* Appends formatted text to buf (of size cap) at *n. */
static void append(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    assert_true(r >= 0 && (size_t)r < cap - *n);
    *n += (size_t)r;
}

static void test_header_count(void **state)
{
    (void)state;
    static char m[8192];
    size_t n = 0;
    append(m, sizeof(m), &n, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < H1_MAX_HEADERS; i++)
        append(m, sizeof(m), &n, "X-%d: v\r\n", i);
    size_t before_end = n;
    append(m, sizeof(m), &n, "\r\n");
    assert_int_equal(h1_parse_request(m, n, BIG, &rq), (int)n);
    assert_int_equal(rq.num_headers, H1_MAX_HEADERS);
    assert_true(header_is(&rq.headers[H1_MAX_HEADERS - 1], "X-99", "v"));

    n = before_end;
    append(m, sizeof(m), &n, "X-100: v\r\n\r\n");
    assert_int_equal(h1_parse_request(m, n, BIG, &rq), H1_INVALID);
    assert_int_equal(rq.error.status, 400);
    /* refused as soon as the 101st field starts */
    assert_int_equal(h1_parse_request(m, before_end + 1, BIG, &rq), H1_INVALID);
}

/* ---- request semantics: framing ----------------------------------------- */

static void test_post_content_length(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Content-Length: 5\r\n")), 0);
    assert_int_equal(sem.body, H1_BODY_LENGTH);
    assert_int_equal(sem.content_length, 5);
    assert_false(sem.skip[1]);
    assert_int_equal(REQ(POST11("content-length: 0\r\n")), 0);
    assert_int_equal(sem.body, H1_BODY_LENGTH);
    assert_int_equal(sem.content_length, 0);
    assert_int_equal(REQ(POST11("Content-Length: 9223372036854775807\r\n")), 0);
    assert_true(sem.content_length == INT64_MAX);
    assert_int_equal(REQ(POST11("Content-Length: 007\r\n")), 0);
    assert_int_equal(sem.content_length, 7);
}

static void test_content_length_invalid(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Content-Length: +5\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: -1\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 5 5\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 5, 5\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 0x10\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: \r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 5a\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 1:\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: /\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 9223372036854775808\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 99999999999999999999999\r\n")), 400);
}

static void test_content_length_repeated(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Content-Length: 5\r\nContent-Length: 6\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 5\r\nContent-Length: 5\r\n")), 400);
}

static void test_chunked(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked\r\n")), 0);
    assert_int_equal(sem.body, H1_BODY_CHUNKED);
    assert_false(sem.skip[1]); /* Transfer-Encoding is forwarded */
    assert_int_equal(REQ(POST11("Transfer-Encoding: Chunked\r\n")), 0);
    assert_int_equal(sem.body, H1_BODY_CHUNKED);
    assert_int_equal(REQ(POST11("Transfer-Encoding:\tchunked \r\n")), 0);
    assert_int_equal(sem.body, H1_BODY_CHUNKED);
    assert_int_equal(REQ(POST11("transfer-encoding: CHUNKED\r\n")), 0);
    assert_int_equal(sem.body, H1_BODY_CHUNKED);
}

static void test_cl_and_te(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n")), 400);
}

static void test_te_on_http10(void **state)
{
    (void)state;
    assert_int_equal(REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    assert_int_equal(REQ("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n"), 0);
    assert_int_equal(sem.body, H1_BODY_LENGTH);
}

static void test_te_unknown_coding_501(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Transfer-Encoding: gzip, chunked\r\n")), 501);
    assert_int_equal(REQ(POST11("Transfer-Encoding: identity\r\n")), 501);
    assert_int_equal(REQ(POST11("Transfer-Encoding: gzip\r\n")), 501);
    assert_int_equal(REQ(POST11("Transfer-Encoding: xchunked\r\n")), 501);
    assert_int_equal(REQ(POST11("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n")), 501);
}

static void test_te_malformed_400(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked, chunked\r\n")), 400);
    assert_string_equal(sem.error.reason, "chunked applied twice");
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked;\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked;q=1\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: , chunked\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked,\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked, gzip\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: \r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: \"chunked\"\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chun ked\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked\xff\r\n")), 400);
}

static void test_te_control_chars_around_value(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Transfer-Encoding: \x0b" "chunked\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked\x0c\r\n")), 400);
    assert_int_equal(REQ(POST11("Transfer-Encoding: chunked\0\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: \x0b" "5\r\n")), 400);
}

/* ---- request semantics: Host, Connection, Expect ------------------------ */

static void test_host_rules(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET / HTTP/1.1\r\nX-A: b\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_null(sem.host);
    assert_int_equal(REQ("GET / HTTP/1.0\r\nX: y\r\nHOST: a.example\r\n\r\n"), 0);
    assert_ptr_equal(sem.host, &rq.headers[1]);
}

static void test_host_values(void **state)
{
    (void)state;
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"), 0);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 0);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"), 0);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n"), 0);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: \r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: example.com/x\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: example.com:\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: example.com:99999\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: example.com:80:80\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"), 0); /* sub-delims are reg-name */
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n"), 400);
    assert_int_equal(REQ("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n"), 400);
}

static void test_keep_alive(void **state)
{
    (void)state;
    assert_int_equal(REQ(GET11("")), 0);
    assert_true(sem.keep_alive);
    assert_int_equal(REQ(GET11("Connection: close\r\n")), 0);
    assert_false(sem.keep_alive);
    assert_true(sem.skip[1]);
    assert_int_equal(REQ(GET11("Connection: Keep-Alive, CLOSE\r\n")), 0);
    assert_false(sem.keep_alive);
    assert_int_equal(REQ("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_false(sem.keep_alive);
    assert_int_equal(REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    assert_true(sem.keep_alive);
    assert_int_equal(REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"), 0);
    assert_false(sem.keep_alive);
    assert_int_equal(REQ(GET11("Connection: , ,close ,\r\n")), 0);
    assert_false(sem.keep_alive);
}

static void test_connection_names_field(void **state)
{
    (void)state;
    assert_int_equal(REQ(GET11("X-Secret: s\r\nConnection: x-secret, X-Other\r\nX-Keep: k\r\nx-other: o\r\n")), 0);
    assert_int_equal(rq.num_headers, 5);
    assert_false(sem.skip[0]); /* Host */
    assert_true(sem.skip[1]);  /* X-Secret, named */
    assert_true(sem.skip[2]);  /* Connection */
    assert_false(sem.skip[3]); /* X-Keep */
    assert_true(sem.skip[4]);  /* x-other, named */
    assert_true(sem.keep_alive);
}

static void test_connection_forbidden_names(void **state)
{
    (void)state;
    assert_int_equal(REQ(GET11("Connection: host\r\n")), 400);
    assert_int_equal(REQ(POST11("Content-Length: 2\r\nConnection: Content-Length\r\n")), 400);
    assert_int_equal(REQ(POST11("Connection: close, transfer-encoding\r\n")), 400);
    assert_int_equal(REQ(GET11("Connection: close;x\r\n")), 400);
    assert_int_equal(REQ(GET11("Connection: a b\r\n")), 400);
}

static void test_hop_by_hop_skipped(void **state)
{
    (void)state;
    assert_int_equal(REQ(GET11("Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                               "TE: trailers\r\nUpgrade: websocket\r\nX-End: 1\r\n"
                               "Trailer: X-Sum\r\n")), 0);
    assert_false(sem.skip[0]);
    assert_true(sem.skip[1]);
    assert_true(sem.skip[2]);
    assert_true(sem.skip[3]);
    assert_true(sem.skip[4]);
    assert_false(sem.skip[5]);
    assert_false(sem.skip[6]);
    assert_false(sem.upgrade); /* Upgrade without Connection: upgrade */
}

static void test_upgrade(void **state)
{
    (void)state;
    assert_int_equal(REQ(GET11("Connection: Upgrade\r\nUpgrade: websocket\r\n")), 0);
    assert_true(sem.upgrade);
    assert_true(sem.skip[1]);
    assert_true(sem.skip[2]);
    assert_int_equal(REQ(GET11("Connection: upgrade\r\n")), 0);
    assert_false(sem.upgrade);
    assert_int_equal(REQ("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), 0);
    assert_false(sem.upgrade);
}

static void test_expect(void **state)
{
    (void)state;
    assert_int_equal(REQ(POST11("Expect: 100-continue\r\nContent-Length: 3\r\n")), 0);
    assert_true(sem.expect_continue);
    assert_int_equal(REQ(POST11("Expect: 100-Continue\r\n")), 0);
    assert_true(sem.expect_continue);
    assert_int_equal(REQ(POST11("Expect: 100-continue-please\r\n")), 0);
    assert_false(sem.expect_continue);
    assert_int_equal(REQ("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), 0);
    assert_false(sem.expect_continue);
}

static void test_token_eq(void **state)
{
    (void)state;
    assert_true(h1_token_eq("Content-Length", 14, "content-length"));
    assert_true(h1_token_eq("CHUNKED", 7, "chunked"));
    assert_true(h1_token_eq("chunked", 7, "CHUNKED"));
    assert_false(h1_token_eq("chunke", 6, "chunked"));
    assert_false(h1_token_eq("chunkedx", 8, "chunked"));
    assert_false(h1_token_eq("chunked", 7, "chunkes"));
    assert_true(h1_token_eq("", 0, ""));
    assert_false(h1_token_eq("a", 1, ""));
    assert_true(h1_token_eq("chunkedXYZ", 7, "chunked"));
    assert_false(h1_token_eq("[", 1, "{")); /* no sloppy case folding */
}

/* ---- responses ---------------------------------------------------------- */

static void test_response_basic(void **state)
{
    (void)state;
    static const char m[] = "HTTP/1.1 200 OK fine\r\nContent-Length: 12\r\nX-A: b\r\n\r\n";
    assert_int_equal(h1_parse_response(m, sizeof(m) - 1, BIG, &rs), sizeof(m) - 1);
    assert_int_equal(rs.minor_version, 1);
    assert_int_equal(rs.status, 200);
    assert_ptr_equal(rs.reason, m + 13);
    assert_int_equal(rs.reason_len, strlen("OK fine"));
    assert_int_equal(rs.status_line_len, strlen("HTTP/1.1 200 OK fine\r\n"));
    assert_int_equal(rs.num_headers, 2);
    assert_true(header_is(&rs.headers[1], "X-A", "b"));
    assert_int_equal(h1_response_semantics(&rs, "GET", 3, &sem), 0);
    assert_int_equal(sem.body, H1_BODY_LENGTH);
    assert_int_equal(sem.content_length, 12);
    assert_true(sem.keep_alive);
    assert_null(sem.host);
}

static void test_response_need_more_every_prefix(void **state)
{
    (void)state;
    static const char m[] = "HTTP/1.0 404 Not Found\r\nServer: x\r\nConnection: keep-alive\r\n\r\n";
    size_t n = sizeof(m) - 1;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(h1_parse_response(m, i, BIG, &rs), H1_NEED_MORE);
    assert_int_equal(h1_parse_response(m, n, BIG, &rs), (int)n);
    assert_int_equal(rs.status, 404);
    assert_int_equal(rs.minor_version, 0);
}

static void test_response_no_body_statuses(void **state)
{
    (void)state;
    assert_int_equal(RESP("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_true(sem.keep_alive);
    assert_int_equal(RESP("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_int_equal(RESP("HTTP/1.1 100 Continue\r\n\r\n", "POST"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_true(sem.keep_alive);
}

/* A 1xx or 204 that frames a body would have that body read as the next
 * response: refused. Content-Length: 0 is harmless and common. */
static void test_response_no_body_status_framing(void **state)
{
    (void)state;
    assert_int_equal(RESP("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n", "POST"), 400);
    assert_int_equal(RESP("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    assert_int_equal(RESP("HTTP/1.1 204 No Content\r\nContent-Length: 000\r\n\r\n", "HEAD"), 0);
    /* 304 and HEAD: the fields describe the representation, no body follows */
    assert_int_equal(RESP("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_int_equal(RESP("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD"), 0);
    assert_int_equal(sem.body, H1_BODY_NONE);
}

static void test_response_until_close(void **state)
{
    (void)state;
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "GET"), 0);
    assert_int_equal(sem.body, H1_BODY_UNTIL_CLOSE);
    assert_false(sem.keep_alive);
    assert_int_equal(RESP("HTTP/1.0 200 OK\r\n\r\n", "GET"), 0);
    assert_int_equal(sem.body, H1_BODY_UNTIL_CLOSE);
    assert_false(sem.keep_alive);
}

static void test_response_chunked_and_keep_alive(void **state)
{
    (void)state;
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), 0);
    assert_int_equal(sem.body, H1_BODY_CHUNKED);
    assert_true(sem.keep_alive);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", "GET"), 0);
    assert_false(sem.keep_alive);
    assert_true(sem.skip[1]);
    assert_int_equal(RESP("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", "GET"), 0);
    assert_true(sem.keep_alive);
    assert_int_equal(RESP("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET"), 0);
    assert_false(sem.keep_alive);
}

static void test_response_framing_errors(void **state)
{
    (void)state;
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "GET"), 501);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nContent-Length: 3,3\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 3\r\n\r\n", "GET"), 400);
}

static void test_response_connect(void **state)
{
    (void)state;
    assert_int_not_equal(RESP("HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT"), 0);
    assert_int_equal(RESP("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n", "CONNECT"), 0);
    assert_int_equal(sem.body, H1_BODY_LENGTH);
}

static void test_response_status_line(void **state)
{
    (void)state;
    assert_int_equal(RESP("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    assert_int_equal(rs.reason_len, 0);
    assert_int_equal(RESP("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 099 X\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 600 X\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 20 X\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 2000 X\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1  200 X\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/2 200 X\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/2.0 200 X\r\n\r\n", "GET"), 505);
    assert_int_equal(RESP("HTTP/1.1 200 O\0K\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\nServer: x\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("\r\nHTTP/1.1 200 OK\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nServer: x\r\n y\r\n\r\n", "GET"), 400);
    assert_int_equal(RESP("HTTP/1.1 200 OK\r\nServer : x\r\n\r\n", "GET"), 400);
}

static void test_response_head_limit(void **state)
{
    (void)state;
    static const char m[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    size_t n = sizeof(m) - 1;
    assert_int_equal(h1_parse_response(m, n, n, &rs), (int)n);
    assert_int_equal(h1_parse_response(m, n, n - 1, &rs), H1_INVALID);
    assert_int_equal(rs.error.status, 431);
}

static void test_response_101_upgrade(void **state)
{
    (void)state;
    assert_int_equal(RESP("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          "Upgrade: websocket\r\n\r\n", "GET"), 0);
    assert_true(sem.upgrade);
    assert_int_equal(sem.body, H1_BODY_NONE);
    assert_true(sem.skip[0]);
    assert_true(sem.skip[1]);
}

/* ---- chunked scanner ---------------------------------------------------- */

/* Scans body in two calls split at `split`; returns total consumed or
 * H1_INVALID. */
static long scan_split(const char *b, size_t n, size_t split, bool *done)
{
    struct h1_chunked c;
    h1_chunked_init(&c);
    long r = h1_chunked_scan(&c, b, split, done);
    if (r < 0 || *done)
        return r;
    assert_int_equal(r, (long)split);
    long r2 = h1_chunked_scan(&c, b + split, n - split, done);
    return r2 < 0 ? r2 : r + r2;
}

static long scan_bytewise(const char *b, size_t n, bool *done)
{
    struct h1_chunked c;
    h1_chunked_init(&c);
    for (size_t i = 0; i < n; i++) {
        long r = h1_chunked_scan(&c, b + i, 1, done);
        if (r < 0)
            return r;
        if (*done)
            return (long)i + r;
        assert_int_equal(r, 1);
    }
    return (long)n;
}

/* The body (followed by `extra` bytes that are not part of it) must be
 * accepted with the same result whatever the split. */
static void check_chunked_ok(const char *b, size_t n, size_t extra)
{
    bool done;
    for (size_t split = 0; split <= n; split++) {
        done = false;
        assert_int_equal(scan_split(b, n, split, &done), (long)(n - extra));
        assert_true(done);
    }
    done = false;
    assert_int_equal(scan_bytewise(b, n, &done), (long)(n - extra));
    assert_true(done);
}

static void check_chunked_bad(const char *b, size_t n)
{
    bool done;
    for (size_t split = 0; split <= n; split++) {
        done = false;
        assert_int_equal(scan_split(b, n, split, &done), H1_INVALID);
        assert_false(done);
    }
    assert_int_equal(scan_bytewise(b, n, &done), H1_INVALID);
}

#define CHUNK_OK(lit, extra) check_chunked_ok(L(lit), extra)
#define CHUNK_BAD(lit) check_chunked_bad(L(lit))

static void test_chunked_simple_every_split(void **state)
{
    (void)state;
    CHUNK_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 0);
    CHUNK_OK("0\r\n\r\n", 0);
    CHUNK_OK("A\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n", 0);
    CHUNK_OK("000003\r\nabc\r\n0000\r\n\r\n", 0);
}

static void test_chunked_extensions_and_trailers(void **state)
{
    (void)state;
    CHUNK_OK("5;name\r\nhello\r\n0;a=b;c=\"q \\\" ;x\"\r\n\r\n", 0);
    CHUNK_OK("3;ext=tok;flag\r\nabc\r\n0\r\nX-Sum: 123\r\nX-Empty:\r\nX-T:\tv  v\r\n\r\n", 0);
    CHUNK_OK("1\r\nz\r\n0\r\n\r\nGET / HTTP/1.1\r\n", strlen("GET / HTTP/1.1\r\n"));
}

static void test_chunked_stops_at_end(void **state)
{
    (void)state;
    static const char b[] = "2\r\nhi\r\n0\r\n\r\nNEXT";
    struct h1_chunked c;
    bool done = false;
    h1_chunked_init(&c);
    assert_int_equal(h1_chunked_scan(&c, b, sizeof(b) - 1, &done), (long)(sizeof(b) - 5));
    assert_true(done);
    /* nothing more belongs to the body */
    done = false;
    assert_int_equal(h1_chunked_scan(&c, "x", 1, &done), 0);
    assert_true(done);
}

static void test_chunked_large_chunk_incremental(void **state)
{
    (void)state;
    struct h1_chunked c;
    bool done = false;
    char data[4096];
    memset(data, 'd', sizeof(data));
    h1_chunked_init(&c);
    assert_int_equal(h1_chunked_scan(&c, "10000\r\n", 7, &done), 7);
    assert_int_equal(c.remaining, 0x10000);
    for (int i = 0; i < 16; i++)
        assert_int_equal(h1_chunked_scan(&c, data, sizeof(data), &done), (long)sizeof(data));
    assert_int_equal(c.remaining, 0);
    assert_false(done);
    assert_int_equal(h1_chunked_scan(&c, "\r\n0\r\n\r\n", 7, &done), 7);
    assert_true(done);
}

static void test_chunked_bad_sizes(void **state)
{
    (void)state;
    CHUNK_BAD("\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("g\r\n");
    CHUNK_BAD(" 5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5 \r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5\t\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("-5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("+5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("0x5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5 ;a\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("10000000000000000\r\n"); /* 17 hex digits */
    CHUNK_BAD("00000000000000005\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5\rhello\r\n0\r\n\r\n");
    /* 16 digits are fine as far as the size line goes */
    struct h1_chunked c;
    bool done;
    h1_chunked_init(&c);
    assert_int_equal(h1_chunked_scan(&c, L("ffffffffffffffff\r\n"), &done), 18);
    assert_true(c.remaining == UINT64_MAX);
}

static void test_chunked_bad_extensions(void **state)
{
    (void)state;
    CHUNK_BAD("5;\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;=v\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a b\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\"unterminated\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\"q\"x\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=b=c\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a\0\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\"x\x7f\"\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\"x\0\"\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\"x\\\0\"\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_extension_line_limit(void **state)
{
    (void)state;
    static char b[6000];
    size_t n = 0;
    append(b, sizeof(b), &n, "1;x=");
    memset(b + n, 'a', 4100);
    n += 4100;
    append(b, sizeof(b), &n, "\r\nz\r\n0\r\n\r\n");
    struct h1_chunked c;
    bool done = false;
    h1_chunked_init(&c);
    assert_int_equal(h1_chunked_scan(&c, b, n, &done), H1_INVALID);
    /* a long but bounded line is fine */
    n = 0;
    append(b, sizeof(b), &n, "1;x=");
    memset(b + n, 'a', 4000);
    n += 4000;
    append(b, sizeof(b), &n, "\r\nz\r\n0\r\n\r\n");
    h1_chunked_init(&c);
    assert_int_equal(h1_chunked_scan(&c, b, n, &done), (long)n);
    assert_true(done);
}

static void test_chunked_missing_crlf_after_data(void **state)
{
    (void)state;
    CHUNK_BAD("5\r\nhelloX\r\n0\r\n\r\n");
    CHUNK_BAD("5\r\nhello\n0\r\n\r\n");
    CHUNK_BAD("5\r\nhello\rX0\r\n\r\n");
    CHUNK_BAD("5\r\nhello0\r\n\r\n");
    CHUNK_BAD("3\r\nhello\r\n0\r\n\r\n"); /* data longer than the size */
}

static void test_chunked_bad_trailers(void **state)
{
    (void)state;
    CHUNK_BAD("0\r\nX-A: b\r\n c\r\n\r\n");     /* obs-fold */
    CHUNK_BAD("0\r\nX-A b\r\n\r\n");            /* no colon */
    CHUNK_BAD("0\r\nX-A : b\r\n\r\n");          /* space before colon */
    CHUNK_BAD("0\r\n: b\r\n\r\n");              /* empty name */
    CHUNK_BAD("0\r\nX-A: b\0\r\n\r\n");         /* NUL */
    CHUNK_BAD("0\r\nX-A: b\n\r\n");             /* bare LF */
    CHUNK_BAD("0\r\n\rX");                      /* bare CR at the end */
    CHUNK_BAD("0\r\n\n");
}

static void test_chunked_trailer_limit(void **state)
{
    (void)state;
    static char b[20000];
    size_t n = 0;
    append(b, sizeof(b), &n, "0\r\n");
    for (int i = 0; i < 500; i++)
        append(b, sizeof(b), &n, "X-Trailer-%03d: v\r\n", i);
    append(b, sizeof(b), &n, "\r\n");
    struct h1_chunked c;
    bool done = false;
    h1_chunked_init(&c);
    assert_int_equal(h1_chunked_scan(&c, b, n, &done), H1_INVALID);
    assert_false(done);
}

static void test_chunked_error_is_sticky(void **state)
{
    (void)state;
    struct h1_chunked c;
    bool done = false;
    h1_chunked_init(&c);
    assert_int_equal(h1_chunked_scan(&c, L("zz"), &done), H1_INVALID);
    assert_int_equal(h1_chunked_scan(&c, L("0\r\n\r\n"), &done), H1_INVALID);
    assert_false(done);
}

/* ---- over-read guard ---------------------------------------------------- */

static void test_guard_page_every_prefix(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "GET /x HTTP/1.1\r\nHost: example.com\r\nX-A:  b  \r\n\r\n",
        "\r\n\r\nPOST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\nX-E:\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \t\r\n\r",
        "GET / HTTP/9.9\r\n",
    };
    static const char *const resps[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.0 204 \r\nX: y\r\n\r\n",
        "HTTP/1.1 301\r\n",
    };
    static const char *const bodies[] = {
        "5;a=\"b\\\"c\"\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
        "1\r\nz\r\n0\r\n\r\n",
    };
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    char *edge = map + page;

    for (size_t k = 0; k < sizeof(reqs) / sizeof(reqs[0]); k++) {
        size_t n = strlen(reqs[k]);
        for (size_t i = 0; i <= n; i++) {
            memcpy(edge - i, reqs[k], i);
            int rc = h1_parse_request(edge - i, i, BIG, &rq);
            assert_true(rc == H1_NEED_MORE || rc == H1_INVALID || rc == (int)i);
            if (rc > 0)
                (void)h1_request_semantics(&rq, &sem);
            /* the same prefix as the last bytes before a head limit */
            rc = h1_parse_request(edge - i, i, i, &rq);
            assert_true(rc == H1_INVALID || rc == (int)i);
        }
    }
    for (size_t k = 0; k < sizeof(resps) / sizeof(resps[0]); k++) {
        size_t n = strlen(resps[k]);
        for (size_t i = 0; i <= n; i++) {
            memcpy(edge - i, resps[k], i);
            int rc = h1_parse_response(edge - i, i, BIG, &rs);
            assert_true(rc == H1_NEED_MORE || rc == H1_INVALID || rc == (int)i);
        }
    }
    for (size_t k = 0; k < sizeof(bodies) / sizeof(bodies[0]); k++) {
        size_t n = strlen(bodies[k]);
        for (size_t i = 0; i <= n; i++) {
            memcpy(edge - i, bodies[k], i);
            struct h1_chunked c;
            bool done = false;
            h1_chunked_init(&c);
            long r = h1_chunked_scan(&c, edge - i, i, &done);
            assert_int_equal(r, (long)i);
            assert_int_equal(done, i == n);
        }
    }
    /* a complete request ending exactly at the boundary */
    size_t n = strlen(reqs[0]);
    memcpy(edge - n, reqs[0], n);
    assert_int_equal(h1_parse_request(edge - n, n, BIG, &rq), (int)n);
    assert_true(header_is(&rq.headers[1], "X-A", "b"));
    munmap(map, (size_t)page * 2);
}

/* Decoding in place, with the body split at every position. */
static void test_chunked_decode_every_split(void **state)
{
    (void)state;
    const char body[] = "5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nT: v\r\n\r\n";
    size_t len = sizeof(body) - 1;
    for (size_t split = 0; split <= len; split++) {
        struct h1_chunked c;
        h1_chunked_init(&c);
        char buf[128], out[64];
        size_t out_len = 0, data_len = 0;
        bool done = false;
        memcpy(buf, body, split);
        long r = h1_chunked_decode(&c, buf, split, &data_len, &done);
        assert_true(r >= 0);
        memcpy(out, buf, data_len);
        out_len = data_len;
        /* unconsumed bytes go first in the next call, as the proxy does */
        size_t rest = split - (size_t)r;
        memcpy(buf, body + (size_t)r, rest + (len - split));
        r = h1_chunked_decode(&c, buf, rest + (len - split), &data_len, &done);
        assert_int_equal(r, (long)(rest + (len - split)));
        assert_true(done);
        memcpy(out + out_len, buf, data_len);
        out_len += data_len;
        assert_int_equal(out_len, 12);
        assert_memory_equal(out, "hello world!", 12);
    }
    struct h1_chunked c;
    h1_chunked_init(&c);
    char bad[] = "zz\r\n";
    size_t data_len;
    bool done;
    assert_int_equal(h1_chunked_decode(&c, bad, 4, &data_len, &done), H1_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_header_pointers),
        cmocka_unit_test(test_need_more_every_prefix),
        cmocka_unit_test(test_pipelined_bytes_after_head),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_method_and_separators),
        cmocka_unit_test(test_target_bytes),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_target_fragment),
        cmocka_unit_test(test_absolute_form_host),
        cmocka_unit_test(test_request_line_414),
        cmocka_unit_test(test_head_limit_in_request_line_414),
        cmocka_unit_test(test_head_limit_431),
        cmocka_unit_test(test_head_limit_with_trailing_bytes),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_bare_cr),
        cmocka_unit_test(test_control_chars_in_value),
        cmocka_unit_test(test_bad_byte_every_position),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_field_name_errors),
        cmocka_unit_test(test_header_count),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_content_length_invalid),
        cmocka_unit_test(test_content_length_repeated),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_cl_and_te),
        cmocka_unit_test(test_te_on_http10),
        cmocka_unit_test(test_te_unknown_coding_501),
        cmocka_unit_test(test_te_malformed_400),
        cmocka_unit_test(test_te_control_chars_around_value),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_host_values),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_connection_names_field),
        cmocka_unit_test(test_connection_forbidden_names),
        cmocka_unit_test(test_hop_by_hop_skipped),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_token_eq),
        cmocka_unit_test(test_response_basic),
        cmocka_unit_test(test_response_need_more_every_prefix),
        cmocka_unit_test(test_response_no_body_statuses),
        cmocka_unit_test(test_response_no_body_status_framing),
        cmocka_unit_test(test_response_until_close),
        cmocka_unit_test(test_response_chunked_and_keep_alive),
        cmocka_unit_test(test_response_framing_errors),
        cmocka_unit_test(test_response_connect),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_response_head_limit),
        cmocka_unit_test(test_response_101_upgrade),
        cmocka_unit_test(test_chunked_simple_every_split),
        cmocka_unit_test(test_chunked_extensions_and_trailers),
        cmocka_unit_test(test_chunked_stops_at_end),
        cmocka_unit_test(test_chunked_large_chunk_incremental),
        cmocka_unit_test(test_chunked_bad_sizes),
        cmocka_unit_test(test_chunked_bad_extensions),
        cmocka_unit_test(test_chunked_extension_line_limit),
        cmocka_unit_test(test_chunked_missing_crlf_after_data),
        cmocka_unit_test(test_chunked_bad_trailers),
        cmocka_unit_test(test_chunked_trailer_limit),
        cmocka_unit_test(test_chunked_error_is_sticky),
        cmocka_unit_test(test_guard_page_every_prefix),
        cmocka_unit_test(test_chunked_decode_every_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
