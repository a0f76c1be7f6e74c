"""Health: monitors and passive checks (SPEC §5, issue 4 items 1-2).

Origins are RecordingOrigins whose /status answer the test flips (flip_origin.py)
or real demo-origin processes that the test kills. Whether an origin is in
rotation is measured from the outside: round robin over two origins sends
every other request to each, so a batch of four requests that never reaches
an origin means it is out. Bounds come from the issue: an origin leaves
within interval × retries + timeout (+ one interval of slack) and returns
within interval × rise + timeout (+ one interval); POLL_SLACK covers the time
our own polling takes to notice.
"""
import json
import re
import signal
import time

from flip_origin import Flip
from harness import basic_config, free_port, http_request

INTERVAL = 0.3
TIMEOUT = 0.5
RETRIES = 2
RISE = 2
LEAVE_BOUND = INTERVAL * RETRIES + TIMEOUT + INTERVAL
RETURN_BOUND = INTERVAL * RISE + TIMEOUT + INTERVAL
POLL_SLACK = 0.25


def monitor(**over):
    m = {"name": "status", "type": "http", "path": "/status", "expected_codes": "200",
         "expected_body": "RUNNING", "interval": INTERVAL, "timeout": TIMEOUT,
         "retries": RETRIES, "rise": RISE}
    m.update(over)
    return {k: v for k, v in m.items() if v is not None}


def monitored_config(origins, **monitor_over):
    return basic_config(origins, pool_extra={"monitor": "status"},
                        monitors=[monitor(**monitor_over)])


def served(lp, n=4, path="/x"):
    """Who answered n fresh requests (all must succeed)."""
    names = []
    for _ in range(n):
        r = http_request(lp.port, "GET", path)
        assert r.status == 200, (r.status, r.body)
        names.append(r.header("X-Served-By"))
    return names


def wait_rotation(lp, name, present, since, timeout):
    """Seconds from `since` until `name` is (present=True) or is not in
    rotation; fails after timeout."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        if (name in served(lp)) == present:
            return time.monotonic() - since
    raise AssertionError(f"{name} still {'out of' if present else 'in'} rotation after "
                         f"{timeout:.1f}s\n{lp.stderr_text()}")


def wait_log(lp, pattern, timeout):
    """Seconds until a stderr line matches pattern (a regex for the message
    after the "limpet: " prefix); fails after timeout."""
    start = time.monotonic()
    rx = re.compile(r"^\S+ limpet: " + pattern + r"$", re.M)
    while time.monotonic() - start < timeout:
        if rx.search(lp.stderr_text()):
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"no stderr line matching {pattern!r} within {timeout}s:\n"
                         f"{lp.stderr_text()}")


def health_lines(lp, name):
    """The up/down lines of origin app/NAME."""
    rx = re.compile(rf" limpet: origin app/{re.escape(name)} (up|down)\b")
    return [l for l in lp.stderr_text().splitlines() if rx.search(l)]


def reload(lp, config):
    before = lp.stderr_text().count("configuration reloaded")
    lp.config_path.write_text(json.dumps(config, indent=2))
    lp.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while lp.stderr_text().count("configuration reloaded") == before:
        assert time.monotonic() < deadline, f"reload not done:\n{lp.stderr_text()}"
        time.sleep(0.02)
    return time.monotonic()


# --------------------------------------------------------------------------
# monitors
# --------------------------------------------------------------------------

def test_first_checks_run_at_once_then_every_interval(limpet, origin):
    a, b = Flip(origin("a")), Flip(origin("b"))
    t0 = time.monotonic()
    lp = limpet(monitored_config([a, b], interval=30))
    assert a.wait_checks(1, 2) == 1 and b.wait_checks(1, 2) == 1
    assert a.checks[0][0] - t0 < 1.5 and b.checks[0][0] - t0 < 1.5
    req = [r for r in a.origin.requests if r.target == "/status"][0]
    assert req.method == "GET"
    assert req.header("Host") == a.address
    assert req.header("Connection") == "close"
    time.sleep(0.5)
    assert len(a.checks) == 1 and len(b.checks) == 1   # next ones are up to 30 s away
    assert set(served(lp)) == {"a", "b"}
    assert health_lines(lp, "a") == [] and health_lines(lp, "b") == []


def test_failing_origin_leaves_within_bound_and_returns_after_rise(limpet, origin):
    a, b = Flip(origin("a")), Flip(origin("b"))
    lp = limpet(monitored_config([a, b]))
    b.wait_checks(1, 2)
    assert set(served(lp)) == {"a", "b"}

    t0 = time.monotonic()
    b.mode = "fail"
    left = wait_rotation(lp, "b", False, t0, LEAVE_BOUND + 3)
    assert left <= LEAVE_BOUND + POLL_SLACK, f"left after {left:.2f}s"
    wait_log(lp, r'origin app/b down: expected body "RUNNING" not found', 1)
    for _ in range(10):
        assert served(lp) == ["a"] * 4

    t1 = time.monotonic()
    b.mode = "pass"
    back = wait_rotation(lp, "b", True, t1, RETURN_BOUND + 3)
    assert back <= RETURN_BOUND + POLL_SLACK, f"returned after {back:.2f}s"
    # it took `rise` passing checks after the switch
    assert [p for _, p in b.checks_since(t1)][:RISE] == [True] * RISE
    wait_log(lp, r"origin app/b up", 1)
    assert len(health_lines(lp, "b")) == 2
    assert health_lines(lp, "a") == []


def test_alternating_checks_never_change_state(limpet, origin):
    a, b = Flip(origin("a")), Flip(origin("b"))
    b.mode = "alternate"
    lp = limpet(monitored_config([a, b], interval=0.2))

    # up and alternating: stays up, keeps getting traffic
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.4:
        assert "b" in served(lp)
    results = [p for _, p in b.checks]
    assert len(results) >= 8, results
    assert all(results[i] != results[i + 1] for i in range(len(results) - 1)), results
    assert health_lines(lp, "b") == []

    # down and alternating: stays down, gets no traffic
    b.mode = "fail"
    wait_rotation(lp, "b", False, time.monotonic(), LEAVE_BOUND + 3)
    b.mode = "alternate"
    t1 = time.monotonic()
    while time.monotonic() - t1 < 2.4:
        assert "b" not in served(lp)
    assert len(b.checks_since(t1)) >= 8
    assert len(health_lines(lp, "b")) == 1, health_lines(lp, "b")

    b.mode = "pass"
    wait_rotation(lp, "b", True, time.monotonic(), RETURN_BOUND + 3)


def test_failure_reasons_are_logged(limpet, origin):
    a = Flip(origin("a"))
    err, slow = Flip(origin("err")), Flip(origin("slow"))
    err.mode = "error"
    slow.mode = "slow"
    dead = ("dead", f"127.0.0.1:{free_port()}")
    lp = limpet(monitored_config([a, err, slow, dead]))
    wait_log(lp, r"origin app/err down: unexpected status 503 \(expected 200\)", 3)
    wait_log(lp, r"origin app/dead down: connect: Connection refused", 3)
    wait_log(lp, r"origin app/slow down: timed out after 0\.5s", 4)
    assert set(served(lp, 8)) == {"a"}
    err.mode = "pass"
    wait_log(lp, r"origin app/err up", RETURN_BOUND + 2)
    assert health_lines(lp, "a") == []


def test_tcp_monitor(limpet, origin):
    a = origin("a")
    port = free_port()
    lp = limpet(monitored_config([a, ("t", f"127.0.0.1:{port}")], type="tcp",
                                 expected_body=None))
    wait_log(lp, r"origin app/t down: connect: Connection refused", 3)
    t0 = time.monotonic()
    origin("t", port=port)
    back = wait_rotation(lp, "t", True, t0, RETURN_BOUND + 3)
    assert back <= RETURN_BOUND + POLL_SLACK
    wait_log(lp, r"origin app/t up", 1)


# --------------------------------------------------------------------------
# passive checks
# --------------------------------------------------------------------------

def test_killed_origin_leaves_through_passive_checks(limpet, demo_origins):
    d1, d2 = demo_origins(2)
    lp = limpet(basic_config([d1, d2], pool_extra={"monitor": "status"},
                             monitors=[monitor(interval=30, timeout=1)]))
    assert set(served(lp)) == {"demo1", "demo2"}
    d2.proc.kill()
    d2.proc.wait(timeout=5)
    t0 = time.monotonic()
    # live traffic never fails (refused connects are retried on demo1) and
    # after two refused connects demo2 is marked down, long before the
    # monitor's next run (up to 30 s away, and two failed runs would be needed)
    while not health_lines(lp, "demo2"):
        assert served(lp) == ["demo1"] * 4
        assert time.monotonic() - t0 < 4, lp.stderr_text()
    wait_log(lp, r"origin app/demo2 down: (\d+) failures seen by live traffic "
                 r"\(\1 connect failures\)", 1)        # the kinds are named (issue 11)
    assert "connect: Connection refused" not in "".join(health_lines(lp, "demo2"))
    for _ in range(5):
        assert served(lp) == ["demo1"] * 4


def test_5xx_answers_mark_down_and_monitor_brings_back(limpet, origin):
    """With pools[].passive.http_5xx (issue 11: 5xx answers count only when
    the pool asks for it; test_routes_and_passive.py checks the default)."""
    a, b = Flip(origin("a")), Flip(origin("b"))
    cfg = monitored_config([a, b], interval=0.4)
    cfg["pools"][0]["passive"] = {"http_5xx": True}
    lp = limpet(cfg)
    b.live_status = 500
    statuses = []
    t0 = time.monotonic()
    while not health_lines(lp, "b"):
        statuses.append(http_request(lp.port, "GET", "/x").status)
        assert time.monotonic() - t0 < 3, lp.stderr_text()
        time.sleep(0.02)
    wait_log(lp, r"origin app/b down: \d+ failures seen by live traffic \(\d+ 5xx answers\)", 1)
    assert statuses.count(500) >= RETRIES
    assert all(c[1] for c in b.checks)          # its monitor never failed
    assert served(lp, 4) == ["a"] * 4

    b.live_status = 200
    t1 = time.monotonic()
    back = wait_rotation(lp, "b", True, t1, 0.4 * RISE + TIMEOUT + 0.4 + 3)
    assert back <= 0.4 * RISE + TIMEOUT + 0.4 + POLL_SLACK
    wait_log(lp, r"origin app/b up", 1)


# --------------------------------------------------------------------------
# reloads
# --------------------------------------------------------------------------

def test_reload_keeps_state_checks_new_and_stops_removed(limpet, origin):
    a, b, c = Flip(origin("a")), Flip(origin("b")), Flip(origin("c"))
    cfg = monitored_config([a, b])
    lp = limpet(cfg)
    b.mode = "fail"
    wait_rotation(lp, "b", False, time.monotonic(), LEAVE_BOUND + 3)

    # a new origin is checked at once; b keeps its verdict
    c.mode = "fail"
    cfg["pools"][0]["origins"].append({"name": "c", "address": c.address})
    t0 = reload(lp, cfg)
    assert c.wait_checks(1, 1) >= 1 and c.checks[0][0] - t0 < 0.5
    wait_log(lp, r'origin app/c down: expected body "RUNNING" not found', LEAVE_BOUND + 1)
    for _ in range(5):
        assert served(lp) == ["a"] * 4
    assert len(health_lines(lp, "b")) == 1          # no "up" after the reload

    # a removed origin is no longer checked; a changed monitor applies at once
    cfg["pools"][0]["origins"].pop()
    cfg["monitors"][0]["expected_body"] = "STOPPED"
    reload(lp, cfg)
    n = len(c.checks)
    wait_log(lp, r"origin app/b up", RETURN_BOUND + 1)
    wait_log(lp, r'origin app/a down: expected body "STOPPED" not found', LEAVE_BOUND + 1)
    time.sleep(INTERVAL * 3)
    assert len(c.checks) <= n + 1                    # at most the one in flight
    assert served(lp) == ["b"] * 4


def test_pool_without_monitor_is_never_marked_down(limpet, origin):
    a, b = Flip(origin("a")), Flip(origin("b"))
    cfg = monitored_config([a, b])
    cfg["pools"][0].pop("monitor")
    b.live_status = 500
    lp = limpet(cfg)
    for _ in range(10):
        http_request(lp.port, "GET", "/x")
    time.sleep(0.3)
    assert b.checks == [] and health_lines(lp, "b") == []
