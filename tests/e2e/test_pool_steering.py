"""Pool steering and the fallback pool (SPEC §2 steering_policy, §3 Fallback;
issue 4 item 4).

Which pool served a request is read from X-Served-By (every origin name is
unique across pools). Requests use fresh connections unless stated, so
limpet's per-connection pinning never hides a routing decision; clients
"from" another region bind their socket to 127.0.0.N (Linux routes all of
127/8 to lo).
"""
import collections
import http.client
import socket
import time

import pytest

from affinity_helpers import Session, get, log_entry, loopback_alias_works, reload
from flip_origin import Flip
from harness import free_port


def dead():
    return f"127.0.0.1:{free_port()}"          # nothing listens: connect refused


def pool(name, *origins, **extra):
    """A pool of (name, address[, extra dict]) tuples or RecordingOrigins."""
    entries = []
    for o in origins:
        if isinstance(o, tuple):
            e = {"name": o[0], "address": o[1]}
            if len(o) > 2:
                e.update(o[2])
        else:
            e = {"name": o.name, "address": o.address}
        entries.append(e)
    return {"name": name, "origins": entries, **extra}


def lb_config(pools, default_pools, *, policy=None, fallback=None, affinity=None,
              access="access.log", listen=None, **lb_extra):
    lb = {"name": "www", "default_pools": default_pools}
    if policy:
        lb["steering_policy"] = policy
    if fallback:
        lb["fallback_pool"] = fallback
    if affinity:
        lb["session_affinity"] = affinity
    lb.update(lb_extra)
    return {"listen": listen or [{"address": f"127.0.0.1:{free_port()}", "load_balancer": "www"}],
            "threads": 1, "timeouts": {"grace": 5}, "log": {"access": access},
            "pools": pools, "load_balancers": [lb]}


def who(port, n=6, source=None, path="/w"):
    """Counter of X-Served-By over n fresh connections (all must be 200)."""
    c = collections.Counter()
    for i in range(n):
        r = get(port, f"{path}/{i}", source=source)
        assert r.status == 200, (r.status, r.body)
        c[r.served_by] += 1
    return c


def need_alias():
    assert loopback_alias_works("127.0.0.2"), "cannot bind 127.0.0.2 (not Linux lo?)"


# --------------------------------------------------------------------------
# steering_policy "off"
# --------------------------------------------------------------------------

def test_off_first_default_pool_takes_all_traffic(limpet, origin):
    a1, a2, b1 = origin("a1"), origin("a2"), origin("b1")
    lp = limpet(lb_config([pool("a", a1, a2), pool("b", b1)], ["a", "b"], policy="off"))
    assert who(lp.port, 10) == {"a1": 5, "a2": 5}
    assert not b1.requests
    e = log_entry(lp, "/w/0")
    assert e["pool"] == "a", e


def test_off_standby_while_first_stopped_new_sessions_return(limpet, origin):
    """a's only origin stops (connect refused → passive backoff): b serves;
    once a answers again new sessions return to a, sessions pinned to b stay."""
    a1, b1 = origin("a1"), origin("b1")
    lp = limpet(lb_config([pool("a", a1), pool("b", b1)], ["a", "b"], affinity="cookie"))
    s = Session(lp.port)
    assert s.get("/before").served_by == "a1"

    port = a1.port
    a1.stop()
    t_down = time.monotonic()
    pinned_b = Session(lp.port)
    r = pinned_b.get("/down/0")
    assert r.status == 200 and r.served_by == "b1", r
    assert pinned_b.cookie, "no affinity cookie from the standby pool"
    for i in range(1, 5):                        # new sessions: all on the standby
        r = Session(lp.port).get(f"/down/{i}")
        assert r.status == 200 and r.served_by == "b1", r
    assert time.monotonic() - t_down < 1.0, "too slow to stay within one backoff"

    a1b = origin("a1", port=port)                # a is back on the same address
    deadline = time.monotonic() + 6
    while True:
        r = Session(lp.port).get("/back")
        assert r.status == 200, r
        if r.served_by == "a1":
            break
        assert time.monotonic() < deadline, "new sessions never returned to pool a"
        time.sleep(0.2)
    back_at = time.monotonic()
    # from now on every new session lands on a
    assert who(lp.port, 6, path="/new") == {"a1": 6}
    assert len(a1b.requests) >= 7
    # the session pinned to b while a was down keeps b (b is usable)
    for i in range(3):
        r = pinned_b.get(f"/pinned/{i}")
        assert r.status == 200 and r.served_by == "b1", r
    assert log_entry(lp, "/pinned/0")["affinity"] == "hit"
    assert time.monotonic() - back_at < 5


def test_off_standby_while_first_disabled_by_reload(limpet, origin):
    a1, a2, b1 = origin("a1"), origin("a2"), origin("b1")
    cfg = lb_config([pool("a", a1, a2), pool("b", b1)], ["a", "b"], affinity="cookie")
    lp = limpet(cfg)
    assert set(who(lp.port, 4)) == {"a1", "a2"}

    for o in cfg["pools"][0]["origins"]:
        o["state"] = "disabled"
    reload(lp, cfg)
    assert who(lp.port, 6, path="/dis") == {"b1": 6}
    pinned_b = Session(lp.port)
    assert pinned_b.get("/pin").served_by == "b1"
    n_a = len(a1.requests) + len(a2.requests)

    for o in cfg["pools"][0]["origins"]:
        o["state"] = "enabled"
    reload(lp, cfg)
    assert set(who(lp.port, 6, path="/en")) == {"a1", "a2"}
    assert len(a1.requests) + len(a2.requests) == n_a + 6
    for i in range(3):
        r = pinned_b.get(f"/still/{i}")
        assert r.served_by == "b1", r
    # ...until b is not usable: then the pinned session moves (to pool a)
    cfg["pools"][1]["origins"][0]["state"] = "disabled"
    reload(lp, cfg)
    r = pinned_b.get("/moved")
    assert r.status == 200 and r.served_by in ("a1", "a2"), r
    assert log_entry(lp, "/moved")["affinity"] == "reassigned:disabled"


def test_off_standby_while_monitor_says_first_down(limpet, origin):
    """Pool a's origin fails its monitor: b serves; a passes again (rise):
    new sessions return to a."""
    a1, b1 = Flip(origin("a1")), origin("b1")
    cfg = lb_config([pool("a", a1, monitor="status"), pool("b", b1)], ["a", "b"],
                    affinity="cookie")
    cfg["monitors"] = [{"name": "status", "type": "http", "path": "/status",
                        "expected_body": "RUNNING", "interval": 0.2, "timeout": 0.5,
                        "retries": 1, "rise": 1}]
    lp = limpet(cfg)
    assert who(lp.port, 3) == {"a1": 3}
    a1.mode = "fail"
    deadline = time.monotonic() + 3
    while who(lp.port, 1, path="/poll") != {"b1": 1}:
        assert time.monotonic() < deadline, "pool b never took over"
        time.sleep(0.05)
    assert who(lp.port, 4, path="/down") == {"b1": 4}
    pinned_b = Session(lp.port)
    assert pinned_b.get("/pin").served_by == "b1"
    a1.mode = "pass"
    deadline = time.monotonic() + 3
    while who(lp.port, 1, path="/poll2") != {"a1": 1}:
        assert time.monotonic() < deadline, "new sessions never returned to pool a"
        time.sleep(0.05)
    assert who(lp.port, 4, path="/up") == {"a1": 4}
    assert pinned_b.get("/pinned").served_by == "b1"


def test_off_second_pool_only_while_first_has_nothing_usable(limpet, origin):
    """One origin of pool a down is not enough to use pool b."""
    a2, b1 = origin("a2"), origin("b1")
    lp = limpet(lb_config([pool("a", ("a1", dead()), a2), pool("b", b1)], ["a", "b"]))
    assert who(lp.port, 10) == {"a2": 10}
    assert not b1.requests


# --------------------------------------------------------------------------
# steering_policy "geo"
# --------------------------------------------------------------------------

def test_geo_region_client_goes_to_region_pool(limpet, origin):
    need_alias()
    eu1, main1 = origin("eu1"), origin("main1")
    cfg = lb_config([pool("eu", eu1), pool("main", main1)], ["main"], policy="geo",
                    region_pools={"EU": ["eu"]})
    cfg["client_regions"] = {"EU": ["127.0.0.2/32"]}
    lp = limpet(cfg)
    assert who(lp.port, 5, source="127.0.0.2", path="/eu") == {"eu1": 5}
    assert who(lp.port, 5, source="127.0.0.1", path="/def") == {"main1": 5}
    assert who(lp.port, 3, source="127.0.0.7", path="/other") == {"main1": 3}
    assert log_entry(lp, "/eu/0")["pool"] == "eu"
    # a keep-alive client of the region: every request to its pool
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10,
                                      source_address=("127.0.0.2", 0))
    for i in range(5):
        conn.request("GET", f"/ka/{i}")
        r = conn.getresponse()
        r.read()
        assert r.status == 200 and r.getheader("X-Served-By") == "eu1"
    conn.close()
    assert all(m.target.startswith(("/eu", "/ka")) for m in eu1.requests)


def test_geo_region_pool_unusable_falls_back_to_default_pools(limpet, origin):
    need_alias()
    main1 = origin("main1")
    cfg = lb_config([pool("eu", ("eu1", dead())), pool("main", main1)], ["main"],
                    policy="geo", region_pools={"EU": ["eu"]})
    cfg["client_regions"] = {"EU": ["127.0.0.2/32"]}
    lp = limpet(cfg)
    assert who(lp.port, 4, source="127.0.0.2") == {"main1": 4}


@pytest.mark.parametrize("narrow_first", [True, False], ids=["narrow-listed-first",
                                                              "wide-listed-first"])
def test_geo_longest_prefix_wins(limpet, origin, narrow_first):
    need_alias()
    wide1, narrow1, mid1, main1 = origin("wide1"), origin("narrow1"), origin("mid1"), origin("main1")
    regions = [("NARROW", ["127.0.0.3/32"]), ("WIDE", ["10.0.0.0/8", "127.0.0.0/8"]),
               ("MID", ["127.0.0.0/24"]), ("NOPOOLS", ["127.0.0.5/32"])]
    if not narrow_first:
        regions.reverse()
    cfg = lb_config([pool("wide", wide1), pool("narrow", narrow1), pool("mid", mid1),
                     pool("main", main1)], ["main"], policy="geo",
                    region_pools={"WIDE": ["wide"], "NARROW": ["narrow"], "MID": ["mid"]})
    cfg["client_regions"] = dict(regions)
    lp = limpet(cfg)
    assert who(lp.port, 3, source="127.0.0.3", path="/n") == {"narrow1": 3}
    assert who(lp.port, 3, source="127.0.0.1", path="/m") == {"mid1": 3}      # /24 beats /8
    assert who(lp.port, 3, source="127.0.1.1", path="/w") == {"wide1": 3}     # only /8
    # the client's region is NOPOOLS (/32): it has no region pools → default pools
    assert who(lp.port, 3, source="127.0.0.5", path="/d") == {"main1": 3}


def test_geo_ipv6_region(limpet, origin):
    v6, main1 = origin("v6pool1"), origin("main1")
    port = free_port()
    cfg = lb_config([pool("v6", v6), pool("main", main1)], ["main"], policy="geo",
                    region_pools={"LOOP6": ["v6"]},
                    listen=[{"address": f"127.0.0.1:{port}", "load_balancer": "www"},
                            {"address": f"[::1]:{port}", "load_balancer": "www"}])
    cfg["client_regions"] = {"LOOP6": ["::1/128"], "V4": ["127.0.0.0/8"]}
    lp = limpet(cfg)
    for i in range(3):
        r = get(port, f"/six/{i}", host="::1")
        assert r.status == 200 and r.served_by == "v6pool1", r
    assert who(port, 3, path="/four") == {"main1": 3}


# --------------------------------------------------------------------------
# steering_policy "random"
# --------------------------------------------------------------------------

@pytest.mark.parametrize("affinity", ["none", "cookie"])
def test_random_spreads_by_usable_weight(limpet, origin, affinity):
    """p1 usable weight 1 (a disabled weight-10 origin does not count),
    p2 usable weight 3 (1 + 2): new requests (affinity none, one keep-alive
    connection) or new cookie sessions (fresh connections) ~25 % / ~75 %."""
    x, xd, y, z = origin("x"), origin("xd"), origin("y"), origin("z")
    cfg = lb_config([pool("p1", ("x", x.address, {"weight": 1}),
                          ("xd", xd.address, {"weight": 10, "state": "disabled"})),
                     pool("p2", ("y", y.address, {"weight": 1}), ("z", z.address, {"weight": 2}))],
                    ["p1", "p2"], policy="random", affinity=affinity, access="off")
    lp = limpet(cfg)
    n = 400
    counts = collections.Counter()
    if affinity == "none":
        conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
        for i in range(n):             # session_affinity none: each request steered anew
            conn.request("GET", f"/r/{i}")
            r = conn.getresponse()
            r.read()
            assert r.status == 200
            counts[r.getheader("X-Served-By")] += 1
        conn.close()
    else:
        for i in range(n):             # every fresh cookie-less client is a new session
            r = get(lp.port, f"/r/{i}")
            assert r.status == 200 and r.set_cookie() is not None
            counts[r.served_by] += 1
    share_p1 = counts["x"] / n
    assert 0.15 <= share_p1 <= 0.35, counts
    assert counts["y"] > 0 and counts["z"] > 0, counts
    assert not xd.requests


def test_random_skips_pool_without_usable_origin(limpet, origin):
    y = origin("y")
    cfg = lb_config([pool("p1", ("x", dead(), {"weight": 5})), pool("p2", y)],
                    ["p1", "p2"], policy="random", affinity="none")
    lp = limpet(cfg)
    assert who(lp.port, 12) == {"y": 12}


# --------------------------------------------------------------------------
# fallback pool, and 503 when nothing is usable
# --------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["off", "random", "geo"])
def test_fallback_pool_when_default_pools_down(limpet, origin, policy):
    sorry = origin("sorry1")
    cfg = lb_config([pool("a", ("a1", dead())), pool("b", ("b1", dead())),
                     pool("eu", ("eu1", dead())), pool("sorry", sorry)],
                    ["a", "b"], policy=policy, fallback="sorry",
                    region_pools={"EU": ["eu"]})
    cfg["client_regions"] = {"EU": ["127.0.0.0/8"]}
    lp = limpet(cfg)
    t0 = time.monotonic()
    assert who(lp.port, 5, path="/fb") == {"sorry1": 5}
    assert time.monotonic() - t0 < 3
    e = log_entry(lp, "/fb/4")
    assert e["pool"] == "sorry", e


def test_fallback_pool_used_only_when_defaults_have_nothing(limpet, origin):
    a1, sorry = origin("a1"), origin("sorry1")
    cfg = lb_config([pool("a", a1), pool("sorry", sorry)], ["a"], fallback="sorry",
                    affinity="cookie")
    lp = limpet(cfg)
    assert who(lp.port, 4) == {"a1": 4}
    cfg["pools"][0]["origins"][0]["state"] = "disabled"
    reload(lp, cfg)
    s = Session(lp.port)
    assert s.get("/fb").served_by == "sorry1"
    assert log_entry(lp, "/fb")["affinity"] == "fallback-pool"
    cfg["pools"][0]["origins"][0]["state"] = "enabled"
    reload(lp, cfg)
    assert who(lp.port, 4, path="/again") == {"a1": 4}
    # SPEC §2: a pinned session keeps its origin, whatever its pool, while usable
    assert s.get("/fb-pinned").served_by == "sorry1"


def check_503(r, elapsed):
    assert r.status == 503, r
    ra = r.header("Retry-After")
    assert ra is not None and ra.strip().isdigit() and int(ra) >= 1, r.headers
    assert 0 < len(r.body) <= 512, f"body not short: {len(r.body)} bytes"
    assert elapsed < 2.0, f"503 took {elapsed:.2f}s"


@pytest.mark.parametrize("how", ["disabled", "refused"])
def test_nothing_usable_anywhere_503(limpet, origin, how):
    if how == "disabled":
        os_ = [origin(f"o{i}") for i in range(3)]
        addrs = [(o.name, o.address, {"state": "disabled"}) for o in os_]
    else:
        os_ = []
        addrs = [(f"o{i}", dead()) for i in range(3)]
    cfg = lb_config([pool("a", addrs[0]), pool("b", addrs[1]), pool("sorry", addrs[2])],
                    ["a", "b"], fallback="sorry", affinity="cookie")
    lp = limpet(cfg)
    for i in range(4):
        t0 = time.monotonic()
        r = get(lp.port, f"/none/{i}")
        check_503(r, time.monotonic() - t0)
        assert r.set_cookie() is None, "an affinity cookie on a 503"
    t0 = time.monotonic()
    r = get(lp.port, "/none-post", method="POST", body=b"p" * 5000)
    check_503(r, time.monotonic() - t0)
    assert all(not o.requests for o in os_)
    e = log_entry(lp, "/none/0")
    assert e["status"] == 503, e


def test_random_weight_of_unreachable_origin_does_not_count(limpet, origin):
    """x refuses connections (no monitor: live traffic makes it unhealthy,
    SPEC §5), so p1's usable weight is x2's 1 against p2's 2: ~33 % / ~67 %."""
    x2, y = origin("x2"), origin("y")
    cfg = lb_config([pool("p1", ("x", dead(), {"weight": 1}), ("x2", x2.address, {"weight": 1})),
                     pool("p2", ("y", y.address, {"weight": 2}))],
                    ["p1", "p2"], policy="random", affinity="none", access="off")
    lp = limpet(cfg)
    n = 600
    counts = collections.Counter()
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    for i in range(n):
        conn.request("GET", f"/r/{i}")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        counts[r.getheader("X-Served-By")] += 1
    conn.close()
    assert 0.23 <= counts["x2"] / n <= 0.43, counts


def test_off_draining_first_pool_gets_no_new_sessions(limpet, origin):
    """A draining origin never receives new sessions: with pool a's only
    origin draining, new sessions start on the standby pool b."""
    a1, b1 = origin("a1"), origin("b1")
    lp = limpet(lb_config([pool("a", ("a1", a1.address, {"state": "draining"})), pool("b", b1)],
                          ["a", "b"], affinity="cookie"))
    for i in range(4):
        r = Session(lp.port).get(f"/drn/{i}")
        assert r.status == 200 and r.served_by == "b1", r
    assert not a1.requests


# --------------------------------------------------------------------------
# steering policies combined with session affinity
# --------------------------------------------------------------------------

def test_geo_session_pinned_in_region_pool(limpet, origin):
    """A cookie session that geo steering started in the region pool stays on
    its origin there (the region pool is one of the load balancer's pools)."""
    need_alias()
    eu1, eu2, main1 = origin("eu1"), origin("eu2"), origin("main1")
    cfg = lb_config([pool("eu", eu1, eu2), pool("main", main1)], ["main"], policy="geo",
                    affinity="cookie", region_pools={"EU": ["eu"]})
    cfg["client_regions"] = {"EU": ["127.0.0.2/32"]}
    lp = limpet(cfg)
    s = Session(lp.port, source="127.0.0.2")
    first = s.get("/geo/0")
    assert first.status == 200 and first.served_by in ("eu1", "eu2"), first
    assert s.cookie
    for i in range(1, 6):
        r = s.get(f"/geo/{i}")
        assert r.status == 200 and r.served_by == first.served_by, \
            f"request {i} left the session's origin: {r.served_by} != {first.served_by}"
        assert r.set_cookie() is None, f"request {i}: cookie re-issued {r.set_cookie()}"
    e = log_entry(lp, "/geo/3")
    assert e["affinity"] == "hit", e


@pytest.mark.parametrize("mode", ["ip", "ip_cookie"])
def test_geo_applies_to_ip_hash_affinity(limpet, origin, mode):
    """SPEC §2: steering_policy chooses the pool of a new session in every
    affinity mode; the IP hash then picks the origin inside that pool."""
    need_alias()
    eu1, main1 = origin("eu1"), origin("main1")
    cfg = lb_config([pool("eu", eu1), pool("main", main1)], ["main"], policy="geo",
                    affinity=mode, region_pools={"EU": ["eu"]})
    cfg["client_regions"] = {"EU": ["127.0.0.2/32"]}
    lp = limpet(cfg)
    assert who(lp.port, 3, source="127.0.0.2", path="/eu") == {"eu1": 3}
    assert who(lp.port, 3, source="127.0.0.1", path="/main") == {"main1": 3}
