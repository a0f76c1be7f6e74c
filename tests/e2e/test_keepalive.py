"""Keep-alive on both sides, origin connection reuse, pipelining (SPEC §4)."""
import http.client
import time

from harness import Reply, basic_config, build_request


def test_50_requests_on_one_client_connection(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    conn.connect()
    sock = conn.sock
    local = sock.getsockname()
    for i in range(50):
        conn.request("GET", f"/ka/{i}")
        r = conn.getresponse()
        assert r.status == 200
        assert r.read() == f"s1 GET /ka/{i}\n".encode()
        # http.client silently reconnects if the server closed: check it did not
        assert conn.sock is sock and sock.getsockname() == local, f"reconnected after request {i}"
    conn.close()
    assert len(o.requests) == 50
    assert o.connections <= 5, f"origin saw {o.connections} TCP connections for 50 requests"


def test_origin_connections_reused_across_clients(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    for i in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
        conn.request("GET", f"/c/{i}")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == f"s1 GET /c/{i}\n".encode()
        conn.close()
    assert len(o.requests) == 20
    assert o.connections <= 5, f"origin saw {o.connections} TCP connections for 20 sequential requests"


def test_pipelined_requests_answered_in_order(limpet, origin, raw):
    # later requests are faster: an implementation answering out of order shows it
    o = origin("s1", handler=lambda req: Reply(
        200, f"path={req.target}", headers=[("X-Path", req.target)],
        delay=0.05 * (5 - int(req.target.rsplit("/", 1)[1]))))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    paths = [f"/pipe/{i}" for i in range(5)]
    c.send(b"".join(build_request("GET", p, [("Host", "h")]) for p in paths))
    got = [c.read_response() for _ in paths]
    assert [r.status for r in got] == [200] * 5
    assert [r.body.decode() for r in got] == [f"path={p}" for p in paths]
    assert [r.header("X-Path") for r in got] == paths
    # still usable afterwards
    c.request("GET", "/pipe/after".replace("after", "0"))
    assert c.read_response().body == b"path=/pipe/0"


def test_pipelined_mixed_methods_and_bodies(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, f"{req.method} {req.target} {len(req.body)}"))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/1", [("Host", "h")])
           + build_request("POST", "/2", [("Host", "h"), ("Content-Length", "5")], b"hello")
           + build_request("HEAD", "/3", [("Host", "h")])
           + build_request("POST", "/4", [("Host", "h"), ("Transfer-Encoding", "chunked")],
                           b"3\r\nabc\r\n0\r\n\r\n")
           + build_request("GET", "/5", [("Host", "h")]))
    r1 = c.read_response()
    r2 = c.read_response()
    r3 = c.read_response(head=True)
    r4 = c.read_response()
    r5 = c.read_response()
    assert r1.body == b"GET /1 0"
    assert r2.body == b"POST /2 5"
    assert r3.status == 200 and r3.header("Content-Length") == str(len(b"HEAD /3 0"))
    assert r4.body == b"POST /4 3"
    assert r5.body == b"GET /5 0"
    assert [r.body for r in o.requests] == [b"", b"hello", b"", b"abc", b""]


def test_client_connection_close(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/bye", headers=[("Connection", "close")])
    r = c.read_response()
    assert r.status == 200 and r.body == b"s1 GET /bye\n"
    assert c.closed_within(3), "limpet kept the connection open after Connection: close"


def test_origin_connection_close_not_reused(limpet, origin):
    """An origin that answers Connection: close is not reused; the client's
    connection still carries on."""
    o = origin("s1", handler=lambda req: Reply(200, f"ok {req.target}", close=True))
    lp = limpet(basic_config([o]))
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    conn.connect()
    sock = conn.sock
    for i in range(5):
        conn.request("GET", f"/oc/{i}")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == f"ok /oc/{i}".encode()
    assert conn.sock is sock, "client connection was closed because the origin's was"
    conn.close()
    assert o.connections == 5


def test_stale_pooled_origin_connection(limpet, origin):
    """The origin closes idle keep-alive connections after 0.3 s; the next
    request through limpet must still succeed."""
    o = origin("s1", idle_close=0.3)
    lp = limpet(basic_config([o]))
    for i in range(3):
        r = http_get(lp.port, f"/stale/{i}")
        assert r == (200, f"s1 GET /stale/{i}\n".encode())
        time.sleep(0.8)
    assert len(o.requests) == 3
    assert not o.errors


def test_idle_client_connection_closed_after_keepalive_timeout(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o], timeouts={"keepalive": 0.5}))
    c = raw(lp.port)
    c.request("GET", "/idle")
    assert c.read_response().status == 200
    t0 = time.monotonic()
    assert c.closed_within(4), "idle connection not closed after timeouts.keepalive"
    assert time.monotonic() - t0 >= 0.3


def test_keepalive_client_survives_many_origin_round_trips(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, req.body[::-1]))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    for i in range(100):
        body = f"message number {i}".encode()
        c.request("POST", f"/r/{i}", body=body)
        r = c.read_response()
        assert r.status == 200 and r.body == body[::-1]
    assert o.connections <= 5


def http_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _wait_open_connections(o, n, within):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and o.open_connections != n:
        time.sleep(0.05)
    return o.open_connections


def test_idle_origin_connection_kept_while_reused_then_closed_after_keepalive(limpet, origin):
    # limpet's idle timer on a pooled origin connection is postponed by each
    # reuse: used every 0.3 s for longer than timeouts.keepalive, the one
    # connection must stay; left alone, it must close after the timeout.
    o = origin("s1")
    lp = limpet(basic_config([o], timeouts={"keepalive": 1.0}))
    for i in range(8):
        assert http_get(lp.port, f"/reuse/{i}") == (200, f"s1 GET /reuse/{i}\n".encode())
        time.sleep(0.3)
    assert o.connections == 1, f"origin saw {o.connections} connections: closed while in use"
    t0 = time.monotonic()
    assert _wait_open_connections(o, 0, 5) == 0, "idle origin connection never closed"
    assert time.monotonic() - t0 >= 0.3


def test_origin_connection_busy_past_keepalive_is_reused_then_closed(limpet, origin):
    # The idle timeout coming due while the connection serves a slow request
    # must not close it; once idle again it gets a whole timeout.
    def handler(req):
        return Reply(200, req.target.encode(), delay=1.5 if req.target == "/slow" else 0.0)
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o], timeouts={"keepalive": 1.0}))
    assert http_get(lp.port, "/first") == (200, b"/first")
    time.sleep(0.5)
    assert http_get(lp.port, "/slow") == (200, b"/slow")  # its old idle deadline passes meanwhile
    time.sleep(0.5)
    assert http_get(lp.port, "/after") == (200, b"/after")
    assert o.connections == 1, f"origin saw {o.connections} connections"
    t0 = time.monotonic()
    assert _wait_open_connections(o, 0, 5) == 0, "idle origin connection never closed"
    assert time.monotonic() - t0 >= 0.5
