/*
 * view — JSON views of the running configuration and counter sums (see
 * view.h).
 *
 * Numbers that are whole (TTLs, durations written as integers) are shown as
 * JSON integers, others as reals, so the API echoes what the operator wrote.
 * Each worker's session window is read through an acquire load of its
 * pointer (the worker allocates it on first use) and copied before merging,
 * as hll.h asks: the copy may miss the very latest session, never more.
 */
#include "admin/view.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "affinity/hll.h"
#include "control/control.h"
#include "core/loop.h"
#include "affinity/hll.h"
#include "core/worker.h"

/* ---- names ---- */

const char *view_origin_state_name(enum origin_state state)
{
    switch (state) {
    case ORIGIN_ENABLED: return "enabled";
    case ORIGIN_DRAINING: return "draining";
    case ORIGIN_DISABLED: return "disabled";
    }
    return "unknown";
}

const char *view_affinity_name(enum session_affinity affinity)
{
    static const char *const names[] = {
        [AFFINITY_NONE] = "none", [AFFINITY_COOKIE] = "cookie",
        [AFFINITY_IP_COOKIE] = "ip_cookie", [AFFINITY_IP] = "ip",
        [AFFINITY_HEADER] = "header", [AFFINITY_APP_COOKIE] = "app_cookie",
    };
    return (unsigned)affinity < sizeof(names) / sizeof(names[0]) ? names[affinity] : "unknown";
}

const char *view_status_class_name(unsigned cls)
{
    static const char *const names[STATUS_CLASSES] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    return cls < STATUS_CLASSES ? names[cls] : "unknown";
}

static const char *steering_name(enum origin_steering s)
{
    static const char *const names[] = {
        [STEER_ROUND_ROBIN] = "round_robin", [STEER_LEAST_CONNECTIONS] = "least_connections",
        [STEER_RANDOM] = "random", [STEER_HASH] = "hash",
    };
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static const char *policy_name(enum steering_policy p)
{
    static const char *const names[] = {
        [POLICY_OFF] = "off", [POLICY_RANDOM] = "random", [POLICY_GEO] = "geo",
    };
    return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "unknown";
}

static const char *samesite_name(enum samesite s)
{
    static const char *const names[] = {
        [SAMESITE_AUTO] = "Auto", [SAMESITE_NONE] = "None",
        [SAMESITE_LAX] = "Lax", [SAMESITE_STRICT] = "Strict",
    };
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static const char *secure_name(enum secure_mode s)
{
    static const char *const names[] = {
        [SECURE_AUTO] = "Auto", [SECURE_ALWAYS] = "Always", [SECURE_NEVER] = "Never",
    };
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static const char *failover_name(enum failover_mode f)
{
    static const char *const names[] = {
        [FAILOVER_NONE] = "none", [FAILOVER_TEMPORARY] = "temporary",
        [FAILOVER_STICKY] = "sticky",
    };
    return (unsigned)f < sizeof(names) / sizeof(names[0]) ? names[f] : "unknown";
}

/* ---- counters ---- */

void view_tls_totals(const struct control *ctl, const struct snapshot *s, size_t i,
                     struct tls_totals *out)
{
    *out = (struct tls_totals){0};
    const struct tls_counters *per_worker = s->listen[i].tls_stats;
    for (unsigned w = 0; per_worker && w < ctl->num_workers; w++) {
        const struct tls_counters *c = &per_worker[w];
        out->handshakes += STAT_GET(c->handshakes);
        out->resumed += STAT_GET(c->resumed);
        for (unsigned v = 0; v < TLS_VERSIONS; v++)
            out->versions[v] += STAT_GET(c->versions[v]);
        for (unsigned f = 0; f < TLS_FAIL_COUNT; f++)
            out->failures[f] += STAT_GET(c->failures[f]);
    }
}

static json_t *iso_time(int64_t t)
{
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return json_null();
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

static json_t *certificate_json(const struct tls_cert_info *in, int64_t now)
{
    int64_t left_s = in->not_after - now;
    /* whole days left, rounded down (-1 once expired) */
    json_int_t days = (json_int_t)(left_s >= 0 ? left_s / 86400 : -1 - (-left_s - 1) / 86400);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:b, s:b}",
                     "certificate", in->certificate, "private_key", in->private_key,
                     "subject", in->subject, "names", in->names, "key_type", in->key_type,
                     "not_after", iso_time(in->not_after), "days_left", days,
                     "expired", left_s < 0, "expires_soon", left_s < VIEW_CERT_WARN_DAYS * 86400);
}

json_t *view_listener(const struct control *ctl, const struct snapshot *s, size_t i)
{
    const struct cfg_listener *l = &s->cfg->listeners[i];
    json_t *v = json_pack("{s:s, s:s, s:b}", "address", l->address, "load_balancer",
                          s->cfg->load_balancers[l->load_balancer].name, "tls", l->tls);
    if (l->redirect_to_https)
        json_object_set_new(v, "redirect_to_https", json_integer(l->redirect_to_https));
    if (l->has_hsts)
        json_object_set_new(v, "hsts", json_integer(l->hsts));
    const struct tls_server *srv = tls_server_of(s->listen[i].tls);
    if (!l->tls)
        return v;
    json_t *certs = json_array();
    int64_t now = (int64_t)time(NULL);
    for (size_t k = 0; srv && k < srv->num_certs; k++)
        json_array_append_new(certs, certificate_json(&srv->info[k], now));
    json_object_set_new(v, "certificates", certs);
    struct tls_totals t;
    view_tls_totals(ctl, s, i, &t);
    json_t *versions = json_object(), *failures = json_object();
    for (unsigned k = 0; k < TLS_VERSIONS; k++)
        json_object_set_new(versions, tls_version_name(k), json_integer((json_int_t)t.versions[k]));
    for (unsigned k = 0; k < TLS_FAIL_COUNT; k++)
        json_object_set_new(failures, tls_failure_name((enum tls_failure)k),
                            json_integer((json_int_t)t.failures[k]));
    json_object_set_new(v, "handshakes", json_pack("{s:I, s:I, s:o, s:o}",
                                                   "completed", (json_int_t)t.handshakes,
                                                   "resumed", (json_int_t)t.resumed,
                                                   "versions", versions,
                                                   "failures", failures));
    return v;
}

void view_origin_totals(const struct control *ctl, const struct origin_shared *os,
                        struct origin_totals *out)
{
    static struct hll union_sketch;     /* control thread only; 4 KiB kept off the stack */
    static struct hll_window copy;
    *out = (struct origin_totals){0};
    hll_init(&union_sketch);
    uint64_t now = (uint64_t)time(NULL);
    bool any_sessions = false;
    for (unsigned i = 0; i < ctl->num_workers; i++) {
        const struct origin_stats *st = &ctl->workers[i]->stats.origins[os->id];
        out->requests += STAT_GET(st->requests);
        for (unsigned c = 0; c < STATUS_CLASSES; c++)
            out->status[c] += STAT_GET(st->status[c]);
        out->connect_failures += STAT_GET(st->connect_failures);
        out->active += STAT_GET(st->active);
        const struct hll_window *win = __atomic_load_n(&st->sessions, __ATOMIC_ACQUIRE);
        if (win) {
            memcpy(&copy, win, sizeof(copy));
            hll_window_merge_into(&union_sketch, &copy, now);
            any_sessions = true;
        }
    }
    out->sessions = any_sessions ? hll_estimate(&union_sketch) : 0;
}

void view_lb_totals(const struct control *ctl, uint32_t lb_id, struct lb_totals *out)
{
    *out = (struct lb_totals){0};
    for (unsigned i = 0; i < ctl->num_workers; i++) {
        const struct lb_stats *st = &ctl->workers[i]->stats.lbs[lb_id];
        for (unsigned c = 0; c < STATUS_CLASSES; c++)
            out->status[c] += STAT_GET(st->status[c]);
        for (unsigned r = 0; r < REASON_COUNT; r++)
            out->affinity[r] += STAT_GET(st->affinity[r]);
        for (unsigned b = 0; b <= DURATION_BUCKETS; b++)
            out->duration[b] += STAT_GET(st->duration[b]);
        out->duration_sum_us += STAT_GET(st->duration_sum_us);
    }
}

void view_client_totals(const struct control *ctl, uint64_t *open, uint64_t *accepted)
{
    *open = *accepted = 0;
    for (unsigned i = 0; i < ctl->num_workers; i++) {
        *open += STAT_GET(ctl->workers[i]->stats.client_connections);
        *accepted += STAT_GET(ctl->workers[i]->stats.accepted);
    }
}

/* ---- JSON ---- */

/* A whole number as a JSON integer, anything else as a real. */
static json_t *number(double d)
{
    if (d == floor(d) && fabs(d) < 9e15)
        return json_integer((json_int_t)d);
    return json_real(d);
}

static json_t *pool_names(const struct config *cfg, const size_t *pools, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(cfg->pools[pools[i]].name));
    return a;
}

static json_t *status_classes(const uint64_t status[STATUS_CLASSES])
{
    json_t *o = json_object();
    for (unsigned c = 0; c < STATUS_CLASSES; c++)
        json_object_set_new(o, view_status_class_name(c), json_integer((json_int_t)status[c]));
    return o;
}

static json_t *attributes(const struct cfg_affinity_attributes *a)
{
    json_t *headers = json_array();
    for (size_t i = 0; i < a->num_headers; i++)
        json_array_append_new(headers, json_string(a->headers[i]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s, s:o, s:o, s:s, s:o, s:b}",
                          "cookie_name", a->cookie_name,
                          "samesite", samesite_name(a->samesite),
                          "secure", secure_name(a->secure),
                          "httponly", a->httponly,
                          "path", a->path,
                          "max_life", number(a->max_life),
                          "drain_duration", number(a->drain_duration),
                          "zero_downtime_failover", failover_name(a->zero_downtime_failover),
                          "headers", headers,
                          "require_all_headers", a->require_all_headers);
    if (o && a->app_cookie.present)
        json_object_set_new(o, "app_cookie",
                            json_pack("{s:s, s:s, s:s}", "name", a->app_cookie.name,
                                      "mode", a->app_cookie.mode == APP_COOKIE_ROUTE
                                              ? "route" : "prefix",
                                      "separator", a->app_cookie.separator));
    return o;
}

json_t *view_load_balancer(const struct control *ctl, const struct snapshot *s, size_t lb)
{
    const struct config *cfg = s->cfg;
    const struct cfg_load_balancer *l = &cfg->load_balancers[lb];
    json_t *listen = json_array();
    for (size_t i = 0; i < cfg->num_listeners; i++)
        if (cfg->listeners[i].load_balancer == lb)
            json_array_append_new(listen, json_string(cfg->listeners[i].address));
    json_t *regions = json_object();
    for (size_t i = 0; i < l->num_region_pools; i++)
        json_object_set_new(regions, l->region_pools[i].region,
                            pool_names(cfg, l->region_pools[i].pools,
                                       l->region_pools[i].num_pools));

    struct lb_totals t;
    view_lb_totals(ctl, s->lb_ids[lb], &t);
    uint64_t requests = 0;
    for (unsigned c = 0; c < STATUS_CLASSES; c++)
        requests += t.status[c];
    json_t *reasons = json_object();
    for (unsigned r = 0; r < REASON_COUNT; r++)
        json_object_set_new(reasons, affinity_reason_name((enum affinity_reason)r),
                            json_integer((json_int_t)t.affinity[r]));
    json_t *stats = json_pack("{s:I, s:o, s:o, s:f}",
                              "requests", (json_int_t)requests,
                              "responses", status_classes(t.status),
                              "affinity", reasons,
                              "duration_seconds_sum", (double)t.duration_sum_us / 1e6);

    return json_pack("{s:s, s:o, s:o, s:o, s:s, s:o, s:s, s:o, s:o, s:I, s:o}",
                     "name", l->name,
                     "listen", listen,
                     "default_pools", pool_names(cfg, l->default_pools, l->num_default_pools),
                     "fallback_pool", l->fallback_pool >= 0
                         ? json_string(cfg->pools[l->fallback_pool].name) : json_null(),
                     "steering_policy", policy_name(l->steering_policy),
                     "region_pools", regions,
                     "session_affinity", view_affinity_name(l->session_affinity),
                     "session_affinity_ttl", number(l->session_affinity_ttl),
                     "session_affinity_attributes", attributes(&l->attributes),
                     "hash_balance_factor", (json_int_t)l->hash_balance_factor,
                     "stats", stats);
}

json_t *view_origin(const struct control *ctl, const struct snapshot *s, size_t p, size_t o)
{
    const struct cfg_origin *co = &s->cfg->pools[p].origins[o];
    const struct origin_shared *os = s->pools[p].origins[o];
    struct origin_totals t;
    view_origin_totals(ctl, os, &t);
    uint64_t drain_ms = atomic_load(&os->drain_started_ms);
    json_t *since = json_null(), *draining_for = json_null();
    if (co->state == ORIGIN_DRAINING && drain_ms) {
        double elapsed = (double)(clock_ms() - drain_ms) / 1000.0;
        since = json_integer((json_int_t)((double)clock_wall_us() / 1e6 - elapsed));
        draining_for = number(floor(elapsed * 10) / 10);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:b, s:b, s:o, s:o, s:I, s:I, s:o, s:I, "
                     "s:I, s:I}",
                     "name", co->name,
                     "address", co->address,
                     "weight", (json_int_t)co->weight,
                     "route", co->route,
                     "state", view_origin_state_name(co->state),
                     "healthy", snapshot_origin_healthy(s, p, o),
                     "usable", snapshot_origin_usable(s, p, o) && snapshot_origin_healthy(s, p, o),
                     "draining_since", since,
                     "draining_for", draining_for,
                     "active_connections", (json_int_t)t.active,
                     "requests", (json_int_t)t.requests,
                     "responses", status_classes(t.status),
                     "connect_failures", (json_int_t)t.connect_failures,
                     "passive_failures", (json_int_t)atomic_load(&os->passive_failures),
                     "sessions", (json_int_t)t.sessions);
}

json_t *view_pool(const struct control *ctl, const struct snapshot *s, size_t p)
{
    const struct config *cfg = s->cfg;
    const struct cfg_pool *pool = &cfg->pools[p];
    json_t *origins = json_array();
    unsigned up = 0, usable = 0, draining = 0, disabled = 0;
    for (size_t o = 0; o < pool->num_origins; o++) {
        json_array_append_new(origins, view_origin(ctl, s, p, o));
        up += snapshot_origin_healthy(s, p, o);
        usable += snapshot_origin_usable(s, p, o) && snapshot_origin_healthy(s, p, o);
        draining += pool->origins[o].state == ORIGIN_DRAINING;
        disabled += pool->origins[o].state == ORIGIN_DISABLED;
    }
    json_t *lbs = json_array();
    for (size_t i = 0; i < cfg->num_load_balancers; i++) {
        const struct cfg_load_balancer *l = &cfg->load_balancers[i];
        if (config_lb_uses_pool(l, p))
            json_array_append_new(lbs, json_string(l->name));
    }
    const struct pool_shared *ps = s->pools[p].shared;
    return json_pack("{s:s, s:o, s:s, s:o, s:{s:i, s:i, s:i, s:i, s:i}, s:{s:I, s:I, s:I}, s:o}",
                     "name", pool->name,
                     "monitor", pool->monitor ? json_string(pool->monitor) : json_null(),
                     "origin_steering", steering_name(pool->origin_steering),
                     "load_balancers", lbs,
                     "summary", "origins", (int)pool->num_origins, "up", (int)up,
                     "usable", (int)usable, "draining", (int)draining,
                     "disabled", (int)disabled,
                     "queue", "waiting", (json_int_t)atomic_load(&ps->queued),
                     "full", (json_int_t)atomic_load(&ps->queue_full),
                     "timed_out", (json_int_t)atomic_load(&ps->queue_timeouts),
                     "origins", origins);
}

long view_find_load_balancer(const struct snapshot *s, const char *name)
{
    for (size_t i = 0; i < s->cfg->num_load_balancers; i++)
        if (strcmp(s->cfg->load_balancers[i].name, name) == 0)
            return (long)i;
    return -1;
}

long view_find_pool(const struct snapshot *s, const char *name)
{
    return config_pool_index(s->cfg, name);
}
