"""The dashboard in a real browser: headless Chromium (Debian's chromium)
driven by playwright-core (tests/browser/dashboard.mjs). It loads the page
of a running limpet, sees three origins, clicks "drain" on one and sees the
change in the page and in the API, and sees its listeners with their
certificates' expiry (a warning for one expiring in 5 days); the screenshot is kept in the test's
tmp directory. Missing tools fail the test with the command that installs
them (nothing is skipped)."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import REPO, admin_client, basic_config, free_port, http_request, with_admin
from tls_helpers import Pki

BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium && (cd tests/browser && npm ci)"


def require_browser_tools():
    missing = []
    if not CHROMIUM.exists():
        missing.append(str(CHROMIUM))
    if not shutil.which("node"):
        missing.append("node")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        missing.append("tests/browser/node_modules/playwright-core")
    if missing:
        pytest.fail(f"the browser test needs {', '.join(missing)}; run: {INSTALL}",
                    pytrace=False)


@pytest.mark.timeout(120)
def test_dashboard_drain_in_chromium(limpet, origin, tmp_path):
    require_browser_tools()
    os_ = [origin("o1"), origin("o2"), origin("o3")]
    pki = Pki(tmp_path / "pki")
    good, soon = pki.cert("a", ["a.test"]), pki.cert("soon", ["soon.test"], days=5)
    cfg = basic_config(os_, lb_extra={"session_affinity": "cookie"})
    tls_address = f"127.0.0.1:{free_port()}"
    cfg["listen"].append({"address": tls_address, "load_balancer": "www", "tls": {
        "certificates": [{"certificate": good.cert, "private_key": good.key},
                         {"certificate": soon.cert, "private_key": soon.key}]}})
    lp = limpet(with_admin(cfg))
    api = admin_client(lp)
    for _ in range(6):
        assert http_request(lp.port).status == 200
    shot = tmp_path / "dashboard.png"
    p = subprocess.run(["node", str(BROWSER_DIR / "dashboard.mjs"), api.url + "/", "o2",
                        str(shot), str(tmp_path / "chromium-profile")],
                       capture_output=True, text=True, timeout=100, cwd=BROWSER_DIR)
    assert p.returncode == 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["title"] == "limpet"
    assert [(r["pool"], r["origin"], r["state"], r["health"]) for r in result["before"]] == [
        ("app", "o1", "enabled", "up"), ("app", "o2", "enabled", "up"),
        ("app", "o3", "enabled", "up")]
    after = {r["origin"]: r["state"] for r in result["after"]}
    assert after["o2"].startswith("draining") and after["o1"] == after["o3"] == "enabled"
    assert result["problems"] == []
    # drain_duration is 0 (the default): the page says a drain acts like disable
    note = "drain_duration is 0 for www: a drain moves sessions at their next request"
    assert result["lbDrain"] == [{"lb": "www", "drain": "0 s: drain acts like disable"}]
    assert note in result["drainTitle"]
    assert note in result["toast"]
    [alert] = [a for a in result["alerts"] if a.startswith("Origin app/o2 is draining")]
    assert note in alert
    assert api.origin("app", "o2")["state"] == "draining"
    # listeners: the plain one, and the TLS one with both certificates
    listeners = {l["address"]: l for l in result["listeners"]}
    assert listeners[cfg["listen"][0]["address"]]["protocol"] == "HTTP"
    tls = listeners[tls_address]
    assert tls["protocol"] == "HTTPS"
    assert [c["file"] for c in tls["certs"]] == [good.cert, soon.cert]
    # (openssl -days N: N days from its making, to the second)
    assert not tls["certs"][0]["expiring"]
    assert re.search(r"\((29|30) days left\)", tls["certs"][0]["expiry"]), tls
    assert tls["certs"][1]["expiring"] and re.search(r"\([45] days left\)", tls["certs"][1]["expiry"])
    assert any(re.match(f"Listener {re.escape(tls_address)}: certificate {re.escape(soon.cert)} "
                        r"expires in [45] days", a) for a in result["alerts"]), result["alerts"]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
    print(f"dashboard screenshot: {shot}")
