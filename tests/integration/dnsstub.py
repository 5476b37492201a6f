"""
dnsstub - a tiny authoritative DNS server for the DNS discovery tests
(stdlib only: socket + struct), run in a thread of the test process.

    stub = DnsStub().start()          # UDP on 127.0.0.1:<free port>
    stub.set("api.test", ["127.0.0.2", "127.0.0.3"], ttl=30)
    stub.fail("api.test", rcode=2)    # SERVFAIL from now on
    stub.queries["api.test"]          # A queries received so far
    stub.stop()

A queries for a known name get its IPv4 addresses, AAAA queries its IPv6
ones (in order, with the TTL; none of that kind: an empty NOERROR answer);
unknown names get NXDOMAIN; other query types an empty NOERROR answer.
The question is echoed byte for byte (evdns randomizes the case of names
and checks it comes back). Names are matched case-insensitively.
"""

import collections
import socket
import struct
import threading

QTYPE_A = 1
QTYPE_AAAA = 28
QCLASS_IN = 1


class DnsStub:
    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self.records = {}
        self.failing = {}
        self.queries = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def set(self, name, addrs, ttl=30):
        with self._lock:
            self.records[name.lower()] = (list(addrs), ttl)
            self.failing.pop(name.lower(), None)

    def fail(self, name, rcode=2):
        with self._lock:
            self.failing[name.lower()] = rcode

    @staticmethod
    def _parse_name(data, off):
        labels = []
        while True:
            n = data[off]
            off += 1
            if n == 0:
                return ".".join(labels), off
            if n & 0xC0:
                raise ValueError("compressed name in a question")
            labels.append(data[off:off + n].decode("ascii"))
            off += n

    def answer(self, data):
        """The response to one query datagram (None for garbage)."""
        if len(data) < 12:
            return None
        qid, flags, qd = struct.unpack(">HHH", data[:6])
        if qd != 1 or flags & 0x8000:
            return None
        name, off = self._parse_name(data, 12)
        qtype, qclass = struct.unpack(">HH", data[off:off + 4])
        question = data[12:off + 4]
        key = name.lower()
        with self._lock:
            if qtype == QTYPE_A:
                self.queries[key] += 1
            elif qtype == QTYPE_AAAA:
                self.queries[key + "/AAAA"] += 1
            rec = self.records.get(key)
            rcode = self.failing.get(key)
        answers = b""
        count = 0
        if rcode is None and rec is None:
            rcode = 3  # NXDOMAIN
        elif rcode is None:
            rcode = 0
            addrs, ttl = rec
            for a in addrs if qclass == QCLASS_IN else ():
                v6 = ":" in a
                if qtype == QTYPE_A and not v6:
                    answers += struct.pack(">HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, ttl, 4) + socket.inet_aton(a)
                    count += 1
                elif qtype == QTYPE_AAAA and v6:
                    answers += struct.pack(">HHHIH", 0xC00C, QTYPE_AAAA, QCLASS_IN, ttl, 16) + \
                        socket.inet_pton(socket.AF_INET6, a)
                    count += 1
        rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode  # QR AA RD(copied) RA rcode
        return struct.pack(">HHHHHH", qid, rflags, 1, count, 0, 0) + question + answers

    def _run(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                resp = self.answer(data)
            except (ValueError, IndexError, struct.error, UnicodeDecodeError):
                resp = None
            if resp is not None:
                try:
                    self.sock.sendto(resp, peer)
                except OSError:
                    pass
