"""Session affinity modes other than plain `cookie` (SPEC §3): header, ip,
ip_cookie, app_cookie prefix and route, none."""
import collections
import http.client

import pytest

from affinity_helpers import (COOKIE, KEY_A, KEY_B, Session, affinity_config, get,
                              log_entry, loopback_alias_works, origin_request, reload,
                              write_secret)
from harness import Reply

pytestmark = []


def four(origin):
    return [origin(f"s{i}") for i in (1, 2, 3, 4)]


def keepalive_get(conn, path, headers=None):
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    r.read()
    return r


# ---- header (Guidewire x-gwre-session) ------------------------------------------

def test_header_mode_spreads_and_sticks(limpet, origin):
    os_ = four(origin)
    lp = limpet(affinity_config(os_, "header", attrs={"headers": ["x-gwre-session"]},
                                access="off"))
    home = {}
    counts = collections.Counter()
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    ids = [f"09d0fbf0-243c-4337-a582-{i:012x}" for i in range(400)]
    for sid in ids:
        r = keepalive_get(conn, "/api", {"x-gwre-session": sid})
        assert r.status == 200
        assert r.getheader("Set-Cookie") is None, "a header session needs no cookie"
        home[sid] = r.getheader("X-Served-By")
        counts[home[sid]] += 1
    assert set(counts) == {"s1", "s2", "s3", "s4"}, counts
    for name, n in counts.items():
        assert 70 <= n <= 130, f"{name} got {n} of 400 sessions: {counts}"
    # repeat each id (new order, new connection): same origin every time
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    for rnd in range(2):
        for sid in reversed(ids) if rnd else ids:
            r = keepalive_get(conn, "/api/again", {"X-Gwre-Session": sid})
            assert r.getheader("X-Served-By") == home[sid], sid
    conn.close()
    # a fresh connection per request, too
    for sid in ids[:40]:
        assert get(lp.port, "/fresh", {"x-gwre-session": sid}).served_by == home[sid]


def test_header_mode_falls_back_to_cookie(limpet, origin):
    os_ = four(origin)
    lp = limpet(affinity_config(os_, "header",
                                attrs={"headers": ["x-gwre-session"], "cookie_name": "gwre"}))
    s = Session(lp.port, cookie_name="gwre")
    r = s.get("/no-header")
    c = r.set_cookie("gwre")
    assert c is not None, f"no header: cookie fallback expected: {r.headers}"
    home = r.served_by
    for i in range(20):
        r = s.get(f"/cookie/{i}")
        assert r.served_by == home and r.set_cookie("gwre") is None
    _, req = origin_request(os_, "/cookie/0")
    assert "gwre=" not in (req.header("Cookie") or "")
    # the header is forwarded untouched
    get(lp.port, "/with", {"x-gwre-session": "abc"})
    _, req = origin_request(os_, "/with")
    assert req.header("x-gwre-session") == "abc"


def test_header_mode_require_all_headers(limpet, origin):
    os_ = four(origin)
    attrs = {"headers": ["x-tenant", "x-user"], "require_all_headers": True}
    lp = limpet(affinity_config(os_, "header", attrs=attrs, access="off"))
    # only one of the two: falls back to the cookie
    r = get(lp.port, "/one", {"x-tenant": "t1"})
    assert r.set_cookie() is not None, r.headers
    # both: hashed, no cookie, stable
    homes = set()
    for i in range(8):
        r = get(lp.port, f"/both/{i}", {"x-tenant": "t1", "x-user": "u7"})
        assert r.set_cookie() is None, r.headers
        homes.add(r.served_by)
    assert len(homes) == 1
    # the values of both headers count: many users of one tenant spread
    spread = {get(lp.port, "/u", {"x-tenant": "t1", "x-user": f"u{i}"}).served_by
              for i in range(40)}
    assert len(spread) >= 3, spread


def test_header_mode_any_header_suffices_without_require_all(limpet, origin):
    os_ = four(origin)
    attrs = {"headers": ["x-tenant", "x-user"]}
    lp = limpet(affinity_config(os_, "header", attrs=attrs, access="off"))
    homes = set()
    for i in range(6):
        r = get(lp.port, f"/t/{i}", {"x-tenant": "only-tenant"})
        assert r.set_cookie() is None, r.headers
        homes.add(r.served_by)
    assert len(homes) == 1


# ---- ip ---------------------------------------------------------------------------

needs_aliases = pytest.mark.skipif(not loopback_alias_works(),
                                   reason="cannot bind 127.0.0.N source addresses")


@needs_aliases
def test_ip_mode_clients_stay_and_spread(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    lp = limpet(affinity_config(os_, "ip", access="off"))
    addrs = [f"127.0.0.{n}" for n in range(2, 62)]
    home = {}
    for a in addrs:
        r = get(lp.port, "/ip", source=a)
        assert r.status == 200
        assert r.set_cookie() is None, "ip mode sets no cookie"
        assert r.header("Set-Cookie") is None
        home[a] = r.served_by
    counts = collections.Counter(home.values())
    assert set(counts) == {"s1", "s2", "s3"}, counts
    assert min(counts.values()) >= 8, counts
    for rnd in range(3):
        for a in addrs:
            assert get(lp.port, f"/ip/{rnd}", source=a).served_by == home[a], a
    # the origin learns the client address
    get(lp.port, "/xff", source="127.0.0.77")
    _, req = origin_request(os_, "/xff")
    assert req.header("X-Forwarded-For") == "127.0.0.77"


@needs_aliases
def test_ip_mode_ignores_cookies(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    lp = limpet(affinity_config(os_, "ip", access="off"))
    home = get(lp.port, "/", source="127.0.0.5").served_by
    for junk in ("x", "A" * 56):
        r = get(lp.port, "/c", {"Cookie": f"{COOKIE}={junk}"}, source="127.0.0.5")
        assert r.served_by == home and r.set_cookie() is None


# ---- ip_cookie -----------------------------------------------------------------------

@needs_aliases
def test_ip_cookie_cookieless_clients_stay_put(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    lp = limpet(affinity_config(os_, "ip_cookie", ttl=1800))
    home = {}
    for n in range(2, 32):
        a = f"127.0.0.{n}"
        seen = set()
        for i in range(4):                     # never sends the cookie back
            r = get(lp.port, f"/ipc/{n}/{i}", source=a)
            c = r.set_cookie()
            assert c is not None and c.attrs.get("max-age") == "1800", r.headers
            seen.add(r.served_by)
        assert len(seen) == 1, (a, seen)
        home[a] = seen.pop()
    assert len(set(home.values())) == 3, home
    # with its cookie a client stays even from another address
    s = Session(lp.port, source="127.0.0.2")
    first = s.get("/s").served_by
    assert first == home["127.0.0.2"]
    other = next(a for a, h in home.items() if h != first)
    s.source = other
    for i in range(5):
        r = s.get(f"/roam/{i}")
        assert r.served_by == first and r.set_cookie() is None
    assert log_entry(lp, "/roam/0")["affinity"] == "hit"


# ---- app_cookie prefix (HAProxy `cookie JSESSIONID prefix`) ---------------------

def app_handler(o, session_value):
    def handler(req):
        headers = [("X-Served-By", o.name)]
        if req.target.startswith("/login"):
            headers.append(("Set-Cookie", f"JSESSIONID={session_value}; Path=/; HttpOnly"))
        return Reply(200, f"{o.name}\n", headers=headers)
    return handler


def test_app_cookie_prefix(limpet, origin):
    # names that cannot turn up in a random-looking prefix by chance (a dash),
    # so finding one there would mean the prefix shows it
    os_ = [origin(f"node-{c}") for c in "abc"]
    for o in os_:
        o.handler = app_handler(o, f"abc123{o.name}")
    attrs = {"app_cookie": {"name": "JSESSIONID", "mode": "prefix", "separator": "~"}}
    lp = limpet(affinity_config(os_, "app_cookie", attrs=attrs))
    prefixes = {}
    for _ in range(3):
        r = get(lp.port, "/login")
        assert r.status == 200
        assert not any(c.name == COOKIE for c in r.set_cookies), "no limpet cookie in app_cookie mode"
        c = r.set_cookie("JSESSIONID")
        assert c is not None, r.headers
        home = r.served_by
        prefix, sep, value = c.value.partition("~")
        assert sep == "~" and value == f"abc123{home}", c.value
        assert len(prefix) == 8, c.value
        assert home not in prefix.lower() and "127" not in prefix
        assert c.attrs.get("path") == "/" and "httponly" in c.attrs, c.raw
        prefixes[home] = prefix
    assert len(set(prefixes.values())) == 3
    for home, prefix in prefixes.items():
        for i in range(10):
            path = f"/app/{home}/{i}"
            r = get(lp.port, path, {"Cookie": f"a=1; JSESSIONID={prefix}~abc123{home}; b=2"})
            assert r.served_by == home, (home, r.served_by)
            o, req = origin_request(os_, path)
            assert req.header_all("Cookie") == [f"a=1; JSESSIONID=abc123{home}; b=2"], req.headers
        assert log_entry(lp, f"/app/{home}/3")["affinity"] == "hit"
    # an unknown prefix: steered anew, but the origin still sees its own value
    r = get(lp.port, "/unknown", {"Cookie": "JSESSIONID=zzzzzzzz~abc123node-a"})
    assert r.status == 200
    _, req = origin_request(os_, "/unknown")
    assert req.header("Cookie") == "JSESSIONID=abc123node-a"


def test_app_cookie_prefix_survives_key_rotation(limpet, origin, tmp_path):
    """The prefix is derived from the origin's name and the secret; rotating
    keys (new first line, old kept) should not move prefixed sessions, as it
    does not move limpet-cookie sessions."""
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    for o in os_:
        o.handler = app_handler(o, f"v{o.name}")
    key = write_secret(tmp_path / "k", KEY_A)
    attrs = {"app_cookie": {"name": "JSESSIONID", "mode": "prefix"}}
    cfg = affinity_config(os_, "app_cookie", attrs=attrs, secret_file=key, access="off")
    lp = limpet(cfg)
    jars = {}
    for _ in range(3):
        r = get(lp.port, "/login")
        jars[r.served_by] = r.set_cookie("JSESSIONID").value
    write_secret(key, KEY_B, KEY_A)
    reload(lp, cfg)
    moved = {}
    for home, value in jars.items():
        got = {get(lp.port, "/x", {"Cookie": f"JSESSIONID={value}"}).served_by for _ in range(3)}
        if got != {home}:
            moved[home] = got
    assert not moved, f"prefixed sessions moved after a key rotation: {moved}"


# ---- app_cookie route (Tomcat jvmRoute / Apache stickysession) -------------------

def route_origins(origin):
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    entries = [{"name": "s1", "address": os_[0].address, "route": "perftest1"},
               {"name": "s2", "address": os_[1].address, "route": "perftest2"},
               {"name": "s3", "address": os_[2].address}]          # route defaults to name
    return os_, entries


def test_app_cookie_route_jsessionid(limpet, origin):
    os_, entries = route_origins(origin)
    attrs = {"app_cookie": {"name": "JSESSIONID", "mode": "route"}}
    lp = limpet(affinity_config(entries, "app_cookie", attrs=attrs))
    for value, want in [("9CA086750138E6FC6965D1A82E652E96.perftest2", "s2"),
                        ("xyz.perftest1", "s1"), ("a.b.perftest2", "s2"), ("q.s3", "s3")]:
        for i in range(6):
            path = f"/r/{value}/{i}"
            cookie = f"other=1; JSESSIONID={value}"
            r = get(lp.port, path, {"Cookie": cookie})
            assert r.status == 200 and r.served_by == want, (value, r.served_by)
            assert r.header("Set-Cookie") is None
            _, req = origin_request(os_, path)
            assert req.header_all("Cookie") == [cookie], "route mode rewrites nothing"
        assert log_entry(lp, f"/r/{value}/0")["affinity"] == "hit"
    # an unknown route or no suffix: a new assignment, nothing rewritten
    for value in ("xyz.nosuch", "nodot"):
        r = get(lp.port, f"/u/{value}", {"Cookie": f"JSESSIONID={value}"})
        assert r.status == 200
        _, req = origin_request(os_, f"/u/{value}")
        assert req.header("Cookie") == f"JSESSIONID={value}"
        assert log_entry(lp, f"/u/{value}")["affinity"] == "new"


def test_app_cookie_route_passes_origin_set_cookie(limpet, origin):
    os_, entries = route_origins(origin)
    for o in os_:
        o.handler = app_handler(o, f"ABCDEF.{ {'s1': 'perftest1', 's2': 'perftest2', 's3': 's3'}[o.name] }")
    attrs = {"app_cookie": {"name": "JSESSIONID", "mode": "route"}}
    lp = limpet(affinity_config(entries, "app_cookie", attrs=attrs, access="off"))
    s = Session(lp.port, cookie_name="JSESSIONID")
    r = s.get("/login")
    home = r.served_by
    c = r.set_cookie("JSESSIONID")
    assert c.raw == "JSESSIONID=ABCDEF." + {"s1": "perftest1", "s2": "perftest2", "s3": "s3"}[home] \
        + "; Path=/; HttpOnly"
    for i in range(10):
        assert s.get(f"/n/{i}").served_by == home


def test_app_cookie_route_apache_routeid(limpet, origin):
    """Apache mod_proxy_balancer's `ROUTEID=.perftest1` (seed 001)."""
    os_, entries = route_origins(origin)
    attrs = {"app_cookie": {"name": "ROUTEID", "mode": "route"}}
    lp = limpet(affinity_config(entries, "app_cookie", attrs=attrs, access="off"))
    for route, want in (("perftest1", "s1"), ("perftest2", "s2"), ("s3", "s3")):
        for i in range(5):
            r = get(lp.port, "/", {"Cookie": f"JSESSIONID=DDFACF910F0F8079; ROUTEID=.{route}"})
            assert r.served_by == want


# ---- none -------------------------------------------------------------------------

def test_none_mode_no_cookie_no_stickiness(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    lp = limpet(affinity_config(os_, "none"))
    seen = collections.Counter()
    for i in range(9):
        r = get(lp.port, f"/n/{i}", {"Cookie": "a=1"})
        assert r.header("Set-Cookie") is None
        seen[r.served_by] += 1
    assert seen == {"s1": 3, "s2": 3, "s3": 3}
    _, req = origin_request(os_, "/n/0")
    assert req.header("X-Limpet-Affinity") is None
    assert req.header("Cookie") == "a=1"


# ---- hash modes and drain ---------------------------------------------------------

@needs_aliases
@pytest.mark.timeout(30)
def test_ip_mode_drain_moves_clients_once(limpet, origin):
    """ip mode, origin s1 draining (drain_duration 2 s): its clients stay
    during the drain, then move to one new origin each and stay there; the
    first request after the move tells the origin `reassigned; previous=s1`.
    (Hash modes keep no per-client state, so whether later requests say
    `hit` or keep saying `reassigned` is not asserted here.)"""
    import time
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    attrs = {"drain_duration": 2}
    cfg = affinity_config(os_, "ip", attrs=attrs, access="off")
    lp = limpet(cfg)
    addrs = [f"127.0.0.{n}" for n in range(2, 40)]
    home = {a: get(lp.port, "/", source=a).served_by for a in addrs}
    on_s1 = [a for a in addrs if home[a] == "s1"]
    assert on_s1
    cfg2 = affinity_config([{"name": o.name, "address": o.address,
                             **({"state": "draining"} if o.name == "s1" else {})} for o in os_],
                           "ip", attrs=attrs, access="off")
    cfg2["listen"] = cfg["listen"]
    reload(lp, cfg2)
    for a in on_s1:
        assert get(lp.port, "/during", source=a).served_by == "s1"
    time.sleep(2.2)
    tags = collections.defaultdict(list)
    moved_to = {}
    for rnd in range(3):
        for a in on_s1:
            path = f"/after/{a}/{rnd}"
            r = get(lp.port, path, source=a)
            assert r.served_by != "s1"
            assert moved_to.setdefault(a, r.served_by) == r.served_by
            _, req = origin_request(os_, path)
            tags[a].append(req.header("X-Limpet-Affinity"))
    for a in on_s1:
        assert tags[a][0] == "reassigned; previous=s1", (a, tags[a])


def test_header_mode_affinity_header_values(limpet, origin):
    """What the origin is told in header mode: the same session id gives the
    same answer every time after the first."""
    os_ = four(origin)
    lp = limpet(affinity_config(os_, "header", attrs={"headers": ["x-gwre-session"]},
                                access="off"))
    for i in range(3):
        get(lp.port, f"/h/{i}", {"x-gwre-session": "one-session"})
    tags = [origin_request(os_, f"/h/{i}")[1].header("X-Limpet-Affinity") for i in range(3)]
    assert tags[1:] == ["hit", "hit"], tags
    assert tags[0] in ("new", "hit"), tags



def test_header_mode_strips_fallback_cookie_when_header_present(limpet, origin):
    """A client that holds the fallback cookie and also sends the header is
    routed by the header; limpet's cookie is still removed from the request
    it forwards (SPEC §3), other cookies pass untouched."""
    os_ = four(origin)
    lp = limpet(affinity_config(os_, "header",
                                attrs={"headers": ["x-gwre-session"], "cookie_name": "gwre"},
                                access="off"))
    v = get(lp.port, "/first").set_cookie("gwre").value
    r = get(lp.port, "/both", {"x-gwre-session": "abc", "Cookie": f"a=1; gwre={v}"})
    assert r.status == 200
    _, req = origin_request(os_, "/both")
    assert req.header_all("Cookie") == ["a=1"], req.headers
