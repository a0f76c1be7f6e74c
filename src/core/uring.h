/*
 * uring — a worker loop's plain sockets driven through io_uring, so a request
 * costs no system call of its own: receives, sends and readiness waits are
 * queued in the ring and go to the kernel together, once per loop turn.
 *
 * The proxy keeps its readiness logic (edge-triggered epoll rules, see
 * core/transport.h); this layer emulates it over completions:
 *  - a receive stays armed (multishot, capped, where the kernel can cap it;
 *    else one receive at a time): each buffer's worth of input (in a buffer
 *    the kernel picks from a per-ring pool, so an idle connection holds none)
 *    joins the connection's queue that tp_recv copies from, and its
 *    completion is the EPOLLIN edge (EOF adds EPOLLRDHUP); an owner that
 *    leaves input unread has its receive paused until it has read it all;
 *  - a small write is copied into a send buffer and queued (with MSG_MORE
 *    when the connection's sending side ends after it); tp_writev returns
 *    it as taken. While it is in flight further writes get EAGAIN, and its
 *    completion is the EPOLLOUT edge. Large writes go out at once with
 *    sendmsg (a readiness poll is queued when the socket was full);
 *  - a connection being opened waits for writability with a queued poll.
 * A released connection's descriptor is closed once the ring holds nothing of
 * it: receives and polls are cancelled, a send in flight is let finish (a
 * shutdown asked for after it is done then), for at most UR_ORPHAN_SEND_MS.
 *
 * The ring is made on the worker thread (single issuer, task work deferred to
 * the wait), and the loop waits in it: epoll (listeners, TLS connections,
 * the wake eventfd, other descriptors) is one poll in the ring.
 */
#ifndef LIMPET_CORE_URING_H
#define LIMPET_CORE_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct loop;
struct io_watch;
struct uring;
struct ur_conn;

/* Gives the loop a ring (on the thread that runs it). 0, or -errno when this
 * kernel or sandbox has no usable io_uring (the loop then stays on epoll). */
int uring_open(struct loop *loop);
/* Receives one at a time, as on a kernel that cannot cap multishot receives
 * (tests run both ways); before any connection is attached. */
void uring_single_receives(struct loop *loop);
/* Closes the ring and every descriptor it still held (any thread, after the
 * loop stopped). */
void uring_close(struct loop *loop);
/* The loop's run, through the ring (loop_run calls it). When the loop stops,
 * sends of released connections get up to a second to finish; events of open
 * connections that come meanwhile are delivered when it runs again. */
void uring_run(struct loop *loop);

/* Drives fd through the ring for watch w: its callback gets the emulated
 * epoll events. `connecting`: a non-blocking connect is under way (EPOLLOUT
 * comes when it is done). Returns 0 or -errno. */
int ur_attach(struct uring *u, struct ur_conn **out, struct io_watch *w, int fd,
              void (*cb)(struct loop *, struct io_watch *, uint32_t), bool connecting);
/* The owner is done with the connection: the ring closes fd when it can. */
void ur_release(struct ur_conn *c);

ssize_t ur_recv(struct ur_conn *c, void *buf, size_t len);
bool ur_drained(const struct ur_conn *c);
/* `last`: a shutdown or close follows; the bytes go with MSG_MORE, so the
 * FIN leaves with their tail (core/transport.h). */
ssize_t ur_writev(struct ur_conn *c, const struct iovec *iov, int n, bool last);
void ur_shutdown(struct ur_conn *c);
/* Received input (or its end) not read yet. */
bool ur_has_pending(const struct ur_conn *c);

#endif
