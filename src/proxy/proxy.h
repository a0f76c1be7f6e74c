/*
 * proxy — client connections, request/response exchanges, origin connections.
 *
 * Data flows one way: a client connection reads a request head into its
 * input buffer, the router picks an origin, the outgoing head is sent as an
 * iovec of spans of that buffer plus the few strings limpet inserts, the body
 * follows straight from the buffer, and the response comes back through the
 * origin connection's buffer the same way. Every socket is registered once,
 * edge-triggered, for input and output; readiness is remembered in flags and
 * client_drive() makes all the progress it can, so back-pressure is simply
 * "do not read when there is nowhere to put the bytes".
 *
 * All of it is owned by one worker thread; nothing here is shared.
 */
#ifndef LIMPET_PROXY_PROXY_H
#define LIMPET_PROXY_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/loop.h"
#include "affinity/affinity.h"
#include "core/addr.h"
#include "core/stats.h"
#include "http/h1.h"

struct worker;
struct listener;
struct buf;
struct origin_rt;
struct snap_use;
struct snapshot;

#define HEAD_IOV_MAX (H1_MAX_HEADERS + 12)
#define EXTRA_HEAD_BYTES 512
#define LOG_PATH_MAX 1024

enum oc_state {
    OC_CONNECTING,      /* connect() in progress */
    OC_ACTIVE,          /* serving an exchange */
    OC_IDLE,            /* in the origin's idle list */
};

/* A connection to an origin. */
struct origin_conn {
    struct io_watch io;
    struct worker *worker;
    enum oc_state state;
    uint32_t origin_id;             /* origin_shared.id: its slot in worker->origins */
    uint32_t generation;            /* origin_shared.generation when opened */
    struct addr addr;               /* where it is connected */
    struct client *client;          /* owner while active */
    struct origin_conn *next;       /* idle-list or free-list link */
    struct buf *in;                 /* response bytes from the origin */
    struct timer idle_timer;        /* closes it after keepalive seconds idle */
    bool readable, writable;        /* edge-triggered readiness */
    bool reused;                    /* came from the idle list */
};

/* One request/response exchange on a client connection. */
struct exchange {
    /* the request, in client->in */
    uint32_t req_start;             /* offset of the head (valid while replayable) */
    uint32_t head_len;
    bool replayable;                /* head and body still whole in the buffer */
    enum h1_body req_body;
    uint64_t req_left;              /* Content-Length bytes not yet sent */
    struct h1_chunked req_chunk;
    uint32_t req_scan;              /* chunked: end of the scanned part */
    bool req_chunk_done;
    bool req_head_sent, req_done;
    bool is_head;                   /* HEAD request: response has no body */
    bool client_keep_alive;
    int minor_version;

    /* routing */
    struct snap_use *use;           /* the snapshot this exchange runs on, retries included */
    long lb;                        /* load balancer index in use->snap */
    bool connect_failed_any;        /* some origin refused or timed out */
    bool fresh_conn_only;           /* a reused connection failed: use a new one */
    struct origin_conn *oc;
    uint64_t connect_start_ms;
    uint64_t origin_io_ms;          /* last progress on the origin side */

    /* the response, in oc->in */
    bool resp_head_parsed;
    bool resp_head_sent;
    bool resp_done;
    bool resp_keep_alive;           /* origin connection reusable afterwards */
    bool close_client;              /* close the client after this response */
    int status;
    enum h1_body resp_body;
    uint64_t resp_left;
    struct h1_chunked resp_chunk;
    uint32_t resp_scan;
    bool resp_chunk_done;
    bool resp_any_byte;             /* something came back from the origin */
    uint64_t bytes_out;             /* bytes sent to the client */

    uint64_t start_us, start_ms;
    uint64_t content_length;        /* request Content-Length, for a replay */
    uint64_t req_sent_on_conn;      /* request bytes written on this origin connection */
    uint8_t method_len;
    uint16_t path_len;
    unsigned req_iov_n, req_iov_i;
    unsigned resp_iov_n, resp_iov_i;
    bool interim;                   /* the response head being sent is a 1xx */
    bool origin_eof;                /* the origin closed (until-close body ends) */
    unsigned attempts;              /* origin connections tried for this request */
    bool upgrade;                   /* the request asks for a protocol upgrade (not h2c) */
    bool expect_continue;           /* the client waits for 100 Continue before its body */
    bool continue_sent;             /* a 100 Continue went to the client (origin's or limpet's) */
    bool body_started;              /* request body bytes have been sent */
    uint64_t head_sent_ms;          /* when the request head was all sent */
    bool tunnel;                    /* the origin accepted it: 101, then a tunnel */
    bool tunnel_client_eof, tunnel_origin_eof;  /* each side finished sending */
    struct affinity_decision aff;   /* chosen origin (aff.pool/origin, -1 before routing),
                                     * reason, origins tried, and the session's edits */
    bool dechunk;                   /* chunked response decoded for an HTTP/1.0 client */

    /* Arrays: not cleared between exchanges (everything above is). */
    struct iovec req_iov[HEAD_IOV_MAX];
    char req_extra[EXTRA_HEAD_BYTES];  /* inserted request fields; error responses */
    struct iovec resp_iov[HEAD_IOV_MAX];
    char resp_extra[TOKEN_TEXT_MAX + 512];  /* Set-Cookie limpet adds */
    char method[16];
    char path[LOG_PATH_MAX];
};

enum client_state {
    CS_READ_HEAD,       /* waiting for (the rest of) a request head */
    CS_EXCHANGE,        /* forwarding a request and its response */
    CS_SEND_ERROR,      /* sending a response limpet made, then closing */
    CS_LINGER,          /* write side shut: draining input briefly before close */
    CS_TUNNEL,          /* upgraded: bytes relayed both ways (tunnel.c) */
};

struct client {
    struct io_watch io;
    struct worker *worker;
    struct listener *listener;
    struct client *prev, *next;     /* worker's list of clients / free list */
    enum client_state state;
    struct buf *in;                 /* request bytes; NULL while idle */
    struct timer timer;
    bool readable, writable, peer_closed;
    uint64_t last_io_ms;            /* last byte read from or written to the client */
    uint64_t head_start_ms;         /* when the current head began */
    unsigned requests;              /* requests completed on this connection */
    char ip[48];                    /* client address as text */
    uint8_t ip_len;
    uint8_t peer_family;            /* 4 or 6 */
    uint8_t peer_addr[16];          /* client address bytes (for consistent hashing) */
    struct affinity_pin pin;        /* origin of the connection's first request */
    const char *err_data;           /* CS_SEND_ERROR: bytes left to send */
    size_t err_left;
    uint64_t close_deadline_ms;     /* CS_SEND_ERROR, CS_LINGER: close by then */
    struct exchange ex;
};

/* Takes over an accepted, non-blocking socket. Closes it on failure. */
void client_accept(struct listener *l, int fd, const struct sockaddr *peer);
/* Graceful stop: closes connections between requests; the rest close after
 * their current response. */
void client_stop_idle(struct worker *w);
/* Closes a client connection at once (end of grace period, shutdown). */
void client_close(struct client *c);
/* The origin connection of c's exchange became readable or writable. */
void client_origin_event(struct client *c);

/* Relays tunnel bytes both ways; returns false when the tunnel is over. */
bool tunnel_step(struct client *c);

/* ---- origin connections (origin_conn.c) ---- */

/* An idle connection to origin (pool, origin) of snapshot s, or a new one
 * being connected. Returns NULL with *err set (-errno) when the connection
 * could not even be started; -ECONNREFUSED and friends mean the origin is not
 * reachable. */
struct origin_conn *origin_conn_acquire(struct worker *w, const struct snapshot *s,
                                        size_t pool, size_t origin, bool fresh_only, int *err);
/* Returns a connection whose exchange ended cleanly to the idle list, or closes it. */
void origin_conn_release(struct origin_conn *oc, bool reusable);
/* Checks a completed non-blocking connect. Returns 0 or -errno. */
int origin_conn_connect_result(struct origin_conn *oc);
/* Closes the idle connections kept in one origin slot. */
void origin_conn_close_idle(struct worker *w, struct origin_rt *rt);

/* ---- head rewriting (forward.c) ---- */

/* Fills ex->req_iov for a parsed request: request line, kept fields, then
 * X-Forwarded-For/-Proto/-Host. Returns false when the head needs more
 * pieces than an iovec array holds (the request is then refused with 431). */
bool forward_request_head(struct exchange *ex, const char *head, size_t head_len,
                          const struct h1_request *req, const struct h1_semantics *sem,
                          const char *client_ip, size_t client_ip_len,
                          const char *affinity, size_t affinity_len);
/* Fills ex->resp_iov for a parsed response: status line, kept fields (the
 * application cookie's Set-Cookie prefixed with app_prefix when given), the
 * set_cookie line (or NULL) and a Connection field saying whether the client
 * connection stays open. Returns false when it needs too many pieces (502). */
bool forward_response_head(struct exchange *ex, const char *head, size_t head_len,
                           const struct h1_response *resp, const struct h1_semantics *sem,
                           const char *set_cookie, size_t set_cookie_len,
                           const char *app_prefix);

/* Advances an iovec array past `n` written bytes; returns true when all written. */
bool iov_advance(struct iovec *iov, unsigned n_iov, unsigned *index, size_t n);

#endif
