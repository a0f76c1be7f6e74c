/*
 * h1 — HTTP/1.x message head parser and chunked-body scanner (RFC 9112).
 *
 * The parser is stateless and zero-copy: it is handed the bytes received so far
 * and either finds a complete head (returning its length), asks for more
 * (H1_NEED_MORE) or refuses it (H1_INVALID, with the HTTP status to answer and
 * a short reason). Every pointer it fills in points into the caller's buffer,
 * which the caller must keep unchanged while it uses them. Re-parsing from the
 * start when more bytes arrive is cheap (heads are small) and keeps no state.
 *
 * It is strict by design: anything it does not fully understand is refused,
 * never guessed at (SPEC §4). h1_request_semantics()/h1_response_semantics()
 * then derive message framing (none / Content-Length / chunked / until close),
 * keep-alive and the headers the proxy needs, refusing ambiguous framing.
 *
 * The chunked scanner walks a chunked body incrementally across reads without
 * copying it, so the proxy can forward the body verbatim and know where it ends.
 */
#ifndef LIMPET_HTTP_H1_H
#define LIMPET_HTTP_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H1_MAX_HEADERS 100       /* more header fields than this → 400 */
#define H1_MAX_REQUEST_LINE 8192 /* longer request line → 414 */

enum {
    H1_NEED_MORE = -2,
    H1_INVALID = -1,
};

struct h1_header {
    const char *name;      /* field name as received (case preserved) */
    size_t name_len;
    const char *value;     /* field value without leading/trailing OWS */
    size_t value_len;
    const char *line;      /* start of the whole field line */
    size_t line_len;       /* whole line including its CRLF */
};

struct h1_error {
    int status;            /* HTTP status to answer: 400, 414, 431, 501, 505 */
    const char *reason;    /* static string, e.g. "whitespace before colon" */
};

struct h1_request {
    const char *method;  size_t method_len;
    const char *target;  size_t target_len;
    int minor_version;                      /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    size_t request_line_len;                /* including CRLF */
    struct h1_header headers[H1_MAX_HEADERS];
    size_t num_headers;
    struct h1_error error;                  /* set when H1_INVALID is returned */
};

struct h1_response {
    int minor_version;
    int status;                             /* 100..999 */
    const char *reason;  size_t reason_len;
    size_t status_line_len;                 /* including CRLF */
    struct h1_header headers[H1_MAX_HEADERS];
    size_t num_headers;
    struct h1_error error;
};

/*
 * Parses a request head from buf[0..len). Returns the length of the head
 * (request line, fields and the empty line) when complete, H1_NEED_MORE when
 * more bytes are needed, H1_INVALID on malformed input (req->error set).
 * max_head_bytes bounds the head: when len reaches it without a complete head
 * the result is H1_INVALID with status 431 (or 414 while the request line
 * itself is longer than H1_MAX_REQUEST_LINE).
 */
int h1_parse_request(const char *buf, size_t len, size_t max_head_bytes,
                     struct h1_request *req);

/* Same for a response head (errors have status 502 semantics for the proxy;
 * error.status is still filled with 400-style codes for logging). */
int h1_parse_response(const char *buf, size_t len, size_t max_head_bytes,
                      struct h1_response *resp);

enum h1_body {
    H1_BODY_NONE,           /* no body */
    H1_BODY_LENGTH,         /* Content-Length bytes */
    H1_BODY_CHUNKED,        /* chunked transfer coding */
    H1_BODY_UNTIL_CLOSE,    /* response only: read until the origin closes */
};

/* What the proxy needs to know about a parsed message. */
struct h1_semantics {
    enum h1_body body;
    uint64_t content_length;        /* for H1_BODY_LENGTH */
    bool keep_alive;                /* persistent per version and Connection */
    bool expect_continue;           /* request: Expect: 100-continue */
    bool upgrade;                   /* Connection: upgrade and an Upgrade field */
    const struct h1_header *host;   /* request: the Host field, or NULL */
    /* Fields the proxy must not forward: hop-by-hop ones (Connection,
     * Keep-Alive, Proxy-Connection, TE, Upgrade, Transfer-Encoding is NOT one of
     * them since chunked bodies are forwarded verbatim) and every field named in
     * Connection. skip[i] is true for headers[i]. */
    bool skip[H1_MAX_HEADERS];
    struct h1_error error;
};

/*
 * Derives framing and connection semantics of a parsed request. Returns 0, or
 * -1 with sem->error set: both Content-Length and Transfer-Encoding, differing
 * or non-digit Content-Length values, Transfer-Encoding on HTTP/1.0 or other
 * than a single final "chunked" (501 for an unknown coding), missing or repeated
 * Host on HTTP/1.1, an invalid Host, a Host that does not name the authority of
 * an absolute-form target, Connection naming Host/Content-Length/
 * Transfer-Encoding. (Request-line errors, '#' in the target among them, come
 * from h1_parse_request().)
 */
int h1_request_semantics(const struct h1_request *req, struct h1_semantics *sem);

/* Same for a response to a request with the given method (HEAD, and 1xx, 204
 * and 304 statuses have no body; a 2xx answer to CONNECT is refused, and so is
 * a 1xx or 204 carrying Transfer-Encoding or a non-zero Content-Length). */
int h1_response_semantics(const struct h1_response *resp, const char *req_method,
                          size_t req_method_len, struct h1_semantics *sem);

/* Case-insensitive comparison of a field name or token with a C string. */
bool h1_token_eq(const char *s, size_t len, const char *lit);

/* Incremental scanner for a chunked body (chunk sizes, extensions, data,
 * last-chunk, trailer fields, final CRLF). */
struct h1_chunked {
    int state;              /* internal */
    uint64_t remaining;     /* data bytes left in the current chunk */
    size_t line_bytes;      /* bytes seen on the current size/trailer line */
};

void h1_chunked_init(struct h1_chunked *c);
/*
 * Scans buf[0..len) as the continuation of a chunked body. Returns the number
 * of bytes that belong to the body (≤ len; all of them unless the body ended
 * inside buf), or H1_INVALID on bad framing. *done is set when the body's final
 * CRLF has been consumed.
 */
long h1_chunked_scan(struct h1_chunked *c, const char *buf, size_t len, bool *done);

/*
 * Decodes a chunked body in place, for a recipient that cannot take chunked
 * framing (an HTTP/1.0 client): scans buf[0..len) like h1_chunked_scan() and
 * moves the chunk data bytes to the front of buf. Returns the bytes of buf
 * consumed, or H1_INVALID; *data_len is set to the data bytes now at buf[0..).
 */
long h1_chunked_decode(struct h1_chunked *c, char *buf, size_t len, size_t *data_len,
                       bool *done);

#endif
