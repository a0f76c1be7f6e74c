"""Several limpet instances with the same config and secret_file route the
same sessions identically (SPEC §2 secret_file, §3 consistent hashing, §7)."""
import copy

from affinity_helpers import (COOKIE, KEY_A, Session, get, log_entry, loopback_alias_works,
                              write_secret)
from harness import Reply, free_port

import pytest


def multi_config(origins, secret, order=None):
    """One pool, four load balancers on four listeners: cookie, header, ip,
    app_cookie prefix."""
    entries = [{"name": o.name, "address": o.address} for o in origins]
    if order:
        entries = [entries[i] for i in order]
    lbs = [
        {"name": "cookie", "default_pools": ["app"], "session_affinity": "cookie"},
        {"name": "header", "default_pools": ["app"], "session_affinity": "header",
         "session_affinity_attributes": {"headers": ["x-gwre-session"]}},
        {"name": "ip", "default_pools": ["app"], "session_affinity": "ip"},
        {"name": "prefix", "default_pools": ["app"], "session_affinity": "app_cookie",
         "session_affinity_attributes": {"app_cookie": {"name": "JSESSIONID",
                                                        "mode": "prefix"}}},
    ]
    return {
        "listen": [{"address": f"127.0.0.1:{free_port()}", "load_balancer": lb["name"]}
                   for lb in lbs],
        "threads": 2,
        "secret_file": str(secret),
        "timeouts": {"grace": 5},
        "log": {"access": "access.log"},
        "pools": [{"name": "app", "origin_steering": "round_robin", "origins": entries}],
        "load_balancers": lbs,
    }


def ports(lp):
    return {l["load_balancer"]: int(l["address"].rsplit(":", 1)[1]) for l in lp.config["listen"]}


def twin(cfg):
    """The same config on other listen ports."""
    c = copy.deepcopy(cfg)
    for l in c["listen"]:
        l["address"] = f"127.0.0.1:{free_port()}"
    return c


def start_twins(limpet, origin, tmp_path, order_b=None):
    os_ = [origin(f"s{i}") for i in (1, 2, 3, 4)]
    for o in os_:
        def handler(req, o=o):
            h = [("X-Served-By", o.name)]
            if req.target == "/login":
                h.append(("Set-Cookie", f"JSESSIONID=sess-{o.name}; Path=/"))
            return Reply(200, o.name, headers=h)
        o.handler = handler
    secret = write_secret(tmp_path / "affinity.key", KEY_A)
    cfg_a = multi_config(os_, secret)
    cfg_b = twin(cfg_a) if order_b is None else multi_config(os_, secret, order=order_b)
    a = limpet(cfg_a, name="a")
    b = limpet(cfg_b, name="b")
    return os_, a, b


def test_cookies_route_identically(limpet, origin, tmp_path):
    os_, a, b = start_twins(limpet, origin, tmp_path)
    pa, pb = ports(a)["cookie"], ports(b)["cookie"]
    for i in range(12):
        s = Session(pa)
        home = s.get("/a").served_by
        s.port = pb                      # the next request reaches the other instance
        for j in range(3):
            r = s.get(f"/b/{i}/{j}")
            assert r.status == 200 and r.served_by == home, (i, home, r.served_by)
            assert r.set_cookie() is None, "a cookie of the twin instance is valid as is"
        assert log_entry(b, f"/b/{i}/0")["affinity"] == "hit"
        s.port = pa
        assert s.get("/a-again").served_by == home


def test_headers_route_identically(limpet, origin, tmp_path):
    os_, a, b = start_twins(limpet, origin, tmp_path)
    pa, pb = ports(a)["header"], ports(b)["header"]
    homes = set()
    for i in range(60):
        h = {"x-gwre-session": f"session-{i}"}
        ra, rb = get(pa, "/h", h), get(pb, "/h", h)
        assert ra.served_by == rb.served_by, i
        homes.add(ra.served_by)
    assert len(homes) == 4


@pytest.mark.skipif(not loopback_alias_works(), reason="cannot bind 127.0.0.N")
def test_client_addresses_route_identically(limpet, origin, tmp_path):
    os_, a, b = start_twins(limpet, origin, tmp_path)
    pa, pb = ports(a)["ip"], ports(b)["ip"]
    homes = set()
    for n in range(2, 42):
        src = f"127.0.0.{n}"
        ra, rb = get(pa, "/ip", source=src), get(pb, "/ip", source=src)
        assert ra.served_by == rb.served_by, src
        homes.add(ra.served_by)
    assert len(homes) >= 3


def test_app_cookie_prefixes_identical(limpet, origin, tmp_path):
    os_, a, b = start_twins(limpet, origin, tmp_path)
    pa, pb = ports(a)["prefix"], ports(b)["prefix"]
    for _ in range(4):
        r = get(pa, "/login")
        value = r.set_cookie("JSESSIONID").value
        assert value.endswith(f"~sess-{r.served_by}")
        for j in range(3):
            assert get(pb, "/x", {"Cookie": f"JSESSIONID={value}"}).served_by == r.served_by


def test_restart_keeps_sessions(limpet, origin, tmp_path):
    """Same secret_file: cookies survive a restart."""
    os_, a, b = start_twins(limpet, origin, tmp_path)
    pa = ports(a)["cookie"]
    sessions = [Session(pa) for _ in range(6)]
    homes = [s.get("/").served_by for s in sessions]
    assert a.stop() == 0
    a2 = limpet(a.config, name="a2")
    for s, home in zip(sessions, homes):
        r = s.get("/after-restart")
        assert r.served_by == home and r.set_cookie() is None


def test_hash_independent_of_origin_order(limpet, origin, tmp_path):
    """Two instances whose configs list the same origins in another order
    still hash header values and addresses to the same origins (Maglev
    permutations come from the origins' names)."""
    os_, a, b = start_twins(limpet, origin, tmp_path, order_b=[2, 0, 3, 1])
    pa, pb = ports(a)["header"], ports(b)["header"]
    for i in range(40):
        h = {"x-gwre-session": f"s-{i}"}
        assert get(pa, "/h", h).served_by == get(pb, "/h", h).served_by, i
    # and limpet's cookies, which name origins by a key of their name
    s = Session(ports(a)["cookie"])
    home = s.get("/").served_by
    s.port = ports(b)["cookie"]
    assert s.get("/").served_by == home
