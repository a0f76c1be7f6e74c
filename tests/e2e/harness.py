"""Building blocks of the limpet end-to-end tests (no pytest in here).

- free_port()                 a free loopback TCP port
- Limpet                      one `build/limpet -c FILE` process
- RecordingOrigin / Reply     a threaded HTTP/1.1 origin that records every request
- DemoOrigin                  one `build/limpet --demo-origin` process
- parse_response(), RawClient raw-socket HTTP client with an incremental parser
- http_request(), curl()      one-shot clients (http.client, curl)
- basic_config()              a small valid config dict

Everything here is bounded in time: sockets have timeouts, waits have deadlines.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import traceback
import http.client
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIMPET = Path(os.environ.get("LIMPET_BIN") or REPO / "build" / "limpet")

DEFAULT_TIMEOUT = 10.0


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_tcp(host, port, timeout=5.0, proc=None):
    """True once host:port accepts a TCP connection (False after timeout, or
    at once if proc exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def split_hostport(address):
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def require_binary():
    if not (LIMPET.is_file() and os.access(LIMPET, os.X_OK)):
        raise FileNotFoundError(
            f"{LIMPET} does not exist or is not executable: build it first "
            f"(`make` in {REPO}); the e2e tests need it")


# --------------------------------------------------------------------------
# limpet process
# --------------------------------------------------------------------------

class Limpet:
    """One `build/limpet -c CONFIG` process.

    The config dict is written to DIR/NAME.json. stdout and stderr go to
    files next to it (so a chatty process never blocks on a pipe).
    """

    def __init__(self, config, directory, name="limpet", extra_args=(), preexec_fn=None):
        require_binary()
        self.config = config
        self.dir = Path(directory)
        self.name = name
        self.config_path = self.dir / f"{name}.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.stdout_path = self.dir / f"{name}.stdout"
        self.stderr_path = self.dir / f"{name}.stderr"
        self.extra_args = list(extra_args)
        self.preexec_fn = preexec_fn  # runs in the child before exec (a sandbox, say)
        self.proc = None
        self.returncode = None

    # addresses ------------------------------------------------------------
    @property
    def listen_addresses(self):
        return [split_hostport(l["address"]) for l in self.config.get("listen", [])]

    @property
    def host(self):
        return self.listen_addresses[0][0]

    @property
    def port(self):
        return self.listen_addresses[0][1]

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    # lifecycle ------------------------------------------------------------
    def start(self, wait=5.0):
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(LIMPET), "-c", str(self.config_path), *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
            cwd=str(self.dir), preexec_fn=self.preexec_fn)
        for host, port in self.listen_addresses:
            if not wait_for_tcp(host, port, timeout=wait, proc=self.proc):
                rc = self.proc.poll()
                if rc is None:
                    self.kill()
                raise AssertionError(
                    f"limpet did not accept on {host}:{port} within {wait}s "
                    f"(exit code {rc})\nconfig:\n{self.config_path.read_text()}\n"
                    f"stderr:\n{self.stderr_text()}")
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Wait for exit; returns the exit code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code
        after SIGTERM, or None when it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self._close_files()
            return self.returncode
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
        self._close_files()
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._close_files()

    def _close_files(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()

    # output -----------------------------------------------------------------
    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log_path(self):
        dest = self.config.get("log", {}).get("access", "off")
        if dest == "off":
            return None
        if dest == "stdout":
            return self.stdout_path
        p = Path(dest)
        return p if p.is_absolute() else self.dir / p

    def access_log(self):
        """The access log as a list of dicts (one per JSON line)."""
        path = self.access_log_path()
        if path is None:
            raise AssertionError("log.access is off in this config")
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"access log line is not JSON: {line!r}")
        return out

    def wait_access_log(self, n, timeout=5.0):
        """Access-log entries once there are at least n (or whatever is
        there after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.access_log()
            if len(entries) >= n or time.monotonic() > deadline:
                return entries
            time.sleep(0.05)

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def basic_config(origins, *, steering=None, threads=1, access="off",
                 pool="app", lb="www", listen_port=None, pool_extra=None,
                 lb_extra=None, **top):
    """A valid config with one pool holding `origins` (RecordingOrigin,
    DemoOrigin, (name, address) tuples or dicts) and one load balancer.
    Extra top-level keys (timeouts=..., limits=...) pass through."""
    entries = []
    for o in origins:
        if isinstance(o, dict):
            entries.append(dict(o))
        elif isinstance(o, tuple):
            entries.append({"name": o[0], "address": o[1]})
        else:
            entries.append({"name": o.name, "address": o.address})
    p = {"name": pool, "origins": entries}
    if steering:
        p["origin_steering"] = steering
    p.update(pool_extra or {})
    l = {"name": lb, "default_pools": [pool]}
    l.update(lb_extra or {})
    cfg = {
        "listen": [{"address": f"127.0.0.1:{listen_port or free_port()}",
                    "load_balancer": lb}],
        "threads": threads,
        "timeouts": {"grace": 5},
        "log": {"access": access},
        "pools": [p],
        "load_balancers": [l],
    }
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


# --------------------------------------------------------------------------
# HTTP message parsing (shared by the origin and the raw client)
# --------------------------------------------------------------------------

class Incomplete(Exception):
    pass


class HeaderLookup:
    """Case-insensitive lookups over `self.headers`, a list of (name, value)."""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return bool(self.header_all(name))


class Message(HeaderLookup):
    """A parsed HTTP message (request or response)."""

    def __init__(self):
        self.version = ""
        self.status = None
        self.reason = ""
        self.method = None
        self.target = None
        self.headers = []       # [(name, value)] as received, order and case kept
        self.body = b""         # decoded (de-chunked)
        self.trailers = []
        self.chunked = False
        self.raw = b""          # the message's bytes as received
        self.interim = []       # 1xx responses seen before this one


    @property
    def path(self):
        return self.target

    def __repr__(self):
        if self.status is not None:
            return f"<Response {self.status} {self.reason!r} headers={self.headers} body={len(self.body)}B>"
        return f"<Request {self.method} {self.target} {self.version} headers={self.headers} body={len(self.body)}B>"


def _parse_head(buf):
    """(start_line, headers, head_len) or raises Incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete()
    head = bytes(buf[:end]).decode("latin-1")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.append((name, value.strip(" \t")))
    return lines[0], headers, end + 4


def _decode_chunked(buf, pos):
    """Decode a chunked body starting at buf[pos]. Returns (body, trailers,
    end_pos) or raises Incomplete / ValueError."""
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            raise Incomplete()
        size_line = bytes(buf[pos:eol]).decode("latin-1")
        size_txt = size_line.split(";", 1)[0].strip()
        try:
            size = int(size_txt, 16)
        except ValueError:
            raise ValueError(f"bad chunk size line {size_line!r}")
        pos = eol + 2
        if size == 0:
            break
        if len(buf) < pos + size + 2:
            raise Incomplete()
        body += buf[pos:pos + size]
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
        pos += size + 2
    trailers = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            raise Incomplete()
        line = bytes(buf[pos:eol]).decode("latin-1")
        pos = eol + 2
        if line == "":
            break
        name, _, value = line.partition(":")
        trailers.append((name, value.strip()))
    return bytes(body), trailers, pos


def _framing_conflict(headers):
    names = {k.lower() for k, _ in headers}
    return "content-length" in names and "transfer-encoding" in names


def _framing(msg):
    """('chunked', None) | ('length', n) | ('none', None)"""
    te = ",".join(msg.header_all("Transfer-Encoding")).strip().lower()
    if te:
        if te.split(",")[-1].strip() == "chunked":
            return "chunked", None
        return "close", None
    cls = msg.header_all("Content-Length")
    if cls:
        vals = {v.strip() for c in cls for v in c.split(",")}
        if len(vals) != 1 or not next(iter(vals)).isdigit():
            raise ValueError(f"bad Content-Length {cls!r}")
        return "length", int(next(iter(vals)))
    return "none", None


def parse_response(buf, head=False, eof=False, keep_interim=False):
    """Parse one response from the start of buf.

    Returns (Message, consumed_bytes); raises Incomplete when more bytes are
    needed (a close-delimited body completes only with eof=True), ValueError
    on a malformed response. 1xx responses are skipped (kept in .interim)
    unless keep_interim."""
    interim = []
    offset = 0
    while True:
        start, headers, head_len = _parse_head(memoryview(buf)[offset:].tobytes() if offset else buf)
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"bad status line {start!r}")
        m = Message()
        m.version, m.status = parts[0], int(parts[1])
        m.reason = parts[2] if len(parts) > 2 else ""
        m.headers = headers
        if 100 <= m.status < 200 and m.status != 101 and not keep_interim:
            interim.append(m)
            m.raw = bytes(buf[offset:offset + head_len])
            offset += head_len
            continue
        pos = offset + head_len
        break
    m.interim = interim
    if head or m.status in (204, 304) or 100 <= m.status < 200:
        m.raw = bytes(buf[offset:pos])
        return m, pos
    kind, n = _framing(m)
    if kind == "chunked":
        m.chunked = True
        m.body, m.trailers, end = _decode_chunked(buf, pos)
    elif kind == "length":
        if len(buf) < pos + n:
            raise Incomplete()
        m.body = bytes(buf[pos:pos + n])
        end = pos + n
    else:  # read until close
        if not eof:
            raise Incomplete()
        m.body = bytes(buf[pos:])
        end = len(buf)
    m.raw = bytes(buf[offset:end])
    return m, end


# --------------------------------------------------------------------------
# raw socket client
# --------------------------------------------------------------------------

class RawClient:
    """A TCP client that sends raw bytes and parses responses incrementally,
    so pipelined responses can be read one by one."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _recv_more(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(min(remaining, self.timeout))
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv_exactly(self, n, timeout=5):
        """The next n raw bytes (fewer if the connection ends first)."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if not self._recv_more(deadline):
                break
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_response(self, head=False, timeout=None, keep_interim=False):
        """The next complete response; raises AssertionError if the
        connection closes first, socket.timeout if it takes too long."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                m, used = parse_response(self.buf, head=head, eof=self.eof,
                                         keep_interim=keep_interim)
                del self.buf[:used]
                return m
            except Incomplete:
                if self.eof:
                    raise AssertionError(
                        f"connection closed before a complete response; "
                        f"got {bytes(self.buf[:500])!r}"
                        f"{' (reset)' if self.reset else ''}")
            self._recv_more(deadline)

    def read_until_close(self, timeout=None):
        """Everything until EOF/reset (raises socket.timeout otherwise)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            self._recv_more(deadline)
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def closed_within(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout; extra bytes
        received meanwhile are kept in .buf."""
        deadline = time.monotonic() + timeout
        try:
            while not self.eof:
                self._recv_more(deadline)
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            self.eof = True
        return True

    def request(self, method, target, headers=None, body=None, version="HTTP/1.1",
                host="test.local"):
        """Send one well-formed request (Host and Content-Length added)."""
        headers = list(headers or [])
        names = {k.lower() for k, _ in headers}
        if host is not None and "host" not in names:
            headers.insert(0, ("Host", host))
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            headers.append(("Content-Length", str(len(body))))
        self.send(build_request(method, target, headers, body or b"", version))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def build_request(method, target, headers=(), body=b"", version="HTTP/1.1"):
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    if isinstance(body, str):
        body = body.encode()
    return head.encode("latin-1") + body


def chunk_encode(data, sizes, extensions=False, trailers=()):
    """Chunked encoding of data, cutting chunks of the given sizes (cycled)."""
    out = bytearray()
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        i += 1
        piece = data[pos:pos + n]
        pos += n
        ext = ";ext=1" if extensions and i % 2 else ""
        out += f"{len(piece):x}{ext}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in trailers).encode() + b"\r\n"
    return bytes(out)


# --------------------------------------------------------------------------
# one-shot clients
# --------------------------------------------------------------------------

class Result:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def __repr__(self):
        return f"<Result {self.status} {self.headers} {self.body[:200]!r}>"


def http_request(port, method="GET", path="/", body=None, headers=None,
                 host="127.0.0.1", timeout=DEFAULT_TIMEOUT):
    """One request on a fresh http.client connection."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Result(r.status, r.reason, r.getheaders(), data)
    finally:
        conn.close()


def curl(*args, timeout=20):
    """Run curl -sS ARGS; returns CompletedProcess (stdout bytes)."""
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout - 2), *args],
                          capture_output=True, timeout=timeout)


# --------------------------------------------------------------------------
# recording origin
# --------------------------------------------------------------------------

class Reply:
    """What a RecordingOrigin handler returns.

    status, reason, headers ([(k, v)]), body (bytes/str)
    chunked      send the body chunked: True (one chunk), an int chunk size,
                 or a list of chunk sizes (cycled)
    trailers     [(k, v)] sent after the last chunk
    delay        seconds to sleep before answering
    drip         seconds to sleep between chunks / body pieces
    close        add `Connection: close` and close after the response
    abort_after  send only this many body bytes (after the head), then close
    no_length    no Content-Length / Transfer-Encoding: body ends at close
    interim      list of 1xx heads sent first, e.g. [(103, [("Link", "</a>")])]
    raw          bytes sent verbatim instead of a generated response
    upgrade_echo after the response (a 101), echo raw bytes until EOF
    """

    def __init__(self, status=200, body=b"", headers=None, reason=None, chunked=False,
                 trailers=(), delay=0.0, drip=0.0, close=False, abort_after=None,
                 no_length=False, interim=(), raw=None, upgrade_echo=False):
        self.status = status
        self.reason = reason or http.client.responses.get(status, "Whatever")
        self.headers = list(headers or [])
        self.body = body.encode() if isinstance(body, str) else body
        self.chunked = chunked
        self.trailers = list(trailers)
        self.delay = delay
        self.drip = drip
        self.close = close
        self.abort_after = abort_after
        self.no_length = no_length
        self.interim = list(interim)
        self.raw = raw
        self.upgrade_echo = upgrade_echo


class RecordingOrigin:
    """An HTTP/1.1 origin on 127.0.0.1:<free port>, one thread per
    connection, keep-alive, Content-Length and chunked request bodies,
    `Expect: 100-continue`.

    .requests      every complete request (Message with method, target,
                   version, headers, body, .conn_id, .chunked)
    .connections   number of TCP connections accepted
    .handler       callable(req) -> Reply (default: 200, body "NAME METHOD TARGET\\n",
                   headers X-Served-By: NAME and X-Path: TARGET)
    idle_close     close a kept-alive connection after this many idle seconds
    port           listen on this port (default: a free one)
    tls            an ssl.SSLContext (server side): the origin speaks HTTPS
    """

    def __init__(self, name="origin", handler=None, idle_close=None, port=0, tls=None):
        self.name = name
        self.tls = tls
        self.handler = handler or self.default_handler
        self.idle_close = idle_close
        self.requests = []
        self.connections = 0
        self.open_connections = 0
        self.errors = []          # connection-level oddities (EOF mid-request, ...)
        self.protocol_errors = [] # malformed requests received (checked at teardown)
        self.handler_errors = []  # exceptions raised by the handler (checked at teardown)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._socks = set()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(1024)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"origin-{name}")
        self._thread.start()

    def default_handler(self, req):
        return Reply(200, f"{self.name} {req.method} {req.target}\n",
                     headers=[("Content-Type", "text/plain"),
                              ("X-Served-By", self.name), ("X-Path", req.target)])

    # inspection -----------------------------------------------------------
    def paths(self):
        with self.lock:
            return [r.target for r in self.requests]

    def wait_for_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return list(self.requests)

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.connections = 0

    # server ---------------------------------------------------------------
    def _accept_loop(self):
        conn_id = 0
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                break
            conn_id += 1
            with self.lock:
                self.connections += 1
                self.open_connections += 1
                self._socks.add(s)
            threading.Thread(target=self._serve, args=(s, conn_id), daemon=True).start()

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self._thread.join(timeout=2)

    def _serve(self, s, conn_id):
        buf = bytearray()
        try:
            s.settimeout(30)
            if self.tls is not None:
                with self.lock:
                    self._socks.discard(s)
                s = self.tls.wrap_socket(s, server_side=True)
                with self.lock:
                    self._socks.add(s)
            while not self._stop.is_set():
                req = self._read_request(s, buf, conn_id)
                if req is None:
                    return
                with self.cond:
                    self.requests.append(req)
                    self.cond.notify_all()
                try:
                    reply = self.handler(req)
                except Exception:
                    self.handler_errors.append(traceback.format_exc())
                    reply = Reply(500, "handler error\n", close=True)
                if not self._send(s, req, reply):
                    return
                if reply.upgrade_echo:
                    self._echo(s, buf)
                    return
                if reply.close or not self._keep_alive(req):
                    return
        except ValueError as e:
            # limpet sent something that is not valid HTTP/1.1
            self.protocol_errors.append(f"conn {conn_id}: {e}")
        except OSError as e:
            if not self._stop.is_set() and not isinstance(e, (ConnectionResetError, BrokenPipeError, socket.timeout)):
                self.errors.append(f"conn {conn_id}: {e!r}")
        finally:
            with self.lock:
                self.open_connections -= 1
                self._socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    @staticmethod
    def _keep_alive(req):
        conn = ",".join(req.header_all("Connection")).lower()
        tokens = {t.strip() for t in conn.split(",")}
        if "close" in tokens:
            return False
        if req.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return True

    def _fill(self, s, buf, idle=False):
        if idle and self.idle_close is not None:
            s.settimeout(self.idle_close)
        try:
            data = s.recv(262144)
        except (socket.timeout, TimeoutError):
            if idle and self.idle_close is not None:
                return False   # idle too long: close
            raise
        finally:
            if idle and self.idle_close is not None:
                s.settimeout(30)
        if not data:
            return False
        buf += data
        return True

    def _read_request(self, s, buf, conn_id):
        while b"\r\n\r\n" not in buf:
            if not self._fill(s, buf, idle=not buf):
                if buf:
                    self.errors.append(f"conn {conn_id}: EOF inside request head {bytes(buf[:200])!r}")
                return None
        start, headers, head_len = _parse_head(buf)
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
            raise ValueError(f"bad request line {start!r}")
        for k, v in headers:
            if not k or k != k.strip() or any(ch in k for ch in " \t\r\n\0") or any(ch in v for ch in "\r\n\0"):
                raise ValueError(f"bad header field {k!r}: {v!r}")
        if "\n" in start or "\r" in start:
            raise ValueError(f"bad request line {start!r}")
        if _framing_conflict(headers):
            raise ValueError(f"both Content-Length and Transfer-Encoding: {headers}")
        m = Message()
        m.method, m.target, m.version = parts
        m.headers = headers
        m.conn_id = conn_id
        head_raw = bytes(buf[:head_len])
        del buf[:head_len]
        if "100-continue" in (m.header("Expect") or "").lower():
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        kind, n = _framing(m)
        if kind == "chunked":
            m.chunked = True
            while True:
                try:
                    m.body, m.trailers, end = _decode_chunked(buf, 0)
                    break
                except Incomplete:
                    if not self._fill(s, buf):
                        self.errors.append(f"conn {conn_id}: EOF inside chunked body")
                        return None
        elif kind == "length":
            while len(buf) < n:
                if not self._fill(s, buf):
                    self.errors.append(f"conn {conn_id}: EOF inside body ({len(buf)}/{n})")
                    return None
            end = n
        elif kind == "close":
            raise ValueError(f"request with unsupported Transfer-Encoding {m.headers}")
        else:
            end = 0
        if kind == "length":
            m.body = bytes(buf[:n])
        m.raw = head_raw + bytes(buf[:end])
        del buf[:end]
        return m

    def _send(self, s, req, r):
        if r.delay:
            time.sleep(r.delay)
        if r.raw is not None:
            s.sendall(r.raw)
            if r.close:
                time.sleep(0.05)
            return True
        for code, hdrs in r.interim:
            s.sendall(f"HTTP/1.1 {code} {http.client.responses.get(code, 'Info')}\r\n".encode()
                      + "".join(f"{k}: {v}\r\n" for k, v in hdrs).encode() + b"\r\n")
        headers = list(r.headers)
        names = {k.lower() for k, _ in headers}
        bodyless = req.method == "HEAD" or r.status in (204, 304) or r.status < 200
        if r.chunked and "transfer-encoding" not in names:
            headers.append(("Transfer-Encoding", "chunked"))
        elif (not r.no_length and "content-length" not in names
              and r.status not in (204, 304) and r.status >= 200):
            headers.append(("Content-Length", str(len(r.body))))
        if r.close and "connection" not in names:
            headers.append(("Connection", "close"))
        head = (f"HTTP/1.1 {r.status} {r.reason}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")
        if bodyless:
            s.sendall(head)
            return True
        body = r.body
        if r.abort_after is not None:
            if r.chunked:
                payload = chunk_encode(body, self._sizes(r.chunked, body))
            else:
                payload = body
            s.sendall(head + payload[:r.abort_after])
            time.sleep(0.05)
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        if r.chunked:
            s.sendall(head)
            sizes = self._sizes(r.chunked, body)
            pos = i = 0
            while pos < len(body):
                n = sizes[i % len(sizes)]
                i += 1
                piece = body[pos:pos + n]
                pos += n
                s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                if r.drip:
                    time.sleep(r.drip)
            s.sendall(b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.trailers).encode() + b"\r\n")
        elif r.drip:
            s.sendall(head)
            for i in range(0, len(body), 1024):
                s.sendall(body[i:i + 1024])
                time.sleep(r.drip)
        else:
            s.sendall(head + body)
        if r.no_length:
            return False       # body ends with the connection
        return True

    @staticmethod
    def _sizes(chunked, body):
        if chunked is True:
            return [max(1, len(body))]
        if isinstance(chunked, int):
            return [chunked]
        return list(chunked)

    def _echo(self, s, buf):
        if buf:
            s.sendall(bytes(buf))
            buf.clear()
        while True:
            data = s.recv(65536)
            if not data:
                return
            s.sendall(data)


# --------------------------------------------------------------------------
# demo origin process
# --------------------------------------------------------------------------

class DemoOrigin:
    """`build/limpet --demo-origin 127.0.0.1:PORT NAME`."""

    def __init__(self, name, directory):
        require_binary()
        self.name = name
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.err_path = Path(directory) / f"demo-{name}.stderr"
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([str(LIMPET), "--demo-origin", self.address, name],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._err)
        if not wait_for_tcp("127.0.0.1", self.port, timeout=5, proc=self.proc):
            rc = self.proc.poll()
            self.stop()
            raise AssertionError(f"demo origin {name} did not listen on {self.address} "
                                 f"(exit {rc}); stderr:\n{self.err_path.read_text(errors='replace')}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._err.close()


# --------------------------------------------------------------------------
# admin API (SPEC §6)
# --------------------------------------------------------------------------

LIMPETCTL = Path(os.environ.get("LIMPETCTL_BIN") or REPO / "build" / "limpetctl")


def with_admin(cfg, *, token_file=None, state_file=None, port=None):
    """cfg with an "admin" section on 127.0.0.1:<free port> (cfg is changed
    and returned). token_file / state_file are paths (relative ones are
    relative to the limpet process's directory, the test's tmp_path)."""
    admin = {"address": f"127.0.0.1:{port or free_port()}"}
    if token_file is not None:
        admin["token_file"] = str(token_file)
    if state_file is not None:
        admin["state_file"] = str(state_file)
    cfg["admin"] = admin
    return cfg


class AdminResult:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    @property
    def error(self):
        """The {"code", "message"} of an error answer (None otherwise)."""
        return (self.json or {}).get("error") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<AdminResult {self.status} {self.body[:300]!r}>"


class AdminClient:
    """A client of the admin API at host:port: .call(method, path, body)
    sends JSON (a dict/list body) or raw bytes, with the Bearer token when
    one is given; every call is one fresh connection."""

    def __init__(self, address, token=None, timeout=DEFAULT_TIMEOUT):
        self.host, self.port = split_hostport(address)
        self.address = address
        self.url = f"http://{address}"
        self.token = token
        self.timeout = timeout

    def call(self, method, path, body=None, headers=None, token=None):
        hdrs = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            hdrs.setdefault("Authorization", f"Bearer {tok}")
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if isinstance(data, str):
                data = data.encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return AdminResult(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def patch(self, path, body, **kw):
        return self.call("PATCH", path, body=body, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def origin(self, pool, name):
        """The origin's JSON from GET /api/v1/pools/{pool} (None when absent)."""
        r = self.get(f"/api/v1/pools/{pool}")
        assert r.status == 200, r
        return next((o for o in r.json["origins"] if o["name"] == name), None)


def admin_client(lp, token=None, wait=5.0):
    """An AdminClient for a started Limpet whose config has "admin", once
    the admin address accepts connections."""
    address = lp.config["admin"]["address"]
    host, port = split_hostport(address)
    if not wait_for_tcp(host, port, timeout=wait, proc=lp.proc):
        raise AssertionError(f"admin API did not listen on {address}; stderr:\n"
                             f"{lp.stderr_text()[-3000:]}")
    return AdminClient(address, token=token)


def limpetctl(*args, timeout=30, input=None):
    """Runs build/limpetctl ARGS; returns CompletedProcess (text)."""
    if not (LIMPETCTL.is_file() and os.access(LIMPETCTL, os.X_OK)):
        raise FileNotFoundError(f"{LIMPETCTL} does not exist: build it first (`make` in {REPO})")
    return subprocess.run([str(LIMPETCTL), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, input=input)


# --------------------------------------------------------------------------
# WebSocket upgrades

WS_HEADERS = [("Host", "h"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def websocket_handler(name):
    """A RecordingOrigin handler: upgrade requests get 101 and an echoing
    tunnel, others a plain 200 with the origin's name; both say X-Served-By."""
    def handler(req):
        if (req.header("Upgrade") or "").lower() == "websocket":
            return Reply(101, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                       ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                                       ("X-Served-By", name)],
                         upgrade_echo=True)
        return Reply(200, name, headers=[("X-Served-By", name)])
    return handler
