/*
 * cookie — zero-copy helpers for the Cookie and Set-Cookie header values
 * (RFC 6265 §4.1, §4.2, §5.2), used by the affinity modes (SPEC §3): find
 * limpet's cookie or the application's session cookie, strip limpet's cookie
 * from the request it forwards, rewrite an app_cookie value (prefix mode), and
 * read the leading name=value of an origin's Set-Cookie.
 *
 * Nothing here allocates or copies: results are pointers into the caller's
 * buffer, or iovec spans of it (plus, for a replacement, the caller's new
 * value) that the proxy hands straight to writev. The caller keeps the buffer
 * unchanged while it uses them. All functions are pure and thread-safe.
 *
 * Parsing is lenient the way browsers and servers are, since it reads what
 * clients send rather than judging it: the value is split on ';' (a ';' can
 * never occur inside a cookie value, quoted or not); each element is trimmed of
 * spaces and tabs; empty elements (";;", a trailing ';') are skipped; the name
 * is what precedes the first '=' (trimmed), the value what follows it (trimmed;
 * further '=' belong to the value); an element without '=' is a cookie with an
 * empty name (RFC 6265bis), which no name lookup matches. Values are returned
 * raw, double quotes included. Names compare case-sensitively. Strict checks of
 * what limpet itself emits are the separate cookie_*_valid() helpers.
 */
#ifndef LIMPET_HTTP_COOKIE_H
#define LIMPET_HTTP_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* One element of a Cookie header value. */
struct cookie_pair {
    const char *name;     /* empty (name_len 0) for an element without '=' */
    size_t name_len;
    const char *val;      /* raw value, quotes kept; may be empty */
    size_t val_len;
    const char *elem;     /* the whole element, without surrounding whitespace */
    size_t elem_len;
};

/* Iteration state over a Cookie header value. */
struct cookie_iter {
    const char *p;        /* next byte to read */
    const char *end;      /* end of the header value */
};

/* Starts iterating over value[0..len). */
void cookie_iter_init(struct cookie_iter *it, const char *value, size_t len);

/* Fills *out with the next non-empty element; returns false when there is none. */
bool cookie_iter_next(struct cookie_iter *it, struct cookie_pair *out);

/*
 * Finds the first cookie named exactly name[0..name_len) in a Cookie header
 * value. Returns true and its raw value (quotes kept) in *val and *val_len, or
 * false when absent (or name_len is 0). val/val_len may be NULL.
 */
bool cookie_find(const char *value, size_t len, const char *name, size_t name_len,
                 const char **val, size_t *val_len);

/*
 * Removes every cookie named name[0..name_len) from a Cookie header value.
 * Fills spans[] with pieces of `value` whose concatenation is what remains:
 * the other cookies, byte-exact and in order, joined by the separators that
 * stood between them in the original ("a=1; b=2; c=3" without b is
 * "a=1; c=3"), with no separator or whitespace at either end. Returns the
 * number of spans (0 when nothing remains: then *out_len is 0 and the Cookie
 * field should be dropped), or (size_t)-1 when more than max_spans would be
 * needed (one span per run of kept cookies). *out_len gets the total length
 * (0 on overflow). out_len may be NULL.
 */
size_t cookie_strip(const char *value, size_t len, const char *name, size_t name_len,
                    struct iovec *spans, size_t max_spans, size_t *out_len);

/*
 * Replaces the raw value of the first cookie named name[0..name_len) with
 * new_val[0..new_len) (which the caller quotes if it must). spans[] gets up to
 * 3 pieces — the header up to the old value, the new value, the rest after the
 * old value — with empty pieces left out; everything but the value is
 * byte-exact. Returns the number of spans, 0 when there is no such cookie, or
 * (size_t)-1 when max_spans is too small. *out_len (may be NULL) gets the
 * total length (0 when nothing is returned). new_val may point into `value`,
 * e.g. to drop a routing prefix: it is referenced, not copied.
 */
size_t cookie_replace_value(const char *value, size_t len, const char *name, size_t name_len,
                            const char *new_val, size_t new_len,
                            struct iovec *spans, size_t max_spans, size_t *out_len);

/*
 * Parses the leading name=value of a Set-Cookie header value (the part before
 * the first ';', per RFC 6265 §5.2): name and value trimmed of spaces and tabs,
 * value raw (quotes kept). Returns false when there is no '=' or the name is
 * empty (a user agent would ignore such a Set-Cookie, or not match it by
 * name). val/val_len may be NULL; name/name_len may be NULL too.
 */
bool set_cookie_name_value(const char *value, size_t len, const char **name, size_t *name_len,
                           const char **val, size_t *val_len);

/* True when s[0..len) is a non-empty token (RFC 9110 tchar), a valid cookie-name. */
bool cookie_name_valid(const char *s, size_t len);

/*
 * True when s[0..len) is a valid cookie-value (RFC 6265 §4.1.1): zero or more
 * cookie-octets (visible US-ASCII except DQUOTE, ',', ';' and '\'), optionally
 * wrapped as a whole in one pair of double quotes.
 */
bool cookie_value_valid(const char *s, size_t len);

#endif
