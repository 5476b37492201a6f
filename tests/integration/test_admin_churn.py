"""Admin and proxy connections opening and closing at once, on every
thread: descriptor numbers freed by the admin thread are taken at once by
the workers' accepts. Nothing may touch a descriptor after closing it (under
WEIR_TSAN=1 the harness fails the test on any ThreadSanitizer report; a
plain run checks that every descriptor comes back)."""

import socket
import threading
import time

import pytest

from adminutil import Admin, admin_extra
from weirtest import HttpConn, conf, fd_count, free_port, pool, tcp_sockets, tf, wait_until


@pytest.mark.threaded
def test_admin_and_client_connection_churn(procs):
    o = procs.origin("a")
    port, aport = free_port(), free_port()
    w = procs.weir(conf(port, [pool("api", [o])], workers=2, log={"access": "off"}, extra=admin_extra(aport)),
                   port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    with HttpConn(port) as c:
        assert c.get("/").status == 200
    def own_fds():
        """Descriptors other than pooled backend connections (their number
        grows with concurrency) and admin connections (the test's own)."""
        n = fd_count(w.pid)
        for t in tcp_sockets(w.pid):
            if t["remote"][1] == o.port or (t["local"][1] == aport and t["state"] != "LISTEN"):
                n -= 1
        return n

    assert wait_until(lambda: not [t for t in tcp_sockets(w.pid) if t["local"][1] == aport and t["state"] != "LISTEN"],
                      tf(3))
    base = own_fds()
    done = {"admin": 0, "client": 0, "errors": []}
    lock = threading.Lock()
    stop = time.monotonic() + 4

    def admin_loop():
        while time.monotonic() < stop:
            try:
                a.stats()
                with lock:
                    done["admin"] += 1
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                with lock:
                    done["errors"].append(repr(e))

    def client_loop():
        n = 0
        while time.monotonic() < stop and n < 20000:
            n += 1
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if n % 2:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                s.recv(65536)
            s.close()
            with lock:
                done["client"] += 1

    threads = [threading.Thread(target=admin_loop) for _ in range(2)]
    threads += [threading.Thread(target=client_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not done["errors"], done["errors"][:3]
    assert done["admin"] > 20 and done["client"] > 100, done
    assert wait_until(lambda: own_fds() == base, tf(3)), (own_fds(), base)
