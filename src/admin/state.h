/*
 * state — run-time changes made through the admin API, as data.
 *
 * A change is one JSON object, applied to a configuration *document* (the
 * jansson tree a config was loaded from), never to typed structs, so that
 * config_load_json() validates the result exactly like the file:
 *
 *   {"op": "patch_load_balancer", "load_balancer": L, "set": {...}}
 *   {"op": "patch_origin", "pool": P, "origin": O, "set": {...}}
 *   {"op": "add_origin", "pool": P, "origin": {"name": O, "address": ...}}
 *   {"op": "remove_origin", "pool": P, "origin": O}
 *
 * "set" is a JSON merge patch (RFC 7396): objects merge key by key, null
 * removes a key (back to its default), anything else replaces.
 *
 * The change list (struct admin_state) is what SPEC §6 calls the state: the
 * changes made since start, oldest first, compacted as they are recorded so
 * that it stays as long as the number of things changed, not the number of
 * changes (two patches of one origin become one; an origin added and then
 * removed at run time leaves nothing). Replaying it in order on the file's
 * configuration gives what the API made of it. With a state file the list
 * is written there after every change (temporary file, fsync, rename, fsync
 * of the directory) and read back at start. Control thread only.
 */
#ifndef LIMPET_ADMIN_STATE_H
#define LIMPET_ADMIN_STATE_H

#include <stddef.h>

#include <jansson.h>

#include "config/config.h"

/* Outcome of applying a change to a document. */
enum change_result {
    CHANGE_OK,
    CHANGE_NOT_FOUND,           /* names a load balancer, pool or origin the document lacks */
    CHANGE_CONFLICT,            /* origin name taken; removing a pool's last origin */
    CHANGE_MALFORMED,           /* not a change object this code knows */
};

struct admin_state {
    char *path;                 /* the state file; NULL: kept in memory only */
    json_t *changes;            /* array of change objects, oldest first */
};

/* Applies change to doc in place. On failure doc is unchanged and msg says
 * why in one sentence naming what was looked for. */
enum change_result change_apply(json_t *doc, const json_t *change, char *msg, size_t msg_size);

/* Empty state written to path (NULL: none). Returns 0 or -ENOMEM. */
int state_init(struct admin_state *st, const char *path);
void state_fini(struct admin_state *st);

/* Reads the state file: a missing file is an empty state; an unreadable or
 * corrupt one (cut off mid-write, not JSON, wrong shape) is reported on
 * stderr and ignored. Never fails. */
void state_load(struct admin_state *st);

/* Adds change (a reference is taken) to the list, compacting it. */
void state_record(struct admin_state *st, json_t *change);

/* Forgets every change. */
void state_clear(struct admin_state *st);

/* Writes the list to the state file, atomically (nothing to do without
 * one). Returns 0, or -errno with err set. */
int state_save(const struct admin_state *st, char *err, size_t err_size);

/*
 * Returns cfg with every recorded change applied, in order (cfg is
 * consumed; the result is never NULL). Each change is tried on a copy of the
 * document and kept only if the result still loads; a change that names
 * something cfg lacks, conflicts with it, or makes it invalid is reported on
 * stderr and skipped.
 */
struct config *state_apply(const struct admin_state *st, struct config *cfg);

#endif
