/*
 * Unit tests for origin limits and slow start in src/balance/route.c (and the
 * affinity move a waiting new session makes): max_connections slots shared
 * through origin_shared, choosing past full origins, the choice a queued new
 * session makes when a slot frees, and slow_start thinning a returning
 * origin's share of new sessions (also under hash steering), and hash
 * steering's second choice for a client whose origin cannot take it. Real snapshots from config text
 * (route_env.h); nothing connects anywhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "route_env.h"

#define LB_APP "'default_pools':['app']"
/* Three origins; o1 and o2 take one request at a time, o3 two. */
#define POOL_LIMITED \
    "{'name':'app','origins':[" \
    "{'name':'o1','address':'127.0.0.1:9001','max_connections':1}," \
    "{'name':'o2','address':'127.0.0.1:9002','max_connections':1}," \
    "{'name':'o3','address':'127.0.0.1:9003','max_connections':2}]}"

static long choose(struct env *e)
{
    struct route_tried tried = {0};
    long p, o;
    bool fallback;
    if (route_choose(&e->ctx, &tried, &p, &o, &fallback) < 0)
        return -1;
    return o;
}

static void test_slots_count_to_the_limit(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_LIMITED, LB_APP, ""));
    size_t p, o;
    struct origin_shared *os = env_origin(&e, "app", "o3", &p, &o);
    struct origin_shared *a, *b, *c;
    assert_false(route_origin_full(e.snap, p, o));
    assert_true(route_slot_take(e.snap, p, o, &a));
    assert_ptr_equal(a, os);
    assert_true(route_slot_take(e.snap, p, o, &b));
    assert_true(route_origin_full(e.snap, p, o));
    assert_false(route_slot_take(e.snap, p, o, &c));
    assert_null(c);
    assert_int_equal(atomic_load(&os->in_flight), 2);
    route_slot_release(a);
    assert_false(route_origin_full(e.snap, p, o));
    assert_true(route_slot_take(e.snap, p, o, &c));
    route_slot_release(b);
    route_slot_release(c);
    route_slot_release(NULL);
    assert_int_equal(atomic_load(&os->in_flight), 0);
    env_fini(&e);
}

static void test_unlimited_origin_counts_nothing(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, LB_APP, ""));
    size_t p, o;
    struct origin_shared *os = env_origin(&e, "app", "o1", &p, &o);
    for (int i = 0; i < 1000; i++) {
        struct origin_shared *held = os;
        assert_true(route_slot_take(e.snap, p, o, &held));
        assert_null(held);
    }
    assert_int_equal(atomic_load(&os->in_flight), 0);
    assert_false(route_origin_full(e.snap, p, o));
    env_fini(&e);
}

/* Many threads taking and giving back slots of one origin never hold more
 * than max_connections at once. */
struct race {
    struct env *e;
    size_t p, o;
    atomic_uint holding, peak;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 20000; i++) {
        struct origin_shared *held;
        if (!route_slot_take(r->e->snap, r->p, r->o, &held))
            continue;
        unsigned now = atomic_fetch_add(&r->holding, 1) + 1;
        unsigned peak = atomic_load(&r->peak);
        while (now > peak && !atomic_compare_exchange_weak(&r->peak, &peak, now))
            ;
        atomic_fetch_sub(&r->holding, 1);
        route_slot_release(held);
    }
    return NULL;
}

static void test_slots_hold_across_threads(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_LIMITED, LB_APP, ""));
    struct race r = {.e = &e};
    struct origin_shared *os = env_origin(&e, "app", "o3", &r.p, &r.o);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&r.peak) <= 2);
    assert_int_equal(atomic_load(&os->in_flight), 0);
    env_fini(&e);
}

static void test_choose_passes_over_full_origins(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_LIMITED, LB_APP, ""));
    size_t p, o1, o2, o3;
    env_origin(&e, "app", "o1", &p, &o1);
    env_origin(&e, "app", "o2", &p, &o2);
    env_origin(&e, "app", "o3", &p, &o3);
    struct origin_shared *h1, *h3a, *h3b;
    assert_true(route_slot_take(e.snap, p, o1, &h1));
    for (int i = 0; i < 12; i++) {           /* o1 full: o2 and o3 only */
        long o = choose(&e);
        assert_true(o == (long)o2 || o == (long)o3);
    }
    assert_true(route_slot_take(e.snap, p, o3, &h3a));
    assert_true(route_slot_take(e.snap, p, o3, &h3b));
    for (int i = 0; i < 6; i++)              /* only o2 has room */
        assert_int_equal(choose(&e), (long)o2);
    struct origin_shared *h2;
    assert_true(route_slot_take(e.snap, p, o2, &h2));
    /* all full: one is still chosen (the request will wait for it) */
    assert_true(choose(&e) >= 0);
    struct route_tried tried = {0};
    assert_int_equal(route_choose_with_room(&e.ctx, &tried, p, o1), -1);
    route_slot_release(h3a);                 /* a slot frees on o3 */
    assert_int_equal(route_choose_with_room(&e.ctx, &tried, p, o1), (long)o3);
    /* a tried origin is not chosen again, but the one waited for may be */
    route_tried_add(&tried, p, o3);
    assert_int_equal(route_choose_with_room(&e.ctx, &tried, p, o1), -1);
    assert_int_equal(route_choose_with_room(&e.ctx, &tried, p, o3), (long)o3);
    route_slot_release(h1);
    route_slot_release(h2);
    route_slot_release(h3b);
    env_fini(&e);
}

static void test_hash_steering_leaves_a_full_origin(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'app','origin_steering':'hash','origins':["
        "{'name':'o1','address':'127.0.0.1:9001','max_connections':1},"
        "{'name':'o2','address':'127.0.0.1:9002','max_connections':1}]}", LB_APP, ""));
    long home = choose(&e);
    assert_true(home >= 0);
    assert_int_equal(choose(&e), home);      /* same client, same origin */
    struct origin_shared *held;
    assert_true(route_slot_take(e.snap, 0, (size_t)home, &held));
    assert_int_equal(choose(&e), 1 - home);  /* its origin is full: the other */
    struct origin_shared *other;
    assert_true(route_slot_take(e.snap, 0, (size_t)(1 - home), &other));
    assert_int_equal(choose(&e), home);      /* both full: its own, to wait for */
    route_slot_release(held);
    route_slot_release(other);
    env_fini(&e);
}

/* ---- slow_start ---- */

#define POOL_SLOW \
    "{'name':'app','origins':[" \
    "{'name':'o1','address':'127.0.0.1:9001'}," \
    "{'name':'o2','address':'127.0.0.1:9002','slow_start':10}]}"

static unsigned picks_of(struct env *e, size_t o, int n)
{
    unsigned k = 0;
    for (int i = 0; i < n; i++)
        k += choose(e) == (long)o;
    return k;
}

static void test_slow_start_ramps_linearly(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_SLOW, LB_APP, ""));
    size_t p, o2;
    struct origin_shared *os = env_origin(&e, "app", "o2", &p, &o2);
    /* never came back: its full share */
    assert_int_equal(picks_of(&e, o2, 1000), 500);
    /* just came back: almost nothing */
    atomic_store(&os->up_since_ms, e.ctx.now_ms);
    unsigned at0 = picks_of(&e, o2, 2000);
    assert_true(at0 < 40);
    /* a quarter, half-way, then all of the ramp */
    e.ctx.now_ms += 2500;
    unsigned at25 = picks_of(&e, o2, 4000);
    e.ctx.now_ms += 2500;
    unsigned at50 = picks_of(&e, o2, 4000);
    assert_true(at0 < at25 && at25 < at50);
    assert_true(at25 > 300 && at25 < 800);    /* about 4000 * 0.25 / 2 */
    assert_true(at50 > 700 && at50 < 1300);   /* about 4000 * 0.5 / 2 */
    e.ctx.now_ms += 5000;
    assert_int_equal(picks_of(&e, o2, 1000), 500);
    env_fini(&e);
}

static void test_slow_start_alone_still_chosen(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_SLOW, LB_APP, ""));
    size_t p, o1, o2;
    env_origin(&e, "app", "o1", &p, &o1);
    struct origin_shared *os = env_origin(&e, "app", "o2", &p, &o2);
    atomic_store(&os->up_since_ms, e.ctx.now_ms);
    atomic_store(&env_origin(&e, "app", "o1", NULL, NULL)->healthy, false);
    assert_int_equal(picks_of(&e, o2, 50), 50);  /* the only usable origin */
    atomic_store(&env_origin(&e, "app", "o1", NULL, NULL)->healthy, true);
    env_fini(&e);
}

/* hash steering: a client's draw comes from its address, so while o2 ramps
 * up a client keeps its answer, the share grows linearly, and a client o2
 * has taken back stays with it */
enum { HASH_CLIENTS = 2000 };

static long hash_choice(struct env *e, int i)
{
    env_client_ipv4(e, 10, (uint8_t)(i >> 8), (uint8_t)i, 7);
    return choose(e);
}

static void test_slow_start_with_hash_steering(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'app','origin_steering':'hash','origins':["
        "{'name':'o1','address':'127.0.0.1:9001'},"
        "{'name':'o2','address':'127.0.0.1:9002','slow_start':10}]}", LB_APP, ""));
    size_t p, o2;
    struct origin_shared *os = env_origin(&e, "app", "o2", &p, &o2);
    static long home[HASH_CLIENTS];
    static bool at25[HASH_CLIENTS];
    unsigned homed = 0;
    for (int i = 0; i < HASH_CLIENTS; i++) {
        home[i] = hash_choice(&e, i);
        homed += home[i] == (long)o2;
    }
    assert_true(homed > HASH_CLIENTS / 3 && homed < HASH_CLIENTS * 2 / 3);
    /* just came back: almost none of its clients */
    atomic_store(&os->up_since_ms, e.ctx.now_ms);
    unsigned n0 = 0;
    for (int i = 0; i < HASH_CLIENTS; i++)
        n0 += hash_choice(&e, i) == (long)o2;
    assert_true(n0 < homed / 20);
    /* a quarter of the way: about a quarter of them, each client the same
     * twice, and only clients whose home it is */
    e.ctx.now_ms += 2500;
    unsigned n25 = 0;
    for (int i = 0; i < HASH_CLIENTS; i++) {
        long o = hash_choice(&e, i);
        assert_int_equal(hash_choice(&e, i), o);
        at25[i] = o == (long)o2;
        if (at25[i])
            assert_int_equal(home[i], (long)o2);
        n25 += at25[i];
    }
    assert_true(n25 > homed * 15 / 100 && n25 < homed * 35 / 100);
    /* half-way: more, and every client taken back at a quarter still there */
    e.ctx.now_ms += 2500;
    unsigned n50 = 0;
    for (int i = 0; i < HASH_CLIENTS; i++) {
        bool on = hash_choice(&e, i) == (long)o2;
        if (at25[i])
            assert_true(on);
        n50 += on;
    }
    assert_true(n50 > homed * 40 / 100 && n50 < homed * 60 / 100);
    /* the ramp is over: every client at home again */
    e.ctx.now_ms += 5000;
    for (int i = 0; i < HASH_CLIENTS; i++)
        assert_int_equal(hash_choice(&e, i), home[i]);
    env_fini(&e);
}

/* Under hash steering, a client whose origin cannot take it (ramping and not
 * yet for this client, or tried already) gets a second choice of its own: the
 * same one every time, spread over the other origins by weight. */
static void test_hash_second_choice_is_the_clients_own(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'app','origin_steering':'hash','origins':["
        "{'name':'o1','address':'127.0.0.1:9001'},"
        "{'name':'o2','address':'127.0.0.1:9002'},"
        "{'name':'o3','address':'127.0.0.1:9003','weight':2},"
        "{'name':'o4','address':'127.0.0.1:9004','slow_start':10}]}", LB_APP, ""));
    size_t p, o4;
    struct origin_shared *os = env_origin(&e, "app", "o4", &p, &o4);
    static long home[HASH_CLIENTS];
    for (int i = 0; i < HASH_CLIENTS; i++)
        home[i] = hash_choice(&e, i);
    /* o4 just came back: its clients go elsewhere, each to one origin */
    atomic_store(&os->up_since_ms, e.ctx.now_ms);
    unsigned moved = 0, to[4] = {0};
    for (int i = 0; i < HASH_CLIENTS; i++) {
        long o = hash_choice(&e, i);
        for (int again = 0; again < 3; again++)
            assert_int_equal(hash_choice(&e, i), o);
        if (home[i] != (long)o4) {
            assert_int_equal(o, home[i]); /* the others stay at home */
            continue;
        }
        if (o == (long)o4)
            continue; /* one of the few taken back at once */
        assert_true(o >= 0 && o < 4);
        moved++;
        to[o]++;
    }
    assert_true(moved > HASH_CLIENTS / 10);
    /* by weight: o3 (2) about half, o1 and o2 (1 each) about a quarter */
    assert_true(to[2] > moved * 35 / 100 && to[2] < moved * 65 / 100);
    assert_true(to[0] > moved * 12 / 100 && to[0] < moved * 38 / 100);
    assert_true(to[1] > moved * 12 / 100 && to[1] < moved * 38 / 100);
    /* a retry passes over the client's own origin, to the same one each time */
    for (int i = 0; i < HASH_CLIENTS; i += 7) {
        env_client_ipv4(&e, 10, (uint8_t)(i >> 8), (uint8_t)i, 7);
        long first = -1;
        for (int again = 0; again < 3; again++) {
            struct route_tried tried = {0};
            assert_true(route_tried_add(&tried, p, (size_t)home[i]));
            long pool, o;
            bool fallback;
            assert_int_equal(route_choose(&e.ctx, &tried, &pool, &o, &fallback), 0);
            assert_int_not_equal(o, home[i]);
            if (again == 0)
                first = o;
            assert_int_equal(o, first);
        }
    }
    env_fini(&e);
}

/* With equal weights (the second choice's fast path) a retry still goes to
 * the client's own second origin every time, and the clients of one origin
 * spread evenly over all the others: here 2,000 clients over a pool of 60. */
static void test_hash_second_choice_equal_weights_spreads_evenly(void **state)
{
    (void)state;
    enum { ORIGINS = 60 };
    char pool[ORIGINS * 64 + 128];
    int at = snprintf(pool, sizeof(pool), "{'name':'app','origin_steering':'hash','origins':[");
    for (int o = 0; o < ORIGINS; o++)
        at += snprintf(pool + at, sizeof(pool) - (size_t)at,
                       "%s{'name':'node-%02d','address':'127.0.0.1:%d'}", o ? "," : "", o,
                       9100 + o);
    snprintf(pool + at, sizeof(pool) - (size_t)at, "]}");
    struct env e;
    env_init(&e, env_snapshot(pool, LB_APP, ""));
    assert_true(e.snap->hash[0].equal_weights);
    unsigned to[ORIGINS] = {0};
    for (int i = 0; i < HASH_CLIENTS; i++) {
        long home = hash_choice(&e, i);
        assert_true(home >= 0 && home < ORIGINS);
        long first = -1;
        for (int again = 0; again < 2; again++) {
            struct route_tried tried = {0};
            assert_true(route_tried_add(&tried, 0, (size_t)home));
            long p, o;
            bool fallback;
            assert_int_equal(route_choose(&e.ctx, &tried, &p, &o, &fallback), 0);
            assert_int_not_equal(o, home);
            if (again == 0)
                first = o;
            assert_int_equal(o, first);
        }
        to[first]++;
    }
    /* about 2000/60 = 33 each: none left out, none taking a crowd */
    for (int o = 0; o < ORIGINS; o++) {
        assert_true(to[o] >= 10);
        assert_true(to[o] <= 70);
    }
    env_fini(&e);
}

/* ---- a waiting new session moves within its pool ---- */

static void test_move_within_pool_reissues_cookie(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_LIMITED, LB_APP ",'session_affinity':'cookie'", ""));
    static char text[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    struct h1_request req;
    assert_int_equal(h1_parse_request(text, sizeof(text) - 1, 16384, &req), sizeof(text) - 1);
    struct affinity_decision d;
    assert_int_equal(affinity_decide(&e.ctx, e.tokens, &e.pin, &req, &d), 0);
    assert_true(d.set_cookie && !d.pinned);
    long from = d.origin;
    uint64_t session = d.session_hash;
    size_t to = (size_t)(from + 1) % 3;
    affinity_move_within_pool(&e.ctx, e.tokens, &d, to);
    assert_int_equal(d.origin, (long)to);
    assert_int_equal(d.tried.n, 1);          /* the origin waited for was never tried */
    assert_int_equal(d.tried.at[0].origin, to);
    assert_true(d.set_cookie);
    assert_int_equal(d.session_hash, session);  /* the same session, moved */
    /* the new cookie pins the session to the new origin */
    char line[256];
    snprintf(line, sizeof(line), "GET / HTTP/1.1\r\nHost: t\r\nCookie: __limpet=%s\r\n\r\n",
             d.cookie_value);
    assert_true(h1_parse_request(line, strlen(line), 16384, &req) > 0);
    struct affinity_pin pin = {0};
    assert_int_equal(affinity_decide(&e.ctx, e.tokens, &pin, &req, &d), 0);
    assert_string_equal(affinity_reason_name(d.reason), "hit");
    assert_int_equal(d.origin, (long)to);
    env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_count_to_the_limit),
        cmocka_unit_test(test_unlimited_origin_counts_nothing),
        cmocka_unit_test(test_slots_hold_across_threads),
        cmocka_unit_test(test_choose_passes_over_full_origins),
        cmocka_unit_test(test_hash_steering_leaves_a_full_origin),
        cmocka_unit_test(test_slow_start_ramps_linearly),
        cmocka_unit_test(test_slow_start_alone_still_chosen),
        cmocka_unit_test(test_slow_start_with_hash_steering),
        cmocka_unit_test(test_hash_second_choice_is_the_clients_own),
        cmocka_unit_test(test_hash_second_choice_equal_weights_spreads_evenly),
        cmocka_unit_test(test_move_within_pool_reissues_cookie),
    };
    return cmocka_run_group_tests(tests, env_setup_dir, env_teardown_dir);
}
