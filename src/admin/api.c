/*
 * api — routing and the REST handlers of SPEC §6 (see api.h).
 *
 * Reads come from snapshot_current() and the counters (view.h). Every
 * change follows one path, apply_change(): the change (admin/state.h) is
 * applied to a deep copy of the running configuration document, the copy
 * is loaded with config_load_json() — the same validation, messages and
 * JSON paths as the file — and the result is published with
 * control_apply_config(), so origin identities, drain start times, health
 * and listening sockets carry over exactly as on a reload, and requests in
 * flight finish on the snapshot they started with. The change is then
 * recorded in the state (and its file), and logged on stderr with the
 * address of the client that asked and what changed, old -> new.
 *
 * Errors are {"error": {"code", "message"}}: 400 bad input (bad JSON, a key
 * that may not be changed, a value the configuration refuses — the message
 * then carries its JSON path), 404 unknown path or name, 405 wrong method
 * (with Allow), 409 a change that contradicts the running configuration.
 */
#include "admin/api.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/assets.h"
#include "admin/view.h"
#include "affinity/affinity.h"
#include "affinity/token.h"
#include "control/snapshot_build.h"
#include "control/control.h"
#include "core/log.h"
#include "health/health.h"

#define MAX_SEGMENTS 8

/* ---- replies ---- */

void reply_json(struct admin_reply *reply, int status, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(v);
    free(reply->body);
    reply->static_body = NULL;
    if (!text) {
        static const char oom[] =
            "{\"error\": {\"code\": \"internal\", \"message\": \"out of memory\"}}\n";
        reply->status = 500;
        reply->content_type = "application/json";
        reply->body = NULL;
        reply->static_body = oom;
        reply->body_len = sizeof(oom) - 1;
        return;
    }
    size_t n = strlen(text);
    char *grown = realloc(text, n + 2);
    if (grown) {
        text = grown;
        text[n++] = '\n';
        text[n] = '\0';
    }
    reply->status = status;
    reply->content_type = "application/json";
    reply->body = text;
    reply->body_len = n;
}

void reply_error(struct admin_reply *reply, int status, const char *code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(reply, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg));
}

static void reply_asset(struct admin_reply *reply, const struct admin_asset *asset)
{
    reply->status = 200;
    reply->content_type = asset->content_type;
    reply->static_body = asset->data;
    reply->body_len = asset->size;
}

/* ---- requests ---- */

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The value of `name` in a query string, percent-decoded (malloc'd), or NULL. */
static char *query_param(const char *query, const char *name)
{
    size_t name_len = strlen(name);
    for (const char *p = query; *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            const char *v = p + name_len + 1;
            size_t vlen = len - name_len - 1;
            char *out = malloc(vlen + 1);
            if (!out)
                return NULL;
            size_t n = 0;
            for (size_t i = 0; i < vlen; i++) {
                int hi, lo;
                if (v[i] == '%' && i + 2 < vlen + 1 && (hi = hex_value(v[i + 1])) >= 0 &&
                    (lo = hex_value(v[i + 2])) >= 0) {
                    out[n++] = (char)(hi * 16 + lo);
                    i += 2;
                } else {
                    out[n++] = v[i] == '+' ? ' ' : v[i];
                }
            }
            out[n] = '\0';
            return out;
        }
        p = end ? end + 1 : p + len;
    }
    return NULL;
}

enum { ALLOW_GET = 1, ALLOW_POST = 2, ALLOW_PATCH = 4, ALLOW_DELETE = 8 };

/* True when req's method is in mask (HEAD goes with GET); else a 405. */
static bool method_allowed(const struct admin_request *req, struct admin_reply *reply,
                           unsigned mask)
{
    static const char *const allow_text[16] = {
        [ALLOW_GET] = "GET, HEAD",
        [ALLOW_POST] = "POST",
        [ALLOW_GET | ALLOW_POST] = "GET, HEAD, POST",
        [ALLOW_GET | ALLOW_PATCH] = "GET, HEAD, PATCH",
        [ALLOW_GET | ALLOW_DELETE] = "GET, HEAD, DELETE",
        [ALLOW_GET | ALLOW_PATCH | ALLOW_DELETE] = "GET, HEAD, PATCH, DELETE",
    };
    unsigned bit = 0;
    switch (req->method) {
    case METHOD_GET: case METHOD_HEAD: bit = ALLOW_GET; break;
    case METHOD_POST: bit = ALLOW_POST; break;
    case METHOD_PATCH: bit = ALLOW_PATCH; break;
    case METHOD_DELETE: bit = ALLOW_DELETE; break;
    case METHOD_OTHER: break;
    }
    if (bit & mask)
        return true;
    reply_error(reply, 405, "method_not_allowed", "%s allows only %s", req->path,
                allow_text[mask]);
    reply->allow = allow_text[mask];
    return false;
}

/* The request body as a JSON object, or NULL after replying 400. */
static json_t *body_object(const struct admin_request *req, struct admin_reply *reply)
{
    if (req->body_len == 0) {
        reply_error(reply, 400, "bad_request", "a JSON object body is required");
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        reply_error(reply, 400, "invalid_json", "body:%d:%d: %s", jerr.line, jerr.column,
                    jerr.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        reply_error(reply, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return v;
}

/* Every key of obj is in allowed (NULL-terminated); else a 400 naming it. */
static bool only_keys(json_t *obj, const char *const allowed[], const char *what,
                      struct admin_reply *reply)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        (void)value;
        bool known = false;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            char list[256] = "";
            size_t n = 0;
            for (size_t i = 0; allowed[i] && n < sizeof(list); i++)
                n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
                                      allowed[i]);
            reply_error(reply, 400, "unknown_key", "%s: not a key %s may change (it may "
                        "change: %s)", key, what, list);
            return false;
        }
    }
    return true;
}

/* ---- changes ---- */

/* Joins the loader's messages, without the "NAME: " they start with. */
static void join_errors(const struct config_errors *errs, const char *name, char *out,
                        size_t size)
{
    size_t n = 0, prefix = strlen(name);
    out[0] = '\0';
    for (size_t i = 0; i < errs->count && n + 2 < size; i++) {
        const char *m = errs->messages[i];
        if (strncmp(m, name, prefix) == 0 && strncmp(m + prefix, ": ", 2) == 0)
            m += prefix + 2;
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "; " : "", m);
    }
}

/*
 * Applies change (consumed) to the running configuration, publishes the
 * result and records the change. Returns true, or false with the error
 * reply made.
 */
static bool apply_change(struct admin *admin, json_t *change, struct admin_reply *reply)
{
    const struct config *running = snapshot_current()->cfg;
    char msg[2048];
    bool ok = false;
    json_t *doc = json_deep_copy(running->doc);
    if (!doc) {
        reply_error(reply, 500, "internal", "out of memory");
        goto out;
    }
    switch (change_apply(doc, change, msg, sizeof(msg))) {
    case CHANGE_OK:
        break;
    case CHANGE_NOT_FOUND:
        reply_error(reply, 404, "not_found", "%s", msg);
        goto out;
    case CHANGE_CONFLICT:
        reply_error(reply, 409, "conflict", "%s", msg);
        goto out;
    case CHANGE_MALFORMED:
        reply_error(reply, 400, "bad_request", "%s", msg);
        goto out;
    }
    struct config_errors errs = {0};
    struct config *cfg = config_load_json(doc, running->path, &errs);
    if (!cfg) {
        join_errors(&errs, running->path ? running->path : "(config)", msg, sizeof(msg));
        config_errors_fini(&errs);
        reply_error(reply, 400, "invalid", "%s", msg);
        goto out;
    }
    if (control_apply_config(admin->ctl, cfg, msg, sizeof(msg)) < 0) {
        config_free(cfg);
        reply_error(reply, 500, "internal", "cannot apply the change: %s", msg);
        goto out;
    }
    state_record(&admin->state, change);
    if (state_save(&admin->state, msg, sizeof(msg)) < 0) {
        log_error("admin: %s", msg);
        reply_error(reply, 500, "state_not_saved", "the change is in force but was not "
                    "recorded: %s", msg);
        goto out;
    }
    ok = true;
out:
    json_decref(doc);
    json_decref(change);
    return ok;
}

/* ---- the log of changes ---- */

/* Logs a change made through the API with who asked:
 * "admin 127.0.0.1:51234: pool app origin s1: state enabled -> draining". */
__attribute__((format(printf, 2, 3)))
static void log_change(const struct admin_request *req, const char *fmt, ...)
{
    char what[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    log_error("admin %s: %s", req->peer ? req->peer : "(unknown client)", what);
}

/* A setting as text: strings bare, other values as compact JSON. */
static void setting_text(const json_t *v, char *out, size_t size)
{
    if (!v) {
        snprintf(out, size, "(unset)");
    } else if (json_is_string(v)) {
        snprintf(out, size, "%s", json_string_value(v));
    } else {
        char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(out, size, "%s", dump ? dump : "?");
        free(dump);
    }
}

/* Appends "path old -> new" to out[*n..size) for every value that differs
 * between before and after; objects are compared key by key. */
static void diff_settings(const char *path, const json_t *before, const json_t *after,
                          char *out, size_t size, size_t *n)
{
    if (json_is_object(before) && json_is_object(after)) {
        const char *key;
        json_t *v;
        char sub[256];
        json_object_foreach((json_t *)after, key, v) {
            snprintf(sub, sizeof(sub), "%s.%s", path, key);
            diff_settings(sub, json_object_get(before, key), v, out, size, n);
        }
        json_object_foreach((json_t *)before, key, v) {
            snprintf(sub, sizeof(sub), "%s.%s", path, key);
            if (!json_object_get(after, key))
                diff_settings(sub, v, NULL, out, size, n);
        }
        return;
    }
    if ((!before && !after) || (before && after && json_equal(before, after)) || *n >= size)
        return;
    char old[256], new[256];
    setting_text(before, old, sizeof(old));
    setting_text(after, new, sizeof(new));
    *n += (size_t)snprintf(out + *n, size - *n, "%s%s %s -> %s", *n ? ", " : "", path, old, new);
}

/* "key old -> new, ..." over keys of before/after into out; false (and
 * "no change") when they are equal. */
static bool describe_change(const json_t *before, const json_t *after,
                            const char *const keys[], char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; keys[i]; i++)
        diff_settings(keys[i], json_object_get(before, keys[i]), json_object_get(after, keys[i]),
                      out, size, &n);
    if (n == 0)
        snprintf(out, size, "no change");
    return n > 0;
}

/* The settings of an origin that PATCH may change, as JSON. */
static json_t *origin_settings(const struct snapshot *s, size_t p, size_t o)
{
    const struct cfg_origin *co = &s->cfg->pools[p].origins[o];
    return json_pack("{s:s, s:I}", "state", view_origin_state_name(co->state),
                     "weight", (json_int_t)co->weight);
}

/* ---- handlers ---- */

static void get_status(struct admin *admin, struct admin_reply *reply)
{
    const struct control *ctl = admin->ctl;
    const struct snapshot *s = snapshot_current();
    double uptime = (double)(clock_ms() - ctl->started_ms) / 1000.0;
    reply_json(reply, 200, json_pack("{s:s, s:s, s:i, s:I, s:i, s:o, s:I, s:I, s:I}",
                                     "state", "RUNNING",
                                     "version", LIMPET_VERSION,
                                     "pid", (int)getpid(),
                                     "uptime", (json_int_t)uptime,
                                     "workers", (int)ctl->num_workers,
                                     "config", s->cfg->path ? json_string(s->cfg->path)
                                                            : json_null(),
                                     "generation", (json_int_t)s->generation,
                                     "reloads", (json_int_t)ctl->reloads,
                                     "reload_failures", (json_int_t)ctl->reload_failures));
}

static void listeners(struct admin *admin, const struct admin_request *req,
                      struct admin_reply *reply)
{
    if (!method_allowed(req, reply, ALLOW_GET))
        return;
    const struct snapshot *s = snapshot_current();
    json_t *list = json_array();
    for (size_t i = 0; i < s->cfg->num_listeners; i++)
        json_array_append_new(list, view_listener(admin->ctl, s, i));
    reply_json(reply, 200, json_pack("{s:o}", "listeners", list));
}

static const char *const LB_KEYS[] = {"session_affinity", "session_affinity_ttl",
    "session_affinity_attributes", "default_pools", "fallback_pool", NULL};

static void load_balancers(struct admin *admin, const struct admin_request *req,
                           struct admin_reply *reply, const char *name)
{
    const struct snapshot *s = snapshot_current();
    if (!name) {
        if (!method_allowed(req, reply, ALLOW_GET))
            return;
        json_t *list = json_array();
        for (size_t i = 0; i < s->cfg->num_load_balancers; i++)
            json_array_append_new(list, view_load_balancer(admin->ctl, s, i));
        reply_json(reply, 200, json_pack("{s:o}", "load_balancers", list));
        return;
    }
    if (!method_allowed(req, reply, ALLOW_GET | ALLOW_PATCH))
        return;
    long lb = view_find_load_balancer(s, name);
    if (lb < 0) {
        reply_error(reply, 404, "not_found", "no load balancer \"%s\"", name);
        return;
    }
    if (req->method == METHOD_PATCH) {
        json_t *body = body_object(req, reply);
        if (!body)
            return;
        if (!only_keys(body, LB_KEYS, "a load balancer", reply)) {
            json_decref(body);
            return;
        }
        json_t *before = view_load_balancer(admin->ctl, s, (size_t)lb);
        if (!apply_change(admin, json_pack("{s:s, s:s, s:o}", "op", "patch_load_balancer",
                                           "load_balancer", name, "set", body), reply)) {
            json_decref(before);
            return;
        }
        s = snapshot_current();
        lb = view_find_load_balancer(s, name);
        json_t *after = view_load_balancer(admin->ctl, s, (size_t)lb);
        char what[1536];
        describe_change(before, after, LB_KEYS, what, sizeof(what));
        log_change(req, "load balancer %s: %s", name, what);
        json_decref(before);
        json_decref(after);
    }
    reply_json(reply, 200, view_load_balancer(admin->ctl, s, (size_t)lb));
}

static void origin_not_found(struct admin_reply *reply, const char *pool, const char *origin)
{
    reply_error(reply, 404, "not_found", "no origin \"%s\" in pool \"%s\"", origin, pool);
}

/* The reply for origin `name` of pool `pool` in the current snapshot. */
static void reply_origin(struct admin *admin, struct admin_reply *reply, int status,
                         const char *pool, const char *name)
{
    const struct snapshot *s = snapshot_current();
    size_t p, o;
    if (!snapshot_find_origin(s, pool, name, &p, &o)) {
        origin_not_found(reply, pool, name);
        return;
    }
    json_t *v = view_origin(admin->ctl, s, p, o);
    struct health_origin_stats hs;
    if (admin->ctl->health && health_origin_stats(admin->ctl->health, s->pools[p].origins[o], &hs))
        json_object_set_new(v, "health", json_pack(
            "{s:s, s:b, s:I, s:I, s:I, s:I, s:s}",
            "monitor", hs.monitor, "checked", hs.checked,
            "checks_pass", (json_int_t)hs.checks_pass, "checks_fail", (json_int_t)hs.checks_fail,
            "went_down", (json_int_t)hs.went_down, "went_up", (json_int_t)hs.went_up,
            "last_failure", hs.last_failure));
    json_object_set_new(v, "pool", json_string(pool));
    reply_json(reply, status, v);
}

static const char *const ORIGIN_PATCH_KEYS[] = {"state", "weight", NULL};
static const char *const ORIGIN_ADD_KEYS[] = {"name", "address", "weight", "route", "state",
                                              NULL};

static void origins(struct admin *admin, const struct admin_request *req,
                    struct admin_reply *reply, const char *pool, const char *name)
{
    const struct snapshot *s = snapshot_current();
    long p = view_find_pool(s, pool);
    if (p < 0) {
        reply_error(reply, 404, "not_found", "no pool \"%s\"", pool);
        return;
    }
    if (!name) {
        if (!method_allowed(req, reply, ALLOW_GET | ALLOW_POST))
            return;
        if (req->method != METHOD_POST) {
            json_t *v = view_pool(admin->ctl, s, (size_t)p);
            reply_json(reply, 200, json_pack("{s:O}", "origins", json_object_get(v, "origins")));
            json_decref(v);
            return;
        }
        json_t *body = body_object(req, reply);
        if (!body)
            return;
        const char *new_name = json_string_value(json_object_get(body, "name"));
        if (!only_keys(body, ORIGIN_ADD_KEYS, "a new origin", reply)) {
            json_decref(body);
            return;
        }
        if (!new_name || !json_object_get(body, "address")) {
            json_decref(body);
            reply_error(reply, 400, "bad_request", "%s: required (a new origin needs "
                        "\"name\" and \"address\")", new_name ? "address" : "name");
            return;
        }
        char *keep = strdup(new_name);
        if (keep && apply_change(admin, json_pack("{s:s, s:s, s:o}", "op", "add_origin",
                                                  "pool", pool, "origin", body), reply)) {
            size_t np, no;
            const struct snapshot *now = snapshot_current();
            if (snapshot_find_origin(now, pool, keep, &np, &no)) {
                const struct cfg_origin *co = &now->cfg->pools[np].origins[no];
                log_change(req, "pool %s: origin %s added (%s, weight %u, %s)", pool, keep,
                           co->address, co->weight, view_origin_state_name(co->state));
            }
            reply_origin(admin, reply, 201, pool, keep);
        } else if (!keep)
            reply_error(reply, 500, "internal", "out of memory");
        free(keep);
        return;
    }
    if (!method_allowed(req, reply, ALLOW_GET | ALLOW_PATCH | ALLOW_DELETE))
        return;
    size_t pi, oi;
    if (!snapshot_find_origin(s, pool, name, &pi, &oi)) {
        origin_not_found(reply, pool, name);
        return;
    }
    if (req->method == METHOD_PATCH) {
        json_t *body = body_object(req, reply);
        if (!body)
            return;
        if (!only_keys(body, ORIGIN_PATCH_KEYS, "an origin", reply)) {
            json_decref(body);
            return;
        }
        json_t *before = origin_settings(s, pi, oi);
        if (!apply_change(admin, json_pack("{s:s, s:s, s:s, s:o}", "op", "patch_origin",
                                           "pool", pool, "origin", name, "set", body), reply)) {
            json_decref(before);
            return;
        }
        s = snapshot_current();
        if (snapshot_find_origin(s, pool, name, &pi, &oi)) {
            json_t *after = origin_settings(s, pi, oi);
            char what[512];
            if (describe_change(before, after, ORIGIN_PATCH_KEYS, what, sizeof(what)))
                log_change(req, "pool %s origin %s: %s", pool, name, what);
            else
                log_change(req, "pool %s origin %s: no change (state %s, weight %u)", pool, name,
                           view_origin_state_name(s->cfg->pools[pi].origins[oi].state),
                           s->cfg->pools[pi].origins[oi].weight);
            json_decref(after);
        }
        json_decref(before);
    } else if (req->method == METHOD_DELETE) {
        if (apply_change(admin, json_pack("{s:s, s:s, s:s}", "op", "remove_origin",
                                          "pool", pool, "origin", name), reply)) {
            log_change(req, "pool %s: origin %s removed", pool, name);
            reply_json(reply, 200, json_pack("{s:{s:s, s:s}}", "removed", "pool", pool,
                                             "origin", name));
        }
        return;
    }
    reply_origin(admin, reply, 200, pool, name);
}

static void pools(struct admin *admin, const struct admin_request *req,
                  struct admin_reply *reply, const char *name)
{
    if (!method_allowed(req, reply, ALLOW_GET))
        return;
    const struct snapshot *s = snapshot_current();
    if (!name) {
        json_t *list = json_array();
        for (size_t i = 0; i < s->cfg->num_pools; i++)
            json_array_append_new(list, view_pool(admin->ctl, s, i));
        reply_json(reply, 200, json_pack("{s:o}", "pools", list));
        return;
    }
    long p = view_find_pool(s, name);
    if (p < 0)
        reply_error(reply, 404, "not_found", "no pool \"%s\"", name);
    else
        reply_json(reply, 200, view_pool(admin->ctl, s, (size_t)p));
}

static void reload(struct admin *admin, const struct admin_request *req,
                   struct admin_reply *reply)
{
    if (!method_allowed(req, reply, ALLOW_POST))
        return;
    char err[4096];
    if (!admin->ctl->config_path) {
        reply_error(reply, 409, "conflict", "no config file to reload (limpet runs a "
                    "built-in configuration)");
        return;
    }
    if (control_reload(admin->ctl, err, sizeof(err)) < 0) {
        log_change(req, "reload failed, running configuration kept: %s", err);
        reply_error(reply, 400, "reload_failed", "running configuration kept: %s", err);
        return;
    }
    log_change(req, "configuration reloaded from %s", admin->ctl->config_path);
    reply_json(reply, 200, json_pack("{s:b, s:s, s:I}", "reloaded", 1,
                                     "config", admin->ctl->config_path,
                                     "generation", (json_int_t)snapshot_current()->generation));
}

static void state(struct admin *admin, const struct admin_request *req,
                  struct admin_reply *reply)
{
    if (!method_allowed(req, reply, ALLOW_GET | ALLOW_DELETE))
        return;
    json_t *file = admin->state.path ? json_string(admin->state.path) : json_null();
    if (req->method == METHOD_DELETE) {
        size_t n = json_array_size(admin->state.changes);
        char err[512];
        state_clear(&admin->state);
        if (state_save(&admin->state, err, sizeof(err)) < 0) {
            json_decref(file);
            log_error("admin: %s", err);
            reply_error(reply, 500, "state_not_saved", "%s", err);
            return;
        }
        log_change(req, "state: forgot %zu recorded run-time change%s", n, n == 1 ? "" : "s");
        reply_json(reply, 200, json_pack("{s:I, s:o}", "forgotten", (json_int_t)n,
                                         "state_file", file));
        return;
    }
    reply_json(reply, 200, json_pack("{s:o, s:O}", "state_file", file,
                                     "changes", admin->state.changes));
}

/* The load balancer whose TTL applies to a cookie: the named one, or the
 * first with a cookie of limpet's; -1 when none (*missing: name unknown). */
static long decode_lb(const struct snapshot *s, const char *name, bool *missing)
{
    *missing = false;
    if (name) {
        long lb = view_find_load_balancer(s, name);
        *missing = lb < 0;
        return lb;
    }
    for (size_t i = 0; i < s->cfg->num_load_balancers; i++) {
        enum session_affinity a = s->cfg->load_balancers[i].session_affinity;
        if (a == AFFINITY_COOKIE || a == AFFINITY_IP_COOKIE || a == AFFINITY_HEADER)
            return (long)i;
    }
    return -1;
}

static void decode(const struct admin_request *req, struct admin_reply *reply)
{
    if (!method_allowed(req, reply, ALLOW_GET))
        return;
    const struct snapshot *s = snapshot_current();
    char *cookie = query_param(req->query, "cookie");
    char *lb_name = query_param(req->query, "load_balancer");
    bool missing;
    long lb = decode_lb(s, lb_name, &missing);
    if (!cookie) {
        reply_error(reply, 400, "bad_request", "cookie: required (GET "
                    "/api/v1/affinity/decode?cookie=VALUE)");
    } else if (missing) {
        reply_error(reply, 404, "not_found", "no load balancer \"%s\"", lb_name);
    } else if (!s->aff || !s->aff->keys) {
        reply_error(reply, 409, "conflict", "no affinity keys loaded");
    } else {
        /* Accept "name=value" as pasted from a browser: the value has no '='. */
        const char *value = strrchr(cookie, '=') ? strrchr(cookie, '=') + 1 : cookie;
        uint32_t ttl = 0, max_life = 0;
        if (lb >= 0) {
            ttl = (uint32_t)s->cfg->load_balancers[lb].session_affinity_ttl;
            max_life = (uint32_t)s->cfg->load_balancers[lb].attributes.max_life;
        }
        struct token_inspection ins;
        uint32_t now = (uint32_t)time(NULL);
        if (token_inspect(s->aff->keys, value, strlen(value), now, ttl, max_life, &ins) < 0) {
            reply_error(reply, 500, "internal", "out of memory");
        } else {
            char line[512];
            token_inspection_format(&ins, line, sizeof(line));
            json_t *v = json_pack("{s:s, s:s, s:b, s:b, s:s, s:o, s:s}",
                                  "cookie", value,
                                  "verdict", token_verdict_name(ins.verdict),
                                  "authentic", ins.authentic, "decoded", ins.decoded,
                                  "why", ins.why,
                                  "load_balancer", lb >= 0
                                      ? json_string(s->cfg->load_balancers[lb].name)
                                      : json_null(),
                                  "summary", line);
            if (ins.decoded) {
                char key[24], sid[24], kid[8];
                snprintf(key, sizeof(key), "%016" PRIx64, ins.token.origin_key);
                snprintf(sid, sizeof(sid), "%016" PRIx64, ins.token.session_id);
                snprintf(kid, sizeof(kid), "0x%02x", ins.token.key_id);
                json_t *origin = json_null();
                for (size_t p = 0; ins.authentic && p < s->cfg->num_pools; p++)
                    for (size_t o = 0; o < s->cfg->pools[p].num_origins; o++)
                        if (token_origin_key_with(s->aff->keys, ins.token.key_index,
                                                  s->cfg->pools[p].name,
                                                  s->cfg->pools[p].origins[o].name) ==
                            ins.token.origin_key) {
                            json_decref(origin);
                            origin = json_pack("{s:s, s:s}", "pool", s->cfg->pools[p].name,
                                               "name", s->cfg->pools[p].origins[o].name);
                        }
                json_object_set_new(v, "token", json_pack(
                    "{s:i, s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:o}",
                    "version", (int)ins.token.version, "key_id", kid,
                    "key_index", (int)ins.token.key_index, "origin_key", key,
                    "session_id", sid,
                    "session_start", (json_int_t)ins.token.session_start,
                    "issued", (json_int_t)ins.token.issued,
                    "age", (json_int_t)now - (json_int_t)ins.token.issued,
                    "origin", origin));
            }
            reply_json(reply, 200, v);
        }
    }
    free(cookie);
    free(lb_name);
}

static void metrics(struct admin *admin, const struct admin_request *req,
                    struct admin_reply *reply)
{
    if (!method_allowed(req, reply, ALLOW_GET))
        return;
    size_t len;
    char *text = metrics_render(admin, &len);
    if (!text) {
        reply_error(reply, 500, "internal", "out of memory");
        return;
    }
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply->body = text;
    reply->body_len = len;
}

/* ---- routing ---- */

/* Splits path ("/a/b/c", one trailing slash allowed) into at most
 * MAX_SEGMENTS segments, in place. Returns the count, or -1 for an empty
 * segment or too many. */
static int split_path(char *path, char *seg[MAX_SEGMENTS])
{
    int n = 0;
    if (*path != '/')
        return -1;
    for (char *p = path + 1; *p;) {
        char *slash = strchr(p, '/');
        if (n == MAX_SEGMENTS || slash == p)
            return -1;
        seg[n++] = p;
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return n;
}

static void route_api(struct admin *admin, const struct admin_request *req,
                      struct admin_reply *reply, char **seg, int n)
{
    const char *what = n >= 3 ? seg[2] : "";
    if (n == 3 && strcmp(what, "status") == 0) {
        if (method_allowed(req, reply, ALLOW_GET))
            get_status(admin, reply);
    } else if ((n == 3 || n == 4) && strcmp(what, "load_balancers") == 0) {
        load_balancers(admin, req, reply, n == 4 ? seg[3] : NULL);
    } else if ((n == 3 || n == 4) && strcmp(what, "pools") == 0) {
        pools(admin, req, reply, n == 4 ? seg[3] : NULL);
    } else if ((n == 5 || n == 6) && strcmp(what, "pools") == 0 &&
               strcmp(seg[4], "origins") == 0) {
        origins(admin, req, reply, seg[3], n == 6 ? seg[5] : NULL);
    } else if (n == 3 && strcmp(what, "listeners") == 0) {
        listeners(admin, req, reply);
    } else if (n == 3 && strcmp(what, "reload") == 0) {
        reload(admin, req, reply);
    } else if (n == 3 && strcmp(what, "state") == 0) {
        state(admin, req, reply);
    } else if (n == 4 && strcmp(what, "affinity") == 0 && strcmp(seg[3], "decode") == 0) {
        decode(req, reply);
    } else {
        reply_error(reply, 404, "not_found", "no API call %s", req->path);
    }
}

void api_handle(struct admin *admin, const struct admin_request *req, struct admin_reply *reply)
{
    char *copy = strdup(req->path);
    char *seg[MAX_SEGMENTS];
    int n = copy ? split_path(copy, seg) : -1;
    struct admin_asset asset;
    if (!copy) {
        reply_error(reply, 500, "internal", "out of memory");
    } else if (n >= 0 && n <= 1 && admin_asset_find(n == 1 ? seg[0] : "", &asset)) {
        if (method_allowed(req, reply, ALLOW_GET))
            reply_asset(reply, &asset);
    } else if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        metrics(admin, req, reply);
    } else if (n >= 2 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "v1") == 0) {
        route_api(admin, req, reply, seg, n);
    } else {
        reply_error(reply, 404, "not_found", "nothing at %s (the API is under /api/v1/, "
                    "the dashboard at /)", req->path);
    }
    free(copy);
}
