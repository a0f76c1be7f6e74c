/*
 * upgrade — replacing a running limpet without refusing or resetting a
 * connection (SPEC §7): `limpet -c FILE --upgrade`, or SIGUSR2 to the
 * running process, which starts that command itself.
 *
 * The new process finds the running one through the locks of control/owner.h
 * (the lock of one of its addresses, else that of its configuration file),
 * and talks to it over that Unix socket (SOCK_SEQPACKET, one message a line
 * of text, descriptors passed with SCM_RIGHTS):
 *
 *   new → old   TAKE <pid>
 *   old → new   LISTEN <address> <n>    + n listening sockets (every socket of
 *                                         the address, one per old worker; an
 *                                         address with many comes in several)
 *               ADMIN <address>         + the admin API's listening socket
 *               KEY <hex>               the seed of its random affinity key (only
 *                                         without secret_file: the successor signs
 *                                         with the same key, so cookies stay valid)
 *               END                     (or BUSY / REFUSED <why>: nothing taken)
 *   new         builds its snapshot over the sockets taken (opening more when it
 *               runs more workers, keeping them all when fewer), starts its
 *               workers, which accept on the same sockets as the old ones
 *   new → old   READY
 *   old         stops accepting, gives up its locks, its workers retire
 *               (worker_retire(): each connection closes after its next
 *               response, within timeouts.grace)
 *   old → new   DONE
 *   new         takes the locks, shuts the sockets it did not adopt (an
 *               address the new configuration dropped), tells systemd
 *               MAINPID=<pid> READY=1, closes the connection
 *   old         on that close (or 5 s on) leaves its control loop, exits 0
 *               when its last connection is done.
 *
 * A listening socket is one kernel object however many processes hold it, so
 * connections queued in its accept queue are accepted by whichever process
 * does so first: handing the descriptors over loses none. Until DONE the old
 * process serves as before and the sockets are not the new one's to shut
 * (snapshot_sockets_set_owned()): a new process that fails or goes away
 * leaves the old one running, untouched.
 *
 * The old process answers one upgrade at a time, only to processes of its
 * own user (or root), and refuses reloads and API changes while one is
 * under way. Control thread only.
 */
#ifndef LIMPET_CONTROL_UPGRADE_H
#define LIMPET_CONTROL_UPGRADE_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/addr.h"
#include "core/loop.h"

struct control;

enum upgrade_kind { UPGRADE_LISTEN, UPGRADE_ADMIN };

/* main(): the command line this process was started with, and the path of
 * its binary as it is now; SIGUSR2 starts that path again with the same
 * arguments (plus --upgrade), so an upgrade runs the binary installed since. */
void upgrade_remember_command(int argc, char **argv);

/* ---- in the new process ---- */

/*
 * Finds the running limpet (by the addresses of cfg, then by config_path)
 * and takes its listening sockets. Returns 1 when taken (the old process
 * waits for upgrade_commit()), 0 when no limpet runs there (logged: this
 * process starts as a fresh one), or -1 after logging why.
 */
int upgrade_take_over(const struct config *cfg, const char *config_path);

/* Whether sockets for a were taken over and not adopted yet. */
bool upgrade_has_sockets(enum upgrade_kind kind, const struct addr *a);
/* Adopts the sockets taken over for a: *fds (malloc'd, the caller's, with
 * every descriptor) is set and their number returned; 0 when none. */
unsigned upgrade_take_sockets(enum upgrade_kind kind, const struct addr *a, int **fds);
/* Adopts the one socket taken over for a (the admin API's), or -1. */
int upgrade_take_socket(enum upgrade_kind kind, const struct addr *a);

/*
 * This process serves (workers and admin started): the old one is told to
 * stop accepting and let go. Then the sockets are this process's alone:
 * those not adopted are shut and closed, the locks are taken. Returns the
 * old process's pid, or -1 after logging (the old one keeps serving).
 */
long upgrade_commit(struct loop *loop, const char *config_path);

/* Ends the conversation with the old process (after telling systemd), which
 * then leaves its control loop. */
void upgrade_finish(void);

/* ---- in the running process ---- */

/* Answers upgrades on ctl's loop (the accept callback of owner.h's locks). */
void upgrade_server_init(struct control *ctl);
void upgrade_accept_cb(struct loop *loop, struct io_watch *w, uint32_t events);

/* An upgrade is under way (the sockets were sent) or done: the running
 * configuration must not change. */
bool upgrade_busy(void);
/* The sockets were handed over: this process is retiring. */
bool upgrade_handed_over(void);

/* SIGUSR2: starts the binary again with --upgrade (logged). */
void upgrade_spawn(struct control *ctl);
/* SIGCHLD: reaps the process upgrade_spawn() started; logs it when it
 * exited before taking over. */
void upgrade_reap(void);

/* Frees everything: sockets taken over and never adopted are closed (not
 * shut: they may still be the old process's), conversations ended. */
void upgrade_fini(void);

#endif
