/*
 * settings — the typed, validated configuration (SPEC §2): what config/
 * parses a file into and what a snapshot publishes to the data path.
 *
 * A loaded configuration is immutable; references between objects are
 * resolved to indexes (pool index, monitor index, load balancer index) so the
 * data path never looks names up, and every optional key has its default.
 * This header holds the types and the few read-only queries the data path
 * needs; parsing and validation are config/'s.
 */
#ifndef LIMPET_SNAPSHOT_SETTINGS_H
#define LIMPET_SNAPSHOT_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/addr.h"

enum origin_steering {
    STEER_ROUND_ROBIN,          /* "round_robin" (default) */
    STEER_LEAST_CONNECTIONS,    /* "least_connections" */
    STEER_RANDOM,               /* "random" (power of two choices) */
    STEER_HASH,                 /* "hash" */
};

enum steering_policy {
    POLICY_OFF,                 /* "off" (default) */
    POLICY_RANDOM,              /* "random" */
    POLICY_GEO,                 /* "geo" */
};

enum session_affinity {
    AFFINITY_NONE,              /* "none" (default) */
    AFFINITY_COOKIE,            /* "cookie" */
    AFFINITY_IP_COOKIE,         /* "ip_cookie" */
    AFFINITY_IP,                /* "ip" */
    AFFINITY_HEADER,            /* "header" */
    AFFINITY_APP_COOKIE,        /* "app_cookie" */
};

enum origin_state {
    ORIGIN_ENABLED,             /* "enabled" (default) */
    ORIGIN_DRAINING,            /* "draining" */
    ORIGIN_DISABLED,            /* "disabled" */
};

enum samesite { SAMESITE_AUTO, SAMESITE_NONE, SAMESITE_LAX, SAMESITE_STRICT };
enum secure_mode { SECURE_AUTO, SECURE_ALWAYS, SECURE_NEVER };
enum failover_mode { FAILOVER_NONE, FAILOVER_TEMPORARY, FAILOVER_STICKY };
enum app_cookie_mode { APP_COOKIE_PREFIX, APP_COOKIE_ROUTE };
enum monitor_type { MONITOR_HTTP, MONITOR_HTTPS, MONITOR_TCP };

struct cfg_tls_cert {
    char *certificate;          /* PEM file path */
    char *private_key;          /* PEM file path */
};

struct cfg_listener {
    char *address;              /* as written, e.g. "127.0.0.1:8080" */
    struct addr addr;           /* parsed */
    size_t load_balancer;       /* index into config.load_balancers */
    bool tls;                   /* "tls" present */
    struct cfg_tls_cert *certificates;  /* the first is the default; others chosen by SNI */
    size_t num_certificates;
    bool proxy_protocol;        /* default false: connections start with a PROXY header */
    unsigned redirect_to_https; /* 0 (off), or 301/302/307/308: every request redirected */
    bool has_hsts;              /* "hsts" present (TLS listeners only) */
    unsigned hsts;              /* Strict-Transport-Security max-age, seconds */
};

struct cfg_admin {
    bool enabled;               /* "admin" present */
    char *address;
    struct addr addr;
    char *token_file;           /* NULL when absent */
    char *state_file;           /* NULL when absent */
};

struct cfg_header_kv {
    char *name;
    char *value;
};

struct cfg_monitor {
    char *name;
    enum monitor_type type;     /* default http */
    char *method;               /* default "GET" */
    char *path;                 /* default "/" */
    char *expected_codes;       /* default "200"; "2xx", "200,302" … */
    char *expected_body;        /* NULL when absent */
    double interval;            /* default 60 (s) */
    double timeout;             /* default 5 (s) */
    unsigned retries;           /* default 2 */
    unsigned rise;              /* default 2 */
    struct cfg_header_kv *headers;  /* "header" object */
    size_t num_headers;
};

struct cfg_origin_tls {
    bool verify;                /* default true */
    char *ca_file;              /* NULL when absent */
    char *sni;                  /* NULL when absent */
};

struct cfg_origin {
    char *name;                 /* unique within its pool */
    char *address;              /* as written */
    struct addr addr;
    unsigned weight;            /* default 1, 0..1000 (0: never chosen) */
    char *route;                /* default: the origin's name */
    enum origin_state state;    /* default enabled */
    bool tls;                   /* "tls" present */
    struct cfg_origin_tls tls_opts;
    unsigned max_connections;   /* default 0 (unlimited): requests in flight, all workers */
    double slow_start;          /* default 0 (s): weight ramp after coming back */
};

struct cfg_queue {              /* where requests wait for an origin at max_connections */
    unsigned max;               /* default 1000: requests waiting at once */
    double timeout;             /* default 5 (s): the longest wait, then 503 */
};

struct cfg_pool {
    char *name;
    char *monitor;              /* NULL when absent */
    long monitor_index;         /* index into config.monitors, -1 when none */
    enum origin_steering origin_steering;
    struct cfg_origin *origins;
    size_t num_origins;         /* at least 1 */
    bool passive_http_5xx;      /* "passive": {"http_5xx"}: 5xx answers count as failures */
    struct cfg_queue queue;
};

struct cfg_app_cookie {
    bool present;
    char *name;                 /* e.g. "JSESSIONID" */
    enum app_cookie_mode mode;  /* default prefix */
    char *separator;            /* default "~" for prefix, "." for route */
    char *url_parameter;        /* route mode: path parameter ";NAME=value"; default
                                 * the cookie name in lower case (NULL in prefix mode) */
    bool issue;                 /* route mode: limpet sets NAME=<separator><route> */
};

struct cfg_affinity_attributes {
    char *cookie_name;          /* default "__limpet" */
    enum samesite samesite;     /* default Auto */
    enum secure_mode secure;    /* default Auto */
    bool httponly;              /* default true */
    char *path;                 /* default "/" */
    double max_life;            /* default 0 (no limit) */
    double drain_duration;      /* default 0 */
    enum failover_mode zero_downtime_failover;  /* default none */
    char **headers;             /* "headers": field names */
    size_t num_headers;
    bool require_all_headers;   /* default false */
    struct cfg_app_cookie app_cookie;
};

struct cfg_region_pools {
    char *region;               /* key in config.client_regions */
    size_t *pools;              /* indexes into config.pools */
    size_t num_pools;
};

struct cfg_load_balancer {
    char *name;
    size_t *default_pools;      /* indexes into config.pools, at least 1 */
    size_t num_default_pools;
    long fallback_pool;         /* index into config.pools, -1 when none */
    enum steering_policy steering_policy;
    struct cfg_region_pools *region_pools;
    size_t num_region_pools;
    enum session_affinity session_affinity;
    double session_affinity_ttl;            /* default 82800; 0 or 1..604800 */
    struct cfg_affinity_attributes attributes;
    unsigned hash_balance_factor;           /* 0 (off) or >= 100 */
};

struct cfg_cidr {
    struct addr net;            /* network address (port unused) */
    unsigned prefix_len;
};

struct cfg_region {
    char *name;
    struct cfg_cidr *cidrs;
    size_t num_cidrs;
};

struct cfg_timeouts {           /* seconds; all > 0 */
    double connect;             /* default 5 */
    double client;              /* default 30 */
    double server;              /* default 30 */
    double request_header;      /* default 10 */
    double keepalive;           /* default 60 */
    double grace;               /* default 10 */
};

struct cfg_limits {
    unsigned max_connections;   /* default 10000, 1..1000000 */
    unsigned max_header_bytes;  /* default 16384, 1024..65536 */
    unsigned retry_buffer_bytes;/* default 65536, 0..16777216 */
};

struct json_t;

struct config {
    char *path;                 /* the file it came from (NULL for built-in) */
    struct json_t *doc;         /* the JSON document it was loaded from (owned) */
    struct cfg_listener *listeners;
    size_t num_listeners;       /* at least 1 */
    struct cfg_admin admin;
    unsigned threads;           /* 0 = one per core, max 256 */
    char *secret_file;          /* NULL when absent */
    struct cfg_region *client_regions;
    size_t num_client_regions;
    struct cfg_cidr *trusted_proxies;   /* X-Forwarded-For is believed from these */
    size_t num_trusted_proxies;
    struct cfg_timeouts timeouts;
    struct cfg_limits limits;
    char *access_log;           /* "stdout", "off" or a path; default "stdout" */
    struct cfg_monitor *monitors;
    size_t num_monitors;
    struct cfg_pool *pools;
    size_t num_pools;
    struct cfg_load_balancer *load_balancers;
    size_t num_load_balancers;
};

/* Frees a configuration (and the JSON document it was loaded from). */
void config_free(struct config *cfg);

/* Whether the load balancer may send traffic to pool p (default, region or fallback). */
bool config_lb_uses_pool(const struct cfg_load_balancer *lb, size_t p);

/* The longest drain_duration among the load balancers that use pool p:
 * how long sessions may stay on a draining origin of that pool. */
double config_pool_drain_duration(const struct config *cfg, size_t p);

/* Index of a pool by name, or -1. */
long config_pool_index(const struct config *cfg, const char *name);

/* Whether the address (family 4 or 6, its bytes) falls in one of the CIDRs. */
bool cfg_cidrs_contain(const struct cfg_cidr *cidrs, size_t n, uint8_t family,
                       const uint8_t *addr);

#endif
