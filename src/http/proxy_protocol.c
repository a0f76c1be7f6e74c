/*
 * proxy_protocol — PROXY protocol v1/v2 header parser (see proxy_protocol.h).
 */
#include "http/proxy_protocol.h"

#include <arpa/inet.h>
#include <string.h>

static const uint8_t V2_SIGNATURE[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char V1_SIGNATURE[] = "PROXY ";
#define V1_SIGNATURE_LEN 6

#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_AF_UNSPEC 0x0
#define V2_AF_INET 0x1
#define V2_AF_INET6 0x2
#define V2_AF_UNIX 0x3
#define V2_PROTO_STREAM 0x1

/* ---- version 1 ---- */

/* One space-separated field of a v1 line: [*pos, next space or end). */
static bool next_field(const char *line, size_t len, size_t *pos, const char **f, size_t *flen)
{
    if (*pos > len)
        return false;
    const char *start = line + *pos;
    const char *sp = memchr(start, ' ', len - *pos);
    size_t n = sp ? (size_t)(sp - start) : len - *pos;
    if (n == 0)
        return false; /* two spaces in a row, or a trailing space */
    *f = start;
    *flen = n;
    *pos += n + 1; /* past the space (or one past the end: no more fields) */
    return true;
}

static bool parse_ip(const char *f, size_t n, int af, uint8_t out[16])
{
    char text[48];
    if (n >= sizeof(text) || memchr(f, '\0', n))
        return false;
    memcpy(text, f, n);
    text[n] = '\0';
    return inet_pton(af, text, out) == 1;
}

/* A decimal port 0..65535 without leading zeros. */
static bool parse_port(const char *f, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (n > 1 && f[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i] < '0' || f[i] > '9')
            return false;
        v = v * 10 + (unsigned)(f[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static int parse_v1(const uint8_t *b, size_t len, struct pp_header *out)
{
    size_t sig = len < V1_SIGNATURE_LEN ? len : V1_SIGNATURE_LEN;
    if (memcmp(b, V1_SIGNATURE, sig) != 0)
        return PP_INVALID;
    size_t scan = len < PP_V1_MAX_LEN ? len : PP_V1_MAX_LEN;
    const uint8_t *lf = memchr(b, '\n', scan);
    if (!lf)
        return len >= PP_V1_MAX_LEN ? PP_INVALID : PP_NEED_MORE;
    size_t total = (size_t)(lf - b) + 1;
    if (total < V1_SIGNATURE_LEN + 2 || lf[-1] != '\r')
        return PP_INVALID;
    const char *line = (const char *)b + V1_SIGNATURE_LEN;
    size_t line_len = total - V1_SIGNATURE_LEN - 2; /* without the CRLF */
    if (memchr(line, '\r', line_len))
        return PP_INVALID;
    out->version = 1;

    size_t pos = 0;
    const char *f;
    size_t n;
    if (!next_field(line, line_len, &pos, &f, &n))
        return PP_INVALID;
    if (n == 7 && memcmp(f, "UNKNOWN", 7) == 0) {
        /* The rest of the line, if any, is ignored: the peer address is used. */
        return line_len == 7 || line[7] == ' ' ? (int)total : PP_INVALID;
    }
    int af;
    if (n == 4 && memcmp(f, "TCP4", 4) == 0) {
        af = AF_INET;
        out->family = 4;
    } else if (n == 4 && memcmp(f, "TCP6", 4) == 0) {
        af = AF_INET6;
        out->family = 6;
    } else {
        return PP_INVALID;
    }
    if (!next_field(line, line_len, &pos, &f, &n) || !parse_ip(f, n, af, out->src) ||
        !next_field(line, line_len, &pos, &f, &n) || !parse_ip(f, n, af, out->dst) ||
        !next_field(line, line_len, &pos, &f, &n) || !parse_port(f, n, &out->src_port) ||
        !next_field(line, line_len, &pos, &f, &n) || !parse_port(f, n, &out->dst_port) ||
        pos != line_len + 1) /* nothing after the destination port */
        return PP_INVALID;
    out->has_addr = true;
    return (int)total;
}

/* ---- version 2 ---- */

static int parse_v2(const uint8_t *b, size_t len, size_t max_len, struct pp_header *out)
{
    size_t sig = len < sizeof(V2_SIGNATURE) ? len : sizeof(V2_SIGNATURE);
    if (memcmp(b, V2_SIGNATURE, sig) != 0)
        return PP_INVALID;
    if (len > 12 && ((b[12] >> 4) != 2 || (b[12] & 0x0F) > V2_CMD_PROXY))
        return PP_INVALID; /* version 2 only; commands LOCAL and PROXY */
    if (len > 13 && ((b[13] >> 4) > V2_AF_UNIX || (b[13] & 0x0F) > 2))
        return PP_INVALID; /* families UNSPEC..UNIX; transports UNSPEC, STREAM, DGRAM */
    if (len < PP_V2_FIXED_LEN)
        return PP_NEED_MORE;
    size_t addr_len = ((size_t)b[14] << 8) | b[15];
    size_t total = PP_V2_FIXED_LEN + addr_len;
    if (total > max_len)
        return PP_INVALID;
    if (len < total)
        return PP_NEED_MORE;
    out->version = 2;
    if ((b[12] & 0x0F) == V2_CMD_LOCAL)
        return (int)total; /* the balancer's own connection: peer address */
    unsigned af = b[13] >> 4, proto = b[13] & 0x0F;
    size_t need = af == V2_AF_INET ? 12 : af == V2_AF_INET6 ? 36 : af == V2_AF_UNIX ? 216 : 0;
    if (addr_len < need)
        return PP_INVALID;
    const uint8_t *a = b + PP_V2_FIXED_LEN;
    if (proto == V2_PROTO_STREAM && (af == V2_AF_INET || af == V2_AF_INET6)) {
        size_t n = af == V2_AF_INET ? 4 : 16;
        out->family = af == V2_AF_INET ? 4 : 6;
        memcpy(out->src, a, n);
        memcpy(out->dst, a + n, n);
        out->src_port = (uint16_t)((a[2 * n] << 8) | a[2 * n + 1]);
        out->dst_port = (uint16_t)((a[2 * n + 2] << 8) | a[2 * n + 3]);
        out->has_addr = true;
    }
    /* TLVs (after the address block) are skipped; other families and
     * transports carry nothing limpet uses: peer address. */
    return (int)total;
}

int pp_parse(const void *buf, size_t len, size_t max_len, struct pp_header *out)
{
    const uint8_t *b = buf;
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return PP_NEED_MORE;
    if (b[0] == (uint8_t)V1_SIGNATURE[0])
        return parse_v1(b, len, out);
    if (b[0] == V2_SIGNATURE[0])
        return parse_v2(b, len, max_len, out);
    return PP_INVALID;
}
