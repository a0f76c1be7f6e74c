/*
 * snapshot_build — the control side of snapshots: building them, the one
 * current snapshot, and the registries behind origin identities and
 * listening sockets (snapshot/snapshot.h describes what is built).
 *
 * A configuration change (a reload, an API edit) builds a whole snapshot:
 * origin identities resolved, listening sockets opened for new addresses
 * (on this thread, one per worker per address, SO_REUSEPORT, so a bind error
 * reaches whoever asked for the change; an address present before and after
 * keeps its sockets), cookie keys read, then the routing tables. A health
 * flip only rebuilds the routing tables over the same base.
 */
#ifndef LIMPET_CONTROL_SNAPSHOT_BUILD_H
#define LIMPET_CONTROL_SNAPSHOT_BUILD_H

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

/* The current snapshot (control thread only; the system holds a reference). */
struct snapshot *snapshot_current(void);
/* Makes s current (the caller's reference passes to the system) and releases
 * the previous one. Workers receive snapshots through their own mailboxes,
 * never by reading this pointer. */
void snapshot_set_current(struct snapshot *s);

#endif
