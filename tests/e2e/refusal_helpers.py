"""Shared pieces of the request-refusal batteries (test_refusals.py,
test_smuggling.py): one limpet in front of one RecordingOrigin for a whole
test module, and the check every refused request goes through.

Why one limpet per module: the batteries send a few hundred requests, each on
its own connection; a limpet per test would spend most of the run starting
and stopping processes. The module fixture is built from the same harness
classes as the shared `limpet`/`origin` fixtures of conftest.py and makes the
same teardown checks (exit 0 within 10 s of SIGTERM, no sanitizer report).
Tests still use the shared `raw` fixture for their client connections.

    from refusal_helpers import refusal_lb, assert_refused   # noqa: F401

`refusal_lb` is a SharedLB: .port, .origin (the RecordingOrigin), .limpet.
"""
import time

import pytest

from harness import Limpet, RecordingOrigin, basic_config, build_request, require_binary

# The valid request pipelined behind every refused one: it must never reach
# the origin, since nothing behind a refused request is processed (SPEC §4).
AFTER = build_request("GET", "/after-refused", [("Host", "h")])

REQUEST_HEADER_TIMEOUT = 1.5   # timeouts.request_header of the shared limpet


class SharedLB:
    def __init__(self, limpet, origin):
        self.limpet = limpet
        self.origin = origin

    @property
    def port(self):
        return self.limpet.port


def start_shared_lb(tmp_dir, **config_extra):
    try:
        require_binary()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    o = RecordingOrigin("s1")
    cfg = basic_config([o], timeouts={"request_header": REQUEST_HEADER_TIMEOUT}, **config_extra)
    lp = Limpet(cfg, tmp_dir, name="limpet")
    try:
        lp.start()
    except Exception:
        o.stop()
        raise
    return SharedLB(lp, o)


def stop_shared_lb(lb):
    was_running = lb.limpet.running()
    rc = lb.limpet.stop(timeout=10)
    lb.origin.stop()
    err = lb.limpet.stderr_text()
    problems = []
    if not was_running:
        problems.append(f"limpet exited during the module (exit code {lb.limpet.returncode})")
    elif rc is None:
        problems.append("limpet did not exit within 10 s of SIGTERM (killed)")
    elif rc != 0:
        problems.append(f"limpet: exit code {rc} (expected 0 after SIGTERM)")
    if any(m in err for m in ("AddressSanitizer", "runtime error:", "LeakSanitizer")):
        problems.append("limpet: sanitizer report on stderr")
    if problems:
        pytest.fail("\n".join(problems) + f"\n--- limpet stderr ---\n{err[-4000:]}",
                    pytrace=False)


@pytest.fixture(scope="module")
def refusal_lb(tmp_path_factory):
    lb = start_shared_lb(tmp_path_factory.mktemp("refusals"))
    yield lb
    stop_shared_lb(lb)


def send_all(client, data):
    """Sends data; limpet may stop reading once it has refused the head, so a
    reset while sending the tail of a large request is not a failure."""
    try:
        client.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def assert_refused(lb, raw, data, status, after=AFTER, name=""):
    """Sends `data` with `after` pipelined behind it in the same send, then
    checks: exactly one response, with the given status and `Connection:
    close`; limpet closes the connection; the origin received no request
    during the exchange (neither the refused one nor the one behind it)."""
    before = len(lb.origin.requests)
    c = raw(lb.port, timeout=5)
    send_all(c, data + after)
    r = c.read_response()
    assert r.status == status, f"{name}: got {r.status}, want {status}"
    assert (r.header("Connection") or "").strip().lower() == "close", \
        f"{name}: {r.status} without Connection: close: {r.headers}"
    assert c.closed_within(3), f"{name}: connection not closed after {r.status}"
    assert len(c.buf) == 0, f"{name}: bytes after the {r.status}: {bytes(c.buf[:200])!r}"
    # a request limpet passed on by mistake would be on its way by now
    time.sleep(0.02)
    got = lb.origin.requests[before:]
    assert got == [], f"{name}: the origin received {[(m.method, m.target) for m in got]}"
    return r


def assert_relayed(lb, raw, data, n, name=""):
    """Sends data holding n valid pipelined requests; every one is answered
    200 and reaches the origin. Returns the origin's records of them."""
    before = len(lb.origin.requests)
    c = raw(lb.port, timeout=5)
    send_all(c, data)
    for i in range(n):
        r = c.read_response()
        assert r.status == 200, f"{name}: response {i + 1} is {r.status}, want 200"
    got = lb.origin.wait_for_requests(before + n)[before:]
    assert len(got) == n, f"{name}: the origin received {len(got)} of {n} requests"
    assert not c.closed_within(0.05), f"{name}: connection closed after valid requests"
    return got

