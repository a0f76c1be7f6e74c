"""Malformed origin responses (SPEC §4, docs/http-refusals.md): the same
rules as for requests; the client gets 502 and that origin connection is
dropped, never reused.

Each case: a first request warms a kept-alive origin connection; the next
one is answered on that connection with the malformed response and must get
502; the request after it must reach the origin on a new connection.
"""
import socket
import threading
import time

import pytest

from harness import Reply, basic_config, build_request, http_request

OK_HEAD = b"HTTP/1.1 200 OK\r\n"

# id: raw bytes the origin answers /bad with
BAD = {
    # ---- framing (RFC 9112 §6, RFC 9110 §8.6)
    "cl-and-te": OK_HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-and-cl": OK_HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "cl-duplicate-same": OK_HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-duplicate-differ": OK_HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list": OK_HEAD + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl-not-digits": OK_HEAD + b"Content-Length: abc\r\n\r\nhello",
    "cl-negative": OK_HEAD + b"Content-Length: -5\r\n\r\nhello",
    "cl-plus": OK_HEAD + b"Content-Length: +5\r\n\r\nhello",
    "cl-empty": OK_HEAD + b"Content-Length: \r\n\r\nhello",
    "te-unknown": OK_HEAD + b"Transfer-Encoding: gzip\r\n\r\nhello",
    "te-gzip-chunked": OK_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-chunked-twice": OK_HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-two-lines": OK_HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-not-last": OK_HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-vtab": OK_HEAD + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
    "te-empty-element": OK_HEAD + b"Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
    "te-http10": b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "connection-names-cl": OK_HEAD + b"Connection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
    "connection-names-te": OK_HEAD + b"Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "204-with-content-length": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "204-with-chunked": b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # ---- chunked body (RFC 9112 §7.1)
    "chunk-size-not-hex": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-space": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    "chunk-size-17-digits": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk-size-bare-lf": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    "chunk-data-no-crlf": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "chunk-ext-bad": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n",
    "trailer-obs-fold": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n",
    # ---- field syntax (RFC 9112 §5, §2.2; RFC 9110 §5.5)
    "obs-fold": OK_HEAD + b"X-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",
    "ws-before-colon": OK_HEAD + b"Content-Length : 5\r\n\r\nhello",
    "ws-before-first-field": OK_HEAD + b" Content-Length: 5\r\n\r\nhello",
    "nul-in-value": OK_HEAD + b"X-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
    "bare-cr-in-value": OK_HEAD + b"X-A: a\rb\r\nContent-Length: 5\r\n\r\nhello",
    "vtab-in-value": OK_HEAD + b"X-A: a\x0bb\r\nContent-Length: 5\r\n\r\nhello",
    "bare-lf-field": OK_HEAD + b"X-A: a\nContent-Length: 5\r\n\r\nhello",
    "bare-lf-status-line": b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\nhello",
    "empty-field-name": OK_HEAD + b": a\r\nContent-Length: 5\r\n\r\nhello",
    "too-many-fields": OK_HEAD + b"".join(b"X-F%d: v\r\n" % i for i in range(100))
    + b"Content-Length: 5\r\n\r\nhello",
    # ---- status line (RFC 9112 §4)
    "status-not-digits": b"HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello",
    "status-no-sp": b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello",
    "status-two-digits": b"HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello",
    "status-600": b"HTTP/1.1 600 Odd\r\nContent-Length: 5\r\n\r\nhello",
    "status-double-space": b"HTTP/1.1  200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "not-http": b"NOTHTTP 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "version-2.0": b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "version-lowercase": b"http/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "leading-empty-line": b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "nul-in-reason": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 5\r\n\r\nhello",
}


def handler_for(bad):
    def handler(req):
        if req.target == "/bad":
            return Reply(raw=bad)
        return Reply(200, f"good {req.target}", headers=[("X-Path", req.target)])
    return handler


def request_on_new_client(port, path):
    return http_request(port, "GET", path, timeout=5)


def conn_of(o, path):
    ids = [m.conn_id for m in o.requests if m.target == path]
    assert len(ids) == 1, f"{path} reached the origin {len(ids)} times"
    return ids[0]


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_response_502_and_connection_dropped(limpet, origin, raw, name):
    o = origin("s1", handler=handler_for(BAD[name]))
    lp = limpet(basic_config([o]))
    assert request_on_new_client(lp.port, "/warm").status == 200
    c = raw(lp.port, timeout=5)
    c.request("GET", "/bad")
    r = c.read_response()
    assert r.status == 502, f"{name}: got {r.status}"
    assert c.closed_within(3)
    r = request_on_new_client(lp.port, "/next")
    assert r.status == 200 and r.body == b"good /next", f"{name}: {r}"
    warm, bad, nxt = conn_of(o, "/warm"), conn_of(o, "/bad"), conn_of(o, "/next")
    assert bad == warm, f"{name}: precondition: /bad should reuse the kept-alive connection"
    assert nxt != bad, f"{name}: the origin connection was reused after a malformed response"
    assert o.connections == 2, f"{name}: origin saw {o.connections} connections"
    assert len(o.requests) == 3, f"{name}: a request was retried: {o.paths()}"


def test_battery_size():
    assert len(BAD) >= 40


def test_control_good_response_keeps_connection(limpet, origin):
    """The control for the battery: a valid answer on /bad → the next request
    reuses the connection, so the battery's `new connection` is meaningful."""
    o = origin("s1", handler=handler_for(OK_HEAD + b"Content-Length: 5\r\n\r\nhello"))
    lp = limpet(basic_config([o]))
    assert request_on_new_client(lp.port, "/warm").status == 200
    r = request_on_new_client(lp.port, "/bad")
    assert r.status == 200 and r.body == b"hello"
    assert request_on_new_client(lp.port, "/next").status == 200
    assert conn_of(o, "/warm") == conn_of(o, "/bad") == conn_of(o, "/next")
    assert o.connections == 1


INJECTED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Injected: 1\r\n\r\ninjected"

# id: (what the origin sends for /bad: a complete response + bytes after it,
#      the status and body the client must get for /bad)
EXTRA = {
    "whole-response": (OK_HEAD + b"Content-Length: 5\r\n\r\nhello" + INJECTED, 200, b"hello"),
    "garbage": (OK_HEAD + b"Content-Length: 5\r\n\r\nhellogarbage", 200, b"hello"),
    "crlf": (OK_HEAD + b"Content-Length: 5\r\n\r\nhello\r\n", 200, b"hello"),
    "after-chunked": (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                      + INJECTED, 200, b"hello"),
    "204-with-body": (b"HTTP/1.1 204 No Content\r\n\r\n" + INJECTED, 204, b""),
    "304-with-body": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\ninjected", 304, b""),
}


@pytest.mark.parametrize("name", list(EXTRA))
def test_bytes_after_response_never_reach_another_client(limpet, origin, name):
    """Bytes an origin sends after a complete response answer no request:
    they must not be taken as the response to the next request on that
    connection (response-queue poisoning); the connection is dropped."""
    data, status, body = EXTRA[name]
    o = origin("s1", handler=handler_for(data))
    lp = limpet(basic_config([o]))
    r = request_on_new_client(lp.port, "/bad")
    assert r.status == status and r.body == body, r
    time.sleep(0.1)             # let the extra bytes arrive at limpet
    for i in range(3):
        r = request_on_new_client(lp.port, f"/next{i}")
        assert r.status == 200, r
        assert r.header("X-Injected") is None and r.body == f"good /next{i}".encode(), r
    assert conn_of(o, "/next0") != conn_of(o, "/bad"), "connection reused after extra bytes"


def test_body_to_head_request_never_reaches_another_client(limpet, origin, raw):
    """A response to HEAD has no body: bytes an origin sends after its head
    are not the next response."""
    def handler(req):
        if req.method == "HEAD":
            return Reply(raw=OK_HEAD + b"Content-Length: 8\r\n\r\ninjected")
        return Reply(200, f"good {req.target}")
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o]))
    c = raw(lp.port, timeout=5)
    c.request("HEAD", "/head")
    assert c.read_response(head=True).status == 200
    c.close()
    time.sleep(0.1)
    r = request_on_new_client(lp.port, "/next")
    assert r.status == 200 and r.body == b"good /next", r


# --------------------------------------------------------------------------
# bad chunk framing after the head went to the client: abort, never reuse
# --------------------------------------------------------------------------

class ScriptedOrigin:
    """A bare origin: for each request head read on a connection it sends
    the next script entry, a list of (delay_seconds, bytes) parts. Records
    (connection number, request line) pairs."""

    def __init__(self, scripts):
        self.scripts = list(scripts)
        self.seen = []
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.name = "scripted"
        self.stopping = False
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                continue
            self.conns += 1
            threading.Thread(target=self._serve, args=(s, self.conns), daemon=True).start()

    def _serve(self, s, n):
        s.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                with self.lock:
                    self.seen.append((n, head.split(b"\r\n", 1)[0].decode()))
                    script = self.scripts.pop(0) if self.scripts else [(0, OK_HEAD + b"Content-Length: 2\r\n\r\nok")]
                for delay, part in script:
                    time.sleep(delay)
                    s.sendall(part)
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.stopping = True
        self.lsock.close()


@pytest.mark.parametrize("bad_tail", [
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
], ids=["bad-size", "no-crlf-after-data", "space-after-size"])
def test_bad_chunk_after_head_relayed_aborts(limpet, raw, bad_tail):
    head = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    so = ScriptedOrigin([
        [(0, OK_HEAD + b"Content-Length: 2\r\n\r\nok")],   # /warm
        [(0, head), (0.3, bad_tail)],                      # /bad
    ])
    try:
        lp = limpet(basic_config([so]))
        assert request_on_new_client(lp.port, "/warm").status == 200
        c = raw(lp.port, timeout=5)
        c.request("GET", "/bad")
        got = c.read_until_close(timeout=5)
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
        assert not got.endswith(b"0\r\n\r\n"), "client saw a complete chunked body"
        r = request_on_new_client(lp.port, "/next")
        assert r.status == 200
        conns = {line.split()[1]: n for n, line in so.seen}
        assert conns["/bad"] == conns["/warm"]
        assert conns["/next"] != conns["/bad"], "origin connection reused after bad chunk framing"
    finally:
        so.stop()
