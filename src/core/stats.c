/*
 * stats — names and bucket helpers for the per-worker counters (see stats.h).
 */
#include "core/stats.h"

const double stats_duration_bounds[DURATION_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
};

const char *affinity_reason_name(enum affinity_reason r)
{
    static const char *const names[REASON_COUNT] = {
        [REASON_NONE] = "none",
        [REASON_NEW] = "new",
        [REASON_HIT] = "hit",
        [REASON_REASSIGNED_UNHEALTHY] = "reassigned:unhealthy",
        [REASON_REASSIGNED_DISABLED] = "reassigned:disabled",
        [REASON_REASSIGNED_DRAINED] = "reassigned:drained",
        [REASON_FAILOVER_TEMPORARY] = "failover:temporary",
        [REASON_FAILOVER_STICKY] = "failover:sticky",
        [REASON_INVALID_COOKIE] = "invalid-cookie",
        [REASON_FALLBACK_POOL] = "fallback-pool",
    };
    return (unsigned)r < REASON_COUNT ? names[r] : "unknown";
}

const char *passive_kind_name(enum passive_kind k)
{
    static const char *const names[PASSIVE_KINDS] = {
        [PASSIVE_CONNECT] = "connect",
        [PASSIVE_RESET] = "reset",
        [PASSIVE_TIMEOUT] = "timeout",
        [PASSIVE_HTTP_5XX] = "http_5xx",
    };
    return (unsigned)k < PASSIVE_KINDS ? names[k] : "unknown";
}

unsigned stats_duration_bucket(double seconds)
{
    for (unsigned i = 0; i < DURATION_BUCKETS; i++)
        if (seconds <= stats_duration_bounds[i])
            return i;
    return DURATION_BUCKETS;
}

unsigned stats_status_class(int status)
{
    if (status <= 0)
        return 0;
    int c = status / 100;
    return c < 1 ? 1 : c > 5 ? 5 : (unsigned)c;
}
