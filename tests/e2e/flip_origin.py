"""An origin whose health answer a test can flip (for test_health.py).

Flip(origin) takes over a RecordingOrigin's handler: `GET /status` answers
according to `.mode`, every other request gets `.live_status` (200 unless set) with
`X-Served-By: NAME`.

  mode "pass"       200 {"state":"RUNNING"}
       "fail"       200 {"state":"STOPPED"}         (expected body missing)
       "error"      503 {"state":"RUNNING"}         (unexpected status)
       "slow"       200 {"state":"RUNNING"} after `.slow_delay` seconds
       "alternate"  pass, fail, pass, fail, ... counted from the switch

`.checks` lists (monotonic time, passed) of every /status answer, so a test
sees when the monitor ran and what it was told.
"""
import threading
import time

from harness import Reply

RUNNING = '{"state":"RUNNING"}'
STOPPED = '{"state":"STOPPED"}'


class Flip:
    def __init__(self, origin, path="/status"):
        self.origin = origin
        self.name = origin.name
        self.address = origin.address
        self.path = path
        self.lock = threading.Lock()
        self.checks = []
        self.live_status = 200
        self.slow_delay = 2.0
        self._mode = "pass"
        self._alternate_from = 0
        origin.handler = self.handle

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        assert value in ("pass", "fail", "error", "slow", "alternate"), value
        with self.lock:
            self._mode = value
            self._alternate_from = len(self.checks)

    def _answer(self):
        """(passed, Reply) for one health check; lock held."""
        mode = self._mode
        if mode == "alternate":
            mode = "pass" if (len(self.checks) - self._alternate_from) % 2 == 0 else "fail"
        if mode == "pass":
            return True, Reply(200, RUNNING, headers=[("Content-Type", "application/json")])
        if mode == "fail":
            return False, Reply(200, STOPPED, headers=[("Content-Type", "application/json")])
        if mode == "slow":
            return False, Reply(200, RUNNING, delay=self.slow_delay)
        return False, Reply(503, RUNNING, headers=[("Content-Type", "application/json")])

    def handle(self, req):
        if req.target != self.path:
            return Reply(self.live_status, f"{self.name} {req.method} {req.target}\n",
                         headers=[("X-Served-By", self.name)])
        with self.lock:
            passed, reply = self._answer()
            self.checks.append((time.monotonic(), passed))
        return reply

    def checks_since(self, t):
        with self.lock:
            return [c for c in self.checks if c[0] >= t]

    def wait_checks(self, n, timeout):
        """Waits until at least n checks were answered; returns the count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.checks) >= n:
                    return len(self.checks)
            time.sleep(0.02)
        with self.lock:
            return len(self.checks)
