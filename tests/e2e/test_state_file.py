"""admin.state_file (SPEC §6): run-time changes are recorded atomically and
re-applied at start and after every reload; a bad state file never stops
limpet."""
import collections
import json
import signal

from harness import admin_client, basic_config, http_request, with_admin


def config(origins, state="limpet.state", **kw):
    return with_admin(basic_config(origins, steering="round_robin", **kw), state_file=state)


def three(origin):
    return [origin("o1"), origin("o2"), origin("o3")]


def restart(limpet, lp, name):
    """Stops lp with SIGTERM (exit 0 expected) and starts the same config."""
    lp.signal(signal.SIGTERM)
    assert lp.wait(10) == 0
    lp2 = limpet(lp.config, name=name)
    return lp2, admin_client(lp2)


def served(port, n=9):
    return collections.Counter(http_request(port).header("X-Served-By") for _ in range(n))


def test_drain_survives_restart(limpet, origin, tmp_path):
    os_ = three(origin)
    lp = limpet(config(os_))
    api = admin_client(lp)
    assert api.patch("/api/v1/pools/app/origins/o2", {"state": "draining"}).status == 200
    assert api.patch("/api/v1/pools/app/origins/o3", {"weight": 2}).status == 200
    saved = json.loads((tmp_path / "limpet.state").read_text())
    assert saved["version"] == 1
    assert [(c["op"], c["origin"], c["set"]) for c in saved["changes"]] == [
        ("patch_origin", "o2", {"state": "draining"}), ("patch_origin", "o3", {"weight": 2})]
    # atomic write: no temporary file left behind, the config file untouched
    assert sorted(p.name for p in tmp_path.glob("limpet.state*")) == ["limpet.state"]
    assert json.loads(lp.config_path.read_text()) == lp.config

    lp2, api2 = restart(limpet, lp, "second")
    o2 = api2.origin("app", "o2")
    assert o2["state"] == "draining" and o2["draining_since"] is not None
    assert api2.origin("app", "o3")["weight"] == 2
    assert api2.get("/api/v1/state").json["changes"] == saved["changes"]
    counts = served(lp2.port)
    assert counts["o2"] == 0 and counts["o3"] == 6, counts


def test_state_reapplied_after_reload(limpet, origin):
    os_ = three(origin)
    lp = limpet(config(os_))
    api = admin_client(lp)
    api.patch("/api/v1/pools/app/origins/o1", {"state": "disabled"})
    # the file is edited (o2 disabled there too) and reloaded: both hold
    cfg = json.loads(lp.config_path.read_text())
    cfg["pools"][0]["origins"][1]["state"] = "disabled"
    lp.config_path.write_text(json.dumps(cfg))
    assert api.post("/api/v1/reload").status == 200
    states = {o["name"]: o["state"] for o in api.get("/api/v1/pools/app").json["origins"]}
    assert states == {"o1": "disabled", "o2": "disabled", "o3": "enabled"}
    lp.signal(signal.SIGHUP)
    assert served(lp.port, 3) == {"o3": 3}
    assert api.origin("app", "o1")["state"] == "disabled"
    # forgetting the state: the next reload reads the file alone
    assert api.delete("/api/v1/state").json["forgotten"] == 1
    assert json.loads((lp.dir / "limpet.state").read_text())["changes"] == []
    api.post("/api/v1/reload")
    assert api.origin("app", "o1")["state"] == "enabled"


def test_without_state_file_reload_forgets(limpet, origin):
    lp = limpet(with_admin(basic_config(three(origin))))
    api = admin_client(lp)
    api.patch("/api/v1/pools/app/origins/o1", {"state": "draining"})
    assert api.origin("app", "o1")["state"] == "draining"
    assert api.post("/api/v1/reload").status == 200
    assert api.origin("app", "o1")["state"] == "enabled"
    assert api.get("/api/v1/state").json == {"state_file": None, "changes": []}


def test_added_and_removed_origins_survive_restart(limpet, origin, tmp_path):
    os_ = three(origin)
    o4 = origin("o4")
    lp = limpet(config(os_))
    api = admin_client(lp)
    assert api.post("/api/v1/pools/app/origins",
                    {"name": "o4", "address": o4.address, "weight": 2}).status == 201
    assert api.delete("/api/v1/pools/app/origins/o1").status == 200
    api.patch("/api/v1/pools/app/origins/o4", {"state": "draining"})
    changes = api.get("/api/v1/state").json["changes"]
    # compacted: the patch of the added origin is folded into its addition
    assert [c["op"] for c in changes] == ["add_origin", "remove_origin"]
    assert changes[0]["origin"] == {"name": "o4", "address": o4.address, "weight": 2,
                                    "state": "draining"}
    lp2, api2 = restart(limpet, lp, "second")
    names = {o["name"]: o["state"] for o in api2.get("/api/v1/pools/app").json["origins"]}
    assert names == {"o2": "enabled", "o3": "enabled", "o4": "draining"}
    # an origin added and removed at run time leaves nothing behind
    api2.delete("/api/v1/pools/app/origins/o4")
    assert [c["op"] for c in api2.get("/api/v1/state").json["changes"]] == ["remove_origin"]


def test_truncated_state_file_is_ignored(limpet, origin, tmp_path):
    good = json.dumps({"version": 1, "changes": [
        {"op": "patch_origin", "pool": "app", "origin": "o1", "set": {"state": "disabled"}}]})
    (tmp_path / "limpet.state").write_text(good[:len(good) // 2])   # cut off mid-write
    lp = limpet(config(three(origin)))
    api = admin_client(lp)
    assert "state file" in lp.stderr_text() and "ignored" in lp.stderr_text()
    assert api.get("/api/v1/state").json["changes"] == []
    assert api.origin("app", "o1")["state"] == "enabled"
    assert http_request(lp.port).status == 200
    # the next change rewrites it whole
    api.patch("/api/v1/pools/app/origins/o2", {"state": "draining"})
    assert len(json.loads((tmp_path / "limpet.state").read_text())["changes"]) == 1


def test_other_bad_state_files(limpet, origin, tmp_path):
    for i, text in enumerate(["", "[1, 2]", '{"changes": "x"}', "\x00\x01garbage"]):
        (tmp_path / "limpet.state").write_text(text)
        lp = limpet(config(three(origin)), name=f"l{i}")
        api = admin_client(lp)
        assert api.get("/api/v1/status").json["state"] == "RUNNING"
        lp.signal(signal.SIGTERM)
        assert lp.wait(10) == 0


def test_stale_entries_reported_and_skipped(limpet, origin, tmp_path):
    (tmp_path / "limpet.state").write_text(json.dumps({"version": 1, "changes": [
        {"op": "patch_origin", "pool": "app", "origin": "gone", "set": {"state": "draining"}},
        {"op": "patch_origin", "pool": "nopool", "origin": "o1", "set": {"state": "draining"}},
        {"op": "patch_load_balancer", "load_balancer": "old", "set": {"session_affinity": "ip"}},
        {"op": "patch_origin", "pool": "app", "origin": "o2", "set": {"state": "sleepy"}},
        {"op": "remove_origin", "pool": "app", "origin": "o1"},
        {"op": "frobnicate"},
        "not even an object",
        {"op": "patch_origin", "pool": "app", "origin": "o3", "set": {"state": "draining"}},
    ]}))
    lp = limpet(config(three(origin)))
    api = admin_client(lp)
    err = lp.stderr_text()
    assert 'no origin "gone" in pool "app"' in err
    assert 'no pool "nopool"' in err
    assert 'no load balancer "old"' in err
    assert "sleepy" in err
    assert "frobnicate" in err
    assert "changes[6]" in err
    states = {o["name"]: o["state"] for o in api.get("/api/v1/pools/app").json["origins"]}
    assert states == {"o2": "enabled", "o3": "draining"}


def test_unwritable_state_file_reported(limpet, origin, tmp_path):
    lp = limpet(config(three(origin), state="no/such/dir/limpet.state"))
    api = admin_client(lp)
    r = api.patch("/api/v1/pools/app/origins/o1", {"state": "draining"})
    assert r.status == 500 and r.error["code"] == "state_not_saved"
    assert "no/such/dir/limpet.state" in r.error["message"]
    assert api.origin("app", "o1")["state"] == "draining"   # in force, as the message says
