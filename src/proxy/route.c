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
 * failed connect).
 */
#include "proxy/proxy.h"

#include "core/worker.h"

#define PASSIVE_BACKOFF_MIN_MS 1000u
#define PASSIVE_BACKOFF_MAX_MS 10000u

static bool already_tried(const struct exchange *ex, size_t pool, size_t origin)
{
    for (unsigned i = 0; i < ex->num_tried; i++)
        if (ex->tried[i].pool == pool && ex->tried[i].origin == origin)
            return true;
    return false;
}

/* Chooses an origin in one pool; returns its index or -1. */
static long choose_in_pool(struct worker *w, struct exchange *ex, size_t p)
{
    const struct cfg_pool *pool = &w->cfg->pools[p];
    struct origin_rt *rt = w->pools[p].origins;
    bool *candidate = w->candidate_scratch;
    bool any = false;
    uint64_t now = w->loop.now_ms;

    for (size_t o = 0; o < pool->num_origins; o++) {
        const struct cfg_origin *origin = &pool->origins[o];
        candidate[o] = origin->state == ORIGIN_ENABLED && origin->weight > 0 &&
                       rt[o].retry_after_ms <= now && !already_tried(ex, p, o);
        any |= candidate[o];
    }
    if (!any)
        return -1;

    return steer_pick(pool->origin_steering, pool->origins, w->pools[p].slots, candidate,
                      pool->num_origins, &w->rng);
}

int route_choose(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    const struct cfg_load_balancer *lb =
        &w->cfg->load_balancers[c->listener->cfg->load_balancer];

    if (ex->num_tried >= MAX_ATTEMPTS)
        return -1;
    for (size_t i = 0; i <= lb->num_default_pools; i++) {
        long p;
        if (i < lb->num_default_pools)
            p = (long)lb->default_pools[i];
        else if (lb->fallback_pool >= 0)
            p = lb->fallback_pool;
        else
            break;
        long o = choose_in_pool(w, ex, (size_t)p);
        if (o >= 0) {
            ex->pool = p;
            ex->origin = o;
            ex->tried[ex->num_tried].pool = (uint16_t)p;
            ex->tried[ex->num_tried].origin = (uint16_t)o;
            ex->num_tried++;
            ex->affinity = i < lb->num_default_pools ? "none" : "fallback-pool";
            return 0;
        }
    }
    return -1;
}

void route_origin_failed(struct worker *w, size_t pool, size_t origin)
{
    struct origin_rt *rt = &w->pools[pool].origins[origin];
    unsigned shift = rt->connect_failures < 4 ? rt->connect_failures : 4;
    uint64_t backoff = (uint64_t)PASSIVE_BACKOFF_MIN_MS << shift;
    if (backoff > PASSIVE_BACKOFF_MAX_MS)
        backoff = PASSIVE_BACKOFF_MAX_MS;
    rt->connect_failures++;
    rt->retry_after_ms = w->loop.now_ms + backoff;
}

void route_origin_succeeded(struct worker *w, size_t pool, size_t origin)
{
    struct origin_rt *rt = &w->pools[pool].origins[origin];
    rt->connect_failures = 0;
    rt->retry_after_ms = 0;
}
