/*
 * fuzz_cookie — libFuzzer target: Cookie / Set-Cookie handling
 * (src/http/cookie.c).
 *
 * Input: first byte n, then a cookie name of n % 16 bytes, then a header
 * value (used both as a Cookie and as a Set-Cookie value). Checked, beyond
 * memory safety:
 *  - iteration yields non-empty elements inside the value, in order, with
 *    name and value inside their element;
 *  - cookie_find returns the first element of that name;
 *  - cookie_strip's spans lie inside the value, add up to *out_len, and
 *    re-parsed give exactly the original elements minus those of that name;
 *  - cookie_replace_value changes the first such element's value only: its
 *    result, re-parsed, has the same elements with the new value in place;
 *  - set_cookie_name_value returns a non-empty name inside the value.
 */
#include <stdbool.h>

#include "fuzz_common.h"
#include "http/cookie.h"

#define MAX_ELEMS 512
#define MAX_SPANS 64

struct elems {
    struct cookie_pair e[MAX_ELEMS];
    size_t n;
    bool overflow;
};

static void collect(const char *v, size_t len, struct elems *out)
{
    struct cookie_iter it;
    struct cookie_pair p;
    out->n = 0;
    out->overflow = false;
    cookie_iter_init(&it, v, len);
    const char *prev_end = v;
    while (cookie_iter_next(&it, &p)) {
        FUZZ_CHECK(p.elem_len > 0 && fuzz_within(v, len, p.elem, p.elem_len));
        FUZZ_CHECK(p.elem >= prev_end);
        prev_end = p.elem + p.elem_len;
        FUZZ_CHECK(p.name_len == 0 || fuzz_within(p.elem, p.elem_len, p.name, p.name_len));
        FUZZ_CHECK(p.val_len == 0 || fuzz_within(p.elem, p.elem_len, p.val, p.val_len));
        if (out->n == MAX_ELEMS) {
            out->overflow = true;
            return;
        }
        out->e[out->n++] = p;
    }
}

static bool name_is(const struct cookie_pair *p, const char *name, size_t name_len)
{
    return name_len > 0 && p->name_len == name_len && memcmp(p->name, name, name_len) == 0;
}

static bool pair_eq(const struct cookie_pair *a, const struct cookie_pair *b)
{
    return a->elem_len == b->elem_len && memcmp(a->elem, b->elem, a->elem_len) == 0;
}

/* Concatenates spans into a fresh heap block of exactly their length. */
static char *join(const struct iovec *spans, size_t n, size_t total)
{
    char *out = malloc(total ? total : 1);
    FUZZ_CHECK(out != NULL);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(spans[i].iov_len <= total - off);
        memcpy(out + off, spans[i].iov_base, spans[i].iov_len);
        off += spans[i].iov_len;
    }
    FUZZ_CHECK(off == total);
    return out;
}

static struct elems orig, after;

static void check_strip(const char *v, size_t len, const char *name, size_t name_len)
{
    struct iovec spans[MAX_SPANS];
    size_t total = 0;
    size_t n = cookie_strip(v, len, name, name_len, spans, MAX_SPANS, &total);
    if (n == (size_t)-1) {
        FUZZ_CHECK(total == 0);
        return;
    }
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(fuzz_within(v, len, spans[i].iov_base, spans[i].iov_len));
    char *out = join(spans, n, total);
    collect(out, total, &after);
    if (!orig.overflow && !after.overflow) {
        size_t k = 0;
        for (size_t i = 0; i < orig.n; i++) {
            if (name_is(&orig.e[i], name, name_len))
                continue;
            FUZZ_CHECK(k < after.n && pair_eq(&orig.e[i], &after.e[k]));
            k++;
        }
        FUZZ_CHECK(k == after.n);
    }
    free(out);
}

static void check_replace(const char *v, size_t len, const char *name, size_t name_len,
                          long first)
{
    static const char new_val[] = "NEW-value_1";
    struct iovec spans[3];
    size_t total = 0;
    size_t n = cookie_replace_value(v, len, name, name_len, new_val, sizeof(new_val) - 1,
                                    spans, 3, &total);
    FUZZ_CHECK(n != (size_t)-1);
    if (n == 0) {
        FUZZ_CHECK(first < 0 && total == 0);
        return;
    }
    FUZZ_CHECK(first >= 0);
    char *out = join(spans, n, total);
    collect(out, total, &after);
    if (!orig.overflow && !after.overflow) {
        FUZZ_CHECK(after.n == orig.n);
        for (size_t i = 0; i < orig.n; i++) {
            if ((long)i == first) {
                FUZZ_CHECK(name_is(&after.e[i], name, name_len));
                FUZZ_CHECK(after.e[i].val_len == sizeof(new_val) - 1 &&
                           memcmp(after.e[i].val, new_val, sizeof(new_val) - 1) == 0);
            } else {
                FUZZ_CHECK(pair_eq(&orig.e[i], &after.e[i]));
            }
        }
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t name_len = data[0] % 16;
    if (name_len > size - 1)
        name_len = size - 1;
    char *name = fuzz_dup(data + 1, name_len);
    size_t len = size - 1 - name_len;
    char *v = fuzz_dup(data + 1 + name_len, len);

    collect(v, len, &orig);
    long first = -1;
    for (size_t i = 0; i < orig.n && first < 0; i++)
        if (name_is(&orig.e[i], name, name_len))
            first = (long)i;

    const char *val = NULL;
    size_t val_len = 0;
    bool found = cookie_find(v, len, name, name_len, &val, &val_len);
    if (!orig.overflow) {
        FUZZ_CHECK(found == (first >= 0));
        if (found)
            FUZZ_CHECK(val_len == orig.e[first].val_len &&
                       (val_len == 0 || val == orig.e[first].val));
    }
    if (!orig.overflow) {
        check_strip(v, len, name, name_len);
        check_replace(v, len, name, name_len, first);
    }

    const char *sn = NULL, *sv = NULL;
    size_t sn_len = 0, sv_len = 0;
    if (set_cookie_name_value(v, len, &sn, &sn_len, &sv, &sv_len)) {
        FUZZ_CHECK(sn_len > 0 && fuzz_within(v, len, sn, sn_len));
        FUZZ_CHECK(sv_len == 0 || fuzz_within(v, len, sv, sv_len));
        FUZZ_CHECK(memchr(sn, ';', sn_len) == NULL && memchr(sn, '=', sn_len) == NULL);
    }
    (void)cookie_name_valid(v, len);
    (void)cookie_value_valid(v, len);
    if (cookie_name_valid(name, name_len))
        FUZZ_CHECK(name_len > 0);

    free(name);
    free(v);
    return 0;
}
