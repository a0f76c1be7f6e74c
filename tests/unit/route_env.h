/*
 * route_env — what test_route.c and test_affinity.c share: real snapshots
 * built from a JSON config text, and the per-thread state a worker would
 * give routing (steering slots, scratch, generator, counters, token context),
 * with no socket, buffer or worker.
 *
 * Fixtures are written with single quotes; the config gets one listener on a
 * free loopback port (snapshots open it; nothing connects) and a secret_file
 * with a fixed key, so cookies verify across the snapshots of one test.
 * Each test releases what it built, so origin identities (health, drains)
 * start afresh in the next one.
 */
#ifndef LIMPET_TESTS_ROUTE_ENV_H
#define LIMPET_TESTS_ROUTE_ENV_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "affinity/affinity.h"
#include "balance/route.h"
#include "config/config.h"
#include "control/snapshot_build.h"
#include "core/loop.h"
#include "core/stats.h"
#include "http/h1.h"

/* Three origins in pool "app", steered round robin. */
#define POOL_APP \
    "{'name':'app','origins':[{'name':'o1','address':'127.0.0.1:9001'}," \
    "{'name':'o2','address':'127.0.0.1:9002'},{'name':'o3','address':'127.0.0.1:9003'}]}"

static char env_dir[64];          /* mkdtemp() directory of this binary */
static char env_key_file[128];    /* the fixed cookie key */
static int env_port;              /* the listener every fixture uses */

/* A routing context over one snapshot, as a worker thread would make it. */
struct env {
    struct snapshot *snap;        /* one reference held */
    struct steer_slot *slots;     /* every origin's slot, pool after pool */
    struct steer_slot ***pool_slots;  /* [pool][origin] into slots */
    uint32_t *pool_cursor;        /* [pool]: place in each pool's order (0: its start) */
    bool *candidates;             /* scratch for the largest pool */
    uint64_t rng;                 /* the generator */
    struct origin_stats *stats;   /* [SNAPSHOT_MAX_ORIGINS] */
    struct token_ctx *tokens;     /* bound to snap's keys */
    struct route_ctx ctx;         /* what routing sees */
    struct affinity_pin pin;      /* the current "connection" */
};

static inline int env_setup_dir(void **state)
{
    (void)state;
    strcpy(env_dir, "/tmp/limpet-route-XXXXXX");
    if (!mkdtemp(env_dir))
        return -1;
    snprintf(env_key_file, sizeof(env_key_file), "%s/affinity.key", env_dir);
    FILE *f = fopen(env_key_file, "w");
    if (!f)
        return -1;
    fputs("1ee59c255d8528125a3475fcb02f288ccbccdeba8fb35ed3517004ddd88693e7\n", f);
    fclose(f);
    /* A free port: bound to port 0 once, then closed; snapshots listen on it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
        return -1;
    env_port = ntohs(sin.sin_port);
    close(fd);
    snapshot_system_init(1);
    return 0;
}

static inline int env_teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", env_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Builds a snapshot of a config with `pools` (a JSON array body) and load
 * balancer "www" with `lb` fields; `top` adds top-level keys (or ""). */
static inline struct snapshot *env_snapshot(const char *pools, const char *lb,
                                            const char *top)
{
    char *text = NULL;
    int n = asprintf(&text,
                     "{'listen':[{'address':'127.0.0.1:%d','load_balancer':'www'}],"
                     "'secret_file':'%s',%s'pools':[%s],'load_balancers':[{'name':'www',%s}]}",
                     env_port, env_key_file, top, pools, lb);
    assert_true(n > 0);
    for (char *p = text; *p; p++)
        if (*p == '\'')
            *p = '"';
    struct config_errors errs;
    struct config *cfg = config_load_string(text, "t.json", &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.count; i++)
            print_message("  error: %s\n", errs.messages[i]);
        fail_msg("config refused: %s", text);
    }
    config_errors_fini(&errs);
    free(text);
    char err[256];
    struct snapshot *s = snapshot_build(cfg, err, sizeof(err));
    if (!s)
        fail_msg("snapshot_build: %s", err);
    return s;
}

/* Takes over the caller's reference to s. */
static inline void env_init(struct env *e, struct snapshot *s)
{
    memset(e, 0, sizeof(*e));
    e->snap = s;
    const struct config *cfg = s->cfg;
    size_t total = 0, largest = 1;
    for (size_t p = 0; p < cfg->num_pools; p++) {
        total += cfg->pools[p].num_origins;
        if (cfg->pools[p].num_origins > largest)
            largest = cfg->pools[p].num_origins;
    }
    e->slots = calloc(total, sizeof(*e->slots));
    e->pool_slots = calloc(cfg->num_pools, sizeof(*e->pool_slots));
    e->candidates = calloc(largest, sizeof(*e->candidates));
    e->pool_cursor = calloc(cfg->num_pools, sizeof(*e->pool_cursor));
    assert_non_null(e->pool_cursor);
    e->stats = calloc(SNAPSHOT_MAX_ORIGINS, sizeof(*e->stats));
    assert_non_null(e->slots);
    assert_non_null(e->pool_slots);
    assert_non_null(e->candidates);
    assert_non_null(e->stats);
    struct steer_slot *next = e->slots;
    for (size_t p = 0; p < cfg->num_pools; p++) {
        e->pool_slots[p] = calloc(cfg->pools[p].num_origins, sizeof(**e->pool_slots));
        assert_non_null(e->pool_slots[p]);
        for (size_t o = 0; o < cfg->pools[p].num_origins; o++)
            e->pool_slots[p][o] = next++;
    }
    e->rng = 42;
    e->tokens = token_ctx_new(s->aff->keys);
    assert_non_null(e->tokens);
    e->ctx = (struct route_ctx){
        .snap = s, .lb = 0, .client_family = 4, .client_addr = {192, 0, 2, 1},
        .now_ms = clock_ms(), .pool_slots = e->pool_slots,
        .pool_cursor = e->pool_cursor, .candidates = e->candidates,
        .rng = &e->rng, .origin_stats = e->stats,
    };
}

/* Frees the thread state; releases the snapshot unless keep_snapshot. */
static inline void env_fini_keep(struct env *e, bool keep_snapshot)
{
    token_ctx_free(e->tokens);
    for (size_t p = 0; p < e->snap->cfg->num_pools; p++)
        free(e->pool_slots[p]);
    free(e->pool_slots);
    free(e->pool_cursor);
    free(e->slots);
    free(e->candidates);
    free(e->stats);
    if (!keep_snapshot)
        snapshot_release(e->snap);
}

static inline void env_fini(struct env *e)
{
    env_fini_keep(e, false);
}

static inline void env_client_ipv4(struct env *e, uint8_t a, uint8_t b, uint8_t c,
                                   uint8_t d)
{
    memset(e->ctx.client_addr, 0, sizeof(e->ctx.client_addr));
    e->ctx.client_family = 4;
    e->ctx.client_addr[0] = a;
    e->ctx.client_addr[1] = b;
    e->ctx.client_addr[2] = c;
    e->ctx.client_addr[3] = d;
}

static inline void env_client_ipv6(struct env *e, const char *text)
{
    struct in6_addr a;
    assert_int_equal(inet_pton(AF_INET6, text, &a), 1);
    e->ctx.client_family = 6;
    memcpy(e->ctx.client_addr, &a, 16);
}

/* The origin_shared of origin `name` in pool `pool`. */
static inline struct origin_shared *env_origin(const struct env *e, const char *pool,
                                               const char *name, size_t *pp, size_t *po)
{
    size_t p, o;
    if (!snapshot_find_origin(e->snap, pool, name, &p, &o))
        fail_msg("no origin %s/%s", pool, name);
    if (pp)
        *pp = p;
    if (po)
        *po = o;
    return e->snap->pools[p].origins[o];
}

/* Name of origin (pool, origin) of e's snapshot. */
static inline const char *env_name(const struct env *e, long pool, long origin)
{
    assert_true(pool >= 0 && (size_t)pool < e->snap->cfg->num_pools);
    assert_true(origin >= 0 && (size_t)origin < e->snap->cfg->pools[pool].num_origins);
    return e->snap->cfg->pools[pool].origins[origin].name;
}

#endif
