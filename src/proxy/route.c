/*
 * route — picks the pool and origin of a request.
 *
 * Pools are tried in the load balancer's `default_pools` order (SPEC §2
 * steering_policy "off": later pools are standbys), then `fallback_pool`.
 * Within a pool the origin is chosen by its `origin_steering` among the
 * origins that are usable: enabled, weight above 0, not tried already for
 * this request, and not in the passive-failure backoff of this thread (an
 * origin that refused a connection is left alone for a while, doubling up to
 * PASSIVE_BACKOFF_MAX_MS, so a dead origin does not cost every request a
 * failed connect). Connect failures, resets and 5xx answers are counted in
 * origin_shared->passive_failures until a good answer; health.c reads that
 * count to mark a monitored origin down (SPEC §5 passive checks).
 */
#include "proxy/proxy.h"

#include "affinity/affinity.h"

#include <netinet/in.h>
#include <string.h>

#include "core/log.h"
#include "proxy/thread.h"

#define PASSIVE_BACKOFF_MIN_MS 1000u
#define PASSIVE_BACKOFF_MAX_MS 10000u

static bool already_tried(const struct exchange *ex, size_t pool, size_t origin)
{
    for (unsigned i = 0; i < ex->num_tried; i++)
        if (ex->tried[i].pool == pool && ex->tried[i].origin == origin)
            return true;
    return false;
}

bool route_origin_usable(const struct client *c, size_t p, size_t o)
{
    const struct snapshot *s = c->ex->use->snap;
    const struct origin_shared *os = s->pools[p].origins[o];
    return snapshot_origin_usable(s, p, o) &&
           atomic_load_explicit(&os->retry_after_ms, memory_order_relaxed) <=
               c->pt->w->loop.now_ms;
}

/* Chooses an origin in one pool; returns its index or -1. */
static long choose_in_pool(struct client *c, size_t p)
{
    struct proxy_thread *pt = c->pt;
    struct exchange *ex = c->ex;
    const struct snapshot *s = ex->use->snap;
    const struct cfg_pool *pool = &s->cfg->pools[p];
    bool *candidate = pt->candidate_scratch;
    bool any = false;

    for (size_t o = 0; o < pool->num_origins; o++) {
        candidate[o] = route_origin_usable(c, p, o) && !already_tried(ex, p, o);
        any |= candidate[o];
    }
    if (!any)
        return -1;
    if (pool->origin_steering == STEER_HASH) {
        uint8_t key[16];
        long o = maglev_lookup(&s->aff->pools[p].usable,
                               maglev_hash(key, affinity_client_key(c, key)));
        if (o >= 0 && candidate[o])
            return o;
        /* the client's origin was tried already: any other will do */
    }
    return steer_pick(pool->origin_steering, pool->origins, ex->use->pool_slots[p], candidate,
                      pool->num_origins, &pt->w->rng);
}

/* Sum of the usable origins' weights of pool p (0: nothing usable). */
static uint64_t pool_usable_weight(const struct client *c, size_t p)
{
    const struct cfg_pool *pool = &c->ex->use->snap->cfg->pools[p];
    uint64_t total = 0;
    for (size_t o = 0; o < pool->num_origins; o++)
        if (route_origin_usable(c, p, o))
            total += pool->origins[o].weight;
    return total;
}

/* Does the client address fall in the CIDR? */
static bool cidr_contains(const struct cfg_cidr *cidr, const struct client *c)
{
    const struct sockaddr_storage *ss = &cidr->net.ss;
    const uint8_t *net;
    if (ss->ss_family == AF_INET && c->peer_family == 4)
        net = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6 && c->peer_family == 6)
        net = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    else
        return false;
    unsigned bits = cidr->prefix_len;
    for (unsigned i = 0; bits > 0; i++, bits = bits > 8 ? bits - 8 : 0) {
        uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
        if ((c->peer_addr[i] & mask) != (net[i] & mask))
            return false;
    }
    return true;
}

/* The region_pools entry for the client's region (longest prefix wins), or NULL. */
static const struct cfg_region_pools *client_region_pools(const struct client *c,
                                                          const struct config *cfg,
                                                          const struct cfg_load_balancer *lb)
{
    const char *best = NULL;
    int best_len = -1;
    for (size_t r = 0; r < cfg->num_client_regions; r++) {
        const struct cfg_region *region = &cfg->client_regions[r];
        for (size_t k = 0; k < region->num_cidrs; k++) {
            if ((int)region->cidrs[k].prefix_len > best_len &&
                cidr_contains(&region->cidrs[k], c)) {
                best = region->name;
                best_len = (int)region->cidrs[k].prefix_len;
            }
        }
    }
    for (size_t i = 0; best && i < lb->num_region_pools; i++)
        if (strcmp(lb->region_pools[i].region, best) == 0)
            return &lb->region_pools[i];
    return NULL;
}

/* Appends pool p to the order unless it is there already. */
static void order_add(long *pools, size_t *n, size_t max, long p)
{
    for (size_t i = 0; i < *n; i++)
        if (pools[i] == p)
            return;
    if (*n < max)
        pools[(*n)++] = p;
}

/* steering_policy "random": a default pool drawn by its usable weight, or -1.
 * A consistent-hash session draws with its key, so it always lands in the
 * same pool; others draw with the worker's generator. */
static long random_pool(struct client *c, const struct cfg_load_balancer *lb,
                        const uint64_t *key_hash)
{
    uint64_t total = 0;
    for (size_t i = 0; i < lb->num_default_pools; i++)
        total += pool_usable_weight(c, lb->default_pools[i]);
    if (total == 0)
        return -1;
    uint64_t r = (key_hash ? *key_hash : steer_random(&c->pt->w->rng)) % total;
    for (size_t i = 0; i < lb->num_default_pools; i++) {
        uint64_t w = pool_usable_weight(c, lb->default_pools[i]);
        if (r < w)
            return (long)lb->default_pools[i];
        r -= w;
    }
    return -1;
}

size_t route_pool_order(struct client *c, long *pools, size_t max, bool *fallback_last,
                        const uint64_t *key_hash)
{
    const struct config *cfg = c->ex->use->snap->cfg;
    const struct cfg_load_balancer *lb = &cfg->load_balancers[c->ex->lb];
    size_t n = 0;
    if (lb->steering_policy == POLICY_GEO) {
        const struct cfg_region_pools *rp = client_region_pools(c, cfg, lb);
        for (size_t i = 0; rp && i < rp->num_pools; i++)
            order_add(pools, &n, max, (long)rp->pools[i]);
    } else if (lb->steering_policy == POLICY_RANDOM) {
        long p = random_pool(c, lb, key_hash);
        if (p >= 0)
            order_add(pools, &n, max, p);
    }
    /* "off", and what the others fall back to: default pools in order. */
    for (size_t i = 0; i < lb->num_default_pools; i++)
        order_add(pools, &n, max, (long)lb->default_pools[i]);
    size_t before = n;
    if (lb->fallback_pool >= 0)
        order_add(pools, &n, max, lb->fallback_pool);
    *fallback_last = n > before;
    return n;
}

int route_choose(struct client *c)
{
    struct exchange *ex = c->ex;
    if (ex->num_tried >= MAX_ATTEMPTS || ex->lb < 0)
        return -1;
    long pools[ROUTE_MAX_POOLS];
    bool fallback_last;
    size_t n = route_pool_order(c, pools, ROUTE_MAX_POOLS, &fallback_last, NULL);
    for (size_t i = 0; i < n; i++) {
        long o = choose_in_pool(c, (size_t)pools[i]);
        if (o < 0)
            continue;
        ex->pool = pools[i];
        ex->origin = o;
        ex->tried[ex->num_tried].pool = (uint16_t)pools[i];
        ex->tried[ex->num_tried].origin = (uint16_t)o;
        ex->num_tried++;
        ex->reason = fallback_last && i == n - 1 ? REASON_FALLBACK_POOL : REASON_NONE;
        return 0;
    }
    return -1;
}

void route_origin_failed(struct client *c, int err)
{
    struct exchange *ex = c->ex;
    const struct snapshot *s = ex->use->snap;
    struct origin_shared *os = s->pools[ex->pool].origins[ex->origin];
    unsigned failures = atomic_fetch_add(&os->passive_failures, 1);
    STAT_ADD(c->pt->w->stats.origins[os->id].connect_failures, 1);
    unsigned shift = failures < 4 ? failures : 4;
    uint64_t backoff = (uint64_t)PASSIVE_BACKOFF_MIN_MS << shift;
    if (backoff > PASSIVE_BACKOFF_MAX_MS)
        backoff = PASSIVE_BACKOFF_MAX_MS;
    atomic_store(&os->retry_after_ms, c->pt->w->loop.now_ms + backoff);
    if (failures == 0)
        log_error("origin %s/%s unreachable (%s): not chosen for %llu ms, longer while it fails",
                  os->pool, os->name, strerror(err > 0 ? err : -err),
                  (unsigned long long)backoff);
}

void route_origin_succeeded(struct client *c)
{
    struct exchange *ex = c->ex;
    struct origin_shared *os = ex->use->snap->pools[ex->pool].origins[ex->origin];
    if (ex->status >= 500) {
        /* a passive failure too, with no backoff: health.c marks a monitored
         * origin down when they reach its monitor's retries */
        atomic_fetch_add_explicit(&os->passive_failures, 1, memory_order_relaxed);
        return;
    }
    if (atomic_load_explicit(&os->passive_failures, memory_order_relaxed) == 0)
        return;
    atomic_store(&os->passive_failures, 0);
    if (atomic_exchange(&os->retry_after_ms, 0) != 0)
        log_error("origin %s/%s reachable again", os->pool, os->name);
}
