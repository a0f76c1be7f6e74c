/*
 * snapshot_build — the control side of snapshots: building them, the one
 * current snapshot, and the registries behind origin identities and
 * listening sockets (snapshot/snapshot.h describes what is built).
 *
 * A configuration change (a reload, an API edit) builds a whole snapshot:
 * origin identities resolved, listening sockets opened for new addresses
 * (on this thread, one per worker per address, SO_REUSEPORT, so a bind error
 * reaches whoever asked for the change; an address present before and after
 * keeps its sockets; an address whose sockets were taken over from an
 * upgraded process adopts them, control/upgrade.h), cookie keys read, then
 * the routing tables. A health flip only rebuilds the routing tables over
 * the same base.
 */
#ifndef LIMPET_CONTROL_SNAPSHOT_BUILD_H
#define LIMPET_CONTROL_SNAPSHOT_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include "snapshot/snapshot.h"

/* Must be called once before anything else; num_workers fixes the number of
 * listening sockets opened per address. */
void snapshot_system_init(unsigned num_workers);

/* Builds a snapshot for cfg (taking ownership of it on success). On failure
 * returns NULL with a message in err (cfg is left to the caller). */
struct snapshot *snapshot_build(struct config *cfg, char *err, size_t err_size);

/* A snapshot with the configuration of `from` and routing tables rebuilt for
 * the origins usable now (after a health change). NULL with err when out of
 * memory. */
struct snapshot *snapshot_rebuild_routing(const struct snapshot *from, char *err,
                                          size_t err_size);

/*
 * Listening sockets are "owned" by this process unless another process
 * shares them: while an upgrade hands them over (the new process, until the
 * old one let go), and after (the old process). Only an owner may shut them
 * (shutdown(SHUT_RD) refuses new connections for every process holding the
 * socket): listeners_refuse() and snapshot_retire_listeners() do nothing
 * otherwise. Owned from the start unless said otherwise. Control thread.
 */
void snapshot_sockets_set_owned(bool owned);
bool snapshot_sockets_owned(void);

/* The sockets of `prev` that `next` no longer has (a reload removed their
 * address) are shut at once, so the kernel refuses new connections on them
 * instead of queueing them for nobody, and forgotten by the registry (an
 * address added again later gets fresh sockets); connections accepted on
 * them are not touched. Call it when next replaces prev. Returns the number
 * of addresses retired. */
unsigned snapshot_retire_listeners(const struct snapshot *prev, const struct snapshot *next);

/* The current snapshot (control thread only; the system holds a reference). */
struct snapshot *snapshot_current(void);
/* Makes s current (the caller's reference passes to the system) and releases
 * the previous one. Workers receive snapshots through their own mailboxes,
 * never by reading this pointer. */
void snapshot_set_current(struct snapshot *s);

#endif
