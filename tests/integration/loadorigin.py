#!/usr/bin/env python3
"""
loadorigin - a test backend whose latency grows with its load (stdlib only).

It behaves like a server with `slots` workers: each request holds a worker
for service_ms, requests beyond the workers wait in line (FIFO). Under N
closed-loop clients one origin answers in about N * service_ms / slots (once N
exceeds slots), two origins sharing them in half that: the shape that makes a
latency rule scale up and back. HTTP/1.1 keep-alive, Content-Length bodies
only. GET /health answers at once.

  loadorigin.py --listen 127.0.0.1:0 [--slots 2] [--service-ms 40] [--name NAME]

Prints "loadorigin NAME listening on IP:PORT" (like weir-origin) once bound,
then serves until SIGTERM / SIGINT.
"""

import argparse
import asyncio
import signal
import sys


class Origin:
    def __init__(self, name, slots, service_ms):
        self.name = name
        self.slots = asyncio.Semaphore(slots)
        self.service = service_ms / 1000.0
        self.requests = 0

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                close = False
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    k = k.strip().lower()
                    if k == "content-length":
                        length = int(v.strip())
                    elif k == "connection" and v.strip().lower() == "close":
                        close = True
                if length:
                    await reader.readexactly(length)
                if target == "/health":
                    body = b"ok\n"
                else:
                    self.requests += 1
                    async with self.slots:
                        await asyncio.sleep(self.service)
                    body = ("%s %s\n" % (self.name, target)).encode()
                out = (
                    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n"
                    "X-Origin: %s\r\n%s\r\n" % (len(body), self.name, "Connection: close\r\n" if close else "")
                ).encode() + (body if method != "HEAD" else b"")
                writer.write(out)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--service-ms", type=float, default=40)
    ap.add_argument("--name", default="")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    o = Origin(a.name, a.slots, a.service_ms)
    server = await asyncio.start_server(o.handle, host, int(port), reuse_address=True)
    addr = "%s:%d" % server.sockets[0].getsockname()[:2]
    o.name = o.name or addr
    print("loadorigin %s listening on %s" % (o.name, addr), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
