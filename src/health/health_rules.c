/*
 * health_rules — the pure decisions of health checking (see health.h): the
 * rise/fall state machine, expected_codes matching and the spread of checks
 * over an interval. No I/O and no state of their own, so unit tests drive
 * them directly.
 */
#include "health/health.h"

#include <stddef.h>

enum health_change health_count(struct health_counts *c, bool pass, unsigned retries,
                                unsigned rise)
{
    if (pass) {
        c->fails = 0;
        c->passes++;
        if (!c->up && c->passes >= rise) {
            c->up = true;
            return HEALTH_WENT_UP;
        }
        return HEALTH_SAME;
    }
    c->passes = 0;
    c->fails++;
    if (c->up && c->fails >= retries) {
        c->up = false;
        return HEALTH_WENT_DOWN;
    }
    return HEALTH_SAME;
}

/* Whether the three characters at p ("200" or "2xx") match status. */
static bool code_matches(const char *p, int status)
{
    int digits[3] = {status / 100, status / 10 % 10, status % 10};
    for (int i = 0; i < 3; i++) {
        if (p[i] == 'x')
            continue;
        if (p[i] - '0' != digits[i])
            return false;
    }
    return true;
}

bool health_codes_match(const char *expected_codes, int status)
{
    if (status < 100 || status > 999)
        return false;
    const char *p = expected_codes;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (p[0] == '\0' || p[1] == '\0' || p[2] == '\0')
            return false;
        if (code_matches(p, status))
            return true;
        p += 3;
    }
}

uint64_t health_phase_ms(const char *pool, const char *origin, uint64_t interval_ms)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a over "pool/origin" */
    for (const char *parts[] = {pool, "/", origin, NULL}, **s = parts; *s; s++) {
        for (const unsigned char *c = (const unsigned char *)*s; *c; c++) {
            h ^= *c;
            h *= 1099511628211ull;
        }
    }
    h ^= h >> 29; /* FNV's low bits mix poorly for similar names */
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return interval_ms ? h % interval_ms : 0;
}

uint64_t health_next_due(uint64_t now_ms, uint64_t interval_ms, uint64_t phase_ms)
{
    if (interval_ms == 0)
        return now_ms;
    uint64_t base = now_ms - now_ms % interval_ms + phase_ms % interval_ms;
    return base > now_ms ? base : base + interval_ms;
}
