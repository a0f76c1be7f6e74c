/*
 * thread — the proxy's per-thread state: snapshot adoption, listeners,
 * per-origin slots, buffer trimming (see thread.h).
 */
#include "affinity/hll.h"
#include "proxy/thread.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "affinity/token.h"
#include "core/log.h"
#include "core/tls.h"
#include "proxy/proxy.h"

#define IDLE_ORIGIN_CONNS_PER_ORIGIN 256
#define BUF_TRIM_MS 1000u         /* buffers unused for a whole period go back */
#define BUFS_KEPT 4               /* free buffers a trim always keeps */

/* ---- listeners ---- */

/* The index in s of the load balancer named like index lb of `from`, or -1. */
static long same_load_balancer(const struct snapshot *from, long lb, const struct snapshot *s)
{
    if (!from || lb < 0)
        return -1;
    const char *name = from->cfg->load_balancers[lb].name;
    for (size_t i = 0; i < s->cfg->num_load_balancers; i++)
        if (strcmp(s->cfg->load_balancers[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Whether ls has fd among the sockets of worker w: an address has at least
 * one socket per worker, and the sockets beyond one per worker (taken over
 * from a process that ran more workers) are shared out round robin. */
static bool worker_has_fd(const struct worker *w, const struct listen_socket *ls, int fd)
{
    for (unsigned j = w->id; j < ls->num_fds; j += w->num_workers)
        if (ls->fds[j] == fd)
            return true;
    return false;
}

/* Watches the listening sockets of s this worker does not watch yet, stops
 * watching those s no longer has, and points each at its load balancer.
 * Connections accepted on a removed address keep being served by the load
 * balancer of the same name, while there is one. */
static int sync_listeners(struct proxy_thread *pt, const struct snapshot *s)
{
    struct worker *w = pt->w;
    const struct snapshot *old = pt->cur ? pt->cur->snap : NULL;
    for (struct listener *l = w->listeners; l; l = l->next) {
        bool kept = false;
        for (size_t i = 0; i < s->cfg->num_listeners && l->io.fd >= 0; i++) {
            if (worker_has_fd(w, s->listeners[i], l->io.fd)) {
                l->tag = (long)s->cfg->listeners[i].load_balancer;
                kept = true;
            }
        }
        if (!kept) {
            worker_unlisten(w, l);
            l->tag = same_load_balancer(old, l->tag, s);
        }
    }
    for (size_t i = 0; i < s->cfg->num_listeners; i++) {
        const struct listen_socket *ls = s->listeners[i];
        for (unsigned j = w->id; j < ls->num_fds; j += w->num_workers) {
            bool known = false;
            for (struct listener *l = w->listeners; l; l = l->next)
                known |= l->io.fd == ls->fds[j];
            if (!known && !worker_listen(w, ls->fds[j], (long)s->cfg->listeners[i].load_balancer))
                return -ENOMEM;
        }
    }
    return 0;
}

/* ---- snapshots ---- */

static void free_pool_slots(struct steer_slot ***slots, size_t num_pools)
{
    for (size_t p = 0; slots && p < num_pools; p++)
        free(slots[p]);
    free(slots);
}

/* This thread's steering slots for the pools of s (and scratch big enough). */
static int build_pool_slots(struct proxy_thread *pt, struct snap_use *use)
{
    const struct snapshot *s = use->snap;
    const struct config *cfg = s->cfg;
    struct steer_slot ***slots = calloc(cfg->num_pools ? cfg->num_pools : 1, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    size_t largest = 1;
    for (size_t p = 0; p < cfg->num_pools; p++) {
        size_t n = cfg->pools[p].num_origins;
        largest = n > largest ? n : largest;
        slots[p] = calloc(n ? n : 1, sizeof(**slots));
        if (!slots[p]) {
            free_pool_slots(slots, p);
            return -ENOMEM;
        }
        for (size_t o = 0; o < n; o++)
            slots[p][o] = &proxy_origin_rt(pt, s->pools[p].origins[o])->steer;
    }
    if (largest > pt->candidate_cap) {
        bool *c = realloc(pt->candidate_scratch, largest * sizeof(bool));
        if (!c) {
            free_pool_slots(slots, cfg->num_pools);
            return -ENOMEM;
        }
        pt->candidate_scratch = c;
        pt->candidate_cap = largest;
    }
    use->pool_cursor = calloc(cfg->num_pools ? cfg->num_pools : 1, sizeof(*use->pool_cursor));
    if (!use->pool_cursor) {
        free_pool_slots(slots, cfg->num_pools);
        return -ENOMEM;
    }
    route_cursors_carry(s, use->pool_cursor, pt->cur ? pt->cur->snap : NULL,
                        pt->cur ? pt->cur->pool_cursor : NULL);
    use->pool_slots = slots;
    return 0;
}

static void use_free(struct snap_use *use)
{
    free(use->pool_cursor);
    free_pool_slots(use->pool_slots, use->snap->cfg->num_pools);
    snapshot_release(use->snap);
    free(use);
}

static void retire(struct proxy_thread *pt, struct snap_use *use)
{
    if (use->users == 0) {
        use_free(use);
        return;
    }
    use->next = pt->retired;
    pt->retired = use;
}

/* Binds the thread's cookie MAC contexts to the keys of s. */
static int sync_token_ctx(struct proxy_thread *pt, const struct snapshot *s)
{
    if (pt->token_keys == s->aff->keys)
        return 0;
    struct token_ctx *ctx = token_ctx_new(s->aff->keys);
    if (!ctx)
        return -ENOMEM;
    token_ctx_free(pt->token_ctx);
    pt->token_ctx = ctx;
    pt->token_keys = s->aff->keys;
    return 0;
}

/* Makes s (whose reference the caller passes) the snapshot of new exchanges. */
static int adopt(struct proxy_thread *pt, struct snapshot *s)
{
    struct worker *w = pt->w;
    struct snap_use *use = calloc(1, sizeof(*use));
    int rc = -ENOMEM;
    if (use) {
        use->snap = s;
        rc = build_pool_slots(pt, use);
    }
    if (rc == 0)
        rc = sync_token_ctx(pt, s);
    if (rc == 0 && !w->stopping && !w->retiring)
        rc = sync_listeners(pt, s);
    if (rc < 0) {
        log_error("worker %u: cannot adopt configuration: %s", w->id, strerror(-rc));
        if (use) {
            free(use->pool_cursor);
            free_pool_slots(use->pool_slots, s->cfg->num_pools);
        }
        free(use);
        snapshot_release(s);
        return rc;
    }
    struct snap_use *old = pt->cur;
    pt->cur = use;
    w->grace_ms = (uint64_t)(s->cfg->timeouts.grace * 1000.0);
    worker_set_max_conns(w, s->cfg->limits.max_connections / w->num_workers);
    if (old)
        retire(pt, old);
    return 0;
}

struct snap_use *proxy_snapshot_get(struct proxy_thread *pt)
{
    pt->cur->users++;
    return pt->cur;
}

void proxy_snapshot_put(struct proxy_thread *pt, struct snap_use *use)
{
    if (!use)
        return;
    use->users--;
    if (use == pt->cur || use->users > 0)
        return;
    for (struct snap_use **pp = &pt->retired; *pp; pp = &(*pp)->next) {
        if (*pp == use) {
            *pp = use->next;
            break;
        }
    }
    use_free(use);
}

static void reset_origin_stats(struct origin_stats *st)
{
    atomic_store_explicit(&st->requests, 0, memory_order_relaxed);
    for (unsigned c = 0; c < STATUS_CLASSES; c++)
        atomic_store_explicit(&st->status[c], 0, memory_order_relaxed);
    atomic_store_explicit(&st->connect_failures, 0, memory_order_relaxed);
    atomic_store_explicit(&st->active, 0, memory_order_relaxed);
    struct hll_window *sessions = st->sessions;
    if (sessions) /* cleared, not freed: a reader may be copying it */
        hll_window_init(sessions, sessions->window, sessions->start);
}

struct origin_rt *proxy_origin_rt(struct proxy_thread *pt, const struct origin_shared *os)
{
    struct origin_rt *rt = &pt->origins[os->id];
    if (rt->generation == os->generation)
        return rt;
    if (rt->generation > os->generation)
        return NULL; /* a removed origin whose id a newer one holds */
    /* The id belongs to another origin now: forget the old one's
     * connections and counters. */
    bool reused = rt->generation != 0;
    origin_conn_close_idle(pt, rt);
    tls_session_free(rt->tls_session);
    memset(rt, 0, sizeof(*rt));
    rt->generation = os->generation;
    if (reused)
        reset_origin_stats(&pt->w->stats.origins[os->id]);
    return rt;
}

/* ---- transports: TLS on listeners and to origins ---- */

long proxy_listener_index(const struct proxy_thread *pt, const struct snapshot *s,
                          const struct listener *l)
{
    unsigned id = pt->w->id;
    for (size_t i = 0; l->io.fd >= 0 && i < s->cfg->num_listeners; i++)
        if (s->listeners[i]->fds[id] == l->io.fd)
            return (long)i;
    return -1;
}

int proxy_transport_accept(struct proxy_thread *pt, struct listener *l, struct transport *tp,
                           int fd)
{
    const struct snapshot *s = pt->cur->snap;
    long i = proxy_listener_index(pt, s, l);
    tp->ssl = NULL;
    tp->flags = 0;
    if (i < 0 || !s->listen[i].tls)
        return 0;
    struct tls_counters *ctr = s->listen[i].tls_stats ? &s->listen[i].tls_stats[pt->w->id] : NULL;
    return tls_accept(tp, s->listen[i].tls, fd, ctr);
}

int proxy_origin_tls_start(struct proxy_thread *pt, const struct snapshot *s, size_t pool,
                           size_t origin, struct origin_conn *oc, int fd)
{
    const struct tls_client *tc = s->pools[pool].tls ? s->pools[pool].tls[origin] : NULL;
    oc->tp.ssl = NULL;
    oc->tp.flags = 0;
    oc->tls_id = 0;
    if (!tc)
        return 0;
    struct origin_rt *rt = &pt->origins[oc->origin_id];
    struct ssl_session_st *session = rt->tls_session_of == tc->id ? rt->tls_session : NULL;
    if (tls_connect(&oc->tp, tc, fd, session) < 0)
        return -1;
    oc->tls_id = tc->id;
    return 0;
}

int proxy_origin_tls_handshake(struct proxy_thread *pt, struct origin_conn *oc)
{
    char why[256];
    int rc = tls_handshake(&oc->tp, why, sizeof(why));
    if (rc == 1) {
        proxy_origin_tls_keep_session(pt, oc);
        return 1;
    }
    if (rc == 0) {
        oc->writable = false; /* tp_events sets it when the awaited side is ready */
        return -EINPROGRESS;
    }
    struct origin_rt *rt = &pt->origins[oc->origin_id];
    uint64_t now = pt->w->loop.now_ms;
    if (rt->tls_logged_ms == 0 || now - rt->tls_logged_ms >= 1000) {
        rt->tls_logged_ms = now ? now : 1;
        log_error("origin %s/%s: TLS connection refused: %s", oc->os->pool, oc->os->name, why);
    }
    return -EPROTO;
}

void proxy_origin_tls_keep_session(struct proxy_thread *pt, struct origin_conn *oc)
{
    if (!tp_is_tls(&oc->tp))
        return;
    struct origin_rt *rt = &pt->origins[oc->origin_id];
    if (rt->generation != oc->generation)
        return;
    struct ssl_session_st *s = tls_session_get(&oc->tp);
    if (!s)
        return;
    if (s == rt->tls_session) {
        tls_session_free(s);
        return;
    }
    tls_session_free(rt->tls_session);
    rt->tls_session = s;
    rt->tls_session_of = oc->tls_id;
}

/* ---- worker callbacks ---- */

static void accept_cb(struct listener *l, int fd, const struct sockaddr *peer)
{
    client_accept(proxy_thread_of(l->worker), l, fd, peer);
}

static void adopt_cb(struct worker *w, void *offered)
{
    adopt(proxy_thread_of(w), offered);
}

static void discard_cb(void *offered)
{
    snapshot_release(offered);
}

static bool reclaim_cb(struct worker *w)
{
    return client_reclaim_idle(proxy_thread_of(w));
}

/* Requests cut off when the grace period ran out, all workers: the last
 * worker to end says how many. */
static atomic_uint workers_alive;
static atomic_ulong cut_off_total;

static void stop_cb(struct worker *w)
{
    struct proxy_thread *pt = proxy_thread_of(w);
    for (size_t i = 0; i < SNAPSHOT_MAX_ORIGINS; i++)
        origin_conn_close_idle(pt, &pt->origins[i]);
    client_stop_idle(pt);
}

/* Retiring (another process took the listening sockets over): every
 * request under way is answered with "Connection: close", like at a stop,
 * but connections between requests stay open for their client's next
 * request (exchange.c answers it with "Connection: close" too). */
static void retire_cb(struct worker *w)
{
    struct proxy_thread *pt = proxy_thread_of(w);
    for (struct client *c = pt->clients; c; c = c->next)
        if (c->state == CS_EXCHANGE)
            c->ex->client_keep_alive = false;
}

static void fini_cb(struct worker *w)
{
    struct proxy_thread *pt = proxy_thread_of(w);
    if (!pt)
        return;
    atomic_fetch_add(&cut_off_total, client_close_all(pt));
    if (atomic_fetch_sub(&workers_alive, 1) == 1) {
        unsigned long cut = atomic_exchange(&cut_off_total, 0);
        if (cut > 0)
            log_error("shutdown: %lu requests cut off after grace", cut);
    }
    if (pt->origins)
        for (size_t i = 0; i < SNAPSHOT_MAX_ORIGINS; i++) {
            origin_conn_close_idle(pt, &pt->origins[i]);
            tls_session_free(pt->origins[i].tls_session);
        }
    timer_cancel(&w->loop, &pt->trim_timer);
    timer_cancel(&w->loop, &pt->queue_timer);
    token_ctx_free(pt->token_ctx); /* before the keys it is bound to go */
    while (pt->retired) {
        struct snap_use *use = pt->retired;
        pt->retired = use->next;
        use_free(use);
    }
    if (pt->cur)
        use_free(pt->cur);
    free(pt->origins);
    free(pt->candidate_scratch);
    slab_fini(&pt->client_slab);
    slab_fini(&pt->exchange_slab);
    slab_fini(&pt->origin_conn_slab);
    buf_pool_fini(&pt->bufs);
    free(pt);
    w->app = NULL;
}

static const struct worker_ops proxy_worker_ops = {
    .accept_cb = accept_cb,
    .adopt_cb = adopt_cb,
    .discard_cb = discard_cb,
    .stop_cb = stop_cb,
    .retire_cb = retire_cb,
    .reclaim_cb = reclaim_cb,
    .fini_cb = fini_cb,
};

/* Gives back the buffers that stayed unused for a whole period. */
static void trim_cb(struct loop *loop, struct timer *t)
{
    struct proxy_thread *pt = proxy_thread_of(loop->owner);
    buf_pool_trim(&pt->bufs, BUFS_KEPT);
    timer_arm(loop, t, BUF_TRIM_MS);
}

static void queue_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    exchange_run_queue(proxy_thread_of(loop->owner));
}

struct worker *proxy_worker_new(unsigned id, unsigned num_workers, struct snapshot *s,
                                int access_log_fd)
{
    struct proxy_thread *pt = calloc(1, sizeof(*pt));
    struct origin_rt *origins = calloc(SNAPSHOT_MAX_ORIGINS, sizeof(*origins));
    struct worker *w = pt && origins
                           ? worker_new(id, num_workers, &proxy_worker_ops, pt, access_log_fd)
                           : NULL;
    if (!w) {
        if (!pt || !origins)
            log_error("worker %u: out of memory", id);
        free(origins);
        free(pt);
        return NULL;
    }
    pt->w = w;
    pt->origins = origins;
    atomic_fetch_add(&workers_alive, 1); /* fini_cb, which counts it down, runs from now on */
    timer_init(&pt->queue_timer, queue_cb);
    pt->max_idle_per_origin = IDLE_ORIGIN_CONNS_PER_ORIGIN;
    buf_pool_init(&pt->bufs);
    slab_init(&pt->client_slab, sizeof(struct client));
    slab_init(&pt->exchange_slab, sizeof(struct exchange));
    slab_init(&pt->origin_conn_slab, sizeof(struct origin_conn));
    timer_init(&pt->trim_timer, trim_cb);
    timer_arm(&w->loop, &pt->trim_timer, BUF_TRIM_MS);
    if (adopt(pt, snapshot_ref(s)) < 0) {
        worker_free(w);
        return NULL;
    }
    return w;
}

void proxy_worker_offer_snapshot(struct worker *w, struct snapshot *s)
{
    worker_offer(w, snapshot_ref(s));
}
