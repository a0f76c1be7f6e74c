"""TLS: listeners (certificates, SNI, ALPN, versions, resumption, reload),
protocol-aware cookies and headers (Secure, X-Forwarded-Proto, redirect_to_https,
hsts), origins over TLS (verify, ca_file, sni, pooling, session reuse), https
monitors, and robustness (garbage handshakes, plain HTTP to a TLS port).

Every certificate is made at test time by tls_helpers.Pki with `openssl`.
"""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import LIMPET, Reply, basic_config, free_port, websocket_handler, WS_HEADERS, parse_response
from tls_helpers import (Pki, client_context, https_connection, https_request, peer_cert,
                         server_context, tls_connect)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    p = Pki(d)
    p.a = p.cert("a", ["a.test", "localhost", "127.0.0.1"])
    p.b = p.cert("b", ["b.test", "*.b.test"], key="rsa")
    p.a2 = p.cert("a2", ["a.test", "localhost", "127.0.0.1"])      # a renewed "a"
    p.origin = p.cert("origin", ["app.internal"])
    p.origin_ip = p.cert("origin_ip", ["127.0.0.1"])
    p.soon = p.cert("soon", ["soon.test"], days=5)
    p.ca2 = p.other_ca()
    return p


def tls_listener(port, certs, lb="www", **extra):
    return dict({"address": f"127.0.0.1:{port}", "load_balancer": lb,
                 "tls": {"certificates": [{"certificate": c.cert, "private_key": c.key}
                                          for c in certs]}}, **extra)


def tls_config(origins, pki, certs=None, plain=False, **kw):
    """basic_config with a TLS listener first (and the plain one after it when plain)."""
    cfg = basic_config(origins, **kw)
    plain_listener = cfg["listen"][0]
    cfg["listen"] = [tls_listener(free_port(), certs or [pki.a, pki.b])]
    if plain:
        cfg["listen"].append(plain_listener)
    return cfg


def tls_port(lp, i=0):
    return int(lp.config["listen"][i]["address"].rsplit(":", 1)[1])


def get(port, ctx, path="/", sni="a.test", headers=None):
    c = https_connection(port, ctx, sni=sni)
    try:
        status, r, body = https_request(c, "GET", path, headers=headers)
        return status, r, body
    finally:
        c.close()


# ---------------------------------------------------------------------------
# listeners
# ---------------------------------------------------------------------------

def test_https_through_limpet_with_curl(limpet, origin, pki):
    o = origin("o1")
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)
    r = subprocess.run(["curl", "-sS", "-v", "--cacert", str(pki.ca),
                        "--resolve", f"a.test:{port}:127.0.0.1", f"https://a.test:{port}/hello"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "o1 GET /hello\n"
    assert "ALPN: server accepted http/1.1" in r.stderr
    req = o.wait_for_requests(1)[0]
    assert req.header("X-Forwarded-Proto") == "https"
    # by IP address too (the certificate names 127.0.0.1)
    r = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), f"https://127.0.0.1:{port}/ip"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "o1 GET /ip\n", r.stderr


def test_sni_picks_the_certificate_and_no_sni_gets_the_first(limpet, origin, pki):
    o = origin("o1")
    lp = limpet(tls_config([o], pki, certs=[pki.a, pki.b]))
    port = tls_port(lp)
    ctx = client_context(pki)
    assert peer_cert(port, ctx, sni="a.test")["serial"] == pki.a.serial
    assert peer_cert(port, client_context(pki), sni="b.test")["serial"] == pki.b.serial
    assert peer_cert(port, client_context(pki), sni="x.b.test")["serial"] == pki.b.serial  # wildcard
    assert peer_cert(port, client_context(pki), sni=None)["serial"] == pki.a.serial
    # a name no certificate covers gets the first one (and fails verification)
    unverified = client_context(pki)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    der = ssl.PEM_cert_to_DER_cert(open(pki.a.cert).read())
    assert peer_cert(port, unverified, sni="nobody.test")["der"] == der
    # and requests flow with either certificate (RSA and ECDSA)
    for sni in ("a.test", "b.test"):
        status, r, body = get(port, client_context(pki), "/x", sni=sni)
        assert status == 200 and body == b"o1 GET /x\n"


def test_alpn_http11_and_versions(limpet, origin, pki):
    o = origin("o1")
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)
    info = peer_cert(port, client_context(pki, alpn=["h2", "http/1.1"]))
    assert info["alpn"] == "http/1.1"
    # a client offering only h2 gets no ALPN (and may speak HTTP/1.1 anyway)
    assert peer_cert(port, client_context(pki, alpn=["h2"]))["alpn"] is None
    assert peer_cert(port, client_context(pki))["version"] == "TLSv1.3"
    tls12 = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)
    assert peer_cert(port, tls12)["version"] == "TLSv1.2"
    status, _, body = get(port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2), "/v12")
    assert status == 200 and body == b"o1 GET /v12\n"


def test_full_chain_and_renegotiation_refused(limpet, origin, pki):
    inter = pki.intermediate()
    leaf = inter.cert("chained", ["a.test", "127.0.0.1"])
    o = origin("o1")
    lp = limpet(tls_config([o], pki, certs=[pki.chained(leaf, inter)]))
    port = tls_port(lp)
    # the client trusts the root only: the intermediate comes from limpet
    r = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), f"https://127.0.0.1:{port}/c"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "o1 GET /c\n", r.stderr
    # TLS 1.2 renegotiation asked by the client ("R" in s_client) is refused
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                        "-servername", "a.test"], input=b"R\n", capture_output=True, timeout=20)
    out = p.stdout + p.stderr
    assert b"RENEGOTIATING" in out and b"no renegotiation" in out, out[-1500:]
    assert get(port, client_context(pki), "/after")[0] == 200


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls10_and_tls11_refused(limpet, origin, pki, version):
    o = origin("o1")
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)
    v = getattr(ssl.TLSVersion, version)
    # the client itself is allowed the old protocol (security level 0)
    old = client_context(pki, minimum=v, maximum=v, seclevel0=True)
    with pytest.raises(ssl.SSLError) as e:
        tls_connect(port, old).close()
    assert "version" in str(e.value).lower() or "protocol" in str(e.value).lower(), e.value
    # the same client may use TLS 1.2: the refusal is limpet's
    ok = client_context(pki, minimum=v, maximum=ssl.TLSVersion.TLSv1_2, seclevel0=True)
    with tls_connect(port, ok) as s:
        assert s.version() == "TLSv1.2"
    assert o.requests == []


def test_tls12_session_resumption(limpet, origin, pki):
    o = origin("o1")
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)
    ctx = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)
    with tls_connect(port, ctx) as s:
        assert s.version() == "TLSv1.2" and not s.session_reused
        session = s.session
    for _ in range(3):
        with tls_connect(port, ctx, session=session) as s:
            assert s.session_reused, "TLS 1.2 session not resumed"
            assert s.version() == "TLSv1.2"
    # a session-id-only client (no tickets) resumes through the session cache
    no_tickets = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)
    no_tickets.options |= ssl.OP_NO_TICKET
    with tls_connect(port, no_tickets) as s:
        session = s.session
    with tls_connect(port, no_tickets, session=session) as s:
        assert s.session_reused, "TLS 1.2 session-id resumption failed"


def test_tls13_session_tickets(limpet, origin, pki, tmp_path):
    o = origin("o1")
    lp = limpet(tls_config([o], pki, threads=2))
    port = tls_port(lp)
    ctx = client_context(pki, minimum=ssl.TLSVersion.TLSv1_3)
    c = https_connection(port, ctx)
    status, _, _ = https_request(c, "GET", "/first")   # the ticket comes with the first read
    assert status == 200
    session = c.sock.session
    assert c.sock.version() == "TLSv1.3"
    c.close()
    assert session is not None and session.has_ticket
    # tickets are shared by every worker thread: several connections resume
    for i in range(6):
        with tls_connect(port, ctx, session=session) as s:
            assert s.session_reused, f"TLS 1.3 ticket not accepted (connection {i})"
            s.sendall(b"GET /again HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"o1 GET /again\n")
    # a resumed connection gets a new ticket (seen by openssl s_client -msg), so
    # clients that use each ticket only once keep resuming
    sess = str(tmp_path / "s1.pem")
    req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.test",
            "-tls1_3", "-ign_eof", "-msg"]
    first = subprocess.run(base + ["-sess_out", sess], input=req, capture_output=True,
                           timeout=20)
    assert first.stdout.count(b"NewSessionTicket") >= 1
    again = subprocess.run(base + ["-sess_in", sess], input=req, capture_output=True, timeout=20)
    assert b"Reused, TLSv1.3" in again.stdout, again.stdout[-2000:]
    assert again.stdout.count(b"NewSessionTicket") >= 1, "no new ticket on a resumed connection"
    chained = session
    for i in range(4):
        with tls_connect(port, ctx, session=chained) as s:
            assert s.session_reused, f"chained resumption {i} failed"
            one_request(s)
            chained = s.session
            assert chained.has_ticket


def test_plain_http_to_the_tls_port_does_not_hang(limpet, origin, pki):
    o = origin("o1")
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    t0 = time.monotonic()
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    s.close()
    assert time.monotonic() - t0 < 3
    assert data == b"" or data.startswith(b"HTTP/1.1 400 "), data
    # curl says so too, quickly
    r = subprocess.run(["curl", "-sS", "-m", "5", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode in (0, 52, 56), r
    assert o.requests == []


@pytest.mark.timeout(120)
def test_garbage_handshakes_do_not_stop_service(limpet, origin, pki):
    o = origin("o1")
    lp = limpet(tls_config([o], pki, timeouts={"request_header": 2}))
    port = tls_port(lp)
    ctx = client_context(pki)
    assert get(port, ctx, "/before")[0] == 200
    base_fds = lp.fd_count()
    rnd = os.urandom(300 * 64)
    socks = []
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        kind = i % 4
        if kind == 0:       # random bytes
            s.sendall(rnd[i * 64:(i + 1) * 64])
        elif kind == 1:     # a handshake record header, then nothing more
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        elif kind == 2:     # a record claiming to be huge
            s.sendall(b"\x16\x03\x03\xff\xff" + rnd[:100])
        # kind 3: connect and say nothing
        socks.append(s)
        if len(socks) >= 100:
            for x in socks:
                x.close()
            socks = []
    # service goes on while some are still open
    for i in range(5):
        status, _, body = get(port, client_context(pki), f"/during{i}")
        assert status == 200 and body == f"o1 GET /during{i}\n".encode()
    for x in socks:
        x.close()
    # the silent ones are closed by the handshake timeout (request_header)
    deadline = time.monotonic() + 10
    while lp.fd_count() > base_fds + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lp.fd_count() <= base_fds + 2, (lp.fd_count(), base_fds)
    assert get(port, ctx, "/after")[0] == 200


def test_handshake_timeout_is_request_header(limpet, origin, pki):
    o = origin("o1")
    lp = limpet(tls_config([o], pki, timeouts={"request_header": 1}))
    port = tls_port(lp)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"\x16\x03\x01\x00\x10")   # the start of a ClientHello, never finished
    t0 = time.monotonic()
    try:
        assert s.recv(100) in (b"",) or True
    except (ConnectionResetError, socket.timeout):
        pass
    elapsed = time.monotonic() - t0
    s.close()
    assert 0.5 < elapsed < 4, elapsed


def test_large_bodies_and_chunked_over_tls(limpet, origin, pki):
    big = os.urandom(5 * 1024 * 1024)
    upload = os.urandom(300 * 1024)

    def handler(req):
        if req.method == "POST":
            return Reply(200, hashlib.sha256(req.body).hexdigest())
        if req.target == "/chunked":
            return Reply(200, big[:777777], chunked=[1, 4000, 70000])
        return Reply(200, big)
    o = origin("o1", handler=handler)
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)
    c = https_connection(port, client_context(pki))
    for _ in range(2):
        status, _, body = https_request(c, "GET", "/big")
        assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
        status, _, body = https_request(c, "POST", "/up", body=upload,
                                        headers={"Content-Type": "application/octet-stream"})
        assert status == 200 and body.decode() == hashlib.sha256(upload).hexdigest()
        status, _, body = https_request(c, "GET", "/chunked")
        assert status == 200 and body == big[:777777]
    c.close()


def test_websocket_over_tls(limpet, origin, pki):
    o = origin("ws", handler=websocket_handler("ws"))
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)
    s = tls_connect(port, client_context(pki))
    head = "GET /chat HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in WS_HEADERS) + "\r\n"
    s.sendall(head.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101 ")
    rest = buf.split(b"\r\n\r\n", 1)[1]
    payload = os.urandom(200000)
    s.sendall(payload)
    got = rest
    while len(got) < len(payload):
        chunk = s.recv(65536)
        assert chunk, "tunnel closed early"
        got += chunk
    assert got == payload
    s.close()


# ---------------------------------------------------------------------------
# cookies and headers
# ---------------------------------------------------------------------------

def cookie_attrs(set_cookie):
    return [p.strip().split("=")[0].lower() for p in set_cookie.split(";")[1:]]


def test_secure_auto_over_tls_only(limpet, origin, pki):
    o = origin("o1")
    cfg = tls_config([o], pki, plain=True, lb_extra={"session_affinity": "cookie"})
    lp = limpet(cfg)
    status, r, _ = get(tls_port(lp), client_context(pki))
    sc = r.getheader("Set-Cookie")
    assert status == 200 and sc and "secure" in cookie_attrs(sc), sc
    plain = http_get(tls_port(lp, 1))
    assert plain["set-cookie"] and "secure" not in cookie_attrs(plain["set-cookie"])
    reqs = o.wait_for_requests(2)
    assert reqs[0].header("X-Forwarded-Proto") == "https"
    assert reqs[1].header("X-Forwarded-Proto") == "http"
    # the warning about SameSite=None is for load balancers without a TLS listener
    assert "SameSite=None" not in lp.stderr_text()


@pytest.mark.parametrize("secure,over_tls,over_plain", [("Always", True, True),
                                                        ("Never", False, False)])
def test_secure_always_and_never(limpet, origin, pki, secure, over_tls, over_plain):
    o = origin("o1")
    cfg = tls_config([o], pki, plain=True, lb_extra={
        "session_affinity": "cookie", "session_affinity_attributes": {"secure": secure}})
    lp = limpet(cfg)
    _, r, _ = get(tls_port(lp), client_context(pki))
    assert ("secure" in cookie_attrs(r.getheader("Set-Cookie"))) == over_tls
    plain = http_get(tls_port(lp, 1))
    assert ("secure" in cookie_attrs(plain["set-cookie"])) == over_plain


def test_samesite_none_warning_only_without_tls_listener(limpet, origin, pki):
    o = origin("o1")
    attrs = {"session_affinity": "cookie", "session_affinity_attributes": {"samesite": "None"}}
    lp = limpet(tls_config([o], pki, lb_extra=attrs))
    _, r, _ = get(tls_port(lp), client_context(pki))
    sc = r.getheader("Set-Cookie")
    assert "SameSite=None" in sc and "secure" in cookie_attrs(sc)
    lp2 = limpet(basic_config([o], lb_extra=attrs), name="plain")
    time.sleep(0.2)
    assert "SameSite=None" not in lp.stderr_text()
    assert "SameSite=None cookies go without Secure" in lp2.stderr_text()


def http_get(port, path="/", host="a.test"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    out = {"status": int(head[0].split()[1]), "raw": data}
    for line in head[1:]:
        k, _, v = line.partition(":")
        out.setdefault(k.strip().lower(), v.strip())
    return out


def test_cookie_affinity_pins_100_requests_on_one_tls_connection(limpet, origin, pki):
    origins = [origin(f"o{i}") for i in range(1, 4)]
    lp = limpet(tls_config(origins, pki, threads=2, lb_extra={"session_affinity": "cookie"}))
    port = tls_port(lp)
    c = https_connection(port, client_context(pki))
    status, r, _ = https_request(c, "GET", "/0")
    cookie = r.getheader("Set-Cookie").split(";")[0]
    first = r.getheader("X-Served-By")
    sock = c.sock
    served = set()
    for i in range(1, 101):
        status, r, body = https_request(c, "GET", f"/{i}", headers={"Cookie": cookie})
        assert status == 200
        served.add(r.getheader("X-Served-By"))
        assert r.getheader("Set-Cookie") is None
    assert c.sock is sock, "the keep-alive connection was not kept"
    c.close()
    assert served == {first}
    # other new sessions spread over the origins
    others = set()
    for i in range(9):
        _, r, _ = get(port, client_context(pki), f"/new{i}")
        others.add(r.getheader("X-Served-By"))
    assert len(others) > 1


def test_redirect_to_https_and_hsts(limpet, origin, pki):
    o = origin("o1")
    tport, pport = free_port(), free_port()
    cfg = basic_config([o])
    cfg["listen"] = [tls_listener(tport, [pki.a], hsts=31536000),
                     {"address": f"127.0.0.1:{pport}", "load_balancer": "www",
                      "redirect_to_https": 301}]
    lp = limpet(cfg)
    r = http_get(pport, "/some/path?q=1", host="a.test:8080")
    assert r["status"] == 301
    assert r["location"] == f"https://a.test:{tport}/some/path?q=1"
    assert r["raw"].startswith(b"HTTP/1.1 301 Moved Permanently\r\n")
    r = http_get(pport, "/v6", host="[::1]:8080")
    assert r["location"] == f"https://[::1]:{tport}/v6"
    assert o.requests == []
    status, resp, _ = get(tport, client_context(pki), "/secure")
    assert status == 200
    assert resp.getheader("Strict-Transport-Security") == "max-age=31536000"
    # curl follows the redirect to the TLS listener
    res = subprocess.run(["curl", "-sS", "-L", "--cacert", str(pki.ca),
                          "--resolve", f"a.test:{tport}:127.0.0.1",
                          "--resolve", f"a.test:{pport}:127.0.0.1",
                          f"http://a.test:{pport}/follow"],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 0 and res.stdout == "o1 GET /follow\n", res.stderr


@pytest.mark.parametrize("code,reason", [(302, "Found"), (307, "Temporary Redirect"),
                                         (308, "Permanent Redirect")])
def test_redirect_codes(limpet, origin, pki, code, reason):
    o = origin("o1")
    pport = free_port()
    cfg = basic_config([o])
    cfg["listen"] = [tls_listener(443 if False else free_port(), [pki.a]),
                     {"address": f"127.0.0.1:{pport}", "load_balancer": "www",
                      "redirect_to_https": code}]
    limpet(cfg)
    r = http_get(pport, "/p")
    assert r["status"] == code and r["raw"].startswith(f"HTTP/1.1 {code} {reason}\r\n".encode())


# ---------------------------------------------------------------------------
# certificates: errors and reloads
# ---------------------------------------------------------------------------

def run_check(cfg, tmp_path):
    import json
    path = tmp_path / "check.json"
    path.write_text(json.dumps(cfg))
    return subprocess.run([str(LIMPET), "-t", "-c", str(path)], capture_output=True, text=True,
                          timeout=30, cwd=str(tmp_path))


def test_certificate_errors_name_file_and_reason(origin, pki, tmp_path):
    o = origin("o1")
    cfg = tls_config([o], pki)
    cfg["listen"][0]["tls"]["certificates"] = [
        {"certificate": str(tmp_path / "missing.pem"), "private_key": pki.a.key},
        {"certificate": pki.a.cert, "private_key": pki.b.key},
        {"certificate": pki.a.key, "private_key": pki.a.key}]
    r = run_check(cfg, tmp_path)
    assert r.returncode == 1
    out = r.stdout
    assert (f"listen[0].tls.certificates[0].certificate: \"{tmp_path / 'missing.pem'}\": cannot "
            "read: No such file or directory") in out, out
    assert (f"listen[0].tls.certificates[1].private_key: \"{pki.b.key}\" does not match the "
            f"certificate \"{pki.a.cert}\"") in out, out
    assert f"listen[0].tls.certificates[2].certificate: \"{pki.a.key}\": not a PEM certificate" in out
    # and limpet refuses to start with the same message
    import json
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(LIMPET), "-c", str(path)], capture_output=True, text=True, timeout=30,
                       cwd=str(tmp_path))
    assert p.returncode == 1
    assert "missing.pem\": cannot read: No such file or directory" in p.stderr
    # a good configuration checks ok
    r = run_check(tls_config([o], pki), tmp_path)
    assert r.returncode == 0 and r.stdout.endswith(": ok\n"), r.stdout


def test_sighup_swaps_the_certificate_for_new_handshakes(limpet, origin, pki, tmp_path):
    o = origin("o1")
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    cert.write_bytes(open(pki.a.cert, "rb").read())
    key.write_bytes(open(pki.a.key, "rb").read())
    cfg = basic_config([o], threads=2)
    port = free_port()
    cfg["listen"] = [{"address": f"127.0.0.1:{port}", "load_balancer": "www",
                      "tls": {"certificates": [{"certificate": str(cert), "private_key": str(key)}]}}]
    lp = limpet(cfg)
    ctx = client_context(pki)
    old = https_connection(port, ctx)
    assert https_request(old, "GET", "/before")[0] == 200
    assert peer_cert(port, client_context(pki))["serial"] == pki.a.serial
    # renew: new files, SIGHUP
    cert.write_bytes(open(pki.a2.cert, "rb").read())
    key.write_bytes(open(pki.a2.key, "rb").read())
    lp.signal(signal.SIGHUP)
    wait_for_log(lp, "configuration reloaded")
    assert peer_cert(port, client_context(pki))["serial"] == pki.a2.serial
    # the connection opened before keeps serving (on the certificate it had)
    for i in range(5):
        assert https_request(old, "GET", f"/old{i}")[0] == 200
    assert int(old.sock.getpeercert()["serialNumber"], 16) == pki.a.serial
    old.close()
    # a bad file on reload keeps the running certificates
    key.write_text("not a key\n")
    lp.signal(signal.SIGHUP)
    wait_for_log(lp, "reload failed")
    assert "live.key" in lp.stderr_text()
    assert peer_cert(port, client_context(pki))["serial"] == pki.a2.serial
    assert get(port, client_context(pki), "/still")[0] == 200


def wait_for_log(lp, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in lp.stderr_text():
        assert time.monotonic() < deadline, f"no {text!r} in stderr:\n{lp.stderr_text()}"
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# origins over TLS and https monitors
# ---------------------------------------------------------------------------

def sni_recording_context(cert):
    ctx = server_context(cert)
    ctx.seen_sni = []
    ctx.sni_callback = lambda sock, name, c: ctx.seen_sni.append(name)
    return ctx


def test_tls_origin_with_verify_ca_file_and_sni(limpet, origin, pki):
    sctx = sni_recording_context(pki.origin)
    o = origin("o1", tls=sctx)
    cfg = basic_config([{"name": "o1", "address": o.address,
                         "tls": {"verify": True, "ca_file": str(pki.ca), "sni": "app.internal"}}])
    lp = limpet(cfg)
    for i in range(5):
        s = http_get(lp.port, f"/t{i}")
        assert s["status"] == 200 and s["raw"].endswith(f"o1 GET /t{i}\n".encode())
    assert "app.internal" in sctx.seen_sni
    assert o.connections == 1, "TLS origin connections are pooled (keep-alive)"
    req = o.requests[0]
    assert req.header("X-Forwarded-Proto") == "http"


def test_tls_origin_sessions_are_resumed(limpet, origin, pki):
    sctx = server_context(pki.origin)
    # the origin closes after each response: every request opens a new connection
    o = origin("o1", tls=sctx, handler=lambda req: Reply(200, "ok", close=True))
    cfg = basic_config([{"name": "o1", "address": o.address,
                         "tls": {"ca_file": str(pki.ca), "sni": "app.internal"}}])
    lp = limpet(cfg)
    for i in range(6):
        assert http_get(lp.port, f"/r{i}")["status"] == 200
    assert o.connections == 6
    assert sctx.session_stats()["hits"] >= 4, sctx.session_stats()


def test_tls_origin_verified_by_ip_without_sni(limpet, origin, pki):
    o = origin("o1", tls=server_context(pki.origin_ip))
    cfg = basic_config([{"name": "o1", "address": o.address,
                         "tls": {"ca_file": str(pki.ca)}}])
    lp = limpet(cfg)
    assert http_get(lp.port, "/ip")["status"] == 200


def test_tls_origin_with_wrong_ca_is_refused_with_a_clear_log_line(limpet, origin, pki):
    o = origin("o1", tls=server_context(pki.origin))
    cfg = basic_config([{"name": "o1", "address": o.address,
                         "tls": {"ca_file": str(pki.ca2.ca), "sni": "app.internal"}}])
    lp = limpet(cfg)
    r = http_get(lp.port, "/nope")
    assert r["status"] in (502, 503)
    wait_for_log(lp, "origin app/o1: TLS connection refused: certificate verify failed")
    assert o.requests == []
    # a wrong name fails too
    o2 = origin("o2", tls=server_context(pki.origin))
    cfg = basic_config([{"name": "o2", "address": o2.address,
                         "tls": {"ca_file": str(pki.ca), "sni": "other.internal"}}])
    lp2 = limpet(cfg, name="wrongname")
    assert http_get(lp2.port, "/nope")["status"] in (502, 503)
    wait_for_log(lp2, "origin app/o2: TLS connection refused: certificate verify failed: "
                      "hostname mismatch")
    # verify false accepts it
    cfg = basic_config([{"name": "o2", "address": o2.address,
                         "tls": {"verify": False, "sni": "other.internal"}}])
    lp3 = limpet(cfg, name="noverify")
    assert http_get(lp3.port, "/yes")["status"] == 200


def test_https_monitor_marks_a_tls_origin_up_and_down(limpet, origin, pki):
    good = origin("good", tls=server_context(pki.origin))
    bad = origin("bad", tls=server_context(pki.origin))   # wrong SNI: verification fails
    cfg = basic_config([
        {"name": "good", "address": good.address,
         "tls": {"ca_file": str(pki.ca), "sni": "app.internal"}},
        {"name": "bad", "address": bad.address,
         "tls": {"ca_file": str(pki.ca), "sni": "nope.internal"}}],
        monitors=[{"name": "m", "type": "https", "path": "/health", "interval": 0.3,
                   "timeout": 1, "retries": 1, "rise": 1}],
        pool_extra={"monitor": "m"})
    lp = limpet(cfg)
    wait_for_log(lp, "origin app/bad down: certificate verify failed")
    time.sleep(0.5)
    assert "origin app/good down" not in lp.stderr_text()
    assert any(r.target == "/health" for r in good.requests)
    for i in range(4):
        r = http_get(lp.port, f"/x{i}")
        assert r["status"] == 200 and b"good GET" in r["raw"]
    good.stop()
    wait_for_log(lp, "origin app/good down")


# ---------------------------------------------------------------------------
# admin API and metrics
# ---------------------------------------------------------------------------

def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{") and line.split("{", 1)[1].split("}", 1)[0] == want:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in metrics")


def one_request(s):
    """A request on a TLS socket, read to the close (the handshake is surely
    complete on both sides afterwards)."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_tls_counters_in_metrics_and_listeners_api(limpet, origin, pki):
    from harness import admin_client, with_admin
    o = origin("o1")
    cfg = with_admin(tls_config([o], pki, certs=[pki.a, pki.soon], plain=True, threads=2))
    lp = limpet(cfg)
    port = tls_port(lp)
    address = cfg["listen"][0]["address"]
    api = admin_client(lp)
    # 3 full handshakes (two TLS 1.3, one TLS 1.2), then 2 resumed
    ctx = client_context(pki, minimum=ssl.TLSVersion.TLSv1_3)
    c = https_connection(port, ctx)
    https_request(c, "GET", "/")
    session = c.sock.session
    c.close()
    with tls_connect(port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)) as s:
        one_request(s)
    with tls_connect(port, client_context(pki)) as s:
        one_request(s)
    for _ in range(2):
        with tls_connect(port, ctx, session=session) as s:
            assert s.session_reused
            one_request(s)
    # failures: plain HTTP, TLS 1.1, an unknown CA on the client's side
    http_get(port)
    with pytest.raises(ssl.SSLError):
        tls_connect(port, client_context(pki, minimum=ssl.TLSVersion.TLSv1_1,
                                         maximum=ssl.TLSVersion.TLSv1_1, seclevel0=True))
    with pytest.raises(ssl.SSLError):
        tls_connect(port, client_context(pki.ca2))
    deadline = time.monotonic() + 5
    while True:
        text = api.get("/metrics").body.decode()
        lab = {"listener": address}
        try:
            assert metric(text, "limpet_tls_handshakes_total", **lab) == 5
            assert metric(text, "limpet_tls_resumed_handshakes_total", **lab) == 2
            assert metric(text, "limpet_tls_protocol_handshakes_total", **lab,
                          version="TLSv1.2") == 1
            assert metric(text, "limpet_tls_protocol_handshakes_total", **lab,
                          version="TLSv1.3") == 4
            assert metric(text, "limpet_tls_handshake_failures_total", **lab,
                          reason="plain_http") == 1
            assert metric(text, "limpet_tls_handshake_failures_total", **lab,
                          reason="protocol_version") == 1
            assert metric(text, "limpet_tls_handshake_failures_total", **lab,
                          reason="client_alert") == 1
            break
        except AssertionError:
            if time.monotonic() > deadline:
                print(api.get("/api/v1/listeners").json["listeners"][0]["handshakes"])
                raise
            time.sleep(0.1)
    expiry = metric(text, "limpet_tls_certificate_expiry_timestamp_seconds", **lab,
                    certificate=pki.soon.cert)
    assert 3 * 86400 < expiry - time.time() <= 5 * 86400
    assert "limpet_tls_handshakes_total{listener=\"%s\"}" % cfg["listen"][1]["address"] not in text

    r = api.get("/api/v1/listeners")
    assert r.status == 200
    tls, plain = r.json["listeners"]
    assert plain == {"address": cfg["listen"][1]["address"], "load_balancer": "www", "tls": False}
    assert tls["address"] == address and tls["tls"] is True
    a, soon = tls["certificates"]
    assert a["certificate"] == pki.a.cert and a["private_key"] == pki.a.key
    assert a["subject"] == "a.test" and a["names"] == "a.test, localhost, 127.0.0.1"
    assert a["key_type"] == "EC prime256v1"
    # openssl -days 30 makes it expire 30 days from its making, to the second
    assert a["days_left"] in (29, 30) and not a["expires_soon"] and not a["expired"]
    assert soon["days_left"] in (4, 5) and soon["expires_soon"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", soon["not_after"])
    assert tls["handshakes"]["completed"] == 5 and tls["handshakes"]["resumed"] == 2
    assert tls["handshakes"]["versions"] == {"TLSv1.2": 1, "TLSv1.3": 4}
    assert tls["handshakes"]["failures"]["plain_http"] == 1


@pytest.mark.timeout(120)
def test_slow_readers_and_concurrency_over_tls(limpet, origin, pki):
    """Back-pressure on TLS writes (records left pending in OpenSSL and retried
    with the same bytes) and many connections at once, both ways byte-exact."""
    import threading
    big = os.urandom(8 * 1024 * 1024)
    digest = hashlib.sha256(big).hexdigest()

    def handler(req):
        if req.method == "POST":
            return Reply(200, hashlib.sha256(req.body).hexdigest())
        return Reply(200, big)
    o = origin("o1", handler=handler)
    tls_origin = origin("o2", handler=handler, tls=server_context(pki.origin))
    cfg = tls_config([o], pki, threads=2)
    cfg["pools"].append({"name": "tlsapp", "origins": [
        {"name": "o2", "address": tls_origin.address,
         "tls": {"ca_file": str(pki.ca), "sni": "app.internal"}}]})
    cfg["load_balancers"].append({"name": "tlslb", "default_pools": ["tlsapp"]})
    cfg["listen"].append(tls_listener(free_port(), [pki.a], lb="tlslb"))
    lp = limpet(cfg)
    ports = [tls_port(lp, 0), tls_port(lp, 1)]   # plain origin, TLS origin

    # a reader that waits before reading: limpet's writes block for a while
    for port in ports:
        s = tls_connect(port, client_context(pki))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(data) % (1 << 20) < 4096:
                time.sleep(0.05)
        s.close()
        body = data.split(b"\r\n\r\n", 1)[1]
        assert hashlib.sha256(body).hexdigest() == digest

    errors = []

    def client(i):
        try:
            port = ports[i % 2]
            c = https_connection(port, client_context(pki))
            for k in range(2):
                up = os.urandom(200000 + i * 1000 + k)
                status, _, body = https_request(c, "POST", f"/up{i}", body=up)
                assert status == 200 and body.decode() == hashlib.sha256(up).hexdigest()
                status, _, body = https_request(c, "GET", f"/big{i}")
                assert status == 200 and hashlib.sha256(body).hexdigest() == digest
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {i}: {e!r}")
    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert errors == []


def test_orderly_end_sends_close_notify_and_an_abort_does_not(limpet, origin, pki):
    """A close-delimited body ends with close_notify (a clean end for the
    client); a response cut off mid-body ends without it, so a TLS client
    sees the truncation even where HTTP framing could not tell."""
    def handler(req):
        if req.target == "/cut":
            return Reply(200, b"x" * 100000, abort_after=1000)
        return Reply(200, b"y" * 5000, no_length=True)
    o = origin("o1", handler=handler)
    lp = limpet(tls_config([o], pki))
    port = tls_port(lp)

    def fetch(path):
        ctx = client_context(pki)
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF   # (Debian's Python sets it)
        s = tls_connect(port, ctx, ragged_eof_ok=False)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data, "close_notify"
                data += chunk
        except ConnectionResetError:
            return data, "truncated"
        except ssl.SSLError as e:   # SSLEOFError, or UNEXPECTED_EOF_WHILE_READING
            assert "EOF" in str(e) or "eof" in str(e), e
            return data, "truncated"
        finally:
            s.close()
    data, end = fetch("/whole")
    assert end == "close_notify" and data.endswith(b"y" * 5000)
    data, end = fetch("/cut")
    assert end == "truncated", (end, len(data))
