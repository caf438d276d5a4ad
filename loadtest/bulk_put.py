"""Bulk fill for benchmarks: PUTs k0 .. k(N-1) once each (value: VALUE bytes) through one node,
pipelined (BATCH requests per write) over CONNS keep-alive connections, one thread each (key i
goes to connection i % CONNS). Bounded: every read times out after 30 s. Prints keys/s.
  python3 loadtest/bulk_put.py PORT KEYS [VALUE] [QUERY] [CONNS] [BATCH]
QUERY is appended to each request's query, e.g. "&ack=2&from=2"."""
import socket
import sys
import threading
import time

port, keys = int(sys.argv[1]), int(sys.argv[2])
value = int(sys.argv[3]) if len(sys.argv) > 3 else 100
query = sys.argv[4] if len(sys.argv) > 4 else ""
conns = int(sys.argv[5]) if len(sys.argv) > 5 else 8
batch = int(sys.argv[6]) if len(sys.argv) > 6 else 200
body = b"x" * value
errors = []


def run(c):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mine = range(c, keys, conns)
    buf = b""
    for i in range(0, len(mine), batch):
        part = mine[i:i + batch]
        s.sendall(b"".join(b"PUT /v0/entity?id=k%d%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                           b"\r\n\r\n" % (k, query.encode(), value) + body for k in part))
        got = 0
        while got < len(part):
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                d = s.recv(1 << 16)
                if not d:
                    errors.append("connection closed")
                    return
                buf += d
                continue
            head = buf[:end]
            if not head.startswith(b"HTTP/1.1 201"):
                errors.append(head[:40])
                return
            n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buf) < end + 4 + n:
                buf += s.recv(1 << 16)
            buf = buf[end + 4 + n:]
            got += 1
    s.close()


t0 = time.time()
ts = [threading.Thread(target=run, args=(c,)) for c in range(conns)]
for t in ts:
    t.start()
for t in ts:
    t.join()
if errors:
    sys.exit(f"fill failed: {errors[:3]}")
print(f"{keys / (time.time() - t0):.0f}")
