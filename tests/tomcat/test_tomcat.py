"""limpet in front of two real Tomcat nodes (Debian's tomcat10) with jvmRoute
node1 and node2, serving a JSP session counter (issue 11; `make test-tomcat`).

- ROUTEID route mode with "issue": true (examples/jira-routeid.json): Tomcat's
  JSESSIONID carries the session, limpet's ROUTEID the route; a client with a
  cookie jar and a new connection per request sees its counter climb 1..50 on
  one node.
- JSESSIONID route mode (examples/tomcat-jvmroute.json): Tomcat's own
  JSESSIONID=<id>.<jvmRoute> routes; and a client without cookies that follows
  the URLs Tomcat rewrites with ;jsessionid=<id>.<jvmRoute> stays on its node.

Each node is a CATALINA_BASE made in a temporary directory over Debian's
CATALINA_HOME (/usr/share/tomcat10), started with `catalina.sh run` and
stopped with SIGTERM. Not part of `make test` (two JVMs take a while).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from affinity_helpers import Session, affinity_config, get          # noqa: E402
from harness import Limpet, free_port, wait_for_tcp                 # noqa: E402

CATALINA_HOME = Path("/usr/share/tomcat10")
JDT = Path("/usr/share/java/eclipse-jdt-core.jar")   # Jasper's JSP compiler

SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector address="127.0.0.1" port="{port}" protocol="HTTP/1.1"
               connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"""

# The session counter; the body also says which node served it and the URL
# Tomcat rewrites for a client whose cookies it has not seen.
COUNTER_JSP = """<%@ page session="true" contentType="text/plain; charset=UTF-8" %><%
Integer n = (Integer) session.getAttribute("n");
n = (n == null) ? 1 : n + 1;
session.setAttribute("n", n);
String id = session.getId();
%>count=<%= n %> node=<%= id.substring(id.lastIndexOf('.') + 1) %> next=<%= response.encodeURL("counter.jsp") %>
"""


class TomcatNode:
    def __init__(self, base, route):
        self.route = route
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.base = base
        for d in ("conf", "lib", "logs", "temp", "work", "webapps/ROOT"):
            (base / d).mkdir(parents=True, exist_ok=True)
        for f in ("web.xml", "context.xml", "catalina.properties"):
            shutil.copy(f"/etc/tomcat10/{f}", base / "conf" / f)
        (base / "conf" / "server.xml").write_text(SERVER_XML.format(port=self.port, route=route))
        (base / "conf" / "logging.properties").write_text(
            "handlers = java.util.logging.ConsoleHandler\n"
            ".level = WARNING\n"
            "java.util.logging.ConsoleHandler.level = WARNING\n")
        os.symlink(JDT, base / "lib" / JDT.name)
        (base / "webapps" / "ROOT" / "counter.jsp").write_text(COUNTER_JSP)
        env = dict(os.environ, CATALINA_HOME=str(CATALINA_HOME), CATALINA_BASE=str(base),
                   CATALINA_TMPDIR=str(base / "temp"),
                   JAVA_OPTS="-Djava.awt.headless=true -Xmx96m -XX:+UseSerialGC "
                             "-XX:TieredStopAtLevel=1 -Xshare:auto")
        self.log = open(base / "logs" / "console.log", "wb")
        self.proc = subprocess.Popen([str(CATALINA_HOME / "bin" / "catalina.sh"), "run"],
                                     env=env, cwd=str(base), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=90):
        """Listening, and the JSP compiled (the first request compiles it)."""
        deadline = time.monotonic() + timeout
        assert wait_for_tcp("127.0.0.1", self.port, timeout=timeout, proc=self.proc), \
            self.console()
        while time.monotonic() < deadline:
            r = get(self.port, "/counter.jsp", timeout=60)
            if r.status == 200:
                assert f"node={self.route}" in r.body.decode(), r.body
                return
            time.sleep(0.5)
        raise AssertionError(f"Tomcat {self.route} never served counter.jsp:\n{self.console()}")

    def console(self):
        return (self.base / "logs" / "console.log").read_text(errors="replace")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="module")
def tomcats(tmp_path_factory):
    if not (CATALINA_HOME / "bin" / "catalina.sh").exists() or not JDT.exists():
        pytest.fail("tomcat10 is not installed: `make test-tomcat` installs it", pytrace=False)
    root = tmp_path_factory.mktemp("tomcat")
    nodes = [TomcatNode(root / "node1", "node1"), TomcatNode(root / "node2", "node2")]
    try:
        for n in nodes:
            n.wait_ready()
        yield nodes
    finally:
        for n in nodes:
            n.stop()


@pytest.fixture
def limpet(tmp_path):
    started = []

    def start(config):
        lp = Limpet(config, tmp_path)
        started.append(lp)
        return lp.start()
    yield start
    for lp in started:
        rc = lp.stop()
        assert rc == 0, lp.stderr_text()[-3000:]
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            assert marker not in lp.stderr_text(), lp.stderr_text()[-3000:]


def config(tomcats, name, issue):
    ac = {"name": name, "mode": "route"}
    if issue:
        ac["issue"] = True
    origins = [{"name": f"tomcat{i + 1}", "address": n.address, "route": n.route}
               for i, n in enumerate(tomcats)]
    return affinity_config(origins, "app_cookie", attrs={"app_cookie": ac})


def counted(resp):
    m = re.match(r"count=(\d+) node=(\w+) next=(\S+)", resp.body.decode())
    assert resp.status == 200 and m, resp
    return int(m.group(1)), m.group(2), m.group(3)


def test_routeid_issued_counter_climbs_on_one_node(tomcats, limpet):
    lp = limpet(config(tomcats, "ROUTEID", issue=True))
    for _ in range(2):               # two browsers: each stays on its node
        s = Session(lp.port, cookie_name="ROUTEID")
        seen = []
        for i in range(50):
            r = s.get("/counter.jsp")
            count, node, _ = counted(r)
            seen.append((count, node))
        assert [c for c, _ in seen] == list(range(1, 51)), seen
        assert len({n for _, n in seen}) == 1, seen
        assert s.jar["ROUTEID"] == f".{seen[0][1]}"
        assert s.jar["JSESSIONID"].endswith(f".{seen[0][1]}")


def test_tomcat_jvmroute_cookie_and_url_rewriting(tomcats, limpet):
    lp = limpet(config(tomcats, "JSESSIONID", issue=False))
    s = Session(lp.port, cookie_name="JSESSIONID")
    seen = [counted(s.get("/counter.jsp"))[:2] for _ in range(30)]
    assert [c for c, _ in seen] == list(range(1, 31)) and len({n for _, n in seen}) == 1, seen
    # no cookies at all: follow Tomcat's ;jsessionid=<id>.<jvmRoute> URLs
    for _ in range(2):
        count, node, nxt = counted(get(lp.port, "/counter.jsp"))
        assert count == 1 and ";jsessionid=" in nxt and nxt.endswith(f".{node}"), nxt
        for i in range(2, 21):
            count, again, nxt = counted(get(lp.port, "/" + nxt.lstrip("/")))
            assert (count, again) == (i, node)
