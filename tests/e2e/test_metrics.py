"""GET /metrics (SPEC §6): Prometheus text exposition format, checked with a
small strict parser, and counters that move with traffic."""
import math
import re
import socket
import time

from harness import Reply, admin_client, basic_config, http_request, with_admin

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL}(?:,{LABEL})*)?\}})? (\S+)(?: (-?\d+))?$")
LABEL_ITEM = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_prometheus(text):
    """{family: {"type", "help", "samples": [(name, labels dict, value)]}}.
    Raises AssertionError on anything the text format (0.0.4) does not allow:
    a sample before its family's TYPE, a family declared twice or split,
    a bad name, label or value, a histogram without +Inf, _sum and _count."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families, current = {}, None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n}: {line!r}"
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and help_, where
            assert name not in families or not families[name].get("help"), f"HELP twice, {where}"
            families.setdefault(name, {"samples": []})["help"] = help_
            continue
        if line.startswith("# TYPE "):
            name, _, type_ = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and type_ in TYPES, where
            fam = families.setdefault(name, {"samples": []})
            assert "type" not in fam and not fam["samples"], f"TYPE late or twice, {where}"
            fam["type"] = type_
            current = name
            continue
        assert line and not line.startswith("#"), f"unexpected, {where}"
        m = SAMPLE.match(line)
        assert m, f"not a sample, {where}"
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(3)
        labels = dict(LABEL_ITEM.findall(labels_text))
        v = float(value.replace("+Inf", "inf"))
        assert not math.isnan(v), where
        fam_name = name
        if families.get(current, {}).get("type") == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                if name == current + suffix:
                    fam_name = current
        assert fam_name == current, f"sample outside its family block, {where}"
        families[current]["samples"].append((name, labels, v))
    for name, fam in families.items():
        assert "type" in fam and "help" in fam, name
        if fam["type"] == "counter":
            assert all(v >= 0 for _, _, v in fam["samples"]), name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    series = {}
    for sname, labels, v in samples:
        key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": []})
        if sname == name + "_bucket":
            s["buckets"].append((float(labels["le"].replace("+Inf", "inf")), v))
        else:
            s[sname[len(name):]] = v
    for key, s in series.items():
        b = s["buckets"]
        assert b and b[-1][0] == math.inf, f"{name}{key}: no +Inf bucket"
        assert [le for le, _ in b] == sorted(le for le, _ in b), f"{name}{key}: le order"
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), f"{name}{key}: not cumulative"
        assert s.get("_count") == b[-1][1] and "_sum" in s, f"{name}{key}: _count/_sum"


def value(families, family, sample=None, **labels):
    """The value of the one sample of family with these labels."""
    found = [v for n, l, v in families[family]["samples"]
             if n == (sample or family) and all(l.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (family, labels, found)
    return found[0]


def scrape(api):
    r = api.get("/metrics")
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    return parse_prometheus(r.body.decode())


def test_parser_rejects_bad_text():
    for bad in ("x 1\n", "# TYPE x counter\nx{a=b} 1\n", "# HELP x h\n# TYPE x counter\nx 1",
                "# HELP x h\n# TYPE x counter\ny 1\n",
                "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n"):
        try:
            parse_prometheus(bad)
        except AssertionError:
            continue
        raise AssertionError(f"accepted: {bad!r}")


def test_metrics_format_and_families(limpet, origin):
    lp = limpet(with_admin(basic_config([origin("o1"), origin("o2")],
                                        lb_extra={"session_affinity": "cookie"})))
    fams = scrape(admin_client(lp))
    expected = {
        "limpet_requests_total": "counter",
        "limpet_affinity_decisions_total": "counter",
        "limpet_request_duration_seconds": "histogram",
        "limpet_origin_requests_total": "counter",
        "limpet_origin_connect_failures_total": "counter",
        "limpet_origin_up": "gauge",
        "limpet_origin_state": "gauge",
        "limpet_origin_weight": "gauge",
        "limpet_origin_active_connections": "gauge",
        "limpet_origin_sessions_estimate": "gauge",
        "limpet_pool_queued": "gauge",
        "limpet_pool_queue_rejections_total": "counter",
        "limpet_health_checks_total": "counter",
        "limpet_health_state_changes_total": "counter",
        "limpet_client_connections": "gauge",
        "limpet_client_connections_accepted_total": "counter",
        "limpet_reloads_total": "counter",
        "limpet_reload_failures_total": "counter",
        "limpet_uptime_seconds": "gauge",
        "limpet_build_info": "gauge",
    }
    for name, type_ in expected.items():
        assert fams[name]["type"] == type_, name
    assert value(fams, "limpet_origin_up", pool="app", origin="o1") == 1
    assert value(fams, "limpet_pool_queued", pool="app") == 0
    assert value(fams, "limpet_pool_queue_rejections_total", pool="app", reason="full") == 0
    assert value(fams, "limpet_origin_state", pool="app", origin="o2", state="enabled") == 1
    assert value(fams, "limpet_origin_state", pool="app", origin="o2", state="draining") == 0
    reasons = {l["reason"] for _, l, _ in fams["limpet_affinity_decisions_total"]["samples"]}
    assert {"new", "hit", "reassigned:drained", "failover:temporary", "fallback-pool"} <= reasons
    assert {l["code_class"] for _, l, _ in fams["limpet_requests_total"]["samples"]} == \
        {"none", "1xx", "2xx", "3xx", "4xx", "5xx"}


def test_counters_move_with_traffic(limpet, origin):
    o1, o2 = origin("o1"), origin("o2")
    cfg = basic_config([o1, o2], threads=2, lb_extra={"session_affinity": "cookie"})
    lp = limpet(with_admin(cfg))
    api = admin_client(lp)
    before = scrape(api)
    assert value(before, "limpet_requests_total", load_balancer="www", code_class="2xx") == 0

    cookies = []
    for _ in range(4):      # four sessions, three requests each
        r = http_request(lp.port)
        cookie = r.header("Set-Cookie").split(";")[0]
        cookies.append(cookie)
        for _ in range(2):
            assert http_request(lp.port, headers={"Cookie": cookie}).status == 200
    o1.handler = o2.handler = lambda req: Reply(503, "down")
    for c in cookies[:2]:
        assert http_request(lp.port, headers={"Cookie": c}).status == 503

    after = scrape(api)
    assert value(after, "limpet_requests_total", load_balancer="www", code_class="2xx") == 12
    assert value(after, "limpet_requests_total", load_balancer="www", code_class="5xx") == 2
    per_origin = sum(value(after, "limpet_origin_requests_total", pool="app", origin=o,
                           code_class="2xx") for o in ("o1", "o2"))
    assert per_origin == 12
    assert value(after, "limpet_affinity_decisions_total", load_balancer="www", reason="new") == 4
    assert value(after, "limpet_affinity_decisions_total", load_balancer="www", reason="hit") == 10
    sessions = sum(value(after, "limpet_origin_sessions_estimate", pool="app", origin=o)
                   for o in ("o1", "o2"))
    assert sessions == 4
    assert value(after, "limpet_request_duration_seconds", "limpet_request_duration_seconds_count",
                 load_balancer="www") == 14
    assert value(after, "limpet_client_connections_accepted_total") >= 14
    assert value(after, "limpet_client_connections") >= 0

    api.patch("/api/v1/pools/app/origins/o2", {"state": "draining"})
    api.post("/api/v1/reload")         # no state file: the reload drops the drain
    again = scrape(api)
    assert value(again, "limpet_origin_state", pool="app", origin="o2", state="draining") == 0
    assert value(again, "limpet_reloads_total") == 1
    api.patch("/api/v1/pools/app/origins/o2", {"state": "disabled"})
    again = scrape(api)
    assert value(again, "limpet_origin_state", pool="app", origin="o2", state="disabled") == 1
    assert value(again, "limpet_origin_state", pool="app", origin="o2", state="enabled") == 0


def test_accepted_counts_a_silent_connection_after_its_handover(limpet, origin):
    """limpet_client_connections_accepted_total counts a connection when the
    kernel hands it over: a client that speaks at once, one that stays silent
    a second after its handshake (the listeners defer accepting)."""
    lp = limpet(with_admin(basic_config([origin("o1")], threads=1)))
    api = admin_client(lp)
    # the harness's readiness probe (connect, then close at once) is handed over at
    # its FIN; it may still be on its way to the worker: count it before the base
    deadline = time.monotonic() + 5
    while value(scrape(api), "limpet_client_connections_accepted_total") < 1:
        assert time.monotonic() < deadline, "the readiness probe was never taken"
        time.sleep(0.05)
    base = value(scrape(api), "limpet_client_connections_accepted_total")
    silent = socket.create_connection(("127.0.0.1", lp.port))
    try:
        time.sleep(0.4)
        assert value(scrape(api), "limpet_client_connections_accepted_total") == base
        assert http_request(lp.port).status == 200      # speaks at once: taken at once
        assert value(scrape(api), "limpet_client_connections_accepted_total") == base + 1
        deadline = time.monotonic() + 5
        while value(scrape(api), "limpet_client_connections_accepted_total") < base + 2:
            assert time.monotonic() < deadline, "the silent connection was never taken"
            time.sleep(0.1)
    finally:
        silent.close()
