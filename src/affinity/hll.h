/*
 * hll — HyperLogLog distinct counting in constant memory (SPEC §3: distinct
 * sessions per origin in the last TTL window).
 *
 * A sketch is HLL_REGISTERS one-byte registers (precision HLL_P = 12: 4 KiB,
 * standard error 1.04/sqrt(4096) ≈ 1.6 %). hll_add takes a 64-bit hash that
 * must already be uniformly distributed: limpet's session ids are random, so
 * they are added as they are; structured values go through hll_mix64 first.
 * The top HLL_P bits pick a register, which keeps the largest "position of the
 * first 1 bit" seen among the remaining bits. The estimate is the standard
 * one (Flajolet et al. 2007): alpha·m²/Σ2^-M[j], replaced by linear counting
 * m·ln(m/V) while V registers are still zero and that gives ≤ 3·m (the paper
 * tests the raw estimate against 2.5·m; see hll.c for why not). With 64-bit
 * hashes no large-range correction is needed. Merging takes the per-register
 * maximum, so merge(a, b) estimates |A ∪ B| exactly as if one sketch had
 * seen both.
 *
 * Windowed variant: two sketches, `cur` and `prev`, for consecutive windows
 * of `window` seconds aligned to multiples of `window` since the epoch (so
 * every worker rotates at the same instants and their sketches merge
 * cleanly). At a window boundary cur becomes prev and cur starts empty; after
 * two boundaries without a rotation both are empty. The estimate is the
 * union of both, i.e. distinct keys seen since the start of the previous
 * window: between `window` and 2·`window` seconds of history depending on
 * where in the current window we are. It never forgets a key seen in the last
 * `window` seconds, and forgets everything older than 2·`window`. window 0
 * means "never rotate" (a cumulative count).
 *
 * Ownership: no allocation, no locks, no atomics. Each worker owns its
 * sketches and is the only writer; a reader (admin, metrics) merges copies
 * that the owning thread made (or passed to it), never a sketch being written.
 */
#ifndef LIMPET_AFFINITY_HLL_H
#define LIMPET_AFFINITY_HLL_H

#include <stdint.h>

#define HLL_P         12u
#define HLL_REGISTERS (1u << HLL_P)

struct hll {
    uint8_t reg[HLL_REGISTERS];   /* max rank seen per register (0 = none) */
};

struct hll_window {
    struct hll cur;               /* keys seen in the window starting at `start` */
    struct hll prev;              /* keys seen in the window before it */
    uint64_t start;               /* start of the current window (unix seconds) */
    uint32_t window;              /* window length in seconds; 0 = never rotate */
};

/* Empties a sketch (init and clear are the same thing). */
void hll_init(struct hll *h);
static inline void hll_clear(struct hll *h) { hll_init(h); }

/* Counts a uniformly distributed 64-bit hash. */
void hll_add(struct hll *h, uint64_t hash);

/* dst = dst ∪ src. */
void hll_merge(struct hll *dst, const struct hll *src);

/* Estimated number of distinct hashes added. */
uint64_t hll_estimate(const struct hll *h);

/* A 64-bit finaliser (splitmix64) to spread structured values (not for secrets). */
uint64_t hll_mix64(uint64_t x);

/* Empty window sketch of `window` seconds, current window containing `now`. */
void hll_window_init(struct hll_window *w, uint32_t window, uint64_t now);

/* Rotates as needed for `now` (called by hll_window_add; call it on a timer too). */
void hll_window_advance(struct hll_window *w, uint64_t now);

/* Advances to `now`, then counts `hash` in the current window. */
void hll_window_add(struct hll_window *w, uint64_t hash, uint64_t now);

/*
 * dst = dst ∪ (what `w` would hold at `now`), without changing w: windows that
 * `now` has moved past are left out as a rotation would. For readers merging
 * workers' copies.
 */
void hll_window_merge_into(struct hll *dst, const struct hll_window *w, uint64_t now);

/* Estimate of distinct hashes in the last one-to-two windows at `now`. */
uint64_t hll_window_estimate(const struct hll_window *w, uint64_t now);

#endif
