"""Origin steering within a pool and pool order (SPEC §2)."""
import collections
import http.client
import threading

from harness import Reply, basic_config, free_port


def served_by(port, n, path="/s"):
    """n sequential requests on one keep-alive connection -> Counter of X-Served-By."""
    counts = collections.Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(n):
        conn.request("GET", f"{path}/{i}")
        r = conn.getresponse()
        r.read()
        assert r.status == 200, f"request {i}: {r.status}"
        counts[r.getheader("X-Served-By")] += 1
    conn.close()
    return counts


def test_round_robin_even(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    lp = limpet(basic_config(os_, steering="round_robin", threads=1))
    counts = served_by(lp.port, 300)
    assert counts == {"s1": 100, "s2": 100, "s3": 100}
    assert [len(o.requests) for o in os_] == [100, 100, 100]


def test_round_robin_is_the_default(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2)]
    lp = limpet(basic_config(os_, threads=1))
    assert served_by(lp.port, 40) == {"s1": 20, "s2": 20}


def test_round_robin_interleaves(limpet, origin):
    """Smooth round robin: consecutive requests go to different origins."""
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    lp = limpet(basic_config(os_, steering="round_robin", threads=1))
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    seq = []
    for i in range(9):
        conn.request("GET", f"/i/{i}")
        r = conn.getresponse()
        r.read()
        seq.append(r.getheader("X-Served-By"))
    conn.close()
    assert all(a != b for a, b in zip(seq, seq[1:])), seq
    assert sorted(seq[:3]) == ["s1", "s2", "s3"]


def test_weighted_round_robin(limpet, origin):
    a, b = origin("a"), origin("b")
    cfg = basic_config([{"name": "a", "address": a.address, "weight": 1},
                        {"name": "b", "address": b.address, "weight": 2}],
                       steering="round_robin", threads=1)
    lp = limpet(cfg)
    assert served_by(lp.port, 300) == {"a": 100, "b": 200}


def test_weight_zero_and_disabled_never_chosen(limpet, origin):
    a, b, c = origin("a"), origin("b"), origin("c")
    cfg = basic_config([{"name": "a", "address": a.address},
                        {"name": "b", "address": b.address, "weight": 0},
                        {"name": "c", "address": c.address, "state": "disabled"}],
                       steering="round_robin", threads=1)
    lp = limpet(cfg)
    assert served_by(lp.port, 30) == {"a": 30}
    assert not b.requests and not c.requests


def test_random_reaches_every_origin(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2, 3)]
    lp = limpet(basic_config(os_, steering="random", threads=1))
    counts = served_by(lp.port, 300)
    assert set(counts) == {"s1", "s2", "s3"}
    assert min(counts.values()) >= 40, counts   # expected ~100 each


def test_least_connections_reaches_every_origin(limpet, origin):
    slow = lambda name: (lambda req: Reply(200, name, headers=[("X-Served-By", name)], delay=0.5))
    os_ = [origin(f"s{i}", handler=slow(f"s{i}")) for i in (1, 2, 3)]
    lp = limpet(basic_config(os_, steering="least_connections", threads=1))
    results = []
    lock = threading.Lock()

    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
        conn.request("GET", f"/lc/{i}")
        r = conn.getresponse()
        r.read()
        with lock:
            results.append((r.status, r.getheader("X-Served-By")))
        conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert len(results) == 9 and all(s == 200 for s, _ in results), results
    counts = collections.Counter(n for _, n in results)
    assert set(counts) == {"s1", "s2", "s3"}, counts
    # 9 overlapping requests over 3 origins: least connections spreads them
    assert max(counts.values()) <= 4, counts


def test_least_connections_sequential_all_succeed(limpet, origin):
    os_ = [origin(f"s{i}") for i in (1, 2)]
    lp = limpet(basic_config(os_, steering="least_connections", threads=1))
    counts = served_by(lp.port, 20)
    assert sum(counts.values()) == 20 and set(counts) <= {"s1", "s2"}


def _two_pool_config(first, second, fallback=None):
    pools = [{"name": "primary", "origins": [{"name": n, "address": a} for n, a in first]},
             {"name": "standby", "origins": [{"name": n, "address": a} for n, a in second]}]
    lb = {"name": "www", "default_pools": ["primary", "standby"]}
    if fallback:
        pools.append({"name": "sorry", "origins": [{"name": n, "address": a} for n, a in fallback]})
        lb["fallback_pool"] = "sorry"
    return {"listen": [{"address": f"127.0.0.1:{free_port()}", "load_balancer": "www"}],
            "threads": 1, "timeouts": {"grace": 5}, "log": {"access": "off"},
            "pools": pools, "load_balancers": [lb]}


def test_default_pools_in_order(limpet, origin):
    p, s = origin("p1"), origin("s1")
    lp = limpet(_two_pool_config([("p1", p.address)], [("s1", s.address)]))
    assert served_by(lp.port, 10) == {"p1": 10}
    assert not s.requests


def test_standby_pool_when_primary_down(limpet, origin):
    s = origin("s1")
    lp = limpet(_two_pool_config([("p1", f"127.0.0.1:{free_port()}")], [("s1", s.address)]))
    assert served_by(lp.port, 10) == {"s1": 10}


def test_fallback_pool_when_default_pools_down(limpet, origin):
    f = origin("sorry1")
    lp = limpet(_two_pool_config([("p1", f"127.0.0.1:{free_port()}")],
                                 [("s1", f"127.0.0.1:{free_port()}")],
                                 fallback=[("sorry1", f.address)]))
    assert served_by(lp.port, 5) == {"sorry1": 5}


def _served_from(port, source, path):
    """One request on a new connection from the loopback address `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, f"{source} {path}: {r.status}"
        return r.getheader("X-Served-By")
    finally:
        conn.close()


def test_hash_keeps_each_client_on_one_origin(limpet, origin):
    """origin_steering hash: each client address keeps its origin, request after
    request; when that origin is gone, each of its clients moves to one other
    origin and stays there (no bouncing between the rest), and the other
    clients do not move."""
    os_ = {f"s{i}": origin(f"s{i}") for i in (1, 2, 3, 4)}
    lp = limpet(basic_config(list(os_.values()), steering="hash", threads=1))
    clients = [f"127.0.0.{i}" for i in range(10, 34)]
    home = {}
    for c in clients:
        seen = {_served_from(lp.port, c, f"/home/{j}") for j in range(3)}
        assert len(seen) == 1, f"{c} was served by {seen}"
        home[c] = seen.pop()
    assert len(set(home.values())) >= 3, home        # 24 addresses spread out
    gone = collections.Counter(home.values()).most_common(1)[0][0]
    os_[gone].stop()
    for c in clients:
        seen = [_served_from(lp.port, c, f"/after/{j}") for j in range(4)]
        if home[c] != gone:
            assert seen == [home[c]] * 4, f"{c} moved from {home[c]}: {seen}"
        else:
            assert gone not in seen and len(set(seen)) == 1, f"{c} (was on {gone}): {seen}"
