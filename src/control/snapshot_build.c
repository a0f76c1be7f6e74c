/*
 * snapshot_build — building and publishing snapshots; the registries of
 * origin identities and listening sockets (see snapshot_build.h).
 *
 * The registries are touched when snapshot bases are built (control thread)
 * and when the last reference to an origin or socket goes away (any thread,
 * when it releases an old snapshot), so they sit behind one mutex. Nothing on
 * the request path takes it: workers only read snapshots and the atomics
 * inside.
 */
#include "control/snapshot_build.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "affinity/affinity.h"
#include "balance/route.h"
#include "control/upgrade.h"
#include "core/log.h"
#include "control/tls_build.h"
#include "core/loop.h"
#include "core/stats.h"

static struct snapshot *current; /* control thread only */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct origin_shared *origins_by_id[SNAPSHOT_MAX_ORIGINS];
static uint32_t id_generation[SNAPSHOT_MAX_ORIGINS];
static struct listen_socket **sockets;
static size_t num_sockets;
static unsigned workers = 1;
static bool sockets_owned = true; /* control thread only */
static uint64_t next_generation = 1;
static char *lb_names[STATS_MAX_LBS]; /* id → name, for the life of the process */

/* The stable id of a load balancer name (registry lock held); -1 when full. */
static long lb_id(const char *name)
{
    for (size_t i = 0; i < STATS_MAX_LBS; i++) {
        if (!lb_names[i]) {
            lb_names[i] = strdup(name);
            return lb_names[i] ? (long)i : -1;
        }
        if (strcmp(lb_names[i], name) == 0)
            return (long)i;
    }
    return -1;
}

void snapshot_system_init(unsigned num_workers)
{
    workers = num_workers ? num_workers : 1;
}

/* ---- origin identities ---- */

static struct origin_shared *origin_get(const char *pool, const char *name)
{
    for (size_t i = 0; i < SNAPSHOT_MAX_ORIGINS; i++) {
        struct origin_shared *o = origins_by_id[i];
        if (o && strcmp(o->pool, pool) == 0 && strcmp(o->name, name) == 0) {
            atomic_fetch_add(&o->refs, 1);
            return o;
        }
    }
    for (uint32_t id = 0; id < SNAPSHOT_MAX_ORIGINS; id++) {
        if (origins_by_id[id])
            continue;
        struct origin_shared *o = calloc(1, sizeof(*o));
        if (!o)
            return NULL;
        o->pool = strdup(pool);
        o->name = strdup(name);
        if (!o->pool || !o->name) {
            free(o->pool);
            free(o->name);
            free(o);
            return NULL;
        }
        o->id = id;
        o->generation = ++id_generation[id];
        atomic_init(&o->refs, 1);
        atomic_init(&o->healthy, true); /* healthy until a check says otherwise */
        atomic_init(&o->drain_started_ms, 0);
        atomic_init(&o->passive_failures, 0);
        atomic_init(&o->retry_after_ms, 0);
        atomic_init(&o->in_flight, 0);
        atomic_init(&o->up_since_ms, 0);
        o->last_state = -1;
        origins_by_id[id] = o;
        return o;
    }
    return NULL;
}

static void origin_put(struct origin_shared *o)
{
    if (!o || atomic_fetch_sub(&o->refs, 1) != 1)
        return;
    origins_by_id[o->id] = NULL;
    free(o->pool);
    free(o->name);
    free(o);
}

/* ---- pool identities (registry lock held) ---- */

static struct pool_shared **pools_shared;
static size_t num_pools_shared;

static struct pool_shared *pool_get(const char *name)
{
    for (size_t i = 0; i < num_pools_shared; i++) {
        if (strcmp(pools_shared[i]->name, name) == 0) {
            atomic_fetch_add(&pools_shared[i]->refs, 1);
            return pools_shared[i];
        }
    }
    struct pool_shared *ps = calloc(1, sizeof(*ps));
    struct pool_shared **grown =
        realloc(pools_shared, (num_pools_shared + 1) * sizeof(*pools_shared));
    if (grown)
        pools_shared = grown;
    if (!ps || !grown || !(ps->name = strdup(name))) {
        free(ps);
        return NULL;
    }
    atomic_init(&ps->refs, 1);
    atomic_init(&ps->queued, 0);
    pools_shared[num_pools_shared++] = ps;
    return ps;
}

static void pool_put(struct pool_shared *ps)
{
    if (!ps || atomic_fetch_sub(&ps->refs, 1) != 1)
        return;
    for (size_t i = 0; i < num_pools_shared; i++) {
        if (pools_shared[i] == ps) {
            pools_shared[i] = pools_shared[--num_pools_shared];
            break;
        }
    }
    free(ps->name);
    free(ps);
}

/* ---- listening sockets ---- */

static void socket_free(struct listen_socket *ls)
{
    for (unsigned i = 0; i < ls->num_fds; i++)
        if (ls->fds[i] >= 0)
            close(ls->fds[i]);
    free(ls->fds);
    free(ls->address);
    free(ls);
}

static struct listen_socket *socket_get(const struct cfg_listener *l, char *err, size_t err_size)
{
    for (size_t i = 0; i < num_sockets; i++) {
        if (strcmp(sockets[i]->address, l->address) == 0) {
            atomic_fetch_add(&sockets[i]->refs, 1);
            return sockets[i];
        }
    }
    /* Sockets taken over from the process this one upgrades (all of them,
     * even beyond one per worker: closing one would reset the connections
     * waiting in its accept queue). */
    int *inherited = NULL;
    unsigned num_inherited = upgrade_take_sockets(UPGRADE_LISTEN, &l->addr, &inherited);
    unsigned cap = num_inherited > workers ? num_inherited : workers;
    struct listen_socket *ls = calloc(1, sizeof(*ls));
    struct listen_socket **grown = realloc(sockets, (num_sockets + 1) * sizeof(*sockets));
    if (grown)
        sockets = grown;
    if (!ls || !grown || !(ls->address = strdup(l->address)) ||
        !(ls->fds = calloc(cap, sizeof(int)))) {
        snprintf(err, err_size, "out of memory");
        if (ls) {
            free(ls->address);
            free(ls);
        }
        for (unsigned i = 0; i < num_inherited; i++)
            close(inherited[i]);
        free(inherited);
        return NULL;
    }
    atomic_init(&ls->refs, 1);
    for (unsigned i = 0; i < num_inherited; i++)
        ls->fds[ls->num_fds++] = inherited[i];
    free(inherited);
    for (unsigned i = ls->num_fds; i < workers; i++) {
        int fd = addr_listen(&l->addr, true, 4096);
        if (fd < 0) {
            snprintf(err, err_size, "cannot listen on %s: %s", l->address, strerror(-fd));
            socket_free(ls);
            return NULL;
        }
        ls->fds[ls->num_fds++] = fd;
    }
    sockets[num_sockets++] = ls;
    return ls;
}

static void socket_put(struct listen_socket *ls)
{
    if (!ls || atomic_fetch_sub(&ls->refs, 1) != 1)
        return;
    for (size_t i = 0; i < num_sockets; i++) {
        if (sockets[i] == ls) {
            sockets[i] = sockets[--num_sockets];
            break;
        }
    }
    socket_free(ls);
}

void snapshot_sockets_set_owned(bool owned)
{
    sockets_owned = owned;
}

bool snapshot_sockets_owned(void)
{
    return sockets_owned;
}

static bool has_listener(const struct snapshot *s, const struct listen_socket *ls)
{
    for (size_t i = 0; s && i < s->cfg->num_listeners; i++)
        if (s->listeners[i] == ls)
            return true;
    return false;
}

unsigned snapshot_retire_listeners(const struct snapshot *prev, const struct snapshot *next)
{
    unsigned retired = 0;
    if (!prev || !sockets_owned || (next && prev->base == next->base))
        return 0;
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < prev->cfg->num_listeners; i++) {
        struct listen_socket *ls = prev->listeners[i];
        if (has_listener(next, ls))
            continue;
        /* Forgotten first: the address may come back before the last
         * snapshot holding these sockets is gone. */
        for (size_t k = 0; k < num_sockets; k++) {
            if (sockets[k] == ls) {
                sockets[k] = sockets[--num_sockets];
                break;
            }
        }
        for (unsigned j = 0; j < ls->num_fds; j++)
            shutdown(ls->fds[j], SHUT_RD);
        log_error("%s is no longer listened on: new connections are refused, those open are "
                  "served", ls->address);
        retired++;
    }
    pthread_mutex_unlock(&registry_lock);
    return retired;
}

/* ---- snapshot bases (configuration) ---- */

/* A snapshot-shaped view of a base, for the table builders. */
static struct snapshot base_view(const struct snapshot_base *b)
{
    return (struct snapshot){.cfg = b->cfg, .pools = b->pools, .listeners = b->listeners,
                             .listen = b->listen, .lb_ids = b->lb_ids, .aff = b->aff};
}

/* Gives back the origin identities and sockets b holds (not its config). */
static void release_registry_refs(struct snapshot_base *b, const struct config *cfg)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t p = 0; b->pools && p < cfg->num_pools; p++) {
        for (size_t o = 0; b->pools[p].origins && o < cfg->pools[p].num_origins; o++)
            origin_put(b->pools[p].origins[o]);
        free(b->pools[p].origins);
        pool_put(b->pools[p].shared);
    }
    for (size_t i = 0; b->listeners && i < cfg->num_listeners; i++)
        socket_put(b->listeners[i]);
    pthread_mutex_unlock(&registry_lock);
    free(b->pools);
    free(b->listeners);
    free(b->lb_ids);
}

/* Frees a base but not its configuration. */
static void base_free_keep_config(struct snapshot_base *b)
{
    struct snapshot view = base_view(b);
    affinity_tables_free(b->aff, &view);
    tls_base_free(b);
    release_registry_refs(b, b->cfg);
    free(b);
}

static void base_free_cb(struct snapshot_base *b)
{
    struct config *cfg = b->cfg;
    base_free_keep_config(b);
    config_free(cfg);
}

/* Builds the base for cfg (taking ownership on success). */
static struct snapshot_base *base_build(struct config *cfg, char *err, size_t err_size)
{
    struct snapshot_base *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->cfg = cfg;
    b->free_cb = base_free_cb;
    b->pools = calloc(cfg->num_pools ? cfg->num_pools : 1, sizeof(*b->pools));
    b->listeners = calloc(cfg->num_listeners ? cfg->num_listeners : 1, sizeof(*b->listeners));
    b->lb_ids = calloc(cfg->num_load_balancers ? cfg->num_load_balancers : 1, sizeof(*b->lb_ids));
    bool ok = b->pools && b->listeners && b->lb_ids;
    if (!ok)
        snprintf(err, err_size, "out of memory");

    pthread_mutex_lock(&registry_lock);
    for (size_t p = 0; ok && p < cfg->num_pools; p++) {
        const struct cfg_pool *pool = &cfg->pools[p];
        b->pools[p].origins = calloc(pool->num_origins ? pool->num_origins : 1,
                                     sizeof(struct origin_shared *));
        b->pools[p].shared = pool_get(pool->name);
        if (!b->pools[p].origins || !b->pools[p].shared) {
            snprintf(err, err_size, "out of memory");
            ok = false;
            break;
        }
        for (size_t o = 0; o < pool->num_origins; o++) {
            b->pools[p].origins[o] = origin_get(pool->name, pool->origins[o].name);
            if (!b->pools[p].origins[o]) {
                snprintf(err, err_size, "more than %d origins", SNAPSHOT_MAX_ORIGINS);
                ok = false;
                break;
            }
        }
    }
    for (size_t i = 0; ok && i < cfg->num_load_balancers; i++) {
        long id = lb_id(cfg->load_balancers[i].name);
        if (id < 0) {
            snprintf(err, err_size, "more than %d load balancer names", STATS_MAX_LBS);
            ok = false;
        }
        b->lb_ids[i] = (uint32_t)id;
    }
    for (size_t i = 0; ok && i < cfg->num_listeners; i++) {
        b->listeners[i] = socket_get(&cfg->listeners[i], err, err_size);
        ok = b->listeners[i] != NULL;
    }
    if (ok) {
        /* Drain start times follow the configured states. */
        for (size_t p = 0; p < cfg->num_pools; p++) {
            for (size_t o = 0; o < cfg->pools[p].num_origins; o++) {
                struct origin_shared *os = b->pools[p].origins[o];
                bool draining = cfg->pools[p].origins[o].state == ORIGIN_DRAINING;
                unsigned long long started = atomic_load(&os->drain_started_ms);
                if (draining && started == 0) {
                    atomic_store(&os->drain_started_ms, clock_ms());
                    os->drain_end_logged = false;
                } else if (!draining && started != 0) {
                    atomic_store(&os->drain_started_ms, 0);
                }
                /* Enabled again: slow_start ramps it up from now. */
                int state = (int)cfg->pools[p].origins[o].state;
                if (os->last_state >= 0 && os->last_state != ORIGIN_ENABLED &&
                    state == ORIGIN_ENABLED)
                    atomic_store(&os->up_since_ms, clock_ms());
                os->last_state = state;
            }
        }
    }
    pthread_mutex_unlock(&registry_lock);
    if (ok) {
        struct snapshot view = base_view(b);
        b->aff = affinity_tables_build(&view, err, err_size);
        ok = b->aff != NULL;
    }
    if (ok && tls_base_build(b, workers, err, err_size) < 0) {
        struct snapshot view = base_view(b);
        affinity_tables_free(b->aff, &view);
        ok = false;
    }
    if (!ok) {
        tls_base_free(b);
        release_registry_refs(b, cfg);
        free(b);
        return NULL;
    }
    return b;
}

/* ---- snapshots (routing) ---- */

static void snapshot_free_cb(struct snapshot *s)
{
    route_hash_free(s->hash, s);
    snapshot_base_release(s->base);
    free(s);
}

/* A snapshot over base b (whose reference the caller passes on success),
 * with routing tables for the origins usable now. */
static struct snapshot *snapshot_over(struct snapshot_base *b, char *err, size_t err_size)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->base = b;
    s->cfg = b->cfg;
    s->pools = b->pools;
    s->listeners = b->listeners;
    s->listen = b->listen;
    s->lb_ids = b->lb_ids;
    s->aff = b->aff;
    s->free_cb = snapshot_free_cb;
    s->hash = route_hash_build(s);
    if (!s->hash) {
        snprintf(err, err_size, "out of memory");
        free(s);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    s->generation = next_generation++;
    pthread_mutex_unlock(&registry_lock);
    return s;
}

struct snapshot *snapshot_build(struct config *cfg, char *err, size_t err_size)
{
    struct snapshot_base *b = base_build(cfg, err, err_size);
    if (!b)
        return NULL;
    struct snapshot *s = snapshot_over(b, err, err_size);
    if (!s)
        base_free_keep_config(b); /* cfg stays the caller's */
    return s;
}

struct snapshot *snapshot_rebuild_routing(const struct snapshot *from, char *err,
                                          size_t err_size)
{
    struct snapshot_base *b = snapshot_base_ref(from->base);
    struct snapshot *s = snapshot_over(b, err, err_size);
    if (!s)
        snapshot_base_release(b);
    return s;
}

struct snapshot *snapshot_current(void)
{
    return current;
}

void snapshot_set_current(struct snapshot *s)
{
    struct snapshot *old = current;
    current = s;
    snapshot_release(old);
}
