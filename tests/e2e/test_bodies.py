"""Request and response bodies: large bodies byte-exact, chunked both ways,
HEAD / 204 / 304, close-delimited origin bodies, Expect: 100-continue, 1xx
(SPEC §4)."""
import http.client
import os
import time

from harness import (Reply, basic_config, build_request, chunk_encode, curl,
                     http_request, sha256)


def echo_hash(req):
    return Reply(200, f"{len(req.body)} {sha256(req.body)}",
                 headers=[("X-Chunked-At-Origin", str(req.chunked))])


def test_post_300k_body_byte_exact(limpet, origin):
    o = origin("s1", handler=echo_hash)
    lp = limpet(basic_config([o]))
    body = os.urandom(300 * 1024)
    r = http_request(lp.port, "POST", "/upload", body=body,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200
    assert r.body.decode() == f"{len(body)} {sha256(body)}"
    [req] = o.requests
    assert sha256(req.body) == sha256(body)


def test_post_300k_body_with_curl(limpet, origin, tmp_path):
    o = origin("s1", handler=echo_hash)
    lp = limpet(basic_config([o]))
    body = os.urandom(300 * 1024)
    f = tmp_path / "body.bin"
    f.write_bytes(body)
    p = curl("--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream",
             f"{lp.url}/upload")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == f"{len(body)} {sha256(body)}"


def test_5mb_response_byte_exact(limpet, origin, tmp_path):
    big = os.urandom(5 * 1024 * 1024)
    o = origin("s1", handler=lambda req: Reply(200, big,
                                               headers=[("Content-Type", "application/octet-stream")]))
    lp = limpet(basic_config([o]))
    r = http_request(lp.port, "GET", "/big", timeout=20)
    assert r.status == 200
    assert r.header("Content-Length") in (None, str(len(big)))
    assert len(r.body) == len(big)
    assert sha256(r.body) == sha256(big)
    out = tmp_path / "curl.bin"
    p = curl("-o", str(out), f"{lp.url}/big")
    assert p.returncode == 0, p.stderr
    assert sha256(out.read_bytes()) == sha256(big)


def test_5mb_response_slow_reader(limpet, origin, raw):
    """Back-pressure: a client that reads slowly still gets every byte."""
    big = os.urandom(5 * 1024 * 1024)
    o = origin("s1", handler=lambda req: Reply(200, big))
    lp = limpet(basic_config([o]))
    c = raw(lp.port, timeout=20)
    c.request("GET", "/big")
    time.sleep(1.0)        # let every buffer on the way fill up
    resp = c.read_response(timeout=20)
    assert resp.status == 200
    assert sha256(resp.body) == sha256(big)


def test_chunked_response_relayed(limpet, origin, raw):
    data = os.urandom(200_000)
    o = origin("s1", handler=lambda req: Reply(200, data, chunked=[1, 10, 4096, 65536, 333]))
    lp = limpet(basic_config([o]))
    # http.client de-chunks
    r = http_request(lp.port, "GET", "/chunked")
    assert r.status == 200
    assert sha256(r.body) == sha256(data)
    # raw: the response to an HTTP/1.1 client is chunked (length unknown up front)
    c = raw(lp.port)
    c.request("GET", "/chunked")
    resp = c.read_response()
    assert resp.status == 200
    assert resp.chunked, f"expected a chunked response, got headers {resp.headers}"
    assert not resp.has_header("Content-Length")
    assert sha256(resp.body) == sha256(data)
    # and the connection is still usable
    c.request("GET", "/next")
    assert c.read_response().status == 200


def test_chunked_response_with_trailers_then_next_request(limpet, origin, raw):
    def handler(req):
        if req.target == "/t":
            return Reply(200, b"abcdefghij" * 100, chunked=7, trailers=[("X-Checksum", "42")])
        return Reply(200, "plain")
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/t")
    resp = c.read_response()
    assert resp.status == 200 and resp.body == b"abcdefghij" * 100
    c.request("GET", "/after")
    resp = c.read_response()
    assert resp.status == 200 and resp.body == b"plain"
    assert o.paths() == ["/t", "/after"]


def test_chunked_response_dripped(limpet, origin):
    """Chunks that trickle in are streamed, not held back until the end."""
    o = origin("s1", handler=lambda req: Reply(200, b"x" * 20, chunked=2, drip=0.1))
    lp = limpet(basic_config([o]))
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    t0 = time.monotonic()
    conn.request("GET", "/drip")
    r = conn.getresponse()
    first = r.read1(1) if hasattr(r, "read1") else r.read(1)
    t_first = time.monotonic() - t0
    rest = r.read()
    t_all = time.monotonic() - t0
    conn.close()
    assert first + rest == b"x" * 20
    assert t_all >= 0.8
    assert t_first < 0.6, f"first byte after {t_first:.2f}s: response was buffered"


def test_chunked_request_body_http_client(limpet, origin):
    o = origin("s1", handler=echo_hash)
    lp = limpet(basic_config([o]))
    data = os.urandom(300 * 1024)
    pieces = [data[i:i + 7000] for i in range(0, len(data), 7000)]
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    conn.request("POST", "/chunked-up", body=iter(pieces), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    got = r.read()
    conn.close()
    assert r.status == 200
    assert got.decode() == f"{len(data)} {sha256(data)}"
    [req] = o.requests
    assert req.body == data


def test_chunked_request_body_raw(limpet, origin, raw):
    o = origin("s1", handler=echo_hash)
    lp = limpet(basic_config([o]))
    data = os.urandom(100_000)
    payload = chunk_encode(data, [1, 2, 3, 4093, 16384, 9], extensions=True,
                           trailers=[("X-Trailer", "t")])
    c = raw(lp.port)
    c.send(build_request("POST", "/raw-chunked",
                         [("Host", "h"), ("Transfer-Encoding", "chunked")]))
    # the body in small, delayed pieces to exercise the incremental parser
    for i in range(0, len(payload), 30_001):
        c.send(payload[i:i + 30_001])
        time.sleep(0.02)
    resp = c.read_response()
    assert resp.status == 200
    assert resp.body.decode() == f"{len(data)} {sha256(data)}"
    assert o.requests[0].body == data
    # same connection, a chunked body split at awkward places
    c.send(build_request("POST", "/tiny", [("Host", "h"), ("Transfer-Encoding", "chunked")]))
    for piece in (b"5\r", b"\nhel", b"lo\r\n0", b"\r\n", b"\r\n"):
        c.send(piece)
        time.sleep(0.02)
    resp = c.read_response()
    assert resp.status == 200
    assert resp.body.decode() == f"5 {sha256(b'hello')}"


def test_empty_and_zero_length_bodies(limpet, origin, raw):
    o = origin("s1", handler=echo_hash)
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("POST", "/zero", [("Host", "h"), ("Content-Length", "0")]))
    assert c.read_response().body.decode() == f"0 {sha256(b'')}"
    c.send(build_request("POST", "/zero-chunked", [("Host", "h"), ("Transfer-Encoding", "chunked")],
                         b"0\r\n\r\n"))
    assert c.read_response().body.decode() == f"0 {sha256(b'')}"
    assert [r.body for r in o.requests] == [b"", b""]


def test_head_has_headers_no_body(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, b"z" * 1234, headers=[("X-Served-By", "s1")]))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("HEAD", "/h")
    resp = c.read_response(head=True)
    assert resp.status == 200
    assert resp.header("Content-Length") == "1234"
    assert resp.header("X-Served-By") == "s1"
    # no body bytes follow: the next response starts right away
    c.request("GET", "/g")
    resp = c.read_response()
    assert resp.status == 200
    assert resp.body == b"z" * 1234
    assert [r.method for r in o.requests] == ["HEAD", "GET"]
    # http.client agrees
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    conn.request("HEAD", "/h2")
    r = conn.getresponse()
    assert r.read() == b"" and r.getheader("Content-Length") == "1234"
    conn.request("GET", "/g2")
    assert conn.getresponse().read() == b"z" * 1234
    conn.close()


def test_head_with_chunked_response_headers(limpet, origin, raw):
    """An origin answering HEAD with Transfer-Encoding: chunked sends no body;
    limpet must not wait for one."""
    o = origin("s1", handler=lambda req: Reply(200, b"abc", chunked=True))
    lp = limpet(basic_config([o]))
    c = raw(lp.port, timeout=5)
    c.request("HEAD", "/hc")
    resp = c.read_response(head=True)
    assert resp.status == 200
    c.request("GET", "/after")
    resp = c.read_response()
    assert resp.status == 200 and resp.body == b"abc"


def test_204_and_304_have_no_body(limpet, origin, raw):
    def handler(req):
        if req.target == "/204":
            return Reply(204, headers=[("X-A", "1")])
        if req.target == "/304":
            return Reply(304, headers=[("ETag", '"v1"')])
        return Reply(200, "after")
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o]))
    c = raw(lp.port, timeout=5)
    c.request("GET", "/204")
    r = c.read_response()
    assert r.status == 204 and r.header("X-A") == "1"
    assert not r.has_header("Transfer-Encoding")
    c.request("GET", "/304", headers=[("If-None-Match", '"v1"')])
    r = c.read_response()
    assert r.status == 304 and r.header("ETag") == '"v1"'
    assert not r.has_header("Transfer-Encoding")
    c.request("GET", "/x")
    r = c.read_response()
    assert r.status == 200 and r.body == b"after"
    assert len(c.buf) == 0


def test_chunked_response_to_http10_client(limpet, origin, raw):
    """An HTTP/1.0 client must never get Transfer-Encoding: chunked."""
    data = os.urandom(50_000)
    o = origin("s1", handler=lambda req: Reply(200, data, chunked=1000))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(b"GET /c10 HTTP/1.0\r\nHost: h\r\n\r\n")
    whole = c.read_until_close()
    head, _, body = whole.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.")
    assert b"transfer-encoding" not in head.lower()
    assert sha256(body) == sha256(data)


def test_close_delimited_origin_response(limpet, origin, raw):
    """Origin body without length (ends at close) reaches the client whole."""
    data = os.urandom(70_000)
    o = origin("s1", handler=lambda req: Reply(200, data, no_length=True))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/eof")
    resp = c.read_response()
    assert resp.status == 200
    assert sha256(resp.body) == sha256(data)


def test_expect_100_continue(limpet, origin, raw):
    o = origin("s1", handler=echo_hash)
    lp = limpet(basic_config([o]))
    data = os.urandom(20_000)
    c = raw(lp.port, timeout=5)
    c.send(build_request("POST", "/expect", [("Host", "h"), ("Content-Length", str(len(data))),
                                             ("Expect", "100-continue")]))
    interim = c.read_response(keep_interim=True, timeout=3)
    assert interim.status == 100, f"expected 100 Continue first, got {interim}"
    c.send(data)
    final = c.read_response()
    assert final.status == 200
    assert final.body.decode() == f"{len(data)} {sha256(data)}"


def test_interim_1xx_relayed_before_final(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, "final", interim=[(103, [("Link", "</s.css>; rel=preload")])]))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/hints")
    resp = c.read_response()
    assert resp.status == 200 and resp.body == b"final"
    c.request("GET", "/again")
    assert c.read_response().body == b"final"
