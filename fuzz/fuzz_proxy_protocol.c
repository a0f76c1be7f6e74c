/*
 * fuzz_proxy_protocol — libFuzzer target: the PROXY protocol v1/v2 header
 * parser (src/http/proxy_protocol.c: pp_parse).
 *
 * Besides "no crash, no over-read, no undefined behaviour", it checks what the
 * proxy relies on:
 *  - an accepted header is within the input, at most 107 bytes for v1 and
 *    exactly 16 + its declared length for v2, never over max_len; an address
 *    is IPv4 or IPv6 (has_addr false otherwise, and then nothing is filled);
 *  - the verdict depends only on the header's own bytes: re-parsing just the
 *    header gives the same length and result, and any shorter prefix of it
 *    needs more;
 *  - a prefix of any input needs more or decides exactly as the whole input
 *    (so reading a connection in pieces never changes the outcome);
 *  - a header whose address was read, written back as v1 or v2, parses to the
 *    same addresses and ports.
 */
#include <arpa/inet.h>
#include <stdbool.h>

#include "fuzz_common.h"
#include "http/proxy_protocol.h"

#define BIG_LIMIT 70000

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static bool same_result(const struct pp_header *a, const struct pp_header *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

static void check_header(const struct pp_header *h, int rc, size_t size, size_t limit)
{
    FUZZ_CHECK((size_t)rc <= size && (size_t)rc <= limit);
    FUZZ_CHECK(h->version == 1 || h->version == 2);
    if (h->version == 1)
        FUZZ_CHECK(rc <= PP_V1_MAX_LEN);
    else
        FUZZ_CHECK(rc >= PP_V2_FIXED_LEN);
    if (h->has_addr) {
        FUZZ_CHECK(h->family == 4 || h->family == 6);
    } else {
        static const uint8_t zero[16];
        FUZZ_CHECK(h->family == 0 && h->src_port == 0 && h->dst_port == 0);
        FUZZ_CHECK(!memcmp(h->src, zero, 16) && !memcmp(h->dst, zero, 16));
    }
}

/* Writes h's addresses back as a v1 line and as a v2 header; both must give
 * them back. */
static void check_round_trip(const struct pp_header *h)
{
    int af = h->family == 4 ? AF_INET : AF_INET6;
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    FUZZ_CHECK(inet_ntop(af, h->src, src, sizeof(src)) && inet_ntop(af, h->dst, dst, sizeof(dst)));
    char line[PP_V1_MAX_LEN + 1];
    int n = snprintf(line, sizeof(line), "PROXY TCP%d %s %s %u %u\r\n", h->family, src, dst,
                     h->src_port, h->dst_port);
    FUZZ_CHECK(n > 0 && n <= PP_V1_MAX_LEN);
    struct pp_header back;
    FUZZ_CHECK(pp_parse(line, (size_t)n, BIG_LIMIT, &back) == n);
    FUZZ_CHECK(back.has_addr && back.family == h->family && back.version == 1);
    size_t alen = h->family == 4 ? 4 : 16;
    FUZZ_CHECK(!memcmp(back.src, h->src, alen) && !memcmp(back.dst, h->dst, alen));
    FUZZ_CHECK(back.src_port == h->src_port && back.dst_port == h->dst_port);

    uint8_t v2[16 + 36];
    size_t blen = 2 * alen + 4;
    memcpy(v2, SIG, 12);
    v2[12] = 0x21;
    v2[13] = h->family == 4 ? 0x11 : 0x21;
    v2[14] = 0;
    v2[15] = (uint8_t)blen;
    memcpy(v2 + 16, h->src, alen);
    memcpy(v2 + 16 + alen, h->dst, alen);
    v2[16 + 2 * alen] = (uint8_t)(h->src_port >> 8);
    v2[17 + 2 * alen] = (uint8_t)h->src_port;
    v2[18 + 2 * alen] = (uint8_t)(h->dst_port >> 8);
    v2[19 + 2 * alen] = (uint8_t)h->dst_port;
    FUZZ_CHECK(pp_parse(v2, 16 + blen, BIG_LIMIT, &back) == (int)(16 + blen));
    FUZZ_CHECK(back.has_addr && back.family == h->family && back.version == 2);
    FUZZ_CHECK(!memcmp(back.src, h->src, alen) && !memcmp(back.dst, h->dst, alen));
    FUZZ_CHECK(back.src_port == h->src_port && back.dst_port == h->dst_port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_dup(data, size);
    struct pp_header h, h2;
    int rc = pp_parse(buf, size, BIG_LIMIT, &h);

    if (rc > 0) {
        check_header(&h, rc, size, BIG_LIMIT);
        /* the verdict depends only on the header's own bytes */
        FUZZ_CHECK(pp_parse(buf, (size_t)rc, BIG_LIMIT, &h2) == rc && same_result(&h, &h2));
        FUZZ_CHECK(pp_parse(buf, (size_t)rc - 1, BIG_LIMIT, &h2) == PP_NEED_MORE);
        FUZZ_CHECK(pp_parse(buf, (size_t)rc / 2, BIG_LIMIT, &h2) == PP_NEED_MORE);
        if (h.has_addr)
            check_round_trip(&h);
    } else {
        FUZZ_CHECK(rc == PP_INVALID || rc == PP_NEED_MORE);
        if (rc == PP_NEED_MORE)
            FUZZ_CHECK(size < BIG_LIMIT);
    }

    /* A prefix either needs more or decides exactly as the whole input. */
    if (size > 1) {
        size_t cut = (size_t)(fuzz_seed(data, size) % size);
        int r2 = pp_parse(buf, cut, BIG_LIMIT, &h2);
        FUZZ_CHECK(r2 == PP_NEED_MORE || r2 == rc);
        if (r2 > 0)
            FUZZ_CHECK(same_result(&h, &h2));
    }

    /* A smaller limit only turns a v2 verdict into a refusal, and only when
     * the header (declared) is longer than the limit. */
    if (size > 0) {
        size_t limit = 16 + (size_t)data[size - 1] * 4;
        int r3 = pp_parse(buf, size, limit, &h2);
        if (rc > 0 && (size_t)rc <= limit)
            FUZZ_CHECK(r3 == rc && same_result(&h, &h2));
        else if (r3 != rc)
            FUZZ_CHECK(r3 == PP_INVALID);
    }
    free(buf);
    return 0;
}
