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
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/loop.h"
#include "affinity/affinity.h"
#include "balance/route.h"
#include "core/addr.h"
#include "core/stats.h"
#include "core/transport.h"
#include "http/h1.h"
#include "proxy/body.h"

struct worker;
struct listener;
struct buf;
struct origin_rt;
struct proxy_thread;
struct snap_use;
struct snapshot;
struct origin_shared;
struct pool_shared;
struct client;

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
    struct transport tp;            /* plain or TLS (origin tls) */
    struct proxy_thread *pt;        /* the thread that owns it */
    enum oc_state state;
    uint32_t origin_id;             /* origin_shared.id: its slot in worker->origins */
    uint32_t generation;            /* origin_shared.generation when opened */
    struct addr addr;               /* where it is connected */
    struct client *client;          /* owner while active */
    struct origin_conn *next;       /* idle-list or free-list link */
    struct buf *in;                 /* response bytes from the origin */
    struct timer idle_timer;        /* closes it after keepalive seconds idle */
    bool readable, writable;        /* edge-triggered readiness */
    bool peer_closed;               /* the origin shut its side (EPOLLRDHUP) */
    bool reused;                    /* came from the idle list */
    bool tcp_up;                    /* connected; a TLS handshake may still be under way */
    uint64_t tls_id;                /* the tls_client it was made with (0: plain) */
    const struct origin_shared *os; /* while connecting: the origin, for the log */
};

/* Where the request stands on the origin side. */
enum req_state {
    REQ_HEAD,           /* the head (and any body bytes with it) is being sent */
    REQ_BODY,           /* the head is out; body bytes follow as they come */
    REQ_DONE,           /* all of it was sent */
};

/* Where the response stands. */
enum resp_state {
    RESP_WAIT_HEAD,     /* waiting for (the rest of) a head from the origin */
    RESP_HEAD,          /* a head is being sent to the client (head_status) */
    RESP_BODY,          /* the final head is out; body bytes follow */
    RESP_DONE,          /* all of it was sent */
};

/* What went wrong on the origin side, for exchange_failure_decide(). */
enum origin_failure {
    FAIL_CONNECT,       /* refused, unreachable or timed out: nothing was sent */
    FAIL_SHORTAGE,      /* limpet itself lacks descriptors or memory */
    FAIL_BROKEN,        /* reset or closed before the response was complete */
};

/* What to do about it. */
enum failure_action {
    ACT_RETRY_FRESH,    /* the same origin on a new connection (a kept-alive one was stale) */
    ACT_RETRY_ELSEWHERE,/* another origin, as zero_downtime_failover allows */
    ACT_ANSWER_502,     /* an origin failed after the request reached it */
    ACT_ANSWER_503,     /* nothing could serve it */
    ACT_ABORT,          /* the response had begun: cut the client off */
};

/* One request/response exchange on a client connection. Taken from the
 * thread's slab when a request head is complete, given back when the
 * response is done, so an idle connection holds none. */
struct exchange {
    /* the request, in client->in */
    enum req_state req_state;
    uint32_t req_start;             /* offset of the head (valid while replayable) */
    uint32_t head_len;
    bool replayable;                /* head and body still whole in the buffer */
    struct body_cursor req_body;    /* the request body in client->in */
    bool is_head;                   /* HEAD request: response has no body */
    bool client_keep_alive;
    int minor_version;
    bool upgrade;                   /* the request asks for a protocol upgrade (not h2c) */
    bool expect_continue;           /* the client waits for 100 Continue before its body */
    bool continue_sent;             /* a 100 Continue went to the client (origin's or limpet's) */
    bool body_started;              /* request body bytes have been sent */
    bool tls;                       /* the request came over TLS */
    const char *hsts;               /* Strict-Transport-Security field to add, or NULL */
    uint64_t head_sent_ms;          /* when the request head was all sent */
    uint64_t req_sent_on_conn;      /* request bytes written on this origin connection */

    /* routing */
    struct snap_use *use;           /* the snapshot this exchange runs on, to its end */
    long lb;                        /* load balancer index in use->snap */
    unsigned attempts;              /* origin connections tried for this request */
    bool connect_failed_any;        /* some origin refused or timed out */
    bool reached_origin;            /* some origin took a connection and then failed:
                                     * 502, not 503, when nothing is left to try */
    unsigned passive_epoch;         /* the origin's passive epoch when the request was
                                     * first written to it (route_origin_answered) */
    bool fresh_conn_only;           /* a reused connection failed: use a new one */
    struct origin_conn *oc;
    uint64_t connect_start_ms;
    uint64_t origin_io_ms;          /* last progress on the origin side */
    struct affinity_decision aff;   /* chosen origin (aff.pool/origin, -1 before routing),
                                     * reason, origins tried, and the session's edits */

    /* the response, in oc->in */
    enum resp_state resp_state;
    int head_status;                /* RESP_HEAD: status of the head being sent */
    int status;                     /* the final status, for the log */
    struct body_cursor resp_body;   /* the response body in oc->in */
    bool resp_keep_alive;           /* origin connection reusable afterwards */
    bool close_client;              /* close the client after this response */
    bool resp_any_byte;             /* something came back from the origin */
    bool tunnel_client_eof, tunnel_origin_eof;  /* after a 101: each side finished sending */
    uint64_t bytes_out;             /* bytes sent to the client */
    bool aborted;                   /* cut off unfinished (end of grace): logged as such */

    /* the client address, when a trusted proxy gave it in X-Forwarded-For */
    bool forwarded_client;          /* fwd_* below hold it (else the connection's) */
    uint8_t fwd_family;             /* 4 or 6 */
    uint8_t fwd_addr[16];
    uint8_t client_ip_len;          /* client_ip holds the text (0: not made yet) */

    /* origin limits: max_connections and the pool's queue */
    struct origin_shared *slot;     /* holds one of this origin's max_connections slots */
    struct pool_shared *queued_in;  /* waiting in this pool's queue (counted there) */
    struct exchange *wait_prev, *wait_next;  /* the thread's list of waiting exchanges */
    struct client *waiter;          /* the connection of a waiting exchange */
    uint64_t queued_ms;             /* when it began waiting */
    bool admitted;                  /* left the queue with a slot: go on without rerouting */
    bool pin_set_here;              /* this request's decision pinned the connection */

    uint64_t start_us, start_ms;
    uint8_t method_len;
    uint16_t path_len;
    unsigned req_iov_n, req_iov_i;
    unsigned resp_iov_n, resp_iov_i;

    /* Arrays: not cleared between exchanges (everything above is). */
    struct iovec req_iov[HEAD_IOV_MAX];
    char req_extra[EXTRA_HEAD_BYTES];  /* inserted request fields; error responses */
    struct iovec resp_iov[HEAD_IOV_MAX];
    char resp_extra[TOKEN_TEXT_MAX + 512];  /* Set-Cookie limpet adds */
    char method[16];
    char path[LOG_PATH_MAX];
    char client_ip[INET6_ADDRSTRLEN];  /* the request's client address as text */
};

enum client_state {
    CS_READ_HEAD,       /* waiting for (the rest of) a request head */
    CS_EXCHANGE,        /* forwarding a request and its response */
    CS_SEND_ERROR,      /* sending a response limpet made, then closing */
    CS_LINGER,          /* write side shut: draining input briefly before close */
    CS_TUNNEL,          /* upgraded: bytes relayed both ways (tunnel.c) */
    CS_PROXY_HEADER,    /* waiting for the PROXY protocol header (listener proxy_protocol) */
};

/* A client connection. Small on purpose: an idle keep-alive connection
 * holds only this record (no buffer, no exchange). */
struct client {
    struct io_watch io;
    struct transport tp;            /* plain or TLS (a listener with tls) */
    struct proxy_thread *pt;        /* the thread that owns it */
    struct listener *listener;
    struct client *prev, *next;     /* the thread's list of clients */
    struct client *idle_prev, *idle_next;  /* the thread's idle keep-alive list, oldest first */
    struct exchange *ex;            /* the request in progress; NULL between requests */
    struct buf *in;                 /* request bytes; NULL while none are pending */
    struct timer timer;
    const char *err_data;           /* CS_SEND_ERROR: bytes left to send (in ex) */
    uint64_t last_io_ms;            /* last byte read from or written to the client */
    uint64_t head_start_ms;         /* when the current head began */
    uint64_t close_deadline_ms;     /* CS_SEND_ERROR, CS_LINGER: close by then */
    enum client_state state;
    uint32_t head_scan;             /* bytes of a partial head already scanned for its end */
    unsigned requests;              /* requests completed on this connection */
    uint32_t err_left;
    struct affinity_pin pin;        /* origin of the connection's first request */
    bool readable, writable;
    bool peer_closed : 1;
    bool idle_listed : 1;           /* in the idle list */
    uint8_t peer_family;            /* 4 or 6 */
    uint8_t peer_addr[16];          /* client address bytes (text: client_ip_of) */
};

/* Takes over an accepted, non-blocking socket. Closes it on failure. */
void client_accept(struct proxy_thread *pt, struct listener *l, int fd,
                   const struct sockaddr *peer);
/* Graceful stop: closes connections between requests; the rest close after
 * their current response. */
void client_stop_idle(struct proxy_thread *pt);
/* At the connection limit: closes the connection idle between requests for
 * the longest time. Returns false when there is none. */
bool client_reclaim_idle(struct proxy_thread *pt);
/* End of the worker (grace over): closes every connection; a request cut off
 * unfinished is logged as aborted. Returns how many were. */
unsigned client_close_all(struct proxy_thread *pt);
/* Closes a client connection at once (end of grace period, shutdown). */
void client_close(struct client *c);
/* The origin connection of c's exchange became readable or writable. */
void client_origin_event(struct client *c);

/* Relays tunnel bytes both ways; returns false when the tunnel is over. */
bool tunnel_step(struct client *c);

/* ---- between client.c (the connection) and exchange.c (its requests) ---- */

/* What a step of a connection's state machine achieved. */
enum step {
    STEP_BLOCKED,       /* nothing more until an event */
    STEP_PROGRESS,      /* something moved (or the state changed): step again */
    STEP_CLOSED,        /* the connection is closed and freed */
};

/* The configuration the connection currently works with. */
const struct config *client_cfg(const struct client *c);
/* Gives the connection an exchange record; false when out of memory. */
bool client_open_exchange(struct client *c);
/* Ends the exchange's hold on its origin connection and snapshot (the record
 * stays for an error response), or ends the exchange altogether. */
void client_release_exchange(struct client *c, bool origin_reusable);
void client_end_exchange(struct client *c, bool origin_reusable);
/* Answers with a response of limpet's own, then closes (state CS_SEND_ERROR). */
void client_send_error(struct client *c, int status);
/* Answers with a redirect (status 301/302/307/308) to the request's URL over
 * https — host (the Host field, its port replaced by port: ":8443" or ""),
 * target — then closes. Without a host: 400. */
void client_send_redirect(struct client *c, int status, const char *host, size_t host_len,
                          const char *port, const char *target, size_t target_len);
/* Counts the exchange and writes its access-log line. */
void client_log_exchange(struct client *c, int status);
/* Shuts the write side and drains input briefly before closing. */
void client_linger(struct client *c);
/* Reads what the client sent into c->in (which has room). Returns the bytes
 * read; 0 when there is nothing more for now (c->readable is then false);
 * -1 when the client closed or failed. raw: the bytes under TLS (the PROXY
 * header comes before the handshake). */
ssize_t client_read(struct client *c, bool raw);

/* Lets go of the exchange's origin connection (to the idle list when reusable). */
void exchange_detach_origin(struct client *c, bool reusable);
/* A complete head was parsed into the thread's scratch: starts its exchange. */
enum step exchange_start(struct client *c, size_t head_len);
/* Makes all the progress it can on the exchange (CS_EXCHANGE). */
enum step exchange_step(struct client *c);
/* When the exchange's current wait times out. */
uint64_t exchange_deadline(const struct client *c);
/* Takes waiting exchanges out of the queue as slots free up (timer). */
void exchange_run_queue(struct proxy_thread *pt);
/* Leaves the pool's queue (the exchange ends, or its wait is over). */
void exchange_dequeue(struct client *c);
/* The deadline passed: acts on it. Returns STEP_CLOSED when c was closed. */
enum step exchange_timeout(struct client *c);

/* The client address of c's current request as text: the forwarded one
 * (exchange.forwarded_client) or the connection's, made on first use. */
const char *client_ip_of(struct client *c, size_t *len);

/* ---- origin connections (origin_conn.c) ---- */

/* An idle connection to origin (pool, origin) of snapshot s, or a new one
 * being connected. Returns NULL with *err set (-errno) when the connection
 * could not even be started; -ECONNREFUSED and friends mean the origin is not
 * reachable. */
struct origin_conn *origin_conn_acquire(struct proxy_thread *pt, const struct snapshot *s,
                                        size_t pool, size_t origin, bool fresh_only, int *err);
/* Returns a connection whose exchange ended cleanly to the idle list, or closes it. */
void origin_conn_release(struct origin_conn *oc, bool reusable);
/* Checks a completed non-blocking connect. Returns 0 or -errno. */
int origin_conn_connect_result(struct origin_conn *oc);
/* Closes the idle connections kept in one origin slot. */
void origin_conn_close_idle(struct proxy_thread *pt, struct origin_rt *rt);

/* ---- head rewriting (forward.c) ---- */

/* The client address a trusted proxy reports: the right-most entry of the
 * request's X-Forwarded-For fields not in `trusted` (the left-most when all
 * are; the last trusted one read when an entry is not an IP address).
 * Entries may be "IP", "IPv4:port", "[IPv6]" or "[IPv6]:port". Returns false
 * when no entry gives an address (family 4 or 6 and its bytes otherwise). */
bool forward_client_from_xff(const struct h1_request *req, const struct h1_semantics *sem,
                             const struct cfg_cidr *trusted, size_t num_trusted,
                             uint8_t *family, uint8_t addr[16]);

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
