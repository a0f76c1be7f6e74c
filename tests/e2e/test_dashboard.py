"""The dashboard at GET / (SPEC §6): one page compiled into the binary, with
nothing loaded from outside the box. (test_dashboard_browser.py drives it
in a real browser.)"""
import re

from harness import admin_client, basic_config, with_admin


def test_page_and_assets(limpet, origin):
    lp = limpet(with_admin(basic_config([origin("o1")])))
    api = admin_client(lp)
    page = api.get("/")
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    csp = page.header("Content-Security-Policy")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = page.body.decode()
    assert html.lstrip().lower().startswith("<!doctype html>")
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sorted(refs) == ["/dashboard.css", "/dashboard.js", "/favicon.svg"]
    assert api.get("/index.html").body == page.body
    for path, ctype in (("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css"),
                        ("/favicon.svg", "image/svg+xml")):
        r = api.get(path)
        assert r.status == 200 and r.header("Content-Type").startswith(ctype)
        text = r.body.decode()
        # no outside resource: no URL other than the SVG namespace name
        urls = set(re.findall(r"https?://[^\s\"')]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, urls
        assert "@import" not in text
    js = api.get("/dashboard.js").body.decode()
    for call in ("/api/v1/status", "/api/v1/load_balancers", "/api/v1/pools"):
        assert call in js
    assert "innerHTML" not in js          # API data never parsed as HTML
    head = api.call("HEAD", "/")
    assert head.status == 200 and head.body == b""
    assert api.post("/", {}).status == 405
    assert api.get("/dashboard.jsx").status == 404
