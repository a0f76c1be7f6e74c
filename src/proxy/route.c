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

#include <string.h>

#include "core/log.h"
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
static long choose_in_pool(struct client *c, size_t p)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    const struct snapshot *s = ex->use->snap;
    const struct cfg_pool *pool = &s->cfg->pools[p];
    bool *candidate = w->candidate_scratch;
    bool any = false;
    uint64_t now = w->loop.now_ms;

    for (size_t o = 0; o < pool->num_origins; o++) {
        const struct origin_shared *os = s->pools[p].origins[o];
        candidate[o] = snapshot_origin_usable(s, p, o) &&
                       atomic_load_explicit(&os->retry_after_ms, memory_order_relaxed) <= now &&
                       !already_tried(ex, p, o);
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
    return steer_pick(pool->origin_steering, pool->origins, w->pool_slots[p], candidate,
                      pool->num_origins, &w->rng);
}

/* Moves an exchange that outlived its snapshot onto the current one (a retry
 * routes with the newest configuration; origin indexes start afresh). */
static void follow_current_snapshot(struct client *c)
{
    struct worker *w = c->worker;
    struct exchange *ex = &c->ex;
    if (ex->use == w->cur)
        return;
    worker_snapshot_put(w, ex->use);
    ex->use = worker_snapshot_get(w);
    ex->lb = c->listener->lb_index;
    ex->num_tried = 0;
}

int route_choose(struct client *c)
{
    struct exchange *ex = &c->ex;
    follow_current_snapshot(c);
    if (ex->num_tried >= MAX_ATTEMPTS || ex->lb < 0)
        return -1;
    const struct cfg_load_balancer *lb = &ex->use->snap->cfg->load_balancers[ex->lb];
    for (size_t i = 0; i <= lb->num_default_pools; i++) {
        long p;
        if (i < lb->num_default_pools)
            p = (long)lb->default_pools[i];
        else if (lb->fallback_pool >= 0)
            p = lb->fallback_pool;
        else
            break;
        long o = choose_in_pool(c, (size_t)p);
        if (o >= 0) {
            ex->pool = p;
            ex->origin = o;
            ex->tried[ex->num_tried].pool = (uint16_t)p;
            ex->tried[ex->num_tried].origin = (uint16_t)o;
            ex->num_tried++;
            ex->reason = i < lb->num_default_pools ? REASON_NONE : REASON_FALLBACK_POOL;
            return 0;
        }
    }
    return -1;
}

void route_origin_failed(struct client *c, int err)
{
    struct exchange *ex = &c->ex;
    const struct snapshot *s = ex->use->snap;
    struct origin_shared *os = s->pools[ex->pool].origins[ex->origin];
    unsigned failures = atomic_fetch_add(&os->passive_failures, 1);
    unsigned shift = failures < 4 ? failures : 4;
    uint64_t backoff = (uint64_t)PASSIVE_BACKOFF_MIN_MS << shift;
    if (backoff > PASSIVE_BACKOFF_MAX_MS)
        backoff = PASSIVE_BACKOFF_MAX_MS;
    atomic_store(&os->retry_after_ms, c->worker->loop.now_ms + backoff);
    if (failures == 0)
        log_error("origin %s/%s unreachable (%s): not chosen for %llu ms, longer while it fails",
                  os->pool, os->name, strerror(err > 0 ? err : -err),
                  (unsigned long long)backoff);
}

void route_origin_succeeded(struct client *c)
{
    struct exchange *ex = &c->ex;
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
