"""pytest fixtures of the limpet end-to-end suite. See README.md.

Fixtures
  limpet        factory: limpet(config_dict, name="limpet", check_exit=True, extra_args=(),
                preexec_fn=None) -> Limpet
                (started, listening); stopped with SIGTERM at teardown, which
                must give exit code 0 within 10 s.
  origin        factory: origin(name="o1", handler=None, idle_close=None, port=0, tls=None)
                -> RecordingOrigin (tls: an ssl.SSLContext, the origin speaks HTTPS);
                at teardown, fails if an origin received a malformed request
                (bad request line / header field, CL and TE, bad chunking)
  demo_origins  factory: demo_origins(n, prefix="demo") -> [DemoOrigin]
  raw           factory: raw(port, timeout=10) -> RawClient (closed at teardown)

Every test also gets a wall-clock limit (SIGALRM): 60 s by default,
@pytest.mark.timeout(N) to change it.
"""
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    LIMPET, DemoOrigin, Limpet, RawClient, RecordingOrigin, require_binary)

DEFAULT_TEST_TIMEOUT = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): wall-clock limit of one test")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TimeoutError(f"test took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def limpet(tmp_path):
    started = []

    def start(config, name="limpet", check_exit=True, extra_args=(), preexec_fn=None):
        try:
            require_binary()
        except FileNotFoundError as e:
            pytest.fail(str(e), pytrace=False)
        lp = Limpet(config, tmp_path, name=name, extra_args=extra_args, preexec_fn=preexec_fn)
        lp.check_exit = check_exit
        started.append(lp)
        lp.start()
        return lp

    yield start

    problems = []
    for lp in started:
        was_running = lp.running()
        rc = lp.stop(timeout=10)
        err = lp.stderr_text()
        if not lp.check_exit:
            continue
        if was_running and rc is None:
            problems.append(f"{lp.name}: did not exit within 10 s of SIGTERM (killed)")
        elif rc != 0:
            problems.append(f"{lp.name}: exit code {rc} (expected 0 after SIGTERM)")
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if marker in err:
                problems.append(f"{lp.name}: sanitizer report on stderr")
                break
        if problems:
            problems.append(f"--- {lp.name} stderr ---\n{err[-4000:]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def origin():
    made = []

    def make(name="o1", handler=None, idle_close=None, port=0, tls=None):
        o = RecordingOrigin(name, handler=handler, idle_close=idle_close, port=port, tls=tls)
        made.append(o)
        return o

    yield make
    problems = []
    for o in made:
        o.stop()
        for e in o.protocol_errors:
            problems.append(f"origin {o.name} received a malformed request: {e}")
        for e in o.handler_errors:
            problems.append(f"origin {o.name} handler raised:\n{e}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def demo_origins(tmp_path):
    made = []

    def make(n, prefix="demo"):
        try:
            require_binary()
        except FileNotFoundError as e:
            pytest.fail(str(e), pytrace=False)
        out = []
        for i in range(1, n + 1):
            d = DemoOrigin(f"{prefix}{i}", tmp_path)
            made.append(d)
            out.append(d)
        return out

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def raw():
    clients = []

    def make(port, timeout=10.0, host="127.0.0.1"):
        c = RawClient(port, host=host, timeout=timeout)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
