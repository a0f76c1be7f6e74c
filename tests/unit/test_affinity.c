/*
 * Unit tests for src/affinity/affinity.c: the affinity decision of every
 * session_affinity mode (SPEC §3), failover, drains, fallback pools, the
 * per-connection pin, the X-Limpet-Affinity value, and retries staying on
 * the snapshot their exchange started with.
 *
 * No socket, buffer or worker: each test builds real snapshots from a config
 * text (route_env.h), parses request heads with h1_parse_request and calls
 * affinity_decide / affinity_failover / affinity_reroute on a route_ctx.
 * decide() starts a new connection (no pin) for each request, decide_on()
 * keeps the connection of the previous one. Cookies pinned to a given
 * origin are made with the snapshot's own key (cookie_for).
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
#include <time.h>

#include "route_env.h"

#define COOKIE_LB "'default_pools':['app'],'session_affinity':'cookie'"
#define WITH_ATTRS(mode, attrs) \
    "'default_pools':['app'],'session_affinity':'" mode "','session_affinity_attributes':{" \
    attrs "}"

static char req_text[4096];
static struct h1_request req;

/* Decides a GET carrying `headers` (lines "Name: value\r\n") on e's current
 * connection. Returns what affinity_decide returns. */
static int decide_on(struct env *e, const char *headers, struct affinity_decision *d)
{
    int n = snprintf(req_text, sizeof(req_text), "GET / HTTP/1.1\r\nHost: t\r\n%s\r\n", headers);
    assert_int_equal(h1_parse_request(req_text, (size_t)n, 16384, &req), n);
    return affinity_decide(&e->ctx, e->tokens, &e->pin, &req, d);
}

/* Same on a new connection. */
static int decide(struct env *e, const char *headers, struct affinity_decision *d)
{
    e->pin = (struct affinity_pin){0};
    return decide_on(e, headers, d);
}

/* Decides "GET target" carrying `headers` on a new connection. */
static int decide_target(struct env *e, const char *target, const char *headers,
                         struct affinity_decision *d)
{
    e->pin = (struct affinity_pin){0};
    int n = snprintf(req_text, sizeof(req_text), "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n",
                     target, headers);
    assert_int_equal(h1_parse_request(req_text, (size_t)n, 16384, &req), n);
    return affinity_decide(&e->ctx, e->tokens, &e->pin, &req, d);
}

/* "Cookie: name=value\r\n" (one static buffer). */
static const char *cookie(const char *name, const char *value)
{
    static char line[512];
    snprintf(line, sizeof(line), "Cookie: %s=%s\r\n", name, value);
    return line;
}

/* A valid limpet cookie value pinned to origin `origin` of pool app. */
static const char *cookie_for(struct env *e, const char *origin)
{
    static char value[TOKEN_TEXT_MAX + 1];
    uint64_t key = token_origin_key(e->snap->aff->keys, "app", origin);
    assert_int_equal(token_issue(e->tokens, key, NULL, (uint32_t)time(NULL), value),
                     TOKEN_TEXT_MAX);
    return value;
}

/* The X-Limpet-Affinity value of d ("" when none). */
static const char *header_of(const struct env *e, const struct affinity_decision *d)
{
    static char buf[160];
    size_t n = affinity_header_value(e->snap, e->ctx.lb, d, buf, sizeof(buf));
    buf[n] = '\0';
    return buf;
}

static void assert_reason(const struct affinity_decision *d, const char *reason)
{
    assert_string_equal(affinity_reason_name(d->reason), reason);
}

static const char *origin_of(const struct env *e, const struct affinity_decision *d)
{
    return env_name(e, d->pool, d->origin);
}

static void set_healthy(struct env *e, const char *name, bool healthy)
{
    atomic_store(&env_origin(e, "app", name, NULL, NULL)->healthy, healthy);
}

/* ------------------------------------------------------------------------ */
/* none                                                                     */

static void test_none_steers_every_request(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, "'default_pools':['app']", ""));
    unsigned count[3] = {0};
    for (int i = 0; i < 9; i++) {
        struct affinity_decision d;
        assert_int_equal(decide(&e, cookie("__limpet", "whatever"), &d), 0);
        assert_reason(&d, "none");
        assert_false(d.set_cookie);
        assert_null(d.strip_cookie);          /* cookies pass untouched */
        assert_int_equal(d.tried.n, 1);
        assert_string_equal(header_of(&e, &d), "");
        count[d.origin]++;
    }
    for (int o = 0; o < 3; o++)
        assert_int_equal(count[o], 3);        /* round robin */
    env_fini(&e);
}

/* ------------------------------------------------------------------------ */
/* cookie                                                                   */

static void test_cookie_new_session_then_hits(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, COOKIE_LB, ""));
    struct affinity_decision d;
    assert_int_equal(decide(&e, "", &d), 0);
    assert_reason(&d, "new");
    assert_true(d.set_cookie);
    assert_int_equal(strlen(d.cookie_value), TOKEN_TEXT_MAX);
    assert_string_equal(d.strip_cookie, "__limpet");
    assert_int_equal(d.strip_cookie_len, 8);
    assert_string_equal(header_of(&e, &d), "new");
    assert_true(d.has_token);
    assert_true(d.session_hash != 0 && d.session_hash == d.token.session_id);
    assert_true(e.pin.set);
    assert_int_equal(e.pin.id, e.snap->pools[d.pool].origins[d.origin]->id);

    char value[TOKEN_TEXT_MAX + 1];
    strcpy(value, d.cookie_value);
    long pool = d.pool, origin = d.origin;
    uint64_t session = d.session_hash;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
        assert_reason(&d, "hit");
        assert_int_equal(d.pool, pool);
        assert_int_equal(d.origin, origin);
        assert_true(d.pinned);
        assert_false(d.set_cookie);           /* fresh: no re-issue */
        assert_int_equal(d.session_hash, session);
        assert_string_equal(header_of(&e, &d), "hit");
    }
    /* among other cookies */
    char line[256];
    snprintf(line, sizeof(line), "Cookie: a=1; __limpet=%s; b=2\r\n", value);
    assert_int_equal(decide(&e, line, &d), 0);
    assert_reason(&d, "hit");
    assert_int_equal(d.origin, origin);
    env_fini(&e);
}

static void test_cookie_invalid(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, COOKIE_LB, ""));
    struct affinity_decision d;

    char tampered[TOKEN_TEXT_MAX + 1];
    strcpy(tampered, cookie_for(&e, "o2"));
    tampered[20] = tampered[20] == 'A' ? 'B' : 'A';
    assert_int_equal(decide(&e, cookie("__limpet", tampered), &d), 0);
    assert_reason(&d, "invalid-cookie");
    assert_true(d.set_cookie);                /* a fresh, valid one */
    assert_int_equal(d.previous_pool, -1);
    assert_string_equal(header_of(&e, &d), "new");

    assert_int_equal(decide(&e, cookie("__limpet", "not-a-token"), &d), 0);
    assert_reason(&d, "invalid-cookie");

    /* Signed with a key limpet does not have. */
    struct token_keys *other;
    char err[128];
    const char text[] = "another-secret-0123456789\n";
    assert_int_equal(token_keys_parse("other", text, sizeof(text) - 1, &other, err, sizeof(err)),
                     0);
    struct token_ctx *forger = token_ctx_new(other);
    char forged[TOKEN_TEXT_MAX + 1];
    token_issue(forger, token_origin_key(other, "app", "o2"), NULL, (uint32_t)time(NULL), forged);
    assert_int_equal(decide(&e, cookie("__limpet", forged), &d), 0);
    assert_reason(&d, "invalid-cookie");
    token_ctx_free(forger);
    token_keys_free(other);

    /* Authentic, but for an origin this load balancer does not have. */
    char gone[TOKEN_TEXT_MAX + 1];
    token_issue(e.tokens, token_origin_key(e.snap->aff->keys, "app", "gone"), NULL,
                (uint32_t)time(NULL), gone);
    assert_int_equal(decide(&e, cookie("__limpet", gone), &d), 0);
    assert_reason(&d, "invalid-cookie");

    /* The genuine one still hits. */
    assert_int_equal(decide(&e, cookie("__limpet", cookie_for(&e, "o2")), &d), 0);
    assert_reason(&d, "hit");
    assert_string_equal(origin_of(&e, &d), "o2");
    env_fini(&e);
}

static void test_cookie_unhealthy_reassigned(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, COOKIE_LB, ""));
    struct affinity_decision d;
    char value[TOKEN_TEXT_MAX + 1];
    strcpy(value, cookie_for(&e, "o2"));
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "hit");
    uint64_t session = d.token.session_id;

    set_healthy(&e, "o2", false);
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "reassigned:unhealthy");
    assert_string_equal(env_name(&e, d.previous_pool, d.previous_origin), "o2");
    assert_string_not_equal(origin_of(&e, &d), "o2");
    assert_false(d.pinned);
    assert_true(d.set_cookie);
    assert_int_equal(d.token.session_id, session);   /* a moved session keeps its id */
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o2");

    long moved_to = d.origin;
    strcpy(value, d.cookie_value);
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "hit");
    assert_int_equal(d.origin, moved_to);
    env_fini(&e);
}

static void test_cookie_disabled_reassigned(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'app','origins':[{'name':'o1','address':'127.0.0.1:9001'},"
        "{'name':'o2','address':'127.0.0.1:9002'},"
        "{'name':'o3','address':'127.0.0.1:9003','state':'disabled'}]}", COOKIE_LB, ""));
    struct affinity_decision d;
    assert_int_equal(decide(&e, cookie("__limpet", cookie_for(&e, "o3")), &d), 0);
    assert_reason(&d, "reassigned:disabled");
    assert_string_equal(env_name(&e, d.previous_pool, d.previous_origin), "o3");
    assert_string_not_equal(origin_of(&e, &d), "o3");
    assert_true(d.set_cookie);
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o3");
    for (int i = 0; i < 30; i++) {            /* never a new session either */
        assert_int_equal(decide(&e, "", &d), 0);
        assert_string_not_equal(origin_of(&e, &d), "o3");
    }
    env_fini(&e);
}

#define POOL_O1_DRAINING \
    "{'name':'app','origins':[{'name':'o1','address':'127.0.0.1:9001','state':'draining'}," \
    "{'name':'o2','address':'127.0.0.1:9002'},{'name':'o3','address':'127.0.0.1:9003'}]}"

static void test_cookie_drain(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_O1_DRAINING, WITH_ATTRS("cookie", "'drain_duration':60"), ""));
    struct affinity_decision d;
    char value[TOKEN_TEXT_MAX + 1];
    strcpy(value, cookie_for(&e, "o1"));
    for (int i = 0; i < 5; i++) {             /* within drain_duration: stays */
        assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
        assert_reason(&d, "hit");
        assert_string_equal(origin_of(&e, &d), "o1");
    }
    for (int i = 0; i < 50; i++) {            /* never a new session */
        assert_int_equal(decide(&e, "", &d), 0);
        assert_reason(&d, "new");
        assert_string_not_equal(origin_of(&e, &d), "o1");
    }
    /* The drain began 61 s ago: over. */
    assert_true(e.ctx.now_ms > 61000);
    atomic_store(&env_origin(&e, "app", "o1", NULL, NULL)->drain_started_ms, e.ctx.now_ms - 61000);
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "reassigned:drained");
    assert_string_equal(env_name(&e, d.previous_pool, d.previous_origin), "o1");
    assert_string_not_equal(origin_of(&e, &d), "o1");
    assert_true(d.set_cookie);
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o1");
    env_fini(&e);
}

/* ------------------------------------------------------------------------ */
/* failover after a connect failure                                         */

/* Decides a session pinned to o1 and fails its connect. */
static void pinned_then_failed(struct env *e, struct affinity_decision *d, char *value)
{
    strcpy(value, cookie_for(e, "o1"));
    assert_int_equal(decide(e, cookie("__limpet", value), d), 0);
    assert_reason(d, "hit");
    assert_string_equal(origin_of(e, d), "o1");
    route_origin_failed(&e->ctx, (size_t)d->pool, (size_t)d->origin, -ECONNREFUSED);
}

static void test_failover_none(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, COOKIE_LB, ""));
    struct affinity_decision d;
    char value[TOKEN_TEXT_MAX + 1];
    pinned_then_failed(&e, &d, value);
    assert_false(affinity_failover(&e.ctx, &d));     /* 502: the session stays */
    uint32_t id = env_origin(&e, "app", "o1", NULL, NULL)->id;
    assert_int_equal(atomic_load(&e.stats[id].connect_failures), 1);

    /* A new session was not pinned: any other origin will do. */
    e.ctx.now_ms += 20000;
    assert_int_equal(decide(&e, "", &d), 0);
    long first = d.origin;
    route_origin_failed(&e.ctx, (size_t)d.pool, (size_t)d.origin, -ECONNREFUSED);
    assert_true(affinity_failover(&e.ctx, &d));
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
    assert_true(d.origin != first);
    assert_int_equal(d.tried.n, 2);
    assert_reason(&d, "new");
    assert_true(d.set_cookie);                 /* the cookie names where it went */
    long second = d.origin;
    strcpy(value, d.cookie_value);
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "hit");
    assert_int_equal(d.origin, second);
    env_fini(&e);
}

static void test_failover_temporary(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP,
                              WITH_ATTRS("cookie", "'zero_downtime_failover':'temporary'"), ""));
    struct affinity_decision d;
    char value[TOKEN_TEXT_MAX + 1];
    pinned_then_failed(&e, &d, value);
    assert_true(affinity_failover(&e.ctx, &d));
    assert_reason(&d, "failover:temporary");
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
    assert_string_not_equal(origin_of(&e, &d), "o1");
    assert_false(d.set_cookie);                /* the cookie stays on o1 */
    assert_int_equal(d.tried.n, 2);
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o1");

    /* While o1 is in its backoff, the session waits elsewhere, cookie kept. */
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "failover:temporary");
    assert_string_not_equal(origin_of(&e, &d), "o1");
    assert_false(d.set_cookie);
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o1");

    /* Backoff over: home again. */
    e.ctx.now_ms += 20000;
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "hit");
    assert_string_equal(origin_of(&e, &d), "o1");
    env_fini(&e);
}

static void test_failover_sticky(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP,
                              WITH_ATTRS("cookie", "'zero_downtime_failover':'sticky'"), ""));
    struct affinity_decision d;
    char value[TOKEN_TEXT_MAX + 1];
    pinned_then_failed(&e, &d, value);
    uint64_t session = d.token.session_id;
    assert_true(affinity_failover(&e.ctx, &d));
    assert_reason(&d, "failover:sticky");
    assert_false(d.set_cookie);
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
    assert_string_not_equal(origin_of(&e, &d), "o1");
    assert_true(d.set_cookie);                 /* the cookie moves */
    assert_int_equal(d.token.session_id, session);
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o1");

    long moved_to = d.origin;
    strcpy(value, d.cookie_value);
    e.ctx.now_ms += 20000;                     /* o1 is back: the session stays moved */
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "hit");
    assert_int_equal(d.origin, moved_to);
    env_fini(&e);
}

/* ip and app_cookie (prefix) read no limpet cookie: under "sticky" failover
 * the request is served elsewhere and no cookie is set that nothing reads;
 * the next request goes home again. */
static void test_failover_sticky_sets_no_cookie_nothing_reads(void **state)
{
    (void)state;
    static const char *lbs[] = {
        WITH_ATTRS("ip", "'zero_downtime_failover':'sticky'"),
        WITH_ATTRS("app_cookie", "'zero_downtime_failover':'sticky','app_cookie':"
                                 "{'name':'JSESSIONID','mode':'prefix','separator':'~'}"),
    };
    for (size_t i = 0; i < sizeof(lbs) / sizeof(lbs[0]); i++) {
        struct env e;
        env_init(&e, env_snapshot(POOL_APP, lbs[i], ""));
        env_client_ipv4(&e, 203, 0, 113, 7);
        char line[128] = "";
        if (i == 1) {
            size_t p, o;
            env_origin(&e, "app", "o2", &p, &o);
            snprintf(line, sizeof(line), "Cookie: JSESSIONID=%s~abc\r\n",
                     e.snap->aff->pools[p].app_prefix[o]);
        }
        struct affinity_decision d;
        assert_int_equal(decide(&e, line, &d), 0);
        assert_reason(&d, "hit");
        long home = d.origin;
        route_origin_failed(&e.ctx, (size_t)d.pool, (size_t)d.origin, -ECONNREFUSED);
        assert_true(affinity_failover(&e.ctx, &d));
        assert_reason(&d, "failover:sticky");
        assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
        assert_int_not_equal(d.origin, home);
        assert_false(d.set_cookie);
        assert_false(d.set_route_cookie);
        assert_string_equal(header_of(&e, &d), i == 0 ? "reassigned; previous=o1"
                                                      : "reassigned; previous=o2");
        env_fini(&e);
    }
}

/* ------------------------------------------------------------------------ */
/* fallback_pool                                                            */

#define POOLS_WITH_SPARE \
    POOL_APP ",{'name':'spare','origins':[{'name':'s1','address':'127.0.0.1:9011'}]}"

static void test_fallback_pool(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOLS_WITH_SPARE,
                              COOKIE_LB ",'fallback_pool':'spare'", ""));
    struct affinity_decision d;
    assert_int_equal(decide(&e, "", &d), 0);
    assert_string_equal(e.snap->cfg->pools[d.pool].name, "app");  /* while it can */
    set_healthy(&e, "o1", false);
    set_healthy(&e, "o2", false);
    set_healthy(&e, "o3", false);
    assert_int_equal(decide(&e, "", &d), 0);
    assert_reason(&d, "fallback-pool");
    assert_string_equal(e.snap->cfg->pools[d.pool].name, "spare");
    assert_string_equal(origin_of(&e, &d), "s1");
    assert_true(d.set_cookie);

    char value[TOKEN_TEXT_MAX + 1];
    strcpy(value, d.cookie_value);
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "hit");
    assert_string_equal(origin_of(&e, &d), "s1");

    /* Nothing usable anywhere: no decision (503). */
    atomic_store(&env_origin(&e, "spare", "s1", NULL, NULL)->healthy, false);
    assert_int_equal(decide(&e, "", &d), -1);
    assert_int_equal(d.pool, -1);
    assert_int_equal(d.origin, -1);
    assert_reason(&d, "none");
    env_fini(&e);

    env_init(&e, env_snapshot(POOLS_WITH_SPARE, "'default_pools':['app'],'fallback_pool':'spare'",
                              ""));
    set_healthy(&e, "o2", false);
    set_healthy(&e, "o1", false);
    set_healthy(&e, "o3", false);
    assert_int_equal(decide(&e, "", &d), 0);
    assert_reason(&d, "fallback-pool");
    assert_string_equal(origin_of(&e, &d), "s1");
    env_fini(&e);
}

/* ------------------------------------------------------------------------ */
/* ip, ip_cookie                                                            */

static void test_ip_same_address_same_origin(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, "'default_pools':['app'],'session_affinity':'ip'", ""));
    struct affinity_decision d;
    env_client_ipv4(&e, 203, 0, 113, 7);
    assert_int_equal(decide(&e, "", &d), 0);
    long origin = d.origin;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(decide(&e, cookie("__limpet", "x"), &d), 0);
        assert_reason(&d, "hit");                /* the address pins it */
        assert_int_equal(d.origin, origin);
        assert_false(d.set_cookie);
        assert_null(d.strip_cookie);
        assert_true(d.session_hash != 0);
        assert_string_equal(header_of(&e, &d), "hit");
    }
    bool seen[3] = {false};
    for (int i = 0; i < 200; i++) {
        env_client_ipv4(&e, 198, 51, (uint8_t)(i / 100), (uint8_t)i);
        assert_int_equal(decide(&e, "", &d), 0);
        seen[d.origin] = true;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    env_fini(&e);
}

static void test_ip_ipv6_hashes_on_the_64(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, "'default_pools':['app'],'session_affinity':'ip'", ""));
    struct affinity_decision d;
    env_client_ipv6(&e, "2001:db8:1:2::1");
    assert_int_equal(decide(&e, "", &d), 0);
    long origin = d.origin;
    const char *same64[] = {"2001:db8:1:2::2", "2001:db8:1:2:ffff:eeee:dddd:cccc",
                            "2001:db8:1:2:8000::"};
    for (size_t i = 0; i < 3; i++) {
        env_client_ipv6(&e, same64[i]);
        assert_int_equal(decide(&e, "", &d), 0);
        assert_int_equal(d.origin, origin);
    }
    uint8_t key[16];
    assert_int_equal(route_client_key(&e.ctx, key), 8);
    bool seen[3] = {false};
    for (int i = 0; i < 200; i++) {
        char text[64];
        snprintf(text, sizeof(text), "2001:db8:%x:%x::1", i / 7, i);
        env_client_ipv6(&e, text);
        assert_int_equal(decide(&e, "", &d), 0);
        seen[d.origin] = true;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    env_fini(&e);
}

static void test_ip_drain_keeps_hashed_sessions(void **state)
{
    (void)state;
    struct env e;
    const char *lb = WITH_ATTRS("ip", "'drain_duration':60");
    env_init(&e, env_snapshot(POOL_APP, lb, ""));
    struct affinity_decision d;
    long before[200];
    int on_o1 = -1;
    for (int i = 0; i < 200; i++) {
        env_client_ipv4(&e, 10, 0, (uint8_t)(i / 100), (uint8_t)i);
        assert_int_equal(decide(&e, "", &d), 0);
        before[i] = d.origin;
        if (on_o1 < 0 && strcmp(origin_of(&e, &d), "o1") == 0)
            on_o1 = i;
    }
    assert_true(on_o1 >= 0);
    env_fini(&e);

    env_init(&e, env_snapshot(POOL_O1_DRAINING, lb, ""));
    for (int i = 0; i < 200; i++) {            /* nobody moves while o1 drains */
        env_client_ipv4(&e, 10, 0, (uint8_t)(i / 100), (uint8_t)i);
        assert_int_equal(decide(&e, "", &d), 0);
        assert_reason(&d, "hit");
        assert_int_equal(d.origin, before[i]);
    }
    assert_true(e.ctx.now_ms > 61000);          /* drain began 61 s ago: over */
    atomic_store(&env_origin(&e, "app", "o1", NULL, NULL)->drain_started_ms, e.ctx.now_ms - 61000);
    env_client_ipv4(&e, 10, 0, (uint8_t)(on_o1 / 100), (uint8_t)on_o1);
    assert_int_equal(decide(&e, "", &d), 0);
    assert_reason(&d, "reassigned:drained");
    assert_string_equal(env_name(&e, d.previous_pool, d.previous_origin), "o1");
    assert_string_not_equal(origin_of(&e, &d), "o1");
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o1");
    env_fini(&e);
}

static void test_ip_cookie(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, "'default_pools':['app'],'session_affinity':'ip_cookie'",
                              ""));
    struct affinity_decision d;
    env_client_ipv4(&e, 203, 0, 113, 9);
    assert_int_equal(decide(&e, "", &d), 0);
    assert_reason(&d, "new");
    assert_true(d.set_cookie);
    long origin = d.origin;
    char value[TOKEN_TEXT_MAX + 1];
    strcpy(value, d.cookie_value);
    for (int i = 0; i < 5; i++) {              /* cookie-less, new connections: hashed */
        assert_int_equal(decide(&e, "", &d), 0);
        assert_reason(&d, "new");
        assert_int_equal(d.origin, origin);
    }
    for (int i = 0; i < 20; i++) {
        assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
        assert_reason(&d, "hit");
        assert_int_equal(d.origin, origin);
    }
    /* The cookie, not the address, pins the session. */
    env_client_ipv4(&e, 198, 51, 100, 1);
    assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
    assert_reason(&d, "hit");
    assert_int_equal(d.origin, origin);
    env_fini(&e);
}

static void test_ip_cookie_bounded_load(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, "'default_pools':['app'],'session_affinity':'ip_cookie',"
                                        "'hash_balance_factor':125", ""));
    struct affinity_decision d;
    env_client_ipv4(&e, 203, 0, 113, 10);
    assert_int_equal(decide(&e, "", &d), 0);
    long origin = d.origin;
    e.pool_slots[0][origin]->active = 100;     /* this thread's requests in flight */
    assert_int_equal(decide(&e, "", &d), 0);
    assert_true(d.origin != origin);
    e.pool_slots[0][origin]->active = 0;
    assert_int_equal(decide(&e, "", &d), 0);
    assert_int_equal(d.origin, origin);
    env_fini(&e);
}

/* ------------------------------------------------------------------------ */
/* header                                                                   */

static void test_header_mode(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, WITH_ATTRS("header", "'headers':['x-session']"), ""));
    struct affinity_decision d;
    assert_int_equal(decide(&e, "X-Session: abc\r\n", &d), 0);
    long origin = d.origin;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(decide(&e, "x-session: abc\r\n", &d), 0);
        assert_reason(&d, "hit");
        assert_int_equal(d.origin, origin);
        assert_false(d.set_cookie);
        assert_string_equal(d.strip_cookie, "__limpet");  /* stripped in header mode too */
        assert_string_equal(header_of(&e, &d), "hit");
    }
    bool seen[3] = {false};
    for (int i = 0; i < 100; i++) {
        char line[64];
        snprintf(line, sizeof(line), "X-Session: s%d\r\n", i);
        assert_int_equal(decide(&e, line, &d), 0);
        seen[d.origin] = true;
    }
    assert_true(seen[0] && seen[1] && seen[2]);

    /* No such header (or an empty one): limpet's cookie. */
    assert_int_equal(decide(&e, "X-Session: \r\n", &d), 0);
    assert_reason(&d, "new");
    assert_true(d.set_cookie);
    long cookie_origin = d.origin;
    char value[TOKEN_TEXT_MAX + 1];
    strcpy(value, d.cookie_value);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(decide(&e, cookie("__limpet", value), &d), 0);
        assert_reason(&d, "hit");
        assert_int_equal(d.origin, cookie_origin);
        assert_false(d.set_cookie);
    }
    env_fini(&e);
}

static void test_header_require_all_headers(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, WITH_ATTRS("header", "'headers':['x-a','x-b'],"
                                                             "'require_all_headers':true"), ""));
    struct affinity_decision d;
    assert_int_equal(decide(&e, "X-A: 1\r\n", &d), 0);
    assert_reason(&d, "new");                  /* not all: cookie */
    assert_true(d.set_cookie);
    assert_int_equal(decide(&e, "X-A: 1\r\nX-B: 2\r\n", &d), 0);
    assert_reason(&d, "hit");
    assert_false(d.set_cookie);
    long origin = d.origin;
    assert_int_equal(decide(&e, "X-B: 2\r\nX-A: 1\r\n", &d), 0);   /* order of fields */
    assert_int_equal(d.origin, origin);
    env_fini(&e);

    env_init(&e, env_snapshot(POOL_APP, WITH_ATTRS("header", "'headers':['x-a','x-b']"), ""));
    assert_int_equal(decide(&e, "X-A: 1\r\n", &d), 0);
    assert_reason(&d, "hit");                  /* any one will do */
    assert_false(d.set_cookie);
    env_fini(&e);
}

/* ------------------------------------------------------------------------ */
/* app_cookie                                                               */

static void test_app_cookie_prefix(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, WITH_ATTRS("app_cookie",
        "'app_cookie':{'name':'JSESSIONID','mode':'prefix','separator':'~'}"), ""));
    struct affinity_decision d;
    assert_int_equal(decide(&e, "", &d), 0);
    assert_reason(&d, "new");
    assert_false(d.set_cookie);                /* the application sets its cookie */
    assert_null(d.strip_cookie);
    assert_null(d.app_cookie);
    assert_string_equal(header_of(&e, &d), "new");

    size_t p, o;
    env_origin(&e, "app", "o2", &p, &o);
    char value[64];
    snprintf(value, sizeof(value), "%s~abc123", e.snap->aff->pools[p].app_prefix[o]);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(decide(&e, cookie("JSESSIONID", value), &d), 0);
        assert_reason(&d, "hit");
        assert_string_equal(origin_of(&e, &d), "o2");
        assert_string_equal(d.app_cookie, "JSESSIONID");
        assert_int_equal(d.app_prefix_strip, APP_PREFIX_LEN + 1);
        assert_true(d.session_hash != 0);
        assert_false(d.set_cookie);
    }
    assert_int_equal(decide(&e, cookie("JSESSIONID", "AAAAAAAA~abc123"), &d), 0);
    assert_reason(&d, "new");                  /* unknown prefix: a new session */
    assert_int_equal(decide(&e, cookie("JSESSIONID", "abc123"), &d), 0);
    assert_reason(&d, "new");

    set_healthy(&e, "o2", false);
    assert_int_equal(decide(&e, cookie("JSESSIONID", value), &d), 0);
    assert_reason(&d, "reassigned:unhealthy");
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o2");
    assert_string_not_equal(origin_of(&e, &d), "o2");
    env_fini(&e);
}

static void test_app_cookie_route(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(
        "{'name':'app','origins':[{'name':'o1','address':'127.0.0.1:9001'},"
        "{'name':'o2','address':'127.0.0.1:9002','route':'r2'},"
        "{'name':'o3','address':'127.0.0.1:9003'}]}",
        WITH_ATTRS("app_cookie", "'app_cookie':{'name':'JSESSIONID','mode':'route'}"), ""));
    struct affinity_decision d;
    static const struct { const char *value, *origin; } cases[] = {
        {"abc.r2", "o2"}, {"abc.o1", "o1"}, {"x.y.o3", "o3"}, {"abc.o2", NULL}, {"abc", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int k = 0; k < (cases[i].origin ? 20 : 1); k++) {
            assert_int_equal(decide(&e, cookie("JSESSIONID", cases[i].value), &d), 0);
            if (!cases[i].origin) {
                assert_reason(&d, "new");
                continue;
            }
            assert_reason(&d, "hit");
            assert_string_equal(origin_of(&e, &d), cases[i].origin);
            assert_null(d.app_cookie);         /* nothing rewritten */
        }
    }
    env_fini(&e);
}

#define POOL_ROUTES \
    "{'name':'app','origins':[{'name':'o1','address':'127.0.0.1:9001'}," \
    "{'name':'o2','address':'127.0.0.1:9002','route':'node2'}," \
    "{'name':'o3','address':'127.0.0.1:9003'}]}"

/* route mode: the value may come from a path parameter (Tomcat's
 * ";jsessionid="), used when no cookie names a route. */
static void test_app_cookie_route_url_parameter(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_ROUTES,
        WITH_ATTRS("app_cookie", "'app_cookie':{'name':'JSESSIONID','mode':'route'}"), ""));
    struct affinity_decision d;
    static const struct { const char *target, *origin; } cases[] = {
        {"/index.jsp;jsessionid=ABCDEF.node2", "o2"},
        {"/index.jsp;jsessionid=ABCDEF.node2?a=1&b=2", "o2"},
        {"/shop/cart;jsessionid=X.Y.o3", "o3"},
        {"/a;jsessionid=ABC.o1/b.jsp", "o1"},               /* in an inner segment */
        {"/x;v=1;jsessionid=ABC.node2;w=2", "o2"},          /* among other parameters */
        {"/index.jsp;jsessionid=ABCDEF.o2", NULL},          /* o2's route is node2 */
        {"/index.jsp;jsessionid=", NULL},
        {"/index.jsp;jsessionid=ABCDEF", NULL},
        {"/index.jsp?jsessionid=ABCDEF.node2", NULL},       /* a query, not a path parameter */
        {"/index.jsp;JSESSIONID=ABCDEF.node2", NULL},       /* names are exact */
        {"/index.jsp;xjsessionid=ABCDEF.node2", NULL},
        {"/jsessionid=ABCDEF.node2", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(decide_target(&e, cases[i].target, "", &d), 0);
        if (!cases[i].origin) {
            assert_reason(&d, "new");
            continue;
        }
        assert_reason(&d, "hit");
        assert_string_equal(origin_of(&e, &d), cases[i].origin);
        assert_true(d.session_hash != 0);
        assert_null(d.app_cookie);                 /* nothing rewritten */
        assert_false(d.set_route_cookie);
    }
    /* a cookie naming a route wins over the path; one naming none does not */
    assert_int_equal(decide_target(&e, "/p;jsessionid=A.node2", cookie("JSESSIONID", "B.o3"),
                                   &d), 0);
    assert_string_equal(origin_of(&e, &d), "o3");
    assert_int_equal(decide_target(&e, "/p;jsessionid=A.node2", cookie("JSESSIONID", "B"), &d),
                     0);
    assert_reason(&d, "hit");
    assert_string_equal(origin_of(&e, &d), "o2");
    env_fini(&e);

    /* another parameter name */
    env_init(&e, env_snapshot(POOL_ROUTES, WITH_ATTRS("app_cookie",
        "'app_cookie':{'name':'JSESSIONID','mode':'route','url_parameter':'sid'}"), ""));
    assert_int_equal(decide_target(&e, "/p;sid=A.node2", "", &d), 0);
    assert_string_equal(origin_of(&e, &d), "o2");
    assert_reason(&d, "hit");
    assert_int_equal(decide_target(&e, "/p;jsessionid=A.o3", "", &d), 0);
    assert_reason(&d, "new");
    env_fini(&e);
}

/* Quoted cookie values are read without their quotes. */
static void test_app_cookie_route_quoted(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_ROUTES,
        WITH_ATTRS("app_cookie", "'app_cookie':{'name':'JSESSIONID','mode':'route'}"), ""));
    struct affinity_decision d, plain;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(decide(&e, cookie("JSESSIONID", "\"X.node2\""), &d), 0);
        assert_reason(&d, "hit");
        assert_string_equal(origin_of(&e, &d), "o2");
    }
    assert_int_equal(decide(&e, "Cookie: a=1; JSESSIONID=\"9CA0.o3\"; b=2\r\n", &d), 0);
    assert_reason(&d, "hit");
    assert_string_equal(origin_of(&e, &d), "o3");
    /* same session as the unquoted value */
    assert_int_equal(decide(&e, cookie("JSESSIONID", "X.node2"), &plain), 0);
    assert_int_equal(decide(&e, cookie("JSESSIONID", "\"X.node2\""), &d), 0);
    assert_true(d.session_hash == plain.session_hash);
    assert_int_equal(decide(&e, cookie("JSESSIONID", "\"\""), &d), 0);
    assert_reason(&d, "new");
    env_fini(&e);
}

/* "issue": limpet sets NAME=.<route> when the request had no valid route or
 * its origin changed; never on a hit, never under temporary failover. */
static void test_app_cookie_route_issue(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_ROUTES, WITH_ATTRS("app_cookie",
        "'app_cookie':{'name':'ROUTEID','mode':'route','issue':true}"), ""));
    struct affinity_decision d;
    char value[64];

    assert_int_equal(decide(&e, "", &d), 0);         /* no route: new, cookie issued */
    assert_reason(&d, "new");
    assert_true(d.set_route_cookie);
    assert_false(d.set_cookie);                      /* not limpet's own cookie */
    assert_null(d.strip_cookie);
    long first = d.origin;
    for (int i = 0; i < 3; i++) {                    /* same connection, cookie not back yet */
        assert_int_equal(decide_on(&e, "", &d), 0);
        assert_int_equal(d.origin, first);
        assert_true(d.set_route_cookie);
    }
    snprintf(value, sizeof(value), ".%s", e.snap->cfg->pools[0].origins[first].route);
    for (int i = 0; i < 20; i++) {                   /* the cookie back: hits, nothing set */
        assert_int_equal(decide(&e, cookie("ROUTEID", value), &d), 0);
        assert_reason(&d, "hit");
        assert_int_equal(d.origin, first);
        assert_false(d.set_route_cookie);
    }
    assert_int_equal(decide(&e, cookie("ROUTEID", ".node2"), &d), 0);
    assert_string_equal(origin_of(&e, &d), "o2");
    assert_false(d.set_route_cookie);
    assert_int_equal(decide(&e, cookie("ROUTEID", ".gone"), &d), 0);   /* no valid route */
    assert_reason(&d, "new");
    assert_true(d.set_route_cookie);
    assert_int_equal(decide_target(&e, "/x;routeid=.o3", "", &d), 0); /* url_parameter */
    assert_reason(&d, "hit");
    assert_string_equal(origin_of(&e, &d), "o3");
    assert_false(d.set_route_cookie);

    set_healthy(&e, "o2", false);                    /* its origin changed */
    assert_int_equal(decide(&e, cookie("ROUTEID", ".node2"), &d), 0);
    assert_reason(&d, "reassigned:unhealthy");
    assert_string_not_equal(origin_of(&e, &d), "o2");
    assert_true(d.set_route_cookie);
    env_fini(&e);

    /* connect failure of the pinned origin: sticky moves the cookie to
     * wherever the request lands; temporary leaves it alone */
    env_init(&e, env_snapshot(POOL_ROUTES, WITH_ATTRS("app_cookie",
        "'app_cookie':{'name':'ROUTEID','mode':'route','issue':true},"
        "'zero_downtime_failover':'sticky'"), ""));
    assert_int_equal(decide(&e, cookie("ROUTEID", ".o1"), &d), 0);
    assert_reason(&d, "hit");
    assert_true(affinity_failover(&e.ctx, &d));
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
    assert_reason(&d, "failover:sticky");
    assert_string_not_equal(origin_of(&e, &d), "o1");
    assert_true(d.set_route_cookie);
    assert_false(d.set_cookie);
    env_fini(&e);
    env_init(&e, env_snapshot(POOL_ROUTES, WITH_ATTRS("app_cookie",
        "'app_cookie':{'name':'ROUTEID','mode':'route','issue':true},"
        "'zero_downtime_failover':'temporary'"), ""));
    assert_int_equal(decide(&e, cookie("ROUTEID", ".o1"), &d), 0);
    assert_true(affinity_failover(&e.ctx, &d));
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
    assert_reason(&d, "failover:temporary");
    assert_false(d.set_route_cookie);
    env_fini(&e);

    /* without "issue" limpet never sets it */
    env_init(&e, env_snapshot(POOL_ROUTES,
        WITH_ATTRS("app_cookie", "'app_cookie':{'name':'ROUTEID','mode':'route'}"), ""));
    assert_int_equal(decide(&e, "", &d), 0);
    assert_reason(&d, "new");
    assert_false(d.set_route_cookie);
    assert_int_equal(decide(&e, cookie("ROUTEID", ".gone"), &d), 0);
    assert_false(d.set_route_cookie);
    env_fini(&e);
}

/* ------------------------------------------------------------------------ */
/* per-connection pin                                                       */

static void test_connection_pin(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, env_snapshot(POOL_APP, COOKIE_LB, ""));
    struct affinity_decision d;
    assert_int_equal(decide(&e, "", &d), 0);
    long first = d.origin;
    for (int i = 0; i < 5; i++) {              /* same connection, cookie not back yet */
        assert_int_equal(decide_on(&e, "", &d), 0);
        assert_reason(&d, "new");
        assert_int_equal(d.origin, first);
        assert_true(d.set_cookie);
        assert_string_equal(header_of(&e, &d), "new");
    }
    assert_int_equal(decide(&e, "", &d), 0);   /* another connection: steered anew */
    assert_true(d.origin != first);

    /* The pin gives way when its origin cannot be used. */
    assert_int_equal(decide(&e, "", &d), 0);
    long pinned = d.origin;
    set_healthy(&e, env_name(&e, 0, pinned), false);
    assert_int_equal(decide_on(&e, "", &d), 0);
    assert_true(d.origin != pinned);
    env_fini(&e);

    env_init(&e, env_snapshot(POOL_APP, WITH_ATTRS("app_cookie",
        "'app_cookie':{'name':'JSESSIONID','mode':'prefix','separator':'~'}"), ""));
    assert_int_equal(decide(&e, "", &d), 0);
    first = d.origin;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(decide_on(&e, "", &d), 0);
        assert_int_equal(d.origin, first);
    }
    env_fini(&e);
}

/* ------------------------------------------------------------------------ */
/* A retry stays on the exchange's snapshot (regression: use after free).   */

/*
 * The exchange holds one reference to snapshot A. A new snapshot B (other
 * pool, other cookie name) becomes current and every other reference to A
 * is dropped, so A lives only through the exchange. A failover and two
 * retries then route on the exchange's context: they must read A (under
 * ASan, any read of a released A would abort), keep A's indexes, and point
 * the decision's strings into A's configuration.
 */
static void test_retry_stays_on_exchange_snapshot(void **state)
{
    (void)state;
    struct env e;
    struct snapshot *a = env_snapshot(POOL_APP, WITH_ATTRS("cookie",
        "'cookie_name':'sid_a','zero_downtime_failover':'sticky'"), "");
    env_init(&e, a);
    struct snapshot *exchange_ref = snapshot_ref(a);
    struct affinity_decision d;
    assert_int_equal(decide(&e, cookie("sid_a", cookie_for(&e, "o1")), &d), 0);
    assert_reason(&d, "hit");

    struct snapshot *b = env_snapshot(
        "{'name':'other','origins':[{'name':'n1','address':'127.0.0.1:9021'}]}",
        "'default_pools':['other'],'session_affinity':'cookie',"
        "'session_affinity_attributes':{'cookie_name':'sid_b'}", "");
    snapshot_set_current(b);
    snapshot_release(a);                        /* A's own reference: only the exchange's left */
    assert_int_equal(atomic_load(&a->refs), 1);

    route_origin_failed(&e.ctx, (size_t)d.pool, (size_t)d.origin, -ECONNREFUSED);
    assert_true(affinity_failover(&e.ctx, &d));
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
    assert_ptr_equal(e.ctx.snap, a);
    assert_string_equal(d.strip_cookie, "sid_a");
    assert_string_equal(e.snap->cfg->pools[d.pool].name, "app");
    assert_string_not_equal(origin_of(&e, &d), "o1");
    assert_string_equal(header_of(&e, &d), "reassigned; previous=o1");
    assert_true(d.set_cookie);

    route_origin_failed(&e.ctx, (size_t)d.pool, (size_t)d.origin, -ECONNREFUSED);
    assert_true(affinity_failover(&e.ctx, &d));
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), 0);
    assert_int_equal(d.tried.n, 3);             /* o1, o2, o3 of A: all distinct */
    for (unsigned i = 0; i < d.tried.n; i++) {
        assert_int_equal(d.tried.at[i].pool, 0);
        for (unsigned k = 0; k < i; k++)
            assert_true(d.tried.at[k].origin != d.tried.at[i].origin);
    }
    route_origin_failed(&e.ctx, (size_t)d.pool, (size_t)d.origin, -ECONNREFUSED);
    assert_true(affinity_failover(&e.ctx, &d));
    assert_int_equal(affinity_reroute(&e.ctx, e.tokens, &d), -1);  /* A has no fourth */

    /* The cookie it issued verifies against A's keys and names an origin of A. */
    struct token tok;
    assert_int_equal(token_verify(e.tokens, d.cookie_value, TOKEN_TEXT_MAX, (uint32_t)time(NULL),
                                  0, 0, &tok), TOKEN_VALID);
    env_fini_keep(&e, true);
    snapshot_release(exchange_ref);             /* the exchange ends: A goes */
    snapshot_set_current(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_steers_every_request),
        cmocka_unit_test(test_cookie_new_session_then_hits),
        cmocka_unit_test(test_cookie_invalid),
        cmocka_unit_test(test_cookie_unhealthy_reassigned),
        cmocka_unit_test(test_cookie_disabled_reassigned),
        cmocka_unit_test(test_cookie_drain),
        cmocka_unit_test(test_failover_none),
        cmocka_unit_test(test_failover_temporary),
        cmocka_unit_test(test_failover_sticky),
        cmocka_unit_test(test_failover_sticky_sets_no_cookie_nothing_reads),
        cmocka_unit_test(test_fallback_pool),
        cmocka_unit_test(test_ip_same_address_same_origin),
        cmocka_unit_test(test_ip_ipv6_hashes_on_the_64),
        cmocka_unit_test(test_ip_drain_keeps_hashed_sessions),
        cmocka_unit_test(test_ip_cookie),
        cmocka_unit_test(test_ip_cookie_bounded_load),
        cmocka_unit_test(test_header_mode),
        cmocka_unit_test(test_header_require_all_headers),
        cmocka_unit_test(test_app_cookie_prefix),
        cmocka_unit_test(test_app_cookie_route),
        cmocka_unit_test(test_app_cookie_route_url_parameter),
        cmocka_unit_test(test_app_cookie_route_quoted),
        cmocka_unit_test(test_app_cookie_route_issue),
        cmocka_unit_test(test_connection_pin),
        cmocka_unit_test(test_retry_stays_on_exchange_snapshot),
    };
    return cmocka_run_group_tests(tests, env_setup_dir, env_teardown_dir);
}
