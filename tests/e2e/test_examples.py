"""examples/*.json: every example passes `limpet -t` from the repository root,
starts, and does the affinity it describes (issue 3, examples/README.md)."""
import copy
import json
import subprocess
from pathlib import Path

import pytest

from affinity_helpers import Session, get, loopback_alias_works, origin_request
from harness import LIMPET, REPO, Reply, free_port, require_binary

EXAMPLES = REPO / "examples"
FILES = sorted(EXAMPLES.glob("*.json"))

# the seed scenarios of issue 3, each with its example
SCENARIOS = {
    "jira-routeid.json": ("app_cookie", "route", "ROUTEID"),
    "tomcat-jvmroute.json": ("app_cookie", "route", "JSESSIONID"),
    "haproxy-jsessionid-prefix.json": ("app_cookie", "prefix", "JSESSIONID"),
    "guidewire-gwre.json": ("header", None, "gwre"),
    "ibm-cis-ip-cookie.json": ("ip_cookie", None, None),
    "jira-ip-hash.json": ("ip", None, None),
    "cloudbees-sticky.json": ("cookie", None, None),
}


def test_every_scenario_has_an_example():
    names = {f.name for f in FILES}
    assert set(SCENARIOS) <= names, set(SCENARIOS) - names
    assert (EXAMPLES / "README.md").is_file()
    assert (EXAMPLES / "affinity.key").is_file()
    for name, (mode, app_mode, cookie) in SCENARIOS.items():
        lb = json.loads((EXAMPLES / name).read_text())["load_balancers"][0]
        assert lb["session_affinity"] == mode, name
        attrs = lb.get("session_affinity_attributes", {})
        if app_mode:
            assert attrs["app_cookie"]["mode"] == app_mode
            assert attrs["app_cookie"]["name"] == cookie
        elif cookie:
            assert attrs["cookie_name"] == cookie
    ibm = json.loads((EXAMPLES / "ibm-cis-ip-cookie.json").read_text())
    a = ibm["load_balancers"][0]["session_affinity_attributes"]
    assert {"samesite", "secure", "drain_duration", "zero_downtime_failover"} <= set(a)
    assert ibm["load_balancers"][0]["session_affinity_ttl"] > 0
    assert any(o.get("state") == "draining" for p in ibm["pools"] for o in p["origins"])
    gw = json.loads((EXAMPLES / "guidewire-gwre.json").read_text())
    assert gw["load_balancers"][0]["session_affinity_attributes"]["headers"] == ["x-gwre-session"]


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_example_passes_config_check(path):
    require_binary()
    rel = path.relative_to(REPO)
    p = subprocess.run([str(LIMPET), "-t", "-c", str(rel)], cwd=str(REPO),
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == f"{rel}: ok", p.stdout
    # relative secret_file paths are opened from limpet's working directory:
    # the examples are meant to be run from the repository root
    cfg = json.loads(path.read_text())
    if "secret_file" in cfg:
        key = REPO / cfg["secret_file"]
        assert key.is_file(), f"{cfg['secret_file']} not found from the repository root"


def route_of(o):
    return o.get("route", o["name"])


def make_origins(origin, cfg):
    """A recording origin per configured origin (same name), answering the
    monitors' /status and setting the application's session cookie on /login
    (JSESSIONID with the origin's route, like Tomcat with jvmRoute)."""
    made = {}
    for pool in cfg["pools"]:
        for o in pool["origins"]:
            rec = origin(o["name"])
            route = route_of(o)

            def handler(req, rec=rec, route=route):
                if req.target == "/status":
                    return Reply(200, '{"state":"RUNNING"}')
                h = [("X-Served-By", rec.name)]
                if req.target == "/login":
                    h.append(("Set-Cookie", f"JSESSIONID=ABC123.{route}; Path=/; HttpOnly"))
                return Reply(200, rec.name, headers=h)
            rec.handler = handler
            o["address"] = rec.address
            made[o["name"]] = rec
    return made


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_example_runs(path, limpet, origin):
    cfg = json.loads(path.read_text())
    run = copy.deepcopy(cfg)
    for l in run["listen"]:
        l["address"] = f"127.0.0.1:{free_port()}"
    run.pop("admin", None)
    if "secret_file" in run:
        run["secret_file"] = str(REPO / run["secret_file"])
    run["log"] = {"access": "access.log"}
    run.setdefault("timeouts", {})["grace"] = 5
    recs = make_origins(origin, run)
    lp = limpet(run)
    assert "secret_file not set" not in lp.stderr_text()
    lb = run["load_balancers"][0]
    mode = lb.get("session_affinity", "none")
    attrs = lb.get("session_affinity_attributes", {})
    cookie_name = attrs.get("cookie_name", "__limpet")
    draining = {o["name"] for p in run["pools"] for o in p["origins"]
                if o.get("state") in ("draining", "disabled")}
    default_origins = [o for name in lb["default_pools"] for p in run["pools"]
                       if p["name"] == name for o in p["origins"]]

    if mode in ("cookie", "ip_cookie") or (mode == "header"):
        s = Session(lp.port, cookie_name=cookie_name)
        r = s.get("/")
        assert r.status == 200 and r.set_cookie(cookie_name) is not None, r.headers
        home = r.served_by
        assert home not in draining
        for i in range(10):
            r = s.get(f"/f/{i}")
            assert r.served_by == home and r.set_cookie(cookie_name) is None
    if mode == "header":
        for hname in attrs["headers"]:
            for i in range(10):
                h = {hname: f"09d0fbf0-243c-4337-a582-{i:012x}"}
                first = get(lp.port, "/api", h)
                assert first.status == 200 and first.header("Set-Cookie") is None
                assert get(lp.port, "/api", h).served_by == first.served_by
    if mode == "ip":
        homes = {get(lp.port, "/ip").served_by for _ in range(8)}
        assert len(homes) == 1
    if mode in ("ip", "ip_cookie") and loopback_alias_works():
        homes = set()
        for n in range(2, 26):
            src = f"127.0.0.{n}"
            a, b = get(lp.port, "/a", source=src), get(lp.port, "/b", source=src)
            assert a.status == 200 and a.served_by == b.served_by
            homes.add(a.served_by)
        assert not homes & draining, "a draining origin never receives new sessions"
        assert len(homes) >= 2
    if mode == "app_cookie":
        ac = attrs["app_cookie"]
        if ac.get("mode", "prefix") == "route":
            sep = ac.get("separator", ".")
            for o in default_origins:
                for i in range(4):
                    value = f"DDFACF910F0F807930AE2A382956018F{sep}{route_of(o)}" \
                        if ac["name"] != "ROUTEID" else f"{sep}{route_of(o)}"
                    path = f"/route/{o['name']}/{i}"
                    r = get(lp.port, path, {"Cookie": f"{ac['name']}={value}"})
                    assert r.served_by == o["name"], (value, r.served_by)
                    _, req = origin_request(list(recs.values()), path)
                    assert req.header("Cookie") == f"{ac['name']}={value}"
        else:
            s = Session(lp.port, cookie_name=ac["name"])
            r = s.get("/login")
            home = r.served_by
            value = s.cookie
            assert value.endswith(ac.get("separator", "~") + "ABC123." + home), value
            for i in range(8):
                path = f"/p/{i}"
                assert s.get(path).served_by == home
                _, req = origin_request(list(recs.values()), path)
                assert req.header("Cookie") == f"JSESSIONID=ABC123.{home}"
    entries = lp.wait_access_log(2)
    assert entries and all(e["load_balancer"] == lb["name"] for e in entries)
