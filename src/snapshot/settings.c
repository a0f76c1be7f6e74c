/*
 * settings — freeing a configuration and the read-only queries the data path
 * makes of it (see settings.h).
 */
#include "snapshot/settings.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static void free_attributes(struct cfg_affinity_attributes *a)
{
    free(a->cookie_name);
    free(a->path);
    for (size_t i = 0; i < a->num_headers; i++)
        free(a->headers[i]);
    free(a->headers);
    free(a->app_cookie.name);
    free(a->app_cookie.separator);
    free(a->app_cookie.url_parameter);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    for (size_t i = 0; i < cfg->num_listeners; i++) {
        struct cfg_listener *l = &cfg->listeners[i];
        free(l->address);
        for (size_t j = 0; j < l->num_certificates; j++) {
            free(l->certificates[j].certificate);
            free(l->certificates[j].private_key);
        }
        free(l->certificates);
    }
    free(cfg->listeners);
    free(cfg->admin.address);
    free(cfg->admin.token_file);
    free(cfg->admin.state_file);
    free(cfg->secret_file);
    for (size_t i = 0; i < cfg->num_client_regions; i++) {
        free(cfg->client_regions[i].name);
        free(cfg->client_regions[i].cidrs);
    }
    free(cfg->client_regions);
    free(cfg->trusted_proxies);
    free(cfg->access_log);
    for (size_t i = 0; i < cfg->num_monitors; i++) {
        struct cfg_monitor *m = &cfg->monitors[i];
        free(m->name);
        free(m->method);
        free(m->path);
        free(m->expected_codes);
        free(m->expected_body);
        for (size_t j = 0; j < m->num_headers; j++) {
            free(m->headers[j].name);
            free(m->headers[j].value);
        }
        free(m->headers);
    }
    free(cfg->monitors);
    for (size_t i = 0; i < cfg->num_pools; i++) {
        struct cfg_pool *p = &cfg->pools[i];
        free(p->name);
        free(p->monitor);
        for (size_t j = 0; j < p->num_origins; j++) {
            struct cfg_origin *o = &p->origins[j];
            free(o->name);
            free(o->address);
            free(o->route);
            free(o->tls_opts.ca_file);
            free(o->tls_opts.sni);
        }
        free(p->origins);
    }
    free(cfg->pools);
    for (size_t i = 0; i < cfg->num_load_balancers; i++) {
        struct cfg_load_balancer *lb = &cfg->load_balancers[i];
        free(lb->name);
        free(lb->default_pools);
        for (size_t j = 0; j < lb->num_region_pools; j++) {
            free(lb->region_pools[j].region);
            free(lb->region_pools[j].pools);
        }
        free(lb->region_pools);
        free_attributes(&lb->attributes);
    }
    free(cfg->load_balancers);
    json_decref(cfg->doc);
    free(cfg);
}

bool config_lb_uses_pool(const struct cfg_load_balancer *lb, size_t p)
{
    if (lb->fallback_pool == (long)p)
        return true;
    for (size_t k = 0; k < lb->num_default_pools; k++)
        if (lb->default_pools[k] == p)
            return true;
    for (size_t r = 0; r < lb->num_region_pools; r++)
        for (size_t k = 0; k < lb->region_pools[r].num_pools; k++)
            if (lb->region_pools[r].pools[k] == p)
                return true;
    return false;
}

double config_pool_drain_duration(const struct config *cfg, size_t p)
{
    double longest = 0;
    for (size_t i = 0; i < cfg->num_load_balancers; i++) {
        const struct cfg_load_balancer *lb = &cfg->load_balancers[i];
        if (config_lb_uses_pool(lb, p) && lb->attributes.drain_duration > longest)
            longest = lb->attributes.drain_duration;
    }
    return longest;
}

long config_pool_index(const struct config *cfg, const char *name)
{
    if (!cfg || !name)
        return -1;
    for (size_t i = 0; i < cfg->num_pools; i++)
        if (cfg->pools[i].name && strcmp(cfg->pools[i].name, name) == 0)
            return (long)i;
    return -1;
}

bool cfg_cidrs_contain(const struct cfg_cidr *cidrs, size_t n, uint8_t family,
                       const uint8_t *addr)
{
    for (size_t i = 0; i < n; i++) {
        const struct sockaddr_storage *ss = &cidrs[i].net.ss;
        const uint8_t *net;
        if (ss->ss_family == AF_INET && family == 4)
            net = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
        else if (ss->ss_family == AF_INET6 && family == 6)
            net = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        else
            continue;
        unsigned bits = cidrs[i].prefix_len;
        bool match = true;
        for (unsigned k = 0; bits > 0 && match; k++, bits = bits > 8 ? bits - 8 : 0) {
            uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
            match = (addr[k] & mask) == (net[k] & mask);
        }
        if (match)
            return true;
    }
    return false;
}
