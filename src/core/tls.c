/*
 * tls — the TLS half of the transport, server and client contexts' run-time
 * callbacks, handshake counters and session-ticket keys (see tls.h and
 * transport.h).
 */
#include "core/tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/loop.h"
#include "core/stats.h"

static const char *const FAILURE_NAMES[TLS_FAIL_COUNT] = {
    [TLS_FAIL_VERSION] = "protocol_version",
    [TLS_FAIL_PLAIN_HTTP] = "plain_http",
    [TLS_FAIL_NO_SHARED] = "no_shared_cipher",
    [TLS_FAIL_PEER_ALERT] = "client_alert",
    [TLS_FAIL_CLOSED] = "closed",
    [TLS_FAIL_INCOMPLETE] = "incomplete",
    [TLS_FAIL_INVALID] = "invalid",
};

const char *tls_failure_name(enum tls_failure f)
{
    return f < TLS_FAIL_COUNT ? FAILURE_NAMES[f] : "invalid";
}

const char *tls_version_name(unsigned v)
{
    return v == TLS_V13 ? "TLSv1.3" : "TLSv1.2";
}

/* ---- handshake outcomes (server connections) ---- */

static struct tls_counters *counters_of(const struct transport *t)
{
    return SSL_get_app_data(t->ssl);
}

static void note_established(struct transport *t)
{
    t->flags |= TP_ESTABLISHED;
    struct tls_counters *c = counters_of(t);
    if (!c)
        return;
    STAT_ADD(c->handshakes, 1);
    if (SSL_session_reused(t->ssl))
        STAT_ADD(c->resumed, 1);
    STAT_ADD(c->versions[SSL_version(t->ssl) == TLS1_3_VERSION ? TLS_V13 : TLS_V12], 1);
}

static void note_failure(struct transport *t, enum tls_failure why)
{
    if (t->flags & (TP_ESTABLISHED | TP_FAIL_COUNTED))
        return;
    t->flags |= TP_FAIL_COUNTED;
    struct tls_counters *c = counters_of(t);
    if (c)
        STAT_ADD(c->failures[why], 1);
}

/* Why a handshake step failed, from the error queue. */
static enum tls_failure classify(int ssl_error)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN
                   ? TLS_FAIL_CLOSED : TLS_FAIL_INVALID;
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return TLS_FAIL_INVALID;
    int r = ERR_GET_REASON(e);
    switch (r) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_UNKNOWN_PROTOCOL:
        return TLS_FAIL_VERSION;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return TLS_FAIL_PLAIN_HTTP;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
        return TLS_FAIL_NO_SHARED;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return TLS_FAIL_CLOSED;
    }
    return r >= SSL_AD_REASON_OFFSET ? TLS_FAIL_PEER_ALERT : TLS_FAIL_INVALID;
}

/* Plain HTTP sent to a TLS port: say so in plain HTTP, then the caller
 * closes. The request is read out first so the close is not a reset that
 * could destroy the answer. Best effort, never blocks. */
static void answer_plain_http(SSL *ssl)
{
    static const char body[] = "This port speaks HTTPS: use an https:// URL.\n";
    char msg[256];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof(body) - 1, body);
    int fd = SSL_get_fd(ssl);
    if (fd < 0 || n <= 0)
        return;
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
        shutdown(fd, SHUT_WR);
}

static void handshake_failed(struct transport *t, int ssl_error)
{
    enum tls_failure why = classify(ssl_error);
    if (why == TLS_FAIL_PLAIN_HTTP && !SSL_is_server(t->ssl))
        why = TLS_FAIL_INVALID;
    else if (why == TLS_FAIL_PLAIN_HTTP)
        answer_plain_http(t->ssl);
    note_failure(t, why);
}

/* ---- the socket BIO ----
 *
 * OpenSSL reads a connection's socket through this BIO: recv() and send()
 * on the transport's descriptor, with read-ahead on (the contexts set it),
 * so one recv() brings what the socket holds, up to a record buffer. It
 * remembers whether the last recv() returned less than it asked: the socket
 * was empty then, and once OpenSSL holds nothing more either, a read has
 * drained the connection without a last recv() ending in EAGAIN — the same
 * rule as the plain path's short reads (edge-triggered readiness). */

static BIO_METHOD *socket_method;
static pthread_once_t socket_method_once = PTHREAD_ONCE_INIT;

static int sock_read(BIO *b, char *buf, int len)
{
    struct transport *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    ssize_t n = recv(t->fd, buf, (size_t)len, 0);
    if (n > 0) {
        if (n < len)
            t->flags |= TP_SOCKET_EMPTY;
        else
            t->flags &= (uint16_t)~TP_SOCKET_EMPTY;
        return (int)n;
    }
    if (n == 0) {
        BIO_set_flags(b, BIO_FLAGS_IN_EOF);
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        t->flags |= TP_SOCKET_EMPTY;
        BIO_set_retry_read(b);
    }
    return -1;
}

static int sock_write(BIO *b, const char *buf, int len)
{
    struct transport *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(t->fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_puts(BIO *b, const char *s)
{
    return sock_write(b, s, (int)strlen(s));
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    struct transport *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = t ? t->fd : -1;
        return t ? t->fd : -1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static int sock_create(BIO *b)
{
    BIO_set_data(b, NULL);
    BIO_set_init(b, 1);
    return 1;
}

static void make_socket_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
                                 BIO_TYPE_DESCRIPTOR, "limpet socket");
    if (m && BIO_meth_set_read(m, sock_read) == 1 && BIO_meth_set_write(m, sock_write) == 1 &&
        BIO_meth_set_puts(m, sock_puts) == 1 && BIO_meth_set_ctrl(m, sock_ctrl) == 1 &&
        BIO_meth_set_create(m, sock_create) == 1) {
        socket_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* Puts ssl on socket fd through the socket BIO (t must not move while ssl lives). */
static int attach_socket(struct transport *t, SSL *ssl, int fd)
{
    pthread_once(&socket_method_once, make_socket_method);
    BIO *b = socket_method ? BIO_new(socket_method) : NULL;
    if (!b)
        return -1;
    t->fd = fd;
    BIO_set_data(b, t);
    SSL_set_bio(ssl, b, b);   /* one reference, for both directions */
    return 0;
}

/* ---- the transport's TLS half ---- */

ssize_t tls_recv(struct transport *t, void *buf, size_t len)
{
    SSL *ssl = t->ssl;
    /* TP_SOCKET_EMPTY counts only when a recv() of this call found the socket
     * empty: bytes that arrived after it raise a new edge, while an older
     * recv's may have been consumed already */
    t->flags &= (uint16_t)~(TP_DRAINED | TP_READ_WANTS_WRITE | TP_SOCKET_EMPTY);
    if (t->flags & TP_EOF) {
        t->flags |= TP_DRAINED;
        return 0;
    }
    if (t->flags & TP_ERROR) {
        errno = EPROTO;
        return -1;
    }
    size_t got = 0;
    int saved_errno = 0;
    while (got < len) {
        size_t want = len - got > INT_MAX ? INT_MAX : len - got;
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(ssl, (char *)buf + got, (int)want);
        if (n > 0) {
            got += (size_t)n;
            if (got < len && (t->flags & TP_SOCKET_EMPTY) && !SSL_has_pending(ssl)) {
                t->flags |= TP_DRAINED; /* nothing in the socket nor in OpenSSL */
                break;
            }
            continue;
        }
        saved_errno = errno;
        int err = SSL_get_error(ssl, n);
        if (!(t->flags & TP_ESTABLISHED) && SSL_is_init_finished(ssl))
            note_established(t);
        if (err == SSL_ERROR_WANT_READ) {
            t->flags |= TP_DRAINED;
            break;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            t->flags |= TP_DRAINED | TP_READ_WANTS_WRITE;
            break;
        }
        if (!(t->flags & TP_ESTABLISHED))
            handshake_failed(t, err);
        if (err == SSL_ERROR_ZERO_RETURN ||
            (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && saved_errno == 0))
            t->flags |= TP_EOF;   /* close_notify, or the end of the stream */
        else
            t->flags |= TP_ERROR;
        break;
    }
    if (!(t->flags & TP_ESTABLISHED) && SSL_is_init_finished(ssl))
        note_established(t);
    if (got > 0)
        return (ssize_t)got;
    if (t->flags & TP_EOF) {
        t->flags |= TP_DRAINED;
        return 0;
    }
    if (t->flags & TP_ERROR) {
        errno = saved_errno && saved_errno != EAGAIN ? saved_errno : EPROTO;
        return -1;
    }
    errno = EAGAIN;
    return -1;
}

/* Small pieces are gathered here into one record; one per thread. */
static _Thread_local char scratch[TLS_RECORD_MAX];

ssize_t tls_writev(struct transport *t, const struct iovec *iov, int n)
{
    SSL *ssl = t->ssl;
    t->flags &= (uint16_t)~TP_WRITE_WANTS_READ;
    size_t total = 0;
    int i = 0;
    size_t off = 0;   /* into iov[i] */
    for (;;) {
        while (i < n && off >= iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i >= n)
            return (ssize_t)total;
        const char *p = (const char *)iov[i].iov_base + off;
        size_t len = iov[i].iov_len - off;
        if (len < TLS_RECORD_MAX && i + 1 < n) {
            /* gather up to a record's worth; the same bytes come back first
             * if this write has to be retried */
            memcpy(scratch, p, len);
            for (int k = i + 1; k < n && len < TLS_RECORD_MAX; k++) {
                size_t take = iov[k].iov_len;
                if (take > TLS_RECORD_MAX - len)
                    take = TLS_RECORD_MAX - len;
                memcpy(scratch + len, iov[k].iov_base, take);
                len += take;
            }
            p = scratch;
        } else if (len > INT_MAX) {
            len = INT_MAX;
        }
        ERR_clear_error();
        errno = 0;
        int w = SSL_write(ssl, p, (int)len);
        if (w > 0) {
            total += (size_t)w;
            size_t adv = (size_t)w;
            while (adv > 0 && i < n) {
                size_t left = iov[i].iov_len - off;
                if (adv < left) {
                    off += adv;
                    adv = 0;
                } else {
                    adv -= left;
                    i++;
                    off = 0;
                }
            }
            continue;
        }
        int saved_errno = errno;
        int err = SSL_get_error(ssl, w);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
            if (err == SSL_ERROR_WANT_READ)
                t->flags |= TP_WRITE_WANTS_READ;
            if (total > 0)
                return (ssize_t)total;
            errno = EAGAIN;
            return -1;
        }
        if (total > 0)
            return (ssize_t)total;   /* the error comes back on the next call */
        errno = saved_errno && saved_errno != EAGAIN ? saved_errno : EPIPE;
        return -1;
    }
}

void tls_shutdown(struct transport *t)
{
    if ((t->flags & (TP_SHUT | TP_ERROR)) || !(t->flags & TP_ESTABLISHED))
        return;
    t->flags |= TP_SHUT;
    ERR_clear_error();
    SSL_shutdown(t->ssl);   /* sends close_notify; a full socket just loses it */
    ERR_clear_error();
}

void tls_close(struct transport *t)
{
    if (!(t->flags & (TP_ESTABLISHED | TP_FAIL_COUNTED | TP_ERROR | TP_EOF)) &&
        SSL_is_server(t->ssl)) {
        /* Closed before its handshake ended (often because the client shut
         * its side): what it sent last (an alert, the end of the stream)
         * says why. One non-blocking read, only for unfinished handshakes. */
        char sink[256];
        tls_recv(t, sink, sizeof(sink));
    }
    if (!(t->flags & TP_ESTABLISHED)) {
        note_failure(t, TLS_FAIL_INCOMPLETE);
    } else if (!(t->flags & TP_ERROR)) {
        /* A connection that ends without an error is marked shut down, so
         * OpenSSL keeps its session resumable (it drops the session of a
         * connection freed otherwise). No close_notify here: an orderly end
         * sent one through tp_shutdown(), and a connection cut off (a
         * response aborted mid-body) must not look complete to the peer. */
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    SSL_free(t->ssl);
    t->ssl = NULL;
    t->flags = 0;
}

bool tls_has_pending(const struct transport *t)
{
    return SSL_has_pending(t->ssl) != 0;
}

bool tls_resumed(const struct transport *t)
{
    return t->ssl && (t->flags & TP_ESTABLISHED) && SSL_session_reused(t->ssl);
}

const char *tls_protocol(const struct transport *t)
{
    return t->ssl ? SSL_get_version(t->ssl) : "";
}

/* ---- session-ticket keys (the process's) ---- */

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    uint64_t made_s;
};

static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct ticket_key keys[TLS_TICKET_KEYS];
static unsigned num_keys;

/* The key new tickets are made with, rotated when it is old enough. */
static int current_key(struct ticket_key *out)
{
    uint64_t now = clock_ms() / 1000;
    pthread_rwlock_rdlock(&keys_lock);
    bool fresh = num_keys > 0 && now - keys[0].made_s < TLS_TICKET_ROTATE_S;
    if (fresh)
        *out = keys[0];
    pthread_rwlock_unlock(&keys_lock);
    if (fresh)
        return 0;
    int rc = 0;
    pthread_rwlock_wrlock(&keys_lock);
    if (num_keys == 0 || now - keys[0].made_s >= TLS_TICKET_ROTATE_S) {
        struct ticket_key k = {.made_s = now};
        if (RAND_bytes(k.name, sizeof(k.name)) == 1 && RAND_bytes(k.aes, sizeof(k.aes)) == 1 &&
            RAND_bytes(k.hmac, sizeof(k.hmac)) == 1) {
            memmove(&keys[1], &keys[0], (TLS_TICKET_KEYS - 1) * sizeof(keys[0]));
            keys[0] = k;
            if (num_keys < TLS_TICKET_KEYS)
                num_keys++;
        } else if (num_keys == 0) {
            rc = -1;
        }
        OPENSSL_cleanse(&k, sizeof(k));
    }
    if (rc == 0)
        *out = keys[0];
    pthread_rwlock_unlock(&keys_lock);
    return rc;
}

/* Index of the key named name (copied to out), or -1. */
static int find_key(const unsigned char name[16], struct ticket_key *out)
{
    int found = -1;
    pthread_rwlock_rdlock(&keys_lock);
    for (unsigned i = 0; i < num_keys; i++) {
        if (CRYPTO_memcmp(keys[i].name, name, 16) == 0) {
            *out = keys[i];
            found = (int)i;
            break;
        }
    }
    pthread_rwlock_unlock(&keys_lock);
    return found;
}

static int set_mac_key(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"sha256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key k;
    int rc;
    if (enc) {
        if (current_key(&k) < 0 || RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(key_name, k.name, 16);
        rc = EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
             set_mac_key(hctx, k.hmac) == 1 ? 1 : -1;
    } else {
        int idx = find_key(key_name, &k);
        if (idx < 0)
            return 0;   /* unknown or expired key: a full handshake */
        /* 2: valid, and issue a new ticket — under the current key when this
         * one is older, and always over TLS 1.3, whose clients use a ticket
         * once (OpenSSL's among them): without a new one their next
         * connection would be a full handshake. */
        bool renew = idx != 0 || SSL_version(ssl) == TLS1_3_VERSION;
        rc = set_mac_key(hctx, k.hmac) == 1 &&
             EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1
                 ? (renew ? 2 : 1)
                 : -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ---- server contexts ---- */

static const char TLS12_CIPHERS[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK;   /* no http/1.1 offered: go on without ALPN */
}

int tls_server_ctx_setup(SSL_CTX *ctx, const char *session_id_context)
{
    size_t sid_len = strlen(session_id_context);
    if (sid_len > SSL_MAX_SID_CTX_LENGTH)
        sid_len = SSL_MAX_SID_CTX_LENGTH;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 16384);
    SSL_CTX_set_timeout(ctx, TLS_SESSION_TIMEOUT_S);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)session_id_context,
                                       (unsigned)sid_len) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1)
        return -1;
    return 0;
}

static int server_index = -1;
static pthread_once_t server_index_once = PTHREAD_ONCE_INIT;

static void server_release(struct tls_server *srv, bool with_default)
{
    if (!srv)
        return;
    for (size_t i = 0; i < srv->num_certs; i++) {
        if (srv->ctx && (i > 0 || with_default))
            SSL_CTX_free(srv->ctx[i]);
        if (srv->info) {
            struct tls_cert_info *in = &srv->info[i];
            free(in->certificate);
            free(in->private_key);
            free(in->subject);
            free(in->names);
            free(in->key_type);
        }
    }
    free(srv->ctx);
    free(srv->info);
    free(srv);
}

/* The default context is being freed: its server object goes with it. */
static void server_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    server_release(ptr, false);
}

static void make_server_index(void)
{
    server_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, server_free_cb);
}

/* Picks the certificate for the name the client asked for (SNI); the first
 * one when none covers it or no name was sent. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct tls_server *srv = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || srv->num_certs < 2)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < srv->num_certs; i++) {
        X509 *x = SSL_CTX_get0_certificate(srv->ctx[i]);
        if (x && X509_check_host(x, name, 0, 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, srv->ctx[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

int tls_server_attach(struct tls_server *srv)
{
    pthread_once(&server_index_once, make_server_index);
    if (server_index < 0 || srv->num_certs == 0)
        return -1;
    if (SSL_CTX_set_ex_data(srv->ctx[0], server_index, srv) != 1)
        return -1;
    SSL_CTX_set_tlsext_servername_callback(srv->ctx[0], sni_cb);
    SSL_CTX_set_tlsext_servername_arg(srv->ctx[0], srv);
    return 0;
}

const struct tls_server *tls_server_of(const SSL_CTX *ctx)
{
    if (!ctx || server_index < 0)
        return NULL;
    return SSL_CTX_get_ex_data(ctx, server_index);
}

void tls_server_free(struct tls_server *srv)
{
    server_release(srv, true);
}

int tls_accept(struct transport *t, SSL_CTX *ctx, int fd, struct tls_counters *ctr)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return -1;
    if (attach_socket(t, ssl, fd) < 0) {
        SSL_free(ssl);
        return -1;
    }
    SSL_set_accept_state(ssl);
    SSL_set_app_data(ssl, ctr);
    t->ssl = ssl;
    t->flags = 0;
    return 0;
}

/* ---- client connections ---- */

int tls_connect(struct transport *t, const struct tls_client *tc, int fd,
                SSL_SESSION *session)
{
    SSL *ssl = SSL_new(tc->ctx);
    if (!ssl)
        return -1;
    bool ok = attach_socket(t, ssl, fd) == 0;
    SSL_set_connect_state(ssl);
    if (ok && tc->sni)
        ok = SSL_set_tlsext_host_name(ssl, tc->sni) == 1;
    if (ok && tc->verify && tc->sni)
        ok = SSL_set1_host(ssl, tc->sni) == 1;
    else if (ok && tc->verify && tc->verify_ip)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), tc->verify_ip) == 1;
    if (ok && session)
        SSL_set_session(ssl, session);   /* a stale session just means a full handshake */
    if (!ok) {
        SSL_free(ssl);
        return -1;
    }
    t->ssl = ssl;
    t->flags = 0;
    return 0;
}

int tls_handshake(struct transport *t, char *why, size_t why_size)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->flags = (uint16_t)((t->flags & ~(TP_WRITE_WANTS_READ | TP_READ_WANTS_WRITE)) |
                              TP_ESTABLISHED);
        return 1;
    }
    int saved_errno = errno;
    int err = SSL_get_error(t->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        t->flags |= TP_WRITE_WANTS_READ;
        return 0;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        t->flags &= (uint16_t)~TP_WRITE_WANTS_READ;
        return 0;
    }
    unsigned long e = ERR_peek_last_error();
    long verify = SSL_get_verify_result(t->ssl);
    if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
        snprintf(why, why_size, "certificate verify failed: %s",
                 X509_verify_cert_error_string(verify));
    } else if (e) {
        const char *reason = ERR_reason_error_string(e);
        snprintf(why, why_size, "TLS handshake failed: %s",
                 reason ? reason : "unknown error");
    } else if (saved_errno) {
        snprintf(why, why_size, "TLS handshake failed: %s", strerror(saved_errno));
    } else {
        snprintf(why, why_size, "connection closed during the TLS handshake");
    }
    t->flags |= TP_ERROR;
    ERR_clear_error();
    return -1;
}

SSL_SESSION *tls_session_get(const struct transport *t)
{
    if (!t->ssl || !(t->flags & TP_ESTABLISHED))
        return NULL;
    SSL_SESSION *s = SSL_get1_session(t->ssl);
    if (s && !SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        return NULL;
    }
    return s;
}

void tls_session_free(SSL_SESSION *s)
{
    SSL_SESSION_free(s);
}
