/* Unit tests for core/addr: parsing and formatting socket addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>

#include "core/addr.h"

/* ip_text formats what inet_ntop does, for every width of IPv4 octet. */
static void test_ip_text_ipv4(void **state)
{
    (void)state;
    static const char *cases[] = {"0.0.0.0", "127.0.0.1", "9.10.99.100", "255.255.255.255",
                                  "192.0.2.7", "10.200.3.45"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char bytes[4];
        assert_int_equal(inet_pton(AF_INET, cases[i], bytes), 1);
        char buf[INET6_ADDRSTRLEN];
        memset(buf, 'x', sizeof(buf));
        size_t n = ip_text(4, bytes, buf);
        assert_string_equal(buf, cases[i]);
        assert_int_equal(n, strlen(cases[i]));
    }
}

static void test_ip_text_ipv6(void **state)
{
    (void)state;
    unsigned char bytes[16];
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::5", bytes), 1);
    assert_int_equal(ip_text(6, bytes, buf), strlen("2001:db8::5"));
    assert_string_equal(buf, "2001:db8::5");
    /* the longest form fits the buffer */
    assert_int_equal(inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", bytes), 1);
    size_t n = ip_text(6, bytes, buf);
    assert_string_equal(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_int_equal(n, strlen(buf));
}

static void test_parse_and_format(void **state)
{
    (void)state;
    struct addr a;
    const char *why = NULL;
    char buf[64];
    assert_int_equal(addr_parse("127.0.0.1:8080", &a, &why), 0);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "127.0.0.1:8080");
    assert_int_equal(addr_parse("[0:0::1]:443", &a, &why), 0);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[::1]:443");
    assert_true(addr_is_loopback(&a));
    assert_int_equal(addr_parse("127.0.0.1", &a, &why), -1);
    assert_non_null(why);
    assert_int_equal(addr_parse("127.0.0.1:99999", &a, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_text_ipv4),
        cmocka_unit_test(test_ip_text_ipv6),
        cmocka_unit_test(test_parse_and_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
