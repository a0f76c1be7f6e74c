/*
 * admin — the admin API server (SPEC §6): REST calls, Prometheus metrics
 * and the dashboard, on `admin.address`.
 *
 * It runs on the control thread, in the control loop (control/control.h),
 * with limpet's own event loop and HTTP/1.1 parser (http/h1.h): no second
 * HTTP stack and no thread of its own. Nothing it does touches the data
 * path directly: reads go through snapshot_current() and the per-worker
 * counters (summed on read); every change is an edit of a copy of the
 * running configuration document, validated by config_load_json() exactly
 * like the file, then published with control_apply_config().
 *
 * Security: when `admin.token_file` is set every /api/ call and /metrics
 * need `Authorization: Bearer <token>` (compared in constant time); without
 * a token the admin address must be a loopback one (admin_new refuses
 * otherwise), requests must name a loopback host (no DNS rebinding) and
 * state-changing requests from another web origin are refused (no
 * cross-site requests from a browser).
 *
 * Run-time changes are kept in a change list (admin/state.h), written to
 * `admin.state_file` when one is set and re-applied to every configuration
 * read from the file (admin_config_loaded).
 *
 * Settings of the `admin` object itself (address, token_file, state_file)
 * are read once at start; a reload that changes them says so on stderr.
 */
#ifndef LIMPET_ADMIN_ADMIN_H
#define LIMPET_ADMIN_ADMIN_H

#include "config/config.h"

#include "core/version.h"

struct admin;
struct control;

/*
 * Prepares the admin server of cfg (cfg->admin.enabled): checks that a
 * non-loopback address has a token, reads the token file, loads the state
 * file (a missing file is an empty state; a corrupt one is reported and
 * ignored), binds the listening socket. Returns NULL after logging why
 * (limpet must not start then).
 */
struct admin *admin_new(struct control *ctl, const struct config *cfg);

/* Starts serving on the control loop (after the workers started). Returns 0
 * or -1 after logging. */
int admin_start(struct admin *admin);

/*
 * Called with every configuration read from the file (at start and at each
 * reload) before it is published: returns it with the recorded run-time
 * changes applied (cfg is consumed; the result is never NULL). A change
 * naming something cfg no longer has, or that cfg would refuse, is reported
 * on stderr and skipped. Without a state file the recorded changes are
 * forgotten instead (they lived until this reload). admin may be NULL (then
 * cfg is returned as it is).
 */
struct config *admin_config_loaded(struct admin *admin, struct config *cfg);

/* The admin listening socket (an upgrade hands it over, control/upgrade.h):
 * its descriptor and the address it listens on as written; -1 when admin is
 * NULL. */
int admin_listen_fd(const struct admin *admin, const char **address);
/* Stops accepting on the listening socket, without closing it (another
 * process took it over); connections already open are still served. */
void admin_stop_accepting(struct admin *admin);

/*
 * The process stops, or retires after an upgrade: accepting stops, every
 * answer from now on says "Connection: close", and a change (POST, PATCH,
 * DELETE) is refused with 409, since the running configuration is about to
 * go. Connections between requests are closed at once, unless
 * keep_between_requests (retiring: like the workers' clients, they are
 * answered once more). Returns how many connections are left to finish;
 * when the last one closes, the control loop is stopped. NULL is fine.
 */
unsigned admin_wind_down(struct admin *admin, bool keep_between_requests);

/* Closes the listening socket and every connection; NULL is fine. */
void admin_free(struct admin *admin);

#endif
