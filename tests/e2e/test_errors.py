"""Failures: unreachable origins, malformed requests and responses, origins
that die mid-response (SPEC §4, §5)."""
import collections
import time

import pytest

from harness import Reply, basic_config, build_request, free_port, http_request


def dead_address():
    return f"127.0.0.1:{free_port()}"     # nothing listens there: connect refused


# --------------------------------------------------------------------------
# origins down
# --------------------------------------------------------------------------

def test_all_origins_down_503_with_retry_after(limpet):
    lp = limpet(basic_config([("d1", dead_address()), ("d2", dead_address())]))
    for _ in range(3):
        t0 = time.monotonic()
        r = http_request(lp.port, "GET", "/down")
        elapsed = time.monotonic() - t0
        assert r.status == 503
        assert r.header("Retry-After") is not None, r.headers
        assert r.header("Retry-After").strip().isdigit()
        assert elapsed < 3, f"503 took {elapsed:.2f}s"


def test_503_keeps_client_connection_usable(limpet, raw):
    lp = limpet(basic_config([("d1", dead_address())]))
    c = raw(lp.port)
    c.request("GET", "/a")
    r1 = c.read_response()
    assert r1.status == 503
    if not c.closed_within(0.3):
        c.request("GET", "/b")
        assert c.read_response().status == 503


def test_one_of_two_origins_down(limpet, origin):
    alive = origin("alive")
    lp = limpet(basic_config([("dead", dead_address()), alive], steering="round_robin"))
    counts = collections.Counter()
    t0 = time.monotonic()
    for i in range(40):
        r = http_request(lp.port, "GET", f"/r/{i}")
        assert r.status == 200, f"request {i} got {r.status}"
        counts[r.header("X-Served-By")] += 1
    assert counts == {"alive": 40}
    assert len(alive.requests) == 40
    assert time.monotonic() - t0 < 10


def test_post_retried_on_connect_refused(limpet, origin):
    """A connect failure means the request never left: it may go elsewhere,
    body included."""
    alive = origin("alive", handler=lambda req: Reply(200, req.body))
    lp = limpet(basic_config([("dead", dead_address()), alive]))
    for i in range(6):
        body = f"body-{i}".encode() * 100
        r = http_request(lp.port, "POST", f"/p/{i}", body=body)
        assert r.status == 200 and r.body == body


def test_origin_comes_back(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    assert http_request(lp.port, "GET", "/1").status == 200
    port = o.port
    o.stop()
    r = http_request(lp.port, "GET", "/2")
    assert r.status == 503
    # the origin is back on the same port: with no monitor, traffic flows
    # again (at the latest once limpet retries it)
    o2 = origin("s1-again", port=port)
    deadline = time.monotonic() + 12
    while True:
        r = http_request(lp.port, "GET", "/3")
        if r.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status == 200, "origin not used again after it came back"
    assert r.body == b"s1-again GET /3\n"
    assert len(o2.requests) >= 1


# --------------------------------------------------------------------------
# origin misbehaving
# --------------------------------------------------------------------------

def test_origin_closes_mid_response_aborts_client(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, b"a" * 100_000, abort_after=40_000))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/cut")
    got = c.read_until_close(timeout=5)
    head, sep, body = got.partition(b"\r\n\r\n")
    assert len(body) < 100_000
    # whatever was sent, it must not look complete
    if head.startswith(b"HTTP/1.1 200"):
        assert b"content-length: 100000" in head.lower() or b"chunked" in head.lower()
        if b"chunked" in head.lower():
            assert not body.endswith(b"0\r\n\r\n")
    assert len(o.requests) == 1, "a response cut off mid-body must not be retried"


def test_origin_closes_mid_chunked_response(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, b"b" * 50_000, chunked=1000, abort_after=20_000))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/cut-chunked")
    got = c.read_until_close(timeout=5)
    assert not got.endswith(b"0\r\n\r\n"), "client saw a complete chunked body"
    assert len(o.requests) == 1


def test_origin_closes_without_response_gives_502(limpet, origin):
    # raw=b"" with close: the origin reads the request and hangs up
    o = origin("s1", handler=lambda req: Reply(raw=b"", close=True))
    lp = limpet(basic_config([o]))
    r = http_request(lp.port, "POST", "/nothing", body=b"x")
    assert r.status == 502


@pytest.mark.parametrize("bad", [
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"NOTHTTP 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header : x\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
], ids=["cl-not-digits", "cl-differ", "cl-and-te", "bad-status", "not-http",
        "space-before-colon", "bad-chunk-size"])
def test_malformed_origin_response_502(limpet, origin, raw, bad):
    calls = []

    def handler(req):
        calls.append(req.target)
        if req.target == "/bad":
            return Reply(raw=bad)
        return Reply(200, "good")
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o]))
    c = raw(lp.port, timeout=5)
    c.request("GET", "/bad")
    try:
        r = c.read_response()
        status = r.status
    except AssertionError:
        status = None        # connection aborted: acceptable only for a bad body
    if bad.startswith(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"):
        assert status in (502, None)
    else:
        assert status == 502
    # the origin connection was dropped: a new request works on a new one
    r = http_request(lp.port, "GET", "/good")
    assert r.status == 200 and r.body == b"good"
    assert o.connections >= 2


# --------------------------------------------------------------------------
# malformed requests
# --------------------------------------------------------------------------

AFTER = build_request("GET", "/after", [("Host", "h")])

MALFORMED = {
    "space-before-colon": (b"GET /x HTTP/1.1\r\nHost : h\r\n\r\n", {400}),
    "cl-and-te": (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    "cl-differ": (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", {400}),
    "cl-list-differ": (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!", {400}),
    "cl-plus": (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", {400}),
    "cl-hex": (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello", {400}),
    "cl-negative": (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", {400}),
    "te-on-http10": (b"POST /x HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    "te-chunked-twice": (b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", {400}),
    "te-chunked-not-final": (b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400, 501}),
    "te-unknown": (b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: x-custom\r\n\r\n0\r\n\r\n", {400, 501}),
    "bad-chunk-size": (b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", {400}),
    "chunk-no-crlf": (b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", {400}),
    "obs-fold": (b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", {400}),
    "nul-in-header": (b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", {400}),
    "bare-cr": (b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", {400}),
    "bare-lf": (b"GET /x HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", {400}),
    "request-line-extra": (b"GET /x HTTP/1.1 extra\r\nHost: h\r\n\r\n", {400}),
    "request-line-version": (b"GET /x HTTX/1.1\r\nHost: h\r\n\r\n", {400}),
    "request-line-double-space": (b"GET  /x HTTP/1.1\r\nHost: h\r\n\r\n", {400}),
    "no-host-http11": (b"GET /x HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    "two-hosts": (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    "101-headers": (b"GET /x HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-N%d: v\r\n" % i for i in range(100)) + b"\r\n", {400}),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_refused(limpet, origin, raw, name):
    data, statuses = MALFORMED[name]
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port, timeout=5)
    c.send(data + AFTER)           # nothing pipelined behind it may be processed
    r = c.read_response()
    assert r.status in statuses, f"{name}: got {r.status}, want {statuses}"
    assert c.closed_within(3), f"{name}: connection not closed after {r.status}"
    assert len(c.buf) == 0, f"{name}: more bytes after the error response: {bytes(c.buf[:200])!r}"
    assert "/after" not in o.paths(), f"{name}: request pipelined behind it was processed"
    if not name.startswith(("bad-chunk", "chunk-")):
        assert o.requests == [], f"{name}: forwarded to the origin: {o.requests}"


def test_100_header_fields_accepted(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-N%d: v\r\n" % i for i in range(99)) + b"\r\n")
    assert c.read_response().status == 200


def test_request_line_too_long_414(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    r = c.read_response()
    assert r.status == 414
    assert c.closed_within(3)
    assert o.requests == []


def test_headers_too_big_431(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o], limits={"max_header_bytes": 4096}))
    c = raw(lp.port)
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 500) for i in range(16)) + b"\r\n")
    r = c.read_response()
    assert r.status == 431
    assert c.closed_within(3)
    assert o.requests == []
    # just under the limit is fine
    c2 = raw(lp.port)
    c2.send(b"GET /x HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 500) for i in range(5)) + b"\r\n")
    assert c2.read_response().status == 200


def test_request_header_timeout_408(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o], timeouts={"request_header": 0.5}))
    c = raw(lp.port)
    c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n")      # never finished
    t0 = time.monotonic()
    r = c.read_response(timeout=5)
    assert r.status == 408
    assert time.monotonic() - t0 < 4
    assert c.closed_within(3)
    assert o.requests == []


def test_silent_connection_closed_after_request_header(limpet, origin, raw):
    """A client that connects and sends nothing is closed once request_header
    has passed: the kernel hands such a connection to limpet a second after
    its handshake (listeners defer accepting until the first bytes), and its
    header clock runs from then. Nothing is sent to an origin."""
    o = origin("s1")
    lp = limpet(basic_config([o], timeouts={"request_header": 0.5}))
    c = raw(lp.port)
    t0 = time.monotonic()
    assert c.closed_within(6), "a silent connection was never closed"
    waited = time.monotonic() - t0
    assert 0.5 <= waited < 4, f"closed {waited:.2f}s after connecting"
    assert b"HTTP/1.1 2" not in bytes(c.buf)
    assert o.requests == []
    # a client that speaks is handed over at once, with no such wait
    c2 = raw(lp.port)
    t1 = time.monotonic()
    c2.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert c2.read_response().status == 200
    assert time.monotonic() - t1 < 0.5


def test_malformed_after_good_request(limpet, origin, raw):
    """A good request answered, then a bad one pipelined behind it: 200, 400, close."""
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/good", [("Host", "h")]) + b"GET /bad HTTP/1.1\r\nHost : h\r\n\r\n" + AFTER)
    assert c.read_response().status == 200
    assert c.read_response().status == 400
    assert c.closed_within(3)
    assert o.paths() == ["/good"]


def test_limpet_survives_garbage(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    for junk in (b"\x00" * 100, b"\xff\xfe\r\n\r\n", b"GET\r\n\r\n", b"\r\n" * 10 + b"garbage\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"A" * 70_000):
        c = raw(lp.port, timeout=5)
        try:
            c.send(junk)
        except OSError:
            pass
        c.closed_within(3)
        c.close()
    assert http_request(lp.port, "GET", "/still-alive").status == 200
    assert lp.running()
