/*
 * affinity — building the affinity tables of a snapshot and deciding each
 * request's origin (see affinity.h).
 *
 * Decision order for a request (SPEC §3):
 *  1. Find the session key of the load balancer's mode: limpet's cookie
 *     (cookie, ip_cookie, and header mode without its headers), header values
 *     (header), the client address (ip), the application's cookie (app_cookie).
 *  2. Map it to a pinned origin: a verified cookie names an origin key; a
 *     hash goes through the pool's Maglev table of serving origins; an
 *     app_cookie prefix or route suffix names an origin directly.
 *  3. Keep the pinned origin while it is usable, or draining and still within
 *     drain_duration; otherwise reassign (reason says why) and, for cookie
 *     sessions, issue a new cookie.
 *  4. With no key: follow the origin of this connection's first request
 *     (per-connection pinning), else assign: consistent hash for ip_cookie,
 *     ip and header modes, pool steering otherwise.
 */
#include "affinity/affinity.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/snapshot.h"
#include "core/log.h"
#include "core/loop.h"
#include "proxy/thread.h"
#include "http/cookie.h"
#include "proxy/proxy.h"

/* ---- tables (control thread) ---- */

static pthread_once_t random_keys_once = PTHREAD_ONCE_INIT;
static struct token_keys *random_keys;

static void make_random_keys(void)
{
    random_keys = token_keys_random();
    log_error("secret_file not set: affinity cookies are signed with a random key made at "
              "start; they will not survive a restart nor be shared between instances");
}

static int compare_origin_keys(const void *a, const void *b)
{
    uint64_t x = ((const struct affinity_origin_key *)a)->key;
    uint64_t y = ((const struct affinity_origin_key *)b)->key;
    return x < y ? -1 : x > y;
}

static void encode_prefix(uint64_t key, char out[APP_PREFIX_LEN + 1])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < APP_PREFIX_LEN; i++) {
        out[i] = alphabet[key & 63];
        key >>= 6;
    }
    out[APP_PREFIX_LEN] = '\0';
}

static int build_pool(struct affinity_pool *ap, const struct snapshot *s, size_t p,
                      const struct token_keys *keys)
{
    const struct cfg_pool *pool = &s->cfg->pools[p];
    size_t n = pool->num_origins;
    const char **names = calloc(n, sizeof(*names));
    unsigned *weights = calloc(n, sizeof(*weights));
    bool *usable = calloc(n, sizeof(*usable));
    bool *serving = calloc(n, sizeof(*serving));
    unsigned num_keys = token_keys_count(keys);
    ap->app_prefix = calloc(n * num_keys, sizeof(*ap->app_prefix));
    int rc = -1;
    if (!names || !weights || !usable || !serving || !ap->app_prefix)
        goto out;
    bool any_draining = false;
    double drain_ms = config_pool_drain_duration(s->cfg, p) * 1000.0;
    uint64_t now = clock_ms();
    for (size_t o = 0; o < n; o++) {
        const struct cfg_origin *origin = &pool->origins[o];
        const struct origin_shared *os = s->pools[p].origins[o];
        names[o] = origin->name;
        weights[o] = origin->weight;
        usable[o] = snapshot_origin_usable(s, p, o);
        /* A draining origin keeps its hashed sessions until its drain is over. */
        uint64_t started = atomic_load(&os->drain_started_ms);
        bool still_draining = origin->state == ORIGIN_DRAINING && started &&
                              (double)(now - started) < drain_ms;
        serving[o] = usable[o] || (atomic_load(&os->healthy) && still_draining);
        any_draining |= still_draining;
        for (unsigned k = 0; k < num_keys; k++) /* every key's prefix, so rotation keeps sessions */
            encode_prefix(token_origin_key_with(keys, k, pool->name, origin->name),
                          ap->app_prefix[k * n + o]);
    }
    if (maglev_build(&ap->usable, names, weights, usable, n) < 0)
        goto out;
    if (maglev_build(&ap->serving, names, weights, any_draining ? serving : usable, n) < 0)
        goto out;
    rc = 0;
out:
    free(names);
    free(weights);
    free(usable);
    free(serving);
    return rc;
}

static char *cookie_attributes(const struct cfg_load_balancer *lb, bool secure)
{
    const struct cfg_affinity_attributes *a = &lb->attributes;
    static const char *const samesite[] = {
        [SAMESITE_AUTO] = "Lax", [SAMESITE_NONE] = "None",
        [SAMESITE_LAX] = "Lax", [SAMESITE_STRICT] = "Strict",
    };
    char max_age[48] = "";
    if (lb->session_affinity_ttl > 0)
        snprintf(max_age, sizeof(max_age), "; Max-Age=%u", (unsigned)lb->session_affinity_ttl);
    char *out = NULL;
    if (asprintf(&out, "; Path=%s%s%s; SameSite=%s%s", a->path, max_age,
                 a->httponly ? "; HttpOnly" : "", samesite[a->samesite],
                 secure ? "; Secure" : "") < 0)
        return NULL;
    return out;
}

struct affinity_tables *affinity_tables_build(const struct snapshot *s, char *err,
                                              size_t err_size)
{
    const struct config *cfg = s->cfg;
    struct affinity_tables *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (cfg->secret_file) {
        char why[256];
        if (token_keys_load(cfg->secret_file, &t->keys, why, sizeof(why)) < 0) {
            snprintf(err, err_size, "secret_file: %s", why);
            free(t);
            return NULL;
        }
        t->keys_owned = true;
    } else {
        pthread_once(&random_keys_once, make_random_keys);
        t->keys = random_keys;
    }
    t->num_keys = token_keys_count(t->keys);

    size_t total = 0;
    for (size_t p = 0; p < cfg->num_pools; p++)
        total += cfg->pools[p].num_origins;
    t->by_key = calloc(total * t->num_keys + 1, sizeof(*t->by_key));
    t->pools = calloc(cfg->num_pools, sizeof(*t->pools));
    t->lbs = calloc(cfg->num_load_balancers, sizeof(*t->lbs));
    if (!t->by_key || !t->pools || !t->lbs)
        goto fail;
    for (unsigned k = 0; k < t->num_keys; k++)
        for (size_t p = 0; p < cfg->num_pools; p++)
            for (size_t o = 0; o < cfg->pools[p].num_origins; o++)
                t->by_key[t->num_by_key++] = (struct affinity_origin_key){
                    .key = token_origin_key_with(t->keys, k, cfg->pools[p].name,
                                                 cfg->pools[p].origins[o].name),
                    .pool = (uint16_t)p, .origin = (uint16_t)o};
    qsort(t->by_key, t->num_by_key, sizeof(*t->by_key), compare_origin_keys);
    for (size_t p = 0; p < cfg->num_pools; p++)
        if (build_pool(&t->pools[p], s, p, t->keys) < 0)
            goto fail;
    for (size_t i = 0; i < cfg->num_load_balancers; i++) {
        /* Secure "Auto" means "over TLS"; listeners have no TLS in this build. */
        const struct cfg_load_balancer *lb = &cfg->load_balancers[i];
        t->lbs[i].cookie_attrs = cookie_attributes(lb, lb->attributes.secure == SECURE_ALWAYS);
        if (!t->lbs[i].cookie_attrs)
            goto fail;
    }
    return t;
fail:
    snprintf(err, err_size, "out of memory");
    affinity_tables_free(t, s);
    return NULL;
}

void affinity_tables_free(struct affinity_tables *t, const struct snapshot *s)
{
    if (!t)
        return;
    for (size_t p = 0; t->pools && p < s->cfg->num_pools; p++) {
        maglev_free(&t->pools[p].usable);
        maglev_free(&t->pools[p].serving);
        free(t->pools[p].app_prefix);
    }
    for (size_t i = 0; t->lbs && i < s->cfg->num_load_balancers; i++)
        free(t->lbs[i].cookie_attrs);
    if (t->keys_owned)
        token_keys_free(t->keys);
    free(t->by_key);
    free(t->pools);
    free(t->lbs);
    free(t);
}

/* ---- per request (worker) ---- */

static uint32_t unix_now(void)
{
    return (uint32_t)time(NULL);
}

size_t affinity_client_key(const struct client *c, uint8_t out[16])
{
    size_t n = c->peer_family == 6 ? 8 : 4; /* IPv6 clients hash on their /64 */
    memcpy(out, c->peer_addr, n);
    return n;
}

static const struct cfg_load_balancer *exchange_lb(const struct client *c)
{
    return &c->ex->use->snap->cfg->load_balancers[c->ex->lb];
}

/* Usable for a session already pinned there: healthy and enabled, or
 * draining within drain_duration. Returns the reassignment reason, or
 * REASON_HIT when it may stay. */
static enum affinity_reason pinned_verdict(const struct client *c, size_t p, size_t o)
{
    const struct snapshot *s = c->ex->use->snap;
    const struct cfg_origin *origin = &s->cfg->pools[p].origins[o];
    const struct origin_shared *os = s->pools[p].origins[o];
    if (!atomic_load_explicit(&os->healthy, memory_order_relaxed))
        return REASON_REASSIGNED_UNHEALTHY;
    /* Live traffic failed to connect to it lately (SPEC §5: unhealthy too);
     * under "temporary" failover the session waits elsewhere, cookie kept. */
    if (atomic_load_explicit(&os->retry_after_ms, memory_order_relaxed) > c->pt->w->loop.now_ms)
        return exchange_lb(c)->attributes.zero_downtime_failover == FAILOVER_TEMPORARY
                   ? REASON_FAILOVER_TEMPORARY
                   : REASON_REASSIGNED_UNHEALTHY;
    if (origin->state == ORIGIN_DISABLED)
        return REASON_REASSIGNED_DISABLED;
    if (origin->state == ORIGIN_DRAINING) {
        uint64_t started = atomic_load_explicit(&os->drain_started_ms, memory_order_relaxed);
        double limit = exchange_lb(c)->attributes.drain_duration * 1000.0;
        if (started == 0 || (double)(c->pt->w->loop.now_ms - started) >= limit)
            return REASON_REASSIGNED_DRAINED;
    }
    return REASON_HIT;
}

static bool find_origin_by_key(const struct client *c, uint64_t key, size_t *p, size_t *o)
{
    const struct affinity_tables *t = c->ex->use->snap->aff;
    size_t lo = 0, hi = t->num_by_key;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->by_key[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    const struct cfg_load_balancer *lb = exchange_lb(c);
    for (; lo < t->num_by_key && t->by_key[lo].key == key; lo++) {
        if (config_lb_uses_pool(lb, t->by_key[lo].pool)) {
            *p = t->by_key[lo].pool;
            *o = t->by_key[lo].origin;
            return true;
        }
    }
    return false;
}

/* Chooses by consistent hash over the load balancer's pools, in the order its
 * steering policy prefers. */
static bool hash_assign(struct client *c, uint64_t hash, bool serving)
{
    struct exchange *ex = c->ex;
    const struct snapshot *s = ex->use->snap;
    const struct cfg_load_balancer *lb = exchange_lb(c);
    long pools[ROUTE_MAX_POOLS];
    bool fallback_last;
    size_t num = route_pool_order(c, pools, ROUTE_MAX_POOLS, &fallback_last, &hash);
    for (size_t i = 0; i < num; i++) {
        long p = pools[i];
        const struct affinity_pool *ap = &s->aff->pools[p];
        const struct maglev *m = serving ? &ap->serving : &ap->usable;
        long o;
        if (lb->hash_balance_factor >= 100 && !serving) {
            uint32_t load[1024];
            size_t n = s->cfg->pools[p].num_origins;
            uint64_t total = 0;
            for (size_t k = 0; k < n && k < 1024; k++) {
                load[k] = c->ex->use->pool_slots[p][k]->active;
                total += load[k];
            }
            o = n <= 1024 ? maglev_lookup_bounded(m, hash, load,
                                                  maglev_bounded_cap(total, m->n_usable,
                                                                     lb->hash_balance_factor))
                          : maglev_lookup(m, hash);
        } else {
            o = maglev_lookup(m, hash);
        }
        if (o >= 0) {
            ex->pool = p;
            ex->origin = o;
            ex->reason = fallback_last && i == num - 1 ? REASON_FALLBACK_POOL : REASON_NEW;
            return true;
        }
    }
    return false;
}

/* Records the decided origin as tried, for retries. */
static void mark_tried(struct exchange *ex)
{
    if (ex->num_tried < MAX_ATTEMPTS) {
        ex->tried[ex->num_tried].pool = (uint16_t)ex->pool;
        ex->tried[ex->num_tried].origin = (uint16_t)ex->origin;
        ex->num_tried++;
    }
}

/* Looks for limpet's cookie among the request's Cookie fields. Returns true
 * with d->token filled when a value was found (valid or not in *valid). */
static bool read_limpet_cookie(struct client *c, const struct h1_request *req,
                               struct affinity_decision *d, bool *valid)
{
    const struct cfg_load_balancer *lb = exchange_lb(c);
    const char *name = lb->attributes.cookie_name;
    size_t name_len = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct h1_header *h = &req->headers[i];
        const char *val;
        size_t val_len;
        if (!h1_token_eq(h->name, h->name_len, "cookie") ||
            !cookie_find(h->value, h->value_len, name, name_len, &val, &val_len))
            continue;
        uint32_t ttl = (uint32_t)lb->session_affinity_ttl;
        uint32_t max_life = (uint32_t)lb->attributes.max_life;
        *valid = token_verify(c->pt->token_ctx, val, val_len, unix_now(), ttl, max_life,
                              &d->token) == TOKEN_VALID;
        d->has_token = *valid;
        return true;
    }
    *valid = false;
    return false;
}

/* Finds the value of a header-mode session: hash of the configured fields. */
static bool header_session_hash(const struct client *c, const struct h1_request *req,
                                uint64_t *hash)
{
    const struct cfg_affinity_attributes *a = &exchange_lb(c)->attributes;
    uint64_t h = 0x6c696d706574ull;
    size_t found = 0;
    for (size_t k = 0; k < a->num_headers; k++) {
        for (size_t i = 0; i < req->num_headers; i++) {
            const struct h1_header *f = &req->headers[i];
            if (f->value_len > 0 && h1_token_eq(f->name, f->name_len, a->headers[k])) {
                h = maglev_hash_seeded(f->value, f->value_len, h);
                found++;
                break;
            }
        }
    }
    *hash = h;
    return a->require_all_headers ? found == a->num_headers && found > 0 : found > 0;
}

/* app_cookie: finds the pinned origin named by the application's cookie. */
static bool app_cookie_origin(struct client *c, const struct h1_request *req,
                              struct affinity_decision *d, size_t *pp, size_t *po)
{
    const struct cfg_app_cookie *ac = &exchange_lb(c)->attributes.app_cookie;
    const struct snapshot *s = c->ex->use->snap;
    const struct cfg_load_balancer *lb = exchange_lb(c);
    size_t name_len = strlen(ac->name);
    size_t sep_len = strlen(ac->separator);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct h1_header *h = &req->headers[i];
        const char *val;
        size_t len;
        if (!h1_token_eq(h->name, h->name_len, "cookie") ||
            !cookie_find(h->value, h->value_len, ac->name, name_len, &val, &len))
            continue;
        d->session_hash = maglev_hash(val, len);
        if (ac->mode == APP_COOKIE_PREFIX) {
            if (len < APP_PREFIX_LEN + sep_len ||
                memcmp(val + APP_PREFIX_LEN, ac->separator, sep_len) != 0)
                return false;
            d->app_cookie = ac->name;
            d->app_cookie_len = name_len;
            d->app_prefix_strip = APP_PREFIX_LEN + sep_len;
            for (size_t p = 0; p < s->cfg->num_pools; p++) {
                if (!config_lb_uses_pool(lb, p))
                    continue;
                size_t n = s->cfg->pools[p].num_origins;
                for (size_t k = 0; k < s->aff->num_keys * n; k++) {
                    if (memcmp(s->aff->pools[p].app_prefix[k], val, APP_PREFIX_LEN) == 0) {
                        *pp = p;
                        *po = k % n;
                        return true;
                    }
                }
            }
            return false;
        }
        /* route mode: the suffix after the last separator names the origin's route */
        const char *suffix = NULL;
        for (size_t k = len; k >= sep_len && k > 0; k--) {
            if (memcmp(val + k - sep_len, ac->separator, sep_len) == 0) {
                suffix = val + k;
                break;
            }
        }
        if (!suffix)
            return false;
        size_t suffix_len = (size_t)(val + len - suffix);
        for (size_t p = 0; p < s->cfg->num_pools; p++) {
            if (!config_lb_uses_pool(lb, p))
                continue;
            for (size_t o = 0; o < s->cfg->pools[p].num_origins; o++) {
                const char *route = s->cfg->pools[p].origins[o].route;
                if (strlen(route) == suffix_len && memcmp(route, suffix, suffix_len) == 0) {
                    *pp = p;
                    *po = o;
                    return true;
                }
            }
        }
        return false;
    }
    return false;
}

/* The origin of this connection's first request, if still in the snapshot. */
static bool connection_pin(const struct client *c, size_t *pp, size_t *po)
{
    if (!c->pin_set)
        return false;
    const struct snapshot *s = c->ex->use->snap;
    for (size_t p = 0; p < s->cfg->num_pools; p++) {
        for (size_t o = 0; o < s->cfg->pools[p].num_origins; o++) {
            const struct origin_shared *os = s->pools[p].origins[o];
            if (os->id == c->pin_id && os->generation == c->pin_generation &&
                config_lb_uses_pool(exchange_lb(c), p)) {
                *pp = p;
                *po = o;
                return true;
            }
        }
    }
    return false;
}

void affinity_issue_cookie(struct client *c, struct affinity_decision *d)
{
    const struct snapshot *s = c->ex->use->snap;
    const struct cfg_pool *pool = &s->cfg->pools[c->ex->pool];
    uint64_t key = token_origin_key(s->aff->keys, pool->name, pool->origins[c->ex->origin].name);
    const struct token *previous = d->has_token ? &d->token : NULL;
    if (token_issue(c->pt->token_ctx, key, previous, unix_now(), d->cookie_value) == 0)
        return;
    d->set_cookie = true;
    struct token fresh;
    if (token_verify(c->pt->token_ctx, d->cookie_value, TOKEN_TEXT_MAX, unix_now(), 0, 0,
                     &fresh) == TOKEN_VALID) {
        d->token = fresh;
        d->has_token = true;
        d->session_hash = fresh.session_id;
    }
}

static bool uses_limpet_cookie(enum session_affinity mode)
{
    return mode == AFFINITY_COOKIE || mode == AFFINITY_IP_COOKIE || mode == AFFINITY_HEADER;
}

int affinity_decide(struct client *c, const struct h1_request *req, struct affinity_decision *d)
{
    struct exchange *ex = c->ex;
    const struct cfg_load_balancer *lb = exchange_lb(c);
    enum session_affinity mode = lb->session_affinity;
    memset(d, 0, sizeof(*d));
    d->previous_pool = d->previous_origin = -1;

    if (mode == AFFINITY_NONE) {
        if (route_choose(c) < 0)
            return -1;
        d->reason = ex->reason;
        return 0;
    }

    if (uses_limpet_cookie(mode)) { /* limpet's cookie never reaches the origin */
        d->strip_cookie = lb->attributes.cookie_name;
        d->strip_cookie_len = strlen(d->strip_cookie);
    }
    size_t p = 0, o = 0;
    bool have_pin = false, cookie_session = false, invalid = false;
    uint64_t hash = 0;
    bool hashed = false;

    if (mode == AFFINITY_HEADER && header_session_hash(c, req, &hash)) {
        hashed = true;
        d->session_hash = hash;
    } else if (mode == AFFINITY_IP) {
        uint8_t key[16];
        hash = maglev_hash(key, affinity_client_key(c, key));
        hashed = true;
        d->session_hash = hash;
    } else if (mode == AFFINITY_APP_COOKIE) {
        have_pin = app_cookie_origin(c, req, d, &p, &o);
    }
    if (!hashed && uses_limpet_cookie(mode)) {
        bool valid;
        cookie_session = true;
        if (read_limpet_cookie(c, req, d, &valid)) {
            invalid = !valid;
            if (valid && find_origin_by_key(c, d->token.origin_key, &p, &o)) {
                have_pin = true;
                d->session_hash = d->token.session_id;
            } else {
                invalid = true;
                d->has_token = false;
            }
        }
    }
    if (hashed) {
        /* The serving table keeps draining origins for their own sessions. */
        if (hash_assign(c, hash, true)) {
            p = (size_t)ex->pool;
            o = (size_t)ex->origin;
            have_pin = true;
        }
    }

    if (have_pin) {
        enum affinity_reason verdict = pinned_verdict(c, p, o);
        if (verdict == REASON_HIT) {
            ex->pool = (long)p;
            ex->origin = (long)o;
            ex->reason = REASON_HIT;
            d->pinned = true;
            mark_tried(ex);
            if (cookie_session && d->has_token &&
                (d->token.key_index != 0 ||
                 token_needs_refresh(&d->token, unix_now(), (uint32_t)lb->session_affinity_ttl)))
                affinity_issue_cookie(c, d);
            d->reason = REASON_HIT;
            return 0;
        }
        d->previous_pool = (long)p;
        d->previous_origin = (long)o;
        d->reason = verdict;
    } else if (!invalid && connection_pin(c, &p, &o) && pinned_verdict(c, p, o) == REASON_HIT) {
        ex->pool = (long)p;
        ex->origin = (long)o;
        mark_tried(ex);
        d->reason = REASON_NEW;
        if (cookie_session)
            affinity_issue_cookie(c, d);
        return 0;
    } else {
        d->reason = invalid ? REASON_INVALID_COOKIE : REASON_NEW;
    }

    /* A new assignment. */
    bool assigned = false;
    if (hashed) {
        assigned = hash_assign(c, hash, false);
    } else if (mode == AFFINITY_IP_COOKIE) {
        uint8_t key[16];
        assigned = hash_assign(c, maglev_hash(key, affinity_client_key(c, key)), false);
    }
    if (assigned)
        mark_tried(ex);
    else if (route_choose(c) < 0)
        return -1;
    if (ex->reason == REASON_FALLBACK_POOL && d->reason == REASON_NEW)
        d->reason = REASON_FALLBACK_POOL;
    ex->reason = d->reason;
    if (cookie_session && d->reason != REASON_FAILOVER_TEMPORARY) {
        d->has_token = d->has_token && d->previous_pool >= 0; /* a moved session keeps its id */
        affinity_issue_cookie(c, d);
    }
    return 0;
}

void affinity_rerouted(struct client *c, struct affinity_decision *d)
{
    struct exchange *ex = c->ex;
    enum session_affinity mode = exchange_lb(c)->session_affinity;
    if (mode == AFFINITY_NONE) {
        d->reason = ex->reason;
        return;
    }
    if (d->reason == REASON_FAILOVER_STICKY ||
        (d->reason != REASON_FAILOVER_TEMPORARY && uses_limpet_cookie(mode)))
        affinity_issue_cookie(c, d);
    ex->reason = d->reason;
}

bool affinity_failover(struct client *c, struct affinity_decision *d)
{
    struct exchange *ex = c->ex;
    const struct cfg_load_balancer *lb = exchange_lb(c);
    if (!d->pinned || lb->session_affinity == AFFINITY_NONE)
        return true; /* a new assignment: any other origin will do */
    enum failover_mode mode = lb->attributes.zero_downtime_failover;
    if (mode == FAILOVER_NONE)
        return false;
    d->previous_pool = ex->pool;
    d->previous_origin = ex->origin;
    d->pinned = false;
    d->reason = mode == FAILOVER_STICKY ? REASON_FAILOVER_STICKY : REASON_FAILOVER_TEMPORARY;
    d->set_cookie = false;
    return true;
}

size_t affinity_header_value(const struct client *c, const struct affinity_decision *d,
                             char *buf, size_t size)
{
    const struct exchange *ex = c->ex;
    if (!ex->use || ex->lb < 0 ||
        exchange_lb(c)->session_affinity == AFFINITY_NONE)
        return 0;
    int n;
    if (d->previous_pool >= 0) {
        const struct cfg_pool *pool = &ex->use->snap->cfg->pools[d->previous_pool];
        n = snprintf(buf, size, "reassigned; previous=%s", pool->origins[d->previous_origin].name);
    } else {
        n = snprintf(buf, size, "%s", d->pinned ? "hit" : "new");
    }
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}
