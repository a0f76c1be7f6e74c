/*
 * control — start-up, reloads, publication and shutdown (see control.h).
 *
 * Settings that shape threads or open descriptors at start (`threads`,
 * `log.access`) keep their start-up value across reloads; a reload that
 * changes them says so on stderr.
 */
#include "control/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "admin/admin.h"
#include "control/snapshot_build.h"
#include "core/log.h"
#include "control/drain.h"
#include "control/listeners.h"
#include "control/notify.h"
#include "control/owner.h"
#include "control/upgrade.h"
#include "core/worker.h"
#include "proxy/thread.h"
#include "health/health.h"

static unsigned worker_count(const struct config *cfg)
{
    if (cfg->threads)
        return cfg->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

void control_publish(struct control *ctl, struct snapshot *s)
{
    /* An address the new snapshot drops refuses connections from now on;
     * older snapshots still in use keep only the connections accepted. */
    snapshot_retire_listeners(snapshot_current(), s);
    snapshot_set_current(s);
    for (unsigned i = 0; i < ctl->num_workers; i++)
        proxy_worker_offer_snapshot(ctl->workers[i], s);
    health_sync(ctl->health, s);
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Settings that pass validation but will not work as meant: said once per
 * load (start and reload). */
static void warn_about(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->num_load_balancers; i++) {
        const struct cfg_load_balancer *lb = &cfg->load_balancers[i];
        bool tls = false; /* secure "Auto" sets Secure on responses over TLS */
        for (size_t l = 0; l < cfg->num_listeners; l++)
            tls |= cfg->listeners[l].tls && cfg->listeners[l].load_balancer == i;
        if (lb->session_affinity != AFFINITY_NONE && lb->attributes.samesite == SAMESITE_NONE &&
            lb->attributes.secure == SECURE_AUTO && !tls)
            log_error("load_balancers[%zu] (%s): SameSite=None cookies go without Secure over "
                      "plain HTTP and browsers drop them, and this load balancer has no TLS "
                      "listener; add one, or set secure to \"Always\"", i, lb->name);
    }
    struct config_errors warnings = {0};
    config_warnings(cfg, cfg->path ? cfg->path : "config", &warnings);
    for (size_t i = 0; i < warnings.count; i++)
        log_error("%s", warnings.messages[i]);
    config_errors_fini(&warnings);
}

int control_apply_config(struct control *ctl, struct config *cfg, char *err, size_t err_size)
{
    const struct config *running = snapshot_current()->cfg;
    if (worker_count(cfg) != ctl->num_workers)
        log_error("threads: a change takes effect at the next start (running %u)",
                  ctl->num_workers);
    if (!same_string(cfg->access_log, running->access_log))
        log_error("log.access: a change takes effect at the next start (running \"%s\")",
                  running->access_log);
    if (upgrade_busy()) {
        snprintf(err, err_size, "an upgrade is under way: the running configuration stays "
                 "until the new process takes over");
        return -1;
    }
    if (owner_claim(&ctl->loop, cfg, false, err, err_size) < 0)
        return -1;
    struct snapshot *s = snapshot_build(cfg, err, err_size);
    if (!s) {
        owner_sync(snapshot_current()); /* the addresses claimed for cfg are given up */
        return -1;
    }
    control_publish(ctl, s);
    owner_sync(s);
    return 0;
}

int control_refresh(struct control *ctl)
{
    char err[256] = "";
    struct snapshot *s = snapshot_rebuild_routing(snapshot_current(), err, sizeof(err));
    if (!s) {
        log_error("cannot rebuild the routing tables: %s", err);
        return -1;
    }
    control_publish(ctl, s);
    return 0;
}

int control_reload(struct control *ctl, char *err, size_t err_size)
{
    if (!ctl->config_path) {
        snprintf(err, err_size, "no config file to reload (built-in configuration)");
        ctl->reload_failures++;
        return -1;
    }
    struct config_errors errs = {0};
    struct config *cfg = config_load_file(ctl->config_path, &errs);
    if (!cfg) {
        size_t n = 0;
        err[0] = '\0';
        for (size_t i = 0; i < errs.count && n + 2 < err_size; i++)
            n += (size_t)snprintf(err + n, err_size - n, "%s%s", i ? "; " : "",
                                  errs.messages[i]);
        config_errors_fini(&errs);
        ctl->reload_failures++;
        return -1;
    }
    cfg = admin_config_loaded(ctl->admin, cfg);
    char why[512];
    if (control_apply_config(ctl, cfg, why, sizeof(why)) < 0) {
        snprintf(err, err_size, "%s: %s", ctl->config_path, why);
        config_free(cfg);
        ctl->reload_failures++;
        return -1;
    }
    ctl->reloads++;
    warn_about(snapshot_current()->cfg);
    return 0;
}

static void signal_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    struct control *ctl = loop->owner;
    struct signalfd_siginfo si;
    while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if ((si.ssi_signo == SIGHUP || si.ssi_signo == SIGUSR2) && ctl->stopping) {
            log_error("%s: limpet is stopping; ignored",
                      si.ssi_signo == SIGHUP ? "SIGHUP" : "SIGUSR2");
            continue;
        }
        if (si.ssi_signo == SIGHUP) {
            char err[2048];
            notify_reloading();
            if (access_log_reopen(ctl->access_log_path, ctl->access_log_fd) > 0)
                log_error("SIGHUP: access log %s reopened", ctl->access_log_path);
            bool ok = control_reload(ctl, err, sizeof(err)) == 0;
            if (ok)
                log_error("SIGHUP: configuration reloaded from %s", ctl->config_path);
            else
                log_error("SIGHUP: reload failed, running configuration kept: %s", err);
            notify_ready(ok ? "running: configuration reloaded"
                            : "running: reload failed, running configuration kept");
            continue;
        }
        if (si.ssi_signo == SIGUSR2) {
            upgrade_spawn(ctl);
            continue;
        }
        if (si.ssi_signo == SIGCHLD) {
            upgrade_reap();
            continue;
        }
        if (upgrade_handed_over()) { /* retiring already; systemd follows the new process */
            loop->stop = true;
            continue;
        }
        notify_stopping();
        log_error("%s: stopping, finishing requests in flight (up to %gs)",
                  si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
                  snapshot_current()->cfg->timeouts.grace);
        loop->stop = true;
    }
}

static int start_workers(struct control *ctl, struct snapshot *s)
{
    ctl->workers = calloc(ctl->num_workers, sizeof(*ctl->workers));
    if (!ctl->workers)
        return -ENOMEM;
    for (unsigned i = 0; i < ctl->num_workers; i++) {
        ctl->workers[i] = proxy_worker_new(i, ctl->num_workers, s, ctl->access_log_fd);
        if (!ctl->workers[i]) {
            for (unsigned j = 0; j < i; j++) {
                worker_free(ctl->workers[j]);
                ctl->workers[j] = NULL;
            }
            return -1;
        }
    }
    for (unsigned i = 0; i < ctl->num_workers; i++) {
        int rc = worker_start(ctl->workers[i]);
        if (rc < 0) {
            log_error("cannot start worker %u: %s", i, strerror(-rc));
            /* the ones not started are freed without joining */
            for (unsigned j = i; j < ctl->num_workers; j++) {
                worker_free(ctl->workers[j]);
                ctl->workers[j] = NULL;
            }
            return rc;
        }
    }
    return 0;
}

/* Tells the workers to stop; they finish their requests on their own
 * threads (join_workers waits for them). */
static void stop_workers(struct control *ctl)
{
    /* Workers retiring after an upgrade end on their own (worker_retire). */
    for (unsigned i = 0; ctl->workers && i < ctl->num_workers && !upgrade_handed_over(); i++)
        if (ctl->workers[i])
            worker_stop(ctl->workers[i]);
    listeners_refuse(snapshot_current()); /* new clients are refused, not left hanging;
                                             nothing when the sockets are shared */
    owner_release_all(); /* the addresses are free: a limpet started now need not wait */
}

static void admin_deadline_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    loop->stop = true;
}

/* The admin API answers the requests it began before the process goes
 * (upgrades and restarts drop nothing): the control loop runs again until
 * admin_wind_down's connections are done, for up to the grace period (half
 * of it after a hand-over, like the retiring workers' idle clients). */
static void finish_admin(struct control *ctl)
{
    bool retiring = upgrade_handed_over();
    ctl->stopping = true;
    if (admin_wind_down(ctl->admin, retiring) == 0 || !snapshot_current())
        return;
    uint64_t grace_ms = (uint64_t)(snapshot_current()->cfg->timeouts.grace * 1000);
    struct timer deadline;
    timer_init(&deadline, admin_deadline_cb);
    timer_arm(&ctl->loop, &deadline, retiring ? grace_ms / 2 : grace_ms);
    ctl->loop.stop = false;
    loop_run(&ctl->loop);
    timer_cancel(&ctl->loop, &deadline);
}

static void join_workers(struct control *ctl)
{
    for (unsigned i = 0; ctl->workers && i < ctl->num_workers; i++)
        if (ctl->workers[i])
            worker_join_and_free(ctl->workers[i]);
    free(ctl->workers);
    ctl->workers = NULL;
}

int control_run(struct config *cfg, const char *config_path, const sigset_t *signals,
                bool upgrade)
{
    struct control ctl = {.config_path = config_path, .access_log_fd = -1};
    int status = 1;
    int sfd = -1;
    long old_pid = 0;
    char err[512];

    ctl.num_workers = worker_count(cfg);
    snapshot_system_init(ctl.num_workers);
    if (loop_init(&ctl.loop, &ctl) < 0) {
        log_error("cannot create the control loop: %s", strerror(errno));
        config_free(cfg);
        return 1;
    }
    upgrade_server_init(&ctl);
    ctl.started_ms = clock_ms();
    /* The sockets of the limpet this one replaces, then every address
     * claimed (one limpet per address) before anything is opened. */
    int taken = upgrade ? upgrade_take_over(cfg, config_path) : 0;
    if (taken > 0)
        snapshot_sockets_set_owned(false); /* shared until the old process lets go */
    if (taken < 0 || owner_claim(&ctl.loop, cfg, true, err, sizeof(err)) < 0) {
        if (taken >= 0)
            log_error("%s", err);
        config_free(cfg);
        goto out;
    }
    ctl.access_log_path = strdup(cfg->access_log); /* what SIGHUP reopens */
    if (!ctl.access_log_path || access_log_open(cfg->access_log, &ctl.access_log_fd) < 0) {
        config_free(cfg);
        goto out;
    }
    if (cfg->admin.enabled && !(ctl.admin = admin_new(&ctl, cfg))) {
        config_free(cfg);
        goto out;
    }
    cfg = admin_config_loaded(ctl.admin, cfg);
    warn_about(cfg);
    struct snapshot *s = snapshot_build(cfg, err, sizeof(err));
    if (!s) {
        log_error("%s", err);
        config_free(cfg);
        goto out;
    }
    snapshot_set_current(s);
    drain_watch_start(&ctl);
    ctl.health = health_new(&ctl);
    if (!ctl.health) {
        log_error("cannot start health checks: out of memory");
        goto out;
    }
    health_sync(ctl.health, s);
    sfd = signalfd(-1, signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0 || loop_watch(&ctl.loop, &ctl.signals, sfd, EPOLLIN, signal_cb) < 0) {
        log_error("cannot watch signals: %s", strerror(errno));
        goto out;
    }
    if (start_workers(&ctl, s) < 0)
        goto out;
    if (ctl.admin && admin_start(ctl.admin) < 0)
        goto out;
    /* Serving: the limpet replaced stops accepting and lets go. */
    if (taken > 0 && (old_pid = upgrade_commit(&ctl.loop, config_path)) < 0)
        goto out;
    if (taken == 0)
        owner_claim_config(&ctl.loop, config_path);

    for (size_t i = 0; i < s->cfg->num_listeners; i++)
        log_error("listening on %s (load balancer %s), %u worker threads",
                  s->cfg->listeners[i].address,
                  s->cfg->load_balancers[s->cfg->listeners[i].load_balancer].name,
                  ctl.num_workers);
    if (taken > 0) {
        char what[64];
        snprintf(what, sizeof(what), "running: took over from pid %ld", old_pid);
        log_error("upgrade: took over from pid %ld", old_pid);
        notify_mainpid_ready(what);
        upgrade_finish(); /* the old process may leave now: systemd follows this one */
    } else {
        notify_ready("running");
    }
    loop_run(&ctl.loop);
    status = 0;

out:
    stop_workers(&ctl);
    finish_admin(&ctl);
    admin_free(ctl.admin);
    join_workers(&ctl);
    health_free(ctl.health);
    snapshot_set_current(NULL);
    upgrade_fini();
    if (sfd >= 0)
        close(sfd);
    loop_fini(&ctl.loop);
    if (ctl.access_log_fd > STDERR_FILENO)
        close(ctl.access_log_fd);
    free(ctl.access_log_path);
    return status;
}
