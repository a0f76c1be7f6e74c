#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere;
the files are committed, so this only needs running when the seeds change;
`make_seeds.py tls` rewrites only the named targets).

The request and response seeds are the refusal batteries of the e2e tests
(tests/e2e/test_refusals.py, test_smuggling.py, test_response_refusals.py)
plus valid messages, so the fuzzers start from every rule's edge. Each seed
is named by the SHA-1 of its content, as libFuzzer names what it adds.

    fuzz/make_seeds.py                   every target
    fuzz/make_seeds.py proxy_protocol    only the targets named
"""
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import test_refusals as tr            # noqa: E402
import test_smuggling as ts           # noqa: E402
import test_response_refusals as trr  # noqa: E402

MAX_LEN = {"request": 12288, "response": 8192, "chunked": 8192, "config": 16384,
           "cookie": 4096, "token": 1024, "proxy_protocol": 1024, "tls": 8192}


def write(target, seeds):
    d = FUZZ / "corpus" / target
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    names = set()
    for s in seeds:
        if isinstance(s, str):
            s = s.encode("latin-1")
        if len(s) > MAX_LEN[target]:
            continue
        name = hashlib.sha1(s).hexdigest()
        if name not in names:
            names.add(name)
            (d / name).write_bytes(s)
    print(f"{target}: {len(names)} seeds")


def request_seeds():
    seeds = []
    for data, _status in tr.CASES.values():
        seeds += [data, data + tr.AFTER]
    for data in tr.ACCEPTED.values():
        seeds += [data, data + tr.AFTER]
    for fields, _status in ts.SPELLINGS.values():
        seeds += [ts.te_only(fields), ts.te_and_cl(fields)]
    for fields in ts.LEGIT.values():
        seeds += [ts.te_only(fields), ts.te_and_cl(fields), ts.te_only(fields, b"HTTP/1.0")]
    seeds += [
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /a?b=c&d=%20e HTTP/1.1\r\nHost: [::1]:8080\r\nCookie: __limpet=x; a=b\r\n"
        b"X-Forwarded-For: 192.0.2.1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n",
        b"GET http://h:80/x HTTP/1.1\r\nHost: H\r\n\r\n",
        b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: a\r\n\r\n",          # 414
        b"GET /" + b"a" * 8180 + b" HTTP/1.1\r\nHost: a\r\n\r\n",          # just fits
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Long: " + b"v" * 9000 + b"\r\n\r\n",
    ]
    return seeds


def response_seeds():
    seeds = list(trr.BAD.values()) + [data for data, _status, _body in trr.EXTRA.values()]
    ok = trr.OK_HEAD
    seeds += [
        ok + b"Content-Length: 5\r\n\r\nhello",
        ok + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ok + b"Transfer-Encoding: Chunked\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
        b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n",
        ok + b"Set-Cookie: JSESSIONID=abc.s1; Path=/; HttpOnly\r\nSet-Cookie: a=b\r\n"
        b"Content-Length: 0\r\n\r\n",
        ok + b"Connection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
    ]
    return seeds


def chunked_seeds():
    seeds = []
    for name, (data, _status) in tr.CASES.items():
        if name.startswith(("chunk-", "last-chunk", "trailer-")):
            seeds.append(data.split(b"\r\n\r\n", 1)[1])
    for name, data in trr.BAD.items():
        if name.startswith(("chunk-", "trailer-")):
            seeds.append(data.split(b"\r\n\r\n", 1)[1])
    seeds += [
        b"0\r\n\r\n",
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
        b"A\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n",
        b"5;a=b;c=\"d\\\"e\"\r\nhello\r\n0;last\r\nX-T: 1\r\nX-U: \t2\r\n\r\n",
        b"0000000000000005\r\nhello\r\n0\r\n\r\n",
        b"1\r\nx\r\n" * 64 + b"0\r\n\r\n",
        b"10\r\n" + bytes(range(16)) + b"\r\n0\r\n\r\n",
        b"ffffffffffffffff\r\n",
        b"5\r\nhel",
        b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n",
        b"0\r\n" + b"X-T: " + b"v" * 8000 + b"\r\n\r\n",
    ]
    return seeds


def config_seeds():
    seeds = []
    spec = REPO.parent / "shared" / "SPEC.md"
    if spec.exists():
        m = re.search(r"```json\n(.*?)```", spec.read_text(), re.S)
        if m:
            seeds.append(m.group(1))
    base = {
        "listen": [{"address": "127.0.0.1:8080", "load_balancer": "www"}],
        "pools": [{"name": "app", "origins": [{"name": "s1", "address": "127.0.0.1:9001"},
                                              {"name": "s2", "address": "127.0.0.1:9002",
                                               "weight": 2, "state": "draining"}]}],
        "load_balancers": [{"name": "www", "default_pools": ["app"]}],
    }
    seeds.append(json.dumps(base))
    variants = [
        {"session_affinity": "cookie", "session_affinity_ttl": 82800,
         "session_affinity_attributes": {"cookie_name": "__limpet", "samesite": "None",
                                         "secure": "Always", "httponly": True}},
        {"session_affinity": "app_cookie",
         "session_affinity_attributes": {"app_cookie": {"name": "JSESSIONID", "mode": "prefix",
                                                        "separator": "~"}}},
        {"session_affinity": "header",
         "session_affinity_attributes": {"headers": ["x-gwre-session"],
                                         "zero_downtime_failover": "sticky"}},
        {"session_affinity": "ip", "hash_balance_factor": 150},
        {"steering_policy": "geo", "region_pools": {"EU": ["app"]}},
        {"session_affinity_ttl": 604801},
        {"session_affinity": "cookie",
         "session_affinity_attributes": {"samesite": "None", "secure": "Never"}},
        {"default_pools": ["missing"]},
        {"unknown_key": 1},
    ]
    for v in variants:
        cfg = json.loads(json.dumps(base))
        cfg["load_balancers"][0].update(v)
        seeds.append(json.dumps(cfg, indent=1))
    tops = [
        {"timeouts": {"connect": 5, "client": 30, "server": 30, "request_header": 0.5,
                      "keepalive": 60, "grace": 10}},
        {"limits": {"max_connections": 10, "max_header_bytes": 4096,
                    "retry_buffer_bytes": 0}},
        {"threads": 0, "secret_file": "affinity.key", "log": {"access": "off"}},
        {"client_regions": {"EU": ["192.0.2.0/24", "2001:db8::/32"], "XX": ["300.0.0.0/8"]}},
        {"admin": {"address": "127.0.0.1:8081", "token_file": "admin.token",
                   "state_file": "limpet.state"}},
        {"monitors": [{"name": "status", "type": "http", "method": "GET", "path": "/status",
                       "expected_codes": "2xx", "expected_body": "RUNNING", "interval": 5,
                       "timeout": 2, "retries": 2, "rise": 2, "header": {"Host": "a"}}]},
        {"listen": [{"address": "[::1]:8443", "load_balancer": "www",
                     "tls": {"certificates": [{"certificate": "c.pem",
                                               "private_key": "k.pem"}]}}]},
        {"threads": -1},
        {"listen": [{"address": "nohost", "load_balancer": "nolb"}]},
        {"listen": [{"address": "127.0.0.1:8080", "load_balancer": "www",
                     "proxy_protocol": True}],
         "trusted_proxies": ["10.0.0.0/8", "::1", "192.0.2.1/33"]},
        {"listen": [{"address": "127.0.0.1:8080", "load_balancer": "www",
                     "proxy_protocol": "yes"}], "trusted_proxies": "10.0.0.0/8"},
    ]
    for t in tops:
        cfg = json.loads(json.dumps(base))
        cfg.update(t)
        seeds.append(json.dumps(cfg))
    seeds += ["", "{", "[]", "{}", "null", '{"listen": [}', '{"pools": "x"}',
              '{"listen": [{"address": "127.0.0.1:1", "load_balancer": "www"}], "pools": [],'
              ' "load_balancers": []}', '{"a": "\\u0000"}', '{"threads": 1e400}']
    return seeds


def cookie_seeds():
    def seed(name, value):
        return bytes([len(name)]) + name + value
    seeds = []
    for name in (b"__limpet", b"JSESSIONID", b"a", b"sid"):
        for value in (b"a=1; __limpet=AbCd_-09; b=2",
                      b"__limpet=x",
                      b"JSESSIONID=k3f9~9CA0E1.s1; Path=/; HttpOnly; SameSite=Lax",
                      b"a=1;b=2;;c=3; ",
                      b" sid = \"quoted value\" ; sid=second",
                      b"noequals; =empty; a==b",
                      b"\ta=\x7f\xff; b",
                      b"a=1; a=2; a=3; b=4; a=5",
                      b";;;;",
                      b""):
            seeds.append(seed(name, value))
    seeds.append(seed(b"", b"a=1"))
    seeds.append(seed(b"x", b"; ".join(b"x=%d; y=%d" % (i, i) for i in range(200))))
    return seeds


def token_seeds():
    return [
        b"A" * 56, b"_" * 56, b"-" * 56, b"AQ" + b"A" * 54, b"AQ" + b"x" * 55,
        b"short", b"", b"A" * 57, b"=" * 56,
        b"fuzz-signing-key-0123456789abcdef\n",
        b"# keys\n\nkey-number-one-0123456789\r\n  key-number-two-0123456789  \n",
        b"short-key\n",
        b"\n".join(b"key-%02d-0123456789abcdef" % i for i in range(17)),
        bytes(range(256)),
    ]


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_protocol_seeds():
    def v2(ver_cmd, fam, body):
        return V2_SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body
    v4 = bytes([192, 0, 2, 7, 198, 51, 100, 1, 0xC8, 0x2A, 0x01, 0xBB])
    v6 = bytes(range(32)) + b"\x12\x34\x00\x50"
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00" + b"\xea\x00\x05vpc-1"
    http = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    seeds = [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n" + http,
        b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n",
        b"PROXY TCP6 ::ffff:192.0.2.1 fe80::1 1 2\r\n",
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff::1 whatever 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\n",
        b"PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 080 2\r\n",
        b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",
        b"PROXY ",
        v2(0x21, 0x11, v4),
        v2(0x21, 0x11, v4 + tlvs) + http,
        v2(0x21, 0x21, v6),
        v2(0x21, 0x21, v6 + tlvs),
        v2(0x20, 0x11, v4),
        v2(0x20, 0x00, b""),
        v2(0x21, 0x00, b""),
        v2(0x21, 0x31, bytes(216)),
        v2(0x21, 0x12, v4),
        v2(0x11, 0x11, v4),
        v2(0x22, 0x11, v4),
        v2(0x21, 0x41, v4),
        v2(0x21, 0x11, v4[:11]),
        V2_SIGNATURE + b"\x21\x11\xff\xff",
        V2_SIGNATURE[:7],
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01",
    ]
    return seeds


def client_hello(sni=None, alpn=None, minimum=None, maximum=None, seclevel0=False):
    """The first flight of a Python (OpenSSL) client, through memory BIOs."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tls_seeds():
    """Client first flights (the first two bytes of a seed are the target's
    own: piece size, end of stream)."""
    import ssl
    import warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    v = ssl.TLSVersion
    hellos = [
        client_hello("a.fuzz.test", ["h2", "http/1.1"]),
        client_hello("b.fuzz.test", ["http/1.1"]),
        client_hello(None),
        client_hello("unknown.test", ["h2"]),
        client_hello("a.fuzz.test", maximum=v.TLSv1_2),
        client_hello("b.fuzz.test", minimum=v.TLSv1_3),
        client_hello("a.fuzz.test", minimum=v.TLSv1, maximum=v.TLSv1, seclevel0=True),
        client_hello("a.fuzz.test", minimum=v.TLSv1_1, maximum=v.TLSv1_1, seclevel0=True),
    ]
    out = []
    for h in hellos:
        out += [b"\xff\x00" + h, b"\x00\x01" + h, b"\x05\x01" + h[:len(h) // 2]]
    out += [b"\xff\x01GET / HTTP/1.1\r\nHost: a.fuzz.test\r\n\r\n",
            b"\xff\x00\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
            b"\xff\x01\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + bytes(37),
            b"\x10\x01" + bytes(range(256))]
    return out


TARGETS = {
    "request": request_seeds, "response": response_seeds, "chunked": chunked_seeds,
    "config": config_seeds, "cookie": cookie_seeds, "token": token_seeds,
    "proxy_protocol": proxy_protocol_seeds, "tls": tls_seeds,
}


def main(names):
    """Writes the seeds of the targets named (all of them by default)."""
    for name in names or TARGETS:
        write(name, TARGETS[name]())


if __name__ == "__main__":
    os.chdir(REPO)
    main(sys.argv[1:])
