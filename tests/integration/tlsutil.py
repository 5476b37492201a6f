"""Helpers of the TLS end-to-end tests: throw-away certificates (made by
tests/unit/tls-certs.sh with the openssl command), weir configurations with
TLS listeners, an HTTPS client connection (HttpConn over Python's ssl),
`openssl s_client` runs, and the HTTPS test origin (tls_origin.py)."""

import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from weirtest import LOOPBACK, HttpConn, conf, free_port, render, tf, wait_until

HERE = Path(__file__).resolve().parent
CERTS_SH = HERE.parent / "unit" / "tls-certs.sh"


def make_certs(d):
    """Certificates in directory d (see tls-certs.sh for the list)."""
    subprocess.run(["sh", str(CERTS_SH), str(d)], check=True, timeout=tf(180))
    return Path(d)


def make_leaf(certs, out_dir, name, san, days=30):
    """A new ECDSA leaf signed by the test intermediate CA: out_dir/name.pem
    (leaf + intermediate) and out_dir/name.key. Returns (pem, key)."""
    out_dir = Path(out_dir)
    key, csr, crt, ext = (out_dir / (name + s) for s in (".key", ".csr", ".crt", ".ext"))
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=tf(30))  # noqa: E731
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    run("openssl", "req", "-new", "-key", str(key), "-subj", "/CN=" + name, "-out", str(csr))
    ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % san)
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(certs / "int.pem"), "-CAkey", str(certs / "int.key"),
        "-CAcreateserial", "-CAserial", str(out_dir / (name + ".srl")), "-days", str(days), "-extfile", str(ext),
        "-out", str(crt))
    pem = out_dir / (name + ".pem")
    pem.write_bytes(crt.read_bytes() + (certs / "int.pem").read_bytes())
    return pem, key


def tls_group(certs, names=("default", "a-rsa", "a-ec", "b", "c"), **kw):
    g = {"certificates": [{"cert": str(certs / (n + ".pem")), "key": str(certs / (n + ".key"))} for n in names]}
    g.update(kw)
    return g


def tls_conf(port, pools, tls, workers=1, extra_listens=(), **kw):
    """conf() with the listen address made TLS (`tls`: the listen[].tls
    group as a dict) and more listen entries (dicts) after it."""
    text = conf(port, pools, workers=workers, **kw)
    listen = '{ address = "%s:%d"; tls = %s; }' % (LOOPBACK, port, render(tls))
    for e in extra_listens:
        listen += ", " + render(e)
    old = 'listen = ( { address = "%s:%d"; } );' % (LOOPBACK, port)
    assert old in text
    return text.replace(old, "listen = ( %s );" % listen)


def client_ctx(certs, verify=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(str(certs / "ca.pem"))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class TlsConn(HttpConn):
    """HttpConn over TLS (server_hostname: the SNI and the name verified)."""

    def __init__(self, port, certs, server_hostname="a.test", timeout=10, ctx=None):
        super().__init__(port, timeout=timeout)
        ctx = ctx or client_ctx(certs)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def closed_by_peer(self, timeout=2):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True
        except socket.timeout:
            return False


def s_client(port, *args, stdin=b"", timeout=20):
    """Run `openssl s_client -connect` with args; returns (rc, output)."""
    cmd = ["openssl", "s_client", "-connect", "%s:%d" % (LOOPBACK, port)] + list(args)
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=tf(timeout))
    return p.returncode, p.stdout.decode(errors="replace")


def served_cn(out):
    m = re.search(r"(?m)^subject=.*?CN\s*=\s*([^,\n/]+)", out)
    return m.group(1).strip() if m else None


class TlsOrigin:
    """tls_origin.py in its own process, stopped by PID."""

    def __init__(self, workdir, certs, name, leaf, client_ca=None, port=None):
        self.name = name
        self.port = port or free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.out_path = Path(workdir) / ("tlsorigin-%s-%d.out" % (name, self.port))
        self.out = open(self.out_path, "wb")
        cmd = [sys.executable, str(HERE / "tls_origin.py"), "--listen", self.addr, "--name", name,
               "--cert", str(certs / (leaf + ".pem")), "--key", str(certs / (leaf + ".key"))]
        if client_ca:
            cmd += ["--client-ca", str(client_ca)]
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        ok = wait_until(lambda: self.proc.poll() is not None or b"listening" in self.out_path.read_bytes(), tf(10))
        if not ok or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("tls_origin did not start: " + self.out_path.read_bytes().decode(errors="replace"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.out.close()
