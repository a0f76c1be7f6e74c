"""5,000 concurrent keep-alive client connections held by one limpet."""
import errno
import random
import resource
import selectors
import socket
import time

import pytest

from harness import Incomplete, basic_config, http_request, parse_response

N = 5000
BATCH = 250
SAMPLE = 200


def _raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn) to run this test",
                    pytrace=False)


def _request(i):
    return f"GET /conn/{i} HTTP/1.1\r\nHost: scale.test\r\n\r\n".encode()


def _exchange(socks, idxs, deadline):
    """Send one request on each socks[i] (i in idxs), read every response.
    Returns {i: status}."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for i in idxs:
        s = socks[i]
        s.sendall(_request(i))           # small: fits the send buffer
        bufs[i] = bytearray()
        sel.register(s, selectors.EVENT_READ, i)
    statuses = {}
    try:
        while len(statuses) < len(idxs):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(idxs) - set(statuses))
                raise AssertionError(f"{len(missing)} responses missing at the deadline, e.g. {missing[:5]}")
            for key, _ in sel.select(timeout=min(left, 1.0)):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    raise AssertionError(f"connection {i} closed before its response "
                                         f"(got {bytes(bufs[i][:200])!r})")
                bufs[i] += data
                try:
                    m, used = parse_response(bufs[i])
                except Incomplete:
                    continue
                assert used == len(bufs[i]), f"connection {i}: extra bytes after the response"
                statuses[i] = (m.status, m.body)
                sel.unregister(key.fileobj)
    finally:
        sel.close()
    return statuses


@pytest.mark.timeout(90)
def test_5000_concurrent_keepalive_connections(limpet, demo_origins):
    _raise_nofile(N * 2 + 1000)
    d1, d2 = demo_origins(2)
    lp = limpet(basic_config([d1, d2], threads=2,
                             limits={"max_connections": 10000},
                             timeouts={"client": 120, "keepalive": 120, "grace": 5}))
    t0 = time.monotonic()
    deadline = t0 + 60
    socks = []
    try:
        for start in range(0, N, BATCH):
            batch = []
            for i in range(start, start + BATCH):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(10)
                s.connect(("127.0.0.1", lp.port))
                s.setblocking(False)
                socks.append(s)
                batch.append(i)
            res = _exchange(socks, batch, deadline)
            bad = {i: st for i, (st, body) in res.items() if st != 200 or b"demo" not in body}
            assert not bad, f"bad responses in batch at {start}: {list(bad.items())[:5]}"
        t_open = time.monotonic() - t0

        # limpet holds them all
        assert lp.fd_count() >= N, f"limpet has only {lp.fd_count()} fds open"

        # none was closed by limpet: no socket is readable (EOF) right now
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
        readable = [key.data for key, _ in sel.select(timeout=0.5)]
        sel.close()
        assert not readable, f"{len(readable)} connections were closed by limpet, e.g. {readable[:5]}"

        # a second request on a sample of them
        sample = sorted(random.Random(1).sample(range(N), SAMPLE))
        res = _exchange(socks, sample, deadline)
        assert sorted(res) == sample
        assert all(st == 200 for st, _ in res.values()), \
            [(i, st) for i, (st, _) in res.items() if st != 200][:5]

        # and limpet still takes new clients
        assert http_request(lp.port, "GET", "/new").status == 200
        elapsed = time.monotonic() - t0
        assert elapsed < 60, f"took {elapsed:.1f}s (opening: {t_open:.1f}s)"
    finally:
        for s in socks:
            try:
                s.close()
            except OSError as e:
                if e.errno != errno.EBADF:
                    raise
