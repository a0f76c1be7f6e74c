/*
 * h1 — HTTP/1.x message head parser and chunked-body scanner (see h1.h).
 *
 * How it works. h1_parse_request()/h1_parse_response() make one forward pass
 * over the bytes received so far, classifying each byte through a 256-entry
 * table (token, field-value, visible, hex, host and quoted-text classes). Each
 * field line is validated and recorded as it is met; nothing is scanned twice
 * except the trailing OWS of a field value. Long runs (field values, reason
 * phrases, request targets) are skipped eight bytes at a time with exact
 * word tests, falling back to the table for a word that holds a byte to look
 * at (HTAB, a control byte, the CR). The first invalid byte ends the
 * pass with H1_INVALID, running out of bytes ends it with H1_NEED_MORE (or
 * 414/431 when a limit is reached). No state is kept between calls and nothing
 * is allocated: the caller re-parses from the start when more bytes arrive, and
 * every pointer it gets back points into its own buffer. Only buf[0..len) is
 * ever read, so a head may end at the last byte of a mapping.
 *
 * Choices made where RFC 9112 leaves one (SPEC §4 asks to refuse, not guess):
 *  - Requests may be preceded by empty lines (CRLF only); they are skipped,
 *    count in the returned head length and in max_head_bytes, and are not part
 *    of request_line_len (req->method points after them). Responses may not.
 *  - The request line, without its CRLF, may be H1_MAX_REQUEST_LINE bytes long;
 *    a longer one is 414 as soon as that many bytes were seen without its end.
 *    Reaching max_head_bytes while still inside the request line is also 414;
 *    reaching it anywhere else (leading empty lines, fields) is 431.
 *  - Request targets: origin-form "/..."; absolute-form only with scheme http
 *    or https, a valid host[:port] authority (no userinfo) and a path/query;
 *    authority-form host:port only and always for CONNECT; "*" only for OPTIONS.
 *    No fragment: '#' is refused anywhere in the target (RFC 9112 §3.2 has
 *    none; a proxy that passes one on lets path rules be bypassed).
 *  - Absolute-form and Host: both must name the same host and port (hosts
 *    compared case-insensitively, an absent port being the scheme's default),
 *    so that limpet and the origin cannot pick different hosts.
 *  - Status line: "HTTP/1.x SP 3DIGIT SP reason CRLF"; the SP after the code is
 *    required (an empty reason is fine), the code must be 100..599.
 *  - Version: "HTTP/1.0"/"HTTP/1.1"; another well-formed HTTP/d.d is 505,
 *    anything else 400.
 *  - Content-Length: 1*DIGIT up to INT64_MAX; a second Content-Length field or
 *    a list ("5, 5") is refused even when the values agree. A value of 0 gives
 *    H1_BODY_LENGTH with content_length 0.
 *  - Transfer-Encoding (all its fields form one list): list syntax errors, an
 *    empty element, parameters (";"), "chunked" twice or not last → 400; then
 *    any other coding (e.g. "gzip, chunked", "identity", "xchunked") → 501.
 *    TE on an HTTP/1.0 message is refused for responses too.
 *  - Connection: empty list elements are ignored (RFC 9110 §5.6.1); anything
 *    but tokens is 400. Naming Host, Content-Length or Transfer-Encoding is 400
 *    for responses as well (the framing must never be dropped).
 *  - Host: reg-name (unreserved, sub-delims, %HH) or [IPv6/IPv4 literal], then
 *    optionally ":" and a 1..5 digit port ≤ 65535; empty is refused.
 *  - Expect: 100-continue and Upgrade are ignored on HTTP/1.0 requests
 *    (RFC 9110 §10.1.1, §7.8).
 *  - Responses: framing headers are validated even when the status or the
 *    request method means there is no body; a 2xx answer to CONNECT is refused;
 *    a 1xx or 204 with Transfer-Encoding or a non-zero Content-Length is
 *    refused (its body would be read as the next response).
 *  - Chunked bodies: chunk-size is 1..16 hex digits with no whitespace (no BWS
 *    before ";" either), extensions are ;token[=token|quoted-string], the
 *    size line is at most H1_CHUNK_LINE_MAX bytes and the trailer section at
 *    most H1_TRAILER_MAX bytes.
 *
 * Thread safety: no globals but constant tables; any thread may call anything.
 */
#include "http/h1.h"

#include <limits.h>
#include <string.h>

#define H1_CHUNK_LINE_MAX 4096 /* chunk-size line incl. extensions and CRLF */
#define H1_TRAILER_MAX 8192    /* whole trailer section incl. final CRLF */

/* Byte classes. */
#define C_TCHAR 0x01 /* tchar (RFC 9110 §5.6.2) */
#define C_FVAL 0x02  /* field-value byte: VCHAR, obs-text, SP, HTAB */
#define C_TGT 0x04   /* request-target byte: visible ASCII 0x21..0x7e but '#' */
#define C_HEX 0x08   /* HEXDIG */
#define C_HOST 0x10  /* reg-name byte: unreserved / sub-delims */
#define C_QD 0x20    /* qdtext: HTAB SP 0x21 0x23-0x5b 0x5d-0x7e obs-text */

static const unsigned char cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x00 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x10 */
    0x22, 0x37, 0x06, 0x23, 0x37, 0x27, 0x37, 0x37, 0x36, 0x36, 0x37, 0x37, 0x36, 0x37, 0x37, 0x26, /* 0x20 */
    0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x26, 0x36, 0x26, 0x36, 0x26, 0x26, /* 0x30 */
    0x26, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, /* 0x40 */
    0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x26, 0x06, 0x26, 0x27, 0x37, /* 0x50 */
    0x27, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, /* 0x60 */
    0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x37, 0x26, 0x27, 0x26, 0x37, 0x00, /* 0x70 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0x80 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0x90 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0xa0 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0xb0 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0xc0 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0xd0 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0xe0 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 0xf0 */
};

typedef unsigned char uchar;

static inline int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static inline int hexval(int c)
{
    if (c <= '9')
        return c - '0';
    return lower(c) - 'a' + 10;
}

static int fail(struct h1_error *err, int status, const char *reason)
{
    err->status = status;
    err->reason = reason;
    return H1_INVALID;
}

/* Why a byte that ends a token or value where it should not is wrong. */
static const char *bad_byte_reason(uchar c, const char *otherwise)
{
    if (c == '\n')
        return "bare LF";
    if (c == '\r')
        return "bare CR";
    if (c == 0)
        return "NUL byte";
    if (c < 0x20 || c == 0x7f)
        return "control character";
    return otherwise;
}

bool h1_token_eq(const char *s, size_t len, const char *lit)
{
    for (size_t i = 0; i < len; i++) {
        if (lit[i] == '\0' || lower((uchar)s[i]) != lower((uchar)lit[i]))
            return false;
    }
    return lit[len] == '\0';
}

static bool ci_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        if (lower((uchar)a[i]) != lower((uchar)b[i]))
            return false;
    }
    return true;
}

/*
 * Word-at-a-time scanning (SWAR) for the long runs: field values and request
 * targets. Each test is exact as a boolean ("some byte in the word is ...");
 * a word that fails it is re-scanned byte by byte with the class table.
 */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define HAS_LESS(x, n) (((x) - ONES * (n)) & ~(x) & HIGHS)
#define HAS_ZERO(x) (((x) - ONES) & ~(x) & HIGHS)

/* Skips field-value bytes (VCHAR, obs-text, SP, HTAB); returns the first
 * other byte or end. */
static inline const uchar *skip_value(const uchar *p, const uchar *end)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (HAS_LESS(w, 0x20) | HAS_ZERO(w ^ (ONES * 0x7f)))
                break; /* a control byte (maybe just HTAB) or DEL */
            p += 8;
        }
        const uchar *stop = end - p > 8 ? p + 8 : end;
        while (p < stop && (cls[*p] & C_FVAL))
            p++;
        if (p < stop || p == end)
            return p;
    }
}

/* Skips request-target bytes (visible ASCII 0x21..0x7e but '#', which starts
 * a fragment, never sent in a request); returns the first other byte or end. */
static inline const uchar *skip_target(const uchar *p, const uchar *end)
{
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (HAS_LESS(w, 0x21) | (w & HIGHS) | HAS_ZERO(w ^ (ONES * 0x7f)) |
            HAS_ZERO(w ^ (ONES * '#')))
            break;
        p += 8;
    }
    while (p < end && (cls[*p] & C_TGT))
        p++;
    return p;
}

/*
 * Parses field lines from p until the empty line ending the head. Returns the
 * head length (from buf), H1_NEED_MORE when end is reached first, or
 * H1_INVALID with err set. *num receives the number of fields recorded.
 */
static int parse_fields(const uchar *buf, const uchar *p, const uchar *end,
                        struct h1_header *hdrs, size_t *num, struct h1_error *err)
{
    size_t n = 0;
    int rc;

    for (;;) {
        if (p == end)
            goto more;
        const uchar *line = p;
        if (!(cls[*p] & C_TCHAR)) {
            if (*p == '\r') {
                if (p + 1 == end)
                    goto more;
                if (p[1] != '\n') {
                    rc = fail(err, 400, "bare CR");
                    goto out;
                }
                *num = n;
                return (int)(p + 2 - buf);
            }
            if (*p == ' ' || *p == '\t')
                rc = fail(err, 400, n ? "obs-fold" : "whitespace before first field");
            else if (*p == ':')
                rc = fail(err, 400, "empty field name");
            else
                rc = fail(err, 400, bad_byte_reason(*p, "invalid character in field name"));
            goto out;
        }
        if (n == H1_MAX_HEADERS) {
            rc = fail(err, 400, "too many header fields");
            goto out;
        }
        const uchar *name = p;
        do
            p++;
        while (p < end && (cls[*p] & C_TCHAR));
        if (p == end)
            goto more;
        if (*p != ':') {
            if (*p == ' ' || *p == '\t')
                rc = fail(err, 400, "whitespace before colon");
            else if (*p == '\r' || *p == '\n')
                rc = fail(err, 400, "field line without colon");
            else
                rc = fail(err, 400, bad_byte_reason(*p, "invalid character in field name"));
            goto out;
        }
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const uchar *value = p;
        p = skip_value(p, end);
        if (p == end)
            goto more;
        if (*p != '\r') {
            rc = fail(err, 400, bad_byte_reason(*p, "invalid character in field value"));
            goto out;
        }
        if (p + 1 == end)
            goto more;
        if (p[1] != '\n') {
            rc = fail(err, 400, "bare CR");
            goto out;
        }
        const uchar *vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        p += 2;
        hdrs[n].name = (const char *)name;
        hdrs[n].name_len = name_len;
        hdrs[n].value = (const char *)value;
        hdrs[n].value_len = (size_t)(vend - value);
        hdrs[n].line = (const char *)line;
        hdrs[n].line_len = (size_t)(p - line);
        n++;
    }
more:
    rc = H1_NEED_MORE;
out:
    *num = n;
    return rc;
}

/*
 * Checks "HTTP/d.d" at v (at most to end). Returns 1 for HTTP/1.0 or 1.1
 * (*minor set), 0 when more bytes are needed, -1 for garbage (400) and -2 for
 * another well-formed version (505).
 */
static int parse_version(const uchar *v, const uchar *end, int *minor)
{
    static const char prefix[] = "HTTP/";
    for (int i = 0; i < 8; i++) {
        if (v + i == end)
            return 0;
        uchar c = v[i];
        if (i < 5 ? c != (uchar)prefix[i] : i == 6 ? c != '.' : (c < '0' || c > '9'))
            return -1;
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return -2;
    *minor = v[7] - '0';
    return 1;
}

/*
 * host = reg-name / "[" IPv6-or-IPv4 literal "]", then [":" port] where port
 * is 1..5 digits ≤ 65535 (required when need_port).
 */
static bool valid_authority(const uchar *s, size_t len, bool need_port)
{
    size_t i = 0;

    if (len == 0)
        return false;
    if (s[0] == '[') {
        i = 1;
        while (i < len && ((cls[s[i]] & C_HEX) || s[i] == ':' || s[i] == '.'))
            i++;
        if (i == 1 || i == len || s[i] != ']')
            return false;
        i++;
    } else {
        while (i < len) {
            if (cls[s[i]] & C_HOST) {
                i++;
            } else if (s[i] == '%' && len - i >= 3 && (cls[s[i + 1]] & C_HEX) &&
                       (cls[s[i + 2]] & C_HEX)) {
                i += 3;
            } else {
                break;
            }
        }
        if (i == 0)
            return false;
    }
    if (i == len)
        return !need_port;
    if (s[i] != ':')
        return false;
    i++;
    if (len - i < 1 || len - i > 5)
        return false;
    unsigned port = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned)(s[i] - '0');
    }
    return port <= 65535;
}

/* An authority (already checked by valid_authority) split into host and port;
 * port is -1 when absent. */
struct authority {
    const uchar *host;
    size_t host_len;
    long port;
};

static void split_authority(const uchar *s, size_t len, struct authority *a)
{
    size_t i = 0;
    if (len > 0 && s[0] == '[') {
        while (i < len && s[i] != ']')
            i++;
        if (i < len)
            i++;
    } else {
        while (i < len && s[i] != ':')
            i++;
    }
    a->host = s;
    a->host_len = i;
    a->port = -1;
    if (i < len && s[i] == ':') {
        long port = 0;
        for (i++; i < len; i++)
            port = port * 10 + (s[i] - '0');
        a->port = port;
    }
}

static bool absolute_form(const char *t, size_t tlen)
{
    return (tlen >= 7 && h1_token_eq(t, 7, "http://")) ||
           (tlen >= 8 && h1_token_eq(t, 8, "https://"));
}

/*
 * For an absolute-form target ("http://a.example:8080/x"), whether its
 * authority and the Host field value name the same host and port: hosts
 * compared case-insensitively, an absent port standing for the scheme's
 * default (80 for http, 443 for https). RFC 9112 §3.2.2 has a server ignore
 * Host then; a proxy that lets both through lets the next hop choose, so
 * limpet requires them to agree.
 */
static bool target_matches_host(const uchar *t, size_t tlen, const uchar *h, size_t hlen)
{
    bool https = tlen > 4 && (t[4] == 's' || t[4] == 'S');
    size_t skip = https ? 8 : 7;
    const uchar *a = t + skip, *e = t + tlen, *q = a;
    while (q < e && *q != '/' && *q != '?')
        q++;
    struct authority ta, ha;
    split_authority(a, (size_t)(q - a), &ta);
    split_authority(h, hlen, &ha);
    long dflt = https ? 443 : 80;
    return ci_eq((const char *)ta.host, ta.host_len, (const char *)ha.host, ha.host_len) &&
           (ta.port < 0 ? dflt : ta.port) == (ha.port < 0 ? dflt : ha.port);
}

/* Checks the request-target form against the method (RFC 9112 §3.2). */
static const char *check_target(const uchar *m, size_t mlen, const uchar *t, size_t tlen)
{
    bool connect = mlen == 7 && memcmp(m, "CONNECT", 7) == 0;

    if (connect)
        return valid_authority(t, tlen, true) ? NULL : "CONNECT needs host:port";
    if (t[0] == '/')
        return NULL;
    if (t[0] == '*' && tlen == 1)
        return mlen == 7 && memcmp(m, "OPTIONS", 7) == 0 ? NULL : "\"*\" only for OPTIONS";
    size_t skip;
    if (tlen >= 7 && h1_token_eq((const char *)t, 7, "http://"))
        skip = 7;
    else if (tlen >= 8 && h1_token_eq((const char *)t, 8, "https://"))
        skip = 8;
    else
        return "invalid request-target";
    const uchar *a = t + skip, *e = t + tlen, *q = a;
    while (q < e && *q != '/' && *q != '?')
        q++;
    if (!valid_authority(a, (size_t)(q - a), false))
        return "invalid authority in request-target";
    return NULL;
}

int h1_parse_request(const char *buf_, size_t len, size_t max_head_bytes,
                     struct h1_request *req)
{
    const uchar *buf = (const uchar *)buf_;
    size_t avail = len < max_head_bytes ? len : max_head_bytes;
    if (avail > INT_MAX)
        avail = INT_MAX;
    bool capped = len >= max_head_bytes;
    const uchar *end = buf + avail, *p = buf;
    struct h1_error *err = &req->error;
    int rc;

    req->num_headers = 0;
    req->error.status = 0;
    req->error.reason = NULL;

    /* Empty lines before the request line (RFC 9112 §2.2). */
    while (p < end && *p == '\r') {
        if (p + 1 == end)
            goto more;
        if (p[1] != '\n')
            return fail(err, 400, "bare CR");
        p += 2;
    }
    if (p == end)
        goto more;

    const uchar *line = p;
    const uchar *le = end; /* end for the request line: CRLF must be within */
    if ((size_t)(end - line) > (size_t)H1_MAX_REQUEST_LINE + 2)
        le = line + H1_MAX_REQUEST_LINE + 2;

    /* method SP */
    while (p < le && (cls[*p] & C_TCHAR))
        p++;
    if (p == le)
        goto rl_more;
    if (*p != ' ')
        return fail(err, 400, p == line ? bad_byte_reason(*p, "invalid method")
                                        : bad_byte_reason(*p, "invalid character in method"));
    if (p == line)
        return fail(err, 400, "empty method");
    const uchar *method = line;
    size_t method_len = (size_t)(p - line);

    /* request-target SP */
    const uchar *target = ++p;
    p = skip_target(p, le);
    if (p == le)
        goto rl_more;
    if (*p != ' ') {
        if (*p == '\r' && p > target)
            return fail(err, 400, "missing HTTP version");
        if (*p == '#')
            return fail(err, 400, "fragment in request-target");
        return fail(err, 400, bad_byte_reason(*p, "invalid character in request-target"));
    }
    if (p == target)
        return fail(err, 400, "empty request-target");
    size_t target_len = (size_t)(p - target);

    /* HTTP-version CRLF */
    const uchar *v = ++p;
    int minor = 0;
    rc = parse_version(v, le, &minor);
    if (rc == 0)
        goto rl_more;
    if (rc == -1)
        return fail(err, 400, "invalid HTTP version");
    p = v + 8;
    if (p == le)
        goto rl_more;
    if (*p != '\r')
        return fail(err, 400, bad_byte_reason(*p, "invalid HTTP version"));
    if (p + 1 == le)
        goto rl_more;
    if (p[1] != '\n')
        return fail(err, 400, "bare CR");
    p += 2;
    if (rc == -2)
        return fail(err, 505, "HTTP version not supported");

    const char *why = check_target(method, method_len, target, target_len);
    if (why)
        return fail(err, 400, why);

    req->method = (const char *)method;
    req->method_len = method_len;
    req->target = (const char *)target;
    req->target_len = target_len;
    req->minor_version = minor;
    req->request_line_len = (size_t)(p - line);

    rc = parse_fields(buf, p, end, req->headers, &req->num_headers, err);
    if (rc == H1_NEED_MORE)
        goto more;
    return rc;

rl_more:
    if (le - line == H1_MAX_REQUEST_LINE + 2 || capped)
        return fail(err, 414, "request line too long");
    return H1_NEED_MORE;
more:
    if (capped)
        return fail(err, 431, "request head too large");
    return H1_NEED_MORE;
}

int h1_parse_response(const char *buf_, size_t len, size_t max_head_bytes,
                      struct h1_response *resp)
{
    const uchar *buf = (const uchar *)buf_;
    size_t avail = len < max_head_bytes ? len : max_head_bytes;
    if (avail > INT_MAX)
        avail = INT_MAX;
    bool capped = len >= max_head_bytes;
    const uchar *end = buf + avail, *p = buf;
    struct h1_error *err = &resp->error;
    int minor = 0, rc;

    resp->num_headers = 0;
    resp->error.status = 0;
    resp->error.reason = NULL;

    rc = parse_version(buf, end, &minor);
    if (rc == 0)
        goto more;
    if (rc == -1)
        return fail(err, 400, "invalid HTTP version");
    p = buf + 8;
    if (p == end)
        goto more;
    if (*p != ' ')
        return fail(err, 400, bad_byte_reason(*p, "invalid HTTP version"));
    if (rc == -2)
        return fail(err, 505, "HTTP version not supported");
    p++;

    int status = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (p == end)
            goto more;
        if (*p < '0' || *p > '9')
            return fail(err, 400, "invalid status code");
        status = status * 10 + (*p - '0');
    }
    if (p == end)
        goto more;
    if (*p != ' ')
        return fail(err, 400, *p == '\r' ? "missing SP after status code" : "invalid status code");
    if (status < 100 || status > 599)
        return fail(err, 400, "invalid status code");
    const uchar *reason = ++p;
    p = skip_value(p, end);
    if (p == end)
        goto more;
    if (*p != '\r')
        return fail(err, 400, bad_byte_reason(*p, "invalid character in reason phrase"));
    if (p + 1 == end)
        goto more;
    if (p[1] != '\n')
        return fail(err, 400, "bare CR");

    resp->minor_version = minor;
    resp->status = status;
    resp->reason = (const char *)reason;
    resp->reason_len = (size_t)(p - reason);
    p += 2;
    resp->status_line_len = (size_t)(p - buf);

    rc = parse_fields(buf, p, end, resp->headers, &resp->num_headers, err);
    if (rc != H1_NEED_MORE)
        return rc;
more:
    if (capped)
        return fail(err, 431, "response head too large");
    return H1_NEED_MORE;
}

/* ---- semantics ---------------------------------------------------------- */

enum field {
    F_OTHER,
    F_HOST,
    F_CONTENT_LENGTH,
    F_TRANSFER_ENCODING,
    F_CONNECTION,
    F_KEEP_ALIVE,
    F_PROXY_CONNECTION,
    F_TE,
    F_UPGRADE,
    F_EXPECT,
};

static enum field classify(const char *n, size_t len)
{
    switch (len) {
    case 2:
        return h1_token_eq(n, len, "te") ? F_TE : F_OTHER;
    case 4:
        return h1_token_eq(n, len, "host") ? F_HOST : F_OTHER;
    case 6:
        return h1_token_eq(n, len, "expect") ? F_EXPECT : F_OTHER;
    case 7:
        return h1_token_eq(n, len, "upgrade") ? F_UPGRADE : F_OTHER;
    case 10:
        if (h1_token_eq(n, len, "connection"))
            return F_CONNECTION;
        return h1_token_eq(n, len, "keep-alive") ? F_KEEP_ALIVE : F_OTHER;
    case 14:
        return h1_token_eq(n, len, "content-length") ? F_CONTENT_LENGTH : F_OTHER;
    case 16:
        return h1_token_eq(n, len, "proxy-connection") ? F_PROXY_CONNECTION : F_OTHER;
    case 17:
        return h1_token_eq(n, len, "transfer-encoding") ? F_TRANSFER_ENCODING : F_OTHER;
    default:
        return F_OTHER;
    }
}

/* Iterator over a #token list (RFC 9110 §5.6.1): elements separated by
 * commas with optional whitespace around them. */
struct list_iter {
    const uchar *p, *end;
    bool done;
};

static void list_init(struct list_iter *it, const char *s, size_t len)
{
    it->p = (const uchar *)s;
    it->end = it->p + len;
    it->done = false;
}

/* Returns 1 with the next element (possibly empty), 0 at the end, -1 when an
 * element is not a token. */
static int list_next(struct list_iter *it, const char **tok, size_t *tok_len)
{
    if (it->done)
        return 0;
    const uchar *p = it->p, *e = it->end;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    const uchar *s = p;
    while (p < e && (cls[*p] & C_TCHAR))
        p++;
    const uchar *t = p;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    if (p == e)
        it->done = true;
    else if (*p == ',')
        p++;
    else
        return -1;
    it->p = p;
    *tok = (const char *)s;
    *tok_len = (size_t)(t - s);
    return 1;
}

static bool parse_content_length(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(uchar)s[i] - '0';
        if (d > 9 || v > ((uint64_t)INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

struct framing {
    int te_fields;       /* Transfer-Encoding fields seen */
    bool chunked_seen;   /* "chunked" appeared in the list */
    bool chunked_last;   /* the last element so far is "chunked" */
    bool chunked_twice;
    bool chunked_not_last;
    bool unknown_coding;
    int cl_fields;
    uint64_t cl;
    bool conn_close, conn_keep_alive, conn_upgrade, conn_other;
    bool upgrade_field;
    int host_fields;
    const struct h1_header *host;
    bool expect_continue;
};

static int sem_fail(struct h1_semantics *sem, int status, const char *reason)
{
    sem->error.status = status;
    sem->error.reason = reason;
    return -1;
}

/* One pass over the fields: hop-by-hop marks, framing fields, Connection
 * options, Host and Expect. Then the fields named by Connection are marked. */
static int scan_fields(const struct h1_header *h, size_t n, struct framing *f,
                       struct h1_semantics *sem)
{
    const char *tok;
    size_t tok_len;
    struct list_iter it;
    int r;

    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        switch (classify(h[i].name, h[i].name_len)) {
        case F_OTHER:
            break;
        case F_HOST:
            f->host_fields++;
            f->host = &h[i];
            break;
        case F_CONTENT_LENGTH:
            if (++f->cl_fields > 1)
                return sem_fail(sem, 400, "repeated Content-Length");
            if (!parse_content_length(h[i].value, h[i].value_len, &f->cl))
                return sem_fail(sem, 400, "invalid Content-Length");
            break;
        case F_TRANSFER_ENCODING:
            f->te_fields++;
            list_init(&it, h[i].value, h[i].value_len);
            while ((r = list_next(&it, &tok, &tok_len)) > 0) {
                if (tok_len == 0)
                    return sem_fail(sem, 400, "empty Transfer-Encoding element");
                if (f->chunked_last)
                    f->chunked_not_last = true;
                if (h1_token_eq(tok, tok_len, "chunked")) {
                    if (f->chunked_seen)
                        f->chunked_twice = true;
                    f->chunked_seen = f->chunked_last = true;
                } else {
                    f->unknown_coding = true;
                    f->chunked_last = false;
                }
            }
            if (r < 0)
                return sem_fail(sem, 400, "invalid Transfer-Encoding");
            break;
        case F_CONNECTION:
            sem->skip[i] = true;
            list_init(&it, h[i].value, h[i].value_len);
            while ((r = list_next(&it, &tok, &tok_len)) > 0) {
                if (tok_len == 0)
                    continue;
                if (h1_token_eq(tok, tok_len, "close"))
                    f->conn_close = true;
                else if (h1_token_eq(tok, tok_len, "keep-alive"))
                    f->conn_keep_alive = true;
                else if (h1_token_eq(tok, tok_len, "upgrade"))
                    f->conn_upgrade = true; /* Upgrade is skipped anyway */
                else if (h1_token_eq(tok, tok_len, "host") ||
                         h1_token_eq(tok, tok_len, "content-length") ||
                         h1_token_eq(tok, tok_len, "transfer-encoding"))
                    return sem_fail(sem, 400, "Connection names an end-to-end field");
                else
                    f->conn_other = true;
            }
            if (r < 0)
                return sem_fail(sem, 400, "invalid Connection");
            break;
        case F_UPGRADE:
            f->upgrade_field = true;
            sem->skip[i] = true;
            break;
        case F_KEEP_ALIVE:
        case F_PROXY_CONNECTION:
        case F_TE:
            sem->skip[i] = true;
            break;
        case F_EXPECT:
            if (h1_token_eq(h[i].value, h[i].value_len, "100-continue"))
                f->expect_continue = true;
            break;
        }
    }

    if (f->conn_other) {
        for (size_t j = 0; j < n; j++) {
            if (classify(h[j].name, h[j].name_len) != F_CONNECTION)
                continue;
            list_init(&it, h[j].value, h[j].value_len);
            while (list_next(&it, &tok, &tok_len) > 0) {
                if (tok_len == 0)
                    continue;
                for (size_t i = 0; i < n; i++) {
                    if (!sem->skip[i] && ci_eq(h[i].name, h[i].name_len, tok, tok_len))
                        sem->skip[i] = true;
                }
            }
        }
    }
    return 0;
}

/* Framing shared by requests and responses; sets sem->body for TE/CL. */
static int check_framing(const struct framing *f, int minor, struct h1_semantics *sem)
{
    if (f->te_fields) {
        if (f->cl_fields)
            return sem_fail(sem, 400, "both Transfer-Encoding and Content-Length");
        if (minor == 0)
            return sem_fail(sem, 400, "Transfer-Encoding on HTTP/1.0");
        if (f->chunked_twice)
            return sem_fail(sem, 400, "chunked applied twice");
        if (f->chunked_not_last)
            return sem_fail(sem, 400, "chunked is not the final coding");
        if (f->unknown_coding)
            return sem_fail(sem, 501, "unsupported transfer coding");
        sem->body = H1_BODY_CHUNKED;
    } else if (f->cl_fields) {
        sem->body = H1_BODY_LENGTH;
        sem->content_length = f->cl;
    }
    return 0;
}

static void init_sem(struct h1_semantics *sem)
{
    memset(sem, 0, sizeof(*sem));
    sem->body = H1_BODY_NONE;
}

int h1_request_semantics(const struct h1_request *req, struct h1_semantics *sem)
{
    struct framing f;

    init_sem(sem);
    if (scan_fields(req->headers, req->num_headers, &f, sem) < 0)
        return -1;
    if (check_framing(&f, req->minor_version, sem) < 0)
        return -1;

    if (f.host_fields > 1)
        return sem_fail(sem, 400, "repeated Host");
    if (f.host_fields == 0 && req->minor_version == 1)
        return sem_fail(sem, 400, "missing Host");
    if (f.host && !valid_authority((const uchar *)f.host->value, f.host->value_len, false))
        return sem_fail(sem, 400, "invalid Host");
    /* absolute-form (an authority-form CONNECT target has no "//") */
    if (f.host && absolute_form(req->target, req->target_len) &&
        !target_matches_host((const uchar *)req->target, req->target_len,
                             (const uchar *)f.host->value, f.host->value_len))
        return sem_fail(sem, 400, "Host does not match request-target");
    sem->host = f.host;

    if (req->minor_version == 1) {
        sem->keep_alive = !f.conn_close;
        sem->expect_continue = f.expect_continue;
        sem->upgrade = f.conn_upgrade && f.upgrade_field;
    } else {
        sem->keep_alive = f.conn_keep_alive && !f.conn_close;
    }
    return 0;
}

int h1_response_semantics(const struct h1_response *resp, const char *req_method,
                          size_t req_method_len, struct h1_semantics *sem)
{
    struct framing f;
    bool head = req_method && req_method_len == 4 && memcmp(req_method, "HEAD", 4) == 0;
    bool connect = req_method && req_method_len == 7 && memcmp(req_method, "CONNECT", 7) == 0;
    int st = resp->status;

    init_sem(sem);
    if (connect && st >= 200 && st < 300)
        return sem_fail(sem, 400, "2xx response to CONNECT");
    if (scan_fields(resp->headers, resp->num_headers, &f, sem) < 0)
        return -1;
    if (check_framing(&f, resp->minor_version, sem) < 0)
        return -1;
    /* A 1xx or 204 never has a body (RFC 9112 §6.3), and its sender must not
     * frame one (RFC 9110 §8.6, RFC 9112 §6.1): an origin that does may well
     * send the body, which would then be read as the next response. */
    if ((st < 200 || st == 204) && (f.te_fields || f.cl))
        return sem_fail(sem, 400, "Transfer-Encoding or Content-Length in a 1xx or 204 response");

    if (resp->minor_version == 1)
        sem->keep_alive = !f.conn_close;
    else
        sem->keep_alive = f.conn_keep_alive && !f.conn_close;
    sem->upgrade = f.conn_upgrade && f.upgrade_field;

    if (head || st < 200 || st == 204 || st == 304) {
        sem->body = H1_BODY_NONE;
        sem->content_length = 0;
    } else if (sem->body == H1_BODY_NONE) {
        sem->body = H1_BODY_UNTIL_CLOSE;
        sem->keep_alive = false;
    }
    return 0;
}

/* ---- chunked body scanner ---------------------------------------------- */

enum {
    /* chunk-size line: counted against H1_CHUNK_LINE_MAX */
    CH_SIZE_START,
    CH_SIZE,
    CH_EXT_NAME_START,
    CH_EXT_NAME,
    CH_EXT_VAL_START,
    CH_EXT_TOKEN,
    CH_EXT_QS,
    CH_EXT_QP,
    CH_EXT_QS_END,
    CH_SIZE_LF,
    /* chunk data and its CRLF */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    /* trailer section: counted against H1_TRAILER_MAX */
    CH_TR_START,
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_FINAL_LF,
    /* terminal */
    CH_DONE,
    CH_ERROR,
};

void h1_chunked_init(struct h1_chunked *c)
{
    c->state = CH_SIZE_START;
    c->remaining = 0;
    c->line_bytes = 0;
}

long h1_chunked_scan(struct h1_chunked *c, const char *buf_, size_t len, bool *done)
{
    const uchar *buf = (const uchar *)buf_;
    if (len > LONG_MAX)
        len = LONG_MAX;
    const uchar *p = buf, *end = buf + len;

    *done = false;
    if (c->state == CH_DONE) {
        *done = true;
        return 0;
    }
    if (c->state == CH_ERROR)
        return H1_INVALID;

    while (p < end) {
        if (c->state == CH_DATA) {
            size_t avail = (size_t)(end - p);
            if (c->remaining > avail) {
                c->remaining -= avail;
                p = end;
                break;
            }
            p += c->remaining;
            c->remaining = 0;
            c->state = CH_DATA_CR;
            continue;
        }
        uchar ch = *p++;
        if (c->state <= CH_SIZE_LF) {
            if (++c->line_bytes > H1_CHUNK_LINE_MAX)
                goto bad;
        } else if (c->state >= CH_TR_START) {
            if (++c->line_bytes > H1_TRAILER_MAX)
                goto bad;
        }
        switch (c->state) {
        case CH_SIZE_START:
            if (!(cls[ch] & C_HEX))
                goto bad;
            c->remaining = (uint64_t)hexval(ch);
            c->state = CH_SIZE;
            break;
        case CH_SIZE:
            if (cls[ch] & C_HEX) {
                if (c->line_bytes > 16) /* the line holds only digits so far */
                    goto bad;
                c->remaining = (c->remaining << 4) | (uint64_t)hexval(ch);
            } else if (ch == ';') {
                c->state = CH_EXT_NAME_START;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else {
                goto bad;
            }
            break;
        case CH_EXT_NAME_START:
            if (!(cls[ch] & C_TCHAR))
                goto bad;
            c->state = CH_EXT_NAME;
            break;
        case CH_EXT_NAME:
        case CH_EXT_TOKEN:
            if (cls[ch] & C_TCHAR)
                break;
            if (ch == '=' && c->state == CH_EXT_NAME)
                c->state = CH_EXT_VAL_START;
            else if (ch == ';')
                c->state = CH_EXT_NAME_START;
            else if (ch == '\r')
                c->state = CH_SIZE_LF;
            else
                goto bad;
            break;
        case CH_EXT_VAL_START:
            if (cls[ch] & C_TCHAR)
                c->state = CH_EXT_TOKEN;
            else if (ch == '"')
                c->state = CH_EXT_QS;
            else
                goto bad;
            break;
        case CH_EXT_QS:
            if (ch == '"')
                c->state = CH_EXT_QS_END;
            else if (ch == '\\')
                c->state = CH_EXT_QP;
            else if (!(cls[ch] & C_QD))
                goto bad;
            break;
        case CH_EXT_QP:
            if (!(cls[ch] & C_FVAL))
                goto bad;
            c->state = CH_EXT_QS;
            break;
        case CH_EXT_QS_END:
            if (ch == ';')
                c->state = CH_EXT_NAME_START;
            else if (ch == '\r')
                c->state = CH_SIZE_LF;
            else
                goto bad;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                goto bad;
            c->line_bytes = 0;
            c->state = c->remaining ? CH_DATA : CH_TR_START;
            break;
        case CH_DATA_CR:
            if (ch != '\r')
                goto bad;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_SIZE_START;
            break;
        case CH_TR_START:
            if (ch == '\r')
                c->state = CH_FINAL_LF;
            else if (cls[ch] & C_TCHAR)
                c->state = CH_TR_NAME;
            else
                goto bad;
            break;
        case CH_TR_NAME:
            if (ch == ':')
                c->state = CH_TR_VALUE;
            else if (!(cls[ch] & C_TCHAR))
                goto bad;
            break;
        case CH_TR_VALUE:
            if (ch == '\r')
                c->state = CH_TR_LF;
            else if (!(cls[ch] & C_FVAL))
                goto bad;
            break;
        case CH_TR_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_TR_START;
            break;
        case CH_FINAL_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_DONE;
            *done = true;
            return (long)(p - buf);
        default:
            goto bad;
        }
    }
    return (long)(p - buf);
bad:
    c->state = CH_ERROR;
    return H1_INVALID;
}

long h1_chunked_decode(struct h1_chunked *c, char *buf, size_t len, size_t *data_len,
                       bool *done)
{
    size_t in = 0, out = 0;
    *done = c->state == CH_DONE;
    while (in < len && !*done) {
        if (c->state == CH_DATA) {
            size_t n = len - in;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            memmove(buf + out, buf + in, n);
            out += n;
            in += n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        /* Framing bytes: let the scanner walk them up to the next data. */
        size_t step = 1;
        long r = h1_chunked_scan(c, buf + in, step, done);
        if (r < 0)
            return H1_INVALID;
        in += (size_t)r;
        if (r == 0)
            break;
    }
    *data_len = out;
    return (long)in;
}
