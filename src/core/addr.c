/*
 * addr — numeric socket address parsing and formatting (see addr.h).
 */
#include "core/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int addr_parse_ip(const char *text, struct addr *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        out->len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        out->len = sizeof(*v6);
        return 0;
    }
    return -1;
}

int addr_parse(const char *text, struct addr *out, const char **why)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_text;
    size_t host_len;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            *why = "not host:port";
            return -1;
        }
        host_len = (size_t)(close - text - 1);
        if (host_len >= sizeof(host)) {
            *why = "bad IP address";
            return -1;
        }
        memcpy(host, text + 1, host_len);
        host[host_len] = '\0';
        port_text = close + 2;
        if (!strchr(host, ':')) {
            *why = "bad IP address";
            return -1;
        }
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || strchr(text, ':') != colon) {
            *why = "not host:port";
            return -1;
        }
        host_len = (size_t)(colon - text);
        if (host_len == 0 || host_len >= sizeof(host)) {
            *why = "bad IP address";
            return -1;
        }
        memcpy(host, text, host_len);
        host[host_len] = '\0';
        port_text = colon + 1;
    }

    if (*port_text == '\0' || strlen(port_text) > 5) {
        *why = "bad port";
        return -1;
    }
    unsigned long port = 0;
    for (const char *p = port_text; *p; p++) {
        if (*p < '0' || *p > '9') {
            *why = "bad port";
            return -1;
        }
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port == 0 || port > 65535) {
        *why = "bad port";
        return -1;
    }
    if (addr_parse_ip(host, out) != 0) {
        *why = "bad IP address";
        return -1;
    }
    if (out->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
    return 0;
}

const char *sockaddr_ip_string(const struct sockaddr *sa, char *buf, size_t size)
{
    const void *src = NULL;
    if (sa->sa_family == AF_INET)
        src = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!src || !inet_ntop(sa->sa_family, src, buf, (socklen_t)size))
        snprintf(buf, size, "unknown");
    return buf;
}

size_t ip_text(int family, const unsigned char *bytes, char *buf)
{
    if (family == 6) {
        if (!inet_ntop(AF_INET6, bytes, buf, INET6_ADDRSTRLEN))
            strcpy(buf, "unknown");
        return strlen(buf);
    }
    char *p = buf;
    for (int i = 0; i < 4; i++) {
        unsigned v = bytes[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = '.';
    }
    p[-1] = '\0';
    return (size_t)(p - 1 - buf);
}

const char *addr_ip_string(const struct addr *a, char *buf, size_t size)
{
    return sockaddr_ip_string((const struct sockaddr *)&a->ss, buf, size);
}

const char *addr_format(const struct addr *a, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    addr_ip_string(a, ip, sizeof(ip));
    unsigned port = 0;
    if (a->ss.ss_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    else if (a->ss.ss_family == AF_INET6)
        port = ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    snprintf(buf, size, a->ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
    return buf;
}

bool addr_is_loopback(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->ss;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a->ss;
        return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
    }
    return false;
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int addr_listen(const struct addr *a, bool reuse_port, int backlog)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}
