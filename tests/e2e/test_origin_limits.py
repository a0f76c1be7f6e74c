"""Protecting origins and limpet itself (issue 11, items 6 and 8):

- pools[].origins[].max_connections: the origin never has more requests in
  flight than that, across worker threads; the others wait in the pool's
  queue — a pinned session for its own origin, a new one for whichever
  origin of the pool frees first — and get 503 with Retry-After when the
  queue is full (queue.max) or the wait passes queue.timeout
- slow_start: an origin coming back (enabled again, or up again) gets a
  visibly smaller share of new sessions at first, its full share after
- limits.max_connections held by idle keep-alive connections: the one idle
  the longest is closed so a new client is served at once
- a request cut off when timeouts.grace runs out at shutdown is logged with
  "aborted": true and counted on stderr
- the new keys are validated with JSON-path errors
"""
import json
import signal
import socket
import subprocess
import threading
import time

import pytest

from affinity_helpers import Session, affinity_config, get, log_entry, reload, tcp_monitor
from harness import LIMPET, Reply, admin_client, basic_config, with_admin
from limits_helpers import close_quietly, connect, read_response, served
from test_metrics import scrape, value


class Gauge:
    """Requests an origin is handling at once, and the most seen."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def handler(self, name, delay):
        def handle(req):
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            try:
                time.sleep(delay(req) if callable(delay) else delay)
            finally:
                with self.lock:
                    self.now -= 1
            return Reply(200, f"{name} {req.target}\n", headers=[("X-Served-By", name)])
        return handle


def limited(o, max_connections, **extra):
    return {"name": o.name, "address": o.address, "max_connections": max_connections, **extra}


def in_threads(fn, args_list):
    """Runs fn(*args) for each args in parallel threads; returns the results
    in order (an exception is returned as its value)."""
    results = [None] * len(args_list)

    def run(i, args):
        try:
            results[i] = fn(*args)
        except Exception as e:    # noqa: BLE001 - reported by the caller
            results[i] = e
    threads = [threading.Thread(target=run, args=(i, a), daemon=True)
               for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
        time.sleep(0.01)          # keep arrival order
    for t in threads:
        t.join(timeout=30)
    return results


def timed(port, path, headers=None):
    t0 = time.monotonic()
    r = get(port, path, headers=headers)
    return r, time.monotonic() - t0


def wait_seen(o, path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path in o.paths():
            return
        time.sleep(0.01)
    raise AssertionError(f"{o.name} never got {path}")


# ---- max_connections and the queue ---------------------------------------------------------

@pytest.mark.timeout(60)
def test_max_connections_1_holds_across_threads(limpet, origin):
    """threads 2, 12 clients at once, 2 requests each: the origin never sees
    two requests at the same time, and every one is served."""
    gauge = Gauge()
    o = origin("s1")
    o.handler = gauge.handler("s1", 0.05)
    lp = limpet(basic_config([limited(o, 1)], threads=2, access="access.log",
                             pool_extra={"queue": {"max": 100, "timeout": 30}}))
    results = in_threads(lambda i: [get(lp.port, f"/c/{i}/{k}").status for k in range(2)],
                         [(i,) for i in range(12)])
    assert results == [[200, 200]] * 12, results
    assert len(o.requests) == 24
    assert gauge.peak == 1, f"origin saw {gauge.peak} requests at once with max_connections 1"
    assert {e["status"] for e in lp.wait_access_log(24)} == {200}


def test_full_queue_gives_503_with_retry_after(limpet, origin):
    """max_connections 1, queue.max 1 (counted across both threads): one
    request in flight, one waiting, the third is refused at once."""
    gauge = Gauge()
    o = origin("s1")
    o.handler = gauge.handler("s1", lambda req: 1.5 if req.target == "/first" else 0)
    lp = limpet(with_admin(basic_config([limited(o, 1)], threads=2, access="access.log",
                                        pool_extra={"queue": {"max": 1, "timeout": 10}})))
    api = admin_client(lp)
    out = {}
    first = threading.Thread(target=lambda: out.update(first=timed(lp.port, "/first")))
    first.start()
    wait_seen(o, "/first")
    second = threading.Thread(target=lambda: out.update(second=timed(lp.port, "/second")))
    second.start()
    time.sleep(0.3)                   # /second is waiting in the queue now
    third, took = timed(lp.port, "/third")
    assert third.status == 503, third
    assert third.header("Retry-After"), f"503 without Retry-After: {third.headers}"
    assert took < 1.0, f"a full queue answered after {took:.2f}s"
    # the operator sees it: one waiting, one refused because the queue was full
    assert api.get("/api/v1/pools/app").json["queue"] == {"waiting": 1, "full": 1,
                                                          "timed_out": 0}
    fams = scrape(api)
    assert value(fams, "limpet_pool_queued", pool="app") == 1
    assert value(fams, "limpet_pool_queue_rejections_total", pool="app", reason="full") == 1
    first.join(10)
    second.join(10)
    assert out["first"][0].status == 200 and out["second"][0].status == 200
    assert o.paths() == ["/first", "/second"]
    assert gauge.peak == 1
    assert log_entry(lp, "/third")["status"] == 503


def test_queue_timeout_gives_503_with_retry_after(limpet, origin):
    o = origin("s1")
    o.handler = Gauge().handler("s1", lambda req: 2.0 if req.target == "/long" else 0)
    lp = limpet(with_admin(basic_config([limited(o, 1)], access="access.log",
                                        pool_extra={"queue": {"max": 10, "timeout": 0.5}})))
    out = {}
    long = threading.Thread(target=lambda: out.update(long=timed(lp.port, "/long")))
    long.start()
    wait_seen(o, "/long")
    r, took = timed(lp.port, "/waits")
    assert r.status == 503 and r.header("Retry-After"), r
    assert 0.4 < took < 1.8, f"answered after {took:.2f}s (queue.timeout 0.5)"
    api = admin_client(lp)
    assert api.get("/api/v1/pools/app").json["queue"] == {"waiting": 0, "full": 0,
                                                          "timed_out": 1}
    assert value(scrape(api), "limpet_pool_queue_rejections_total", pool="app",
                 reason="timeout") == 1
    long.join(10)
    assert out["long"][0].status == 200
    assert "/waits" not in o.paths()
    assert log_entry(lp, "/waits")["status"] == 503


def test_queue_max_0_refuses_at_once(limpet, origin):
    o = origin("s1")
    o.handler = Gauge().handler("s1", lambda req: 1.0 if req.target == "/long" else 0)
    lp = limpet(basic_config([limited(o, 1)],
                             pool_extra={"queue": {"max": 0, "timeout": 5}}))
    long = threading.Thread(target=lambda: get(lp.port, "/long"))
    long.start()
    wait_seen(o, "/long")
    r, took = timed(lp.port, "/refused")
    assert r.status == 503 and took < 0.8
    long.join(10)
    assert get(lp.port, "/after").status == 200


def test_pinned_session_waits_for_its_origin_new_session_goes_elsewhere(limpet, origin):
    """Two origins with max_connections 1, cookie affinity: while a session's
    origin is busy, its next request waits for that origin (not moved), and a
    new session is served by the other origin at once."""
    origins = [origin("s1"), origin("s2")]
    for o in origins:
        o.handler = Gauge().handler(o.name, lambda req: 1.5 if req.target == "/busy" else 0)
    lp = limpet(affinity_config([limited(o, 1) for o in origins], "cookie"))
    sess = Session(lp.port)
    home = sess.get("/start").served_by
    other = "s2" if home == "s1" else "s1"
    busy = threading.Thread(target=lambda: sess.get("/busy"))
    busy.start()
    wait_seen(next(o for o in origins if o.name == home), "/busy")
    fresh, took = timed(lp.port, "/fresh")
    assert fresh.status == 200 and fresh.served_by == other, fresh
    assert took < 1.0, f"a new session waited {took:.2f}s although {other} had room"
    t0 = time.monotonic()
    again = sess.get("/again")
    assert again.status == 200 and again.served_by == home, \
        f"the pinned session moved to {again.served_by} instead of waiting for {home}"
    assert time.monotonic() - t0 > 0.5, "the pinned request did not wait for its busy origin"
    busy.join(10)


def test_new_session_waits_for_any_origin_of_the_pool(limpet, origin):
    """Both origins busy: a new session waits and is served by the first one
    to free up (s2, busy for less time), and its cookie pins it there."""
    delays = {"s1": 3.0, "s2": 0.8}
    origins = [origin("s1"), origin("s2")]
    for o in origins:
        o.handler = Gauge().handler(
            o.name, lambda req, d=delays[o.name]: d if req.target.startswith("/busy") else 0)
    lp = limpet(affinity_config([limited(o, 1) for o in origins], "cookie"))
    busy = [threading.Thread(target=lambda i=i: get(lp.port, f"/busy/{i}")) for i in range(2)]
    for t in busy:
        t.start()
        time.sleep(0.05)
    for o in origins:
        deadline = time.monotonic() + 5
        while not any(p.startswith("/busy") for p in o.paths()) and time.monotonic() < deadline:
            time.sleep(0.01)
    sess = Session(lp.port)
    t0 = time.monotonic()
    r = sess.get("/new")
    took = time.monotonic() - t0
    assert r.status == 200 and r.served_by == "s2", r
    assert took < 2.0, f"served after {took:.2f}s: it waited for s1 instead of any origin"
    assert sess.get("/next").served_by == "s2", "the cookie does not pin the origin that served"
    for t in busy:
        t.join(10)


# ---- slow_start ----------------------------------------------------------------------------

def share(port, n, prefix):
    by = {}
    for i in range(n):
        r = get(port, f"{prefix}/{i}")
        assert r.status == 200
        by[r.served_by] = by.get(r.served_by, 0) + 1
    return by


@pytest.mark.timeout(60)
def test_slow_start_after_enable(limpet, origin):
    """s2 is enabled again (reload) with slow_start 4: right after, it gets
    far fewer new sessions than s1; after 4 s, about half."""
    origins = [origin("s1"), origin("s2")]
    entries = [{"name": "s1", "address": origins[0].address},
               {"name": "s2", "address": origins[1].address, "slow_start": 4,
                "state": "disabled"}]
    cfg = basic_config(entries, steering="round_robin")
    lp = limpet(cfg)
    assert share(lp.port, 4, "/before") == {"s1": 4}
    cfg = json.loads(json.dumps(cfg))
    cfg["pools"][0]["origins"][1]["state"] = "enabled"
    reload(lp, cfg)
    enabled = time.monotonic()
    early = share(lp.port, 60, "/early")
    assert time.monotonic() - enabled < 2.0, "too slow to measure the start of the ramp"
    assert early.get("s2", 0) <= 15, f"s2 got {early} right after coming back (slow_start 4)"
    time.sleep(max(0.0, enabled + 4.3 - time.monotonic()))
    late = share(lp.port, 60, "/late")
    assert 22 <= late.get("s2", 0) <= 38, f"after slow_start: {late}"


@pytest.mark.timeout(60)
def test_slow_start_after_health_comes_back(limpet, origin):
    """s2 goes down (its monitor fails) and comes back up with slow_start 4:
    a visibly smaller share of new sessions at first."""
    s1 = origin("s1")
    s2 = origin("s2")
    port2 = s2.port
    entries = [{"name": "s1", "address": s1.address},
               {"name": "s2", "address": s2.address, "slow_start": 4}]
    cfg = basic_config(entries, steering="round_robin", monitors=[tcp_monitor(0.2)],
                       pool_extra={"monitor": "tcp"})
    lp = limpet(cfg)
    assert share(lp.port, 10, "/before").get("s2", 0) >= 3
    s2.stop()
    deadline = time.monotonic() + 5
    while "origin app/s2 down" not in lp.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "origin app/s2 down" in lp.stderr_text()
    back = origin("s2", port=port2)
    deadline = time.monotonic() + 5
    while "origin app/s2 up" not in lp.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "origin app/s2 up" in lp.stderr_text()
    early = share(lp.port, 60, "/early")
    assert early.get("s2", 0) <= 15, f"s2 got {early} right after coming back up"
    assert len(back.requests) == early.get("s2", 0)


# ---- overload and shutdown -----------------------------------------------------------------

def test_idle_keepalive_connections_reclaimed_at_max_connections(limpet, origin):
    """threads 1, max_connections 4, four idle keep-alive connections hold
    every slot: a new client is served within 1 s, by closing the connection
    idle the longest; the others stay usable."""
    o = origin("s1")
    lp = limpet(basic_config([o], threads=1, limits={"max_connections": 4},
                             timeouts={"keepalive": 60}))
    held = []
    try:
        for i in range(4):
            s = connect(lp.port)
            held.append(s)
            assert served(s, f"/held/{i}")
            time.sleep(0.05)
        t0 = time.monotonic()
        r = get(lp.port, "/new", timeout=3)
        took = time.monotonic() - t0
        assert r.status == 200
        assert took < 1.0, f"a new client waited {took:.2f}s at max_connections"
        # the oldest idle one was closed; the newest is still served
        held[0].settimeout(2)
        assert held[0].recv(1) == b"", "the longest idle connection was not the one closed"
        assert served(held[3], "/held-again")
    finally:
        close_quietly(held)


def test_busy_connections_not_reclaimed(limpet, origin):
    """Connections with a request under way are never closed to make room:
    with all slots busy, a new client waits (as before)."""
    o = origin("s1")
    lp = limpet(basic_config([o], threads=1, limits={"max_connections": 3},
                             timeouts={"request_header": 30}))
    held = []
    try:
        for i in range(3):
            s = connect(lp.port)
            s.sendall(f"GET /partial/{i} HTTP/1.1\r\n".encode())   # a head under way
            held.append(s)
        time.sleep(0.2)
        extra = connect(lp.port)
        held.append(extra)
        extra.sendall(b"GET /extra HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_response(extra, timeout=0.7) is None
        held[0].sendall(b"Host: h\r\nConnection: close\r\n\r\n")
        m = read_response(extra, timeout=3)
        assert m is not None and m.status == 200
    finally:
        close_quietly(held)


def test_grace_cut_off_logged_as_aborted_and_counted(limpet, origin):
    """SIGTERM with two requests in flight and timeouts.grace 0.5: one still
    waiting for its response (status 0), one mid-body (status 200 sent); both
    get an access-log line with "aborted": true, and stderr counts them."""
    o = origin("s1")

    def handler(req):
        if req.target == "/stuck":
            time.sleep(4)
            return Reply(200, "late\n")
        return Reply(200, b"x" * 40960, drip=0.1)
    o.handler = handler
    lp = limpet(basic_config([o], threads=1, access="access.log", timeouts={"grace": 0.5}))
    socks = []
    try:
        for path in ("/stuck", "/dripping"):
            s = connect(lp.port)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            socks.append(s)
        socks[1].settimeout(5)
        assert socks[1].recv(16).startswith(b"HTTP/1.1 200")
        wait_seen(o, "/stuck")
        t0 = time.monotonic()
        lp.signal(signal.SIGTERM)
        assert lp.wait(5) == 0
        assert time.monotonic() - t0 < 3
    finally:
        close_quietly(socks)
    entries = {e["path"]: e for e in lp.access_log()}
    assert entries["/stuck"]["status"] == 0 and entries["/stuck"].get("aborted") is True, entries
    assert entries["/dripping"]["status"] == 200 and entries["/dripping"].get("aborted") is True
    assert "shutdown: 2 requests cut off after grace" in lp.stderr_text()


def test_finished_requests_not_marked_aborted(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o], access="access.log"))
    assert get(lp.port, "/ok").status == 200
    assert "aborted" not in log_entry(lp, "/ok")
    lp.signal(signal.SIGTERM)
    assert lp.wait(5) == 0
    assert "cut off" not in lp.stderr_text()


# ---- validation ----------------------------------------------------------------------------

def check(tmp_path, cfg):
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    p = subprocess.run([str(LIMPET), "-t", "-c", "cfg.json"], cwd=tmp_path,
                       capture_output=True, timeout=10)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def good():
    return basic_config([("s1", "127.0.0.1:9001"), ("s2", "127.0.0.1:9002")])


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["listen"][0].update(proxy_protocol="yes"),
     "listen[0].proxy_protocol: must be true or false"),
    (lambda c: c.update(trusted_proxies="10.0.0.0/8"),
     "trusted_proxies: must be an array"),
    (lambda c: c.update(trusted_proxies=["10.0.0.0/8", "10.0.0.300/8"]),
     "trusted_proxies[1]: not a CIDR (ADDRESS/PREFIX): bad IP address"),
    (lambda c: c.update(trusted_proxies=["10.0.0.0/33"]),
     "trusted_proxies[0]: bad prefix length (must be 0..32)"),
    (lambda c: c["pools"][0]["origins"][1].update(max_connections=-1),
     "pools[0].origins[1].max_connections: must be an integer >= 0 and <= 1000000 (0: no limit)"),
    (lambda c: c["pools"][0]["origins"][1].update(max_connections=1.5),
     "pools[0].origins[1].max_connections: must be an integer >= 0 and <= 1000000 (0: no limit)"),
    (lambda c: c["pools"][0]["origins"][0].update(slow_start=-2),
     "pools[0].origins[0].slow_start: must be a number >= 0 and <= 86400 (0: off)"),
    (lambda c: c["pools"][0]["origins"][0].update(slow_start="30"),
     "pools[0].origins[0].slow_start: must be a number >= 0 and <= 86400 (0: off)"),
    (lambda c: c["pools"][0].update(queue=[]),
     "pools[0].queue: must be an object"),
    (lambda c: c["pools"][0].update(queue={"max": -1}),
     "pools[0].queue.max: must be an integer >= 0 and <= 1000000"),
    (lambda c: c["pools"][0].update(queue={"max": 2.5}),
     "pools[0].queue.max: must be an integer >= 0 and <= 1000000"),
    (lambda c: c["pools"][0].update(queue={"timeout": 0}),
     "pools[0].queue.timeout: must be a number > 0 and <= 86400"),
    (lambda c: c["pools"][0].update(queue={"max": 5, "timout": 1}),
     'pools[0].queue.timout: unknown key (did you mean "timeout"?)'),
], ids=["proxy-protocol-type", "trusted-type", "trusted-address", "trusted-prefix",
        "max-connections-negative", "max-connections-fraction", "slow-start-negative",
        "slow-start-string", "queue-type", "queue-max-negative", "queue-max-fraction",
        "queue-timeout-zero", "queue-typo"])
def test_new_keys_validated(tmp_path, mutate, message):
    cfg = good()
    mutate(cfg)
    rc, out = check(tmp_path, cfg)
    assert rc == 1, out
    assert f"cfg.json: {message}" in out.splitlines(), out


def test_new_keys_accepted(tmp_path):
    cfg = good()
    cfg["listen"][0]["proxy_protocol"] = True
    cfg["trusted_proxies"] = ["10.0.0.0/8", "::1", "192.0.2.1"]
    cfg["pools"][0]["queue"] = {"max": 0, "timeout": 0.5}
    cfg["pools"][0]["origins"][0].update(max_connections=200, slow_start=30)
    cfg["pools"][0]["origins"][1].update(max_connections=0, slow_start=0)
    rc, out = check(tmp_path, cfg)
    assert (rc, out.strip()) == (0, "cfg.json: ok")
