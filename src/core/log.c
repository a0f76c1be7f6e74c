/*
 * log — error log and buffered JSON access log (see log.h).
 */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static size_t format_time(char *out, size_t cap, uint64_t time_us, bool with_ms)
{
    time_t secs = (time_t)(time_us / 1000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (with_ms)
        n += (size_t)snprintf(out + n, cap - n, ".%03u", (unsigned)(time_us / 1000u % 1000u));
    if (n + 2 <= cap) {
        out[n++] = 'Z';
        out[n] = '\0';
    }
    return n;
}

void log_error(const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = format_time(line, sizeof(line),
                           (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u, false);
    n += (size_t)snprintf(line + n, sizeof(line) - n, " limpet: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

int access_log_open(const char *target, int *fd)
{
    *fd = -1;
    if (!target || strcmp(target, "off") == 0)
        return 0;
    if (strcmp(target, "stdout") == 0) {
        *fd = STDOUT_FILENO;
        return 0;
    }
    *fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (*fd < 0) {
        int err = errno;
        log_error("log.access: cannot open %s: %s", target, strerror(err));
        return -err;
    }
    return 0;
}

int access_log_reopen(const char *target, int fd)
{
    if (fd < 0 || !target || strcmp(target, "off") == 0 || strcmp(target, "stdout") == 0)
        return 0;
    int fresh = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fresh < 0) {
        int err = errno;
        log_error("log.access: cannot reopen %s: %s; still writing to the file opened before",
                  target, strerror(err));
        return -err;
    }
    /* dup3 replaces what fd refers to in one step: a worker's write goes
     * wholly to the old file or wholly to the new one. */
    int rc = dup3(fresh, fd, O_CLOEXEC) < 0 ? -errno : 1;
    if (rc < 0)
        log_error("log.access: cannot reopen %s: %s", target, strerror(-rc));
    close(fresh);
    return rc;
}

void json_escape_append(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    for (size_t i = 0; i < len && p + 6 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[p++] = '\\';
            out[p++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            /* control and non-ASCII bytes: \u00XX keeps the line valid JSON */
            memcpy(out + p, "\\u00", 4);
            out[p + 4] = hex[ch >> 4];
            out[p + 5] = hex[ch & 15];
            p += 6;
        } else {
            out[p++] = (char)ch;
        }
    }
    *pos = p;
}

static void append_raw(char *out, size_t cap, size_t *pos, const char *s)
{
    size_t len = strlen(s);
    if (*pos + len < cap) {
        memcpy(out + *pos, s, len);
        *pos += len;
    }
}

static void append_string_field(char *out, size_t cap, size_t *pos, const char *key,
                                const char *value, size_t len)
{
    append_raw(out, cap, pos, key);
    if (!value) {
        append_raw(out, cap, pos, "null");
        return;
    }
    append_raw(out, cap, pos, "\"");
    json_escape_append(out, cap, pos, value, len);
    append_raw(out, cap, pos, "\"");
}

int access_log_append(struct access_log *log, const struct access_entry *e)
{
    if (log->fd < 0)
        return 0;
    char line[8192];
    size_t n = 0;
    char when[40];
    format_time(when, sizeof(when), e->time_us, true);
    append_string_field(line, sizeof(line), &n, "{\"time\":", when, strlen(when));
    append_string_field(line, sizeof(line), &n, ",\"client\":", e->client, strlen(e->client));
    append_string_field(line, sizeof(line), &n, ",\"method\":", e->method, e->method_len);
    append_string_field(line, sizeof(line), &n, ",\"path\":", e->path, e->path_len);
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f", e->status,
                          (unsigned long long)e->bytes, e->duration_ms);
    append_string_field(line, sizeof(line), &n, ",\"load_balancer\":", e->load_balancer,
                        e->load_balancer ? strlen(e->load_balancer) : 0);
    append_string_field(line, sizeof(line), &n, ",\"pool\":", e->pool,
                        e->pool ? strlen(e->pool) : 0);
    append_string_field(line, sizeof(line), &n, ",\"origin\":", e->origin,
                        e->origin ? strlen(e->origin) : 0);
    append_string_field(line, sizeof(line), &n, ",\"affinity\":", e->affinity,
                        e->affinity ? strlen(e->affinity) : 0);
    if (e->aborted)
        append_raw(line, sizeof(line), &n, ",\"aborted\":true");
    append_raw(line, sizeof(line), &n, "}\n");
    if (line[n - 1] != '\n') /* cut short by the line limit: still end the line */
        line[n - 1] = '\n';

    if (log->len + n > sizeof(log->buf))
        access_log_flush(log);
    memcpy(log->buf + log->len, line, n);
    log->len += n;
    return log->len >= sizeof(log->buf) / 2;
}

void access_log_flush(struct access_log *log)
{
    size_t off = 0;
    while (off < log->len) {
        ssize_t w = write(log->fd, log->buf + off, log->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break; /* a full disk or closed stdout must not stop traffic */
        }
        off += (size_t)w;
    }
    log->len = 0;
}
