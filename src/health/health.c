/*
 * health — per-origin health state, check schedule, passive scan and
 * reconciliation with published snapshots (see health.h).
 *
 * Control thread only. Monitored origins are kept in `by_id`, indexed by
 * origin_shared->id (unique among live origins, and every origin we point to
 * is alive: `snap`, the last synced snapshot, holds them). Each has one timer
 * for its next check and one probe; a probe's result feeds health_count(),
 * and a change of verdict goes through set_verdict(): atomic store, log,
 * counters, and a refresh of the published state on the next loop turn.
 */
#include "health/health.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance/route.h"
#include "control/snapshot_build.h"
#include "control/control.h"
#include "core/log.h"
#include "health/probe.h"

#define PASSIVE_SCAN_MS 100

struct monitored {
    struct health *h;
    struct origin_shared *os;        /* identity (alive while h->snap holds it) */
    const struct cfg_monitor *mon;   /* in h->snap->cfg */
    const struct cfg_origin *origin; /* in h->snap->cfg */
    const struct tls_client *tls;    /* in h->snap: the origin's TLS context (https monitors) */
    uint64_t interval_ms;
    uint64_t phase_ms;               /* checks run at phase_ms modulo interval_ms */
    uint64_t synced;                 /* h->sync_epoch when last seen monitored */
    struct health_counts counts;
    struct timer next;               /* next check */
    struct probe probe;
    bool checked;                    /* a check has completed */
    uint64_t checks_pass, checks_fail, went_down, went_up, passive_downs;
    uint64_t last_check_ms;
    char last_failure[PROBE_REASON_MAX];
};

struct health {
    struct control *ctl;
    struct loop *loop;
    struct snapshot *snap;           /* reference to the last synced snapshot */
    uint64_t sync_epoch;
    size_t count;                    /* monitored origins */
    struct timer passive_scan;
    struct timer refresh;            /* pending control_refresh() */
    struct monitored *by_id[SNAPSHOT_MAX_ORIGINS];
};

static struct health *health_of_timer(struct timer *t, size_t offset)
{
    return (struct health *)((char *)t - offset);
}

static void arm(struct health *h, struct timer *t, uint64_t after_ms)
{
    if (timer_arm(h->loop, t, after_ms) < 0)
        log_error("health: out of memory arming a timer");
}

/* ---- verdicts ---- */

static void refresh_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct health *h = health_of_timer(t, offsetof(struct health, refresh));
    control_refresh(h->ctl);
}

/* Publishes a new verdict: workers see it at once, derived tables follow. */
static void set_verdict(struct monitored *m, bool up, const char *reason)
{
    struct origin_shared *os = m->os;
    atomic_store(&os->healthy, up);
    if (up) {
        atomic_store(&os->passive_failures, 0);
        for (unsigned k = 0; k < PASSIVE_KINDS; k++)
            atomic_store(&os->passive_streak[k], 0);
        atomic_store(&os->retry_after_ms, 0);
        atomic_store(&os->up_since_ms, clock_ms()); /* slow_start ramps from now */
        m->went_up++;
        log_error("origin %s/%s up", os->pool, os->name);
    } else {
        m->went_down++;
        log_error("origin %s/%s down: %s", os->pool, os->name, reason);
    }
    if (!timer_armed(&m->h->refresh))
        arm(m->h, &m->h->refresh, 0);
}

static void schedule_next(struct monitored *m)
{
    struct loop *loop = m->h->loop;
    /* The next slot on the origin's grid at least half an interval away, so
     * the check run at once at start is not followed by another right away. */
    uint64_t due = health_next_due(loop->now_ms + m->interval_ms / 2, m->interval_ms,
                                   m->phase_ms);
    arm(m->h, &m->next, due - loop->now_ms);
}

static void check_done(struct monitored *m, bool pass, const char *reason)
{
    m->checked = true;
    m->last_check_ms = m->h->loop->now_ms;
    if (pass) {
        m->checks_pass++;
    } else {
        m->checks_fail++;
        snprintf(m->last_failure, sizeof(m->last_failure), "%s", reason);
    }
    enum health_change change = health_count(&m->counts, pass, m->mon->retries, m->mon->rise);
    if (change != HEALTH_SAME)
        set_verdict(m, change == HEALTH_WENT_UP, reason);
    schedule_next(m);
}

static void probe_done(struct probe *p, bool pass, const char *reason)
{
    struct monitored *m = (struct monitored *)((char *)p - offsetof(struct monitored, probe));
    check_done(m, pass, reason);
}

static void next_check_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct monitored *m = (struct monitored *)((char *)t - offsetof(struct monitored, next));
    int rc = probe_start(&m->probe, m->mon, &m->origin->addr, m->origin->address, m->tls);
    if (rc == PROBE_FAILED) {
        check_done(m, false, m->probe.reason);
    } else if (rc == PROBE_LOCAL_ERROR) {
        /* not the origin's fault: no verdict, try again at the next slot */
        log_error("cannot check origin %s/%s: %s", m->os->pool, m->os->name, m->probe.reason);
        schedule_next(m);
    }
}

/* ---- passive checks ---- */

static void passive_scan_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct health *h = health_of_timer(t, offsetof(struct health, passive_scan));
    for (size_t id = 0; id < SNAPSHOT_MAX_ORIGINS; id++) {
        struct monitored *m = h->by_id[id];
        if (!m || !m->counts.up)
            continue;
        unsigned failures = atomic_load_explicit(&m->os->passive_failures,
                                                 memory_order_relaxed);
        if (failures < m->mon->retries)
            continue;
        m->counts = (struct health_counts){.up = false};
        m->passive_downs++;
        /* which failures took it down: "3 failures seen by live traffic (2 timeouts, 1 reset)" */
        route_passive_describe(m->os, m->last_failure, sizeof(m->last_failure));
        set_verdict(m, false, m->last_failure);
    }
    arm(h, t, PASSIVE_SCAN_MS);
}

/* ---- the set of monitored origins ---- */

static uint64_t interval_ms_of(const struct cfg_monitor *mon)
{
    uint64_t ms = (uint64_t)(mon->interval * 1000.0);
    return ms ? ms : 1;
}

/* Points m at mon and origin and checks it now. */
static void start_monitoring(struct monitored *m, const struct cfg_monitor *mon,
                             const struct cfg_origin *origin)
{
    m->mon = mon;
    m->origin = origin;
    m->interval_ms = interval_ms_of(mon);
    m->phase_ms = health_phase_ms(m->os->pool, m->os->name, m->interval_ms);
    arm(m->h, &m->next, 0);
}

static struct monitored *monitored_new(struct health *h, struct origin_shared *os)
{
    struct monitored *m = calloc(1, sizeof(*m));
    if (!m) {
        log_error("health: out of memory: origin %s/%s not monitored", os->pool, os->name);
        return NULL;
    }
    m->h = h;
    m->os = os;
    m->counts.up = atomic_load(&os->healthy);
    timer_init(&m->next, next_check_cb);
    probe_init(&m->probe, h->loop, probe_done);
    h->by_id[os->id] = m;
    h->count++;
    return m;
}

static void monitored_free(struct health *h, struct monitored *m)
{
    probe_cancel(&m->probe);
    timer_cancel(h->loop, &m->next);
    h->by_id[m->os->id] = NULL;
    h->count--;
    free(m);
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_monitor(const struct cfg_monitor *a, const struct cfg_monitor *b)
{
    if (a->type != b->type || !same_str(a->method, b->method) ||
        !same_str(a->path, b->path) || !same_str(a->expected_codes, b->expected_codes) ||
        !same_str(a->expected_body, b->expected_body) || a->interval != b->interval ||
        a->timeout != b->timeout || a->retries != b->retries || a->rise != b->rise ||
        a->num_headers != b->num_headers)
        return false;
    for (size_t i = 0; i < a->num_headers; i++)
        if (!same_str(a->headers[i].name, b->headers[i].name) ||
            !same_str(a->headers[i].value, b->headers[i].value))
            return false;
    return true;
}

/* Follows a new snapshot: same settings keep the schedule, others restart. */
static void update_monitoring(struct monitored *m, const struct cfg_monitor *mon,
                              const struct cfg_origin *origin)
{
    bool same = same_monitor(m->mon, mon) && strcmp(m->origin->address, origin->address) == 0;
    if (same) {
        m->mon = mon;
        m->origin = origin;
        return;
    }
    probe_cancel(&m->probe);
    m->counts.fails = m->counts.passes = 0;
    start_monitoring(m, mon, origin);
}

/* An origin that stays but loses its monitor is healthy from now on. */
static void stop_monitoring(struct health *h, struct monitored *m, bool still_present)
{
    if (still_present && !m->counts.up) {
        atomic_store(&m->os->healthy, true);
        atomic_store(&m->os->up_since_ms, clock_ms());
        log_error("origin %s/%s up: no monitor any more", m->os->pool, m->os->name);
        if (!timer_armed(&h->refresh))
            arm(h, &h->refresh, 0);
    }
    monitored_free(h, m);
}

void health_sync(struct health *h, struct snapshot *s)
{
    struct snapshot *old = h->snap;
    const struct config *cfg = s->cfg;
    bool present[SNAPSHOT_MAX_ORIGINS] = {false};
    h->snap = snapshot_ref(s);
    h->sync_epoch++;
    for (size_t p = 0; p < cfg->num_pools; p++) {
        const struct cfg_pool *pool = &cfg->pools[p];
        const struct cfg_monitor *mon =
            pool->monitor_index >= 0 ? &cfg->monitors[pool->monitor_index] : NULL;
        for (size_t o = 0; o < pool->num_origins; o++) {
            struct origin_shared *os = s->pools[p].origins[o];
            struct monitored *m = h->by_id[os->id];
            present[os->id] = true;
            if (!mon)
                continue;
            const struct tls_client *tls = s->pools[p].tls ? s->pools[p].tls[o] : NULL;
            if (m)
                m->tls = tls;
            if (m) {
                update_monitoring(m, mon, &pool->origins[o]);
            } else if ((m = monitored_new(h, os))) {
                m->tls = tls;
                start_monitoring(m, mon, &pool->origins[o]);
            }
            if (m)
                m->synced = h->sync_epoch;
        }
    }
    for (size_t id = 0; id < SNAPSHOT_MAX_ORIGINS; id++)
        if (h->by_id[id] && h->by_id[id]->synced != h->sync_epoch)
            stop_monitoring(h, h->by_id[id], present[id]);
    if (h->count && !timer_armed(&h->passive_scan))
        arm(h, &h->passive_scan, PASSIVE_SCAN_MS);
    else if (!h->count)
        timer_cancel(h->loop, &h->passive_scan);
    if (old)
        snapshot_release(old);
}

/* ---- life cycle and read API ---- */

struct health *health_new(struct control *ctl)
{
    struct health *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->ctl = ctl;
    h->loop = &ctl->loop;
    timer_init(&h->passive_scan, passive_scan_cb);
    timer_init(&h->refresh, refresh_cb);
    return h;
}

void health_free(struct health *h)
{
    if (!h)
        return;
    for (size_t id = 0; id < SNAPSHOT_MAX_ORIGINS; id++)
        if (h->by_id[id])
            monitored_free(h, h->by_id[id]);
    timer_cancel(h->loop, &h->passive_scan);
    timer_cancel(h->loop, &h->refresh);
    if (h->snap)
        snapshot_release(h->snap);
    free(h);
}

bool health_origin_stats(const struct health *h, const struct origin_shared *os,
                         struct health_origin_stats *st)
{
    const struct monitored *m = h->by_id[os->id];
    if (!m || m->os != os)
        return false;
    *st = (struct health_origin_stats){
        .up = m->counts.up,
        .checked = m->checked,
        .checks_pass = m->checks_pass,
        .checks_fail = m->checks_fail,
        .went_down = m->went_down,
        .went_up = m->went_up,
        .passive_downs = m->passive_downs,
        .last_check_ms = m->last_check_ms,
        .monitor = m->mon->name,
        .last_failure = m->last_failure,
    };
    return true;
}
