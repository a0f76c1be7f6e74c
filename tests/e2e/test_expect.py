"""Expect: 100-continue when the origin does not answer it (issue 5 item 3):
limpet answers "100 Continue" itself, so the client sends its body without
waiting out its own timer, and a later 100 from the origin is not relayed twice."""
import socket
import threading
import time

from harness import basic_config, build_request


class SilentContinueOrigin:
    """Reads one request with a Content-Length body without ever sending
    100 Continue (or, with send_late_100, only after the body), then answers
    with the body length."""

    def __init__(self, send_late_100=False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(10)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.send_late_100 = send_late_100
        self.heads = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(4096)
            head, _, body = buf.partition(b"\r\n\r\n")
            self.heads.append(head.decode("latin-1"))
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(65536)
            if self.send_late_100:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            answer = f"got {len(body)}".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))

    def close(self):
        self.sock.close()


def post_expecting(port, data):
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(build_request("POST", "/upload", [("Host", "h"), ("Content-Length", str(len(data))),
                                                ("Expect", "100-continue")]))
    t0 = time.monotonic()
    interim = c.recv(4096)
    waited = time.monotonic() - t0
    c.sendall(data)
    rest = b""
    while b"got " not in rest:
        chunk = c.recv(4096)
        if not chunk:
            break
        rest += chunk
    c.close()
    return interim, waited, rest


def test_limpet_answers_continue_when_origin_does_not(limpet):
    o = SilentContinueOrigin()
    lp = limpet(basic_config([("s1", o.address)]))
    interim, waited, rest = post_expecting(lp.port, b"x" * 5000)
    o.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
    assert waited < 2.0, f"100 Continue took {waited:.2f}s"
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"got 5000"), rest
    # the origin still saw the client's expectation
    assert "expect: 100-continue" in o.heads[0].lower()


def test_origin_continue_after_limpets_is_not_relayed_twice(limpet):
    o = SilentContinueOrigin(send_late_100=True)
    lp = limpet(basic_config([("s1", o.address)]))
    interim, _, rest = post_expecting(lp.port, b"y" * 3000)
    o.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
    assert b"100 Continue" not in rest, rest      # the origin's late 100 was dropped
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"got 3000"), rest
