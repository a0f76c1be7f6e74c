"""Many clients at once: every response belongs to its own request."""
import hashlib
import http.client
import threading

from harness import Reply, basic_config


def echo(name):
    def handler(req):
        return Reply(200, req.target.encode() + b"|" + hashlib.sha256(req.body).hexdigest().encode(),
                     headers=[("X-Served-By", name)])
    return handler


def test_concurrent_clients_no_crosstalk(limpet, origin):
    os_ = [origin(f"s{i}", handler=echo(f"s{i}")) for i in (1, 2, 3)]
    lp = limpet(basic_config(os_, threads=2))
    errors = []

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", lp.port, timeout=10)
        try:
            for i in range(20):
                path = f"/c{k}/r{i}"
                body = (f"{k}-{i}-".encode() * (1 + (k * 37 + i * 101) % 3000))
                conn.request("POST", path, body=body)
                r = conn.getresponse()
                data = r.read()
                want = path.encode() + b"|" + hashlib.sha256(body).hexdigest().encode()
                if r.status != 200 or data != want:
                    errors.append((path, r.status, data[:80]))
        except Exception as e:
            errors.append((k, repr(e)))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    assert sum(len(o.requests) for o in os_) == 800
    assert all(o.requests for o in os_)
