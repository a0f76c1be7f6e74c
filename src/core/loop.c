/*
 * loop — epoll event loop and timer min-heap (see loop.h).
 *
 * Each iteration: compute the wait from the earliest timer, epoll_wait, run
 * the callbacks of ready descriptors, update the cached clock, then run every
 * timer whose deadline has passed. A callback may free the object holding a
 * watch only after loop_unwatch(); events already returned for the same fd in
 * this batch are skipped because the watch pointer is cleared from the batch.
 */
#include "core/loop.h"

#include "core/uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

uint64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t clock_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void wake_read_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    uint64_t n;
    while (read(w->fd, &n, sizeof(n)) > 0) {
    }
    if (loop->wake_cb)
        loop->wake_cb(loop);
}

int loop_init(struct loop *loop, void *owner)
{
    memset(loop, 0, sizeof(*loop));
    loop->owner = owner;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -errno;
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        int err = -errno;
        close(loop->epfd);
        return err;
    }
    loop->now_ms = clock_ms();
    loop->batch = calloc(LOOP_BATCH, sizeof(*loop->batch));
    if (!loop->batch) {
        close(loop->wake_fd);
        close(loop->epfd);
        return -ENOMEM;
    }
    int rc = loop_watch(loop, &loop->wake_watch, loop->wake_fd, EPOLLIN, wake_read_cb);
    if (rc < 0) {
        free(loop->batch);
        close(loop->wake_fd);
        close(loop->epfd);
    }
    return rc;
}

void loop_fini(struct loop *loop)
{
    uring_close(loop);
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    free(loop->heap);
    free(loop->batch);
    loop->heap = NULL;
    loop->batch = NULL;
    loop->epfd = loop->wake_fd = -1;
}

void loop_wake(struct loop *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->wake_fd, &one, sizeof(one));
    (void)n; /* a full counter already means "awake" */
}

int loop_watch(struct loop *loop, struct io_watch *w, int fd, uint32_t events,
               void (*cb)(struct loop *, struct io_watch *, uint32_t))
{
    w->fd = fd;
    w->cb = cb;
    w->events = events;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int loop_modify(struct loop *loop, struct io_watch *w, uint32_t events)
{
    if (w->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
        return -errno;
    w->events = events;
    return 0;
}

void loop_unwatch_closing(struct loop *loop, struct io_watch *w)
{
    for (int i = 0; i < loop->batch_count; i++)
        if (loop->batch[i].data.ptr == w)
            loop->batch[i].data.ptr = NULL;
    w->events = 0;
}

void loop_unwatch(struct loop *loop, struct io_watch *w)
{
    if (w->fd >= 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    loop_unwatch_closing(loop, w);
}

/* ---- timer heap ---- */

static void heap_swap(struct loop *loop, size_t a, size_t b)
{
    struct timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->heap_index = a;
    loop->heap[b]->heap_index = b;
}

static void heap_up(struct loop *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->heap_key_ms <= loop->heap[i]->heap_key_ms)
            break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void heap_down(struct loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && loop->heap[l]->heap_key_ms < loop->heap[m]->heap_key_ms)
            m = l;
        if (r < loop->heap_len && loop->heap[r]->heap_key_ms < loop->heap[m]->heap_key_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

void timer_init(struct timer *t, void (*cb)(struct loop *, struct timer *))
{
    t->deadline_ms = 0;
    t->heap_key_ms = 0;
    t->heap_index = SIZE_MAX;
    t->cb = cb;
}

void timer_cancel(struct loop *loop, struct timer *t)
{
    size_t i = t->heap_index;
    if (i == SIZE_MAX)
        return;
    t->heap_index = SIZE_MAX;
    loop->heap_len--;
    if (i == loop->heap_len)
        return;
    loop->heap[i] = loop->heap[loop->heap_len];
    loop->heap[i]->heap_index = i;
    heap_down(loop, i);
    heap_up(loop, i);
}

int timer_arm(struct loop *loop, struct timer *t, uint64_t after_ms)
{
    uint64_t deadline = loop->now_ms + after_ms;
    t->deadline_ms = deadline;
    if (timer_armed(t)) {
        if (deadline < t->heap_key_ms) { /* sooner than filed: move it up now */
            t->heap_key_ms = deadline;
            heap_up(loop, t->heap_index);
        }
        return 0; /* later: loop_run_timers re-files it when its key comes */
    }
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 256;
        struct timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (!heap)
            return -ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    t->heap_key_ms = deadline;
    t->heap_index = loop->heap_len;
    loop->heap[loop->heap_len++] = t;
    heap_up(loop, t->heap_index);
    return 0;
}

void loop_run_timers(struct loop *loop)
{
    while (loop->heap_len > 0 && loop->heap[0]->heap_key_ms <= loop->now_ms) {
        struct timer *t = loop->heap[0];
        if (t->deadline_ms > loop->now_ms) { /* postponed since it was filed */
            t->heap_key_ms = t->deadline_ms;
            heap_down(loop, 0);
            continue;
        }
        timer_cancel(loop, t);
        t->cb(loop, t);
    }
}

int loop_next_wait_ms(const struct loop *loop)
{
    if (loop->heap_len == 0)
        return -1;
    uint64_t first = loop->heap[0]->heap_key_ms; /* may wake early for a postponed one */
    return first <= loop->now_ms ? 0 : (int)(first - loop->now_ms);
}

int loop_poll_epoll(struct loop *loop, int wait_ms)
{
    struct epoll_event *events = loop->batch;
    int n = epoll_wait(loop->epfd, events, LOOP_BATCH, wait_ms);
    loop->now_ms = clock_ms();
    if (n <= 0)
        return n;
    loop->batch_count = n;
    for (int i = 0; i < n; i++) {
        struct io_watch *w = events[i].data.ptr;
        if (w)
            w->cb(loop, w, events[i].events);
    }
    loop->batch_count = 0;
    return n;
}

void loop_run(struct loop *loop)
{
    if (loop->ring) {
        uring_run(loop);
        return;
    }
    while (!loop->stop) {
        int n = loop_poll_epoll(loop, loop_next_wait_ms(loop));
        if (n < 0 && errno != EINTR)
            break;
        loop_run_timers(loop);
    }
}
