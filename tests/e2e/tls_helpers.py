"""TLS helpers of the e2e suite: a throw-away PKI made with the `openssl`
command at test time, and TLS clients.

    pki = Pki(directory)           a CA ("Test CA") in directory
    pki.cert("a", ["a.test", "localhost", "127.0.0.1"], key="ec"|"rsa", days=30)
                                   -> Cert(name, cert, key, serial): a leaf signed by the CA
    pki.other_ca()                 -> a second CA (Pki) that trusts nothing of the first
    pki.intermediate()             -> an intermediate CA signed by pki (a Pki);
                                      pki.chained(leaf, inter) -> the leaf's full chain file
    client_context(pki, **kw)      an ssl.SSLContext trusting pki's CA
    server_context(cert)           an ssl.SSLContext serving cert (a TLS origin)
    peer_cert(port, sni)           the certificate limpet presents: dict with
                                   "serial", "cn", "version", "alpn"
    https_get(port, path, ...)     one HTTPS request -> (status, headers dict, body, sock info)
"""
import http.client
import socket
import ssl
import subprocess
from pathlib import Path


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


class Cert:
    def __init__(self, name, cert, key, serial):
        self.name = name
        self.cert = str(cert)
        self.key = str(key)
        self.serial = serial

    def __repr__(self):
        return f"<Cert {self.name} serial={self.serial}>"


class Pki:
    def __init__(self, directory, name="ca"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca_key = self.dir / f"{name}.key"
        self.ca = self.dir / f"{name}.pem"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", str(self.ca_key), "-out", str(self.ca), "-days", "30",
                 "-subj", f"/CN=limpet test {name}", cwd=self.dir)
        self._serial = 0x1000

    def cert(self, name, names, key="ec", days=30, cn=None):
        keyfile = self.dir / f"{name}.key"
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        out = self.dir / f"{name}.pem"
        if key == "rsa":
            keyopts = ["-newkey", "rsa:2048"]
        else:
            keyopts = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        _openssl("req", *keyopts, "-nodes", "-keyout", str(keyfile), "-out", str(csr),
                 "-subj", f"/CN={cn or names[0]}", cwd=self.dir)
        sans = ",".join(("IP:" if n.replace(".", "").isdigit() or ":" in n else "DNS:") + n
                        for n in names)
        ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n")
        self._serial += 1
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey",
                 str(self.ca_key), "-set_serial", str(self._serial), "-out", str(out),
                 "-days", str(days), "-extfile", str(ext), cwd=self.dir)
        return Cert(name, out, keyfile, self._serial)

    def other_ca(self, name="ca2"):
        return Pki(self.dir, name=name)

    def intermediate(self, name="inter"):
        """An intermediate CA signed by this one (a Pki whose .chain is its
        certificate, to append to the leaves it signs)."""
        sub = Pki.__new__(Pki)
        sub.dir, sub.name, sub._serial = self.dir, name, 0x5000
        sub.ca_key = self.dir / f"{name}.key"
        sub.ca = self.dir / f"{name}.pem"
        csr, ext = self.dir / f"{name}.csr", self.dir / f"{name}.ext"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(sub.ca_key), "-out", str(csr), "-subj",
                 f"/CN=limpet test {name}", cwd=self.dir)
        ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
        self._serial += 1
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                 "-set_serial", str(self._serial), "-out", str(sub.ca), "-days", "30",
                 "-extfile", str(ext), cwd=self.dir)
        return sub

    def chained(self, cert, intermediate):
        """cert's file with the intermediate's certificate after it (a full chain)."""
        out = self.dir / f"{cert.name}-chain.pem"
        out.write_text(Path(cert.cert).read_text() + Path(intermediate.ca).read_text())
        return Cert(cert.name + "-chain", out, cert.key, cert.serial)


def client_context(pki=None, cafile=None, minimum=None, maximum=None, alpn=None, seclevel0=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=cafile or str(pki.ca))
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def server_context(cert, cafile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def tls_connect(port, ctx, sni="a.test", host="127.0.0.1", session=None, timeout=10,
                ragged_eof_ok=True):
    """ragged_eof_ok=False: an end of stream without close_notify raises
    ssl.SSLEOFError instead of reading as b""."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, session=session,
                               suppress_ragged_eofs=ragged_eof_ok)
    except Exception:
        raw.close()
        raise


def peer_cert(port, ctx, sni="a.test"):
    """What limpet presented: serial, subject CN, protocol, ALPN."""
    if sni is None:
        # no SNI: hostname checks cannot apply
        ctx.check_hostname = False
    with tls_connect(port, ctx, sni=sni) as s:
        der = s.getpeercert(binary_form=True)
        info = s.getpeercert()
        cn = dict(x[0] for x in info["subject"]).get("commonName") if info else None
        return {"serial": int(info["serialNumber"], 16) if info else None, "cn": cn,
                "version": s.version(), "alpn": s.selected_alpn_protocol(), "der": der}


def https_request(conn, method="GET", path="/", headers=None, body=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return r.status, r, data


def https_connection(port, ctx, sni="a.test", timeout=10):
    """An http.client connection to 127.0.0.1:port over TLS with this SNI."""
    c = http.client.HTTPSConnection(sni, port, context=ctx, timeout=timeout)
    # connect to 127.0.0.1 whatever the name (the name is for SNI and verification)
    c._create_connection = lambda addr, timeout=None, source_address=None: \
        socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return c
