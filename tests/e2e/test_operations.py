"""Running limpet in production: the systemd notification protocol
(READY / RELOADING / STOPPING on $NOTIFY_SOCKET), SIGHUP reopening the access
log for logrotate, access-log lines written within 100 ms, SIGTERM refusing
new connections at once while requests in flight finish, every API change
logged with the client's address, and the drain_duration 0 note of
`limpetctl origin drain`."""
import errno
import http.client
import json
import re
import shutil
import signal
import socket
import tempfile
import threading
import time

import pytest

from harness import Reply, admin_client, basic_config, http_request, limpetctl, with_admin


def wait_for(predicate, timeout=5.0, what="condition", interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# systemd notifications


class NotifySocket:
    """A Unix datagram socket standing in for systemd's $NOTIFY_SOCKET:
    .messages() returns each datagram as a dict of its KEY=VALUE lines."""

    def __init__(self, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.dir = None
            name = f"limpet-notify-test-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            # a short path: sun_path holds 108 bytes, pytest's tmp_path may not fit
            self.dir = tempfile.mkdtemp(prefix="lnotify", dir="/tmp")
            path = f"{self.dir}/notify.sock"
            self.sock.bind(path)
            self.env = path

    def recv(self, timeout=5.0):
        """The next message as a dict (raises socket.timeout after timeout)."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        out = {}
        for line in data.split("\n"):
            key, sep, value = line.partition("=")
            assert sep, f"not a KEY=VALUE line: {line!r} in {data!r}"
            out[key] = value
        return out

    def close(self):
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify_socket(monkeypatch):
    made = []

    def make(abstract=False):
        ns = NotifySocket(abstract)
        made.append(ns)
        monkeypatch.setenv("NOTIFY_SOCKET", ns.env)   # limpet inherits the environment
        return ns

    yield make
    for ns in made:
        ns.close()


def test_notify_ready_reload_and_stopping(limpet, origin, notify_socket):
    ns = notify_socket()
    o = origin("s1")
    lp = limpet(basic_config([o], threads=2))
    msg = ns.recv()
    assert msg.get("READY") == "1", msg
    assert "STATUS" in msg
    assert http_request(lp.port).status == 200     # READY meant: serving

    # SIGHUP: RELOADING=1 with the monotonic time of the reload's start, then READY=1
    before_us = time.monotonic_ns() // 1000
    lp.signal(signal.SIGHUP)
    msg = ns.recv()
    assert msg.get("RELOADING") == "1", msg
    stamp = int(msg["MONOTONIC_USEC"])
    assert before_us <= stamp <= time.monotonic_ns() // 1000, (before_us, stamp)
    msg = ns.recv()
    assert msg.get("READY") == "1" and "RELOADING" not in msg, msg
    assert "configuration reloaded" in lp.stderr_text()

    # a reload the file refuses ends with READY=1 too (the running config is kept)
    lp.config_path.write_text("{ not json")
    lp.signal(signal.SIGHUP)
    assert ns.recv().get("RELOADING") == "1"
    msg = ns.recv()
    assert msg.get("READY") == "1" and "reload failed" in msg.get("STATUS", ""), msg
    assert http_request(lp.port).status == 200

    lp.signal(signal.SIGTERM)
    msg = ns.recv()
    assert msg.get("STOPPING") == "1", msg
    assert lp.wait(10) == 0, lp.stderr_text()


def test_notify_abstract_socket(limpet, origin, notify_socket):
    ns = notify_socket(abstract=True)
    lp = limpet(basic_config([origin("s1")]))
    assert ns.recv().get("READY") == "1"
    lp.signal(signal.SIGINT)
    assert ns.recv().get("STOPPING") == "1"
    assert lp.wait(10) == 0, lp.stderr_text()


# --------------------------------------------------------------------------
# the access log


def test_sighup_reopens_access_log(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o], threads=2, access="access.log"))
    log = lp.dir / "access.log"
    for i in range(4):
        assert http_request(lp.port, path=f"/before{i}").status == 200
    wait_for(lambda: len(lp.access_log()) == 4, what="4 lines in access.log")

    # what logrotate does without copytruncate: rename, then SIGHUP
    rotated = lp.dir / "access.log.1"
    log.rename(rotated)
    lp.signal(signal.SIGHUP)
    wait_for(lambda: "access log access.log reopened" in lp.stderr_text(),
             what="the reopen to be logged")
    assert log.exists()                          # created by limpet at once, still empty
    assert lp.access_log() == []
    for i in range(4):
        assert http_request(lp.port, path=f"/after{i}").status == 200
    wait_for(lambda: len(lp.access_log()) == 4, what="4 lines in the new access.log")

    # (two workers flush their own lines: the order across them may differ)
    assert sorted(e["path"] for e in lp.access_log()) == [f"/after{i}" for i in range(4)]
    old = [json.loads(line)["path"] for line in rotated.read_text().splitlines()]
    assert sorted(old) == [f"/before{i}" for i in range(4)]

    # a SIGHUP without a rename appends to the same file
    lp.signal(signal.SIGHUP)
    wait_for(lambda: lp.stderr_text().count("access log access.log reopened") == 2,
             what="the second reopen")
    assert http_request(lp.port, path="/again").status == 200
    wait_for(lambda: len(lp.access_log()) == 5, what="5 lines")
    assert lp.access_log()[-1]["path"] == "/again"


def test_access_log_line_written_within_300ms(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o], access="access.log"))
    delays = []
    for i in range(6):
        assert http_request(lp.port, path=f"/t{i}").status == 200
        t0 = time.monotonic()
        wait_for(lambda: len(lp.access_log()) == i + 1, timeout=3, what=f"line {i + 1}",
                 interval=0.005)
        delays.append(time.monotonic() - t0)
        time.sleep(0.15 if i % 2 else 0.4)   # idle gaps of both kinds between requests
    assert max(delays) < 0.3, [f"{d:.3f}" for d in delays]


# --------------------------------------------------------------------------
# SIGTERM


def test_sigterm_refuses_new_connections_while_in_flight_request_finishes(limpet, origin):
    o = origin("s1", handler=lambda req: Reply(200, "slow done\n", delay=2.0)
               if req.target == "/slow" else Reply(200, "ok\n"))
    lp = limpet(basic_config([o], threads=2, timeouts={"grace": 10}))
    result = {}

    def slow_client():
        try:
            result["response"] = http_request(lp.port, path="/slow", timeout=15)
        except Exception as e:          # reported below
            result["error"] = repr(e)

    t = threading.Thread(target=slow_client)
    t.start()
    o.wait_for_requests(1)
    t_term = time.monotonic()
    lp.signal(signal.SIGTERM)
    wait_for(lambda: "new connections are refused" in lp.stderr_text(),
             what="the listening sockets to be shut")
    assert time.monotonic() - t_term < 1.0      # at once, not after the grace period

    refused = 0
    for _ in range(8):       # several source ports: every worker's socket is asked
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        t0 = time.monotonic()
        try:
            err = s.connect_ex(("127.0.0.1", lp.port))
        finally:
            s.close()
        assert err == errno.ECONNREFUSED, \
            f"connect during the grace period: {errno.errorcode.get(err, err)} (want ECONNREFUSED)"
        assert time.monotonic() - t0 < 0.5
        refused += 1
    assert refused == 8

    t.join(timeout=15)
    assert "error" not in result, result
    r = result["response"]
    assert r.status == 200 and r.body == b"slow done\n"
    assert lp.wait(10) == 0, lp.stderr_text()


# --------------------------------------------------------------------------
# who changed what


def admin_call(api, method, path, body=None):
    """One admin call on a connection whose local address we know: returns
    (status, "127.0.0.1:PORT" the request came from)."""
    conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        conn.connect()
        ip, port = conn.sock.getsockname()[:2]
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        r.read()
        return r.status, f"{ip}:{port}"
    finally:
        conn.close()


def test_api_changes_are_logged_with_the_client_address(limpet, origin):
    o1, o2, o3 = origin("s1"), origin("s2"), origin("s3")
    cfg = with_admin(basic_config([o1, o2], lb_extra={"session_affinity": "cookie"}),
                     state_file="limpet.state")
    lp = limpet(cfg)
    api = admin_client(lp)

    status, who = admin_call(api, "PATCH", "/api/v1/pools/app/origins/s1", {"state": "draining"})
    assert status == 200
    wait_for(lambda: f"admin {who}: pool app origin s1: state enabled -> draining"
             in lp.stderr_text(), what="the drain in the log")

    status, who = admin_call(api, "PATCH", "/api/v1/pools/app/origins/s2", {"weight": 5})
    assert status == 200
    assert f"admin {who}: pool app origin s2: weight 1 -> 5" in lp.stderr_text()

    status, who = admin_call(api, "POST", "/api/v1/pools/app/origins",
                             {"name": "s3", "address": o3.address, "weight": 2})
    assert status == 201
    assert (f"admin {who}: pool app: origin s3 added ({o3.address}, weight 2, enabled)"
            in lp.stderr_text())

    status, who = admin_call(api, "DELETE", "/api/v1/pools/app/origins/s3")
    assert status == 200
    assert f"admin {who}: pool app: origin s3 removed" in lp.stderr_text()

    status, who = admin_call(api, "PATCH", "/api/v1/load_balancers/www",
                             {"session_affinity": "ip_cookie",
                              "session_affinity_attributes": {"drain_duration": 120}})
    assert status == 200
    assert (f"admin {who}: load balancer www: session_affinity cookie -> ip_cookie, "
            f"session_affinity_attributes.drain_duration 0 -> 120") in lp.stderr_text()

    status, who = admin_call(api, "DELETE", "/api/v1/state")
    assert status == 200
    assert f"admin {who}: state: forgot 3 recorded run-time changes" in lp.stderr_text()

    status, who = admin_call(api, "POST", "/api/v1/reload")
    assert status == 200
    assert f"admin {who}: configuration reloaded from {lp.config_path}" in lp.stderr_text()

    # limpetctl goes through the same API: its changes are logged the same way
    p = limpetctl("--admin", api.url, "origin", "disable", "app", "s2")
    assert p.returncode == 0, p.stderr
    assert re.search(r"admin 127\.0\.0\.1:\d+: pool app origin s2: state enabled -> disabled",
                     lp.stderr_text()), lp.stderr_text()[-2000:]
    # a refused change changes nothing and is not logged as a change
    status, _ = admin_call(api, "PATCH", "/api/v1/pools/app/origins/s1", {"weight": -1})
    assert status == 400
    assert "weight 1 -> -1" not in lp.stderr_text()


# --------------------------------------------------------------------------
# drain_duration 0


DRAIN_NOTE = ("limpetctl: note: drain_duration is 0 for load balancer www, so draining "
              "app/s1 moves its sessions at their next request, as disable does; "
              "to let them stay: limpetctl lb set www --drain-duration SECONDS\n")


def test_limpetctl_drain_says_drain_duration_0_acts_like_disable(limpet, origin):
    o1, o2 = origin("s1"), origin("s2")
    lp = limpet(with_admin(basic_config([o1, o2], lb_extra={"session_affinity": "cookie"})))
    api = admin_client(lp)
    p = limpetctl("--admin", api.url, "origin", "drain", "app", "s1")
    assert p.returncode == 0
    [line] = p.stdout.splitlines()                 # stdout: still one line per result
    assert line.startswith("app/s1  ") and "  draining " in line
    assert p.stderr == DRAIN_NOTE

    # with a drain time the note goes away
    p = limpetctl("--admin", api.url, "lb", "set", "www", "--drain-duration", "60")
    assert p.returncode == 0
    assert limpetctl("--admin", api.url, "origin", "enable", "app", "s1").returncode == 0
    p = limpetctl("--admin", api.url, "origin", "drain", "app", "s1")
    assert p.returncode == 0 and p.stderr == "", p.stderr

    # --json prints the API's answer alone
    p = limpetctl("--admin", api.url, "--json", "origin", "drain", "app", "s2")
    assert p.returncode == 0 and json.loads(p.stdout)["state"] == "draining"


def test_limpetctl_drain_without_affinity_has_no_note(limpet, origin):
    """Without session affinity there are no sessions to keep: no note."""
    lp = limpet(with_admin(basic_config([origin("s1"), origin("s2")])))
    api = admin_client(lp)
    p = limpetctl("--admin", api.url, "origin", "drain", "app", "s1")
    assert p.returncode == 0 and p.stderr == "", p.stderr
