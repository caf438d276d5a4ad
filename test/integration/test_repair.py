"""Anti-entropy repair and the tombstone GC rule (every peer mode; nodes named `localhost`).
Each test runs its own 3-node cluster with --hinted-handoff off (so only repair can heal a
replica) and --anti-entropy-interval-s 0 (repairs run only when asked for). A node's own copy is
read through its range stream (/v0/entities: this node's live keys only).

- A wiped replica (stopped, data directory deleted, restarted): one POST /v0/admin/repair?wait=1
  restores every key it should hold, and keys deleted meanwhile stay deleted.
- Resurrection: a key deleted while a replica is down, a 1 s GC grace, compaction on the others
  once the grace passed, the replica back, repair: the key stays deleted on every node.
- Repair under write load loses nothing and leaves the replicas identical.
- Bad input on the admin and internal repair endpoints: 4xx, nothing written, node stays up."""
import json
import shutil
import threading
import time

from harness import (Group, check, check_eq, delete, entities, get_metrics, metric, poll, put,
                     put_many, request, start_cluster, status_json)

BASE = ["--hinted-handoff", "off", "--anti-entropy-interval-s", "0"]


def local_map(node, prefix, value_len):
    """Parses node's range stream of prefix where every value has value_len bytes."""
    r = entities(node.port, prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
    check_eq(r.status, 200, f"range stream of node {node.port}")
    out, body, i = {}, r.body, 0
    while i < len(body):
        nl = body.index(b"\n", i)
        key = body[i:nl].decode()
        out[key] = body[nl + 1:nl + 1 + value_len]
        i = nl + 1 + value_len
    return out


def repair(node, wait=True):
    r = request(node.port, "POST", "/v0/admin/repair" + ("?wait=1" if wait else ""),
                timeout=120)
    check_eq(r.status, 200 if wait else 202, f"POST /v0/admin/repair on {node.port}: {r.body!r}")
    s = json.loads(r.body)
    if wait:
        check_eq(s["state"], "done", f"repair summary {s}")
    return s


def value(i, tag="v"):
    return f"{tag}{i:06d}".encode().ljust(24, b".")


class Repair(Group):
    abstract = True
    mode = "http"
    test_timeout = 240

    def cluster(self, extra=()):
        return self.track(start_cluster(3, self.mode, extra=BASE + list(extra)))

    def test_wiped_replica_is_restored_and_deletes_stay(self):
        a, b, c = self.cluster()
        p = f"{self.mode}/wipe/"
        items = [(f"{p}{i:04d}", value(i)) for i in range(400)]
        put_many(a.port, items, ack=3)
        for k, _ in items[:40]:  # deleted before the wipe: every node holds the tombstone
            check_eq(delete(a.port, k, ack=3).status, 202, f"DELETE {k}")
        c.stop()
        shutil.rmtree(c.data)
        more = [(f"{p}m{i:04d}", value(i, "m")) for i in range(100)]
        put_many(a.port, more, ack=2)
        for k, _ in items[40:70]:  # deleted while node 3 is down and empty
            check_eq(delete(b.port, k, ack=2).status, 202, f"DELETE {k} 2/3")
        c.start()
        check_eq(local_map(c, p, 24), {}, "node 3's copy after the wipe")
        s = repair(c)
        check(s["entries_received"] >= 460, f"entries received {s['entries_received']}")
        check_eq(s["ranges"], 1, "ranges (from = cluster size: one range)")
        want = dict(items[70:] + more)
        check_eq(local_map(c, p, 24), want, "node 3's own copy after one repair")
        for n in (a, b):
            check_eq(local_map(n, p, 24), want, f"node {n.port}'s copy")
        for k, _ in items[:70]:
            check_eq(request(c.port, "GET", f"/v0/entity?id={k}&ack=1&from=1").status, 404,
                     f"deleted {k} read through node 3 alone")
        # A second repair finds nothing to do.
        s2 = repair(c)
        check_eq((s2["keys_differed"], s2["entries_sent"], s2["entries_received"]), (0, 0, 0),
                 f"second repair {s2}")
        g = request(c.port, "GET", "/v0/admin/repair")
        check_eq(json.loads(g.body)["id"], s2["id"], "GET /v0/admin/repair shows the last one")
        check_eq(status_json(c.port)["repair"]["id"], s2["id"], "/v0/status repair")
        m = get_metrics(c.port)
        check_eq(metric(m, "kv_repair_runs_total"), 2, "kv_repair_runs_total on node 3")
        check_eq(metric(m, "kv_repair_entries_received_total"), s["entries_received"],
                 "kv_repair_entries_received_total on node 3")
        check(metric(get_metrics(a.port), "kv_repair_requests_served_total") >= 2,
              "node 1 served repair requests")

    def test_background_repair_heals_without_being_asked(self):
        nodes = self.track(start_cluster(3, self.mode, extra=["--hinted-handoff", "off"]))
        a, b, c = nodes
        p = f"{self.mode}/bg/"
        c.stop()
        items = [(f"{p}{i:03d}", value(i)) for i in range(50)]
        put_many(a.port, items, ack=2)
        c.extra += ["--anti-entropy-interval-s", "1"]  # its first run within 0.5..1.5 s
        c.start()
        poll(lambda: local_map(c, p, 24) == dict(items), 60,
             "node 3's background repair to restore the writes it missed")
        poll(lambda: metric(get_metrics(c.port), "kv_repair_runs_total") >= 1, 30,
             "the background repair counted")
        s = json.loads(request(c.port, "GET", "/v0/admin/repair").body)
        check_eq(s["background"], True, f"the repair ran in the background: {s}")

    def test_deleted_key_never_comes_back(self):
        a, b, c = self.cluster(["--tombstone-gc-seconds", "1"])
        p = f"{self.mode}/res/"
        keys = [f"{p}{i:03d}" for i in range(30)]
        put_many(a.port, [(k, b"zombie".ljust(24, b".")) for k in keys], ack=3)
        c.stop()
        deleted_at = time.time()
        for k in keys:
            check_eq(delete(a.port, k, ack=2).status, 202, f"DELETE {k} 2/3")
        # The tombstones pass the 1 s grace (the GC rule's other half is what keeps them).
        poll(lambda: time.time() > deleted_at + 1.5, 5, "the GC grace to pass")
        for n in (a, b):
            r = request(n.port, "POST", "/v0/admin/compact", timeout=60)
            check_eq(r.status, 200, f"POST /v0/admin/compact on {n.port}")
        c.start()
        for n in (c, a):
            repair(n)
        for n in (a, b, c):
            check_eq(local_map(n, p, 24), {}, f"node {n.port}'s live keys among the deleted")
            for k in keys[:5]:
                check_eq(request(n.port, "GET", f"/v0/entity?id={k}&ack=1&from=1").status, 404,
                         f"{k} through node {n.port} alone")
        for k in keys:
            check_eq(request(a.port, "GET", f"/v0/entity?id={k}&ack=3").status, 404,
                     f"{k} with ack=3")

    def test_repair_under_write_load_loses_nothing(self):
        a, b, c = self.cluster()
        p = f"{self.mode}/load/"
        c.stop()
        base = [(f"{p}b{i:04d}", value(i, "b")) for i in range(300)]
        put_many(a.port, base, ack=2)
        c.start()
        written, errors = {}, []
        stop = threading.Event()

        def writer():
            deadline = time.time() + 30
            for i in range(600):  # bounded in count and time
                if stop.is_set() or time.time() > deadline:
                    break
                k, v = f"{p}w{i:04d}", value(i, "w")
                r = put(b.port, k, v, ack=2)
                if r.status == 201:
                    written[k] = v
                else:
                    errors.append((k, r.status))
                if i % 7 == 0:  # overwrite an old key too
                    k2, v2 = base[i % len(base)][0], value(i, "o")
                    if put(b.port, k2, v2, ack=2).status == 201:
                        written[k2] = v2
        t = threading.Thread(target=writer)
        t.start()
        try:
            s = repair(c)
        finally:
            t.join(60)
            stop.set()
        check(not t.is_alive(), "writer finished")
        check_eq(errors, [], "writes that failed during the repair")
        check(s["entries_received"] >= 1, f"repair under load received entries: {s}")
        repair(c)  # writes that raced the first pass
        want = dict(base)
        want.update(written)
        maps = [local_map(n, p, 24) for n in (a, b, c)]
        check_eq(maps[2], want, "node 3 holds every acknowledged write")
        check_eq(maps[0], maps[2], "node 1 and node 3 identical")
        check_eq(maps[1], maps[2], "node 2 and node 3 identical")

    def test_bad_input_is_refused(self):
        a, b, c = self.cluster()
        for path, method, want in [("/v0/admin/repair?wait=2", "POST", 400),
                                   ("/v0/admin/repair?wait=%zz", "POST", 400),
                                   ("/v0/admin/repair", "PUT", 405),
                                   ("/v0/admin/repair?x=1", "GET", 400),
                                   ("/v0/admin/compact", "GET", 405),
                                   ("/v0/internal/repair/tree", "GET", 405),
                                   ("/v0/internal/repair/nope", "POST", 400)]:
            check_eq(request(a.port, method, path).status, want, f"{method} {path}")
        internal = {"X-KV-Internal": "1"}
        # Bodies that are not repair messages; an apply whose entry would write a key.
        key = f"{self.mode}/bad/k".encode()
        apply = (b"\0" * 16 + (1).to_bytes(4, "big") + len(key).to_bytes(4, "big") + key +
                 (1 << 63 | 5).to_bytes(8, "big") + b"\x07" + (1).to_bytes(4, "big") + b"x")
        bodies = {"tree": [b"", b"\0" * 17, b"\0" * 17 + b"\x09" + b"\0\0\0\x01\0\0\0\0"],
                  "entries": [b"\0" * 21, b"\0" * 25 + b"\0" * 100],
                  "apply": [apply, apply[:30], b"\0" * 16 + b"\xff\xff\xff\xff"]}
        want = 403 if self.mode == "binary" else 400
        for op, bs in bodies.items():
            for body in bs:
                r = request(a.port, "POST", f"/v0/internal/repair/{op}", body=body,
                            headers=internal)
                check_eq(r.status, want, f"POST /v0/internal/repair/{op} {body[:24]!r}")
        if self.mode != "binary":
            r = request(a.port, "POST", "/v0/internal/repair/tree", body=b"\0" * 30)
            check_eq(r.status, 400, "internal repair request without X-KV-Internal")
        check_eq(local_map(a, f"{self.mode}/bad/", 1), {}, "nothing written by bad applies")
        check_eq(status_json(a.port)["cluster_size"], 3, "node 1 still answers")
        repair(a)  # and a repair still works afterwards


class RepairHttp(Repair):
    mode = "http"


class RepairBinary(Repair):
    mode = "binary"


class RepairHttpPipelined(Repair):
    mode = "http-pipelined"
