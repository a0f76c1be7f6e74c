/*
 * log — the error log (stderr) and the access log (JSON lines).
 *
 * Error/state lines go straight to stderr, one write each, prefixed with the
 * UTC time. The access log is written per worker thread: lines are appended
 * to the thread's own buffer and flushed by the owner when it is half full or
 * when its flush timer fires (within 100 ms), so a request never waits on a
 * write(2) of its own and threads never share a lock. Each flush is a single
 * write of whole lines to a descriptor opened with O_APPEND.
 */
#ifndef LIMPET_CORE_LOG_H
#define LIMPET_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

__attribute__((format(printf, 1, 2)))
void log_error(const char *fmt, ...);

/* Opens the access-log target: "stdout", "off" or a file path, setting *fd
 * (-1 for "off"). Returns 0, or -errno after logging why. Shared by workers. */
int access_log_open(const char *target, int *fd);

/* Reopens the access-log file `target` (the one access_log_open() opened on
 * fd) and puts it in place of fd atomically, so every worker keeps writing
 * to the same descriptor number and a renamed file (logrotate) stops
 * growing. Nothing to do for "stdout" and "off". Returns 1 when reopened,
 * 0 when there was nothing to do, -errno after logging why (fd unchanged). */
int access_log_reopen(const char *target, int fd);

#define ACCESS_LOG_BUF 65536

struct access_log {
    int fd;                        /* -1: access log off */
    size_t len;                    /* bytes pending in buf */
    char buf[ACCESS_LOG_BUF];
};

/* What one access-log line says. Strings need not be NUL-terminated. */
struct access_entry {
    uint64_t time_us;              /* wall clock when the request arrived */
    const char *client;            /* client IP */
    const char *method;  size_t method_len;
    const char *path;    size_t path_len;
    int status;
    uint64_t bytes;                /* bytes sent to the client */
    double duration_ms;
    const char *load_balancer;
    const char *pool;              /* NULL when no pool was chosen */
    const char *origin;            /* NULL when no origin was chosen */
    const char *affinity;          /* affinity outcome */
    bool aborted;                  /* cut off unfinished: adds "aborted":true */
};

/* Appends one line; returns 1 when the buffer should be flushed now. */
int access_log_append(struct access_log *log, const struct access_entry *e);
void access_log_flush(struct access_log *log);

/* Appends `s` as JSON string contents (escaped, without quotes) to out[*pos..cap). */
void json_escape_append(char *out, size_t cap, size_t *pos, const char *s, size_t len);

#endif
