/*
 * hll — HyperLogLog sketches and their two-window rotation (see hll.h).
 *
 * Register update: idx = hash >> (64 - HLL_P); rank = 1 + number of leading
 * zeros of the other 64 - HLL_P bits (at most 64 - HLL_P + 1 when they are all
 * zero). reg[idx] = max(reg[idx], rank). Everything here is plain arithmetic
 * on fixed arrays; the estimate walks the 4096 registers once (a few µs), so
 * it belongs to readers, not to the request path (hll_add is a few ns).
 *
 * Small-range switch: the paper switches to linear counting when the raw
 * estimate is ≤ 2.5·m. The raw estimate is biased upwards right there, so
 * near n ≈ 2.5·m that rule picks the biased value half the time (measured at
 * p = 12, 100 seeds: 3.0 % rms error at n = 10 000, 1.4-1.7 % elsewhere).
 * Deciding on the linear-counting value itself (use it while ≤ 3·m) keeps
 * the error at 1.4-1.9 % rms across the seam; elsewhere nothing changes.
 */
#include "affinity/hll.h"

#include <math.h>
#include <string.h>

void hll_init(struct hll *h)
{
    memset(h->reg, 0, sizeof h->reg);
}

void hll_add(struct hll *h, uint64_t hash)
{
    uint32_t idx = (uint32_t)(hash >> (64 - HLL_P));
    uint64_t rest = hash << HLL_P;  /* remaining bits, left-aligned */
    uint8_t rank = rest ? (uint8_t)(__builtin_clzll(rest) + 1) : (uint8_t)(64 - HLL_P + 1);
    if (rank > h->reg[idx])
        h->reg[idx] = rank;
}

void hll_merge(struct hll *dst, const struct hll *src)
{
    for (uint32_t i = 0; i < HLL_REGISTERS; i++)
        if (src->reg[i] > dst->reg[i])
            dst->reg[i] = src->reg[i];
}

uint64_t hll_estimate(const struct hll *h)
{
    const double m = HLL_REGISTERS;
    const double alpha = 0.7213 / (1.0 + 1.079 / m);
    double sum = 0;
    uint32_t zeros = 0;
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        sum += ldexp(1.0, -(int)h->reg[i]);
        zeros += h->reg[i] == 0;
    }
    double e = alpha * m * m / sum;
    if (zeros) {                  /* small range: linear counting */
        double lc = m * log(m / zeros);
        if (lc <= 3.0 * m)
            e = lc;
    }
    return (uint64_t)(e + 0.5);
}

uint64_t hll_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t window_start(uint32_t window, uint64_t now)
{
    return window ? now - now % window : 0;
}

void hll_window_init(struct hll_window *w, uint32_t window, uint64_t now)
{
    hll_init(&w->cur);
    hll_init(&w->prev);
    w->window = window;
    w->start = window_start(window, now);
}

void hll_window_advance(struct hll_window *w, uint64_t now)
{
    if (!w->window || now < w->start + w->window)
        return; /* still in the current window (or time went backwards) */
    if (now < w->start + 2ull * w->window)
        w->prev = w->cur;        /* one boundary crossed */
    else
        hll_init(&w->prev);      /* two or more: the old current is too old too */
    hll_init(&w->cur);
    w->start = window_start(w->window, now);
}

void hll_window_add(struct hll_window *w, uint64_t hash, uint64_t now)
{
    hll_window_advance(w, now);
    hll_add(&w->cur, hash);
}

void hll_window_merge_into(struct hll *dst, const struct hll_window *w, uint64_t now)
{
    if (!w->window || now < w->start + w->window) {
        hll_merge(dst, &w->cur);
        hll_merge(dst, &w->prev);
    } else if (now < w->start + 2ull * w->window) {
        hll_merge(dst, &w->cur); /* would be prev after rotating; prev would be dropped */
    }
}

uint64_t hll_window_estimate(const struct hll_window *w, uint64_t now)
{
    struct hll u;
    hll_init(&u);
    hll_window_merge_into(&u, w, now);
    return hll_estimate(&u);
}
