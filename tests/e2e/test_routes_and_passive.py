"""Issue 11 items 1-4: route cookies limpet issues itself, `;jsessionid=` path
parameters and quoted values (SPEC §3 app_cookie route mode), passive checks
that count connect failures, resets, response timeouts and (only when the
pool asks) 5xx answers, and 503 when no origin accepted a connection
(SPEC §5).

Origins are RecordingOrigins (harness.py) unless a test needs one that
accepts and stays silent, or one whose answer it holds back while new
connections are refused (small socket servers below).
"""
import json
import re
import socket
import subprocess
import threading
import time

import pytest

from affinity_helpers import Session, affinity_config, get, log_entry, origin_request
from harness import (LIMPET, REPO, Reply, admin_client, basic_config, curl, free_port,
                     require_binary, with_admin)
from test_metrics import scrape, value


def dead_address():
    return f"127.0.0.1:{free_port()}"     # nothing listens there: connect refused


def routed(origins):
    """Origin dicts with routes node1, node2, ... for RecordingOrigins."""
    return [{"name": o.name, "address": o.address, "route": f"node{i + 1}"}
            for i, o in enumerate(origins)]


def route_config(origins, name="ROUTEID", issue=True, **kw):
    ac = {"name": name, "mode": "route"}
    if issue is not None:
        ac["issue"] = issue
    attrs = {"app_cookie": ac}
    attrs.update(kw.pop("attrs", {}))
    return affinity_config(routed(origins), "app_cookie", attrs=attrs, **kw)


def stderr_lines(lp, pattern):
    rx = re.compile(r"^\S+ limpet: " + pattern + r"$")
    return [l for l in lp.stderr_text().splitlines() if rx.search(l)]


def wait_stderr(lp, pattern, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = stderr_lines(lp, pattern)
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no stderr line matching {pattern!r} within {timeout}s:\n"
                         f"{lp.stderr_text()[-3000:]}")


# --------------------------------------------------------------------------
# 1. the route cookie issued by limpet
# --------------------------------------------------------------------------

def test_issued_route_cookie_pins_a_curl_cookie_jar(limpet, origin, tmp_path):
    """Plain origins that set no route: limpet sets ROUTEID=.<route> with the
    load balancer's cookie attributes, and a curl cookie jar (a new
    connection per request) stays on one origin for 20 requests."""
    os_ = [origin("s1"), origin("s2"), origin("s3")]
    lp = limpet(route_config(os_, access="access.log"))
    jar = tmp_path / "jar.txt"
    served, set_cookies = [], []
    for i in range(20):
        p = curl("-i", "-c", str(jar), "-b", str(jar), f"{lp.url}/page/{i}")
        assert p.returncode == 0, p.stderr
        head = p.stdout.decode("latin-1").split("\r\n\r\n", 1)[0]
        fields = [l.split(":", 1) for l in head.split("\r\n")[1:]]
        served.append(next(v.strip() for k, v in fields if k.lower() == "x-served-by"))
        set_cookies += [v.strip() for k, v in fields if k.lower() == "set-cookie"]
    home = served[0]
    assert served == [home] * 20, served
    route = f"node{[o.name for o in os_].index(home) + 1}"
    # one Set-Cookie, on the first answer, with limpet's cookie attributes
    assert set_cookies == [f"ROUTEID=.{route}; Path=/; Max-Age=82800; HttpOnly; SameSite=Lax"], \
        set_cookies
    for i in range(1, 20):
        _, req = origin_request(os_, f"/page/{i}")
        assert req.header("Cookie") == f"ROUTEID=.{route}"   # passed on, nothing rewritten
        assert req.header("X-Limpet-Affinity") == "hit"
    assert log_entry(lp, "/page/0")["affinity"] == "new"
    assert log_entry(lp, "/page/19")["affinity"] == "hit"
    # without the cookie, round robin spreads: the cookie is what pins
    assert len({get(lp.port, "/anon").served_by for _ in range(6)}) == 3


def test_issued_route_cookie_moves_with_its_session(limpet, origin):
    """Its origin changed (sticky failover after a refused connect): a new
    ROUTEID names the new origin; an unknown route gets one too."""
    os_ = [origin("s1"), origin("s2")]
    lp = limpet(route_config(os_, attrs={"zero_downtime_failover": "sticky"}))
    s = Session(lp.port, cookie_name="ROUTEID")
    r = s.get("/first")
    home = r.served_by
    assert r.set_cookie("ROUTEID").value == f".node{1 if home == 's1' else 2}"
    for i in range(5):
        r = s.get(f"/stay/{i}")
        assert r.served_by == home and r.set_cookie("ROUTEID") is None
    other = "s2" if home == "s1" else "s1"
    next(o for o in os_ if o.name == home).stop()
    r = s.get("/moved")
    assert r.status == 200 and r.served_by == other
    assert r.set_cookie("ROUTEID").value == f".node{1 if other == 's1' else 2}"
    for i in range(5):
        r = s.get(f"/after/{i}")
        assert r.served_by == other and r.set_cookie("ROUTEID") is None
    r = get(lp.port, "/unknown", {"Cookie": "ROUTEID=.node9"})
    assert r.status == 200 and r.set_cookie("ROUTEID").value == f".node{1 if other == 's1' else 2}"


def test_jira_routeid_example_is_sticky_for_cookie_jars(limpet, origin):
    """examples/jira-routeid.json in front of origins that set no cookie."""
    cfg = json.loads((REPO / "examples" / "jira-routeid.json").read_text())
    cfg["listen"][0]["address"] = f"127.0.0.1:{free_port()}"
    cfg["secret_file"] = str(REPO / cfg["secret_file"])
    cfg["log"] = {"access": "off"}
    cfg.setdefault("timeouts", {})["grace"] = 5
    for o in cfg["pools"][0]["origins"]:
        rec = origin(o["name"])
        rec.handler = (lambda req, n=o["name"]:
                       Reply(200, '{"state":"RUNNING"}') if req.target == "/status"
                       else Reply(200, n, headers=[("X-Served-By", n)]))
        o["address"] = rec.address
    lp = limpet(cfg)
    for _ in range(3):
        s = Session(lp.port, cookie_name="ROUTEID")
        homes = {s.get(f"/browse/{i}").served_by for i in range(10)}
        assert len(homes) == 1, homes
        assert s.cookie in (".perftest1", ".perftest2")


def check_config(tmp_path, cfg):
    require_binary()
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    return subprocess.run([str(LIMPET), "-t", "-c", "cfg.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=10)


def test_config_check_warns_about_a_route_cookie_nobody_sets(tmp_path):
    origins = [("s1", "127.0.0.1:9001"), ("s2", "127.0.0.1:9002")]
    cfg = affinity_config(origins, "app_cookie",
                          attrs={"app_cookie": {"name": "ROUTEID", "mode": "route"}})
    p = check_config(tmp_path, cfg)
    assert p.returncode == 0, p.stdout + p.stderr      # a warning, not an error
    assert p.stdout == "cfg.json: ok\n"
    assert p.stderr == (
        "cfg.json: load_balancers[0].session_affinity_attributes.app_cookie: warning: route "
        "mode routes on cookie \"ROUTEID\", which no origin is known to set: without "
        "\"issue\": true, a client stays on one origin only when the application sets that "
        "cookie with its route (Tomcat's jvmRoute)\n")
    cfg["load_balancers"][0]["session_affinity_attributes"]["app_cookie"]["issue"] = True
    p = check_config(tmp_path, cfg)
    assert (p.returncode, p.stdout, p.stderr) == (0, "cfg.json: ok\n", "")


@pytest.mark.parametrize("ac,passive,errors", [
    ({"name": "ROUTEID", "mode": "route", "issue": "yes"}, None,
     ["app_cookie.issue: must be true or false"]),
    ({"name": "ROUTEID", "mode": "route", "url_parameter": ""}, None,
     ["app_cookie.url_parameter: must be a non-empty token of letters, digits and "
      "!#$%&'*+-.^_`|~"]),
    ({"name": "SID", "mode": "prefix", "issue": True}, None,
     ['app_cookie.issue: only with mode "route"']),
    ({"name": "ROUTEID", "mode": "route"}, {"http_5xx": "true"},
     ["pools[0].passive.http_5xx: must be true or false"]),
    ({"name": "ROUTEID", "mode": "route"}, {"http_5xx": True, "resets": False},
     ["pools[0].passive.resets: unknown key"]),
    ({"name": "ROUTEID", "mode": "route"}, [],
     ["pools[0].passive: must be an object"]),
])
def test_config_check_new_keys(tmp_path, ac, passive, errors):
    cfg = affinity_config([("s1", "127.0.0.1:9001")], "app_cookie",
                          attrs={"app_cookie": ac})
    if passive is not None:
        cfg["pools"][0]["passive"] = passive
    p = check_config(tmp_path, cfg)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = [l for l in (p.stdout + p.stderr).splitlines() if "warning" not in l]
    want = [f"cfg.json: {e}" if e.startswith("pools") else
            f"cfg.json: load_balancers[0].session_affinity_attributes.{e}" for e in errors]
    assert lines == want


# --------------------------------------------------------------------------
# 2. ;jsessionid= path parameters and quoted values
# --------------------------------------------------------------------------

def test_jsessionid_path_parameter_and_quoted_cookie_route(limpet, origin):
    os_ = [origin("s1"), origin("s2"), origin("s3")]
    lp = limpet(route_config(os_, name="JSESSIONID", issue=None))
    for i in range(6):
        for target in (f"/index.jsp;jsessionid=ABCDEF.node2?i={i}",
                       f"/app/index.jsp;jsessionid=ABCDEF.node2",
                       f"/index.jsp;jsessionid=ABCDEF.node2?q=a;b&i={i}"):
            r = get(lp.port, target)
            assert r.status == 200 and r.served_by == "s2", (target, r.served_by)
    _, req = origin_request(os_, "/index.jsp;jsessionid=ABCDEF.node2?i=0")
    assert req.target == "/index.jsp;jsessionid=ABCDEF.node2?i=0"   # passed on unchanged
    assert {get(lp.port, f"/x;jsessionid=ABC.node3/y/{i}").served_by for i in range(4)} == {"s3"}
    # a quoted cookie value is read without its quotes, and forwarded byte for byte
    for i in range(6):
        r = get(lp.port, f"/q/{i}", {"Cookie": 'a=1; JSESSIONID="X.node2"; b=2'})
        assert r.status == 200 and r.served_by == "s2"
    _, req = origin_request(os_, "/q/0")
    assert req.header("Cookie") == 'a=1; JSESSIONID="X.node2"; b=2'
    # a cookie naming a route wins over the path parameter
    r = get(lp.port, "/w;jsessionid=A.node2", {"Cookie": "JSESSIONID=A.node1"})
    assert r.served_by == "s1"
    # no route anywhere: steered anew (round robin spreads)
    assert len({get(lp.port, f"/none;jsessionid=ABCDEF/{i}").served_by for i in range(6)}) == 3


# --------------------------------------------------------------------------
# 3. passive checks
# --------------------------------------------------------------------------

def error_when(flag):
    """A handler: 500 while flag["on"], else 200; both say X-Served-By."""
    def make(name):
        def handler(req):
            if req.target == "/status":
                return Reply(200, '{"state":"RUNNING"}')
            return Reply(500 if flag["on"] else 200, name, headers=[("X-Served-By", name)])
        return handler
    return make


def pinned(lp, os_):
    s = Session(lp.port)
    r = s.get("/login")
    assert r.status == 200
    return s, r.served_by


HTTP_MONITOR = {"name": "status", "type": "http", "path": "/status", "interval": 30,
                "timeout": 1, "retries": 3, "rise": 1}


@pytest.mark.parametrize("monitored", [False, True], ids=["no-monitor", "monitor"])
def test_5xx_answers_leave_the_session_by_default(limpet, origin, monitored):
    flag = {"on": False}
    os_ = [origin("s1"), origin("s2")]
    kw = {"pool_extra": {"monitor": "status"}, "monitors": [HTTP_MONITOR]} if monitored else {}
    lp = limpet(affinity_config(os_, "cookie", **kw))
    s, home = pinned(lp, os_)
    for o in os_:
        o.handler = error_when(flag)(o.name)
    flag["on"] = True
    for i in range(6):
        r = s.get(f"/broken/{i}")
        assert r.status == 500 and r.served_by == home
        time.sleep(0.15 if monitored else 0)          # passive scans every 100 ms
    flag["on"] = False
    for i in range(3):
        r = s.get(f"/fine/{i}")
        assert r.status == 200 and r.served_by == home and r.set_cookie() is None
    _, req = origin_request(os_, "/broken/5")
    assert req.header("X-Limpet-Affinity") == "hit"
    assert not stderr_lines(lp, rf"origin app/{home} (down|unreachable).*")


@pytest.mark.parametrize("monitored", [False, True], ids=["no-monitor", "monitor"])
def test_5xx_answers_move_the_session_with_http_5xx(limpet, origin, monitored):
    flag = {"on": False}
    os_ = [origin("s1"), origin("s2")]
    pool = {"passive": {"http_5xx": True}}
    kw = {"monitors": [HTTP_MONITOR]} if monitored else {}
    if monitored:
        pool["monitor"] = "status"
    lp = limpet(affinity_config(os_, "cookie", access="access.log", pool_extra=pool, **kw))
    s, home = pinned(lp, os_)
    other = "s2" if home == "s1" else "s1"
    for o in os_:
        o.handler = error_when(flag)(o.name)
    flag["on"] = True
    statuses = []
    for i in range(6):
        r = s.get(f"/broken/{i}")
        statuses.append((r.status, r.served_by))
        if r.served_by == other:
            break
        time.sleep(0.15 if monitored else 0)
    retries = 3 if monitored else 2
    assert statuses[:retries] == [(500, home)] * retries, statuses
    assert statuses[-1][1] == other, f"the session never moved: {statuses}"
    kinds = f"{retries} failures seen by live traffic \\({retries} 5xx answers\\)"
    if monitored:   # (one more if a passive scan, every 100 ms, came late)
        wait_stderr(lp, rf"origin app/{home} down: (\d+) failures seen by live traffic "
                        r"\(\1 5xx answers\)")
    else:
        wait_stderr(lp, rf"origin app/{home} down: {kinds}: not chosen for 1000 ms, "
                        r"longer while it fails")
    moved = statuses[-1]
    path = f"/broken/{len(statuses) - 1}"
    assert log_entry(lp, path)["affinity"] == "reassigned:unhealthy"
    assert moved[0] == 500           # the other origin is broken too, but it answered
    assert s.history[-1][1].set_cookie() is not None


class SilentOrigin:
    """Accepts connections, reads whatever comes, never answers."""

    def __init__(self, name="silent"):
        self.name = name
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self._drain, args=(c,), daemon=True).start()

    @staticmethod
    def _drain(c):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    def stop(self):
        self.stopped = True
        for s in [self.sock] + self.conns:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def silent():
    made = []

    def make(name="silent"):
        s = SilentOrigin(name)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.mark.timeout(40)
@pytest.mark.parametrize("monitored", [False, True], ids=["no-monitor", "monitor"])
def test_origin_that_never_answers_is_taken_out(limpet, origin, silent, monitored):
    quiet, good = silent("quiet"), origin("good")
    kw = {}
    if monitored:   # a TCP check passes: it accepts; only live traffic sees the silence
        kw = {"pool_extra": {"monitor": "tcp"},
              "monitors": [{"name": "tcp", "type": "tcp", "interval": 30, "timeout": 1,
                            "retries": 3, "rise": 1}]}
    cfg = with_admin(basic_config([quiet, good], steering="round_robin",
                                  timeouts={"server": 0.3}, **kw))
    lp = limpet(cfg)
    api = admin_client(lp)
    retries = 3 if monitored else 2
    statuses = []
    t0 = time.monotonic()
    while statuses.count(504) < retries:
        statuses.append(get(lp.port, "/x").status)
        assert time.monotonic() - t0 < 10, statuses
    assert set(statuses) == {200, 504}, statuses
    if monitored:
        wait_stderr(lp, rf"origin app/quiet down: {retries} failures seen by live traffic "
                        rf"\({retries} timeouts\)")
    else:
        wait_stderr(lp, rf"origin app/quiet down: {retries} failures seen by live traffic "
                        rf"\({retries} timeouts\): not chosen for 1000 ms, longer while it fails")
    accepted = quiet.accepted
    for i in range(6):               # out of rotation: nothing waits on it
        r = get(lp.port, f"/after/{i}")
        assert r.status == 200 and r.served_by == "good"
    assert quiet.accepted == accepted
    o = api.origin("app", "quiet")
    assert o["passive_failures"] == retries
    # the API says what the metrics say: out, whether a monitor or live traffic took it out
    assert (o["healthy"], o["usable"]) == (False, False), o
    summary = api.get("/api/v1/pools/app").json["summary"]
    assert (summary["up"], summary["usable"]) == (1, 1), summary
    fams = scrape(api)
    assert value(fams, "limpet_origin_passive_failures_total", pool="app", origin="quiet",
                 kind="timeout") == retries
    assert value(fams, "limpet_origin_up", pool="app", origin="quiet") == 0
    assert value(fams, "limpet_health_state_changes_total", pool="app", origin="quiet",
                 to="down") == 1


def test_resets_before_a_response_are_counted(limpet, origin):
    """An origin that closes every connection before answering: counted as
    resets, taken out after two; the GETs were replayed on the other one."""
    bad = origin("bad", handler=lambda req: Reply(raw=b"", close=True))
    good = origin("good")
    lp = limpet(with_admin(basic_config([bad, good], steering="round_robin")))
    api = admin_client(lp)
    for i in range(6):
        r = get(lp.port, f"/r/{i}")
        assert r.status == 200 and r.served_by == "good"
    wait_stderr(lp, r"origin app/bad down: 2 failures seen by live traffic \(2 resets\): "
                    r"not chosen for 1000 ms, longer while it fails")
    fams = scrape(api)
    assert value(fams, "limpet_origin_passive_failures_total", pool="app", origin="bad",
                 kind="reset") == 2
    assert value(fams, "limpet_origin_passive_failures_total", pool="app", origin="good",
                 kind="reset") == 0


class HeldOrigin:
    """Answers its first request only when told to, and can stop accepting
    new connections meanwhile (the listening socket closed: connects are
    refused) — as an origin killed while its last response is in flight."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Served-By: held\r\n"
                b"Connection: close\r\n\r\nlate")

    def __init__(self):
        self.name = "held"
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.got_request = threading.Event()
        self.answer = threading.Event()
        self.conn = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        self.conn = c
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = c.recv(65536)
            if not data:
                return
            buf += data
        self.got_request.set()
        self.answer.wait(20)
        c.sendall(self.RESPONSE)
        time.sleep(0.2)
        c.close()

    def refuse_new(self):
        self.sock.close()


def test_response_in_flight_from_a_killed_origin_is_no_recovery(limpet):
    """A response already on its way from an origin that has since stopped
    accepting connections must not mark it "reachable again"."""
    held = HeldOrigin()
    lp = limpet(basic_config([held]))
    result = {}
    t = threading.Thread(target=lambda: result.update(r=get(lp.port, "/slow")), daemon=True)
    t.start()
    assert held.got_request.wait(5)
    held.refuse_new()                                # "kill -9"
    r = get(lp.port, "/refused")
    assert r.status == 503 and r.header("Retry-After")
    wait_stderr(lp, r"origin app/held unreachable \(Connection refused\): not chosen for "
                    r"1000 ms, longer while it fails")
    held.answer.set()                                # the response in flight arrives
    t.join(10)
    assert result["r"].status == 200 and result["r"].body == b"late"
    time.sleep(0.2)
    assert not stderr_lines(lp, r"origin app/held reachable again"), lp.stderr_text()
    # still left alone: answered at once, without trying it again
    r = get(lp.port, "/still-out")
    assert r.status == 503
    assert len(stderr_lines(lp, r"origin app/held unreachable.*")) == 1


# --------------------------------------------------------------------------
# 4. 503 when no origin accepted a connection
# --------------------------------------------------------------------------

def check_503(r):
    assert r.status == 503, r
    assert r.header("Retry-After") is not None and r.header("Retry-After").isdigit(), r.headers


def test_dead_only_pool_answers_503(limpet, origin):
    lp = limpet(basic_config([("d1", dead_address()), ("d2", dead_address())]))
    for i in range(3):
        check_503(get(lp.port, f"/dead/{i}"))


@pytest.mark.parametrize("failover", ["none", "temporary", "sticky"])
def test_pinned_session_on_a_dead_only_pool_gets_503(limpet, origin, failover):
    """The session's only origin stops: nothing accepts a connection, so 503
    with Retry-After whatever zero_downtime_failover says (SPEC §5; §3's 502
    for "none" is for an origin that fails while others could serve)."""
    only = origin("only")
    lp = limpet(affinity_config([only], "cookie",
                                attrs={"zero_downtime_failover": failover}))
    s = Session(lp.port)
    assert s.get("/login").served_by == "only"
    only.stop()
    for i in range(3):
        check_503(s.get(f"/gone/{i}"))


def test_502_when_an_origin_failed_after_the_request_reached_it(limpet, origin):
    """One origin drops the connection before answering, the other refuses
    it: something reached an application, so 502 (no Retry-After)."""
    dropper = origin("dropper", handler=lambda req: Reply(raw=b"", close=True))
    lp = limpet(basic_config([dropper, ("dead", dead_address())]))
    r = get(lp.port, "/x")
    assert r.status == 502 and r.header("Retry-After") is None, r
