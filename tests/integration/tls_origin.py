#!/usr/bin/env python3
"""A small HTTPS origin for the upstream-TLS tests (Python's ssl and
http.server from the standard library; weir-origin speaks plain HTTP only).

A request with "Upgrade: echo" is switched (101) and every byte that
follows is echoed back (a tunnel over TLS to the backend).

  tls_origin.py --listen IP:PORT --cert PEM --key KEY [--name N] [--client-ca CA]

Every request is answered 200 with the body "NAME METHOD PATH\\n" and the
headers X-Origin (NAME), X-Client-Cert (the subject CN of the client's
certificate, "-" when none) and X-Forwarded-Proto-Seen. With --client-ca a
client certificate signed by CA is required (mTLS): a client without one
fails the handshake. Prints "listening" when ready; stops on SIGTERM."""

import argparse
import http.server
import signal
import socketserver
import ssl
import sys
import threading
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        if (self.headers.get("Upgrade") or "").lower() == "echo":
            # a minimal Upgrade: 101, then every byte echoed back raw
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                d = self.connection.recv(65536)
                if not d:
                    break
                self.connection.sendall(d)
            self.close_connection = True
            return
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        cert = self.connection.getpeercert()
        cn = "-"
        if cert:
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
        body = ("%s %s %s\n" % (self.server.name, self.command, self.path)).encode()
        # "?cc=VALUE": a cacheable answer (Cache-Control VALUE, ETag "e1",
        # a 304 to If-None-Match "e1"); X-Count numbers the requests
        with self.server.lock:
            self.server.count += 1
            count = self.server.count
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if "cc" in q:
            if self.headers.get("If-None-Match") == '"e1"':
                self.send_response(304)
                self.send_header("Cache-Control", q["cc"][0])
                self.send_header("ETag", '"e1"')
                self.send_header("X-Count", str(count))
                self.end_headers()
                return
        self.send_response(200)
        if "cc" in q:
            self.send_header("Cache-Control", q["cc"][0])
            self.send_header("ETag", '"e1"')
        self.send_header("X-Count", str(count))
        self.send_header("X-Origin", self.server.name)
        self.send_header("X-Client-Cert", cn)
        self.send_header("X-Forwarded-Proto-Seen", self.headers.get("X-Forwarded-Proto", "-"))
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--name", default="tls")
    ap.add_argument("--client-ca")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    if a.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(a.client_ca)
    srv = Server((host, int(port)), Handler)
    srv.name = a.name
    srv.count = 0
    srv.lock = threading.Lock()
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *x: sys.exit(0))
    print("listening", flush=True)
    try:
        srv.serve_forever()
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
