/*
 * cookie — Cookie / Set-Cookie value helpers; see cookie.h for the parsing
 * rules. Every function walks the value once, left to right, with no
 * allocation and no state beyond its locals; outputs point into the input.
 *
 * Stripping works on runs of kept cookies: consecutive kept cookies stay one
 * span (separators between them included). When a run is followed by removed
 * cookies and later by another kept one, the run's span is extended over the
 * separator that followed it (up to the first removed cookie), so the output
 * joins the two runs with an original separator; a run with nothing kept after
 * it ends at its last cookie, so nothing dangles at either end.
 */
#include "http/cookie.h"

#include <string.h>

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

void cookie_iter_init(struct cookie_iter *it, const char *value, size_t len)
{
    it->p = value;
    it->end = len ? value + len : value;    /* no arithmetic on a NULL, empty value */
}

bool cookie_iter_next(struct cookie_iter *it, struct cookie_pair *out)
{
    while (it->p < it->end) {
        const char *s = it->p;
        const char *e = memchr(s, ';', (size_t)(it->end - s));
        if (e)
            it->p = e + 1;
        else
            it->p = e = it->end;
        while (s < e && is_ows(*s))
            s++;
        while (e > s && is_ows(e[-1]))
            e--;
        if (s == e)
            continue;                       /* empty element: ";;" or "; ;" */

        out->elem = s;
        out->elem_len = (size_t)(e - s);
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (!eq) {
            out->name = s;
            out->name_len = 0;
            out->val = s;
            out->val_len = (size_t)(e - s);
            return true;
        }
        const char *ne = eq, *v = eq + 1;
        while (ne > s && is_ows(ne[-1]))
            ne--;
        while (v < e && is_ows(*v))
            v++;
        out->name = s;
        out->name_len = (size_t)(ne - s);
        out->val = v;
        out->val_len = (size_t)(e - v);
        return true;
    }
    return false;
}

static inline bool name_is(const struct cookie_pair *c, const char *name, size_t name_len)
{
    return name_len && c->name_len == name_len && memcmp(c->name, name, name_len) == 0;
}

bool cookie_find(const char *value, size_t len, const char *name, size_t name_len,
                 const char **val, size_t *val_len)
{
    struct cookie_iter it;
    struct cookie_pair c;

    if (!name_len)
        return false;
    cookie_iter_init(&it, value, len);
    while (cookie_iter_next(&it, &c)) {
        if (name_is(&c, name, name_len)) {
            if (val)
                *val = c.val;
            if (val_len)
                *val_len = c.val_len;
            return true;
        }
    }
    return false;
}

size_t cookie_strip(const char *value, size_t len, const char *name, size_t name_len,
                    struct iovec *spans, size_t max_spans, size_t *out_len)
{
    struct cookie_iter it;
    struct cookie_pair c;
    size_t n = 0, total = 0;
    const char *run = NULL;         /* start of the current run of kept cookies */
    const char *run_end = NULL;     /* end of its last cookie */
    const char *ext_end = NULL;     /* set once a removed cookie closed the run */

    cookie_iter_init(&it, value, len);
    while (cookie_iter_next(&it, &c)) {
        if (name_is(&c, name, name_len)) {
            if (run && !ext_end)
                ext_end = c.elem;           /* close the run before this cookie */
            continue;
        }
        if (run && !ext_end) {
            run_end = c.elem + c.elem_len;  /* the run goes on */
            continue;
        }
        if (run) {                          /* a later run: emit the closed one */
            if (n == max_spans)
                goto overflow;
            spans[n].iov_base = (void *)run;
            spans[n].iov_len = (size_t)(ext_end - run);
            total += spans[n++].iov_len;
        }
        run = c.elem;
        run_end = c.elem + c.elem_len;
        ext_end = NULL;
    }
    if (run) {
        if (n == max_spans)
            goto overflow;
        spans[n].iov_base = (void *)run;
        spans[n].iov_len = (size_t)(run_end - run);
        total += spans[n++].iov_len;
    }
    if (out_len)
        *out_len = total;
    return n;

overflow:
    if (out_len)
        *out_len = 0;
    return (size_t)-1;
}

size_t cookie_replace_value(const char *value, size_t len, const char *name, size_t name_len,
                            const char *new_val, size_t new_len,
                            struct iovec *spans, size_t max_spans, size_t *out_len)
{
    struct cookie_iter it;
    struct cookie_pair c;
    bool found = false;

    if (out_len)
        *out_len = 0;
    if (!name_len)
        return 0;
    cookie_iter_init(&it, value, len);
    while (cookie_iter_next(&it, &c)) {
        if (name_is(&c, name, name_len)) {
            found = true;
            break;
        }
    }
    if (!found)
        return 0;

    const char *post = c.val + c.val_len;
    struct iovec piece[3] = {
        {(void *)value, (size_t)(c.val - value)},
        {(void *)new_val, new_len},
        {(void *)post, (size_t)(value + len - post)},
    };
    size_t n = 0, total = 0;
    for (int i = 0; i < 3; i++)
        n += piece[i].iov_len != 0;
    if (n > max_spans)
        return (size_t)-1;
    n = 0;
    for (int i = 0; i < 3; i++) {
        if (piece[i].iov_len) {
            spans[n++] = piece[i];
            total += piece[i].iov_len;
        }
    }
    if (out_len)
        *out_len = total;
    return n;
}

bool set_cookie_name_value(const char *value, size_t len, const char **name, size_t *name_len,
                           const char **val, size_t *val_len)
{
    if (!len)
        return false;
    const char *s = value;
    const char *e = memchr(value, ';', len);
    if (!e)
        e = value + len;
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (!eq)
        return false;
    while (s < eq && is_ows(*s))
        s++;
    const char *ne = eq;
    while (ne > s && is_ows(ne[-1]))
        ne--;
    if (ne == s)
        return false;
    const char *v = eq + 1;
    while (v < e && is_ows(*v))
        v++;
    while (e > v && is_ows(e[-1]))
        e--;
    if (name)
        *name = s;
    if (name_len)
        *name_len = (size_t)(ne - s);
    if (val)
        *val = v;
    if (val_len)
        *val_len = (size_t)(e - v);
    return true;
}

static inline bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static inline bool is_cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
           (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

bool cookie_name_valid(const char *s, size_t len)
{
    if (!len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

bool cookie_value_valid(const char *s, size_t len)
{
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
    }
    for (size_t i = 0; i < len; i++)
        if (!is_cookie_octet((unsigned char)s[i]))
            return false;
    return true;
}
