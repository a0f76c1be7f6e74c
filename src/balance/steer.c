/*
 * steer — smooth weighted round robin, least connections, power of two
 * choices (see steer.h).
 */
#include "balance/steer.h"

uint64_t steer_random(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static long pick_round_robin(const struct cfg_origin *origins, struct steer_slot *const *slots,
                             const bool *candidate, size_t n)
{
    int64_t total = 0;
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        if (!candidate[i] || origins[i].weight == 0)
            continue;
        slots[i]->current_weight += origins[i].weight;
        total += origins[i].weight;
        if (best < 0 || slots[i]->current_weight > slots[best]->current_weight)
            best = (long)i;
    }
    if (best >= 0)
        slots[best]->current_weight -= total;
    return best;
}

/* a is less loaded than b when active_a / weight_a < active_b / weight_b. */
static int compare_load(const struct cfg_origin *origins, struct steer_slot *const *slots,
                        size_t a, size_t b)
{
    uint64_t la = (uint64_t)slots[a]->active * origins[b].weight;
    uint64_t lb = (uint64_t)slots[b]->active * origins[a].weight;
    return la < lb ? -1 : la > lb ? 1 : 0;
}

static long pick_least_connections(const struct cfg_origin *origins, struct steer_slot *const *slots,
                                   bool *candidate, size_t n)
{
    long least = -1;
    for (size_t i = 0; i < n; i++) {
        if (!candidate[i] || origins[i].weight == 0)
            continue;
        if (least < 0 || compare_load(origins, slots, i, (size_t)least) < 0)
            least = (long)i;
    }
    if (least < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (candidate[i] && compare_load(origins, slots, i, (size_t)least) != 0)
            candidate[i] = false;
    return pick_round_robin(origins, slots, candidate, n);
}

static long pick_weighted_random(const struct cfg_origin *origins, const bool *candidate,
                                 size_t n, uint64_t total, uint64_t *rng)
{
    uint64_t r = steer_random(rng) % total;
    for (size_t i = 0; i < n; i++) {
        if (!candidate[i] || origins[i].weight == 0)
            continue;
        if (r < origins[i].weight)
            return (long)i;
        r -= origins[i].weight;
    }
    return -1;
}

static long pick_two_choices(const struct cfg_origin *origins, struct steer_slot *const *slots,
                             const bool *candidate, size_t n, uint64_t *rng)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (candidate[i])
            total += origins[i].weight;
    if (total == 0)
        return -1;
    long a = pick_weighted_random(origins, candidate, n, total, rng);
    long b = pick_weighted_random(origins, candidate, n, total, rng);
    return compare_load(origins, slots, (size_t)b, (size_t)a) < 0 ? b : a;
}

bool steer_less_loaded(const struct cfg_origin *origins, struct steer_slot *const *slots,
                       size_t a, size_t b)
{
    return compare_load(origins, slots, a, b) < 0;
}

long steer_pick(enum origin_steering mode, const struct cfg_origin *origins,
                struct steer_slot *const *slots, bool *candidate, size_t n, uint64_t *rng)
{
    switch (mode) {
    case STEER_LEAST_CONNECTIONS:
        return pick_least_connections(origins, slots, candidate, n);
    case STEER_RANDOM:
        return pick_two_choices(origins, slots, candidate, n, rng);
    case STEER_ROUND_ROBIN:
    case STEER_HASH: /* route.c picks for hash steering itself (Maglev, then rendezvous) */
        break;
    }
    return pick_round_robin(origins, slots, candidate, n);
}
