"""The client address behind an L4 balancer or a CDN (issue 11, item 5):

- listen[].proxy_protocol: a PROXY protocol v1 or v2 header (IPv4, IPv6)
  gives the client address that `ip` affinity hashes, X-Forwarded-For carries
  and the access log shows; a connection without one, with a malformed one,
  or whose header is not complete within timeouts.request_header is closed
  without an answer; v2 LOCAL and v1 UNKNOWN keep the peer address; v2 TLVs
  are skipped; the bytes after the header are the first request
- trusted_proxies: from a trusted peer (client sockets bound to 127.0.0.x)
  the client is the right-most X-Forwarded-For entry that is not trusted; from
  any other peer X-Forwarded-For is not believed
"""
import ipaddress
import socket
import struct
import time

import pytest

from affinity_helpers import get, log_entry
from harness import basic_config, parse_response, Incomplete

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst=None, sport=40000, dport=80):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst=None, sport=40000, dport=80, command=0x21, tlvs=b""):
    ip = ipaddress.ip_address(src)
    if ip.version == 4:
        dst = ipaddress.ip_address(dst or "127.0.0.1")
        body = ip.packed + dst.packed + struct.pack("!HH", sport, dport)
        fam = 0x11
    else:
        dst = ipaddress.ip_address(dst or "::1")
        body = ip.packed + dst.packed + struct.pack("!HH", sport, dport)
        fam = 0x21
    body += tlvs
    return V2_SIGNATURE + bytes([command, fam]) + struct.pack("!H", len(body)) + body


def v2_local():
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


def request(path, headers=()):
    head = f"GET {path} HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + "\r\n").encode()


def exchange(port, data, source=None, timeout=5.0):
    """Sends data on a new connection (from `source`), returns the parsed
    response, or None when limpet closed the connection without one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        buf = bytearray()
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
        if not buf:
            return None
        try:
            m, _ = parse_response(buf, eof=True)
            return m
        except (Incomplete, ValueError):
            raise AssertionError(f"unexpected bytes from limpet: {bytes(buf[:300])!r}")
    finally:
        s.close()


def pp_config(origins, mode="none", **kw):
    cfg = basic_config(origins, access="access.log",
                       lb_extra={"session_affinity": mode}, **kw)
    cfg["listen"][0]["proxy_protocol"] = True
    return cfg


def xff(o, path):
    found = [r for r in o.requests if r.target == path]
    assert len(found) == 1, f"{path}: seen {len(found)} times by {o.name}"
    return found[0].header("X-Forwarded-For")


# ---- PROXY protocol ------------------------------------------------------------------------

@pytest.mark.parametrize("make,client", [
    (v1, "203.0.113.7"),
    (v1, "2001:db8::7"),
    (v2, "198.51.100.23"),
    (v2, "2001:db8:aa::23"),
], ids=["v1-ipv4", "v1-ipv6", "v2-ipv4", "v2-ipv6"])
def test_header_gives_xff_and_log_client(limpet, origin, make, client):
    o = origin("s1")
    lp = limpet(pp_config([o]))
    m = exchange(lp.port, make(client) + request("/pp"))
    assert m is not None and m.status == 200, m
    assert xff(o, "/pp") == client
    assert log_entry(lp, "/pp")["client"] == client


def test_v2_tlvs_skipped_and_pipelined_bytes_kept(limpet, origin):
    """TLVs after the addresses are skipped; two requests right behind the
    header (same segment) are both answered."""
    o = origin("s1")
    lp = limpet(pp_config([o]))
    tlvs = b"\x01\x00\x02h2" + b"\xea\x00\x05vpc-1"
    data = v2("192.0.2.44", tlvs=tlvs)
    data += b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n" + request("/b")
    s = socket.create_connection(("127.0.0.1", lp.port), timeout=5)
    try:
        s.sendall(data)
        buf = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    m1, used = parse_response(buf)
    m2, _ = parse_response(buf[used:], eof=True)
    assert (m1.status, m2.status) == (200, 200)
    assert xff(o, "/a") == "192.0.2.44" and xff(o, "/b") == "192.0.2.44"


def test_header_drives_ip_affinity(limpet, origin):
    """ip affinity hashes the address of the header: each client stays on its
    origin, and clients (all really 127.0.0.1) spread over the origins."""
    origins = [origin(f"s{i}") for i in range(1, 4)]
    lp = limpet(pp_config(origins, mode="ip"))
    where = {}
    for i in range(24):
        client = f"203.0.113.{i + 1}"
        for k, make in enumerate((v1, v2, v1)):
            m = exchange(lp.port, make(client) + request(f"/ip/{i}/{k}"))
            assert m is not None and m.status == 200
            where.setdefault(client, set()).add(m.header("X-Served-By"))
    assert all(len(v) == 1 for v in where.values()), f"a client moved: {where}"
    used = {next(iter(v)) for v in where.values()}
    assert len(used) >= 2, f"24 clients all on {used}: the header's address was not hashed"


def test_local_and_unknown_keep_peer_address(limpet, origin):
    o = origin("s1")
    lp = limpet(pp_config([o]))
    assert exchange(lp.port, v2_local() + request("/local")).status == 200
    assert exchange(lp.port, b"PROXY UNKNOWN\r\n" + request("/unknown")).status == 200
    assert xff(o, "/local") == "127.0.0.1"
    assert xff(o, "/unknown") == "127.0.0.1"
    assert log_entry(lp, "/local")["client"] == "127.0.0.1"


@pytest.mark.parametrize("data", [
    request("/none"),                                             # no header at all
    b"PROXY TCP4 203.0.113.999 127.0.0.1 1 80\r\n" + request("/bad-addr"),
    b"PROXY TCP4 203.0.113.9 127.0.0.1 1 80\n" + request("/bare-lf"),
    b"PROXY TCP6 203.0.113.9 127.0.0.1 1 80\r\n" + request("/family"),
    b"PROXY TCP4  203.0.113.9 127.0.0.1 1 80\r\n" + request("/spaces"),
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12) + request("/v2-version"),
    V2_SIGNATURE + b"\x21\x11\x00\x08" + bytes(8) + request("/v2-short"),
    b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n" + request("/too-long"),
], ids=["missing", "bad-address", "bare-lf", "family-mismatch", "two-spaces", "v2-version",
        "v2-short-block", "v1-too-long"])
def test_missing_or_malformed_header_closes(limpet, origin, data):
    o = origin("s1")
    lp = limpet(pp_config([o]))
    t0 = time.monotonic()
    assert exchange(lp.port, data) is None, "limpet answered a connection without a valid header"
    assert time.monotonic() - t0 < 2, "not closed at once"
    assert o.requests == []
    assert lp.running()
    # a good one is still served
    assert exchange(lp.port, v1("192.0.2.1") + request("/good")).status == 200


def test_incomplete_header_closed_at_request_header(limpet, origin):
    o = origin("s1")
    lp = limpet(pp_config([o], timeouts={"request_header": 1}))
    s = socket.create_connection(("127.0.0.1", lp.port), timeout=5)
    try:
        s.sendall(b"PROXY TCP4 203.0.113")
        t0 = time.monotonic()
        s.settimeout(4)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        took = time.monotonic() - t0
    finally:
        s.close()
    assert data == b"", f"limpet answered {data!r}"
    assert 0.7 < took < 2.5, f"closed after {took:.2f}s (request_header 1)"
    assert o.requests == []


def test_plain_listener_takes_no_header(limpet, origin):
    """Without proxy_protocol a PROXY line is just a bad request (400)."""
    o = origin("s1")
    lp = limpet(basic_config([o]))
    m = exchange(lp.port, v1("203.0.113.7") + request("/plain"))
    assert m is not None and m.status == 400


# ---- trusted_proxies -----------------------------------------------------------------------

def trusted_config(origins, trusted, mode="none"):
    return basic_config(origins, access="access.log", lb_extra={"session_affinity": mode},
                        trusted_proxies=trusted)


def test_trusted_peer_gives_client_from_xff(limpet, origin):
    o = origin("s1")
    lp = limpet(trusted_config([o], ["127.0.0.1/32", "10.0.0.0/8"]))
    cases = [
        ("/t1", "198.51.100.9", "198.51.100.9"),
        ("/t2", "198.51.100.9, 10.1.2.3", "198.51.100.9"),          # trusted hops skipped
        ("/t3", "203.0.113.1, 198.51.100.9, 10.1.2.3", "198.51.100.9"),  # right-most untrusted
        ("/t4", "10.0.0.5, 10.9.9.9", "10.0.0.5"),                   # all trusted: left-most
        ("/t5", "[2001:db8::5]:4711", "2001:db8::5"),
        ("/t6", "198.51.100.77:8080", "198.51.100.77"),
    ]
    for path, value, client in cases:
        r = get(lp.port, path, headers={"X-Forwarded-For": value}, source="127.0.0.1")
        assert r.status == 200
        assert log_entry(lp, path)["client"] == client, path
        assert xff(o, path) == f"{value}, {client}", path
    # no X-Forwarded-For: the peer itself
    assert get(lp.port, "/t7", source="127.0.0.1").status == 200
    assert log_entry(lp, "/t7")["client"] == "127.0.0.1"


def test_untrusted_peer_xff_not_believed(limpet, origin):
    o = origin("s1")
    lp = limpet(trusted_config([o], ["127.0.0.1/32"]))
    r = get(lp.port, "/u", headers={"X-Forwarded-For": "198.51.100.9"}, source="127.0.0.2")
    assert r.status == 200
    assert log_entry(lp, "/u")["client"] == "127.0.0.2"
    assert xff(o, "/u") == "198.51.100.9, 127.0.0.2"


def test_trusted_xff_drives_ip_affinity_only_from_trusted_peer(limpet, origin):
    """ip affinity hashes the X-Forwarded-For client of a trusted peer (so
    clients spread), and the peer itself otherwise (so they all stay on one
    origin whatever they claim)."""
    origins = [origin(f"s{i}") for i in range(1, 4)]
    lp = limpet(trusted_config(origins, ["127.0.0.1/32"], mode="ip"))
    trusted, untrusted = {}, set()
    for i in range(24):
        claim = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
        for k in range(2):
            r = get(lp.port, f"/tr/{i}/{k}", headers=claim, source="127.0.0.1")
            trusted.setdefault(i, set()).add(r.served_by)
        untrusted.add(get(lp.port, f"/un/{i}", headers=claim, source="127.0.0.3").served_by)
    assert all(len(v) == 1 for v in trusted.values()), trusted
    assert len({next(iter(v)) for v in trusted.values()}) >= 2
    assert len(untrusted) == 1, f"an untrusted peer's X-Forwarded-For moved it: {untrusted}"


def test_proxy_header_then_trusted_xff(limpet, origin):
    """A CDN reaching limpet through an L4 balancer: the header names the CDN
    node (trusted), whose X-Forwarded-For names the client."""
    o = origin("s1")
    cfg = pp_config([o], trusted_proxies=["10.0.0.0/8"])
    lp = limpet(cfg)
    m = exchange(lp.port, v1("10.20.30.40") +
                 request("/cdn", [("X-Forwarded-For", "203.0.113.50")]))
    assert m.status == 200
    assert log_entry(lp, "/cdn")["client"] == "203.0.113.50"
    m = exchange(lp.port, v1("192.0.2.60") +
                 request("/direct", [("X-Forwarded-For", "203.0.113.50")]))
    assert m.status == 200
    assert log_entry(lp, "/direct")["client"] == "192.0.2.60"
    assert xff(o, "/direct") == "203.0.113.50, 192.0.2.60"
