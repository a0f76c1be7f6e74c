/*
 * drain — notices, on the control thread, when a draining origin's
 * drain_duration is over, and logs it once with the estimate of distinct
 * sessions it served in the last TTL window, so an operator can see when
 * the origin is empty (SPEC §3). The sessions themselves move on their own:
 * each request checks the drain time (affinity.c).
 */
#include "control/drain.h"

#include "admin/view.h"
#include "control/snapshot_build.h"
#include "core/log.h"

#define DRAIN_CHECK_MS 1000

static void drain_check_cb(struct loop *loop, struct timer *t)
{
    struct control *ctl = loop->owner;
    const struct snapshot *s = snapshot_current();
    bool ended = false;
    for (size_t p = 0; s && p < s->cfg->num_pools; p++) {
        const struct cfg_pool *pool = &s->cfg->pools[p];
        for (size_t o = 0; o < pool->num_origins; o++) {
            struct origin_shared *os = s->pools[p].origins[o];
            uint64_t started = atomic_load(&os->drain_started_ms);
            if (pool->origins[o].state != ORIGIN_DRAINING || started == 0 ||
                os->drain_end_logged)
                continue;
            double duration = config_pool_drain_duration(s->cfg, p);
            if ((double)(loop->now_ms - started) < duration * 1000.0)
                continue;
            struct origin_totals totals;
            view_origin_totals(ctl, os, &totals);
            log_error("origin %s/%s drained: drain_duration %gs over, its sessions now move "
                      "(about %llu sessions seen in the last TTL window, %u requests in flight)",
                      pool->name, pool->origins[o].name, duration,
                      (unsigned long long)totals.sessions, (unsigned)totals.active);
            os->drain_end_logged = true;
            ended = true;
        }
    }
    if (ended) /* hash tables stop keeping the drained origin for its old sessions */
        control_refresh(ctl);
    timer_arm(loop, t, DRAIN_CHECK_MS);
}

void drain_watch_start(struct control *ctl)
{
    timer_init(&ctl->drain_timer, drain_check_cb);
    timer_arm(&ctl->loop, &ctl->drain_timer, DRAIN_CHECK_MS);
}
