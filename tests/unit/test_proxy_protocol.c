/*
 * test_proxy_protocol — unit tests for the PROXY protocol v1/v2 parser
 * (src/http/proxy_protocol.c): accepted headers and what they carry, every
 * prefix of a valid header needing more, refusals, LOCAL/UNKNOWN/unsupported
 * families giving no address, TLVs skipped, bytes after the header left alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/proxy_protocol.h"

#define L(lit) lit, (sizeof(lit) - 1)
#define MAX 65536

static struct pp_header h;

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: signature, ver/cmd byte, family byte, then `body` (its length
 * written in the length field). Returns the total length. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t n)
{
    memcpy(out, SIG, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
    memcpy(out + 16, body, n);
    return 16 + n;
}

/* Every proper prefix of buf[0..n) needs more bytes. */
static void assert_prefixes_need_more(const void *buf, size_t n)
{
    struct pp_header tmp;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(pp_parse(buf, k, MAX, &tmp), PP_NEED_MORE);
}

static void test_v1_tcp4(void **state)
{
    (void)state;
    static const char s[] = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\nGET / HTTP/1.1\r\n";
    int n = pp_parse(s, sizeof(s) - 1, MAX, &h);
    assert_int_equal(n, 45);
    assert_int_equal(h.version, 1);
    assert_true(h.has_addr);
    assert_int_equal(h.family, 4);
    const uint8_t src[4] = {192, 0, 2, 7}, dst[4] = {198, 51, 100, 1};
    assert_memory_equal(h.src, src, 4);
    assert_memory_equal(h.dst, dst, 4);
    assert_int_equal(h.src_port, 51234);
    assert_int_equal(h.dst_port, 443);
    assert_prefixes_need_more(s, (size_t)n);
}

static void test_v1_tcp6(void **state)
{
    (void)state;
    static const char s[] = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
    assert_int_equal(pp_parse(L(s), MAX, &h), (int)sizeof(s) - 1);
    assert_true(h.has_addr);
    assert_int_equal(h.family, 6);
    const uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    assert_memory_equal(h.src, src, 16);
    assert_int_equal(h.dst[15], 1);
    assert_int_equal(h.src_port, 0);
    assert_int_equal(h.dst_port, 65535);
}

static void test_v1_unknown_uses_peer(void **state)
{
    (void)state;
    assert_int_equal(pp_parse(L("PROXY UNKNOWN\r\n"), MAX, &h), 15);
    assert_false(h.has_addr);
    assert_int_equal(h.version, 1);
    static const char s[] = "PROXY UNKNOWN ffff::1 whatever 1 2\r\n";
    assert_int_equal(pp_parse(L(s), MAX, &h), (int)sizeof(s) - 1);
    assert_false(h.has_addr);
}

static void test_v1_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\n",        /* bare LF */
        "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443 \r\n",     /* trailing space */
        "PROXY TCP4  192.0.2.7 198.51.100.1 51234 443\r\n",     /* two spaces */
        "PROXY TCP4 192.0.2.7 198.51.100.1 51234\r\n",          /* a field missing */
        "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443 9\r\n",    /* one too many */
        "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",          /* family mismatch */
        "PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
        "PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",          /* bad address */
        "PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n",           /* leading zero */
        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",        /* port too large */
        "PROXY TCP4 192.0.2.7 198.51.100.1 080 2\r\n",          /* leading zero */
        "PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n",
        "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",            /* unknown protocol */
        "PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n",            /* case matters */
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY TCP4 192.0.2.7\r198.51.100.1 1 2\r\n",           /* CR inside */
        "proxy TCP4 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXYTCP4 192.0.2.7 198.51.100.1 1 2\r\n",
        "GET / HTTP/1.1\r\n\r\n",                               /* no header at all */
        "\r\n\r\nPROXY",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = pp_parse(bad[i], strlen(bad[i]), MAX, &h);
        if (rc != PP_INVALID)
            fail_msg("accepted (%d): %s", rc, bad[i]);
    }
    /* a NUL inside an address */
    static const char nul[] = "PROXY TCP4 192.0.2.7\0 198.51.100.1 1 2\r\n";
    assert_int_equal(pp_parse(nul, sizeof(nul) - 1, MAX, &h), PP_INVALID);
}

static void test_v1_length_limit(void **state)
{
    (void)state;
    char s[200] = "PROXY UNKNOWN ";
    memset(s + 14, 'x', sizeof(s) - 14);
    /* no CRLF within 107 bytes: refused once 107 are there, not before */
    assert_int_equal(pp_parse(s, 106, MAX, &h), PP_NEED_MORE);
    assert_int_equal(pp_parse(s, 107, MAX, &h), PP_INVALID);
    /* the longest allowed line */
    memcpy(s + 105, "\r\n", 2);
    assert_int_equal(pp_parse(s, 107, MAX, &h), 107);
    memcpy(s + 105, "x\r\n", 3);
    assert_int_equal(pp_parse(s, 108, MAX, &h), PP_INVALID);
    /* the longest real TCP6 line fits */
    static const char longest[] =
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(sizeof(longest) - 1, 104);
    assert_int_equal(pp_parse(L(longest), MAX, &h), 104);
}

static void test_v2_ipv4_with_tlvs(void **state)
{
    (void)state;
    const uint8_t body[] = {192, 0, 2, 9, 198, 51, 100, 1, 0xC8, 0x2A, 0x01, 0xBB,
                            /* TLVs: ALPN "h2", an AWS-style one */
                            0x01, 0x00, 0x02, 'h', '2', 0xEA, 0x00, 0x03, 1, 2, 3};
    uint8_t buf[128];
    size_t n = v2(buf, 0x21, 0x11, body, sizeof(body));
    memcpy(buf + n, "GET", 3);
    assert_int_equal(pp_parse(buf, n + 3, MAX, &h), (int)n);
    assert_int_equal(h.version, 2);
    assert_true(h.has_addr);
    assert_int_equal(h.family, 4);
    const uint8_t src[4] = {192, 0, 2, 9};
    assert_memory_equal(h.src, src, 4);
    assert_int_equal(h.src_port, 0xC82A);
    assert_int_equal(h.dst_port, 443);
    assert_prefixes_need_more(buf, n);
}

static void test_v2_ipv6(void **state)
{
    (void)state;
    uint8_t body[36] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x42, [31] = 1, [32] = 0x12,
                        [33] = 0x34, [34] = 0, [35] = 80};
    uint8_t buf[64];
    size_t n = v2(buf, 0x21, 0x21, body, sizeof(body));
    assert_int_equal(pp_parse(buf, n, MAX, &h), (int)n);
    assert_true(h.has_addr);
    assert_int_equal(h.family, 6);
    assert_memory_equal(h.src, body, 16);
    assert_int_equal(h.src_port, 0x1234);
    assert_int_equal(h.dst_port, 80);
}

static void test_v2_without_usable_address(void **state)
{
    (void)state;
    uint8_t body[216] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t buf[256];
    /* LOCAL: the balancer's own connection (any family, any length) */
    size_t n = v2(buf, 0x20, 0x11, body, 12);
    assert_int_equal(pp_parse(buf, n, MAX, &h), (int)n);
    assert_false(h.has_addr);
    n = v2(buf, 0x20, 0x00, body, 0);
    assert_int_equal(pp_parse(buf, n, MAX, &h), 16);
    assert_false(h.has_addr);
    /* PROXY with UNSPEC, UNIX, or a datagram transport: peer address */
    n = v2(buf, 0x21, 0x00, body, 0);
    assert_int_equal(pp_parse(buf, n, MAX, &h), 16);
    assert_false(h.has_addr);
    n = v2(buf, 0x21, 0x31, body, 216);
    assert_int_equal(pp_parse(buf, n, MAX, &h), (int)n);
    assert_false(h.has_addr);
    n = v2(buf, 0x21, 0x12, body, 12);
    assert_int_equal(pp_parse(buf, n, MAX, &h), (int)n);
    assert_false(h.has_addr);
}

static void test_v2_refusals(void **state)
{
    (void)state;
    uint8_t body[40] = {0};
    uint8_t buf[128];
    size_t n;
    n = v2(buf, 0x11, 0x11, body, 12); /* version 1 in a v2 header */
    assert_int_equal(pp_parse(buf, n, MAX, &h), PP_INVALID);
    assert_int_equal(pp_parse(buf, 13, MAX, &h), PP_INVALID); /* decided from byte 13 on */
    n = v2(buf, 0x22, 0x11, body, 12); /* unknown command */
    assert_int_equal(pp_parse(buf, n, MAX, &h), PP_INVALID);
    n = v2(buf, 0x21, 0x41, body, 12); /* unknown family */
    assert_int_equal(pp_parse(buf, n, MAX, &h), PP_INVALID);
    n = v2(buf, 0x21, 0x13, body, 12); /* unknown transport */
    assert_int_equal(pp_parse(buf, n, MAX, &h), PP_INVALID);
    n = v2(buf, 0x21, 0x11, body, 11); /* IPv4 block too short */
    assert_int_equal(pp_parse(buf, n, MAX, &h), PP_INVALID);
    n = v2(buf, 0x21, 0x21, body, 35); /* IPv6 block too short */
    assert_int_equal(pp_parse(buf, n, MAX, &h), PP_INVALID);
    n = v2(buf, 0x21, 0x31, body, 40); /* UNIX block too short */
    assert_int_equal(pp_parse(buf, n, MAX, &h), PP_INVALID);
    /* a damaged signature, at any byte */
    for (size_t i = 0; i < 12; i++) {
        n = v2(buf, 0x21, 0x11, body, 12);
        buf[i] ^= 0x40;
        if (pp_parse(buf, n, MAX, &h) != PP_INVALID)
            fail_msg("signature damaged at byte %zu accepted", i);
    }
    /* longer than the caller can hold: refused at once, not waited for */
    n = v2(buf, 0x21, 0x11, body, 12);
    buf[14] = 0xFF;
    buf[15] = 0xFF;
    assert_int_equal(pp_parse(buf, 16, 4096, &h), PP_INVALID);
    assert_int_equal(pp_parse(buf, 16, 65535 + 16, &h), PP_NEED_MORE);
}

static void test_empty_and_other_protocols(void **state)
{
    (void)state;
    assert_int_equal(pp_parse("", 0, MAX, &h), PP_NEED_MORE);
    assert_int_equal(pp_parse("P", 1, MAX, &h), PP_NEED_MORE);
    assert_int_equal(pp_parse("\r", 1, MAX, &h), PP_NEED_MORE);
    assert_int_equal(pp_parse("G", 1, MAX, &h), PP_INVALID);
    assert_int_equal(pp_parse("\x16\x03\x01", 3, MAX, &h), PP_INVALID); /* a TLS hello */
    assert_int_equal(pp_parse("PRX", 3, MAX, &h), PP_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown_uses_peer),
        cmocka_unit_test(test_v1_refusals),
        cmocka_unit_test(test_v1_length_limit),
        cmocka_unit_test(test_v2_ipv4_with_tlvs),
        cmocka_unit_test(test_v2_ipv6),
        cmocka_unit_test(test_v2_without_usable_address),
        cmocka_unit_test(test_v2_refusals),
        cmocka_unit_test(test_empty_and_other_protocols),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
