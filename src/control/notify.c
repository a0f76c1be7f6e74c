/*
 * notify — the sd_notify(3) protocol over a Unix datagram socket (see notify.h).
 *
 * A fresh socket per message: messages are a handful per process lifetime
 * (start, each reload, stop), and nothing is kept open that a forked or
 * upgraded process could inherit. The send may block for at most
 * NOTIFY_SEND_TIMEOUT_S when the receiver's queue is full.
 */
#include "control/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NOTIFY_SEND_TIMEOUT_S 1

int notify_send(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return 0;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len >= sizeof(sun.sun_path))
        return -EINVAL; /* vsock: and relative paths are not for us */
    memcpy(sun.sun_path, name, len);
    if (name[0] == '@')
        sun.sun_path[0] = '\0'; /* abstract namespace: no NUL terminator counted */
    socklen_t sun_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                    (name[0] == '/' ? 1 : 0));

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = NOTIFY_SEND_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, sun_len);
    int rc = n < 0 ? -errno : 1;
    close(fd);
    return rc;
}

void notify_ready(const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", what ? what : "running");
    notify_send(msg);
}

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[128];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    notify_send(msg);
}

void notify_stopping(void)
{
    notify_send("STOPPING=1\nSTATUS=stopping: finishing requests in flight");
}

void notify_mainpid_ready(const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "MAINPID=%ld\nREADY=1\nSTATUS=%s", (long)getpid(),
             what ? what : "running");
    notify_send(msg);
}
