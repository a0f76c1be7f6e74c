"""Basic proxying: status/headers/body relayed, request forwarded intact,
X-Forwarded-*, hop-by-hop headers, HTTP/1.0 clients (SPEC §4)."""
import http.client

from harness import Reply, basic_config, build_request, curl, http_request


def test_get_relayed(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    r = http_request(lp.port, "GET", "/hello/world?x=1&y=%20z")
    assert r.status == 200
    assert r.body == b"s1 GET /hello/world?x=1&y=%20z\n"
    assert r.header("X-Served-By") == "s1"
    assert r.header("Content-Type") == "text/plain"
    [req] = o.requests
    assert req.method == "GET"
    assert req.target == "/hello/world?x=1&y=%20z"


def test_status_and_headers_relayed(limpet, origin):
    o = origin("s1", handler=lambda req: Reply(
        404, "nope", headers=[("X-Custom", "abc def"), ("Set-Cookie", "a=1"),
                              ("Set-Cookie", "b=2")]))
    lp = limpet(basic_config([o]))
    r = http_request(lp.port, "GET", "/missing")
    assert r.status == 404
    assert r.body == b"nope"
    assert r.header("X-Custom") == "abc def"
    cookies = [v for k, v in r.headers if k.lower() == "set-cookie"]
    assert cookies == ["a=1", "b=2"]


def test_request_headers_and_methods_forwarded(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        body = b"payload" if method in ("POST", "PUT", "PATCH") else None
        r = http_request(lp.port, method, f"/m/{method}", body=body,
                         headers={"X-End-To-End": "kept", "Accept": "text/plain"})
        assert r.status == 200, method
    assert [r.method for r in o.requests] == ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    for req in o.requests:
        assert req.header("X-End-To-End") == "kept"
        assert req.header("Accept") == "text/plain"
    assert o.requests[1].body == b"payload"


def test_x_forwarded_headers(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    r = http_request(lp.port, "GET", "/xf", headers={"Host": "shop.example:8080"})
    assert r.status == 200
    [req] = o.requests
    assert [v.strip() for v in ",".join(req.header_all("X-Forwarded-For")).split(",")] == ["127.0.0.1"]
    assert req.header("X-Forwarded-Proto") == "http"
    assert req.header("X-Forwarded-Host") == "shop.example:8080"


def test_x_forwarded_for_appended(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    r = http_request(lp.port, "GET", "/xff", headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.2"})
    assert r.status == 200
    [req] = o.requests
    hops = [v.strip() for v in ",".join(req.header_all("X-Forwarded-For")).split(",")]
    assert hops == ["203.0.113.7", "198.51.100.2", "127.0.0.1"]


def test_hop_by_hop_headers_not_forwarded(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/hop", [
        ("Host", "test.local"),
        ("Connection", "keep-alive, X-Secret-Hop, x-other-hop"),
        ("Keep-Alive", "timeout=5, max=100"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("X-Secret-Hop", "must-not-pass"),
        ("X-Other-Hop", "nor-this"),
        ("X-End-To-End", "passes"),
    ]))
    resp = c.read_response()
    assert resp.status == 200
    [req] = o.requests
    for name in ("Keep-Alive", "Proxy-Connection", "TE", "Upgrade", "X-Secret-Hop", "X-Other-Hop"):
        assert not req.has_header(name), f"{name} forwarded to the origin: {req.headers}"
    conn = ",".join(req.header_all("Connection")).lower()
    assert "x-secret-hop" not in conn and "x-other-hop" not in conn
    assert req.header("X-End-To-End") == "passes"


def test_hop_by_hop_response_headers_not_relayed(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, "ok", headers=[
        ("Connection", "X-Origin-Hop"), ("X-Origin-Hop", "secret"),
        ("Keep-Alive", "timeout=99"), ("X-Kept", "yes")]))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/resp-hop")
    resp = c.read_response()
    assert resp.status == 200 and resp.body == b"ok"
    assert not resp.has_header("X-Origin-Hop"), resp.headers
    assert "timeout=99" not in (resp.header("Keep-Alive") or "")
    assert resp.header("X-Kept") == "yes"


def test_http10_request(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(b"GET /old HTTP/1.0\r\nUser-Agent: old\r\n\r\n")
    resp = c.read_response()
    assert resp.status == 200
    assert resp.body == b"s1 GET /old\n"
    assert resp.version in ("HTTP/1.0", "HTTP/1.1")
    assert not resp.chunked
    # HTTP/1.0 without keep-alive: the server closes after the response
    assert c.closed_within(3), "limpet kept an HTTP/1.0 connection open"
    [req] = o.requests
    assert req.target == "/old"
    assert req.header("X-Forwarded-For") is not None


def test_http10_keepalive_request(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(b"GET /ka1 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
    r1 = c.read_response()
    assert r1.status == 200 and r1.body == b"s1 GET /ka1\n"
    if "keep-alive" in (r1.header("Connection") or "").lower():
        # limpet agreed to keep the connection: it must then be usable
        c.send(b"GET /ka2 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"s1 GET /ka2\n"
    else:
        assert c.closed_within(3)


def test_curl_get_and_post(limpet, origin):
    o = origin("s1", handler=lambda req: Reply(201, b"got:" + req.body,
                                               headers=[("X-Served-By", "s1")]))
    lp = limpet(basic_config([o]))
    p = curl("-i", "-d", "field=value", f"{lp.url}/form")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"HTTP/1.1 201")
    assert p.stdout.endswith(b"\r\n\r\ngot:field=value")
    p = curl("-o", "/dev/null", "-w", "%{http_code}", f"{lp.url}/x")
    assert p.stdout == b"201"
    assert [r.method for r in o.requests] == ["POST", "GET"]
    assert o.requests[0].header("Content-Type") == "application/x-www-form-urlencoded"


def test_http_client_many_paths(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    paths = ["/", "/a", "/a/b/c", "/%7Euser", "/q?a=b&c=d", "/" + "x" * 2000]
    for p in paths:
        conn.request("GET", p)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200
        assert r.getheader("X-Path") == p
        assert body == f"s1 GET {p}\n".encode()
    conn.close()
    assert o.paths() == paths
