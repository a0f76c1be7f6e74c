/*
 * view — what the admin API and /metrics show: the running configuration
 * as JSON and the run-time counters summed over workers.
 *
 * Counters are per worker (core/stats.h), each written by its worker only;
 * the sums here load them with relaxed atomics, so a reader never slows the
 * data path. Distinct-session estimates merge copies of the workers'
 * HyperLogLog windows. Control thread only (it reads snapshot_current() and
 * ctl->workers).
 */
#ifndef LIMPET_ADMIN_VIEW_H
#define LIMPET_ADMIN_VIEW_H

#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "control/snapshot_build.h"
#include "core/stats.h"
#include "core/tls.h"

struct control;

/* Days left under which a certificate is shown as expiring soon. */
#define VIEW_CERT_WARN_DAYS 14

struct tls_totals {
    uint64_t handshakes, resumed;
    uint64_t versions[TLS_VERSIONS];
    uint64_t failures[TLS_FAIL_COUNT];
};

struct origin_totals {
    uint64_t requests;
    uint64_t status[STATUS_CLASSES];
    uint64_t connect_failures;
    uint64_t active;                /* requests in flight */
    uint64_t sessions;              /* estimated distinct sessions (HLL) */
};

struct lb_totals {
    uint64_t status[STATUS_CLASSES];
    uint64_t affinity[REASON_COUNT];
    uint64_t duration[DURATION_BUCKETS + 1];
    uint64_t duration_sum_us;
};

void view_origin_totals(const struct control *ctl, const struct origin_shared *os,
                        struct origin_totals *out);
void view_lb_totals(const struct control *ctl, uint32_t lb_id, struct lb_totals *out);
/* Handshake counters of listener i of s, summed over workers (zero for a
 * plain listener). */
void view_tls_totals(const struct control *ctl, const struct snapshot *s, size_t i,
                     struct tls_totals *out);
/* JSON of listener i of s: address, load balancer, TLS settings, each
 * certificate with its names and expiry (days_left, expires_soon), and the
 * handshake counters. */
json_t *view_listener(const struct control *ctl, const struct snapshot *s, size_t i);
/* Client connections open now, and accepted since start. */
void view_client_totals(const struct control *ctl, uint64_t *open, uint64_t *accepted);

/* Names used in JSON and metrics. */
const char *view_origin_state_name(enum origin_state state);
const char *view_affinity_name(enum session_affinity affinity);
/* "none" (no response), "1xx" … "5xx". */
const char *view_status_class_name(unsigned cls);

/* JSON of load balancer lb, pool p, origin o of pool p in s, with counters. */
json_t *view_load_balancer(const struct control *ctl, const struct snapshot *s, size_t lb);
json_t *view_pool(const struct control *ctl, const struct snapshot *s, size_t p);
json_t *view_origin(const struct control *ctl, const struct snapshot *s, size_t p, size_t o);

/* Index of the load balancer / pool named name in s, or -1. */
long view_find_load_balancer(const struct snapshot *s, const char *name);
long view_find_pool(const struct snapshot *s, const char *name);

#endif
