"""Safe retries (SPEC §3 zero_downtime_failover / "A request is retried only
when...", issue 4 item 5): a request goes to another origin only when
nothing of it reached an origin, or it is idempotent and still held whole;
nothing non-idempotent is ever sent twice.

POST bodies carry a unique id; origins record every request they receive,
so "exactly once" is counted at the origins. `Breaker` is an origin that
reads a request completely and then hangs up without answering: with a
reset (SO_LINGER 0) or a plain close.
"""
import collections
import http.client
import socket
import struct
import threading
import time
import uuid

import pytest

from harness import Reply, admin_client, basic_config, free_port, http_request, with_admin


def dead():
    return f"127.0.0.1:{free_port()}"          # nothing listens: connect refused


def echo(name):
    """A handler answering 200 with the request body and X-Served-By."""
    return lambda req: Reply(200, req.body, headers=[("X-Served-By", name)])


def post_ids(origins):
    """Counter of POST bodies (ids) received over all origins."""
    c = collections.Counter()
    for o in origins:
        for r in list(o.requests):
            if r.method == "POST":
                c[r.body] += 1
    return c


class Breaker:
    """An HTTP origin that reads each request fully (Content-Length bodies),
    records it, then does `action(req, index_on_connection)`:
      "rst"   close with SO_LINGER 0 (the peer sees a reset), no answer
      "close" close (FIN), no answer
      "ok"    answer 200 (keep-alive) with X-Served-By
    """

    def __init__(self, name, action):
        self.name = name
        self.action = action
        self.requests = []          # (method, target, body, conn_no, index_on_conn)
        self.connections = 0
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.lsock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                s, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(s, n), daemon=True).start()

    def _serve(self, s, conn_no):
        s.settimeout(10)
        buf = b""
        idx = 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                while len(buf) < length:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:length], buf[length:]
                with self.lock:
                    self.requests.append((method, target, body, conn_no, idx))
                what = self.action(method, idx)
                idx += 1
                if what == "rst":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if what == "close":
                    s.shutdown(socket.SHUT_WR)
                    return
                msg = f"{self.name} {method} {target}\n".encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nX-Served-By: " + self.name.encode() +
                          b"\r\nContent-Length: " + str(len(msg)).encode() + b"\r\n\r\n" + msg)
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.stop_ev.set()
        self.lsock.close()
        self.thread.join(2)


@pytest.fixture
def breaker():
    made = []

    def make(name, action):
        b = Breaker(name, action)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def breaker_ids(b, method="POST"):
    with b.lock:
        return collections.Counter(body for m, _, body, _, _ in b.requests if m == method)


# --------------------------------------------------------------------------
# one origin refusing connections: everything succeeds, POSTs once
# --------------------------------------------------------------------------

def test_refusing_origin_every_get_and_post_succeeds_once(limpet, origin):
    alive = origin("alive", handler=echo("alive"))
    lp = limpet(with_admin(basic_config([("dead", dead()), alive], steering="round_robin")))
    ids = []
    statuses = collections.Counter()
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    t0 = time.monotonic()
    for i in range(50):
        # the first request is a POST, so a POST meets the refused connect
        pid = f"post-{i}-{uuid.uuid4().hex}".encode()
        ids.append(pid)
        if i % 2:
            conn.request("POST", f"/p/{i}", body=pid)
            r = conn.getresponse()
            status, body = r.status, r.read()
        else:
            r = http_request(lp.port, "POST", f"/p/{i}", body=pid)
            status, body = r.status, r.body
        statuses[("POST", status)] += 1
        assert status == 200 and body == pid, (i, status, body)
        if i == 0:
            assert "unreachable" in lp.stderr_text(), "the dead origin was never tried"
        r = http_request(lp.port, "GET", f"/g/{i}")
        statuses[("GET", r.status)] += 1
        assert r.status == 200, (i, r)
        time.sleep(0.045)           # ~2.5 s in all: the dead origin's backoff ends, it is retried
    conn.close()
    assert statuses == {("POST", 200): 50, ("GET", 200): 50}
    got = post_ids([alive])
    assert set(got) == set(ids) and all(v == 1 for v in got.values()), \
        [(k, v) for k, v in got.items() if v != 1]
    assert time.monotonic() - t0 < 10
    # it was tried again after its backoff (not once and never again), and
    # every one of those refused connects was absorbed
    dead_view = admin_client(lp).origin("app", "dead")
    assert dead_view["connect_failures"] >= 2, dead_view


def test_refusing_origin_large_post_beyond_retry_buffer_still_succeeds(limpet, origin):
    """A connect failure means nothing was sent: even a body far larger than
    retry_buffer_bytes goes to the other origin, once and intact."""
    alive = origin("alive", handler=lambda req: Reply(200, str(len(req.body)),
                                                      headers=[("X-Served-By", "alive")]))
    lp = limpet(basic_config([("dead", dead()), alive], steering="round_robin",
                             limits={"retry_buffer_bytes": 1024}))
    for i in range(4):
        body = (f"big-{i}-".encode() + uuid.uuid4().hex.encode()) * 10_000   # ~400 kB
        r = http_request(lp.port, "POST", f"/big/{i}", body=body)
        assert r.status == 200 and r.body == str(len(body)).encode(), (i, r)
    posts = [m for m in alive.requests if m.method == "POST"]
    assert len(posts) == 4
    assert len({m.body for m in posts}) == 4
    assert "unreachable" in lp.stderr_text()


def test_refusing_origin_chunked_and_expect_100_posts(limpet, origin, raw):
    """Chunked bodies and Expect: 100-continue meet the refused connect too:
    each POST succeeds, once."""
    alive = origin("alive", handler=echo("alive"))
    lp = limpet(basic_config([("dead", dead()), alive], steering="round_robin"))
    ids = []
    for i in range(4):
        pid = f"chunked-{i}-{uuid.uuid4().hex}".encode()
        ids.append(pid)
        conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
        conn.request("POST", f"/ch/{i}", body=iter([pid[:10], pid[10:]]),
                     headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 200 and r.read() == pid, (i, r.status)
        conn.close()
    for i in range(4):
        pid = f"expect-{i}-{uuid.uuid4().hex}".encode()
        ids.append(pid)
        c = raw(lp.port)
        c.send(f"POST /ex/{i} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               f"Content-Length: {len(pid)}\r\n\r\n")
        time.sleep(0.05)
        c.send(pid)
        m = c.read_response()
        assert m.status == 200 and m.body == pid, (i, m)
    got = post_ids([alive])
    assert all(got[p] == 1 for p in ids) and len(got) == len(ids), got
    assert "unreachable" in lp.stderr_text()


class Blackhole:
    """A listening socket whose accept queue is full: SYNs are dropped, so a
    connect to it hangs until the connecting side gives up."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        self.address = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(self.lsock.getsockname())
            except BlockingIOError:
                pass
            self.fillers.append(f)
        time.sleep(0.1)

    def close(self):
        for f in self.fillers:
            f.close()
        self.lsock.close()


def test_connect_timeout_fails_over_get_and_post(limpet, origin):
    """An origin that never completes the handshake costs one
    timeouts.connect, then the request (nothing of it sent) goes elsewhere."""
    hole = Blackhole()
    try:
        alive = origin("alive", handler=echo("alive"))
        lp = limpet(basic_config([{"name": "hole", "address": hole.address}, alive],
                                 steering="round_robin", timeouts={"connect": 0.3}))
        ids = []
        for i in range(8):
            pid = f"ct-{i}-{uuid.uuid4().hex}".encode()
            ids.append(pid)
            t0 = time.monotonic()
            if i % 2:
                r = http_request(lp.port, "GET", f"/ct/{i}")
                assert r.status == 200, (i, r)
            else:
                r = http_request(lp.port, "POST", f"/ct/{i}", body=pid)
                assert r.status == 200 and r.body == pid, (i, r)
            assert time.monotonic() - t0 < 1.5, f"request {i} took {time.monotonic() - t0:.2f}s"
            time.sleep(0.15)
        got = post_ids([alive])
        assert all(got[p] == 1 for p in ids[::2]), got
        assert "origin app/hole unreachable" in lp.stderr_text()
    finally:
        hole.close()


def test_concurrent_clients_with_refusing_origin(limpet, origin):
    """8 threads x 15 POSTs while one of three origins refuses: all succeed,
    each id received exactly once."""
    a, b = origin("a", handler=echo("a")), origin("b", handler=echo("b"))
    lp = limpet(basic_config([a, ("dead", dead()), b], threads=2))
    failures = []
    sent = []
    lock = threading.Lock()

    def client(t):
        conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
        for i in range(15):
            pid = f"c{t}-{i}-{uuid.uuid4().hex}".encode()
            with lock:
                sent.append(pid)
            try:
                conn.request("POST", "/c", body=pid)
                r = conn.getresponse()
                data = r.read()
                if r.status != 200 or data != pid:
                    failures.append((pid, r.status, data))
            except (OSError, http.client.HTTPException) as e:
                failures.append((pid, repr(e)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
            time.sleep(0.01)
        conn.close()

    ts = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not failures, failures[:5]
    got = post_ids([a, b])
    assert len(sent) == 120 and set(got) == set(sent)
    assert all(v == 1 for v in got.values())


# --------------------------------------------------------------------------
# an origin that takes the request and hangs up without answering
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["rst", "close"])
def test_post_read_then_dropped_is_not_retried(limpet, origin, breaker, how):
    brk = breaker("brk", lambda method, idx: how)
    good = origin("good", handler=echo("good"))
    lp = limpet(basic_config([{"name": "brk", "address": brk.address}, good],
                             steering="round_robin"))
    results = {}
    for i in range(6):
        pid = f"once-{how}-{i}-{uuid.uuid4().hex}".encode()
        t0 = time.monotonic()
        r = http_request(lp.port, "POST", f"/once/{i}", body=pid)
        assert time.monotonic() - t0 < 3
        results[pid] = r.status
    statuses = collections.Counter(results.values())
    assert set(statuses) <= {200, 502}, statuses
    assert statuses[502] >= 2, f"the breaking origin got no POST: {statuses}"
    at_brk, at_good = breaker_ids(brk), post_ids([good])
    for pid, status in results.items():
        total = at_brk[pid] + at_good[pid]
        assert total == 1, f"{pid}: received {total} times (status {status})"
        if status == 502:
            assert at_brk[pid] == 1 and at_good[pid] == 0, "POST was retried elsewhere"


def test_post_on_reused_connection_reset_is_not_retried(limpet, breaker, origin):
    """The origin answers the first request of a connection, then takes a
    POST on the same (reused, kept-alive) connection and resets: limpet must
    not treat it as a stale connection and replay the POST."""
    brk = breaker("brk", lambda method, idx: "ok" if idx == 0 else "rst")
    lp = limpet(basic_config([{"name": "brk", "address": brk.address}]))
    assert http_request(lp.port, "GET", "/warm").status == 200
    time.sleep(0.1)
    pid = f"reused-{uuid.uuid4().hex}".encode()
    r = http_request(lp.port, "POST", "/after-warm", body=pid)
    assert r.status == 502, r
    time.sleep(0.3)
    assert breaker_ids(brk)[pid] == 1, brk.requests
    assert brk.connections == 1, "the POST did not go over the reused connection"


@pytest.mark.parametrize("how", ["rst", "close"])
def test_idempotent_get_dropped_on_fresh_connection_retried_elsewhere(limpet, origin,
                                                                       breaker, how):
    brk = breaker("brk", lambda method, idx: how)
    good = origin("good")
    # brk alone in the first default pool, good in the standby pool: the GET
    # surely meets brk first, and the retry has to find another origin
    cfg = basic_config([{"name": "brk", "address": brk.address}], pool="first")
    cfg["pools"].append({"name": "second", "origins": [{"name": "good", "address": good.address}]})
    cfg["load_balancers"][0]["default_pools"] = ["first", "second"]
    lp = limpet(cfg)
    r = http_request(lp.port, "GET", "/idem")
    assert r.status == 200 and r.header("X-Served-By") == "good", r
    assert [x[1] for x in brk.requests] == ["/idem"]
    assert good.paths() == ["/idem"]


def test_put_with_body_dropped_retried_elsewhere(limpet, origin, breaker):
    """PUT is idempotent: held whole in the buffer, it may go elsewhere."""
    brk = breaker("brk", lambda method, idx: "close")
    good = origin("good", handler=echo("good"))
    cfg = basic_config([{"name": "brk", "address": brk.address}], pool="first")
    cfg["pools"].append({"name": "second", "origins": [{"name": "good", "address": good.address}]})
    cfg["load_balancers"][0]["default_pools"] = ["first", "second"]
    lp = limpet(cfg)
    body = b"put-body-" * 500
    r = http_request(lp.port, "PUT", "/put", body=body)
    assert r.status == 200 and r.body == body, r
    assert len(brk.requests) == 1


def test_put_larger_than_retry_buffer_not_retried(limpet, origin, breaker):
    """An idempotent request whose body exceeds retry_buffer_bytes is no
    longer held: 502, sent once."""
    brk = breaker("brk", lambda method, idx: "close")
    good = origin("good", handler=echo("good"))
    cfg = basic_config([{"name": "brk", "address": brk.address}], pool="first",
                       limits={"retry_buffer_bytes": 1024})
    cfg["pools"].append({"name": "second", "origins": [{"name": "good", "address": good.address}]})
    cfg["load_balancers"][0]["default_pools"] = ["first", "second"]
    lp = limpet(cfg)
    r = http_request(lp.port, "PUT", "/bigput", body=b"z" * 20_000)
    assert r.status == 502, r
    assert len(brk.requests) == 1 and not good.requests


def test_get_every_origin_drops_gives_502_quickly(limpet, breaker):
    """Retries are bounded: each origin sees the request at most once."""
    b1 = breaker("b1", lambda method, idx: "close")
    b2 = breaker("b2", lambda method, idx: "rst")
    lp = limpet(basic_config([{"name": "b1", "address": b1.address},
                              {"name": "b2", "address": b2.address}]))
    t0 = time.monotonic()
    r = http_request(lp.port, "GET", "/nobody")
    assert r.status == 502, r
    assert time.monotonic() - t0 < 3
    assert len(b1.requests) == 1 and len(b2.requests) == 1


def test_post_after_origin_closed_idle_connection(limpet, origin):
    """The origin closes kept-alive connections idle for 0.2 s: a POST sent
    later must not land on the dead pooled connection (no 502), and arrives once."""
    o = origin("s1", handler=echo("s1"), idle_close=0.2)
    lp = limpet(basic_config([o]))
    ids = []
    for i in range(3):
        pid = f"idle-{i}-{uuid.uuid4().hex}".encode()
        ids.append(pid)
        r = http_request(lp.port, "POST", f"/idle/{i}", body=pid)
        assert r.status == 200 and r.body == pid, (i, r)
        time.sleep(0.5)
    got = post_ids([o])
    assert all(got[p] == 1 for p in ids), got
