/*
 * Unit tests for core/tls (the TLS half of core/transport.h): a server
 * connection made with tls_accept on one end of a non-blocking socket pair,
 * a plain OpenSSL client on the other. The certificates are the fuzz
 * target's fixtures (fuzz/tls_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "core/tls.h"
#include "../../fuzz/tls_fixture.h"

static SSL_CTX *cert_ctx(const char *cert_pem, const char *key_pem)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(tls_server_ctx_setup(ctx, "limpet unit"), 0);
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    assert_true(x && k);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    return ctx;
}

/* A listener context with both fixture certificates (b chosen by SNI). */
static SSL_CTX *listener_ctx(void)
{
    struct tls_server *srv = calloc(1, sizeof(*srv));
    srv->num_certs = 2;
    srv->ctx = calloc(2, sizeof(*srv->ctx));
    srv->info = calloc(2, sizeof(*srv->info));
    srv->ctx[0] = cert_ctx(FIXTURE_A_CERT, FIXTURE_A_KEY);
    srv->ctx[1] = cert_ctx(FIXTURE_B_CERT, FIXTURE_B_KEY);
    assert_int_equal(tls_server_attach(srv), 0);
    assert_ptr_equal(tls_server_of(srv->ctx[0]), srv);
    return srv->ctx[0];
}

struct pair {
    int sfd, cfd;
    SSL_CTX *sctx, *cctx;
    struct transport st;           /* the server side, as a worker has it */
    SSL *c;                        /* the client */
    struct tls_counters ctr;
};

static void pair_open(struct pair *p, const char *sni, int sndbuf)
{
    memset(p, 0, sizeof(*p));
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    p->sfd = fds[0];
    p->cfd = fds[1];
    if (sndbuf) {
        setsockopt(p->sfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        setsockopt(p->cfd, SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
    }
    p->sctx = listener_ctx();
    assert_int_equal(tls_accept(&p->st, p->sctx, p->sfd, &p->ctr), 0);
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
    p->c = SSL_new(p->cctx);
    SSL_set_fd(p->c, p->cfd);
    SSL_set_connect_state(p->c);
    if (sni)
        SSL_set_tlsext_host_name(p->c, sni);
}

static void pair_close(struct pair *p)
{
    if (p->st.ssl)
        tls_close(&p->st);
    SSL_free(p->c);
    SSL_CTX_free(p->cctx);
    SSL_CTX_free(p->sctx);
    close(p->sfd);
    close(p->cfd);
    ERR_clear_error();
}

static void handshake(struct pair *p)
{
    char b[1];
    bool client_done = false;
    for (int i = 0; i < 1000 && !(client_done && (p->st.flags & TP_ESTABLISHED)); i++) {
        ssize_t n = tls_recv(&p->st, b, 1);
        assert_true(n < 0 && errno == EAGAIN);
        if (!client_done) {
            int r = SSL_do_handshake(p->c);
            client_done = r == 1;
            if (r != 1) {
                int e = SSL_get_error(p->c, r);
                assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
            }
        }
    }
    assert_true(client_done);
    assert_true(p->st.flags & TP_ESTABLISHED);
}

/* Reads what the client can read now into out (advancing *len). */
static void client_drain(struct pair *p, char *out, size_t cap, size_t *len)
{
    for (;;) {
        int n = SSL_read(p->c, out + *len, (int)(cap - *len));
        if (n <= 0) {
            int e = SSL_get_error(p->c, n);
            assert_int_equal(e, SSL_ERROR_WANT_READ);
            return;
        }
        *len += (size_t)n;
    }
}

static void client_write(struct pair *p, const char *data, size_t len)
{
    assert_int_equal(SSL_write(p->c, data, (int)len), (int)len);
}

static void test_handshake_counted_with_version(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, "a.fuzz.test", 0);
    handshake(&p);
    assert_int_equal(p.ctr.handshakes, 1);
    assert_int_equal(p.ctr.versions[TLS_V13], 1);
    assert_int_equal(p.ctr.resumed, 0);
    assert_string_equal(tls_protocol(&p.st), "TLSv1.3");
    assert_false(tls_resumed(&p.st));
    pair_close(&p);
    uint64_t failures = 0;
    for (unsigned i = 0; i < TLS_FAIL_COUNT; i++)
        failures += p.ctr.failures[i];
    assert_int_equal(failures, 0);
}

static void test_sni_picks_the_certificate(void **state)
{
    (void)state;
    const char *cases[][2] = {{"b.fuzz.test", "b.fuzz.test"}, {"a.fuzz.test", "a.fuzz.test"},
                              {NULL, "a.fuzz.test"}, {"other.test", "a.fuzz.test"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pair p;
        pair_open(&p, cases[i][0], 0);
        handshake(&p);
        X509 *peer = SSL_get1_peer_certificate(p.c);
        char cn[64] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
        assert_string_equal(cn, cases[i][1]);
        X509_free(peer);
        pair_close(&p);
    }
}

static void test_recv_says_when_drained(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, NULL, 0);
    handshake(&p);
    char buf[100];
    client_write(&p, "abc", 3);
    ssize_t n = tls_recv(&p.st, buf, sizeof(buf));
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "abc", 3);
    assert_true(tp_drained(&p.st, 3, sizeof(buf)));
    /* three records in the socket come back in one read */
    client_write(&p, "0123456789", 10);
    client_write(&p, "abcdefghij", 10);
    client_write(&p, "ABCDEFGHIJ", 10);
    n = tls_recv(&p.st, buf, sizeof(buf));
    assert_int_equal(n, 30);
    assert_memory_equal(buf, "0123456789abcdefghijABCDEFGHIJ", 30);
    assert_true(tp_drained(&p.st, 30, sizeof(buf)));
    /* a full buffer is not drained; the rest follows */
    client_write(&p, "0123456789", 10);
    n = tls_recv(&p.st, buf, 4);
    assert_int_equal(n, 4);
    assert_false(tp_drained(&p.st, 4, 4));
    n = tls_recv(&p.st, buf, sizeof(buf));
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "456789", 6);
    assert_true(tp_drained(&p.st, 6, sizeof(buf)));
    n = tls_recv(&p.st, buf, sizeof(buf));
    assert_true(n < 0 && errno == EAGAIN);
    pair_close(&p);
}

/* Bytes that arrive after a read stopped on a full buffer (with a record
 * left inside OpenSSL) are read by the next call: the "socket was empty"
 * of an earlier recv() must not end it early. */
static void test_recv_after_full_buffer_reads_new_bytes(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, NULL, 0);
    handshake(&p);
    char buf[100];
    client_write(&p, "first-record-20bytes", 20);
    client_write(&p, "secnd-record-20bytes", 20);
    ssize_t n = tls_recv(&p.st, buf, 20);
    assert_int_equal(n, 20);
    assert_true(tls_has_pending(&p.st));
    client_write(&p, "third-rec!", 10);   /* arrives now: its edge is "already seen" */
    n = tls_recv(&p.st, buf, sizeof(buf));
    assert_int_equal(n, 30);
    assert_memory_equal(buf, "secnd-record-20bytesthird-rec!", 30);
    pair_close(&p);
}

static void test_writev_under_back_pressure(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, NULL, 4096);
    handshake(&p);
    /* many small pieces, some medium, one large: gathered and in place */
    enum { PIECES = 300 };
    size_t total = 0;
    struct iovec iov[PIECES];
    char *data = malloc(2 << 20);
    for (int i = 0; i < PIECES; i++) {
        size_t len = i == 150 ? 400000 : (size_t)(i * 37 % 3000) + (i % 7 == 0 ? 0 : 1);
        iov[i].iov_base = data + total;
        iov[i].iov_len = len;
        for (size_t k = 0; k < len; k++)
            data[total + k] = (char)((total + k) * 2654435761u >> 13);
        total += len;
    }
    char *got = malloc(total + 1);
    size_t got_len = 0, sent = 0;
    unsigned blocked = 0;
    int first = 0;
    while (sent < total) {
        ssize_t n = tls_writev(&p.st, iov + first, PIECES - first);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            blocked++;
        } else {
            sent += (size_t)n;
            size_t adv = (size_t)n;   /* advance the iovecs as the proxy does */
            while (adv > 0) {
                if (adv >= iov[first].iov_len) {
                    adv -= iov[first].iov_len;
                    iov[first].iov_len = 0;
                    first++;
                } else {
                    iov[first].iov_base = (char *)iov[first].iov_base + adv;
                    iov[first].iov_len -= adv;
                    adv = 0;
                }
            }
            while (first < PIECES && iov[first].iov_len == 0)
                first++;
            if (sent < total)
                blocked += 1;   /* a short count: the socket was full */
        }
        client_drain(&p, got, total + 1, &got_len);
    }
    client_drain(&p, got, total + 1, &got_len);
    assert_true(blocked > 10);   /* the socket did fill up, many times */
    assert_int_equal(got_len, total);
    assert_memory_equal(got, data, total);
    free(got);
    free(data);
    pair_close(&p);
}

static void test_end_of_stream(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, NULL, 0);
    handshake(&p);
    client_write(&p, "xyz", 3);
    SSL_shutdown(p.c);                 /* close_notify after the bytes */
    char buf[100];
    ssize_t n = tls_recv(&p.st, buf, sizeof(buf));
    assert_int_equal(n, 3);
    assert_false(tp_drained(&p.st, 3, sizeof(buf)));   /* the end is still to be read */
    assert_int_equal(tls_recv(&p.st, buf, sizeof(buf)), 0);
    assert_int_equal(tls_recv(&p.st, buf, sizeof(buf)), 0);
    pair_close(&p);
}

static void test_plain_http_answered_400_and_counted(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, NULL, 0);
    const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(p.cfd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    char buf[256];
    ssize_t n = tls_recv(&p.st, buf, sizeof(buf));
    assert_true(n < 0 && errno != EAGAIN);
    assert_int_equal(p.ctr.failures[TLS_FAIL_PLAIN_HTTP], 1);
    n = read(p.cfd, buf, sizeof(buf) - 1);
    assert_true(n > 12);
    buf[n] = '\0';
    assert_true(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    pair_close(&p);
    assert_int_equal(p.ctr.failures[TLS_FAIL_INCOMPLETE], 0);   /* counted once */
}

static void test_unfinished_handshakes_counted_once(void **state)
{
    (void)state;
    /* the client goes away before saying anything: "closed" */
    struct pair p;
    pair_open(&p, NULL, 0);
    shutdown(p.cfd, SHUT_WR);
    pair_close(&p);
    assert_int_equal(p.ctr.failures[TLS_FAIL_CLOSED], 1);
    assert_int_equal(p.ctr.failures[TLS_FAIL_INCOMPLETE], 0);
    /* limpet closes it while the client waits (a timeout): "incomplete" */
    pair_open(&p, NULL, 0);
    assert_int_equal(SSL_do_handshake(p.c), -1);   /* its ClientHello is sent */
    char b[1];
    assert_true(tls_recv(&p.st, b, 1) < 0 && errno == EAGAIN);
    pair_close(&p);
    assert_int_equal(p.ctr.failures[TLS_FAIL_INCOMPLETE], 1);
    assert_int_equal(p.ctr.handshakes, 0);
    /* garbage: "invalid" */
    pair_open(&p, NULL, 0);
    assert_int_equal(write(p.cfd, "\x16\x03\x01\x00\x05garbage", 12), 12);
    assert_true(tls_recv(&p.st, b, 1) < 0 && errno != EAGAIN);
    pair_close(&p);
    assert_int_equal(p.ctr.failures[TLS_FAIL_INVALID], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_counted_with_version),
        cmocka_unit_test(test_sni_picks_the_certificate),
        cmocka_unit_test(test_recv_says_when_drained),
        cmocka_unit_test(test_recv_after_full_buffer_reads_new_bytes),
        cmocka_unit_test(test_writev_under_back_pressure),
        cmocka_unit_test(test_end_of_stream),
        cmocka_unit_test(test_plain_http_answered_400_and_counted),
        cmocka_unit_test(test_unfinished_handshakes_counted_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
