/*
 * demo_origin — the demo / benchmark origin server (see demo_origin.h).
 *
 * How it works. One `struct demo_origin` owns one event loop (core/loop.h), a
 * non-blocking listening socket, its connections and a fixed session table;
 * all of it is touched only by the thread running that loop (its own thread
 * after demo_origin_start(), the caller's in demo_origin_run()). Another
 * thread talks to it only through loop_wake(), which demo_origin_stop() uses
 * to make the loop return before joining the thread and freeing everything.
 *
 * A connection is one allocation (taken from a small free list when one is
 * there) holding a fixed input buffer and a fixed output buffer; nothing is
 * allocated per request. Requests are parsed in place with h1_parse_request()
 * and h1_request_semantics() (http/h1.h); a request body (Content-Length or
 * chunked, walked with h1_chunked_scan()) is read and thrown away; the answer
 * is written into the output buffer once the whole request has arrived, so
 * pipelined requests are answered in order. Before a head is handled the
 * output buffer must have room for the largest answer (o->resp_max); when it
 * does not, the connection stops reading (back-pressure) and waits for
 * EPOLLOUT. Writes may be partial: what is left stays in the buffer.
 *
 * The connection state machine: HEAD (waiting for a request head) → BODY_*
 * (discarding a body) → answer → HEAD again, or CLOSING when the answer ends
 * the connection (no keep-alive, or an error: 400/414/431/501/505). Once a
 * CLOSING connection's output is flushed it is closed, or, when unread input
 * may still be coming (errors, pipelined leftovers), half-closed and drained
 * for a moment (LINGER) so the kernel does not reset it and eat the answer.
 * One timer per connection closes it after DEMO_IDLE_MS without traffic; it
 * is not re-armed per request: it fires, looks at last_active_ms, re-arms.
 *
 * Sessions. The page counts visits per `demo_session` cookie (a random
 * 128-bit id in hex, set when the request has none this origin knows) in a
 * set-associative table of DEMO_SESSION_SETS × DEMO_SESSION_WAYS entries; a
 * full set evicts its least recently used entry. The table belongs to this
 * origin alone, so a session that moves to another origin starts at 1 there:
 * that is what makes affinity visible in the demo.
 */
#include "demo/demo_origin.h"

#include "core/addr.h"
#include "core/loop.h"
#include "http/cookie.h"
#include "http/h1.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEMO_IN_SIZE 16384          /* input buffer; a longer head gets 431 */
#define DEMO_OUT_SIZE 16384         /* output buffer */
#ifndef DEMO_IDLE_MS                /* (overridable for manual tests) */
#define DEMO_IDLE_MS 60000          /* idle connections are closed after this */
#endif
#define DEMO_LINGER_MS 2000         /* how long a closing connection is drained */
#define DEMO_ACCEPT_PAUSE_MS 100    /* accept pause when out of descriptors */
#define DEMO_NAME_MAX 64            /* longest origin name */
#define DEMO_FREE_CONNS 64          /* connection objects kept for reuse */
#define DEMO_SESSION_SETS 1024      /* session table sets (power of two) */
#define DEMO_SESSION_WAYS 4         /* entries per set */
#define DEMO_SESSION_HEX 32         /* hex digits of a session id */
#define DEMO_SESSION_SHOWN 8        /* hex digits of it shown on the page */
#define DEMO_HEAD_MAX 512           /* bound on any response head we write */
#define DEMO_PAGE_PARTS 16          /* literal and variable parts of the page */

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static const char status_body[] = "{\"state\":\"RUNNING\"}";
static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

struct session {
    uint64_t hi, lo;                /* the id (visits == 0: free slot) */
    uint32_t visits;                /* visits of this session to this origin */
    uint32_t used;                  /* origin's tick at last use, for LRU */
};

enum route {
    ROUTE_PAGE,                     /* the HTML page (counts a visit) */
    ROUTE_STATUS,                   /* /status: {"state":"RUNNING"} */
    ROUTE_NOT_FOUND,                /* /favicon.ico: 404 */
    ROUTE_NOT_ALLOWED,              /* CONNECT: 405, then close */
};

/* The answer owed for the request whose body is being read. */
struct pending {
    uint8_t route;                  /* enum route */
    bool head_only;                 /* HEAD: headers only */
    bool keep_alive;                /* connection stays open after it */
    bool http10;                    /* HTTP/1.0 client: say keep-alive explicitly */
    bool new_session;               /* send Set-Cookie */
    uint32_t visits;                /* for the page */
    uint64_t sid_hi, sid_lo;        /* session id, for the page and cookie */
};

enum conn_state {
    CONN_HEAD,                      /* waiting for (more of) a request head */
    CONN_BODY_LENGTH,               /* discarding body_left more bytes */
    CONN_BODY_CHUNKED,              /* discarding a chunked body */
    CONN_CLOSING,                   /* last answer queued: flush, then close */
    CONN_LINGER,                    /* half-closed, draining input until EOF */
};

struct conn {
    struct io_watch watch;          /* on fd */
    struct timer timer;             /* idle check, or end of lingering */
    struct demo_origin *origin;     /* owner */
    struct conn *prev, *next;       /* origin->conns list; next: free list */
    int fd;                         /* the client socket */
    enum conn_state state;
    bool peer_closed;               /* read returned 0 */
    bool blocked;                   /* stopped parsing: output buffer too full */
    bool linger;                    /* drain input before closing */
    uint64_t last_active_ms;        /* loop time of the last I/O event */
    uint64_t body_left;             /* CONN_BODY_LENGTH: bytes to discard */
    struct h1_chunked chunked;      /* CONN_BODY_CHUNKED: scanner state */
    struct pending pending;         /* answer for the request being read */
    size_t in_pos, in_len;          /* unparsed input is in[in_pos..in_len) */
    size_t out_pos, out_len;        /* unsent output is out[out_pos..out_len) */
    char in[DEMO_IN_SIZE];
    char out[DEMO_OUT_SIZE];
};

enum page_part_kind { PART_TEXT, PART_VISITS, PART_SESSION };

struct page_part {
    enum page_part_kind kind;
    size_t off, len;                /* PART_TEXT: page_text[off..off+len) */
};

struct demo_origin {
    struct loop loop;               /* owned by the origin's thread */
    struct io_watch listen_watch;   /* on listen_fd */
    struct timer accept_timer;      /* resumes accepting after EMFILE */
    int listen_fd;
    int port;                       /* bound port (host order) */
    pthread_t thread;
    bool thread_started;
    int signal_fd;                  /* demo_origin_run() only, else -1 */
    struct io_watch signal_watch;
    struct conn *conns;             /* open connections */
    struct conn *free_conns;        /* closed ones kept for reuse */
    size_t free_count;
    char name[DEMO_NAME_MAX + 1];   /* NUL-terminated, printable ASCII */
    size_t name_len;
    char address[128];              /* as given, for messages */
    char *page_text;                /* the page with the name filled in */
    struct page_part page[DEMO_PAGE_PARTS];
    size_t page_parts;
    size_t page_fixed_len;          /* page length without visits and session */
    size_t resp_max;                /* room needed in out[] before a request */
    uint64_t rng[4];                /* xoshiro256** state for session ids */
    uint32_t tick;                  /* session use counter, for LRU */
    struct session sessions[DEMO_SESSION_SETS * DEMO_SESSION_WAYS];
};

/* ------------------------------------------------------------------ */
/* The page                                                           */
/* ------------------------------------------------------------------ */

/* @@NAME@@ and @@HUE@@ are filled in once; @@VISITS@@ and @@SESSION@@ per request. */
static const char page_template[] =
    "<!doctype html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
    "<title>@@NAME@@ &middot; limpet demo origin</title>\n"
    "<link rel=\"icon\" href=\"data:,\">\n"
    "<style>\n"
    ":root{--accent:hsl(@@HUE@@,80%,62%);--glow:hsla(@@HUE@@,80%,62%,.28)}\n"
    "*{box-sizing:border-box}\n"
    "html,body{height:100%}\n"
    "body{margin:0;display:flex;align-items:center;justify-content:center;"
    "font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif;"
    "color:#e2e8f0;background:radial-gradient(ellipse at 25% 15%,#1e293b 0%,#0b1120 65%)}\n"
    "main{width:min(92vw,36rem);padding:2.75rem 2.25rem 2.25rem;text-align:center;"
    "border-radius:1.5rem;background:rgba(15,23,42,.82);"
    "border:1px solid rgba(148,163,184,.16);"
    "box-shadow:0 0 0 1px rgba(0,0,0,.2),0 30px 80px -20px var(--glow)}\n"
    ".kicker{margin:0;font-size:.75rem;letter-spacing:.22em;text-transform:uppercase;"
    "color:#94a3b8}\n"
    "h1{margin:.5rem 0 1.25rem;font-size:clamp(3.5rem,16vw,7rem);line-height:1;"
    "font-weight:800;letter-spacing:-.03em;color:var(--accent);overflow-wrap:anywhere;"
    "text-shadow:0 0 40px var(--glow)}\n"
    ".visit{display:inline-block;margin:0 0 1.5rem;padding:.55rem 1.1rem;"
    "border-radius:999px;font-size:1.15rem;font-weight:600;color:#f8fafc;"
    "background:var(--glow);border:1px solid var(--accent)}\n"
    ".hint{margin:0 auto;max-width:28rem;font-size:.95rem;line-height:1.55;color:#cbd5e1}\n"
    ".meta{margin:1.75rem 0 0;font:.75rem ui-monospace,SFMono-Regular,Menlo,Consolas,"
    "monospace;color:#64748b}\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<main>\n"
    "<p class=\"kicker\">served by origin</p>\n"
    "<h1>@@NAME@@</h1>\n"
    "<p class=\"visit\">visit @@VISITS@@ of this session on @@NAME@@</p>\n"
    "<p class=\"hint\">Refresh: with cookie affinity you stay on this origin and the "
    "count goes up. If a request lands on another origin, the count there starts "
    "again at 1.</p>\n"
    "<p class=\"meta\">session @@SESSION@@ &middot; limpet demo origin</p>\n"
    "</main>\n"
    "</body>\n"
    "</html>\n";

/* A hue per origin: names ending in a number (s1, s2, ...) get well-spread
 * hues (golden angle), others a hash of the name. */
static unsigned name_hue(const char *name, size_t len)
{
    size_t i = len;
    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9')
        i--;
    if (i < len && len - i <= 6) {
        unsigned n = (unsigned)strtoul(name + i, NULL, 10);
        return (200u + n * 137u) % 360u;
    }
    uint32_t h = 2166136261u;
    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    return h % 360u;
}

/* Appends to a growing text; returns false on allocation failure. */
static bool text_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        while (*len + n + 1 > ncap)
            ncap *= 2;
        char *nbuf = realloc(*buf, ncap);
        if (!nbuf)
            return false;
        *buf = nbuf;
        *cap = ncap;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

static bool html_escaped_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        }
        if (!(rep ? text_add(buf, len, cap, rep, strlen(rep))
                  : text_add(buf, len, cap, s + i, 1)))
            return false;
    }
    return true;
}

/* Fills in the fixed parts of the page and records where the variables go.
 * Returns 0 or -ENOMEM. */
static int page_build(struct demo_origin *o)
{
    char *buf = NULL;
    size_t len = 0, cap = 0, text_start = 0;
    const char *p = page_template;
    char hue[16];
    snprintf(hue, sizeof(hue), "%u", name_hue(o->name, o->name_len));

    o->page_parts = 0;
    for (;;) {
        const char *mark = strstr(p, "@@");
        const char *lit_end = mark ? mark : p + strlen(p);
        if (!text_add(&buf, &len, &cap, p, (size_t)(lit_end - p)))
            goto nomem;
        if (!mark)
            break;
        const char *var = mark + 2;
        const char *var_end = strstr(var, "@@");
        size_t var_len = (size_t)(var_end - var);
        p = var_end + 2;
        if (var_len == 4 && memcmp(var, "NAME", 4) == 0) {
            if (!html_escaped_add(&buf, &len, &cap, o->name, o->name_len))
                goto nomem;
        } else if (var_len == 3 && memcmp(var, "HUE", 3) == 0) {
            if (!text_add(&buf, &len, &cap, hue, strlen(hue)))
                goto nomem;
        } else {
            /* A variable: close the text part before it, then record it. */
            if (o->page_parts + 2 >= DEMO_PAGE_PARTS)
                goto nomem; /* cannot happen with the template above */
            o->page[o->page_parts++] =
                (struct page_part){PART_TEXT, text_start, len - text_start};
            o->page[o->page_parts++] = (struct page_part){
                var_len == 6 && memcmp(var, "VISITS", 6) == 0 ? PART_VISITS : PART_SESSION,
                0, 0};
            text_start = len;
        }
    }
    o->page[o->page_parts++] = (struct page_part){PART_TEXT, text_start, len - text_start};
    o->page_text = buf;
    o->page_fixed_len = 0;
    for (size_t i = 0; i < o->page_parts; i++)
        o->page_fixed_len += o->page[i].len;
    return 0;
nomem:
    free(buf);
    return -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                           */
/* ------------------------------------------------------------------ */

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static uint64_t rng_next(uint64_t s[4])
{
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

static void rng_seed(uint64_t s[4])
{
    if (getrandom(s, 4 * sizeof(uint64_t), 0) != (ssize_t)(4 * sizeof(uint64_t))) {
        /* No getrandom: mix the clock and addresses (ids only need to differ). */
        uint64_t x = clock_wall_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s;
        for (int i = 0; i < 4; i++) {
            x += 0x9e3779b97f4a7c15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            s[i] = z ^ (z >> 31);
        }
    }
    if (!(s[0] | s[1] | s[2] | s[3]))
        s[0] = 1;
}

static struct session *session_set(struct demo_origin *o, uint64_t lo)
{
    return &o->sessions[(lo & (DEMO_SESSION_SETS - 1)) * DEMO_SESSION_WAYS];
}

static struct session *session_find(struct demo_origin *o, uint64_t hi, uint64_t lo)
{
    struct session *set = session_set(o, lo);
    for (int i = 0; i < DEMO_SESSION_WAYS; i++)
        if (set[i].visits && set[i].hi == hi && set[i].lo == lo)
            return &set[i];
    return NULL;
}

/* A new session with a fresh id and no visits yet, evicting the least
 * recently used entry of its set when the set is full. */
static struct session *session_new(struct demo_origin *o)
{
    uint64_t hi = rng_next(o->rng), lo = rng_next(o->rng);
    struct session *set = session_set(o, lo), *victim = &set[0];
    for (int i = 0; i < DEMO_SESSION_WAYS; i++) {
        if (!set[i].visits) {
            victim = &set[i];
            break;
        }
        if ((uint32_t)(o->tick - set[i].used) > (uint32_t)(o->tick - victim->used))
            victim = &set[i];
    }
    victim->hi = hi;
    victim->lo = lo;
    victim->visits = 0;
    return victim;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Parses a session id (exactly DEMO_SESSION_HEX hex digits). */
static bool session_id_parse(const char *s, size_t len, uint64_t *hi, uint64_t *lo)
{
    if (len != DEMO_SESSION_HEX)
        return false;
    uint64_t v[2] = {0, 0};
    for (size_t i = 0; i < len; i++) {
        int d = hex_value(s[i]);
        if (d < 0)
            return false;
        v[i / 16] = (v[i / 16] << 4) | (uint64_t)d;
    }
    *hi = v[0];
    *lo = v[1];
    return true;
}

/*
 * Looks through every Cookie field ("a=b; demo_session=...; c=d") for
 * demo_session cookies and returns the session of the first one this origin
 * knows, or NULL. Cookie names are case-sensitive; values may be quoted.
 */
static struct session *session_from_cookies(struct demo_origin *o, const struct h1_request *req)
{
    static const char cookie_name[] = "demo_session";
    for (size_t h = 0; h < req->num_headers; h++) {
        const struct h1_header *hd = &req->headers[h];
        if (!h1_token_eq(hd->name, hd->name_len, "Cookie"))
            continue;
        struct cookie_iter it;
        struct cookie_pair pair;
        cookie_iter_init(&it, hd->value, hd->value_len);
        while (cookie_iter_next(&it, &pair)) {
            const char *val = pair.val;
            size_t len = pair.val_len;
            if (len >= 2 && val[0] == '"' && val[len - 1] == '"') {
                val++;
                len -= 2;
            }
            uint64_t hi, lo;
            if (pair.name_len == sizeof(cookie_name) - 1 &&
                memcmp(pair.name, cookie_name, sizeof(cookie_name) - 1) == 0 &&
                session_id_parse(val, len, &hi, &lo)) {
                struct session *s = session_find(o, hi, lo);
                if (s)
                    return s;
            }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Writing answers                                                    */
/* ------------------------------------------------------------------ */

static inline void out_mem(struct conn *c, const void *p, size_t n)
{
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

#define OUT_LIT(c, s) out_mem((c), (s), sizeof(s) - 1)

static size_t u64_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static void out_u64(struct conn *c, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_mem(c, tmp + i, sizeof(tmp) - i);
}

/* The first `digits` hex digits of the 128-bit id hi:lo. */
static void out_hex_id(struct conn *c, uint64_t hi, uint64_t lo, size_t digits)
{
    static const char hex[] = "0123456789abcdef";
    char *p = c->out + c->out_len;
    for (size_t i = 0; i < digits; i++) {
        uint64_t w = i < 16 ? hi : lo;
        p[i] = hex[(w >> (60 - 4 * (i % 16))) & 0xf];
    }
    c->out_len += digits;
}

static const char *status_line(int status)
{
    switch (status) {
    case 200: return "HTTP/1.1 200 OK\r\n";
    case 400: return "HTTP/1.1 400 Bad Request\r\n";
    case 404: return "HTTP/1.1 404 Not Found\r\n";
    case 405: return "HTTP/1.1 405 Method Not Allowed\r\n";
    case 414: return "HTTP/1.1 414 URI Too Long\r\n";
    case 431: return "HTTP/1.1 431 Request Header Fields Too Large\r\n";
    case 501: return "HTTP/1.1 501 Not Implemented\r\n";
    case 505: return "HTTP/1.1 505 HTTP Version Not Supported\r\n";
    default: return "HTTP/1.1 400 Bad Request\r\n";
    }
}

/* Writes a response head. p (may be NULL) supplies the Set-Cookie. */
static void put_head(struct conn *c, const char *status, const char *ctype, size_t body_len,
                     const struct pending *p, bool close)
{
    const struct demo_origin *o = c->origin;
    out_mem(c, status, strlen(status));
    OUT_LIT(c, "Content-Type: ");
    out_mem(c, ctype, strlen(ctype));
    OUT_LIT(c, "\r\nContent-Length: ");
    out_u64(c, body_len);
    OUT_LIT(c, "\r\nX-Served-By: ");
    out_mem(c, o->name, o->name_len);
    OUT_LIT(c, "\r\nCache-Control: no-store\r\n");
    if (p && p->new_session) {
        OUT_LIT(c, "Set-Cookie: demo_session=");
        out_hex_id(c, p->sid_hi, p->sid_lo, DEMO_SESSION_HEX);
        OUT_LIT(c, "; Path=/; HttpOnly; SameSite=Lax\r\n");
    }
    if (close)
        OUT_LIT(c, "Connection: close\r\n");
    else if (p && p->http10)
        OUT_LIT(c, "Connection: keep-alive\r\n");
    OUT_LIT(c, "\r\n");
}

/* An error answer; the connection closes after it (and lingers). */
static void put_error(struct conn *c, int status, const char *reason)
{
    const char *line = status_line(status);
    /* Body: "400 Bad Request: reason\n" (the status line without "HTTP/1.1 " and CRLF). */
    const char *text = line + 9;
    size_t text_len = strlen(text) - 2;
    size_t reason_len = reason ? strnlen(reason, 160) : 0;
    size_t body_len = text_len + (reason_len ? 2 + reason_len : 0) + 1;

    put_head(c, line, "text/plain; charset=utf-8", body_len, NULL, true);
    out_mem(c, text, text_len);
    if (reason_len) {
        OUT_LIT(c, ": ");
        out_mem(c, reason, reason_len);
    }
    OUT_LIT(c, "\n");
    c->state = CONN_CLOSING;
    c->linger = true;
}

/* Writes the answer owed for the request just read in full. */
static void respond(struct conn *c)
{
    const struct demo_origin *o = c->origin;
    const struct pending *p = &c->pending;
    bool close = !p->keep_alive;

    switch ((enum route)p->route) {
    case ROUTE_STATUS:
        put_head(c, status_line(200), "application/json", sizeof(status_body) - 1, p, close);
        if (!p->head_only)
            OUT_LIT(c, status_body);
        break;
    case ROUTE_NOT_FOUND:
        put_head(c, status_line(404), "text/plain; charset=utf-8", 14, p, close);
        if (!p->head_only)
            OUT_LIT(c, "404 Not Found\n");
        break;
    case ROUTE_NOT_ALLOWED:
        close = true;
        put_head(c, status_line(405), "text/plain; charset=utf-8", 23, p, close);
        if (!p->head_only)
            OUT_LIT(c, "405 Method Not Allowed\n");
        break;
    case ROUTE_PAGE: {
        size_t len = o->page_fixed_len + u64_digits(p->visits) + DEMO_SESSION_SHOWN;
        put_head(c, status_line(200), "text/html; charset=utf-8", len, p, close);
        if (p->head_only)
            break;
        for (size_t i = 0; i < o->page_parts; i++) {
            const struct page_part *part = &o->page[i];
            switch (part->kind) {
            case PART_TEXT:
                out_mem(c, o->page_text + part->off, part->len);
                break;
            case PART_VISITS:
                out_u64(c, p->visits);
                break;
            case PART_SESSION:
                out_hex_id(c, p->sid_hi, p->sid_lo, DEMO_SESSION_SHOWN);
                break;
            }
        }
        break;
    }
    }
    if (close) {
        c->state = CONN_CLOSING;
    } else {
        c->state = CONN_HEAD;
    }
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */
/* ------------------------------------------------------------------ */

static enum route route_of(const char *t, size_t n)
{
    /* absolute-form: skip "scheme://authority" */
    if (n > 0 && t[0] != '/') {
        const char *sep = memmem(t, n, "://", 3);
        if (!sep)
            return ROUTE_PAGE; /* "*" (OPTIONS) and the like */
        const char *auth = sep + 3;
        const char *path = memchr(auth, '/', (size_t)(t + n - auth));
        if (!path)
            return ROUTE_PAGE;
        n -= (size_t)(path - t);
        t = path;
    }
    size_t path_len = 0;
    while (path_len < n && t[path_len] != '?' && t[path_len] != '#')
        path_len++;
    if (path_len == 7 && memcmp(t, "/status", 7) == 0)
        return ROUTE_STATUS;
    if (path_len == 12 && memcmp(t, "/favicon.ico", 12) == 0)
        return ROUTE_NOT_FOUND;
    return ROUTE_PAGE;
}

/* Handles a complete, parsed head of head_len bytes at in[in_pos]. */
static void handle_head(struct conn *c, const struct h1_request *req, size_t head_len)
{
    struct demo_origin *o = c->origin;
    struct h1_semantics sem;

    if (h1_request_semantics(req, &sem) < 0) {
        put_error(c, sem.error.status, sem.error.reason);
        return;
    }

    struct pending *p = &c->pending;
    memset(p, 0, sizeof(*p));
    p->keep_alive = sem.keep_alive;
    p->http10 = req->minor_version == 0;
    p->head_only = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    if (h1_token_eq(req->method, req->method_len, "CONNECT"))
        p->route = ROUTE_NOT_ALLOWED;
    else
        p->route = (uint8_t)route_of(req->target, req->target_len);

    if (p->route == ROUTE_PAGE) {
        struct session *s = session_from_cookies(o, req);
        if (!s) {
            s = session_new(o);
            p->new_session = true;
        }
        if (s->visits < UINT32_MAX)
            s->visits++;
        s->used = ++o->tick;
        p->visits = s->visits;
        p->sid_hi = s->hi;
        p->sid_lo = s->lo;
    }

    bool expect_body = false;
    c->in_pos += head_len;
    switch (sem.body) {
    case H1_BODY_LENGTH:
        if (sem.content_length > 0) {
            c->body_left = sem.content_length;
            c->state = CONN_BODY_LENGTH;
            expect_body = true;
        }
        break;
    case H1_BODY_CHUNKED:
        h1_chunked_init(&c->chunked);
        c->state = CONN_BODY_CHUNKED;
        expect_body = true;
        break;
    default:
        break;
    }
    if (!expect_body) {
        respond(c);
        return;
    }
    if (sem.expect_continue && req->minor_version == 1 && c->in_pos == c->in_len)
        OUT_LIT(c, continue_line);
}

/* Parses and answers what the input buffer holds, as far as the output
 * buffer has room; sets c->blocked when it stopped for lack of room. */
static void conn_process(struct conn *c)
{
    struct demo_origin *o = c->origin;

    c->blocked = false;
    if (c->out_pos == c->out_len)
        c->out_pos = c->out_len = 0;

    for (;;) {
        size_t avail = c->in_len - c->in_pos;
        const char *data = c->in + c->in_pos;

        if (c->state == CONN_BODY_LENGTH) {
            size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
            c->in_pos += n;
            c->body_left -= n;
            if (c->body_left)
                break;
            respond(c);
            continue;
        }
        if (c->state == CONN_BODY_CHUNKED) {
            bool done = false;
            long n = h1_chunked_scan(&c->chunked, data, avail, &done);
            if (n < 0) {
                put_error(c, 400, "bad chunked body");
                break;
            }
            c->in_pos += (size_t)n;
            if (!done)
                break;
            respond(c);
            continue;
        }
        if (c->state != CONN_HEAD || avail == 0)
            break;

        if (DEMO_OUT_SIZE - c->out_len < o->resp_max) {
            if (c->out_pos > 0) {
                memmove(c->out, c->out + c->out_pos, c->out_len - c->out_pos);
                c->out_len -= c->out_pos;
                c->out_pos = 0;
            }
            if (DEMO_OUT_SIZE - c->out_len < o->resp_max) {
                c->blocked = true;
                break;
            }
        }

        struct h1_request req;
        int n = h1_parse_request(data, avail, DEMO_IN_SIZE, &req);
        if (n == H1_NEED_MORE)
            break;
        if (n < 0) {
            put_error(c, req.error.status, req.error.reason);
            break;
        }
        handle_head(c, &req, (size_t)n);
    }

    if (c->in_pos == c->in_len) {
        c->in_pos = c->in_len = 0;
    } else if (c->in_pos > 0 && c->state != CONN_CLOSING) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
}

/* ------------------------------------------------------------------ */
/* Connections                                                        */
/* ------------------------------------------------------------------ */

static void conn_io_cb(struct loop *loop, struct io_watch *w, uint32_t events);
static void conn_timer_cb(struct loop *loop, struct timer *t);

static void conn_close(struct conn *c)
{
    struct demo_origin *o = c->origin;
    loop_unwatch(&o->loop, &c->watch);
    timer_cancel(&o->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        o->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (o->free_count < DEMO_FREE_CONNS) {
        c->next = o->free_conns;
        o->free_conns = c;
        o->free_count++;
    } else {
        free(c);
    }
}

static void conn_open(struct demo_origin *o, int fd)
{
    struct conn *c = o->free_conns;
    if (c) {
        o->free_conns = c->next;
        o->free_count--;
    } else {
        c = malloc(sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
    }
    c->origin = o;
    c->fd = fd;
    c->state = CONN_HEAD;
    c->peer_closed = c->blocked = c->linger = false;
    c->last_active_ms = o->loop.now_ms;
    c->body_left = 0;
    c->in_pos = c->in_len = c->out_pos = c->out_len = 0;
    timer_init(&c->timer, conn_timer_cb);

    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (loop_watch(&o->loop, &c->watch, fd, EPOLLIN, conn_io_cb) < 0 ||
        timer_arm(&o->loop, &c->timer, DEMO_IDLE_MS) < 0) {
        loop_unwatch(&o->loop, &c->watch);
        close(fd);
        c->next = o->free_conns;
        o->free_conns = c;
        o->free_count++;
        return;
    }
    c->prev = NULL;
    c->next = o->conns;
    if (o->conns)
        o->conns->prev = c;
    o->conns = c;
}

/* Sends what the output buffer holds. Returns 0 when all of it went, 1 when
 * the socket is full, -1 on error. */
static int conn_flush(struct conn *c)
{
    while (c->out_pos < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_pos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        return -1;
    }
    c->out_pos = c->out_len = 0;
    return 0;
}

/* Everything has been answered and sent: close, or half-close and drain
 * the input for a moment when more may be coming. */
static void conn_finish(struct conn *c)
{
    struct demo_origin *o = c->origin;
    if (!c->linger && c->in_pos == c->in_len) {
        conn_close(c);
        return;
    }
    if (c->peer_closed || shutdown(c->fd, SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    c->in_pos = c->in_len = 0;
    if (loop_modify(&o->loop, &c->watch, EPOLLIN) < 0 ||
        timer_arm(&o->loop, &c->timer, DEMO_LINGER_MS) < 0)
        conn_close(c);
}

static void conn_linger_read(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c); /* EOF or error */
        return;
    }
}

/* After I/O: answer what can be answered, send, and decide what to wait for. */
static void conn_progress(struct conn *c)
{
    struct demo_origin *o = c->origin;

    for (;;) {
        conn_process(c);
        int rc = conn_flush(c);
        if (rc < 0) {
            conn_close(c);
            return;
        }
        if (rc > 0)
            break;
        if (c->state == CONN_CLOSING) {
            conn_finish(c);
            return;
        }
        if (c->blocked)
            continue; /* room again: go on with the pipelined requests */
        if (c->peer_closed) {
            conn_close(c);
            return;
        }
        break;
    }

    uint32_t events = 0;
    if (!c->peer_closed && !c->blocked && c->state != CONN_CLOSING && c->in_len < DEMO_IN_SIZE)
        events |= EPOLLIN;
    if (c->out_pos < c->out_len)
        events |= EPOLLOUT;
    if (loop_modify(&o->loop, &c->watch, events) < 0)
        conn_close(c);
}

static void conn_io_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    struct conn *c = container_of(w, struct conn, watch);
    c->last_active_ms = loop->now_ms;

    if (c->state == CONN_LINGER) {
        conn_linger_read(c);
        return;
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->peer_closed &&
        c->state != CONN_CLOSING && c->in_len < DEMO_IN_SIZE) {
        ssize_t n = recv(c->fd, c->in + c->in_len, DEMO_IN_SIZE - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
        } else if (n == 0) {
            c->peer_closed = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c);
            return;
        }
    }
    conn_progress(c);
}

static void conn_timer_cb(struct loop *loop, struct timer *t)
{
    struct conn *c = container_of(t, struct conn, timer);
    if (c->state == CONN_LINGER) {
        conn_close(c);
        return;
    }
    uint64_t idle = loop->now_ms - c->last_active_ms;
    if (idle >= DEMO_IDLE_MS || timer_arm(loop, t, DEMO_IDLE_MS - idle) < 0)
        conn_close(c);
}

/* ------------------------------------------------------------------ */
/* Listener, signals, the origin                                      */
/* ------------------------------------------------------------------ */

static void accept_timer_cb(struct loop *loop, struct timer *t)
{
    struct demo_origin *o = container_of(t, struct demo_origin, accept_timer);
    loop_modify(loop, &o->listen_watch, EPOLLIN);
}

static void listen_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    struct demo_origin *o = container_of(w, struct demo_origin, listen_watch);
    (void)events;
    for (;;) {
        int fd = accept4(o->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_open(o, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors or memory: pause instead of spinning. */
            loop_modify(loop, &o->listen_watch, 0);
            timer_arm(loop, &o->accept_timer, DEMO_ACCEPT_PAUSE_MS);
        }
        return; /* EAGAIN, or paused */
    }
}

static void stop_wake_cb(struct loop *loop)
{
    loop->stop = true;
}

static void signal_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    struct signalfd_siginfo si;
    while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        loop->stop = true;
}

static void origin_free(struct demo_origin *o)
{
    struct conn *c, *next;
    for (c = o->conns; c; c = next) {
        next = c->next;
        close(c->fd);
        free(c);
    }
    for (c = o->free_conns; c; c = next) {
        next = c->next;
        free(c);
    }
    if (o->listen_fd >= 0)
        close(o->listen_fd);
    if (o->signal_fd >= 0)
        close(o->signal_fd);
    loop_fini(&o->loop);
    free(o->page_text);
    free(o);
}

static bool name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > DEMO_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] >= 0x7f)
            return false;
    return true;
}

/* Creates an origin with its loop and listening socket (not yet running).
 * Returns 0 or -errno after printing a message. */
static int origin_new(const char *address, const char *name, struct demo_origin **out)
{
    struct addr addr;
    const char *why = NULL;
    int rc, one = 1;

    if (addr_parse(address, &addr, &why) < 0) {
        fprintf(stderr, "limpet: demo origin %s: %s\n", address, why ? why : "bad address");
        return -EINVAL;
    }
    if (!name_valid(name)) {
        fprintf(stderr, "limpet: demo origin %s: bad name \"%s\" "
                "(1 to %d printable characters, no spaces)\n", address, name, DEMO_NAME_MAX);
        return -EINVAL;
    }

    struct demo_origin *o = calloc(1, sizeof(*o));
    if (!o) {
        fprintf(stderr, "limpet: demo origin %s: out of memory\n", address);
        return -ENOMEM;
    }
    o->listen_fd = o->signal_fd = -1;
    o->name_len = strlen(name);
    memcpy(o->name, name, o->name_len + 1);
    snprintf(o->address, sizeof(o->address), "%s", address);
    rng_seed(o->rng);
    timer_init(&o->accept_timer, accept_timer_cb);

    rc = loop_init(&o->loop, o);
    if (rc < 0) {
        o->loop.epfd = o->loop.wake_fd = -1;
        goto fail;
    }
    o->loop.wake_cb = stop_wake_cb;

    rc = page_build(o);
    if (rc < 0)
        goto fail;
    /* The largest answer: a head, maybe "100 Continue", and the page or an
     * error text (status line + a reason of at most 160 characters). */
    size_t body_max = o->page_fixed_len + 10 + DEMO_SESSION_SHOWN;
    if (body_max < 256)
        body_max = 256;
    o->resp_max = DEMO_HEAD_MAX + sizeof(continue_line) + body_max;
    if (o->resp_max > DEMO_OUT_SIZE) {
        rc = -ENOSPC; /* cannot happen: the page is a few KiB */
        goto fail;
    }

    o->listen_fd = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (o->listen_fd < 0) {
        rc = -errno;
        goto fail;
    }
    setsockopt(o->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(o->listen_fd, (struct sockaddr *)&addr.ss, addr.len) < 0 ||
        listen(o->listen_fd, SOMAXCONN) < 0) {
        rc = -errno;
        goto fail;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof(bound);
    if (getsockname(o->listen_fd, (struct sockaddr *)&bound, &bound_len) < 0) {
        rc = -errno;
        goto fail;
    }
    o->port = bound.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&bound)->sin_port);

    rc = loop_watch(&o->loop, &o->listen_watch, o->listen_fd, EPOLLIN, listen_cb);
    if (rc < 0)
        goto fail;
    *out = o;
    return 0;

fail:
    fprintf(stderr, "limpet: demo origin %s: %s\n", address, strerror(-rc));
    origin_free(o);
    return rc;
}

static void *origin_thread(void *arg)
{
    struct demo_origin *o = arg;
    loop_run(&o->loop);
    return NULL;
}

int demo_origin_start(const char *address, const char *name, struct demo_origin **out)
{
    struct demo_origin *o;
    int rc = origin_new(address, name, &o);
    if (rc < 0)
        return rc;

    /* The thread blocks every signal: they belong to the main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&o->thread, NULL, origin_thread, o);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fprintf(stderr, "limpet: demo origin %s: cannot start thread: %s\n", address,
                strerror(rc));
        origin_free(o);
        return -rc;
    }
    o->thread_started = true;
    *out = o;
    return 0;
}

void demo_origin_stop(struct demo_origin *origin)
{
    if (!origin)
        return;
    if (origin->thread_started) {
        loop_wake(&origin->loop);
        pthread_join(origin->thread, NULL);
    }
    origin_free(origin);
}

int demo_origin_port(const struct demo_origin *origin)
{
    return origin->port;
}

int demo_origin_run(const char *address, const char *name)
{
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);

    struct demo_origin *o;
    int status = 1;
    if (origin_new(address, name, &o) < 0)
        goto out;

    o->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (o->signal_fd < 0 ||
        loop_watch(&o->loop, &o->signal_watch, o->signal_fd, EPOLLIN, signal_cb) < 0) {
        fprintf(stderr, "limpet: demo origin %s: signalfd: %s\n", address, strerror(errno));
        origin_free(o);
        goto out;
    }
    fprintf(stderr, "limpet: demo origin %s listening on %s (port %d)\n", o->name, address,
            o->port);
    loop_run(&o->loop);
    origin_free(o);
    status = 0;
out:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return status;
}
