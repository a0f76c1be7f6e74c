/* Unit tests for core/loop: timer heap order, cancel and re-arm, watches,
 * cross-thread wake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/loop.h"

static int fired[64];
static int num_fired;

struct tagged_timer {
    struct timer t;
    int tag;
};

static void record_cb(struct loop *loop, struct timer *t)
{
    struct tagged_timer *tt = (struct tagged_timer *)t;
    fired[num_fired++] = tt->tag;
    if (num_fired >= 5)
        loop->stop = true;
}

static void test_timers_fire_in_deadline_order(void **state)
{
    (void)state;
    struct loop loop;
    assert_int_equal(loop_init(&loop, NULL), 0);
    struct tagged_timer t[6];
    unsigned delays[6] = {30, 10, 50, 20, 40, 5};
    num_fired = 0;
    for (int i = 0; i < 6; i++) {
        timer_init(&t[i].t, record_cb);
        t[i].tag = (int)delays[i];
        assert_int_equal(timer_arm(&loop, &t[i].t, delays[i]), 0);
        assert_true(timer_armed(&t[i].t));
    }
    timer_cancel(&loop, &t[5].t); /* the 5 ms one never fires */
    assert_false(timer_armed(&t[5].t));
    timer_cancel(&loop, &t[5].t); /* cancelling twice is harmless */
    uint64_t start = clock_ms();
    loop_run(&loop);
    assert_int_equal(num_fired, 5);
    int expected[5] = {10, 20, 30, 40, 50};
    assert_memory_equal(fired, expected, sizeof(expected));
    assert_true(clock_ms() - start >= 45);
    loop_fini(&loop);
}

static void test_rearm_moves_deadline(void **state)
{
    (void)state;
    struct loop loop;
    assert_int_equal(loop_init(&loop, NULL), 0);
    struct tagged_timer a, b;
    timer_init(&a.t, record_cb);
    timer_init(&b.t, record_cb);
    a.tag = 1;
    b.tag = 2;
    num_fired = 3; /* stop after two more */
    timer_arm(&loop, &a.t, 5);
    timer_arm(&loop, &b.t, 20);
    timer_arm(&loop, &a.t, 40); /* later now: b fires first */
    loop_run(&loop);
    assert_int_equal(fired[3], 2);
    assert_int_equal(fired[4], 1);
    loop_fini(&loop);
}

static uint64_t fired_at[64];
static void stamp_cb(struct loop *loop, struct timer *t)
{
    struct tagged_timer *tt = (struct tagged_timer *)t;
    fired_at[num_fired] = clock_ms();
    fired[num_fired++] = tt->tag;
    if (num_fired >= 2)
        loop->stop = true;
}

/* A loop with timers a (tag 1) and b (tag 2) that stop it after both fired;
 * returns the loop's now, which arming counts from. */
static uint64_t two_timers(struct loop *loop, struct tagged_timer *a, struct tagged_timer *b)
{
    assert_int_equal(loop_init(loop, NULL), 0);
    timer_init(&a->t, stamp_cb);
    timer_init(&b->t, stamp_cb);
    a->tag = 1;
    b->tag = 2;
    num_fired = 0;
    loop->now_ms = clock_ms();
    return loop->now_ms;
}

/* Postponing only records the deadline (the heap keeps the timer where it
 * was): the old time must neither fire it nor let a later timer pass it. */
static void test_postponed_timer_fires_at_its_new_deadline(void **state)
{
    (void)state;
    struct loop loop;
    struct tagged_timer a, b;
    uint64_t start = two_timers(&loop, &a, &b);
    timer_arm(&loop, &a.t, 10);
    timer_arm(&loop, &b.t, 30);
    for (int i = 0; i < 5; i++) /* as a busy connection would, request after request */
        timer_arm(&loop, &a.t, 60 + (uint64_t)i);
    assert_int_equal(a.t.deadline_ms, start + 64);
    assert_true(loop_next_wait_ms(&loop) <= 10); /* it may wake early, never late */
    loop_run(&loop);
    assert_int_equal(num_fired, 2);
    assert_int_equal(fired[0], 2);
    assert_int_equal(fired[1], 1);
    assert_true(fired_at[1] - start >= 64);
    assert_false(timer_armed(&a.t));
    loop_fini(&loop);
}

/* A timer postponed and then brought forward again fires at the sooner time. */
static void test_postponed_then_sooner_fires_sooner(void **state)
{
    (void)state;
    struct loop loop;
    struct tagged_timer a, b;
    uint64_t start = two_timers(&loop, &a, &b);
    timer_arm(&loop, &b.t, 30);
    timer_arm(&loop, &a.t, 20);
    timer_arm(&loop, &a.t, 200); /* postponed: filed at 20 still */
    timer_arm(&loop, &a.t, 5);   /* sooner than where it is filed */
    loop_run(&loop);
    assert_int_equal(fired[0], 1);
    assert_int_equal(fired[1], 2);
    assert_true(fired_at[0] - start >= 5);
    assert_true(fired_at[0] - start < 30);
    loop_fini(&loop);
}

static int pipe_reads;
static void pipe_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    char c;
    assert_true(events & EPOLLIN);
    assert_int_equal(read(w->fd, &c, 1), 1);
    assert_int_equal(c, 'x');
    pipe_reads++;
    loop->stop = true;
}

static void test_watch_reports_readable(void **state)
{
    (void)state;
    struct loop loop;
    assert_int_equal(loop_init(&loop, NULL), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct io_watch w;
    assert_int_equal(loop_watch(&loop, &w, fds[0], EPOLLIN, pipe_cb), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    pipe_reads = 0;
    loop_run(&loop);
    assert_int_equal(pipe_reads, 1);
    loop_unwatch(&loop, &w);
    close(fds[0]);
    close(fds[1]);
    loop_fini(&loop);
}

static void woke_cb(struct loop *loop)
{
    loop->stop = true;
}

static void *waker(void *arg)
{
    usleep(20000);
    loop_wake(arg);
    return NULL;
}

static void test_wake_from_another_thread(void **state)
{
    (void)state;
    struct loop loop;
    assert_int_equal(loop_init(&loop, NULL), 0);
    loop.wake_cb = woke_cb;
    pthread_t th;
    pthread_create(&th, NULL, waker, &loop);
    loop_run(&loop); /* no timers, no fds: only the wake can end it */
    pthread_join(th, NULL);
    assert_true(loop.stop);
    loop_fini(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_postponed_timer_fires_at_its_new_deadline),
        cmocka_unit_test(test_postponed_then_sooner_fires_sooner),
        cmocka_unit_test(test_rearm_moves_deadline),
        cmocka_unit_test(test_watch_reports_readable),
        cmocka_unit_test(test_wake_from_another_thread),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
