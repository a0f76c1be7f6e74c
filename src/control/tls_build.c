/*
 * tls_build — TLS contexts of a snapshot base (see tls_build.h).
 */
#include "control/tls_build.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/addr.h"
#include "core/log.h"
#include "core/tls.h"

/* Where problems go: the first into err (a build), or each to report (-t). */
struct reporter {
    char *err;
    size_t err_size;
    void (*report)(void *arg, const char *problem);
    void *arg;
    unsigned count;
};

__attribute__((format(printf, 2, 3)))
static void problem(struct reporter *r, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->report)
        r->report(r->arg, msg);
    else if (r->count == 0 && r->err)
        snprintf(r->err, r->err_size, "%s", msg);
    r->count++;
}

/* OpenSSL's reason for the last failure, or `fallback`. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    return reason ? reason : fallback;
}

/* A key with a passphrase is refused rather than prompting on a terminal. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* Whether path can be opened for reading; *why gets the reason. */
static bool readable(const char *path, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = strerror(errno);
        return false;
    }
    fclose(f);
    return true;
}

/* ---- handshake counters, per listener address, for the life of the process ---- */

struct stats_entry {
    char *address;
    struct tls_counters *per_worker;
};
static struct stats_entry *stats_reg;  /* control thread only */
static size_t stats_len;

static struct tls_counters *stats_for(const char *address, unsigned workers)
{
    for (size_t i = 0; i < stats_len; i++)
        if (strcmp(stats_reg[i].address, address) == 0)
            return stats_reg[i].per_worker;
    struct stats_entry *grown = realloc(stats_reg, (stats_len + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    stats_reg = grown;
    size_t size = (workers ? workers : 1) * sizeof(struct tls_counters);
    struct tls_counters *c = aligned_alloc(64, size);
    char *name = strdup(address);
    if (!c || !name) {
        free(c);
        free(name);
        return NULL;
    }
    memset(c, 0, size);
    stats_reg[stats_len++] = (struct stats_entry){.address = name, .per_worker = c};
    return c;
}

/* ---- certificate information ---- */

static char *x509_names(X509 *x)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = names ? sk_GENERAL_NAME_num(names) : 0;
    bool first = true;
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_DNS) {
            fprintf(f, "%s%.*s", first ? "" : ", ", ASN1_STRING_length(g->d.dNSName),
                    (const char *)ASN1_STRING_get0_data(g->d.dNSName));
            first = false;
        } else if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "?";
            int l = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *b = ASN1_STRING_get0_data(g->d.iPAddress);
            if (l == 4 || l == 16)
                inet_ntop(l == 4 ? AF_INET : AF_INET6, b, ip, sizeof(ip));
            fprintf(f, "%s%s", first ? "" : ", ", ip);
            first = false;
        }
    }
    GENERAL_NAMES_free(names);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static char *key_type(X509 *x)
{
    EVP_PKEY *pk = X509_get0_pubkey(x);
    char buf[64] = "unknown";
    if (pk) {
        int id = EVP_PKEY_get_base_id(pk);
        char group[48] = "";
        size_t glen = 0;
        if (id == EVP_PKEY_RSA)
            snprintf(buf, sizeof(buf), "RSA %d", EVP_PKEY_get_bits(pk));
        else if (id == EVP_PKEY_EC && EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) == 1)
            snprintf(buf, sizeof(buf), "EC %s", group);
        else
            snprintf(buf, sizeof(buf), "%s", OBJ_nid2sn(id));
    }
    return strdup(buf);
}

static int fill_info(struct tls_cert_info *in, const struct cfg_tls_cert *c, X509 *x)
{
    char cn[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    struct tm tm;
    in->not_after = ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1 ? (int64_t)timegm(&tm) : 0;
    in->certificate = strdup(c->certificate);
    in->private_key = strdup(c->private_key);
    in->subject = strdup(cn);
    in->names = x509_names(x);
    in->key_type = key_type(x);
    return in->certificate && in->private_key && in->subject && in->names && in->key_type ? 0 : -1;
}

/* ---- listeners ---- */

/* A server context for one certificate and key (path: its JSON path). */
static SSL_CTX *cert_ctx(struct reporter *r, const char *path, const struct cfg_tls_cert *c,
                         const char *sid, struct tls_cert_info *info)
{
    const char *why;
    if (!readable(c->certificate, &why)) {
        problem(r, "%s.certificate: \"%s\": cannot read: %s", path, c->certificate, why);
        return NULL;
    }
    if (!readable(c->private_key, &why)) {
        problem(r, "%s.private_key: \"%s\": cannot read: %s", path, c->private_key, why);
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || tls_server_ctx_setup(ctx, sid) < 0) {
        problem(r, "%s: cannot make a TLS context: %s", path, ssl_reason("out of memory"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase_cb);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->certificate) != 1) {
        problem(r, "%s.certificate: \"%s\": not a PEM certificate chain (%s)", path,
                c->certificate, ssl_reason("unreadable"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    ERR_clear_error();
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_file(c->private_key, "r");
    if (bio)
        key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
    BIO_free(bio);
    if (!key) {
        problem(r, "%s.private_key: \"%s\": not a PEM private key, or protected by a "
                "passphrase (%s)", path, c->private_key, ssl_reason("unreadable"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    ERR_clear_error();
    bool ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    if (!ok) {
        problem(r, "%s.private_key: \"%s\" does not match the certificate \"%s\" (%s)", path,
                c->private_key, c->certificate, ssl_reason("key mismatch"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    if (!leaf || fill_info(info, c, leaf) < 0) {
        problem(r, "%s: out of memory", path);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void warn_expiry(const char *path, const struct tls_cert_info *in)
{
    int64_t now = (int64_t)time(NULL);
    if (in->not_after && in->not_after < now)
        log_error("%s: the certificate \"%s\" expired %lld days ago; serving it anyway",
                  path, in->certificate, (long long)((now - in->not_after) / 86400));
}

/* The server context of listener i (its default certificate's), or NULL. */
static SSL_CTX *listener_ctx(struct reporter *r, const struct cfg_listener *l, size_t i,
                             bool warn)
{
    struct tls_server *srv = calloc(1, sizeof(*srv));
    if (srv) {
        srv->ctx = calloc(l->num_certificates, sizeof(*srv->ctx));
        srv->info = calloc(l->num_certificates, sizeof(*srv->info));
    }
    if (!srv || !srv->ctx || !srv->info) {
        problem(r, "listen[%zu].tls: out of memory", i);
        tls_server_free(srv);
        return NULL;
    }
    srv->num_certs = l->num_certificates;
    char sid[64];
    snprintf(sid, sizeof(sid), "limpet %s", l->address);
    bool ok = true;
    for (size_t k = 0; k < l->num_certificates; k++) {
        char path[96];
        snprintf(path, sizeof(path), "listen[%zu].tls.certificates[%zu]", i, k);
        srv->ctx[k] = cert_ctx(r, path, &l->certificates[k], sid, &srv->info[k]);
        if (!srv->ctx[k])
            ok = false;
        else if (warn)
            warn_expiry(path, &srv->info[k]);
    }
    if (!ok || tls_server_attach(srv) < 0) {
        if (ok)
            problem(r, "listen[%zu].tls: cannot set up the TLS context", i);
        tls_server_free(srv);
        return NULL;
    }
    return srv->ctx[0];   /* owns srv from now on */
}

/* ":PORT" of the first TLS listener of load balancer lb ("" for 443 or none). */
static void https_port(const struct config *cfg, size_t lb, char out[8])
{
    out[0] = '\0';
    for (size_t i = 0; i < cfg->num_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        if (!l->tls || l->load_balancer != lb)
            continue;
        unsigned port = l->addr.ss.ss_family == AF_INET6
                            ? ntohs(((const struct sockaddr_in6 *)&l->addr.ss)->sin6_port)
                            : ntohs(((const struct sockaddr_in *)&l->addr.ss)->sin_port);
        if (port != 443)
            snprintf(out, 8, ":%u", port);
        return;
    }
}

/* ---- origins ---- */

static uint64_t next_client_id = 1;   /* control thread only */

/* Client contexts made by one build, shared by origins with the same trust. */
struct client_ctx_cache {
    struct {
        bool verify;
        const char *ca_file;
        SSL_CTX *ctx;
    } items[64];
    size_t n;
};

static SSL_CTX *client_ctx(struct reporter *r, struct client_ctx_cache *cache, const char *path,
                           const struct cfg_origin_tls *t)
{
    for (size_t i = 0; i < cache->n; i++) {
        if (cache->items[i].verify == t->verify &&
            ((!cache->items[i].ca_file && !t->ca_file) ||
             (cache->items[i].ca_file && t->ca_file &&
              strcmp(cache->items[i].ca_file, t->ca_file) == 0))) {
            SSL_CTX_up_ref(cache->items[i].ctx);
            return cache->items[i].ctx;
        }
    }
    const char *why;
    if (t->ca_file && !readable(t->ca_file, &why)) {
        problem(r, "%s.ca_file: \"%s\": cannot read: %s", path, t->ca_file, why);
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    bool ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
              SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9) == 0;
    if (!ok) {
        problem(r, "%s: cannot make a TLS context: %s", path, ssl_reason("out of memory"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);   /* with the transport's socket BIO: see core/tls.c */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (t->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* a ca_file may hold the origin's own certificate or an intermediate */
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
        ok = t->ca_file ? SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) == 1
                        : SSL_CTX_set_default_verify_paths(ctx) == 1;
        if (!ok) {
            if (t->ca_file)
                problem(r, "%s.ca_file: \"%s\": no PEM certificate in it (%s)", path, t->ca_file,
                        ssl_reason("unreadable"));
            else
                problem(r, "%s: cannot load the system's trusted certificates (%s)", path,
                        ssl_reason("unknown error"));
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cache->n < sizeof(cache->items) / sizeof(cache->items[0])) {
        cache->items[cache->n].verify = t->verify;
        cache->items[cache->n].ca_file = t->ca_file;
        cache->items[cache->n].ctx = ctx;
        cache->n++;
        SSL_CTX_up_ref(ctx);   /* the cache's own reference */
    }
    return ctx;
}

static void client_free(struct tls_client *tc)
{
    if (!tc)
        return;
    SSL_CTX_free(tc->ctx);
    free(tc->sni);
    free(tc->verify_ip);
    free(tc);
}

static struct tls_client *origin_client(struct reporter *r, struct client_ctx_cache *cache,
                                        const struct cfg_origin *o, size_t p, size_t k)
{
    char path[96];
    snprintf(path, sizeof(path), "pools[%zu].origins[%zu].tls", p, k);
    SSL_CTX *ctx = client_ctx(r, cache, path, &o->tls_opts);
    if (!ctx)
        return NULL;
    struct tls_client *tc = calloc(1, sizeof(*tc));
    char ip[INET6_ADDRSTRLEN];
    addr_ip_string(&o->addr, ip, sizeof(ip));
    if (tc) {
        tc->ctx = ctx;
        tc->verify = o->tls_opts.verify;
        tc->id = next_client_id++;
        tc->sni = o->tls_opts.sni ? strdup(o->tls_opts.sni) : NULL;
        tc->verify_ip = strdup(ip);
    }
    if (!tc || (o->tls_opts.sni && !tc->sni) || !tc->verify_ip) {
        problem(r, "%s: out of memory", path);
        if (tc)
            client_free(tc);
        else
            SSL_CTX_free(ctx);
        return NULL;
    }
    return tc;
}

static void cache_fini(struct client_ctx_cache *cache)
{
    for (size_t i = 0; i < cache->n; i++)
        SSL_CTX_free(cache->items[i].ctx);
    cache->n = 0;
}

/* ---- bases ---- */

static int build(struct snapshot_base *b, unsigned workers, struct reporter *r, bool warn)
{
    const struct config *cfg = b->cfg;
    b->listen = calloc(cfg->num_listeners ? cfg->num_listeners : 1, sizeof(*b->listen));
    if (!b->listen) {
        problem(r, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->num_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        struct snapshot_listener *sl = &b->listen[i];
        if (l->tls) {
            sl->tls = listener_ctx(r, l, i, warn);
            sl->tls_stats = workers ? stats_for(l->address, workers) : NULL;
            if (workers && !sl->tls_stats)
                problem(r, "listen[%zu]: out of memory", i);
        }
        if (l->has_hsts && asprintf(&sl->hsts, "Strict-Transport-Security: max-age=%u\r\n",
                                    l->hsts) < 0) {
            sl->hsts = NULL;
            problem(r, "listen[%zu]: out of memory", i);
        }
        if (l->redirect_to_https)
            https_port(cfg, l->load_balancer, sl->https_port);
    }
    struct client_ctx_cache cache = {.n = 0};
    for (size_t p = 0; b->pools && p < cfg->num_pools; p++) {
        const struct cfg_pool *pool = &cfg->pools[p];
        bool any = false;
        for (size_t o = 0; o < pool->num_origins; o++)
            any |= pool->origins[o].tls;
        if (!any)
            continue;
        b->pools[p].tls = calloc(pool->num_origins, sizeof(*b->pools[p].tls));
        if (!b->pools[p].tls) {
            problem(r, "out of memory");
            break;
        }
        for (size_t o = 0; o < pool->num_origins; o++)
            if (pool->origins[o].tls)
                b->pools[p].tls[o] = origin_client(r, &cache, &pool->origins[o], p, o);
    }
    cache_fini(&cache);
    return r->count ? -1 : 0;
}

int tls_base_build(struct snapshot_base *b, unsigned num_workers, char *err, size_t err_size)
{
    struct reporter r = {.err = err, .err_size = err_size};
    return build(b, num_workers ? num_workers : 1, &r, true);
}

void tls_base_free(struct snapshot_base *b)
{
    const struct config *cfg = b->cfg;
    for (size_t i = 0; b->listen && i < cfg->num_listeners; i++) {
        SSL_CTX_free(b->listen[i].tls);   /* and its server object, once unused */
        free(b->listen[i].hsts);
    }
    free(b->listen);
    b->listen = NULL;
    for (size_t p = 0; b->pools && p < cfg->num_pools; p++) {
        if (!b->pools[p].tls)
            continue;
        for (size_t o = 0; o < cfg->pools[p].num_origins; o++)
            client_free(b->pools[p].tls[o]);
        free(b->pools[p].tls);
        b->pools[p].tls = NULL;
    }
}

unsigned tls_check_config(const struct config *cfg,
                          void (*report)(void *arg, const char *problem), void *arg)
{
    struct reporter r = {.report = report, .arg = arg};
    struct snapshot_base b = {.cfg = (struct config *)cfg};
    b.pools = calloc(cfg->num_pools ? cfg->num_pools : 1, sizeof(*b.pools));
    if (!b.pools) {
        problem(&r, "out of memory");
        return r.count;
    }
    build(&b, 0, &r, false);
    tls_base_free(&b);
    free(b.pools);
    return r.count;
}
