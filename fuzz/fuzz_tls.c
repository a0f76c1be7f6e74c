/*
 * fuzz_tls — libFuzzer target: the TLS front of a listener (src/core/tls.c).
 *
 * The input is what a client sends. It goes, in pieces whose sizes the first
 * byte picks, through an in-memory BIO pair into a server connection made
 * exactly as a worker makes one (tls_accept on a listener context set up by
 * tls_server_ctx_setup: TLS 1.2/1.3 only, ALPN http/1.1, ticket keys, two
 * certificates chosen by SNI through tls_server_attach), and is read with
 * tls_recv as the worker reads; the connection then ends with tls_close
 * (after an end of stream when the second byte says so). The certificates
 * are test fixtures (tls_fixture.h).
 *
 * Besides "no crash, no leak, no undefined behaviour", it checks what the
 * proxy relies on:
 *  - a read returns at most what was asked, and application bytes only once
 *    the handshake is complete;
 *  - a read that failed (not "would block") fails again: a broken connection
 *    never yields bytes afterwards;
 *  - every connection is counted exactly once: one completed handshake or
 *    one failure (by reason) when it is closed.
 */
#include <stdbool.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "core/tls.h"
#include "fuzz_common.h"
#include "tls_fixture.h"

static SSL_CTX *listener_ctx;

static SSL_CTX *cert_ctx(const char *cert_pem, const char *key_pem)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    FUZZ_CHECK(ctx && tls_server_ctx_setup(ctx, "limpet fuzz") == 0);
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    FUZZ_CHECK(x && k && SSL_CTX_use_certificate(ctx, x) == 1 &&
               SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1);
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    return ctx;
}

static void setup(void)
{
    struct tls_server *srv = calloc(1, sizeof(*srv));
    FUZZ_CHECK(srv != NULL);
    srv->num_certs = 2;
    srv->ctx = calloc(2, sizeof(*srv->ctx));
    srv->info = calloc(2, sizeof(*srv->info));
    FUZZ_CHECK(srv->ctx && srv->info);
    srv->ctx[0] = cert_ctx(FIXTURE_A_CERT, FIXTURE_A_KEY);
    srv->ctx[1] = cert_ctx(FIXTURE_B_CERT, FIXTURE_B_KEY);
    FUZZ_CHECK(tls_server_attach(srv) == 0);
    listener_ctx = srv->ctx[0];   /* owns srv; kept for the life of the process */
}

static uint64_t counted(const struct tls_counters *c)
{
    uint64_t n = c->handshakes;
    for (unsigned i = 0; i < TLS_FAIL_COUNT; i++)
        n += c->failures[i];
    return n;
}

/* Reads all that can be read now; returns false once the connection failed
 * or ended. */
static bool read_all(struct transport *t, bool *failed)
{
    static char buf[20000];
    for (int round = 0; round < 64; round++) {
        size_t want = round % 2 ? 7 : sizeof(buf);   /* small and large reads */
        ssize_t n = tls_recv(t, buf, want);
        if (n > 0) {
            FUZZ_CHECK((size_t)n <= want);
            FUZZ_CHECK(t->flags & TP_ESTABLISHED);
            FUZZ_CHECK(!*failed);
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            return true;
        *failed = true;
        /* and it stays so */
        FUZZ_CHECK(tls_recv(t, buf, sizeof(buf)) <= 0);
        return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!listener_ctx)
        setup();
    if (size < 2)
        return 0;
    size_t piece = (size_t)data[0] * 8 + 1;   /* 1 .. 2041 bytes at a time */
    bool eof_at_end = data[1] & 1;
    data += 2;
    size -= 2;

    struct tls_counters counters;
    memset(&counters, 0, sizeof(counters));
    struct transport t = {0};
    FUZZ_CHECK(tls_accept(&t, listener_ctx, -1, &counters) == 0);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    FUZZ_CHECK(in && out);
    BIO_set_mem_eof_return(in, -1);    /* empty: "would block", like a socket */
    SSL_set_bio(t.ssl, in, out);       /* the connection owns both */

    bool failed = false, open = true;
    for (size_t off = 0; off < size && open; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        FUZZ_CHECK(BIO_write(in, data + off, (int)n) == (int)n);
        open = read_all(&t, &failed);
        (void)BIO_reset(out);          /* what the server answered: dropped */
    }
    if (open && eof_at_end) {
        BIO_set_mem_eof_return(in, 0);  /* the client closes */
        read_all(&t, &failed);
    }
    tls_close(&t);
    FUZZ_CHECK(t.ssl == NULL);
    FUZZ_CHECK(counted(&counters) == 1);
    ERR_clear_error();
    return 0;
}
