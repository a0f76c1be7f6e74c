/*
 * fuzz_request — libFuzzer target: request head parser + request semantics
 * (src/http/h1.c: h1_parse_request, h1_request_semantics).
 *
 * Besides "no crash, no over-read, no undefined behaviour", it checks what the
 * proxy relies on:
 *  - an accepted head: every pointer lies inside it; the request line and the
 *    field lines tile it exactly (line after line, then the final CRLF);
 *    names are tokens, values hold no CR/LF/NUL and no surrounding SP/HTAB;
 *  - re-parsing only the head gives the same length, and any shorter prefix
 *    needs more bytes (the verdict depends on nothing after the head);
 *  - a refusal has a reason and one of the statuses 400/414/431/505, and is
 *    the same on any longer input (a prefix never decides differently);
 *  - a smaller max_head_bytes only ever turns a verdict into 414/431;
 *  - semantics: refused with 400/501, or framing consistent with the fields
 *    (one Content-Length of those digits, chunked only on HTTP/1.1, ...).
 */
#include <stdbool.h>

#include "fuzz_common.h"
#include "http/h1.h"

#define BIG_LIMIT 1000000

static struct h1_request req, req2;
static struct h1_semantics sem;

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_head(const char *buf, int rc)
{
    size_t n = (size_t)rc;
    FUZZ_CHECK(req.num_headers <= H1_MAX_HEADERS);
    FUZZ_CHECK(fuzz_within(buf, n, req.method, req.method_len) && req.method_len > 0);
    FUZZ_CHECK(fuzz_within(buf, n, req.target, req.target_len) && req.target_len > 0);
    FUZZ_CHECK(req.minor_version == 0 || req.minor_version == 1);
    FUZZ_CHECK(req.target == req.method + req.method_len + 1);
    for (size_t i = 0; i < req.method_len; i++)
        FUZZ_CHECK(is_tchar((unsigned char)req.method[i]));
    for (size_t i = 0; i < req.target_len; i++) {
        unsigned char c = (unsigned char)req.target[i];
        FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '#');
    }
    /* leading empty lines, then the request line, then the fields, then CRLF */
    for (const char *p = buf; p < req.method; p += 2)
        FUZZ_CHECK(p[0] == '\r' && p[1] == '\n');
    const char *next = req.method + req.request_line_len;
    FUZZ_CHECK(memcmp(next - 2, "\r\n", 2) == 0);
    for (size_t i = 0; i < req.num_headers; i++) {
        const struct h1_header *h = &req.headers[i];
        FUZZ_CHECK(h->line == next);
        FUZZ_CHECK(fuzz_within(buf, n, h->line, h->line_len));
        FUZZ_CHECK(h->name == h->line && h->name_len > 0 && h->name[h->name_len] == ':');
        for (size_t k = 0; k < h->name_len; k++)
            FUZZ_CHECK(is_tchar((unsigned char)h->name[k]));
        FUZZ_CHECK(h->value >= h->name + h->name_len + 1);
        FUZZ_CHECK(h->value + h->value_len <= h->line + h->line_len - 2);
        if (h->value_len) {
            FUZZ_CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            FUZZ_CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        FUZZ_CHECK(memcmp(h->line + h->line_len - 2, "\r\n", 2) == 0);
        next = h->line + h->line_len;
    }
    FUZZ_CHECK(next + 2 == buf + n && memcmp(next, "\r\n", 2) == 0);
}

static size_t count_fields(const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < req.num_headers; i++)
        if (h1_token_eq(req.headers[i].name, req.headers[i].name_len, name))
            k++;
    return k;
}

static void check_semantics(void)
{
    if (h1_request_semantics(&req, &sem) < 0) {
        FUZZ_CHECK(sem.error.reason != NULL);
        FUZZ_CHECK(sem.error.status == 400 || sem.error.status == 501);
        return;
    }
    size_t cl = count_fields("content-length"), te = count_fields("transfer-encoding");
    size_t host = count_fields("host");
    FUZZ_CHECK(cl <= 1 && !(cl && te) && host <= 1);
    if (req.minor_version == 1)
        FUZZ_CHECK(host == 1);
    FUZZ_CHECK((sem.host != NULL) == (host == 1));
    switch (sem.body) {
    case H1_BODY_NONE:
        FUZZ_CHECK(cl == 0 && te == 0);
        break;
    case H1_BODY_LENGTH: {
        FUZZ_CHECK(cl == 1);
        const struct h1_header *h = NULL;
        for (size_t i = 0; i < req.num_headers; i++)
            if (h1_token_eq(req.headers[i].name, req.headers[i].name_len, "content-length"))
                h = &req.headers[i];
        uint64_t v = 0;
        FUZZ_CHECK(h->value_len > 0);
        for (size_t k = 0; k < h->value_len; k++) {
            FUZZ_CHECK(h->value[k] >= '0' && h->value[k] <= '9');
            v = v * 10 + (uint64_t)(h->value[k] - '0');
        }
        FUZZ_CHECK(v == sem.content_length);
        break;
    }
    case H1_BODY_CHUNKED:
        FUZZ_CHECK(te >= 1 && req.minor_version == 1);
        break;
    default:
        FUZZ_CHECK(!"request framed until close");
    }
    for (size_t i = 0; i < req.num_headers; i++) {
        if (h1_token_eq(req.headers[i].name, req.headers[i].name_len, "connection") ||
            h1_token_eq(req.headers[i].name, req.headers[i].name_len, "upgrade"))
            FUZZ_CHECK(sem.skip[i]);
        if (h1_token_eq(req.headers[i].name, req.headers[i].name_len, "host") ||
            h1_token_eq(req.headers[i].name, req.headers[i].name_len, "content-length") ||
            h1_token_eq(req.headers[i].name, req.headers[i].name_len, "transfer-encoding"))
            FUZZ_CHECK(!sem.skip[i]);
    }
    if (req.minor_version == 0)
        FUZZ_CHECK(!sem.expect_continue && !sem.upgrade);
}

static bool limit_status(int status)
{
    return status == 414 || status == 431;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_dup(data, size);
    int rc = h1_parse_request(buf, size, BIG_LIMIT, &req);
    int status = req.error.status;
    const char *reason = req.error.reason;

    if (rc > 0) {
        FUZZ_CHECK((size_t)rc <= size);
        check_head(buf, rc);
        check_semantics();
        /* the verdict depends only on the head's own bytes */
        FUZZ_CHECK(h1_parse_request(buf, (size_t)rc, BIG_LIMIT, &req2) == rc);
        FUZZ_CHECK(h1_parse_request(buf, (size_t)rc - 1, BIG_LIMIT, &req2) == H1_NEED_MORE);
        FUZZ_CHECK(h1_parse_request(buf, (size_t)rc / 2, BIG_LIMIT, &req2) == H1_NEED_MORE);
    } else if (rc == H1_INVALID) {
        FUZZ_CHECK(reason != NULL);
        FUZZ_CHECK(status == 400 || status == 414 || status == 431 || status == 505);
    } else {
        FUZZ_CHECK(rc == H1_NEED_MORE);
    }

    /* A prefix either needs more or decides exactly as the whole input. */
    if (size > 1) {
        size_t cut = (size_t)(fuzz_seed(data, size) % size);
        int r2 = h1_parse_request(buf, cut, BIG_LIMIT, &req2);
        FUZZ_CHECK(r2 == H1_NEED_MORE || r2 == rc);
        if (r2 == H1_INVALID)
            FUZZ_CHECK(req2.error.status == status && !strcmp(req2.error.reason, reason));
    }

    /* A smaller head limit changes a verdict only into 414/431, and only
     * when the input reaches the limit. */
    if (size > 0) {
        size_t limit = 1 + (size_t)data[0] * 8;
        int r3 = h1_parse_request(buf, size, limit, &req2);
        bool same = r3 == rc && (rc != H1_INVALID || (req2.error.status == status &&
                                                      !strcmp(req2.error.reason, reason)));
        bool limited = r3 == H1_INVALID && limit_status(req2.error.status) && size >= limit;
        FUZZ_CHECK(same || limited);
        if (rc > 0 && (size_t)rc <= limit)
            FUZZ_CHECK(r3 == rc);
    }
    free(buf);
    return 0;
}
