/*
 * floor_relay — the least work an epoll proxy can do, as a reference for `make bench`.
 *
 *   floor_relay LISTEN_ADDR UPSTREAM_ADDR      (IPv4 a.b.c.d:port or [IPv6]:port)
 *
 * For every accepted client it opens one connection to UPSTREAM_ADDR and relays
 * bytes both ways as they come: no parsing, no pooling, no affinity. One thread,
 * level-triggered epoll, and per readiness one recv() and one send() per direction.
 * Data is read into one shared scratch buffer and sent at once; only bytes the
 * kernel did not take are copied into a per-direction buffer (which also stops
 * reading that side until they are gone), so an idle pair holds no buffer.
 *
 * EOF on one side is passed on as shutdown(SHUT_WR) once its bytes are sent; the
 * pair is closed when both directions are done or on any error. Runs until killed.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { SCRATCH = 64 * 1024, MAX_EVENTS = 256, ACCEPT_BATCH = 64 };

struct side {
    int fd;
    struct side *peer;
    struct pair *pair;
    bool connecting;   /* upstream side: connect() in progress */
    bool eof;          /* this fd returned 0 from recv: nothing more to read */
    bool shut;         /* shutdown(SHUT_WR) done on this fd */
    char *pend;        /* bytes read from this fd that the peer did not take yet */
    size_t pend_len, pend_off;
    uint32_t events;   /* interest currently registered */
};

struct pair {
    struct side client, upstream;
};

static int ep;
static char scratch[SCRATCH];
static struct sockaddr_storage up_addr;
static socklen_t up_len;

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hl < 2 || s[hl - 1] != ']')
            return -1;
        s++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Wanted interest: read while nothing of ours is waiting for the peer;
 * write while connecting or while the peer's bytes wait for us. */
static uint32_t wanted(const struct side *s)
{
    uint32_t ev = 0;
    if (s->connecting)
        return EPOLLOUT;
    if (!s->eof && s->pend_len == 0 && !s->peer->connecting)
        ev |= EPOLLIN;
    if (s->peer->pend_len > 0)
        ev |= EPOLLOUT;
    return ev;
}

static void update(struct side *s)
{
    uint32_t ev = wanted(s);
    if (ev == s->events)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
    s->events = ev;
}

/* Both directions finished: every EOF passed on and nothing pending. */
static bool pair_done(const struct pair *p)
{
    return p->client.eof && p->upstream.eof && p->client.shut && p->upstream.shut;
}

/* `from` reached EOF and its bytes are all sent: pass the EOF on. */
static void pass_eof(struct side *from)
{
    if (from->eof && from->pend_len == 0 && !from->peer->shut) {
        shutdown(from->peer->fd, SHUT_WR);
        from->peer->shut = true;
    }
}

/* One recv from `s`, one send of what came to its peer. -1: close the pair. */
static int on_readable(struct side *s)
{
    ssize_t n = recv(s->fd, scratch, sizeof scratch, 0);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (n == 0) {
        s->eof = true;
        pass_eof(s);
        return 0;
    }
    ssize_t w = send(s->peer->fd, scratch, (size_t)n, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        w = 0;
    }
    if (w < n) {
        size_t rest = (size_t)(n - w);
        s->pend = malloc(rest);
        if (!s->pend)
            return -1;
        memcpy(s->pend, scratch + w, rest);
        s->pend_len = rest;
        s->pend_off = 0;
    }
    return 0;
}

/* `s` is writable: finish a connect, or one send of the peer's pending bytes. */
static int on_writable(struct side *s)
{
    if (s->connecting) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0)
            return -1;
        s->connecting = false;
        return 0;
    }
    struct side *src = s->peer;
    if (src->pend_len == 0)
        return 0;
    ssize_t w = send(s->fd, src->pend + src->pend_off, src->pend_len, MSG_NOSIGNAL);
    if (w < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    src->pend_off += (size_t)w;
    src->pend_len -= (size_t)w;
    if (src->pend_len == 0) {
        free(src->pend);
        src->pend = NULL;
        src->pend_off = 0;
        pass_eof(src);
    }
    return 0;
}

static void add_side(struct side *s)
{
    s->events = wanted(s);
    struct epoll_event e = {.events = s->events, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e);
}

static void accept_some(int lfd)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                perror("floor_relay: accept");
            return;
        }
        int ufd = socket(up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ufd < 0) {
            perror("floor_relay: socket");
            close(cfd);
            continue;
        }
        set_nodelay(cfd);
        set_nodelay(ufd);
        bool connecting = false;
        if (connect(ufd, (struct sockaddr *)&up_addr, up_len) < 0) {
            if (errno != EINPROGRESS) {
                perror("floor_relay: connect");
                close(cfd);
                close(ufd);
                continue;
            }
            connecting = true;
        }
        struct pair *p = calloc(1, sizeof *p);
        if (!p) {
            close(cfd);
            close(ufd);
            continue;
        }
        p->client = (struct side){.fd = cfd, .peer = &p->upstream, .pair = p};
        p->upstream = (struct side){.fd = ufd, .peer = &p->client, .pair = p,
                                    .connecting = connecting};
        add_side(&p->client);
        add_side(&p->upstream);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s LISTEN_ADDR UPSTREAM_ADDR  (a.b.c.d:port or [v6]:port)\n",
                argv[0]);
        return 2;
    }
    struct sockaddr_storage laddr;
    socklen_t llen;
    if (parse_addr(argv[1], &laddr, &llen) < 0 || parse_addr(argv[2], &up_addr, &up_len) < 0) {
        fprintf(stderr, "floor_relay: bad address (want a.b.c.d:port or [v6]:port)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int lfd = socket(laddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&laddr, llen) < 0 || listen(lfd, 4096) < 0) {
        perror("floor_relay: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("floor_relay: epoll_create1");
        return 1;
    }
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("floor_relay: epoll_wait");
            return 1;
        }
        /* A pair closed while handling one event may still have an event later in
         * this batch: mark it and free the pairs only once the batch is done. */
        struct pair *dead[MAX_EVENTS];
        int ndead = 0;
        for (int i = 0; i < n; i++) {
            struct side *s = evs[i].data.ptr;
            if (!s) {
                accept_some(lfd);
                continue;
            }
            struct pair *p = s->pair;
            if (p->client.fd < 0)
                continue; /* already dead in this batch */
            uint32_t ev = evs[i].events;
            int rc = (ev & EPOLLERR) ? -1 : 0;
            if (rc == 0 && (ev & EPOLLOUT))
                rc = on_writable(s);
            /* A hang-up while this side is not being read (its bytes wait for the
             * peer) is left for later: the pending bytes go first. */
            if (rc == 0 && (ev & (EPOLLIN | EPOLLHUP)) && (s->events & EPOLLIN))
                rc = on_readable(s);
            if (rc < 0 || pair_done(p)) {
                close(p->client.fd);
                close(p->upstream.fd);
                p->client.fd = p->upstream.fd = -1;
                dead[ndead++] = p;
                continue;
            }
            update(&p->client);
            update(&p->upstream);
        }
        for (int i = 0; i < ndead; i++) {
            struct pair *p = dead[i];
            free(p->client.pend);
            free(p->upstream.pend);
            free(p);
        }
    }
}
