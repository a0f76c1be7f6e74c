/*
 * forward — builds the outgoing request and response heads as iovecs.
 *
 * The head limpet sends is the head it received, as spans of the input
 * buffer, minus hop-by-hop fields (and every field Connection names), plus the
 * few fields limpet adds, formatted into a small per-exchange buffer. Adjacent
 * kept field lines are merged into one span, so a head that needs no change is
 * sent as a handful of iovecs and never copied.
 */
#include "proxy/proxy.h"

#include "snapshot/snapshot.h"
#include "proxy/thread.h"
#include "http/cookie.h"

#define COOKIE_SPANS_MAX 32       /* pieces a rewritten Cookie field may be made of */

#include <arpa/inet.h>
#include <string.h>

struct iov_builder {
    struct iovec *iov;
    unsigned n;
    bool overflow;                /* more spans than HEAD_IOV_MAX: the head is refused */
};

static void add_span(struct iov_builder *b, const char *p, size_t len)
{
    if (len == 0)
        return;
    if (b->n > 0) {
        struct iovec *last = &b->iov[b->n - 1];
        if ((const char *)last->iov_base + last->iov_len == p) {
            last->iov_len += len;
            return;
        }
    }
    if (b->n >= HEAD_IOV_MAX) {
        b->overflow = true;
        return;
    }
    b->iov[b->n].iov_base = (void *)p;
    b->iov[b->n].iov_len = len;
    b->n++;
}

/* Text limpet writes into the head (the fields it adds), in EXTRA_HEAD_BYTES. */
struct text {
    char *p;
    size_t n;
    bool overflow;
};

static void text_put(struct text *t, const char *s, size_t len)
{
    if (t->n + len > EXTRA_HEAD_BYTES) {
        t->overflow = true;
        return;
    }
    memcpy(t->p + t->n, s, len);
    t->n += len;
}

#define TEXT_LIT(t, s) text_put((t), (s), sizeof(s) - 1)

static void add_literal(struct iov_builder *b, const char *s)
{
    add_span(b, s, strlen(s));
}

/* Start of the first field line, or of the final CRLF when there is none. */
static const char *fields_start(const char *head, size_t head_len, const struct h1_header *h,
                                size_t num)
{
    return num ? h[0].line : head + head_len - 2;
}

/* Cookie field edited per the affinity decision: limpet's own cookie removed,
 * or the application cookie's routing prefix stripped. Returns false when the
 * field needs no edit (it is then forwarded as received). */
static bool add_edited_cookie(struct iov_builder *b, const struct h1_header *h,
                              const struct affinity_decision *aff)
{
    struct iovec spans[COOKIE_SPANS_MAX];
    size_t n, len = 0;
    if (aff->strip_cookie) {
        const char *v;
        size_t vl;
        if (!cookie_find(h->value, h->value_len, aff->strip_cookie, aff->strip_cookie_len, &v,
                         &vl))
            return false;
        n = cookie_strip(h->value, h->value_len, aff->strip_cookie, aff->strip_cookie_len,
                         spans, COOKIE_SPANS_MAX, &len);
    } else if (aff->app_cookie) {
        const char *v;
        size_t vl;
        if (!cookie_find(h->value, h->value_len, aff->app_cookie, aff->app_cookie_len, &v, &vl) ||
            vl < aff->app_prefix_strip)
            return false;
        n = cookie_replace_value(h->value, h->value_len, aff->app_cookie, aff->app_cookie_len,
                                 v + aff->app_prefix_strip, vl - aff->app_prefix_strip, spans,
                                 COOKIE_SPANS_MAX, &len);
    } else {
        return false;
    }
    if (n == (size_t)-1) {
        b->overflow = true; /* never forward limpet's cookie: refuse the head instead */
        return true;
    }
    if (len == 0)
        return true; /* nothing left: the field is dropped */
    add_span(b, h->line, (size_t)(h->value - h->line));
    for (size_t i = 0; i < n; i++)
        add_span(b, spans[i].iov_base, spans[i].iov_len);
    add_literal(b, "\r\n");
    return true;
}

/* ---- the client address from X-Forwarded-For ---- */

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/* One X-Forwarded-For entry, OWS trimmed: "IP", "IPv4:port", "[IPv6]",
 * "[IPv6]:port". */
static bool parse_xff_entry(const char *p, size_t n, uint8_t *family, uint8_t addr[16])
{
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    char text[64];
    if (n == 0 || n >= sizeof(text) || memchr(p, '\0', n))
        return false;
    if (p[0] == '[') { /* [IPv6] or [IPv6]:port */
        const char *close = memchr(p, ']', n);
        if (!close)
            return false;
        size_t after = n - (size_t)(close - p) - 1;
        if (after > 0 && (close[1] != ':' || after < 2 || after > 6 ||
                          !all_digits(close + 2, after - 1)))
            return false;
        n = (size_t)(close - p) - 1;
        p++;
        memcpy(text, p, n);
        text[n] = '\0';
        *family = 6;
        return inet_pton(AF_INET6, text, addr) == 1;
    }
    const char *colon = memchr(p, ':', n);
    if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - p) - 1)) {
        size_t port = n - (size_t)(colon - p) - 1; /* IPv4:port */
        if (port == 0 || port > 5 || !all_digits(colon + 1, port))
            return false;
        n = (size_t)(colon - p);
    }
    memcpy(text, p, n);
    text[n] = '\0';
    if (memchr(text, ':', n)) {
        *family = 6;
        return inet_pton(AF_INET6, text, addr) == 1;
    }
    *family = 4;
    return inet_pton(AF_INET, text, addr) == 1;
}

bool forward_client_from_xff(const struct h1_request *req, const struct h1_semantics *sem,
                             const struct cfg_cidr *trusted, size_t num_trusted,
                             uint8_t *family, uint8_t addr[16])
{
    bool found = false;
    for (size_t i = req->num_headers; i-- > 0;) {
        const struct h1_header *h = &req->headers[i];
        if (sem->skip[i] || !h1_token_eq(h->name, h->name_len, "x-forwarded-for"))
            continue;
        /* entries from the right: the nearest proxy's first */
        size_t end = h->value_len;
        for (;;) {
            size_t start = end;
            while (start > 0 && h->value[start - 1] != ',')
                start--;
            uint8_t f, a[16] = {0};
            if (!parse_xff_entry(h->value + start, end - start, &f, a))
                return found; /* not an address: no further back than the last trusted one */
            *family = f;
            memcpy(addr, a, 16);
            found = true;
            if (!cfg_cidrs_contain(trusted, num_trusted, f, a))
                return true;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
    return found; /* every entry trusted: the left-most */
}

bool forward_request_head(struct exchange *ex, const char *head, size_t head_len,
                          const struct h1_request *req, const struct h1_semantics *sem,
                          const char *client_ip, size_t client_ip_len,
                          const char *affinity, size_t affinity_len)
{
    struct iov_builder b = {.iov = ex->req_iov};
    const struct h1_header *h = req->headers;
    const char *line_start = req->method;
    add_span(&b, line_start, (size_t)(fields_start(head, head_len, h, req->num_headers) - line_start));

    long last_xff = -1;
    for (size_t i = 0; i < req->num_headers; i++)
        if (!sem->skip[i] && h1_token_eq(h[i].name, h[i].name_len, "x-forwarded-for"))
            last_xff = (long)i;

    bool edit_cookies = ex->aff.strip_cookie || ex->aff.app_cookie;
    for (size_t i = 0; i < req->num_headers; i++) {
        if (sem->skip[i] || (long)i == last_xff ||
            h1_token_eq(h[i].name, h[i].name_len, "x-forwarded-proto") ||
            h1_token_eq(h[i].name, h[i].name_len, "x-forwarded-host") ||
            h1_token_eq(h[i].name, h[i].name_len, "x-limpet-affinity"))
            continue;
        if (edit_cookies && h1_token_eq(h[i].name, h[i].name_len, "cookie") &&
            add_edited_cookie(&b, &h[i], &ex->aff))
            continue;
        add_span(&b, h[i].line, h[i].line_len);
    }

    /* X-Forwarded-For: the client's list, with this client appended. */
    struct text extra = {.p = ex->req_extra};
    if (last_xff >= 0) {
        const struct h1_header *x = &h[last_xff];
        add_span(&b, x->line, (size_t)(x->value + x->value_len - x->line));
        TEXT_LIT(&extra, ", ");
    } else {
        TEXT_LIT(&extra, "X-Forwarded-For: ");
    }
    text_put(&extra, client_ip, client_ip_len);
    if (ex->tls)
        TEXT_LIT(&extra, "\r\nX-Forwarded-Proto: https\r\n");
    else
        TEXT_LIT(&extra, "\r\nX-Forwarded-Proto: http\r\n");
    if (affinity_len) {
        TEXT_LIT(&extra, "X-Limpet-Affinity: ");
        text_put(&extra, affinity, affinity_len);
        TEXT_LIT(&extra, "\r\n");
    }
    if (ex->upgrade)
        TEXT_LIT(&extra, "Connection: upgrade\r\n");
    if (extra.overflow)
        return false;
    add_span(&b, extra.p, extra.n);
    if (sem->host) {
        add_literal(&b, "X-Forwarded-Host: ");
        add_span(&b, sem->host->value, sem->host->value_len);
        add_literal(&b, "\r\n");
    }
    add_literal(&b, "\r\n");
    ex->req_iov_n = b.n;
    ex->req_iov_i = 0;
    return !b.overflow;
}

/* A Set-Cookie of the application's cookie gets the origin's prefix. */
static bool add_prefixed_set_cookie(struct iov_builder *b, const struct h1_header *h,
                                    const struct cfg_app_cookie *ac, const char *prefix)
{
    const char *name, *val;
    size_t name_len, val_len;
    if (!set_cookie_name_value(h->value, h->value_len, &name, &name_len, &val, &val_len) ||
        name_len != strlen(ac->name) || memcmp(name, ac->name, name_len) != 0)
        return false;
    add_span(b, h->line, (size_t)(val - h->line));
    add_span(b, prefix, strlen(prefix));
    add_span(b, ac->separator, strlen(ac->separator));
    add_span(b, val, (size_t)(h->line + h->line_len - val));
    return true;
}

bool forward_response_head(struct exchange *ex, const char *head, size_t head_len,
                           const struct h1_response *resp, const struct h1_semantics *sem,
                           const char *set_cookie, size_t set_cookie_len,
                           const char *app_prefix)
{
    struct iov_builder b = {.iov = ex->resp_iov};
    const struct h1_header *h = resp->headers;
    const struct cfg_app_cookie *ac = NULL;
    if (app_prefix && ex->use && ex->lb >= 0)
        ac = &ex->use->snap->cfg->load_balancers[ex->lb].attributes.app_cookie;
    add_span(&b, head, (size_t)(fields_start(head, head_len, h, resp->num_headers) - head));
    for (size_t i = 0; i < resp->num_headers; i++) {
        if (sem->skip[i])
            continue;
        if (ac && h1_token_eq(h[i].name, h[i].name_len, "set-cookie") &&
            add_prefixed_set_cookie(&b, &h[i], ac, app_prefix))
            continue;
        add_span(&b, h[i].line, h[i].line_len);
    }
    add_span(&b, set_cookie, set_cookie_len);
    if (ex->hsts && resp->status >= 200)
        add_literal(&b, ex->hsts);
    if (resp->status == 101)
        add_literal(&b, "Connection: upgrade\r\n");
    else if (ex->close_client)
        add_literal(&b, "Connection: close\r\n");
    else if (ex->minor_version == 0)
        add_literal(&b, "Connection: keep-alive\r\n");
    add_literal(&b, "\r\n");
    ex->resp_iov_n = b.n;
    ex->resp_iov_i = 0;
    return !b.overflow;
}

bool iov_advance(struct iovec *iov, unsigned n_iov, unsigned *index, size_t n)
{
    unsigned i = *index;
    while (i < n_iov && n > 0) {
        if (n >= iov[i].iov_len) {
            n -= iov[i].iov_len;
            iov[i].iov_len = 0;
            i++;
        } else {
            iov[i].iov_base = (char *)iov[i].iov_base + n;
            iov[i].iov_len -= n;
            n = 0;
        }
    }
    while (i < n_iov && iov[i].iov_len == 0)
        i++;
    *index = i;
    return i >= n_iov;
}
