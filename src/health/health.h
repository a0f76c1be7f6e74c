/*
 * health — monitors and passive checks (SPEC §5): the verdict behind
 * origin_shared->healthy.
 *
 * Everything here runs on the control thread's loop (ctl->loop): one
 * non-blocking check at a time per monitored origin (probe.c), timers for the
 * schedule, never a thread per origin. An origin is monitored when its pool
 * names a monitor; it is checked at once when it appears (start, reload, API),
 * then every `interval` on a grid whose phase is a hash of "pool/origin", so
 * a thousand origins spread over the interval instead of firing together.
 *
 * State per origin: up/down plus the consecutive failures and successes of
 * its checks. Up → down after `retries` consecutive failures, down → up after
 * `rise` consecutive successes, so a check alternating pass/fail never flips
 * an origin. Until its first check completes an origin counts as healthy.
 *
 * Passive checks: workers count connect failures, resets or closes before a
 * response and response timeouts (and 5xx answers, with the pool's
 * passive.http_5xx) of live traffic in origin_shared->passive_failures, by
 * kind too, without telling anyone (balance/route.c). A 100 ms timer on the
 * control loop scans the monitored origins and marks one down when that
 * count reaches its monitor's `retries`, logging the kinds ("3 failures seen
 * by live traffic (2 timeouts, 1 reset)"); the monitor brings it back after
 * `rise` successes. The hot path is untouched: workers only do the atomic
 * increments of a failure. Origins without a monitor are never marked down
 * here: route.c's backoff takes them out and brings them back.
 *
 * A change is stored in origin_shared->healthy at once (workers read it on
 * every routing decision), logged to stderr ("origin app/s2 down: connect:
 * Connection refused", "origin app/s2 up"), counted, and followed by one
 * control_refresh() (batched through a zero-delay timer) so derived tables
 * are rebuilt over the usable origins.
 *
 * health_sync() reconciles with every published snapshot: new origins are
 * checked at once, removed ones stop (socket closed, timers cancelled),
 * changed settings (monitor fields or origin address) restart the checks of
 * the origins concerned. State is keyed by origin_shared, whose identity
 * survives reloads, so an unchanged origin keeps its verdict and counters.
 * health keeps a reference to the last snapshot it synced with, which keeps
 * every origin_shared and cfg_* it points to alive.
 */
#ifndef LIMPET_HEALTH_HEALTH_H
#define LIMPET_HEALTH_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

struct control;
struct snapshot;
struct origin_shared;

struct health;

/* Creates the health checker of ctl (its loop and control_refresh()).
 * Returns NULL when out of memory. Nothing runs before health_sync(). */
struct health *health_new(struct control *ctl);
/* Stops every check (sockets closed, timers cancelled) and frees h (NULL ok). */
void health_free(struct health *h);
/* Reconciles the monitored origins with s (see above). Control thread. */
void health_sync(struct health *h, struct snapshot *s);

/* ---- read API (control thread: the admin API, /metrics) ---- */

struct health_origin_stats {
    bool up;                    /* the verdict (same as origin_shared->healthy) */
    bool checked;               /* a monitor check has completed */
    uint64_t checks_pass;       /* health_checks_total{result="pass"} */
    uint64_t checks_fail;       /* health_checks_total{result="fail"} */
    uint64_t went_down;         /* health_state_changes_total{to="down"} (passive included) */
    uint64_t went_up;           /* health_state_changes_total{to="up"} */
    uint64_t passive_downs;     /* of went_down: decided by live traffic */
    uint64_t last_check_ms;     /* monotonic ms of the last completed check; 0: none */
    const char *monitor;        /* monitor name */
    const char *last_failure;   /* reason of the last failed check or passive down; "" */
};

/*
 * Fills st for an origin of the last synced snapshot. Returns false when the
 * origin is not monitored (its pool names no monitor): it is then healthy
 * unless live traffic fails to reach it (route.c backoff). Counters start when
 * monitoring starts and are kept across reloads. Strings stay valid until the
 * next health_sync().
 */
bool health_origin_stats(const struct health *h, const struct origin_shared *os,
                         struct health_origin_stats *st);

/* ---- pure rules (health_rules.c; unit-tested) ---- */

enum health_change { HEALTH_SAME, HEALTH_WENT_DOWN, HEALTH_WENT_UP };

struct health_counts {
    bool up;                    /* current verdict */
    unsigned fails;             /* consecutive failed checks */
    unsigned passes;            /* consecutive passed checks */
};

/* Records one check result: down after `retries` consecutive failures while
 * up, up after `rise` consecutive successes while down. */
enum health_change health_count(struct health_counts *c, bool pass, unsigned retries,
                                unsigned rise);

/* Whether status matches expected_codes as validated by the config: "200",
 * "2xx", or a comma-separated list of those (spaces allowed). */
bool health_codes_match(const char *expected_codes, int status);

/* The phase of an origin's checks in [0, interval_ms): a hash of its pool and
 * origin names, so origins spread evenly over the interval. */
uint64_t health_phase_ms(const char *pool, const char *origin, uint64_t interval_ms);

/* The first time after now that is phase_ms modulo interval_ms (now < t ≤
 * now + interval_ms). */
uint64_t health_next_due(uint64_t now_ms, uint64_t interval_ms, uint64_t phase_ms);

#endif
