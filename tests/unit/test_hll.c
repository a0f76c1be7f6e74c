/*
 * Unit tests for src/affinity/hll.c: HyperLogLog sketches and the two-window
 * rotation. Inputs are counters spread with hll_mix64, so runs are
 * deterministic; the 5 % bound is about 3 standard errors at precision 12.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "affinity/hll.h"

static void add_range(struct hll *h, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++)
        hll_add(h, hll_mix64(i));
}

static void assert_within(uint64_t est, uint64_t truth, double tolerance)
{
    double err = fabs((double)est - (double)truth) / (double)truth;
    if (err > tolerance)
        fail_msg("estimate %llu for %llu distinct (%.2f%% off)", (unsigned long long)est,
                 (unsigned long long)truth, err * 100);
}

static void test_empty_and_small(void **state)
{
    (void)state;
    struct hll h;
    hll_init(&h);
    assert_int_equal(hll_estimate(&h), 0);
    hll_add(&h, hll_mix64(1));
    assert_int_equal(hll_estimate(&h), 1);
    for (int i = 0; i < 50; i++)
        hll_add(&h, hll_mix64(1)); /* duplicates do not count */
    assert_int_equal(hll_estimate(&h), 1);
    add_range(&h, 2, 101);
    assert_within(hll_estimate(&h), 100, 0.03);
    hll_clear(&h);
    assert_int_equal(hll_estimate(&h), 0);
    /* Extreme hashes: all-zero remainder, all ones. */
    hll_add(&h, 0);
    hll_add(&h, UINT64_MAX);
    assert_int_equal(hll_estimate(&h), 2);
}

static void test_estimates_within_5_percent(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {1000, 10000, 100000, 1000000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (uint64_t seed = 0; seed < 3; seed++) { /* three disjoint sets per size */
            struct hll h;
            hll_init(&h);
            uint64_t base = seed << 40;
            add_range(&h, base, base + sizes[s]);
            add_range(&h, base, base + sizes[s] / 2); /* repeats change nothing */
            assert_within(hll_estimate(&h), sizes[s], 0.05);
        }
    }
}

static void test_merge_is_union(void **state)
{
    (void)state;
    struct hll a, b, both;
    hll_init(&a);
    hll_init(&b);
    hll_init(&both);
    add_range(&a, 0, 60000);          /* overlap 20000 with b */
    add_range(&b, 40000, 100000);
    add_range(&both, 0, 100000);
    hll_merge(&a, &b);
    assert_memory_equal(a.reg, both.reg, sizeof a.reg); /* exactly one sketch of the union */
    assert_within(hll_estimate(&a), 100000, 0.05);
    struct hll empty;
    hll_init(&empty);
    hll_merge(&a, &empty);
    assert_memory_equal(a.reg, both.reg, sizeof a.reg);
}

static void test_window_rotation(void **state)
{
    (void)state;
    const uint64_t t = 1700000000 - 1700000000 % 600; /* a window boundary */
    struct hll_window w;
    hll_window_init(&w, 600, t + 10);
    assert_int_equal(w.start, t);

    for (uint64_t i = 0; i < 5000; i++)
        hll_window_add(&w, hll_mix64(i), t + 10 + i % 500);
    assert_within(hll_window_estimate(&w, t + 599), 5000, 0.05);

    /* Next window: the old keys are still counted (in prev), new ones add. */
    for (uint64_t i = 5000; i < 8000; i++)
        hll_window_add(&w, hll_mix64(i), t + 700);
    assert_int_equal(w.start, t + 600);
    assert_within(hll_window_estimate(&w, t + 700), 8000, 0.05);

    /* A reader at t + 1200 (not yet rotated) sees only what the rotation would keep. */
    assert_within(hll_window_estimate(&w, t + 1200), 3000, 0.05);
    /* ... and nothing at t + 1800: both windows are past. */
    assert_int_equal(hll_window_estimate(&w, t + 1800), 0);

    /* Rotate once: the first 5000 are forgotten after two windows. */
    hll_window_advance(&w, t + 1250);
    assert_int_equal(w.start, t + 1200);
    assert_within(hll_window_estimate(&w, t + 1250), 3000, 0.05);
    hll_window_add(&w, hll_mix64(5000), t + 1250); /* seen again: still 3000 */
    assert_within(hll_window_estimate(&w, t + 1250), 3000, 0.05);

    /* A long quiet spell (more than two windows) empties both. */
    hll_window_advance(&w, t + 5000);
    assert_int_equal(hll_window_estimate(&w, t + 5000), 0);
    assert_int_equal(w.start, t + 4800);

    /* Time going backwards does not rotate or lose data. */
    hll_window_add(&w, hll_mix64(1), t + 5000);
    hll_window_advance(&w, t + 100);
    assert_int_equal(hll_window_estimate(&w, t + 5000), 1);
}

static void test_window_merge_across_workers(void **state)
{
    (void)state;
    const uint64_t t = 1700000400 - 1700000400 % 300;
    struct hll_window w1, w2;
    hll_window_init(&w1, 300, t);
    hll_window_init(&w2, 300, t + 5);
    for (uint64_t i = 0; i < 20000; i++)
        hll_window_add(i % 2 ? &w1 : &w2, hll_mix64(i), t + 100);
    for (uint64_t i = 10000; i < 30000; i++)  /* half already seen by the other worker */
        hll_window_add(i % 2 ? &w2 : &w1, hll_mix64(i), t + 350);
    struct hll sum;
    hll_init(&sum);
    hll_window_merge_into(&sum, &w1, t + 400);
    hll_window_merge_into(&sum, &w2, t + 400);
    assert_within(hll_estimate(&sum), 30000, 0.05);

    /* window 0: never rotates. */
    struct hll_window forever;
    hll_window_init(&forever, 0, t);
    hll_window_add(&forever, hll_mix64(1), t);
    hll_window_add(&forever, hll_mix64(2), t + 100000000);
    assert_int_equal(hll_window_estimate(&forever, t + 200000000), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_small),
        cmocka_unit_test(test_estimates_within_5_percent),
        cmocka_unit_test(test_merge_is_union),
        cmocka_unit_test(test_window_rotation),
        cmocka_unit_test(test_window_merge_across_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
