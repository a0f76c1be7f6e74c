/* Unit tests for balance/steer: smooth weighted round robin, least
 * connections, power of two choices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "balance/steer.h"

#define N 3

static struct cfg_origin origins[N];
static struct steer_slot slot_state[N];
static struct steer_slot *const slots[N] = {&slot_state[0], &slot_state[1], &slot_state[2]};
static bool candidate[N];
static uint64_t rng = 42;

static void setup_weights(unsigned a, unsigned b, unsigned c)
{
    memset(origins, 0, sizeof(origins));
    memset(slot_state, 0, sizeof(slot_state));
    origins[0].weight = a;
    origins[1].weight = b;
    origins[2].weight = c;
}

static long pick(enum origin_steering mode)
{
    for (int i = 0; i < N; i++)
        candidate[i] = true;
    return steer_pick(mode, origins, slots, candidate, N, &rng);
}

static void test_round_robin_equal_weights_is_exact(void **state)
{
    (void)state;
    setup_weights(1, 1, 1);
    int count[N] = {0};
    long prev = -1;
    for (int i = 0; i < 300; i++) {
        long p = pick(STEER_ROUND_ROBIN);
        assert_true(p >= 0 && p < N);
        assert_int_not_equal(p, prev); /* never the same origin twice in a row */
        prev = p;
        count[p]++;
    }
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
}

static void test_round_robin_weights_are_smooth(void **state)
{
    (void)state;
    setup_weights(5, 1, 1);
    char seq[8] = {0};
    for (int i = 0; i < 7; i++)
        seq[i] = (char)('a' + pick(STEER_ROUND_ROBIN));
    /* nginx's smooth weighted round robin: a a b a c a a */
    assert_string_equal(seq, "aabacaa");
}

static void test_round_robin_weight_ratio(void **state)
{
    (void)state;
    setup_weights(1, 2, 0);
    int count[N] = {0};
    for (int i = 0; i < 300; i++)
        count[pick(STEER_ROUND_ROBIN)]++;
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 200);
    assert_int_equal(count[2], 0); /* weight 0 is never chosen */
}

static void test_non_candidates_are_skipped(void **state)
{
    (void)state;
    setup_weights(1, 1, 1);
    for (int i = 0; i < 30; i++) {
        candidate[0] = false;
        candidate[1] = true;
        candidate[2] = false;
        assert_int_equal(steer_pick(STEER_ROUND_ROBIN, origins, slots, candidate, N, &rng), 1);
        candidate[0] = candidate[1] = candidate[2] = false;
        candidate[2] = true;
        assert_int_equal(steer_pick(STEER_RANDOM, origins, slots, candidate, N, &rng), 2);
        assert_int_equal(
            steer_pick(STEER_LEAST_CONNECTIONS, origins, slots, candidate, N, &rng), 2);
    }
}

static void test_no_candidate_returns_minus_one(void **state)
{
    (void)state;
    setup_weights(1, 1, 1);
    memset(candidate, 0, sizeof(candidate));
    assert_int_equal(steer_pick(STEER_ROUND_ROBIN, origins, slots, candidate, N, &rng), -1);
    assert_int_equal(steer_pick(STEER_RANDOM, origins, slots, candidate, N, &rng), -1);
    assert_int_equal(steer_pick(STEER_LEAST_CONNECTIONS, origins, slots, candidate, N, &rng), -1);
    setup_weights(0, 0, 0);
    assert_int_equal(pick(STEER_ROUND_ROBIN), -1);
    assert_int_equal(pick(STEER_RANDOM), -1);
    assert_int_equal(pick(STEER_LEAST_CONNECTIONS), -1);
}

static void test_least_connections_prefers_idle(void **state)
{
    (void)state;
    setup_weights(1, 1, 1);
    slot_state[0].active = 5;
    slot_state[1].active = 1;
    slot_state[2].active = 3;
    assert_int_equal(pick(STEER_LEAST_CONNECTIONS), 1);
    slot_state[1].active = 9;
    assert_int_equal(pick(STEER_LEAST_CONNECTIONS), 2);
}

static void test_least_connections_weighs_load(void **state)
{
    (void)state;
    setup_weights(1, 4, 1);
    slot_state[0].active = 1; /* 1/1 */
    slot_state[1].active = 3; /* 3/4: less loaded relative to weight */
    slot_state[2].active = 2; /* 2/1 */
    assert_int_equal(pick(STEER_LEAST_CONNECTIONS), 1);
}

static void test_least_connections_ties_rotate(void **state)
{
    (void)state;
    setup_weights(1, 1, 1);
    int count[N] = {0};
    for (int i = 0; i < 90; i++)
        count[pick(STEER_LEAST_CONNECTIONS)]++;
    assert_int_equal(count[0], 30);
    assert_int_equal(count[1], 30);
    assert_int_equal(count[2], 30);
}

static void test_two_choices_reaches_all_and_avoids_loaded(void **state)
{
    (void)state;
    setup_weights(1, 1, 1);
    int count[N] = {0};
    for (int i = 0; i < 3000; i++)
        count[pick(STEER_RANDOM)]++;
    for (int i = 0; i < N; i++)
        assert_true(count[i] > 700);
    /* A heavily loaded origin is chosen only when both draws land on it. */
    slot_state[0].active = 100;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 3000; i++)
        count[pick(STEER_RANDOM)]++;
    assert_true(count[0] < 600);
}

static void test_random_generator_moves(void **state)
{
    (void)state;
    uint64_t s = 0;
    uint64_t a = steer_random(&s), b = steer_random(&s);
    assert_true(a != b);
    assert_true(s != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_equal_weights_is_exact),
        cmocka_unit_test(test_round_robin_weights_are_smooth),
        cmocka_unit_test(test_round_robin_weight_ratio),
        cmocka_unit_test(test_non_candidates_are_skipped),
        cmocka_unit_test(test_no_candidate_returns_minus_one),
        cmocka_unit_test(test_least_connections_prefers_idle),
        cmocka_unit_test(test_least_connections_weighs_load),
        cmocka_unit_test(test_least_connections_ties_rotate),
        cmocka_unit_test(test_two_choices_reaches_all_and_avoids_loaded),
        cmocka_unit_test(test_random_generator_moves),
    };
    return cmocka_run_group_tests_name("steer", tests, NULL, NULL);
}
