"""Clocks contained (issue 18, item 3): a replica refuses a write whose version is more than
--max-clock-skew-ms (default 2000) ahead of its own clock, in every peer mode.

- A forged far-future version sent straight to a replica (HTTP internal request, or a binary PUT /
  REMOVE frame) is refused (HTTP 422 / ERROR_RESPONSE CLOCK_SKEW) and writes nothing: a later
  ordinary PUT, GET and DELETE of the key behave as if it had never been sent. The replica counts
  it (/v0/status skew_refusals, /metrics kv_replica_skew_refusals_total).
- A node whose clock runs an hour ahead (the test-only --clock-offset-ms) issues versions its
  peers refuse: its writes that need them fail (504), counted per peer in its /v0/status and
  /metrics and logged; a write it acknowledges with ack=1 lives on itself only, and the others'
  copies of the key are not pinned by it.
"""

import ctypes
import ctypes.util
import os
import struct

from harness import (Group, Node, RawConn, check, check_eq, delete, get, get_metrics, metric, poll,
                     put, request, start_nodes, status_json, url_of, HEAL_TIMEOUT)

FORGED = 18446744073709551000  # the example: bit 63 set, microseconds near 2^53
HOUR_MS = 3600 * 1000
MAX_SKEW_MS = 2000  # the default

PREFACE = b"\x00KVPEER\x02"
T_HANDSHAKE, T_HANDSHAKE_OK, T_AUTH, T_PUT, T_REMOVE = 0x01, 0x02, 0x06, 0x11, 0x12
T_STORED, T_ERROR_RESPONSE = 0x23, 0x24
CLOCK_SKEW = 105


def fingerprint(urls):
    """Ring::Fingerprint(): XXH3_64 of the sorted URLs joined by newlines (peer-protocol.md 6)."""
    lib = ctypes.CDLL(ctypes.util.find_library("xxhash"))
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    s = "\n".join(sorted(urls)).encode()
    return lib.XXH3_64bits(s, len(s))


def frame(ftype, request_id, payload):
    return struct.pack(">IBBQ", len(payload), ftype, 0, request_id) + payload


def read_frame(conn):
    length, ftype, _flags, rid = struct.unpack(">IBBQ", conn._take(14))
    return ftype, rid, conn._take(length)


class BinaryReplicaClient:
    """A binary peer connection to one node, introducing itself as another member."""

    def __init__(self, port, as_url, cluster_urls):
        self.c = RawConn(port)
        u = as_url.encode()
        self.c.send(PREFACE + frame(T_HANDSHAKE, 0, struct.pack(">H", len(u)) + u +
                                    struct.pack(">Q", fingerprint(cluster_urls)) +
                                    os.urandom(32)))
        ftype, _rid, _payload = read_frame(self.c)
        check_eq(ftype, T_HANDSHAKE_OK, "handshake answer")
        # No cluster secret in these clusters: AUTH with no proof (peer-protocol.md 11).
        self.c.send(frame(T_AUTH, 0, bytes([0])))
        self.next_id = 1

    def write(self, key, version, value=None):
        """PUT (value) or REMOVE (value None); returns (frame type, payload)."""
        rid = self.next_id
        self.next_id += 1
        k = key.encode()
        if value is None:
            self.c.send(frame(T_REMOVE, rid, struct.pack(">QI", version, len(k)) + k))
        else:
            self.c.send(frame(T_PUT, rid, struct.pack(">QI", version, len(k)) + k +
                              struct.pack(">I", len(value)) + value))
        ftype, got, payload = read_frame(self.c)
        check_eq(got, rid, "response request id")
        return ftype, payload

    def close(self):
        self.c.close()


def status_peer(port, peer_port):
    for p in status_json(port)["peers"]:
        if p["url"] == url_of(peer_port):
            return p
    raise AssertionError(f"peer {peer_port} not in /v0/status of {port}")


def wait_writable(nodes, through):
    """Polls until 3/3 writes through each node of `through` succeed (the cluster is connected)."""
    for nd in through:
        def ok(nd=nd):
            for i in range(10):
                r = put(nd.port, f"__probe__/{nd.port}/{i}", b"p", ack=len(nodes), frm=len(nodes),
                        timeout=10)
                if r.status != 201:
                    return False
            return True
        poll(ok, HEAL_TIMEOUT, f"3/3 writes through node {nd.port}", 0.1)


class SkewForged(Group):
    """A forged far-future version sent to a replica, in each peer mode."""
    abstract = True
    mode = None

    def setup_group(self):
        self.ns = self.track(start_nodes(3, lambda ports: [
            Node(p, cluster_ports=ports, mode=self.mode) for p in ports]))
        wait_writable(self.ns, self.ns)
        self.ports = [n.port for n in self.ns]
        self.urls = [url_of(p) for p in self.ports]

    def _forge(self, key, value):
        """Sends node 0 a replica write of key at the forged version (PUT, or DELETE when value
        is None) the way its peers do in this mode; checks the refusal; returns its skew in ms."""
        target = self.ports[0]
        if self.mode == "binary":
            c = BinaryReplicaClient(target, self.urls[1], self.urls)
            try:
                ftype, payload = c.write(key, FORGED, value)
            finally:
                c.close()
            check_eq(ftype, T_ERROR_RESPONSE, "answer to the forged write")
            code, n = struct.unpack(">HH", payload[:4])
            check_eq(code, CLOCK_SKEW, "error code")
            msg = payload[4:4 + n].decode()
            check("ahead of the replica's clock" in msg, f"message names the skew: {msg!r}")
            return int(msg.split(" ")[0])
        method = "DELETE" if value is None else "PUT"
        r = request(target, method, "/v0/entity?id=" + key, body=value,
                    headers={"X-KV-Internal": "1", "X-KV-Version": str(FORGED)})
        check_eq(r.status, 422, f"forged internal {method}")
        check("clock skew" in r.body.decode(), f"body names the skew: {r.body!r}")
        return int(r.header("X-KV-Clock-Skew-Ms"))

    def test_forged_version_is_refused_and_pins_nothing(self):
        p = self.ports[0]
        before_status = status_json(p)["skew_refusals"]
        before_metric = metric(get_metrics(p), "kv_replica_skew_refusals_total")
        check_eq(status_json(p)["max_clock_skew_ms"], MAX_SKEW_MS, "default --max-clock-skew-ms")
        key = f"forged-{self.mode}"
        # The forged write is refused whether the key is new or already held.
        skew = self._forge(key, b"poisoned")
        check(skew > 100 * 365 * 24 * HOUR_MS, f"skew of the forged version in ms: {skew}")
        check_eq(get(p, key, ack=3, frm=3).status, 404, "nothing written by the forged PUT")
        check_eq(put(p, key, b"good", ack=3, frm=3).status, 201, "ordinary PUT")
        self._forge(key, b"poisoned")
        self._forge(key, None)
        for port in self.ports:
            r = get(port, key, ack=3, frm=3)
            check_eq((r.status, r.body), (200, b"good"), f"GET through {port}")
        check_eq(put(p, key, b"newer", ack=3, frm=3).status, 201, "a later PUT")
        check_eq(get(self.ports[1], key, ack=3, frm=3).body, b"newer", "the later PUT wins")
        check_eq(delete(p, key, ack=3, frm=3).status, 202, "DELETE")
        check_eq(get(self.ports[2], key, ack=3, frm=3).status, 404, "deleted")
        check_eq(status_json(p)["skew_refusals"], before_status + 3, "/v0/status skew_refusals")
        check_eq(metric(get_metrics(p), "kv_replica_skew_refusals_total"), before_metric + 3,
                 "kv_replica_skew_refusals_total")
        # The peers' replicas were not involved; nobody's writes were refused.
        for port in self.ports[1:]:
            check_eq(status_json(port)["skew_refusals"], 0, f"refusals on {port}")
        for port in self.ports:
            for peer in status_json(port)["peers"]:
                check_eq(peer["skew_refusals"], 0, f"{port}'s writes refused by {peer['url']}")


class SkewForgedBinary(SkewForged):
    abstract = False
    mode = "binary"


class SkewForgedHttp(SkewForged):
    abstract = False
    mode = "http"


class SkewForgedHttpPipelined(SkewForged):
    abstract = False
    mode = "http-pipelined"


class SkewFastNode(Group):
    """Node 0's clock reads an hour ahead (--clock-offset-ms); nodes 1 and 2 are right."""
    abstract = True
    mode = None

    def setup_group(self):
        self.ns = self.track(start_nodes(3, lambda ports: [
            Node(p, cluster_ports=ports, mode=self.mode,
                 extra=["--clock-offset-ms", str(HOUR_MS)] if i == 0 else [])
            for i, p in enumerate(ports)]))
        self.fast, self.ok = self.ns[0], self.ns[1:]
        wait_writable(self.ns, self.ok)  # the others' writes reach the fast node

    def test_writes_needing_the_others_fail_counted_per_peer(self):
        fast = self.fast.port
        key = f"fast-{self.mode}"
        check_eq(put(fast, key, b"from-the-future", ack=3, frm=3).status, 504, "PUT 3/3")
        check_eq(put(fast, key, b"from-the-future", ack=2, frm=3).status, 504, "PUT 2/3")
        check_eq(delete(fast, key, ack=2, frm=3).status, 504, "DELETE 2/3")
        for nd in self.ok:
            # The client may be answered 504 before the second peer's refusal arrives (PUT 3/3
            # fails on the first): wait until each peer's three refusals are counted.
            poll(lambda nd=nd: status_peer(fast, nd.port)["skew_refusals"] >= 3, 30,
                 f"three refusals by {nd.port} counted")
            peer = status_peer(fast, nd.port)
            check(peer["skew_refusals"] >= 3, f"refusals by {nd.port}: {peer}")
            # An hour, as the peer measured it when it refused (not a timing assertion: the
            # offset is an hour, and the request took well under the 100 s of slack).
            check(HOUR_MS - MAX_SKEW_MS <= peer["last_skew_ms"] <= HOUR_MS + 100000,
                  f"last skew measured by {nd.port}: {peer}")
            check_eq(peer["state"], "closed", f"breaker of {nd.port} (refusals are answers)")
            samples = get_metrics(fast)
            check(metric(samples, "kv_peer_skew_refusals_total", peer=nd.url) >= 3,
                  f"kv_peer_skew_refusals_total for {nd.port}")
            check(metric(samples, "kv_peer_last_skew_seconds", peer=nd.url) >= 3598,
                  f"kv_peer_last_skew_seconds for {nd.port}")
            check(status_json(nd.port)["skew_refusals"] >= 3, f"refusals counted on {nd.port}")
            check(metric(get_metrics(nd.port), "kv_replica_skew_refusals_total") >= 3,
                  f"kv_replica_skew_refusals_total on {nd.port}")
            check(not self._holds(nd.port, key), f"nothing of {key} written on {nd.port}")
        # The operator sees it in the fast node's log: which peer, how far ahead.
        log = self.fast.log_tail(200)
        check("clock skew: peer" in log and "this node's clock is probably ahead" in log,
              f"the fast node logs its skew: {log[-600:]!r}")
        for nd in self.ok:
            check(nd.url in log, f"log names {nd.url}")

        # Their own clocks were not dragged an hour ahead by what they refused: they still
        # accept each other's writes.
        for nd in self.ok:
            check_eq(put(nd.port, key + "/after", b"x", ack=3, frm=3).status, 201, "PUT 3/3")
            for peer in status_json(nd.port)["peers"]:
                check_eq(peer["skew_refusals"], 0, f"{nd.port}'s writes refused by {peer['url']}")

    def _holds(self, port, key):
        """Whether the node's own store holds key (a range read is local)."""
        r = request(port, "GET", "/v0/entities?start=" + key + "&end=" + key + "%00")
        check_eq(r.status, 200, "range")
        return r.body != b""

    def test_ack1_lives_on_the_fast_node_only_and_pins_nothing_elsewhere(self):
        # The client asked for one copy: the fast node's own replica (which trusts its clock)
        # stores it and the write succeeds; its peers refuse it, so they hold nothing of it.
        fast = self.fast.port
        key = f"fast1-{self.mode}"
        check_eq(put(fast, key, b"from-the-future", ack=1, frm=3).status, 201, "PUT 1/3")
        check(self._holds(fast, key), "the fast node holds its own write")
        for nd in self.ok:
            check(not self._holds(nd.port, key), f"{nd.port} holds nothing of it")
        # The healthy nodes' copies take every later write (a GET 1/3 asks the coordinator's
        # own replica first).
        for i, nd in enumerate(self.ok):
            value = f"now-{i}".encode()
            check_eq(put(nd.port, key, value, ack=3, frm=3).status, 201, f"PUT 3/3 via {nd.port}")
            for other in self.ok:
                r = get(other.port, key, ack=1, frm=3)
                check_eq((r.status, r.body), (200, value), f"read via {other.port}")
        check_eq(delete(self.ok[0].port, key, ack=3, frm=3).status, 202, "DELETE 3/3")
        for other in self.ok:
            check_eq(get(other.port, key, ack=1, frm=3).status, 404, f"deleted on {other.port}")


class SkewFastNodeBinary(SkewFastNode):
    abstract = False
    mode = "binary"


class SkewFastNodeHttp(SkewFastNode):
    abstract = False
    mode = "http"


class SkewFastNodeHttpPipelined(SkewFastNode):
    abstract = False
    mode = "http-pipelined"
