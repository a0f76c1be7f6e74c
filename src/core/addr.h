/*
 * addr — socket addresses: parsing "host:port" / "[v6]:port" and formatting.
 *
 * Only numeric addresses are accepted (no DNS on the data path or at start:
 * a load balancer must not depend on a resolver to come up).
 */
#ifndef LIMPET_CORE_ADDR_H
#define LIMPET_CORE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Parses "1.2.3.4:80" or "[::1]:80". Returns 0, or -1 with *why set to a
 * static message ("not host:port", "bad port", "bad IP address"). */
int addr_parse(const char *text, struct addr *out, const char **why);

/* Parses an IP address without port ("10.0.0.1", "2001:db8::1"). */
int addr_parse_ip(const char *text, struct addr *out);

/* Formats the IP part only ("127.0.0.1", "::1") into buf; returns buf. */
const char *addr_ip_string(const struct addr *a, char *buf, size_t size);
/* Same from a raw sockaddr. */
const char *sockaddr_ip_string(const struct sockaddr *sa, char *buf, size_t size);
/* Formats address bytes (family 4: 4 bytes, 6: 16) as text into buf, which
 * holds INET6_ADDRSTRLEN bytes; returns the length. IPv4 is formatted here,
 * without printf (it runs for every request). */
size_t ip_text(int family, const unsigned char *bytes, char *buf);

bool addr_is_loopback(const struct addr *a);

/* A non-blocking listening TCP socket on a (IPv6 sockets take IPv6 only);
 * reuse_port lets several sockets (one per worker) share the address.
 * Returns the descriptor or -errno. */
int addr_listen(const struct addr *a, bool reuse_port, int backlog);

/* Formats "1.2.3.4:80" or "[::1]:80" (the canonical form of an address,
 * whatever way it was written) into buf; returns buf. */
const char *addr_format(const struct addr *a, char *buf, size_t size);

/* Same family, address and port. */
bool addr_equal(const struct addr *a, const struct addr *b);

#endif
