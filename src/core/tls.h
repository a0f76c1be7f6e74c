/*
 * tls — TLS for the transport (core/transport.h): server contexts used by the
 * workers' listeners, client contexts for origins, handshake counters and
 * the session-ticket keys.
 *
 * Contexts are built on the control side (control/tls_build.c) when a
 * snapshot base is built, and reach workers through the snapshot as opaque
 * pointers; workers only make connections from them. One server context per
 * listener is shared by every worker thread (OpenSSL locks what it shares:
 * the session cache). A listener's first certificate is its default; others
 * are chosen by SNI (tls_server_sni_cb): the one whose certificate covers the
 * requested name. Established connections keep the context they were made
 * with, so a reload swaps certificates for new handshakes only.
 *
 * Session resumption: TLS 1.2 sessions through each context's cache and
 * tickets; TLS 1.3 through tickets. Ticket keys are the process's, shared by
 * every listener and thread, made at random and rotated every
 * TLS_TICKET_ROTATE_S seconds (the previous TLS_TICKET_KEYS - 1 still
 * decrypt, and a ticket under an old key is renewed), so they survive
 * reloads but not restarts.
 *
 * Nothing here knows HTTP or the configuration.
 */
#ifndef LIMPET_CORE_TLS_H
#define LIMPET_CORE_TLS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/transport.h"

struct ssl_ctx_st;
struct ssl_session_st;
struct x509_st;

#define TLS_TICKET_KEYS 3
#define TLS_TICKET_ROTATE_S 3600
#define TLS_SESSION_TIMEOUT_S 7200
#define TLS_RECORD_MAX 16384

/* Why a client's handshake failed (metrics label names: tls_failure_name). */
enum tls_failure {
    TLS_FAIL_VERSION,          /* "protocol_version": TLS 1.1 or older, SSL */
    TLS_FAIL_PLAIN_HTTP,       /* "plain_http": an HTTP request to a TLS port */
    TLS_FAIL_NO_SHARED,        /* "no_shared_cipher": no cipher, group or signature in common */
    TLS_FAIL_PEER_ALERT,       /* "client_alert": the client refused (e.g. unknown CA) */
    TLS_FAIL_CLOSED,           /* "closed": the client went away during the handshake */
    TLS_FAIL_INCOMPLETE,       /* "incomplete": limpet closed it unfinished (timeout, stop) */
    TLS_FAIL_INVALID,          /* "invalid": anything else (garbage, bad messages) */
    TLS_FAIL_COUNT
};
const char *tls_failure_name(enum tls_failure f);

enum { TLS_V12, TLS_V13, TLS_VERSIONS };
const char *tls_version_name(unsigned v);   /* "TLSv1.2", "TLSv1.3" */

/* Handshake counters of one listener address on one worker (written by that
 * worker only, STAT_ADD; summed by the admin thread). */
struct tls_counters {
    atomic_ullong handshakes;              /* completed */
    atomic_ullong resumed;                 /* of which resumed a session */
    atomic_ullong versions[TLS_VERSIONS];  /* completed, by protocol version */
    atomic_ullong failures[TLS_FAIL_COUNT];
} __attribute__((aligned(64)));

/* ---- server contexts (a listener's) ---- */

/* What the admin shows of a certificate. */
struct tls_cert_info {
    char *certificate;             /* the file, as configured */
    char *private_key;
    char *subject;                 /* subject common name ("" when none) */
    char *names;                   /* DNS and IP names, comma-separated */
    char *key_type;                /* "RSA 2048", "EC P-256" … */
    int64_t not_after;             /* expiry, seconds since the epoch */
};

/* Everything a listener's handshakes use beside its default context. Owned
 * by the default context (freed with it, when the snapshot that built it and
 * every connection made from it are gone). */
struct tls_server {
    size_t num_certs;
    struct ssl_ctx_st **ctx;       /* [num_certs]: one per certificate; [0] the default */
    struct tls_cert_info *info;    /* [num_certs] */
};

/* Sets up an SSL_CTX made by the control side as a listener context: TLS 1.2
 * and 1.3 only, modern ciphers, no renegotiation, ALPN http/1.1, the session
 * cache, the process's ticket keys. Returns 0 or -1. */
int tls_server_ctx_setup(struct ssl_ctx_st *ctx, const char *session_id_context);
/* Attaches srv to its default context srv->ctx[0] (which then owns it) and
 * installs SNI selection. Returns 0 or -1 (srv is then still the caller's). */
int tls_server_attach(struct tls_server *srv);
/* The server object of a default context (NULL when none). */
const struct tls_server *tls_server_of(const struct ssl_ctx_st *ctx);
/* Frees a server object that was never attached. */
void tls_server_free(struct tls_server *srv);

/* A server connection on accepted socket fd; its handshake happens in its
 * first tls_recv calls. counters may be NULL. Returns 0 or -1 (no memory). */
int tls_accept(struct transport *t, struct ssl_ctx_st *ctx, int fd, struct tls_counters *ctr);

/* ---- client contexts (an origin's) ---- */

struct tls_client {
    uint64_t id;                   /* unique among those made: sessions resume on the same */
    struct ssl_ctx_st *ctx;        /* verify mode and trust store (one reference) */
    char *sni;                     /* server name sent and verified; NULL: none */
    char *verify_ip;               /* verify without sni: the IP the certificate must name */
    bool verify;
};

/* A client connection on connecting socket fd, resuming session when given
 * (a session made on the same tls_client). Returns 0 or -1 (no memory). */
int tls_connect(struct transport *t, const struct tls_client *tc, int fd,
                struct ssl_session_st *session);

/* Drives a client handshake: 1 done, 0 under way (the flags say which way it
 * waits: TP_WRITE_WANTS_READ for input, else for the socket to take bytes),
 * -1 failed with why set ("certificate verify failed: …"). */
int tls_handshake(struct transport *t, char *why, size_t why_size);

/* The connection's session for a later resumption (a new reference), or
 * NULL when it has none worth keeping. */
struct ssl_session_st *tls_session_get(const struct transport *t);
void tls_session_free(struct ssl_session_st *s);

/* ---- both ---- */

/* Whether the handshake completed and resumed a session. */
bool tls_resumed(const struct transport *t);
/* The negotiated protocol, e.g. "TLSv1.3" ("" for plain). */
const char *tls_protocol(const struct transport *t);

#endif
