/*
 * fuzz_response — libFuzzer target: response head parser + response
 * semantics (src/http/h1.c: h1_parse_response, h1_response_semantics).
 *
 * Checks, beyond memory safety: an accepted head is tiled exactly by its
 * status line and field lines, with every pointer inside it; the verdict
 * depends only on the head's bytes (prefixes need more, re-parsing the head
 * alone gives the same length); refusals carry a reason and a status; a
 * smaller head limit only turns a verdict into 431. The semantics are derived
 * for each request method limpet distinguishes (GET, HEAD, CONNECT, POST) and
 * must agree with the status: no body for HEAD, 1xx, 204 and 304; CONNECT's
 * 2xx refused; 1xx/204 framing fields refused; content length as written.
 */
#include <stdbool.h>

#include "fuzz_common.h"
#include "http/h1.h"

#define BIG_LIMIT 1000000

static struct h1_response resp, resp2;
static struct h1_semantics sem;

static void check_head(const char *buf, int rc)
{
    size_t n = (size_t)rc;
    FUZZ_CHECK(resp.num_headers <= H1_MAX_HEADERS);
    FUZZ_CHECK(resp.status >= 100 && resp.status <= 599);
    FUZZ_CHECK(resp.minor_version == 0 || resp.minor_version == 1);
    FUZZ_CHECK(memcmp(buf, "HTTP/1.", 7) == 0);
    FUZZ_CHECK(fuzz_within(buf, n, resp.reason, resp.reason_len));
    FUZZ_CHECK(resp.reason == buf + 13);
    FUZZ_CHECK(resp.status_line_len == 13 + resp.reason_len + 2);
    const char *next = buf + resp.status_line_len;
    for (size_t i = 0; i < resp.num_headers; i++) {
        const struct h1_header *h = &resp.headers[i];
        FUZZ_CHECK(h->line == next && fuzz_within(buf, n, h->line, h->line_len));
        FUZZ_CHECK(h->name == h->line && h->name_len > 0 && h->name[h->name_len] == ':');
        FUZZ_CHECK(h->value + h->value_len <= h->line + h->line_len - 2);
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        next = h->line + h->line_len;
    }
    FUZZ_CHECK(next + 2 == buf + n && memcmp(next, "\r\n", 2) == 0);
}

static bool has_field(const char *name)
{
    for (size_t i = 0; i < resp.num_headers; i++)
        if (h1_token_eq(resp.headers[i].name, resp.headers[i].name_len, name))
            return true;
    return false;
}

static void check_semantics(void)
{
    static const char *const methods[] = {"GET", "HEAD", "CONNECT", "POST"};
    int st = resp.status;
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
        const char *method = methods[m];
        int r = h1_response_semantics(&resp, method, strlen(method), &sem);
        if (r < 0) {
            FUZZ_CHECK(sem.error.reason != NULL);
            FUZZ_CHECK(sem.error.status == 400 || sem.error.status == 501);
            continue;
        }
        FUZZ_CHECK(r == 0);
        bool head = m == 1, connect = m == 2;
        if (connect)
            FUZZ_CHECK(st < 200 || st >= 300);
        if (st < 200 || st == 204)
            FUZZ_CHECK(!has_field("transfer-encoding"));
        if (head || st < 200 || st == 204 || st == 304) {
            FUZZ_CHECK(sem.body == H1_BODY_NONE);
        } else if (sem.body == H1_BODY_UNTIL_CLOSE) {
            FUZZ_CHECK(!sem.keep_alive);
            FUZZ_CHECK(!has_field("content-length") && !has_field("transfer-encoding"));
        } else if (sem.body == H1_BODY_CHUNKED) {
            FUZZ_CHECK(resp.minor_version == 1 && !has_field("content-length"));
        } else {
            FUZZ_CHECK(sem.body == H1_BODY_LENGTH && has_field("content-length"));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_dup(data, size);
    int rc = h1_parse_response(buf, size, BIG_LIMIT, &resp);
    int status = resp.error.status;
    const char *reason = resp.error.reason;

    if (rc > 0) {
        FUZZ_CHECK((size_t)rc <= size);
        check_head(buf, rc);
        check_semantics();
        FUZZ_CHECK(h1_parse_response(buf, (size_t)rc, BIG_LIMIT, &resp2) == rc);
        FUZZ_CHECK(h1_parse_response(buf, (size_t)rc - 1, BIG_LIMIT, &resp2) == H1_NEED_MORE);
    } else if (rc == H1_INVALID) {
        FUZZ_CHECK(reason != NULL);
        FUZZ_CHECK(status == 400 || status == 431 || status == 505);
    } else {
        FUZZ_CHECK(rc == H1_NEED_MORE);
    }

    if (size > 1) {
        size_t cut = (size_t)(fuzz_seed(data, size) % size);
        int r2 = h1_parse_response(buf, cut, BIG_LIMIT, &resp2);
        FUZZ_CHECK(r2 == H1_NEED_MORE || r2 == rc);
        if (r2 == H1_INVALID)
            FUZZ_CHECK(resp2.error.status == status && !strcmp(resp2.error.reason, reason));
    }

    if (size > 0) {
        size_t limit = 1 + (size_t)data[size - 1] * 8;
        int r3 = h1_parse_response(buf, size, limit, &resp2);
        bool same = r3 == rc && (rc != H1_INVALID || (resp2.error.status == status &&
                                                      !strcmp(resp2.error.reason, reason)));
        bool limited = r3 == H1_INVALID && resp2.error.status == 431 && size >= limit;
        FUZZ_CHECK(same || limited);
        if (rc > 0 && (size_t)rc <= limit)
            FUZZ_CHECK(r3 == rc);
    }
    free(buf);
    return 0;
}
