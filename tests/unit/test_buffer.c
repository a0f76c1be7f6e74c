/* Unit tests for core/buffer: the per-thread free list and compaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/buffer.h"

static void test_get_put_reuses(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    struct buf *a = buf_get(&pool);
    assert_non_null(a);
    assert_int_equal(buf_len(a), 0);
    assert_int_equal(buf_space(a), BUF_SIZE);
    assert_int_equal(pool.in_use, 1);
    a->end = 10;
    buf_put(&pool, a);
    assert_int_equal(pool.in_use, 0);
    assert_int_equal(pool.num_free, 1);
    struct buf *b = buf_get(&pool);
    assert_ptr_equal(a, b); /* LIFO reuse, reset to empty */
    assert_int_equal(buf_len(b), 0);
    buf_put(&pool, b);
    buf_pool_fini(&pool);
    assert_int_equal(pool.num_free, 0);
}

static void test_put_keeps_memory_until_trim(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    struct buf *bufs[5];
    for (int i = 0; i < 5; i++)
        bufs[i] = buf_get(&pool);
    assert_int_equal(pool.in_use, 5);
    for (int i = 0; i < 5; i++)
        buf_put(&pool, bufs[i]);
    assert_int_equal(pool.num_free, 5); /* nothing goes back on the request path */
    assert_int_equal(pool.in_use, 0);
    buf_put(&pool, NULL); /* harmless */
    /* The first trim only sets the low-water mark: the burst's buffers were
     * needed during the period that just ended. */
    pool.low_water = 0;
    assert_int_equal(buf_pool_trim(&pool, 1), 0);
    assert_int_equal(pool.low_water, 5);
    /* One buffer is used during the next period: four stayed idle. */
    struct buf *b = buf_get(&pool);
    buf_put(&pool, b);
    assert_int_equal(pool.low_water, 4);
    assert_int_equal(buf_pool_trim(&pool, 1), 4);
    assert_int_equal(pool.num_free, 1);
    /* Nothing idle below `keep` is released. */
    assert_int_equal(buf_pool_trim(&pool, 1), 0);
    assert_int_equal(pool.num_free, 1);
    buf_pool_fini(&pool);
    assert_int_equal(pool.num_free, 0);
}

static void test_compact_moves_pending_bytes(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool);
    struct buf *b = buf_get(&pool);
    memcpy(b->data, "xxxxhello", 9);
    b->start = 4;
    b->end = 9;
    assert_int_equal(buf_compact(b), 4);
    assert_int_equal(b->start, 0);
    assert_int_equal(b->end, 5);
    assert_memory_equal(b->data, "hello", 5);
    assert_int_equal(buf_compact(b), 0); /* already at the front */
    b->start = b->end = 5;
    assert_int_equal(buf_compact(b), 5);
    assert_int_equal(buf_len(b), 0);
    buf_put(&pool, b);
    buf_pool_fini(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put_reuses),
        cmocka_unit_test(test_put_keeps_memory_until_trim),
        cmocka_unit_test(test_compact_moves_pending_bytes),
    };
    return cmocka_run_group_tests_name("buffer", tests, NULL, NULL);
}
