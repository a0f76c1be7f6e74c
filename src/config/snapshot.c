/*
 * snapshot — building, publishing and releasing snapshots; the registries of
 * origin identities and listening sockets (see snapshot.h).
 *
 * The registries are touched when snapshots are built (control thread) and
 * when the last reference to an origin or socket goes away (any thread, when
 * it releases an old snapshot), so they sit behind one mutex. Nothing on the
 * request path takes it: workers only read snapshots and the atomics inside.
 */
#include "config/snapshot.h"

#include "affinity/affinity.h"
#include "balance/route.h"
#include "core/loop.h"
#include "core/stats.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct origin_shared *origins_by_id[SNAPSHOT_MAX_ORIGINS];
static uint32_t id_generation[SNAPSHOT_MAX_ORIGINS];
static struct listen_socket **sockets;
static size_t num_sockets;
static unsigned workers = 1;
static struct snapshot *current; /* control thread only */
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
    struct listen_socket *ls = calloc(1, sizeof(*ls));
    struct listen_socket **grown = realloc(sockets, (num_sockets + 1) * sizeof(*sockets));
    if (grown)
        sockets = grown;
    if (!ls || !grown || !(ls->address = strdup(l->address)) ||
        !(ls->fds = calloc(workers, sizeof(int)))) {
        snprintf(err, err_size, "out of memory");
        if (ls) {
            free(ls->address);
            free(ls);
        }
        return NULL;
    }
    atomic_init(&ls->refs, 1);
    for (unsigned i = 0; i < workers; i++) {
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

/* ---- snapshots ---- */

/* Gives back the origin identities and sockets s holds (not its config). */
static void release_registry_refs(struct snapshot *s, const struct config *cfg)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t p = 0; s->pools && p < cfg->num_pools; p++) {
        for (size_t o = 0; s->pools[p].origins && o < cfg->pools[p].num_origins; o++)
            origin_put(s->pools[p].origins[o]);
        free(s->pools[p].origins);
    }
    for (size_t i = 0; s->listeners && i < cfg->num_listeners; i++)
        socket_put(s->listeners[i]);
    pthread_mutex_unlock(&registry_lock);
    free(s->pools);
    free(s->listeners);
    free(s->lb_ids);
}

static void snapshot_free(struct snapshot *s)
{
    affinity_tables_free(s->aff, s);
    route_hash_free(s->hash, s);
    release_registry_refs(s, s->cfg);
    config_free(s->cfg);
    free(s);
}

struct snapshot *snapshot_build(struct config *cfg, char *err, size_t err_size)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    s->pools = calloc(cfg->num_pools, sizeof(*s->pools));
    s->listeners = calloc(cfg->num_listeners, sizeof(*s->listeners));
    s->lb_ids = calloc(cfg->num_load_balancers, sizeof(*s->lb_ids));
    bool ok = s->pools && s->listeners && s->lb_ids;
    if (!ok)
        snprintf(err, err_size, "out of memory");

    pthread_mutex_lock(&registry_lock);
    for (size_t p = 0; ok && p < cfg->num_pools; p++) {
        const struct cfg_pool *pool = &cfg->pools[p];
        s->pools[p].origins = calloc(pool->num_origins, sizeof(struct origin_shared *));
        if (!s->pools[p].origins) {
            snprintf(err, err_size, "out of memory");
            ok = false;
            break;
        }
        for (size_t o = 0; o < pool->num_origins; o++) {
            s->pools[p].origins[o] = origin_get(pool->name, pool->origins[o].name);
            if (!s->pools[p].origins[o]) {
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
        s->lb_ids[i] = (uint32_t)id;
    }
    for (size_t i = 0; ok && i < cfg->num_listeners; i++) {
        s->listeners[i] = socket_get(&cfg->listeners[i], err, err_size);
        ok = s->listeners[i] != NULL;
    }
    if (ok) {
        s->generation = next_generation++;
        /* Drain start times follow the configured states. */
        for (size_t p = 0; p < cfg->num_pools; p++) {
            for (size_t o = 0; o < cfg->pools[p].num_origins; o++) {
                struct origin_shared *os = s->pools[p].origins[o];
                bool draining = cfg->pools[p].origins[o].state == ORIGIN_DRAINING;
                unsigned long long started = atomic_load(&os->drain_started_ms);
                if (draining && started == 0) {
                    atomic_store(&os->drain_started_ms, clock_ms());
                    os->drain_end_logged = false;
                } else if (!draining && started != 0) {
                    atomic_store(&os->drain_started_ms, 0);
                }
            }
        }
    }
    pthread_mutex_unlock(&registry_lock);
    if (ok) {
        s->hash = route_hash_build(s);
        if (!s->hash)
            snprintf(err, err_size, "out of memory");
        ok = s->hash != NULL;
    }
    if (ok) {
        s->aff = affinity_tables_build(s, err, err_size);
        ok = s->aff != NULL;
    }
    if (!ok) {
        route_hash_free(s->hash, s);
        release_registry_refs(s, cfg);
        free(s);
        return NULL;
    }
    return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void snapshot_release(struct snapshot *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snapshot_free(s);
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

bool snapshot_origin_usable(const struct snapshot *s, size_t pool, size_t origin)
{
    const struct cfg_origin *o = &s->cfg->pools[pool].origins[origin];
    return o->state == ORIGIN_ENABLED && o->weight > 0 &&
           atomic_load_explicit(&s->pools[pool].origins[origin]->healthy, memory_order_relaxed);
}

bool snapshot_find_origin(const struct snapshot *s, const char *pool, const char *origin,
                          size_t *pool_index, size_t *origin_index)
{
    for (size_t p = 0; p < s->cfg->num_pools; p++) {
        if (strcmp(s->cfg->pools[p].name, pool) != 0)
            continue;
        for (size_t o = 0; o < s->cfg->pools[p].num_origins; o++) {
            if (strcmp(s->cfg->pools[p].origins[o].name, origin) == 0) {
                *pool_index = p;
                *origin_index = o;
                return true;
            }
        }
    }
    return false;
}
