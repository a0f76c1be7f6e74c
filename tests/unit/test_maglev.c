/*
 * Unit tests for balance/maglev: the key hash (pinned values, avalanche), the
 * table size rule, byte-identical rebuilds, balance over 10^6 keys, weights,
 * minimal disruption when an origin leaves or becomes unusable, empty tables,
 * and bounded-load lookups. Measured figures are printed with print_message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "balance/maglev.h"

#define NKEYS 1000000

static const char *const names10[10] = {
    "web-a", "web-b", "web-c", "web-d", "web-e",
    "web-f", "web-g", "web-h", "web-i", "web-j",
};
static const unsigned ones10[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* Key hash of the i-th test key: hash of its 8 little-endian bytes. */
static uint64_t key(uint64_t i)
{
    unsigned char b[8];
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(i >> (8 * k));
    return maglev_hash(b, sizeof(b));
}

static uint64_t *keys;

static int setup_keys(void **state)
{
    (void)state;
    keys = malloc(NKEYS * sizeof(*keys));
    if (!keys)
        return -1;
    for (uint64_t i = 0; i < NKEYS; i++)
        keys[i] = key(i);
    return 0;
}

static int teardown_keys(void **state)
{
    (void)state;
    free(keys);
    return 0;
}

static bool prime(uint64_t x)
{
    if (x < 2)
        return false;
    for (uint64_t d = 2; d * d <= x; d++)
        if (x % d == 0)
            return false;
    return true;
}

/* ---- hash ---------------------------------------------------------------- */

static void test_hash_pinned_values(void **state)
{
    (void)state;
    /* Pinned: any change here changes every instance's routing. */
    assert_int_equal(maglev_hash("", 0), 0x323DEF0871273387ull);
    assert_int_equal(maglev_hash("a", 1), 0x27FD45510B5CB48Dull);
    assert_int_equal(maglev_hash("10.0.0.1", 8), 0x5553D37A0C1912F8ull);
    assert_int_equal(maglev_hash("x-gwre-session: 0123456789abcdef", 32),
                     0xB21D7FFC19706D30ull);
    assert_int_equal(maglev_hash_seeded("a", 1, 1), 0x446F5F9A57D896AFull);
}

static void test_hash_distinguishes(void **state)
{
    (void)state;
    /* Trailing zero bytes, length and seed all change the hash. */
    assert_true(maglev_hash("a", 1) != maglev_hash("a\0", 2));
    assert_true(maglev_hash("", 0) != maglev_hash("\0", 1));
    assert_true(maglev_hash("abcdefgh", 8) != maglev_hash("abcdefgh\0", 9));
    assert_true(maglev_hash_seeded("a", 1, 1) != maglev_hash_seeded("a", 1, 2));
    assert_true(maglev_hash("ab", 2) != maglev_hash("ba", 2));
    /* Reads unaligned input the same way as aligned input. */
    char buf[32];
    memcpy(buf + 3, "hello, world!", 13);
    assert_int_equal(maglev_hash(buf + 3, 13), maglev_hash("hello, world!", 13));
}

static void test_hash_avalanche(void **state)
{
    (void)state;
    /* Flipping one input bit flips each output bit with probability ~1/2. */
    unsigned flips[64] = {0};
    unsigned trials = 0;
    for (uint64_t t = 0; t < 200; t++) {
        unsigned char in[16];
        for (int k = 0; k < 16; k++)
            in[k] = (unsigned char)(key(t * 16 + (uint64_t)k) >> 13);
        uint64_t h = maglev_hash(in, sizeof(in));
        for (int bit = 0; bit < 128; bit++) {
            in[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            uint64_t d = h ^ maglev_hash(in, sizeof(in));
            in[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            for (int o = 0; o < 64; o++)
                flips[o] += (d >> o) & 1;
            trials++;
        }
    }
    for (int o = 0; o < 64; o++) {
        double p = (double)flips[o] / trials;
        assert_true(p > 0.47 && p < 0.53);
    }
}

/* ---- size ---------------------------------------------------------------- */

static void test_table_size_rule(void **state)
{
    (void)state;
    static const size_t ns[] = {0, 1, 2, 10, 100, 655, 656, 1000, 1311, 5000};
    uint32_t prev = 0;
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        struct maglev m;
        const char **nm = calloc(ns[i] ? ns[i] : 1, sizeof(*nm));
        unsigned *w = calloc(ns[i] ? ns[i] : 1, sizeof(*w)); /* weight 0: no table fill */
        assert_non_null(nm);
        assert_non_null(w);
        assert_int_equal(maglev_build(&m, nm, w, NULL, ns[i]), 0);
        assert_true(prime(m.size));
        assert_true(m.size >= MAGLEV_MIN_PER_ORIGIN * (ns[i] ? ns[i] : 1));
        assert_true(m.size >= MAGLEV_MIN_SIZE);
        assert_true(m.size >= prev);
        prev = m.size;
        if (ns[i] <= 655)
            assert_int_equal(m.size, 65537);
        maglev_free(&m);
        free(nm);
        free(w);
    }
}

/* ---- determinism --------------------------------------------------------- */

static void test_build_is_deterministic(void **state)
{
    (void)state;
    static const unsigned w[10] = {1, 2, 3, 1, 5, 1, 1, 7, 1, 1};
    static const bool u[10] = {1, 1, 0, 1, 1, 1, 1, 1, 0, 1};
    struct maglev a, b;
    assert_int_equal(maglev_build(&a, names10, w, u, 10), 0);
    assert_int_equal(maglev_build(&b, names10, w, u, 10), 0);
    assert_int_equal(a.size, b.size);
    assert_int_equal(a.n_usable, 8);
    assert_memory_equal(a.table, b.table, a.size * sizeof(*a.table));
    /* Pinned digest of the table: same bytes on every machine and run. */
    uint64_t h = 0;
    for (uint32_t s = 0; s < a.size; s++) {
        uint32_t v = (uint32_t)a.table[s];
        unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                               (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
        h = maglev_hash_seeded(le, sizeof(le), h);
    }
    assert_int_equal(h, 0xB0829FDF60ADFA62ull);
    maglev_free(&a);
    maglev_free(&b);
}

static void test_order_of_origins_does_not_matter(void **state)
{
    (void)state;
    /* Same origins listed in reverse: every key maps to the same NAME. */
    const char *rev[10];
    unsigned w[10], wr[10];
    for (int i = 0; i < 10; i++) {
        rev[i] = names10[9 - i];
        w[i] = (unsigned)(i % 3 + 1);
    }
    for (int i = 0; i < 10; i++)
        wr[i] = w[9 - i];
    struct maglev a, b;
    assert_int_equal(maglev_build(&a, names10, w, NULL, 10), 0);
    assert_int_equal(maglev_build(&b, rev, wr, NULL, 10), 0);
    for (uint32_t s = 0; s < a.size; s++)
        assert_int_equal(a.table[s], 9 - b.table[s]);
    maglev_free(&a);
    maglev_free(&b);
}

/* ---- balance and weights ------------------------------------------------- */

/* Keys per origin over the NKEYS test keys. */
static void count_keys(const struct maglev *m, unsigned long *count, size_t n)
{
    memset(count, 0, n * sizeof(*count));
    for (size_t i = 0; i < NKEYS; i++) {
        long o = maglev_lookup(m, keys[i]);
        assert_true(o >= 0 && (size_t)o < n);
        count[o]++;
    }
}

static void test_balance_equal_weights(void **state)
{
    (void)state;
    struct maglev m;
    assert_int_equal(maglev_build(&m, names10, ones10, NULL, 10), 0);

    /* Slots: M/10 each, give or take one. */
    unsigned long slots[10] = {0};
    for (uint32_t s = 0; s < m.size; s++)
        slots[m.table[s]]++;
    for (int i = 0; i < 10; i++)
        assert_true(slots[i] == m.size / 10 || slots[i] == m.size / 10 + 1);

    unsigned long count[10];
    count_keys(&m, count, 10);
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double rel = ((double)count[i] - NKEYS / 10.0) / (NKEYS / 10.0);
        if (rel < 0)
            rel = -rel;
        if (rel > worst)
            worst = rel;
    }
    print_message("10 origins, 1e6 keys: worst share error %.3f%% (relative)\n", worst * 100);
    assert_true(worst <= 0.01);
    maglev_free(&m);
}

static void test_weights_honoured(void **state)
{
    (void)state;
    static const unsigned w[5] = {1, 2, 1, 3, 1};   /* total 8 */
    struct maglev m;
    assert_int_equal(maglev_build(&m, names10, w, NULL, 5), 0);

    unsigned long slots[5] = {0};
    for (uint32_t s = 0; s < m.size; s++)
        slots[m.table[s]]++;
    for (int i = 0; i < 5; i++) {
        double want = (double)m.size * w[i] / 8.0;
        assert_true((double)slots[i] > want - 2 && (double)slots[i] < want + 2);
    }

    unsigned long count[5];
    count_keys(&m, count, 5);
    double worst = 0;
    for (int i = 0; i < 5; i++) {
        double want = NKEYS * w[i] / 8.0;
        double rel = ((double)count[i] - want) / want;
        if (rel < 0)
            rel = -rel;
        if (rel > worst)
            worst = rel;
    }
    double ratio = (double)count[1] / ((count[0] + count[2] + count[4]) / 3.0);
    print_message("weights 1,2,1,3,1: weight-2/weight-1 ratio %.4f, worst share error %.3f%%\n",
                  ratio, worst * 100);
    assert_true(ratio > 1.96 && ratio < 2.04);
    assert_true(worst <= 0.01);
    maglev_free(&m);
}

static void test_weight_zero_and_null_name(void **state)
{
    (void)state;
    const char *nm[3] = {"a", NULL, "c"};
    const unsigned w[3] = {1, 1, 0};
    struct maglev m;
    assert_int_equal(maglev_build(&m, nm, w, NULL, 3), 0);
    assert_int_equal(m.n_usable, 2);
    for (uint32_t s = 0; s < m.size; s++)
        assert_true(m.table[s] == 0 || m.table[s] == 1);
    maglev_free(&m);
}

/* ---- disruption ---------------------------------------------------------- */

static void test_removing_an_origin_moves_few_others(void **state)
{
    (void)state;
    const char *nine[9];
    for (int i = 0, k = 0; i < 10; i++)
        if (i != 3)
            nine[k++] = names10[i];
    struct maglev a, b;
    assert_int_equal(maglev_build(&a, names10, ones10, NULL, 10), 0);
    assert_int_equal(maglev_build(&b, nine, ones10, NULL, 9), 0);
    assert_int_equal(a.size, b.size);

    unsigned long others = 0, moved = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        long x = maglev_lookup(&a, keys[i]), y = maglev_lookup(&b, keys[i]);
        if (x == 3)
            continue;                       /* its keys must move */
        others++;
        if (strcmp(names10[x], nine[y]) != 0)
            moved++;
    }
    double frac = (double)moved / (double)others;
    print_message("remove 1 of 10: %.3f%% of other origins' keys moved\n", frac * 100);
    assert_true(frac <= 0.01);
    maglev_free(&a);
    maglev_free(&b);
}

static void test_unusable_equals_removed(void **state)
{
    (void)state;
    const char *nine[9];
    for (int i = 0, k = 0; i < 10; i++)
        if (i != 6)
            nine[k++] = names10[i];
    bool u[10];
    for (int i = 0; i < 10; i++)
        u[i] = i != 6;
    struct maglev a, b;
    assert_int_equal(maglev_build(&a, names10, ones10, u, 10), 0);
    assert_int_equal(maglev_build(&b, nine, ones10, NULL, 9), 0);
    assert_int_equal(a.n_usable, 9);
    for (uint32_t s = 0; s < a.size; s++)
        assert_string_equal(names10[a.table[s]], nine[b.table[s]]);

    /* And against the full table: only the unusable origin's keys move, plus few. */
    struct maglev full;
    assert_int_equal(maglev_build(&full, names10, ones10, NULL, 10), 0);
    unsigned long others = 0, moved = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        long x = maglev_lookup(&full, keys[i]), y = maglev_lookup(&a, keys[i]);
        assert_true(y != 6);
        if (x == 6)
            continue;
        others++;
        moved += x != y;
    }
    double frac = (double)moved / (double)others;
    print_message("mark 1 of 10 unusable: %.3f%% of other origins' keys moved\n", frac * 100);
    assert_true(frac <= 0.01);
    maglev_free(&a);
    maglev_free(&b);
    maglev_free(&full);
}

static void test_adding_an_origin(void **state)
{
    (void)state;
    static const char *const eleven[11] = {
        "web-a", "web-b", "web-c", "web-d", "web-e", "web-f",
        "web-g", "web-h", "web-i", "web-j", "web-k",
    };
    static const unsigned w11[11] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    struct maglev a, b;
    assert_int_equal(maglev_build(&a, names10, ones10, NULL, 10), 0);
    assert_int_equal(maglev_build(&b, eleven, w11, NULL, 11), 0);
    unsigned long moved = 0, to_new = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        long x = maglev_lookup(&a, keys[i]), y = maglev_lookup(&b, keys[i]);
        if (y == 10)
            to_new++;
        else if (x != y)
            moved++;
    }
    print_message("add an 11th origin: %.3f%% keys to it, %.3f%% moved between old ones\n",
                  100.0 * to_new / NKEYS, 100.0 * moved / NKEYS);
    assert_true(to_new > NKEYS / 11 * 0.98 && to_new < NKEYS / 11 * 1.02);
    assert_true(moved <= NKEYS / 100);
    maglev_free(&a);
    maglev_free(&b);
}

/* ---- empty --------------------------------------------------------------- */

static void test_no_usable_origin(void **state)
{
    (void)state;
    uint32_t load[10] = {0};
    bool none[10] = {0};
    struct maglev m;

    assert_int_equal(maglev_build(&m, names10, ones10, none, 10), 0);
    assert_null(m.table);
    assert_int_equal(m.n_usable, 0);
    assert_int_equal(maglev_lookup(&m, 12345), -1);
    assert_int_equal(maglev_lookup_bounded(&m, 12345, load, 1), -1);
    maglev_free(&m);

    static const unsigned zero[10] = {0};
    assert_int_equal(maglev_build(&m, names10, zero, NULL, 10), 0);
    assert_int_equal(maglev_lookup(&m, 1), -1);
    maglev_free(&m);

    assert_int_equal(maglev_build(&m, NULL, NULL, NULL, 0), 0);
    assert_int_equal(m.size, 65537);
    assert_int_equal(maglev_lookup(&m, 1), -1);
    maglev_free(&m);
    maglev_free(&m);                        /* freeing twice is harmless */

    struct maglev zeroed = {0};
    assert_int_equal(maglev_lookup(&zeroed, 7), -1);
}

static void test_single_origin(void **state)
{
    (void)state;
    const char *nm[1] = {"only"};
    const unsigned w[1] = {5};
    struct maglev m;
    assert_int_equal(maglev_build(&m, nm, w, NULL, 1), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(maglev_lookup(&m, keys[i]), 0);
    maglev_free(&m);
}

/* ---- bounded loads ------------------------------------------------------- */

static void test_bounded_cap(void **state)
{
    (void)state;
    assert_int_equal(maglev_bounded_cap(0, 10, 100), 1);
    assert_int_equal(maglev_bounded_cap(99, 10, 100), 10);
    assert_int_equal(maglev_bounded_cap(100, 10, 100), 11);
    assert_int_equal(maglev_bounded_cap(99, 10, 125), 13);     /* 12.5 → 13 */
    assert_int_equal(maglev_bounded_cap(99, 10, 50), 10);      /* clamped to 100 % */
    assert_int_equal(maglev_bounded_cap(5, 0, 150), UINT32_MAX);
    assert_int_equal(maglev_bounded_cap(UINT64_MAX, 3, 200), UINT32_MAX);
}

static void test_bounded_lookup(void **state)
{
    (void)state;
    uint32_t load[10] = {0};
    struct maglev m;
    assert_int_equal(maglev_build(&m, names10, ones10, NULL, 10), 0);

    /* Nobody at the cap: same answer as the plain lookup. */
    for (int i = 0; i < 10000; i++)
        assert_int_equal(maglev_lookup_bounded(&m, keys[i], load, 1), maglev_lookup(&m, keys[i]));

    /* Origin 4 at the cap: never chosen; its keys spread over the others. */
    load[4] = 7;
    unsigned long spill[10] = {0};
    for (int i = 0; i < 100000; i++) {
        long plain = maglev_lookup(&m, keys[i]);
        long o = maglev_lookup_bounded(&m, keys[i], load, 7);
        assert_true(o != 4);
        if (plain != 4)
            assert_int_equal(o, plain);
        else
            spill[o]++;
    }
    for (int i = 0; i < 10; i++)
        if (i != 4)
            assert_true(spill[i] > 800);   /* ~10000/9 each */

    /* Everybody at the cap: falls back to the plain lookup. */
    for (int i = 0; i < 10; i++)
        load[i] = 3;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(maglev_lookup_bounded(&m, keys[i], load, 3), maglev_lookup(&m, keys[i]));

    /* Only one origin below the cap: always found. */
    load[8] = 0;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(maglev_lookup_bounded(&m, keys[i], load, 3), 8);
    maglev_free(&m);
}

static void test_bounded_placement_respects_cap(void **state)
{
    (void)state;
    /* Place keys one by one with cap = 125 % of the mean (sessions never end). */
    uint32_t load[10] = {0};
    struct maglev m;
    assert_int_equal(maglev_build(&m, names10, ones10, NULL, 10), 0);
    uint64_t total = 0;
    for (int i = 0; i < 20000; i++) {
        uint32_t cap = maglev_bounded_cap(total, m.n_usable, 125);
        long o = maglev_lookup_bounded(&m, keys[i], load, cap);
        assert_true(o >= 0 && o < 10);
        assert_true(load[o] < cap);
        load[o]++;
        total++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(load[i] <= 2500);
    maglev_free(&m);
}

static void test_bounded_many_origins(void **state)
{
    (void)state;
    /* More origins than the seen-bitmap tracks: the walk still finds the one below cap. */
    enum { N = 1500 };
    const char **nm = calloc(N, sizeof(*nm));
    char (*buf)[16] = calloc(N, sizeof(*buf));
    unsigned *w = calloc(N, sizeof(*w));
    uint32_t *load = calloc(N, sizeof(*load));
    assert_non_null(nm);
    assert_non_null(buf);
    assert_non_null(w);
    assert_non_null(load);
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof(buf[i]), "o%d", i);
        nm[i] = buf[i];
        w[i] = 1;
        load[i] = 9;
    }
    load[1234] = 0;
    struct maglev m;
    assert_int_equal(maglev_build(&m, nm, w, NULL, N), 0);
    assert_true(m.size >= 100u * N);
    for (int i = 0; i < 50; i++)
        assert_int_equal(maglev_lookup_bounded(&m, keys[i], load, 9), 1234);
    load[1234] = 9;                          /* all at cap: plain answer after M steps */
    assert_int_equal(maglev_lookup_bounded(&m, keys[0], load, 9), maglev_lookup(&m, keys[0]));
    maglev_free(&m);
    free(nm);
    free(buf);
    free(w);
    free(load);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_pinned_values),
        cmocka_unit_test(test_hash_distinguishes),
        cmocka_unit_test(test_hash_avalanche),
        cmocka_unit_test(test_table_size_rule),
        cmocka_unit_test(test_build_is_deterministic),
        cmocka_unit_test(test_order_of_origins_does_not_matter),
        cmocka_unit_test(test_balance_equal_weights),
        cmocka_unit_test(test_weights_honoured),
        cmocka_unit_test(test_weight_zero_and_null_name),
        cmocka_unit_test(test_removing_an_origin_moves_few_others),
        cmocka_unit_test(test_unusable_equals_removed),
        cmocka_unit_test(test_adding_an_origin),
        cmocka_unit_test(test_no_usable_origin),
        cmocka_unit_test(test_single_origin),
        cmocka_unit_test(test_bounded_cap),
        cmocka_unit_test(test_bounded_lookup),
        cmocka_unit_test(test_bounded_placement_respects_cap),
        cmocka_unit_test(test_bounded_many_origins),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
