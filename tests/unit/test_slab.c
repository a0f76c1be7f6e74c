/* Unit tests for core/slab: many objects to a chunk, LIFO reuse, bookkeeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/slab.h"

static void test_objects_are_distinct_aligned_and_reused(void **state)
{
    (void)state;
    struct slab s;
    slab_init(&s, 200);
    assert_int_equal(s.obj_size, 208); /* rounded up to 16 */
    char *a = slab_alloc(&s);
    char *b = slab_alloc(&s);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal((uintptr_t)a % 16, 0);
    assert_int_equal((uintptr_t)b % 16, 0);
    memset(a, 0xaa, 200);
    memset(b, 0xbb, 200); /* no overlap: a keeps its bytes */
    assert_int_equal((unsigned char)a[199], 0xaa);
    assert_int_equal(s.in_use, 2);
    slab_free(&s, b);
    assert_int_equal(s.in_use, 1);
    assert_ptr_equal(slab_alloc(&s), b); /* LIFO: the warm object comes back */
    slab_free(&s, a);
    slab_free(&s, b);
    slab_free(&s, NULL); /* harmless */
    assert_int_equal(s.in_use, 0);
    slab_fini(&s);
}

static void test_many_objects_share_a_chunk(void **state)
{
    (void)state;
    struct slab s;
    slab_init(&s, 256);
    void *objs[1000];
    for (int i = 0; i < 1000; i++) {
        objs[i] = slab_alloc(&s);
        assert_non_null(objs[i]);
    }
    /* 1000 × 256 B fit in a few 64 KiB chunks, not a page each. */
    assert_true(s.capacity >= 1000);
    assert_true(s.capacity < 1000 + SLAB_CHUNK_BYTES / 256);
    for (int i = 0; i < 1000; i++)
        slab_free(&s, objs[i]);
    assert_int_equal(s.in_use, 0);
    slab_fini(&s);
    assert_int_equal(s.capacity, 0);
}

static void test_objects_larger_than_a_chunk(void **state)
{
    (void)state;
    struct slab s;
    slab_init(&s, 3 * SLAB_CHUNK_BYTES / 2);
    char *a = slab_alloc(&s);
    assert_non_null(a);
    memset(a, 1, 3 * SLAB_CHUNK_BYTES / 2);
    slab_free(&s, a);
    slab_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_are_distinct_aligned_and_reused),
        cmocka_unit_test(test_many_objects_share_a_chunk),
        cmocka_unit_test(test_objects_larger_than_a_chunk),
    };
    return cmocka_run_group_tests_name("slab", tests, NULL, NULL);
}
