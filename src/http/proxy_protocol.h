/*
 * proxy_protocol — the PROXY protocol header (versions 1 and 2, as specified
 * by HAProxy) that an L4 balancer sends at the start of a connection to say
 * whose connection it is.
 *
 * Like the HTTP parser (h1.h) it is stateless and strict: handed the bytes
 * received so far, it returns the header's length once it is complete,
 * PP_NEED_MORE while the bytes are a valid beginning of one, or PP_INVALID.
 * Nothing is guessed: a connection that does not start with a well-formed
 * header is refused by the caller.
 *
 *  - v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" (single spaces, numeric
 *    addresses of the named family, ports 0..65535 without leading zeros),
 *    or "PROXY UNKNOWN[ anything]\r\n"; 107 bytes at most.
 *  - v2: the 12-byte signature, version 2, command LOCAL or PROXY, a known
 *    family and transport, a length covering the family's address block.
 *    TLVs after the addresses are skipped.
 *
 * What carries no usable client address — v2 LOCAL (the balancer's own
 * health check), v1 UNKNOWN, v2 UNSPEC or UNIX families, a transport other
 * than stream — is accepted with has_addr false: the caller keeps the peer
 * address.
 */
#ifndef LIMPET_HTTP_PROXY_PROTOCOL_H
#define LIMPET_HTTP_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    PP_NEED_MORE = -2,
    PP_INVALID = -1,
};

#define PP_V1_MAX_LEN 107          /* a v1 header, CRLF included, at most */
#define PP_V2_FIXED_LEN 16         /* signature, version/command, family, length */

struct pp_header {
    int version;                   /* 1 or 2 */
    bool has_addr;                 /* false: use the connection's peer address */
    uint8_t family;                /* 4 or 6 when has_addr */
    uint8_t src[16], dst[16];      /* address bytes (4 used for IPv4) */
    uint16_t src_port, dst_port;
};

/*
 * Parses a PROXY protocol header at the start of buf[0..len). Returns its
 * length when complete (out filled), PP_NEED_MORE when the bytes so far may
 * still become one, PP_INVALID otherwise. A v2 header longer than max_len
 * (its declared length included) is invalid, so a caller with a buffer of
 * max_len bytes never waits for one it could not hold.
 */
int pp_parse(const void *buf, size_t len, size_t max_len, struct pp_header *out);

#endif
