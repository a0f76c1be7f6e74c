"""Helpers of test_limits.py (limits, timeouts, resilience; no pytest here).

- cpu_seconds(pid)              utime + stime of a process (all threads), in seconds
- cpu_used_over(pid, seconds)   CPU seconds a process burns during the next `seconds`
- rss_kb(pid)                   VmRSS from /proc/PID/status
- connect(port)                 a blocking loopback socket with a timeout
- served(sock, path)            one request on `sock`, True when a 200 comes back
- answered_within(sock, s)      True when `sock` receives a byte (or EOF) within s
- timed_get(port, path)         (status, seconds) of one request on a fresh connection
- Trickler                      many slowloris connections driven from one thread
- LatencyProbe                  a thread timing normal requests while something else runs
"""
import os
import selectors
import socket
import struct
import threading
import time

from harness import Incomplete, http_request, parse_response

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_used_over(pid, seconds):
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_response(sock, timeout=5.0):
    """One response from a blocking socket (None if it closed or timed out first)."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        try:
            m, used = parse_response(buf)
            return m
        except Incomplete:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError, ConnectionResetError):
            return None
        if not data:
            return None
        buf += data


def served(sock, path="/", timeout=5.0):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: limits.test\r\n\r\n".encode())
    m = read_response(sock, timeout)
    return m is not None and m.status == 200


def answered_within(sock, seconds):
    """True when sock gets a byte or EOF/reset within `seconds`."""
    sock.settimeout(seconds)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def timed_get(port, path="/", timeout=5.0):
    t0 = time.monotonic()
    r = http_request(port, "GET", path, timeout=timeout)
    return r.status, time.monotonic() - t0


def close_quietly(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


class Trickler:
    """n slowloris connections: each sends a request line, then one header
    line every `interval` seconds, never the empty line that ends the head.
    run(duration) drives them all from the calling thread and records, per
    connection, when its first byte went out, when limpet's first answer
    byte came back, what it said and whether the connection closed."""

    def __init__(self, port, n, interval=0.5, path="/trickle"):
        self.port = port
        self.interval = interval
        self.socks = []
        self.started = []       # monotonic time of the first byte sent
        self.answered = [None] * n
        self.data = [bytearray() for _ in range(n)]
        self.closed = [False] * n
        self.send_failed = [False] * n
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            self.socks.append(s)
        for i, s in enumerate(self.socks):
            s.send(f"GET {path}/{i} HTTP/1.1\r\nHost: trickle.test\r\n".encode())
            self.started.append(time.monotonic())
        self.lines = 0

    def run(self, duration):
        sel = selectors.DefaultSelector()
        for i, s in enumerate(self.socks):
            sel.register(s, selectors.EVENT_READ, i)
        end = time.monotonic() + duration
        next_line = time.monotonic() + self.interval
        try:
            while time.monotonic() < end and not all(self.closed):
                now = time.monotonic()
                if now >= next_line:
                    self.lines += 1
                    for i, s in enumerate(self.socks):
                        if self.closed[i] or self.answered[i] is not None:
                            continue
                        try:
                            s.send(b"X-Trickle-%d: %s\r\n" % (self.lines, b"v" * 10))
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            self.send_failed[i] = True
                    next_line += self.interval
                timeout = max(0.0, min(next_line, end) - time.monotonic())
                for key, _ in sel.select(timeout=timeout):
                    i = key.data
                    try:
                        chunk = key.fileobj.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        chunk = b""
                    if self.answered[i] is None:
                        self.answered[i] = time.monotonic()
                    if chunk:
                        self.data[i] += chunk
                    else:
                        self.closed[i] = True
                        sel.unregister(key.fileobj)
        finally:
            sel.close()

    def status(self, i):
        try:
            m, _ = parse_response(self.data[i])
            return m.status
        except (Incomplete, ValueError):
            return None

    def close(self):
        close_quietly(self.socks)


class LatencyProbe(threading.Thread):
    """Sends normal requests in a loop (alternately on a fresh connection and
    on one kept-alive connection) until stop(); .samples is [(status, seconds)]."""

    def __init__(self, port, pause=0.05):
        super().__init__(daemon=True)
        self.port = port
        self.pause = pause
        self.samples = []
        self.errors = []
        self._halt = threading.Event()

    def run(self):
        ka = None
        i = 0
        while not self._halt.is_set():
            i += 1
            t0 = time.monotonic()
            try:
                if i % 2:
                    status, _ = timed_get(self.port, f"/probe/{i}")
                else:
                    if ka is None:
                        ka = connect(self.port)
                    ok = served(ka, f"/probe/{i}")
                    status = 200 if ok else None
                    if not ok:
                        ka.close()
                        ka = None
                self.samples.append((status, time.monotonic() - t0))
            except OSError as e:
                self.errors.append(repr(e))
                self.samples.append((None, time.monotonic() - t0))
            self._halt.wait(self.pause)
        if ka is not None:
            ka.close()

    def stop(self):
        self._halt.set()
        self.join(timeout=10)


def garbage_payload(rng):
    """Random junk of one of several shapes (bytes, and whether the client
    should close abruptly with a reset)."""
    kind = rng.randrange(6)
    if kind == 0:       # pure random bytes
        data = rng.randbytes(rng.randrange(1, 4096))
    elif kind == 1:     # a request line, then part of a head
        data = (b"GET /g%d HTTP/1.1\r\nHost: g\r\nX-A: " % rng.randrange(10**6)
                + rng.randbytes(rng.randrange(0, 2000)).replace(b"\r", b"").replace(b"\n", b""))
    elif kind == 2:     # a head that never ends, with binary noise in values
        data = b"POST /p HTTP/1.1\r\n" + b"".join(
            b"X-%d: %s\r\n" % (j, rng.randbytes(20).hex().encode()) for j in range(rng.randrange(1, 50)))
    elif kind == 3:     # a complete head announcing a body that is cut short
        data = b"POST /b HTTP/1.1\r\nHost: g\r\nContent-Length: 100000\r\n\r\n" + rng.randbytes(rng.randrange(0, 5000))
    elif kind == 4:     # junk with CR/LF sprinkled to end "heads" early
        data = b"\r\n".join(rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 40))) + b"\r\n\r\n"
    else:               # an oversized head (past max_header_bytes)
        data = b"GET / HTTP/1.1\r\nHost: g\r\nX-Big: " + b"z" * rng.randrange(17000, 40000)
    return data, rng.random() < 0.3


def garbage_connection(port, rng):
    """One connection of garbage: sends it (maybe in two pieces), then either
    resets, closes at once, or waits briefly for limpet's answer or close."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
    except OSError:
        return "connect-failed"
    try:
        data, reset = garbage_payload(rng)
        cut = rng.randrange(len(data) + 1)
        try:
            s.sendall(data[:cut])
            if rng.random() < 0.5:
                s.sendall(data[cut:])
        except OSError:
            return "send-failed"
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return "reset"
        if rng.random() < 0.5:
            s.settimeout(0.3)
            try:
                s.recv(65536)
            except OSError:
                pass
        return "closed"
    finally:
        s.close()
