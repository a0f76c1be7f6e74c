/*
 * main — command line, start-up, signals.
 *
 *   limpet -c FILE            run with a config file
 *   limpet -c FILE --upgrade  the same, taking the listening sockets over from
 *                             the limpet running there (control/upgrade.h)
 *   limpet -t -c FILE         check a config file and exit (0: ok, 1: problems)
 *   limpet --demo [--listen ADDR] [--origins N]
 *                             the demo of SPEC §1: a balancer in front of N
 *                             demo origins on 127.0.0.1:9001..
 *   limpet --demo-origin ADDR NAME
 *                             one demo origin alone (a fast test backend)
 *
 * The main thread loads the config and becomes the control thread
 * (control/control.c). SIGHUP, SIGTERM, SIGINT, SIGUSR2 and SIGCHLD are
 * blocked in every thread and read from a signalfd by the control loop, so
 * no handler ever runs on the data path.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "affinity/token.h"
#include "config/config.h"
#include "control/control.h"
#include "control/upgrade.h"
#include "control/tls_build.h"
#include "core/log.h"
#include "core/version.h"
#include "demo/demo_origin.h"

#define DEMO_MAX_ORIGINS 16

static void usage(FILE *out)
{
    fprintf(out,
            "usage: limpet -c FILE            run with a config file\n"
            "       limpet -c FILE --upgrade  take over from the limpet running there\n"
            "       limpet -t -c FILE         check a config file and exit\n"
            "       limpet --demo [--listen ADDR] [--origins N]\n"
            "                                 demo balancer in front of N demo origins\n"
            "       limpet --demo-origin ADDR NAME\n"
            "                                 run one demo origin\n"
            "       limpet --version\n");
}

static void print_config_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "%s\n", errs->messages[i]);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Loads a config file, or prints every problem found and returns NULL. */
static struct config *load_or_report(const char *path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_file(path, &errs);
    if (!cfg) {
        print_config_errors(&errs);
        config_errors_fini(&errs);
    }
    return cfg;
}

static void print_tls_problem(void *arg, const char *problem)
{
    printf("%s: %s\n", (const char *)arg, problem);
}

static int check_config(const char *path)
{
    struct config *cfg = load_or_report(path);
    if (!cfg)
        return 1;
    struct config_errors warnings = {0};
    config_warnings(cfg, path, &warnings); /* stderr; not problems: the exit stays 0 */
    print_config_errors(&warnings);
    config_errors_fini(&warnings);
    /* Files the config names are checked too: a key file limpet could not
     * read at start is a problem of this config. */
    int status = 0;
    if (cfg->secret_file) {
        struct token_keys *keys = NULL;
        char why[256];
        if (token_keys_load(cfg->secret_file, &keys, why, sizeof(why)) < 0) {
            printf("%s: secret_file: %s\n", path, why);
            status = 1;
        }
        token_keys_free(keys);
    }
    if (tls_check_config(cfg, print_tls_problem, (void *)path) > 0)
        status = 1;
    if (status == 0)
        printf("%s: ok\n", path);
    config_free(cfg);
    return status;
}

static int run_config_file(const char *path, const sigset_t *signals, bool upgrade)
{
    struct config *cfg = load_or_report(path);
    return cfg ? control_run(cfg, path, signals, upgrade) : 1;
}

/* The demo: N demo origins on 127.0.0.1:9001.. and a balancer in front. */
static int run_demo(const char *listen, unsigned num_origins, const sigset_t *signals)
{
    char json[4096];
    size_t n = (size_t)snprintf(json, sizeof(json),
                                "{\"listen\": [{\"address\": \"%s\", \"load_balancer\": \"demo\"}],"
                                " \"log\": {\"access\": \"stdout\"},"
                                " \"admin\": {\"address\": \"127.0.0.1:8081\"},"
                                " \"pools\": [{\"name\": \"demo\", \"origins\": [",
                                listen);
    for (unsigned i = 0; i < num_origins; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n,
                              "%s{\"name\": \"origin%u\", \"address\": \"127.0.0.1:%u\"}",
                              i ? ", " : "", i + 1, 9001 + i);
    snprintf(json + n, sizeof(json) - n,
             "]}], \"load_balancers\": [{\"name\": \"demo\", \"default_pools\": [\"demo\"],"
             " \"session_affinity\": \"cookie\"}]}");

    struct config_errors errs = {0};
    struct config *cfg = config_load_string(json, "--demo", &errs);
    if (!cfg) {
        print_config_errors(&errs);
        config_errors_fini(&errs);
        return 1;
    }

    struct demo_origin *origins[DEMO_MAX_ORIGINS] = {0};
    int status = 0;
    for (unsigned i = 0; i < num_origins && status == 0; i++) {
        if (demo_origin_start(cfg->pools[0].origins[i].address, cfg->pools[0].origins[i].name,
                              &origins[i]) < 0)
            status = 1;
    }
    if (status == 0) {
        log_error("demo: open http://%s/ — %u demo origins on 127.0.0.1:9001-%u; "
                  "Ctrl-C stops", listen, num_origins, 9000 + num_origins);
        status = control_run(cfg, NULL, signals, false);
        cfg = NULL;
    }
    for (unsigned i = 0; i < num_origins; i++)
        if (origins[i])
            demo_origin_stop(origins[i]);
    config_free(cfg);
    return status;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    const char *demo_listen = "127.0.0.1:8080";
    unsigned demo_origins = 3;
    bool test_only = false, demo = false, upgrade = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(arg, "-c") == 0 && has_value) {
            config_path = argv[++i];
        } else if (strcmp(arg, "-t") == 0) {
            test_only = true;
        } else if (strcmp(arg, "--upgrade") == 0) {
            upgrade = true;
        } else if (strcmp(arg, "--demo") == 0) {
            demo = true;
        } else if (strcmp(arg, "--listen") == 0 && has_value) {
            demo_listen = argv[++i];
        } else if (strcmp(arg, "--origins") == 0 && has_value) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > DEMO_MAX_ORIGINS) {
                fprintf(stderr, "limpet: --origins: expected 1..%d, got \"%s\"\n",
                        DEMO_MAX_ORIGINS, argv[i]);
                return 2;
            }
            demo_origins = (unsigned)v;
        } else if (strcmp(arg, "--demo-origin") == 0 && i + 2 < argc) {
            signal(SIGPIPE, SIG_IGN);
            return demo_origin_run(argv[i + 1], argv[i + 2]);
        } else if (strcmp(arg, "--version") == 0) {
            printf("limpet %s\n", LIMPET_VERSION);
            return 0;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "limpet: unknown or incomplete argument \"%s\"\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (demo == (config_path != NULL) || (test_only && !config_path) || (upgrade && demo)) {
        usage(stderr);
        return 2;
    }
    if (test_only)
        return check_config(config_path);

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR2);
    sigaddset(&signals, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    upgrade_remember_command(argc, argv);

    if (demo)
        return run_demo(demo_listen, demo_origins, &signals);
    return run_config_file(config_path, &signals, upgrade);
}
