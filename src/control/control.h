/*
 * control — the control thread: everything that is not traffic.
 *
 * It runs on the main thread with an event loop of its own: signals arrive
 * through a signalfd (SIGHUP reloads, SIGTERM/SIGINT stop, SIGUSR2 starts
 * an upgrade, SIGCHLD reaps it: control/upgrade.h), and later work
 * (health monitors, the admin API) adds its sockets and timers to the same
 * loop. Every change of configuration or derived state ends in
 * control_publish(): a new snapshot becomes current and is offered to every
 * worker, which adopts it between events.
 */
#ifndef LIMPET_CONTROL_CONTROL_H
#define LIMPET_CONTROL_CONTROL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/loop.h"

struct worker;
struct snapshot;
struct health;
struct admin;

struct control {
    struct loop loop;
    struct io_watch signals;       /* signalfd: SIGHUP, SIGTERM, SIGINT, SIGUSR2, SIGCHLD */
    const char *config_path;       /* NULL: built-in config (the demo), nothing to reload */
    struct worker **workers;
    unsigned num_workers;
    int access_log_fd;
    char *access_log_path;         /* log.access at start: the file SIGHUP reopens */
    uint64_t reloads;              /* successful reloads */
    uint64_t reload_failures;
    uint64_t started_ms;           /* monotonic start time, for uptime */
    struct health *health;         /* monitors and passive checks (src/health) */
    struct admin *admin;           /* admin API server (src/admin); NULL without "admin" */
    struct timer drain_timer;      /* logs the end of drains (drain.c) */
    bool stopping;                 /* stopping or retiring: no reload, no upgrade now */
};

/*
 * Runs limpet on cfg (ownership passes here) until SIGTERM/SIGINT, or until
 * an upgraded process took its listening sockets over. config_path is the
 * file to re-read on reload (NULL for none). With `upgrade`, the listening
 * sockets of the limpet running there are taken over first
 * (control/upgrade.h); without, an address another limpet holds stops the
 * start (control/owner.h). The given signals must already be blocked in the
 * calling thread. Returns the exit code.
 */
int control_run(struct config *cfg, const char *config_path, const sigset_t *signals,
                bool upgrade);

/* Re-reads the config file and publishes it; on failure the running config is
 * kept and err says why. Returns 0 or -1. */
int control_reload(struct control *ctl, char *err, size_t err_size);

/* Builds a snapshot of cfg (taking ownership on success) and publishes it.
 * Returns 0, or -1 with err set (cfg untouched). */
int control_apply_config(struct control *ctl, struct config *cfg, char *err, size_t err_size);

/* Rebuilds the routing tables of the current configuration (consistent-hash
 * tables over usable origins) and publishes them: called when an origin's
 * health changes. Nothing is validated or read again. Returns 0 or -1
 * (logged). */
int control_refresh(struct control *ctl);

/* Publishes s (the caller's reference passes on) to every worker. */
void control_publish(struct control *ctl, struct snapshot *s);

#endif
