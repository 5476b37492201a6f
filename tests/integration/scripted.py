"""A scripted backend for end-to-end tests: a thread on a loopback port that
reads request heads and answers each with bytes a test chooses, recording
what it received. For answers the weir-origin program does not give (a 101
for a protocol nobody asked for, floods of interim responses, silence)."""

import socket
import threading

from weirtest import LOOPBACK


class Scripted:
    """respond(head: bytes, conn: socket) -> bytes to send, or None to send
    nothing (the function may write to conn itself). Heads are kept in
    .heads. Every socket is closed by stop()."""

    def __init__(self, respond, max_conns=64):
        self.respond = respond
        self.heads = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.stopping = False
        self.conns = []
        self.max_conns = max_conns
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        n = 0
        while not self.stopping and n < self.max_conns:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            n += 1
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(0.2)
        buf = b""
        for _ in range(100000):
            if self.stopping:
                return
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                head, buf = buf[:i + 4], buf[i + 4:]
                self.heads.append(head)
                try:
                    out = self.respond(head, c)
                    if out:
                        c.sendall(out)
                except OSError:
                    return
                continue
            try:
                d = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return
            buf += d

    def stop(self):
        self.stopping = True
        for s in [self.lsock] + self.conns:
            try:
                s.close()
            except OSError:
                pass
        self.thread.join(2)
