"""SIGTERM / SIGINT: stop accepting, finish requests in flight (up to
timeouts.grace), exit 0 (SPEC §1)."""
import http.client
import os
import signal
import socket
import threading
import time

from harness import Reply, admin_client, basic_config, http_request, with_admin


def test_sigterm_idle_exits_0_quickly(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    assert http_request(lp.port, "GET", "/").status == 200
    t0 = time.monotonic()
    lp.signal(signal.SIGTERM)
    rc = lp.wait(5)
    assert rc == 0, f"exit code {rc}\n{lp.stderr_text()}"
    assert time.monotonic() - t0 < 3


def test_sigint_exits_0(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    lp.signal(signal.SIGINT)
    assert lp.wait(5) == 0, lp.stderr_text()


def test_sigterm_with_idle_keepalive_client(limpet, origin, raw):
    """An idle keep-alive connection does not hold the process up."""
    o = origin("s1")
    lp = limpet(basic_config([o]))
    c = raw(lp.port)
    c.request("GET", "/x")
    assert c.read_response().status == 200
    t0 = time.monotonic()
    lp.signal(signal.SIGTERM)
    assert lp.wait(5) == 0, lp.stderr_text()
    assert time.monotonic() - t0 < 3
    assert c.closed_within(2)


def test_sigterm_finishes_admin_request_in_flight(limpet, origin, raw):
    """The admin API, too, answers the request it has begun (with
    "Connection: close") before the process exits; its connections between
    requests are closed at once."""
    o = origin("s1")
    lp = limpet(with_admin(basic_config([o])))
    admin = admin_client(lp)
    fresh, between, begun = raw(admin.port), raw(admin.port), raw(admin.port)
    between.send(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert between.read_response().status == 200
    begun.send(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")   # the head is not done
    assert admin.get("/api/v1/status").status == 200   # all three accepted by now
    lp.signal(signal.SIGTERM)
    assert fresh.closed_within(3) and between.closed_within(3)
    assert lp.proc.poll() is None, "limpet left with an admin request half received"
    begun.send(b"\r\n")
    r = begun.read_response()
    assert r.status == 200, r
    assert (r.header("Connection") or "").lower() == "close"
    assert begun.closed_within(3)
    assert lp.wait(5) == 0, lp.stderr_text()


def test_sigterm_finishes_in_flight_request(limpet, origin):
    body = os.urandom(100_000)
    o = origin("s1", handler=lambda req: Reply(200, body, delay=1.0))
    lp = limpet(basic_config([o], timeouts={"grace": 5}))
    result = {}

    def client():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
            conn.request("GET", "/slow")
            r = conn.getresponse()
            result["status"] = r.status
            result["body"] = r.read()
            conn.close()
        except Exception as e:          # reported below
            result["error"] = repr(e)

    t = threading.Thread(target=client)
    t.start()
    assert o.wait_for_requests(1, timeout=5), "request did not reach the origin"
    t0 = time.monotonic()
    lp.signal(signal.SIGTERM)
    # while draining, new connections are not served
    time.sleep(0.3)
    served_new = False
    try:
        with socket.create_connection(("127.0.0.1", lp.port), timeout=1) as s:
            s.sendall(b"GET /new HTTP/1.1\r\nHost: h\r\n\r\n")
            s.settimeout(1.5)
            served_new = s.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        pass
    t.join(10)
    assert "error" not in result, result.get("error")
    assert result.get("status") == 200
    assert result.get("body") == body
    rc = lp.wait(5)
    assert rc == 0, f"exit code {rc}\n{lp.stderr_text()}"
    assert time.monotonic() - t0 < 4
    assert not served_new, "a connection accepted after SIGTERM was served"
    assert "/new" not in o.paths()


def test_sigterm_grace_limits_wait(limpet, origin):
    """A request slower than timeouts.grace does not keep limpet alive."""
    o = origin("s1", handler=lambda req: Reply(200, "late", delay=6))
    lp = limpet(basic_config([o], timeouts={"grace": 0.5}))

    def client():
        try:
            http_request(lp.port, "GET", "/very-slow", timeout=10)
        except Exception:
            pass
    t = threading.Thread(target=client, daemon=True)
    t.start()
    assert o.wait_for_requests(1, timeout=5)
    t0 = time.monotonic()
    lp.signal(signal.SIGTERM)
    rc = lp.wait(5)
    assert rc == 0, f"exit code {rc}\n{lp.stderr_text()}"
    assert time.monotonic() - t0 < 3


def test_sigterm_under_load(limpet, origin):
    """Many keep-alive clients busy when SIGTERM arrives: every response that
    started is complete, limpet exits 0."""
    o = origin("s1", handler=lambda req: Reply(200, b"y" * 10_000, delay=0.02))
    lp = limpet(basic_config([o], threads=2))
    stop = threading.Event()
    bad = []

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", f"/load/{i}")
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                return          # refused / closed after shutdown: fine
            if r.status != 200 or data != b"y" * 10_000:
                bad.append((r.status, len(data)))
            if r.getheader("Connection", "").lower() == "close":
                return
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    lp.signal(signal.SIGTERM)
    rc = lp.wait(8)
    stop.set()
    for t in threads:
        t.join(5)
    assert rc == 0, f"exit code {rc}\n{lp.stderr_text()}"
    assert not bad, bad
