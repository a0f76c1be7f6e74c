/*
 * maglev — consistent hashing with a Maglev lookup table (Eisenbud et al.,
 * "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016),
 * weighted, with optional bounded loads (SPEC §3 "Consistent hashing").
 *
 * How it works. The table has M slots, M prime. Every usable origin of weight
 * > 0 owns a permutation of the slots, (offset + j·skip) mod M, where offset
 * and skip come from two seeded hashes of the origin's NAME (never its address
 * or index), so the table depends only on names, weights and usability. Origins
 * then take turns claiming the next still-free slot of their permutation until
 * the table is full; a key is routed by table[key_hash mod M]. Because each
 * origin keeps its preferences whatever the others do, removing one origin (or
 * marking it unusable) re-routes its own keys and only a small fraction of the
 * others' (measured: 0.22 % of them when 1 of 10 origins leaves).
 *
 * Weights ("weighted Maglev"): turns are taken in rounds. An origin of weight w
 * takes its k-th turn in round ceil(k·wmax/w) (wmax: largest weight), so after
 * r rounds it has claimed floor(r·w/wmax) slots: the heaviest origin claims one
 * slot every round, one of half its weight every other round. Within a round,
 * origins go in order of name (then index), so reordering the config does not
 * change which origin a key maps to. A min-heap keyed on (round, rank) yields
 * the turns in O(M log n). Each origin ends with M·w/Σw slots to within two.
 *
 * Table size rule: M = smallest prime ≥ max(65537, P), where P is the power of
 * two ≥ 100 × max(n, 1) and n is the number of origins passed (usable or not).
 * So M ≥ 100·n as SPEC §3 demands; 65537 (a prime) for pools of up to 655
 * origins, which keeps the slot-count imbalance between origins below 0.02 %
 * for 10 origins, and M only changes when n crosses a power of two, so adding
 * or removing an origin normally keeps M (changing M reshuffles every key).
 * A table of M int32 entries is 256 KiB for the common size.
 *
 * Determinism: maglev_hash() reads input bytes one at a time as little-endian
 * words and uses only fixed constants: the same names, weights and usability
 * give a byte-identical table on any machine, process or run, so every limpet
 * instance routes a key the same way (SPEC §7).
 *
 * Threads: maglev_build() allocates and runs on the control thread; the table
 * is then immutable (part of a published snapshot) and maglev_lookup*() are
 * read-only, lock-free and allocation-free, callable from any worker.
 */
#ifndef LIMPET_BALANCE_MAGLEV_H
#define LIMPET_BALANCE_MAGLEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAGLEV_MIN_SIZE 65537u    /* smallest table size (a prime) */
#define MAGLEV_MIN_PER_ORIGIN 100u /* table has at least this many slots per origin */

struct maglev {
    int32_t *table;               /* size entries: origin index; NULL when no usable origin */
    uint32_t size;                /* M, a prime (set even when table is NULL) */
    uint32_t n;                   /* origins passed to maglev_build (indexes < n) */
    uint32_t n_usable;            /* origins that own slots (usable, weight > 0) */
};

/*
 * Builds the table for origins 0..n-1: names[i] (NUL-terminated, the hash
 * input), weights[i] (0 = never chosen) and usable[i] (usable may be NULL:
 * all usable). Only origins that are usable with weight > 0 get slots. `m` is
 * overwritten (its previous contents are ignored, free them first). Returns 0,
 * -EINVAL when n is too large (> 2^20), or -ENOMEM; on error `m` is left empty
 * (lookups return -1, maglev_free is safe). A table with no usable origin is
 * valid: lookups return -1.
 */
int maglev_build(struct maglev *m, const char *const *names, const unsigned *weights,
                 const bool *usable, size_t n);

/* Releases the table; `m` becomes empty (lookups return -1). */
void maglev_free(struct maglev *m);

/* Origin index for a key hash (from maglev_hash), or -1 when no origin is usable. O(1). */
long maglev_lookup(const struct maglev *m, uint64_t key_hash);

/*
 * Bounded-load lookup (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing
 * with Bounded Loads", SODA 2018): walks the table from the key's slot
 * (slot, slot+1, … wrapping around) and returns the first origin whose
 * load[origin] < cap. Neighbouring slots belong to effectively random origins,
 * so keys of an origin at its cap spill evenly over the others, and a key
 * returns to its own origin as soon as that one is below cap again. `load` has
 * m->n entries (e.g. requests in flight per origin). If no usable origin is
 * below cap, returns the plain maglev_lookup() answer. The walk stops as soon
 * as every usable origin has been seen (origins with index < 1024 are tracked),
 * else after M slots; with cap from maglev_bounded_cap() an origin below cap
 * always exists and the walk is short (a few slots on average).
 */
long maglev_lookup_bounded(const struct maglev *m, uint64_t key_hash,
                           const uint32_t *load, uint32_t cap);

/*
 * Cap for maglev_lookup_bounded() per Mirrokni et al.: ceil(factor/100 ×
 * (total_load + 1) / n_usable), where total_load is the current load summed
 * over usable origins, the +1 is the request being placed and factor_percent
 * is `hash_balance_factor` (≥ 100). With factor ≥ 100 at least one usable
 * origin is always below the cap. Returns UINT32_MAX when n_usable is 0.
 */
uint32_t maglev_bounded_cap(uint64_t total_load, uint32_t n_usable, unsigned factor_percent);

/*
 * Fast non-cryptographic 64-bit hash (xxHash-style word rounds with explicit
 * little-endian loads, splitmix64 finaliser), identical on every platform.
 * Used for keys: client address bytes, header values. Not for secrets: a
 * client that can choose its key can choose its origin, which is harmless.
 */
uint64_t maglev_hash(const void *data, size_t len);

/* Same with a seed. Chain values with maglev_hash_seeded(b, lb, maglev_hash(a, la)). */
uint64_t maglev_hash_seeded(const void *data, size_t len, uint64_t seed);

#endif
