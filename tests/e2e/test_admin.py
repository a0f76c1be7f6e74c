"""Admin REST API (SPEC §6): every call, its errors, and that changes take
effect on live traffic."""
import collections
import http.client
import json
import subprocess
import time

import pytest

from harness import (LIMPET, AdminClient, admin_client, basic_config, free_port,
                     http_request, with_admin)


def three(origin):
    return [origin("o1"), origin("o2"), origin("o3")]


def cookie_config(origins, threads=1, **kw):
    return basic_config(origins, threads=threads, lb_extra={"session_affinity": "cookie"}, **kw)


def start(limpet, cfg, token=None):
    lp = limpet(cfg)
    return lp, admin_client(lp, token=token)


def served_by(port, cookie=None, path="/"):
    """(origin name, limpet cookie value or None) of one request."""
    headers = {"Cookie": cookie} if cookie else {}
    r = http_request(port, "GET", path, headers=headers)
    assert r.status == 200, r
    set_cookie = r.header("Set-Cookie")
    value = None
    if set_cookie and set_cookie.startswith("__limpet="):
        value = set_cookie.split(";", 1)[0]
    return r.header("X-Served-By"), value


# ---- status, routing, methods ----

def test_status(limpet, origin):
    lp, api = start(limpet, with_admin(basic_config(three(origin))))
    r = api.get("/api/v1/status")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    assert r.json["state"] == "RUNNING"
    assert r.json["version"]
    assert isinstance(r.json["uptime"], int) and r.json["uptime"] >= 0
    assert r.json["config"].endswith("limpet.json")
    head = api.call("HEAD", "/api/v1/status")
    assert head.status == 200 and head.body == b""
    assert int(head.header("Content-Length")) == len(r.body)


def test_unknown_path_and_wrong_method(limpet, origin):
    lp, api = start(limpet, with_admin(basic_config(three(origin))))
    for path in ("/api/v1/nope", "/api/v2/status", "/nope", "/api/v1/pools/app/x/y"):
        r = api.get(path)
        assert r.status == 404, (path, r)
        assert r.error["code"] == "not_found" and r.error["message"]
    r = api.call("PUT", "/api/v1/status")
    assert r.status == 405 and r.error["code"] == "method_not_allowed"
    assert r.header("Allow") == "GET, HEAD"
    r = api.post("/api/v1/pools/app", {})
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    r = api.get("/api/v1/reload")
    assert r.status == 405 and r.header("Allow") == "POST"
    r = api.call("PUT", "/api/v1/pools/app/origins/o1")
    assert r.header("Allow") == "GET, HEAD, PATCH, DELETE"


def test_keepalive_and_pipelining(limpet, origin):
    lp, api = start(limpet, with_admin(basic_config(three(origin))))
    conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
    for _ in range(3):
        conn.request("GET", "/api/v1/status")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["state"] == "RUNNING"
    conn.close()
    import socket
    with socket.create_connection((api.host, api.port), timeout=10) as s:
        req = f"GET /api/v1/status HTTP/1.1\r\nHost: {api.address}\r\n\r\n"
        s.sendall((req * 2 + f"GET /metrics HTTP/1.1\r\nHost: {api.address}\r\n"
                   "Connection: close\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert b"limpet_requests_total" in data


def test_malformed_request_and_body_limits(limpet, origin):
    lp, api = start(limpet, with_admin(basic_config(three(origin))))
    r = api.patch("/api/v1/load_balancers/www", b"{not json")
    assert r.status == 400 and r.error["code"] == "invalid_json"
    r = api.patch("/api/v1/load_balancers/www", b"[1, 2]")
    assert r.status == 400 and "object" in r.error["message"]
    r = api.patch("/api/v1/load_balancers/www", b"")
    assert r.status == 400
    import socket
    with socket.create_connection((api.host, api.port), timeout=10) as s:
        s.sendall(f"POST /api/v1/pools/app/origins HTTP/1.1\r\nHost: {api.address}\r\n"
                  "Content-Length: 2000000\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    with socket.create_connection((api.host, api.port), timeout=10) as s:
        s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")


# ---- authentication ----

def test_token_required(limpet, origin, tmp_path):
    (tmp_path / "admin.token").write_text("s3cret-token-for-tests\n")
    cfg = with_admin(basic_config(three(origin)), token_file="admin.token")
    lp, api = start(limpet, cfg)
    r = api.get("/api/v1/status")
    assert r.status == 401 and r.error["code"] == "unauthorized"
    assert r.header("WWW-Authenticate", "").startswith("Bearer")
    r = api.get("/api/v1/status", token="wrong-token")
    assert r.status == 401
    r = api.get("/api/v1/status", headers={"Authorization": "Basic czNjcmV0"})
    assert r.status == 401
    r = api.get("/api/v1/pools", token="s3cret-token-for-tests")
    assert r.status == 200
    r = api.get("/api/v1/status", headers={"Authorization": "bearer s3cret-token-for-tests"})
    assert r.status == 200
    # changes and metrics need it too
    assert api.patch("/api/v1/pools/app/origins/o1", {"state": "draining"}).status == 401
    assert api.get("/metrics").status == 401
    assert api.get("/metrics", token="s3cret-token-for-tests").status == 200
    authed = AdminClient(api.address, token="s3cret-token-for-tests")
    assert authed.origin("app", "o1")["state"] == "enabled"
    # the dashboard page itself holds no data: served without the token
    page = api.get("/")
    assert page.status == 200 and b"<html" in page.body


def test_non_loopback_without_token_refused(origin, tmp_path):
    cfg = basic_config(three(origin))
    cfg["admin"] = {"address": f"0.0.0.0:{free_port()}"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(LIMPET), "-c", str(path)], capture_output=True, text=True,
                       timeout=10, cwd=tmp_path)
    assert p.returncode == 1
    assert "admin.address" in p.stderr and "token_file" in p.stderr


def test_unreadable_token_file_refused(origin, tmp_path):
    cfg = with_admin(basic_config(three(origin)), token_file="missing.token")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(LIMPET), "-c", str(path)], capture_output=True, text=True,
                       timeout=10, cwd=tmp_path)
    assert p.returncode == 1 and "missing.token" in p.stderr
    (tmp_path / "empty.token").write_text("\n")
    cfg["admin"]["token_file"] = "empty.token"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(LIMPET), "-c", str(path)], capture_output=True, text=True,
                       timeout=10, cwd=tmp_path)
    assert p.returncode == 1 and "empty" in p.stderr


def test_browser_protections(limpet, origin):
    """Without a token: a non-loopback Host (DNS rebinding) and a change
    from another web origin are refused."""
    lp, api = start(limpet, with_admin(basic_config(three(origin))))
    r = api.get("/api/v1/status", headers={"Host": "attacker.example:80"})
    assert r.status == 403 and r.error["code"] == "forbidden"
    assert api.get("/api/v1/status", headers={"Host": "localhost"}).status == 200
    r = api.patch("/api/v1/pools/app/origins/o1", {"state": "disabled"},
                  headers={"Origin": "http://attacker.example"})
    assert r.status == 403
    assert api.origin("app", "o1")["state"] == "enabled"
    r = api.patch("/api/v1/pools/app/origins/o1", {"state": "draining"},
                  headers={"Origin": f"http://{api.address}"})
    assert r.status == 200


# ---- load balancers ----

def test_load_balancers_get(limpet, origin):
    cfg = cookie_config(three(origin))
    cfg["load_balancers"][0]["session_affinity_ttl"] = 3600
    lp, api = start(limpet, with_admin(cfg))
    r = api.get("/api/v1/load_balancers")
    assert r.status == 200
    [lb] = r.json["load_balancers"]
    assert lb["name"] == "www"
    assert lb["listen"] == [cfg["listen"][0]["address"]]
    assert lb["default_pools"] == ["app"] and lb["fallback_pool"] is None
    assert lb["session_affinity"] == "cookie"
    assert lb["session_affinity_ttl"] == 3600
    attrs = lb["session_affinity_attributes"]
    assert attrs["cookie_name"] == "__limpet" and attrs["samesite"] == "Auto"
    assert attrs["httponly"] is True and attrs["zero_downtime_failover"] == "none"
    one = api.get("/api/v1/load_balancers/www")
    assert one.status == 200 and one.json["session_affinity_ttl"] == 3600
    r = api.get("/api/v1/load_balancers/nope")
    assert r.status == 404 and '"nope"' in r.error["message"]
    assert api.patch("/api/v1/load_balancers/nope", {"session_affinity": "none"}).status == 404


def test_patch_load_balancer_validation(limpet, origin):
    lp, api = start(limpet, with_admin(cookie_config(three(origin))))
    r = api.patch("/api/v1/load_balancers/www", {"session_affinity": "bogus"})
    assert r.status == 400
    assert r.error["message"].startswith("load_balancers[0].session_affinity: must be one of")
    assert '"bogus"' in r.error["message"]
    r = api.patch("/api/v1/load_balancers/www", {"session_affinity_attributes":
                                                 {"samesite": "None", "secure": "Never"}})
    assert r.status == 400
    assert r.error["message"].startswith(
        "load_balancers[0].session_affinity_attributes.samesite:")
    r = api.patch("/api/v1/load_balancers/www", {"session_affinity_ttl": 10 ** 7})
    assert r.status == 400 and "session_affinity_ttl" in r.error["message"]
    r = api.patch("/api/v1/load_balancers/www", {"default_pools": ["nope"]})
    assert r.status == 400
    assert r.error["message"] == 'load_balancers[0].default_pools[0]: unknown pool "nope"'
    r = api.patch("/api/v1/load_balancers/www", {"steering_policy": "random"})
    assert r.status == 400 and r.error["code"] == "unknown_key"
    assert r.error["message"].startswith("steering_policy:")
    r = api.patch("/api/v1/load_balancers/www", {"session_affinity_attributes":
                                                 {"cookie_nam": "x"}})
    assert r.status == 400 and "cookie_nam: unknown key" in r.error["message"]
    # nothing changed
    lb = api.get("/api/v1/load_balancers/www").json
    assert lb["session_affinity"] == "cookie"
    assert lb["session_affinity_attributes"]["samesite"] == "Auto"


def test_patch_load_balancer_merges_attributes(limpet, origin):
    lp, api = start(limpet, with_admin(cookie_config(three(origin))))
    r = api.patch("/api/v1/load_balancers/www", {
        "session_affinity_ttl": 600,
        "session_affinity_attributes": {"samesite": "Strict", "drain_duration": 30}})
    assert r.status == 200, r
    assert r.json["session_affinity_ttl"] == 600
    attrs = r.json["session_affinity_attributes"]
    assert attrs["samesite"] == "Strict" and attrs["drain_duration"] == 30
    r = api.patch("/api/v1/load_balancers/www", {"session_affinity_attributes":
                                                 {"secure": "Always"}})
    attrs = r.json["session_affinity_attributes"]
    assert attrs["samesite"] == "Strict" and attrs["secure"] == "Always"
    # the new attributes are on the next Set-Cookie
    res = http_request(lp.port, "GET", "/")
    sc = res.header("Set-Cookie")
    assert "SameSite=Strict" in sc and "Secure" in sc and "Max-Age=600" in sc
    # null puts a key back to its default
    r = api.patch("/api/v1/load_balancers/www", {"session_affinity_attributes":
                                                 {"samesite": None}})
    assert r.json["session_affinity_attributes"]["samesite"] == "Auto"


def test_patch_session_affinity_none_takes_effect(limpet, origin):
    os_ = three(origin)
    lp, api = start(limpet, with_admin(cookie_config(os_, steering="round_robin")))
    first, cookie = served_by(lp.port)
    assert cookie
    assert {served_by(lp.port, cookie)[0] for _ in range(6)} == {first}
    r = api.patch("/api/v1/load_balancers/www", {"session_affinity": "none"})
    assert r.status == 200 and r.json["session_affinity"] == "none"
    seen = collections.Counter()
    for _ in range(6):
        name, set_cookie = served_by(lp.port, cookie)
        assert set_cookie is None
        seen[name] += 1
    assert len(seen) == 3, seen
    # and back
    api.patch("/api/v1/load_balancers/www", {"session_affinity": "cookie"})
    name, new_cookie = served_by(lp.port)
    assert new_cookie


def test_patch_default_and_fallback_pools(limpet, origin):
    a, b = origin("a1"), origin("b1")
    cfg = basic_config([a])
    cfg["pools"].append({"name": "other", "origins": [{"name": "b1", "address": b.address}]})
    lp, api = start(limpet, with_admin(cfg))
    assert http_request(lp.port).header("X-Served-By") == "a1"
    r = api.patch("/api/v1/load_balancers/www", {"default_pools": ["other"],
                                                 "fallback_pool": "app"})
    assert r.status == 200 and r.json["fallback_pool"] == "app"
    assert http_request(lp.port).header("X-Served-By") == "b1"
    api.patch("/api/v1/pools/other/origins/b1", {"state": "disabled"})
    assert http_request(lp.port).header("X-Served-By") == "a1"


# ---- pools and origins ----

def test_pools_get(limpet, origin):
    os_ = three(origin)
    lp, api = start(limpet, with_admin(cookie_config(os_, threads=2)))
    for _ in range(5):                      # five sessions of two requests each
        name, cookie = served_by(lp.port)
        assert served_by(lp.port, cookie)[0] == name
    r = api.get("/api/v1/pools")
    assert r.status == 200
    [pool] = r.json["pools"]
    assert pool["name"] == "app" and pool["load_balancers"] == ["www"]
    assert pool["summary"] == {"origins": 3, "up": 3, "usable": 3, "draining": 0, "disabled": 0}
    names = [o["name"] for o in pool["origins"]]
    assert names == ["o1", "o2", "o3"]
    o1 = pool["origins"][0]
    for key in ("address", "weight", "state", "healthy", "draining_since",
                "active_connections", "requests", "responses", "sessions"):
        assert key in o1, key
    assert o1["address"] == os_[0].address and o1["weight"] == 1 and o1["healthy"] is True
    assert sum(o["requests"] for o in pool["origins"]) == 10
    assert sum(o["responses"]["2xx"] for o in pool["origins"]) == 10
    assert sum(o["sessions"] for o in pool["origins"]) == 5
    one = api.get("/api/v1/pools/app")
    assert one.status == 200 and one.json["name"] == "app"
    assert api.get("/api/v1/pools/nope").status == 404
    r = api.get("/api/v1/pools/app/origins/o2")
    assert r.status == 200 and r.json["name"] == "o2" and r.json["pool"] == "app"
    assert api.get("/api/v1/pools/app/origins/nope").status == 404
    assert api.get("/api/v1/pools/nope/origins/o1").status == 404
    r = api.get("/api/v1/pools/app/origins")
    assert [o["name"] for o in r.json["origins"]] == ["o1", "o2", "o3"]


def test_patch_origin_state_and_weight(limpet, origin):
    os_ = three(origin)
    lp, api = start(limpet, with_admin(basic_config(os_, steering="round_robin")))
    r = api.patch("/api/v1/pools/app/origins/o2", {"state": "draining"})
    assert r.status == 200, r
    assert r.json["state"] == "draining" and r.json["usable"] is False
    assert abs(r.json["draining_since"] - time.time()) < 5
    assert api.get("/api/v1/pools/app").json["summary"]["draining"] == 1
    served = collections.Counter(http_request(lp.port).header("X-Served-By") for _ in range(8))
    assert "o2" not in served
    r = api.patch("/api/v1/pools/app/origins/o2", {"state": "disabled"})
    assert r.json["state"] == "disabled" and r.json["draining_since"] is None
    r = api.patch("/api/v1/pools/app/origins/o2", {"state": "enabled", "weight": 3})
    assert r.json["state"] == "enabled" and r.json["weight"] == 3
    served = collections.Counter(http_request(lp.port).header("X-Served-By") for _ in range(10))
    assert 5 <= served["o2"] <= 7, served
    # errors
    r = api.patch("/api/v1/pools/app/origins/o2", {"state": "sleeping"})
    assert r.status == 400
    assert r.error["message"].startswith("pools[0].origins[1].state: must be one of")
    r = api.patch("/api/v1/pools/app/origins/o2", {"weight": 5000})
    assert r.status == 400 and r.error["message"].startswith("pools[0].origins[1].weight:")
    r = api.patch("/api/v1/pools/app/origins/o2", {"address": "127.0.0.1:1"})
    assert r.status == 400 and r.error["code"] == "unknown_key"
    assert r.error["message"].startswith("address:")
    assert api.patch("/api/v1/pools/app/origins/nope", {"state": "draining"}).status == 404
    assert api.patch("/api/v1/pools/nope/origins/o1", {"state": "draining"}).status == 404


def test_add_then_remove_origin(limpet, origin):
    os_ = three(origin)
    o4 = origin("o4")
    lp, api = start(limpet, with_admin(cookie_config(os_, steering="round_robin")))
    r = api.post("/api/v1/pools/app/origins", {"name": "o4", "address": o4.address})
    assert r.status == 201, r
    assert r.json["name"] == "o4" and r.json["state"] == "enabled" and r.json["weight"] == 1
    assert [o["name"] for o in api.get("/api/v1/pools/app").json["origins"]] == \
        ["o1", "o2", "o3", "o4"]
    # new sessions reach the added origin
    sessions = [served_by(lp.port) for _ in range(8)]
    assert collections.Counter(n for n, _ in sessions)["o4"] >= 1
    pinned = [c for n, c in sessions if n == "o4"]
    # add errors
    r = api.post("/api/v1/pools/app/origins", {"name": "o4", "address": o4.address})
    assert r.status == 409 and r.error["code"] == "conflict"
    r = api.post("/api/v1/pools/app/origins", {"name": "o5", "address": "nowhere"})
    assert r.status == 400 and r.error["message"].startswith("pools[0].origins[4].address:")
    r = api.post("/api/v1/pools/app/origins", {"name": "o5"})
    assert r.status == 400 and "address" in r.error["message"]
    r = api.post("/api/v1/pools/app/origins", {"name": "o5", "address": o4.address, "tls": {}})
    assert r.status == 400 and r.error["code"] == "unknown_key"
    assert api.post("/api/v1/pools/nope/origins", {"name": "x", "address": o4.address}).status == 404
    # remove it: no request reaches it any more, pinned sessions move
    before = len(o4.requests)
    r = api.delete("/api/v1/pools/app/origins/o4")
    assert r.status == 200 and r.json == {"removed": {"pool": "app", "origin": "o4"}}
    for _ in range(8):
        assert served_by(lp.port)[0] != "o4"
    for c in pinned:
        name, new_cookie = served_by(lp.port, c)
        assert name != "o4" and new_cookie
    assert len(o4.requests) == before
    assert api.delete("/api/v1/pools/app/origins/o4").status == 404


def test_remove_last_origin_conflict(limpet, origin):
    lp, api = start(limpet, with_admin(basic_config([origin("only")])))
    r = api.delete("/api/v1/pools/app/origins/only")
    assert r.status == 409
    assert "last origin" in r.error["message"]
    assert http_request(lp.port).status == 200


# ---- reload, state, decode ----

def test_reload(limpet, origin):
    os_ = three(origin)
    cfg = with_admin(basic_config(os_))
    lp, api = start(limpet, cfg)
    extra = origin("o4")
    cfg["pools"][0]["origins"].append({"name": "o4", "address": extra.address})
    lp.config_path.write_text(json.dumps(cfg))
    r = api.post("/api/v1/reload")
    assert r.status == 200 and r.json["reloaded"] is True
    assert len(api.get("/api/v1/pools/app").json["origins"]) == 4
    assert api.get("/api/v1/status").json["reloads"] == 1
    lp.config_path.write_text("{ broken")
    r = api.post("/api/v1/reload")
    assert r.status == 400 and r.error["code"] == "reload_failed"
    assert "limpet.json:1:" in r.error["message"]
    assert len(api.get("/api/v1/pools/app").json["origins"]) == 4
    assert http_request(lp.port).status == 200


def test_state_get_and_delete_without_file(limpet, origin):
    lp, api = start(limpet, with_admin(basic_config(three(origin))))
    r = api.get("/api/v1/state")
    assert r.status == 200 and r.json == {"state_file": None, "changes": []}
    api.patch("/api/v1/pools/app/origins/o1", {"state": "draining"})
    api.patch("/api/v1/pools/app/origins/o1", {"weight": 2})
    api.patch("/api/v1/load_balancers/www", {"session_affinity_ttl": 60})
    changes = api.get("/api/v1/state").json["changes"]
    assert [(c["op"], c.get("origin") or c.get("load_balancer")) for c in changes] == \
        [("patch_origin", "o1"), ("patch_load_balancer", "www")]
    assert changes[0]["set"] == {"state": "draining", "weight": 2}
    r = api.delete("/api/v1/state")
    assert r.status == 200 and r.json["forgotten"] == 2
    assert api.get("/api/v1/state").json["changes"] == []
    # forgetting does not undo: the running configuration is unchanged
    assert api.origin("app", "o1")["state"] == "draining"


def test_affinity_decode(limpet, origin):
    lp, api = start(limpet, with_admin(cookie_config(three(origin))))
    name, cookie = served_by(lp.port)
    value = cookie.split("=", 1)[1]
    r = api.get(f"/api/v1/affinity/decode?cookie={value}")
    assert r.status == 200, r
    assert r.json["verdict"] == "valid" and r.json["authentic"] is True
    assert r.json["token"]["origin"] == {"pool": "app", "name": name}
    assert r.json["load_balancer"] == "www"
    assert "verdict=valid" in r.json["summary"]
    # "name=value" as pasted from a browser works too
    r = api.get(f"/api/v1/affinity/decode?cookie=__limpet%3D{value}")
    assert r.json["verdict"] == "valid"
    tampered = value[:-2] + ("AA" if value[-2:] != "AA" else "BB")
    r = api.get(f"/api/v1/affinity/decode?cookie={tampered}")
    assert r.status == 200 and r.json["verdict"] == "bad-mac" and r.json["authentic"] is False
    r = api.get("/api/v1/affinity/decode?cookie=garbage")
    assert r.json["verdict"] == "malformed"
    assert api.get("/api/v1/affinity/decode").status == 400
    assert api.get(f"/api/v1/affinity/decode?cookie={value}&load_balancer=x").status == 404


@pytest.mark.timeout(30)
def test_demo_serves_admin_on_8081(tmp_path):
    """`limpet --demo`: the admin API and dashboard on 127.0.0.1:8081, no token."""
    import socket
    for port in (8081, 9001, 9002, 9003):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is in use: the demo needs 8081 and 9001-9003 free")
    listen = f"127.0.0.1:{free_port()}"
    err = open(tmp_path / "demo.stderr", "wb")
    proc = subprocess.Popen([str(LIMPET), "--demo", "--listen", listen],
                            stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path)
    try:
        from harness import wait_for_tcp
        assert wait_for_tcp("127.0.0.1", 8081, timeout=5, proc=proc)
        api = AdminClient("127.0.0.1:8081")
        assert api.get("/api/v1/status").json["state"] == "RUNNING"
        pool = api.get("/api/v1/pools/demo").json
        assert [o["name"] for o in pool["origins"]] == ["origin1", "origin2", "origin3"]
        assert api.get("/").status == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        err.close()


def test_chunked_body_expect_continue_and_half_close(limpet, origin):
    from harness import curl
    import socket
    lp, api = start(limpet, with_admin(basic_config(three(origin))))
    url = f"{api.url}/api/v1/pools/app/origins/o1"
    p = curl("-X", "PATCH", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
             "-d", '{"state": "draining"}', url)
    assert p.returncode == 0 and json.loads(p.stdout)["state"] == "draining"
    # a client that sends its request and shuts its side still gets the answer
    with socket.create_connection((api.host, api.port), timeout=10) as s:
        s.sendall(f"GET /api/v1/status HTTP/1.1\r\nHost: {api.address}\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and b'"RUNNING"' in data
