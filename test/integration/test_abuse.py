"""Resource abuse is bounded (issue 18, item 5). Each test runs one kind of abuse against a node
with small limits, and asserts the outcome: the abusive connection is closed (or answered) by the
limit that governs it, the node's resident memory grows by less than a bound derived from the
limits while the abuse runs, and another client is served meanwhile.

Bounds on waiting (rounds, poll timeouts) are safety nets against a hang, not assertions on time.
"""
import ctypes
import socket
import struct
import threading
import time

from harness import (Group, Node, RawConn, check, check_eq, entity_path, free_ports,
                     get, get_metrics, metric, poll, put, req_bytes, request, status_json)

MIB = 1 << 20

# The limits every node here runs with (small, so the tests are quick).
HEADER_TIMEOUT_MS = 400
BODY_TIMEOUT_MS = 600
SEND_TIMEOUT_MS = 800
HANDSHAKE_TIMEOUT_MS = 400
MAX_VALUE = 64 * 1024
LIMITS = ["--header-timeout-ms", str(HEADER_TIMEOUT_MS), "--body-timeout-ms",
          str(BODY_TIMEOUT_MS), "--send-timeout-ms",
          str(SEND_TIMEOUT_MS), "--peer-handshake-timeout-ms", str(HANDSHAKE_TIMEOUT_MS),
          "--max-value-bytes", str(MAX_VALUE), "--idle-timeout-ms", "2000"]
# Memory the node may use for anything but the abuse itself (allocator slack, thread stacks
# touched, a memtable growing by the test's writes): the bounds below add this.
SLACK = 24 * MIB


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssWatch:
    """The node's RSS when created, and the highest value seen by sample() since."""

    def __init__(self, node):
        self.pid = node.proc.pid
        self.base = rss_bytes(self.pid)
        self.peak = self.base

    def sample(self):
        self.peak = max(self.peak, rss_bytes(self.pid))

    def check_growth(self, bound, what):
        self.sample()
        grew = self.peak - self.base
        check(grew < bound, f"{what}: node RSS grew by {grew / MIB:.1f} MiB, bound "
                            f"{bound / MIB:.1f} MiB (from {self.base / MIB:.1f} MiB)")


# ---- the binary peer protocol, as much of it as a misbehaving peer needs
# (proto_spec/peer-protocol.md; the frames match proto_spec/vectors/).

PREFACE = b"\x00KVPEER\x01"
_xxh = None


def cluster_fingerprint(urls):
    global _xxh
    if _xxh is None:
        _xxh = ctypes.CDLL("libxxhash.so.0")
        _xxh.XXH3_64bits.restype = ctypes.c_uint64
        _xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    data = "\n".join(sorted(urls)).encode()
    return _xxh.XXH3_64bits(data, len(data))


def frame(ftype, request_id, payload):
    return struct.pack(">IBBQ", len(payload), ftype, 0, request_id) + payload


def handshake(self_url, urls):
    u = self_url.encode()
    return frame(0x01, 0, struct.pack(">H", len(u)) + u + struct.pack(">Q",
                                                                          cluster_fingerprint(urls)))


def get_frame(request_id, key):
    return frame(0x10, request_id, struct.pack(">I", len(key)) + key)


TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


def closed_by_node(sock):
    """The node closed this connection: its reset or FIN arrived (the kernel's TCP state of our
    end; a sender blocked on a full window is not always woken by a reset)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] in (TCP_CLOSE,
                                                                           TCP_CLOSE_WAIT)


class _Sender(threading.Thread):
    """Sends `data` on a socket with sendall; records how it ended (done / the error)."""

    def __init__(self, sock, chunks):
        super().__init__(daemon=True)
        self.sock = sock
        self.chunks = chunks
        self.sent = 0
        self.error = None
        self.finished = threading.Event()

    def run(self):
        try:
            for c in self.chunks:
                self.sock.sendall(c)
                self.sent += len(c)
        except OSError as e:
            self.error = e
        finally:
            self.finished.set()


class Abuse(Group):
    """One node (2 loop threads) with small limits; the tests share it."""

    def setup_group(self):
        (port,) = free_ports(1)
        self.n = self.track(Node(port, mode="binary", extra=LIMITS).start())
        self.port = port
        # The misbehaving peer of the binary tests introduces itself as this node (the only URL
        # in its cluster).
        self.urls = [status_json(port)["url"]]
        check_eq(put(self.port, "big", b"b" * MAX_VALUE).status, 201, "PUT of the large value")

    def served(self):
        check_eq(put(self.port, "probe", b"still-served", timeout=10).status,
                 201, "other client's PUT")
        r = get(self.port, "probe", timeout=10)
        check_eq((r.status, r.body), (200, b"still-served"), "other client's GET")

    def gets_answered(self):
        return metric(get_metrics(self.port), "kv_requests_total", method="GET") or 0

    def test_headers_trickled_byte_by_byte(self):
        """50 connections send a request head one byte per round and never finish it: the
        header timeout closes each; none is answered 2xx."""
        watch = RssWatch(self.n)
        conns = [RawConn(self.port) for _ in range(50)]
        head = b"GET /v0/status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
        open_ = set(range(len(conns)))
        pos = 0
        try:
            # The head is longer than any round count reached: only the node can end this.
            for round_ in range(3000):
                if not open_:
                    break
                for i in list(open_):
                    if not conns[i].try_send(head[pos:pos + 1]) or not conns[i].is_open_now():
                        open_.discard(i)
                pos += 1
                if round_ % 20 == 0:
                    self.served()
                    watch.sample()
                time.sleep(0.01)  # the trickle's pace: the abuse itself, not a wait for the node
            check(not open_, f"{len(open_)} trickling connections still open after "
                             f"{pos} bytes (--header-timeout-ms {HEADER_TIMEOUT_MS})")
            for c in conns:
                check(b"HTTP/1.1 2" not in c.buf, "a trickled request was answered 2xx")
            # 50 heads of at most `pos` bytes each, beyond the slack.
            watch.check_growth(SLACK + 50 * pos, "trickled headers")
        finally:
            for c in conns:
                c.close()
        self.served()

    def test_body_trickled_byte_by_byte(self):
        """20 connections send a complete PUT head, then its body one byte per round, faster
        than the idle timeout: the body timeout answers each 408 and closes it; nothing is
        written."""
        watch = RssWatch(self.n)
        body_len = 60000  # below --max-value-bytes, longer than any round count reached
        keys = [f"trickle-body-{i}" for i in range(20)]
        conns = [RawConn(self.port) for _ in keys]
        open_ = set(range(len(conns)))
        pos = 0
        try:
            for i, c in enumerate(conns):
                c.send(req_bytes("PUT", entity_path(keys[i]), headers={
                    "Content-Length": str(body_len)}))
            for round_ in range(3000):
                if not open_:
                    break
                for i in list(open_):
                    if not conns[i].try_send(b"v") or not conns[i].is_open_now():
                        open_.discard(i)
                pos += 1
                if round_ % 20 == 0:
                    self.served()
                    watch.sample()
                time.sleep(0.01)  # the trickle's pace: the abuse itself, not a wait for the node
            check(not open_, f"{len(open_)} trickling bodies still open after {pos} bytes "
                             f"(--body-timeout-ms {BODY_TIMEOUT_MS})")
            for c in conns:
                check(c.buf.startswith(b"HTTP/1.1 408"), f"a trickled body was answered "
                                                         f"{c.buf[:40]!r}, not 408")
            for k in keys:
                check_eq(get(self.port, k).status, 404, f"GET {k} after its body timed out")
            watch.check_growth(SLACK + 20 * body_len, "trickled bodies")
        finally:
            for c in conns:
                c.close()
        self.served()

    def test_input_after_the_final_answer_ends_in_order(self):
        """A client still sending when the answer that ends its connection arrives (a body past
        --max-value-bytes, answered 413 at its head) reads that answer and then an orderly end:
        the node half-closes and discards the input (RFC 9112 section 9.6). Closing at once
        with unread input makes the kernel answer with a reset, which can destroy the answer
        in the client's buffer before it is read."""
        c = RawConn(self.port)
        try:
            # Head and body in one go, as a client that does not wait for 100-continue: the
            # node reads the head and less than the body before it answers.
            c.send(req_bytes("PUT", entity_path("after-final"),
                             headers={"Content-Length": str(8 * MAX_VALUE)}) +
                   b"b" * (8 * MAX_VALUE))
            r = c.read_response_or_close()
            check(r is not None, "connection ended without an answer")
            check_eq(r.status, 413, "status of a PUT whose length is past the limit")
            ended = None
            for _ in range(40):  # a bound against a hang: 40 socket timeouts
                try:
                    d = c.sock.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    ended = "reset"
                    break
                if not d:
                    ended = "end"
                    break
                check(False, f"bytes after the final answer: {d[:40]!r}")
            check_eq(ended, "end", "how the connection ended after its final answer")
        finally:
            c.close()
        check_eq(get(self.port, "after-final").status, 404, "the refused PUT wrote nothing")
        self.served()

    def test_half_open_peer_handshakes(self):
        """Connections that send the binary preface, part of it, or nothing at all, and then
        nothing: every one is closed (handshake, header or idle timeout)."""
        watch = RssWatch(self.n)
        conns = []
        try:
            for i in range(150):
                c = RawConn(self.port)
                if i % 3 == 0:
                    c.send(PREFACE)
                elif i % 3 == 1:
                    c.send(PREFACE[:3])
                conns.append(c)
            self.served()
            for i, c in enumerate(conns):
                check(c.wait_closed(20), f"half-open connection #{i} ({['preface', 'partial preface', 'silent'][i % 3]}) still open")
                if i % 10 == 0:
                    watch.sample()
            watch.check_growth(SLACK, "half-open handshakes")
        finally:
            for c in conns:
                c.close()
        self.served()

    def test_pipelining_client_that_never_reads(self):
        """A client pipelines GETs of a 64 KiB value and never reads: the node stops reading it
        (back-pressure), its output for the connection stays bounded, and the send timeout
        closes it."""
        watch = RssWatch(self.n)
        gets_before = self.gets_answered()
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        one = req_bytes("GET", entity_path("big"))
        # 20000 GETs (~1.4 MB of requests) ask for 1.3 GB of answers.
        sender = _Sender(s, [one * 1000] * 20)
        sender.start()
        try:
            # Served meanwhile, while the connection is stuck.
            self.served()
            poll(lambda: (watch.sample(), closed_by_node(s))[1], 30,
                 f"the non-reading client's connection to be closed "
                 f"(--send-timeout-ms {SEND_TIMEOUT_MS})", 0.05)
            answered = self.gets_answered() - gets_before
            check(answered < 2000, f"the node answered {answered} of 20000 GETs to a client "
                                   "that reads none (no back-pressure)")
            # 256 queued answers of MAX_VALUE at most, and the output buffer.
            watch.check_growth(SLACK + 256 * MAX_VALUE + MIB, "pipelining client")
        finally:
            s.close()
            sender.join(10)
        self.served()

    def test_peer_that_never_reads(self):
        """A binary peer (handshake accepted) pipelines GETs of a 64 KiB value and never
        reads: the node's output for it stays bounded and the send timeout closes it."""
        watch = RssWatch(self.n)
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        frames = [PREFACE + handshake(self.urls[0], self.urls)]
        for batch in range(20):
            frames.append(b"".join(get_frame(batch * 1000 + i + 1, b"big") for i in range(1000)))
        sender = _Sender(s, frames)
        sender.start()
        try:
            self.served()
            poll(lambda: (watch.sample(), closed_by_node(s))[1], 30,
                 f"the non-reading peer's connection to be closed "
                 f"(--send-timeout-ms {SEND_TIMEOUT_MS})", 0.05)
            # The server's high water (1 MiB) plus the answers of one read's frames.
            watch.check_growth(SLACK + 2 * MIB + 1000 * MAX_VALUE // 16, "non-reading peer")
        finally:
            s.close()
            sender.join(10)
        self.served()

    def test_huge_chunked_body(self):
        """A chunked PUT body far beyond --max-value-bytes: 413, the connection closes, and
        the body is never buffered past the limit."""
        watch = RssWatch(self.n)
        c = RawConn(self.port)
        head = req_bytes("PUT", entity_path("huge"),
                         headers={"Transfer-Encoding": "chunked"})
        chunk = b"%x\r\n" % (64 * 1024) + b"h" * (64 * 1024) + b"\r\n"
        sender = _Sender(c.sock, [head] + [chunk] * 1024)  # 64 MiB
        sender.start()
        try:
            r = c.read_response_or_close()
            check(r is not None, "connection closed without an answer")
            check_eq(r.status, 413, "status of the huge chunked PUT")
            check(c.wait_closed(20), "connection still open after its 413")
            sender.finished.wait(20)
            check(sender.sent < 1024 * len(chunk), "the node read the whole 64 MiB body")
            watch.check_growth(SLACK + 4 * MAX_VALUE, "huge chunked body")
        finally:
            c.close()
            sender.join(10)
        check_eq(get(self.port, "huge").status, 404, "huge value not stored")
        self.served()


class PendingHandshakeCap(Group):
    """--max-pending-handshakes 8 on one loop thread, with a handshake timeout far beyond the
    test: past 8 connections that sent the preface and no handshake, the oldest are closed."""

    def setup_group(self):
        (port,) = free_ports(1)
        self.n = self.track(Node(port, mode="binary", threads=1,
                                 extra=["--max-pending-handshakes", "8",
                                        "--peer-handshake-timeout-ms", "600000"]).start())
        self.port = port

    def test_oldest_pending_handshakes_closed(self):
        conns = []
        try:
            for i in range(20):
                c = RawConn(self.port)
                c.send(PREFACE)
                conns.append(c)
                # Adopted in order: the node has seen this one before the next connects.
                check_eq(request(self.port, "GET", "/v0/status").status, 200,
                         "other client served")
            for i in range(12):
                check(conns[i].wait_closed(20), f"pending handshake #{i} not closed past the cap")
            for i in range(12, 20):
                check(conns[i].is_open_now(), f"pending handshake #{i} closed within the cap")
        finally:
            for c in conns:
                c.close()
