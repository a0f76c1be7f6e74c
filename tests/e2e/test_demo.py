"""`limpet --demo-origin ADDR NAME` (SPEC §1): a fast test backend."""
import collections
import http.client
import json

from harness import basic_config, curl, http_request


def test_demo_origin_status(demo_origins):
    [d] = demo_origins(1, prefix="alpha")
    r = http_request(d.port, "GET", "/status")
    assert r.status == 200
    assert json.loads(r.body) == {"state": "RUNNING"}
    assert r.header("X-Served-By") == "alpha1"


def test_demo_origin_page_names_itself(demo_origins):
    [d] = demo_origins(1, prefix="beta")
    r = http_request(d.port, "GET", "/any/path?q=1")
    assert r.status == 200
    assert r.header("X-Served-By") == "beta1"
    assert "html" in (r.header("Content-Type") or "").lower()
    assert b"beta1" in r.body
    p = curl("-i", f"http://{d.address}/other")
    assert p.returncode == 0 and b"beta1" in p.stdout


def test_demo_origin_keepalive_and_head(demo_origins):
    [d] = demo_origins(1)
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    conn.connect()
    sock = conn.sock
    for i in range(30):
        conn.request("GET", f"/p{i}")
        r = conn.getresponse()
        assert r.status == 200 and b"demo1" in r.read()
    assert conn.sock is sock
    conn.request("HEAD", "/status")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    conn.request("GET", "/status")
    assert json.loads(conn.getresponse().read()) == {"state": "RUNNING"}
    conn.close()


def test_limpet_in_front_of_demo_origins(limpet, demo_origins):
    ds = demo_origins(3)
    lp = limpet(basic_config(ds, steering="round_robin", threads=1))
    counts = collections.Counter()
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    for i in range(30):
        conn.request("GET", "/status")
        r = conn.getresponse()
        assert json.loads(r.read()) == {"state": "RUNNING"}
        counts[r.getheader("X-Served-By")] += 1
    conn.close()
    assert counts == {"demo1": 10, "demo2": 10, "demo3": 10}
