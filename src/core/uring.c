/*
 * uring — plain sockets through io_uring, with epoll's edge rules (see uring.h).
 *
 * Every queued operation carries its connection and its kind in user_data
 * (the record is 8-byte aligned; the low bits name the kind). A connection's
 * `pending` bits say what is in flight; a released connection stays on the
 * orphan list until none is, then its descriptor is closed and the record
 * freed. Completions are handled in order, and the owner's callback runs
 * last in each handler: it may release (and so free) the connection.
 *
 * Receives are multishot where the kernel can cap them: one armed receive
 * posts a completion for each piece of input until UR_MSHOT_CAP bytes came,
 * the input ends or fails, or the buffer pool runs dry, so a keep-alive
 * request arms none. Elsewhere a receive takes one buffer. The buffers filled
 * wait on the connection's queue (linked through the ring's per-buffer
 * table) until the owner reads them, and the next receive is armed only once
 * it has read everything: a connection holds at most what one receive took.
 * When that filled a whole buffer the socket may hold more, and the owner's
 * next read takes it directly (recv), as a bulk transfer wants. When the pool
 * runs low, input for a connection that already holds a buffer is copied to
 * its spill and the buffer goes back at once, so small pieces left unread
 * cannot starve the other connections of buffers.
 */
#include "core/uring.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/slab.h"

enum {
    UR_ENTRIES = 4096,           /* submission queue slots (flushed early when full) */
    UR_BUF_SIZE = 16384,         /* one receive buffer */
    UR_BUFS = 128,               /* receive buffers per ring (power of two): 2 MiB, touched
                                  * as the kernel cycles through them */
    UR_BGID = 1,                 /* their buffer group */
    UR_LOW = UR_BUFS / 4,        /* fewer free buffers than this: the pool runs low */
    UR_MSHOT_CAP = UR_BUF_SIZE,  /* bytes one multishot receive takes at most */
    UR_NIL = 0xffff,             /* no buffer (end of a connection's queue) */
    UR_OUT_SIZE = 16384,         /* writes up to this are copied and queued */
    UR_OUT_KEEP = 64,            /* free send buffers kept for reuse */
    UR_ORPHAN_SEND_MS = 30000,   /* a released connection's send may wait this long */
    UR_DRAIN_MS = 1000,          /* when the loop stops, sends of closed connections
                                  * still under way get this long to finish */
};

/* user_data kinds (low three bits) */
enum { OP_EPOLL = 1, OP_RECV, OP_SEND, OP_POLLOUT, OP_CANCEL /* or a close: nothing to do */ };
#define OP_MASK ((uint64_t)7)

/* ur_conn.pending */
enum { P_RECV = 1 << 0, P_SEND = 1 << 1, P_POLLOUT = 1 << 2 };
/* ur_conn.flags */
enum {
    F_EOF = 1 << 0,        /* the peer finished: reads return 0 once the queue is read */
    F_RECV_ERR = 1 << 1,   /* reads fail with recv_err once the queue is read */
    F_PAUSED = 1 << 2,     /* a receive ended (its cap, the pool, or a single one)
                            * with input unread: none is armed before all is read */
    F_SHUT = 1 << 3,       /* shutdown(SHUT_WR) once the send in flight is done */
    F_RELEASED = 1 << 4,   /* the owner is gone */
    F_STARVED = 1 << 5,    /* a receive found no free buffer: re-armed when one is back */
    F_CONNECTING = 1 << 6, /* the receive is armed once the connect is done (a receive
                            * would take the error SO_ERROR must report) */
    F_FULL = 1 << 7,       /* the last receive filled its buffer: the socket may hold
                            * more (read directly once the queue is read) */
    F_UNARMED = 1 << 8,    /* a direct read stopped with the socket maybe not empty and
                            * no receive armed: one is armed before the next wait (the
                            * `unarmed` list), so input that comes after still raises
                            * an edge */
    F_LAST_SEND = 1 << 9,  /* the send in flight ends the sending side: MSG_MORE, so
                            * the FIN that follows leaves with its tail */
};
/* the receive side waits for a completion: an edge will come */
#define F_WAITING (F_STARVED | F_CONNECTING)

/* Input received while the pool ran low, in order after the queue. */
struct spill {
    uint32_t off, len, cap;
    char data[];
};

struct ur_conn {
    struct uring *u;
    struct io_watch *w;            /* NULL once released */
    char *out;                     /* send in flight: its copy */
    struct spill *spill;           /* NULL: nothing received beyond the queue */
    struct ur_conn *next, *prev;   /* orphan list (released), starved or unarmed list */
    union {
        uint64_t orphan_deadline_ms;  /* released: when its send gets cancelled */
        struct ur_conn *held_next;    /* open: events held while the loop was stopping */
    };
    int fd;
    uint16_t q_head, q_tail;       /* received buffers not read yet (UR_NIL: none) */
    uint16_t q_off;                /* bytes of the head buffer already read */
    uint16_t out_off, out_len;
    uint8_t pending;               /* P_* */
    uint8_t recv_err, send_err;    /* errno values */
    uint16_t flags;                /* F_* */
    uint16_t held;                 /* the events held (EPOLLRDHUP is the highest) */
};
/* a small record: an idle connection holds it (with its client record) */
_Static_assert(UR_BUF_SIZE <= UINT16_MAX && UR_OUT_SIZE <= UINT16_MAX, "offsets are 16-bit");
_Static_assert((EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP) <= UINT16_MAX,
               "held events are 16-bit");
_Static_assert(sizeof(struct ur_conn) % 8 == 0, "user_data tags need 8-byte records");

struct uring {
    struct io_uring ring;
    struct loop *loop;
    struct io_uring_buf_ring *br;
    char *bufs;                    /* UR_BUFS x UR_BUF_SIZE */
    struct {
        uint16_t next;             /* the next buffer in its connection's queue */
        uint16_t len;              /* bytes received into it */
    } filled[UR_BUFS];
    unsigned bufs_out;             /* buffers taken by the kernel and not back */
    struct slab conns;
    char *out_free[UR_OUT_KEEP];
    unsigned out_free_n;
    struct ur_conn *orphans;       /* released, something still in flight */
    struct ur_conn *starved;       /* waiting for a receive buffer */
    struct ur_conn *unarmed;       /* to arm a receive for before the next wait */
    struct ur_conn *held;          /* events that came while the loop was stopping */
    struct timer sweep;            /* cancels orphaned sends past their deadline */
    bool multishot;                /* receives are multishot (the kernel caps them) */
    bool epoll_armed;              /* the poll on the epoll descriptor is queued */
    bool epoll_more;               /* the last epoll batch was full: look again */
    bool draining;                 /* the loop stopped: no more callbacks */
    bool stopped;                  /* nothing is submitted any more: close directly */
};

/* ---- submission ---- */

static struct io_uring_sqe *get_sqe(struct uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) { /* full: hand what is queued to the kernel now */
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

static uint64_t tag(const struct ur_conn *c, unsigned op)
{
    return (uint64_t)(uintptr_t)c | op;
}

static void buf_back(struct uring *u, unsigned bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * UR_BUF_SIZE, UR_BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(UR_BUFS), 0);
    io_uring_buf_ring_advance(u->br, 1);
    u->bufs_out--;
}

/* Arms the receive. poll_first: the socket was just found empty. */
static void arm_recv(struct ur_conn *c, bool poll_first)
{
    struct io_uring_sqe *sqe = get_sqe(c->u);
    if (!sqe) { /* the ring is broken: report the connection failed */
        c->flags |= F_RECV_ERR;
        c->recv_err = EIO;
        return;
    }
    if (c->u->multishot) {
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->file_index = UR_MSHOT_CAP; /* the cap (`optlen` in newer headers) */
    } else {
        io_uring_prep_recv(sqe, c->fd, NULL, UR_BUF_SIZE, 0);
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UR_BGID;
    if (poll_first)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    io_uring_sqe_set_data64(sqe, tag(c, OP_RECV));
    c->pending |= P_RECV;
}

static int arm_pollout(struct ur_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(c->u);
    if (!sqe)
        return -EIO;
    io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
    io_uring_sqe_set_data64(sqe, tag(c, OP_POLLOUT));
    c->pending |= P_POLLOUT;
    return 0;
}

static int post_send(struct ur_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(c->u);
    if (!sqe)
        return -EIO;
    io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off,
                       MSG_NOSIGNAL | (c->flags & F_LAST_SEND ? MSG_MORE : 0));
    io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
    c->pending |= P_SEND;
    return 0;
}

static void cancel(struct ur_conn *c, unsigned op)
{
    struct io_uring_sqe *sqe = get_sqe(c->u);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, tag(c, op), 0);
    io_uring_sqe_set_data64(sqe, OP_CANCEL);
}

/* ---- send buffers ---- */

static char *out_get(struct uring *u)
{
    if (u->out_free_n > 0)
        return u->out_free[--u->out_free_n];
    return malloc(UR_OUT_SIZE);
}

static void out_put(struct uring *u, char *p)
{
    if (!p)
        return;
    if (u->out_free_n < UR_OUT_KEEP)
        u->out_free[u->out_free_n++] = p;
    else
        free(p);
}

/* ---- lists ---- */

static void list_push(struct ur_conn **head, struct ur_conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void list_remove(struct ur_conn **head, struct ur_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

/* ---- input beyond the queue ---- */

/* Appends n bytes to c's spill. 0, or -ENOMEM. */
static int spill_add(struct ur_conn *c, const char *p, size_t n)
{
    struct spill *sp = c->spill;
    size_t need = (sp ? sp->len : 0) + n;
    if (!sp || need > sp->cap) {
        size_t cap = sp ? (size_t)sp->cap * 2 : 2 * UR_BUF_SIZE;
        while (cap < need)
            cap *= 2;
        if (cap > UINT32_MAX)
            return -ENOMEM;
        struct spill *grown = realloc(sp, sizeof(*sp) + cap);
        if (!grown)
            return -ENOMEM;
        if (!sp)
            grown->off = grown->len = 0;
        grown->cap = (uint32_t)cap;
        c->spill = sp = grown;
    }
    memcpy(sp->data + sp->len, p, n);
    sp->len = (uint32_t)need;
    return 0;
}

static void spill_drop(struct ur_conn *c)
{
    free(c->spill);
    c->spill = NULL;
}

/* ---- a connection's received buffers ---- */

static void queue_push(struct ur_conn *c, unsigned bid, unsigned len)
{
    struct uring *u = c->u;
    u->filled[bid].next = UR_NIL;
    u->filled[bid].len = (uint16_t)len;
    if (c->q_tail == UR_NIL) {
        c->q_head = (uint16_t)bid;
        c->q_off = 0;
    } else {
        u->filled[c->q_tail].next = (uint16_t)bid;
    }
    c->q_tail = (uint16_t)bid;
}

/* The head buffer is read: back to the pool. */
static void queue_pop(struct ur_conn *c)
{
    unsigned bid = c->q_head;
    c->q_head = c->u->filled[bid].next;
    if (c->q_head == UR_NIL)
        c->q_tail = UR_NIL;
    c->q_off = 0;
    buf_back(c->u, bid);
}

/* Input for c in buffer bid: queued, or copied to the spill (the buffer goes
 * back) when c already holds input and the pool runs low. */
static void take_input(struct ur_conn *c, unsigned bid, unsigned len)
{
    struct uring *u = c->u;
    if (!c->spill && (c->q_head == UR_NIL || UR_BUFS - u->bufs_out >= UR_LOW)) {
        queue_push(c, bid, len);
        return;
    }
    int rc = spill_add(c, u->bufs + (size_t)bid * UR_BUF_SIZE, len);
    buf_back(u, bid);
    if (rc < 0 && !(c->flags & F_RECV_ERR)) {
        c->flags |= F_RECV_ERR;
        c->recv_err = (uint8_t)-rc;
    }
}

/* Arms c's receive again, or once a buffer is back. */
static void rearm(struct ur_conn *c, bool poll_first)
{
    struct uring *u = c->u;
    if (u->bufs_out < UR_BUFS) {
        arm_recv(c, poll_first);
    } else if (!(c->flags & F_STARVED)) {
        c->flags |= F_STARVED;
        list_push(&u->starved, c);
    }
}

/* A released connection with nothing in flight: close and free it. */
static void finish_if_idle(struct ur_conn *c)
{
    if (!(c->flags & F_RELEASED) || c->pending)
        return;
    struct uring *u = c->u;
    list_remove(&u->orphans, c);
    struct io_uring_sqe *sqe = u->stopped ? NULL : get_sqe(u);
    if (sqe) { /* goes with the next submission: no system call of its own */
        io_uring_prep_close(sqe, c->fd);
        io_uring_sqe_set_data64(sqe, OP_CANCEL);
    } else {
        close(c->fd);
    }
    out_put(u, c->out);
    slab_free(&u->conns, c);
}

static void deliver(struct ur_conn *c, uint32_t events)
{
    struct io_watch *w = c->w;
    if (!w)
        return;
    if (c->u->draining) { /* for the owner when the loop runs again */
        if (!c->held) {
            c->held_next = c->u->held;
            c->u->held = c;
        }
        c->held |= (uint16_t)events;
        return;
    }
    w->cb(c->u->loop, w, events);
}

/* ---- completions ---- */

static void on_recv(struct ur_conn *c, int res, unsigned cflags)
{
    struct uring *u = c->u;
    bool armed = cflags & IORING_CQE_F_MORE; /* the multishot goes on */
    if (!armed)
        c->pending &= (uint8_t)~P_RECV;
    if (res > 0 && (cflags & IORING_CQE_F_BUFFER))
        u->bufs_out++;
    if (c->flags & F_RELEASED) {
        if (res > 0 && (cflags & IORING_CQE_F_BUFFER))
            buf_back(u, cflags >> IORING_CQE_BUFFER_SHIFT);
        finish_if_idle(c);
        return;
    }
    if (res > 0) {
        take_input(c, cflags >> IORING_CQE_BUFFER_SHIFT, (unsigned)res);
        if (res == UR_BUF_SIZE)
            c->flags |= F_FULL;
        else
            c->flags &= (uint16_t)~F_FULL;
        if (!armed) /* the cap was reached, the pool ran dry, or a single receive is
                     * done: the next is armed once the owner has read everything */
            c->flags |= F_PAUSED;
        deliver(c, EPOLLIN);
    } else if (res == 0) {
        c->flags |= F_EOF;
        deliver(c, EPOLLIN | EPOLLRDHUP);
    } else if (res == -ENOBUFS || res == -EINTR || res == -EAGAIN || res == -ECANCELED) {
        /* ended without input: again now, or once what it took is read */
        if (c->q_head != UR_NIL || c->spill)
            c->flags |= F_PAUSED;
        else if (!(c->flags & F_PAUSED))
            rearm(c, res == -EAGAIN || res == -ECANCELED);
    } else {
        c->flags |= F_RECV_ERR;
        c->recv_err = (uint8_t)-res;
        deliver(c, EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP);
    }
}

static void on_send(struct ur_conn *c, int res)
{
    struct uring *u = c->u;
    c->pending &= (uint8_t)~P_SEND;
    if (res == 0)
        res = -EPIPE; /* a stream socket that takes nothing of a send is gone */
    if (res > 0 && c->out_off + (uint32_t)res < c->out_len) {
        c->out_off = (uint16_t)(c->out_off + res); /* part went: the rest in order */
        if (post_send(c) == 0)
            return;
        res = -EIO;
    }
    out_put(u, c->out);
    c->out = NULL;
    if (res < 0) {
        c->send_err = (uint8_t)-res;
    } else if (c->flags & F_SHUT) {
        c->flags &= (uint16_t)~F_SHUT;
        shutdown(c->fd, SHUT_WR);
    }
    if (c->flags & F_RELEASED) {
        finish_if_idle(c);
        return;
    }
    deliver(c, res < 0 ? EPOLLOUT | EPOLLERR : EPOLLOUT);
}

static void on_pollout(struct ur_conn *c, int res)
{
    c->pending &= (uint8_t)~P_POLLOUT;
    if (c->flags & F_RELEASED) {
        finish_if_idle(c);
        return;
    }
    uint32_t ev = EPOLLOUT;
    if (res < 0 || (res & POLLERR))
        ev |= EPOLLERR;
    if (res > 0 && (res & POLLHUP))
        ev |= EPOLLHUP;
    if (c->flags & F_CONNECTING) {
        c->flags &= (uint16_t)~F_CONNECTING;
        if (!(ev & (EPOLLERR | EPOLLHUP)))
            arm_recv(c, true);
    }
    deliver(c, ev);
}

static void complete(struct uring *u, uint64_t data, int res, unsigned cflags, bool *epoll_ready)
{
    unsigned op = (unsigned)(data & OP_MASK);
    struct ur_conn *c = (struct ur_conn *)(uintptr_t)(data & ~OP_MASK);
    switch (op) {
    case OP_EPOLL:
        u->epoll_armed = false;
        *epoll_ready = true;
        break;
    case OP_RECV: on_recv(c, res, cflags); break;
    case OP_SEND: on_send(c, res); break;
    case OP_POLLOUT: on_pollout(c, res); break;
    default: break; /* OP_CANCEL: its target completes on its own */
    }
}

/* A direct read that filled what it asked for left no receive armed: arm one
 * now, unless the owner read on and armed it (or its input ended) meanwhile. */
static void arm_unarmed(struct uring *u)
{
    while (u->unarmed) {
        struct ur_conn *c = u->unarmed;
        list_remove(&u->unarmed, c);
        c->flags &= (uint16_t)~F_UNARMED;
        if (!(c->pending & P_RECV) && c->q_head == UR_NIL && !c->spill &&
            !(c->flags & (F_EOF | F_RECV_ERR | F_WAITING | F_PAUSED)))
            arm_recv(c, false);
    }
}

static void mark_unarmed(struct ur_conn *c)
{
    if (!(c->flags & F_UNARMED)) {
        c->flags |= F_UNARMED;
        list_push(&c->u->unarmed, c);
    }
}

/* Receives that found no buffer get another try once buffers came back. */
static void rearm_starved(struct uring *u)
{
    while (u->starved && u->bufs_out < UR_BUFS) {
        struct ur_conn *c = u->starved;
        list_remove(&u->starved, c);
        c->flags &= (uint16_t)~F_STARVED;
        arm_recv(c, false);
    }
}

static void sweep_cb(struct loop *loop, struct timer *t)
{
    struct uring *u = (struct uring *)((char *)t - offsetof(struct uring, sweep));
    bool sends = false;
    for (struct ur_conn *c = u->orphans; c; c = c->next) {
        if (!(c->pending & P_SEND))
            continue;
        if (c->orphan_deadline_ms <= loop->now_ms)
            cancel(c, OP_SEND);
        else
            sends = true;
    }
    if (sends)
        timer_arm(loop, t, 1000);
}

/* Submits what is queued, waits up to wait_ms (-1: no limit) for a
 * completion and handles every one there is. Returns the wait's result. */
static int turn(struct uring *u, int wait_ms, bool *epoll_ready)
{
    struct io_uring_cqe *cqe;
    int rc;
    if (wait_ms < 0) {
        rc = io_uring_submit_and_wait(&u->ring, 1);
    } else {
        struct __kernel_timespec ts = {.tv_sec = wait_ms / 1000,
                                       .tv_nsec = (long long)(wait_ms % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    u->loop->now_ms = clock_ms();
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        uint64_t data = cqe->user_data;
        int res = cqe->res;
        unsigned cflags = cqe->flags;
        io_uring_cqe_seen(&u->ring, cqe);
        complete(u, data, res, cflags, epoll_ready);
    }
    return rc;
}

/* The loop stopped: sends of connections already closed (the last bytes of
 * their responses) go out before the ring goes, for at most UR_DRAIN_MS.
 * Events of connections still open are held for the next run. */
static void drain(struct uring *u)
{
    u->draining = true;
    uint64_t until = clock_ms() + UR_DRAIN_MS;
    bool epoll_ready;
    do {
        turn(u, 50, &epoll_ready);
    } while (u->orphans && clock_ms() < until);
    u->stopped = true;
    io_uring_submit(&u->ring); /* the closes queued by the last turn */
    u->draining = false;
}

/* The loop runs again: the events that came while it was stopping. */
static void deliver_held(struct uring *u)
{
    while (u->held) {
        struct ur_conn *c = u->held;
        u->held = c->held_next;
        uint32_t events = c->held;
        c->held = 0;
        deliver(c, events);
    }
}

void uring_run(struct loop *loop)
{
    struct uring *u = loop->ring;
    u->stopped = false;
    deliver_held(u);
    while (!loop->stop) {
        if (!u->epoll_armed) {
            struct io_uring_sqe *sqe = get_sqe(u);
            if (sqe) {
                io_uring_prep_poll_add(sqe, loop->epfd, POLLIN);
                io_uring_sqe_set_data64(sqe, OP_EPOLL);
                u->epoll_armed = true;
            }
        }
        rearm_starved(u);
        arm_unarmed(u);
        bool epoll_ready = false;
        int rc = turn(u, u->epoll_more ? 0 : loop_next_wait_ms(loop), &epoll_ready);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            break;
        if (epoll_ready || u->epoll_more)
            u->epoll_more = loop_poll_epoll(loop, 0) == LOOP_BATCH;
        loop_run_timers(loop);
    }
    drain(u);
}

/* ---- the connection's side ---- */

int ur_attach(struct uring *u, struct ur_conn **out, struct io_watch *w, int fd,
              void (*cb)(struct loop *, struct io_watch *, uint32_t), bool connecting)
{
    struct ur_conn *c = slab_alloc(&u->conns);
    if (!c)
        return -ENOMEM;
    memset(c, 0, sizeof(*c));
    c->u = u;
    c->w = w;
    c->fd = fd;
    c->q_head = c->q_tail = UR_NIL;
    w->fd = fd;
    w->cb = cb;
    w->events = 0;
    if (arm_pollout(c) < 0) { /* the first EPOLLOUT, as epoll gives on registration */
        slab_free(&u->conns, c);
        return -EIO;
    }
    if (connecting)
        c->flags |= F_CONNECTING;
    else
        arm_recv(c, false);
    *out = c;
    return 0;
}

void ur_release(struct ur_conn *c)
{
    struct uring *u = c->u;
    c->w = NULL;
    c->flags |= F_RELEASED;
    while (c->q_head != UR_NIL)
        queue_pop(c);
    spill_drop(c);
    if (c->flags & F_STARVED) {
        list_remove(&u->starved, c);
        c->flags &= (uint16_t)~F_STARVED;
    }
    if (c->flags & F_UNARMED) {
        list_remove(&u->unarmed, c);
        c->flags &= (uint16_t)~F_UNARMED;
    }
    if (c->held) {
        struct ur_conn **pp = &u->held;
        while (*pp != c)
            pp = &(*pp)->held_next;
        *pp = c->held_next;
        c->held = 0;
    }
    if (c->pending & P_RECV)
        cancel(c, OP_RECV);
    if (c->pending & P_POLLOUT)
        cancel(c, OP_POLLOUT);
    list_push(&u->orphans, c);
    if (c->pending & P_SEND) {
        c->orphan_deadline_ms = u->loop->now_ms + UR_ORPHAN_SEND_MS;
        if (!timer_armed(&u->sweep))
            timer_arm(u->loop, &u->sweep, 1000);
    }
    finish_if_idle(c);
}

ssize_t ur_recv(struct ur_conn *c, void *buf, size_t len)
{
    struct uring *u = c->u;
    size_t n = 0;
    while (n < len && c->q_head != UR_NIL) {
        unsigned bid = c->q_head;
        size_t have = (size_t)u->filled[bid].len - c->q_off;
        size_t take = len - n < have ? len - n : have;
        memcpy((char *)buf + n, u->bufs + (size_t)bid * UR_BUF_SIZE + c->q_off, take);
        n += take;
        c->q_off = (uint16_t)(c->q_off + take);
        if (take == have)
            queue_pop(c);
    }
    struct spill *sp = c->spill;
    if (sp && n < len) {
        size_t take = len - n < sp->len - sp->off ? len - n : sp->len - sp->off;
        memcpy((char *)buf + n, sp->data + sp->off, take);
        n += take;
        sp->off += (uint32_t)take;
        if (sp->off == sp->len)
            spill_drop(c);
    }
    if (c->q_head != UR_NIL || c->spill)
        return (ssize_t)n; /* the owner asked for less than there is */
    c->flags &= (uint16_t)~F_PAUSED; /* all read */
    if (c->flags & F_EOF)
        return (ssize_t)n;
    if (c->flags & F_RECV_ERR) {
        if (n)
            return (ssize_t)n;
        errno = c->recv_err;
        return -1;
    }
    if (c->pending & P_RECV || c->flags & F_WAITING || (n == len && c->flags & F_UNARMED)) {
        if (n)
            return (ssize_t)n;
        errno = EAGAIN;
        return -1;
    }
    /* No receive armed. The socket was empty when the last one ended: arm one.
     * It filled its buffer: read the rest directly. */
    if (!(c->flags & F_FULL)) {
        rearm(c, true);
        if (n)
            return (ssize_t)n;
        errno = EAGAIN;
        return -1;
    }
    if (n == len) {
        mark_unarmed(c);
        return (ssize_t)n;
    }
    size_t want = len - n;
    ssize_t r = recv(c->fd, (char *)buf + n, want, MSG_DONTWAIT);
    if (r > 0) {
        if ((size_t)r < want) {
            c->flags &= (uint16_t)~F_FULL;
            rearm(c, true);
        } else {
            mark_unarmed(c);
        }
        return (ssize_t)n + r;
    }
    if (r == 0) {
        c->flags |= F_EOF;
        return (ssize_t)n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->flags &= (uint16_t)~F_FULL;
        rearm(c, true);
        if (n)
            return (ssize_t)n;
        errno = EAGAIN;
        return -1;
    }
    c->flags |= F_RECV_ERR;
    c->recv_err = (uint8_t)errno;
    return n ? (ssize_t)n : -1;
}

bool ur_drained(const struct ur_conn *c)
{
    return c->q_head == UR_NIL && !c->spill && (c->pending & P_RECV || c->flags & F_WAITING) &&
           !(c->flags & (F_EOF | F_RECV_ERR));
}

ssize_t ur_writev(struct ur_conn *c, const struct iovec *iov, int n, bool last)
{
    if (c->send_err) {
        errno = c->send_err;
        return -1;
    }
    if (c->pending & (P_SEND | P_POLLOUT)) {
        errno = EAGAIN;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    if (total <= UR_OUT_SIZE) {
        char *out = out_get(c->u);
        if (!out) {
            errno = ENOMEM;
            return -1;
        }
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        c->out = out;
        c->out_off = 0;
        c->out_len = (uint16_t)total;
        c->flags = (uint16_t)(last ? c->flags | F_LAST_SEND : c->flags & ~F_LAST_SEND);
        if (post_send(c) < 0) {
            out_put(c->u, out);
            c->out = NULL;
            errno = EIO;
            return -1;
        }
        return (ssize_t)total;
    }
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t r = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT | (last ? MSG_MORE : 0));
    if ((r >= 0 && (size_t)r < total) || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
        int saved = errno;
        if (arm_pollout(c) < 0) {
            errno = EIO;
            return -1;
        }
        errno = saved;
    }
    return r;
}

void ur_shutdown(struct ur_conn *c)
{
    if (c->pending & P_SEND)
        c->flags |= F_SHUT;
    else
        shutdown(c->fd, SHUT_WR);
}

bool ur_has_pending(const struct ur_conn *c)
{
    return c->q_head != UR_NIL || c->spill || (c->flags & (F_EOF | F_RECV_ERR));
}

/* ---- the ring ---- */

/* Whether this kernel caps a multishot receive at a byte count (older ones
 * refuse the field, or would let one run take all a socket holds): one byte
 * on a socket pair, received by a receive capped at one byte. */
static bool capped_multishot_works(struct uring *u)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    bool works = false;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    struct io_uring_cqe *cqe;
    if (sqe && write(sv[1], "x", 1) == 1) {
        io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
        sqe->file_index = 1;
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = UR_BGID;
        io_uring_sqe_set_data64(sqe, OP_CANCEL);
        if (io_uring_submit_and_wait(&u->ring, 1) >= 0 && io_uring_peek_cqe(&u->ring, &cqe) == 0) {
            works = cqe->res == 1 && !(cqe->flags & IORING_CQE_F_MORE);
            if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
                u->bufs_out++;
                buf_back(u, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            }
            io_uring_cqe_seen(&u->ring, cqe);
        }
    }
    close(sv[0]);
    close(sv[1]);
    return works;
}

int uring_open(struct loop *loop)
{
    struct uring *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    struct io_uring_params p = {
        .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                 IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE,
        .cq_entries = UR_ENTRIES * 4,
    };
    int rc = io_uring_queue_init_params(UR_ENTRIES, &u->ring, &p);
    if (rc < 0) {
        free(u);
        return rc;
    }
    if (!(p.features & IORING_FEAT_EXT_ARG)) {
        rc = -EOPNOTSUPP;
        goto fail_ring;
    }
    size_t ring_bytes = UR_BUFS * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->bufs = mmap(NULL, (size_t)UR_BUFS * UR_BUF_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (u->br == MAP_FAILED || u->bufs == MAP_FAILED) {
        rc = -ENOMEM;
        goto fail_maps;
    }
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)u->br, .ring_entries = UR_BUFS,
                                   .bgid = UR_BGID};
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0)
        goto fail_maps;
    io_uring_buf_ring_init(u->br);
    for (unsigned i = 0; i < UR_BUFS; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * UR_BUF_SIZE, UR_BUF_SIZE,
                              (unsigned short)i, io_uring_buf_ring_mask(UR_BUFS), (int)i);
    io_uring_buf_ring_advance(u->br, UR_BUFS);
    u->multishot = capped_multishot_works(u);
    slab_init(&u->conns, sizeof(struct ur_conn));
    timer_init(&u->sweep, sweep_cb);
    u->loop = loop;
    loop->ring = u;
    return 0;

fail_maps:
    if (u->br != MAP_FAILED && u->br)
        munmap(u->br, ring_bytes);
    if (u->bufs != MAP_FAILED && u->bufs)
        munmap(u->bufs, (size_t)UR_BUFS * UR_BUF_SIZE);
fail_ring:
    io_uring_queue_exit(&u->ring);
    free(u);
    return rc;
}

void uring_single_receives(struct loop *loop)
{
    loop->ring->multishot = false;
}

void uring_close(struct loop *loop)
{
    struct uring *u = loop->ring;
    if (!u)
        return;
    timer_cancel(loop, &u->sweep);
    io_uring_queue_exit(&u->ring); /* drops the kernel's hold on every socket */
    while (u->orphans) {
        struct ur_conn *c = u->orphans;
        list_remove(&u->orphans, c);
        close(c->fd);
        out_put(u, c->out);
    }
    while (u->out_free_n > 0)
        free(u->out_free[--u->out_free_n]);
    slab_fini(&u->conns);
    munmap(u->br, UR_BUFS * sizeof(struct io_uring_buf));
    munmap(u->bufs, (size_t)UR_BUFS * UR_BUF_SIZE);
    free(u);
    loop->ring = NULL;
}
