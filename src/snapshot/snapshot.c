/*
 * snapshot — references and the read-only queries of snapshots (see
 * snapshot.h). Building them is the control side's (control/snapshot_build.c).
 */
#include "snapshot/snapshot.h"

#include <string.h>

struct snapshot *snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void snapshot_release(struct snapshot *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        s->free_cb(s);
}

struct snapshot_base *snapshot_base_ref(struct snapshot_base *b)
{
    atomic_fetch_add(&b->refs, 1);
    return b;
}

void snapshot_base_release(struct snapshot_base *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        b->free_cb(b);
}

bool snapshot_origin_usable(const struct snapshot *s, size_t pool, size_t origin)
{
    const struct cfg_origin *o = &s->cfg->pools[pool].origins[origin];
    return o->state == ORIGIN_ENABLED && o->weight > 0 &&
           atomic_load_explicit(&s->pools[pool].origins[origin]->healthy, memory_order_relaxed);
}

bool snapshot_origin_healthy(const struct snapshot *s, size_t pool, size_t origin)
{
    const struct origin_shared *os = s->pools[pool].origins[origin];
    return atomic_load_explicit(&os->healthy, memory_order_relaxed) &&
           (s->cfg->pools[pool].monitor ||
            !atomic_load_explicit(&os->passive_out, memory_order_relaxed));
}

bool snapshot_find_origin(const struct snapshot *s, const char *pool, const char *origin,
                          size_t *pool_index, size_t *origin_index)
{
    for (size_t p = 0; p < s->cfg->num_pools; p++) {
        if (strcmp(s->cfg->pools[p].name, pool) != 0)
            continue;
        for (size_t o = 0; o < s->cfg->pools[p].num_origins; o++) {
            if (strcmp(s->cfg->pools[p].origins[o].name, origin) == 0) {
                *pool_index = p;
                *origin_index = o;
                return true;
            }
        }
    }
    return false;
}
