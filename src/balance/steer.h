/*
 * steer — choosing an origin within a pool (SPEC §2 `origin_steering`).
 *
 * Each worker thread keeps its own `struct steer_slot` per origin (smooth
 * round-robin weight, requests in flight), so choosing needs no lock and no
 * shared write. The caller says which origins are candidates (usable and not
 * yet tried for this request); weights of 0 are never chosen.
 *
 *  - round_robin: nginx-style smooth weighted round robin: every candidate's
 *    current weight grows by its weight, the largest wins and is lowered by
 *    the candidates' total, which interleaves picks (a,b,a,c,a,b,a...).
 *  - least_connections: fewest requests in flight relative to weight; ties
 *    broken by smooth round robin among the tied candidates.
 *  - random: power of two choices: two weighted random candidates, the one
 *    with fewer requests in flight (relative to weight) wins.
 */
#ifndef LIMPET_BALANCE_STEER_H
#define LIMPET_BALANCE_STEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/settings.h"

struct steer_slot {
    int64_t current_weight;       /* smooth weighted round-robin state */
    uint32_t active;              /* requests in flight from this thread */
};

/*
 * Picks an origin among origins[i] with candidate[i] true and weight > 0;
 * slots[i] is that origin's steering state (kept per thread by the caller).
 * `candidate` may be modified (used as scratch for ties). Returns the index,
 * or -1 when there is no candidate.
 */
long steer_pick(enum origin_steering mode, const struct cfg_origin *origins,
                struct steer_slot *const *slots, bool *candidate, size_t n, uint64_t *rng);

/* Whether origin a is less loaded than b (fewer requests in flight relative
 * to weight) on this thread. */
bool steer_less_loaded(const struct cfg_origin *origins, struct steer_slot *const *slots,
                       size_t a, size_t b);

/* xorshift64* step: a fast per-thread pseudo-random generator (not for secrets). */
uint64_t steer_random(uint64_t *state);

#endif
