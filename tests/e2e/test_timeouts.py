"""timeouts.* (SPEC §2): slow origins and slow clients are cut off."""
import time

from harness import Reply, basic_config, build_request, http_request


def test_server_timeout_gives_504(limpet, origin):
    o = origin("s1", handler=lambda req: Reply(200, "too late", delay=4))
    lp = limpet(basic_config([o], timeouts={"server": 0.5}))
    t0 = time.monotonic()
    r = http_request(lp.port, "GET", "/slow")
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert elapsed < 3, f"answered after {elapsed:.1f}s"
    assert len(o.requests) == 1, "a timed-out request must not be retried elsewhere"


def test_server_timeout_not_hit_by_slow_but_steady_body(limpet, origin):
    """The server timeout is about silence: a body dripping in steadily for
    longer than the timeout still arrives whole."""
    o = origin("s1", handler=lambda req: Reply(200, b"d" * 20, chunked=2, drip=0.2))
    lp = limpet(basic_config([o], timeouts={"server": 1}))
    r = http_request(lp.port, "GET", "/drip")
    assert r.status == 200 and r.body == b"d" * 20


def test_client_timeout_mid_body(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o], timeouts={"client": 0.5}))
    c = raw(lp.port)
    c.send(build_request("POST", "/stall", [("Host", "h"), ("Content-Length", "100")], b"0123456789"))
    t0 = time.monotonic()
    assert c.closed_within(5), "limpet waited forever for the rest of the body"
    assert time.monotonic() - t0 < 4
    assert "/stall" not in [r.target for r in o.requests if len(r.body) == 100]


def test_request_header_timeout_slowloris(limpet, origin, raw):
    """Header bytes trickling in do not reset the request_header clock."""
    o = origin("s1")
    lp = limpet(basic_config([o], timeouts={"request_header": 1}))
    c = raw(lp.port)
    c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n")
    t0 = time.monotonic()
    closed = False
    for i in range(30):
        try:
            c.send(b"X-Drip-%d: x\r\n" % i)
        except OSError:
            closed = True
            break
        if c.closed_within(0.2):
            closed = True
            break
    assert closed, "connection still open after 6 s of header trickle"
    assert time.monotonic() - t0 < 4
    assert o.requests == []
