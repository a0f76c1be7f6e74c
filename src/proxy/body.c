/*
 * body — body cursors (see body.h).
 */
#include "proxy/body.h"

#include <string.h>

void body_cursor_init(struct body_cursor *b, enum h1_body framing, uint64_t length,
                      uint32_t from, bool decode)
{
    memset(b, 0, sizeof(*b));
    b->framing = framing;
    b->left = b->length = framing == H1_BODY_LENGTH ? length : 0;
    b->scan = from;
    b->decode = decode;
    h1_chunked_init(&b->chunk);
}

/* Scans (or decodes) the chunk framing received since the last call. */
static long scan_chunked(struct body_cursor *b, struct buf *in)
{
    if (b->scanned_to_end || b->scan >= in->end)
        return 0;
    bool done = false;
    char *raw = in->data + b->scan;
    size_t raw_len = in->end - b->scan;
    if (b->decode) {
        /* Decoded data stays at scan; the undecoded tail follows it. */
        size_t data_len = 0;
        long r = h1_chunked_decode(&b->chunk, raw, raw_len, &data_len, &done);
        if (r < 0)
            return -1;
        size_t tail = raw_len - (size_t)r;
        memmove(raw + data_len, raw + r, tail);
        b->scan += (uint32_t)data_len;
        in->end = b->scan + (uint32_t)tail;
    } else {
        long r = h1_chunked_scan(&b->chunk, raw, raw_len, &done);
        if (r < 0)
            return -1;
        b->scan += (uint32_t)r;
    }
    b->scanned_to_end = done;
    return 0;
}

long body_ready(struct body_cursor *b, struct buf *in)
{
    switch (b->framing) {
    case H1_BODY_LENGTH: {
        uint64_t avail = buf_len(in);
        return (long)(avail < b->left ? avail : b->left);
    }
    case H1_BODY_CHUNKED:
        if (scan_chunked(b, in) < 0)
            return -1;
        return (long)(b->scan - in->start);
    case H1_BODY_UNTIL_CLOSE:
        return (long)buf_len(in);
    default:
        return 0;
    }
}

void body_consumed(struct body_cursor *b, struct buf *in, size_t n)
{
    in->start += (uint32_t)n;
    if (b->framing == H1_BODY_LENGTH)
        b->left -= n;
}

bool body_ends_after(const struct body_cursor *b, const struct buf *in, size_t n)
{
    switch (b->framing) {
    case H1_BODY_LENGTH:
        return b->left == n;
    case H1_BODY_CHUNKED:
        return b->scanned_to_end && in->start + n == b->scan;
    case H1_BODY_UNTIL_CLOSE:
        return b->eof && buf_len(in) == n;
    default:
        return true;
    }
}

bool body_complete(const struct body_cursor *b, const struct buf *in)
{
    switch (b->framing) {
    case H1_BODY_LENGTH:
        return b->left == 0;
    case H1_BODY_CHUNKED:
        return b->scanned_to_end && in->start == b->scan;
    case H1_BODY_UNTIL_CLOSE:
        return b->eof && buf_len(in) == 0;
    default:
        return true;
    }
}
