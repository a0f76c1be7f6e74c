"""Upgrades, both kinds.

- HTTP: Upgrade tunnels (WebSocket) and h2c (SPEC §4).
- The process: `limpet -c FILE --upgrade` and SIGUSR2 hand the listening
  sockets to a new process without a failed request, a second limpet on a
  held address is refused, and a reload that drops an address refuses
  connections to it at once (SPEC §7, issue 11 item 7) — from "Process
  upgrades" on.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import (LIMPET, WS_HEADERS, Limpet, Reply, admin_client, basic_config,
                     build_request, free_port, http_request, sha256, websocket_handler,
                     with_admin)

def test_websocket_tunnel(limpet, origin, raw):
    o = origin("s1", handler=websocket_handler("s1"))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    r = c.read_response()
    assert r.status == 101, r
    assert (r.header("Upgrade") or "").lower() == "websocket"
    assert "upgrade" in (r.header("Connection") or "").lower()
    [req] = o.requests
    assert (req.header("Upgrade") or "").lower() == "websocket"
    assert "upgrade" in (req.header("Connection") or "").lower()
    assert req.header("Sec-WebSocket-Key") == "dGhlIHNhbXBsZSBub25jZQ=="
    # bytes flow both ways, unparsed
    c.send(b"hello tunnel\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert c.recv_exactly(34) == b"hello tunnel\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    blob = os.urandom(300_000)
    c.send(blob)
    assert sha256(c.recv_exactly(len(blob), timeout=10)) == sha256(blob)
    assert len(o.requests) == 1     # the tunnelled "GET" was not parsed as a request


def test_websocket_tunnel_closed_by_origin(limpet, origin, raw):
    def handler(req):
        return Reply(raw=b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\nbye", close=True)
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    assert c.read_response().status == 101
    assert c.closed_within(5)
    assert bytes(c.buf) == b"bye"


def test_upgrade_declined_by_origin(limpet, origin, raw):
    o = origin("s1", handler=lambda req: Reply(200, "no upgrade for you"))
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    r = c.read_response()
    assert r.status == 200 and r.body == b"no upgrade for you"
    c.request("GET", "/next")
    r = c.read_response()
    assert r.status == 200 and r.body == b"no upgrade for you"
    assert o.paths() == ["/ws", "/next"]


def test_h2c_upgrade_never_forwarded(limpet, origin, raw):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.send(build_request("GET", "/h2c", [("Host", "h"), ("Connection", "Upgrade, HTTP2-Settings"),
                                         ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")]))
    r = c.read_response()
    assert r.status == 200 and r.body == b"s1 GET /h2c\n"
    [req] = o.requests
    assert not req.has_header("Upgrade"), req.headers
    assert not req.has_header("HTTP2-Settings"), req.headers
    c.request("GET", "/after")
    assert c.read_response().body == b"s1 GET /after\n"


# --------------------------------------------------------------------------
# Process upgrades (SPEC §7): --upgrade, SIGUSR2, one limpet per address
# --------------------------------------------------------------------------

def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.02)


def took_over(stderr_text, timeout=15):
    """Waits for an upgraded process's "took over from pid N" line."""
    wait_until(lambda: "upgrade: took over from pid" in stderr_text(), timeout,
               "the new process took over")


def status_pid(admin):
    r = admin.get("/api/v1/status")
    assert r.status == 200, r
    return r.json["pid"]


def process_gone(pid):
    """True once pid has exited (a zombie counts: its parent is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def stop_orphan(pid, timeout=10):
    """SIGTERM to a process this test did not start itself (SIGUSR2's), then
    waits for it to end; SIGKILL after timeout. Returns whether it ended on
    SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return False


class Load:
    """Clients busy while an upgrade happens: `keepalive` threads each on one
    persistent http.client connection (a fresh one only after the server
    said `Connection: close`, as HTTP allows), `fresh` threads opening a new
    connection per request, and one thread polling the admin API's status.
    Every failure is recorded: a refused or reset connection, a request
    that got no answer, a wrong answer."""

    def __init__(self, port, admin=None, keepalive=3, fresh=2):
        self.port, self.admin = port, admin
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures = []
        self.ok = 0
        self.keepalive_closes = 0      # connections that ended on Connection: close
        self.pids = []                 # status "pid" answers, in order
        self.threads = [threading.Thread(target=self.keepalive_client, args=(i,), daemon=True)
                        for i in range(keepalive)]
        self.threads += [threading.Thread(target=self.fresh_client, args=(i,), daemon=True)
                         for i in range(fresh)]
        if admin:
            self.threads.append(threading.Thread(target=self.status_client, daemon=True))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def count(self, failure=None):
        with self.lock:
            if failure:
                self.failures.append(failure)
            else:
                self.ok += 1

    def check(self, r, body, path):
        if r.status != 200 or body != f"s1 GET {path}\n".encode():
            self.count((path, r.status, body[:100]))
        else:
            self.count()

    def keepalive_client(self, t):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        i = 0
        while not self.stop.is_set():
            path = f"/ka/{t}/{i}"
            i += 1
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                self.count((path, repr(e)))
                conn.close()
                continue
            self.check(r, body, path)
            if r.will_close:
                with self.lock:
                    self.keepalive_closes += 1
        conn.close()

    def fresh_client(self, t):
        i = 0
        while not self.stop.is_set():
            path = f"/fresh/{t}/{i}"
            i += 1
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path, headers={"Connection": "close"})
                r = conn.getresponse()
                body = r.read()
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                self.count((path, repr(e)))
                continue
            self.check(r, body, path)

    def status_client(self):
        while not self.stop.is_set():
            try:
                pid = status_pid(self.admin)
                with self.lock:
                    self.pids.append(pid)
            except (OSError, http.client.HTTPException, AssertionError) as e:
                self.count(("admin status", repr(e)))
            time.sleep(0.05)

    def wait_ok(self, n, timeout=20):
        wait_until(lambda: self.ok >= n or self.failures, timeout, f"{n} requests served")
        assert not self.failures, self.failures[:5]


def upgrade_config(o, threads=2):
    # grace 10: connections idle at the hand-over may wait 5 s for their next
    # request; the busy ones must move to the new process long before that
    return with_admin(basic_config([o], threads=threads, timeouts={"grace": 10}))


def old_exits_promptly(old, took_over_at):
    """The old process exits 0 well before half its grace period: every
    keep-alive client was told to reconnect at its next response."""
    rc = old.wait(15)
    after = time.monotonic() - took_over_at
    assert rc == 0, f"old exit code {rc}\n{old.stderr_text()[-3000:]}"
    assert after < 3, f"the old process took {after:.1f}s to finish after the hand-over"


@pytest.mark.timeout(90)
def test_upgrade_command_under_load_fails_nothing(limpet, origin):
    """`limpet -c FILE --upgrade` while keep-alive and fresh-connection
    clients are busy: not one request fails, the new process serves
    afterwards (its pid in /api/v1/status), the old one exits 0."""
    o = origin("s1")
    cfg = upgrade_config(o)
    old = limpet(cfg, name="old")
    admin = admin_client(old)
    assert status_pid(admin) == old.pid
    with Load(old.port, admin) as load:
        load.wait_ok(150)
        t0 = time.monotonic()
        new = limpet(cfg, name="new", extra_args=["--upgrade"])
        took_over(new.stderr_text)
        assert f"took over from pid {old.pid}" in new.stderr_text()
        old_exits_promptly(old, time.monotonic())   # while the load goes on
        served_at_takeover = load.ok
        while time.monotonic() - t0 < 2.0 or load.ok < served_at_takeover + 150:
            assert time.monotonic() - t0 < 30, f"only {load.ok} requests"
            time.sleep(0.05)
    assert not load.failures, f"{len(load.failures)} failed: {load.failures[:5]}"
    assert f"upgrade: pid {new.pid} took over the listening sockets" in old.stderr_text()
    # keep-alive clients were told to reconnect, not cut off
    assert load.keepalive_closes >= 1
    assert load.pids[0] == old.pid and load.pids[-1] == new.pid, load.pids[:3] + load.pids[-3:]
    assert status_pid(admin) == new.pid
    assert http_request(old.port, "GET", "/after").body == b"s1 GET /after\n"
    second = subprocess.run([str(LIMPET), "-c", str(old.config_path)], capture_output=True,
                            text=True, timeout=15, cwd=str(old.dir))
    assert second.returncode == 1 and f"(pid {new.pid})" in second.stderr, second.stderr


def admin_raw_request(method, path, body=b""):
    headers = [("Host", "127.0.0.1")]
    if body:
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return build_request(method, path, headers, body)


@pytest.mark.timeout(60)
def test_upgrade_answers_admin_requests_the_old_process_accepted(limpet, origin, raw):
    """Admin connections the old process accepted before the hand-over
    (their request still to come) are answered by it, with "Connection:
    close", instead of being cut off; a change sent there is refused (409:
    it would be lost with the old process); then the old process exits 0."""
    o = origin("s1")
    cfg = upgrade_config(o)
    old = limpet(cfg, name="old")
    admin = admin_client(old)
    reader, changer = raw(admin.port), raw(admin.port)
    assert status_pid(admin) == old.pid      # both accepted by now: one process listens
    new = limpet(cfg, name="new", extra_args=["--upgrade"])
    took_over(new.stderr_text)
    wait_until(lambda: "took over the listening sockets" in old.stderr_text(), 5, "hand-over logged")
    assert old.proc.poll() is None, "the old process left with admin connections open"
    changer.send(admin_raw_request("PATCH", "/api/v1/pools/app/origins/s1",
                                   b'{"state": "draining"}'))
    r = changer.read_response()
    assert r.status == 409, r
    assert json.loads(r.body)["error"]["code"] == "stopping"
    assert (r.header("Connection") or "").lower() == "close"
    assert changer.closed_within(5)
    reader.send(admin_raw_request("GET", "/api/v1/status"))
    r = reader.read_response()
    assert r.status == 200 and json.loads(r.body)["pid"] == old.pid, r
    assert (r.header("Connection") or "").lower() == "close"
    assert reader.closed_within(5)
    assert old.wait(10) == 0, old.stderr_text()[-3000:]
    assert status_pid(admin) == new.pid
    assert admin.origin("app", "s1")["state"] == "enabled"   # the refused change was not made


@pytest.mark.timeout(90)
def test_sigusr2_under_load_fails_nothing(limpet, origin):
    """SIGUSR2 makes limpet start its own binary with --upgrade: the same
    hand-over, not one request failed, the old process exits 0."""
    o = origin("s1")
    old = limpet(upgrade_config(o), name="old")
    admin = admin_client(old)
    new_pid = None
    try:
        with Load(old.port, admin) as load:
            load.wait_ok(150)
            t0 = time.monotonic()
            old.signal(signal.SIGUSR2)
            took_over(old.stderr_text)     # the new process inherits its stderr
            err = old.stderr_text()
            new_pid = int(err.split("upgrade: took over from pid")[0]
                          .rsplit("--upgrade (pid ", 1)[1].split(")")[0])
            old_exits_promptly(old, time.monotonic())
            served_at_takeover = load.ok
            while time.monotonic() - t0 < 2.0 or load.ok < served_at_takeover + 150:
                assert time.monotonic() - t0 < 30, f"only {load.ok} requests"
                time.sleep(0.05)
        assert not load.failures, f"{len(load.failures)} failed: {load.failures[:5]}"
        assert new_pid != old.pid and not process_gone(new_pid)
        with open(f"/proc/{new_pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[-2:] == [b"--upgrade", b""] and str(old.config_path).encode() in argv, argv
        assert load.pids[0] == old.pid and load.pids[-1] == new_pid
        assert status_pid(admin) == new_pid
        assert http_request(old.port, "GET", "/after").body == b"s1 GET /after\n"
    finally:
        if new_pid:
            assert stop_orphan(new_pid), "the upgraded process did not stop on SIGTERM"
    err = old.stderr_text()
    assert "AddressSanitizer" not in err and "runtime error:" not in err, err[-3000:]


def test_second_instance_refused_first_keeps_serving(limpet, origin, tmp_path):
    o = origin("s1")
    cfg = basic_config([o])
    first = limpet(cfg)
    address = cfg["listen"][0]["address"]
    other = json.loads(json.dumps(cfg))
    other["listen"].append({"address": f"127.0.0.1:{free_port()}", "load_balancer": "www"})
    path = tmp_path / "second.json"
    path.write_text(json.dumps(other))
    t0 = time.monotonic()
    p = subprocess.run([str(LIMPET), "-c", str(path)], capture_output=True, text=True,
                       timeout=15)
    assert p.returncode == 1, p
    assert time.monotonic() - t0 < 5
    assert (f"{address} is held by a running limpet (pid {first.pid}); use --upgrade to take "
            "over") in p.stderr, p.stderr
    assert "listening on" not in p.stderr
    # the first is untouched: every request still reaches it
    for i in range(20):
        assert http_request(first.port, "GET", f"/still/{i}").status == 200
    assert first.running()
    # checking a file is not starting: -t is not refused
    t = subprocess.run([str(LIMPET), "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=15)
    assert t.returncode == 0 and t.stdout.strip().endswith(": ok"), t


def test_port_shared_with_another_program_refused(limpet, origin, tmp_path):
    """Any listener on the port stops the start, even one that would let
    limpet's SO_REUSEPORT sockets join in."""
    o = origin("s1")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(8)
    try:
        port = squatter.getsockname()[1]
        cfg = basic_config([o], listen_port=port)
        path = tmp_path / "shared.json"
        path.write_text(json.dumps(cfg))
        p = subprocess.run([str(LIMPET), "-c", str(path)], capture_output=True, text=True,
                           timeout=15)
        assert p.returncode == 1, p
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in p.stderr, p.stderr
    finally:
        squatter.close()


def test_reload_onto_an_address_another_limpet_holds_fails(limpet, origin):
    o = origin("s1")
    a = limpet(basic_config([o]), name="a")
    b = limpet(basic_config([o]), name="b")
    cfg = json.loads(json.dumps(a.config))
    cfg["listen"].append({"address": f"127.0.0.1:{b.port}", "load_balancer": "www"})
    before = a.stderr_text().count("reload failed")
    a.config_path.write_text(json.dumps(cfg))
    a.signal(signal.SIGHUP)
    wait_until(lambda: a.stderr_text().count("reload failed") > before, 5, "reload verdict")
    line = [l for l in a.stderr_text().splitlines() if "reload failed" in l][-1]
    assert f"cannot listen on 127.0.0.1:{b.port}: held by a running limpet (pid {b.pid})" in line
    assert http_request(a.port, "GET", "/a").status == 200
    assert http_request(b.port, "GET", "/b").status == 200


def test_reload_removing_an_address_refuses_it_at_once(limpet, origin):
    """The removed address refuses new connections as soon as the reload is
    in, though a request accepted on it is still in flight (and completes)."""
    slow_body = os.urandom(50_000)
    o = origin("s1", handler=lambda req: Reply(200, slow_body, delay=1.5)
               if req.target == "/slow" else Reply(200, "fast"))
    cfg = basic_config([o])
    kept_port, dropped_port = cfg["listen"][0]["address"].split(":")[1], free_port()
    cfg["listen"].append({"address": f"127.0.0.1:{dropped_port}", "load_balancer": "www"})
    lp = limpet(cfg)
    result = {}

    def slow():
        try:
            result["r"] = http_request(dropped_port, "GET", "/slow")
        except Exception as e:      # reported below
            result["e"] = repr(e)

    t = threading.Thread(target=slow)
    t.start()
    assert o.wait_for_requests(1, timeout=5)
    cfg2 = json.loads(json.dumps(cfg))
    del cfg2["listen"][1]
    before = lp.stderr_text().count("configuration reloaded")
    lp.config_path.write_text(json.dumps(cfg2))
    lp.signal(signal.SIGHUP)
    wait_until(lambda: lp.stderr_text().count("configuration reloaded") > before, 5, "reload")
    reloaded = time.monotonic()
    try:
        socket.create_connection(("127.0.0.1", dropped_port), timeout=1).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused, "the removed address still accepts connections"
    assert time.monotonic() - reloaded < 0.5
    assert (f"127.0.0.1:{dropped_port} is no longer listened on: new connections are refused"
            in lp.stderr_text())
    t.join(10)
    assert "e" not in result, result
    assert result["r"].status == 200 and result["r"].body == slow_body
    assert http_request(int(kept_port), "GET", "/kept").body == b"fast"
    # an address removed and added back gets fresh sockets
    lp.config_path.write_text(json.dumps(cfg))
    lp.signal(signal.SIGHUP)
    wait_until(lambda: lp.stderr_text().count("configuration reloaded") > before + 1, 5,
               "second reload")
    time.sleep(0.1)
    assert http_request(dropped_port, "GET", "/back").body == b"fast"


def test_upgrade_to_other_thread_counts_serves_every_connection(limpet, origin):
    """2 workers → 1 (which keeps and watches both sockets: closing one would
    reset the connections queued on it) → 3 (one socket opened more):
    fresh connections, spread by the kernel over all the sockets, are all
    served."""
    o = origin("s1")
    cfg = basic_config([o], threads=2, timeouts={"grace": 10})
    old = limpet(cfg, name="gen1")
    procs = [old]
    for n, threads in enumerate((1, 3), start=2):
        nxt = json.loads(json.dumps(cfg))
        nxt["threads"] = threads
        new = limpet(nxt, name=f"gen{n}", extra_args=["--upgrade"])
        took_over(new.stderr_text)
        assert procs[-1].wait(10) == 0, procs[-1].stderr_text()[-2000:]
        procs.append(new)
        for i in range(60):
            r = http_request(old.port, "GET", f"/gen{n}/{i}", timeout=3)
            assert r.status == 200 and r.body == f"s1 GET /gen{n}/{i}\n".encode()
        assert os.listdir(f"/proc/{new.pid}/task"), "no threads?"
    # 2 sockets from the first generation, 1 more for the third worker
    assert "(2 listening sockets)" in procs[1].stderr_text()
    assert "(2 listening sockets)" in procs[2].stderr_text()


def test_cookies_without_secret_file_stay_valid_across_upgrades(limpet, origin):
    """No secret_file: cookies are signed with a random key, which each upgrade
    hands to the new process (two generations here), so a session stays a hit
    on its origin; a limpet started afresh makes a new key and the cookie is
    refused as invalid."""
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    cfg = basic_config(os_, steering="round_robin", lb_extra={"session_affinity": "cookie"},
                       timeouts={"grace": 10})
    assert "secret_file" not in cfg
    gen = limpet(cfg, name="gen1")
    r = http_request(gen.port, "GET", "/first")
    cookie, home = r.header("Set-Cookie").split(";")[0], r.header("X-Served-By")
    assert cookie.startswith("__limpet=")
    for n in (2, 3):
        new = limpet(cfg, name=f"gen{n}", extra_args=["--upgrade"])
        took_over(new.stderr_text)
        assert gen.wait(10) == 0, gen.stderr_text()[-2000:]
        assert f"signed with the random key of pid {gen.pid}" in new.stderr_text()
        for i in range(12):
            r = http_request(new.port, "GET", f"/gen{n}/{i}", headers={"Cookie": cookie})
            assert (r.status, r.header("X-Served-By")) == (200, home), r
            assert r.header("Set-Cookie") is None, r  # still valid: nothing to re-issue
        gen = new
    gen.stop()
    fresh = limpet(cfg, name="fresh")
    wait_until(lambda: "random key made at start" in fresh.stderr_text(), 5, "fresh key logged")
    r = http_request(fresh.port, "GET", "/fresh", headers={"Cookie": cookie})
    assert r.status == 200 and r.header("Set-Cookie", "").startswith("__limpet="), r


def test_failed_upgrade_leaves_the_running_limpet_serving(limpet, origin, tmp_path):
    """A new process that takes the sockets and then fails to start (its admin
    address is taken) exits 1; the running limpet never stopped accepting
    and its sockets are intact."""
    o = origin("s1")
    cfg = basic_config([o], threads=2)
    old = limpet(cfg)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    try:
        bad = with_admin(json.loads(json.dumps(cfg)), port=squatter.getsockname()[1])
        path = tmp_path / "bad-admin.json"
        path.write_text(json.dumps(bad))
        p = subprocess.run([str(LIMPET), "-c", str(path), "--upgrade"], capture_output=True,
                           text=True, timeout=30)
    finally:
        squatter.close()
    assert p.returncode == 1, p
    assert f"taking over from pid {old.pid}" in p.stderr and "admin: cannot listen" in p.stderr
    wait_until(lambda: "went away before taking over; still serving" in old.stderr_text(), 5,
               "the old process noticed")
    for i in range(40):            # both of its sockets still listen and are watched
        assert http_request(old.port, "GET", f"/still/{i}", timeout=3).status == 200
    assert old.running()


def test_upgrade_finds_the_limpet_by_its_file_and_drops_its_old_address(limpet, origin):
    """The file now names another address: `--upgrade` finds the limpet
    running that file all the same; the address it no longer has refuses
    connections once the new process took over."""
    o = origin("s1")
    cfg = basic_config([o])
    old = limpet(cfg)
    old_port, new_port = old.port, free_port()
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["listen"] = [{"address": f"127.0.0.1:{new_port}", "load_balancer": "www"}]
    old.config_path.write_text(json.dumps(cfg2))
    err = open(old.dir / "new.stderr", "wb")
    new = subprocess.Popen([str(LIMPET), "-c", str(old.config_path), "--upgrade"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           cwd=str(old.dir))
    try:
        new_err = lambda: (old.dir / "new.stderr").read_text(errors="replace")  # noqa: E731
        took_over(new_err)
        assert f"upgrade: 127.0.0.1:{old_port} is not in the new configuration" in new_err()
        assert old.wait(10) == 0, old.stderr_text()[-2000:]
        assert http_request(new_port, "GET", "/moved").body == b"s1 GET /moved\n"
        try:
            socket.create_connection(("127.0.0.1", old_port), timeout=1).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        assert refused, "the dropped address still accepts connections"
    finally:
        new.send_signal(signal.SIGTERM)
        rc = new.wait(10)
        err.close()
    assert rc == 0, new_err()
    assert "AddressSanitizer" not in new_err() and "runtime error:" not in new_err()


def test_upgrade_with_nothing_running_starts_fresh(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]), extra_args=["--upgrade"])
    assert "--upgrade: no running limpet holds the addresses" in lp.stderr_text()
    assert http_request(lp.port, "GET", "/x").status == 200


def test_sigusr2_whose_new_process_fails_keeps_serving(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    good = lp.config_path.read_text()
    lp.config_path.write_text("{ not json")
    lp.signal(signal.SIGUSR2)
    wait_until(lambda: "exited with status 1 before taking over; still serving"
               in lp.stderr_text(), 15, "the failed upgrade reported")
    lp.config_path.write_text(good)
    assert http_request(lp.port, "GET", "/x").status == 200
    # a second SIGUSR2 works once the first is over
    lp.signal(signal.SIGUSR2)
    took_over(lp.stderr_text)
    new_pid = int(lp.stderr_text().rsplit("--upgrade (pid ", 1)[1].split(")")[0])
    try:
        assert lp.wait(10) == 0
        assert http_request(lp.port, "GET", "/y").status == 200
    finally:
        assert stop_orphan(new_pid)


class NotifyReceiver:
    """A Unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.name = f"limpet-upgrade-notify-{os.getpid()}-{time.monotonic_ns()}"
        self.sock.bind("\0" + self.name)

    def recv(self, timeout=10.0):
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.partition("=")[::2] for line in data.split("\n"))


def test_sigusr2_tells_systemd_the_new_main_pid(limpet, origin, monkeypatch):
    """The old process says nothing once it hands over (no STOPPING=1: the
    service is not stopping); the new one says MAINPID=<its pid> READY=1."""
    ns = NotifyReceiver()
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + ns.name)
    o = origin("s1")
    lp = limpet(basic_config([o]))
    assert ns.recv().get("READY") == "1"
    lp.signal(signal.SIGUSR2)
    msg = ns.recv()
    new_pid = int(msg.get("MAINPID", 0))
    try:
        assert msg.get("READY") == "1" and new_pid not in (0, lp.pid), msg
        assert f"took over from pid {lp.pid}" in msg.get("STATUS", ""), msg
        assert lp.wait(10) == 0
        ns.sock.settimeout(0.5)
        try:
            extra = ns.sock.recv(4096)
        except (socket.timeout, TimeoutError):
            extra = None
        assert extra is None, f"the old process notified {extra!r} after handing over"
        os.kill(new_pid, signal.SIGTERM)
        assert ns.recv().get("STOPPING") == "1"
    finally:
        assert stop_orphan(new_pid)
        ns.sock.close()
