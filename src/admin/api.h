/*
 * api — what the admin server (admin.c) and its handlers (api.c,
 * metrics.c) share: the admin object, one parsed request and the reply
 * being built for it.
 *
 * admin.c reads a complete request (head and body), checks the token, and
 * hands a struct admin_request to api_handle(), which routes it and fills a
 * struct admin_reply; admin.c then writes the reply. Handlers run on the
 * control thread and may allocate; they never block.
 */
#ifndef LIMPET_ADMIN_API_H
#define LIMPET_ADMIN_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "admin/state.h"
#include "core/loop.h"

struct control;
struct admin_conn;

#define ADMIN_TOKEN_DIGEST 32       /* SHA-256 of the token */

struct admin {
    struct control *ctl;
    struct io_watch listener;       /* the listening socket */
    struct timer accept_resume;     /* resumes accepting after running out of descriptors */
    char *address;                  /* admin.address at start */
    char *token_file;               /* admin.token_file at start (NULL: none) */
    bool has_token;
    unsigned char token_digest[ADMIN_TOKEN_DIGEST];
    struct admin_state state;       /* run-time changes */
    struct admin_conn *conns;       /* open connections */
    unsigned num_conns;
    bool winding_down;              /* the process stops or retires (admin_wind_down) */
};

enum admin_method {
    METHOD_GET,
    METHOD_HEAD,
    METHOD_POST,
    METHOD_PATCH,
    METHOD_DELETE,
    METHOD_OTHER,
};

struct admin_request {
    enum admin_method method;
    char *path;                     /* percent-decoded, NUL-terminated, without the query */
    char *query;                    /* raw query string after '?' ("" when none) */
    const char *body;               /* request body (not NUL-terminated) */
    size_t body_len;
    const char *peer;               /* the client's "IP:port", for the log of changes */
};

struct admin_reply {
    int status;
    const char *content_type;
    const char *allow;              /* Allow: for 405 */
    char *body;                     /* owned (malloc'd), or NULL with static_body */
    const char *static_body;        /* an embedded asset */
    size_t body_len;
};

/* Routes req and fills reply (status 0 is never left). */
void api_handle(struct admin *admin, const struct admin_request *req, struct admin_reply *reply);

/* reply = status with the JSON value v (reference stolen). */
void reply_json(struct admin_reply *reply, int status, json_t *v);

/* reply = status with {"error": {"code": code, "message": ...}}. */
__attribute__((format(printf, 4, 5)))
void reply_error(struct admin_reply *reply, int status, const char *code, const char *fmt, ...);

/* Prometheus text exposition of every metric (malloc'd, *len set), or NULL. */
char *metrics_render(struct admin *admin, size_t *len);

#endif
