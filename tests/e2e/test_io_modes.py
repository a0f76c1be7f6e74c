"""Both ways a worker drives plain connections: io_uring (the default) and
epoll (LIMPET_IO=epoll, or a kernel without io_uring). The rest of the suite
runs on the default; this file proves the default really is the ring, that
a kernel refusing io_uring leaves limpet on epoll (saying so), and runs one battery of behaviours through each: keep-alive affinity, Connection:
close, pipelining, bodies larger than any one buffer both ways, a stale origin
connection, a client leaving mid-response, a WebSocket tunnel."""
import ctypes
import errno
import hashlib
import http.client
import os
import platform
import socket
import struct
import time

import pytest

from harness import (RawClient, Reply, basic_config, build_request, http_request,
                     websocket_handler)

MODES = ["uring", "epoll"]
WS_HEADERS = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    if request.param == "epoll":
        monkeypatch.setenv("LIMPET_IO", "epoll")
    else:
        monkeypatch.delenv("LIMPET_IO", raising=False)
    return request.param


def io_uring_fds(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]":
                n += 1
        except OSError:
            pass
    return n


def uring_usable():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip() == "0"
    except OSError:
        return True  # kernels before 6.6 have no such switch


def deny_io_uring():
    """Runs in limpet's child before exec: a seccomp filter makes io_uring_setup
    fail with ENOSYS, as on a kernel built without io_uring or in a sandbox
    that forbids it (Docker's default profile does). x86_64 only."""
    libc = ctypes.CDLL(None, use_errno=True)
    audit_arch_x86_64, nr_io_uring_setup = 0xC000003E, 425
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    allow, errno_ret = 0x7FFF0000, 0x00050000
    prog = [
        (ld_abs, 0, 0, 4),                        # A = seccomp_data.arch
        (jeq, 0, 3, audit_arch_x86_64),           # another ABI: allow
        (ld_abs, 0, 0, 0),                        # A = seccomp_data.nr
        (jeq, 0, 1, nr_io_uring_setup),
        (ret, 0, 0, errno_ret | errno.ENOSYS),
        (ret, 0, 0, allow),
    ]
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.addressof(buf))
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0 or \
            libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        os._exit(111)  # the test sees limpet never come up


def cookie_config(origins, **kw):
    return basic_config(origins, steering="round_robin",
                        lb_extra={"session_affinity": "cookie"}, **kw)


def test_each_worker_has_a_ring_unless_epoll_is_chosen(limpet, origin, mode):
    if mode == "uring" and not uring_usable():
        pytest.skip("io_uring is disabled on this machine")
    o = origin("s1")
    lp = limpet(basic_config([o], threads=2))
    assert http_request(lp.port, "GET", "/").status == 200
    rings = io_uring_fds(lp.pid)
    if mode == "uring":
        assert rings == 2, f"{rings} io_uring descriptors for 2 worker threads"
        assert "io_uring unavailable" not in lp.stderr_text()
    else:
        assert rings == 0, f"LIMPET_IO=epoll, yet {rings} io_uring descriptors"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is x86_64's")
def test_without_io_uring_the_workers_say_so_and_serve_on_epoll(limpet, origin):
    os_ = [origin(f"o{i}") for i in (1, 2)]
    lp = limpet(cookie_config(os_, threads=2), preexec_fn=deny_io_uring)
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    conn.request("GET", "/")
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    cookie = r.getheader("Set-Cookie").split(";")[0]
    home = r.getheader("X-Served-By")
    for i in range(50):
        conn.request("GET", f"/{i}", headers={"Cookie": cookie})
        r = conn.getresponse()
        r.read()
        assert (r.status, r.getheader("X-Served-By")) == (200, home)
    conn.close()
    assert io_uring_fds(lp.pid) == 0
    err = lp.stderr_text()
    # said once (by the first worker), naming the reason: ENOSYS, as the filter answers
    said = f"io_uring unavailable ({os.strerror(errno.ENOSYS)}): connections use epoll"
    assert err.count(said) == 1, err


def test_keepalive_affinity_and_connection_close(limpet, origin, mode):
    os_ = [origin(f"o{i}") for i in (1, 2, 3)]
    lp = limpet(cookie_config(os_))
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    conn.request("GET", "/first")
    r = conn.getresponse()
    r.read()
    cookie = r.getheader("Set-Cookie").split(";")[0]
    home = r.getheader("X-Served-By")
    served = set()
    for i in range(200):
        conn.request("GET", f"/ka/{i}", headers={"Cookie": cookie})
        r = conn.getresponse()
        assert r.read() == f"{home} GET /ka/{i}\n".encode()
        served.add(r.getheader("X-Served-By"))
    conn.close()
    assert served == {home}
    for i in range(50):
        r = http_request(lp.port, "GET", f"/close/{i}",
                         headers={"Cookie": cookie, "Connection": "close"})
        assert r.status == 200 and r.body == f"{home} GET /close/{i}\n".encode()
        assert r.header("Connection") == "close"


def closing_exchange(port, request):
    """Sends request on a new connection and reads until limpet closes it;
    returns (response, segments without data the client received: the
    SYN-ACK, perhaps a bare ACK of the request, and a bare FIN if the FIN
    did not come with the response's last bytes)."""
    with RawClient(port) as c:
        c.send(request)
        r = c.read_response()
        assert c.closed_within(5), "limpet did not close the connection"
        info = c.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        segs_in, = struct.unpack_from("I", info, 140)       # tcpi_segs_in
        data_segs_in, = struct.unpack_from("I", info, 152)  # tcpi_data_segs_in
        return r, segs_in - data_segs_in


def test_closing_response_and_fin_leave_together(limpet, origin, mode):
    """A small response after which limpet closes the connection (the
    client's Connection: close, or an error limpet answers itself) leaves in
    the same segment as the FIN: no bare FIN follows it."""
    big = os.urandom(100_000)
    o = origin("s1", handler=lambda req: Reply(200, big if req.target == "/big" else b"small"))
    lp = limpet(basic_config([o]))
    for i in range(5):
        r, bare = closing_exchange(
            lp.port, build_request("GET", f"/c/{i}", [("Host", "x"), ("Connection", "close")]))
        assert r.status == 200 and r.body == b"small", r
        assert bare <= 2, f"request {i}: {bare} segments without data (a bare FIN among them)"
    # a large one arrives whole (its FIN may come alone: once the client's
    # acknowledgements pace the sending, the kernel sends the tail at once)
    r, bare = closing_exchange(
        lp.port, build_request("GET", "/big", [("Host", "x"), ("Connection", "close")]))
    assert r.status == 200 and r.body == big
    r, bare = closing_exchange(lp.port, b"GET /bad HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
    assert r.status == 400 and bare <= 2, (r, bare)


def test_pipelined_requests_answer_in_order(limpet, origin, mode):
    o = origin("s1")
    lp = limpet(basic_config([o]))
    with RawClient(lp.port) as c:
        c.send(b"".join(build_request("GET", f"/p/{i}", [("Host", "x")]) for i in range(10)))
        for i in range(10):
            r = c.read_response()
            assert r.status == 200 and r.body == f"s1 GET /p/{i}\n".encode()


def test_large_bodies_both_ways(limpet, origin, mode):
    big = os.urandom(3 * 1024 * 1024 + 17)

    def handler(req):
        if req.method == "POST":
            return Reply(200, hashlib.sha256(req.body).hexdigest())
        return Reply(200, big)
    o = origin("s1", handler=handler)
    lp = limpet(basic_config([o]))
    r = http_request(lp.port, "GET", "/big", timeout=30)
    assert r.status == 200 and len(r.body) == len(big)
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(big).digest()
    r = http_request(lp.port, "POST", "/up", body=big, timeout=30)
    assert r.status == 200 and r.body.decode() == hashlib.sha256(big).hexdigest()
    # one keep-alive connection, its origin connection reused each time
    conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
    t0 = time.monotonic()
    for i in range(20):
        conn.request("GET", f"/again/{i}")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == big, f"response {i}"
    conn.close()
    assert time.monotonic() - t0 < 8, "20 responses of 3 MiB on one connection took over 8 s"


def test_origin_closing_an_idle_connection_is_not_an_error(limpet, origin, mode):
    o = origin("s1", idle_close=0.3)
    lp = limpet(basic_config([o]))
    for i in range(4):
        r = http_request(lp.port, "GET", f"/s/{i}")
        assert r.status == 200 and r.body == f"s1 GET /s/{i}\n".encode()
        time.sleep(0.6)  # the origin closed the pooled connection meanwhile
    assert o.connections >= 4


def test_client_leaving_mid_response_leaves_nothing_behind(limpet, origin, mode):
    o = origin("s1", handler=lambda req: Reply(200, b"x" * (8 << 20)))
    lp = limpet(basic_config([o]))
    assert http_request(lp.port, "GET", "/warm").status == 200  # and a pooled origin connection
    before = lp.fd_count()
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", lp.port), timeout=5)
        s.sendall(build_request("GET", "/huge", [("Host", "x")]))
        s.recv(65536)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # reset, with most of the body still to come
    r = http_request(lp.port, "GET", "/after")
    assert r.status == 200 and len(r.body) == 8 << 20
    deadline = time.monotonic() + 5
    while lp.fd_count() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lp.fd_count() <= before + 2, \
        f"{lp.fd_count()} descriptors, {before} before: " + \
        str(sorted(os.readlink(f"/proc/{lp.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{lp.pid}/fd")))


def test_websocket_tunnel_echoes(limpet, origin, mode):
    o = origin("s1", handler=websocket_handler("s1"))
    lp = limpet(basic_config([o]))
    with RawClient(lp.port) as c:
        c.send(build_request("GET", "/ws", WS_HEADERS))
        assert c.read_response(head=True).status == 101
        for size in (5, 70_000, 300_000):
            blob = os.urandom(size)
            c.send(blob)
            assert c.recv_exactly(len(blob), timeout=10) == blob
