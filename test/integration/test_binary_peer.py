"""The binary peer protocol as a stranger sees it: a client that speaks the preface but is not a
member of the cluster, or that sends garbage after the preface, is refused with an ERROR frame and
its connection closed; nothing it sent is written and the node keeps serving everyone else.
Frame layout: proto_spec/peer-protocol.md (big-endian; header u32 length, u8 type, u8 flags,
u64 request id)."""

import os
import struct

from harness import Group, RawConn, check, check_eq, entities, get, put, start_cluster, url_of, wait_healthy

PREFACE = b"\x00KVPEER\x01"
T_HANDSHAKE, T_ERROR, T_PUT = 0x01, 0x03, 0x11
CLUSTER_MISMATCH, NOT_IN_CLUSTER = 5, 4


def frame(ftype, request_id, payload):
    return struct.pack(">IBBQ", len(payload), ftype, 0, request_id) + payload


def handshake(url, fingerprint):
    u = url.encode()
    return frame(T_HANDSHAKE, 0, struct.pack(">H", len(u)) + u + struct.pack(">Q", fingerprint))


def put_frame(request_id, key, value, version):
    return frame(T_PUT, request_id,
                 struct.pack(">QI", version, len(key)) + key + struct.pack(">I", len(value)) + value)


def read_error_frame(conn):
    """Reads frames until an ERROR frame; returns its code. Fails if the stream ends first."""
    while True:
        length, ftype, _flags, _rid = struct.unpack(">IBBQ", conn._take(14))
        payload = conn._take(length)
        if ftype == T_ERROR:
            return struct.unpack(">H", payload[:2])[0]


class BinaryStrangers(Group):
    abstract = False

    def setup_group(self):
        self.ns = self.track(start_cluster(2, "binary"))
        self.ports = [n.port for n in self.ns]

    def before_each(self):
        wait_healthy(self.ns)

    def _still_serves(self, other):
        # the unrelated keep-alive client and a replicated write through the peers both work
        other.send(b"GET /v0/status HTTP/1.1\r\nHost: x\r\n\r\n")
        check_eq(other.read_response().status, 200, "other client's request")
        check_eq(put(self.ports[0], "after-stranger", b"ok", ack=2, frm=2).status, 201,
                 "replicated PUT after the stranger")

    def _check_refused(self, hello, expected_code, key):
        other = RawConn(self.ports[0])
        c = RawConn(self.ports[0])
        # a PUT pipelined right behind the handshake must not be executed
        c.send(PREFACE + hello + put_frame(1, key, b"intruder", (1 << 62)))
        check_eq(read_error_frame(c), expected_code, "error code")
        check(c.wait_closed(10), "stranger's connection closed")
        for p in self.ports:
            check_eq(entities(p, key.decode(), key.decode() + "\x00").body, b"",
                     f"nothing written on node {p}")
        self._still_serves(other)
        other.close()

    def test_foreign_cluster_fingerprint_refused(self):
        self._check_refused(handshake(url_of(self.ports[1]), 0x0123456789ABCDEF), CLUSTER_MISMATCH,
                            b"stranger-fp")

    def test_url_not_in_cluster_refused(self):
        self._check_refused(handshake("http://127.0.0.1:1", 0x0123456789ABCDEF), NOT_IN_CLUSTER,
                            b"stranger-url")

    def test_random_bytes_after_preface_close_only_that_connection(self):
        other = RawConn(self.ports[1])
        for seed in range(5):
            c = RawConn(self.ports[1])
            c.send(PREFACE + os.urandom(64 + seed * 100))
            check(c.wait_closed(10), f"connection with random bytes closed (seed {seed})")
            c.close()
        self._still_serves(other)
        check_eq(get(self.ports[1], "after-stranger", ack=2, frm=2).status, 200, "read back")
        other.close()
