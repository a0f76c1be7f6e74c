"""Shared helpers of the session-affinity end-to-end tests (SPEC §3).

- get(port, path, headers, source=...)   one request on a fresh connection
                                          (optionally from 127.0.0.N) -> Resp
- Resp                                    .status .headers .body .header()
                                          .set_cookies (list of SetCookie)
                                          .served_by (X-Served-By)
- parse_set_cookie(value) -> SetCookie    name, value, attrs (lower-case keys), flags
- Session(port, cookie_name)              a browser-like client: keeps the
                                          cookies it is given, sends them back
- affinity_config(origins, mode, ...)     basic_config + session affinity
- write_secret(path, *keys)               a secret_file, one key a line
- origin_request(origins, path)           (origin, recorded request) that got `path`
- reload(lp, config)                      rewrite the config file, SIGHUP, wait
- log_entry(lp, path)                     the access-log entry of `path`

Every request uses a fresh TCP connection unless stated, so limpet's
per-connection pinning never hides a routing decision.
"""
import http.client
import json
import signal
import socket
import time

from harness import HeaderLookup, basic_config

COOKIE = "__limpet"


class SetCookie:
    def __init__(self, raw):
        self.raw = raw
        parts = [p.strip() for p in raw.split(";")]
        name, _, value = parts[0].partition("=")
        self.name = name.strip()
        self.value = value.strip()
        self.attrs = {}          # lower-case attribute name -> value ("" for flags)
        self.order = []          # attribute names as sent
        for p in parts[1:]:
            if not p:
                continue
            k, _, v = p.partition("=")
            self.attrs[k.strip().lower()] = v.strip()
            self.order.append(k.strip())

    def __repr__(self):
        return f"<SetCookie {self.raw!r}>"


def parse_set_cookie(value):
    return SetCookie(value)


class Resp(HeaderLookup):
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # [(name, value)]
        self.body = body

    @property
    def set_cookies(self):
        return [SetCookie(v) for v in self.header_all("Set-Cookie")]

    def set_cookie(self, name=COOKIE):
        """The Set-Cookie of `name`, or None."""
        found = [c for c in self.set_cookies if c.name == name]
        assert len(found) <= 1, f"{len(found)} Set-Cookie for {name}: {self.headers}"
        return found[0] if found else None

    @property
    def served_by(self):
        return self.header("X-Served-By")

    def __repr__(self):
        return f"<Resp {self.status} {self.headers} {self.body[:80]!r}>"


def get(port, path="/", headers=None, method="GET", source=None, host="127.0.0.1",
        body=None, timeout=10):
    """One request on a new connection (from source address `source` when
    given, e.g. "127.0.0.7"); returns a Resp."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, list(r.getheaders()), data)
    finally:
        conn.close()


class Session:
    """A browser-like client of one load balancer: a cookie jar (name ->
    value) that every response's Set-Cookie updates (Max-Age=0 deletes) and
    every request sends back. keep_alive=False opens a connection per request."""

    def __init__(self, port, cookie_name=COOKIE, keep_alive=False, source=None):
        self.port = port
        self.cookie_name = cookie_name
        self.jar = {}
        self.keep_alive = keep_alive
        self.source = source
        self.conn = None
        self.history = []           # (path, Resp)

    @property
    def cookie(self):
        return self.jar.get(self.cookie_name)

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.jar.items())

    def _send(self, method, path, headers):
        if not self.keep_alive:
            return get(self.port, path, headers, method=method, source=self.source)
        if self.conn is None:
            self.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=10,
                source_address=(self.source, 0) if self.source else None)
        self.conn.request(method, path, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        return Resp(r.status, list(r.getheaders()), data)

    def get(self, path="/", headers=None, method="GET"):
        h = dict(headers or {})
        if self.jar:
            h["Cookie"] = self.cookie_header()
        resp = self._send(method, path, h)
        for c in resp.set_cookies:
            if c.attrs.get("max-age") == "0":
                self.jar.pop(c.name, None)
            else:
                self.jar[c.name] = c.value
        self.history.append((path, resp))
        return resp

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def affinity_config(origins, mode="cookie", *, ttl=None, attrs=None, access="access.log",
                    secret_file=None, steering="round_robin", lb_extra=None, **kw):
    """basic_config with session affinity `mode` (round robin steering by
    default, so anything not pinned visibly spreads)."""
    lb = {"session_affinity": mode}
    if ttl is not None:
        lb["session_affinity_ttl"] = ttl
    if attrs:
        lb["session_affinity_attributes"] = attrs
    lb.update(lb_extra or {})
    top = dict(kw)
    if secret_file is not None:
        top["secret_file"] = str(secret_file)
    return basic_config(origins, steering=steering, access=access, lb_extra=lb, **top)


def write_secret(path, *keys):
    path.write_text("".join(k + "\n" for k in keys))
    return path


KEY_A = "first-key-0123456789abcdefghijklmnop"
KEY_B = "second-key-ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def origin_request(origins, path):
    """(origin, Message) of the one request for `path` among origins."""
    found = [(o, r) for o in origins for r in list(o.requests) if r.target == path]
    assert len(found) == 1, f"{path}: seen {len(found)} times: " + \
        ", ".join(o.name for o, _ in found)
    return found[0]


def reload(lp, config, timeout=5.0):
    """Writes `config` to lp's config file, sends SIGHUP and waits until limpet
    says it reloaded (fails when it reports a failed reload)."""
    before = lp.stderr_text().count("configuration reloaded")
    lp.config = config
    lp.config_path.write_text(json.dumps(config, indent=2))
    lp.signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        err = lp.stderr_text()
        if err.count("configuration reloaded") > before:
            time.sleep(0.1)          # workers pick the snapshot up on their next turn
            return
        if "reload failed" in err:
            raise AssertionError(f"reload failed:\n{err[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no reload within {timeout}s:\n{lp.stderr_text()[-2000:]}")


def log_entries(lp, n, timeout=5.0):
    entries = lp.wait_access_log(n, timeout=timeout)
    assert len(entries) >= n, f"only {len(entries)} access-log lines, wanted {n}"
    return entries


def log_entry(lp, path, timeout=5.0):
    """The access-log entry of the single request for `path`."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in lp.access_log() if e.get("path") == path]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.03)
    assert len(found) == 1, f"{path}: {len(found)} access-log entries"
    return found[0]


def loopback_alias_works(addr="127.0.0.9"):
    """Linux routes all of 127/8 to lo: can we bind there?"""
    s = socket.socket()
    try:
        s.bind((addr, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def tcp_monitor(interval=0.2):
    """A fast TCP monitor (retries 1, rise 1)."""
    return {"name": "tcp", "type": "tcp", "interval": interval, "timeout": 0.5,
            "retries": 1, "rise": 1}
