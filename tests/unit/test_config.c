/*
 * Unit tests for src/config/config.c: the JSON config loader (SPEC §2).
 *
 * Fixtures are written with single quotes for readability; sq() turns them
 * into JSON. Every load goes through the name "t.json", so messages are
 * compared whole: "t.json: PATH: message" or "t.json:LINE:COL: message".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

/* ------------------------------------------------------------------------ */
/* Fixtures and helpers.                                                    */

#define LISTEN "'listen':[{'address':'127.0.0.1:8080','load_balancer':'www'}]"
#define POOLS "'pools':[{'name':'app','origins':[{'name':'s1','address':'127.0.0.1:9001'}]}]"
#define LBS "'load_balancers':[{'name':'www','default_pools':['app']}]"
#define MINIMAL "{" LISTEN "," POOLS "," LBS "}"
/* The minimal config plus top-level keys. */
#define WITH_TOP(keys) "{" LISTEN "," POOLS "," LBS "," keys "}"
/* The minimal config with extra keys in its load balancer. */
#define WITH_LB(fields) \
    "{" LISTEN "," POOLS ",'load_balancers':[{'name':'www','default_pools':['app']," \
    fields "}]}"
/* ... in its only pool. */
#define WITH_POOL(fields) \
    "{" LISTEN "," LBS ",'pools':[{'name':'app','origins':" \
    "[{'name':'s1','address':'127.0.0.1:9001'}]," fields "}]}"
/* ... in its only origin. */
#define WITH_ORIGIN(fields) \
    "{" LISTEN "," LBS ",'pools':[{'name':'app','origins':" \
    "[{'name':'s1','address':'127.0.0.1:9001'," fields "}]}]}"

static char *sq(const char *text)
{
    char *s = strdup(text);
    assert_non_null(s);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    return s;
}

static struct config *load(const char *fixture, struct config_errors *errs)
{
    char *json = sq(fixture);
    struct config *cfg = config_load_string(json, "t.json", errs);
    free(json);
    return cfg;
}

static void print_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        print_message("  error: %s\n", errs->messages[i]);
}

static bool has_error(const struct config_errors *errs, const char *msg)
{
    for (size_t i = 0; i < errs->count; i++)
        if (strcmp(errs->messages[i], msg) == 0)
            return true;
    return false;
}

#define assert_error(errs, msg) do { \
        if (!has_error((errs), (msg))) { \
            print_errors(errs); \
            fail_msg("missing error: %s", (msg)); \
        } \
    } while (0)

/* Loads a fixture that must fail, with exactly these messages (any order). */
static void expect_only(const char *fixture, const char *const msgs[])
{
    struct config_errors errs;
    struct config *cfg = load(fixture, &errs);
    assert_null(cfg);
    size_t n = 0;
    for (; msgs[n]; n++)
        assert_error(&errs, msgs[n]);
    if (errs.count != n) {
        print_errors(&errs);
        fail_msg("expected %zu errors, got %zu", n, errs.count);
    }
    config_errors_fini(&errs);
}

#define EXPECT_ONLY(fixture, ...) \
    expect_only((fixture), (const char *const[]){__VA_ARGS__, NULL})

/* Loads a fixture that must succeed. */
static struct config *load_ok(const char *fixture)
{
    struct config_errors errs;
    struct config *cfg = load(fixture, &errs);
    if (!cfg) {
        print_errors(&errs);
        fail_msg("config refused");
    }
    assert_int_equal(errs.count, 0);
    config_errors_fini(&errs);
    return cfg;
}

static unsigned port_of(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* ------------------------------------------------------------------------ */
/* Good configs.                                                            */

static void test_full_good_config(void **state)
{
    (void)state;
    struct config *cfg = load_ok("{"
        "'listen': [{'address': '127.0.0.1:8080', 'load_balancer': 'api'},"
        "           {'address': '[::1]:8443', 'load_balancer': 'www'}],"
        "'threads': 4,"
        "'timeouts': {'connect': 2.5, 'client': 31, 'server': 32,"
        "             'request_header': 11, 'keepalive': 61, 'grace': 0.25},"
        "'limits': {'max_connections': 500, 'max_header_bytes': 8192,"
        "           'retry_buffer_bytes': 0},"
        "'log': {'access': '/var/log/limpet.log'},"
        "'monitors': [],"
        "'client_regions': {},"
        "'pools': ["
        "  {'name': 'app', 'origin_steering': 'least_connections', 'origins': ["
        "     {'name': 's1', 'address': '127.0.0.1:9001', 'weight': 3, 'route': 'perftest1'},"
        "     {'name': 's2', 'address': '[2001:db8::2]:9002', 'weight': 0,"
        "      'state': 'draining'},"
        "     {'name': 's3', 'address': '10.0.0.3:9003', 'state': 'disabled'}]},"
        "  {'name': 'sorry', 'origin_steering': 'random',"
        "   'origins': [{'name': 'x', 'address': '127.0.0.1:9100'}]}],"
        "'load_balancers': ["
        "  {'name': 'www', 'default_pools': ['app'], 'fallback_pool': 'sorry',"
        "   'steering_policy': 'off', 'session_affinity': 'none',"
        "   'session_affinity_ttl': 0,"
        "   'session_affinity_attributes': {"
        "     'cookie_name': 'SRV', 'samesite': 'Strict', 'secure': 'Always',"
        "     'httponly': false, 'path': '/app', 'max_life': 3600,"
        "     'drain_duration': 100, 'zero_downtime_failover': 'sticky',"
        "     'headers': ['x-gwre-session', 'X-Tenant'], 'require_all_headers': true,"
        "     'app_cookie': {'name': 'JSESSIONID', 'mode': 'route'}},"
        "   'hash_balance_factor': 150},"
        "  {'name': 'api', 'default_pools': ['sorry', 'app']}]"
        "}");

    assert_null(cfg->path);
    assert_int_equal(cfg->num_listeners, 2);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1:8080");
    assert_int_equal(cfg->listeners[0].addr.ss.ss_family, AF_INET);
    assert_int_equal(port_of(&cfg->listeners[0].addr), 8080);
    assert_int_equal(cfg->listeners[0].load_balancer, 1);
    assert_int_equal(cfg->listeners[1].addr.ss.ss_family, AF_INET6);
    assert_int_equal(port_of(&cfg->listeners[1].addr), 8443);
    assert_int_equal(cfg->listeners[1].load_balancer, 0);
    assert_false(cfg->listeners[0].tls);
    assert_false(cfg->admin.enabled);
    assert_int_equal(cfg->threads, 4);
    assert_null(cfg->secret_file);
    assert_int_equal(cfg->num_client_regions, 0);
    assert_true(cfg->timeouts.connect == 2.5);
    assert_true(cfg->timeouts.client == 31);
    assert_true(cfg->timeouts.server == 32);
    assert_true(cfg->timeouts.request_header == 11);
    assert_true(cfg->timeouts.keepalive == 61);
    assert_true(cfg->timeouts.grace == 0.25);
    assert_int_equal(cfg->limits.max_connections, 500);
    assert_int_equal(cfg->limits.max_header_bytes, 8192);
    assert_int_equal(cfg->limits.retry_buffer_bytes, 0);
    assert_string_equal(cfg->access_log, "/var/log/limpet.log");
    assert_int_equal(cfg->num_monitors, 0);

    assert_int_equal(cfg->num_pools, 2);
    const struct cfg_pool *app = &cfg->pools[0];
    assert_string_equal(app->name, "app");
    assert_null(app->monitor);
    assert_int_equal(app->monitor_index, -1);
    assert_int_equal(app->origin_steering, STEER_LEAST_CONNECTIONS);
    assert_int_equal(app->num_origins, 3);
    assert_string_equal(app->origins[0].name, "s1");
    assert_int_equal(app->origins[0].weight, 3);
    assert_string_equal(app->origins[0].route, "perftest1");
    assert_int_equal(app->origins[0].state, ORIGIN_ENABLED);
    assert_int_equal(app->origins[1].weight, 0);
    assert_string_equal(app->origins[1].route, "s2");
    assert_int_equal(app->origins[1].state, ORIGIN_DRAINING);
    assert_int_equal(port_of(&app->origins[1].addr), 9002);
    assert_int_equal(app->origins[2].weight, 1);
    assert_int_equal(app->origins[2].state, ORIGIN_DISABLED);
    assert_false(app->origins[2].tls);
    assert_int_equal(cfg->pools[1].origin_steering, STEER_RANDOM);

    assert_int_equal(cfg->num_load_balancers, 2);
    const struct cfg_load_balancer *www = &cfg->load_balancers[0];
    assert_string_equal(www->name, "www");
    assert_int_equal(www->num_default_pools, 1);
    assert_int_equal(www->default_pools[0], 0);
    assert_int_equal(www->fallback_pool, 1);
    assert_int_equal(www->steering_policy, POLICY_OFF);
    assert_int_equal(www->num_region_pools, 0);
    assert_int_equal(www->session_affinity, AFFINITY_NONE);
    assert_true(www->session_affinity_ttl == 0);
    assert_int_equal(www->hash_balance_factor, 150);
    const struct cfg_affinity_attributes *a = &www->attributes;
    assert_string_equal(a->cookie_name, "SRV");
    assert_int_equal(a->samesite, SAMESITE_STRICT);
    assert_int_equal(a->secure, SECURE_ALWAYS);
    assert_false(a->httponly);
    assert_string_equal(a->path, "/app");
    assert_true(a->max_life == 3600);
    assert_true(a->drain_duration == 100);
    assert_int_equal(a->zero_downtime_failover, FAILOVER_STICKY);
    assert_int_equal(a->num_headers, 2);
    assert_string_equal(a->headers[0], "x-gwre-session");
    assert_string_equal(a->headers[1], "X-Tenant");
    assert_true(a->require_all_headers);
    assert_true(a->app_cookie.present);
    assert_string_equal(a->app_cookie.name, "JSESSIONID");
    assert_int_equal(a->app_cookie.mode, APP_COOKIE_ROUTE);
    assert_string_equal(a->app_cookie.separator, ".");

    const struct cfg_load_balancer *api = &cfg->load_balancers[1];
    assert_int_equal(api->num_default_pools, 2);
    assert_int_equal(api->default_pools[0], 1);
    assert_int_equal(api->default_pools[1], 0);
    assert_int_equal(api->fallback_pool, -1);

    assert_int_equal(config_pool_index(cfg, "app"), 0);
    assert_int_equal(config_pool_index(cfg, "sorry"), 1);
    assert_int_equal(config_pool_index(cfg, "nope"), -1);
    assert_int_equal(config_pool_index(cfg, NULL), -1);
    config_free(cfg);
}

static void test_minimal_config_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(MINIMAL);
    assert_int_equal(cfg->threads, 0);
    assert_true(cfg->timeouts.connect == 5);
    assert_true(cfg->timeouts.client == 30);
    assert_true(cfg->timeouts.server == 30);
    assert_true(cfg->timeouts.request_header == 10);
    assert_true(cfg->timeouts.keepalive == 60);
    assert_true(cfg->timeouts.grace == 10);
    assert_int_equal(cfg->limits.max_connections, 10000);
    assert_int_equal(cfg->limits.max_header_bytes, 16384);
    assert_int_equal(cfg->limits.retry_buffer_bytes, 65536);
    assert_string_equal(cfg->access_log, "stdout");
    const struct cfg_origin *o = &cfg->pools[0].origins[0];
    assert_int_equal(o->weight, 1);
    assert_string_equal(o->route, "s1");
    assert_int_equal(o->state, ORIGIN_ENABLED);
    assert_true(o->tls_opts.verify);
    assert_int_equal(cfg->pools[0].origin_steering, STEER_ROUND_ROBIN);
    const struct cfg_load_balancer *lb = &cfg->load_balancers[0];
    assert_int_equal(lb->fallback_pool, -1);
    assert_int_equal(lb->steering_policy, POLICY_OFF);
    assert_int_equal(lb->session_affinity, AFFINITY_NONE);
    assert_true(lb->session_affinity_ttl == 82800);
    assert_int_equal(lb->hash_balance_factor, 0);
    assert_string_equal(lb->attributes.cookie_name, "__limpet");
    assert_int_equal(lb->attributes.samesite, SAMESITE_AUTO);
    assert_int_equal(lb->attributes.secure, SECURE_AUTO);
    assert_true(lb->attributes.httponly);
    assert_string_equal(lb->attributes.path, "/");
    assert_true(lb->attributes.max_life == 0);
    assert_int_equal(lb->attributes.zero_downtime_failover, FAILOVER_NONE);
    assert_int_equal(lb->attributes.num_headers, 0);
    assert_false(lb->attributes.app_cookie.present);
    config_free(cfg);
}

static void test_app_cookie_separator_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(WITH_LB(
        "'session_affinity_attributes': {'app_cookie': {'name': 'JSESSIONID'}}"));
    const struct cfg_app_cookie *ac = &cfg->load_balancers[0].attributes.app_cookie;
    assert_int_equal(ac->mode, APP_COOKIE_PREFIX);
    assert_string_equal(ac->separator, "~");
    config_free(cfg);
    cfg = load_ok(WITH_LB("'session_affinity_attributes': {'app_cookie':"
                          " {'name': 'sid', 'mode': 'route', 'separator': '!'}}"));
    assert_string_equal(cfg->load_balancers[0].attributes.app_cookie.separator, "!");
    config_free(cfg);
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'app_cookie': {'mode': 'prefix',"
                        " 'separator': 'a;b'}}"),
                "t.json: load_balancers[0].session_affinity_attributes.app_cookie.name: "
                "missing required key",
                "t.json: load_balancers[0].session_affinity_attributes.app_cookie.separator: "
                "must be non-empty, without spaces, control characters, '\"', ',', ';' or '\\'");
}

/* app_cookie route mode: url_parameter (default the lower-cased cookie
 * name), issue; neither in prefix mode. */
static void test_app_cookie_url_parameter_and_issue(void **state)
{
    (void)state;
    struct config *cfg = load_ok(WITH_LB("'session_affinity_attributes': {'app_cookie':"
                                         " {'name': 'JSESSIONID', 'mode': 'route'}}"));
    const struct cfg_app_cookie *ac = &cfg->load_balancers[0].attributes.app_cookie;
    assert_string_equal(ac->url_parameter, "jsessionid");
    assert_false(ac->issue);
    config_free(cfg);
    cfg = load_ok(WITH_LB("'session_affinity_attributes': {'app_cookie': {'name': 'ROUTEID',"
                          " 'mode': 'route', 'issue': true, 'url_parameter': 'Route_ID'}}"));
    ac = &cfg->load_balancers[0].attributes.app_cookie;
    assert_string_equal(ac->url_parameter, "Route_ID");
    assert_true(ac->issue);
    config_free(cfg);
    cfg = load_ok(WITH_LB("'session_affinity_attributes': {'app_cookie': {'name': 'SID'}}"));
    assert_null(cfg->load_balancers[0].attributes.app_cookie.url_parameter);
    config_free(cfg);

#define AC "t.json: load_balancers[0].session_affinity_attributes.app_cookie."
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'app_cookie': {'name': 'SID',"
                        " 'mode': 'route', 'issue': 'yes', 'url_parameter': ''}}"),
                AC "url_parameter: must be a non-empty token of letters, digits and "
                "!#$%&'*+-.^_`|~",
                AC "issue: must be true or false");
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'app_cookie': {'name': 'SID',"
                        " 'mode': 'route', 'url_parameter': 'a=b'}}"),
                AC "url_parameter: must be a non-empty token of letters, digits and "
                "!#$%&'*+-.^_`|~");
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'app_cookie': {'name': 'SID',"
                        " 'issue': true, 'url_parameter': 'sid'}}"),
                AC "url_parameter: only with mode \"route\"",
                AC "issue: only with mode \"route\"");
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'app_cookie': {'name': 'SID',"
                        " 'mode': 'route', 'isue': true}}"),
                AC "isue: unknown key (did you mean \"issue\"?)");
#undef AC
}

/* pools[].passive: an object with http_5xx, a boolean (default false). */
static void test_pool_passive(void **state)
{
    (void)state;
    struct config *cfg = load_ok(MINIMAL);
    assert_false(cfg->pools[0].passive_http_5xx);
    config_free(cfg);
    cfg = load_ok(WITH_POOL("'passive': {'http_5xx': true}"));
    assert_true(cfg->pools[0].passive_http_5xx);
    config_free(cfg);
    cfg = load_ok(WITH_POOL("'passive': {}"));
    assert_false(cfg->pools[0].passive_http_5xx);
    config_free(cfg);
    EXPECT_ONLY(WITH_POOL("'passive': {'http_5xx': 1}"),
                "t.json: pools[0].passive.http_5xx: must be true or false");
    EXPECT_ONLY(WITH_POOL("'passive': true"), "t.json: pools[0].passive: must be an object");
    EXPECT_ONLY(WITH_POOL("'passive': {'http_5xx': false, 'timeouts': true}"),
                "t.json: pools[0].passive.timeouts: unknown key");
    EXPECT_ONLY(WITH_POOL("'pasive': {}"),
                "t.json: pools[0].pasive: unknown key (did you mean \"passive\"?)");
}

/* Warnings: a route-mode app_cookie that nothing is known to set. */
static void test_warnings(void **state)
{
    (void)state;
    struct config_errors w;
    struct config *cfg = load_ok(WITH_LB("'session_affinity': 'app_cookie',"
        "'session_affinity_attributes': {'app_cookie': {'name': 'ROUTEID', 'mode': 'route'}}"));
    assert_int_equal(config_warnings(cfg, "t.json", &w), 1);
    assert_int_equal(w.count, 1);
    assert_string_equal(w.messages[0],
        "t.json: load_balancers[0].session_affinity_attributes.app_cookie: warning: route "
        "mode routes on cookie \"ROUTEID\", which no origin is known to set: without "
        "\"issue\": true, a client stays on one origin only when the application sets that "
        "cookie with its route (Tomcat's jvmRoute)");
    config_errors_fini(&w);
    config_free(cfg);

    static const char *const quiet[] = {
        MINIMAL,
        WITH_LB("'session_affinity': 'app_cookie', 'session_affinity_attributes':"
                " {'app_cookie': {'name': 'ROUTEID', 'mode': 'route', 'issue': true}}"),
        WITH_LB("'session_affinity': 'app_cookie', 'session_affinity_attributes':"
                " {'app_cookie': {'name': 'JSESSIONID', 'mode': 'prefix'}}"),
        WITH_LB("'session_affinity': 'cookie', 'session_affinity_attributes':"
                " {'app_cookie': {'name': 'JSESSIONID', 'mode': 'route'}}"),
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++) {
        cfg = load_ok(quiet[i]);
        assert_int_equal(config_warnings(cfg, "t.json", &w), 0);
        assert_int_equal(w.count, 0);
        config_errors_fini(&w);
        config_free(cfg);
    }
}

/* ------------------------------------------------------------------------ */
/* Files.                                                                   */

static void test_temp_file_round_trip(void **state)
{
    (void)state;
    char path[] = "/tmp/limpet-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *json = sq(MINIMAL);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    free(json);

    struct config_errors errs;
    struct config *cfg = config_load_file(path, &errs);
    assert_non_null(cfg);
    assert_int_equal(errs.count, 0);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->pools[0].origins[0].address, "127.0.0.1:9001");
    config_free(cfg);
    config_errors_fini(&errs);

    /* A syntax error in a file names the file, line and column. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\n  \"threads\": 1,\n  \"listen\": [}\n", f);
    fclose(f);
    cfg = config_load_file(path, &errs);
    assert_null(cfg);
    assert_int_equal(errs.count, 1);
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s:3:", path);
    assert_memory_equal(errs.messages[0], prefix, strlen(prefix));
    config_errors_fini(&errs);
    unlink(path);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct config_errors errs;
    assert_null(config_load_file("/nonexistent/limpet.json", &errs));
    assert_int_equal(errs.count, 1);
    char want[256];
    snprintf(want, sizeof(want), "/nonexistent/limpet.json: cannot open: %s",
             strerror(ENOENT));
    assert_string_equal(errs.messages[0], want);
    config_errors_fini(&errs);

    assert_null(config_load_file("/tmp", &errs));
    assert_int_equal(errs.count, 1);
    snprintf(want, sizeof(want), "/tmp: cannot read: %s", strerror(EISDIR));
    assert_string_equal(errs.messages[0], want);
    config_errors_fini(&errs);
}

/* ------------------------------------------------------------------------ */
/* Syntax.                                                                  */

static void test_syntax_error_line_col(void **state)
{
    (void)state;
    struct config_errors errs;
    assert_null(config_load_string("{\n  \"threads\": 4,\n  \"listen\": [,]\n}",
                                   "t.json", &errs));
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.messages[0],
                        "t.json:3:14: unexpected token near ','");
    config_errors_fini(&errs);

    /* Duplicate keys are refused by the parser, with a position. */
    assert_null(config_load_string("{\"threads\": 1,\n \"threads\": 2}", "t.json", &errs));
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.messages[0], "t.json:2:"));
    assert_non_null(strstr(errs.messages[0], "duplicate object key"));
    config_errors_fini(&errs);

    /* The text jansson quotes near an error may hold control characters: the
     * message stays one line (found by fuzz_config). */
    assert_null(config_load_string("{\"listen\": [{\"\\u000\n\": 1}]}", "t.json", &errs));
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.messages[0], "t.json:2:0: invalid escape near '\"\\u000?'");
    config_errors_fini(&errs);

    /* NUL inside a string, an empty text, a bare value: reported, no crash. */
    assert_null(config_load_string("{\"threads\": \"a\\u0000b\"}", "t.json", &errs));
    assert_int_equal(errs.count, 1);
    assert_memory_equal(errs.messages[0], "t.json:1:", 9);
    config_errors_fini(&errs);
    assert_null(config_load_string("", "t.json", &errs));
    assert_int_equal(errs.count, 1);
    config_errors_fini(&errs);
    assert_null(config_load_string("42", "t.json", &errs));
    assert_int_equal(errs.count, 1);
    config_errors_fini(&errs);
    assert_null(config_load_string(NULL, "t.json", &errs));
    assert_int_equal(errs.count, 1);
    config_errors_fini(&errs);
}

static void test_top_level_not_object(void **state)
{
    (void)state;
    EXPECT_ONLY("[1, 2]", "t.json: the top level must be a JSON object");
}

/* ------------------------------------------------------------------------ */
/* Keys, names, references.                                                 */

static void test_unknown_keys(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_TOP("'bogus': 1, 'thread': 2"),
                "t.json: bogus: unknown key",
                "t.json: thread: unknown key (did you mean \"threads\"?)");
    EXPECT_ONLY("{" LISTEN "," LBS ",'pools':[{'name':'app','origins':["
                "{'name':'s1','address':'127.0.0.1:9001'},"
                "{'name':'s2','address':'127.0.0.1:9002','wieght':2}]}]}",
                "t.json: pools[0].origins[1].wieght: unknown key (did you mean \"weight\"?)");
    EXPECT_ONLY("{'listen':[{'address':'127.0.0.1:8080','load_balancer':'www','bogus':true}],"
                POOLS "," LBS "}",
                "t.json: listen[0].bogus: unknown key");
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'cookie': 'x'}"),
                "t.json: load_balancers[0].session_affinity_attributes.cookie: unknown key");
    EXPECT_ONLY(WITH_TOP("'timeouts': {'conect': 1}, 'log': {'error': 'x'}"),
                "t.json: timeouts.conect: unknown key (did you mean \"connect\"?)",
                "t.json: log.error: unknown key");
}

static void test_missing_required(void **state)
{
    (void)state;
    EXPECT_ONLY("{}",
                "t.json: listen: missing required key",
                "t.json: pools: missing required key",
                "t.json: load_balancers: missing required key");
    EXPECT_ONLY("{'listen': [], 'pools': [], 'load_balancers': []}",
                "t.json: listen: must be a non-empty array",
                "t.json: pools: must be a non-empty array",
                "t.json: load_balancers: must be a non-empty array");
    EXPECT_ONLY("{'listen':[{}],'pools':[{'origins':[{}]}],'load_balancers':[{}]}",
                "t.json: listen[0].address: missing required key",
                "t.json: listen[0].load_balancer: missing required key",
                "t.json: pools[0].name: missing required key",
                "t.json: pools[0].origins[0].name: missing required key",
                "t.json: pools[0].origins[0].address: missing required key",
                "t.json: load_balancers[0].name: missing required key",
                "t.json: load_balancers[0].default_pools: missing required key");
}

static void test_dangling_references(void **state)
{
    (void)state;
    EXPECT_ONLY("{" LISTEN "," POOLS ",'load_balancers':[{'name':'www',"
                "'default_pools':['app','nope'],'fallback_pool':'gone'}]}",
                "t.json: load_balancers[0].default_pools[1]: unknown pool \"nope\"",
                "t.json: load_balancers[0].fallback_pool: unknown pool \"gone\"");
    EXPECT_ONLY("{'listen':[{'address':'127.0.0.1:8080','load_balancer':'wwww'}],"
                POOLS "," LBS "}",
                "t.json: listen[0].load_balancer: unknown load balancer \"wwww\"");
    EXPECT_ONLY(WITH_POOL("'monitor': 'status'"),
                "t.json: pools[0].monitor: unknown monitor \"status\"");
    EXPECT_ONLY("{" LISTEN "," POOLS ",'load_balancers':[{'name':'www',"
                "'default_pools':['app','app']}]}",
                "t.json: load_balancers[0].default_pools[1]: pool \"app\" listed twice");
}

static void test_duplicate_names(void **state)
{
    (void)state;
    EXPECT_ONLY("{" LISTEN "," LBS ",'pools':["
                "{'name':'app','origins':[{'name':'s1','address':'127.0.0.1:9001'}]},"
                "{'name':'b','origins':[{'name':'s1','address':'127.0.0.1:9002'}]},"
                "{'name':'app','origins':[{'name':'s1','address':'127.0.0.1:9003'}]}]}",
                "t.json: pools[2].name: duplicate pool name \"app\" (same as pools[0])");
    EXPECT_ONLY("{" LISTEN "," LBS ",'pools':[{'name':'app','origins':["
                "{'name':'s1','address':'127.0.0.1:9001'},"
                "{'name':'s2','address':'127.0.0.1:9002','route':'r'},"
                "{'name':'s1','address':'127.0.0.1:9003','route':'r'}]}]}",
                "t.json: pools[0].origins[2].name: duplicate origin name \"s1\" (same as origins[0])",
                "t.json: pools[0].origins[2].route: duplicate route \"r\" (same as origins[1])");
    EXPECT_ONLY("{" LISTEN "," POOLS ",'load_balancers':["
                "{'name':'www','default_pools':['app']},{'name':'www','default_pools':['app']}]}",
                "t.json: load_balancers[1].name: duplicate load balancer name \"www\" "
                "(same as load_balancers[0])");
    EXPECT_ONLY("{" POOLS "," LBS ",'listen':["
                "{'address':'127.0.0.1:8080','load_balancer':'www'},"
                "{'address':'127.0.0.1:8080','load_balancer':'www'}]}",
                "t.json: listen[1].address: duplicate address (same as listen[0])");
}

static void test_bad_names(void **state)
{
    (void)state;
    EXPECT_ONLY("{" LISTEN "," LBS ",'pools':[{'name':'app','origins':["
                "{'name':'','address':'127.0.0.1:9001'},"
                "{'name':'a b','address':'127.0.0.1:9002','route':'x;y'}]}]}",
                "t.json: pools[0].origins[0].name: must be a non-empty name of letters, "
                "digits and !#$%&'*+-.^_`|~",
                "t.json: pools[0].origins[1].name: must be a non-empty name of letters, "
                "digits and !#$%&'*+-.^_`|~",
                "t.json: pools[0].origins[1].route: must be a non-empty name of letters, "
                "digits and !#$%&'*+-.^_`|~");
}

/* ------------------------------------------------------------------------ */
/* Values.                                                                  */

static void test_bad_addresses(void **state)
{
    (void)state;
    EXPECT_ONLY("{" LBS ",'listen':[{'address':'localhost:8080','load_balancer':'www'},"
                "{'address':'','load_balancer':'www'}],"
                "'pools':[{'name':'app','origins':["
                "{'name':'a','address':'127.0.0.1'},"
                "{'name':'b','address':'127.0.0.1:0'},"
                "{'name':'c','address':'127.0.0.1:65536'},"
                "{'name':'d','address':'[::1]8080'},"
                "{'name':'e','address':'::1:8080'},"
                "{'name':'f','address':'300.1.1.1:80'},"
                "{'name':'g','address':'1.2.3.4:8x'},"
                "{'name':'h','address':'[127.0.0.1]:80'},"
                "{'name':'i','address':80},"
                "{'name':'j','address':'[2001:db8::1]:443'}]}]}",
                "t.json: listen[0].address: bad IP address",
                "t.json: listen[1].address: not host:port",
                "t.json: pools[0].origins[0].address: not host:port",
                "t.json: pools[0].origins[1].address: bad port",
                "t.json: pools[0].origins[2].address: bad port",
                "t.json: pools[0].origins[3].address: not host:port",
                "t.json: pools[0].origins[4].address: not host:port",
                "t.json: pools[0].origins[5].address: bad IP address",
                "t.json: pools[0].origins[6].address: bad port",
                "t.json: pools[0].origins[7].address: bad IP address",
                "t.json: pools[0].origins[8].address: must be a string");
}

static void test_ttl_range(void **state)
{
    (void)state;
    const char *msg = "must be a number: 0 or 1..604800";
    char want[200];
    snprintf(want, sizeof(want), "t.json: load_balancers[0].session_affinity_ttl: %s", msg);
    EXPECT_ONLY(WITH_LB("'session_affinity_ttl': 604801"), want);
    EXPECT_ONLY(WITH_LB("'session_affinity_ttl': 0.5"), want);
    EXPECT_ONLY(WITH_LB("'session_affinity_ttl': -1"), want);
    EXPECT_ONLY(WITH_LB("'session_affinity_ttl': '3600'"), want);
    struct config *cfg = load_ok(WITH_LB("'session_affinity_ttl': 604800"));
    assert_true(cfg->load_balancers[0].session_affinity_ttl == 604800);
    config_free(cfg);
    cfg = load_ok(WITH_LB("'session_affinity_ttl': 1.5"));
    assert_true(cfg->load_balancers[0].session_affinity_ttl == 1.5);
    config_free(cfg);
}

static void test_integer_ranges(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_TOP("'threads': 257"), "t.json: threads: must be an integer 0..256");
    EXPECT_ONLY(WITH_TOP("'threads': -1"), "t.json: threads: must be an integer 0..256");
    EXPECT_ONLY(WITH_TOP("'threads': 2.0"), "t.json: threads: must be an integer 0..256");
    EXPECT_ONLY(WITH_TOP("'threads': 99999999999999999"),
                "t.json: threads: must be an integer 0..256");
    EXPECT_ONLY(WITH_TOP("'limits': {'max_connections': 0, 'max_header_bytes': 1023,"
                         " 'retry_buffer_bytes': 16777217}"),
                "t.json: limits.max_connections: must be an integer 1..1000000",
                "t.json: limits.max_header_bytes: must be an integer 1024..65536",
                "t.json: limits.retry_buffer_bytes: must be an integer 0..16777216");
    EXPECT_ONLY(WITH_ORIGIN("'weight': 1001"),
                "t.json: pools[0].origins[0].weight: must be an integer 0..1000");
    EXPECT_ONLY(WITH_LB("'hash_balance_factor': 50"),
                "t.json: load_balancers[0].hash_balance_factor: must be an integer: "
                "0 (off) or 100..100000");
    struct config *cfg = load_ok(WITH_LB("'hash_balance_factor': 100"));
    assert_int_equal(cfg->load_balancers[0].hash_balance_factor, 100);
    config_free(cfg);
}

static void test_timeouts(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_TOP("'timeouts': {'connect': 0, 'client': -1, 'server': 86401,"
                         " 'grace': 'x', 'keepalive': null}"),
                "t.json: timeouts.connect: must be a number > 0 and <= 86400",
                "t.json: timeouts.client: must be a number > 0 and <= 86400",
                "t.json: timeouts.server: must be a number > 0 and <= 86400",
                "t.json: timeouts.grace: must be a number > 0 and <= 86400",
                "t.json: timeouts.keepalive: must be a number > 0 and <= 86400");
    struct config *cfg = load_ok(WITH_TOP("'timeouts': {'keepalive': 86400}"));
    assert_true(cfg->timeouts.keepalive == 86400);
    assert_true(cfg->timeouts.connect == 5);
    config_free(cfg);
}

static void test_wrong_types(void **state)
{
    (void)state;
    EXPECT_ONLY("{'listen': {}, 'pools': null, 'load_balancers': 'www', 'threads': '4',"
                " 'timeouts': [], 'limits': 1, 'log': 'stdout', 'monitors': {}}",
                "t.json: listen: must be a non-empty array",
                "t.json: pools: must be a non-empty array",
                "t.json: load_balancers: must be a non-empty array",
                "t.json: threads: must be an integer 0..256",
                "t.json: timeouts: must be an object",
                "t.json: limits: must be an object",
                "t.json: log: must be an object",
                "t.json: monitors: must be an array");
    EXPECT_ONLY("{'listen': [7], 'pools': [[]], 'load_balancers': [null]}",
                "t.json: listen[0]: must be an object",
                "t.json: pools[0]: must be an object",
                "t.json: load_balancers[0]: must be an object");
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'httponly': 'yes', 'headers': 'x',"
                        " 'max_life': -1, 'samesite': 'lax', 'cookie_name': 'a=b',"
                        " 'path': 'app'}"),
                "t.json: load_balancers[0].session_affinity_attributes.httponly: "
                "must be true or false",
                "t.json: load_balancers[0].session_affinity_attributes.headers: "
                "must be an array",
                "t.json: load_balancers[0].session_affinity_attributes.max_life: "
                "must be a number >= 0 and <= 31536000",
                "t.json: load_balancers[0].session_affinity_attributes.samesite: "
                "must be one of \"Auto\", \"None\", \"Lax\", \"Strict\" (not \"lax\")",
                "t.json: load_balancers[0].session_affinity_attributes.cookie_name: "
                "must be a non-empty token of letters, digits and !#$%&'*+-.^_`|~",
                "t.json: load_balancers[0].session_affinity_attributes.path: "
                "must start with \"/\" and contain no ';' or control characters");
    EXPECT_ONLY(WITH_ORIGIN("'state': 'up', 'weight': 1.5"),
                "t.json: pools[0].origins[0].weight: must be an integer 0..1000",
                "t.json: pools[0].origins[0].state: must be one of \"enabled\", "
                "\"draining\", \"disabled\" (not \"up\")");
    EXPECT_ONLY(WITH_POOL("'origin_steering': 3"),
                "t.json: pools[0].origin_steering: must be one of \"round_robin\", "
                "\"least_connections\", \"random\", \"hash\"");
}

/* ------------------------------------------------------------------------ */
/* Cross rules.                                                             */

static void test_samesite_none_secure_never(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'samesite': 'None',"
                        " 'secure': 'Never'}"),
                "t.json: load_balancers[0].session_affinity_attributes.samesite: "
                "\"None\" with secure \"Never\" is refused: browsers drop SameSite=None "
                "cookies that are not Secure");
    struct config *cfg = load_ok(WITH_LB("'session_affinity_attributes': "
                                         "{'samesite': 'None', 'secure': 'Auto'}"));
    assert_int_equal(cfg->load_balancers[0].attributes.samesite, SAMESITE_NONE);
    config_free(cfg);
}

static void test_sticky_with_header(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_LB("'session_affinity': 'header', 'session_affinity_attributes':"
                        " {'headers': ['x-gwre-session'], 'zero_downtime_failover': 'sticky'}"),
                "t.json: load_balancers[0].session_affinity_attributes.zero_downtime_failover: "
                "\"sticky\" is refused with session_affinity \"header\": the session key is "
                "the client's header, a cookie cannot move it");
}

static void test_affinity_mode_requirements(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_LB("'session_affinity': 'header'"),
                "t.json: load_balancers[0].session_affinity_attributes.headers: "
                "must name at least one header when session_affinity is \"header\"");
    EXPECT_ONLY(WITH_LB("'session_affinity': 'app_cookie',"
                        " 'session_affinity_attributes': {}"),
                "t.json: load_balancers[0].session_affinity_attributes.app_cookie: "
                "required when session_affinity is \"app_cookie\"");
    EXPECT_ONLY(WITH_LB("'session_affinity_attributes': {'headers': ['ok', 'bad header']}"),
                "t.json: load_balancers[0].session_affinity_attributes.headers[1]: "
                "must be a non-empty token of letters, digits and !#$%&'*+-.^_`|~");
}

/* ------------------------------------------------------------------------ */
/* Many errors; the SPEC example; TLS keys.                                 */

static void test_multiple_errors_at_once(void **state)
{
    (void)state;
    struct config_errors errs;
    struct config *cfg = load("{'listen':[{'address':'nope','load_balancer':'x'}],"
                              "'threads': 1000, 'extra': 1,"
                              "'pools':[{'name':'app','origins':[{'name':'s1',"
                              "'address':'127.0.0.1:9001','weight':-5}]}],"
                              "'load_balancers':[{'name':'www','default_pools':['zz'],"
                              "'session_affinity_ttl': 1e9}]}", &errs);
    assert_null(cfg);
    assert_error(&errs, "t.json: listen[0].address: not host:port");
    assert_error(&errs, "t.json: listen[0].load_balancer: unknown load balancer \"x\"");
    assert_error(&errs, "t.json: threads: must be an integer 0..256");
    assert_error(&errs, "t.json: extra: unknown key");
    assert_error(&errs, "t.json: pools[0].origins[0].weight: must be an integer 0..1000");
    assert_error(&errs, "t.json: load_balancers[0].default_pools[0]: unknown pool \"zz\"");
    assert_error(&errs, "t.json: load_balancers[0].session_affinity_ttl: "
                        "must be a number: 0 or 1..604800");
    assert_int_equal(errs.count, 7);
    config_errors_fini(&errs);
}

/* SPEC §2's example, completed with its abridged pools: valid in full (TLS
 * included; the files it names are only read when a snapshot is built). */
static const char SPEC_EXAMPLE[] = "{"
    "'listen': ["
    "  {'address': '127.0.0.1:8080', 'load_balancer': 'www'},"
    "  {'address': '[::1]:8443', 'load_balancer': 'www',"
    "   'tls': {'certificates': [{'certificate': 'cert.pem', 'private_key': 'key.pem'}]}}],"
    "'admin': {'address': '127.0.0.1:8081', 'token_file': 'admin.token',"
    "          'state_file': 'limpet.state'},"
    "'threads': 0,"
    "'secret_file': 'affinity.key',"
    "'client_regions': {'EU': ['192.0.2.0/24', '2001:db8::/32']},"
    "'timeouts': {'connect': 5, 'client': 30, 'server': 30, 'request_header': 10,"
    "             'keepalive': 60, 'grace': 10},"
    "'limits': {'max_connections': 10000, 'max_header_bytes': 16384,"
    "           'retry_buffer_bytes': 65536},"
    "'log': {'access': 'stdout'},"
    "'monitors': ["
    "  {'name': 'status', 'type': 'http', 'method': 'GET', 'path': '/status',"
    "   'expected_codes': '200', 'expected_body': 'RUNNING',"
    "   'interval': 5, 'timeout': 2, 'retries': 2, 'rise': 2,"
    "   'header': {'Host': 'app.internal'}}],"
    "'pools': ["
    "  {'name': 'app', 'monitor': 'status', 'origin_steering': 'round_robin',"
    "   'origins': ["
    "     {'name': 's1', 'address': '127.0.0.1:9001', 'weight': 1, 'route': 'perftest1'},"
    "     {'name': 's2', 'address': '127.0.0.1:9002', 'weight': 1, 'route': 'perftest2',"
    "      'state': 'enabled'}]},"
    "  {'name': 'app-dr', 'origins': [{'name': 's1', 'address': '127.0.0.1:9011'}]},"
    "  {'name': 'app-eu', 'origins': [{'name': 's1', 'address': '127.0.0.1:9021'}]},"
    "  {'name': 'sorry', 'origins': [{'name': 's1', 'address': '127.0.0.1:9031'}]}],"
    "'load_balancers': ["
    "  {'name': 'www', 'default_pools': ['app', 'app-dr'], 'fallback_pool': 'sorry',"
    "   'steering_policy': 'off',"
    "   'region_pools': {'EU': ['app-eu']},"
    "   'session_affinity': 'cookie',"
    "   'session_affinity_ttl': 82800,"
    "   'session_affinity_attributes': {"
    "     'cookie_name': '__limpet', 'samesite': 'Auto', 'secure': 'Auto',"
    "     'httponly': true, 'path': '/', 'max_life': 0,"
    "     'drain_duration': 100, 'zero_downtime_failover': 'temporary',"
    "     'headers': ['x-gwre-session'], 'require_all_headers': false,"
    "     'app_cookie': {'name': 'JSESSIONID', 'mode': 'prefix', 'separator': '~'}},"
    "   'hash_balance_factor': 0}]"
    "}";

static void test_spec_example_loads(void **state)
{
    (void)state;
    struct config *cfg = load_ok(SPEC_EXAMPLE);
    assert_int_equal(cfg->num_listeners, 2);
    assert_false(cfg->listeners[0].tls);
    assert_true(cfg->listeners[1].tls);
    assert_int_equal(cfg->listeners[1].num_certificates, 1);
    assert_string_equal(cfg->listeners[1].certificates[0].certificate, "cert.pem");
    assert_string_equal(cfg->listeners[1].certificates[0].private_key, "key.pem");
    assert_false(cfg->listeners[1].has_hsts);
    assert_int_equal(cfg->listeners[0].redirect_to_https, 0);
    config_free(cfg);
}

static void test_origin_tls_and_other_paths(void **state)
{
    (void)state;
    struct config *cfg = load_ok("{" LISTEN ",'pools':[{'name':'app','origin_steering':'hash',"
                "'origins':[{'name':'s1','address':'127.0.0.1:9001',"
                " 'tls':{'verify':false,'ca_file':'ca.pem','sni':'app.internal'}},"
                "{'name':'s2','address':'127.0.0.1:9002','tls':{}}]}],"
                "'load_balancers':[{'name':'www','default_pools':['app'],"
                "'steering_policy':'random'},"
                "{'name':'geo','default_pools':['app'],'steering_policy':'geo',"
                "'session_affinity':'ip'}]}");
    const struct cfg_origin *o = cfg->pools[0].origins;
    assert_true(o[0].tls);
    assert_false(o[0].tls_opts.verify);
    assert_string_equal(o[0].tls_opts.ca_file, "ca.pem");
    assert_string_equal(o[0].tls_opts.sni, "app.internal");
    assert_true(o[1].tls);
    assert_true(o[1].tls_opts.verify);   /* the default */
    assert_null(o[1].tls_opts.ca_file);  /* the system's trust store */
    assert_null(o[1].tls_opts.sni);
    config_free(cfg);
    /* Validated in full: only its own errors. */
    EXPECT_ONLY(WITH_TOP("'admin': {'address': 'localhost', 'port': 1}"),
                "t.json: admin.address: not host:port",
                "t.json: admin.port: unknown key");
    /* Empty monitors / client_regions ask for nothing. */
    cfg = load_ok(WITH_TOP("'monitors': [], 'client_regions': {}"));
    config_free(cfg);
}

static void test_client_regions_validation(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_TOP("'client_regions': {'EU': ['192.0.2.0/33', '2001:db8::/129',"
                         " 'abc/8', '10.0.0.0/', '10.0.0.0/8x', 7, '10.0.0.1',"
                         " '2001:db8::/128', '0.0.0.0/0'], 'US': 'x'}"),
                "t.json: client_regions.EU[0]: bad prefix length (must be 0..32)",
                "t.json: client_regions.EU[1]: bad prefix length (must be 0..128)",
                "t.json: client_regions.EU[2]: not a CIDR (ADDRESS/PREFIX): bad IP address",
                "t.json: client_regions.EU[3]: bad prefix length (must be 0..32)",
                "t.json: client_regions.EU[4]: bad prefix length (must be 0..32)",
                "t.json: client_regions.EU[5]: must be a string",
                "t.json: client_regions.US: must be an array");
    struct config *ok = load_ok(WITH_TOP("'client_regions': {'EU': ['192.0.2.0/24']}"));
    assert_int_equal(ok->num_client_regions, 1);
    assert_int_equal(ok->client_regions[0].cidrs[0].prefix_len, 24);
    config_free(ok);
    /* region_pools names a region that must exist, and existing pools. */
    EXPECT_ONLY(WITH_LB("'region_pools': {'ASIA': ['app'], 'EU': ['nope']}"),
                "t.json: load_balancers[0].region_pools.ASIA: unknown client region "
                "\"ASIA\" (not in client_regions)",
                "t.json: load_balancers[0].region_pools.EU: unknown client region "
                "\"EU\" (not in client_regions)",
                "t.json: load_balancers[0].region_pools.EU[0]: unknown pool \"nope\"");
}

/* Issue 11: PROXY protocol listeners, trusted_proxies, origin limits. */
static void test_proxy_and_limits_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(MINIMAL);
    assert_false(cfg->listeners[0].proxy_protocol);
    assert_int_equal(cfg->num_trusted_proxies, 0);
    assert_int_equal(cfg->pools[0].origins[0].max_connections, 0);
    assert_true(cfg->pools[0].origins[0].slow_start == 0);
    assert_int_equal(cfg->pools[0].queue.max, 1000);
    assert_true(cfg->pools[0].queue.timeout == 5);
    config_free(cfg);
    cfg = load_ok("{'listen':[{'address':'127.0.0.1:8080','load_balancer':'www',"
                  "'proxy_protocol':true}]," LBS ",'trusted_proxies':['10.0.0.0/8','::1'],"
                  "'pools':[{'name':'app','queue':{'max':0,'timeout':0.25},'origins':"
                  "[{'name':'s1','address':'127.0.0.1:9001','max_connections':200,"
                  "'slow_start':30.5}]}]}");
    assert_true(cfg->listeners[0].proxy_protocol);
    assert_int_equal(cfg->num_trusted_proxies, 2);
    assert_int_equal(cfg->trusted_proxies[0].prefix_len, 8);
    assert_int_equal(cfg->trusted_proxies[1].prefix_len, 128);
    const uint8_t ten[4] = {10, 1, 2, 3}, eleven[4] = {11, 0, 0, 1};
    const uint8_t one6[16] = {[15] = 1};
    assert_true(cfg_cidrs_contain(cfg->trusted_proxies, 2, 4, ten));
    assert_false(cfg_cidrs_contain(cfg->trusted_proxies, 2, 4, eleven));
    assert_true(cfg_cidrs_contain(cfg->trusted_proxies, 2, 6, one6));
    assert_false(cfg_cidrs_contain(cfg->trusted_proxies, 2, 6, ten)); /* family matters */
    assert_int_equal(cfg->pools[0].origins[0].max_connections, 200);
    assert_true(cfg->pools[0].origins[0].slow_start == 30.5);
    assert_int_equal(cfg->pools[0].queue.max, 0);
    assert_true(cfg->pools[0].queue.timeout == 0.25);
    config_free(cfg);
}

static void test_proxy_and_limits_validation(void **state)
{
    (void)state;
    EXPECT_ONLY("{'listen':[{'address':'127.0.0.1:8080','load_balancer':'www',"
                "'proxy_protocol':1}]," POOLS "," LBS "}",
                "t.json: listen[0].proxy_protocol: must be true or false");
    EXPECT_ONLY(WITH_TOP("'trusted_proxies': {'a': 1}"),
                "t.json: trusted_proxies: must be an array");
    EXPECT_ONLY(WITH_TOP("'trusted_proxies': ['10.0.0.0/8', 'proxy.example', 7, '::/129']"),
                "t.json: trusted_proxies[1]: not a CIDR (ADDRESS/PREFIX): bad IP address",
                "t.json: trusted_proxies[2]: must be a string",
                "t.json: trusted_proxies[3]: bad prefix length (must be 0..128)");
    EXPECT_ONLY(WITH_ORIGIN("'max_connections': -1, 'slow_start': -0.5"),
                "t.json: pools[0].origins[0].max_connections: must be an integer >= 0 and "
                "<= 1000000 (0: no limit)",
                "t.json: pools[0].origins[0].slow_start: must be a number >= 0 and <= 86400 "
                "(0: off)");
    EXPECT_ONLY(WITH_ORIGIN("'max_connections': '10', 'slow_start': true"),
                "t.json: pools[0].origins[0].max_connections: must be an integer >= 0 and "
                "<= 1000000 (0: no limit)",
                "t.json: pools[0].origins[0].slow_start: must be a number >= 0 and <= 86400 "
                "(0: off)");
    EXPECT_ONLY(WITH_POOL("'queue': {'max': 1.5, 'timeout': 0, 'size': 3}"),
                "t.json: pools[0].queue.size: unknown key",
                "t.json: pools[0].queue.max: must be an integer >= 0 and <= 1000000",
                "t.json: pools[0].queue.timeout: must be a number > 0 and <= 86400");
    EXPECT_ONLY(WITH_POOL("'queue': 5"), "t.json: pools[0].queue: must be an object");
}

static void test_monitor_validation(void **state)
{
    (void)state;
    EXPECT_ONLY(WITH_TOP("'monitors': [{'name': 'm', 'type': 'udp', 'method': 'G ET',"
                         " 'path': 'status', 'expected_codes': '2x0', 'interval': 0,"
                         " 'timeout': -2, 'retries': 0, 'rise': 101,"
                         " 'header': {'Bad Name': 'v', 'X-Ok': 1}},"
                         " {'name': 'm'}]"),
                "t.json: monitors[0].type: must be one of \"http\", \"https\", \"tcp\" "
                "(not \"udp\")",
                "t.json: monitors[0].method: must be a non-empty token of letters, digits "
                "and !#$%&'*+-.^_`|~",
                "t.json: monitors[0].path: must start with \"/\" and contain no spaces or "
                "control characters",
                "t.json: monitors[0].expected_codes: must be a status code (\"200\"), a class "
                "(\"2xx\") or a comma-separated list of them",
                "t.json: monitors[0].interval: must be a number > 0 and <= 86400",
                "t.json: monitors[0].timeout: must be a number > 0 and <= 86400",
                "t.json: monitors[0].retries: must be an integer 1..100",
                "t.json: monitors[0].rise: must be an integer 1..100",
                "t.json: monitors[0].header.Bad Name: not a valid header field name",
                "t.json: monitors[0].header.X-Ok: must be a string",
                "t.json: monitors[1].name: duplicate monitor name \"m\" (same as monitors[0])");
    /* Valid code lists pass. */
    struct config *cfg = load_ok(WITH_TOP("'monitors': [{'name': 'a', 'expected_codes':"
                                          " '200, 302,3xx'},"
                                          " {'name': 'b', 'expected_codes': '2xx',"
                                          " 'type': 'tcp'}]"));
    assert_int_equal(cfg->num_monitors, 2);
    assert_int_equal(cfg->monitors[1].type, MONITOR_TCP);
    config_free(cfg);
    /* An https monitor is fine alone; a pool using it needs origins with tls. */
    cfg = load_ok(WITH_TOP("'monitors': [{'name': 'a'}, {'name': 'b', 'type': 'https'}]"));
    assert_int_equal(cfg->monitors[1].type, MONITOR_HTTPS);
    config_free(cfg);
    EXPECT_ONLY("{" LISTEN "," LBS ",'monitors': [{'name': 'b', 'type': 'https'}],"
                "'pools':[{'name':'app','monitor':'b','origins':["
                "{'name':'s1','address':'127.0.0.1:9001','tls':{}},"
                "{'name':'s2','address':'127.0.0.1:9002'}]}]}",
                "t.json: pools[0].monitor: monitor \"b\" is https but origin \"s2\" has no tls "
                "(add \"tls\": {} to the origin, or use an http monitor)");
    cfg = load_ok("{" LISTEN "," LBS ",'monitors': [{'name': 'b', 'type': 'https'}],"
                  "'pools':[{'name':'app','monitor':'b','origins':["
                  "{'name':'s1','address':'127.0.0.1:9001','tls':{'sni':'a.test'}}]}]}");
    config_free(cfg);
    EXPECT_ONLY(WITH_TOP("'monitors': [{'name': 'a', 'expected_codes': '200,'}]"),
                "t.json: monitors[0].expected_codes: must be a status code (\"200\"), a "
                "class (\"2xx\") or a comma-separated list of them");
}

static void test_listener_tls_validation(void **state)
{
    (void)state;
    EXPECT_ONLY("{" POOLS "," LBS ",'listen':[{'address':'127.0.0.1:8443',"
                "'load_balancer':'www','tls':{'certificates':[{'certificate':'c.pem'},"
                "{'certificate':'','private_key':'k.pem','x':1}]}}]}",
                "t.json: listen[0].tls.certificates[0].private_key: missing required key",
                "t.json: listen[0].tls.certificates[1].certificate: must be a non-empty string",
                "t.json: listen[0].tls.certificates[1].x: unknown key");
    EXPECT_ONLY("{" POOLS "," LBS ",'listen':[{'address':'127.0.0.1:8443',"
                "'load_balancer':'www','tls':{}}]}",
                "t.json: listen[0].tls.certificates: missing required key");
    /* Several certificates (SNI), hsts on TLS, a redirect on plain HTTP. */
    struct config *cfg = load_ok("{" POOLS "," LBS ",'listen':["
        "{'address':'127.0.0.1:8443','load_balancer':'www','hsts':31536000,"
        " 'tls':{'certificates':[{'certificate':'a.pem','private_key':'a.key'},"
        "                        {'certificate':'b.pem','private_key':'b.key'}]}},"
        "{'address':'127.0.0.1:8080','load_balancer':'www','redirect_to_https':308}]}");
    assert_int_equal(cfg->listeners[0].num_certificates, 2);
    assert_string_equal(cfg->listeners[0].certificates[1].certificate, "b.pem");
    assert_true(cfg->listeners[0].has_hsts);
    assert_int_equal(cfg->listeners[0].hsts, 31536000);
    assert_int_equal(cfg->listeners[1].redirect_to_https, 308);
    assert_false(cfg->listeners[1].has_hsts);
    config_free(cfg);
    EXPECT_ONLY("{" POOLS "," LBS ",'listen':["
        "{'address':'127.0.0.1:8443','load_balancer':'www','redirect_to_https':301,"
        " 'tls':{'certificates':[{'certificate':'a.pem','private_key':'a.key'}]}},"
        "{'address':'127.0.0.1:8080','load_balancer':'www','hsts':10},"
        "{'address':'127.0.0.1:8081','load_balancer':'www','redirect_to_https':303},"
        "{'address':'127.0.0.1:8082','load_balancer':'www','redirect_to_https':true,"
        " 'hsts':-1}]}",
        "t.json: listen[0].redirect_to_https: only on a listener without tls (this one "
        "already speaks HTTPS)",
        "t.json: listen[1].hsts: only on a listener with tls (browsers ignore it over plain HTTP)",
        "t.json: listen[2].redirect_to_https: must be 301, 302, 307 or 308",
        "t.json: listen[3].redirect_to_https: must be 301, 302, 307 or 308",
        "t.json: listen[3].hsts: must be an integer 0..63072000 (seconds)");
}

static void test_messages_sanitized(void **state)
{
    (void)state;
    /* Control characters in keys and values never reach a message raw. */
    EXPECT_ONLY(WITH_TOP("'a\\nb': 1"),
                "t.json: a?b: unknown key");
    EXPECT_ONLY(WITH_LB("'fallback_pool': 'x\\ny\\\"z'"),
                "t.json: load_balancers[0].fallback_pool: unknown pool \"x?y?z\"");
}

/* ------------------------------------------------------------------------ */
/* Robustness.                                                              */

static void test_api_null_safety(void **state)
{
    (void)state;
    config_free(NULL);
    config_errors_fini(NULL);
    struct config_errors errs = {0};
    config_errors_fini(&errs);
    assert_int_equal(config_pool_index(NULL, "app"), -1);
    /* errs may be NULL: the load still fails. */
    char *json = sq("{'listen': 1}");
    assert_null(config_load_string(json, "t.json", NULL));
    free(json);
    /* A successful load leaves errs empty. */
    struct config *cfg = load_ok(MINIMAL);
    config_free(cfg);
}

/* Replaces every value of SPEC_EXAMPLE, one at a time, by each junk value,
 * and loads the result: must never crash or leak, and junk where a valid
 * value was is nearly always refused. */
static const char *const JUNK[] = {
    "null", "true", "0", "-1", "1.5", "1e300", "-9223372036854775808",
    "\"\"", "\"x\"", "\"\\u0001\"", "[]", "[null]", "{}", "{\"\": null}",
};

static json_t *junk_value(size_t i)
{
    json_t *v = json_loads(JUNK[i], JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    return v;
}

static size_t loads_done;

static void try_doc(json_t *root)
{
    char *text = json_dumps(root, 0);
    assert_non_null(text);
    struct config_errors errs;
    struct config *cfg = config_load_string(text, "t.json", &errs);
    /* Whatever happened, a config comes with no errors, none without. */
    assert_true((cfg != NULL) == (errs.count == 0));
    config_free(cfg);
    config_errors_fini(&errs);
    free(text);
    loads_done++;
}

static void mutate_all(json_t *root, json_t *node)
{
    if (json_is_object(node)) {
        const char *key;
        json_t *child;
        void *tmp;
        json_object_foreach_safe(node, tmp, key, child) {
            json_incref(child);
            for (size_t j = 0; j < sizeof(JUNK) / sizeof(JUNK[0]); j++) {
                json_object_set_new(node, key, junk_value(j));
                try_doc(root);
            }
            json_object_set(node, key, child);
            mutate_all(root, child);
            json_decref(child);
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *child = json_incref(json_array_get(node, i));
            for (size_t j = 0; j < sizeof(JUNK) / sizeof(JUNK[0]); j++) {
                json_array_set_new(node, i, junk_value(j));
                try_doc(root);
            }
            json_array_set(node, i, child);
            mutate_all(root, child);
            json_decref(child);
        }
    }
}

static void test_never_crashes_on_junk(void **state)
{
    (void)state;
    char *text = sq(SPEC_EXAMPLE);
    json_t *root = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(root);
    loads_done = 0;
    mutate_all(root, root);
    json_decref(root);
    assert_true(loads_done > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_good_config),
        cmocka_unit_test(test_minimal_config_defaults),
        cmocka_unit_test(test_app_cookie_separator_defaults),
        cmocka_unit_test(test_app_cookie_url_parameter_and_issue),
        cmocka_unit_test(test_pool_passive),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_temp_file_round_trip),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_syntax_error_line_col),
        cmocka_unit_test(test_top_level_not_object),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_dangling_references),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_ttl_range),
        cmocka_unit_test(test_integer_ranges),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_samesite_none_secure_never),
        cmocka_unit_test(test_sticky_with_header),
        cmocka_unit_test(test_affinity_mode_requirements),
        cmocka_unit_test(test_multiple_errors_at_once),
        cmocka_unit_test(test_spec_example_loads),
        cmocka_unit_test(test_origin_tls_and_other_paths),
        cmocka_unit_test(test_client_regions_validation),
        cmocka_unit_test(test_proxy_and_limits_defaults),
        cmocka_unit_test(test_proxy_and_limits_validation),
        cmocka_unit_test(test_monitor_validation),
        cmocka_unit_test(test_listener_tls_validation),
        cmocka_unit_test(test_messages_sanitized),
        cmocka_unit_test(test_api_null_safety),
        cmocka_unit_test(test_never_crashes_on_junk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
