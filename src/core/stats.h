/*
 * stats — per-worker counters, summed by readers (the admin API, /metrics).
 *
 * Each worker owns its counters and is their only writer; readers on other
 * threads load them. Counters are atomic words written with relaxed
 * load + store (STAT_ADD), which compiles to a plain add on the hot path —
 * no locked instruction, no shared cache line — while keeping cross-thread
 * reads well defined. Origins are indexed by origin id, load balancers by
 * their id in the snapshot (stable for a name during the process).
 */
#ifndef LIMPET_CORE_STATS_H
#define LIMPET_CORE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

struct hll_window;

/* Origin ids index per-worker arrays: every origin id is below this. */
#define STATS_MAX_ORIGINS 4096

#define STAT_ADD(counter, n) \
    atomic_store_explicit(&(counter), \
                          atomic_load_explicit(&(counter), memory_order_relaxed) + (n), \
                          memory_order_relaxed)
#define STAT_GET(counter) atomic_load_explicit(&(counter), memory_order_relaxed)

/* Affinity outcome of a routing decision (SPEC §3), as logged and counted. */
enum affinity_reason {
    REASON_NONE,                  /* session_affinity "none": steered anew */
    REASON_NEW,
    REASON_HIT,
    REASON_REASSIGNED_UNHEALTHY,
    REASON_REASSIGNED_DISABLED,
    REASON_REASSIGNED_DRAINED,
    REASON_FAILOVER_TEMPORARY,
    REASON_FAILOVER_STICKY,
    REASON_INVALID_COOKIE,
    REASON_FALLBACK_POOL,
    REASON_COUNT
};
const char *affinity_reason_name(enum affinity_reason r);

/* What live traffic counts as an origin's failure (SPEC §5 passive checks). */
enum passive_kind {
    PASSIVE_CONNECT,              /* connect refused or timed out */
    PASSIVE_RESET,                /* connection reset or closed before a response */
    PASSIVE_TIMEOUT,              /* no response within timeouts.server */
    PASSIVE_HTTP_5XX,             /* a 5xx answer (pools[].passive.http_5xx only) */
    PASSIVE_KINDS
};
/* "connect", "reset", "timeout", "http_5xx" (the metrics label). */
const char *passive_kind_name(enum passive_kind k);

/* Status classes: [0] no response (aborted), [1] 1xx … [5] 5xx. */
#define STATUS_CLASSES 6

/* Request duration histogram bucket bounds, seconds (Prometheus "le"). */
#define DURATION_BUCKETS 12
extern const double stats_duration_bounds[DURATION_BUCKETS];

struct origin_stats {
    atomic_ullong requests;                 /* exchanges routed to the origin */
    atomic_ullong status[STATUS_CLASSES];
    atomic_ullong connect_failures;
    atomic_uint active;                     /* requests in flight from this worker */
    struct hll_window *sessions;            /* distinct sessions; allocated on first use */
};

#define STATS_MAX_LBS 256

struct lb_stats {
    atomic_ullong status[STATUS_CLASSES];
    atomic_ullong affinity[REASON_COUNT];
    atomic_ullong duration[DURATION_BUCKETS + 1];  /* last: +Inf */
    atomic_ullong duration_sum_us;
};

struct worker_stats {
    atomic_uint client_connections;         /* open now */
    atomic_ullong accepted;                 /* since start */
    struct lb_stats lbs[STATS_MAX_LBS];
    struct origin_stats *origins;           /* [STATS_MAX_ORIGINS] */
};

/* Index of a duration in stats_duration_bounds (DURATION_BUCKETS for +Inf). */
unsigned stats_duration_bucket(double seconds);
/* 0 for no status, else status / 100 clamped to 1..5. */
unsigned stats_status_class(int status);

#endif
