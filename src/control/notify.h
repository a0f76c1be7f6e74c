/*
 * notify — tells the service manager what limpet is doing (the sd_notify(3)
 * protocol of systemd's Type=notify services), without libsystemd.
 *
 * When $NOTIFY_SOCKET names a Unix datagram socket (a path, or "@name" for
 * an abstract one), each call sends one datagram of newline-separated
 * "KEY=VALUE" assignments to it; without the variable every call does
 * nothing. Control thread only.
 *
 *   READY=1                      listening, workers started (and after a reload)
 *   RELOADING=1 MONOTONIC_USEC=  a SIGHUP reload begins (systemd >= 253 wants the time)
 *   STOPPING=1                   shutdown begins
 *   MAINPID= READY=1             a process that took over from an upgraded one
 *                                is ready: it is the service's main process now
 *                                (the unit needs NotifyAccess=all: the sender is
 *                                not the main process yet)
 */
#ifndef LIMPET_CONTROL_NOTIFY_H
#define LIMPET_CONTROL_NOTIFY_H

/* Sends `state` ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. Returns 1 when
 * sent, 0 when there is no $NOTIFY_SOCKET, or -errno (not logged: the
 * service manager going away must not disturb traffic). */
int notify_send(const char *state);

/* The three transitions above, each with a STATUS= line for `systemctl status`.
 * `what` completes the status ("listening on 127.0.0.1:8080, 2 workers"); may be NULL. */
void notify_ready(const char *what);
void notify_reloading(void);
void notify_stopping(void);
/* MAINPID=<this process> and READY=1, after an upgrade. */
void notify_mainpid_ready(const char *what);

#endif
