/*
 * maglev — Maglev lookup-table construction, lookups and the key hash.
 * See maglev.h for the method (permutations from name hashes, weighted turns
 * in rounds, table size rule, bounded loads) and the threading contract.
 *
 * Build cost: O(n log n) to order origins, O(M log n) for the turns, and the
 * probing for free slots, about M·ln M steps in total (~0.7 M for M = 65537).
 * Memory: M × 4 bytes for the table plus O(n) scratch freed before returning.
 */
#include "balance/maglev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAGLEV_MAX_ORIGINS (1u << 20)   /* keeps M below 2^28 and indexes in int32 */
#define MAGLEV_TRACKED 1024u            /* bounded walk: origins tracked as seen */

/* ---- hash ---------------------------------------------------------------- */

/* Odd 64-bit constants with well-spread bits (the xxHash64 primes). */
#define H_K1 0x9E3779B185EBCA87ull
#define H_K2 0xC2B2AE3D27D4EB4Full
#define H_K3 0x165667B19E3779F9ull
#define H_K4 0x85EBCA77C2B2AE63ull
#define H_K5 0x27D4EB2F165667C5ull

/* Seeds of the two name hashes (ASCII "limpet-o", "limpet-s"). */
#define SEED_OFFSET 0x6c696d7065742d6full
#define SEED_SKIP   0x6c696d7065742d73ull

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

/* Little-endian load of len (1..8) bytes, byte by byte: same on every host. */
static inline uint64_t load_le(const unsigned char *p, size_t len)
{
    uint64_t w = 0;
    for (size_t i = 0; i < len; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* Mixes one 64-bit word into the accumulator. */
static inline uint64_t hash_round(uint64_t acc, uint64_t w)
{
    acc ^= rotl64(w * H_K2, 31) * H_K1;
    return rotl64(acc, 27) * H_K1 + H_K4;
}

/* splitmix64's finaliser: every input bit affects every output bit. */
static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 31;
    return h;
}

uint64_t maglev_hash_seeded(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    /* The length goes in first, so zero-padding of the tail is unambiguous. */
    uint64_t h = (seed ^ H_K5) + (uint64_t)len * H_K3;
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        h = hash_round(h, load_le(p + i, 8));
    if (i < len)
        h = hash_round(h, load_le(p + i, len - i) ^ H_K3);
    return fmix64(h);
}

uint64_t maglev_hash(const void *data, size_t len)
{
    return maglev_hash_seeded(data, len, 0);
}

/* ---- table size ---------------------------------------------------------- */

static bool is_prime(uint64_t x)
{
    if (x < 2)
        return false;
    if (x % 2 == 0)
        return x == 2;
    for (uint64_t d = 3; d * d <= x; d += 2)
        if (x % d == 0)
            return false;
    return true;
}

/* Smallest prime ≥ max(MAGLEV_MIN_SIZE, next power of two ≥ 100·max(n,1)). */
static uint32_t table_size(size_t n)
{
    uint64_t want = (uint64_t)MAGLEV_MIN_PER_ORIGIN * (n ? n : 1);
    uint64_t p = 1;
    while (p < want)
        p <<= 1;
    if (p < MAGLEV_MIN_SIZE)
        p = MAGLEV_MIN_SIZE;
    while (!is_prime(p))
        p++;
    return (uint32_t)p;
}

/* ---- build --------------------------------------------------------------- */

struct mg_origin {
    const char *name;             /* hash input ("" for NULL) */
    uint32_t index;               /* position in the caller's arrays */
    uint32_t weight;              /* > 0 */
    uint32_t pos;                 /* next slot of this origin's permutation */
    uint32_t skip;                /* 1..M-1 */
    uint64_t turns;               /* slots claimed so far */
    uint64_t next_round;          /* round of the next turn: ceil((turns+1)·wmax/w) */
};

static int origin_cmp(const void *a, const void *b)
{
    const struct mg_origin *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (x->index > y->index) - (x->index < y->index);
}

/* Heap order: earlier round first, then rank (position in name order). */
static inline bool turn_before(const struct mg_origin *o, uint32_t a, uint32_t b)
{
    if (o[a].next_round != o[b].next_round)
        return o[a].next_round < o[b].next_round;
    return a < b;
}

static void heap_sift_down(uint32_t *heap, uint32_t len, const struct mg_origin *o, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < len && turn_before(o, heap[l], heap[best]))
            best = l;
        if (r < len && turn_before(o, heap[r], heap[best]))
            best = r;
        if (best == i)
            return;
        uint32_t t = heap[i];
        heap[i] = heap[best];
        heap[best] = t;
        i = best;
    }
}

int maglev_build(struct maglev *m, const char *const *names, const unsigned *weights,
                 const bool *usable, size_t n)
{
    struct mg_origin *o = NULL;
    uint32_t *heap = NULL;
    int rc = 0;

    memset(m, 0, sizeof(*m));
    if (n > MAGLEV_MAX_ORIGINS)
        return -EINVAL;
    uint32_t size = table_size(n);
    m->size = size;
    m->n = (uint32_t)n;

    /* Origins that get slots, in name order. */
    uint32_t k = 0;
    uint64_t wmax = 0;
    if (n) {
        o = calloc(n, sizeof(*o));
        if (!o)
            return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if ((usable && !usable[i]) || weights[i] == 0)
            continue;
        o[k].name = names[i] ? names[i] : "";
        o[k].index = (uint32_t)i;
        o[k].weight = weights[i];
        if (weights[i] > wmax)
            wmax = weights[i];
        k++;
    }
    if (k == 0)
        goto out;                         /* valid, empty: lookups return -1 */
    qsort(o, k, sizeof(*o), origin_cmp);

    int32_t *table = malloc((size_t)size * sizeof(*table));
    heap = malloc((size_t)k * sizeof(*heap));
    if (!table || !heap) {
        free(table);
        rc = -ENOMEM;
        goto out;
    }
    memset(table, 0xff, (size_t)size * sizeof(*table)); /* every slot -1: free */

    for (uint32_t r = 0; r < k; r++) {
        size_t len = strlen(o[r].name);
        o[r].pos = (uint32_t)(maglev_hash_seeded(o[r].name, len, SEED_OFFSET) % size);
        o[r].skip = (uint32_t)(maglev_hash_seeded(o[r].name, len, SEED_SKIP) % (size - 1)) + 1;
        o[r].turns = 0;
        o[r].next_round = (wmax + o[r].weight - 1) / o[r].weight;
        heap[r] = r;
    }
    for (uint32_t i = k / 2; i-- > 0;)
        heap_sift_down(heap, k, o, i);

    for (uint32_t filled = 0; filled < size; filled++) {
        struct mg_origin *e = &o[heap[0]];
        /* Next free slot of its permutation; one exists since filled < size. */
        while (table[e->pos] != -1) {
            e->pos += e->skip;
            if (e->pos >= size)
                e->pos -= size;
        }
        table[e->pos] = (int32_t)e->index;
        e->pos += e->skip;
        if (e->pos >= size)
            e->pos -= size;
        e->turns++;
        e->next_round = ((e->turns + 1) * wmax + e->weight - 1) / e->weight;
        heap_sift_down(heap, k, o, 0);
    }
    m->table = table;
    m->n_usable = k;

out:
    free(heap);
    free(o);
    if (rc)
        memset(m, 0, sizeof(*m));
    return rc;
}

void maglev_free(struct maglev *m)
{
    free(m->table);
    memset(m, 0, sizeof(*m));
}

/* ---- lookups ------------------------------------------------------------- */

long maglev_lookup(const struct maglev *m, uint64_t key_hash)
{
    if (!m->table)
        return -1;
    return m->table[key_hash % m->size];
}

long maglev_lookup_bounded(const struct maglev *m, uint64_t key_hash,
                           const uint32_t *load, uint32_t cap)
{
    if (!m->table)
        return -1;
    uint32_t slot = (uint32_t)(key_hash % m->size);
    int32_t first = m->table[slot];
    if (load[first] < cap)
        return first;

    /* When every index fits the bitmap, stop once all usable origins were seen. */
    uint64_t seen[MAGLEV_TRACKED / 64];
    bool track = m->n <= MAGLEV_TRACKED;
    uint32_t distinct = 1;
    if (track) {
        memset(seen, 0, sizeof(seen));
        seen[first / 64] |= 1ull << (first % 64);
        if (distinct == m->n_usable)
            return first;
    }
    for (uint32_t step = 1; step < m->size; step++) {
        if (++slot == m->size)
            slot = 0;
        int32_t o = m->table[slot];
        if (load[o] < cap)
            return o;
        if (track && !(seen[o / 64] & (1ull << (o % 64)))) {
            seen[o / 64] |= 1ull << (o % 64);
            if (++distinct == m->n_usable)
                break;
        }
    }
    return first;
}

uint32_t maglev_bounded_cap(uint64_t total_load, uint32_t n_usable, unsigned factor_percent)
{
    if (n_usable == 0)
        return UINT32_MAX;
    uint64_t f = factor_percent < 100 ? 100 : factor_percent > 100000 ? 100000 : factor_percent;
    uint64_t a = total_load == UINT64_MAX ? total_load : total_load + 1;
    if (a > (UINT64_MAX - 99) / f)
        return UINT32_MAX;
    /* ceil(ceil(a·f / 100) / n) == ceil(a·f / (100·n)) */
    uint64_t c = (a * f + 99) / 100;
    c = (c + n_usable - 1) / n_usable;
    return c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
}
