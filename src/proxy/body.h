/*
 * body — where a message body ends, for either direction.
 *
 * A body cursor follows a request body through the client's buffer or a
 * response body through the origin connection's buffer, by its framing:
 * Content-Length (bytes left), chunked (an incremental scan of the chunk
 * framing, optionally decoding it in place for an HTTP/1.0 client) or, for a
 * response, until the origin closes. body_ready() says how many bytes at the
 * buffer's start may be passed on now; the caller sends them and reports
 * them with body_consumed(). The cursor never copies a body: chunked framing
 * is forwarded as received unless it is being decoded.
 */
#ifndef LIMPET_PROXY_BODY_H
#define LIMPET_PROXY_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buffer.h"
#include "http/h1.h"

struct body_cursor {
    enum h1_body framing;         /* how the body ends */
    uint64_t left;                /* H1_BODY_LENGTH: bytes not passed on yet */
    uint64_t length;              /* H1_BODY_LENGTH: the whole length (for a rewind) */
    struct h1_chunked chunk;      /* H1_BODY_CHUNKED: scanner state */
    uint32_t scan;                /* chunked: buffer offset up to which bytes are scanned */
    bool scanned_to_end;          /* chunked: the last chunk and trailers were scanned */
    bool decode;                  /* chunked: pass on the data alone, framing removed */
    bool eof;                     /* until-close: the sender closed */
};

/* Starts a cursor for a body whose first byte is at buffer offset `from`. */
void body_cursor_init(struct body_cursor *b, enum h1_body framing, uint64_t length,
                      uint32_t from, bool decode);

/* Bytes at in->start that may be passed on now (≤ what the buffer holds);
 * -1 on bad chunk framing. */
long body_ready(struct body_cursor *b, struct buf *in);

/* n bytes at in->start were passed on. */
void body_consumed(struct body_cursor *b, struct buf *in, size_t n);

/* Whether the whole body has been passed on. */
bool body_complete(const struct body_cursor *b, const struct buf *in);

/* Whether passing on the n bytes at in->start (n ≤ body_ready) completes
 * the body. */
bool body_ends_after(const struct body_cursor *b, const struct buf *in, size_t n);

/* The buffer's bytes moved `moved` bytes toward its front (buf_compact). */
static inline void body_rebase(struct body_cursor *b, size_t moved)
{
    b->scan -= (uint32_t)moved;
}

#endif
