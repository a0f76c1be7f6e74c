/*
 * Unit tests for src/balance/route.c: choosing a pool and origin from a
 * route_ctx (tried origins, the attempt cap, passive backoff and its
 * counters, the fallback pool, origin_steering "hash", geo pool order, and
 * the pool's order round robin and random steering go by without a scan).
 * Snapshots are real, built from config text (route_env.h); nothing
 * connects anywhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route_env.h"

#define LB_APP "'default_pools':['app']"

static void test_choose_skips_tried(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, LB_APP, ""));
    struct route_tried tried = {0};
    bool seen[3] = {false};
    for (int i = 0; i < 3; i++) {
        long p, o;
        bool fallback = true;
        assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), 0);
        assert_int_equal(p, 0);
        assert_false(fallback);
        assert_false(seen[o]);                 /* usable, but tried already */
        seen[o] = true;
        assert_int_equal(tried.n, (unsigned)i + 1);
        assert_int_equal(tried.at[i].origin, o);
    }
    long p = -1, o = -1;
    bool fallback;
    assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), -1);
    assert_int_equal(p, -1);                   /* outputs untouched */
    env_fini(&e);
}

static void test_attempts_capped(void **state)
{
    (void)state;
    char pool[1024] = "{'name':'app','origins':[";
    for (int i = 0; i < 12; i++)
        snprintf(pool + strlen(pool), sizeof(pool) - strlen(pool),
                 "%s{'name':'o%d','address':'127.0.0.1:%d'}", i ? "," : "", i, 9001 + i);
    strcat(pool, "]}");
    struct env e;
    env_init(&e, env_snapshot(pool, LB_APP, ""));
    struct route_tried tried = {0};
    long p, o;
    bool fallback;
    for (int i = 0; i < ROUTE_MAX_ATTEMPTS; i++)
        assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), 0);
    assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), -1);
    assert_false(route_tried_add(&tried, 0, 11));
    assert_int_equal(tried.n, ROUTE_MAX_ATTEMPTS);
    env_fini(&e);
}

static void test_passive_backoff(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, LB_APP, ""));
    size_t p, o;
    struct origin_shared *os = env_origin(&e, "app", "o2", &p, &o);
    assert_true(route_origin_usable(&e.ctx, p, o));

    route_origin_failed(&e.ctx, p, o, -ECONNREFUSED);
    assert_false(route_origin_usable(&e.ctx, p, o));
    assert_int_equal(atomic_load(&os->passive_failures), 1);
    assert_int_equal(atomic_load(&e.stats[os->id].connect_failures), 1);
    for (int i = 0; i < 20; i++) {             /* never chosen meanwhile */
        struct route_tried tried = {0};
        long cp, co;
        bool fallback;
        assert_int_equal(route_choose(&e.ctx, &tried, &cp, &co, &fallback), 0);
        assert_true((size_t)co != o);
    }
    e.ctx.now_ms += 1000;                      /* first backoff: 1 s */
    assert_true(route_origin_usable(&e.ctx, p, o));
    route_origin_failed(&e.ctx, p, o, ECONNREFUSED);
    e.ctx.now_ms += 1999;                      /* then 2 s */
    assert_false(route_origin_usable(&e.ctx, p, o));
    e.ctx.now_ms += 1;
    assert_true(route_origin_usable(&e.ctx, p, o));
    assert_int_equal(atomic_load(&e.stats[os->id].connect_failures), 2);

    /* an answer to a request sent before the last failure is no recovery */
    unsigned before = atomic_load(&os->passive_epoch);
    route_origin_failed(&e.ctx, p, o, ECONNREFUSED);
    route_origin_answered(&e.ctx, p, o, 200, before);
    assert_int_equal(atomic_load(&os->passive_failures), 3);
    assert_true(atomic_load(&os->passive_out));
    assert_true(atomic_load(&os->retry_after_ms) != 0);
    /* without passive.http_5xx a 5xx is an answer like any other (SPEC §5) */
    route_origin_answered(&e.ctx, p, o, 503, atomic_load(&os->passive_epoch));
    assert_int_equal(atomic_load(&os->passive_failures), 0);
    assert_int_equal(atomic_load(&os->retry_after_ms), 0);
    assert_false(atomic_load(&os->passive_out));
    assert_int_equal(atomic_load(&os->passive_outs), 1);
    assert_int_equal(atomic_load(&os->passive_backs), 1);
    assert_int_equal(atomic_load(&os->passive_total[PASSIVE_CONNECT]), 3);

    atomic_store(&os->healthy, false);         /* health counts as well */
    assert_false(route_origin_usable(&e.ctx, p, o));
    env_fini(&e);
}

/* Without a monitor: resets, timeouts (and 5xx with passive.http_5xx) take
 * an origin out after ROUTE_PASSIVE_RETRIES in a row; the description names
 * the kinds. */
static void test_passive_kinds_without_monitor(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, LB_APP, ""));
    size_t p, o;
    struct origin_shared *os = env_origin(&e, "app", "o1", &p, &o);
    for (int i = 0; i < 6; i++)                /* 5xx not counted by default */
        route_origin_answered(&e.ctx, p, o, 500, atomic_load(&os->passive_epoch));
    assert_int_equal(atomic_load(&os->passive_failures), 0);
    assert_true(route_origin_usable(&e.ctx, p, o));

    route_origin_passive_failure(&e.ctx, p, o, PASSIVE_TIMEOUT);
    assert_true(route_origin_usable(&e.ctx, p, o));   /* one is not enough */
    route_origin_passive_failure(&e.ctx, p, o, PASSIVE_RESET);
    assert_false(route_origin_usable(&e.ctx, p, o));
    assert_true(atomic_load(&os->passive_out));
    char why[160];
    route_passive_describe(os, why, sizeof(why));
    assert_string_equal(why, "2 failures seen by live traffic (1 reset, 1 timeout)");
    route_origin_passive_failure(&e.ctx, p, o, PASSIVE_TIMEOUT);
    route_passive_describe(os, why, sizeof(why));
    assert_string_equal(why, "3 failures seen by live traffic (1 reset, 2 timeouts)");
    e.ctx.now_ms += 1999;                      /* the third doubled the backoff */
    assert_false(route_origin_usable(&e.ctx, p, o));
    e.ctx.now_ms += 1;
    assert_true(route_origin_usable(&e.ctx, p, o));
    assert_int_equal(atomic_load(&os->passive_outs), 1);
    route_origin_answered(&e.ctx, p, o, 200, atomic_load(&os->passive_epoch));
    assert_false(atomic_load(&os->passive_out));
    assert_int_equal(atomic_load(&os->passive_streak[PASSIVE_TIMEOUT]), 0);
    assert_int_equal(atomic_load(&os->passive_total[PASSIVE_TIMEOUT]), 2);
    assert_int_equal(atomic_load(&e.stats[os->id].connect_failures), 0);
    env_fini(&e);

    /* passive.http_5xx: 5xx answers count */
    env_init(&e, env_snapshot(
        "{'name':'app','passive':{'http_5xx':true},'origins':[{'name':'o1','address':'127.0.0.1:9001'},"
        "{'name':'o2','address':'127.0.0.1:9002'}]}", LB_APP, ""));
    os = env_origin(&e, "app", "o1", &p, &o);
    route_origin_answered(&e.ctx, p, o, 502, atomic_load(&os->passive_epoch));
    assert_true(route_origin_usable(&e.ctx, p, o));
    route_origin_answered(&e.ctx, p, o, 500, atomic_load(&os->passive_epoch));
    assert_false(route_origin_usable(&e.ctx, p, o));
    route_passive_describe(os, why, sizeof(why));
    assert_string_equal(why, "2 failures seen by live traffic (2 5xx answers)");
    assert_int_equal(atomic_load(&os->passive_total[PASSIVE_HTTP_5XX]), 2);
    env_fini(&e);
}

/* With a monitor, only refused connects start the backoff: health.c marks
 * the origin down at the monitor's retries. */
static void test_passive_with_monitor(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'app','monitor':'m','origins':[{'name':'o1','address':'127.0.0.1:9001'}]}",
        LB_APP, "'monitors':[{'name':'m','type':'tcp','retries':3}],"));
    size_t p, o;
    struct origin_shared *os = env_origin(&e, "app", "o1", &p, &o);
    for (int i = 0; i < 5; i++)
        route_origin_passive_failure(&e.ctx, p, o, PASSIVE_TIMEOUT);
    assert_true(route_origin_usable(&e.ctx, p, o));
    assert_false(atomic_load(&os->passive_out));
    assert_int_equal(atomic_load(&os->passive_failures), 5);
    route_origin_failed(&e.ctx, p, o, ECONNREFUSED);
    assert_false(route_origin_usable(&e.ctx, p, o));
    char why[160];
    route_passive_describe(os, why, sizeof(why));
    assert_string_equal(why, "6 failures seen by live traffic (1 connect failure, 5 timeouts)");
    env_fini(&e);
}

static void test_fallback_pool_last(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        POOL_APP ",{'name':'spare','origins':[{'name':'s1','address':'127.0.0.1:9011'}]}",
        LB_APP ",'fallback_pool':'spare'", ""));
    long pools[ROUTE_MAX_POOLS];
    bool fallback_last = false;
    assert_int_equal(route_pool_order(&e.ctx, pools, ROUTE_MAX_POOLS, &fallback_last, NULL), 2);
    assert_int_equal(pools[0], 0);
    assert_int_equal(pools[1], 1);
    assert_true(fallback_last);

    struct route_tried tried = {0};
    long p, o;
    bool fallback;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), 0);
        assert_false(fallback);
    }
    assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), 0);
    assert_int_equal(p, 1);
    assert_true(fallback);
    env_fini(&e);
}

static void test_hash_steering(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'app','origin_steering':'hash','origins':["
        "{'name':'o1','address':'127.0.0.1:9001'},{'name':'o2','address':'127.0.0.1:9002'},"
        "{'name':'o3','address':'127.0.0.1:9003'}]}",
        LB_APP, ""));
    long p, o, first;
    bool fallback;
    env_client_ipv6(&e, "2001:db8:5:6::1");
    struct route_tried tried = {0};
    assert_int_equal(route_choose(&e.ctx, &tried, &p, &first, &fallback), 0);
    for (int i = 0; i < 10; i++) {
        char text[64];
        snprintf(text, sizeof(text), "2001:db8:5:6:%x::9", i);   /* same /64 */
        env_client_ipv6(&e, text);
        tried = (struct route_tried){0};
        assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), 0);
        assert_int_equal(o, first);
    }
    /* Its origin tried already: another one. */
    assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), 0);
    assert_true(o != first);
    env_fini(&e);
}

/* ---- round robin and random without a scan: the pool's order ---- */

/* A pool of n origins named o0.. with weights from weight(i) (0: the default). */
static char *pool_of(int n, const char *steering, unsigned (*weight)(int))
{
    size_t cap = (size_t)n * 80 + 128, at = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    at += (size_t)snprintf(text, cap, "{'name':'app',%s'origins':[", steering);
    for (int i = 0; i < n; i++) {
        unsigned w = weight ? weight(i) : 0;
        at += (size_t)snprintf(text + at, cap - at, "%s{'name':'o%d','address':'127.0.%d.1:%d'",
                               i ? "," : "", i, 1 + i / 1000, 9000 + i % 1000);
        if (w)
            at += (size_t)snprintf(text + at, cap - at, ",'weight':%u", w);
        at += (size_t)snprintf(text + at, cap - at, "}");
    }
    snprintf(text + at, cap - at, "]}");
    return text;
}

static long pick(struct env *e)
{
    struct route_tried tried = {0};
    long p, o;
    bool fallback;
    assert_int_equal(route_choose(&e->ctx, &tried, &p, &o, &fallback), 0);
    return o;
}

static unsigned weight_3_1_2(int i) { return (unsigned[]){3, 1, 2}[i % 3]; }

/* The order holds each origin as often as its weight (over the weights' gcd),
 * spread out: round robin goes through it, so every window of one cycle has
 * exactly each origin's weight of picks. */
static void test_round_robin_order_by_weight(void **state)
{
    (void)state;
    char *pool = pool_of(3, "", weight_3_1_2);
    struct env e;
    env_init(&e, env_snapshot(pool, LB_APP, ""));
    free(pool);
    const struct route_hash *h = &e.snap->hash[0];
    assert_int_equal(h->order_len, 6);
    unsigned in_order[3] = {0};
    for (unsigned i = 0; i < h->order_len; i++) {
        in_order[h->order[i]]++;
        if (i > 0 && h->order[i] == 0)
            assert_int_not_equal(h->order[i - 1], 0); /* o0's turns interleave */
    }
    assert_int_equal(in_order[0], 3);
    assert_int_equal(in_order[1], 1);
    assert_int_equal(in_order[2], 2);
    e.pool_cursor[0] = 4; /* any start */
    for (int round = 0; round < 50; round++) {
        unsigned got[3] = {0};
        for (int i = 0; i < 6; i++)
            got[pick(&e)]++;
        assert_int_equal(got[0], 3);
        assert_int_equal(got[1], 1);
        assert_int_equal(got[2], 2);
    }
    env_fini(&e);
}

/* In a pool of 1,000, origins that cannot take a request (in backoff, at
 * max_connections) pass their turns on: the others share evenly, and a
 * request never waits on one of them while another has room. */
static void test_round_robin_passes_over_origins_out(void **state)
{
    (void)state;
    enum { N = 1000 };
    char *pool = pool_of(N, "", NULL);
    struct env e;
    env_init(&e, env_snapshot(pool, LB_APP, ""));
    free(pool);
    assert_int_equal(e.snap->hash[0].order_len, N);
    static unsigned got[N];
    memset(got, 0, sizeof(got));
    /* every third origin is in passive backoff */
    for (int o = 0; o < N; o += 3)
        atomic_store(&e.snap->pools[0].origins[o]->retry_after_ms, e.ctx.now_ms + 60000);
    for (int i = 0; i < 20 * N; i++)
        got[pick(&e)]++;
    for (int o = 0; o < N; o++) {
        if (o % 3 == 0)
            assert_int_equal(got[o], 0);
        else
            assert_true(got[o] >= 25 && got[o] <= 35); /* 20 * 3/2 = 30 each */
    }
    for (int o = 0; o < N; o += 3)
        atomic_store(&e.snap->pools[0].origins[o]->retry_after_ms, 0);
    env_fini(&e);
}

/* Weights too uneven for an order under ROUTE_ORDER_MAX: none is built, and
 * round robin still goes by weight (scanning the pool). */
static unsigned weight_uneven(int i) { return 1000 - (unsigned)i; }

static void test_round_robin_without_order(void **state)
{
    (void)state;
    char *pool = pool_of(80, "", weight_uneven);
    struct env e;
    env_init(&e, env_snapshot(pool, LB_APP, ""));
    free(pool);
    assert_int_equal(e.snap->hash[0].order_len, 0);
    unsigned first = 0, last = 0;
    uint64_t total = 0;
    for (int i = 0; i < 80; i++)
        total += weight_uneven(i);
    for (uint64_t i = 0; i < total; i++) {
        long o = pick(&e);
        first += o == 0;
        last += o == 79;
    }
    assert_int_equal(first, weight_uneven(0)); /* smooth round robin: exact per cycle */
    assert_int_equal(last, weight_uneven(79));
    env_fini(&e);
}

/* A thread's place in a pool's order carries over to the next snapshot by
 * the pool's name (wherever the pool now stands); a new pool starts at its
 * first origin. */
static void test_round_robin_place_carries_to_next_snapshot(void **state)
{
    (void)state;
    struct env old;
    env_init(&old, env_snapshot(POOL_APP, LB_APP, ""));
    assert_string_equal(env_name(&old, 0, pick(&old)), "o1");
    assert_string_equal(env_name(&old, 0, pick(&old)), "o2");
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'fresh','origins':[{'name':'f1','address':'127.0.0.1:9021'},"
        "{'name':'f2','address':'127.0.0.1:9022'}]}," POOL_APP,
        "'default_pools':['app'],'fallback_pool':'fresh'", ""));
    route_cursors_carry(e.snap, e.pool_cursor, old.snap, old.pool_cursor);
    assert_int_equal(e.pool_cursor[0], 0);                  /* "fresh": new */
    assert_int_equal(e.pool_cursor[1], old.pool_cursor[0]); /* "app", now second */
    assert_string_equal(env_name(&e, 1, pick(&e)), "o3");   /* where the old one left off */
    assert_string_equal(env_name(&e, 1, pick(&e)), "o1");
    route_cursors_carry(e.snap, e.pool_cursor, NULL, NULL);
    assert_int_equal(e.pool_cursor[1], 0);                  /* no previous snapshot */
    env_fini(&e);
    env_fini(&old);
}

/* random steering draws from the order: by weight, and the less loaded of
 * two draws (this thread's requests in flight) wins. */
static void test_random_draws_by_weight(void **state)
{
    (void)state;
    char *pool = pool_of(3, "'origin_steering':'random',", weight_3_1_2);
    struct env e;
    env_init(&e, env_snapshot(pool, LB_APP, ""));
    free(pool);
    unsigned got[3] = {0};
    for (int i = 0; i < 6000; i++)
        got[pick(&e)]++;
    /* two draws, the first kept on a tie (nothing in flight): still by weight */
    assert_true(got[0] > 2600 && got[0] < 3400);
    assert_true(got[1] > 700 && got[1] < 1300);
    assert_true(got[2] > 1600 && got[2] < 2400);
    e.pool_slots[0][0]->active = 5; /* o0 busy on this thread: it loses every pair */
    memset(got, 0, sizeof(got));
    for (int i = 0; i < 6000; i++)
        got[pick(&e)]++;
    /* only when both draws were o0: a quarter of the pairs (1,500) */
    assert_true(got[0] > 6000 / 5 && got[0] < 6000 * 3 / 10);
    e.pool_slots[0][0]->active = 0;
    env_fini(&e);
}

static void test_geo_pool_order(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        POOL_APP ",{'name':'eu','origins':[{'name':'e1','address':'127.0.0.1:9031'}]}",
        "'default_pools':['app'],'steering_policy':'geo','region_pools':{'EU':['eu']}",
        "'client_regions':{'EU':['192.0.2.0/24']},"));
    long pools[ROUTE_MAX_POOLS];
    bool fallback_last;
    env_client_ipv4(&e, 192, 0, 2, 77);
    assert_int_equal(route_pool_order(&e.ctx, pools, ROUTE_MAX_POOLS, &fallback_last, NULL), 2);
    assert_int_equal(pools[0], 1);             /* the region's pool first */
    assert_int_equal(pools[1], 0);
    assert_false(fallback_last);
    env_client_ipv4(&e, 198, 51, 100, 1);
    assert_int_equal(route_pool_order(&e.ctx, pools, ROUTE_MAX_POOLS, &fallback_last, NULL), 1);
    assert_int_equal(pools[0], 0);
    env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_skips_tried),
        cmocka_unit_test(test_attempts_capped),
        cmocka_unit_test(test_passive_backoff),
        cmocka_unit_test(test_passive_kinds_without_monitor),
        cmocka_unit_test(test_passive_with_monitor),
        cmocka_unit_test(test_fallback_pool_last),
        cmocka_unit_test(test_hash_steering),
        cmocka_unit_test(test_geo_pool_order),
        cmocka_unit_test(test_round_robin_order_by_weight),
        cmocka_unit_test(test_round_robin_passes_over_origins_out),
        cmocka_unit_test(test_round_robin_without_order),
        cmocka_unit_test(test_round_robin_place_carries_to_next_snapshot),
        cmocka_unit_test(test_random_draws_by_weight),
    };
    return cmocka_run_group_tests(tests, env_setup_dir, env_teardown_dir);
}
