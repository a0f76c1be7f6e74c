"""Upgrade tunnels (WebSocket) and h2c (SPEC §4)."""
import os

from harness import WS_HEADERS, Reply, basic_config, build_request, sha256, websocket_handler

def test_websocket_tunnel(limpet, origin, raw):
    o = origin("s1", handler=websocket_handler("s1"))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    r = c.read_response()
    assert r.status == 101, r
    assert (r.header("Upgrade") or "").lower() == "websocket"
    assert "upgrade" in (r.header("Connection") or "").lower()
    [req] = o.requests
    assert (req.header("Upgrade") or "").lower() == "websocket"
    assert "upgrade" in (req.header("Connection") or "").lower()
    assert req.header("Sec-WebSocket-Key") == "dGhlIHNhbXBsZSBub25jZQ=="
    # bytes flow both ways, unparsed
    c.send(b"hello tunnel\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert c.recv_exactly(34) == b"hello tunnel\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    blob = os.urandom(300_000)
    c.send(blob)
    assert sha256(c.recv_exactly(len(blob), timeout=10)) == sha256(blob)
    assert len(o.requests) == 1     # the tunnelled "GET" was not parsed as a request


def test_websocket_tunnel_closed_by_origin(limpet, origin, raw):
    def handler(req):
        return Reply(raw=b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\nbye", close=True)
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    assert c.read_response().status == 101
    assert c.closed_within(5)
    assert bytes(c.buf) == b"bye"


def test_upgrade_declined_by_origin(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, "no upgrade for you"))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    r = c.read_response()
    assert r.status == 200 and r.body == b"no upgrade for you"
    c.request("GET", "/next")
    r = c.read_response()
    assert r.status == 200 and r.body == b"no upgrade for you"
    assert o.paths() == ["/ws", "/next"]


def test_h2c_upgrade_never_forwarded(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/h2c", [("Host", "h"), ("Connection", "Upgrade, HTTP2-Settings"),
                                         ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")]))
    r = c.read_response()
    assert r.status == 200 and r.body == b"s1 GET /h2c\n"
    [req] = o.requests
    assert not req.has_header("Upgrade"), req.headers
    assert not req.has_header("HTTP2-Settings"), req.headers
    c.request("GET", "/after")
    assert c.read_response().body == b"s1 GET /after\n"
