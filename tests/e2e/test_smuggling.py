"""Obfuscated Transfer-Encoding, in the style of smuggler.py: request
smuggling works when two parsers disagree on where a body ends, and a
Transfer-Encoding one of them does not recognise is the usual way to make
them disagree. limpet recognises exactly one spelling of chunked framing —
the field name in any case, the value `chunked` in any case with optional
SP/HTAB around it (RFC 9110 §5.5, §5.6.1; RFC 9112 §6.1, §7) — and refuses
every other spelling: 400, or 501 for a well-formed but unknown coding
(docs/http-refusals.md).

Each spelling is sent twice, each time with a valid request pipelined behind
it in the same send:

  te-only  Transfer-Encoding alone, a chunked body that holds a smuggled
           request if read as chunked ("TE.CL"-style);
  te+cl    with a Content-Length covering a body that holds a smuggled
           request if read as chunked ("CL.TE"-style): always 400.

Every refusal closes the connection, and the recording origin receives none
of the requests (neither the refused one, nor the smuggled one, nor the one
behind). The legitimate spellings are relayed exactly as `chunked` is.
"""
import pytest

from refusal_helpers import (  # noqa: F401  (refusal_lb is a fixture)
    AFTER, assert_refused, assert_relayed, refusal_lb)

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"

# id: (field lines standing for Transfer-Encoding, status when sent alone)
SPELLINGS = {
    # -- bytes around or inside the field name
    "name-leading-space": ([b" Transfer-Encoding: chunked"], 400),        # obs-fold line
    "name-leading-tab": ([b"\tTransfer-Encoding: chunked"], 400),
    "name-leading-vtab": ([b"\x0bTransfer-Encoding: chunked"], 400),
    "name-leading-nul": ([b"\x00Transfer-Encoding: chunked"], 400),
    "name-leading-formfeed": ([b"\x0cTransfer-Encoding: chunked"], 400),
    "name-space-before-colon": ([b"Transfer-Encoding : chunked"], 400),
    "name-tab-before-colon": ([b"Transfer-Encoding\t: chunked"], 400),
    "name-vtab-before-colon": ([b"Transfer-Encoding\x0b: chunked"], 400),
    "name-formfeed-before-colon": ([b"Transfer-Encoding\x0c: chunked"], 400),
    "name-nul-before-colon": ([b"Transfer-Encoding\x00: chunked"], 400),
    "name-cr-before-colon": ([b"Transfer-Encoding\r: chunked"], 400),
    "name-lf-before-colon": ([b"Transfer-Encoding\n: chunked"], 400),
    "name-inner-cr": ([b"Transfer\r-Encoding: chunked"], 400),
    "name-inner-space": ([b"Transfer Encoding: chunked"], 400),
    "name-inner-obs-text": ([b"Transfer-\xffEncoding: chunked"], 400),
    "name-after-bare-lf": ([b"X-Pad: y\nTransfer-Encoding: chunked"], 400),
    "name-after-bare-cr": ([b"X-Pad: y\rTransfer-Encoding: chunked"], 400),
    "name-obs-folded-line": ([b"X-Pad: y", b" Transfer-Encoding: chunked"], 400),
    # -- bytes before the value
    "value-leading-vtab": ([b"Transfer-Encoding: \x0bchunked"], 400),
    "value-only-vtab-before": ([b"Transfer-Encoding:\x0bchunked"], 400),
    "value-leading-formfeed": ([b"Transfer-Encoding: \x0cchunked"], 400),
    "value-leading-nul": ([b"Transfer-Encoding: \x00chunked"], 400),
    "value-leading-soh": ([b"Transfer-Encoding: \x01chunked"], 400),
    "value-leading-us": ([b"Transfer-Encoding: \x1fchunked"], 400),
    "value-leading-del": ([b"Transfer-Encoding: \x7fchunked"], 400),
    "value-leading-nbsp": ([b"Transfer-Encoding: \xa0chunked"], 400),
    "value-leading-ff-byte": ([b"Transfer-Encoding: \xffchunked"], 400),
    "value-leading-cr": ([b"Transfer-Encoding: \rchunked"], 400),
    "value-leading-bare-lf": ([b"Transfer-Encoding:\n chunked"], 400),
    "value-obs-folded": ([b"Transfer-Encoding:", b" chunked"], 400),
    "value-obs-folded-tab": ([b"Transfer-Encoding:", b"\tchunked"], 400),
    "value-obs-folded-second": ([b"Transfer-Encoding: x", b" chunked"], 400),
    # -- bytes after the value
    "value-trailing-vtab": ([b"Transfer-Encoding: chunked\x0b"], 400),
    "value-trailing-formfeed": ([b"Transfer-Encoding: chunked\x0c"], 400),
    "value-trailing-nul": ([b"Transfer-Encoding: chunked\x00"], 400),
    "value-trailing-soh": ([b"Transfer-Encoding: chunked\x01"], 400),
    "value-trailing-esc": ([b"Transfer-Encoding: chunked\x1b"], 400),
    "value-trailing-del": ([b"Transfer-Encoding: chunked\x7f"], 400),
    "value-trailing-nbsp": ([b"Transfer-Encoding: chunked\xa0"], 400),
    "value-trailing-cr": ([b"Transfer-Encoding: chunked\r"], 400),       # CR CR LF
    "value-inner-nul": ([b"Transfer-Encoding: chun\x00ked"], 400),
    "value-inner-tab": ([b"Transfer-Encoding: chu\tnked"], 400),
    "value-inner-space": ([b"Transfer-Encoding: chunk ed"], 400),
    # -- quoting, parameters, punctuation
    "value-double-quoted": ([b'Transfer-Encoding: "chunked"'], 400),
    "value-parenthesised": ([b"Transfer-Encoding: (chunked)"], 400),
    "value-bracketed": ([b"Transfer-Encoding: [chunked]"], 400),
    "value-semicolon": ([b"Transfer-Encoding: chunked;"], 400),
    "value-parameter": ([b"Transfer-Encoding: chunked;q=1"], 400),
    "value-parameter-spaced": ([b"Transfer-Encoding: chunked ; foo=bar"], 400),
    "value-equals": ([b"Transfer-Encoding: chunked=1"], 400),
    "value-two-words": ([b"Transfer-Encoding: chunked chunked"], 400),
    # -- chunked inside another token (well-formed, unknown coding)
    "token-single-quoted": ([b"Transfer-Encoding: 'chunked'"], 501),
    "token-prefix-x": ([b"Transfer-Encoding: xchunked"], 501),
    "token-suffix-x": ([b"Transfer-Encoding: chunkedx"], 501),
    "token-dash-suffix": ([b"Transfer-Encoding: chunked-false"], 501),
    "token-dash-prefix": ([b"Transfer-Encoding: x-chunked"], 501),
    "token-truncated": ([b"Transfer-Encoding: chunk"], 501),
    "token-dotted": ([b"Transfer-Encoding: chunked.x"], 501),
    "token-star": ([b"Transfer-Encoding: *chunked"], 501),
    # -- empty list elements
    "list-trailing-comma": ([b"Transfer-Encoding: chunked,"], 400),
    "list-trailing-comma-space": ([b"Transfer-Encoding: chunked, "], 400),
    "list-leading-comma": ([b"Transfer-Encoding: ,chunked"], 400),
    "list-leading-comma-space": ([b"Transfer-Encoding: , chunked"], 400),
    "list-double-comma": ([b"Transfer-Encoding: gzip,,chunked"], 400),
    "list-only-comma": ([b"Transfer-Encoding: ,"], 400),
    "list-empty-value": ([b"Transfer-Encoding: "], 400),
    "list-empty-second-line": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: "], 400),
    "list-empty-first-line": ([b"Transfer-Encoding: ", b"Transfer-Encoding: chunked"], 400),
    # -- several codings, several lines
    "chunked-twice": ([b"Transfer-Encoding: chunked, chunked"], 400),
    "chunked-twice-case": ([b"Transfer-Encoding: chunked, Chunked"], 400),
    "second-line-chunked": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], 400),
    "second-line-identity": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"], 400),
    "second-line-cow": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: cow"], 400),
    "first-line-cow": ([b"Transfer-Encoding: cow", b"Transfer-Encoding: chunked"], 501),
    "first-line-identity": ([b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked"], 501),
    "second-line-lowercase-name": ([b"Transfer-Encoding: chunked", b"transfer-encoding: gzip"], 400),
    "chunked-then-cow": ([b"Transfer-Encoding: chunked, cow"], 400),
    "cow-then-chunked": ([b"Transfer-Encoding: cow, chunked"], 501),
    "identity-then-chunked": ([b"Transfer-Encoding: identity, chunked"], 501),
    "gzip-then-chunked": ([b"Transfer-Encoding: gzip, chunked"], 501),
    "identity": ([b"Transfer-Encoding: identity"], 501),
    "gzip": ([b"Transfer-Encoding: gzip"], 501),
    "compress-deflate-chunked": ([b"Transfer-Encoding: compress, deflate, chunked"], 501),
    # -- hiding it with Connection
    "connection-drops-te": ([b"Transfer-Encoding: chunked", b"Connection: Transfer-Encoding"], 400),
    "connection-drops-te-case": ([b"Connection: close, TRANSFER-ENCODING", b"Transfer-Encoding: chunked"], 400),
}

# Legitimate spellings of chunked: treated exactly as `chunked`.
LEGIT = {
    "capitalised": [b"Transfer-Encoding: Chunked"],
    "tab-before-space-after": [b"Transfer-Encoding:\tchunked "],
    "upper": [b"Transfer-Encoding: CHUNKED"],
    "lowercase-name": [b"transfer-encoding: chunked"],
    "mixed-case": [b"TrAnSfEr-EnCoDiNg: cHuNkEd"],
    "no-space": [b"Transfer-Encoding:chunked"],
    "much-ows": [b"Transfer-Encoding: \t  chunked \t\t"],
    "tab-after": [b"Transfer-Encoding: chunked\t"],
}


def request(fields, body, version=b"HTTP/1.1", target=b"/te"):
    return (b"POST " + target + b" " + version + b"\r\nHost: h\r\n"
            + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body)


def te_only(fields, version=b"HTTP/1.1"):
    # read as chunked: a 5-byte chunk, the end, then a smuggled request
    return request(fields, b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, version)


def te_and_cl(fields):
    # read by Content-Length the smuggled request is body; read as chunked it is not
    body = b"0\r\n\r\n" + SMUGGLED
    return request([b"Content-Length: %d" % len(body)] + fields, body)


@pytest.mark.parametrize("name", list(SPELLINGS))
def test_obfuscated_te_refused(refusal_lb, raw, name):
    fields, status = SPELLINGS[name]
    assert_refused(refusal_lb, raw, te_only(fields), status, name=name)


@pytest.mark.parametrize("name", list(SPELLINGS))
def test_obfuscated_te_with_content_length_refused(refusal_lb, raw, name):
    fields, _ = SPELLINGS[name]
    assert_refused(refusal_lb, raw, te_and_cl(fields), 400, name=name)


def test_spelling_count():
    assert len(SPELLINGS) >= 50


@pytest.mark.parametrize("name", list(LEGIT))
def test_legitimate_chunked_spelling_relayed(refusal_lb, raw, name):
    """Relayed as chunked: the origin gets the chunked body, then the request
    pipelined behind it; nothing is smuggled."""
    data = request(LEGIT[name], b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", target=b"/legit")
    got = assert_relayed(refusal_lb, raw, data + AFTER, 2, name=name)
    assert got[0].target == "/legit"
    assert got[0].chunked and got[0].body == b"hello world", got[0]
    assert got[1].target == "/after-refused"


@pytest.mark.parametrize("name", list(LEGIT))
def test_legitimate_chunked_spelling_with_content_length_refused(refusal_lb, raw, name):
    assert_refused(refusal_lb, raw, te_and_cl(LEGIT[name]), 400, name=name)


@pytest.mark.parametrize("name", list(LEGIT))
def test_legitimate_chunked_spelling_on_http10_refused(refusal_lb, raw, name):
    assert_refused(refusal_lb, raw, te_only(LEGIT[name], version=b"HTTP/1.0"), 400, name=name)


@pytest.mark.parametrize("name", list(LEGIT))
def test_legitimate_chunked_spelling_twice_refused(refusal_lb, raw, name):
    assert_refused(refusal_lb, raw, te_only(LEGIT[name] + [b"Transfer-Encoding: chunked"]), 400,
                   name=name)


def test_plain_chunked_control(refusal_lb, raw):
    """The reference spelling, for comparison with the ones above."""
    data = request([b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n", target=b"/plain")
    got = assert_relayed(refusal_lb, raw, data + AFTER, 2)
    assert got[0].body == b"hello" and got[0].chunked
