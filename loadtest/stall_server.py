#!/usr/bin/env python3
"""Keep-alive HTTP/1.1 test server for kvload's coordinated-omission test.

Answers every request at once (GET -> 200 with a body, PUT -> 201, DELETE -> 202), except that
during the last --stall-ms of every --period-ms it holds all responses and sends them when the
stall ends. With --stall-ms 0 it never stalls. Prints "PORT <n>" on stdout once listening.

Protocol variations for kvload's own tests: --chunked sends GET bodies chunked; --close-every N
answers every N-th request on a connection with "Connection: close" and closes it; --errors
answers GET of an odd key (id=k<odd>) with 404 and PUT of a key divisible by 10 with 503;
--require-query S answers 400 to a request whose target does not contain S. --max-rps R makes
a server of fixed capacity, independent of CPU speed: responses leave in arrival order at R per
second at most (a saturation target on which every closed-loop client must measure R).
Single-threaded (selectors), python3 stdlib only; exits after --max-seconds in any case.
"""
import argparse
import collections
import selectors
import signal
import socket
import sys
import time


class Conn:
    __slots__ = ("sock", "fd", "inbuf", "outbuf", "held", "served", "closing")

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.held = 0  # complete requests whose responses wait for the stall to end
        self.served = 0
        self.closing = False  # close once outbuf is sent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--stall-ms", type=float, default=100)
    ap.add_argument("--period-ms", type=float, default=1000)
    ap.add_argument("--body-size", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--chunked", action="store_true")
    ap.add_argument("--close-every", type=int, default=0)
    ap.add_argument("--errors", action="store_true")
    ap.add_argument("--require-query", default="", help="400 unless the target contains this")
    ap.add_argument("--max-rps", type=float, default=0,
                    help="release responses at most at this rate (a server of fixed capacity)")
    args = ap.parse_args()

    body = b"v" * args.body_size
    responses = {
        b"GET": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        b"PUT": b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        b"DELETE": b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
    }
    other = b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
    if args.chunked:
        half = len(body) // 2
        responses[b"GET"] = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (half, body[:half], len(body) - half, body[half:])
        )
    not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
    unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    bad_request = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    required = args.require_query.encode()

    def respond(c, head):
        method, _, rest = head.partition(b" ")
        resp = responses.get(method, other)
        if args.errors:
            q = rest.split(b" ", 1)[0]
            i = q.find(b"id=k")
            if i >= 0:
                digits = q[i + 4 :].split(b"&", 1)[0]
                key = int(digits) if digits.isdigit() else 0
                if method == b"GET" and key % 2 == 1:
                    resp = not_found
                elif method == b"PUT" and key % 10 == 0:
                    resp = unavailable
        if required and required not in rest.split(b" ", 1)[0]:
            resp = bad_request
        c.served += 1
        if args.close_every and c.served % args.close_every == 0:
            end = resp.find(b"\r\n")
            resp = resp[:end] + b"\r\nConnection: close" + resp[end:]
            c.closing = True
        return resp

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(1024)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    print("PORT %d" % lsock.getsockname()[1], flush=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    period = args.period_ms / 1000.0
    stall = args.stall_ms / 1000.0
    t0 = time.monotonic()
    deadline = t0 + args.max_seconds
    conns = {}

    def stalled(now):
        return stall > 0 and (now - t0) % period >= period - stall

    def close(c):
        sel.unregister(c.sock)
        c.sock.close()
        conns.pop(c.fd, None)

    def flush(c):
        if c.outbuf:
            try:
                n = c.sock.send(c.outbuf)
                del c.outbuf[:n]
            except BlockingIOError:
                pass
            except OSError:
                return False
        if c.closing and not c.outbuf and c not in pending:
            return False
        sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.outbuf else 0), c)
        return True

    def parse(c):
        """Moves complete requests from inbuf to responses (or held, during a stall)."""
        while not c.closing:
            end = c.inbuf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(c.inbuf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(c.inbuf) < end + 4 + length:
                return
            del c.inbuf[: end + 4 + length]
            resp = respond(c, head)
            if max_rps > 0:
                queue.append((c, resp))
            elif c.held or stalled(time.monotonic()):
                c.held += 1
                pending.setdefault(c, []).append(resp)
            else:
                c.outbuf += resp

    pending = {}  # conn -> responses held during the current stall
    max_rps = args.max_rps
    queue = collections.deque()  # (conn, response) waiting for the rate limit (--max-rps)
    next_release = [time.monotonic()]

    def release():
        now = time.monotonic()
        if next_release[0] < now - 0.01:
            next_release[0] = now - 0.01  # idle time banks no burst beyond 10 ms
        touched = set()
        while queue and next_release[0] <= now:
            c, resp = queue.popleft()
            next_release[0] += 1.0 / max_rps
            if conns.get(c.fd) is c:
                c.outbuf += resp
                touched.add(c)
        for c in touched:
            if conns.get(c.fd) is c and not flush(c):
                close(c)

    while not stop:
        now = time.monotonic()
        if now >= deadline:
            break
        if stalled(now):
            into = period - ((now - t0) % period)  # time left in the stall
        else:
            into = (period - stall) - ((now - t0) % period)  # time until the next stall
        timeout = max(0.0, min(into, deadline - now)) if stall > 0 else deadline - now
        if queue:
            timeout = min(timeout, max(0.0, next_release[0] - now))
        for key, events in sel.select(timeout):
            if key.data is None:
                try:
                    s, _ = lsock.accept()
                except BlockingIOError:
                    continue
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c = Conn(s)
                conns[s.fileno()] = c
                sel.register(s, selectors.EVENT_READ, c)
                continue
            c = key.data
            if events & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    pending.pop(c, None)
                    close(c)
                    continue
                if data:
                    c.inbuf += data
                    parse(c)
            if not flush(c):
                pending.pop(c, None)
                close(c)
        if queue:
            release()
        if pending and not stalled(time.monotonic()):
            for c in list(pending):
                c.held = 0
                for r in pending.pop(c):
                    c.outbuf += r
                if not flush(c):
                    close(c)
    for c in list(conns.values()):
        c.sock.close()
    lsock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
