"""`limpet -t -c FILE` (SPEC §1, §2): 0 and `FILE: ok`, or 1 and one line per
problem, `FILE:LINE:COL: message` or `FILE: path.to.key: message`."""
import json
import re
import subprocess

import pytest

from harness import LIMPET, basic_config, free_port, require_binary


def check(tmp_path, text, name="cfg.json"):
    """Run `limpet -t -c NAME` in tmp_path; returns (exit code, combined output)."""
    try:
        require_binary()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    f = tmp_path / name
    if text is not None:
        f.write_text(text if isinstance(text, str) else json.dumps(text, indent=2))
    p = subprocess.run([str(LIMPET), "-t", "-c", name], cwd=tmp_path,
                       capture_output=True, timeout=10)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode >= 0, f"limpet -t killed by signal {-p.returncode}:\n{out}"
    return p.returncode, out


def good_config():
    return basic_config([("s1", "127.0.0.1:9001"), ("s2", "127.0.0.1:9002")])


def lines(out):
    return [l.strip() for l in out.splitlines() if l.strip()]


def has_line(out, prefix):
    """A line starting with prefix (a hint such as '(did you mean ...)' may follow)."""
    return any(l == prefix or l.startswith(prefix + " ") for l in lines(out))


def test_good_file_ok(tmp_path):
    rc, out = check(tmp_path, good_config())
    assert rc == 0, out
    assert "cfg.json: ok" in lines(out)


def test_minimal_config_from_brief_ok(tmp_path):
    cfg = {"listen": [{"address": "127.0.0.1:18080", "load_balancer": "www"}], "threads": 1,
           "log": {"access": "off"},
           "pools": [{"name": "app", "origins": [{"name": "s1", "address": "127.0.0.1:19001"}]}],
           "load_balancers": [{"name": "www", "default_pools": ["app"]}]}
    rc, out = check(tmp_path, cfg)
    assert (rc, lines(out)) == (0, ["cfg.json: ok"])


def test_full_supported_config_ok(tmp_path):
    cfg = {
        "listen": [{"address": "127.0.0.1:18080", "load_balancer": "www"},
                   {"address": "[::1]:18081", "load_balancer": "www"}],
        "threads": 2,
        "timeouts": {"connect": 2.5, "client": 30, "server": 30, "request_header": 10,
                     "keepalive": 60, "grace": 10},
        "limits": {"max_connections": 10000, "max_header_bytes": 16384,
                   "retry_buffer_bytes": 65536},
        "log": {"access": "access.log"},
        "pools": [
            {"name": "app", "origin_steering": "least_connections", "origins": [
                {"name": "s1", "address": "127.0.0.1:9001", "weight": 3, "state": "enabled"},
                {"name": "s2", "address": "127.0.0.1:9002", "weight": 1, "state": "draining"},
                {"name": "s3", "address": "127.0.0.1:9003", "state": "disabled"}]},
            {"name": "sorry", "origin_steering": "random",
             "origins": [{"name": "s1", "address": "127.0.0.1:9009"}]}],
        "load_balancers": [{"name": "www", "default_pools": ["app"], "fallback_pool": "sorry",
                            "session_affinity": "none"}],
    }
    rc, out = check(tmp_path, cfg)
    assert rc == 0, out
    assert "cfg.json: ok" in lines(out)


def test_syntax_error_line_col(tmp_path):
    text = ('{\n'
            '  "threads": 1,\n'
            '  "listen": [{"address": "127.0.0.1:8080" "load_balancer": "www"}]\n'
            '}\n')
    rc, out = check(tmp_path, text)
    assert rc == 1, out
    m = re.search(r"^cfg\.json:(\d+):(\d+): \S", out, re.M)
    assert m, f"no FILE:LINE:COL: message in {out!r}"
    assert int(m.group(1)) == 3
    assert 30 <= int(m.group(2)) <= 60


def test_syntax_error_trailing_comma(tmp_path):
    rc, out = check(tmp_path, '{\n  "threads": 1,\n}\n')
    assert rc == 1
    m = re.search(r"^cfg\.json:(\d+):(\d+): \S", out, re.M)
    assert m and int(m.group(1)) in (2, 3), out


@pytest.mark.parametrize("text", ["", "   \n", "{", "[1, 2", '{"a": "unterminated'])
def test_truncated_files(tmp_path, text):
    rc, out = check(tmp_path, text)
    assert rc == 1
    assert re.search(r"^cfg\.json:\d+:\d+: \S", out, re.M), out


def test_unknown_key(tmp_path):
    cfg = good_config()
    cfg["listen"][0]["bogus"] = 1
    rc, out = check(tmp_path, cfg)
    assert rc == 1
    assert has_line(out, "cfg.json: listen[0].bogus: unknown key"), out


def test_unknown_keys_nested_and_top(tmp_path):
    cfg = good_config()
    cfg["treads"] = 2
    cfg["pools"][0]["origins"][1]["wieght"] = 2
    cfg["timeouts"]["conect"] = 1
    rc, out = check(tmp_path, cfg)
    assert rc == 1
    for path in ("treads", "pools[0].origins[1].wieght", "timeouts.conect"):
        assert has_line(out, f"cfg.json: {path}: unknown key"), (path, out)


def test_dangling_pool_name(tmp_path):
    cfg = good_config()
    cfg["load_balancers"][0]["default_pools"] = ["nope"]
    rc, out = check(tmp_path, cfg)
    assert rc == 1
    assert has_line(out, 'cfg.json: load_balancers[0].default_pools[0]: unknown pool "nope"'), out


def test_dangling_names_elsewhere(tmp_path):
    cfg = good_config()
    cfg["load_balancers"][0]["fallback_pool"] = "ghost"
    cfg["listen"][0]["load_balancer"] = "nobody"
    rc, out = check(tmp_path, cfg)
    assert rc == 1
    assert re.search(r'^cfg\.json: load_balancers\[0\]\.fallback_pool: .*"ghost"', out, re.M), out
    assert re.search(r'^cfg\.json: listen\[0\]\.load_balancer: .*"nobody"', out, re.M), out


def test_every_problem_reported(tmp_path):
    cfg = good_config()
    cfg["listen"][0]["bogus"] = 1
    cfg["load_balancers"][0]["default_pools"] = ["app", "nope"]
    cfg["pools"][0]["origin_steering"] = "roundrobin"
    rc, out = check(tmp_path, cfg)
    assert rc == 1
    assert has_line(out, "cfg.json: listen[0].bogus: unknown key"), out
    assert has_line(out, 'cfg.json: load_balancers[0].default_pools[1]: unknown pool "nope"'), out
    assert any(l.startswith("cfg.json: pools[0].origin_steering: ") for l in lines(out)), out
    assert "cfg.json: ok" not in lines(out)


@pytest.mark.parametrize("mutate,path", [
    (lambda c: c["pools"][0]["origins"][0].update(address="127.0.0.1:99999"), "pools[0].origins[0].address"),
    (lambda c: c["pools"][0]["origins"][0].update(address="not an address"), "pools[0].origins[0].address"),
    (lambda c: c["listen"][0].update(address="127.0.0.1"), "listen[0].address"),
    (lambda c: c["pools"][0].update(origin_steering="fastest"), "pools[0].origin_steering"),
    (lambda c: c["pools"][0]["origins"][0].update(state="sleeping"), "pools[0].origins[0].state"),
    (lambda c: c["pools"][0]["origins"][0].update(weight=-1), "pools[0].origins[0].weight"),
    (lambda c: c["pools"][0]["origins"][0].update(weight="1"), "pools[0].origins[0].weight"),
    (lambda c: c.update(threads="two"), "threads"),
    (lambda c: c.update(threads=-1), "threads"),
    (lambda c: c["timeouts"].update(connect="5"), "timeouts.connect"),
    (lambda c: c["timeouts"].update(connect=-1), "timeouts.connect"),
    (lambda c: c.update(limits={"max_connections": "many"}), "limits.max_connections"),
    (lambda c: c.update(log={"access": 5}), "log.access"),
    (lambda c: c["load_balancers"][0].update(default_pools="app"), "load_balancers[0].default_pools"),
    (lambda c: c["load_balancers"][0].update(default_pools=[]), "load_balancers[0].default_pools"),
    (lambda c: c["load_balancers"][0].update(session_affinity="sticky"), "load_balancers[0].session_affinity"),
    (lambda c: c["pools"][0].update(origins=[]), "pools[0].origins"),
    (lambda c: c["pools"][0]["origins"][1].update(name="s1"), "pools[0].origins[1]"),
    (lambda c: c["pools"].append({"name": "app", "origins": [{"name": "x", "address": "127.0.0.1:1"}]}), "pools[1]"),
    (lambda c: c["pools"][0]["origins"][0].pop("address"), "pools[0].origins[0]"),
    (lambda c: c["pools"][0].pop("name"), "pools[0]"),
    (lambda c: c.update(listen={}), "listen"),
], ids=["port-range", "address-text", "address-no-port", "steering", "state", "weight-negative",
        "weight-string", "threads-string", "threads-negative", "timeout-string", "timeout-negative",
        "max-connections-type", "log-access-type", "default-pools-string", "default-pools-empty",
        "affinity-value", "no-origins", "dup-origin", "dup-pool", "missing-address",
        "missing-pool-name", "listen-type"])
def test_invalid_values_reported_by_path(tmp_path, mutate, path):
    cfg = good_config()
    mutate(cfg)
    rc, out = check(tmp_path, cfg)
    assert rc == 1, out
    assert re.search(r"^cfg\.json: " + re.escape(path) + r"[\[\].:]", out, re.M), \
        f"no error at path {path!r} in:\n{out}"
    assert "cfg.json: ok" not in out


@pytest.mark.parametrize("text", [
    "[]", "null", "42", '"str"', '{"listen": 5}', '{"pools": [null]}', '{"pools": [{"origins": [1, [], {}]}]}',
    '[' * 5000 + ']' * 5000, '{"threads": 1e999}', '{"listen": [{"address": "\\u0000"}]}',
    '{"a": 1, "a": 2}', '\ufeff{}', '{"threads": 1}\n{"threads": 2}',
], ids=["array", "null", "number", "string", "listen-number", "pool-null", "origins-junk",
        "deep-nesting", "huge-number", "nul-escape", "duplicate-key", "bom", "two-documents"])
def test_never_crashes(tmp_path, text):
    rc, out = check(tmp_path, text)
    assert rc == 1, out
    assert out.strip(), "no message for a bad file"
    assert "cfg.json: ok" not in out


def test_missing_file(tmp_path):
    rc, out = check(tmp_path, None, name="absent.json")
    assert rc == 1
    assert "absent.json" in out


def test_run_with_bad_config_exits_nonzero(tmp_path):
    require_binary()
    cfg = good_config()
    cfg["listen"][0]["bogus"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    p = subprocess.run([str(LIMPET), "-c", "bad.json"], cwd=tmp_path, capture_output=True, timeout=10)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode > 0, out
    assert "listen[0].bogus" in out


def test_check_does_not_bind(tmp_path):
    """-t only checks: it must not start serving (or fail because the port is taken)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        cfg = good_config()
        cfg["listen"][0]["address"] = f"127.0.0.1:{port}"
        rc, out = check(tmp_path, cfg)
        assert rc == 0, out
    finally:
        s.close()
