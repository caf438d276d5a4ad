"""Hinted handoff (every peer mode; nodes named `localhost`). Each test runs its own 2-node
cluster and writes with from=2 while node 2 is stopped, so node 1 keeps a hint for node 2 of
every write, and replays them once node 2 is back. Replay is waited for by polling node 1's
/v0/status (hints_pending_bytes for node 2) and /metrics, bounded; then node 1 is stopped and
every key is read through node 2 alone (GET ack=1: node 2 answers from its own copy).

- Cassandra's pattern: 1000 writes with ack=1, node 2 restarted, hints replayed, node 1 stopped:
  every key readable through node 2 alone.
- Hints survive a restart of their coordinator, and deletes are hinted (tombstones replayed).
- The window: hints older than the tombstone GC grace are dropped, not replayed (node 1 is
  restarted with its clock 10 s ahead, so the hints it kept before are 10 s old against a 2 s
  grace; the hints of writes it coordinates afterwards are replayed).
- --max-hints-bytes: hints past it are dropped and counted; those kept are replayed.
- --hinted-handoff off: no hint written, nothing replayed.
- The replay's peer request (HINTS; over HTTP `POST /v0/internal/hints`): a valid body stores
  its records, a malformed one is refused with 400 and writes nothing (binary mode: 403, peer
  requests go over the binary protocol)."""
import ctypes
import os
import struct
import time

from harness import (Group, check, check_eq, delete, entities, get, get_metrics, metric, poll,
                     put, put_many, request, start_cluster, status_json)

HINT_METRICS = ("kv_hints_written_total", "kv_hints_replayed_total", "kv_hints_dropped_total")


def hint_counts(port):
    m = get_metrics(port)
    out = {"written": metric(m, HINT_METRICS[0]), "replayed": metric(m, HINT_METRICS[1])}
    for reason in ("expired", "full", "corrupt", "io_error"):
        out[reason] = metric(m, HINT_METRICS[2], reason=reason)
    return out


def hint_record(key, value, version, tombstone=False):
    """A hint record (storage-format.md "Hint files": the log record layout, XXH3 from
    libxxhash)."""
    lib = ctypes.CDLL("libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    value = b"" if tombstone else value
    body = (struct.pack("<II", len(key), len(value)) + key + value + struct.pack("<Q", version) +
            bytes([2 if tombstone else 1]))
    return body + struct.pack("<Q", lib.XXH3_64bits(body, len(body)))


def pending_bytes(node):
    (peer,) = status_json(node.port)["peers"]
    return peer["hints_pending_bytes"]


class Hints(Group):
    abstract = True
    mode = "http"
    test_timeout = 240

    def cluster(self, extra=()):
        return self.track(start_cluster(2, self.mode, extra=list(extra)))

    def wait_replayed(self, a):
        poll(lambda: pending_bytes(a) == 0, 60, "node 1 to have replayed every hint to node 2")

    def read_through_alone(self, node, want):
        """Reads every key through node (its peer stopped): want[key] is bytes, or None (404)."""
        for k, v in want.items():
            r = get(node.port, k, ack=1, frm=2)
            if v is None:
                check_eq(r.status, 404, f"GET {k} through node 2 alone")
            else:
                check_eq((r.status, r.body), (200, v), f"GET {k} through node 2 alone")

    def test_replayed_hints_make_the_missed_node_whole(self):
        a, b = self.cluster()
        p = f"{self.mode}/hh/"
        items = [(f"{p}{i:04d}", f"value-{i}-".encode() * 8) for i in range(1000)]
        b.stop()
        before = hint_counts(a.port)
        put_many(a.port, items, ack=1, frm=2)
        # ack=1: the client may be answered before node 2's requests have failed.
        poll(lambda: hint_counts(a.port)["written"] - before["written"] >= len(items), 30,
             "a hint of every write")
        mid = hint_counts(a.port)
        check_eq(mid["written"] - before["written"], len(items), "hints written (one per write)")
        check(pending_bytes(a) > 0, "node 1 holds hint bytes for node 2 while it is down")
        b.start()
        self.wait_replayed(a)
        after = hint_counts(a.port)
        # At least one acknowledged replay per hint (a replay whose answer was lost is sent again).
        check(after["replayed"] - before["replayed"] >= len(items),
              f"replayed {after['replayed'] - before['replayed']} hints, want >= {len(items)}")
        check_eq(after["expired"] + after["full"] + after["corrupt"] + after["io_error"], 0,
                 "hints dropped")
        check_eq(os.listdir(os.path.join(a.data, "hints")), [], "node 1's hint files once replayed")
        a.stop()
        self.read_through_alone(b, dict(items))

    def test_hints_survive_a_restart_of_their_coordinator_and_deletes_are_hinted(self):
        a, b = self.cluster()
        p = f"{self.mode}/hr/"
        want = {}
        doomed = [f"{p}d{i:02d}" for i in range(20)]
        for k in doomed:  # both nodes hold these; they are deleted while node 2 is down
            check_eq(put(a.port, k, b"doomed", ack=2, frm=2).status, 201, f"PUT {k} 2/2")
        b.stop()
        for i in range(100):
            k = f"{p}k{i:03d}"
            want[k] = f"v{i}".encode()
            check_eq(put(a.port, k, want[k], ack=1, frm=2).status, 201, f"PUT {k} 1/2")
        for k in doomed:
            check_eq(delete(a.port, k, ack=1, frm=2).status, 202, f"DELETE {k} 1/2")
            want[k] = None
        poll(lambda: hint_counts(a.port)["written"] >= len(want), 30, "a hint of every write")
        a.stop()
        a.start()
        check(pending_bytes(a) > 0, "node 1 found its hints for node 2 after its restart")
        b.start()
        self.wait_replayed(a)
        check(hint_counts(a.port)["replayed"] >= len(want), "hints replayed after the restart")
        a.stop()
        self.read_through_alone(b, want)
        r = entities(b.port, f"{p}d", f"{p}e")
        check_eq((r.status, r.body), (200, b""), "node 2's own live keys among the deleted ones")

    def test_hints_older_than_the_grace_are_not_replayed(self):
        # Node 2 accepts versions however far ahead (node 1's clock will be 60 s ahead). A grace
        # of 30 s: the hints written before the restart are 60 s old by node 1's clock, the
        # fresh ones have 30 s to be replayed (a liveness bound, not a timing assertion).
        a, b = self.cluster(["--tombstone-gc-seconds", "30", "--max-clock-skew-ms", "0"])
        p = f"{self.mode}/hw/"
        old = {f"{p}old{i:02d}": b"old" for i in range(30)}
        new = {f"{p}new{i:02d}": b"new" for i in range(30)}
        b.stop()
        for k, v in old.items():
            check_eq(put(a.port, k, v, ack=1, frm=2).status, 201, f"PUT {k} 1/2")
        poll(lambda: hint_counts(a.port)["written"] >= len(old), 30, "a hint of every write")
        a.stop()
        a.extra += ["--clock-offset-ms", "60000"]
        a.start()
        before = hint_counts(a.port)
        for k, v in new.items():
            check_eq(put(a.port, k, v, ack=1, frm=2).status, 201, f"PUT {k} 1/2")
        poll(lambda: hint_counts(a.port)["written"] >= len(new), 30, "a hint of every write")
        b.start()
        self.wait_replayed(a)
        after = hint_counts(a.port)
        # (Counters start at 0 with the process; the old hints may be dropped before `before`.)
        check_eq(after["expired"], len(old),
                 "hints dropped as older than the grace (those written before the restart)")
        check(after["replayed"] - before["replayed"] >= len(new), "the fresh hints were replayed")
        a.stop()
        self.read_through_alone(b, {**{k: None for k in old}, **new})

    def test_hints_past_the_limit_are_dropped_and_counted(self):
        a, b = self.cluster(["--max-hints-bytes", "3000"])
        p = f"{self.mode}/hf/"
        items = [(f"{p}{i:03d}", bytes([65 + i % 26]) * 100) for i in range(60)]
        b.stop()
        before = hint_counts(a.port)
        put_many(a.port, items, ack=1, frm=2)

        def settled():
            c = hint_counts(a.port)
            return c["written"] + c["full"] - before["written"] - before["full"] >= len(items)
        poll(settled, 30, "every write's hint kept or dropped")
        mid = hint_counts(a.port)
        kept = mid["written"] - before["written"]
        dropped = mid["full"] - before["full"]
        check_eq(kept + dropped, len(items), "hints written + dropped for want of room")
        check(0 < kept < len(items), f"some hints kept and some dropped (kept {kept})")
        check(pending_bytes(a) <= 3000, f"pending hint bytes {pending_bytes(a)} within the limit")
        b.start()
        self.wait_replayed(a)
        a.stop()
        # Node 2 holds exactly the writes whose hints were kept (which ones depends on the order
        # in which the transport failed them); anti-entropy is left the rest.
        held = 0
        for k, v in items:
            r = get(b.port, k, ack=1, frm=2)
            check((r.status, r.body) in ((200, v), (404, b"")), f"GET {k} via node 2: {r}")
            held += r.status == 200
        check_eq(held, kept, "keys node 2 holds (one per kept hint)")

    def test_off_writes_no_hints(self):
        a, b = self.cluster(["--hinted-handoff", "off"])
        check_eq(status_json(a.port)["hinted_handoff"], False, "status hinted_handoff")
        p = f"{self.mode}/ho/"
        b.stop()
        for i in range(20):
            check_eq(put(a.port, f"{p}{i:02d}", b"v", ack=1, frm=2).status, 201, "PUT 1/2")
        poll(lambda: metric(get_metrics(a.port), "kv_peer_failures_total") >= 20, 30,
             "node 1 to have seen its 20 requests to node 2 fail")
        check_eq(hint_counts(a.port)["written"], 0, "hints written with --hinted-handoff off")
        check(not os.path.exists(os.path.join(a.data, "hints")), "no hints directory")
        b.start()
        a.stop()
        self.read_through_alone(b, {f"{p}{i:02d}": None for i in range(20)})


    def test_hints_request_stores_valid_records_and_refuses_bad_ones(self):
        a, b = self.cluster()
        p = f"{self.mode}/hq/".encode()
        version = 1 << 63 | int(time.time() * 1e6) << 10 | 7  # now (storage-format.md)
        good = (hint_record(p + b"a", b"1", version) +
                hint_record(p + b"b", b"", version + 1, tombstone=True))
        bad = [b"", good[:-1], good + b"x", good[:20] + bytes([good[20] ^ 1]) + good[21:],
               hint_record(p + b"c", b"3", version)[:-8] + b"\0" * 8]
        internal = {"X-KV-Internal": "1"}
        want = 403 if self.mode == "binary" else 400
        for body in bad:
            r = request(a.port, "POST", "/v0/internal/hints", body=body, headers=internal)
            check_eq(r.status, want, f"POST /v0/internal/hints {body[:24]!r}")
        check_eq(request(a.port, "GET", "/v0/internal/hints", headers=internal).status, 405,
                 "GET /v0/internal/hints")
        r = request(a.port, "POST", "/v0/internal/hints", body=good, headers=internal)
        if self.mode == "binary":
            check_eq(r.status, 403, "a valid HINTS body over HTTP in binary mode")
        else:
            check_eq((r.status, r.header("x-kv-version")), (202, "2"),
                     "a valid HINTS body: its 2 records stored")
            r = request(a.port, "POST", "/v0/internal/hints", body=good)
            check_eq(r.status, 400, "a HINTS body without X-KV-Internal")
        # Node 1's own copy (its range stream): the live record of the valid body only.
        r = entities(a.port, p.decode(), p.decode() + "~")
        check_eq(r.status, 200, "node 1's range stream")
        check_eq(p + b"a" in r.body, self.mode != "binary", f"{p + b'a'} on node 1: {r.body!r}")
        check(p + b"c" not in r.body, f"nothing of the damaged bodies stored: {r.body!r}")
        check_eq(status_json(a.port)["cluster_size"], 2, "node 1 still answers")


class HintsHttp(Hints):
    mode = "http"


class HintsBinary(Hints):
    mode = "binary"


class HintsHttpPipelined(Hints):
    mode = "http-pipelined"
