"""An exchange keeps the snapshot it started on for its whole life (issue 9).

Regression for a heap use-after-free: with `zero_downtime_failover: sticky`
and one worker, a pinned origin holds a request, then closes without
answering. While it holds it, a new snapshot is published — by a reload, an
API edit or a health flip. The retry used to move the exchange onto the new
snapshot, releasing the one its parsed request and affinity decision pointed
into, then rebuilt the head from freed memory. Now the retry routes on the
exchange's own snapshot: the request is answered by the other origin, the
cookie moves there, and (under AddressSanitizer, which `make test` uses for
this suite) no report appears on limpet's stderr — the `limpet` fixture
fails the test on any.
"""
import socket
import threading
import time

import pytest

from harness import Reply, admin_client, basic_config, http_request, with_admin

HOLD = 1.5          # the pinned origin holds the request this long, then closes
PUBLISH_AT = 0.5    # when the new snapshot is published


def answering_handler(name, hold_options=False):
    """Answers every request, naming itself; with hold_options, holds an
    OPTIONS (idempotent, so it may be retried) for HOLD seconds and closes
    without a word."""
    def handle(req):
        if hold_options and req.method == "OPTIONS":
            return Reply(raw=b"", delay=HOLD, close=True)
        return Reply(200, name, headers=[("X-Served-By", name)])
    return handle


def cookie_pinned_to(port, name, tries=40):
    """A limpet cookie whose session is on origin `name`."""
    for _ in range(tries):
        r = http_request(port, "GET", "/pin")
        if r.header("X-Served-By") == name:
            return r.header("Set-Cookie").split(";", 1)[0]
    raise AssertionError(f"no session landed on {name} in {tries} tries")


class FlappingListener:
    """A TCP listener a tcp monitor checks; closing it flips the origin down
    (and a new one on the same port brings it back)."""

    def __init__(self, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
                c.close()
            except OSError:
                continue

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def failover_config(a, b, extra_origins=(), monitor=False):
    origins = [a, b, *extra_origins]
    cfg = basic_config(origins, threads=1, lb_extra={
        "session_affinity": "cookie",
        "session_affinity_attributes": {"zero_downtime_failover": "sticky"}})
    if monitor:
        cfg["monitors"] = [{"name": "tcp", "type": "tcp", "interval": 0.2, "timeout": 0.2,
                            "retries": 1, "rise": 1}]
        cfg["pools"][0]["monitor"] = "tcp"
    return with_admin(cfg)


def held_request_with_publication(lp, cookie, publish):
    """Sends the held OPTIONS with the cookie; publishes a snapshot while the
    origin holds it. Returns the response."""
    result = {}

    def send():
        result["r"] = http_request(lp.port, "OPTIONS", "/held", headers={"Cookie": cookie},
                                   timeout=10)
    t = threading.Thread(target=send)
    t.start()
    time.sleep(PUBLISH_AT)
    publish()
    t.join(10)
    assert not t.is_alive(), "the held request never completed"
    return result["r"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("publication", ["reload", "api_edit", "health_flip"])
def test_retry_after_snapshot_publication_uses_its_own_snapshot(limpet, origin, publication):
    a = origin("a", handler=answering_handler("a", hold_options=True))
    b = origin("b", handler=answering_handler("b"))
    flapper = FlappingListener() if publication == "health_flip" else None
    extra = [{"name": "c", "address": flapper.address}] if flapper else []
    lp = limpet(failover_config(a, b, extra, monitor=flapper is not None))
    try:
        if flapper:
            # c is up before the test starts, so closing it is a real flip
            adm = admin_client(lp)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                pool = adm.get("/api/v1/pools/app").json
                if all(o.get("healthy", True) for o in pool["origins"]):
                    break
                time.sleep(0.1)
        cookie = cookie_pinned_to(lp.port, "a")

        def publish():
            if publication == "reload":
                import signal
                lp.signal(signal.SIGHUP)
            elif publication == "api_edit":
                r = admin_client(lp).call("PATCH", "/api/v1/load_balancers/www",
                                          {"session_affinity_ttl": 3600})
                assert r.status == 200, (r, lp.stderr_text())
            else:
                flapper.close()

        r = held_request_with_publication(lp, cookie, publish)
        assert r.status == 200, (r, lp.stderr_text())
        assert r.header("X-Served-By") == "b", r
        # sticky failover: the session moved to b with a new cookie
        moved = r.header("Set-Cookie")
        assert moved and moved.startswith(cookie.split("=", 1)[0] + "="), r
        follow = http_request(lp.port, "GET", "/after", headers={"Cookie": moved.split(";")[0]})
        assert follow.header("X-Served-By") == "b", follow
        # a held it (on its kept-alive connection, then once more on a fresh
        # one: a reused connection's failure is not yet the origin's), b answered
        assert 1 <= sum(x.method == "OPTIONS" for x in a.requests) <= 2
        assert [x.path for x in b.requests if x.method == "OPTIONS"] == ["/held"]
        assert lp.running()
    finally:
        if flapper and not flapper.stop.is_set():
            flapper.close()


# --------------------------------------------------------------------------
# A health flip rebuilds only the routing tables: the configuration, and the
# files it names, are read on a reload or an API edit, never on a flip.
# --------------------------------------------------------------------------

def wait_healthy(adm, name, healthy, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool = adm.get("/api/v1/pools/app").json
        states = {o["name"]: o.get("healthy") for o in pool["origins"]}
        if states.get(name) == healthy:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never became healthy={healthy}: {states}")


@pytest.mark.timeout(30)
def test_health_flip_reads_no_file_and_keeps_the_running_keys(limpet, origin, tmp_path):
    """The secret file is replaced by another key, then removed, while an
    origin goes down and up: cookies signed with the running key still verify
    (only a reload may change keys) and no flip fails for want of the file."""
    from affinity_helpers import KEY_A, KEY_B, write_secret
    secret = write_secret(tmp_path / "affinity.key", KEY_A)
    a = origin("a", handler=answering_handler("a"))
    b = origin("b", handler=answering_handler("b"))
    flapper = FlappingListener()
    port = int(flapper.address.rsplit(":", 1)[1])
    try:
        cfg = failover_config(a, b, [{"name": "c", "address": flapper.address}], monitor=True)
        cfg["secret_file"] = str(secret)
        lp = limpet(cfg)
        adm = admin_client(lp)
        wait_healthy(adm, "c", True)
        cookie = cookie_pinned_to(lp.port, "a")

        write_secret(secret, KEY_B)           # another key: only a reload may take it
        flapper.close()                       # c goes down: routing tables rebuilt
        wait_healthy(adm, "c", False)
        hit = http_request(lp.port, "GET", "/old", headers={"Cookie": cookie})
        assert hit.header("X-Served-By") == "a", hit
        assert not hit.header("Set-Cookie"), "the running key was replaced without a reload"

        secret.unlink()                       # gone: a flip must not need it
        flapper = FlappingListener(port)      # c comes back
        wait_healthy(adm, "c", True)
        err = lp.stderr_text()
        assert "cannot rebuild" not in err and "secret_file" not in err, err
    finally:
        if not flapper.stop.is_set():
            flapper.close()
