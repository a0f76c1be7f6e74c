/*
 * route — picks the pool and origin of a request (see route.h).
 *
 * Pools are tried in the load balancer's `default_pools` order (SPEC §2
 * steering_policy "off": later pools are standbys), then `fallback_pool`.
 * Within a pool the origin is chosen by its `origin_steering` among the
 * origins that are usable: enabled, weight above 0, not tried already for
 * this request, and not in the passive-failure backoff (an origin that
 * refused a connection is left alone for a while, doubling up to
 * PASSIVE_BACKOFF_MAX_MS, so a dead origin does not cost every request a
 * failed connect).
 *
 * Passive checks (SPEC §5): connect failures, connections reset or closed
 * before a response, response timeouts — and 5xx answers when the pool sets
 * passive.http_5xx — are counted in origin_shared->passive_failures (and by
 * kind) until an answer. health.c reads that count to mark a monitored
 * origin down at its monitor's retries; an origin without a monitor is left
 * alone (the backoff) at once after a refused connect, after
 * ROUTE_PASSIVE_RETRIES other failures in a row. Only an answer to a request
 * sent after the last failure ends a streak (passive_epoch), so a response
 * already in flight from an origin just killed is not taken for a recovery.
 *
 * Everything is read from the route_ctx's snapshot, whose indexes stay valid
 * while the exchange holds it; the only writes are the thread's own steering
 * slots, scratch, generator and counters, and the origins' shared atomics.
 */
#include "balance/route.h"

#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snapshot.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/stats.h"

#define PASSIVE_BACKOFF_MIN_MS 1000u
#define PASSIVE_BACKOFF_MAX_MS 10000u

/* ---- consistent-hash tables and orders (control thread) ---- */

static unsigned gcd(unsigned a, unsigned b)
{
    while (b) {
        unsigned t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Whether origin a's next pick is due before b's: pick k of an origin of
 * weight w is due at (2k + 1) / 2w; ties go to the lower index. */
static bool due_before(const unsigned *weights, const uint32_t *picks, uint32_t a, uint32_t b)
{
    uint64_t da = (2ull * picks[a] + 1) * weights[b], db = (2ull * picks[b] + 1) * weights[a];
    return da < db || (da == db && a < b);
}

static void due_sift_down(uint32_t *heap, size_t k, const unsigned *weights,
                          const uint32_t *picks, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < k && due_before(weights, picks, heap[l], heap[m]))
            m = l;
        if (l + 1 < k && due_before(weights, picks, heap[l + 1], heap[m]))
            m = l + 1;
        if (m == i)
            return;
        uint32_t t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
}

/* The pool's order for round robin and random steering: every usable origin
 * as often as its weight (divided by the weights' gcd), each pick going to
 * the origin due earliest, so an origin's turns are spread evenly like smooth
 * weighted round robin's. Left empty when nothing is usable or it would be
 * longer than ROUTE_ORDER_MAX (steering then scans the pool instead). */
static int build_order(struct route_hash *h, const unsigned *weights, const bool *usable,
                       size_t n)
{
    unsigned g = 0;
    uint64_t len = 0;
    size_t k = 0;
    for (size_t o = 0; o < n; o++)
        if (usable[o]) {
            g = gcd(weights[o], g);
            k++;
        }
    for (size_t o = 0; o < n; o++)
        len += usable[o] ? weights[o] / g : 0;
    if (k == 0 || len > ROUTE_ORDER_MAX)
        return 0;
    uint32_t *heap = calloc(k, sizeof(*heap)), *picks = calloc(n, sizeof(*picks));
    h->order = malloc(len * sizeof(*h->order));
    if (!heap || !picks || !h->order) {
        free(heap);
        free(picks);
        return -1;
    }
    k = 0;
    for (size_t o = 0; o < n; o++)
        if (usable[o])
            heap[k++] = (uint32_t)o;
    for (size_t i = k / 2; i-- > 0;)
        due_sift_down(heap, k, weights, picks, i);
    for (uint64_t i = 0; i < len; i++) {
        /* weights, not reduced: the order of the deadlines is the same */
        uint32_t o = heap[0];
        h->order[i] = o;
        picks[o]++;
        due_sift_down(heap, k, weights, picks, 0);
    }
    h->order_len = (uint32_t)len;
    free(heap);
    free(picks);
    return 0;
}

static int build_pool_hash(struct route_hash *h, const struct snapshot *s, size_t p)
{
    const struct cfg_pool *pool = &s->cfg->pools[p];
    size_t n = pool->num_origins;
    const char **names = calloc(n, sizeof(*names));
    unsigned *weights = calloc(n, sizeof(*weights));
    bool *usable = calloc(n, sizeof(*usable));
    bool *serving = calloc(n, sizeof(*serving));
    h->name_hash = calloc(n ? n : 1, sizeof(*h->name_hash));
    int rc = -1;
    if (!names || !weights || !usable || !serving || !h->name_hash)
        goto out;
    h->equal_weights = true;
    bool any_draining = false;
    double drain_ms = config_pool_drain_duration(s->cfg, p) * 1000.0;
    uint64_t now = clock_ms();
    for (size_t o = 0; o < n; o++) {
        const struct cfg_origin *origin = &pool->origins[o];
        const struct origin_shared *os = s->pools[p].origins[o];
        names[o] = origin->name;
        weights[o] = origin->weight;
        h->name_hash[o] = maglev_hash(origin->name, strlen(origin->name));
        h->equal_weights &= origin->weight == pool->origins[0].weight;
        usable[o] = snapshot_origin_usable(s, p, o);
        /* A draining origin keeps its hashed sessions until its drain is over. */
        uint64_t started = atomic_load(&os->drain_started_ms);
        bool still_draining = origin->state == ORIGIN_DRAINING && started &&
                              (double)(now - started) < drain_ms;
        serving[o] = usable[o] || (atomic_load(&os->healthy) && still_draining);
        any_draining |= still_draining;
    }
    if (maglev_build(&h->usable, names, weights, usable, n) < 0)
        goto out;
    if (maglev_build(&h->serving, names, weights, any_draining ? serving : usable, n) < 0)
        goto out;
    if (pool->origin_steering != STEER_HASH && pool->origin_steering != STEER_LEAST_CONNECTIONS &&
        build_order(h, weights, usable, n) < 0)
        goto out;
    rc = 0;
out:
    free(names);
    free(weights);
    free(usable);
    free(serving);
    return rc;
}

struct route_hash *route_hash_build(const struct snapshot *s)
{
    struct route_hash *h = calloc(s->cfg->num_pools ? s->cfg->num_pools : 1, sizeof(*h));
    if (!h)
        return NULL;
    for (size_t p = 0; p < s->cfg->num_pools; p++) {
        if (build_pool_hash(&h[p], s, p) < 0) {
            route_hash_free(h, s);
            return NULL;
        }
    }
    return h;
}

void route_hash_free(struct route_hash *h, const struct snapshot *s)
{
    if (!h)
        return;
    for (size_t p = 0; p < s->cfg->num_pools; p++) {
        maglev_free(&h[p].usable);
        maglev_free(&h[p].serving);
        free(h[p].name_hash);
        free(h[p].order);
    }
    free(h);
}

void route_cursors_carry(const struct snapshot *s, uint32_t *cursors, const struct snapshot *prev,
                         const uint32_t *prev_cursors)
{
    for (size_t p = 0; p < s->cfg->num_pools; p++) {
        long q = prev ? config_pool_index(prev->cfg, s->cfg->pools[p].name) : -1;
        cursors[p] = q >= 0 ? prev_cursors[q] : 0;
    }
}

/* ---- per request (worker) ---- */

static const struct cfg_load_balancer *ctx_lb(const struct route_ctx *ctx)
{
    return &ctx->snap->cfg->load_balancers[ctx->lb];
}

size_t route_client_key(const struct route_ctx *ctx, uint8_t out[16])
{
    size_t n = ctx->client_family == 6 ? 8 : 4; /* IPv6 clients hash on their /64 */
    memcpy(out, ctx->client_addr, n);
    return n;
}

static bool already_tried(const struct route_tried *tried, size_t pool, size_t origin)
{
    for (unsigned i = 0; i < tried->n; i++)
        if (tried->at[i].pool == pool && tried->at[i].origin == origin)
            return true;
    return false;
}

bool route_tried_add(struct route_tried *tried, size_t pool, size_t origin)
{
    if (tried->n >= ROUTE_MAX_ATTEMPTS)
        return false;
    tried->at[tried->n].pool = (uint16_t)pool;
    tried->at[tried->n].origin = (uint16_t)origin;
    tried->n++;
    return true;
}

bool route_origin_usable(const struct route_ctx *ctx, size_t p, size_t o)
{
    const struct origin_shared *os = ctx->snap->pools[p].origins[o];
    return snapshot_origin_usable(ctx->snap, p, o) &&
           atomic_load_explicit(&os->retry_after_ms, memory_order_relaxed) <= ctx->now_ms;
}

bool route_origin_full(const struct snapshot *s, size_t p, size_t o)
{
    unsigned max = s->cfg->pools[p].origins[o].max_connections;
    return max > 0 &&
           atomic_load_explicit(&s->pools[p].origins[o]->in_flight, memory_order_relaxed) >= max;
}

bool route_slot_take(const struct snapshot *s, size_t p, size_t o, struct origin_shared **held)
{
    unsigned max = s->cfg->pools[p].origins[o].max_connections;
    *held = NULL;
    if (max == 0)
        return true;
    struct origin_shared *os = s->pools[p].origins[o];
    unsigned n = atomic_load_explicit(&os->in_flight, memory_order_relaxed);
    do {
        if (n >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&os->in_flight, &n, n + 1,
                                                    memory_order_acq_rel, memory_order_relaxed));
    *held = os;
    return true;
}

void route_slot_release(struct origin_shared *held)
{
    if (held)
        atomic_fetch_sub_explicit(&held->in_flight, 1, memory_order_acq_rel);
}

/* slow_start: the share of its weight origin (p, o) takes of new sessions —
 * elapsed/slow_start of the way since it came back (at least 1%), or 1 when
 * it is not ramping up. */
static double slow_start_share(const struct route_ctx *ctx, size_t p, size_t o)
{
    double ramp_ms = ctx->snap->cfg->pools[p].origins[o].slow_start * 1000.0;
    if (ramp_ms <= 0)
        return 1.0;
    const struct origin_shared *os = ctx->snap->pools[p].origins[o];
    uint64_t since = atomic_load_explicit(&os->up_since_ms, memory_order_relaxed);
    if (since == 0)
        return 1.0;
    double elapsed = ctx->now_ms > since ? (double)(ctx->now_ms - since) : 0.0;
    if (elapsed >= ramp_ms)
        return 1.0;
    double share = elapsed / ramp_ms;
    return share < 0.01 ? 0.01 : share;
}

/* Whether a new session whose draw (uniform over 64 bits) falls beyond that
 * share passes over the origin. */
static bool beyond_share(double share, uint64_t draw)
{
    return share < 1.0 && (double)(draw % 1000000) >= share * 1000000.0;
}

/* Hash steering's second choice, when the client's own origin cannot take
 * it: weighted rendezvous hashing over the candidates left (left of them),
 * each scored from the client's key and the origin's name (hashed once per
 * snapshot). A client thus lands on the same second origin every time while
 * the reason lasts, and the clients of one origin spread over the others by
 * weight. A ramping origin is passed over by a draw of the same score while
 * another candidate is left. With equal weights the highest draw has the
 * highest score, so the logarithm is skipped: a pass over 1,000 origins costs
 * a hash mix each. */
static long second_choice(const struct route_ctx *ctx, size_t p, uint64_t key_hash, size_t left)
{
    const struct cfg_pool *pool = &ctx->snap->cfg->pools[p];
    const struct route_hash *h = &ctx->snap->hash[p];
    long best = -1, best_ramping = -1;
    double best_score = -1.0, best_ramping_score = -1.0;
    for (size_t o = 0; o < pool->num_origins; o++) {
        if (!ctx->candidates[o])
            continue;
        uint64_t draw = maglev_hash_seeded(&h->name_hash[o], sizeof(h->name_hash[o]), key_hash);
        double score;
        if (h->equal_weights) {
            score = (double)(draw >> 11);
        } else {
            double unit = ((double)(draw >> 11) + 0.5) * 0x1p-53; /* in (0, 1) */
            score = pool->origins[o].weight / -log(unit);
        }
        if (left > 1 && beyond_share(slow_start_share(ctx, p, o), draw)) {
            if (score > best_ramping_score) {
                best_ramping_score = score;
                best_ramping = (long)o;
            }
        } else if (score > best_score) {
            best_score = score;
            best = (long)o;
        }
    }
    return best >= 0 ? best : best_ramping;
}

/* Picks among the candidates of pool p (ctx->candidates, at least one): the
 * client's origin first for hash steering; origins at max_connections only
 * when none has room (never with room_only); slow_start thinning ramping
 * origins while another candidate is left (for hash steering by a draw from
 * the client's address, so a client keeps its answer while the share grows;
 * a client whose origin cannot take it gets its second_choice()).
 * Returns the index or -1. */
static long pick_candidate(const struct route_ctx *ctx, size_t p, bool room_only)
{
    const struct snapshot *s = ctx->snap;
    const struct cfg_pool *pool = &s->cfg->pools[p];
    bool *candidate = ctx->candidates;
    size_t n = pool->num_origins, left = 0, with_room = 0;
    for (size_t o = 0; o < n; o++) {
        left += candidate[o];
        with_room += candidate[o] && !route_origin_full(s, p, o);
    }
    if (with_room == 0 && room_only)
        return -1;
    if (with_room > 0 && with_room < left) {
        for (size_t o = 0; o < n; o++)
            candidate[o] = candidate[o] && !route_origin_full(s, p, o);
        left = with_room;
    }
    if (pool->origin_steering == STEER_HASH) {
        uint8_t key[16];
        size_t len = route_client_key(ctx, key);
        uint64_t h = maglev_hash(key, len);
        long o = maglev_lookup(&s->hash[p].usable, h);
        if (o >= 0 && candidate[o]) {
            double share = slow_start_share(ctx, p, (size_t)o);
            if (left == 1 || share >= 1.0 || !beyond_share(share, maglev_hash_seeded(key, len, h)))
                return o;
            candidate[o] = false; /* ramping up, and not yet for this client */
            left--;
        }
        /* the client's origin was tried already, is full or ramping */
        return second_choice(ctx, p, h, left);
    }
    for (size_t o = 0; o < n && left > 1; o++) {
        double share = candidate[o] ? slow_start_share(ctx, p, o) : 1.0;
        if (share < 1.0 && beyond_share(share, steer_random(ctx->rng))) {
            candidate[o] = false;
            left--;
        }
    }
    return steer_pick(pool->origin_steering, pool->origins, ctx->pool_slots[p], candidate, n,
                      ctx->rng);
}

/* ---- the quick pick: one origin looked at, not the whole pool ---- */

#define QUICK_PROBES 8            /* origins of the order looked at before scanning */

/* Whether origin o is open to this request: usable now, not tried, with room. */
static bool open_to(const struct route_ctx *ctx, const struct route_tried *tried, size_t p,
                    size_t o)
{
    return route_origin_usable(ctx, p, o) && !already_tried(tried, p, o) &&
           !route_origin_full(ctx->snap, p, o);
}

/* Whether slow_start lets origin o take a new session: always when it is not
 * ramping up, else when `draw` (one from the thread's generator when NULL)
 * falls within its share, as pick_candidate thins. */
static bool ramp_lets_through(const struct route_ctx *ctx, size_t p, size_t o,
                              const uint64_t *draw)
{
    double share = slow_start_share(ctx, p, o);
    return share >= 1.0 || !beyond_share(share, draw ? *draw : steer_random(ctx->rng));
}

/* An origin drawn by weight from the pool's order (other than `not`), for a
 * turn a ramping origin passed up; -1 when QUICK_PROBES found none. */
static long substitute(const struct route_ctx *ctx, const struct route_tried *tried, size_t p,
                       size_t not)
{
    const struct route_hash *h = &ctx->snap->hash[p];
    uint32_t at = (uint32_t)steer_random(ctx->rng);
    for (unsigned k = 0; k < QUICK_PROBES; k++) {
        uint32_t o = h->order[at++ % h->order_len];
        if (o != not && open_to(ctx, tried, p, o) && ramp_lets_through(ctx, p, o, NULL))
            return o;
    }
    return -1;
}

/* The origin whose turn it is at position `at` of the pool's order; sets
 * *next to the position after the turns used. An origin not open to the
 * request passes its turn to the next in the order. A ramping origin that
 * slow_start holds back passes its turn to an origin drawn by weight, whose
 * own turns stay where they are: its share of new sessions is then its
 * ramp's fraction of its usual share, as when the pool is scanned. -1 when
 * QUICK_PROBES positions gave nothing. */
static long walk_order(const struct route_ctx *ctx, const struct route_tried *tried, size_t p,
                       uint32_t at, uint32_t *next)
{
    const struct route_hash *h = &ctx->snap->hash[p];
    for (unsigned k = 0; k < QUICK_PROBES; k++) {
        at %= h->order_len;
        uint32_t o = h->order[at++];
        if (!open_to(ctx, tried, p, o))
            continue;
        *next = at;
        return ramp_lets_through(ctx, p, o, NULL) ? (long)o : substitute(ctx, tried, p, o);
    }
    *next = at;
    return -1;
}

/* Steering without a scan of the pool, for the common case where the origin
 * it lands on can take the request: hash steering's Maglev answer, the next
 * origin of the pool's order for round robin (origins that cannot take it
 * are stepped over, which hands their turns to the next), two draws from the
 * order for random. -1 when that fails (the caller then scans the pool, which
 * handles full, ramping and tried origins exactly), and always for
 * least_connections, which compares every candidate. */
static long quick_pick(const struct route_ctx *ctx, const struct route_tried *tried, size_t p)
{
    const struct cfg_pool *pool = &ctx->snap->cfg->pools[p];
    const struct route_hash *h = &ctx->snap->hash[p];
    uint32_t next;
    switch (pool->origin_steering) {
    case STEER_HASH: {
        uint8_t key[16];
        size_t len = route_client_key(ctx, key);
        uint64_t hash = maglev_hash(key, len);
        long o = maglev_lookup(&h->usable, hash);
        uint64_t draw = maglev_hash_seeded(key, len, hash); /* as pick_candidate draws */
        return o >= 0 && open_to(ctx, tried, p, (size_t)o) &&
                       ramp_lets_through(ctx, p, (size_t)o, &draw) ? o : -1;
    }
    case STEER_ROUND_ROBIN:
        if (h->order_len == 0)
            return -1;
        return walk_order(ctx, tried, p, ctx->pool_cursor[p], &ctx->pool_cursor[p]);
    case STEER_RANDOM: {
        if (h->order_len == 0)
            return -1;
        long a = walk_order(ctx, tried, p, (uint32_t)steer_random(ctx->rng), &next);
        long b = walk_order(ctx, tried, p, (uint32_t)steer_random(ctx->rng), &next);
        if (a < 0 || b < 0)
            return -1;
        return steer_less_loaded(pool->origins, ctx->pool_slots[p], (size_t)b, (size_t)a) ? b : a;
    }
    case STEER_LEAST_CONNECTIONS:
        break;
    }
    return -1;
}

/* Chooses an origin in one pool; returns its index or -1. */
static long choose_in_pool(const struct route_ctx *ctx, const struct route_tried *tried, size_t p)
{
    const struct cfg_pool *pool = &ctx->snap->cfg->pools[p];
    bool *candidate = ctx->candidates;
    bool any = false;
    long quick = quick_pick(ctx, tried, p);
    if (quick >= 0)
        return quick;

    for (size_t o = 0; o < pool->num_origins; o++) {
        candidate[o] = route_origin_usable(ctx, p, o) && !already_tried(tried, p, o);
        any |= candidate[o];
    }
    return any ? pick_candidate(ctx, p, false) : -1;
}

long route_choose_with_room(const struct route_ctx *ctx, const struct route_tried *tried,
                            size_t p, size_t current)
{
    const struct cfg_pool *pool = &ctx->snap->cfg->pools[p];
    bool *candidate = ctx->candidates;
    bool any = false;
    for (size_t o = 0; o < pool->num_origins; o++) {
        candidate[o] = route_origin_usable(ctx, p, o) &&
                       (o == current || !already_tried(tried, p, o));
        any |= candidate[o];
    }
    return any ? pick_candidate(ctx, p, true) : -1;
}

/* Sum of the usable origins' weights of pool p (0: nothing usable). */
static uint64_t pool_usable_weight(const struct route_ctx *ctx, size_t p)
{
    const struct cfg_pool *pool = &ctx->snap->cfg->pools[p];
    uint64_t total = 0;
    for (size_t o = 0; o < pool->num_origins; o++)
        if (route_origin_usable(ctx, p, o))
            total += pool->origins[o].weight;
    return total;
}

/* Does the client address fall in the CIDR? */
static bool cidr_contains(const struct cfg_cidr *cidr, const struct route_ctx *ctx)
{
    const struct sockaddr_storage *ss = &cidr->net.ss;
    const uint8_t *net;
    if (ss->ss_family == AF_INET && ctx->client_family == 4)
        net = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6 && ctx->client_family == 6)
        net = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    else
        return false;
    unsigned bits = cidr->prefix_len;
    for (unsigned i = 0; bits > 0; i++, bits = bits > 8 ? bits - 8 : 0) {
        uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
        if ((ctx->client_addr[i] & mask) != (net[i] & mask))
            return false;
    }
    return true;
}

/* The region_pools entry for the client's region (longest prefix wins), or NULL. */
static const struct cfg_region_pools *client_region_pools(const struct route_ctx *ctx,
                                                          const struct config *cfg,
                                                          const struct cfg_load_balancer *lb)
{
    const char *best = NULL;
    int best_len = -1;
    for (size_t r = 0; r < cfg->num_client_regions; r++) {
        const struct cfg_region *region = &cfg->client_regions[r];
        for (size_t k = 0; k < region->num_cidrs; k++) {
            if ((int)region->cidrs[k].prefix_len > best_len &&
                cidr_contains(&region->cidrs[k], ctx)) {
                best = region->name;
                best_len = (int)region->cidrs[k].prefix_len;
            }
        }
    }
    for (size_t i = 0; best && i < lb->num_region_pools; i++)
        if (strcmp(lb->region_pools[i].region, best) == 0)
            return &lb->region_pools[i];
    return NULL;
}

/* Appends pool p to the order unless it is there already. */
static void order_add(long *pools, size_t *n, size_t max, long p)
{
    for (size_t i = 0; i < *n; i++)
        if (pools[i] == p)
            return;
    if (*n < max)
        pools[(*n)++] = p;
}

/* steering_policy "random": a default pool drawn by its usable weight, or -1.
 * A consistent-hash session draws with its key, so it always lands in the
 * same pool; others draw with the thread's generator. */
static long random_pool(const struct route_ctx *ctx, const struct cfg_load_balancer *lb,
                        const uint64_t *key_hash)
{
    uint64_t total = 0;
    for (size_t i = 0; i < lb->num_default_pools; i++)
        total += pool_usable_weight(ctx, lb->default_pools[i]);
    if (total == 0)
        return -1;
    uint64_t r = (key_hash ? *key_hash : steer_random(ctx->rng)) % total;
    for (size_t i = 0; i < lb->num_default_pools; i++) {
        uint64_t w = pool_usable_weight(ctx, lb->default_pools[i]);
        if (r < w)
            return (long)lb->default_pools[i];
        r -= w;
    }
    return -1;
}

size_t route_pool_order(const struct route_ctx *ctx, long *pools, size_t max,
                        bool *fallback_last, const uint64_t *key_hash)
{
    const struct config *cfg = ctx->snap->cfg;
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
    size_t n = 0;
    if (lb->steering_policy == POLICY_GEO) {
        const struct cfg_region_pools *rp = client_region_pools(ctx, cfg, lb);
        for (size_t i = 0; rp && i < rp->num_pools; i++)
            order_add(pools, &n, max, (long)rp->pools[i]);
    } else if (lb->steering_policy == POLICY_RANDOM) {
        long p = random_pool(ctx, lb, key_hash);
        if (p >= 0)
            order_add(pools, &n, max, p);
    }
    /* "off", and what the others fall back to: default pools in order. */
    for (size_t i = 0; i < lb->num_default_pools; i++)
        order_add(pools, &n, max, (long)lb->default_pools[i]);
    size_t before = n;
    if (lb->fallback_pool >= 0)
        order_add(pools, &n, max, lb->fallback_pool);
    *fallback_last = n > before;
    return n;
}

int route_choose(const struct route_ctx *ctx, struct route_tried *tried, long *pool,
                 long *origin, bool *fallback)
{
    if (tried->n >= ROUTE_MAX_ATTEMPTS || ctx->lb < 0)
        return -1;
    long pools[ROUTE_MAX_POOLS];
    bool fallback_last;
    size_t n = route_pool_order(ctx, pools, ROUTE_MAX_POOLS, &fallback_last, NULL);
    for (size_t i = 0; i < n; i++) {
        long o = choose_in_pool(ctx, tried, (size_t)pools[i]);
        if (o < 0)
            continue;
        route_tried_add(tried, (size_t)pools[i], (size_t)o);
        *pool = pools[i];
        *origin = o;
        *fallback = fallback_last && i == n - 1;
        return 0;
    }
    return -1;
}

/* ---- passive checks (worker) ---- */

/* Records a failure of `kind` and, when it takes the origin out, starts its
 * backoff. A refused connect leaves the origin alone at once, whatever its
 * pool (trying it again would cost every request a failed connect; the
 * request itself goes elsewhere). Other failures take an origin without a
 * monitor out after ROUTE_PASSIVE_RETRIES in a row; with a monitor, health.c
 * marks it down when the count reaches the monitor's retries. */
static void record_failure(const struct route_ctx *ctx, size_t pool, size_t origin,
                           enum passive_kind kind, int err)
{
    struct origin_shared *os = ctx->snap->pools[pool].origins[origin];
    unsigned failures = atomic_fetch_add(&os->passive_failures, 1) + 1;
    unsigned of_kind = atomic_fetch_add_explicit(&os->passive_streak[kind], 1,
                                                 memory_order_relaxed) + 1;
    atomic_fetch_add_explicit(&os->passive_total[kind], 1, memory_order_relaxed);
    atomic_fetch_add(&os->passive_epoch, 1);
    /* refused connects: out from the first, for 1 s doubling with each;
     * others: from the ROUTE_PASSIVE_RETRIES-th failure in a row */
    unsigned past = kind == PASSIVE_CONNECT ? of_kind - 1 : failures - ROUTE_PASSIVE_RETRIES;
    if ((kind != PASSIVE_CONNECT && failures < ROUTE_PASSIVE_RETRIES) ||
        (kind != PASSIVE_CONNECT && ctx->snap->cfg->pools[pool].monitor_index >= 0))
        return;
    unsigned shift = past < 4 ? past : 4;
    uint64_t backoff = (uint64_t)PASSIVE_BACKOFF_MIN_MS << shift;
    if (backoff > PASSIVE_BACKOFF_MAX_MS)
        backoff = PASSIVE_BACKOFF_MAX_MS;
    atomic_store(&os->retry_after_ms, ctx->now_ms + backoff);
    if (atomic_exchange(&os->passive_out, true))
        return; /* out already: it stays out longer, said once */
    atomic_fetch_add_explicit(&os->passive_outs, 1, memory_order_relaxed);
    if (kind == PASSIVE_CONNECT) {
        log_error("origin %s/%s unreachable (%s): not chosen for %llu ms, longer while it fails",
                  os->pool, os->name, strerror(err > 0 ? err : -err),
                  (unsigned long long)backoff);
    } else {
        char why[160];
        route_passive_describe(os, why, sizeof(why));
        log_error("origin %s/%s down: %s: not chosen for %llu ms, longer while it fails",
                  os->pool, os->name, why, (unsigned long long)backoff);
    }
}

bool route_any_left(const struct route_ctx *ctx, const struct route_tried *tried)
{
    if (tried->n >= ROUTE_MAX_ATTEMPTS || ctx->lb < 0)
        return false;
    long pools[ROUTE_MAX_POOLS];
    bool fallback_last;
    size_t n = route_pool_order(ctx, pools, ROUTE_MAX_POOLS, &fallback_last, NULL);
    for (size_t i = 0; i < n; i++) {
        size_t p = (size_t)pools[i];
        for (size_t o = 0; o < ctx->snap->cfg->pools[p].num_origins; o++)
            if (route_origin_usable(ctx, p, o) && !already_tried(tried, p, o))
                return true;
    }
    return false;
}

void route_origin_failed(const struct route_ctx *ctx, size_t pool, size_t origin, int err)
{
    struct origin_shared *os = ctx->snap->pools[pool].origins[origin];
    STAT_ADD(ctx->origin_stats[os->id].connect_failures, 1);
    record_failure(ctx, pool, origin, PASSIVE_CONNECT, err);
}

void route_origin_passive_failure(const struct route_ctx *ctx, size_t pool, size_t origin,
                                  enum passive_kind kind)
{
    record_failure(ctx, pool, origin, kind, 0);
}

void route_origin_answered(const struct route_ctx *ctx, size_t pool, size_t origin, int status,
                           unsigned epoch)
{
    struct origin_shared *os = ctx->snap->pools[pool].origins[origin];
    if (status >= 500 && ctx->snap->cfg->pools[pool].passive_http_5xx) {
        record_failure(ctx, pool, origin, PASSIVE_HTTP_5XX, 0);
        return;
    }
    /* Any other answer shows the origin reachable (a 5xx too, unless the
     * pool counts them) — but only for a request sent after the last
     * failure: a response in flight from an origin just killed says nothing
     * of now. */
    if (atomic_load_explicit(&os->passive_failures, memory_order_relaxed) == 0 &&
        !atomic_load_explicit(&os->passive_out, memory_order_relaxed))
        return;
    if (atomic_load(&os->passive_epoch) != epoch)
        return;
    atomic_store(&os->passive_failures, 0);
    for (unsigned k = 0; k < PASSIVE_KINDS; k++)
        atomic_store_explicit(&os->passive_streak[k], 0, memory_order_relaxed);
    atomic_store(&os->retry_after_ms, 0);
    if (atomic_exchange(&os->passive_out, false)) {
        atomic_fetch_add_explicit(&os->passive_backs, 1, memory_order_relaxed);
        log_error("origin %s/%s reachable again", os->pool, os->name);
    }
}

size_t route_passive_describe(const struct origin_shared *os, char *buf, size_t size)
{
    static const char *const nouns[PASSIVE_KINDS][2] = {
        [PASSIVE_CONNECT] = {"connect failure", "connect failures"},
        [PASSIVE_RESET] = {"reset", "resets"},
        [PASSIVE_TIMEOUT] = {"timeout", "timeouts"},
        [PASSIVE_HTTP_5XX] = {"5xx answer", "5xx answers"},
    };
    unsigned failures = atomic_load(&os->passive_failures);
    int n = snprintf(buf, size, "%u failure%s seen by live traffic", failures,
                     failures == 1 ? "" : "s");
    const char *sep = " (";
    for (unsigned k = 0; k < PASSIVE_KINDS && n >= 0 && (size_t)n < size; k++) {
        unsigned count = atomic_load_explicit(&os->passive_streak[k], memory_order_relaxed);
        if (count == 0)
            continue;
        n += snprintf(buf + n, size - (size_t)n, "%s%u %s", sep, count,
                      nouns[k][count != 1]);
        sep = ", ";
    }
    if (*sep == ',' && n >= 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, ")");
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}
