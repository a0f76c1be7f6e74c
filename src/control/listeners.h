/*
 * listeners — what the control thread does to the listening sockets of a
 * snapshot at shutdown (see listeners.c).
 */
#ifndef LIMPET_CONTROL_LISTENERS_H
#define LIMPET_CONTROL_LISTENERS_H

struct snapshot;

/*
 * Makes the kernel refuse new connections on every listening socket of s
 * (NULL is fine): connect() gets ECONNREFUSED at once instead of completing
 * a handshake that nobody will accept. Connections already accepted are not
 * touched. Call it after the workers were told to stop. Logs it and returns
 * the number of sockets shut. Does nothing to sockets this process does not
 * own alone (snapshot_sockets_owned(): an upgrade shares them).
 */
unsigned listeners_refuse(const struct snapshot *s);

#endif
