/*
 * Unit tests for http/cookie: iteration, cookie_find, cookie_strip,
 * cookie_replace_value, set_cookie_name_value and the validity checks.
 * Span outputs are joined and compared as strings, and checked to point into
 * the caller's buffer (zero-copy). Inputs are often not NUL-terminated at len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "http/cookie.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static char joined[8192];

/* Concatenates spans into `joined`, checks the total against out_len. */
static const char *join(const struct iovec *v, size_t n, size_t out_len)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(v[i].iov_len > 0);
        assert_true(at + v[i].iov_len < sizeof(joined));
        memcpy(joined + at, v[i].iov_base, v[i].iov_len);
        at += v[i].iov_len;
    }
    assert_int_equal(at, out_len);
    joined[at] = 0;
    return joined;
}

/* Strips `name` from `hdr` and returns the result as a string ("<overflow>"). */
static const char *strip(const char *hdr, const char *name, size_t max_spans, size_t *nspans)
{
    struct iovec v[128];
    size_t out_len = 12345;
    size_t len = strlen(hdr);
    assert_true(max_spans <= 128);
    size_t n = cookie_strip(hdr, len, name, strlen(name), v, max_spans, &out_len);
    if (nspans)
        *nspans = n;
    if (n == (size_t)-1) {
        assert_int_equal(out_len, 0);
        return "<overflow>";
    }
    for (size_t i = 0; i < n; i++) {     /* zero-copy: every span lies in hdr */
        assert_true((const char *)v[i].iov_base >= hdr);
        assert_true((const char *)v[i].iov_base + v[i].iov_len <= hdr + len);
    }
    return join(v, n, out_len);
}

static void expect_find(const char *hdr, const char *name, const char *want)
{
    const char *val = NULL;
    size_t val_len = 0;
    bool found = cookie_find(hdr, strlen(hdr), name, strlen(name), &val, &val_len);
    if (!want) {
        assert_false(found);
        return;
    }
    assert_true(found);
    assert_true(val >= hdr && val + val_len <= hdr + strlen(hdr));
    assert_int_equal(val_len, strlen(want));
    assert_memory_equal(val, want, val_len);
}

/* ---- iteration ----------------------------------------------------------- */

static void test_iter_elements(void **state)
{
    (void)state;
    const char *hdr = " a=1;b = 2 ;; flag ;\t=x; c=\"q\" ;";
    struct cookie_iter it;
    struct cookie_pair c;
    cookie_iter_init(&it, hdr, strlen(hdr));

    assert_true(cookie_iter_next(&it, &c));
    assert_int_equal(c.name_len, 1);
    assert_memory_equal(c.name, "a", 1);
    assert_int_equal(c.val_len, 1);
    assert_memory_equal(c.val, "1", 1);
    assert_int_equal(c.elem_len, 3);
    assert_ptr_equal(c.elem, hdr + 1);

    assert_true(cookie_iter_next(&it, &c));
    assert_memory_equal(c.name, "b", 1);
    assert_int_equal(c.name_len, 1);
    assert_memory_equal(c.val, "2", 1);
    assert_int_equal(c.val_len, 1);
    assert_int_equal(c.elem_len, 5);                 /* "b = 2" */

    assert_true(cookie_iter_next(&it, &c));          /* no '=': empty name */
    assert_int_equal(c.name_len, 0);
    assert_int_equal(c.val_len, 4);
    assert_memory_equal(c.val, "flag", 4);

    assert_true(cookie_iter_next(&it, &c));          /* "=x": empty name */
    assert_int_equal(c.name_len, 0);
    assert_int_equal(c.val_len, 1);
    assert_memory_equal(c.val, "x", 1);

    assert_true(cookie_iter_next(&it, &c));
    assert_memory_equal(c.name, "c", 1);
    assert_int_equal(c.val_len, 3);
    assert_memory_equal(c.val, "\"q\"", 3);

    assert_false(cookie_iter_next(&it, &c));
    assert_false(cookie_iter_next(&it, &c));
}

static void test_iter_empty(void **state)
{
    (void)state;
    struct cookie_iter it;
    struct cookie_pair c;
    cookie_iter_init(&it, NULL, 0);
    assert_false(cookie_iter_next(&it, &c));
    cookie_iter_init(&it, S(" ;; ; \t;"));
    assert_false(cookie_iter_next(&it, &c));
}

/* ---- find ---------------------------------------------------------------- */

static void test_find_basic(void **state)
{
    (void)state;
    expect_find("a=1; b=2;c=3", "a", "1");
    expect_find("a=1; b=2;c=3", "b", "2");
    expect_find("a=1; b=2;c=3", "c", "3");
    expect_find("a=1; b=2;c=3", "d", NULL);
    expect_find("a=1;", "a", "1");
    expect_find("__limpet=AbC-_x.9", "__limpet", "AbC-_x.9");
}

static void test_find_empty_and_separators(void **state)
{
    (void)state;
    expect_find("", "a", NULL);
    expect_find(";", "a", NULL);
    expect_find(" ; ;;\t; ", "a", NULL);
    expect_find(";;a=1;;", "a", "1");
    assert_false(cookie_find(NULL, 0, S("a"), NULL, NULL));
    assert_false(cookie_find(S("a=1"), "", 0, NULL, NULL));   /* empty name never matches */
    assert_false(cookie_find(S("=1"), "", 0, NULL, NULL));
}

static void test_find_prefix_names(void **state)
{
    (void)state;
    expect_find("ab=1; a=2", "a", "2");
    expect_find("ab=1; a=2", "ab", "1");
    expect_find("ab=1; a=2", "b", NULL);
    expect_find("a=1; ab=2", "ab", "2");
    expect_find("abc=1", "ab", NULL);
    expect_find("a=1", "ab", NULL);
}

static void test_find_first_of_duplicates(void **state)
{
    (void)state;
    expect_find("a=1; a=2", "a", "1");
    expect_find("x=0; a=; a=2", "a", "");
}

static void test_find_case_sensitive(void **state)
{
    (void)state;
    expect_find("A=1; a=2", "a", "2");
    expect_find("JSESSIONID=x", "jsessionid", NULL);
}

static void test_find_quoted_and_equals(void **state)
{
    (void)state;
    expect_find("sid=\"abc\"; x=1", "sid", "\"abc\"");
    expect_find("sid=\"\"", "sid", "\"\"");
    expect_find("t=a=b==; x=1", "t", "a=b==");
    expect_find("t==", "t", "=");
    expect_find("a=; b=2", "a", "");
}

static void test_find_whitespace(void **state)
{
    (void)state;
    expect_find("  a = 1 ;\tb=2\t", "a", "1");
    expect_find("  a = 1 ;\tb=2\t", "b", "2");
    expect_find("a=x y; b=2", "a", "x y");         /* inner space kept, raw */
    expect_find("flag; a=1", "flag", NULL);        /* no '=': no name */
    expect_find("flag; a=1", "a", "1");
}

static void test_find_respects_len(void **state)
{
    (void)state;
    /* Not NUL-terminated at len: nothing beyond it is read. */
    const char *buf = "a=1; b=2; c=3";
    const char *v;
    size_t vl;
    assert_false(cookie_find(buf, 6, S("b"), &v, &vl));     /* "a=1; b" */
    assert_true(cookie_find(buf, 7, S("b"), &v, &vl));      /* "a=1; b=" */
    assert_int_equal(vl, 0);
    assert_true(cookie_find(buf, 8, S("b"), &v, &vl));
    assert_int_equal(vl, 1);
    assert_memory_equal(v, "2", 1);
}

static void test_find_100_cookies(void **state)
{
    (void)state;
    static char hdr[2048];
    size_t at = 0;
    for (int i = 0; i < 100; i++)
        at += (size_t)snprintf(hdr + at, sizeof(hdr) - at, "%sc%d=v%d", i ? "; " : "", i, i);
    expect_find(hdr, "c0", "v0");
    expect_find(hdr, "c57", "v57");
    expect_find(hdr, "c99", "v99");
    expect_find(hdr, "c9", "v9");
    expect_find(hdr, "c100", NULL);
    struct cookie_iter it;
    struct cookie_pair c;
    int count = 0;
    cookie_iter_init(&it, hdr, at);
    while (cookie_iter_next(&it, &c))
        count++;
    assert_int_equal(count, 100);
}

/* ---- strip --------------------------------------------------------------- */

static void test_strip_examples(void **state)
{
    (void)state;
    size_t n;
    assert_string_equal(strip("a=1; b=2; c=3", "b", 8, &n), "a=1; c=3");
    assert_int_equal(n, 2);
    assert_string_equal(strip("b=2; a=1", "b", 8, &n), "a=1");
    assert_int_equal(n, 1);
    assert_string_equal(strip("a=1; b=2", "b", 8, &n), "a=1");
    assert_int_equal(n, 1);
    assert_string_equal(strip("b=2", "b", 8, &n), "");
    assert_int_equal(n, 0);
}

static void test_strip_nothing_left(void **state)
{
    (void)state;
    size_t n;
    assert_string_equal(strip("", "b", 8, &n), "");
    assert_int_equal(n, 0);
    assert_string_equal(strip(" ;; ; ", "b", 8, &n), "");
    assert_int_equal(n, 0);
    assert_string_equal(strip("b=1; b=2;;b=", "b", 0, &n), "");  /* 0 spans fits max 0 */
    assert_int_equal(n, 0);
    size_t out_len = 99;
    assert_int_equal(cookie_strip(NULL, 0, S("b"), NULL, 0, &out_len), 0);
    assert_int_equal(out_len, 0);
}

static void test_strip_absent_or_empty_name(void **state)
{
    (void)state;
    size_t n;
    assert_string_equal(strip("a=1; c=3", "b", 8, &n), "a=1; c=3");
    assert_int_equal(n, 1);
    /* Leading/trailing whitespace and separators are not kept. */
    assert_string_equal(strip(" ; a=1;c=3 ; ", "b", 8, &n), "a=1;c=3");
    assert_string_equal(strip("a=1; flag; c=3", "", 8, &n), "a=1; flag; c=3");
}

static void test_strip_all_occurrences(void **state)
{
    (void)state;
    size_t n;
    assert_string_equal(strip("b=1; a=1; b=2; c=3; b=3", "b", 8, &n), "a=1; c=3");
    assert_int_equal(n, 2);
    assert_string_equal(strip("a=1; b=2; b=3; c=3", "b", 8, &n), "a=1; c=3");
    assert_int_equal(n, 2);
    assert_string_equal(strip("b=; b=\"x\"; b", "b", 8, &n), "b");   /* "b" has no name */
}

static void test_strip_separators_kept(void **state)
{
    (void)state;
    assert_string_equal(strip("a=1;b=2;c=3", "b", 8, NULL), "a=1;c=3");
    assert_string_equal(strip("  a=1 ;  b=2 ; c=3  ", "b", 8, NULL), "a=1 ;  c=3");
    assert_string_equal(strip("a=1;;b=2;\tc=3", "b", 8, NULL), "a=1;;c=3");
    assert_string_equal(strip("a=1; c=3; b=2", "b", 8, NULL), "a=1; c=3");
}

static void test_strip_prefix_names_and_values(void **state)
{
    (void)state;
    assert_string_equal(strip("ab=1; a=2; b=3", "a", 8, NULL), "ab=1; b=3");
    assert_string_equal(strip("ab=1; a=2; b=3", "ab", 8, NULL), "a=2; b=3");
    assert_string_equal(strip("x=b=2; b=3", "b", 8, NULL), "x=b=2");
    assert_string_equal(strip("a=\"1\"; b=\"2\"", "a", 8, NULL), "b=\"2\"");
    assert_string_equal(strip("__limpet=Zm9v; JSESSIONID=abc; theme=dark", "__limpet", 8, NULL),
                        "JSESSIONID=abc; theme=dark");
}

static void test_strip_max_spans(void **state)
{
    (void)state;
    size_t n;
    const char *hdr = "a=1; x=0; b=2; x=9; c=3";
    assert_string_equal(strip(hdr, "x", 3, &n), "a=1; b=2; c=3");
    assert_int_equal(n, 3);
    assert_string_equal(strip(hdr, "x", 2, &n), "<overflow>");
    assert_int_equal(n, (size_t)-1);
    assert_string_equal(strip("a=1", "x", 0, &n), "<overflow>");
    assert_string_equal(strip("a=1", "x", 1, &n), "a=1");
}

static void test_strip_100_cookies(void **state)
{
    (void)state;
    /* 100 cookies, every odd one named x: 50 runs remain. */
    static char hdr[2048], want[2048];
    size_t at = 0, wat = 0;
    for (int i = 0; i < 100; i++) {
        if (i % 2)
            at += (size_t)snprintf(hdr + at, sizeof(hdr) - at, "%sx=%d", i ? "; " : "", i);
        else {
            at += (size_t)snprintf(hdr + at, sizeof(hdr) - at, "%sc%d=v%d", i ? "; " : "", i, i);
            wat += (size_t)snprintf(want + wat, sizeof(want) - wat, "%sc%d=v%d",
                                    wat ? "; " : "", i, i);
        }
    }
    size_t n;
    assert_string_equal(strip(hdr, "x", 50, &n), want);
    assert_int_equal(n, 50);
    assert_string_equal(strip(hdr, "x", 49, &n), "<overflow>");
    /* Removing one of 100 distinct cookies: two spans. */
    at = 0;
    for (int i = 0; i < 100; i++)
        at += (size_t)snprintf(hdr + at, sizeof(hdr) - at, "%sc%d=v%d", i ? "; " : "", i, i);
    assert_non_null(strip(hdr, "c50", 2, &n));
    assert_int_equal(n, 2);
    assert_null(strstr(joined, "c50="));
    assert_int_equal(strlen(joined), strlen(hdr) - strlen("c50=v50; "));
}

/* ---- replace ------------------------------------------------------------- */

static const char *replace(const char *hdr, const char *name, const char *nv, size_t nl,
                           size_t max_spans, size_t *nspans)
{
    struct iovec v[3];
    size_t out_len = 777;
    size_t n = cookie_replace_value(hdr, strlen(hdr), name, strlen(name), nv, nl, v,
                                    max_spans, &out_len);
    *nspans = n;
    if (n == (size_t)-1 || n == 0) {
        assert_int_equal(out_len, 0);
        return n ? "<overflow>" : "<absent>";
    }
    return join(v, n, out_len);
}

static void test_replace_prefix_mode(void **state)
{
    (void)state;
    /* app_cookie prefix mode: drop "Xk3f9~" by pointing into the value itself. */
    const char *hdr = "a=1; JSESSIONID=Xk3f9~9CA0F1; b=2";
    const char *v;
    size_t vl, n;
    assert_true(cookie_find(hdr, strlen(hdr), S("JSESSIONID"), &v, &vl));
    const char *tilde = memchr(v, '~', vl);
    assert_non_null(tilde);
    assert_string_equal(replace(hdr, "JSESSIONID", tilde + 1, (size_t)(v + vl - tilde - 1), 3, &n),
                        "a=1; JSESSIONID=9CA0F1; b=2");
    assert_int_equal(n, 3);
}

static void test_replace_positions(void **state)
{
    (void)state;
    size_t n;
    assert_string_equal(replace("J=abc", "J", S("new"), 3, &n), "J=new");
    assert_int_equal(n, 2);
    assert_string_equal(replace("J=abc; k=1", "J", S("n"), 3, &n), "J=n; k=1");
    assert_int_equal(n, 3);
    assert_string_equal(replace("k=1;J=abc", "J", S("n"), 3, &n), "k=1;J=n");
    assert_int_equal(n, 2);
    assert_string_equal(replace(" J = abc ; k", "J", S("n"), 3, &n), " J = n ; k");
    assert_string_equal(replace("J=; b", "J", S("x"), 3, &n), "J=x; b");
    assert_string_equal(replace("J=abc; b=2", "J", "", 0, 3, &n), "J=; b=2");
    assert_int_equal(n, 2);
    assert_string_equal(replace("J=\"q\"; b=2", "J", S("\"r\""), 3, &n), "J=\"r\"; b=2");
}

static void test_replace_first_only_absent_overflow(void **state)
{
    (void)state;
    size_t n;
    assert_string_equal(replace("J=1; J=2", "J", S("x"), 3, &n), "J=x; J=2");
    assert_string_equal(replace("JJ=1; j=2", "J", S("x"), 3, &n), "<absent>");
    assert_int_equal(n, 0);
    assert_string_equal(replace("", "J", S("x"), 3, &n), "<absent>");
    assert_string_equal(replace("a=1", "", S("x"), 3, &n), "<absent>");
    assert_string_equal(replace("a=1; J=2; b=3", "J", S("x"), 2, &n), "<overflow>");
    assert_int_equal(n, (size_t)-1);
    assert_string_equal(replace("J=2", "J", S("x"), 2, &n), "J=x");
}

/* ---- set-cookie ---------------------------------------------------------- */

static void expect_set_cookie(const char *hdr, const char *name, const char *val)
{
    const char *n, *v;
    size_t nl, vl;
    bool ok = set_cookie_name_value(hdr, strlen(hdr), &n, &nl, &v, &vl);
    if (!name) {
        assert_false(ok);
        return;
    }
    assert_true(ok);
    assert_int_equal(nl, strlen(name));
    assert_memory_equal(n, name, nl);
    assert_int_equal(vl, strlen(val));
    assert_memory_equal(v, val, vl);
}

static void test_set_cookie(void **state)
{
    (void)state;
    expect_set_cookie("JSESSIONID=abc; Path=/; HttpOnly", "JSESSIONID", "abc");
    expect_set_cookie(" sid = \"q v\" ; Secure", "sid", "\"q v\"");
    expect_set_cookie("a=", "a", "");
    expect_set_cookie("a=;Path=/", "a", "");
    expect_set_cookie("a=b=c; x", "a", "b=c");
    expect_set_cookie("a\t=\tb\t", "a", "b");
    expect_set_cookie("noequals; Path=/", NULL, NULL);
    expect_set_cookie("flag; a=b", NULL, NULL);          /* '=' only after ';' */
    expect_set_cookie("=abc", NULL, NULL);
    expect_set_cookie(" =abc", NULL, NULL);
    expect_set_cookie("", NULL, NULL);
    expect_set_cookie("; a=b", NULL, NULL);
    assert_false(set_cookie_name_value(NULL, 0, NULL, NULL, NULL, NULL));
    assert_true(set_cookie_name_value(S("a=b"), NULL, NULL, NULL, NULL));
    /* Bounded by len. */
    assert_false(set_cookie_name_value("ab=c", 2, NULL, NULL, NULL, NULL));
}

/* ---- validity ------------------------------------------------------------ */

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(cookie_name_valid(S("JSESSIONID")));
    assert_true(cookie_name_valid(S("__limpet")));
    assert_true(cookie_name_valid(S("!#$%&'*+-.^_`|~09azAZ")));
    assert_false(cookie_name_valid(S("")));
    assert_false(cookie_name_valid(S("a b")));
    assert_false(cookie_name_valid(S("a=b")));
    assert_false(cookie_name_valid(S("a;b")));
    assert_false(cookie_name_valid(S("(a)")));
    assert_false(cookie_name_valid(S("a\"")));
    assert_false(cookie_name_valid(S("a\x7f")));
    assert_false(cookie_name_valid(S("\xc3\xa9")));
    assert_false(cookie_name_valid("a\0b", 3));
}

static void test_value_valid(void **state)
{
    (void)state;
    assert_true(cookie_value_valid(S("")));
    assert_true(cookie_value_valid(S("abc")));
    assert_true(cookie_value_valid(S("Xk3f9~9CA0")));
    assert_true(cookie_value_valid(S("AbC-_=/+.:")));
    assert_true(cookie_value_valid(S("\"abc\"")));
    assert_true(cookie_value_valid(S("\"\"")));
    assert_false(cookie_value_valid(S("\"")));
    assert_false(cookie_value_valid(S("a\"")));
    assert_false(cookie_value_valid(S("\"a")));
    assert_false(cookie_value_valid(S("\"a\"b\"")));
    assert_false(cookie_value_valid(S("\"a b\"")));
    assert_false(cookie_value_valid(S("a b")));
    assert_false(cookie_value_valid(S("a,b")));
    assert_false(cookie_value_valid(S("a;b")));
    assert_false(cookie_value_valid(S("a\\b")));
    assert_false(cookie_value_valid(S("a\tb")));
    assert_false(cookie_value_valid(S("\xc3\xa9")));
    assert_false(cookie_value_valid("a\0b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iter_elements),
        cmocka_unit_test(test_iter_empty),
        cmocka_unit_test(test_find_basic),
        cmocka_unit_test(test_find_empty_and_separators),
        cmocka_unit_test(test_find_prefix_names),
        cmocka_unit_test(test_find_first_of_duplicates),
        cmocka_unit_test(test_find_case_sensitive),
        cmocka_unit_test(test_find_quoted_and_equals),
        cmocka_unit_test(test_find_whitespace),
        cmocka_unit_test(test_find_respects_len),
        cmocka_unit_test(test_find_100_cookies),
        cmocka_unit_test(test_strip_examples),
        cmocka_unit_test(test_strip_nothing_left),
        cmocka_unit_test(test_strip_absent_or_empty_name),
        cmocka_unit_test(test_strip_all_occurrences),
        cmocka_unit_test(test_strip_separators_kept),
        cmocka_unit_test(test_strip_prefix_names_and_values),
        cmocka_unit_test(test_strip_max_spans),
        cmocka_unit_test(test_strip_100_cookies),
        cmocka_unit_test(test_replace_prefix_mode),
        cmocka_unit_test(test_replace_positions),
        cmocka_unit_test(test_replace_first_only_absent_overflow),
        cmocka_unit_test(test_set_cookie),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_value_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
