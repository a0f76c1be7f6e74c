"""Malformed and ambiguous requests are refused, never guessed at (SPEC §4,
docs/http-refusals.md).

Every case is sent with a valid request pipelined behind it in the same send.
Each must get exactly the specified status (400; 501 for an unknown transfer
coding; 414 for a long request line; 431 for a large head; 505 for an
unsupported version), with `Connection: close`, limpet must then close the
connection, and the recording origin must receive neither request.

One limpet serves the whole module (refusal_helpers.refusal_lb).
"""
import time

import pytest

from harness import build_request
from refusal_helpers import (  # noqa: F401  (refusal_lb is a fixture)
    AFTER, REQUEST_HEADER_TIMEOUT, assert_refused, assert_relayed, refusal_lb, send_all)


def post(fields, body=b"", target=b"/r", version=b"HTTP/1.1"):
    """A POST with Host: h and the given raw field lines (bytes, no CRLF)."""
    return (b"POST " + target + b" " + version + b"\r\nHost: h\r\n"
            + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body)


def get(fields=(), target=b"/r", version=b"HTTP/1.1", host=True):
    return (b"GET " + target + b" " + version + b"\r\n" + (b"Host: h\r\n" if host else b"")
            + b"".join(f + b"\r\n" for f in fields) + b"\r\n")


def chunked(body):
    return post([b"Transfer-Encoding: chunked"], body)


MANY_FIELDS = [b"X-F%d: v" % i for i in range(100)]          # + Host = 101

# id: (request bytes, status)
CASES = {
    # ---- message framing: Content-Length / Transfer-Encoding (RFC 9112 §6, RFC 9110 §8.6)
    "cl-and-te": (post([b"Content-Length: 5", b"Transfer-Encoding: chunked"], b"0\r\n\r\n"), 400),
    "te-and-cl": (post([b"Transfer-Encoding: chunked", b"Content-Length: 5"], b"0\r\n\r\n"), 400),
    "cl-zero-and-te": (post([b"Content-Length: 0", b"Transfer-Encoding: chunked"], b"0\r\n\r\n"), 400),
    "cl-differ": (post([b"Content-Length: 5", b"Content-Length: 6"], b"hello!"), 400),
    "cl-repeated-same": (post([b"Content-Length: 5", b"Content-Length: 5"], b"hello"), 400),
    "cl-list-same": (post([b"Content-Length: 5, 5"], b"hello"), 400),
    "cl-list-differ": (post([b"Content-Length: 5, 6"], b"hello!"), 400),
    "cl-plus": (post([b"Content-Length: +5"], b"hello"), 400),
    "cl-negative": (post([b"Content-Length: -1"]), 400),
    "cl-hex": (post([b"Content-Length: 0x5"], b"hello"), 400),
    "cl-decimal-point": (post([b"Content-Length: 5.0"], b"hello"), 400),
    "cl-inner-space": (post([b"Content-Length: 5 5"], b"hello"), 400),
    "cl-empty": (post([b"Content-Length: "]), 400),
    "cl-overflow": (post([b"Content-Length: 99999999999999999999999"], b"x"), 400),
    "cl-vtab": (post([b"Content-Length: \x0b5"], b"hello"), 400),
    "te-http10": (post([b"Transfer-Encoding: chunked"], b"0\r\n\r\n", version=b"HTTP/1.0"), 400),
    "te-chunked-twice": (post([b"Transfer-Encoding: chunked, chunked"], b"0\r\n\r\n"), 400),
    "te-chunked-two-lines": (post([b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
                                  b"0\r\n\r\n"), 400),
    "te-chunked-not-final": (post([b"Transfer-Encoding: chunked, gzip"], b"0\r\n\r\n"), 400),
    "te-empty": (post([b"Transfer-Encoding: "], b"0\r\n\r\n"), 400),
    "te-unknown-gzip": (post([b"Transfer-Encoding: gzip"], b"0\r\n\r\n"), 501),
    "te-unknown-gzip-chunked": (post([b"Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n"), 501),
    "te-unknown-identity": (post([b"Transfer-Encoding: identity"], b"0\r\n\r\n"), 501),
    # ---- chunked body framing (RFC 9112 §7.1)
    "chunk-size-not-hex": (chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-leading-space": (chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-trailing-space": (chunked(b"5 \r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-0x": (chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-negative": (chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-17-digits": (chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-overflow": (chunked(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-empty": (chunked(b"\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-size-bare-lf": (chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
    "chunk-data-no-crlf": (chunked(b"5\r\nhelloXX0\r\n\r\n"), 400),
    "chunk-data-too-long": (chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-data-bare-lf": (chunked(b"5\r\nhello\n0\r\n\r\n"), 400),
    "chunk-ext-empty": (chunked(b"5;\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-ext-bare-cr": (chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-ext-nul": (chunked(b"5;a=\x00\r\nhello\r\n0\r\n\r\n"), 400),
    "last-chunk-bad-end": (chunked(b"5\r\nhello\r\n0\r\nX\r\n\r\n"), 400),
    "trailer-obs-fold": (chunked(b"0\r\nX-T: a\r\n b\r\n\r\n"), 400),
    "trailer-space-before-colon": (chunked(b"0\r\nX-T : a\r\n\r\n"), 400),
    "trailer-nul": (chunked(b"0\r\nX-T: a\x00b\r\n\r\n"), 400),
    # ---- field syntax (RFC 9112 §5, §2.2; RFC 9110 §5.5)
    "obs-fold-space": (get([b"X-A: a", b" b"]), 400),
    "obs-fold-tab": (get([b"X-A: a", b"\tb"]), 400),
    "ws-before-first-field": (b"GET /r HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    "ws-before-colon": (get([b"X-A : a"]), 400),
    "tab-before-colon": (get([b"X-A\t: a"]), 400),
    "host-ws-before-colon": (b"GET /r HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    "empty-field-name": (get([b": a"]), 400),
    "field-without-colon": (get([b"X-A a"]), 400),
    "field-name-nul": (get([b"X\x00A: a"]), 400),
    "field-name-obs-text": (get([b"X\xe9: a"]), 400),
    "field-name-separator": (get([b"X(A): a"]), 400),
    "value-nul": (get([b"X-A: a\x00b"]), 400),
    "value-bare-cr": (get([b"X-A: a\rb"]), 400),
    "value-vtab": (get([b"X-A: a\x0bb"]), 400),
    "value-formfeed": (get([b"X-A: a\x0cb"]), 400),
    "value-esc": (get([b"X-A: a\x1bb"]), 400),
    "value-del": (get([b"X-A: a\x7fb"]), 400),
    "bare-lf-field-end": (b"GET /r HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", 400),
    "bare-lf-head-end": (b"GET /r HTTP/1.1\r\nHost: h\r\n\n", 400),
    "bare-lf-request-line": (b"GET /r HTTP/1.1\nHost: h\r\n\r\n", 400),
    "bare-cr-line-end": (b"GET /r HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n", 400),
    "bare-cr-head-end": (b"GET /r HTTP/1.1\r\nHost: h\r\n\rX", 400),
    "too-many-fields": (get(MANY_FIELDS), 400),
    # ---- request line (RFC 9112 §3)
    "rl-double-space": (b"GET  /r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-space-after-target": (b"GET /r  HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-tab-separator": (b"GET\t/r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-leading-space": (b" GET /r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-trailing-space": (b"GET /r HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
    "rl-extra-token": (b"GET /r HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
    "rl-no-version": (b"GET /r\r\nHost: h\r\n\r\n", 400),
    "rl-lowercase-version": (b"GET /r http/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-bad-version": (b"GET /r HTTX/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-version-no-minor": (b"GET /r HTTP/1\r\nHost: h\r\n\r\n", 400),
    "rl-method-separator": (b"GE(T /r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-method-nul": (b"GE\x00T /r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-space-in-target": (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-nul": (b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-ctl": (b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-del": (b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-obs-text": (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-fragment": (b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-star-get": (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-relative": (b"GET r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-ftp": (b"GET ftp://h/r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-userinfo": (b"GET http://u@h/r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-target-empty-authority": (b"GET http:///r HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "rl-connect-no-port": (b"CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "version-2.0": (b"GET /r HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    "version-1.2": (b"GET /r HTTP/1.2\r\nHost: h\r\n\r\n", 505),
    "version-0.9": (b"GET /r HTTP/0.9\r\nHost: h\r\n\r\n", 505),
    "request-line-too-long": (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    "head-too-large": (get([b"X-Big%d: %s" % (i, b"v" * 1000) for i in range(20)]), 431),
    # ---- Host (RFC 9112 §3.2, §3.2.2; RFC 9110 §7.2)
    "host-missing": (get(host=False), 400),
    "host-missing-with-other-fields": (get([b"X-A: b"], host=False), 400),
    "host-twice": (get([b"Host: h"]), 400),
    "host-twice-differ": (get([b"Host: evil"]), 400),
    "host-twice-http10": (get([b"Host: h"], version=b"HTTP/1.0"), 400),
    "host-empty": (b"GET /r HTTP/1.1\r\nHost: \r\n\r\n", 400),
    "host-space": (b"GET /r HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "host-path": (b"GET /r HTTP/1.1\r\nHost: h/x\r\n\r\n", 400),
    "host-userinfo": (b"GET /r HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
    "host-bad-port": (b"GET /r HTTP/1.1\r\nHost: h:99999\r\n\r\n", 400),
    "host-empty-port": (b"GET /r HTTP/1.1\r\nHost: h:\r\n\r\n", 400),
    "host-two-ports": (b"GET /r HTTP/1.1\r\nHost: h:80:80\r\n\r\n", 400),
    "host-open-bracket": (b"GET /r HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    "absolute-host-differs": (b"GET http://a.example/r HTTP/1.1\r\nHost: b.example\r\n\r\n", 400),
    "absolute-host-suffix": (b"GET http://a.example/r HTTP/1.1\r\nHost: a.example.evil\r\n\r\n", 400),
    "absolute-port-differs": (b"GET http://a.example:8080/r HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
    "absolute-https-port-80": (b"GET https://a.example/r HTTP/1.1\r\nHost: a.example:80\r\n\r\n", 400),
    "absolute-http-port-443": (b"GET http://a.example/r HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 400),
    "absolute-no-host": (b"GET http://a.example/r HTTP/1.1\r\n\r\n", 400),
    # ---- Connection (RFC 9110 §7.6.1)
    "connection-names-host": (get([b"Connection: host"]), 400),
    "connection-names-cl": (post([b"Content-Length: 5", b"Connection: Content-Length"], b"hello"), 400),
    "connection-names-te": (post([b"Transfer-Encoding: chunked", b"Connection: transfer-encoding"],
                                 b"0\r\n\r\n"), 400),
    "connection-names-te-in-list": (post([b"Transfer-Encoding: chunked",
                                          b"Connection: keep-alive, Transfer-Encoding"],
                                         b"0\r\n\r\n"), 400),
    "connection-not-token": (get([b"Connection: close;x"]), 400),
    "connection-two-tokens": (get([b"Connection: a b"]), 400),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused(refusal_lb, raw, name):
    data, status = CASES[name]
    assert_refused(refusal_lb, raw, data, status, name=name)


def test_battery_size():
    assert len(CASES) >= 40


# --------------------------------------------------------------------------
# controls: what the battery refuses differs from what is accepted by one
# detail, and the accepted variants reach the origin
# --------------------------------------------------------------------------

ACCEPTED = {
    "plain": get(),
    "content-length": post([b"Content-Length: 5"], b"hello"),
    "content-length-leading-zeros": post([b"Content-Length: 005"], b"hello"),
    "chunked": chunked(b"5\r\nhello\r\n0\r\n\r\n"),
    "chunked-ext-and-trailer": chunked(b"5;a=b;c=\"d\"\r\nhello\r\n0\r\nX-T: t\r\n\r\n"),
    "chunked-upper-hex": chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
    "100-fields": get(MANY_FIELDS[:99]),
    "http10-no-host": get([b"Connection: keep-alive"], version=b"HTTP/1.0", host=False),
    "leading-empty-line": b"\r\n" + get(),
    "field-value-tab-and-obs-text": get([b"X-A: a\tb \xe9"]),
    "absolute-form-same-host": b"GET http://h/r HTTP/1.1\r\nHost: h\r\n\r\n",
    "absolute-form-case-and-default-port": b"GET http://H:80/r HTTP/1.1\r\nHost: h\r\n\r\n",
    "absolute-form-https-default-port": b"GET https://h/r HTTP/1.1\r\nHost: H:443\r\n\r\n",
    "encoded-hash": b"GET /a%23b HTTP/1.1\r\nHost: h\r\n\r\n",
    "connection-names-other": get([b"X-Secret: s", b"Connection: x-secret"]),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted_variant(refusal_lb, raw, name):
    got = assert_relayed(refusal_lb, raw, ACCEPTED[name] + AFTER, 2, name=name)
    assert got[1].target == "/after-refused"


def test_connection_named_field_removed(refusal_lb, raw):
    data = get([b"X-Secret: s", b"Connection: X-Secret, x-other", b"X-Other: o", b"X-Keep: k"])
    got = assert_relayed(refusal_lb, raw, data, 1)
    assert got[0].header("X-Secret") is None
    assert got[0].header("X-Other") is None
    assert got[0].header("Connection") is None
    assert got[0].header("X-Keep") == "k"


def test_valid_request_before_refused_one_is_answered(refusal_lb, raw):
    """Pipelined: a valid request, a refused one, a valid one → 200, 400, close."""
    before = len(refusal_lb.origin.requests)
    c = raw(refusal_lb.port, timeout=5)
    c.send(build_request("GET", "/first", [("Host", "h")]) + CASES["cl-and-te"][0] + AFTER)
    assert c.read_response().status == 200
    r = c.read_response()
    assert r.status == 400
    assert c.closed_within(3)
    assert len(c.buf) == 0
    time.sleep(0.02)
    assert [m.target for m in refusal_lb.origin.requests[before:]] == ["/first"]


def test_refused_after_body_with_content_length(refusal_lb, raw):
    """The bytes after a Content-Length body start the next request: a bad
    one there is refused like any other."""
    before = len(refusal_lb.origin.requests)
    c = raw(refusal_lb.port, timeout=5)
    c.send(post([b"Content-Length: 5"], b"hello") + b"GET /x HTTP/1.1\r\nHost : h\r\n\r\n" + AFTER)
    assert c.read_response().status == 200
    assert c.read_response().status == 400
    assert c.closed_within(3)
    time.sleep(0.02)
    assert [m.target for m in refusal_lb.origin.requests[before:]] == ["/r"]


def test_request_header_timeout_408(refusal_lb, raw):
    """A head not complete within timeouts.request_header → 408 and close."""
    before = len(refusal_lb.origin.requests)
    c = raw(refusal_lb.port, timeout=10)
    t0 = time.monotonic()
    c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n")
    r = c.read_response()
    elapsed = time.monotonic() - t0
    assert r.status == 408
    assert REQUEST_HEADER_TIMEOUT - 0.2 <= elapsed <= REQUEST_HEADER_TIMEOUT + 1.0, elapsed
    assert (r.header("Connection") or "").lower() == "close"
    assert c.closed_within(3)
    assert refusal_lb.origin.requests[before:] == []


def test_request_header_timeout_trickle(refusal_lb, raw):
    """Slowloris: a head trickled a field line every 0.5 s is cut at
    request_header (+1 s), however steadily bytes arrive."""
    before = len(refusal_lb.origin.requests)
    c = raw(refusal_lb.port, timeout=10)
    t0 = time.monotonic()
    send_all(c, b"GET /trickle HTTP/1.1\r\nHost: h\r\n")
    closed = False
    for i in range(40):
        time.sleep(0.5)
        try:
            c.send(b"X-T%d: v\r\n" % i)
        except OSError:
            closed = True
            break
        if time.monotonic() - t0 > REQUEST_HEADER_TIMEOUT + 1.0:
            break
    r = c.read_response()
    assert r.status == 408, r
    assert time.monotonic() - t0 <= REQUEST_HEADER_TIMEOUT + 1.5
    assert closed or c.closed_within(3)
    assert refusal_lb.origin.requests[before:] == []


def test_limpet_still_serves(refusal_lb, raw):
    """After the whole battery: still up, still answering."""
    got = assert_relayed(refusal_lb, raw, get(target=b"/still-alive"), 1)
    assert got[0].target == "/still-alive"
    assert refusal_lb.limpet.running()
