/*
 * loop — one epoll event loop with a timer heap, owned by exactly one thread.
 *
 * A file descriptor is watched through a `struct io_watch` embedded in the
 * owner's object; its callback receives the epoll event bits. Timers are
 * `struct timer` values, also embedded, kept in a binary min-heap (O(log n)
 * arm/cancel, no scan of all connections). Timer callbacks may re-arm or
 * cancel any timer, including their own.
 *
 * Postponing is lazy: re-arming an armed timer for later (an idle timeout
 * pushed back by every request) only records the new deadline and leaves the
 * heap alone. The timer keeps its place, keyed by the earlier time; when that
 * comes, the loop finds the deadline moved and re-files the timer then. A
 * timer never fires late, and a connection busy for a whole timeout costs one
 * re-filing per timeout instead of a heap sift per request.
 *
 * Nothing here is thread-safe except loop_wake(), which another thread may
 * call to make loop_run() return from epoll_wait and run its wake callback.
 */
#ifndef LIMPET_CORE_LOOP_H
#define LIMPET_CORE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct epoll_event;
struct uring;

/* Most epoll events handled per wait. */
#define LOOP_BATCH 256

struct io_watch {
    int fd;                       /* watched descriptor */
    uint32_t events;              /* epoll events currently registered */
    void (*cb)(struct loop *loop, struct io_watch *w, uint32_t events);
};

struct timer {
    uint64_t deadline_ms;         /* monotonic time at which cb runs */
    uint64_t heap_key_ms;         /* where the heap files it: ≤ deadline_ms (see above) */
    size_t heap_index;            /* position in the heap; SIZE_MAX when not armed */
    void (*cb)(struct loop *loop, struct timer *t);
};

struct loop {
    int epfd;                     /* epoll instance */
    int wake_fd;                  /* eventfd written by loop_wake() */
    struct io_watch wake_watch;   /* watch on wake_fd */
    void (*wake_cb)(struct loop *loop);  /* runs on the loop after loop_wake() */
    bool stop;                    /* loop_run() returns when set */
    uint64_t now_ms;              /* cached monotonic time, updated per iteration */
    struct timer **heap;          /* timer min-heap */
    size_t heap_len, heap_cap;
    void *owner;                  /* the worker (or other object) this loop serves */
    struct epoll_event *batch;    /* events being dispatched (loop_unwatch clears stale ones) */
    int batch_count;
    struct uring *ring;           /* non-NULL: plain sockets and the wait go through
                                   * io_uring (core/uring.h); epoll is one poll in it */
};

/* Creates the epoll instance and the wake eventfd. Returns 0 or -errno. */
int loop_init(struct loop *loop, void *owner);
void loop_fini(struct loop *loop);

/* Runs until loop->stop is set (by a callback). */
void loop_run(struct loop *loop);

/* The pieces of one turn, for a loop that waits elsewhere (core/uring.c):
 * how long to wait for the earliest timer (-1: none), one epoll_wait of up
 * to wait_ms with its callbacks run (returns the number of events, or -1),
 * and the timers that are due. */
int loop_next_wait_ms(const struct loop *loop);
int loop_poll_epoll(struct loop *loop, int wait_ms);
void loop_run_timers(struct loop *loop);

/* Registers/changes/removes a watch. Return 0 or -errno. */
int loop_watch(struct loop *loop, struct io_watch *w, int fd, uint32_t events,
               void (*cb)(struct loop *, struct io_watch *, uint32_t));
int loop_modify(struct loop *loop, struct io_watch *w, uint32_t events);
void loop_unwatch(struct loop *loop, struct io_watch *w);
/* For a descriptor about to be closed (which takes it out of epoll by
 * itself, when no other descriptor refers to the same socket): forgets the
 * watch without a system call. */
void loop_unwatch_closing(struct loop *loop, struct io_watch *w);

void timer_init(struct timer *t, void (*cb)(struct loop *, struct timer *));
/* (Re)arms t to fire after_ms from the loop's cached now (O(1) when it only
 * postpones an armed timer). Returns 0 or -ENOMEM. */
int timer_arm(struct loop *loop, struct timer *t, uint64_t after_ms);
void timer_cancel(struct loop *loop, struct timer *t);
static inline bool timer_armed(const struct timer *t) { return t->heap_index != SIZE_MAX; }

/* Thread-safe: wakes the loop, which then calls loop->wake_cb (if set). */
void loop_wake(struct loop *loop);

/* Monotonic clock in milliseconds. */
uint64_t clock_ms(void);
/* Wall clock in microseconds since the epoch (for logs). */
uint64_t clock_wall_us(void);

#endif
