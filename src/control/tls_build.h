/*
 * tls_build — the TLS contexts of a snapshot base, made from the
 * configuration on the control thread (core/tls.h says how workers use them).
 *
 * For each listener with `tls`: one server context per certificate (the
 * first is the default, the others chosen by SNI), each loading its full
 * chain and private key; the Strict-Transport-Security field of `hsts`; and,
 * for a plain listener with `redirect_to_https`, the port of its load
 * balancer's first TLS listener. For each origin with `tls`: a client
 * context (shared by origins with the same verify and ca_file) with its SNI
 * and the name or address its certificate must show.
 *
 * Every file is read when a base is built — at start, on each reload and API
 * edit — so a SIGHUP picks up renewed certificates for new handshakes. A
 * missing, unreadable or mismatched file fails the build with the JSON path,
 * the file and the reason; a reload that fails keeps the running base.
 *
 * Handshake counters are kept per listener address for the life of the
 * process (they survive reloads like the address's sockets).
 */
#ifndef LIMPET_CONTROL_TLS_BUILD_H
#define LIMPET_CONTROL_TLS_BUILD_H

#include <stddef.h>

#include "config/config.h"
#include "snapshot/snapshot.h"

/* Builds b->listen and b->pools[*].tls for b->cfg (b->pools set). Returns 0,
 * or -1 with err naming the first problem (b is then left for
 * tls_base_free). num_workers sizes the counters. */
int tls_base_build(struct snapshot_base *b, unsigned num_workers, char *err, size_t err_size);
/* Frees what tls_base_build made (safe on a partial build, and twice). */
void tls_base_free(struct snapshot_base *b);

/* limpet -t: builds every TLS context of cfg and reports each problem
 * ("PATH: problem") through report. Returns the number of problems. */
unsigned tls_check_config(const struct config *cfg,
                          void (*report)(void *arg, const char *problem), void *arg);

#endif
