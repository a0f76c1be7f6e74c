#!/usr/bin/python3
"""limpet against its peers (HAProxy, nginx) and a floor relay, on loopback.

Started by bench/run.sh (`make bench`); see bench/README.md for the figures.
Settings come from the environment:

  BENCH_SECONDS=5 BENCH_ROUNDS=5   duration of one wrk run, rounds per measurement
  BENCH_QUICK=1                    1 round of 2 s, 1,000 idle connections (smoke test)
  BENCH_CONNECTIONS=64             wrk connections for the small-response figures
  BENCH_IDLE=5000                  idle keep-alive connections for the memory figure
  BENCH_OUT=bench                  where RESULTS.md and ratios.svg are written

Every process it starts is on 127.0.0.1, in its own process group, and is stopped
at the end (also on Ctrl-C, and by the kernel if this script dies: PDEATHSIG).
Each wrk run is bounded by its -d and a hard timeout.
"""

import ctypes
import datetime
import http.client
import os
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
CLK_TCK = os.sysconf("SC_CLK_TCK")

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SECONDS = int(os.environ.get("BENCH_SECONDS", "2" if QUICK else "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "5"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
IDLE = int(os.environ.get("BENCH_IDLE", "1000" if QUICK else "5000"))
OUT = os.path.abspath(os.environ.get("BENCH_OUT", os.path.join(ROOT, "bench")))
BIG_CONNS = 8
BIG_SIZE = 1 << 20
BODY = b"limpet-bench " + b"x" * 86 + b"\n"  # 100 bytes
assert len(BODY) == 100
PAUSE = 0.3  # between two runs, so one run's closing connections do not spill into the next

ORIGIN_PORTS = [19601, 19602, 19603]
PORT = {"haproxy": 19510, "nginx": 19520, "limpet": 19500, "floor": 19530,
        "haproxy-2t": 19511, "nginx-2t": 19521, "limpet-2t": 19501, "limpet-1000": 19505}

# The TLS listeners of the main HAProxy and limpet (same certificate).
TLS_PORT = {"haproxy": 19512, "limpet": 19502}
TLS_CONNS = 16   # tls_load: connections opened at once
# tls_load processes: a client handshake costs more CPU than the server's side, so a
# single-process generator would cap the rate at its own speed; one per core
TLS_PROCS = os.cpu_count() or 1

LABEL = {"haproxy": "HAProxy", "nginx": "nginx", "limpet": "limpet", "floor": "floor"}
MAIN = ["haproxy", "nginx", "limpet", "floor"]

T0 = time.monotonic()


def say(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup(sig):
    def setup():
        _libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG: die with this script
    return setup


def proc_table():
    """{pid: ppid} of every process."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                table[int(d)] = int(rest[1])
            except (OSError, IndexError):
                pass
    return table


LIVE = []  # every Proc started and not yet stopped: all must stay up


def exit_reason(code):
    if code is None:
        return "running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def check_alive(when):
    """Stops the run at once when anything it started has gone away: figures taken
    without an origin or a balancer would be wrong. (A SIGTERM or SIGKILL here comes
    from outside this script, e.g. someone's `pkill -f limpet` on a shared machine.)"""
    dead = [p for p in LIVE if not p.alive()]
    if dead:
        lines = [f"bench: {p.name} ended {when} ({exit_reason(p.p.returncode)}); its output:\n"
                 + p.log_text()[-2000:] for p in dead]
        raise SystemExit("\n".join(lines))


class Proc:
    """A process tree this script started (its own process group)."""

    def __init__(self, name, argv, tmp, stop_signal=signal.SIGKILL, cwd=None):
        self.name = name
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.stop_signal = stop_signal
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=cwd or ROOT,
                                  start_new_session=True,
                                  preexec_fn=_child_setup(stop_signal))
        LIVE.append(self)

    def alive(self):
        return self.p.poll() is None

    def pids(self):
        """The process and all its descendants (nginx: master and workers)."""
        table = proc_table()
        found, pending = [], [self.p.pid]
        while pending:
            pid = pending.pop()
            if pid in table:
                found.append(pid)
                pending.extend(c for c, pp in table.items() if pp == pid)
        return found

    def cpu_ticks(self):
        """utime + stime of every process of the tree (all threads included)."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                total += int(rest[11]) + int(rest[12])
            except (OSError, IndexError):
                pass
        return total

    def thread_ticks(self):
        """{tid: utime + stime} of every thread of the tree."""
        ticks = {}
        for pid in self.pids():
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        rest = f.read().rsplit(")", 1)[1].split()
                    ticks[int(tid)] = int(rest[11]) + int(rest[12])
                except (OSError, IndexError):
                    pass
        return ticks

    def rss_kib(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Rss:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                pass
        return total

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self in LIVE:
            LIVE.remove(self)
        if self.alive():
            try:
                os.killpg(self.p.pid, self.stop_signal)
                self.p.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=5)
        else:
            # nginx workers left behind by a master that died: same process group
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()


ORIGIN_PROCS = []  # the three nginx origins, for their CPU per request


def machine_ticks():
    """(idle + iowait, all) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v[3] + v[4], sum(v)


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_get(port, path="/", headers=None, timeout=2.0, tls=False):
    if tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def wait_ready(proc, port, deadline=10.0, tls=False):
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        if not proc.alive():
            raise SystemExit(f"bench: {proc.name} exited at start:\n{proc.log_text()}")
        try:
            status, _, _ = http_get(port, timeout=1.0, tls=tls)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise SystemExit(f"bench: {proc.name} not answering on {port} ({last}):\n{proc.log_text()}")


# ---------------------------------------------------------------- configs

def nginx_common(tmp, name):
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 40000)
    return f"""daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.err warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections 16384; }}
"""


def nginx_http_common(tmp):
    return f"""  access_log off;
  client_body_temp_path {tmp}/ngx_body;
  proxy_temp_path {tmp}/ngx_proxy;
  fastcgi_temp_path {tmp}/ngx_fastcgi;
  uwsgi_temp_path {tmp}/ngx_uwsgi;
  scgi_temp_path {tmp}/ngx_scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
"""


def origin_conf(tmp, i, port):
    body = BODY.decode().replace("\n", "\\n")
    return nginx_common(tmp, f"o{i}") + f"""worker_processes 1;
master_process off;
http {{
{nginx_http_common(tmp)}  default_type text/plain;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /big {{ add_header X-Served-By o{i}; default_type application/octet-stream;
                      alias {tmp}/www/big.bin; }}
    location / {{ add_header X-Served-By o{i}; return 200 "{body}"; }}
  }}
}}
"""


def nginx_lb_conf(tmp, name, port, workers):
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in ORIGIN_PORTS)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return nginx_common(tmp, name) + user + f"""worker_processes {workers};
master_process on;
http {{
{nginx_http_common(tmp)}  upstream origins {{
{servers}    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://origins;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }}
  }}
}}
"""


def haproxy_conf(port, threads, tls_pem=None, tls_port=None):
    servers = "".join(f"    server s{i + 1} 127.0.0.1:{p} cookie s{i + 1}\n"
                      for i, p in enumerate(ORIGIN_PORTS))
    tls = ""
    if tls_pem:
        tls = f"""
frontend fe_tls
    bind 127.0.0.1:{tls_port} ssl crt {tls_pem} alpn http/1.1 ssl-min-ver TLSv1.2
    default_backend be
"""
    return f"""global
    nbthread {threads}
    maxconn 8000

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:{port}
    default_backend be
{tls}
backend be
    balance roundrobin
    cookie SRV insert indirect nocache
{servers}"""


def limpet_conf(tmp, port, threads, n_origins=3, tls_port=None):
    import json
    origins = [{"name": f"o{i + 1}", "address": f"127.0.0.1:{ORIGIN_PORTS[i % 3]}"}
               for i in range(n_origins)]
    listen = [{"address": f"127.0.0.1:{port}", "load_balancer": "bench"}]
    if tls_port:
        listen.append({"address": f"127.0.0.1:{tls_port}", "load_balancer": "bench",
                       "tls": {"certificates": [{"certificate": f"{tmp}/bench.crt",
                                                 "private_key": f"{tmp}/bench.key"}]}})
    return json.dumps({
        "listen": listen,
        "threads": threads,
        "log": {"access": "off"},
        "secret_file": f"{tmp}/affinity.key",
        "pools": [{"name": "p", "origins": origins}],
        "load_balancers": [{"name": "bench", "default_pools": ["p"],
                            "session_affinity": "cookie",
                            "session_affinity_attributes": {"cookie_name": "__limpet"}}],
    }, indent=1)


# ---------------------------------------------------------------- balancers

class Balancer:
    def __init__(self, key, proc, port, tls_port=None):
        self.key, self.proc, self.port, self.tls_port = key, proc, port, tls_port
        self.cookie = None  # "name=value" a sticky client sends back

    def url(self, path="/", tls=False):
        if tls:
            return f"https://127.0.0.1:{self.tls_port}{path}"
        return f"http://127.0.0.1:{self.port}{path}"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def check_config(argv, what):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SystemExit(f"bench: {what} config refused:\n{r.stdout}{r.stderr}")


def start_balancer(kind, key, tmp, threads, n_origins=3):
    port = PORT[key]
    tls_port = TLS_PORT.get(key)
    if kind == "haproxy":
        cfg = os.path.join(tmp, f"{key}.cfg")
        write(cfg, haproxy_conf(port, threads, f"{tmp}/bench.pem" if tls_port else None,
                                tls_port))
        check_config(["haproxy", "-c", "-q", "-f", cfg], key)
        proc = Proc(key, ["haproxy", "-db", "-f", cfg], tmp)
    elif kind == "nginx":
        cfg = os.path.join(tmp, f"{key}.conf")
        write(cfg, nginx_lb_conf(tmp, key, port, threads))
        proc = Proc(key, ["nginx", "-p", tmp, "-c", cfg, "-e", f"{tmp}/{key}.err"], tmp,
                    stop_signal=signal.SIGTERM)
    elif kind == "limpet":
        cfg = os.path.join(tmp, f"{key}.json")
        write(cfg, limpet_conf(tmp, port, threads, n_origins, tls_port))
        check_config([os.path.join(BUILD, "limpet"), "-t", "-c", cfg], key)
        proc = Proc(key, [os.path.join(BUILD, "limpet"), "-c", cfg], tmp,
                    stop_signal=signal.SIGTERM)
    elif kind == "floor":
        proc = Proc(key, [os.path.join(BUILD, "floor_relay"), f"127.0.0.1:{port}",
                          f"127.0.0.1:{ORIGIN_PORTS[0]}"], tmp)
    else:
        raise ValueError(kind)
    wait_ready(proc, port)
    if tls_port:
        wait_ready(proc, tls_port, tls=True)
    b = Balancer(key, proc, port, tls_port)
    get_cookie(b)
    return b


def get_cookie(b):
    """Takes the affinity cookie from a first response and checks it sticks."""
    status, hdrs, body = http_get(b.port)
    if status != 200 or body != BODY:
        raise SystemExit(f"bench: {b.key}: unexpected first response {status} {body[:80]!r}")
    setc = hdrs.get("set-cookie", "")
    if b.key.startswith("limpet"):
        m = re.search(r"(__limpet=[^;,\s]+)", setc)
        if not m:
            raise SystemExit(f"bench: {b.key} set no __limpet cookie (Set-Cookie: {setc!r})")
        b.cookie = m.group(1)
    elif b.key.startswith("haproxy"):
        m = re.search(r"(SRV=[^;,\s]+)", setc)
        if not m:
            raise SystemExit(f"bench: {b.key} set no SRV cookie (Set-Cookie: {setc!r})")
        b.cookie = m.group(1)
    if b.cookie:
        served = set()
        for _ in range(6):
            _, h, _ = http_get(b.port, headers={"Cookie": b.cookie})
            served.add(h.get("x-served-by"))
        if len(served) != 1 or None in served:
            raise SystemExit(f"bench: {b.key}: cookie {b.cookie} not sticky: served by {served}")
        say(f"{b.key}: cookie {b.cookie[:40]}{'…' if len(b.cookie) > 40 else ''} "
            f"sticks to {served.pop()}")


# ---------------------------------------------------------------- wrk

_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNIT_B = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def parse_wrk(out):
    res = {"errors": 0, "non2xx": 0, "latency": {}}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGT]?B) read", out)
    if not m:
        return None
    res["requests"] = int(m.group(1))
    res["duration"] = float(m.group(2)) * _UNIT_S[m.group(3)]
    res["bytes"] = float(m.group(4)) * _UNIT_B[m.group(5)]
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else res["requests"] / res["duration"]
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        res["latency"][int(pct)] = float(val) * _UNIT_S[unit] * 1e3  # ms
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
        res["errors"] = sum(res["socket_errors"].values())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    res["mib_s"] = res["bytes"] / res["duration"] / 1024 ** 2
    return res


def run_wrk(b, path="/", threads=1, conns=CONNS, secs=SECONDS, headers=(), tls=False):
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--timeout", "5s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    argv.append(b.url(path, tls=tls))
    before, threads_before = b.proc.cpu_ticks(), b.proc.thread_ticks()
    origins_before = sum(o.cpu_ticks() for o in ORIGIN_PROCS)
    idle_before, all_before = machine_ticks()
    kids_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 30)
        out = r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        out = f"wrk timed out\n{e.stdout or ''}"
    wall = time.monotonic() - t0
    kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle_after, all_after = machine_ticks()
    origins_after = sum(o.cpu_ticks() for o in ORIGIN_PROCS)
    after, threads_after = b.proc.cpu_ticks(), b.proc.thread_ticks()
    check_alive(f"during wrk against {b.key}")
    res = parse_wrk(out)
    if not res or res["requests"] == 0:
        say(f"  {b.key}: wrk gave no result:\n{out}")
        return None
    n = res["requests"]
    res["cpu_us"] = (after - before) * 1e6 / CLK_TCK / n
    # where the machine's time went: wrk (the only child that ran meanwhile), the
    # origins, everything (from /proc/stat), how idle it stayed, and how busy the
    # balancer's busiest thread was (1.0 = a whole core: it set the pace)
    res["wrk_us"] = ((kids_after.ru_utime + kids_after.ru_stime)
                     - (kids_before.ru_utime + kids_before.ru_stime)) * 1e6 / n
    res["origins_us"] = (origins_after - origins_before) * 1e6 / CLK_TCK / n
    busy_all = (all_after - all_before) - (idle_after - idle_before)
    res["machine_us"] = busy_all * 1e6 / CLK_TCK / n
    res["idle_pct"] = 100.0 * (idle_after - idle_before) / max(1, all_after - all_before)
    res["busiest"] = max((threads_after[t] - threads_before.get(t, 0) for t in threads_after),
                         default=0) / CLK_TCK / wall
    res["argv"] = " ".join(argv)
    return res


def measure(name, variants, sticky=True, extra=(), **wrk_args):
    """Interleaved rounds: A B C D, A B C D, ... Returns {key: [result, ...]}.
    sticky: each balancer's client sends back the cookie that balancer set."""
    runs = {b.key: [] for b in variants}
    for r in range(ROUNDS):
        for b in variants:
            headers = tuple(extra)
            if sticky and b.cookie:
                headers += (f"Cookie: {b.cookie}",)
            res = run_wrk(b, headers=headers, **wrk_args)
            runs[b.key].append(res)
            if res:
                extra_txt = ""
                if res["errors"] or res["non2xx"]:
                    extra_txt = f"  errors {res['errors']} non-2xx {res['non2xx']}"
                say(f"{name:<18} {r + 1}/{ROUNDS} {b.key:<12}"
                    f"{res['rps']:>8,.0f} req/s {res['mib_s']:>7.1f} MiB/s  "
                    f"p99 {res['latency'].get(99, float('nan')):6.2f} ms  "
                    f"cpu {res['cpu_us']:6.1f} us/req{extra_txt}")
            time.sleep(PAUSE)
    return runs


def run_tls_load(b, mode, secs=SECONDS, headers=()):
    """New TLS connections per second (build/tls_load): full or resumed handshakes,
    one sticky request each (Connection: close). CPU µs per connection."""
    argv = [os.path.join(BUILD, "tls_load"), "-p", str(TLS_PROCS), f"127.0.0.1:{b.tls_port}",
            str(secs), str(TLS_CONNS), mode, *headers]
    before = b.proc.cpu_ticks()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 30)
        out = r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        out = f"tls_load timed out\n{e.stdout or ''}"
    after = b.proc.cpu_ticks()
    check_alive(f"during tls_load against {b.key}")
    m = dict(re.findall(r"(\w+)=([\d.]+)", out))
    if not m.get("connections") or float(m["connections"]) == 0:
        say(f"  {b.key}: tls_load gave no result:\n{out}")
        return None
    n = float(m["connections"])
    return {"rps": float(m["rate"]), "requests": int(n), "resumed": int(m["resumed"]),
            "errors": int(m["errors"]), "non2xx": int(m["non200"]), "latency": {},
            "mib_s": 0.0, "cpu_us": (after - before) * 1e6 / CLK_TCK / n,
            "argv": " ".join(argv)}


def measure_tls_load(name, variants, mode):
    runs = {b.key: [] for b in variants}
    for r in range(ROUNDS):
        for b in variants:
            res = run_tls_load(b, mode, headers=(f"Cookie: {b.cookie}",) if b.cookie else ())
            runs[b.key].append(res)
            if res:
                say(f"{name:<18} {r + 1}/{ROUNDS} {b.key:<12}{res['rps']:>8,.0f} conn/s "
                    f"resumed {100 * res['resumed'] / max(res['requests'], 1):3.0f}%  "
                    f"cpu {res['cpu_us']:7.1f} us/conn"
                    + (f"  errors {res['errors']} non-200 {res['non2xx']}"
                       if res["errors"] or res["non2xx"] else ""))
            time.sleep(PAUSE)
    return runs


def paired(runs_a, runs_b, field):
    """Median over rounds of a's value ÷ b's value in the same round."""
    vals = [a[field] / b[field] for a, b in zip(runs_a or [], runs_b or [])
            if a and b and a.get(field) and b.get(field)]
    return statistics.median(vals) if vals else None


def med(runs, field, sub=None):
    vals = []
    for r in runs or []:
        if r is None:
            continue
        v = r[field] if sub is None else r[field].get(sub)
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


# ---------------------------------------------------------------- idle connections

def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(rest) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before the body's end")
        rest += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(head.split(b"\r\n", 1)[0].decode(errors="replace"))


def origin_conns():
    """Established TCP connections to the origins' ports (any client: compare deltas)."""
    ports = {f"{p:04X}" for p in ORIGIN_PORTS}
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "01" and fields[2].rsplit(":", 1)[1] in ports:
                n += 1
    return n


def idle_rss(b, n):
    """RSS added per idle keep-alive client connection, n of them open at once."""
    time.sleep(1.0)
    before = b.proc.rss_kib()
    oc_before = origin_conns()
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if b.cookie:
        req += b"Cookie: " + b.cookie.encode() + b"\r\n"
    req += b"\r\n"
    socks, failed = [], 0
    deadline = time.monotonic() + 120
    for _ in range(n):
        if time.monotonic() > deadline:
            failed += 1
            continue
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", b.port))
            s.sendall(req)
            read_response(s)
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    time.sleep(1.0)
    after = b.proc.rss_kib()
    oc_after = origin_conns()
    # Still open? A balancer that dropped them would look cheaper than it is.
    still = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue  # closed by the balancer
        except BlockingIOError:
            still += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    time.sleep(1.0)
    open_n = len(socks)
    per_conn = (after - before) * 1024 / open_n if open_n else None
    say(f"idle connections       {b.key:<12} {open_n} opened ({failed} failed, {still} still open "
        f"at the reading)  RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB  "
        f"= {per_conn if per_conn is not None else float('nan'):,.0f} B/conn; "
        f"origin connections {oc_before} -> {oc_after}")
    return {"origin_conns_before": oc_before, "origin_conns_after": oc_after,"before_kib": before, "after_kib": after, "opened": open_n, "failed": failed,
            "still_open": still, "bytes_per_conn": per_conn}


# ---------------------------------------------------------------- report

def sh(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    commit = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--", "src"])
    branch = sh(["git", "-C", ROOT, "rev-parse", "--abbrev-ref", "HEAD"])
    return {
        "nproc": sh(["nproc"]), "cpu": model, "kernel": sh(["uname", "-r"]), "memory": mem,
        "haproxy": sh(["haproxy", "-v"]).splitlines()[0],
        "nginx": sh(["nginx", "-v"]).splitlines()[0],
        "wrk": sh(["wrk", "-v"]).splitlines()[0],
        "limpet": f"{branch} @ {commit}{' (src/ modified)' if dirty else ''}",
    }


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:.2f}"
    if kind == "us":
        return f"{v:.1f}"
    if kind == "mib":
        return f"{v:,.0f}"
    if kind == "mibv":
        return f"{v:,.1f}"
    if kind == "bytes":
        return f"{v:,.0f}"
    if kind == "x":
        return f"{v:.2f}×"
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def svg_chart(rows, path):
    """Grouped bars of limpet/HAProxy and limpet/nginx per figure, log scale, 1.0 line."""
    data = [(r["short"], r["better"], ratio(r["vals"].get("limpet"), r["vals"].get("haproxy")),
             ratio(r["vals"].get("limpet"), r["vals"].get("nginx"))) for r in rows]
    vals = [v for _, _, a, b in data for v in (a, b) if v]
    import math
    lo = min([0.5] + vals)
    hi = max([2.0] + vals)
    lo_e = math.floor(math.log2(lo))
    hi_e = math.ceil(math.log2(hi))
    W_GROUP, BAR, LEFT, TOP, PH = 74, 24, 64, 56, 330
    width = LEFT + W_GROUP * len(data) + 110
    height = TOP + PH + 130

    def y(v):
        return TOP + PH * (hi_e - math.log2(v)) / (hi_e - lo_e)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="20" font-size="15" font-weight="bold">limpet ÷ peer, per '
           f'figure (log scale; median of {ROUNDS} round{"s" if ROUNDS > 1 else ""})</text>',
           f'<text x="{LEFT}" y="38" fill="#444">▲ higher is better for limpet: above 1.0 '
           f'limpet wins · ▼ lower is better: below 1.0 limpet wins</text>']
    for e in range(lo_e, hi_e + 1):
        v = 2.0 ** e
        yy = y(v)
        label = f"{v:g}" if v >= 1 else f"1/{1 / v:g}"
        out.append(f'<line x1="{LEFT}" x2="{width - 90}" y1="{yy:.1f}" y2="{yy:.1f}" '
                   f'stroke="{"#000" if e == 0 else "#ddd"}" '
                   f'stroke-width="{1.5 if e == 0 else 1}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{label}</text>')
    colors = [("#1f77b4", "limpet / HAProxy"), ("#2ca02c", "limpet / nginx")]
    for i, (short, better, a, b) in enumerate(data):
        gx = LEFT + W_GROUP * i + (W_GROUP - 2 * BAR) / 2
        for j, v in enumerate((a, b)):
            x = gx + j * BAR
            if not v:
                out.append(f'<text x="{x + BAR / 2:.1f}" y="{y(1) - 4:.1f}" '
                           f'text-anchor="middle" fill="#999">n/a</text>')
                continue
            y1, y0 = sorted((y(v), y(1.0)))
            out.append(f'<rect x="{x + 1:.1f}" y="{y1:.1f}" width="{BAR - 2}" '
                       f'height="{max(y0 - y1, 1):.1f}" fill="{colors[j][0]}"/>')
            ty = y1 - 3 if v >= 1 else y0 + 11
            out.append(f'<text x="{x + BAR / 2:.1f}" y="{ty:.1f}" text-anchor="middle" '
                       f'font-size="9">{v:.2f}</text>')
        cx = LEFT + W_GROUP * i + W_GROUP / 2
        arrow = "▲" if better == "higher" else "▼"
        out.append(f'<text transform="translate({cx:.1f},{TOP + PH + 14}) rotate(35)" '
                   f'font-size="10.5">{arrow} {short}</text>')
    lx = LEFT
    for c, name in colors:
        out.append(f'<rect x="{lx}" y="{height - 18}" width="12" height="12" fill="{c}"/>')
        out.append(f'<text x="{lx + 16}" y="{height - 8}">{name}</text>')
        lx += 140
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# Lines every start or stop writes: not worth a note.
BENIGN = re.compile(r"limpet: listening on |SIGTERM: stopping|limpet: stopped|"
                    r"listening sockets shut: new connections are refused|\[notice\]")


def report(m, res, started, elapsed):
    os.makedirs(OUT, exist_ok=True)
    figs = res["figures"]
    rows = []

    def add(short, title, better, kind, vals, ratios=True):
        rows.append({"short": short, "title": title, "better": better, "kind": kind,
                     "vals": vals, "ratios": ratios})

    S = res["sticky"]
    add("req/s keep-alive", f"sticky keep-alive requests/s (wrk -t1 -c{CONNS})", "higher",
        "rps", {k: med(S.get(k), "rps") for k in MAIN})
    add("p50 latency", "sticky keep-alive p50 latency (ms)", "lower", "ms",
        {k: med(S.get(k), "latency", 50) for k in MAIN})
    add("p99 latency", "sticky keep-alive p99 latency (ms)", "lower", "ms",
        {k: med(S.get(k), "latency", 99) for k in MAIN})
    add("CPU µs/req", "sticky keep-alive CPU µs per request", "lower", "us",
        {k: med(S.get(k), "cpu_us") for k in MAIN})
    C = res["close"]
    add("req/s Conn: close", f"`Connection: close` requests/s (wrk -t1 -c{CONNS})", "higher",
        "rps", {k: med(C.get(k), "rps") for k in MAIN})
    add("CPU µs/req close", "`Connection: close` CPU µs per request", "lower", "us",
        {k: med(C.get(k), "cpu_us") for k in MAIN})
    N = res["new"]
    add("req/s new session", f"new-session (no cookie) keep-alive requests/s (wrk -t1 -c{CONNS})",
        "higher", "rps", {k: med(N.get(k), "rps") for k in MAIN})
    add("CPU µs/req new", "new-session CPU µs per request", "lower", "us",
        {k: med(N.get(k), "cpu_us") for k in MAIN})
    B = res["big"]
    add("1 MiB MiB/s", f"1 MiB responses, MiB/s (wrk -t1 -c{BIG_CONNS} /big)", "higher", "mib",
        {k: med(B.get(k), "mib_s") for k in MAIN})
    add("CPU µs/1 MiB", "CPU µs per 1 MiB response", "lower", "us",
        {k: med(B.get(k), "cpu_us") for k in MAIN})
    I = res["idle"]
    add("RSS B/idle conn", f"RSS per idle keep-alive client connection, bytes ({IDLE:,} open)",
        "lower", "bytes", {k: (I.get(k) or {}).get("bytes_per_conn") for k in MAIN})
    add("RSS idle", f"RSS with {IDLE:,} idle connections open, MiB (all processes)", "lower",
        "mibv", {k: (I.get(k) or {}).get("after_kib", 0) / 1024 or None for k in MAIN})
    add("origin conns idle", f"connections to origins held for {IDLE:,} idle clients", "lower",
        "rps", {k: ((I.get(k) or {}).get("origin_conns_after", 0)
                    - (I.get(k) or {}).get("origin_conns_before", 0)) if I.get(k) else None
                for k in MAIN}, ratios=False)
    K = res["tls_ka"]
    add("TLS req/s keep-alive", f"TLS sticky keep-alive requests/s (wrk -t1 -c{CONNS} https)",
        "higher", "rps", {k: med(K.get(k), "rps") for k in MAIN})
    add("CPU µs/req TLS", "TLS sticky keep-alive CPU µs per request", "lower", "us",
        {k: med(K.get(k), "cpu_us") for k in MAIN})
    F = res["tls_full"]
    add("TLS conn/s full", f"new TLS connections/s, full handshakes (tls_load, {TLS_CONNS} at "
        "once, one request each)", "higher", "rps", {k: med(F.get(k), "rps") for k in MAIN})
    add("CPU µs/full hs", "CPU µs per new TLS connection, full handshake", "lower", "us",
        {k: med(F.get(k), "cpu_us") for k in MAIN})
    R = res["tls_resumed"]
    add("TLS conn/s resumed", f"new TLS connections/s, resumed sessions (tls_load, "
        f"{TLS_CONNS} at once)", "higher", "rps", {k: med(R.get(k), "rps") for k in MAIN})
    add("CPU µs/resumed hs", "CPU µs per new TLS connection, resumed session", "lower", "us",
        {k: med(R.get(k), "cpu_us") for k in MAIN})
    T = res["threads"]
    add("req/s 1 thread -t2", f"requests/s, 1 worker thread (wrk -t2 -c{CONNS}, sticky)", "higher",
        "rps", {k: med(T.get(k), "rps") for k in MAIN})
    add("req/s 2 threads", f"requests/s, 2 worker threads (wrk -t2 -c{CONNS}, sticky)", "higher",
        "rps", {k: med(T.get(f"{k}-2t"), "rps") for k in MAIN})
    add("CPU µs/req 2 thr.", "CPU µs per request, 2 worker threads", "lower", "us",
        {k: med(T.get(f"{k}-2t"), "cpu_us") for k in MAIN})
    add("gain 1→2 threads", "requests/s gain 1 → 2 worker threads", "higher", "x",
        {k: ratio(med(T.get(f"{k}-2t"), "rps"), med(T.get(k), "rps")) for k in MAIN})

    svg_chart([r for r in rows if r["ratios"]], os.path.join(OUT, "ratios.svg"))

    L = [f"# limpet bench results", "",
         f"Generated by `bench/run.sh` (`make bench`) on {started} UTC in {elapsed / 60:.1f} min"
         + (" — **quick mode (`BENCH_QUICK=1`): smoke test, not figures to quote**" if QUICK
            else "") + ".", "",
         "## Machine", "",
         f"- CPU: {m['cpu']}, `nproc` = {m['nproc']}; memory {m['memory']}; kernel {m['kernel']}",
         f"- {m['haproxy']}", f"- {m['nginx']}", f"- {m['wrk']}",
         f"- limpet: {m['limpet']}",
         "- load generator, balancers and origins share these cores (loopback only); other "
         "work on the machine during the run adds noise: compare ratios, not absolute numbers.",
         "", "## Command and settings", "",
         f"    BENCH_SECONDS={SECONDS} BENCH_ROUNDS={ROUNDS} "
         f"{'BENCH_QUICK=1 ' if QUICK else ''}make bench", "",
         f"- {ROUNDS} interleaved round(s) per measurement (HAProxy, nginx, limpet, floor, "
         f"HAProxy, …), {SECONDS} s per wrk run; every figure is the **median** over rounds.",
         "- Three nginx origins (1 worker each, `access_log off`) answer `/` with a 100-byte "
         "body and `/big` with 1 MiB, each adding `X-Served-By`.",
         "- HAProxy: `nbthread 1`, `balance roundrobin`, `cookie SRV insert indirect nocache`, "
         "`http-reuse always`, keep-alive both sides, no logging.",
         "- nginx: `worker_processes 1`, `upstream` of the three origins with `keepalive 64`, "
         "`proxy_http_version 1.1`, `proxy_set_header Connection \"\"`, "
         "`keepalive_requests 1000000`, `proxy_max_temp_file_size 0`.",
         "- limpet: `threads: 1`, `log.access: off`, `session_affinity: cookie` (`__limpet`), "
         "round robin over the three origins; its default I/O: plain connections through an "
         "io_uring per worker thread (TLS connections through epoll); its listeners defer "
         "accepting until a client's first bytes (`TCP_DEFER_ACCEPT`), which HAProxy "
         "(`defer-accept`) and nginx (`deferred`) offer as options, off by default and "
         "off here.",
         "- floor: `build/floor_relay` (bench/floor_relay.c) relaying bytes to origin 1; no "
         "parsing, no affinity: the least an epoll proxy can do per request.",
         f"- Sticky clients send the cookie their balancer set on a first request (limpet "
         f"`__limpet=…`, HAProxy `SRV=s1`); nginx and the floor get no cookie. "
         f"`Connection: close` runs send the cookie too; new-session runs send none.",
         "- CPU µs per request = (utime + stime of every process of the balancer, from "
         "`/proc/PID/stat`, before and after the wrk run) ÷ requests wrk completed.",
         f"- Idle memory: {IDLE:,} keep-alive connections, each having made one sticky request, "
         "held open; (RSS after − RSS before, summed over the balancer's processes from "
         "`/proc/PID/smaps_rollup`) ÷ connections.",
         "- Threads: the 1- and 2-thread instances are measured in the same interleaved rounds "
         "with `wrk -t2` (the floor relay is single-threaded: no 2-thread figure).",
         "- TLS (limpet and HAProxy only, same ECDSA P-256 certificate, TLS 1.3 negotiated): "
         "keep-alive requests over TLS with `wrk` on `https://`; new connections per second "
         f"with `build/tls_load` (bench/tls_load.c: {TLS_CONNS} connections at once over "
         f"{TLS_PROCS} client process(es), one per core, each connection a "
         "handshake — full, or resuming the last session received — then one sticky request "
         "with `Connection: close`); CPU µs per connection as for requests. HAProxy: "
         "`bind … ssl crt … alpn http/1.1 ssl-min-ver TLSv1.2`, its default session cache "
         "and tickets.",
         "", f"## Figures (median of {ROUNDS})", "",
         "| figure | better | HAProxy | nginx | limpet | floor |",
         "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        L.append(f"| {r['title']} | {r['better']} | "
                 + " | ".join(fmt(r["vals"].get(k), r["kind"]) for k in MAIN) + " |")
    L += ["", "## limpet ÷ peer", "",
          "Above 1.0 is better for limpet where higher is better (req/s, MiB/s, gain), "
          "below 1.0 where lower is better (latency, CPU, memory).", "",
          "| figure | better | limpet/HAProxy | limpet/nginx | limpet/floor |",
          "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        v = r["vals"]
        if not r["ratios"]:
            continue
        L.append(f"| {r['title']} | {r['better']} | "
                 + " | ".join(fmt(ratio(v.get("limpet"), v.get(k)), "x")
                              for k in ("haproxy", "nginx", "floor")) + " |")
    L += ["", "![limpet ÷ HAProxy and limpet ÷ nginx per figure](ratios.svg)", ""]

    L += ["## Paired by round", "",
          "The same ratios taken within each round (the runs of one round follow each other), "
          "then the median over rounds: a drift of the machine between rounds cancels out. "
          "The figures above are ratios of medians; where the two disagree, the noise of the "
          "run is larger than their difference.", "",
          "| figure | better | limpet/HAProxy | limpet/nginx | limpet/floor |",
          "| --- | --- | ---: | ---: | ---: |"]
    for title, better, runs, field in (
            ("sticky keep-alive requests/s", "higher", S, "rps"),
            ("sticky keep-alive CPU µs per request", "lower", S, "cpu_us"),
            ("`Connection: close` requests/s", "higher", C, "rps"),
            ("`Connection: close` CPU µs per request", "lower", C, "cpu_us"),
            ("new-session requests/s", "higher", N, "rps"),
            ("1 MiB responses, MiB/s", "higher", B, "mib_s")):
        L.append(f"| {title} | {better} | "
                 + " | ".join(fmt(paired(runs.get("limpet"), runs.get(k), field), "x")
                              for k in ("haproxy", "nginx", "floor")) + " |")
    L += ["", "| balancer | requests/s gain 1 → 2 worker threads, median of the rounds' gains |",
          "| --- | ---: |"]
    for k in MAIN:
        if T.get(f"{k}-2t"):
            L.append(f"| {LABEL.get(k, k)} | {fmt(paired(T.get(f'{k}-2t'), T.get(k), 'rps'), 'x')} |")
    L.append("")

    L += ["## Where the machine's time goes", "",
          f"The load generator, the origins and the balancer share {m['nproc']} cores. Per "
          "request, over the same wrk runs as above (medians): CPU µs of the balancer, of wrk, "
          "of the three origins, and of the whole machine (every process and the kernel, from "
          "`/proc/stat`); how much of the machine stayed idle; and how busy the balancer's "
          "busiest thread was (100 % = a whole core). A balancer whose busiest thread is near "
          "100 % sets the pace itself; one well below it does not, and its requests/s is about "
          "cores × (1 − idle) ÷ the whole machine's µs per request, of which wrk and the "
          "origins are the larger part.", "",
          "| run | balancer | req/s | balancer µs/req | wrk µs/req | origins µs/req "
          "| machine µs/req | machine idle | busiest balancer thread |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    T = res["threads"]
    for run, runs, keys in ((f"sticky keep-alive, wrk -t1 -c{CONNS}", res["sticky"], MAIN),
                            (f"1 worker thread, wrk -t2 -c{CONNS}", T,
                             ("haproxy", "nginx", "limpet")),
                            (f"2 worker threads, wrk -t2 -c{CONNS}", T,
                             ("haproxy-2t", "nginx-2t", "limpet-2t"))):
        for k in keys:
            rs = runs.get(k)
            idle, busiest = med(rs, "idle_pct"), med(rs, "busiest")
            L.append(f"| {run} | {LABEL[k.split('-')[0]]} | {fmt(med(rs, 'rps'), 'rps')} | "
                     + " | ".join(fmt(med(rs, f), "us") for f in
                                  ("cpu_us", "wrk_us", "origins_us", "machine_us"))
                     + f" | {'—' if idle is None else f'{idle:.0f} %'} | "
                     f"{'—' if busiest is None else f'{busiest * 100:.0f} %'} |")
    L.append("")

    L += ["## 1 → 2 worker threads", "",
          f"`wrk -t2 -c{CONNS}`, sticky keep-alive. wrk needs CPU too and there are "
          f"{m['nproc']} cores, so the gain is bounded well below 2×.", "",
          "| balancer | req/s 1 thread | req/s 2 threads | gain | CPU µs/req 1 | CPU µs/req 2 |",
          "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k in ("haproxy", "nginx", "limpet"):
        r1, r2 = med(T.get(k), "rps"), med(T.get(f"{k}-2t"), "rps")
        L.append(f"| {LABEL[k]} | {fmt(r1, 'rps')} | {fmt(r2, 'rps')} | "
                 f"{fmt(ratio(r2, r1), 'x')} | {fmt(med(T.get(k), 'cpu_us'), 'us')} | "
                 f"{fmt(med(T.get(f'{k}-2t'), 'cpu_us'), 'us')} |")
    O, N = res["origins1000"], res["origins1000_new"]
    L += ["", "## limpet: 1,000 origins vs 3", "",
          f"One pool of 1,000 origins (distinct names, addresses cycling over the three nginx "
          f"origins) against the usual 3, interleaved: sticky keep-alive (`wrk -t1 -c{CONNS}`, "
          f"the cookie's origin, no steering), and new sessions on new connections (no cookie, "
          f"`Connection: close`: every request steered by round robin among the 1,000).",
          "", "| | 3 origins | 1,000 origins | 1,000 ÷ 3 |", "| --- | ---: | ---: | ---: |"]
    for label, runs in (("sticky keep-alive", O), ("new sessions, `Connection: close`", N)):
        r3, r1000 = med(runs.get("limpet"), "rps"), med(runs.get("limpet-1000"), "rps")
        c3, c1000 = med(runs.get("limpet"), "cpu_us"), med(runs.get("limpet-1000"), "cpu_us")
        L += [f"| {label}: requests/s | {fmt(r3, 'rps')} | {fmt(r1000, 'rps')} | "
              f"{fmt(ratio(r1000, r3), 'x')} |",
              f"| {label}: CPU µs/req | {fmt(c3, 'us')} | {fmt(c1000, 'us')} | "
              f"{fmt(ratio(c1000, c3), 'x')} |"]
    L.append("")

    L += ["## Errors and oddities", ""]
    notes = []
    for meas, runs in (("sticky", res["sticky"]), ("close", res["close"]), ("new", res["new"]),
                       ("big", res["big"]), ("threads", res["threads"]),
                       ("1000 origins", res["origins1000"]),
                       ("1000 origins, new sessions", res["origins1000_new"]),
                       ("TLS keep-alive", res["tls_ka"]),
                       ("TLS full handshakes", res["tls_full"]),
                       ("TLS resumed", res["tls_resumed"])):
        for k, rs in runs.items():
            errs = sum(r["errors"] for r in rs if r)
            non2 = sum(r["non2xx"] for r in rs if r)
            failed = sum(1 for r in rs if r is None)
            if errs or non2 or failed:
                detail = {}
                for r in rs:
                    for kk, vv in (r or {}).get("socket_errors", {}).items():
                        detail[kk] = detail.get(kk, 0) + vv
                notes.append(f"- {meas}, {k}: wrk socket errors {errs} "
                             f"({', '.join(f'{a} {b}' for a, b in detail.items() if b) or '-'}), "
                             f"non-2xx responses {non2}, runs without result {failed}")
    for k, i in res["idle"].items():
        if i and (i["failed"] or i["still_open"] != i["opened"]):
            notes.append(f"- idle connections, {k}: {i['failed']} of {IDLE:,} could not be "
                         f"opened, {i['opened'] - i['still_open']} were closed by the balancer "
                         f"before the RSS reading")
    for k, text in res["logs"].items():
        lines = [l for l in text.splitlines() if l.strip() and not BENIGN.search(l)]
        if lines:
            uniq = []
            for l in lines:
                l2 = re.sub(r"\d", "#", l)
                if l2 not in [re.sub(r"\d", "#", u) for u in uniq]:
                    uniq.append(l)
            notes.append(f"- {k} wrote {len(lines)} line(s) to stderr/its error log, e.g.: "
                         + "; ".join(f"`{u.strip()[:160]}`" for u in uniq[:3]))
    L += notes or ["- none: no wrk socket errors, no non-2xx responses, nothing on stderr."]
    L += ["", "## Every run", "",
          "req/s (CPU µs/req) per round, in run order.", ""]
    for meas, runs in (("sticky keep-alive", res["sticky"]), ("Connection: close", res["close"]),
                       ("new session", res["new"]), ("1 MiB (MiB/s)", res["big"]),
                       ("threads (wrk -t2)", res["threads"]),
                       ("1,000 origins", res["origins1000"]),
                       ("1,000 origins, new sessions, Connection: close", res["origins1000_new"]),
                       ("TLS keep-alive", res["tls_ka"]),
                       ("TLS new connections, full (conn/s)", res["tls_full"]),
                       ("TLS new connections, resumed (conn/s)", res["tls_resumed"])):
        L.append(f"- {meas}:")
        for k, rs in runs.items():
            field = "mib_s" if meas.startswith("1 MiB") else "rps"
            L.append(f"  - {k}: " + ", ".join(
                "failed" if r is None else f"{r[field]:,.0f} ({r['cpu_us']:.1f})" for r in rs))
    with open(os.path.join(OUT, "RESULTS.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    return rows


# ---------------------------------------------------------------- main

def main():
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE + 1000:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
        except (ValueError, OSError):
            pass
    for tool in ("haproxy", "nginx", "wrk"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            raise SystemExit(f"bench: {tool} missing (make bench installs it)")
    for binary in ("limpet", "floor_relay", "tls_load"):
        if not os.access(os.path.join(BUILD, binary), os.X_OK):
            raise SystemExit(f"bench: build/{binary} missing: run make bench")
    busy = [p for p in ORIGIN_PORTS + list(PORT.values()) if not port_free(p)]
    if busy:
        raise SystemExit(f"bench: loopback port(s) in use: {busy}")

    # (no "limpet" in the name: a `pkill -f limpet` elsewhere on the machine would
    # otherwise take the origins and peers along through their command lines)
    tmp = tempfile.mkdtemp(prefix="lbbench-")
    os.makedirs(os.path.join(tmp, "www"))
    with open(os.path.join(tmp, "www", "big.bin"), "wb") as f:
        f.write(os.urandom(BIG_SIZE))
    with open(os.path.join(tmp, "affinity.key"), "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    # one certificate for both TLS listeners (HAProxy wants it and its key in one file)
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{tmp}/bench.key",
                        "-out", f"{tmp}/bench.crt", "-days", "7", "-subj", "/CN=bench.test",
                        "-addext", "subjectAltName=DNS:bench.test"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"bench: openssl could not make the TLS certificate:\n{r.stderr}")
    write(f"{tmp}/bench.pem", open(f"{tmp}/bench.crt").read() + open(f"{tmp}/bench.key").read())

    procs = []
    total_runs = ROUNDS * (4 * 4 + 6 + 2 + 3 * 2)
    say(f"limpet bench: {ROUNDS} round(s) x {SECONDS} s, {total_runs} wrk runs "
        f"(~{total_runs * (SECONDS + PAUSE + 0.2) / 60 + 1:.0f} min); temp dir {tmp}")
    try:
        for i, port in enumerate(ORIGIN_PORTS, 1):
            cfg = os.path.join(tmp, f"o{i}.conf")
            write(cfg, origin_conf(tmp, i, port))
            p = Proc(f"o{i}", ["nginx", "-p", tmp, "-c", cfg, "-e", f"{tmp}/o{i}.err"], tmp)
            procs.append(p)
            ORIGIN_PROCS.append(p)
            wait_ready(p, port)
        say("origins up: " + ", ".join(f"127.0.0.1:{p}" for p in ORIGIN_PORTS))

        bal = {}
        for key in MAIN:
            b = start_balancer(key, key, tmp, 1)
            procs.append(b.proc)
            bal[key] = b
        main_set = [bal[k] for k in MAIN]
        say("balancers up: " + ", ".join(f"{k} :{bal[k].port}" for k in MAIN))

        say("warm-up (1 s each, not counted)")
        for b in main_set:
            run_wrk(b, secs=1, headers=(f"Cookie: {b.cookie}",) if b.cookie else ())

        res = {"figures": {}}
        say(f"== sticky keep-alive: wrk -t1 -c{CONNS} -d{SECONDS}s --latency -H 'Cookie: …'")
        res["sticky"] = measure("sticky keep-alive", main_set)
        say(f"== Connection: close: wrk -t1 -c{CONNS} -H 'Connection: close' -H 'Cookie: …'")
        res["close"] = measure("Connection: close", main_set, extra=("Connection: close",))
        say(f"== new session: wrk -t1 -c{CONNS}, no cookie")
        res["new"] = measure("new session", main_set, sticky=False)
        say(f"== 1 MiB responses: wrk -t1 -c{BIG_CONNS} /big -H 'Cookie: …'")
        res["big"] = measure("1 MiB responses", main_set, path="/big", conns=BIG_CONNS)

        tls_set = [bal["haproxy"], bal["limpet"]]
        say(f"== TLS keep-alive: wrk -t1 -c{CONNS} https://… -H 'Cookie: …'")
        res["tls_ka"] = measure("TLS keep-alive", tls_set, tls=True)
        say(f"== new TLS connections, full handshakes: tls_load … {TLS_CONNS} full")
        res["tls_full"] = measure_tls_load("TLS full hs", tls_set, "full")
        say(f"== new TLS connections, resumed sessions: tls_load … {TLS_CONNS} resume")
        res["tls_resumed"] = measure_tls_load("TLS resumed hs", tls_set, "resume")

        say("== limpet with 1,000 origins vs 3")
        l1000 = start_balancer("limpet", "limpet-1000", tmp, 1, n_origins=1000)
        procs.append(l1000.proc)
        res["origins1000"] = measure("1,000 origins", [bal["limpet"], l1000])
        res["origins1000_new"] = measure("1,000 origins new", [bal["limpet"], l1000],
                                         sticky=False, extra=("Connection: close",))
        l1000.proc.stop()
        res["logs_l1000"] = l1000.proc.log_text()

        say("== 1 vs 2 worker threads: wrk -t2 -c%d, sticky" % CONNS)
        two = {}
        for k in ("haproxy", "nginx", "limpet"):
            two[k] = start_balancer(k, f"{k}-2t", tmp, 2)
            procs.append(two[k].proc)
        order = []
        for k in ("haproxy", "nginx", "limpet"):
            order += [bal[k], two[k]]
        res["threads"] = measure("threads (wrk -t2)", order, threads=2)
        logs2 = {}
        for b in two.values():
            b.proc.stop()
            logs2[b.key] = b.proc.log_text()

        say(f"== idle memory: {IDLE:,} keep-alive connections per balancer")
        res["idle"] = {}
        for b in main_set:
            res["idle"][b.key] = idle_rss(b, IDLE)
            check_alive(f"while {b.key} held idle connections")

        logs = {}
        for key in MAIN:
            logs[key] = bal[key].proc.log_text()
        logs["limpet-1000"] = res.pop("logs_l1000")
        logs.update(logs2)
        for key in ("nginx", "nginx-2t", "o1", "o2", "o3"):
            try:
                with open(os.path.join(tmp, f"{key}.err"), errors="replace") as f:
                    logs[key] = logs.get(key, "") + f.read()
            except OSError:
                pass
        res["logs"] = logs
        elapsed = time.monotonic() - T0
        rows = report(machine(), res, started, elapsed)
    finally:
        for p in reversed(procs):
            p.stop()
        subprocess.run(["rm", "-rf", tmp])

    say(f"done in {elapsed / 60:.1f} min: {os.path.relpath(os.path.join(OUT, 'RESULTS.md'))}, "
        f"{os.path.relpath(os.path.join(OUT, 'ratios.svg'))}")
    print()
    print(f"{'figure':<58} {'better':<7} {'HAProxy':>10} {'nginx':>10} {'limpet':>10} "
          f"{'floor':>10}  {'l/HAP':>6} {'l/ngx':>6} {'l/flr':>6}")
    for r in rows:
        v = r["vals"]
        title = r["title"].replace("`", "")
        ratios = [fmt(ratio(v.get("limpet"), v.get(k)), "x") if r["ratios"] else ""
                  for k in ("haproxy", "nginx", "floor")]
        print(f"{title[:58]:<58} {r['better']:<7} "
              + " ".join(f"{fmt(v.get(k), r['kind']):>10}" for k in MAIN) + "  "
              + " ".join(f"{x:>6}" for x in ratios))


def _on_signal(signum, _frame):
    raise SystemExit(f"bench: stopped by signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    main()
