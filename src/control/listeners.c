/*
 * listeners — refusing new connections at shutdown (see listeners.h).
 *
 * A stopping worker only stops watching its listening sockets; the sockets
 * themselves belong to the snapshot and stay open until the last snapshot
 * holding them is released, at exit. Until then the kernel would go on
 * completing handshakes into the accept queue, and those clients would be
 * reset at exit after waiting out the grace period. shutdown(SHUT_RD) on a
 * listening TCP socket takes it out of the LISTEN state (Linux:
 * inet_shutdown -> tcp_disconnect): new SYNs are answered with RST, so
 * clients fail over at once. The descriptor stays valid, so the snapshot
 * still closes it exactly once, and a worker that has not unwatched it yet
 * sees at most one spurious readiness (accept fails with EINVAL) before it
 * handles the stop request already in its mailbox.
 *
 * A socket shared with another process (an upgrade, control/upgrade.h) is
 * never shut here: the shutdown would refuse connections for both.
 */
#include "control/listeners.h"

#include <sys/socket.h>

#include "control/snapshot_build.h"
#include "core/log.h"

unsigned listeners_refuse(const struct snapshot *s)
{
    unsigned shut = 0;
    if (!s || !snapshot_sockets_owned())
        return 0; /* shared with (or handed to) another process: theirs to shut */
    for (size_t i = 0; i < s->cfg->num_listeners; i++) {
        const struct listen_socket *ls = s->listeners[i];
        for (unsigned j = 0; ls && j < ls->num_fds; j++)
            if (ls->fds[j] >= 0 && shutdown(ls->fds[j], SHUT_RD) == 0)
                shut++;
    }
    if (shut)
        log_error("listening sockets shut: new connections are refused");
    return shut;
}
