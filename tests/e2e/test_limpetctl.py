"""build/limpetctl (SPEC §6): every command's output and exit code (0 ok,
1 API or connection error, 2 usage), --json, --token-file, several --admin,
and `probe` against limpet and against a plain origin."""
import json
import re

import pytest

from harness import (Reply, admin_client, basic_config, free_port, http_request, limpetctl,
                     with_admin)


@pytest.fixture
def setup(limpet, origin):
    os_ = [origin("o1"), origin("o2"), origin("o3")]
    lp = limpet(with_admin(basic_config(os_, steering="round_robin",
                                        lb_extra={"session_affinity": "cookie"})))
    api = admin_client(lp)
    return lp, api, os_


def ctl(api, *args):
    return limpetctl("--admin", api.url, *args)


def ok(p):
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert p.stderr == ""
    return p.stdout.splitlines()


def test_status(setup):
    lp, api, _ = setup
    [line] = ok(ctl(api, "status"))
    assert line.startswith("RUNNING  version=") and "config=" in line
    p = ctl(api, "--json", "status")
    assert json.loads(p.stdout)["state"] == "RUNNING"
    # global options may come after the command too
    assert json.loads(limpetctl("status", "--json", "--admin", api.url).stdout)["state"] == "RUNNING"


def test_lb_list_show_set(setup):
    lp, api, _ = setup
    [line] = ok(ctl(api, "lb", "list"))
    assert line.startswith("www  affinity=cookie ttl=82800 samesite=Auto secure=Auto")
    assert f"listen=127.0.0.1:{lp.port}" in line
    lines = ok(ctl(api, "lb", "show", "www"))
    assert "session_affinity: cookie" in lines
    assert "session_affinity_attributes.cookie_name: __limpet" in lines
    [line] = ok(ctl(api, "lb", "set", "www", "--session-affinity", "ip_cookie", "--ttl", "600",
                    "--samesite", "Strict", "--secure", "Always", "--failover", "temporary",
                    "--drain-duration", "30"))
    assert line.startswith("www  affinity=ip_cookie ttl=600 samesite=Strict secure=Always "
                           "failover=temporary drain=30")
    lb = api.get("/api/v1/load_balancers/www").json
    assert lb["session_affinity"] == "ip_cookie"
    assert lb["session_affinity_attributes"]["drain_duration"] == 30
    # refused values: exit 1 with the API's message, nothing printed on stdout
    p = ctl(api, "lb", "set", "www", "--session-affinity", "bogus")
    assert p.returncode == 1 and p.stdout == ""
    assert "load_balancers[0].session_affinity: must be one of" in p.stderr
    p = ctl(api, "lb", "set", "www", "--samesite", "None", "--secure", "Never")
    assert p.returncode == 1 and "samesite" in p.stderr
    p = ctl(api, "lb", "show", "nope")
    assert p.returncode == 1 and 'no load balancer "nope"' in p.stderr
    # usage errors: exit 2
    for args in (["lb", "set", "www"], ["lb", "set", "www", "--ttl", "soon"],
                 ["lb", "set", "www", "--colour", "red"], ["lb", "show"], ["lb"]):
        p = ctl(api, *args)
        assert p.returncode == 2, args
        assert "usage" in p.stderr


def test_pool_list_show(setup):
    lp, api, _ = setup
    [line] = ok(ctl(api, "pool", "list"))
    assert line.startswith("app  origins=3 up=3 usable=3 draining=0 disabled=0")
    lines = ok(ctl(api, "pool", "show", "app"))
    assert len(lines) == 4 and lines[0].startswith("app  origins=3")
    assert re.match(r"app/o1  127\.0\.0\.1:\d+  enabled  up  weight=1 active=0 requests=0 "
                    r"sessions=0$", lines[1])
    p = ctl(api, "pool", "show", "nope")
    assert p.returncode == 1 and 'no pool "nope"' in p.stderr


def test_origin_commands(setup, origin):
    lp, api, _ = setup
    p = ctl(api, "origin", "drain", "app", "o2")
    assert p.returncode == 0
    [line] = p.stdout.splitlines()
    assert re.match(r"app/o2  \S+  draining \(for \d+s\)  up  weight=1", line)
    # drain_duration is 0 here: the note on stderr (test_operations.py has the rest)
    assert p.stderr.startswith("limpetctl: note: drain_duration is 0 for load balancer www")
    assert api.origin("app", "o2")["state"] == "draining"
    [line] = ok(ctl(api, "origin", "disable", "app", "o2"))
    assert "  disabled  " in line
    [line] = ok(ctl(api, "origin", "enable", "app", "o2"))
    assert "  enabled  " in line
    [line] = ok(ctl(api, "origin", "weight", "app", "o2", "5"))
    assert "weight=5" in line
    o4 = origin("o4")
    [line] = ok(ctl(api, "origin", "add", "app", "o4", o4.address, "--weight", "2",
                    "--state", "draining"))
    assert line == f"app/o4: added ({o4.address}, draining, weight 2)"
    [line] = ok(ctl(api, "origin", "remove", "app", "o4"))
    assert line == "app/o4: removed"
    p = ctl(api, "origin", "remove", "app", "o4")
    assert p.returncode == 1 and 'no origin "o4" in pool "app"' in p.stderr
    p = ctl(api, "origin", "add", "app", "o1", o4.address)
    assert p.returncode == 1 and "already has an origin" in p.stderr
    p = ctl(api, "origin", "add", "app", "o5", "not-an-address")
    assert p.returncode == 1 and "pools[0].origins[3].address" in p.stderr
    p = ctl(api, "origin", "drain", "app")
    assert p.returncode == 2
    p = ctl(api, "origin", "explode", "app", "o1")
    assert p.returncode == 2


def test_reload_state_and_cookie_decode(setup):
    lp, api, _ = setup
    [line] = ok(ctl(api, "reload"))
    assert line.startswith("reloaded ") and "generation" in line
    lp.config_path.write_text("{")
    p = ctl(api, "reload")
    assert p.returncode == 1 and "running configuration kept" in p.stderr
    [line] = ok(ctl(api, "state"))
    assert line == "no run-time changes recorded (state file: -)"
    assert ctl(api, "origin", "drain", "app", "o1").returncode == 0
    [line] = ok(ctl(api, "state"))
    assert line == 'patch_origin app/o1 {"state":"draining"}'
    [line] = ok(ctl(api, "state", "clear"))
    assert line == "forgot 1 run-time changes"

    r = http_request(lp.port)
    value = r.header("Set-Cookie").split(";")[0].split("=", 1)[1]
    [line] = ok(ctl(api, "cookie", "decode", value))
    assert line.startswith("verdict=valid authentic=yes")
    assert line.endswith(f"origin=app/{r.header('X-Served-By')}")
    [line] = ok(ctl(api, "cookie", "decode", "nonsense"))
    assert line.startswith("verdict=malformed") and line.endswith("origin=-")
    data = json.loads(ctl(api, "--json", "cookie", "decode", value).stdout)
    assert data["verdict"] == "valid"


def test_token_file(limpet, origin, tmp_path):
    (tmp_path / "admin.token").write_text("tok-123456\n")
    (tmp_path / "wrong.token").write_text("nope\n")
    lp = limpet(with_admin(basic_config([origin("o1")]), token_file="admin.token"))
    api = admin_client(lp)
    p = ctl(api, "status")
    assert p.returncode == 1 and "Authorization" in p.stderr
    p = ctl(api, "--token-file", tmp_path / "wrong.token", "status")
    assert p.returncode == 1 and "wrong token" in p.stderr
    ok(ctl(api, "--token-file", tmp_path / "admin.token", "status"))
    p = ctl(api, "--token-file", tmp_path / "missing.token", "status")
    assert p.returncode == 2


def test_several_admins(limpet, origin):
    os_ = [origin("o1"), origin("o2")]
    a = limpet(with_admin(basic_config(os_)), name="a")
    b = limpet(with_admin(basic_config(os_)), name="b")
    api_a, api_b = admin_client(a), admin_client(b)
    p = limpetctl("--admin", api_a.url, "--admin", api_b.url, "origin", "drain", "app", "o1")
    lines = ok(p)
    assert len(lines) == 2
    assert lines[0].startswith(f"{api_a.url}: app/o1 ") and lines[1].startswith(f"{api_b.url}: ")
    assert api_a.origin("app", "o1")["state"] == api_b.origin("app", "o1")["state"] == "draining"
    # one instance down: the others are still changed, the exit code says it failed
    dead = f"http://127.0.0.1:{free_port()}"
    p = limpetctl("--admin", api_a.url, "--admin", dead, "--admin", api_b.url,
                  "origin", "enable", "app", "o1")
    assert p.returncode == 1
    assert f"{dead}: cannot connect" in p.stderr
    assert api_a.origin("app", "o1")["state"] == api_b.origin("app", "o1")["state"] == "enabled"
    data = json.loads(limpetctl("--json", "--admin", api_a.url, "--admin", dead, "status").stdout)
    assert [d["admin"] for d in data] == [api_a.url, dead]
    assert data[0]["response"]["state"] == "RUNNING" and data[1]["status"] == 0


def test_usage_and_connection_errors():
    for args in ([], ["frobnicate"], ["pool"], ["probe"], ["probe", "https://x/"],
                 ["probe", "http://127.0.0.1:1/", "-n", "0"], ["--admin"]):
        p = limpetctl(*args)
        assert p.returncode == 2, args
        assert "usage: limpetctl" in p.stderr
    p = limpetctl("--help")
    assert p.returncode == 0 and "usage: limpetctl" in p.stdout
    p = limpetctl("--admin", f"http://127.0.0.1:{free_port()}", "status")
    assert p.returncode == 1 and "cannot connect" in p.stderr
    p = limpetctl("--admin", "ftp://x", "status")
    assert p.returncode == 1


def parse_probe(stdout):
    lines = stdout.splitlines()
    per_request = [l for l in lines if l.startswith("#")]
    summary = {l.split(":", 1)[0]: l.split(":", 1)[1].strip() for l in lines
               if not l.startswith("#")}
    return per_request, summary


def test_probe_against_limpet(setup, tmp_path):
    lp, api, os_ = setup
    p = limpetctl("probe", f"http://127.0.0.1:{lp.port}/app", "-n", "20", "-c", "4")
    assert p.returncode == 0, p.stderr
    per_request, summary = parse_probe(p.stdout)
    assert len(per_request) == 20
    assert "set-cookie" in per_request[0]
    assert summary["session stayed on one origin"].startswith("yes (o")
    assert re.match(r"p50 [\d.]+ ms  p90 [\d.]+ ms  p99 [\d.]+ ms  \(20 requests, 0 failed\)$",
                    summary["latency"])
    # with affinity off the same probe sees the session scattered
    api.patch("/api/v1/load_balancers/www", {"session_affinity": "none"})
    p = limpetctl("probe", f"http://127.0.0.1:{lp.port}/", "-n", "9")
    _, summary = parse_probe(p.stdout)
    assert summary["session stayed on one origin"].startswith("no (")
    assert sorted(summary["origins"].split()) == ["o1=3", "o2=3", "o3=3"]


def test_probe_cookie_jar_headers_json(setup, tmp_path):
    lp, api, os_ = setup
    jar = tmp_path / "jar.txt"
    p = limpetctl("probe", f"http://127.0.0.1:{lp.port}/", "-n", "3", "--cookie-jar", jar,
                  "-H", "X-Probe: yes", "-H", "Cookie: extra=1")
    assert p.returncode == 0
    first_origin = parse_probe(p.stdout)[1]["session stayed on one origin"]
    text = jar.read_text()
    assert text.startswith("# Netscape HTTP Cookie File")
    assert "\t__limpet\t" in text and "#HttpOnly_127.0.0.1\t" in text
    # the jar brings the session back to its origin in a second run
    for _ in range(3):
        p = limpetctl("probe", f"http://127.0.0.1:{lp.port}/", "-n", "2", "--cookie-jar", jar)
        assert parse_probe(p.stdout)[1]["session stayed on one origin"] == first_origin
        assert "set-cookie" not in p.stdout
    seen = [r for o in os_ for r in o.requests if r.header("X-Probe") == "yes"]
    assert len(seen) == 3
    assert all("extra=1" in r.header("Cookie") for r in seen)
    assert all("__limpet" not in r.header("Cookie") for r in seen)   # limpet strips its own
    data = json.loads(limpetctl("--json", "probe", f"http://127.0.0.1:{lp.port}/", "-n", "4",
                                "-c", "2").stdout)
    assert data["requests"] == 4 and data["failed"] == 0 and data["sticky"] is True
    assert set(data["latency_ms"]) == {"p50", "p90", "p99"}
    assert [r["n"] for r in data["results"]] == [1, 2, 3, 4]


def test_probe_against_plain_origin(origin):
    o = origin("solo", handler=lambda req: Reply(200, "hi", headers=[("X-Backend", "solo-1")]))
    p = limpetctl("probe", f"http://{o.address}/x", "-n", "5", "--origin-header", "X-Backend")
    assert p.returncode == 0, p.stderr
    per_request, summary = parse_probe(p.stdout)
    assert all(" 200  solo-1 " in l for l in per_request)
    assert summary["session stayed on one origin"] == "yes (solo-1)"
    assert summary["origins"] == "solo-1=5"
    assert [r.target for r in o.requests] == ["/x"] * 5
    # no such header in the answers: said so
    p = limpetctl("probe", f"http://{o.address}/", "-n", "2")
    assert "unknown (no X-Served-By header" in p.stdout


def test_probe_failures(origin):
    p = limpetctl("probe", f"http://127.0.0.1:{free_port()}/", "-n", "2")
    assert p.returncode == 1
    assert p.stdout.count("error: cannot connect") == 2
    assert "(2 requests, 2 failed)" in p.stdout
