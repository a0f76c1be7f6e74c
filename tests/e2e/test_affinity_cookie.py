"""Session affinity with limpet's own cookie (SPEC §3 "limpet's cookie")."""
import collections
import time

import pytest

from affinity_helpers import (COOKIE, KEY_A, KEY_B, Session, affinity_config, get,
                              log_entry, origin_request, reload, write_secret)


def three(origin):
    return [origin(f"s{i}") for i in (1, 2, 3)]


# ---- stickiness ------------------------------------------------------------

def test_300_followups_hit_one_origin(limpet, origin):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    s = Session(lp.port)
    first = s.get("/login")
    assert first.status == 200
    assert first.set_cookie() is not None, first.headers
    home = first.served_by
    served = collections.Counter()
    for i in range(300):
        r = s.get(f"/f/{i}")
        assert r.status == 200
        served[r.served_by] += 1
    assert served == {home: 300}, served
    # nothing was re-issued: the cookie is young
    assert all(r.set_cookie() is None for _, r in s.history[1:])
    # and the origins saw it: every follow-up request reached the pinned origin
    pinned = next(o for o in os_ if o.name == home)
    assert len([r for r in pinned.requests if r.target.startswith("/f/")]) == 300


def test_new_clients_spread(limpet, origin):
    """Cookie-less clients are steered by the pool (round robin here), each
    getting its own cookie; each then stays on its own origin."""
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    sessions = [Session(lp.port) for _ in range(9)]
    homes = [s.get("/").served_by for s in sessions]
    assert collections.Counter(homes) == {"s1": 3, "s2": 3, "s3": 3}, homes
    values = {s.cookie for s in sessions}
    assert len(values) == 9 and None not in values
    for _ in range(5):
        for s, home in zip(sessions, homes):
            assert s.get("/again").served_by == home


def test_keepalive_connection_follows_first_origin(limpet, origin):
    """Requests on one connection that carry no key yet follow that
    connection's first origin (per-connection pinning)."""
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    seen = []
    for i in range(6):
        conn.request("GET", f"/burst/{i}")          # never sends the cookie back
        r = conn.getresponse()
        r.read()
        seen.append(r.getheader("X-Served-By"))
    conn.close()
    assert len(set(seen)) == 1, seen


# ---- attributes ----------------------------------------------------------------

@pytest.mark.parametrize("attrs,ttl,want,absent", [
    ({}, None, {"path": "/", "max-age": "82800", "httponly": "", "samesite": "Lax"},
     {"secure"}),
    ({"samesite": "Auto", "secure": "Auto"}, 3600,
     {"max-age": "3600", "samesite": "Lax"}, {"secure"}),
    ({"samesite": "None", "secure": "Always", "path": "/app"}, 1800,
     {"path": "/app", "max-age": "1800", "samesite": "None", "secure": ""}, set()),
    ({"samesite": "Strict", "secure": "Never", "httponly": False}, 0,
     {"samesite": "Strict", "path": "/"}, {"max-age", "secure", "httponly", "expires"}),
    ({"samesite": "Lax", "secure": "Always", "cookie_name": "CFLib"}, 604800,
     {"samesite": "Lax", "secure": "", "max-age": "604800", "httponly": ""}, set()),
], ids=["defaults", "auto-over-http", "none-always", "strict-session-cookie", "cflib"])
def test_cookie_attributes(limpet, origin, attrs, ttl, want, absent):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", ttl=ttl, attrs=attrs, access="off"))
    r = get(lp.port, "/")
    assert r.status == 200
    name = attrs.get("cookie_name", COOKIE)
    c = r.set_cookie(name)
    assert c is not None, r.headers
    for k, v in want.items():
        assert k in c.attrs, f"{k} missing in {c.raw!r}"
        assert c.attrs[k] == v, f"{k}={c.attrs[k]!r} in {c.raw!r}, want {v!r}"
    for k in absent:
        assert k not in c.attrs, f"{k} present in {c.raw!r}"
    # attribute names are the canonical ones browsers expect
    assert set(c.order) <= {"Path", "Max-Age", "HttpOnly", "SameSite", "Secure", "Domain"}, c.raw


def test_cookie_value_reveals_no_origin(limpet, origin):
    os_ = [origin(n) for n in ("alpha-node", "beta-node")]
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    seen = set()
    for _ in range(6):
        r = get(lp.port, "/")
        c = r.set_cookie()
        v = c.value
        seen.add(v)
        low = v.lower()
        for o in os_:
            assert o.name not in low
            assert str(o.port) not in v, (o.port, v)
            assert o.address not in v
        assert "127.0.0.1" not in v
        assert len(v) <= 200
        # a cookie-octet value (RFC 6265): no quotes, commas, semicolons, spaces
        assert all(0x21 <= ord(ch) <= 0x7e and ch not in '",;\\' for ch in v), v
    assert len(seen) == 6, "every new session gets its own value"


def test_cookie_value_identical_addresses_differ_by_name_only(limpet, origin, tmp_path):
    """The origin key is derived from the origin's *name*: re-addressing an
    origin (same name, new port) keeps its sessions."""
    a1, b = origin("s1"), origin("s2")
    key = write_secret(tmp_path / "k", KEY_A)
    cfg = affinity_config([a1, b], "cookie", secret_file=key, access="off")
    lp = limpet(cfg)
    s = Session(lp.port)
    while s.get("/").served_by != "s1":
        s.jar.clear()
    a2 = origin("s1")                       # s1 moves to another port
    cfg2 = affinity_config([a2, b], "cookie", secret_file=key, access="off")
    cfg2["listen"] = cfg["listen"]
    reload(lp, cfg2)
    a1.stop()
    for i in range(5):
        r = s.get(f"/moved/{i}")
        assert r.status == 200 and r.served_by == "s1"
        assert r.set_cookie() is None
    assert len(a2.requests) == 5


# ---- the Cookie header the origin sees -------------------------------------------

def test_limpet_cookie_removed_other_cookies_byte_exact(limpet, origin):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    first = get(lp.port, "/first")
    v = first.set_cookie().value
    cases = [
        (f"a=1; {COOKIE}={v}; b=2", "a=1; b=2"),
        (f"{COOKIE}={v}; a=1;b=2", "a=1;b=2"),
        (f"a=1;  b=x=y ; {COOKIE}={v}", "a=1;  b=x=y"),
        (f'q="quoted value"; {COOKIE}={v}; JSESSIONID=ABC.s1; z', 'q="quoted value"; JSESSIONID=ABC.s1; z'),
        (f"{COOKIE}x=keep; {COOKIE}={v}", f"{COOKIE}x=keep"),
    ]
    for i, (sent, want) in enumerate(cases):
        path = f"/c/{i}"
        r = get(lp.port, path, {"Cookie": sent})
        assert r.status == 200 and r.served_by == first.served_by, (sent, r)
        o, req = origin_request(os_, path)
        assert req.header_all("Cookie") == [want], (sent, req.header_all("Cookie"))
    # only limpet's cookie: the Cookie field disappears
    r = get(lp.port, "/only", {"Cookie": f"{COOKIE}={v}"})
    _, req = origin_request(os_, "/only")
    assert req.header_all("Cookie") == [], req.headers
    # no limpet cookie: forwarded as received
    r = get(lp.port, "/none", {"Cookie": "x=1;y=2 ;  z=3"})
    _, req = origin_request(os_, "/none")
    assert req.header_all("Cookie") == ["x=1;y=2 ;  z=3"]


def test_limpet_cookie_removed_from_every_cookie_field(limpet, origin):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    v = get(lp.port, "/first").set_cookie().value
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    conn.putrequest("GET", "/two-fields")
    conn.putheader("Cookie", "a=1")
    conn.putheader("Cookie", f"{COOKIE}={v}; b=2")
    conn.endheaders()
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 200
    _, req = origin_request(os_, "/two-fields")
    assert req.header_all("Cookie") == ["a=1", "b=2"], req.headers
    assert v not in req.raw.decode("latin-1")


# ---- tampered and forged cookies ---------------------------------------------------

def _flip(ch):
    return "B" if ch == "A" else "A"


def test_tampered_and_forged_cookies_are_replaced(limpet, origin):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie"))
    good = get(lp.port, "/good").set_cookie().value
    forged = {
        "origin-name": "s1",
        "address": os_[0].address,
        "empty": "",
        "5kB": "A" * 5000,
        "first-char": _flip(good[0]) + good[1:],
        "middle-char": good[:len(good) // 2] + _flip(good[len(good) // 2]) + good[len(good) // 2 + 1:],
        "last-char": good[:-1] + _flip(good[-1]),
        "truncated": good[:-1],
        "extended": good + "A",
        "quoted": f'"{good}"',
        "not-base64": good[:-1] + "!",
    }
    for label, value in forged.items():
        path = f"/forged/{label}"
        r = get(lp.port, path, {"Cookie": f"a=1; {COOKIE}={value}; b=2"})
        assert r.status == 200, (label, r)
        c = r.set_cookie()
        assert c is not None, f"{label}: no new Set-Cookie: {r.headers}"
        assert c.value not in (value, good), label
        assert log_entry(lp, path)["affinity"] == "invalid-cookie", label
        _, req = origin_request(os_, path)
        assert req.header_all("Cookie") == ["a=1; b=2"], (label, req.headers)
        assert req.header("X-Limpet-Affinity") == "new", (label, req.headers)
        # the replacement works
        again = get(lp.port, path + "/again", {"Cookie": f"{COOKIE}={c.value}"})
        assert again.served_by == r.served_by and again.set_cookie() is None, label
        assert log_entry(lp, path + "/again")["affinity"] == "hit"


def test_cookie_from_another_secret_is_invalid(limpet, origin, tmp_path):
    os_ = three(origin)
    k1 = write_secret(tmp_path / "k1", KEY_A)
    k2 = write_secret(tmp_path / "k2", KEY_B)
    lp1 = limpet(affinity_config(os_, "cookie", secret_file=k1, access="off"), name="one")
    lp2 = limpet(affinity_config(os_, "cookie", secret_file=k2), name="two")
    v = get(lp1.port, "/").set_cookie().value
    r = get(lp2.port, "/other", {"Cookie": f"{COOKIE}={v}"})
    assert r.status == 200 and r.set_cookie() is not None
    assert log_entry(lp2, "/other")["affinity"] == "invalid-cookie"


# ---- expiry -------------------------------------------------------------------

@pytest.mark.timeout(40)
def test_sliding_expiry_and_max_life(limpet, origin):
    """ttl 6: a cookie older than 3 s is re-issued (same origin, same
    session); max_life 8: more than eight seconds after the session began the
    cookie is no longer honoured, although its refreshed value is younger than
    the TTL. (Token times are whole seconds: the sleeps leave a second of
    margin each way.)"""
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", ttl=6, attrs={"max_life": 8}))
    s = Session(lp.port)
    t0 = time.monotonic()
    r0 = s.get("/t0")
    home, v0 = r0.served_by, s.cookie
    assert r0.set_cookie().attrs["max-age"] == "6"
    r1 = s.get("/t0b")                        # young: no re-issue
    assert r1.served_by == home and r1.set_cookie() is None
    time.sleep(4.2)                           # older than ttl/2, younger than ttl
    r2 = s.get("/t4")
    assert r2.served_by == home
    c2 = r2.set_cookie()
    assert c2 is not None, "a cookie older than half its TTL is re-issued"
    assert c2.value != v0 and c2.attrs["max-age"] == "6"
    assert log_entry(lp, "/t4")["affinity"] == "hit"
    r3 = s.get("/t4b")
    assert r3.served_by == home and r3.set_cookie() is None
    time.sleep(max(0.0, 9.2 - (time.monotonic() - t0)))   # > max_life since start, < ttl since refresh
    r4 = s.get("/t9")
    c4 = r4.set_cookie()
    assert c4 is not None, "a session older than max_life is replaced"
    assert log_entry(lp, "/t9")["affinity"] == "invalid-cookie"


@pytest.mark.timeout(30)
def test_expired_cookie_is_replaced(limpet, origin):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", ttl=1))
    v = get(lp.port, "/a").set_cookie().value
    time.sleep(2.6)
    r = get(lp.port, "/late", {"Cookie": f"{COOKIE}={v}"})
    assert r.status == 200 and r.set_cookie() is not None
    assert log_entry(lp, "/late")["affinity"] == "invalid-cookie"


def test_session_cookie_ttl0_never_expires_nor_refreshes(limpet, origin):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", ttl=0, access="off"))
    s = Session(lp.port)
    home = s.get("/").served_by
    c = s.history[0][1].set_cookie()
    assert "max-age" not in c.attrs and "expires" not in c.attrs
    for i in range(20):
        r = s.get(f"/{i}")
        assert r.served_by == home and r.set_cookie() is None


# ---- X-Limpet-Affinity ----------------------------------------------------------

def test_x_limpet_affinity_new_then_hit(limpet, origin):
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie"))
    s = Session(lp.port)
    s.get("/n1", headers={"X-Limpet-Affinity": "hit"})      # spoofed by the client
    _, req = origin_request(os_, "/n1")
    assert req.header_all("X-Limpet-Affinity") == ["new"], req.headers
    s.get("/n2", headers={"X-Limpet-Affinity": "reassigned; previous=evil"})
    _, req = origin_request(os_, "/n2")
    assert req.header_all("X-Limpet-Affinity") == ["hit"], req.headers
    s.get("/n3")
    _, req = origin_request(os_, "/n3")
    assert req.header_all("X-Limpet-Affinity") == ["hit"]
    assert [log_entry(lp, p)["affinity"] for p in ("/n1", "/n2", "/n3")] == ["new", "hit", "hit"]


def test_x_limpet_affinity_reassigned_when_disabled(limpet, origin):
    os_ = three(origin)
    cfg = affinity_config(os_, "cookie")
    lp = limpet(cfg)
    s = Session(lp.port)
    home = s.get("/before").served_by
    v0 = s.cookie
    cfg2 = affinity_config(
        [{"name": o.name, "address": o.address,
          **({"state": "disabled"} if o.name == home else {})} for o in os_], "cookie")
    cfg2["listen"] = cfg["listen"]
    reload(lp, cfg2)
    r = s.get("/after")
    assert r.status == 200 and r.served_by != home
    assert r.set_cookie() is not None and s.cookie != v0
    o, req = origin_request(os_, "/after")
    assert req.header("X-Limpet-Affinity") == f"reassigned; previous={home}", req.headers
    assert log_entry(lp, "/after")["affinity"] == "reassigned:disabled"
    new_home = r.served_by
    for i in range(10):
        r = s.get(f"/then/{i}")
        assert r.served_by == new_home and r.set_cookie() is None
    _, req = origin_request(os_, "/then/0")
    assert req.header("X-Limpet-Affinity") == "hit"


# ---- key rotation ------------------------------------------------------------------

def test_key_rotation_keeps_sessions(limpet, origin, tmp_path):
    os_ = three(origin)
    key = write_secret(tmp_path / "affinity.key", KEY_A)
    cfg = affinity_config(os_, "cookie", secret_file=key)
    lp = limpet(cfg)
    sessions = [Session(lp.port) for _ in range(6)]
    homes = [s.get("/k0").served_by for s in sessions]
    old = [s.cookie for s in sessions]
    write_secret(key, KEY_B, KEY_A)           # new key signs, old one still verifies
    reload(lp, cfg)
    for i, (s, home) in enumerate(zip(sessions, homes)):
        r = s.get(f"/rot/{i}")
        assert r.status == 200 and r.served_by == home, (i, r.served_by, home)
        c = r.set_cookie()
        assert c is not None, "a cookie signed by an older key is re-issued"
        assert c.value != old[i]
        assert log_entry(lp, f"/rot/{i}")["affinity"] == "hit"
    write_secret(key, KEY_B)                  # the old key retired
    reload(lp, cfg)
    for i, (s, home) in enumerate(zip(sessions, homes)):
        r = s.get(f"/retired/{i}")
        assert r.served_by == home and r.set_cookie() is None
    r = get(lp.port, "/stale", {"Cookie": f"{COOKIE}={old[0]}"})
    assert r.set_cookie() is not None
    assert log_entry(lp, "/stale")["affinity"] == "invalid-cookie"


# ---- upgrade requests ----------------------------------------------------------------

def test_websocket_upgrade_follows_cookie(limpet, origin, raw):
    """Affinity applies to the upgrade request (SPEC §4)."""
    from harness import WS_HEADERS, build_request, websocket_handler
    os_ = three(origin)
    for o in os_:
        o.handler = websocket_handler(o.name)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    s = Session(lp.port)
    home = s.get("/page").served_by
    for i in range(4):
        c = raw(lp.port)
        c.send(build_request("GET", f"/ws/{i}", WS_HEADERS + [("Cookie", f"{COOKIE}={s.cookie}")]))
        r = c.read_response(head=True)
        assert r.status == 101 and r.header("X-Served-By") == home, r
        c.close()


def test_websocket_upgrade_of_new_session_sets_cookie(limpet, origin, raw):
    """A session's first request may be the upgrade itself: its 101 carries
    limpet's cookie, so the next connection of that client (a reconnect,
    the page's other requests) comes back to the same origin."""
    from harness import WS_HEADERS, build_request, websocket_handler
    os_ = three(origin)
    for o in os_:
        o.handler = websocket_handler(o.name)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    c = raw(lp.port)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    r = c.read_response(head=True)
    assert r.status == 101
    cookies = [v for v in r.header_all("Set-Cookie") if v.startswith(COOKIE + "=")]
    assert len(cookies) == 1, r.headers


def test_concurrent_sessions_on_several_workers(limpet, origin):
    """20 browser-like sessions at once against 4 worker threads: every one
    stays on the origin of its first response."""
    import threading
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", access="off", threads=4))
    problems = []

    def run(k):
        try:
            s = Session(lp.port, keep_alive=(k % 2 == 0))
            home = s.get(f"/c{k}").served_by
            for i in range(30):
                r = s.get(f"/c{k}/{i}")
                if r.status != 200 or r.served_by != home:
                    problems.append((k, i, r.status, r.served_by, home))
                    return
            s.close()
        except Exception as e:                  # noqa: BLE001
            problems.append((k, repr(e)))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not problems, problems[:5]
    assert all(len(o.requests) > 0 for o in os_)


def test_limpet_cookie_removed_among_many_cookies(limpet, origin):
    """Removal does not depend on how the cookies are interleaved: 16 copies
    of limpet's cookie between 17 others are all removed."""
    os_ = three(origin)
    lp = limpet(affinity_config(os_, "cookie", access="off"))
    v = get(lp.port, "/a").set_cookie().value
    parts = []
    for i in range(17):
        parts.append(f"k{i}=v{i}")
        if i < 16:
            parts.append(f"{COOKIE}={v}")
    r = get(lp.port, "/many", {"Cookie": "; ".join(parts)})
    assert r.status == 200
    _, req = origin_request(os_, "/many")
    assert req.header_all("Cookie") == ["; ".join(f"k{i}=v{i}" for i in range(17))], \
        req.header("Cookie")[:300]
