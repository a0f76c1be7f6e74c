/*
 * tunnel — the bytes of an upgraded connection (WebSocket and other
 * `Upgrade` protocols), relayed verbatim both ways after the origin's 101.
 *
 * Each direction has one buffer (client->in toward the origin, the origin
 * connection's `in` toward the client); a side is read only when its buffer
 * has room, so a slow reader slows the writer down. When one side finishes
 * sending, the other side's write half is shut once its pending bytes are
 * out; when both have finished, or either fails, the tunnel closes. The
 * connection's timer closes a tunnel idle for `timeouts.client`.
 */
#include "proxy/proxy.h"

#include <errno.h>
#include <sys/socket.h>

#include "proxy/thread.h"

/* Moves bytes from `from` (through buf) to `to`. Returns -1 on a socket
 * error, else whether anything moved. Sets *eof when `from` finished. */
static int pump(struct proxy_thread *pt, struct buf **buf, struct transport *from_tp, int from,
                bool *from_readable, bool *eof, struct transport *to_tp, int to, bool *to_writable)
{
    bool moved = false;
    for (;;) {
        if (*buf && buf_len(*buf) > 0) {
            if (!*to_writable)
                return moved;
            ssize_t n = tp_send(to_tp, to, (*buf)->data + (*buf)->start, buf_len(*buf),
                                false);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    *to_writable = false;
                    return moved;
                }
                return -1;
            }
            (*buf)->start += (uint32_t)n;
            moved = true;
            continue;
        }
        if (*eof || !*from_readable)
            return moved;
        if (!*buf && !(*buf = buf_get(&pt->bufs)))
            return -1;
        (*buf)->start = (*buf)->end = 0;
        ssize_t n = tp_recv(from_tp, from, (*buf)->data, BUF_SIZE);
        if (n > 0) {
            (*buf)->end = (uint32_t)n;
            moved = true;
        } else if (n == 0) {
            *eof = true;
            moved = true;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *from_readable = false;
        } else {
            return -1;
        }
    }
}

bool tunnel_step(struct client *c)
{
    struct proxy_thread *pt = c->pt;
    struct worker *w = pt->w;
    struct exchange *ex = c->ex;
    struct origin_conn *oc = ex->oc;
    int up = pump(pt, &c->in, &c->tp, c->io.fd, &c->readable, &ex->tunnel_client_eof, &oc->tp,
                  oc->io.fd, &oc->writable);
    int down = pump(pt, &oc->in, &oc->tp, oc->io.fd, &oc->readable, &ex->tunnel_origin_eof,
                    &c->tp, c->io.fd, &c->writable);
    if (up < 0 || down < 0)
        return false;
    if (up > 0)
        c->last_io_ms = w->loop.now_ms;
    if (down > 0)
        ex->origin_io_ms = w->loop.now_ms;
    bool up_done = ex->tunnel_client_eof && (!c->in || buf_len(c->in) == 0);
    bool down_done = ex->tunnel_origin_eof && (!oc->in || buf_len(oc->in) == 0);
    if (up_done)
        tp_shutdown(&oc->tp, oc->io.fd);
    if (down_done)
        tp_shutdown(&c->tp, c->io.fd);
    return !(up_done && down_done);
}
