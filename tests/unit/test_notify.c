/*
 * Unit tests for src/control/notify.c: the sd_notify(3) datagrams (MAINPID=
 * after an upgrade included), sent to a path socket and to an abstract one,
 * and what happens without or with a malformed $NOTIFY_SOCKET.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/notify.h"

/* Binds a datagram socket at name ("/path" or "@abstract"); returns its fd. */
static int bind_receiver(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sun.sun_path, name, len);
    if (name[0] == '@')
        sun.sun_path[0] = '\0';
    assert_int_equal(bind(fd, (struct sockaddr *)&sun,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void receive(int fd, char *buf, size_t size)
{
    ssize_t n = recv(fd, buf, size - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
}

static void test_path_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/limpet-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/n.sock", dir);
    int fd = bind_receiver(path);
    setenv("NOTIFY_SOCKET", path, 1);

    char buf[512];
    assert_int_equal(notify_send("READY=1"), 1);
    receive(fd, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1");

    notify_ready("serving");
    receive(fd, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1\nSTATUS=serving");

    notify_reloading();
    receive(fd, buf, sizeof(buf));
    unsigned long long usec = 0;
    assert_int_equal(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu\n", &usec), 1);
    assert_true(usec > 0);

    notify_stopping();
    receive(fd, buf, sizeof(buf));
    assert_true(strncmp(buf, "STOPPING=1\n", 11) == 0);

    /* after an upgrade: the sender becomes the service's main process */
    notify_mainpid_ready("running: took over from pid 7");
    receive(fd, buf, sizeof(buf));
    char want[128];
    snprintf(want, sizeof(want), "MAINPID=%ld\nREADY=1\nSTATUS=running: took over from pid 7",
             (long)getpid());
    assert_string_equal(buf, want);

    close(fd);
    unlink(path);
    rmdir(dir);
    unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "@limpet-notify-unit-%d", (int)getpid());
    int fd = bind_receiver(name);
    setenv("NOTIFY_SOCKET", name, 1);
    char buf[64];
    assert_int_equal(notify_send("STOPPING=1"), 1);
    receive(fd, buf, sizeof(buf));
    assert_string_equal(buf, "STOPPING=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_no_or_bad_socket(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(notify_send("READY=1"), 0);        /* not under systemd: nothing */
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(notify_send("READY=1"), -EINVAL);
    char long_path[200];
    memset(long_path, 'x', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    setenv("NOTIFY_SOCKET", long_path, 1);
    assert_int_equal(notify_send("READY=1"), -EINVAL);
    setenv("NOTIFY_SOCKET", "/nonexistent/limpet/notify.sock", 1);
    assert_int_equal(notify_send("READY=1"), -ENOENT);  /* reported, never fatal */
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_no_or_bad_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
