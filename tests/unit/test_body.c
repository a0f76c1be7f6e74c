/* Unit tests for proxy/body: body cursors over a buffer, every framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/body.h"

static struct buf *fill(struct buf_pool *pool, const char *bytes)
{
    struct buf *b = buf_get(pool);
    size_t n = strlen(bytes);
    memcpy(b->data, bytes, n);
    b->end = (uint32_t)n;
    return b;
}

static void test_content_length_stops_at_its_length(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    struct buf *in = fill(&pool, "helloGET / HTTP/1.1\r\n");
    struct body_cursor b;
    body_cursor_init(&b, H1_BODY_LENGTH, 5, 0, false);
    assert_false(body_complete(&b, in));
    assert_int_equal(body_ready(&b, in), 5); /* the pipelined request is not body */
    body_consumed(&b, in, 3);
    assert_int_equal(b.left, 2);
    assert_int_equal(body_ready(&b, in), 2);
    body_consumed(&b, in, 2);
    assert_true(body_complete(&b, in));
    assert_int_equal(body_ready(&b, in), 0);
    assert_int_equal(in->start, 5);
    buf_put(&pool, in);
    buf_pool_fini(&pool);
}

static void test_chunked_forwards_framing_and_finds_the_end(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    const char *body = "3\r\nabc\r\n0\r\n\r\n";
    struct buf *in = fill(&pool, "3\r\nabc\r\n0\r\n\r\nNEXT");
    struct body_cursor b;
    body_cursor_init(&b, H1_BODY_CHUNKED, 0, 0, false);
    long ready = body_ready(&b, in);
    assert_int_equal(ready, (long)strlen(body)); /* framing passed on, not the next bytes */
    assert_true(b.scanned_to_end);
    assert_false(body_complete(&b, in));
    body_consumed(&b, in, (size_t)ready);
    assert_true(body_complete(&b, in));
    buf_put(&pool, in);
    buf_pool_fini(&pool);
}

static void test_chunked_decoded_in_place(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    struct buf *in = fill(&pool, "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    struct body_cursor b;
    body_cursor_init(&b, H1_BODY_CHUNKED, 0, 0, true);
    long ready = body_ready(&b, in);
    assert_int_equal(ready, 5);
    assert_memory_equal(in->data, "abcde", 5);
    body_consumed(&b, in, 5);
    assert_true(body_complete(&b, in));
    buf_put(&pool, in);
    buf_pool_fini(&pool);
}

static void test_bad_chunk_framing_is_refused(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    struct buf *in = fill(&pool, "zz\r\n");
    struct body_cursor b;
    body_cursor_init(&b, H1_BODY_CHUNKED, 0, 0, false);
    assert_int_equal(body_ready(&b, in), -1);
    buf_put(&pool, in);
    buf_pool_fini(&pool);
}

static void test_until_close_ends_at_eof_and_rebase_follows_compaction(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    struct buf *in = fill(&pool, "xxxxpart");
    in->start = 4;
    struct body_cursor b;
    body_cursor_init(&b, H1_BODY_UNTIL_CLOSE, 0, 4, false);
    assert_int_equal(body_ready(&b, in), 4);
    assert_false(body_complete(&b, in));
    body_rebase(&b, buf_compact(in));
    assert_int_equal(b.scan, 0);
    body_consumed(&b, in, 4);
    b.eof = true;
    assert_true(body_complete(&b, in));
    buf_put(&pool, in);
    buf_pool_fini(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_stops_at_its_length),
        cmocka_unit_test(test_chunked_forwards_framing_and_finds_the_end),
        cmocka_unit_test(test_chunked_decoded_in_place),
        cmocka_unit_test(test_bad_chunk_framing_is_refused),
        cmocka_unit_test(test_until_close_ends_at_eof_and_rebase_follows_compaction),
    };
    return cmocka_run_group_tests_name("body", tests, NULL, NULL);
}
