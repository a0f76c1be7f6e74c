/*
 * probe — one health check of one origin, non-blocking, on a loop.
 *
 * probe_start() opens a socket and connects (the whole check must finish
 * within the monitor's timeout). A tcp monitor passes once connected. An
 * https monitor first completes a TLS handshake with the origin's own tls
 * settings (verify, ca_file, sni; a verification failure fails the check).
 * An http or https monitor then sends `METHOD PATH HTTP/1.1` with Host (the monitor's Host
 * header, else the origin address), the monitor's other headers and
 * `Connection: close`, reads the response head with h1_parse_response(),
 * matches the status against expected_codes and, with expected_body, looks
 * for it in the (de-chunked) body, read up to PROBE_BODY_MAX bytes. The probe
 * copies what it needs at start, so the config may change under it.
 *
 * The result reaches `done` exactly once, after the probe has released
 * everything (socket, timer, buffers), so `done` may start the probe again or
 * free its owner. probe_cancel() stops a running probe without calling done.
 */
#ifndef LIMPET_HEALTH_PROBE_H
#define LIMPET_HEALTH_PROBE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/loop.h"
#include "core/transport.h"
#include "http/h1.h"

struct addr;
struct cfg_monitor;
struct tls_client;

#define PROBE_HEAD_MAX 16384    /* response head bound */
#define PROBE_BODY_MAX 65536    /* body bytes searched for expected_body */
#define PROBE_REASON_MAX 200

struct probe {
    struct io_watch io;         /* the check's socket; fd -1 when idle */
    struct transport tp;        /* TLS for an https monitor */
    bool tls_done;              /* the TLS handshake completed */
    struct timer deadline;      /* the monitor's timeout */
    struct loop *loop;
    bool tcp_only;              /* type tcp: connecting is the check */
    bool connected;
    bool head_done;             /* response head parsed and accepted */
    double timeout_s;           /* for messages */
    char *req;                  /* request bytes to send */
    size_t req_len, req_sent;
    char *buf;                  /* response bytes: head, then decoded body */
    size_t len;                 /* bytes in buf */
    size_t head_len;            /* length of the head once parsed */
    size_t body_len;            /* body bytes (decoded) after the head */
    struct h1_semantics sem;    /* framing of the response */
    struct h1_chunked chunk;
    char *method;               /* for response framing (HEAD has no body) */
    char *expected_codes;
    char *expected_body;        /* NULL: not checked */
    void (*done)(struct probe *p, bool pass, const char *reason);
    char reason[PROBE_REASON_MAX];  /* why the last check failed */
};

/* Makes p idle; done receives every result. */
void probe_init(struct probe *p, struct loop *loop,
                void (*done)(struct probe *p, bool pass, const char *reason));

enum {
    PROBE_STARTED = 0,          /* done will be called */
    PROBE_FAILED = -1,          /* the origin failed at once (connect refused …) */
    PROBE_LOCAL_ERROR = -2,     /* limpet could not check (no descriptor, memory …) */
};

/*
 * Starts a check of addr with mon; host is the Host value when mon sets none;
 * tls is the origin's TLS client context (an https monitor; NULL otherwise).
 * Returns PROBE_STARTED, or one of the errors with p->reason saying why (done
 * is then not called). A local error says nothing about the origin.
 */
int probe_start(struct probe *p, const struct cfg_monitor *mon, const struct addr *addr,
                const char *host, const struct tls_client *tls);

/* Stops a running check (nothing happens when idle); done is not called. */
void probe_cancel(struct probe *p);

static inline bool probe_running(const struct probe *p) { return p->io.fd >= 0; }

#endif
