"""When a session's origin goes away (SPEC §3 "Origin usable",
"zero_downtime_failover", drain) and fallback pools."""
import time

import pytest

from affinity_helpers import (Session, affinity_config, get, log_entry, origin_request,
                              reload, tcp_monitor)


def three(origin):
    return [origin(f"s{i}") for i in (1, 2, 3)]


def pinned_session(lp, want=None):
    """A Session pinned (by its cookie) to origin `want` (any when None)."""
    for _ in range(12):
        s = Session(lp.port)
        r = s.get("/pin")
        assert r.status == 200 and s.cookie, r
        if want is None or r.served_by == want:
            return s, r.served_by
    raise AssertionError(f"no session landed on {want}")


def by_name(os_, name):
    return next(o for o in os_ if o.name == name)


def wait_stderr(lp, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in lp.stderr_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not logged within {timeout}s:\n{lp.stderr_text()[-2000:]}")


# ---- the pinned origin dies (monitor sees it) ---------------------------------

def test_killed_origin_moves_session_once(limpet, origin):
    os_ = three(origin)
    cfg = affinity_config(os_, "cookie", monitors=[tcp_monitor()], pool_extra={"monitor": "tcp"})
    lp = limpet(cfg)
    s, home = pinned_session(lp)
    old_cookie = s.cookie
    dead = by_name(os_, home)
    port = dead.port
    dead.stop()
    wait_stderr(lp, f"origin app/{home} down")
    r = s.get("/after-kill")
    assert r.status == 200 and r.served_by != home, r
    assert r.set_cookie() is not None and s.cookie != old_cookie
    _, req = origin_request(os_, "/after-kill")
    assert req.header("X-Limpet-Affinity") == f"reassigned; previous={home}", req.headers
    assert log_entry(lp, "/after-kill")["affinity"] == "reassigned:unhealthy"
    new_home = r.served_by
    for i in range(20):
        r = s.get(f"/stay/{i}")
        assert r.served_by == new_home and r.set_cookie() is None
    _, req = origin_request(os_, "/stay/0")
    assert req.header("X-Limpet-Affinity") == "hit"
    # the old origin comes back: the moved session does not bounce back
    origin(home, port=port)
    wait_stderr(lp, f"origin app/{home} up")
    for i in range(10):
        r = s.get(f"/back/{i}")
        assert r.served_by == new_home and r.set_cookie() is None


# ---- zero_downtime_failover: connect fails, no monitor --------------------------

def failover_lp(limpet, origin, mode):
    os_ = three(origin)
    attrs = {"zero_downtime_failover": mode}
    lp = limpet(affinity_config(os_, "cookie", attrs=attrs))
    s, home = pinned_session(lp)
    return lp, os_, s, home


def test_failover_none_gives_502(limpet, origin):
    lp, os_, s, home = failover_lp(limpet, origin, "none")
    cookie = s.cookie
    by_name(os_, home).stop()
    r = s.get("/refused")
    assert r.status == 502, r
    assert r.set_cookie() is None and s.cookie == cookie
    # new sessions are not hurt: a refused first assignment is retried elsewhere
    for i in range(6):
        r = get(lp.port, f"/fresh/{i}")
        assert r.status == 200 and r.served_by != home


def test_failover_none_then_reassigned(limpet, origin):
    """SPEC §5: with no monitor an origin is healthy *unless live traffic fails
    to connect to it*; §3: a session pinned to an unhealthy origin is
    reassigned at once. So after the 502 the session moves (new cookie)
    instead of getting 502 for as long as the origin is gone."""
    lp, os_, s, home = failover_lp(limpet, origin, "none")
    by_name(os_, home).stop()
    assert s.get("/refused").status == 502
    statuses = [s.get(f"/next/{i}").status for i in range(3)]
    assert statuses == [200, 200, 200], statuses
    r = s.history[-3][1]
    assert r.served_by != home and r.set_cookie() is not None


@pytest.mark.timeout(30)
def test_failover_temporary(limpet, origin):
    lp, os_, s, home = failover_lp(limpet, origin, "temporary")
    cookie = s.cookie
    dead = by_name(os_, home)
    port = dead.port
    dead.stop()
    for i in range(3):
        path = f"/temp/{i}"
        r = s.get(path)
        assert r.status == 200 and r.served_by != home, r
        assert r.set_cookie() is None, f"temporary failover leaves the cookie alone: {r.headers}"
        assert s.cookie == cookie
        assert log_entry(lp, path)["affinity"] == "failover:temporary"
        _, req = origin_request(os_, path)
        assert req.header("X-Limpet-Affinity") == f"reassigned; previous={home}", req.headers
    # the origin answers again: the session returns to it (once limpet's
    # passive backoff, at most 10 s, lets it try the origin again), its
    # cookie never having changed
    back = origin(home, port=port)
    deadline = time.monotonic() + 12
    while True:
        r = s.get("/home-again")
        assert r.status == 200 and r.set_cookie() is None, r
        if r.served_by == home or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.served_by == home, "the session did not return to its origin"
    assert s.cookie == cookie
    assert len(back.requests) == 1


def test_failover_sticky(limpet, origin):
    lp, os_, s, home = failover_lp(limpet, origin, "sticky")
    cookie = s.cookie
    dead = by_name(os_, home)
    port = dead.port
    dead.stop()
    r = s.get("/sticky")
    assert r.status == 200 and r.served_by != home, r
    assert r.set_cookie() is not None and s.cookie != cookie
    assert log_entry(lp, "/sticky")["affinity"] == "failover:sticky"
    _, req = origin_request(os_, "/sticky")
    assert req.header("X-Limpet-Affinity") == f"reassigned; previous={home}"
    new_home = r.served_by
    origin(home, port=port)                     # back, but the cookie moved
    for i in range(10):
        r = s.get(f"/moved/{i}")
        assert r.served_by == new_home and r.set_cookie() is None
    assert log_entry(lp, "/moved/0")["affinity"] == "hit"


def test_failover_post_not_retried_when_sent(limpet, origin):
    """temporary failover retries a POST only when nothing reached the origin:
    a refused connection is such a case."""
    lp, os_, s, home = failover_lp(limpet, origin, "temporary")
    by_name(os_, home).stop()
    r = s.get("/post", method="POST")
    assert r.status == 200 and r.served_by != home


# ---- drain ---------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_drain_keeps_pinned_sessions_until_drain_duration(limpet, origin):
    os_ = three(origin)
    attrs = {"drain_duration": 3}
    cfg = affinity_config(os_, "cookie", attrs=attrs)
    lp = limpet(cfg)
    s, home = pinned_session(lp, want="s1")
    cfg2 = affinity_config(
        [{"name": o.name, "address": o.address,
          **({"state": "draining"} if o.name == "s1" else {})} for o in os_],
        "cookie", attrs=attrs)
    cfg2["listen"] = cfg["listen"]
    reload(lp, cfg2)
    t0 = time.monotonic()
    # no new session lands on the draining origin
    for i in range(12):
        r = get(lp.port, f"/new/{i}")
        assert r.status == 200 and r.served_by != "s1"
    # the pinned session stays while the drain lasts
    while time.monotonic() - t0 < 1.5:
        r = s.get("/still")
        assert r.served_by == "s1" and r.set_cookie() is None
        time.sleep(0.1)
    time.sleep(max(0, 3.3 - (time.monotonic() - t0)))
    r = s.get("/drained")
    assert r.status == 200 and r.served_by != "s1", r
    assert r.set_cookie() is not None
    assert log_entry(lp, "/drained")["affinity"] == "reassigned:drained"
    _, req = origin_request(os_, "/drained")
    assert req.header("X-Limpet-Affinity") == "reassigned; previous=s1"
    new_home = r.served_by
    for i in range(5):
        assert s.get(f"/after/{i}").served_by == new_home


def test_draining_origin_with_zero_duration_moves_at_once(limpet, origin):
    os_ = three(origin)
    cfg = affinity_config(os_, "cookie")
    lp = limpet(cfg)
    s, home = pinned_session(lp, want="s2")
    cfg2 = affinity_config(
        [{"name": o.name, "address": o.address,
          **({"state": "draining"} if o.name == "s2" else {})} for o in os_], "cookie")
    cfg2["listen"] = cfg["listen"]
    reload(lp, cfg2)
    r = s.get("/go")
    assert r.served_by != "s2" and r.set_cookie() is not None
    assert log_entry(lp, "/go")["affinity"] == "reassigned:drained"


# ---- fallback pool ------------------------------------------------------------------

def test_fallback_pool_reason(limpet, origin):
    main, spare = origin("main1"), origin("sorry1")
    cfg = affinity_config([{"name": "main1", "address": main.address, "state": "disabled"}],
                          "cookie")
    cfg["pools"].append({"name": "sorry", "origins": [{"name": "sorry1",
                                                        "address": spare.address}]})
    cfg["load_balancers"][0]["fallback_pool"] = "sorry"
    lp = limpet(cfg)
    s = Session(lp.port)
    r = s.get("/fb")
    assert r.status == 200 and r.served_by == "sorry1"
    assert r.set_cookie() is not None
    e = log_entry(lp, "/fb")
    assert e["affinity"] == "fallback-pool" and e["pool"] == "sorry", e
    r = s.get("/fb2")
    assert r.served_by == "sorry1" and log_entry(lp, "/fb2")["affinity"] == "hit"
