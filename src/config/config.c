/*
 * config — the JSON config file (SPEC §2) into the typed structs of config.h.
 *
 * How it works. jansson parses the text (duplicate keys refused); a syntax
 * error becomes "FILE:LINE:COL: message" and nothing else is checked. Then a
 * *walker* visits the whole document once, section by section, filling a
 * calloc'd struct config. The walker carries the JSON path of the value being
 * looked at ("pools[0].origins[2]"), grown and shrunk like a stack: enter()
 * pushes ".key" when a key is present, path_push_index() pushes "[i]", and
 * leave() cuts the path back to the mark they returned. Every problem is
 * reported at the current path as "FILE: PATH: message" and the walk goes on,
 * so one run lists every problem; the load fails when at least one was found.
 *
 * The building blocks, from the bottom up:
 *   - value checks (want_object, want_string, want_number, want_enum, ...)
 *     look at one json_t at the current path, report, and store on success;
 *   - key getters (get_string, get_double, get_uint, get_bool, get_enum, ...)
 *     are the same for obj[key]: absent optional keys leave the default alone;
 *   - walk_array() allocates the C array for a JSON array and calls one item
 *     callback per element with "[i]" pushed;
 *   - one callback / function per schema object (listener, monitor, pool,
 *     origin, load balancer, affinity attributes, ...), each starting with
 *     want_object(), which also refuses keys not in its list.
 * Sections are walked in dependency order (regions and monitors, then pools,
 * then load balancers, then listeners), so a name is resolved to an index the
 * moment it is read. Cross-field rules (SPEC §2 "Validation") run at the end
 * of the object they concern. Finally refuse_unsupported() refuses, in one
 * list, the features this build validates but does not implement yet.
 *
 * Memory: every string in the result is malloc'd, defaults included, so
 * config_free() frees uniformly; a failed load frees the partial config the
 * same way. Out of memory is reported as an error, never a crash.
 */
#include "config/config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------ */
/* The walker: where we are in the document, and what went wrong.           */

struct walker {
    const char *file;               /* name used in messages */
    struct config_errors *errs;     /* may be NULL: errors only counted */
    size_t num_errors;
    bool oom;                       /* an allocation failed somewhere */
    char *path;                     /* current JSON path, "" at the root */
    size_t path_len;
    size_t path_cap;
};

/* Takes ownership of msg (NULL: the formatting itself ran out of memory). */
static void add_message(struct walker *w, char *msg)
{
    w->num_errors++;
    if (!msg) {
        w->oom = true;
        return;
    }
    if (!w->errs) {
        free(msg);
        return;
    }
    char **grown = realloc(w->errs->messages,
                           (w->errs->count + 1) * sizeof(*grown));
    if (!grown) {
        free(msg);
        w->oom = true;
        return;
    }
    w->errs->messages = grown;
    grown[w->errs->count++] = msg;
}

static void report_va(struct walker *w, const char *path, const char *fmt,
                      va_list ap)
{
    char *text = NULL, *msg = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    if (text) {
        int n = (path && *path)
            ? asprintf(&msg, "%s: %s: %s", w->file, path, text)
            : asprintf(&msg, "%s: %s", w->file, text);
        if (n < 0)
            msg = NULL;
    }
    free(text);
    add_message(w, msg);
}

/* Reports a problem at the current path. */
__attribute__((format(printf, 2, 3)))
static void fail(struct walker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_va(w, w->path ? w->path : "", fmt, ap);
    va_end(ap);
}

static void path_append(struct walker *w, const char *s, size_t n)
{
    if (w->path_len + n + 1 > w->path_cap) {
        size_t cap = w->path_cap ? w->path_cap : 64;
        while (cap < w->path_len + n + 1)
            cap *= 2;
        char *grown = realloc(w->path, cap);
        if (!grown) {
            w->oom = true;
            return;
        }
        w->path = grown;
        w->path_cap = cap;
    }
    memcpy(w->path + w->path_len, s, n);
    w->path_len += n;
    w->path[w->path_len] = '\0';
}

/* Pushes ".key" (control characters shown as '?'); returns the mark to
 * give back to leave(). */
static size_t path_push_key(struct walker *w, const char *key)
{
    size_t mark = w->path_len;
    if (mark > 0)
        path_append(w, ".", 1);
    for (const char *p = key; *p; p++) {
        char c = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
        path_append(w, &c, 1);
    }
    return mark;
}

static size_t path_push_index(struct walker *w, size_t i)
{
    size_t mark = w->path_len;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "[%zu]", i);
    path_append(w, buf, (size_t)n);
    return mark;
}

static void leave(struct walker *w, size_t mark)
{
    if (w->path && mark <= w->path_len) {
        w->path_len = mark;
        w->path[mark] = '\0';
    }
}

/* Reports a problem at the current path + ".key" ("a.b" for deeper). */
__attribute__((format(printf, 3, 4)))
static void fail_at(struct walker *w, const char *key, const char *fmt, ...)
{
    size_t mark = path_push_key(w, key);
    va_list ap;
    va_start(ap, fmt);
    report_va(w, w->path ? w->path : "", fmt, ap);
    va_end(ap);
    leave(w, mark);
}

static char *dup_str(struct walker *w, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        w->oom = true;
    return copy;
}

/* A user-supplied string made safe to quote in a message: control
 * characters and '"' become '?', long values are cut with "...". */
static const char *printable(char buf[static 72], const char *s)
{
    size_t i = 0;
    for (; s[i] && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
    }
    buf[i] = '\0';
    if (s[i])
        strcpy(buf + i, "...");
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Value checks: one json_t at the current path.                            */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return SIZE_MAX;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Every key of obj must be in allowed (NULL-terminated). */
static void check_keys(struct walker *w, json_t *obj, const char *const allowed[])
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        (void)value;
        const char *near = NULL;
        size_t near_dist = 3;   /* suggest only close matches */
        bool known = false;
        for (size_t i = 0; allowed[i]; i++) {
            if (strcmp(key, allowed[i]) == 0) {
                known = true;
                break;
            }
            size_t d = edit_distance(key, allowed[i]);
            if (d < near_dist) {
                near_dist = d;
                near = allowed[i];
            }
        }
        if (known)
            continue;
        if (near)
            fail_at(w, key, "unknown key (did you mean \"%s\"?)", near);
        else
            fail_at(w, key, "unknown key");
    }
}

/* An object whose keys are all in allowed. */
static bool want_object(struct walker *w, json_t *v, const char *const allowed[])
{
    if (!json_is_object(v)) {
        fail(w, "must be an object");
        return false;
    }
    check_keys(w, v, allowed);
    return true;
}

/* Checks a string's content: NULL when fine, else what it must be. */
typedef const char *(*string_check)(const char *s);

static const char *check_nonempty(const char *s)
{
    return *s ? NULL : "must be a non-empty string";
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

/* Names of pools, origins, load balancers, monitors; routes. */
static const char *check_name(const char *s)
{
    return is_token(s) ? NULL
        : "must be a non-empty name of letters, digits and !#$%&'*+-.^_`|~";
}

/* HTTP methods, header field names, cookie names (RFC 9110 token). */
static const char *check_token(const char *s)
{
    return is_token(s) ? NULL
        : "must be a non-empty token of letters, digits and !#$%&'*+-.^_`|~";
}

static bool has_ctl(const char *s, bool allow_tab)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && !(allow_tab && c == '\t')) || c == 0x7f)
            return true;
    }
    return false;
}

/* The cookie Path attribute. */
static const char *check_cookie_path(const char *s)
{
    if (s[0] != '/' || strchr(s, ';') || has_ctl(s, false))
        return "must start with \"/\" and contain no ';' or control characters";
    return NULL;
}

/* A monitor's request path (goes into a request line). */
static const char *check_request_path(const char *s)
{
    if (s[0] != '/' || strchr(s, ' ') || has_ctl(s, false))
        return "must start with \"/\" and contain no spaces or control characters";
    return NULL;
}

/* "200", "2xx", or a comma list of those ("200,302", "2xx, 3xx"). */
static const char *check_expected_codes(const char *s)
{
    static const char *const why =
        "must be a status code (\"200\"), a class (\"2xx\") or a comma-separated list of them";
    const char *p = s;
    for (;;) {
        while (*p == ' ')
            p++;
        if (!(p[0] >= '1' && p[0] <= '5'))
            return why;
        bool digits = p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9';
        bool cls = p[1] == 'x' && p[2] == 'x';
        if (!digits && !cls)
            return why;
        p += 3;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return NULL;
        if (*p != ',')
            return why;
        p++;
    }
}

/* A header value: no control characters but HTAB. */
static const char *check_field_value(const char *s)
{
    return has_ctl(s, true) ? "must contain no control characters" : NULL;
}

/* Something put inside a cookie value (RFC 6265 cookie-octets). */
static const char *check_cookie_octets(const char *s)
{
    if (!*s)
        return "must be a non-empty string";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\')
            return "must be non-empty, without spaces, control characters, '\"', ',', ';' or '\\'";
    }
    return NULL;
}

/* A host name for SNI: non-empty, no spaces or control characters. */
static const char *check_hostname(const char *s)
{
    if (!*s || strchr(s, ' ') || has_ctl(s, false))
        return "must be a non-empty host name without spaces or control characters";
    return NULL;
}

/* A string passing check (NULL: any string); stores a copy in *out. */
static bool want_string(struct walker *w, json_t *v, string_check check, char **out)
{
    if (!json_is_string(v)) {
        fail(w, "must be a string");
        return false;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        fail(w, "must not contain NUL characters");
        return false;
    }
    const char *why = check ? check(s) : NULL;
    if (why) {
        fail(w, "%s", why);
        return false;
    }
    char *copy = dup_str(w, s);
    if (!copy)
        return false;
    free(*out);
    *out = copy;
    return true;
}

/* Numeric rules: value in [lo, hi] (lo excluded when lo_open), or exactly 0
 * when or_zero; JSON integers only when integer. expect completes
 * "must be ..." in the message. */
struct num_rule {
    bool integer;
    bool lo_open;
    bool or_zero;
    double lo, hi;
    const char *expect;
};

static const struct num_rule RULE_THREADS =
    {true, false, false, 0, 256, "an integer 0..256"};
static const struct num_rule RULE_WEIGHT =
    {true, false, false, 0, 1000, "an integer 0..1000"};
static const struct num_rule RULE_CHECK_COUNT =
    {true, false, false, 1, 100, "an integer 1..100"};
static const struct num_rule RULE_MAX_CONNECTIONS =
    {true, false, false, 1, 1000000, "an integer 1..1000000"};
static const struct num_rule RULE_MAX_HEADER_BYTES =
    {true, false, false, 1024, 65536, "an integer 1024..65536"};
static const struct num_rule RULE_RETRY_BUFFER_BYTES =
    {true, false, false, 0, 16777216, "an integer 0..16777216"};
static const struct num_rule RULE_HASH_BALANCE_FACTOR =
    {true, false, true, 100, 100000, "an integer: 0 (off) or 100..100000"};
static const struct num_rule RULE_DURATION =
    {false, true, false, 0, 86400, "a number > 0 and <= 86400"};
static const struct num_rule RULE_AFFINITY_TTL =
    {false, false, true, 1, 604800, "a number: 0 or 1..604800"};
static const struct num_rule RULE_LONG_DURATION =
    {false, false, false, 0, 31536000, "a number >= 0 and <= 31536000"};
static const struct num_rule RULE_ORIGIN_MAX_CONNECTIONS =
    {true, false, false, 0, 1000000, "an integer >= 0 and <= 1000000 (0: no limit)"};
static const struct num_rule RULE_SLOW_START =
    {false, false, false, 0, 86400, "a number >= 0 and <= 86400 (0: off)"};
static const struct num_rule RULE_QUEUE_MAX =
    {true, false, false, 0, 1000000, "an integer >= 0 and <= 1000000"};
static const struct num_rule RULE_HSTS =
    {true, false, false, 0, 63072000, "an integer 0..63072000 (seconds)"};
static const struct num_rule RULE_REDIRECT =
    {true, false, false, 301, 308, "301, 302, 307 or 308"};

static bool want_number(struct walker *w, json_t *v, const struct num_rule *r,
                        double *out)
{
    bool typed = r->integer ? json_is_integer(v) : json_is_number(v);
    double d = typed ? json_number_value(v) : 0;
    bool ok = typed && ((r->or_zero && d == 0) ||
                        ((r->lo_open ? d > r->lo : d >= r->lo) && d <= r->hi));
    if (!ok) {
        fail(w, "must be %s", r->expect);
        return false;
    }
    *out = d;
    return true;
}

static bool want_bool(struct walker *w, json_t *v, bool *out)
{
    if (!json_is_boolean(v)) {
        fail(w, "must be true or false");
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* One of names (NULL-terminated); stores its index. */
static bool want_enum(struct walker *w, json_t *v, const char *const names[], int *out)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s && strlen(s) == json_string_length(v)) {
        for (int i = 0; names[i]; i++) {
            if (strcmp(s, names[i]) == 0) {
                *out = i;
                return true;
            }
        }
    }
    char list[256] = "";
    size_t len = 0;
    for (int i = 0; names[i] && len < sizeof(list); i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s\"%s\"",
                                i ? ", " : "", names[i]);
    if (s) {
        char buf[72];
        fail(w, "must be one of %s (not \"%s\")", list, printable(buf, s));
    } else {
        fail(w, "must be one of %s", list);
    }
    return false;
}

/* "host:port" with a numeric IP (addr_parse). */
static bool want_address(struct walker *w, json_t *v, char **text, struct addr *out)
{
    char *s = NULL;
    if (!want_string(w, v, NULL, &s))
        return false;
    const char *why = NULL;
    if (addr_parse(s, out, &why) != 0) {
        fail(w, "%s", why);
        free(s);
        return false;
    }
    free(*text);
    *text = s;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Key getters: obj[key]; absent optional keys leave *out as it is.         */

/* obj[key] with ".key" pushed (caller calls leave(w, *mark)), or NULL with
 * nothing pushed when absent ("missing required key" when required). */
static json_t *enter(struct walker *w, json_t *obj, const char *key, bool required,
                     size_t *mark)
{
    json_t *v = json_object_get(obj, key);
    *mark = path_push_key(w, key);
    if (!v) {
        if (required)
            fail(w, "missing required key");
        leave(w, *mark);
    }
    return v;
}

static bool get_string(struct walker *w, json_t *obj, const char *key, bool required,
                       string_check check, char **out)
{
    size_t mark;
    json_t *v = enter(w, obj, key, required, &mark);
    if (!v)
        return false;
    bool ok = want_string(w, v, check, out);
    leave(w, mark);
    return ok;
}

static bool get_double(struct walker *w, json_t *obj, const char *key,
                       const struct num_rule *rule, double *out)
{
    size_t mark;
    json_t *v = enter(w, obj, key, false, &mark);
    if (!v)
        return false;
    bool ok = want_number(w, v, rule, out);
    leave(w, mark);
    return ok;
}

static bool get_uint(struct walker *w, json_t *obj, const char *key,
                     const struct num_rule *rule, unsigned *out)
{
    double d;
    if (!get_double(w, obj, key, rule, &d))
        return false;
    *out = (unsigned)d;     /* rules keep integers within unsigned */
    return true;
}

static bool get_bool(struct walker *w, json_t *obj, const char *key, bool *out)
{
    size_t mark;
    json_t *v = enter(w, obj, key, false, &mark);
    if (!v)
        return false;
    bool ok = want_bool(w, v, out);
    leave(w, mark);
    return ok;
}

static bool get_enum(struct walker *w, json_t *obj, const char *key,
                     const char *const names[], int *out)
{
    size_t mark;
    json_t *v = enter(w, obj, key, false, &mark);
    if (!v)
        return false;
    bool ok = want_enum(w, v, names, out);
    leave(w, mark);
    return ok;
}

static bool get_address(struct walker *w, json_t *obj, const char *key,
                        char **text, struct addr *out)
{
    size_t mark;
    json_t *v = enter(w, obj, key, true, &mark);
    if (!v)
        return false;
    bool ok = want_address(w, v, text, out);
    leave(w, mark);
    return ok;
}

/* Fills *out with a copy of def when nothing was configured. */
static void default_string(struct walker *w, char **out, const char *def)
{
    if (!*out)
        *out = dup_str(w, def);
}

/* ------------------------------------------------------------------------ */
/* Arrays and name checks.                                                  */

/* Fills one C array element from one JSON array element. */
typedef void (*item_fn)(struct walker *w, json_t *item, void *elem, void *ctx);

/* Allocates count elements of elem_size for the JSON array v and fills each
 * with fn ("[i]" pushed). Returns the C array (NULL when empty or invalid). */
static void *walk_array(struct walker *w, json_t *v, bool nonempty, size_t elem_size,
                        size_t *count, item_fn fn, void *ctx)
{
    *count = 0;
    if (!json_is_array(v) || (nonempty && json_array_size(v) == 0)) {
        fail(w, nonempty ? "must be a non-empty array" : "must be an array");
        return NULL;
    }
    size_t n = json_array_size(v);
    if (n == 0)
        return NULL;
    char *items = calloc(n, elem_size);
    if (!items) {
        w->oom = true;
        return NULL;
    }
    *count = n;
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push_index(w, i);
        fn(w, json_array_get(v, i), items + i * elem_size, ctx);
        leave(w, mark);
    }
    return items;
}

/* walk_array() on obj[key]; NULL with *count 0 when absent. */
static void *get_array(struct walker *w, json_t *obj, const char *key, bool required,
                       bool nonempty, size_t elem_size, size_t *count, item_fn fn,
                       void *ctx)
{
    size_t mark;
    *count = 0;
    json_t *v = enter(w, obj, key, required, &mark);
    if (!v)
        return NULL;
    void *items = walk_array(w, v, nonempty, elem_size, count, fn, ctx);
    leave(w, mark);
    return items;
}

/* The string at byte offset off of element i. */
static const char *field_at(const void *items, size_t stride, size_t off, size_t i)
{
    return *(char *const *)((const char *)items + i * stride + off);
}

/* Reports every element of array `key` whose string field `field` repeats an
 * earlier one: "key[j].field: duplicate WHAT "x" (same as key[i])". */
static void check_unique(struct walker *w, const char *key, const void *items,
                         size_t n, size_t stride, size_t off, const char *field,
                         const char *what)
{
    for (size_t j = 1; j < n; j++) {
        const char *b = field_at(items, stride, off, j);
        if (!b)
            continue;
        for (size_t i = 0; i < j; i++) {
            const char *a = field_at(items, stride, off, i);
            if (a && strcmp(a, b) == 0) {
                size_t m1 = path_push_key(w, key);
                size_t m2 = path_push_index(w, j);
                fail_at(w, field, "duplicate %s \"%s\" (same as %s[%zu])",
                        what, b, key, i);
                leave(w, m2);
                leave(w, m1);
                break;
            }
        }
    }
}

static long find_monitor(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_monitors; i++)
        if (cfg->monitors[i].name && strcmp(cfg->monitors[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long find_load_balancer(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_load_balancers; i++)
        if (cfg->load_balancers[i].name &&
            strcmp(cfg->load_balancers[i].name, name) == 0)
            return (long)i;
    return -1;
}

static bool region_exists(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_client_regions; i++)
        if (strcmp(cfg->client_regions[i].name, name) == 0)
            return true;
    return false;
}

/* Element: a pool name, resolved to its index (SIZE_MAX when unknown).
 * ctx: the config. */
static void pool_ref_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    size_t *slot = elem;
    char *name = NULL;
    *slot = SIZE_MAX;
    if (!want_string(w, item, check_nonempty, &name))
        return;
    long idx = config_pool_index(ctx, name);
    if (idx < 0) {
        char buf[72];
        fail(w, "unknown pool \"%s\"", printable(buf, name));
    } else {
        *slot = (size_t)idx;
    }
    free(name);
}

/* A pool list (default_pools, a region's pools) naming a pool twice. */
static void check_pool_list(struct walker *w, const struct config *cfg,
                            const size_t *pools, size_t n)
{
    for (size_t j = 1; j < n; j++)
        for (size_t i = 0; i < j; i++)
            if (pools[j] != SIZE_MAX && pools[i] == pools[j]) {
                size_t mark = path_push_index(w, j);
                fail(w, "pool \"%s\" listed twice", cfg->pools[pools[j]].name);
                leave(w, mark);
                break;
            }
}

/* Element: a header field name. */
static void field_name_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    (void)ctx;
    want_string(w, item, check_token, elem);
}

/* ------------------------------------------------------------------------ */
/* Sections.                                                                */

static void walk_admin(struct walker *w, json_t *v, struct cfg_admin *admin)
{
    static const char *const keys[] = {"address", "token_file", "state_file", NULL};
    if (!want_object(w, v, keys))
        return;
    admin->enabled = true;
    get_address(w, v, "address", &admin->address, &admin->addr);
    get_string(w, v, "token_file", false, check_nonempty, &admin->token_file);
    get_string(w, v, "state_file", false, check_nonempty, &admin->state_file);
}

/* Element: "192.0.2.0/24", "2001:db8::/32" or a bare IP (a host route).
 * Host bits are cleared. */
static void cidr_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    (void)ctx;
    struct cfg_cidr *cidr = elem;
    char *text = NULL;
    if (!want_string(w, item, check_nonempty, &text))
        return;
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    if (addr_parse_ip(text, &cidr->net) != 0) {
        fail(w, "not a CIDR (ADDRESS/PREFIX): bad IP address");
        free(text);
        return;
    }
    bool v4 = cidr->net.ss.ss_family == AF_INET;
    unsigned max = v4 ? 32 : 128;
    unsigned len = max;
    if (slash) {
        const char *p = slash + 1;
        size_t digits = strspn(p, "0123456789");
        len = digits >= 1 && digits <= 3 && p[digits] == '\0'
            ? (unsigned)strtoul(p, NULL, 10) : UINT_MAX;
        if (len > max) {
            fail(w, "bad prefix length (must be 0..%u)", max);
            free(text);
            return;
        }
    }
    cidr->prefix_len = len;
    unsigned char *bytes = v4
        ? (unsigned char *)&((struct sockaddr_in *)&cidr->net.ss)->sin_addr
        : (unsigned char *)&((struct sockaddr_in6 *)&cidr->net.ss)->sin6_addr;
    for (unsigned bit = len; bit < max; bit++)
        bytes[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    free(text);
}

static void walk_client_regions(struct walker *w, json_t *v, struct config *cfg)
{
    if (!json_is_object(v)) {
        fail(w, "must be an object (region name -> array of CIDRs)");
        return;
    }
    size_t n = json_object_size(v);
    if (n == 0)
        return;
    cfg->client_regions = calloc(n, sizeof(*cfg->client_regions));
    if (!cfg->client_regions) {
        w->oom = true;
        return;
    }
    const char *name;
    json_t *cidrs;
    json_object_foreach(v, name, cidrs) {
        struct cfg_region *r = &cfg->client_regions[cfg->num_client_regions];
        size_t mark = path_push_key(w, name);
        const char *why = check_name(name);
        if (why)
            fail(w, "region name %s", why);
        r->name = dup_str(w, name);
        if (r->name) {
            cfg->num_client_regions++;
            r->cidrs = walk_array(w, cidrs, false, sizeof(*r->cidrs), &r->num_cidrs,
                                  cidr_cb, NULL);
        }
        leave(w, mark);
    }
}

static void walk_timeouts(struct walker *w, json_t *v, struct cfg_timeouts *t)
{
    static const char *const keys[] = {"connect", "client", "server",
                                       "request_header", "keepalive", "grace", NULL};
    if (!want_object(w, v, keys))
        return;
    get_double(w, v, "connect", &RULE_DURATION, &t->connect);
    get_double(w, v, "client", &RULE_DURATION, &t->client);
    get_double(w, v, "server", &RULE_DURATION, &t->server);
    get_double(w, v, "request_header", &RULE_DURATION, &t->request_header);
    get_double(w, v, "keepalive", &RULE_DURATION, &t->keepalive);
    get_double(w, v, "grace", &RULE_DURATION, &t->grace);
}

static void walk_limits(struct walker *w, json_t *v, struct cfg_limits *l)
{
    static const char *const keys[] = {"max_connections", "max_header_bytes",
                                       "retry_buffer_bytes", NULL};
    if (!want_object(w, v, keys))
        return;
    get_uint(w, v, "max_connections", &RULE_MAX_CONNECTIONS, &l->max_connections);
    get_uint(w, v, "max_header_bytes", &RULE_MAX_HEADER_BYTES, &l->max_header_bytes);
    get_uint(w, v, "retry_buffer_bytes", &RULE_RETRY_BUFFER_BYTES,
             &l->retry_buffer_bytes);
}

static void walk_log(struct walker *w, json_t *v, struct config *cfg)
{
    static const char *const keys[] = {"access", NULL};
    if (!want_object(w, v, keys))
        return;
    get_string(w, v, "access", false, check_nonempty, &cfg->access_log);
}

static const char *const MONITOR_TYPES[] = {"http", "https", "tcp", NULL};

static void walk_monitor_headers(struct walker *w, json_t *v, struct cfg_monitor *m)
{
    if (!json_is_object(v)) {
        fail(w, "must be an object (header name -> value)");
        return;
    }
    size_t n = json_object_size(v);
    if (n == 0)
        return;
    m->headers = calloc(n, sizeof(*m->headers));
    if (!m->headers) {
        w->oom = true;
        return;
    }
    const char *name;
    json_t *value;
    json_object_foreach(v, name, value) {
        size_t mark = path_push_key(w, name);
        struct cfg_header_kv *kv = &m->headers[m->num_headers++];
        if (!is_token(name))
            fail(w, "not a valid header field name");
        else
            kv->name = dup_str(w, name);
        want_string(w, value, check_field_value, &kv->value);
        leave(w, mark);
    }
}

static void monitor_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    static const char *const keys[] = {"name", "type", "method", "path",
        "expected_codes", "expected_body", "interval", "timeout", "retries",
        "rise", "header", NULL};
    struct cfg_monitor *m = elem;
    (void)ctx;
    m->type = MONITOR_HTTP;
    m->interval = 60;
    m->timeout = 5;
    m->retries = 2;
    m->rise = 2;
    if (!want_object(w, item, keys))
        return;
    int type;
    get_string(w, item, "name", true, check_name, &m->name);
    if (get_enum(w, item, "type", MONITOR_TYPES, &type))
        m->type = (enum monitor_type)type;
    get_string(w, item, "method", false, check_token, &m->method);
    get_string(w, item, "path", false, check_request_path, &m->path);
    get_string(w, item, "expected_codes", false, check_expected_codes,
               &m->expected_codes);
    get_string(w, item, "expected_body", false, NULL, &m->expected_body);
    get_double(w, item, "interval", &RULE_DURATION, &m->interval);
    get_double(w, item, "timeout", &RULE_DURATION, &m->timeout);
    get_uint(w, item, "retries", &RULE_CHECK_COUNT, &m->retries);
    get_uint(w, item, "rise", &RULE_CHECK_COUNT, &m->rise);
    size_t mark;
    json_t *header = enter(w, item, "header", false, &mark);
    if (header) {
        walk_monitor_headers(w, header, m);
        leave(w, mark);
    }
    default_string(w, &m->method, "GET");
    default_string(w, &m->path, "/");
    default_string(w, &m->expected_codes, "200");
}

static const char *const ORIGIN_STATES[] = {"enabled", "draining", "disabled", NULL};

static void walk_origin_tls(struct walker *w, json_t *v, struct cfg_origin *o)
{
    static const char *const keys[] = {"verify", "ca_file", "sni", NULL};
    if (!want_object(w, v, keys))
        return;
    o->tls = true;
    get_bool(w, v, "verify", &o->tls_opts.verify);
    get_string(w, v, "ca_file", false, check_nonempty, &o->tls_opts.ca_file);
    get_string(w, v, "sni", false, check_hostname, &o->tls_opts.sni);
}

static void origin_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    static const char *const keys[] = {"name", "address", "weight", "route",
                                       "state", "tls", "max_connections", "slow_start",
                                       NULL};
    struct cfg_origin *o = elem;
    (void)ctx;
    o->weight = 1;
    o->state = ORIGIN_ENABLED;
    o->tls_opts.verify = true;
    if (!want_object(w, item, keys))
        return;
    int state;
    get_string(w, item, "name", true, check_name, &o->name);
    get_address(w, item, "address", &o->address, &o->addr);
    get_uint(w, item, "weight", &RULE_WEIGHT, &o->weight);
    get_string(w, item, "route", false, check_name, &o->route);
    if (get_enum(w, item, "state", ORIGIN_STATES, &state))
        o->state = (enum origin_state)state;
    get_uint(w, item, "max_connections", &RULE_ORIGIN_MAX_CONNECTIONS, &o->max_connections);
    get_double(w, item, "slow_start", &RULE_SLOW_START, &o->slow_start);
    size_t mark;
    json_t *tls = enter(w, item, "tls", false, &mark);
    if (tls) {
        walk_origin_tls(w, tls, o);
        leave(w, mark);
    }
    if (o->name)
        default_string(w, &o->route, o->name);
}

static const char *const ORIGIN_STEERINGS[] = {"round_robin", "least_connections",
                                               "random", "hash", NULL};

/* pools[].passive: what live traffic counts as an origin's failure. */
static void walk_passive(struct walker *w, json_t *v, struct cfg_pool *p)
{
    static const char *const keys[] = {"http_5xx", NULL};
    if (!want_object(w, v, keys))
        return;
    get_bool(w, v, "http_5xx", &p->passive_http_5xx);
}

/* pools[].queue: how requests wait for an origin at its max_connections. */
static void walk_queue(struct walker *w, json_t *v, struct cfg_queue *q)
{
    static const char *const keys[] = {"max", "timeout", NULL};
    if (!want_object(w, v, keys))
        return;
    get_uint(w, v, "max", &RULE_QUEUE_MAX, &q->max);
    get_double(w, v, "timeout", &RULE_DURATION, &q->timeout);
}

/* ctx: the config (monitors already loaded). */
static void pool_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    static const char *const keys[] = {"name", "monitor", "origin_steering",
                                       "origins", "passive", "queue", NULL};
    const struct config *cfg = ctx;
    struct cfg_pool *p = elem;
    p->monitor_index = -1;
    p->origin_steering = STEER_ROUND_ROBIN;
    p->queue = (struct cfg_queue){.max = 1000, .timeout = 5};
    if (!want_object(w, item, keys))
        return;
    int steering;
    get_string(w, item, "name", true, check_name, &p->name);
    if (get_string(w, item, "monitor", false, check_nonempty, &p->monitor)) {
        p->monitor_index = find_monitor(cfg, p->monitor);
        if (p->monitor_index < 0) {
            char buf[72];
            fail_at(w, "monitor", "unknown monitor \"%s\"", printable(buf, p->monitor));
        }
    }
    if (get_enum(w, item, "origin_steering", ORIGIN_STEERINGS, &steering))
        p->origin_steering = (enum origin_steering)steering;
    size_t mark;
    json_t *passive = enter(w, item, "passive", false, &mark);
    if (passive) {
        walk_passive(w, passive, p);
        leave(w, mark);
    }
    json_t *queue = enter(w, item, "queue", false, &mark);
    if (queue) {
        walk_queue(w, queue, &p->queue);
        leave(w, mark);
    }
    p->origins = get_array(w, item, "origins", true, true, sizeof(*p->origins),
                           &p->num_origins, origin_cb, NULL);
    check_unique(w, "origins", p->origins, p->num_origins, sizeof(*p->origins),
                 offsetof(struct cfg_origin, name), "name", "origin name");
    /* An https monitor checks with the origin's own tls settings. */
    if (p->monitor_index >= 0 && cfg->monitors[p->monitor_index].type == MONITOR_HTTPS) {
        for (size_t o = 0; o < p->num_origins; o++) {
            if (!p->origins[o].tls && p->origins[o].name) {
                char buf[72];
                fail_at(w, "monitor", "monitor \"%s\" is https but origin \"%s\" has no "
                        "tls (add \"tls\": {} to the origin, or use an http monitor)",
                        cfg->monitors[p->monitor_index].name, printable(buf, p->origins[o].name));
                break;
            }
        }
    }
    check_unique(w, "origins", p->origins, p->num_origins, sizeof(*p->origins),
                 offsetof(struct cfg_origin, route), "route", "route");
}

static const char *const STEERING_POLICIES[] = {"off", "random", "geo", NULL};
static const char *const AFFINITIES[] = {"none", "cookie", "ip_cookie", "ip",
                                         "header", "app_cookie", NULL};
static const char *const SAMESITES[] = {"Auto", "None", "Lax", "Strict", NULL};
static const char *const SECURE_MODES[] = {"Auto", "Always", "Never", NULL};
static const char *const FAILOVER_MODES[] = {"none", "temporary", "sticky", NULL};
static const char *const APP_COOKIE_MODES[] = {"prefix", "route", NULL};

static void walk_app_cookie(struct walker *w, json_t *v, struct cfg_app_cookie *ac)
{
    static const char *const keys[] = {"name", "mode", "separator", "url_parameter",
                                       "issue", NULL};
    if (!want_object(w, v, keys))
        return;
    int mode;
    ac->present = true;
    get_string(w, v, "name", true, check_token, &ac->name);
    if (get_enum(w, v, "mode", APP_COOKIE_MODES, &mode))
        ac->mode = (enum app_cookie_mode)mode;
    get_string(w, v, "separator", false, check_cookie_octets, &ac->separator);
    default_string(w, &ac->separator, ac->mode == APP_COOKIE_ROUTE ? "." : "~");
    get_string(w, v, "url_parameter", false, check_token, &ac->url_parameter);
    get_bool(w, v, "issue", &ac->issue);
    if (ac->mode != APP_COOKIE_ROUTE) {
        /* prefix mode rewrites the cookie; neither key has a meaning there */
        if (json_object_get(v, "url_parameter"))
            fail_at(w, "url_parameter", "only with mode \"route\"");
        if (json_object_get(v, "issue"))
            fail_at(w, "issue", "only with mode \"route\"");
        free(ac->url_parameter);
        ac->url_parameter = NULL;
        ac->issue = false;
    } else if (!ac->url_parameter && ac->name) {
        /* Tomcat's ";jsessionid=" for JSESSIONID */
        ac->url_parameter = dup_str(w, ac->name);
        for (char *c = ac->url_parameter; c && *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
    }
}

static void walk_attributes(struct walker *w, json_t *v, struct cfg_affinity_attributes *a)
{
    static const char *const keys[] = {"cookie_name", "samesite", "secure",
        "httponly", "path", "max_life", "drain_duration", "zero_downtime_failover",
        "headers", "require_all_headers", "app_cookie", NULL};
    if (!want_object(w, v, keys))
        return;
    int e;
    get_string(w, v, "cookie_name", false, check_token, &a->cookie_name);
    if (get_enum(w, v, "samesite", SAMESITES, &e))
        a->samesite = (enum samesite)e;
    if (get_enum(w, v, "secure", SECURE_MODES, &e))
        a->secure = (enum secure_mode)e;
    get_bool(w, v, "httponly", &a->httponly);
    get_string(w, v, "path", false, check_cookie_path, &a->path);
    get_double(w, v, "max_life", &RULE_LONG_DURATION, &a->max_life);
    get_double(w, v, "drain_duration", &RULE_LONG_DURATION, &a->drain_duration);
    if (get_enum(w, v, "zero_downtime_failover", FAILOVER_MODES, &e))
        a->zero_downtime_failover = (enum failover_mode)e;
    a->headers = get_array(w, v, "headers", false, false, sizeof(*a->headers),
                           &a->num_headers, field_name_cb, NULL);
    get_bool(w, v, "require_all_headers", &a->require_all_headers);
    size_t mark;
    json_t *app = enter(w, v, "app_cookie", false, &mark);
    if (app) {
        walk_app_cookie(w, app, &a->app_cookie);
        leave(w, mark);
    }
}

static void walk_region_pools(struct walker *w, json_t *v, struct config *cfg,
                              struct cfg_load_balancer *lb)
{
    if (!json_is_object(v)) {
        fail(w, "must be an object (region name -> array of pool names)");
        return;
    }
    size_t n = json_object_size(v);
    if (n == 0)
        return;
    lb->region_pools = calloc(n, sizeof(*lb->region_pools));
    if (!lb->region_pools) {
        w->oom = true;
        return;
    }
    const char *region;
    json_t *pools;
    json_object_foreach(v, region, pools) {
        struct cfg_region_pools *rp = &lb->region_pools[lb->num_region_pools];
        size_t mark = path_push_key(w, region);
        if (!region_exists(cfg, region)) {
            char buf[72];
            fail(w, "unknown client region \"%s\" (not in client_regions)",
                 printable(buf, region));
        }
        rp->region = dup_str(w, region);
        if (rp->region) {
            lb->num_region_pools++;
            rp->pools = walk_array(w, pools, true, sizeof(*rp->pools), &rp->num_pools,
                                   pool_ref_cb, cfg);
            check_pool_list(w, cfg, rp->pools, rp->num_pools);
        }
        leave(w, mark);
    }
}

/* SPEC §2 "Validation" and §3: rules tying several keys together. */
static void check_affinity_rules(struct walker *w, const struct cfg_load_balancer *lb)
{
    const struct cfg_affinity_attributes *a = &lb->attributes;
    size_t mark = path_push_key(w, "session_affinity_attributes");
    if (a->samesite == SAMESITE_NONE && a->secure == SECURE_NEVER)
        fail_at(w, "samesite", "\"None\" with secure \"Never\" is refused: "
                "browsers drop SameSite=None cookies that are not Secure");
    if (a->zero_downtime_failover == FAILOVER_STICKY &&
        lb->session_affinity == AFFINITY_HEADER)
        fail_at(w, "zero_downtime_failover", "\"sticky\" is refused with "
                "session_affinity \"header\": the session key is the client's "
                "header, a cookie cannot move it");
    if (lb->session_affinity == AFFINITY_HEADER && a->num_headers == 0)
        fail_at(w, "headers", "must name at least one header when "
                "session_affinity is \"header\"");
    if (lb->session_affinity == AFFINITY_APP_COOKIE && !a->app_cookie.present)
        fail_at(w, "app_cookie", "required when session_affinity is \"app_cookie\"");
    leave(w, mark);
}

static void walk_load_balancer(struct walker *w, json_t *v, struct config *cfg,
                               struct cfg_load_balancer *lb)
{
    static const char *const keys[] = {"name", "default_pools", "fallback_pool",
        "steering_policy", "region_pools", "session_affinity",
        "session_affinity_ttl", "session_affinity_attributes",
        "hash_balance_factor", NULL};
    if (!want_object(w, v, keys))
        return;
    int e;
    size_t mark;
    json_t *sub;
    char *fallback = NULL;
    get_string(w, v, "name", true, check_name, &lb->name);
    lb->default_pools = get_array(w, v, "default_pools", true, true,
                                  sizeof(*lb->default_pools), &lb->num_default_pools,
                                  pool_ref_cb, cfg);
    mark = path_push_key(w, "default_pools");
    check_pool_list(w, cfg, lb->default_pools, lb->num_default_pools);
    leave(w, mark);
    if (get_string(w, v, "fallback_pool", false, check_nonempty, &fallback)) {
        lb->fallback_pool = config_pool_index(cfg, fallback);
        if (lb->fallback_pool < 0) {
            char buf[72];
            fail_at(w, "fallback_pool", "unknown pool \"%s\"", printable(buf, fallback));
        }
        free(fallback);
    }
    if (get_enum(w, v, "steering_policy", STEERING_POLICIES, &e))
        lb->steering_policy = (enum steering_policy)e;
    if ((sub = enter(w, v, "region_pools", false, &mark))) {
        walk_region_pools(w, sub, cfg, lb);
        leave(w, mark);
    }
    if (get_enum(w, v, "session_affinity", AFFINITIES, &e))
        lb->session_affinity = (enum session_affinity)e;
    get_double(w, v, "session_affinity_ttl", &RULE_AFFINITY_TTL,
               &lb->session_affinity_ttl);
    if ((sub = enter(w, v, "session_affinity_attributes", false, &mark))) {
        walk_attributes(w, sub, &lb->attributes);
        leave(w, mark);
    }
    get_uint(w, v, "hash_balance_factor", &RULE_HASH_BALANCE_FACTOR,
             &lb->hash_balance_factor);
    check_affinity_rules(w, lb);
}

/* ctx: the config (pools and client regions already loaded). */
static void load_balancer_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    struct cfg_load_balancer *lb = elem;
    lb->fallback_pool = -1;
    lb->session_affinity_ttl = 82800;
    lb->attributes.httponly = true;
    walk_load_balancer(w, item, ctx, lb);
    default_string(w, &lb->attributes.cookie_name, "__limpet");
    default_string(w, &lb->attributes.path, "/");
}

static void certificate_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    static const char *const keys[] = {"certificate", "private_key", NULL};
    struct cfg_tls_cert *c = elem;
    (void)ctx;
    if (!want_object(w, item, keys))
        return;
    get_string(w, item, "certificate", true, check_nonempty, &c->certificate);
    get_string(w, item, "private_key", true, check_nonempty, &c->private_key);
}

static void walk_listener_tls(struct walker *w, json_t *v, struct cfg_listener *l)
{
    static const char *const keys[] = {"certificates", NULL};
    if (!want_object(w, v, keys))
        return;
    l->tls = true;
    l->certificates = get_array(w, v, "certificates", true, true,
                                sizeof(*l->certificates), &l->num_certificates,
                                certificate_cb, NULL);
}

/* ctx: the config (load balancers already loaded). */
static void listener_cb(struct walker *w, json_t *item, void *elem, void *ctx)
{
    static const char *const keys[] = {"address", "load_balancer", "tls", "proxy_protocol",
                                       "redirect_to_https", "hsts", NULL};
    const struct config *cfg = ctx;
    struct cfg_listener *l = elem;
    if (!want_object(w, item, keys))
        return;
    char *lb = NULL;
    get_address(w, item, "address", &l->address, &l->addr);
    if (get_string(w, item, "load_balancer", true, check_nonempty, &lb)) {
        long idx = find_load_balancer(cfg, lb);
        if (idx < 0) {
            char buf[72];
            fail_at(w, "load_balancer", "unknown load balancer \"%s\"",
                    printable(buf, lb));
        }
        l->load_balancer = idx < 0 ? 0 : (size_t)idx;
        free(lb);
    }
    size_t mark;
    json_t *tls = enter(w, item, "tls", false, &mark);
    if (tls) {
        walk_listener_tls(w, tls, l);
        leave(w, mark);
    }
    get_bool(w, item, "proxy_protocol", &l->proxy_protocol);
    unsigned redirect = 0;
    if (get_uint(w, item, "redirect_to_https", &RULE_REDIRECT, &redirect)) {
        if (redirect != 301 && redirect != 302 && redirect != 307 && redirect != 308)
            fail_at(w, "redirect_to_https", "must be %s", RULE_REDIRECT.expect);
        else if (l->tls)
            fail_at(w, "redirect_to_https", "only on a listener without tls (this one "
                    "already speaks HTTPS)");
        else
            l->redirect_to_https = redirect;
    }
    if (get_uint(w, item, "hsts", &RULE_HSTS, &l->hsts)) {
        if (!l->tls)
            fail_at(w, "hsts", "only on a listener with tls (browsers ignore it over "
                    "plain HTTP)");
        else
            l->has_hsts = true;
    }
}

/* Two listeners on one address could not both bind. */
static void check_listen_addresses(struct walker *w, const struct config *cfg)
{
    for (size_t j = 1; j < cfg->num_listeners; j++) {
        const struct cfg_listener *b = &cfg->listeners[j];
        for (size_t i = 0; b->address && i < j; i++) {
            const struct cfg_listener *a = &cfg->listeners[i];
            if (a->address && a->addr.len == b->addr.len &&
                memcmp(&a->addr.ss, &b->addr.ss, a->addr.len) == 0) {
                size_t m1 = path_push_key(w, "listen");
                size_t m2 = path_push_index(w, j);
                fail_at(w, "address", "duplicate address (same as listen[%zu])", i);
                leave(w, m2);
                leave(w, m1);
                break;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Not supported yet.                                                       */

__attribute__((format(printf, 2, 3), unused))
static void refuse(struct walker *w, const char *path_fmt, ...)
{
    char path[128];
    va_list ap;
    va_start(ap, path_fmt);
    vsnprintf(path, sizeof(path), path_fmt, ap);
    va_end(ap);
    size_t mark = path_push_key(w, path);
    fail(w, "not supported yet");
    leave(w, mark);
}

/*
 * Features the schema names (and the walk above validates in full) but this
 * build does not implement yet. ONE LINE PER FEATURE: when a feature lands,
 * delete its line here and nothing else.
 */
static void refuse_unsupported(struct walker *w, const struct config *c)
{
#define REFUSE(asked, ...) do { if (asked) refuse(w, __VA_ARGS__); } while (0)
    (void)w;
    (void)c;
#undef REFUSE
}

/* ------------------------------------------------------------------------ */
/* The document.                                                            */

static void walk_root(struct walker *w, json_t *root, struct config *cfg)
{
    static const char *const keys[] = {"listen", "admin", "threads", "secret_file",
        "client_regions", "trusted_proxies", "timeouts", "limits", "log", "monitors", "pools",
        "load_balancers", NULL};
    if (!json_is_object(root)) {
        fail(w, "the top level must be a JSON object");
        return;
    }
    check_keys(w, root, keys);

    size_t mark;
    json_t *v;
    if ((v = enter(w, root, "admin", false, &mark))) {
        walk_admin(w, v, &cfg->admin);
        leave(w, mark);
    }
    get_uint(w, root, "threads", &RULE_THREADS, &cfg->threads);
    get_string(w, root, "secret_file", false, check_nonempty, &cfg->secret_file);
    if ((v = enter(w, root, "client_regions", false, &mark))) {
        walk_client_regions(w, v, cfg);
        leave(w, mark);
    }
    cfg->trusted_proxies = get_array(w, root, "trusted_proxies", false, false,
                                     sizeof(*cfg->trusted_proxies), &cfg->num_trusted_proxies,
                                     cidr_cb, NULL);
    if ((v = enter(w, root, "timeouts", false, &mark))) {
        walk_timeouts(w, v, &cfg->timeouts);
        leave(w, mark);
    }
    if ((v = enter(w, root, "limits", false, &mark))) {
        walk_limits(w, v, &cfg->limits);
        leave(w, mark);
    }
    if ((v = enter(w, root, "log", false, &mark))) {
        walk_log(w, v, cfg);
        leave(w, mark);
    }
    default_string(w, &cfg->access_log, "stdout");

    /* Dependency order: each section only names things loaded before it. */
    cfg->monitors = get_array(w, root, "monitors", false, false, sizeof(*cfg->monitors),
                              &cfg->num_monitors, monitor_cb, cfg);
    check_unique(w, "monitors", cfg->monitors, cfg->num_monitors,
                 sizeof(*cfg->monitors), offsetof(struct cfg_monitor, name), "name",
                 "monitor name");
    cfg->pools = get_array(w, root, "pools", true, true, sizeof(*cfg->pools),
                           &cfg->num_pools, pool_cb, cfg);
    check_unique(w, "pools", cfg->pools, cfg->num_pools, sizeof(*cfg->pools),
                 offsetof(struct cfg_pool, name), "name", "pool name");
    cfg->load_balancers = get_array(w, root, "load_balancers", true, true,
                                    sizeof(*cfg->load_balancers),
                                    &cfg->num_load_balancers, load_balancer_cb, cfg);
    check_unique(w, "load_balancers", cfg->load_balancers, cfg->num_load_balancers,
                 sizeof(*cfg->load_balancers),
                 offsetof(struct cfg_load_balancer, name), "name",
                 "load balancer name");
    cfg->listeners = get_array(w, root, "listen", true, true, sizeof(*cfg->listeners),
                               &cfg->num_listeners, listener_cb, cfg);
    check_listen_addresses(w, cfg);

    refuse_unsupported(w, cfg);
}

static void set_defaults(struct config *cfg)
{
    cfg->timeouts = (struct cfg_timeouts){
        .connect = 5, .client = 30, .server = 30,
        .request_header = 10, .keepalive = 60, .grace = 10,
    };
    cfg->limits = (struct cfg_limits){
        .max_connections = 10000, .max_header_bytes = 16384,
        .retry_buffer_bytes = 65536,
    };
}

/* Walks a parsed document (NULL: parsing failed, already reported). */
static struct config *build(struct walker *w, json_t *root, const char *path)
{
    struct config *cfg = NULL;
    if (root) {
        cfg = calloc(1, sizeof(*cfg));
        if (cfg) {
            set_defaults(cfg);
            if (path)
                cfg->path = dup_str(w, path);
            walk_root(w, root, cfg);
            cfg->doc = root; /* kept: the API edits it and loads the result */
            root = NULL;
        } else {
            w->oom = true;
        }
        json_decref(root);
    }
    if (w->oom) {
        w->oom = false;     /* so the message itself may be stored */
        fail(w, "out of memory");
    }
    free(w->path);
    if (w->num_errors > 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void report_syntax(struct walker *w, const json_error_t *err)
{
    /* jansson quotes the text near the error, control characters included:
     * a message stays one line. */
    char text[sizeof(err->text)];
    size_t n = 0;
    for (; err->text[n] && n < sizeof(text) - 1; n++) {
        unsigned char c = (unsigned char)err->text[n];
        text[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    text[n] = '\0';
    if (err->line >= 1) {
        char *msg = NULL;
        if (asprintf(&msg, "%s:%d:%d: %s", w->file, err->line, err->column,
                     text) < 0)
            msg = NULL;
        add_message(w, msg);
    } else {
        fail(w, "%s", text);
    }
}

static void walker_init(struct walker *w, const char *file, struct config_errors *errs)
{
    *w = (struct walker){.file = file ? file : "(config)", .errs = errs};
    if (errs)
        *errs = (struct config_errors){0};
}

struct config *config_load_file(const char *path, struct config_errors *errs)
{
    struct walker w;
    walker_init(&w, path, errs);
    if (!path) {
        fail(&w, "no config file given");
        return build(&w, NULL, NULL);
    }
    /* Opened here rather than by json_load_file() so that an unreadable
     * file is reported with the system's reason, not as a JSON error. */
    FILE *f = fopen(path, "r");
    struct stat st;
    if (!f) {
        fail(&w, "cannot open: %s", strerror(errno));
        return build(&w, NULL, NULL);
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fail(&w, "cannot read: %s", strerror(EISDIR));
        fclose(f);
        return build(&w, NULL, NULL);
    }
    json_error_t err;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root)
        report_syntax(&w, &err);
    return build(&w, root, path);
}

struct config *config_load_string(const char *json_text, const char *name,
                                  struct config_errors *errs)
{
    struct walker w;
    walker_init(&w, name, errs);
    if (!json_text) {
        fail(&w, "no config text given");
        return build(&w, NULL, NULL);
    }
    json_error_t err;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        report_syntax(&w, &err);
    return build(&w, root, NULL);
}

struct config *config_load_json(struct json_t *doc, const char *name,
                                struct config_errors *errs)
{
    struct walker w;
    walker_init(&w, name, errs);
    if (doc)
        json_incref(doc);
    else
        fail(&w, "no config document given");
    return build(&w, doc, name);
}

/* ------------------------------------------------------------------------ */
/* Freeing and lookups.                                                     */

/* ------------------------------------------------------------------------ */
/* Warnings: valid settings that will likely not do what is meant.          */

size_t config_warnings(const struct config *cfg, const char *name,
                       struct config_errors *out)
{
    struct walker w;
    walker_init(&w, name, out);
    for (size_t i = 0; i < cfg->num_load_balancers; i++) {
        const struct cfg_load_balancer *lb = &cfg->load_balancers[i];
        const struct cfg_app_cookie *ac = &lb->attributes.app_cookie;
        if (lb->session_affinity != AFFINITY_APP_COOKIE || !ac->present ||
            ac->mode != APP_COOKIE_ROUTE || ac->issue)
            continue;
        char buf[72], path[96];
        snprintf(path, sizeof(path), "load_balancers[%zu].session_affinity_attributes.app_cookie",
                 i);
        size_t mark = path_push_key(&w, path);
        fail(&w, "warning: route mode routes on cookie \"%s\", which no origin is known to "
             "set: without \"issue\": true, a client stays on one origin only when the "
             "application sets that cookie with its route (Tomcat's jvmRoute)",
             printable(buf, ac->name));
        leave(&w, mark);
    }
    free(w.path);
    return w.num_errors;
}

void config_errors_fini(struct config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->count; i++)
        free(errs->messages[i]);
    free(errs->messages);
    errs->messages = NULL;
    errs->count = 0;
}

