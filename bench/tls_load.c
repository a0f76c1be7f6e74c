/*
 * tls_load — the bench's TLS connection generator: new TLS connections per
 * second, with full or resumed handshakes (wrk has no resumption).
 *
 *   tls_load [-p PROCESSES] HOST:PORT SECONDS CONNECTIONS full|resume [HEADER...]
 *
 * CONNECTIONS slots run at once, spread over PROCESSES processes (default 1),
 * each with its own epoll and non-blocking sockets. A client handshake costs
 * more CPU than the server's side of it, so one process alone caps the rate
 * at its own speed whatever the server does: the bench runs one per core.
 * (Processes, not threads: OpenSSL 3.0 threads sharing a context contend on
 * its locks and make fewer handshakes than one thread.) A slot waits only for
 * what it is blocked on (writability while connecting or when OpenSSL wants
 * to write, readability otherwise), so the generator leaves the CPU it does
 * not need to the server it measures. Each slot loops: connect, TLS handshake
 * (resume: offering the last session its process received), one `GET / HTTP/1.1` with `Connection: close`
 * and the given extra header lines, read the response to the close, start
 * over. Certificates are not verified (the peer is on loopback). Prints one
 * line of key=value: connections completed, seconds, rate, how many resumed,
 * responses that were not 200, errors.
 *
 * Plain C and OpenSSL, no project code (like floor_relay.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum phase { CONNECTING, HANDSHAKE, SENDING, READING };

struct generator;

struct slot {
    struct generator *gen;
    int fd;
    SSL *ssl;
    enum phase phase;
    uint32_t waiting;   /* the epoll events registered for fd */
    size_t sent;
    char head[16];      /* the first bytes of the response */
    size_t head_len;
};

/* One process's share of the slots and what it counted. */
struct generator {
    int epfd;
    struct slot *slots;
    int nslots;
    SSL_SESSION *session;       /* the last one this process received (resume mode) */
    unsigned long long done, resumed, non200, errors;
};

static struct sockaddr_in target;
static SSL_CTX *ctx;
static bool resume;
static char request[2048];
static size_t request_len;
static double seconds;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void watch(struct slot *s, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(s->gen->epfd, op, s->fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(1);
    }
    s->waiting = events;
}

/* Waits for readability or writability, whichever OpenSSL said it needs. */
static void wait_for(struct slot *s, int ssl_error)
{
    uint32_t want = ssl_error == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
    if (want != s->waiting)
        watch(s, want, EPOLL_CTL_MOD);
}

static void start(struct slot *s)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        perror("socket");
        exit(1);
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->ssl = SSL_new(ctx);
    SSL_set_fd(s->ssl, s->fd);
    SSL_set_connect_state(s->ssl);
    SSL_set_tlsext_host_name(s->ssl, "bench.test");
    if (resume && s->gen->session)
        SSL_set_session(s->ssl, s->gen->session);
    s->sent = s->head_len = 0;
    int rc = connect(s->fd, (struct sockaddr *)&target, sizeof(target));
    s->phase = rc == 0 ? HANDSHAKE : CONNECTING;
    if (rc < 0 && errno != EINPROGRESS) {
        perror("connect");
        exit(1);
    }
    watch(s, EPOLLOUT, EPOLL_CTL_ADD);   /* connected, or the first flight can go */
}

static void finish(struct slot *s, bool ok)
{
    struct generator *g = s->gen;
    if (ok) {
        g->done++;
        if (s->head_len < 12 || memcmp(s->head + 9, "200", 3) != 0)
            g->non200++;
    } else {
        g->errors++;
    }
    if (ok && resume) {
        SSL_SESSION *got = SSL_get1_session(s->ssl);
        if (got && SSL_SESSION_is_resumable(got)) {
            SSL_SESSION_free(g->session);
            g->session = got;
        } else {
            SSL_SESSION_free(got);
        }
    }
    if (ok)
        SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(s->ssl);
    close(s->fd);
    ERR_clear_error();
    start(s);
}

/* Moves the slot as far as it goes; returns the events it waits for. */
static void step(struct slot *s)
{
    for (;;) {
        int rc, err;
        switch (s->phase) {
        case CONNECTING: {
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            if (soerr) {
                finish(s, false);
                return;
            }
            s->phase = HANDSHAKE;
            continue;
        }
        case HANDSHAKE:
            rc = SSL_do_handshake(s->ssl);
            if (rc == 1) {
                if (SSL_session_reused(s->ssl))
                    s->gen->resumed++;
                s->phase = SENDING;
                continue;
            }
            err = SSL_get_error(s->ssl, rc);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                wait_for(s, err);
                return;
            }
            finish(s, false);
            return;
        case SENDING:
            rc = SSL_write(s->ssl, request + s->sent, (int)(request_len - s->sent));
            if (rc > 0) {
                s->sent += (size_t)rc;
                if (s->sent == request_len)
                    s->phase = READING;
                continue;
            }
            err = SSL_get_error(s->ssl, rc);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                wait_for(s, err);
                return;
            }
            finish(s, false);
            return;
        case READING: {
            char buf[16384];
            rc = SSL_read(s->ssl, buf, sizeof(buf));
            if (rc > 0) {
                size_t take = (size_t)rc < sizeof(s->head) - s->head_len
                                  ? (size_t)rc : sizeof(s->head) - s->head_len;
                memcpy(s->head + s->head_len, buf, take);
                s->head_len += take;
                continue;
            }
            err = SSL_get_error(s->ssl, rc);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                wait_for(s, err);
                return;
            }
            /* the server closed after its response */
            finish(s, s->head_len > 0);
            return;
        }
        }
    }
}

static void generate(struct generator *g)
{
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < g->nslots; i++) {
        g->slots[i].gen = g;
        start(&g->slots[i]);
    }
    double end = now_s() + seconds;
    struct epoll_event evs[256];
    while (now_s() < end) {
        int k = epoll_wait(g->epfd, evs, 256, 100);
        for (int i = 0; i < k; i++)
            step(evs[i].data.ptr);
    }
}

int main(int argc, char **argv)
{
    int procs = 1;
    if (argc > 2 && strcmp(argv[1], "-p") == 0) {
        procs = atoi(argv[2]);
        argc -= 2;
        argv += 2;
    }
    if (argc < 5 || procs < 1) {
        fprintf(stderr, "usage: tls_load [-p PROCESSES] HOST:PORT SECONDS CONNECTIONS "
                        "full|resume [HEADER...]\n");
        return 2;
    }
    char host[64];
    snprintf(host, sizeof(host), "%s", argv[1]);
    char *colon = strrchr(host, ':');
    if (!colon)
        return 2;
    *colon = '\0';
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
        return 2;
    seconds = atof(argv[2]);
    int conns = atoi(argv[3]);
    if (conns < procs) {
        fprintf(stderr, "tls_load: fewer connections (%d) than processes (%d)\n", conns, procs);
        return 2;
    }
    resume = strcmp(argv[4], "resume") == 0;
    int n = snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nHost: bench.test\r\n");
    for (int i = 5; i < argc; i++)
        n += snprintf(request + n, sizeof(request) - (size_t)n, "%s\r\n", argv[i]);
    n += snprintf(request + n, sizeof(request) - (size_t)n, "Connection: close\r\n\r\n");
    request_len = (size_t)n;

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9);

    /* each process reports its counters through the pipe when its time is up */
    int report[2];
    if (pipe(report) < 0) {
        perror("pipe");
        return 1;
    }
    double t0 = now_s();
    for (int p = 0; p < procs; p++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            struct generator g = {.nslots = conns / procs + (p < conns % procs)};
            g.slots = calloc((size_t)g.nslots, sizeof(*g.slots));
            generate(&g);
            unsigned long long counts[4] = {g.done, g.resumed, g.non200, g.errors};
            _exit(write(report[1], counts, sizeof(counts)) == sizeof(counts) ? 0 : 1);
        }
    }
    close(report[1]);
    unsigned long long done = 0, resumed = 0, non200 = 0, errors = 0, counts[4];
    while (read(report[0], counts, sizeof(counts)) == sizeof(counts)) {
        done += counts[0];
        resumed += counts[1];
        non200 += counts[2];
        errors += counts[3];
    }
    while (wait(NULL) > 0)
        ;
    double elapsed = now_s() - t0;
    printf("connections=%llu seconds=%.3f rate=%.1f resumed=%llu non200=%llu errors=%llu\n",
           done, elapsed, (double)done / elapsed, resumed, non200, errors);
    return 0;
}
