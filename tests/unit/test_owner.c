/*
 * Unit tests for src/control/owner.c (one limpet per listening address) and
 * addr_format() (src/core/addr.c), the canonical address the locks are named
 * after. A lock held by this test process stands in for another limpet: the
 * refusal then names this process's pid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "control/owner.h"
#include "core/addr.h"
#include "core/loop.h"

static struct loop loop;

static int setup(void **state)
{
    (void)state;
    return loop_init(&loop, NULL);
}

static int teardown(void **state)
{
    (void)state;
    owner_release_all();
    loop_fini(&loop);
    return 0;
}

/* A loopback port the kernel just called free. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static struct config *config_on(unsigned port)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"listen\": [{\"address\": \"127.0.0.1:%u\", \"load_balancer\": \"www\"}],"
             " \"pools\": [{\"name\": \"app\", \"origins\": [{\"name\": \"s1\","
             " \"address\": \"127.0.0.1:9\"}]}],"
             " \"load_balancers\": [{\"name\": \"www\", \"default_pools\": [\"app\"]}]}",
             port);
    struct config_errors errs = {0};
    struct config *cfg = config_load_string(json, "t.json", &errs);
    assert_non_null(cfg);
    return cfg;
}

/* Binds the abstract name of key the way a running limpet holds it. */
static int hold(const char *key)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int n = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "limpet/%s", key);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    if (bind(fd, (struct sockaddr *)&sun,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) < 0 ||
        listen(fd, 4) < 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

static void test_addr_format(void **state)
{
    (void)state;
    struct addr a;
    const char *why;
    char buf[64];
    assert_int_equal(addr_parse("127.0.0.1:8080", &a, &why), 0);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "127.0.0.1:8080");
    assert_int_equal(addr_parse("[::1]:80", &a, &why), 0);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[::1]:80");
    /* written differently, the same address: one canonical form */
    assert_int_equal(addr_parse("[2001:0db8:0:0::1]:443", &a, &why), 0);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[2001:db8::1]:443");
    owner_key_listen(&a, buf, sizeof(buf));
    assert_string_equal(buf, "listen/[2001:db8::1]:443");
}

static void test_config_key_follows_the_real_path(void **state)
{
    (void)state;
    char a[OWNER_KEY_MAX], b[OWNER_KEY_MAX], c[OWNER_KEY_MAX];
    owner_key_config("/tmp", a, sizeof(a));
    owner_key_config("/tmp/../tmp/", b, sizeof(b));
    owner_key_config("/", c, sizeof(c));
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strncmp(a, "config/", 7), 0);
    assert_int_equal(strlen(a), 7 + 16);
}

static void test_claim_hold_and_release(void **state)
{
    (void)state;
    unsigned port = free_port();
    struct config *cfg = config_on(port);
    char err[256] = "", key[OWNER_KEY_MAX];
    owner_key_listen(&cfg->listeners[0].addr, key, sizeof(key));
    assert_int_equal(owner_claim(&loop, cfg, true, err, sizeof(err)), 0);
    assert_int_equal(hold(key), -EADDRINUSE);               /* held now */
    assert_int_equal(owner_claim(&loop, cfg, false, err, sizeof(err)), 0); /* already ours */
    owner_sync(NULL);                                        /* no address any more */
    int fd = hold(key);
    assert_true(fd >= 0);                                    /* given up */
    close(fd);
    config_free(cfg);
}

static void test_address_held_by_another_limpet(void **state)
{
    (void)state;
    unsigned port = free_port();
    struct config *cfg = config_on(port);
    char err[256] = "", key[OWNER_KEY_MAX], want[256];
    owner_key_listen(&cfg->listeners[0].addr, key, sizeof(key));
    int fd = hold(key);
    assert_true(fd >= 0);
    assert_int_equal(owner_claim(&loop, cfg, true, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "127.0.0.1:%u is held by a running limpet (pid %ld); "
             "use --upgrade to take over", port, (long)getpid());
    assert_string_equal(err, want);
    assert_int_equal(owner_claim(&loop, cfg, false, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%u: held by a running limpet "
             "(pid %ld)", port, (long)getpid());
    assert_string_equal(err, want);
    close(fd);
    assert_int_equal(owner_claim(&loop, cfg, true, err, sizeof(err)), 0); /* free again */
    owner_release_all();
    config_free(cfg);
}

static void test_port_in_use_by_another_program(void **state)
{
    (void)state;
    /* A listener that would let SO_REUSEPORT sockets of this user join in. */
    int one = 1, squatter = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(squatter, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(squatter, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(squatter, 4), 0);
    assert_int_equal(getsockname(squatter, (struct sockaddr *)&sin, &len), 0);
    unsigned port = ntohs(sin.sin_port);
    struct config *cfg = config_on(port);
    char err[256] = "", want[256], key[OWNER_KEY_MAX];
    assert_int_equal(owner_claim(&loop, cfg, true, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%u: %s", port, strerror(EADDRINUSE));
    assert_string_equal(err, want);
    owner_key_listen(&cfg->listeners[0].addr, key, sizeof(key));
    int fd = hold(key);                                      /* nothing claimed on failure */
    assert_true(fd >= 0);
    close(fd);
    /* a listener that is shut (what a reload does to a removed address) is
     * no longer in the way */
    shutdown(squatter, SHUT_RD);
    assert_int_equal(owner_claim(&loop, cfg, true, err, sizeof(err)), 0);
    owner_release_all();
    close(squatter);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_format),
        cmocka_unit_test(test_config_key_follows_the_real_path),
        cmocka_unit_test(test_claim_hold_and_release),
        cmocka_unit_test(test_address_held_by_another_limpet),
        cmocka_unit_test(test_port_in_use_by_another_program),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
