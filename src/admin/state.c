/*
 * state — applying, compacting, saving and replaying run-time changes
 * (see state.h).
 *
 * Documents are edited with jansson: load balancers, pools and origins are
 * found by their "name" member in their arrays. A document that was loaded
 * successfully has well-formed arrays, but a change may meet one that does
 * not (a state entry replayed on another file), so every lookup checks
 * types. The state file is
 *
 *   {"version": 1, "changes": [change, ...]}
 *
 * written with two-space indentation so that an operator can read it.
 */
#include "admin/state.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define STATE_FILE_VERSION 1

/* ---- documents ---- */

/* The element of array `arr` whose "name" is name, or NULL; *index set. */
static json_t *find_named(json_t *arr, const char *name, size_t *index)
{
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item) {
        const char *n = json_string_value(json_object_get(item, "name"));
        if (n && strcmp(n, name) == 0) {
            if (index)
                *index = i;
            return item;
        }
    }
    return NULL;
}

/* RFC 7396: target becomes target patched by patch (an object). */
static void merge_patch(json_t *target, const json_t *patch)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value) {
        if (json_is_null(value)) {
            json_object_del(target, key);
        } else if (json_is_object(value)) {
            json_t *sub = json_object_get(target, key);
            if (!json_is_object(sub)) {
                sub = json_object();
                json_object_set_new(target, key, sub);
            }
            merge_patch(sub, value);
        } else {
            json_object_set_new(target, key, json_deep_copy(value));
        }
    }
}

/* Two merge patches as one: applying the result equals applying a then b.
 * a is changed in place. */
static void compose_patches(json_t *a, const json_t *b)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)b, key, value) {
        json_t *prev = json_object_get(a, key);
        if (json_is_object(value) && json_is_object(prev))
            compose_patches(prev, value);
        else
            json_object_set_new(a, key, json_deep_copy(value));
    }
}

static const char *str_member(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* The pool named by change["pool"] in doc, or NULL with msg set. */
static json_t *change_pool(json_t *doc, const char *pool, char *msg, size_t msg_size)
{
    json_t *p = find_named(json_object_get(doc, "pools"), pool, NULL);
    if (!p)
        snprintf(msg, msg_size, "no pool \"%s\"", pool);
    return p;
}

enum change_result change_apply(json_t *doc, const json_t *change, char *msg, size_t msg_size)
{
    const char *op = str_member(change, "op");
    const char *pool = str_member(change, "pool");
    json_t *set = json_object_get(change, "set");
    msg[0] = '\0';
    if (op && strcmp(op, "patch_load_balancer") == 0) {
        const char *name = str_member(change, "load_balancer");
        if (!name || !json_is_object(set))
            goto malformed;
        json_t *lb = find_named(json_object_get(doc, "load_balancers"), name, NULL);
        if (!lb) {
            snprintf(msg, msg_size, "no load balancer \"%s\"", name);
            return CHANGE_NOT_FOUND;
        }
        merge_patch(lb, set);
        return CHANGE_OK;
    }
    if (!op || !pool)
        goto malformed;
    if (strcmp(op, "add_origin") == 0) {
        json_t *origin = json_object_get(change, "origin");
        const char *name = str_member(origin, "name");
        if (!json_is_object(origin) || !name)
            goto malformed;
        json_t *p = change_pool(doc, pool, msg, msg_size);
        if (!p)
            return CHANGE_NOT_FOUND;
        json_t *origins = json_object_get(p, "origins");
        if (!json_is_array(origins))
            goto malformed;
        if (find_named(origins, name, NULL)) {
            snprintf(msg, msg_size, "pool \"%s\" already has an origin named \"%s\"", pool, name);
            return CHANGE_CONFLICT;
        }
        json_array_append_new(origins, json_deep_copy(origin));
        return CHANGE_OK;
    }
    const char *name = str_member(change, "origin");
    bool patch = strcmp(op, "patch_origin") == 0;
    if (!name || !(patch ? json_is_object(set) : strcmp(op, "remove_origin") == 0))
        goto malformed;
    json_t *p = change_pool(doc, pool, msg, msg_size);
    if (!p)
        return CHANGE_NOT_FOUND;
    json_t *origins = json_object_get(p, "origins");
    size_t index;
    json_t *o = find_named(origins, name, &index);
    if (!o) {
        snprintf(msg, msg_size, "no origin \"%s\" in pool \"%s\"", name, pool);
        return CHANGE_NOT_FOUND;
    }
    if (patch) {
        merge_patch(o, set);
        return CHANGE_OK;
    }
    if (json_array_size(origins) == 1) {
        snprintf(msg, msg_size, "\"%s\" is the last origin of pool \"%s\" and a pool needs "
                 "at least one: add another origin first", name, pool);
        return CHANGE_CONFLICT;
    }
    json_array_remove(origins, index);
    return CHANGE_OK;

malformed:
    snprintf(msg, msg_size, "not a change this version knows (op \"%s\")", op ? op : "?");
    return CHANGE_MALFORMED;
}

/* ---- the list ---- */

int state_init(struct admin_state *st, const char *path)
{
    *st = (struct admin_state){0};
    st->changes = json_array();
    if (path)
        st->path = strdup(path);
    if (!st->changes || (path && !st->path)) {
        state_fini(st);
        return -ENOMEM;
    }
    return 0;
}

void state_fini(struct admin_state *st)
{
    json_decref(st->changes);
    free(st->path);
    *st = (struct admin_state){0};
}

void state_clear(struct admin_state *st)
{
    json_array_clear(st->changes);
}

static bool same_member(const json_t *a, const json_t *b, const char *key)
{
    const char *x = str_member(a, key), *y = str_member(b, key);
    return x && y && strcmp(x, y) == 0;
}

/* Is change c about origin (pool, name) with operation op? */
static bool about_origin(const json_t *c, const char *op, const json_t *like)
{
    if (!same_member(c, like, "pool") || strcmp(str_member(c, "op"), op) != 0)
        return false;
    const char *name = str_member(like, "origin");
    if (!name)
        name = str_member(json_object_get(like, "origin"), "name");
    const json_t *co = json_object_get(c, "origin");
    const char *cname = json_is_object(co) ? str_member(co, "name") : json_string_value(co);
    return name && cname && strcmp(name, cname) == 0;
}

/* Index of the last change matching op for the origin of like, or -1. */
static long last_about_origin(const json_t *list, const char *op, const json_t *like)
{
    for (size_t i = json_array_size(list); i-- > 0;)
        if (about_origin(json_array_get(list, i), op, like))
            return (long)i;
    return -1;
}

void state_record(struct admin_state *st, json_t *change)
{
    json_t *list = st->changes;
    const char *op = str_member(change, "op");
    json_t *set = json_object_get(change, "set");
    json_object_set_new(change, "time", json_integer((json_int_t)time(NULL)));

    if (strcmp(op, "patch_load_balancer") == 0) {
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *c = json_array_get(list, i);
            if (strcmp(str_member(c, "op"), op) == 0 && same_member(c, change, "load_balancer")) {
                compose_patches(json_object_get(c, "set"), set);
                json_object_set(c, "time", json_object_get(change, "time"));
                return;
            }
        }
    } else if (strcmp(op, "patch_origin") == 0) {
        long added = last_about_origin(list, "add_origin", change);
        if (added >= 0) {
            json_t *c = json_array_get(list, (size_t)added);
            merge_patch(json_object_get(c, "origin"), set);
            json_object_set(c, "time", json_object_get(change, "time"));
            return;
        }
        long patched = last_about_origin(list, op, change);
        if (patched >= 0) {
            json_t *c = json_array_get(list, (size_t)patched);
            compose_patches(json_object_get(c, "set"), set);
            json_object_set(c, "time", json_object_get(change, "time"));
            return;
        }
    } else if (strcmp(op, "remove_origin") == 0) {
        long i;
        while ((i = last_about_origin(list, "patch_origin", change)) >= 0)
            json_array_remove(list, (size_t)i);
        long added = last_about_origin(list, "add_origin", change);
        if (added >= 0) {
            /* Added at run time: removing it undoes the addition (and the
             * removal of a file origin of that name before it, if any,
             * stays). */
            json_array_remove(list, (size_t)added);
            return;
        }
    }
    json_array_append(list, change);
}

/* ---- the file ---- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding path, so the rename itself is durable. */
static void sync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int state_save(const struct admin_state *st, char *err, size_t err_size)
{
    if (!st->path)
        return 0;
    int rc = 0, fd = -1;
    char *text = NULL, *tmp = NULL;
    json_t *doc = json_pack("{s:i, s:O}", "version", STATE_FILE_VERSION,
                            "changes", st->changes);
    text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (!text || asprintf(&tmp, "%s.tmp.%ld", st->path, (long)getpid()) < 0) {
        tmp = NULL;
        rc = -ENOMEM;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (rc = write_all(fd, text, strlen(text))) < 0 ||
        (rc = write_all(fd, "\n", 1)) < 0 || fsync(fd) < 0) {
        if (rc == 0)
            rc = -errno;
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, st->path) < 0) {
        rc = -errno;
        goto out;
    }
    sync_parent_dir(st->path);
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        snprintf(err, err_size, "cannot write state file %s: %s", st->path, strerror(-rc));
        if (tmp)
            unlink(tmp);
    }
    free(tmp);
    free(text);
    json_decref(doc);
    return rc;
}

void state_load(struct admin_state *st)
{
    if (!st->path)
        return;
    json_error_t jerr;
    json_t *doc = json_load_file(st->path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        if (access(st->path, F_OK) != 0 && errno == ENOENT)
            return;
        log_error("state file %s:%d:%d: %s; ignored (run-time changes recorded there are "
                  "lost; the next change rewrites it)", st->path, jerr.line, jerr.column,
                  jerr.text);
        return;
    }
    json_t *changes = json_object_get(doc, "changes");
    if (!json_is_array(changes)) {
        log_error("state file %s: no \"changes\" array; ignored (the next change rewrites it)",
                  st->path);
    } else {
        size_t i;
        json_t *c;
        json_array_foreach(changes, i, c) {
            if (json_is_object(c) && str_member(c, "op"))
                json_array_append(st->changes, c);
            else
                log_error("state file %s: changes[%zu]: not a change object; skipped",
                          st->path, i);
        }
    }
    json_decref(doc);
}

/* ---- replay ---- */

/* Describes change c for messages: "drain of app/s1", ... */
static void describe(const json_t *c, char *buf, size_t size)
{
    const char *op = str_member(c, "op");
    const json_t *origin = json_object_get(c, "origin");
    const char *name = json_is_object(origin) ? str_member(origin, "name")
                                              : json_string_value(origin);
    if (str_member(c, "load_balancer"))
        snprintf(buf, size, "%s %s", op, str_member(c, "load_balancer"));
    else
        snprintf(buf, size, "%s %s/%s", op ? op : "?", str_member(c, "pool") ?
                 str_member(c, "pool") : "?", name ? name : "?");
}

struct config *state_apply(const struct admin_state *st, struct config *cfg)
{
    size_t i;
    json_t *c;
    json_array_foreach(st->changes, i, c) {
        char what[256], msg[512];
        describe(c, what, sizeof(what));
        json_t *trial = json_deep_copy(cfg->doc);
        if (!trial) {
            log_error("state: %s: out of memory; skipped", what);
            continue;
        }
        if (change_apply(trial, c, msg, sizeof(msg)) != CHANGE_OK) {
            log_error("state: %s: %s; skipped", what, msg);
            json_decref(trial);
            continue;
        }
        struct config_errors errs = {0};
        struct config *next = config_load_json(trial, cfg->path, &errs);
        json_decref(trial);
        if (!next) {
            log_error("state: %s: the configuration refuses it (%s); skipped", what,
                      errs.count ? errs.messages[0] : "out of memory");
            config_errors_fini(&errs);
            continue;
        }
        config_free(cfg);
        cfg = next;
    }
    return cfg;
}
