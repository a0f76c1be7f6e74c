/*
 * fuzz_chunked — libFuzzer target: the chunked-body scanner and decoder
 * (src/http/h1.c: h1_chunked_scan, h1_chunked_decode).
 *
 * The input is a chunked body (and whatever follows it). The proxy sees a
 * body in pieces of arbitrary size, so the property checked is split
 * consistency: scanning it whole, in pieces cut at input-derived points, and
 * byte by byte gives the same verdict (the same number of body bytes, "done"
 * at the same place, or the same refusal); decoding it whole and in pieces
 * gives the same verdict as scanning and the same data; and the decoded data
 * of a complete body equals what a straightforward reference reading of the
 * chunk sizes gives.
 */
#include <stdbool.h>

#include "fuzz_common.h"
#include "http/h1.h"

/* Verdict of a scan or decode: body bytes consumed (< 0: refused) and done. */
struct verdict {
    long consumed;
    bool done;
};

static struct verdict scan_pieces(const char *buf, size_t size, uint64_t seed, size_t max_piece)
{
    struct h1_chunked c;
    struct verdict v = {0, false};
    h1_chunked_init(&c);
    size_t off = 0;
    while (off < size) {
        size_t n = 1 + (size_t)(fuzz_rand(&seed) % max_piece);
        if (n > size - off)
            n = size - off;
        bool done = false;
        long r = h1_chunked_scan(&c, buf + off, n, &done);
        if (r < 0) {
            v.consumed = r;
            /* the error is sticky */
            FUZZ_CHECK(h1_chunked_scan(&c, buf, size, &done) == H1_INVALID && !done);
            return v;
        }
        FUZZ_CHECK((size_t)r <= n);
        if (done) {
            v.consumed = (long)(off + (size_t)r);
            v.done = true;
            /* after the end nothing more belongs to the body */
            FUZZ_CHECK(h1_chunked_scan(&c, buf, size, &done) == 0 && done);
            return v;
        }
        FUZZ_CHECK((size_t)r == n);
        off += n;
    }
    v.consumed = (long)off;
    return v;
}

/* Decodes in pieces into out (room for size bytes); *out_len gets the data. */
static struct verdict decode_pieces(const uint8_t *data, size_t size, uint64_t seed,
                                    size_t max_piece, char *out, size_t *out_len)
{
    struct h1_chunked c;
    struct verdict v = {0, false};
    h1_chunked_init(&c);
    *out_len = 0;
    size_t off = 0;
    while (off < size) {
        size_t n = 1 + (size_t)(fuzz_rand(&seed) % max_piece);
        if (n > size - off)
            n = size - off;
        char *piece = fuzz_dup(data + off, n);
        size_t dlen = 0;
        bool done = false;
        long r = h1_chunked_decode(&c, piece, n, &dlen, &done);
        if (r < 0) {
            free(piece);
            v.consumed = r;
            return v;
        }
        FUZZ_CHECK((size_t)r <= n && dlen <= (size_t)r);
        memcpy(out + *out_len, piece, dlen);
        *out_len += dlen;
        free(piece);
        if (done) {
            v.consumed = (long)(off + (size_t)r);
            v.done = true;
            return v;
        }
        FUZZ_CHECK((size_t)r == n);
        off += n;
    }
    v.consumed = (long)off;
    return v;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

/* Reference reading of a body the scanner accepted as complete: chunk sizes
 * (hex digits up to ';' or CR), data, CRLF; stops at the zero chunk. */
static size_t reference_data(const char *b, size_t len, char *out)
{
    size_t p = 0, n = 0;
    for (;;) {
        uint64_t size = 0;
        while (b[p] != ';' && b[p] != '\r')
            size = size * 16 + (uint64_t)hexval(b[p++]);
        while (b[p] != '\n')
            p++;
        p++;
        if (size == 0)
            return n;
        FUZZ_CHECK(size <= len - p);
        memcpy(out + n, b + p, (size_t)size);
        n += (size_t)size;
        p += (size_t)size + 2;
    }
}

static void same(struct verdict a, struct verdict b)
{
    FUZZ_CHECK((a.consumed < 0) == (b.consumed < 0));
    if (a.consumed >= 0)
        FUZZ_CHECK(a.consumed == b.consumed && a.done == b.done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_dup(data, size);
    uint64_t seed = fuzz_seed(data, size);

    struct verdict whole = scan_pieces(buf, size, seed, size ? size : 1);
    if (size > 0)
        FUZZ_CHECK(whole.consumed < 0 || whole.consumed > 0);
    same(whole, scan_pieces(buf, size, seed, 1));
    same(whole, scan_pieces(buf, size, seed ^ 1, 7));
    same(whole, scan_pieces(buf, size, seed ^ 2, 64));

    char *d1 = malloc(size + 1), *d2 = malloc(size + 1), *ref = malloc(size + 1);
    FUZZ_CHECK(d1 && d2 && ref);
    size_t l1 = 0, l2 = 0;
    struct verdict dw = decode_pieces(data, size, seed, size ? size : 1, d1, &l1);
    same(whole, dw);
    struct verdict ds = decode_pieces(data, size, seed ^ 3, 5, d2, &l2);
    same(whole, ds);
    if (whole.consumed >= 0) {
        FUZZ_CHECK(l1 == l2 && memcmp(d1, d2, l1) == 0);
        FUZZ_CHECK(l1 <= (size_t)whole.consumed);
    }
    if (whole.done) {
        size_t lr = reference_data(buf, (size_t)whole.consumed, ref);
        FUZZ_CHECK(lr == l1 && memcmp(ref, d1, lr) == 0);
    }
    free(d1);
    free(d2);
    free(ref);
    free(buf);
    return 0;
}
