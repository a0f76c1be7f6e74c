/*
 * transport — how a connection reads and writes: a plain socket or TLS.
 *
 * Every connection (client or origin) embeds a `struct transport` and does
 * its I/O through tp_recv / tp_writev / tp_send / tp_shutdown, so the proxy
 * logic never knows which one it talks through. A plain connection on a
 * worker whose loop has an io_uring (`u != NULL`) goes through core/uring.c,
 * which queues its I/O in the ring under the same contract; otherwise a plain
 * connection has `ssl == NULL` and each call is the system call it replaces.
 * Both are one predictable branch (inline). tp_watch and tp_close register
 * and retire the connection with whichever drives it.
 *
 * TLS (core/tls.c) keeps the same contract as the socket calls, with the
 * readiness rules of edge-triggered epoll:
 *  - tp_recv returns bytes, 0 at the end of the stream, or -1 with errno
 *    EAGAIN when nothing can be read now (any other errno: the connection
 *    failed). A server connection's handshake runs inside its first reads.
 *  - tp_drained(t, n, want) says whether a read that returned n of want bytes
 *    emptied the connection (a plain socket: n < want; TLS: the last record
 *    read stopped at would-block), i.e. whether to wait for the next edge.
 *  - tp_writev returns the bytes taken (a short count means the socket is
 *    full), or -1 with EAGAIN / another errno. `last`: the sending side
 *    ends after these bytes (a shutdown or close follows at once), so a
 *    plain socket holds their tail back (MSG_MORE) for the FIN to leave in
 *    the same segment. Over TLS small pieces are
 *    coalesced into records of up to 16 kB (a per-thread scratch), large ones
 *    are written in place; a write that could not finish is retried by the
 *    next call with the same bytes at its start, as OpenSSL requires.
 *  - TLS may need to write to read (a handshake flight) or read to write; the
 *    owner passes each epoll event to tp_events(), which turns the awaited
 *    direction into the blocked side's readiness flag.
 */
#ifndef LIMPET_CORE_TRANSPORT_H
#define LIMPET_CORE_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/uring.h"

struct ssl_st;

/* transport.flags (TLS only) */
enum {
    TP_READ_WANTS_WRITE = 1 << 0,  /* the last read waits for the socket to take bytes */
    TP_WRITE_WANTS_READ = 1 << 1,  /* the last write (or handshake step) waits for input */
    TP_DRAINED          = 1 << 2,  /* the last read stopped at would-block */
    TP_EOF              = 1 << 3,  /* the peer finished after bytes were returned */
    TP_ERROR            = 1 << 4,  /* failed after bytes were returned */
    TP_ESTABLISHED      = 1 << 5,  /* the handshake completed (and was counted) */
    TP_FAIL_COUNTED     = 1 << 6,  /* a handshake failure was counted */
    TP_SHUT             = 1 << 7,  /* close_notify sent */
    TP_SOCKET_EMPTY     = 1 << 8,  /* the last recv() returned less than asked: the socket
                                    * was empty then (core/tls.c's socket BIO) */
};

struct transport {
    struct ssl_st *ssl;            /* NULL: a plain socket */
    struct ur_conn *u;             /* a plain socket driven through the loop's io_uring */
    uint16_t flags;                /* TLS: TP_* above */
    int fd;                        /* TLS: the socket (its BIO's) */
};

/* ---- TLS halves (core/tls.c) ---- */
ssize_t tls_recv(struct transport *t, void *buf, size_t len);
ssize_t tls_writev(struct transport *t, const struct iovec *iov, int n);
void tls_shutdown(struct transport *t);
void tls_close(struct transport *t);
bool tls_has_pending(const struct transport *t);

static inline bool tp_is_tls(const struct transport *t)
{
    return t->ssl != NULL;
}

static inline ssize_t tp_recv(struct transport *t, int fd, void *buf, size_t len)
{
    if (t->u)
        return ur_recv(t->u, buf, len);
    if (__builtin_expect(t->ssl == NULL, 1))
        return recv(fd, buf, len, 0);
    return tls_recv(t, buf, len);
}

/* Whether a read of n bytes out of want emptied the connection. */
static inline bool tp_drained(const struct transport *t, size_t n, size_t want)
{
    if (t->u)
        return ur_drained(t->u);
    if (__builtin_expect(t->ssl == NULL, 1))
        return n < want;
    return (t->flags & TP_DRAINED) != 0;
}

static inline ssize_t tp_writev(struct transport *t, int fd, const struct iovec *iov, int n,
                                bool last)
{
    if (t->u)
        return ur_writev(t->u, iov, n, last);
    if (__builtin_expect(t->ssl == NULL, 1)) {
        /* sendmsg rather than writev: the socket path skips the file layer */
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
        return sendmsg(fd, &msg, MSG_NOSIGNAL | (last ? MSG_MORE : 0));
    }
    return tls_writev(t, iov, n);
}

static inline ssize_t tp_send(struct transport *t, int fd, const void *buf, size_t len, bool last)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return tp_writev(t, fd, &iov, 1, last);
}

/* Ends the sending side: TLS sends close_notify first (best effort). */
static inline void tp_shutdown(struct transport *t, int fd)
{
    if (t->u) {
        ur_shutdown(t->u);
        return;
    }
    if (t->ssl)
        tls_shutdown(t);
    shutdown(fd, SHUT_WR);
}

/* Input buffered inside the transport (TLS plaintext not read yet). */
static inline bool tp_has_pending(const struct transport *t)
{
    if (t->u)
        return ur_has_pending(t->u);
    return t->ssl && tls_has_pending(t);
}

/* Bytes before the transport's own protocol starts (a PROXY protocol header
 * ahead of TLS): read from the socket itself, or from the ring. */
static inline ssize_t tp_recv_raw(struct transport *t, int fd, void *buf, size_t len)
{
    if (t->u)
        return ur_recv(t->u, buf, len);
    return recv(fd, buf, len, 0);
}

static inline bool tp_raw_drained(const struct transport *t, size_t n, size_t want)
{
    if (t->u)
        return ur_drained(t->u);
    return n < want;
}

/* An epoll event for the connection: a TLS read waiting for the socket to
 * take bytes may go on once it does, a write waiting for input once it
 * arrives. */
static inline void tp_events(const struct transport *t, uint32_t events, bool *readable,
                             bool *writable)
{
    if (__builtin_expect(t->ssl == NULL, 1))
        return;
    if ((t->flags & TP_READ_WANTS_WRITE) && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        *readable = true;
    if ((t->flags & TP_WRITE_WANTS_READ) && (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
        *writable = true;
}

/* Frees the TLS state (before the socket is closed); nothing for plain. */
static inline void tp_free(struct transport *t)
{
    if (t->ssl)
        tls_close(t);
}

/* Starts delivering the connection's events to w's callback: through the
 * loop's ring for a plain socket when it has one, else edge-triggered epoll.
 * `connecting`: a non-blocking connect is under way. 0 or -errno. */
static inline int tp_watch(struct loop *loop, struct transport *t, struct io_watch *w, int fd,
                           void (*cb)(struct loop *, struct io_watch *, uint32_t),
                           bool connecting)
{
    t->u = NULL;
    if (loop->ring && !t->ssl)
        return ur_attach(loop->ring, &t->u, w, fd, cb, connecting);
    return loop_watch(loop, w, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, cb);
}

/* Retires a watched connection and closes its socket (the ring closes it
 * once nothing of it is in flight). */
static inline void tp_close(struct loop *loop, struct transport *t, struct io_watch *w)
{
    if (t->u) {
        ur_release(t->u);
        t->u = NULL;
        return;
    }
    loop_unwatch_closing(loop, w); /* close() takes it out of epoll */
    tp_free(t);
    close(w->fd);
}

#endif
