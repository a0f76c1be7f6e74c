/* Unit tests for core/uring: plain sockets driven through io_uring with the
 * edge-triggered epoll events emulated for the owner's io_watch — reads
 * (small, larger than a receive buffer, EOF, reset), queued and direct
 * writes, shutdown and release after a queued send (also on a full socket),
 * connects that fail or succeed, receives starved of buffers, running the
 * loop again after a stop, an edge after a read that took all it asked for,
 * owners that stop reading (on bulk input or small pieces) leaving the pool's
 * buffers to others, and no leaks.
 * Every test runs twice: with the receives this kernel allows (multishot,
 * capped, where it can cap them) and with single receives.
 * Every wait is bounded by a guard timer; a test skips when this kernel has
 * no usable io_uring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<sanitizer/lsan_interface.h>) && defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define HAVE_LSAN 1
#endif
#endif

#include "core/loop.h"
#include "core/uring.h"

#define GUARD_MS 2000
#define EV_MAX 64

/* ---- harness ---- */

/* One watched connection: the io_watch first, so the callback finds the rest. */
struct conn {
    struct io_watch w;
    struct ur_conn *c;
    int fd;
    uint32_t ev[EV_MAX];
    int nev;
    void (*on_event)(struct loop *loop, struct conn *k, uint32_t events);
    /* free for each test */
    char *buf;
    size_t len, cap;
    int state;
    bool eof, released;
};

static void conn_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    struct conn *k = (struct conn *)w;
    if (k->nev < EV_MAX)
        k->ev[k->nev] = events;
    k->nev++;
    if (k->on_event)
        k->on_event(loop, k, events);
}

static int conn_attach(struct loop *loop, struct conn *k, int fd, bool connecting,
                       void (*on_event)(struct loop *, struct conn *, uint32_t))
{
    memset(k, 0, sizeof(*k));
    k->fd = fd;
    k->on_event = on_event;
    return ur_attach(loop->ring, &k->c, &k->w, fd, conn_cb, connecting);
}

static uint32_t conn_all_events(const struct conn *k)
{
    uint32_t all = 0;
    for (int i = 0; i < k->nev && i < EV_MAX; i++)
        all |= k->ev[i];
    return all;
}

static int conn_count(const struct conn *k, uint32_t bits)
{
    int n = 0;
    for (int i = 0; i < k->nev && i < EV_MAX; i++)
        if ((k->ev[i] & bits) == bits)
            n++;
    return n;
}

static uint32_t conn_last_event(const struct conn *k)
{
    assert_true(k->nev > 0 && k->nev <= EV_MAX);
    return k->ev[k->nev - 1];
}

/* Appends to k->buf, growing it. */
static void conn_append(struct conn *k, const void *p, size_t n)
{
    if (k->len + n > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < k->len + n)
            cap *= 2;
        k->buf = test_realloc(k->buf, cap);
        assert_non_null(k->buf);
        k->cap = cap;
    }
    memcpy(k->buf + k->len, p, n);
    k->len += n;
}

/* Reads what is there until EAGAIN or EOF into k->buf, in chunks of `chunk`.
 * Checks the contract on the way: EAGAIN only with ur_drained true. */
static void conn_read_all(struct conn *k, size_t chunk)
{
    char tmp[65536];
    assert_true(chunk <= sizeof(tmp));
    for (;;) {
        errno = 0;
        ssize_t n = ur_recv(k->c, tmp, chunk);
        if (n > 0) {
            conn_append(k, tmp, (size_t)n);
            continue;
        }
        if (n == 0) {
            k->eof = true;
            assert_true(ur_has_pending(k->c)); /* the end stays to be read */
            assert_false(ur_drained(k->c));
            return;
        }
        assert_int_equal(errno, EAGAIN);
        assert_true(ur_drained(k->c)); /* an edge will come */
        return;
    }
}

static bool guard_fired;

static void guard_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    guard_fired = true;
    loop->stop = true;
}

/* Runs the loop until something sets loop->stop, for at most ms. Returns
 * true when it stopped on its own (not the guard). */
static bool run_bounded(struct loop *loop, unsigned ms)
{
    struct timer guard;
    timer_init(&guard, guard_cb);
    guard_fired = false;
    loop->stop = false;
    loop->now_ms = clock_ms();
    assert_int_equal(timer_arm(loop, &guard, ms), 0);
    loop_run(loop);
    timer_cancel(loop, &guard);
    return !guard_fired;
}

/* The test's loop and descriptors live outside its frame, so that the
 * teardown can close them when an assertion ended the test early. */
static struct loop the_loop;
static bool loop_open;
static int fds[512];
static int nfds;

static void track_fd(int fd)
{
    assert_true(fd >= 0);
    assert_true(nfds < (int)(sizeof(fds) / sizeof(fds[0])));
    fds[nfds++] = fd;
}

/* The descriptor is closed already (by the ring) or now. */
static void forget_fd(int fd)
{
    for (int i = 0; i < nfds; i++)
        if (fds[i] == fd) {
            fds[i] = fds[--nfds];
            return;
        }
}

static void close_fd(int fd)
{
    forget_fd(fd);
    close(fd);
}

/* The second run of every test: receives one at a time, as on kernels that
 * cannot cap multishot receives. */
static bool single_receives;

/* A loop with a ring, or the test is skipped. */
static struct loop *open_ring(void)
{
    assert_false(loop_open);
    assert_int_equal(loop_init(&the_loop, NULL), 0);
    int rc = uring_open(&the_loop);
    if (rc < 0) {
        loop_fini(&the_loop);
        print_message("io_uring unavailable (%s): skipped\n", strerror(-rc));
        skip();
    }
    assert_non_null(the_loop.ring);
    if (single_receives)
        uring_single_receives(&the_loop);
    loop_open = true;
    return &the_loop;
}

static void close_ring(void)
{
    loop_fini(&the_loop);
    loop_open = false;
}

static int teardown(void **state)
{
    (void)state;
    if (loop_open)
        close_ring();
    while (nfds > 0)
        close(fds[--nfds]);
    return 0;
}

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    track_fd(sv[0]);
    track_fd(sv[1]);
}

static void fill_pattern(char *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (char)(x >> 16);
    }
}

/* Writes all of p to a non-blocking fd now (nobody reads yet: it must fit
 * in the socket's buffer). */
static void write_all_now(int fd, const void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = write(fd, (const char *)p + off, n - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
}

/* Reads what a non-blocking fd holds now into out (up to cap). Returns the
 * count; *eof says whether the end of the stream was reached. */
static size_t read_now(int fd, char *out, size_t cap, bool *eof)
{
    size_t off = 0;
    *eof = false;
    while (off < cap) {
        ssize_t r = read(fd, out + off, cap - off);
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        if (r == 0)
            *eof = true;
        else
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        break;
    }
    return off;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* The ring closed the descriptor (a released connection's). */
static void closed_by_ring(int fd)
{
    assert_false(fd_is_open(fd));
    forget_fd(fd);
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* ---- 1. data arrives: EPOLLIN, exact bytes, EAGAIN, another edge ---- */

static ssize_t t1_n1, t1_n2;
static int t1_errno2;
static bool t1_drained, t1_pending_before, t1_pending_after;
static char t1_buf[256];

static void t1_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!(events & EPOLLIN))
        return;
    t1_pending_before = ur_has_pending(k->c);
    memset(t1_buf, 0, sizeof(t1_buf));
    t1_n1 = ur_recv(k->c, t1_buf, sizeof(t1_buf));
    errno = 0;
    char more[16];
    t1_n2 = ur_recv(k->c, more, sizeof(more));
    t1_errno2 = errno;
    t1_drained = ur_drained(k->c);
    t1_pending_after = ur_has_pending(k->c);
    loop->stop = true;
}

static void test_data_arrives_with_epollin_edges(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t1_on), 0);
    assert_int_equal(write(sv[1], "hello", 5), 5);

    assert_true(run_bounded(loop, GUARD_MS));
    assert_true(conn_count(&k, EPOLLIN) >= 1);
    assert_false(conn_all_events(&k) & (EPOLLERR | EPOLLHUP | EPOLLRDHUP));
    assert_true(t1_pending_before);
    assert_int_equal(t1_n1, 5);
    assert_memory_equal(t1_buf, "hello", 5);
    assert_int_equal(t1_n2, -1);
    assert_int_equal(t1_errno2, EAGAIN);
    assert_true(t1_drained);
    assert_false(t1_pending_after);

    /* more data later: another edge */
    int edges = conn_count(&k, EPOLLIN);
    assert_int_equal(write(sv[1], "world!", 6), 6);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(conn_count(&k, EPOLLIN), edges + 1);
    assert_int_equal(t1_n1, 6);
    assert_memory_equal(t1_buf, "world!", 6);
    assert_int_equal(t1_n2, -1);
    assert_int_equal(t1_errno2, EAGAIN);
    assert_true(t1_drained);

    /* nothing more written: no edge (the guard ends the run) */
    edges = conn_count(&k, EPOLLIN);
    assert_false(run_bounded(loop, 100));
    assert_int_equal(conn_count(&k, EPOLLIN), edges);

    close_ring();
    close_fd(sv[0]);
    close_fd(sv[1]);
}

/* ---- 2. reads larger than one receive buffer ---- */

#define BIG_READ (100 * 1024 + 7)

static size_t t2_chunk;
static size_t t2_total;

static void t2_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!(events & EPOLLIN))
        return;
    conn_read_all(k, t2_chunk);
    if (k->len >= t2_total || k->eof)
        loop->stop = true;
}

/* Everything written before the loop runs: the first receive fills its
 * buffer, the rest is read directly; big and small reader chunks. */
static void test_big_read_written_before(void **state)
{
    (void)state;
    static const size_t chunks[] = {65536, 4093, 16384, 1};
    char *src = test_malloc(BIG_READ);
    assert_non_null(src);
    for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
        struct loop *loop = open_ring();
        int sv[2];
        make_pair(sv);
        int sz = 256 * 1024;
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        fill_pattern(src, BIG_READ, (unsigned)ci + 1);
        write_all_now(sv[1], src, BIG_READ);
        struct conn k;
        t2_chunk = chunks[ci];
        t2_total = BIG_READ;
        assert_int_equal(conn_attach(loop, &k, sv[0], false, t2_on), 0);
        assert_true(run_bounded(loop, GUARD_MS * 2));
        assert_int_equal(k.len, BIG_READ);
        assert_memory_equal(k.buf, src, BIG_READ);
        assert_false(k.eof);
        /* then EOF */
        close_fd(sv[1]);
        t2_total = SIZE_MAX;
        assert_true(run_bounded(loop, GUARD_MS));
        assert_true(k.eof);
        assert_int_equal(k.len, BIG_READ);
        assert_int_equal(ur_recv(k.c, src, 10), 0);
        close_ring();
        close_fd(sv[0]);
        test_free(k.buf);
    }
    test_free(src);
}

/* The peer writes in odd-sized pieces from a timer while the loop runs. */
struct feeder {
    struct timer t;
    int fd;
    const char *src;
    size_t off, total;
    unsigned step;
};

static void feeder_cb(struct loop *loop, struct timer *t)
{
    struct feeder *f = (struct feeder *)t;
    static const size_t sizes[] = {1, 7000, 16384, 16385, 333, 40000, 12, 9999};
    size_t want = sizes[f->step++ % (sizeof(sizes) / sizeof(sizes[0]))];
    if (want > f->total - f->off)
        want = f->total - f->off;
    ssize_t r = write(f->fd, f->src + f->off, want);
    if (r > 0)
        f->off += (size_t)r;
    else
        assert_true(errno == EAGAIN);
    if (f->off < f->total)
        timer_arm(loop, t, 1);
}

static void test_big_read_written_in_pieces(void **state)
{
    (void)state;
    static const size_t chunks[] = {4093, 65536};
    char *src = test_malloc(BIG_READ);
    assert_non_null(src);
    for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
        struct loop *loop = open_ring();
        int sv[2];
        make_pair(sv);
        fill_pattern(src, BIG_READ, 77 + (unsigned)ci);
        struct conn k;
        t2_chunk = chunks[ci];
        t2_total = BIG_READ;
        assert_int_equal(conn_attach(loop, &k, sv[0], false, t2_on), 0);
        struct feeder f = {.fd = sv[1], .src = src, .total = BIG_READ};
        timer_init(&f.t, feeder_cb);
        timer_arm(loop, &f.t, 1);
        assert_true(run_bounded(loop, GUARD_MS * 2));
        timer_cancel(loop, &f.t);
        assert_int_equal(f.off, BIG_READ);
        assert_int_equal(k.len, BIG_READ);
        assert_memory_equal(k.buf, src, BIG_READ);
        assert_true(conn_count(&k, EPOLLIN) >= 2); /* it came in several edges */
        close_ring();
        close_fd(sv[0]);
        close_fd(sv[1]);
        test_free(k.buf);
    }
    test_free(src);
}

/* ---- 3. a queued write: total returned, EAGAIN while in flight, EPOLLOUT ---- */

static char t3_a[100], t3_b[16000], t3_c[284]; /* 16384 together: the largest queued */
static ssize_t t3_r1, t3_r2, t3_r3;
static int t3_errno2;
static int t3_out_before_write;

static void t3_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!(events & EPOLLOUT))
        return;
    if (k->state == 0) { /* the registration edge */
        k->state = 1;
        struct iovec iov[3] = {{t3_a, sizeof(t3_a)}, {t3_b, sizeof(t3_b)}, {t3_c, sizeof(t3_c)}};
        t3_r1 = ur_writev(k->c, iov, 3, false);
        /* the bytes were copied: changing them now does not change what is sent */
        memset(t3_b, 'Z', sizeof(t3_b));
        struct iovec again = {(void *)"more", 4};
        errno = 0;
        t3_r2 = ur_writev(k->c, &again, 1, false);
        t3_errno2 = errno;
        t3_out_before_write = conn_count(k, EPOLLOUT);
    } else if (k->state == 1) { /* the send completed */
        k->state = 2;
        struct iovec tail = {(void *)"tail", 4};
        t3_r3 = ur_writev(k->c, &tail, 1, false); /* takes a write again */
    } else {
        loop->stop = true;
    }
}

static void test_queued_writev(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    int sz = 256 * 1024;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    fill_pattern(t3_a, sizeof(t3_a), 1);
    fill_pattern(t3_b, sizeof(t3_b), 2);
    fill_pattern(t3_c, sizeof(t3_c), 3);
    char expect[16384 + 4];
    memcpy(expect, t3_a, sizeof(t3_a));
    memcpy(expect + sizeof(t3_a), t3_b, sizeof(t3_b));
    memcpy(expect + sizeof(t3_a) + sizeof(t3_b), t3_c, sizeof(t3_c));
    memcpy(expect + 16384, "tail", 4);

    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t3_on), 0);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(k.state, 2);
    assert_int_equal(t3_r1, 16384);
    assert_int_equal(t3_r2, -1);
    assert_int_equal(t3_errno2, EAGAIN);
    assert_int_equal(t3_out_before_write, 1);
    assert_int_equal(t3_r3, 4);
    assert_int_equal(conn_count(&k, EPOLLOUT), 3);
    assert_false(conn_all_events(&k) & (EPOLLERR | EPOLLHUP));

    char got[sizeof(expect) + 64];
    bool eof;
    size_t n = read_now(sv[1], got, sizeof(got), &eof);
    assert_false(eof);
    assert_int_equal(n, sizeof(expect)); /* exactly: "more" was refused */
    assert_memory_equal(got, expect, sizeof(expect));

    close_ring();
    close_fd(sv[0]);
    close_fd(sv[1]);
}

/* ---- 4. a large write in mixed pieces, read concurrently by a watched peer ---- */

#define BIG_WRITE (1024 * 1024)

static char *t4_src;
static size_t t4_off;
static unsigned t4_step;
static int t4_short, t4_eagain;

static void t4_write_more(struct conn *k)
{
    /* queued (<= 16 KiB) and direct (> 16 KiB) writes, one or two iovecs */
    static const size_t sizes[] = {16384, 100, 40000, 16385, 7, 200000, 5000, 70001, 1};
    while (t4_off < BIG_WRITE) {
        size_t want = sizes[t4_step % (sizeof(sizes) / sizeof(sizes[0]))];
        if (want > BIG_WRITE - t4_off)
            want = BIG_WRITE - t4_off;
        struct iovec iov[2];
        int n = 1;
        iov[0].iov_base = t4_src + t4_off;
        iov[0].iov_len = want;
        if (want > 2 && t4_step % 2) { /* split across two iovecs */
            iov[0].iov_len = want / 3;
            iov[1].iov_base = t4_src + t4_off + want / 3;
            iov[1].iov_len = want - want / 3;
            n = 2;
        }
        errno = 0;
        ssize_t r = ur_writev(k->c, iov, n, false);
        if (r < 0) {
            assert_int_equal(errno, EAGAIN);
            t4_eagain++;
            return; /* EPOLLOUT comes */
        }
        assert_true(r > 0 && (size_t)r <= want);
        t4_off += (size_t)r;
        t4_step++;
        if ((size_t)r < want) {
            t4_short++;
            return; /* the socket is full: EPOLLOUT comes */
        }
    }
}

static void t4_writer_on(struct loop *loop, struct conn *k, uint32_t events)
{
    (void)loop;
    assert_false(events & EPOLLERR);
    if (events & EPOLLOUT)
        t4_write_more(k);
}

static void t4_reader_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!(events & EPOLLIN))
        return;
    conn_read_all(k, 8192);
    if (k->len >= BIG_WRITE)
        loop->stop = true;
}

static void test_large_write_in_order(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    t4_src = test_malloc(BIG_WRITE);
    assert_non_null(t4_src);
    fill_pattern(t4_src, BIG_WRITE, 4);
    t4_off = 0;
    t4_step = 0;
    t4_short = t4_eagain = 0;
    struct conn w, r;
    assert_int_equal(conn_attach(loop, &w, sv[0], false, t4_writer_on), 0);
    assert_int_equal(conn_attach(loop, &r, sv[1], false, t4_reader_on), 0);
    assert_true(run_bounded(loop, GUARD_MS * 3));
    assert_int_equal(t4_off, BIG_WRITE);
    assert_int_equal(r.len, BIG_WRITE);
    assert_memory_equal(r.buf, t4_src, BIG_WRITE);
    /* writes had to wait for EPOLLOUT (a queued send in flight, a full socket) */
    assert_true(t4_short + t4_eagain > 0);
    assert_false(conn_all_events(&w) & (EPOLLERR | EPOLLHUP));
    close_ring();
    close_fd(sv[0]);
    close_fd(sv[1]);
    test_free(r.buf);
    test_free(t4_src);
}

/* ---- 5. EOF: EPOLLIN|EPOLLRDHUP, ur_recv returns 0 ---- */

static void t5_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!(events & EPOLLIN))
        return;
    conn_read_all(k, 1024);
    if (k->eof)
        loop->stop = true;
}

static void test_eof(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    /* a: the peer closes without a byte */
    int sv[2];
    make_pair(sv);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t5_on), 0);
    close_fd(sv[1]);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_true(k.eof);
    assert_int_equal(k.len, 0);
    assert_int_equal(conn_count(&k, EPOLLIN | EPOLLRDHUP), 1);
    char c;
    assert_int_equal(ur_recv(k.c, &c, 1), 0); /* stays at the end */
    ur_release(k.c);
    forget_fd(sv[0]);

    /* b: bytes, then the end (while the loop runs) */
    make_pair(sv);
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t5_on), 0);
    assert_int_equal(write(sv[1], "last words", 10), 10);
    assert_false(run_bounded(loop, 100)); /* no end yet: the guard stops it */
    assert_false(k.eof);
    assert_int_equal(k.len, 10);
    assert_memory_equal(k.buf, "last words", 10);
    assert_int_equal(conn_count(&k, EPOLLRDHUP), 0);
    close_fd(sv[1]);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_true(k.eof);
    assert_int_equal(k.len, 10);
    assert_true(conn_last_event(&k) & EPOLLIN);
    assert_true(conn_last_event(&k) & EPOLLRDHUP);
    assert_int_equal(ur_recv(k.c, &c, 1), 0);
    ur_release(k.c);
    close_ring();
    closed_by_ring(sv[0]);
    test_free(k.buf);
}

/* ---- 6. release with a queued send: the bytes go out, then the close ---- */

#define T6_LEN 12000

static char t6_src[T6_LEN];
static ssize_t t6_wr;
static bool t6_stop_now;

static void t6_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!(events & EPOLLOUT) || k->released)
        return;
    struct iovec iov = {t6_src, T6_LEN};
    t6_wr = ur_writev(k->c, &iov, 1, false);
    ur_release(k->c); /* same callback: the send is in flight */
    k->released = true;
    if (t6_stop_now)
        loop->stop = true;
}

/* The peer side, polled from a timer: stops the loop at the end of stream. */
struct peer_reader {
    struct timer t;
    int fd;
    char buf[1024 * 1024];
    size_t len;
    size_t per_tick; /* read at most this much a tick (0: all there is) */
    bool eof;
    void (*at_eof)(struct loop *loop, struct peer_reader *p);
};

static void peer_reader_cb(struct loop *loop, struct timer *t)
{
    struct peer_reader *p = (struct peer_reader *)t;
    bool eof;
    size_t room = sizeof(p->buf) - p->len;
    if (p->per_tick && room > p->per_tick)
        room = p->per_tick;
    p->len += read_now(p->fd, p->buf + p->len, room, &eof);
    if (eof && !p->eof) {
        p->eof = true;
        if (p->at_eof)
            p->at_eof(loop, p);
        else
            loop->stop = true;
    }
    if (!loop->stop)
        timer_arm(loop, t, 2);
}

static void test_release_sends_queued_then_closes(void **state)
{
    (void)state;
    fill_pattern(t6_src, T6_LEN, 6);
    for (int variant = 0; variant < 2; variant++) {
        /* 0: the loop keeps running; 1: it stops in the same callback (drain) */
        struct loop *loop = open_ring();
        int sv[2];
        make_pair(sv);
        /* unread input sits in the connection when it is released */
        assert_int_equal(write(sv[1], "unread", 6), 6);
        struct conn k;
        t6_stop_now = variant == 1;
        t6_wr = 0;
        assert_int_equal(conn_attach(loop, &k, sv[0], false, t6_on), 0);
        static struct peer_reader p;
        memset(&p, 0, sizeof(p));
        p.fd = sv[1];
        timer_init(&p.t, peer_reader_cb);
        if (variant == 0)
            timer_arm(loop, &p.t, 2);
        assert_true(run_bounded(loop, GUARD_MS));
        timer_cancel(loop, &p.t);
        assert_true(k.released);
        assert_int_equal(t6_wr, T6_LEN);
        if (variant == 1) {
            bool eof;
            p.len = read_now(sv[1], p.buf, sizeof(p.buf), &eof);
            p.eof = eof;
        }
        assert_int_equal(p.len, T6_LEN);
        assert_memory_equal(p.buf, t6_src, T6_LEN);
        assert_true(p.eof);
        closed_by_ring(sv[0]);
        close_ring();
        close_fd(sv[1]);
    }
}

/* Released before anything went out, and before the loop turned: the ring
 * closes the descriptor (loop_fini at the latest) and nothing leaks. */
static void test_release_idle_closes(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, NULL), 0);
    ur_release(k.c);
    assert_false(run_bounded(loop, 100)); /* nothing to do: the guard stops it */
    assert_int_equal(k.nev, 0);            /* no callback after release */
    closed_by_ring(sv[0]);
    bool eof;
    char c;
    assert_int_equal(read_now(sv[1], &c, 1, &eof), 0);
    assert_true(eof);
    close_ring();
    close_fd(sv[1]);
}

/* ---- 7. shutdown after a queued write: bytes, then EOF; reading goes on ---- */

static ssize_t t7_wr;

static void t7_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if ((events & EPOLLOUT) && k->state == 0) {
        k->state = 1;
        struct iovec iov = {t6_src, T6_LEN};
        t7_wr = ur_writev(k->c, &iov, 1, false);
        ur_shutdown(k->c); /* the send is still in flight */
    }
    if (events & EPOLLIN) {
        conn_read_all(k, 1024);
        if (k->len >= 10)
            loop->stop = true;
    }
}

static void t7_peer_eof(struct loop *loop, struct peer_reader *p)
{
    (void)loop;
    /* the conn's write side is shut; its read side still takes bytes */
    assert_int_equal(write(p->fd, "still here", 10), 10);
}

static void test_shutdown_after_queued_write(void **state)
{
    (void)state;
    fill_pattern(t6_src, T6_LEN, 7);
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    struct conn k;
    t7_wr = 0;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t7_on), 0);
    static struct peer_reader p;
    memset(&p, 0, sizeof(p));
    p.fd = sv[1];
    p.at_eof = t7_peer_eof;
    timer_init(&p.t, peer_reader_cb);
    timer_arm(loop, &p.t, 2);
    assert_true(run_bounded(loop, GUARD_MS));
    timer_cancel(loop, &p.t);
    assert_int_equal(t7_wr, T6_LEN);
    assert_true(p.eof);
    assert_int_equal(p.len, T6_LEN); /* all of it before the end */
    assert_memory_equal(p.buf, t6_src, T6_LEN);
    assert_int_equal(k.len, 10);
    assert_memory_equal(k.buf, "still here", 10);
    assert_false(k.eof);
    assert_true(fd_is_open(sv[0]));
    assert_false(conn_all_events(&k) & EPOLLERR);
    close_ring();
    close_fd(sv[0]);
    close_fd(sv[1]);
    test_free(k.buf);
}

/* With nothing in flight the write side is shut at once. */
static void test_shutdown_idle(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t5_on), 0);
    ur_shutdown(k.c);
    bool eof;
    char c;
    assert_int_equal(read_now(sv[1], &c, 1, &eof), 0);
    assert_true(eof);
    assert_int_equal(write(sv[1], "x", 1), 1);
    close_fd(sv[1]);
    assert_true(run_bounded(loop, GUARD_MS)); /* t5_on stops at the end */
    assert_int_equal(k.len, 1);
    assert_int_equal(k.buf[0], 'x');
    assert_true(k.eof);
    close_ring();
    close_fd(sv[0]);
    test_free(k.buf);
}

/* ---- a queued write on a full socket goes out as the peer reads ---- */

static void stop_on_first_out(struct loop *loop, struct conn *k, uint32_t events)
{
    if ((events & EPOLLOUT) && k->state++ == 0)
        loop->stop = true;
}

/* The socket is full when a write is queued; the peer then reads slowly (the
 * send may go out in parts). A shutdown (variant 0) or a release (variant 1)
 * asked for at once must still come after the last byte. */
static void test_queued_write_on_full_socket(void **state)
{
    (void)state;
    static char tail[16384];
    fill_pattern(tail, sizeof(tail), 14);
    for (int variant = 0; variant < 2; variant++) {
        struct loop *loop = open_ring();
        int sv[2];
        make_pair(sv);
        struct conn k;
        assert_int_equal(conn_attach(loop, &k, sv[0], false, stop_on_first_out), 0);
        assert_true(run_bounded(loop, GUARD_MS)); /* the registration edge */
        char junk[4096];
        memset(junk, 'j', sizeof(junk));
        size_t filled = 0;
        for (;;) {
            ssize_t r = write(sv[0], junk, sizeof(junk));
            if (r < 0)
                break;
            filled += (size_t)r;
        }
        assert_int_equal(errno, EAGAIN);
        struct iovec iov = {tail, sizeof(tail)};
        assert_int_equal(ur_writev(k.c, &iov, 1, false), (ssize_t)sizeof(tail));
        if (variant == 0)
            ur_shutdown(k.c);
        else
            ur_release(k.c);
        static struct peer_reader p;
        memset(&p, 0, sizeof(p));
        p.fd = sv[1];
        p.per_tick = 3000;
        timer_init(&p.t, peer_reader_cb);
        timer_arm(loop, &p.t, 1);
        assert_true(filled + sizeof(tail) < sizeof(p.buf));
        assert_true(run_bounded(loop, GUARD_MS * 3)); /* stops at the peer's EOF */
        timer_cancel(loop, &p.t);
        assert_true(p.eof);
        assert_int_equal(p.len, filled + sizeof(tail));
        for (size_t i = 0; i < filled; i++)
            if (p.buf[i] != 'j')
                fail_msg("byte %zu of the filler is %d", i, p.buf[i]);
        assert_memory_equal(p.buf + filled, tail, sizeof(tail));
        if (variant == 0) {
            assert_int_equal(conn_count(&k, EPOLLOUT), 2); /* registration, send done */
            assert_false(conn_all_events(&k) & EPOLLERR);
            assert_true(fd_is_open(sv[0]));
        } else {
            assert_int_equal(conn_count(&k, EPOLLOUT), 1); /* none after release */
            closed_by_ring(sv[0]);
        }
        close_ring();
        if (variant == 0)
            close_fd(sv[0]);
        close_fd(sv[1]);
    }
}

/* ---- 8. a refused connect: EPOLLOUT with an error, SO_ERROR kept ---- */

static int listen_loopback(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    track_fd(fd);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A non-blocking connect to 127.0.0.1:port; returns connect's errno (0 when
 * it completed at once). */
static int connect_loopback(int *out, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    track_fd(fd);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    *out = fd;
    return rc == 0 ? 0 : errno;
}

static int t8_so_error = -1;
static int t8_sockopt_rc = -1;

static void t8_on(struct loop *loop, struct conn *k, uint32_t events)
{
    (void)events;
    if (k->state++ > 0)
        return;
    socklen_t sl = sizeof(t8_so_error);
    t8_sockopt_rc = getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &t8_so_error, &sl);
    loop->stop = true;
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    uint16_t port;
    close_fd(listen_loopback(&port)); /* nobody listens there now */
    int fd;
    int err = connect_loopback(&fd, port);
    if (err == ECONNREFUSED) { /* refused at once: nothing for the ring to see */
        close_fd(fd);
        close_ring();
        skip();
    }
    assert_int_equal(err, EINPROGRESS);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, fd, true, t8_on), 0);
    /* while connecting nothing reads the socket */
    char c;
    errno = 0;
    assert_int_equal(ur_recv(k.c, &c, 1), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(ur_drained(k.c));
    struct iovec iov = {(void *)"x", 1};
    errno = 0;
    assert_int_equal(ur_writev(k.c, &iov, 1, false), -1);
    assert_int_equal(errno, EAGAIN);

    t8_so_error = -1;
    assert_true(run_bounded(loop, GUARD_MS));
    assert_true(k.nev >= 1);
    assert_true(k.ev[0] & EPOLLOUT);
    assert_true(k.ev[0] & (EPOLLERR | EPOLLHUP));
    assert_int_equal(t8_sockopt_rc, 0);
    assert_int_equal(t8_so_error, ECONNREFUSED);
    /* and nothing more comes: no receive was armed on the failed socket */
    assert_false(run_bounded(loop, 100));
    assert_int_equal(k.nev, 1);
    ur_release(k.c);
    assert_false(run_bounded(loop, 50));
    closed_by_ring(fd);
    close_ring();
}

/* ---- 9. a successful connect: EPOLLOUT without error, then data both ways ---- */

struct t9_server {
    struct io_watch lw;     /* the listener, watched through epoll */
    struct conn srv;
    bool accepted, got_ping, replied;
    int sfd;
};
static struct t9_server t9;
static int t9_client_so_error = -1;
static uint32_t t9_first_client_event;

static void t9_server_maybe_reply(struct conn *k)
{
    if (!t9.got_ping || t9.replied)
        return;
    struct iovec iov = {(void *)"pong", 4};
    errno = 0;
    ssize_t r = ur_writev(k->c, &iov, 1, false);
    if (r == 4)
        t9.replied = true;
    else
        assert_int_equal(errno, EAGAIN); /* before the registration edge */
}

static void t9_server_on(struct loop *loop, struct conn *k, uint32_t events)
{
    (void)loop;
    if (events & EPOLLIN) {
        conn_read_all(k, 1024);
        if (k->len >= 4) {
            assert_memory_equal(k->buf, "ping", 4);
            t9.got_ping = true;
        }
    }
    t9_server_maybe_reply(k);
}

static void t9_accept_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        assert_true(errno == EAGAIN);
        return;
    }
    assert_false(t9.accepted);
    t9.accepted = true;
    t9.sfd = fd;
    track_fd(fd);
    assert_int_equal(conn_attach(loop, &t9.srv, fd, false, t9_server_on), 0);
}

static void t9_client_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (k->state == 0) {
        k->state = 1;
        t9_first_client_event = events;
        socklen_t sl = sizeof(t9_client_so_error);
        getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &t9_client_so_error, &sl);
        struct iovec iov = {(void *)"ping", 4};
        assert_int_equal(ur_writev(k->c, &iov, 1, false), 4);
    }
    if (events & EPOLLIN) {
        conn_read_all(k, 1024);
        if (k->len >= 4)
            loop->stop = true;
    }
}

static void test_connect_succeeds(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    uint16_t port;
    int lfd = listen_loopback(&port);
    memset(&t9, 0, sizeof(t9));
    assert_int_equal(loop_watch(loop, &t9.lw, lfd, EPOLLIN, t9_accept_cb), 0);
    int fd;
    int err = connect_loopback(&fd, port);
    assert_true(err == EINPROGRESS || err == 0);
    struct conn k;
    t9_first_client_event = 0;
    t9_client_so_error = -1;
    assert_int_equal(conn_attach(loop, &k, fd, true, t9_client_on), 0);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_true(t9_first_client_event & EPOLLOUT);
    assert_false(t9_first_client_event & (EPOLLERR | EPOLLHUP));
    assert_int_equal(t9_client_so_error, 0);
    assert_true(t9.accepted);
    assert_true(t9.got_ping);
    assert_true(t9.replied);
    assert_int_equal(t9.srv.len, 4);
    assert_int_equal(k.len, 4);
    assert_memory_equal(k.buf, "pong", 4);
    assert_false(conn_all_events(&k) & (EPOLLERR | EPOLLHUP | EPOLLRDHUP));

    /* the client leaves: the server sees the end */
    ur_release(k.c);
    t9.srv.on_event = t5_on;
    t9.srv.eof = false;
    assert_true(run_bounded(loop, GUARD_MS));
    assert_true(t9.srv.eof);
    closed_by_ring(fd);
    ur_release(t9.srv.c);
    forget_fd(t9.sfd);

    loop_unwatch(loop, &t9.lw);
    close_fd(lfd);
    close_ring();
    test_free(k.buf);
    test_free(t9.srv.buf);
}

/* ---- a connection reset: the error edge, ur_recv fails with ECONNRESET ---- */

static int t15_errno;
static ssize_t t15_r;

static void t15_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if ((events & EPOLLOUT) && k->state++ == 0)
        loop->stop = true; /* the registration edge: the receive is armed */
    if (!(events & EPOLLERR))
        return;
    char c;
    errno = 0;
    t15_r = ur_recv(k->c, &c, 1);
    t15_errno = errno;
    loop->stop = true;
}

static void test_reset_reports_error(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    uint16_t port;
    int lfd = listen_loopback(&port);
    int cfd;
    int err = connect_loopback(&cfd, port);
    assert_true(err == EINPROGRESS || err == 0);
    struct pollfd pfd = {.fd = cfd, .events = POLLOUT};
    assert_int_equal(poll(&pfd, 1, GUARD_MS), 1); /* connected */
    int sfd = -1;
    for (int i = 0; i < 1000 && sfd < 0; i++) {
        sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (sfd < 0)
            usleep(1000);
    }
    track_fd(sfd);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, cfd, false, t15_on), 0);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(k.nev, 1);
    /* the other side aborts: a reset */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close_fd(sfd);
    t15_r = 0;
    t15_errno = 0;
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(k.nev, 2);
    uint32_t ev = conn_last_event(&k);
    assert_true(ev & EPOLLIN);
    assert_true(ev & EPOLLERR);
    assert_int_equal(t15_r, -1);
    assert_int_equal(t15_errno, ECONNRESET);
    assert_false(ur_drained(k.c)); /* no edge will come: the owner must close */
    assert_true(ur_has_pending(k.c));
    ur_release(k.c);
    close_ring();
    closed_by_ring(cfd);
    close_fd(lfd);
}

/* ---- receives starved of buffers come back when buffers do ---- */

#define T11_CONNS 160 /* more than the ring's receive buffers */

static struct conn t11_conns[T11_CONNS];
static int t11_peers[T11_CONNS];
static int t11_edges, t11_done;

static void t11_on(struct loop *loop, struct conn *k, uint32_t events)
{
    (void)loop;
    (void)k;
    if (events & EPOLLIN)
        t11_edges++; /* not read yet: the buffer stays taken */
}

static void t11_read_cb(struct loop *loop, struct timer *t)
{
    /* reads every connection that had its edge; stops once all have */
    t11_done = 0;
    for (int i = 0; i < T11_CONNS; i++) {
        struct conn *k = &t11_conns[i];
        if (k->len == 0 && conn_count(k, EPOLLIN) > 0)
            conn_read_all(k, 64);
        if (k->len > 0)
            t11_done++;
    }
    if (t11_done == T11_CONNS)
        loop->stop = true;
    else
        timer_arm(loop, t, 5);
}

static void test_starved_receives_resume(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    t11_edges = t11_done = 0;
    for (int i = 0; i < T11_CONNS; i++) {
        int sv[2];
        make_pair(sv);
        t11_peers[i] = sv[1];
        char b = (char)('A' + i % 26);
        assert_int_equal(write(sv[1], &b, 1), 1);
        assert_int_equal(conn_attach(loop, &t11_conns[i], sv[0], false, t11_on), 0);
    }
    /* first, nobody reads: some receives cannot get a buffer */
    assert_false(run_bounded(loop, 200));
    int first = t11_edges;
    assert_true(first > 0);
    assert_true(first < T11_CONNS);
    for (int i = 0; i < T11_CONNS; i++) {
        struct conn *k = &t11_conns[i];
        if (conn_count(k, EPOLLIN) == 0) { /* waiting: an edge will come */
            char c;
            errno = 0;
            assert_int_equal(ur_recv(k->c, &c, 1), -1);
            assert_int_equal(errno, EAGAIN);
            assert_true(ur_drained(k->c));
        }
    }
    /* then the owners read: the buffers come back and the rest get theirs */
    struct timer reader;
    timer_init(&reader, t11_read_cb);
    timer_arm(loop, &reader, 0);
    assert_true(run_bounded(loop, GUARD_MS * 2));
    timer_cancel(loop, &reader);
    assert_int_equal(t11_done, T11_CONNS);
    for (int i = 0; i < T11_CONNS; i++) {
        struct conn *k = &t11_conns[i];
        assert_int_equal(k->len, 1);
        assert_int_equal(k->buf[0], (char)('A' + i % 26));
        assert_int_equal(conn_count(k, EPOLLIN), 1);
        test_free(k->buf);
        ur_release(k->c);
    }
    assert_false(run_bounded(loop, 50)); /* the cancelled receives complete */
    for (int i = 0; i < T11_CONNS; i++) {
        closed_by_ring(t11_conns[i].fd);
        close_fd(t11_peers[i]);
    }
    close_ring();
}

/* ---- the loop runs again after a stop; no edge is lost in between ----
 * (loop_run drains before it returns: completions handled then must still
 * reach the owner when the loop runs again) */

static int t12_peer;

static void t12_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if ((events & EPOLLOUT) && k->state == 0) {
        k->state = 1;
        /* the peer writes just as the loop is told to stop */
        assert_int_equal(write(t12_peer, "late", 4), 4);
        loop->stop = true;
    }
    if (events & EPOLLIN) {
        conn_read_all(k, 64);
        loop->stop = true;
    }
}

static void test_run_again_keeps_edges(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    t12_peer = sv[1];
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t12_on), 0);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(k.state, 1);
    /* the bytes arrived while the loop was stopping: the run that follows
     * must still report them (as epoll would: the edge waits in its ready
     * list until the next epoll_wait) */
    assert_true(run_bounded(loop, 500));
    assert_int_equal(conn_count(&k, EPOLLIN), 1);
    assert_int_equal(k.len, 4);
    assert_memory_equal(k.buf, "late", 4);
    close_ring();
    close_fd(sv[0]);
    close_fd(sv[1]);
    test_free(k.buf);
}

static void t13_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!(events & EPOLLOUT))
        return;
    if (k->state == 0) {
        k->state = 1;
        /* a write queued just as the loop is told to stop */
        struct iovec iov = {(void *)"abc", 3};
        assert_int_equal(ur_writev(k->c, &iov, 1, false), 3);
    } else {
        k->state = 2;
    }
    loop->stop = true;
}

static void test_run_again_keeps_send_edge(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t13_on), 0);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(k.state, 1);
    /* the send completed while the loop was stopping: its EPOLLOUT (the
     * owner's cue to write on) must come in the run that follows */
    assert_true(run_bounded(loop, 500));
    assert_int_equal(k.state, 2);
    assert_int_equal(conn_count(&k, EPOLLOUT), 2);
    char b[8];
    bool eof;
    assert_int_equal(read_now(sv[1], b, sizeof(b), &eof), 3);
    assert_memory_equal(b, "abc", 3);
    close_ring();
    close_fd(sv[0]);
    close_fd(sv[1]);
}

/* ---- a read that took exactly what it asked for, then input much later ---- */

static int t14_peer;
static size_t t14_got;

static void t14_on(struct loop *loop, struct conn *k, uint32_t events)
{
    (void)loop;
    if (!(events & EPOLLIN))
        return;
    if (k->state == 0) {
        /* reads of exactly what is there (more than one receive buffer, so
         * it may come in two edges), then the owner stops reading: its
         * "buffer" is full */
        static char tmp[20000];
        ssize_t n = ur_recv(k->c, tmp + t14_got, sizeof(tmp) - t14_got);
        if (n > 0)
            t14_got += (size_t)n;
        if (t14_got == sizeof(tmp))
            k->state = 1;
        return;
    }
    conn_read_all(k, 4096); /* the owner reads on once it has room again */
    if (k->len >= 4) {
        k->state = 2;
        loop->stop = true;
    }
}

static void t14_late_write(struct loop *loop, struct timer *t)
{
    (void)loop;
    (void)t;
    assert_int_equal(write(t14_peer, "more", 4), 4);
}

static void test_edge_after_a_read_that_filled_its_buffer(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    t14_peer = sv[1];
    t14_got = 0;
    static char blob[20000];
    memset(blob, 'b', sizeof(blob));
    assert_int_equal(write(sv[1], blob, sizeof(blob)), (ssize_t)sizeof(blob));
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t14_on), 0);
    struct timer late;
    timer_init(&late, t14_late_write);
    assert_int_equal(timer_arm(loop, &late, 200), 0);
    /* with epoll the socket stays registered: bytes that come after the
     * owner stopped reading still raise an edge, and so must they here */
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(k.state, 2);
    assert_memory_equal(k.buf, "more", 4);
    close_ring();
    close_fd(sv[0]);
    close_fd(sv[1]);
    test_free(k.buf);
}

/* ---- owners that stop reading leave the pool's buffers to the others ----
 * (an uncapped multishot receive would take all its socket holds in one kernel
 * run: each slow connection must hold at most what one receive took, the rest
 * staying in its socket, or a few slow peers would starve every other
 * connection of the ring) */

enum { T16_SLOW = 12, T16_CAP = 1 << 20 };
static struct conn t16_slow[T16_SLOW];
static int t16_peer[T16_SLOW];
static size_t t16_sent[T16_SLOW];
static char *t16_pattern;
static struct conn t16_other;
static bool t16_reading;

static void t16_slow_on(struct loop *loop, struct conn *k, uint32_t events)
{
    (void)loop;
    if (t16_reading && (events & EPOLLIN))
        conn_read_all(k, 65536);
}

static void t16_other_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (events & EPOLLIN) {
        conn_read_all(k, 64);
        loop->stop = true;
    }
}

static bool t16_all_read(void)
{
    for (int i = 0; i < T16_SLOW; i++)
        if (!t16_slow[i].eof)
            return false;
    return true;
}

static void t16_read_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    t16_reading = true;
    for (int i = 0; i < T16_SLOW; i++)
        conn_read_all(&t16_slow[i], 65536);
    if (t16_all_read())
        loop->stop = true;
}

static void t16_check_cb(struct loop *loop, struct timer *t)
{
    if (t16_all_read())
        loop->stop = true;
    else
        timer_arm(loop, t, 5);
}

static void test_slow_readers_leave_buffers_to_others(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    t16_pattern = test_malloc(T16_CAP);
    fill_pattern(t16_pattern, T16_CAP, 16);
    t16_reading = false;
    size_t total = 0;
    for (int i = 0; i < T16_SLOW; i++) {
        int sv[2];
        make_pair(sv);
        t16_peer[i] = sv[1];
        /* the peer writes all its socket takes, then ends */
        t16_sent[i] = 0;
        ssize_t r;
        while (t16_sent[i] < T16_CAP &&
               (r = write(sv[1], t16_pattern + t16_sent[i], T16_CAP - t16_sent[i])) > 0)
            t16_sent[i] += (size_t)r;
        assert_true(t16_sent[i] > 0);
        total += t16_sent[i];
        assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
        assert_int_equal(conn_attach(loop, &t16_slow[i], sv[0], false, t16_slow_on), 0);
    }
    /* more than the pool's 2 MiB waits unread in all (or the test shows nothing) */
    assert_true(total > (size_t)(128 * 16384));
    /* nobody reads the slow ones; another connection still gets its input */
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(conn_attach(loop, &t16_other, sv[0], false, t16_other_on), 0);
    assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(t16_other.len, 1);
    /* then the slow owners read: every byte, in order, then the end */
    struct timer reader, check;
    timer_init(&reader, t16_read_cb);
    timer_init(&check, t16_check_cb);
    timer_arm(loop, &reader, 0);
    timer_arm(loop, &check, 5);
    assert_true(run_bounded(loop, GUARD_MS * 2));
    timer_cancel(loop, &check);
    for (int i = 0; i < T16_SLOW; i++) {
        struct conn *k = &t16_slow[i];
        assert_int_equal(k->len, t16_sent[i]);
        assert_memory_equal(k->buf, t16_pattern, t16_sent[i]);
        assert_true(k->eof);
        test_free(k->buf);
        ur_release(k->c);
    }
    test_free(t16_other.buf);
    ur_release(t16_other.c);
    assert_false(run_bounded(loop, 50)); /* the cancelled receives complete */
    for (int i = 0; i < T16_SLOW; i++) {
        closed_by_ring(t16_slow[i].fd);
        close_fd(t16_peer[i]);
    }
    closed_by_ring(sv[0]);
    close_fd(sv[1]);
    test_free(t16_pattern);
    close_ring();
}

/* ---- small pieces left unread do not take the pool either ----
 * (a multishot receive posts one completion, and takes one buffer, per piece:
 * a connection whose owner reads nothing while a piece comes every loop turn
 * would hold a buffer for each, until the others have none) */

enum { T17_PIECES = 200 };
static struct conn t17_slow, t17_other;
static int t17_slow_peer, t17_other_peer;
static int t17_sent;
static bool t17_reading;

static void t17_slow_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (!t17_reading || !(events & EPOLLIN)) /* its owner reads nothing until the end */
        return;
    conn_read_all(k, 64);
    if (k->len == T17_PIECES)
        loop->stop = true;
}

static void t17_other_on(struct loop *loop, struct conn *k, uint32_t events)
{
    if (events & EPOLLIN) {
        conn_read_all(k, 64);
        if (k->len > 0)
            loop->stop = true;
    }
}

/* One byte to the slow connection per loop turn (1 ms apart), then one to
 * the other connection. */
static void t17_write_cb(struct loop *loop, struct timer *t)
{
    if (t17_sent < T17_PIECES) {
        char b = (char)('a' + t17_sent % 26);
        assert_int_equal(write(t17_slow_peer, &b, 1), 1);
        t17_sent++;
        timer_arm(loop, t, 1);
        return;
    }
    assert_int_equal(write(t17_other_peer, "x", 1), 1);
}

static void test_small_pieces_leave_buffers_to_others(void **state)
{
    (void)state;
    struct loop *loop = open_ring();
    int a[2], b[2];
    make_pair(a);
    make_pair(b);
    t17_slow_peer = a[1];
    t17_other_peer = b[1];
    t17_sent = 0;
    t17_reading = false;
    assert_int_equal(conn_attach(loop, &t17_slow, a[0], false, t17_slow_on), 0);
    assert_int_equal(conn_attach(loop, &t17_other, b[0], false, t17_other_on), 0);
    struct timer writer;
    timer_init(&writer, t17_write_cb);
    timer_arm(loop, &writer, 1);
    /* more pieces than the pool has buffers wait unread; the other
     * connection still gets its byte */
    assert_true(run_bounded(loop, GUARD_MS));
    timer_cancel(loop, &writer);
    assert_int_equal(t17_sent, T17_PIECES);
    assert_int_equal(t17_other.len, 1);
    /* then every piece is there, in order (what stayed in the socket comes
     * with the edges that follow) */
    t17_reading = true;
    conn_read_all(&t17_slow, 64);
    if (t17_slow.len < T17_PIECES)
        assert_true(run_bounded(loop, GUARD_MS));
    assert_int_equal(t17_slow.len, T17_PIECES);
    for (int i = 0; i < T17_PIECES; i++)
        assert_int_equal(t17_slow.buf[i], (char)('a' + i % 26));
    test_free(t17_slow.buf);
    test_free(t17_other.buf);
    ur_release(t17_slow.c);
    ur_release(t17_other.c);
    assert_false(run_bounded(loop, 50)); /* the cancelled receives complete */
    closed_by_ring(a[0]);
    closed_by_ring(b[0]);
    close_fd(a[1]);
    close_fd(b[1]);
    close_ring();
}

/* ---- 10. a ring opened and closed leaks nothing ---- */

static void t10_on(struct loop *loop, struct conn *k, uint32_t events)
{
    (void)k;
    if (events & EPOLLOUT)
        loop->stop = true;
}

static void test_open_close_leaks_nothing(void **state)
{
    (void)state;
    int before = count_open_fds();
    for (int i = 0; i < 3; i++) {
        struct loop *loop = open_ring();
        close_ring();
        assert_null(loop->ring);
    }
    assert_int_equal(count_open_fds(), before);

    /* released with its send in flight and stuck (the peer's side is full):
     * the stopping loop gives it about a second, then loop_fini closes the
     * descriptor and frees the send buffer */
    struct loop *loop = open_ring();
    int sv[2];
    make_pair(sv);
    struct conn k;
    assert_int_equal(conn_attach(loop, &k, sv[0], false, t10_on), 0);
    assert_true(run_bounded(loop, GUARD_MS)); /* the registration edge */
    char junk[4096];
    memset(junk, 'j', sizeof(junk));
    while (write(sv[0], junk, sizeof(junk)) > 0) {
    }
    assert_int_equal(errno, EAGAIN);
    struct iovec iov = {junk, sizeof(junk)};
    assert_int_equal(ur_writev(k.c, &iov, 1, false), (ssize_t)sizeof(junk));
    ur_release(k.c);
    uint64_t t0 = clock_ms();
    assert_false(run_bounded(loop, 100));
    uint64_t took = clock_ms() - t0;
    assert_true(took >= 1000 && took < 3000);
    assert_true(fd_is_open(sv[0])); /* still the ring's */
    close_ring();
    closed_by_ring(sv[0]);
    close_fd(sv[1]);
    assert_int_equal(count_open_fds(), before);
#ifdef HAVE_LSAN
    assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_data_arrives_with_epollin_edges, teardown),
        cmocka_unit_test_teardown(test_big_read_written_before, teardown),
        cmocka_unit_test_teardown(test_big_read_written_in_pieces, teardown),
        cmocka_unit_test_teardown(test_queued_writev, teardown),
        cmocka_unit_test_teardown(test_large_write_in_order, teardown),
        cmocka_unit_test_teardown(test_eof, teardown),
        cmocka_unit_test_teardown(test_release_sends_queued_then_closes, teardown),
        cmocka_unit_test_teardown(test_release_idle_closes, teardown),
        cmocka_unit_test_teardown(test_shutdown_after_queued_write, teardown),
        cmocka_unit_test_teardown(test_shutdown_idle, teardown),
        cmocka_unit_test_teardown(test_queued_write_on_full_socket, teardown),
        cmocka_unit_test_teardown(test_connect_refused, teardown),
        cmocka_unit_test_teardown(test_connect_succeeds, teardown),
        cmocka_unit_test_teardown(test_reset_reports_error, teardown),
        cmocka_unit_test_teardown(test_starved_receives_resume, teardown),
        cmocka_unit_test_teardown(test_run_again_keeps_edges, teardown),
        cmocka_unit_test_teardown(test_run_again_keeps_send_edge, teardown),
        cmocka_unit_test_teardown(test_edge_after_a_read_that_filled_its_buffer, teardown),
        cmocka_unit_test_teardown(test_slow_readers_leave_buffers_to_others, teardown),
        cmocka_unit_test_teardown(test_small_pieces_leave_buffers_to_others, teardown),
        cmocka_unit_test_teardown(test_open_close_leaks_nothing, teardown),
    };
    int failed = cmocka_run_group_tests_name("uring (this kernel's receives)", tests, NULL, NULL);
    single_receives = true;
    failed += cmocka_run_group_tests_name("uring (single receives)", tests, NULL, NULL);
    return failed;
}
