"""Access log: one JSON line per request (SPEC §1)."""
import time

from harness import Reply, basic_config, http_request

KEYS = {"time", "client", "method", "path", "status", "bytes", "duration_ms",
        "load_balancer", "pool", "origin", "affinity"}


def handler(req):
    if req.target.startswith("/missing"):
        return Reply(404, "no such thing")
    return Reply(200, b"x" * 1000)


def test_access_log_to_file(limpet, origin):
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o], access="access.log"))
    assert http_request(lp.port, "GET", "/a?b=c").status == 200
    assert http_request(lp.port, "POST", "/form", body=b"k=v").status == 200
    assert http_request(lp.port, "GET", "/missing").status == 404
    entries = lp.wait_access_log(3, timeout=3)
    if len(entries) < 3:          # maybe buffered until exit
        assert lp.stop() == 0
        entries = lp.access_log()
    assert len(entries) == 3, entries
    for e in entries:
        assert KEYS <= set(e), f"missing keys {KEYS - set(e)} in {e}"
        assert e["load_balancer"] == "www"
        assert e["pool"] == "app"
        assert e["origin"] == "s1"
        assert str(e["client"]).startswith("127.0.0.1")
        assert float(e["duration_ms"]) >= 0
    assert [(e["method"], e["path"], int(e["status"])) for e in entries] == [
        ("GET", "/a?b=c", 200), ("POST", "/form", 200), ("GET", "/missing", 404)]
    assert int(entries[0]["bytes"]) >= 1000


def test_access_log_to_stdout(limpet, origin):
    o = origin("s1")
    lp = limpet(basic_config([o], access="stdout"))
    assert http_request(lp.port, "GET", "/via-stdout").status == 200
    deadline = time.monotonic() + 3
    entries = []
    while time.monotonic() < deadline and not entries:
        entries = lp.access_log()
        time.sleep(0.05)
    if not entries:
        assert lp.stop() == 0
        entries = lp.access_log()
    assert [e["path"] for e in entries] == ["/via-stdout"]


def test_access_log_for_503(limpet):
    from harness import free_port
    lp = limpet(basic_config([("dead", f"127.0.0.1:{free_port()}")], access="access.log"))
    assert http_request(lp.port, "GET", "/down").status == 503
    entries = lp.wait_access_log(1, timeout=3)
    if not entries:
        assert lp.stop() == 0
        entries = lp.access_log()
    assert len(entries) == 1
    assert int(entries[0]["status"]) == 503
    assert entries[0]["path"] == "/down"


def test_access_log_off_writes_nothing(limpet, origin, tmp_path):
    o = origin("s1")
    lp = limpet(basic_config([o], access="off"))
    assert http_request(lp.port, "GET", "/quiet").status == 200
    assert lp.stop() == 0
    assert "/quiet" not in lp.stdout_text()
