#!/usr/bin/env python3
"""idle-tls.py HOST PORT N HOLD_S: open N TLS connections to HOST:PORT (no
verification: the bench's self-signed certificate), send one keep-alive
request on each and read its response, then hold them all idle for HOLD_S
seconds (or until SIGTERM). Prints "READY open=K ms=T" once all are idle,
for scripts/bench --tls (memory per idle TLS connection)."""

import signal
import socket
import ssl
import sys
import time


def main():
    host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    conns = []
    t0 = time.monotonic()
    req = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
    for _ in range(n):
        try:
            s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10))
            s.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got:
                d = s.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                got += d
            conns.append(s)
        except (OSError, ssl.SSLError) as e:
            print("error after %d: %r" % (len(conns), e), flush=True)
            break
    print("READY open=%d ms=%d" % (len(conns), (time.monotonic() - t0) * 1000), flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    end = time.monotonic() + hold
    while time.monotonic() < end:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
