/*
 * owner — locks on listening addresses and on the configuration file (see
 * owner.h).
 */
#include "control/owner.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/upgrade.h"
#include "core/log.h"
#include "snapshot/snapshot.h"

#define LOCK_BACKLOG 16

struct claim {
    char key[OWNER_KEY_MAX];
    struct io_watch io;            /* the lock socket; fd -1 while only noted */
    struct loop *loop;             /* where io is watched (NULL: not watched) */
};

static struct claim **claims;      /* control thread only */
static size_t num_claims;

/* ---- names ---- */

void owner_key_listen(const struct addr *a, char *key, size_t size)
{
    char text[INET6_ADDRSTRLEN + 16];
    snprintf(key, size, "listen/%s", addr_format(a, text, sizeof(text)));
}

void owner_key_config(const char *config_path, char *key, size_t size)
{
    char real[PATH_MAX];
    const char *path = realpath(config_path, real) ? real : config_path;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: a short, stable name for any path */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(key, size, "config/%016llx", (unsigned long long)h);
}

static socklen_t abstract_name(const char *key, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    int n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "limpet/%s", key);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len > sizeof(sun->sun_path) - 1)
        len = sizeof(sun->sun_path) - 1;
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

/* ---- locks ---- */

/* A listening socket holding the name of key, or -errno (-EADDRINUSE: held). */
static int lock_bind(const char *key)
{
    struct sockaddr_un sun;
    socklen_t len = abstract_name(key, &sun);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, LOCK_BACKLOG) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int owner_connect(const char *key)
{
    struct sockaddr_un sun;
    socklen_t len = abstract_name(key, &sun);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sun, len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* The pid of the process holding key's lock, or 0 when nobody answers. */
static pid_t lock_holder(const char *key)
{
    struct sockaddr_un sun;
    socklen_t len = abstract_name(key, &sun);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct ucred cred = {0};
    socklen_t cred_len = sizeof(cred);
    pid_t pid = 0;
    if (connect(fd, (struct sockaddr *)&sun, len) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0)
        pid = cred.pid;
    close(fd);
    return pid;
}

/* 0 when nothing listens on a's port in a way that conflicts with a, else
 * -errno (-EADDRINUSE). SO_REUSEADDR keeps TIME_WAIT connections of the
 * port from counting; without SO_REUSEPORT any listener conflicts. */
static int tcp_probe(const struct addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* The limpet listening on the wildcard address of a's family and port. */
static pid_t wildcard_holder(const struct addr *a)
{
    struct addr any = {.len = a->len};
    any.ss.ss_family = a->ss.ss_family;
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&any.ss)->sin_port = ((const struct sockaddr_in *)&a->ss)->sin_port;
    else
        ((struct sockaddr_in6 *)&any.ss)->sin6_port =
            ((const struct sockaddr_in6 *)&a->ss)->sin6_port;
    if (addr_equal(&any, a))
        return 0;
    char key[OWNER_KEY_MAX];
    owner_key_listen(&any, key, sizeof(key));
    return lock_holder(key);
}

/* ---- claims ---- */

static struct claim *find_claim(const char *key)
{
    for (size_t i = 0; i < num_claims; i++)
        if (strcmp(claims[i]->key, key) == 0)
            return claims[i];
    return NULL;
}

static void claim_watch(struct claim *c, struct loop *loop, int fd)
{
    c->io.fd = fd;
    if (loop && loop_watch(loop, &c->io, fd, EPOLLIN, upgrade_accept_cb) == 0)
        c->loop = loop;
}

static struct claim *claim_add(const char *key)
{
    struct claim *c = calloc(1, sizeof(*c));
    struct claim **grown = c ? realloc(claims, (num_claims + 1) * sizeof(*claims)) : NULL;
    if (!grown) {
        free(c);
        return NULL;
    }
    claims = grown;
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->io.fd = -1;
    claims[num_claims++] = c;
    return c;
}

static void claim_release(size_t i)
{
    struct claim *c = claims[i];
    if (c->io.fd >= 0) {
        if (c->loop)
            loop_unwatch(c->loop, &c->io);
        close(c->io.fd);
    }
    free(c);
    claims[i] = claims[--num_claims];
}

/* Claims one address; 0, or -1 with err set. */
static int claim_address(struct loop *loop, const struct cfg_listener *l, bool at_start,
                         char *err, size_t err_size)
{
    char key[OWNER_KEY_MAX];
    owner_key_listen(&l->addr, key, sizeof(key));
    if (find_claim(key))
        return 0;
    if (upgrade_has_sockets(UPGRADE_LISTEN, &l->addr)) {
        /* the old process still holds the lock: taken after the handover */
        if (!claim_add(key)) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        return 0;
    }
    int fd = lock_bind(key);
    pid_t holder = 0;
    for (int attempt = 0; fd == -EADDRINUSE && attempt < 2 && holder == 0; attempt++) {
        holder = lock_holder(key);
        if (holder == 0) /* it went away meanwhile: try again */
            fd = lock_bind(key);
    }
    int probe = fd >= 0 ? tcp_probe(&l->addr) : 0;
    if (probe == -EADDRINUSE)
        holder = wildcard_holder(&l->addr);
    if (fd == -EADDRINUSE || holder) {
        if (fd >= 0)
            close(fd);
        if (at_start && holder)
            snprintf(err, err_size, "%s is held by a running limpet (pid %ld); use --upgrade to "
                     "take over", l->address, (long)holder);
        else if (at_start)
            snprintf(err, err_size, "%s is held by a running limpet; use --upgrade to take over",
                     l->address);
        else if (holder)
            snprintf(err, err_size, "cannot listen on %s: held by a running limpet (pid %ld)",
                     l->address, (long)holder);
        else
            snprintf(err, err_size, "cannot listen on %s: held by a running limpet", l->address);
        return -1;
    }
    if (fd < 0 || probe < 0) {
        if (fd >= 0)
            close(fd);
        snprintf(err, err_size, "cannot listen on %s: %s", l->address,
                 strerror(fd < 0 ? -fd : -probe));
        return -1;
    }
    struct claim *c = claim_add(key);
    if (!c) {
        close(fd);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    claim_watch(c, loop, fd);
    return 0;
}

int owner_claim(struct loop *loop, const struct config *cfg, bool at_start, char *err,
                size_t err_size)
{
    size_t before = num_claims;
    for (size_t i = 0; i < cfg->num_listeners; i++) {
        if (claim_address(loop, &cfg->listeners[i], at_start, err, err_size) < 0) {
            while (num_claims > before) /* the new claims are the last ones */
                claim_release(num_claims - 1);
            return -1;
        }
    }
    return 0;
}

void owner_sync(const struct snapshot *s)
{
    for (size_t i = num_claims; i-- > 0;) {
        if (strncmp(claims[i]->key, "listen/", 7) != 0)
            continue;
        bool kept = false;
        for (size_t j = 0; s && j < s->cfg->num_listeners && !kept; j++) {
            char key[OWNER_KEY_MAX];
            owner_key_listen(&s->cfg->listeners[j].addr, key, sizeof(key));
            kept = strcmp(key, claims[i]->key) == 0;
        }
        if (!kept)
            claim_release(i);
    }
}

void owner_claim_config(struct loop *loop, const char *config_path)
{
    if (!config_path)
        return;
    char key[OWNER_KEY_MAX];
    owner_key_config(config_path, key, sizeof(key));
    if (find_claim(key))
        return;
    int fd = lock_bind(key);
    if (fd == -EADDRINUSE) {
        pid_t holder = lock_holder(key);
        log_error("%s: another limpet (pid %ld) runs this configuration file too; "
                  "`limpet --upgrade` finds a running limpet by its addresses first", config_path,
                  (long)holder);
        return;
    }
    struct claim *c = fd >= 0 ? claim_add(key) : NULL;
    if (!c) {
        if (fd >= 0)
            close(fd);
        return;
    }
    claim_watch(c, loop, fd);
}

void owner_claim_taken_over(struct loop *loop, const char *config_path)
{
    for (size_t i = 0; i < num_claims; i++) {
        struct claim *c = claims[i];
        if (c->io.fd >= 0)
            continue;
        int fd = lock_bind(c->key);
        if (fd < 0) {
            log_error("upgrade: cannot take the lock %s: %s (a limpet started without "
                      "--upgrade would not be told that this one holds the address)", c->key,
                      strerror(-fd));
            continue;
        }
        claim_watch(c, loop, fd);
    }
    owner_claim_config(loop, config_path);
}

void owner_release_all(void)
{
    while (num_claims)
        claim_release(num_claims - 1);
    free(claims);
    claims = NULL;
}
