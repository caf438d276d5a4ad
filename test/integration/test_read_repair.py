"""Read repair (every peer mode; nodes named `localhost`).

Three nodes, from=3. Node 3 is stopped; keys are written (new ones, and newer values of keys it
holds) and deleted through node 1 with ack=2; node 3 is restarted on its data and still holds
what it held (its own range stream shows it). Then ONE GET of each key through node 3 (ack=2:
itself and one peer, or ack=3) answers the newest and leaves node 3 holding it: its range stream
lists exactly the newest values, and no longer the deleted keys (it holds their tombstones).
Node 3's /metrics counted one blocking repair write per key and no failure.

Background: with --read-fanout all, a GET 1/3 through node 1 is answered by node 1's own copy at
once; node 3's older answer comes after the client's and is repaired in the background (node 3
then holds the newest: waited for by polling its range stream, bounded)."""
from harness import (Group, check_eq, delete, entities, get, get_metrics, metric, poll, put,
                     range_body, start_cluster, wait_healthy)

REPAIRS = ("kv_read_repairs_total", "kv_read_repair_failures_total",
           "kv_read_repairs_skipped_total")


def repair_counts(port):
    m = get_metrics(port)
    return {"blocking": metric(m, REPAIRS[0], mode="blocking"),
            "background": metric(m, REPAIRS[0], mode="background"),
            "failures": metric(m, REPAIRS[1]), "skipped": metric(m, REPAIRS[2])}


class ReadRepair(Group):
    abstract = True
    mode = "http"
    test_timeout = 180

    def setup_group(self):
        # Hinted handoff off: these tests need a replica left stale by the writes it missed.
        self.ns = self.track(start_cluster(3, self.mode, extra=["--hinted-handoff", "off"]))

    def own(self, node, prefix):
        """node's own live entries under prefix (its range stream: this node's data only)."""
        r = entities(node.port, prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        check_eq(r.status, 200, f"range stream of node {node.port}")
        return r.body

    def test_one_get_through_a_stale_node_repairs_it(self):
        a, _, c = self.ns
        p = f"{self.mode}/rr/"
        kept = [f"{p}k{i:02d}" for i in range(12)]  # 0..5 held by c before, 6..11 new to it
        gone = [f"{p}d{i:02d}" for i in range(4)]  # held by c before, deleted while it is down
        for k in kept[:6] + gone:
            check_eq(put(a.port, k, b"old", ack=3, frm=3).status, 201, f"PUT {k} 3/3")
        c.stop()
        for k in kept:
            check_eq(put(a.port, k, b"new:" + k.encode(), ack=2, frm=3).status, 201,
                     f"PUT {k} 2/3 while node 3 is down")
        for k in gone:
            check_eq(delete(a.port, k, ack=2, frm=3).status, 202,
                     f"DELETE {k} 2/3 while node 3 is down")
        c.start()
        wait_healthy(self.ns)
        # Node 3 kept what it had: stale.
        check_eq(self.own(c, p), range_body(sorted([(k, "old") for k in kept[:6] + gone])),
                 "node 3's own data after its restart")
        before = repair_counts(c.port)
        for i, k in enumerate(kept):
            ack = 2 if i % 2 == 0 else 3
            r = get(c.port, k, ack=ack, frm=3)
            check_eq((r.status, r.body), (200, b"new:" + k.encode()), f"GET {k} {ack}/3 via 3")
        for i, k in enumerate(gone):
            ack = 2 if i % 2 == 0 else 3
            check_eq(get(c.port, k, ack=ack, frm=3).status, 404, f"GET {k} {ack}/3 via 3")
        after = repair_counts(c.port)
        # One GET each, and node 3 holds the newest: the new values, and the tombstones.
        check_eq(self.own(c, p), range_body(sorted([(k, b"new:" + k.encode()) for k in kept])),
                 "node 3's own data after one GET of each key")
        check_eq(after["blocking"] - before["blocking"], len(kept) + len(gone),
                 "blocking read repairs (one per key: node 3 was the stale replica)")
        check_eq(after["failures"] - before["failures"], 0, "failed read repairs")
        check_eq(after["skipped"] - before["skipped"], 0, "skipped read repairs")
        # The replicas agree now: reading again repairs nothing.
        for k in kept + gone:
            get(c.port, k, ack=3, frm=3)
        again = repair_counts(c.port)
        check_eq(again["blocking"] + again["background"],
                 after["blocking"] + after["background"], "repairs once the replicas agree")

    def test_late_answers_are_repaired_in_the_background(self):
        ns = self.track(start_cluster(3, self.mode, extra=["--read-fanout", "all", "--hinted-handoff", "off"]))
        a, _, c = ns
        p = f"{self.mode}/bg/"
        keys = [f"{p}k{i:02d}" for i in range(10)]
        c.stop()
        for k in keys:
            check_eq(put(a.port, k, b"new:" + k.encode(), ack=2, frm=3).status, 201,
                     f"PUT {k} 2/3 while node 3 is down")
        c.start()
        wait_healthy(ns)
        check_eq(self.own(c, p), b"", "node 3's own data after its restart")
        before = repair_counts(a.port)
        for k in keys:
            r = get(a.port, k, ack=1, frm=3)
            check_eq((r.status, r.body), (200, b"new:" + k.encode()), f"GET {k} 1/3 via 1")
        want = range_body(sorted([(k, b"new:" + k.encode()) for k in keys]))
        poll(lambda: self.own(c, p) == want, 30, "node 3 to hold every key (background repair)")
        after = repair_counts(a.port)
        check_eq(after["background"] - before["background"], len(keys),
                 "background read repairs (one per key, to node 3)")
        check_eq(after["blocking"] - before["blocking"], 0, "blocking read repairs")
        check_eq(after["failures"] - before["failures"], 0, "failed read repairs")


class ReadRepairHttp(ReadRepair):
    mode = "http"


class ReadRepairBinary(ReadRepair):
    mode = "binary"


class ReadRepairHttpPipelined(ReadRepair):
    mode = "http-pipelined"
