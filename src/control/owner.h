/*
 * owner — one running limpet per listening address (SPEC §7).
 *
 * Workers share an address through SO_REUSEPORT, which would as gladly let
 * a second limpet of the same user join in and take half the traffic. So a
 * limpet claims each of its addresses before opening sockets for it:
 *
 *  - a lock: a listening Unix socket (SOCK_SEQPACKET) bound in the abstract
 *    namespace under a name made of the address in canonical form,
 *    "\0limpet/listen/127.0.0.1:8080". A name is held by one socket at a
 *    time and goes away with the process that holds it, even on SIGKILL, so
 *    there is nothing stale to clean up. Whoever finds the name taken
 *    connects to it and learns the holder's pid (SO_PEERCRED) for its
 *    message. The same sockets are where an upgrading process asks for the
 *    listening sockets (control/upgrade.h): the control loop accepts on them.
 *  - a probe: a TCP socket bound to the address *without* SO_REUSEPORT.
 *    It fails with EADDRINUSE while anything listens on the port: another
 *    program, or a limpet on an overlapping address (0.0.0.0:8080 holds
 *    127.0.0.1:8080 too) that the lock by name does not see.
 *
 * One more lock names the configuration file ("\0limpet/config/<hash of its
 * real path>"), so that `limpet -c FILE --upgrade` finds the process running
 * FILE even when the new FILE shares no address with it.
 *
 * Abstract names are per network namespace and any local process may look
 * them up: the upgrade server only talks to processes of its own user (or
 * root). Control thread only.
 */
#ifndef LIMPET_CONTROL_OWNER_H
#define LIMPET_CONTROL_OWNER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config/config.h"
#include "core/addr.h"
#include "core/loop.h"

struct snapshot;

#define OWNER_KEY_MAX 96

/*
 * Claims every listening address of cfg not claimed yet (locks watched on
 * `loop`, where the upgrade server answers them). An address whose sockets
 * were taken over from an upgraded process is only noted: its lock is taken
 * by owner_claim_taken_over() once the old process let go of it. Fails,
 * with nothing new claimed and err set, when another limpet holds an
 * address ("127.0.0.1:8080 is held by a running limpet (pid 4242); use
 * --upgrade to take over" at start, `at_start`; "cannot listen on ...:
 * held by a running limpet (pid 4242)" on a reload) or the probe finds the
 * port in use. Returns 0 or -1.
 */
int owner_claim(struct loop *loop, const struct config *cfg, bool at_start, char *err,
                size_t err_size);

/* Gives up the claims of addresses s does not listen on (s NULL: all
 * addresses). The configuration file's lock is kept. */
void owner_sync(const struct snapshot *s);

/* Claims the configuration file (best effort: another limpet running the
 * same file is only noted on stderr). */
void owner_claim_config(struct loop *loop, const char *config_path);

/* After an upgrade: takes the locks the old process gave up (addresses
 * noted by owner_claim, and the configuration file). Logs what it could
 * not take. */
void owner_claim_taken_over(struct loop *loop, const char *config_path);

/* Gives up every claim (the process stops, or handed its sockets over). */
void owner_release_all(void);

/* The lock names. */
void owner_key_listen(const struct addr *a, char *key, size_t size);
void owner_key_config(const char *config_path, char *key, size_t size);

/* Connects (blocking) to the upgrade server of the process holding `key`.
 * Returns the socket, or -errno (-ECONNREFUSED, -ENOENT: nobody holds it). */
int owner_connect(const char *key);

#endif
