/*
 * demo_origin — a small, fast HTTP/1.1 origin server built into limpet.
 *
 * It is what `limpet --demo` puts behind the balancer (three of them, on
 * threads of the limpet process) and what `limpet --demo-origin ADDR NAME`
 * runs alone as a test or benchmark backend (SPEC §1):
 *
 *   GET /status   200 application/json {"state":"RUNNING"} (health monitors)
 *   anything else 200 text/html: a page naming the origin and counting the
 *                 visits of this session to THIS origin, tracked with the
 *                 origin's own `demo_session` cookie, so a browser refresh
 *                 shows whether affinity keeps the session on one origin.
 *
 * Every response carries `X-Served-By: NAME`. Each origin owns one event loop
 * (core/loop.h) on one thread; nothing is shared between origins.
 */
#ifndef LIMPET_DEMO_DEMO_ORIGIN_H
#define LIMPET_DEMO_DEMO_ORIGIN_H

struct demo_origin;

/*
 * Starts a demo origin listening on `address` ("127.0.0.1:9001", "[::1]:9001";
 * parsed by addr_parse(), so port 0 is refused) that calls itself `name`
 * (1..64 printable ASCII characters, no spaces), on a thread of its own. Returns 0 and
 * sets *out, or -errno after printing a message naming the address to stderr
 * (-EINVAL for a bad address or name, -EADDRINUSE, ...).
 */
int demo_origin_start(const char *address, const char *name, struct demo_origin **out);

/* Stops its thread, closes its listener and connections, frees it. NULL is a no-op. */
void demo_origin_stop(struct demo_origin *origin);

/* The TCP port it listens on. */
int demo_origin_port(const struct demo_origin *origin);

/*
 * Runs one on the calling thread until SIGINT or SIGTERM (received through a
 * signalfd; both are blocked on the calling thread meanwhile and the previous
 * mask restored afterwards). Returns 0, or 1 after printing an error (address
 * in use, bad address...). Used by `limpet --demo-origin ADDR NAME`.
 */
int demo_origin_run(const char *address, const char *name);

#endif
