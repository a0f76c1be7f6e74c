/*
 * metrics — GET /metrics in the Prometheus text exposition format (0.0.4).
 *
 * Every family is written whole (# HELP, # TYPE, then its samples), from
 * one pass over the current snapshot. Counters come from the per-worker
 * counters summed on read (view.h); origin sums, which merge HyperLogLog
 * sketches, are computed once per origin before the families are written.
 *
 * Requests are counted twice, at two granularities the data path keeps:
 * per load balancer (every request, including those no origin answered:
 * code_class "none" means no response was sent) and per origin (requests
 * an origin was chosen for). A pool may serve several load balancers, so
 * the two are separate families rather than one with both labels.
 */
#include "admin/api.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/view.h"
#include "control/snapshot_build.h"
#include "control/control.h"
#include "health/health.h"

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format asks (\\, \", \n). */
static void label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void origin_labels(FILE *f, const char *pool, const char *origin)
{
    fputs("{pool=\"", f);
    label_value(f, pool);
    fputs("\",origin=\"", f);
    label_value(f, origin);
    fputc('"', f);
}

/* Per origin of the snapshot, in pool order. */
struct origin_row {
    const char *pool, *name;
    const struct cfg_origin *cfg;
    const struct origin_shared *shared;
    struct origin_totals totals;
    bool monitored;
    bool healthy;                  /* as reported: snapshot_origin_healthy */
    struct health_origin_stats health;
};

static void write_lb_families(FILE *f, const struct control *ctl, const struct snapshot *s)
{
    size_t n = s->cfg->num_load_balancers;
    struct lb_totals *t = calloc(n ? n : 1, sizeof(*t));
    if (!t)
        return;
    for (size_t i = 0; i < n; i++)
        view_lb_totals(ctl, s->lb_ids[i], &t[i]);

    family(f, "limpet_requests_total", "counter",
           "Requests by load balancer and status class (none: no response was sent).");
    for (size_t i = 0; i < n; i++)
        for (unsigned c = 0; c < STATUS_CLASSES; c++) {
            fputs("limpet_requests_total{load_balancer=\"", f);
            label_value(f, s->cfg->load_balancers[i].name);
            fprintf(f, "\",code_class=\"%s\"} %llu\n", view_status_class_name(c),
                    (unsigned long long)t[i].status[c]);
        }

    family(f, "limpet_affinity_decisions_total", "counter",
           "Routing decisions by load balancer and affinity outcome.");
    for (size_t i = 0; i < n; i++)
        for (unsigned r = 0; r < REASON_COUNT; r++) {
            fputs("limpet_affinity_decisions_total{load_balancer=\"", f);
            label_value(f, s->cfg->load_balancers[i].name);
            fprintf(f, "\",reason=\"%s\"} %llu\n", affinity_reason_name((enum affinity_reason)r),
                    (unsigned long long)t[i].affinity[r]);
        }

    family(f, "limpet_request_duration_seconds", "histogram",
           "Time from a request's arrival to the end of its response, by load balancer.");
    for (size_t i = 0; i < n; i++) {
        unsigned long long cumulative = 0;
        for (unsigned b = 0; b <= DURATION_BUCKETS; b++) {
            cumulative += t[i].duration[b];
            fputs("limpet_request_duration_seconds_bucket{load_balancer=\"", f);
            label_value(f, s->cfg->load_balancers[i].name);
            if (b < DURATION_BUCKETS)
                fprintf(f, "\",le=\"%g\"} %llu\n", stats_duration_bounds[b], cumulative);
            else
                fprintf(f, "\",le=\"+Inf\"} %llu\n", cumulative);
        }
        fputs("limpet_request_duration_seconds_sum{load_balancer=\"", f);
        label_value(f, s->cfg->load_balancers[i].name);
        fprintf(f, "\"} %.6f\n", (double)t[i].duration_sum_us / 1e6);
        fputs("limpet_request_duration_seconds_count{load_balancer=\"", f);
        label_value(f, s->cfg->load_balancers[i].name);
        fprintf(f, "\"} %llu\n", cumulative);
    }
    free(t);
}

/* One gauge or counter family with one sample per origin. */
#define ORIGIN_FAMILY(f, rows, n, metric, type, help, fmt, expr)   \
    do {                                                            \
        family(f, metric, type, help);                              \
        for (size_t i_ = 0; i_ < (n); i_++) {                       \
            const struct origin_row *r = &(rows)[i_];               \
            fputs(metric, f);                                       \
            origin_labels(f, r->pool, r->name);                     \
            fprintf(f, "} " fmt "\n", expr);                        \
        }                                                           \
    } while (0)

static void write_origin_families(FILE *f, const struct control *ctl, const struct snapshot *s)
{
    size_t n = 0;
    for (size_t p = 0; p < s->cfg->num_pools; p++)
        n += s->cfg->pools[p].num_origins;
    struct origin_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows)
        return;
    size_t k = 0;
    for (size_t p = 0; p < s->cfg->num_pools; p++)
        for (size_t o = 0; o < s->cfg->pools[p].num_origins; o++, k++) {
            struct origin_row *r = &rows[k];
            r->pool = s->cfg->pools[p].name;
            r->name = s->cfg->pools[p].origins[o].name;
            r->cfg = &s->cfg->pools[p].origins[o];
            r->shared = s->pools[p].origins[o];
            view_origin_totals(ctl, r->shared, &r->totals);
            r->monitored = ctl->health && health_origin_stats(ctl->health, r->shared, &r->health);
            r->healthy = snapshot_origin_healthy(s, p, o);
        }

    family(f, "limpet_origin_requests_total", "counter",
           "Requests routed to an origin, by status class (none: no response was sent).");
    for (size_t i = 0; i < n; i++)
        for (unsigned c = 0; c < STATUS_CLASSES; c++) {
            fputs("limpet_origin_requests_total", f);
            origin_labels(f, rows[i].pool, rows[i].name);
            fprintf(f, ",code_class=\"%s\"} %llu\n", view_status_class_name(c),
                    (unsigned long long)rows[i].totals.status[c]);
        }
    ORIGIN_FAMILY(f, rows, n, "limpet_origin_connect_failures_total", "counter",
                  "Failed connection attempts to an origin by live traffic.",
                  "%llu", (unsigned long long)r->totals.connect_failures);
    family(f, "limpet_origin_passive_failures_total", "counter",
           "Failures of an origin seen by live traffic (passive checks), by kind.");
    for (size_t i = 0; i < n; i++)
        for (unsigned k = 0; k < PASSIVE_KINDS; k++) {
            fputs("limpet_origin_passive_failures_total", f);
            origin_labels(f, rows[i].pool, rows[i].name);
            fprintf(f, ",kind=\"%s\"} %llu\n", passive_kind_name((enum passive_kind)k),
                    (unsigned long long)atomic_load(&rows[i].shared->passive_total[k]));
        }
    ORIGIN_FAMILY(f, rows, n, "limpet_origin_up", "gauge",
                  "1 when the origin is healthy (monitor and passive checks), else 0.",
                  "%d", r->healthy ? 1 : 0);
    family(f, "limpet_origin_state", "gauge",
           "The origin's administrative state: 1 for the current one.");
    for (size_t i = 0; i < n; i++)
        for (int st = ORIGIN_ENABLED; st <= ORIGIN_DISABLED; st++) {
            fputs("limpet_origin_state", f);
            origin_labels(f, rows[i].pool, rows[i].name);
            fprintf(f, ",state=\"%s\"} %d\n", view_origin_state_name((enum origin_state)st),
                    rows[i].cfg->state == (enum origin_state)st);
        }
    ORIGIN_FAMILY(f, rows, n, "limpet_origin_weight", "gauge",
                  "The origin's weight.", "%u", r->cfg->weight);
    ORIGIN_FAMILY(f, rows, n, "limpet_origin_active_connections", "gauge",
                  "Requests in flight to the origin.",
                  "%llu", (unsigned long long)r->totals.active);
    ORIGIN_FAMILY(f, rows, n, "limpet_origin_sessions_estimate", "gauge",
                  "Distinct sessions the origin served in the last affinity TTL window "
                  "(HyperLogLog estimate).",
                  "%llu", (unsigned long long)r->totals.sessions);

    family(f, "limpet_health_checks_total", "counter",
           "Completed monitor checks of an origin, by result.");
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].monitored)
            continue;
        for (int pass = 1; pass >= 0; pass--) {
            fputs("limpet_health_checks_total", f);
            origin_labels(f, rows[i].pool, rows[i].name);
            fprintf(f, ",result=\"%s\"} %llu\n", pass ? "pass" : "fail",
                    (unsigned long long)(pass ? rows[i].health.checks_pass
                                              : rows[i].health.checks_fail));
        }
    }
    family(f, "limpet_health_state_changes_total", "counter",
           "Times an origin went up or down: by its monitor or live traffic (passive "
           "checks); without a monitor, live traffic taking it out and back.");
    for (size_t i = 0; i < n; i++) {
        const struct origin_shared *os = rows[i].shared;
        for (int up = 1; up >= 0; up--) {
            uint64_t count = rows[i].monitored
                ? (up ? rows[i].health.went_up : rows[i].health.went_down)
                : atomic_load(up ? &os->passive_backs : &os->passive_outs);
            fputs("limpet_health_state_changes_total", f);
            origin_labels(f, rows[i].pool, rows[i].name);
            fprintf(f, ",to=\"%s\"} %llu\n", up ? "up" : "down", (unsigned long long)count);
        }
    }
    free(rows);
}

/* The pools' queues (origins at max_connections): waiting now, refused. */
static void write_pool_families(FILE *f, const struct snapshot *s)
{
    size_t n = s->cfg->num_pools;
    family(f, "limpet_pool_queued", "gauge",
           "Requests waiting in the pool's queue for an origin below max_connections.");
    for (size_t p = 0; p < n; p++) {
        fputs("limpet_pool_queued{pool=\"", f);
        label_value(f, s->cfg->pools[p].name);
        fprintf(f, "\"} %u\n", atomic_load(&s->pools[p].shared->queued));
    }
    family(f, "limpet_pool_queue_rejections_total", "counter",
           "Requests answered 503 by the pool's queue: it was full, or the wait passed "
           "queue.timeout.");
    for (size_t p = 0; p < n; p++)
        for (int timeout = 0; timeout <= 1; timeout++) {
            const struct pool_shared *ps = s->pools[p].shared;
            fputs("limpet_pool_queue_rejections_total{pool=\"", f);
            label_value(f, s->cfg->pools[p].name);
            fprintf(f, "\",reason=\"%s\"} %llu\n", timeout ? "timeout" : "full",
                    (unsigned long long)atomic_load(timeout ? &ps->queue_timeouts
                                                            : &ps->queue_full));
        }
}

static void listener_label(FILE *f, const char *address)
{
    fputs("{listener=\"", f);
    label_value(f, address);
    fputc('"', f);
}

/* One counter family with a value per TLS listener: the uint64_t at `field`
 * of each listener's totals. */
static void tls_listener_counter(FILE *f, const char *name, const char *help,
                                 const struct cfg_listener *ls, const struct tls_totals *t,
                                 size_t n, size_t field)
{
    family(f, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        if (!ls[i].tls)
            continue;
        uint64_t value;
        memcpy(&value, (const char *)&t[i] + field, sizeof(value));
        fputs(name, f);
        listener_label(f, ls[i].address);
        fprintf(f, "} %llu\n", (unsigned long long)value);
    }
}

static void write_tls_families(FILE *f, const struct control *ctl, const struct snapshot *s)
{
    size_t n = s->cfg->num_listeners;
    struct tls_totals *t = calloc(n ? n : 1, sizeof(*t));
    if (!t)
        return;
    for (size_t i = 0; i < n; i++)
        view_tls_totals(ctl, s, i, &t[i]);
    const struct cfg_listener *ls = s->cfg->listeners;
    tls_listener_counter(f, "limpet_tls_handshakes_total",
                         "Completed TLS handshakes by listener.", ls, t, n,
                         offsetof(struct tls_totals, handshakes));
    tls_listener_counter(f, "limpet_tls_resumed_handshakes_total",
                         "TLS handshakes that resumed a session (session cache or ticket), "
                         "by listener.", ls, t, n, offsetof(struct tls_totals, resumed));
    family(f, "limpet_tls_protocol_handshakes_total", "counter",
           "Completed TLS handshakes by listener and protocol version.");
    for (size_t i = 0; i < n; i++)
        for (unsigned v = 0; ls[i].tls && v < TLS_VERSIONS; v++) {
            fputs("limpet_tls_protocol_handshakes_total", f);
            listener_label(f, ls[i].address);
            fprintf(f, ",version=\"%s\"} %llu\n", tls_version_name(v),
                    (unsigned long long)t[i].versions[v]);
        }
    family(f, "limpet_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed, by listener and reason.");
    for (size_t i = 0; i < n; i++)
        for (unsigned r = 0; ls[i].tls && r < TLS_FAIL_COUNT; r++) {
            fputs("limpet_tls_handshake_failures_total", f);
            listener_label(f, ls[i].address);
            fprintf(f, ",reason=\"%s\"} %llu\n", tls_failure_name((enum tls_failure)r),
                    (unsigned long long)t[i].failures[r]);
        }
    family(f, "limpet_tls_certificate_expiry_timestamp_seconds", "gauge",
           "When each listener certificate expires (seconds since the epoch).");
    for (size_t i = 0; i < n; i++) {
        const struct tls_server *srv = tls_server_of(s->listen[i].tls);
        for (size_t k = 0; srv && k < srv->num_certs; k++) {
            fputs("limpet_tls_certificate_expiry_timestamp_seconds", f);
            listener_label(f, ls[i].address);
            fputs(",certificate=\"", f);
            label_value(f, srv->info[k].certificate);
            fprintf(f, "\"} %lld\n", (long long)srv->info[k].not_after);
        }
    }
    free(t);
}

char *metrics_render(struct admin *admin, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    const struct control *ctl = admin->ctl;
    const struct snapshot *s = snapshot_current();
    write_lb_families(f, ctl, s);
    write_origin_families(f, ctl, s);
    write_pool_families(f, s);
    write_tls_families(f, ctl, s);

    uint64_t open, accepted;
    view_client_totals(ctl, &open, &accepted);
    family(f, "limpet_client_connections", "gauge", "Client connections open now.");
    fprintf(f, "limpet_client_connections %llu\n", (unsigned long long)open);
    family(f, "limpet_client_connections_accepted_total", "counter",
           "Client connections accepted since start.");
    fprintf(f, "limpet_client_connections_accepted_total %llu\n", (unsigned long long)accepted);
    family(f, "limpet_reloads_total", "counter", "Configuration reloads that took effect.");
    fprintf(f, "limpet_reloads_total %llu\n", (unsigned long long)ctl->reloads);
    family(f, "limpet_reload_failures_total", "counter",
           "Configuration reloads refused (the running configuration was kept).");
    fprintf(f, "limpet_reload_failures_total %llu\n", (unsigned long long)ctl->reload_failures);
    family(f, "limpet_uptime_seconds", "gauge", "Seconds since limpet started.");
    fprintf(f, "limpet_uptime_seconds %.3f\n", (double)(clock_ms() - ctl->started_ms) / 1000.0);
    family(f, "limpet_build_info", "gauge", "Always 1; the version is a label.");
    fprintf(f, "limpet_build_info{version=\"%s\"} 1\n", LIMPET_VERSION);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
