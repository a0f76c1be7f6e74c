/*
 * upgrade — handing the listening sockets from a running limpet to its
 * successor (see upgrade.h for the conversation).
 */
#include "control/upgrade.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin/admin.h"
#include "affinity/affinity.h"
#include "control/control.h"
#include "control/owner.h"
#include "control/snapshot_build.h"
#include "core/log.h"
#include "core/worker.h"

extern char **environ;

#define MSG_MAX 256
#define ADDRESS_MAX 64             /* "[v6]:port" and a NUL */
#define FDS_PER_MSG 64             /* well below SCM_MAX_FD (253) */
#define NEW_TIMEOUT_S 10           /* the new process waiting for an answer */
#define READY_TIMEOUT_MS 30000     /* the old process waiting for READY */
#define FINISH_TIMEOUT_MS 5000     /* the old process waiting for the close after DONE */
#define MAX_PEERS 8

/* ---- messages ---- */

union fd_control {
    char buf[CMSG_SPACE(sizeof(int) * FDS_PER_MSG)];
    struct cmsghdr align;
};

static int send_msg(int fd, const char *text, const int *fds, unsigned n)
{
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    union fd_control u;
    if (n > FDS_PER_MSG)
        return -EINVAL;
    if (n) {
        memset(&u, 0, sizeof(u));
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    return sendmsg(fd, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void close_all(const int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
}

/* One message into text (NUL-terminated) and the descriptors it carried
 * into fds (at most FDS_PER_MSG, *n set). Returns its length, 0 at the end
 * of the conversation, or -errno. */
static ssize_t recv_msg(int fd, char *text, size_t size, int *fds, unsigned *n)
{
    struct iovec iov = {.iov_base = text, .iov_len = size - 1};
    union fd_control u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof(u.buf)};
    *n = 0;
    ssize_t r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*n < FDS_PER_MSG)
                fds[(*n)++] = got;
            else
                close(got);
        }
    }
    if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
        close_all(fds, *n);
        *n = 0;
        return -EMSGSIZE;
    }
    text[r] = '\0';
    return r;
}

/* ---- the command line (SIGUSR2) ---- */

static int saved_argc;
static char **saved_argv;
static char exe_path[PATH_MAX];

void upgrade_remember_command(int argc, char **argv)
{
    saved_argc = argc;
    saved_argv = argv;
    /* The path, not /proc/self/exe itself: once a new binary is installed
     * at that path, /proc/self/exe still names the old one. */
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
    if (n > 0)
        exe_path[n] = '\0';
    else
        snprintf(exe_path, sizeof(exe_path), "%s", argc > 0 ? argv[0] : "limpet");
}

/* ==== in the new process ==== */

struct taken {
    enum upgrade_kind kind;
    char address[ADDRESS_MAX];     /* canonical */
    int *fds;
    unsigned n;
};

static struct taken *taken;        /* sockets taken over, until adopted */
static size_t num_taken;
static int old_conn = -1;          /* the conversation with the old process */
static long old_pid;

static struct taken *taken_find(enum upgrade_kind kind, const char *address)
{
    for (size_t i = 0; i < num_taken; i++)
        if (taken[i].kind == kind && strcmp(taken[i].address, address) == 0)
            return &taken[i];
    return NULL;
}

/* Keeps fds (n of them) for address; closes them when out of memory. */
static int taken_add(enum upgrade_kind kind, const char *address, const int *fds, unsigned n)
{
    struct taken *t = taken_find(kind, address);
    if (!t) {
        struct taken *grown = realloc(taken, (num_taken + 1) * sizeof(*taken));
        if (!grown) {
            close_all(fds, n);
            return -ENOMEM;
        }
        taken = grown;
        t = &taken[num_taken++];
        memset(t, 0, sizeof(*t));
        t->kind = kind;
        snprintf(t->address, sizeof(t->address), "%s", address);
    }
    int *more = realloc(t->fds, (t->n + n) * sizeof(int));
    if (!more) {
        close_all(fds, n);
        return -ENOMEM;
    }
    t->fds = more;
    memcpy(t->fds + t->n, fds, n * sizeof(int));
    t->n += n;
    return 0;
}

static void taken_free(bool shut)
{
    for (size_t i = 0; i < num_taken; i++) {
        for (unsigned j = 0; j < taken[i].n; j++) {
            if (shut)
                shutdown(taken[i].fds[j], SHUT_RD);
            close(taken[i].fds[j]);
        }
        free(taken[i].fds);
    }
    free(taken);
    taken = NULL;
    num_taken = 0;
}

/* Connects to the process holding one of cfg's addresses, or config_path. */
static int find_running(const struct config *cfg, const char *config_path)
{
    char key[OWNER_KEY_MAX];
    for (size_t i = 0; i < cfg->num_listeners; i++) {
        owner_key_listen(&cfg->listeners[i].addr, key, sizeof(key));
        int fd = owner_connect(key);
        if (fd >= 0)
            return fd;
    }
    if (!config_path)
        return -ENOENT;
    owner_key_config(config_path, key, sizeof(key));
    return owner_connect(key);
}

/* "KEY <64 hex digits>": the old process's random affinity key seed. */
static int adopt_key(const char *hex)
{
    uint8_t seed[TOKEN_SEED_BYTES];
    if (strlen(hex) != 2 * sizeof(seed))
        return -EPROTO;
    for (size_t i = 0; i < 2 * sizeof(seed); i++) {
        char ch = hex[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return -EPROTO;
        seed[i / 2] = (uint8_t)(i % 2 ? seed[i / 2] | v : v << 4);
    }
    affinity_adopt_random_seed(seed, old_pid);
    explicit_bzero(seed, sizeof(seed));
    return 0;
}

/* Reads the sockets the old process sends, up to END. 0 or -1 (logged). */
static int receive_sockets(int fd)
{
    for (;;) {
        char msg[MSG_MAX], address[ADDRESS_MAX];
        int fds[FDS_PER_MSG];
        unsigned nfds, count;
        ssize_t r = recv_msg(fd, msg, sizeof(msg), fds, &nfds);
        if (r <= 0) {
            log_error("--upgrade: pid %ld did not send its sockets: %s", old_pid,
                      r == 0 ? "it closed the connection" : strerror((int)-r));
            return -1;
        }
        int rc = 0;
        if (sscanf(msg, "LISTEN %63s %u", address, &count) == 2 && count == nfds && nfds > 0)
            rc = taken_add(UPGRADE_LISTEN, address, fds, nfds);
        else if (sscanf(msg, "ADMIN %63s", address) == 1 && nfds == 1)
            rc = taken_add(UPGRADE_ADMIN, address, fds, nfds);
        else if (strncmp(msg, "KEY ", 4) == 0 && nfds == 0)
            rc = adopt_key(msg + 4);
        else if (strcmp(msg, "END") == 0 && nfds == 0)
            return 0;
        else
            rc = -EPROTO;
        explicit_bzero(msg, sizeof(msg));
        if (rc < 0) {
            if (rc == -EPROTO) {
                close_all(fds, nfds);
                log_error("--upgrade: pid %ld answered \"%s\"; not taking over", old_pid, msg);
            } else {
                log_error("--upgrade: out of memory");
            }
            return -1;
        }
    }
}

int upgrade_take_over(const struct config *cfg, const char *config_path)
{
    int fd = find_running(cfg, config_path);
    if (fd < 0) {
        log_error("--upgrade: no running limpet holds the addresses of %s: starting without "
                  "one", config_path ? config_path : "this configuration");
        return 0;
    }
    struct ucred cred = {0};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        log_error("--upgrade: cannot identify the running limpet: %s", strerror(errno));
        close(fd);
        return -1;
    }
    old_pid = cred.pid;
    if (cred.uid != geteuid() && cred.uid != 0) {
        log_error("--upgrade: the running limpet (pid %ld) belongs to uid %u, not this user",
                  old_pid, (unsigned)cred.uid);
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = NEW_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char msg[MSG_MAX];
    snprintf(msg, sizeof(msg), "TAKE %ld", (long)getpid());
    int rc = send_msg(fd, msg, NULL, 0);
    if (rc < 0) {
        log_error("--upgrade: cannot talk to pid %ld: %s", old_pid, strerror(-rc));
        close(fd);
        return -1;
    }
    if (receive_sockets(fd) < 0) {
        taken_free(false);
        close(fd);
        return -1;
    }
    unsigned sockets = 0;
    for (size_t i = 0; i < num_taken; i++)
        sockets += taken[i].n;
    log_error("upgrade: taking over from pid %ld (%u listening sockets)", old_pid, sockets);
    old_conn = fd;
    return 1;
}

bool upgrade_has_sockets(enum upgrade_kind kind, const struct addr *a)
{
    char address[ADDRESS_MAX];
    const struct taken *t = taken_find(kind, addr_format(a, address, sizeof(address)));
    return t && t->n > 0;
}

unsigned upgrade_take_sockets(enum upgrade_kind kind, const struct addr *a, int **fds)
{
    char address[ADDRESS_MAX];
    struct taken *t = taken_find(kind, addr_format(a, address, sizeof(address)));
    *fds = NULL;
    if (!t || t->n == 0)
        return 0;
    unsigned n = t->n;
    *fds = t->fds;
    t->fds = NULL;
    t->n = 0;
    return n;
}

int upgrade_take_socket(enum upgrade_kind kind, const struct addr *a)
{
    int *fds;
    unsigned n = upgrade_take_sockets(kind, a, &fds);
    if (n == 0)
        return -1;
    int fd = fds[0];
    close_all(fds + 1, n - 1);
    free(fds);
    return fd;
}

long upgrade_commit(struct loop *loop, const char *config_path)
{
    char msg[MSG_MAX];
    int fds[FDS_PER_MSG];
    unsigned nfds = 0;
    int rc = send_msg(old_conn, "READY", NULL, 0);
    ssize_t r = rc < 0 ? rc : recv_msg(old_conn, msg, sizeof(msg), fds, &nfds);
    close_all(fds, nfds);
    if (r <= 0 || strcmp(msg, "DONE") != 0) {
        log_error("upgrade: pid %ld did not let go of the listening sockets (%s); it keeps "
                  "serving, this process stops", old_pid,
                  r < 0 ? strerror((int)-r) : r == 0 ? "it went away" : msg);
        return -1;
    }
    snapshot_sockets_set_owned(true);
    for (size_t i = 0; i < num_taken; i++)
        if (taken[i].n)
            log_error("upgrade: %s%s is not in the new configuration: its sockets are shut",
                      taken[i].kind == UPGRADE_ADMIN ? "admin " : "", taken[i].address);
    taken_free(true);
    owner_claim_taken_over(loop, config_path);
    return old_pid;
}

void upgrade_finish(void)
{
    if (old_conn >= 0)
        close(old_conn);
    old_conn = -1;
}

/* ==== in the running process ==== */

enum peer_state { PEER_NEW, PEER_SENT, PEER_DONE };

struct peer {
    struct io_watch io;
    long pid;                      /* from SO_PEERCRED */
    enum peer_state state;
};

static struct control *server;
static struct peer *peers[MAX_PEERS];
static struct peer *upgrading;     /* the peer that has (or had) the sockets */
static struct timer upgrading_timer;
static bool handed_over;
static pid_t spawned;              /* started by SIGUSR2, not reaped yet */

static void peer_close(struct peer *p)
{
    for (size_t i = 0; i < MAX_PEERS; i++)
        if (peers[i] == p)
            peers[i] = NULL;
    if (p == upgrading) {
        upgrading = NULL;
        timer_cancel(&server->loop, &upgrading_timer);
    }
    loop_unwatch(&server->loop, &p->io);
    close(p->io.fd);
    free(p);
}

/* The peer closed its end (or broke the protocol). */
static void peer_gone(struct peer *p)
{
    if (p == upgrading && p->state == PEER_SENT)
        log_error("upgrade: pid %ld went away before taking over; still serving", p->pid);
    if (p == upgrading && p->state == PEER_DONE)
        server->loop.stop = true; /* it told systemd it is the main process now */
    peer_close(p);
}

static int send_sockets(int fd)
{
    const struct snapshot *s = snapshot_current();
    char msg[MSG_MAX], address[ADDRESS_MAX];
    for (size_t i = 0; i < s->cfg->num_listeners; i++) {
        const struct listen_socket *ls = s->listeners[i];
        addr_format(&s->cfg->listeners[i].addr, address, sizeof(address));
        for (unsigned j = 0; j < ls->num_fds; j += FDS_PER_MSG) {
            unsigned n = ls->num_fds - j < FDS_PER_MSG ? ls->num_fds - j : FDS_PER_MSG;
            snprintf(msg, sizeof(msg), "LISTEN %s %u", address, n);
            int rc = send_msg(fd, msg, ls->fds + j, n);
            if (rc < 0)
                return rc;
        }
    }
    const char *admin_address = NULL;
    int admin_fd = admin_listen_fd(server->admin, &admin_address);
    struct addr a;
    const char *why;
    if (admin_fd >= 0 && addr_parse(admin_address, &a, &why) == 0) {
        snprintf(msg, sizeof(msg), "ADMIN %s", addr_format(&a, address, sizeof(address)));
        int rc = send_msg(fd, msg, &admin_fd, 1);
        if (rc < 0)
            return rc;
    }
    /* Without secret_file, the successor signs with the same random key, so
     * the sessions' cookies stay valid across the upgrade. */
    uint8_t seed[TOKEN_SEED_BYTES];
    if (affinity_random_seed(seed)) {
        int n = snprintf(msg, sizeof(msg), "KEY ");
        for (size_t i = 0; i < sizeof(seed); i++)
            n += snprintf(msg + n, sizeof(msg) - (size_t)n, "%02x", seed[i]);
        int rc = send_msg(fd, msg, NULL, 0);
        explicit_bzero(seed, sizeof(seed));
        explicit_bzero(msg, sizeof(msg));
        if (rc < 0)
            return rc;
    }
    return send_msg(fd, "END", NULL, 0);
}

static void take(struct peer *p)
{
    const char *refusal = NULL;
    if (upgrading || handed_over)
        refusal = "BUSY an upgrade is already under way";
    else if (server->loop.stop || server->stopping)
        refusal = "REFUSED this limpet is stopping";
    if (refusal) {
        log_error("upgrade: pid %ld asked for the listening sockets: %s", p->pid, refusal);
        send_msg(p->io.fd, refusal, NULL, 0);
        peer_close(p);
        return;
    }
    int rc = send_sockets(p->io.fd);
    if (rc < 0) {
        log_error("upgrade: cannot send the listening sockets to pid %ld: %s", p->pid,
                  strerror(-rc));
        peer_close(p);
        return;
    }
    upgrading = p;
    p->state = PEER_SENT;
    timer_arm(&server->loop, &upgrading_timer, READY_TIMEOUT_MS);
    log_error("upgrade: pid %ld is taking over the listening sockets", p->pid);
}

/* READY: the new process serves; this one lets go and retires. */
static void hand_over(struct peer *p)
{
    handed_over = true;
    snapshot_sockets_set_owned(false);
    owner_release_all();
    admin_stop_accepting(server->admin);
    for (unsigned i = 0; i < server->num_workers; i++)
        worker_retire(server->workers[i]);
    send_msg(p->io.fd, "DONE", NULL, 0);
    p->state = PEER_DONE;
    timer_arm(&server->loop, &upgrading_timer, FINISH_TIMEOUT_MS);
    log_error("upgrade: pid %ld took over the listening sockets; pid %ld stops accepting and "
              "finishes its requests in flight (up to %gs)", p->pid, (long)getpid(),
              snapshot_current()->cfg->timeouts.grace);
}

static void upgrading_timer_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    struct peer *p = upgrading;
    if (!p)
        return;
    if (p->state == PEER_SENT)
        log_error("upgrade: pid %ld did not start serving within %d s; still serving", p->pid,
                  READY_TIMEOUT_MS / 1000);
    else
        loop->stop = true;
    peer_close(p);
}

static void peer_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    (void)events;
    struct peer *p = (struct peer *)w;
    char msg[MSG_MAX];
    int fds[FDS_PER_MSG];
    unsigned nfds;
    ssize_t r = recv_msg(p->io.fd, msg, sizeof(msg), fds, &nfds);
    close_all(fds, nfds); /* nothing is to be sent this way */
    if (r == -EAGAIN || r == -EINTR)
        return;
    if (r > 0 && p->state == PEER_NEW && strncmp(msg, "TAKE ", 5) == 0)
        take(p);
    else if (r > 0 && p == upgrading && p->state == PEER_SENT && strcmp(msg, "READY") == 0)
        hand_over(p);
    else
        peer_gone(p);
}

void upgrade_server_init(struct control *ctl)
{
    server = ctl;
    timer_init(&upgrading_timer, upgrading_timer_cb);
}

void upgrade_accept_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    for (int i = 0; i < MAX_PEERS; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        /* Most connections only learn this process's pid (SO_PEERCRED,
         * owner.c) and hang up. Only the same user (or root) may talk. */
        struct ucred cred = {0};
        socklen_t len = sizeof(cred);
        size_t slot = 0;
        while (slot < MAX_PEERS && peers[slot])
            slot++;
        struct peer *p = NULL;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
            (cred.uid == geteuid() || cred.uid == 0) && slot < MAX_PEERS)
            p = calloc(1, sizeof(*p));
        if (!p || loop_watch(loop, &p->io, fd, EPOLLIN, peer_cb) < 0) {
            free(p);
            close(fd);
            continue;
        }
        p->pid = cred.pid;
        p->state = PEER_NEW;
        peers[slot] = p;
    }
}

bool upgrade_busy(void)
{
    return upgrading != NULL || handed_over;
}

bool upgrade_handed_over(void)
{
    return handed_over;
}

void upgrade_spawn(struct control *ctl)
{
    if (!ctl->config_path) {
        log_error("SIGUSR2: an upgrade needs a configuration file (-c FILE); ignored");
        return;
    }
    if (handed_over || upgrading || spawned > 0) {
        log_error("SIGUSR2: an upgrade is already under way; ignored");
        return;
    }
    char **args = calloc((size_t)saved_argc + 2, sizeof(*args));
    if (!args) {
        log_error("SIGUSR2: out of memory");
        return;
    }
    bool has_flag = false;
    for (int i = 0; i < saved_argc; i++) {
        args[i] = saved_argv[i];
        has_flag |= strcmp(saved_argv[i], "--upgrade") == 0;
    }
    if (!has_flag)
        args[saved_argc] = "--upgrade";
    /* The new process starts with no signal blocked (this one blocks those
     * it reads from its signalfd) and the same environment: NOTIFY_SOCKET. */
    posix_spawnattr_t attr;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int rc = posix_spawn(&pid, exe_path, NULL, &attr, args, environ);
    posix_spawnattr_destroy(&attr);
    free(args);
    if (rc != 0) {
        log_error("SIGUSR2: cannot start %s: %s", exe_path, strerror(rc));
        return;
    }
    spawned = pid;
    log_error("SIGUSR2: started %s --upgrade (pid %ld)", exe_path, (long)pid);
}

void upgrade_reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != spawned)
            continue;
        spawned = 0;
        char how[64];
        if (WIFEXITED(status))
            snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
        else
            snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
        if (handed_over)
            log_error("upgrade: the new process (pid %ld) %s after taking over", (long)pid, how);
        else
            log_error("upgrade: the new process (pid %ld) %s before taking over; still serving",
                      (long)pid, how);
    }
}

void upgrade_fini(void)
{
    taken_free(false); /* not adopted: still the old process's to shut, if anyone's */
    upgrade_finish();
    for (size_t i = 0; server && i < MAX_PEERS; i++)
        if (peers[i])
            peer_close(peers[i]);
}
