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
 *     app_cookie prefix or route suffix names an origin directly (route
 *     mode: a quoted value without its quotes, or the url_parameter path
 *     parameter when no cookie names a route).
 *  3. Keep the pinned origin while it is usable, or draining and still within
 *     drain_duration; otherwise reassign (reason says why) and, for cookie
 *     sessions, issue a new cookie (app_cookie route mode with "issue": the
 *     route cookie NAME=.<route>, whenever there was no valid route or the
 *     origin changed, never under temporary failover).
 *  4. With no key: follow the origin of this connection's first request
 *     (per-connection pinning), else assign: consistent hash for ip_cookie,
 *     ip and header modes, pool steering otherwise.
 *
 * Everything per request reads ctx->snap only (its config, origin states,
 * these tables and its route_hash); a retry stays on that snapshot, so the
 * decision's indexes and pointers never outlive what they point into.
 */
#include "affinity/affinity.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snapshot/snapshot.h"
#include "core/log.h"
#include "http/cookie.h"
#include "http/h1.h"

/* ---- tables (control thread) ---- */

/* Without secret_file: one random key for the process, derived from a seed
 * made at the first build, or handed over by the limpet this one replaces. */
static pthread_once_t random_keys_once = PTHREAD_ONCE_INIT;
static struct token_keys *random_keys;
static uint8_t random_seed[TOKEN_SEED_BYTES];
static long seed_from_pid;          /* > 0: random_seed came from that process */

static void make_random_keys(void)
{
    if (seed_from_pid > 0) {
        random_keys = token_keys_from_seed(random_seed);
        log_error("secret_file not set: affinity cookies are signed with the random key of "
                  "pid %ld, which this limpet replaces; they will not survive a restart nor "
                  "be shared between instances", seed_from_pid);
        return;
    }
    if (token_random_seed(random_seed) == 0)
        random_keys = token_keys_from_seed(random_seed);
    log_error("secret_file not set: affinity cookies are signed with a random key made at "
              "start; they survive an upgrade (--upgrade, SIGUSR2), not a restart, and are "
              "not shared between instances");
}

void affinity_adopt_random_seed(const uint8_t seed[TOKEN_SEED_BYTES], long from_pid)
{
    memcpy(random_seed, seed, TOKEN_SEED_BYTES);
    seed_from_pid = from_pid;
}

bool affinity_random_seed(uint8_t seed[TOKEN_SEED_BYTES])
{
    if (!random_keys)
        return false;
    memcpy(seed, random_seed, TOKEN_SEED_BYTES);
    return true;
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
    unsigned num_keys = token_keys_count(keys);
    ap->app_prefix = calloc(n * num_keys, sizeof(*ap->app_prefix));
    ap->origin_key = calloc(n, sizeof(*ap->origin_key));
    if (!ap->app_prefix || !ap->origin_key)
        return -1;
    for (size_t o = 0; o < n; o++) {
        /* every key's prefix, so rotation keeps sessions; key 0's origin key signs cookies */
        for (unsigned k = 0; k < num_keys; k++) {
            uint64_t key = token_origin_key_with(keys, k, pool->name, pool->origins[o].name);
            encode_prefix(key, ap->app_prefix[k * n + o]);
            if (k == 0)
                ap->origin_key[o] = key;
        }
    }
    return 0;
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
        /* Secure "Auto" means "on responses to requests that came over TLS". */
        const struct cfg_load_balancer *lb = &cfg->load_balancers[i];
        enum secure_mode secure = lb->attributes.secure;
        for (int tls = 0; tls < 2; tls++) {
            bool on = secure == SECURE_ALWAYS || (secure == SECURE_AUTO && tls);
            t->lbs[i].cookie_attrs[tls] = cookie_attributes(lb, on);
            if (!t->lbs[i].cookie_attrs[tls])
                goto fail;
        }
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
        free(t->pools[p].app_prefix);
        free(t->pools[p].origin_key);
    }
    for (size_t i = 0; t->lbs && i < s->cfg->num_load_balancers; i++) {
        free(t->lbs[i].cookie_attrs[0]);
        free(t->lbs[i].cookie_attrs[1]);
    }
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

static const struct cfg_load_balancer *ctx_lb(const struct route_ctx *ctx)
{
    return &ctx->snap->cfg->load_balancers[ctx->lb];
}

static bool uses_limpet_cookie(enum session_affinity mode)
{
    return mode == AFFINITY_COOKIE || mode == AFFINITY_IP_COOKIE || mode == AFFINITY_HEADER;
}

/* Usable for a session already pinned there: healthy and enabled, or
 * draining within drain_duration. Returns the reassignment reason, or
 * REASON_HIT when it may stay. */
static enum affinity_reason pinned_verdict(const struct route_ctx *ctx, size_t p, size_t o)
{
    const struct snapshot *s = ctx->snap;
    const struct cfg_origin *origin = &s->cfg->pools[p].origins[o];
    const struct origin_shared *os = s->pools[p].origins[o];
    if (!atomic_load_explicit(&os->healthy, memory_order_relaxed))
        return REASON_REASSIGNED_UNHEALTHY;
    /* Live traffic failed to connect to it lately (SPEC §5: unhealthy too);
     * under "temporary" failover the session waits elsewhere, cookie kept. */
    if (atomic_load_explicit(&os->retry_after_ms, memory_order_relaxed) > ctx->now_ms)
        return ctx_lb(ctx)->attributes.zero_downtime_failover == FAILOVER_TEMPORARY
                   ? REASON_FAILOVER_TEMPORARY
                   : REASON_REASSIGNED_UNHEALTHY;
    if (origin->state == ORIGIN_DISABLED)
        return REASON_REASSIGNED_DISABLED;
    if (origin->state == ORIGIN_DRAINING) {
        uint64_t started = atomic_load_explicit(&os->drain_started_ms, memory_order_relaxed);
        double limit = ctx_lb(ctx)->attributes.drain_duration * 1000.0;
        if (started == 0 || (double)(ctx->now_ms - started) >= limit)
            return REASON_REASSIGNED_DRAINED;
    }
    return REASON_HIT;
}

static bool find_origin_by_key(const struct route_ctx *ctx, uint64_t key, size_t *p, size_t *o)
{
    const struct affinity_tables *t = ctx->snap->aff;
    size_t lo = 0, hi = t->num_by_key;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->by_key[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
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
 * steering policy prefers: the serving table (draining origins keep their
 * sessions) or the usable one (new sessions). Sets *p, *o and *fallback
 * (from the fallback pool); false when no table has an origin. */
static bool hash_assign(const struct route_ctx *ctx, uint64_t hash, bool serving, size_t *p,
                        size_t *o, bool *fallback)
{
    const struct snapshot *s = ctx->snap;
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
    long pools[ROUTE_MAX_POOLS];
    bool fallback_last;
    size_t num = route_pool_order(ctx, pools, ROUTE_MAX_POOLS, &fallback_last, &hash);
    for (size_t i = 0; i < num; i++) {
        size_t pool = (size_t)pools[i];
        const struct maglev *m = serving ? &s->hash[pool].serving : &s->hash[pool].usable;
        long found;
        if (lb->hash_balance_factor >= 100 && !serving) {
            uint32_t load[1024];
            size_t n = s->cfg->pools[pool].num_origins;
            uint64_t total = 0;
            for (size_t k = 0; k < n && k < 1024; k++) {
                load[k] = ctx->pool_slots[pool][k]->active;
                total += load[k];
            }
            found = n <= 1024 ? maglev_lookup_bounded(m, hash, load,
                                                      maglev_bounded_cap(total, m->n_usable,
                                                                         lb->hash_balance_factor))
                              : maglev_lookup(m, hash);
        } else {
            found = maglev_lookup(m, hash);
        }
        if (found >= 0) {
            *p = pool;
            *o = (size_t)found;
            *fallback = fallback_last && i == num - 1;
            return true;
        }
    }
    return false;
}

/* Looks for limpet's cookie among the request's Cookie fields. Returns true
 * with d->token filled when a value was found (valid or not in *valid). */
static bool read_limpet_cookie(const struct route_ctx *ctx, struct token_ctx *tokens,
                               const struct h1_request *req, struct affinity_decision *d,
                               bool *valid)
{
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
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
        *valid = token_verify(tokens, val, val_len, unix_now(), ttl, max_life, &d->token) ==
                 TOKEN_VALID;
        d->has_token = *valid;
        return true;
    }
    *valid = false;
    return false;
}

/* Finds the value of a header-mode session: hash of the configured fields. */
static bool header_session_hash(const struct route_ctx *ctx, const struct h1_request *req,
                                uint64_t *hash)
{
    const struct cfg_affinity_attributes *a = &ctx_lb(ctx)->attributes;
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

/* The application's cookie `name` among the request's Cookie fields (the
 * first one found), its value raw (quotes kept). */
static bool find_app_cookie(const struct h1_request *req, const char *name, size_t name_len,
                            const char **val, size_t *len)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct h1_header *h = &req->headers[i];
        if (h1_token_eq(h->name, h->name_len, "cookie") &&
            cookie_find(h->value, h->value_len, name, name_len, val, len))
            return true;
    }
    return false;
}

/* A cookie value without the DQUOTEs around it (RFC 6265 cookie-value). */
static void unquote(const char **val, size_t *len)
{
    if (*len >= 2 && (*val)[0] == '"' && (*val)[*len - 1] == '"') {
        (*val)++;
        *len -= 2;
    }
}

/* The value of path parameter ";name=value" in the path of the request
 * target (before any '?'), Tomcat's ";jsessionid=": up to the next ';', '/'
 * or the end of the path. False when absent or empty. */
static bool url_parameter_value(const struct h1_request *req, const char *name,
                                const char **val, size_t *len)
{
    if (!name)
        return false;
    size_t name_len = strlen(name);
    const char *t = req->target;
    size_t path_len = 0;
    while (path_len < req->target_len && t[path_len] != '?' && t[path_len] != '#')
        path_len++;
    for (size_t i = 0; i + 1 + name_len + 1 <= path_len; i++) {
        if (t[i] != ';' || memcmp(t + i + 1, name, name_len) != 0 || t[i + 1 + name_len] != '=')
            continue;
        size_t from = i + 1 + name_len + 1, to = from;
        while (to < path_len && t[to] != ';' && t[to] != '/')
            to++;
        if (to == from)
            continue;
        *val = t + from;
        *len = to - from;
        return true;
    }
    return false;
}

/* route mode: the origin whose route is the suffix of val after its last
 * separator, among the load balancer's pools. */
static bool route_origin(const struct route_ctx *ctx, const char *val, size_t len, size_t *pp,
                         size_t *po)
{
    const struct snapshot *s = ctx->snap;
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
    const char *sep = lb->attributes.app_cookie.separator;
    size_t sep_len = strlen(sep);
    const char *suffix = NULL;
    for (size_t k = len; k >= sep_len && k > 0; k--) {
        if (memcmp(val + k - sep_len, sep, sep_len) == 0) {
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

/* app_cookie: finds the pinned origin named by the application's cookie
 * (route mode: or by its url_parameter when no cookie names a route). */
static bool app_cookie_origin(const struct route_ctx *ctx, const struct h1_request *req,
                              struct affinity_decision *d, size_t *pp, size_t *po)
{
    const struct snapshot *s = ctx->snap;
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
    const struct cfg_app_cookie *ac = &lb->attributes.app_cookie;
    size_t name_len = strlen(ac->name);
    const char *val = NULL;
    size_t len = 0;
    bool found = find_app_cookie(req, ac->name, name_len, &val, &len);
    if (ac->mode == APP_COOKIE_PREFIX) {
        if (!found)
            return false;
        d->session_hash = maglev_hash(val, len);
        size_t sep_len = strlen(ac->separator);
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
    /* route mode: nothing is rewritten; a quoted value is read without its quotes */
    if (found) {
        unquote(&val, &len);
        d->session_hash = maglev_hash(val, len);
        if (route_origin(ctx, val, len, pp, po))
            return true;
    }
    if (url_parameter_value(req, ac->url_parameter, &val, &len) &&
        route_origin(ctx, val, len, pp, po)) {
        d->session_hash = maglev_hash(val, len);
        return true;
    }
    return false;
}

/* app_cookie route mode with "issue": limpet sets the route cookie itself. */
static bool issues_route_cookie(const struct route_ctx *ctx)
{
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
    return lb->session_affinity == AFFINITY_APP_COOKIE &&
           lb->attributes.app_cookie.mode == APP_COOKIE_ROUTE && lb->attributes.app_cookie.issue;
}

/* The origin of this connection's first request, if still in the snapshot. */
static bool connection_pin(const struct route_ctx *ctx, const struct affinity_pin *pin,
                           size_t *pp, size_t *po)
{
    if (!pin->set)
        return false;
    const struct snapshot *s = ctx->snap;
    for (size_t p = 0; p < s->cfg->num_pools; p++) {
        for (size_t o = 0; o < s->cfg->pools[p].num_origins; o++) {
            const struct origin_shared *os = s->pools[p].origins[o];
            if (os->id == pin->id && os->generation == pin->generation &&
                config_lb_uses_pool(ctx_lb(ctx), p)) {
                *pp = p;
                *po = o;
                return true;
            }
        }
    }
    return false;
}

/* Pins a connection that has no pin yet to the decided origin. */
static void pin_connection(const struct route_ctx *ctx, struct affinity_pin *pin,
                           const struct affinity_decision *d)
{
    if (pin->set)
        return;
    const struct origin_shared *os = ctx->snap->pools[d->pool].origins[d->origin];
    pin->set = true;
    pin->id = os->id;
    pin->generation = os->generation;
}

/* Makes (p, o) the decided origin and counts it as tried. */
static void take_origin(struct affinity_decision *d, size_t p, size_t o)
{
    d->pool = (long)p;
    d->origin = (long)o;
    route_tried_add(&d->tried, p, o);
}

/* Issues limpet's cookie for d's origin (keeping the session id and start of
 * d->token when d->has_token). */
static void issue_cookie(const struct route_ctx *ctx, struct token_ctx *tokens,
                         struct affinity_decision *d)
{
    uint64_t key = ctx->snap->aff->pools[d->pool].origin_key[d->origin];
    const struct token *previous = d->has_token ? &d->token : NULL;
    if (token_issue(tokens, key, previous, unix_now(), d->cookie_value) == 0)
        return;
    d->set_cookie = true;
    struct token fresh;
    if (token_verify(tokens, d->cookie_value, TOKEN_TEXT_MAX, unix_now(), 0, 0, &fresh) ==
        TOKEN_VALID) {
        d->token = fresh;
        d->has_token = true;
        d->session_hash = fresh.session_id;
    }
}

int affinity_decide(const struct route_ctx *ctx, struct token_ctx *tokens,
                    struct affinity_pin *pin, const struct h1_request *req,
                    struct affinity_decision *d)
{
    memset(d, 0, sizeof(*d));
    d->pool = d->origin = d->previous_pool = d->previous_origin = -1;
    if (ctx->lb < 0)
        return -1;
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
    enum session_affinity mode = lb->session_affinity;
    bool fallback;

    if (mode == AFFINITY_NONE) {
        if (route_choose(ctx, &d->tried, &d->pool, &d->origin, &fallback) < 0)
            return -1;
        d->reason = fallback ? REASON_FALLBACK_POOL : REASON_NONE;
        pin_connection(ctx, pin, d);
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

    if (mode == AFFINITY_HEADER && header_session_hash(ctx, req, &hash)) {
        hashed = true;
        d->session_hash = hash;
    } else if (mode == AFFINITY_IP) {
        uint8_t key[16];
        hash = maglev_hash(key, route_client_key(ctx, key));
        hashed = true;
        d->session_hash = hash;
    } else if (mode == AFFINITY_APP_COOKIE) {
        have_pin = app_cookie_origin(ctx, req, d, &p, &o);
    }
    if (!hashed && uses_limpet_cookie(mode)) {
        bool valid;
        cookie_session = true;
        if (read_limpet_cookie(ctx, tokens, req, d, &valid)) {
            invalid = !valid;
            if (valid && find_origin_by_key(ctx, d->token.origin_key, &p, &o)) {
                have_pin = true;
                d->session_hash = d->token.session_id;
            } else {
                invalid = true;
                d->has_token = false;
            }
        }
    }
    /* The serving table keeps draining origins for their own sessions. */
    if (hashed && hash_assign(ctx, hash, true, &p, &o, &fallback))
        have_pin = true;

    if (have_pin) {
        enum affinity_reason verdict = pinned_verdict(ctx, p, o);
        if (verdict == REASON_HIT) {
            take_origin(d, p, o);
            d->reason = REASON_HIT;
            d->pinned = true;
            if (cookie_session && d->has_token &&
                (d->token.key_index != 0 ||
                 token_needs_refresh(&d->token, unix_now(), (uint32_t)lb->session_affinity_ttl)))
                issue_cookie(ctx, tokens, d);
            pin_connection(ctx, pin, d);
            return 0;
        }
        d->previous_pool = (long)p;
        d->previous_origin = (long)o;
        d->reason = verdict;
    } else if (!invalid && connection_pin(ctx, pin, &p, &o) &&
               pinned_verdict(ctx, p, o) == REASON_HIT) {
        take_origin(d, p, o);
        d->reason = REASON_NEW;
        if (cookie_session)
            issue_cookie(ctx, tokens, d);
        d->set_route_cookie = issues_route_cookie(ctx);
        return 0;
    } else {
        d->reason = invalid ? REASON_INVALID_COOKIE : REASON_NEW;
    }

    /* A new assignment. */
    bool assigned = false;
    fallback = false;
    if (hashed) {
        assigned = hash_assign(ctx, hash, false, &p, &o, &fallback);
    } else if (mode == AFFINITY_IP_COOKIE) {
        uint8_t key[16];
        assigned = hash_assign(ctx, maglev_hash(key, route_client_key(ctx, key)), false, &p, &o,
                               &fallback);
    }
    if (assigned) {
        take_origin(d, p, o);
    } else if (route_choose(ctx, &d->tried, &d->pool, &d->origin, &fallback) < 0) {
        d->reason = REASON_NONE; /* nothing decided: logged as such with the 503 */
        return -1;
    }
    if (fallback && d->reason == REASON_NEW)
        d->reason = REASON_FALLBACK_POOL;
    if (cookie_session && d->reason != REASON_FAILOVER_TEMPORARY) {
        d->has_token = d->has_token && d->previous_pool >= 0; /* a moved session keeps its id */
        issue_cookie(ctx, tokens, d);
    }
    /* no valid route, or its origin changed: the route cookie names the new one */
    d->set_route_cookie = issues_route_cookie(ctx) && d->reason != REASON_FAILOVER_TEMPORARY;
    pin_connection(ctx, pin, d);
    return 0;
}

bool affinity_failover(const struct route_ctx *ctx, struct affinity_decision *d)
{
    const struct cfg_load_balancer *lb = ctx_lb(ctx);
    if (!d->pinned || lb->session_affinity == AFFINITY_NONE)
        return true; /* a new assignment: any other origin will do */
    enum failover_mode mode = lb->attributes.zero_downtime_failover;
    if (mode == FAILOVER_NONE)
        return false;
    d->previous_pool = d->pool;
    d->previous_origin = d->origin;
    d->pinned = false;
    d->reason = mode == FAILOVER_STICKY ? REASON_FAILOVER_STICKY : REASON_FAILOVER_TEMPORARY;
    d->set_cookie = false;
    d->set_route_cookie = false;
    return true;
}

int affinity_reroute(const struct route_ctx *ctx, struct token_ctx *tokens,
                     struct affinity_decision *d)
{
    bool fallback;
    if (route_choose(ctx, &d->tried, &d->pool, &d->origin, &fallback) < 0)
        return -1;
    enum session_affinity mode = ctx_lb(ctx)->session_affinity;
    if (mode == AFFINITY_NONE)
        d->reason = fallback ? REASON_FALLBACK_POOL : REASON_NONE;
    else if (issues_route_cookie(ctx)) /* the route cookie names wherever it lands */
        d->set_route_cookie = d->reason != REASON_FAILOVER_TEMPORARY;
    else if (d->reason != REASON_FAILOVER_TEMPORARY && uses_limpet_cookie(mode))
        issue_cookie(ctx, tokens, d); /* "sticky" moves the cookie; ip and app_cookie read
                                       * none, so their sessions cannot move with one */
    return 0;
}

void affinity_move_within_pool(const struct route_ctx *ctx, struct token_ctx *tokens,
                               struct affinity_decision *d, size_t origin)
{
    struct route_tried *t = &d->tried;
    if (t->n > 0 && t->at[t->n - 1].pool == d->pool && t->at[t->n - 1].origin == d->origin)
        t->at[t->n - 1].origin = (uint16_t)origin; /* the one it waited for was never tried */
    else
        route_tried_add(t, (size_t)d->pool, origin);
    d->origin = (long)origin;
    bool cookie = d->set_cookie;
    d->set_cookie = false;
    if (cookie)
        issue_cookie(ctx, tokens, d);
}

size_t affinity_header_value(const struct snapshot *s, long lb,
                             const struct affinity_decision *d, char *buf, size_t size)
{
    if (!s || lb < 0 || s->cfg->load_balancers[lb].session_affinity == AFFINITY_NONE)
        return 0;
    if (d->previous_pool >= 0) {
        const struct cfg_pool *pool = &s->cfg->pools[d->previous_pool];
        int n = snprintf(buf, size, "reassigned; previous=%s", pool->origins[d->previous_origin].name);
        return n > 0 && (size_t)n < size ? (size_t)n : 0;
    }
    if (size < 4)
        return 0;
    memcpy(buf, d->pinned ? "hit" : "new", 4); /* per request: no printf */
    return 3;
}
