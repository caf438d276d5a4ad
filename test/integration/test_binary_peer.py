"""The binary peer protocol as a stranger sees it: a client that speaks the preface but is not a
member of the cluster, that cannot prove the cluster secret (it knows the member URLs and the
fingerprint, which anyone can compute), or that sends garbage after the preface, is refused with an
ERROR frame and its connection closed; nothing it sent is written and the node keeps serving
everyone else.
Frame layout: proto_spec/peer-protocol.md (big-endian; header u32 length, u8 type, u8 flags,
u64 request id)."""

import ctypes
import os
import struct

from harness import (Group, Node, RawConn, check, check_eq, entities, get, mkdtemp, put,
                     start_nodes, url_of, wait_healthy)

PREFACE = b"\x00KVPEER\x02"
T_HANDSHAKE, T_ERROR, T_AUTH, T_PUT = 0x01, 0x03, 0x06, 0x11
CLUSTER_MISMATCH, NOT_IN_CLUSTER, AUTH_FAILED = 5, 4, 13


def fingerprint_of(urls):
    """XXH3-64 of the sorted URLs joined by newlines (spec section 6), from libxxhash."""
    lib = ctypes.CDLL("libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    s = b"\n".join(sorted(u.encode() for u in urls))
    return lib.XXH3_64bits(s, len(s))


def frame(ftype, request_id, payload):
    return struct.pack(">IBBQ", len(payload), ftype, 0, request_id) + payload


def handshake(url, fingerprint):
    u = url.encode()
    return frame(T_HANDSHAKE, 0, struct.pack(">H", len(u)) + u + struct.pack(">Q", fingerprint)
                 + os.urandom(32))


def auth(proofs):
    return frame(T_AUTH, 0, bytes([len(proofs)]) + b"".join(proofs))


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
        secret = os.path.join(mkdtemp("kvit-secret"), "secret")
        with open(secret, "w") as f:
            f.write("binary-strangers-secret-0123456789\n")
        self.ns = self.track(start_nodes(2, lambda ports: [
            Node(p, cluster_ports=ports, mode="binary", extra=["--cluster-secret-file", secret])
            for p in ports]))
        self.ports = [n.port for n in self.ns]
        self.fingerprint = fingerprint_of([url_of(p) for p in self.ports])

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

    def test_member_without_the_secret_refused(self):
        # The right URL and fingerprint, then AUTH without a proof: AUTH_FAILED.
        self._check_refused(handshake(url_of(self.ports[1]), self.fingerprint) + auth([]),
                            AUTH_FAILED, b"stranger-noproof")

    def test_member_with_a_forged_proof_refused(self):
        self._check_refused(handshake(url_of(self.ports[1]), self.fingerprint)
                            + auth([os.urandom(32), os.urandom(32)]), AUTH_FAILED,
                            b"stranger-forged")

    def test_request_before_auth_refused(self):
        BAD_HANDSHAKE = 3
        self._check_refused(handshake(url_of(self.ports[1]), self.fingerprint), BAD_HANDSHAKE,
                            b"stranger-early")

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
