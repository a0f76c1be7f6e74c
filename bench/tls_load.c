/*
 * tls_load — the bench's TLS connection generator: new TLS connections per
 * second, with full or resumed handshakes (wrk has no resumption).
 *
 *   tls_load HOST:PORT SECONDS CONNECTIONS full|resume [HEADER...]
 *
 * CONNECTIONS slots run at once on one thread (non-blocking sockets, one
 * epoll). Each slot loops: connect, TLS handshake (resume: offering the last
 * session any slot received), one `GET / HTTP/1.1` with `Connection: close`
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
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum phase { CONNECTING, HANDSHAKE, SENDING, READING };

struct slot {
    int fd;
    SSL *ssl;
    enum phase phase;
    size_t sent;
    char head[16];      /* the first bytes of the response */
    size_t head_len;
};

static struct sockaddr_in target;
static SSL_CTX *ctx;
static SSL_SESSION *session;     /* the last one received (resume mode) */
static bool resume;
static char request[2048];
static size_t request_len;
static int epfd;
static unsigned long long done, resumed, non200, errors;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void watch(struct slot *s, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(epfd, op, s->fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(1);
    }
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
    if (resume && session)
        SSL_set_session(s->ssl, session);
    s->sent = s->head_len = 0;
    int rc = connect(s->fd, (struct sockaddr *)&target, sizeof(target));
    s->phase = rc == 0 ? HANDSHAKE : CONNECTING;
    if (rc < 0 && errno != EINPROGRESS) {
        perror("connect");
        exit(1);
    }
    watch(s, EPOLLOUT | EPOLLIN, EPOLL_CTL_ADD);
}

static void finish(struct slot *s, bool ok)
{
    if (ok) {
        done++;
        if (s->head_len < 12 || memcmp(s->head + 9, "200", 3) != 0)
            non200++;
    } else {
        errors++;
    }
    if (ok && resume) {
        SSL_SESSION *got = SSL_get1_session(s->ssl);
        if (got && SSL_SESSION_is_resumable(got)) {
            SSL_SESSION_free(session);
            session = got;
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
                    resumed++;
                s->phase = SENDING;
                continue;
            }
            err = SSL_get_error(s->ssl, rc);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
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
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
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
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
            /* the server closed after its response */
            finish(s, s->head_len > 0);
            return;
        }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tls_load HOST:PORT SECONDS CONNECTIONS full|resume [HEADER...]\n");
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
    double seconds = atof(argv[2]);
    int conns = atoi(argv[3]);
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
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct slot *slots = calloc((size_t)conns, sizeof(*slots));
    for (int i = 0; i < conns; i++)
        start(&slots[i]);
    double t0 = now_s(), end = t0 + seconds;
    struct epoll_event evs[256];
    while (now_s() < end) {
        int k = epoll_wait(epfd, evs, 256, 100);
        for (int i = 0; i < k; i++)
            step(evs[i].data.ptr);
    }
    double elapsed = now_s() - t0;
    printf("connections=%llu seconds=%.3f rate=%.1f resumed=%llu non200=%llu errors=%llu\n",
           done, elapsed, (double)done / elapsed, resumed, non200, errors);
    return 0;
}
