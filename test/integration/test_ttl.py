"""Expiring entries (PUT ...&ttl=SECONDS), in every peer mode, nodes named `localhost`.

Nothing here waits for time to pass except through poll(): a short-lived key (ttl=1) is polled,
bounded, until it answers 404; what must not have expired meanwhile is a key with ttl=3600 or no
ttl at all, so no assertion depends on how fast the machine is.

- Expiry through every node: once expired, a key answers 404 through each node (ack=from, so
  every replica is asked), and neither a node's range stream nor the cluster-wide range holds
  it; long-lived and permanent keys stay.
- A later PUT without ttl makes a key permanent again; a later PUT with a ttl makes it expire.
- Expired stays expired across a restart of every node and a compaction on each; unexpired keep
  their value.
- A replica that was down while the entry expired (and missed the write), hinted handoff off:
  reads through it answer 404, never the older value it holds, and the read repairs it.
- Anti-entropy repair of a wiped replica restores unexpired entries and never an expired one.
- Bad ttl: 400 and nothing written."""
import shutil

from harness import (Group, check, check_eq, entities, get, poll, put, q, request,
                     start_cluster, wait_healthy)


def put_ttl(port, key, value, ttl, ack=None, frm=None):
    path = f"/v0/entity?id={key}&ttl={ttl}"
    if ack is not None:
        path += f"&ack={ack}"
    if frm is not None:
        path += f"&from={frm}"
    return request(port, "PUT", path, body=value)


class Ttl(Group):
    abstract = True
    mode = "http"
    test_timeout = 180

    def setup_group(self):
        self.ns = self.track(start_cluster(3, self.mode))

    def own(self, node, prefix):
        r = entities(node.port, prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        check_eq(r.status, 200, f"range stream of node {node.port}")
        return r.body

    def wait_expired(self, nodes, key):
        for n in nodes:
            poll(lambda n=n: get(n.port, key, ack=3, frm=3).status == 404, 30,
                 f"{key} to answer 404 through node {n.port}")

    def test_expiry_through_every_node_and_in_ranges(self):
        a = self.ns[0]
        p = f"{self.mode}/ttl/every/"
        check_eq(put_ttl(a.port, p + "short", b"s", 1, ack=3, frm=3).status, 201, "PUT ttl=1")
        check_eq(put_ttl(a.port, p + "long", b"l", 3600, ack=3, frm=3).status, 201,
                 "PUT ttl=3600")
        check_eq(put(a.port, p + "perm", b"p", ack=3, frm=3).status, 201, "PUT without ttl")
        self.wait_expired(self.ns, p + "short")
        for n in self.ns:
            for k, v in (("long", b"l"), ("perm", b"p")):
                r = get(n.port, p + k, ack=3, frm=3)
                check_eq((r.status, r.body), (200, v), f"GET {k} through node {n.port}")
            check_eq(self.own(n, p), (p + "long\nl" + p + "perm\np").encode(),
                     f"node {n.port}'s range: the expired key absent")
            end = p[:-1] + chr(ord(p[-1]) + 1)
            r = request(n.port, "GET", f"/v0/entities?start={q(p)}&end={q(end)}&scope=cluster")
            check_eq((r.status, r.body), (200, (p + "long\nl" + p + "perm\np").encode()),
                     f"cluster-wide range through node {n.port}: the expired key absent")

    def test_a_later_put_decides_whether_the_key_expires(self):
        a, b, _ = self.ns
        p = f"{self.mode}/ttl/later/"
        check_eq(put_ttl(a.port, p + "k", b"v1", 1, ack=3, frm=3).status, 201, "PUT k ttl=1")
        check_eq(put(b.port, p + "k", b"v2", ack=3, frm=3).status, 201, "PUT k without ttl")
        check_eq(put(a.port, p + "j", b"w1", ack=3, frm=3).status, 201, "PUT j without ttl")
        check_eq(put_ttl(b.port, p + "j", b"w2", 1, ack=3, frm=3).status, 201, "PUT j ttl=1")
        check_eq(put_ttl(a.port, p + "marker", b"m", 1, ack=3, frm=3).status, 201, "marker")
        # j was written before the marker with the same ttl: it expires no later.
        self.wait_expired(self.ns, p + "marker")
        self.wait_expired(self.ns, p + "j")
        for n in self.ns:
            r = get(n.port, p + "k", ack=3, frm=3)
            check_eq((r.status, r.body), (200, b"v2"), f"k made permanent, via {n.port}")

    def test_expired_stays_expired_across_restarts_and_compaction(self):
        a = self.ns[0]
        p = f"{self.mode}/ttl/restart/"
        check_eq(put_ttl(a.port, p + "short", b"s", 1, ack=3, frm=3).status, 201, "PUT ttl=1")
        check_eq(put_ttl(a.port, p + "long", b"l", 3600, ack=3, frm=3).status, 201,
                 "PUT ttl=3600")
        self.wait_expired(self.ns, p + "short")
        for n in self.ns:
            n.restart()
        wait_healthy(self.ns)
        for n in self.ns:
            check_eq(get(n.port, p + "short", ack=3, frm=3).status, 404,
                     f"expired key after restarts, via {n.port}")
            r = get(n.port, p + "long", ack=3, frm=3)
            check_eq((r.status, r.body), (200, b"l"), f"long-lived key after restarts, {n.port}")
            check_eq(self.own(n, p), (p + "long\nl").encode(), f"node {n.port}'s range")
        # Compaction (flush and merge of every segment) turns the expired entry into a tombstone
        # of its version: still 404, and the long-lived key keeps its value and expiry.
        for n in self.ns:
            r = request(n.port, "POST", "/v0/admin/compact", timeout=60)
            check_eq(r.status, 200, f"POST /v0/admin/compact on {n.port}")
        for n in self.ns:
            check_eq(get(n.port, p + "short", ack=3, frm=3).status, 404,
                     f"expired key after compaction, via {n.port}")
            r = get(n.port, p + "long", ack=3, frm=3)
            check_eq((r.status, r.body), (200, b"l"), f"long-lived key after compaction, {n.port}")
            check_eq(self.own(n, p), (p + "long\nl").encode(), f"node {n.port}'s range")

    def test_replica_down_while_the_entry_expired(self):
        ns = self.track(start_cluster(3, self.mode, extra=["--hinted-handoff", "off"]))
        a, _, c = ns
        p = f"{self.mode}/ttl/down/"
        check_eq(put(a.port, p + "k", b"old", ack=3, frm=3).status, 201, "PUT k 3/3")
        c.stop()
        check_eq(put_ttl(a.port, p + "k", b"new", 1, ack=2, frm=3).status, 201,
                 "PUT k ttl=1 2/3 while node 3 is down")
        check_eq(put_ttl(a.port, p + "m", b"m", 1, ack=2, frm=3).status, 201, "marker")
        for n in ns[:2]:
            poll(lambda n=n: get(n.port, p + "m", ack=2, frm=3).status == 404, 30,
                 f"marker to expire via {n.port}")
        c.start()
        wait_healthy(ns)
        check_eq(self.own(c, p), (p + "k\nold").encode(), "node 3 still holds the older value")
        check_eq(get(c.port, p + "k", ack=3, frm=3).status, 404,
                 "GET k 3/3 through node 3: the newest version has expired")
        # The read repaired node 3 (with the expired entry, a tombstone): the old value is gone
        # from it for good, also when it answers alone.
        check_eq(self.own(c, p), b"", "node 3's range after the read")
        for n in ns:
            check_eq(get(n.port, p + "k", ack=2, frm=3).status, 404, f"GET k 2/3 via {n.port}")

    def test_read_repair_and_hints_carry_the_expiry(self):
        """Node 3 misses an expiring write; a read (hints off) or a hint replay (hints on) then
        gives it the value. Had the expiry been lost on the way, node 3 would keep the value for
        good: its range stream must lose it once the expiry passes."""
        for hints in ("off", "on"):
            ns = self.track(start_cluster(3, self.mode, extra=["--hinted-handoff", hints]))
            a, _, c = ns
            p = f"{self.mode}/ttl/carry-{hints}/"
            c.stop()
            check_eq(put_ttl(a.port, p + "k", b"v", 2, ack=2, frm=3).status, 201,
                     f"PUT ttl=2 2/3 while node 3 is down (hints {hints})")
            c.start()
            wait_healthy(ns)
            if hints == "off":
                r = get(c.port, p + "k", ack=3, frm=3)  # 200, or 404 if it expired already
                check(r.status in (200, 404), f"GET via node 3 answered {r.status}")
            poll(lambda: get(c.port, p + "k", ack=3, frm=3).status == 404, 30,
                 "the key to expire everywhere")
            poll(lambda: self.own(c, p) == b"", 30,
                 f"node 3's range without the expired key (hints {hints})")
            check_eq(get(c.port, p + "k", ack=3, frm=3).status, 404, "expired through node 3")

    def test_repair_of_a_wiped_replica_never_brings_an_expired_entry_back(self):
        """Node 3's disk is replaced (stopped, data deleted, restarted), hints off; one
        anti-entropy repair restores it. A long-lived key comes back to it; a short-lived one
        never stays: had the expiry been lost, the repair would have written it permanently."""
        ns = self.track(start_cluster(3, self.mode, extra=["--hinted-handoff", "off"]))
        a, _, c = ns
        p = f"{self.mode}/ttl/repair/"
        check_eq(put_ttl(a.port, p + "long", b"l", 3600, ack=3, frm=3).status, 201, "long")
        check_eq(put_ttl(a.port, p + "short", b"s", 2, ack=3, frm=3).status, 201, "short")
        check_eq(put(a.port, p + "perm", b"p", ack=3, frm=3).status, 201, "perm")
        c.stop()
        shutil.rmtree(c.data)
        c.start()
        wait_healthy(ns)
        check_eq(self.own(c, p), b"", "node 3's copy after the wipe")
        r = request(c.port, "POST", "/v0/admin/repair?wait=1", timeout=120)
        check_eq(r.status, 200, f"repair: {r.body!r}")
        want = (p + "long\nl" + p + "perm\np").encode()
        poll(lambda: self.own(c, p) == want, 30,
             "node 3 to hold the long-lived and permanent keys, the short one expired")
        check_eq(get(c.port, p + "short", ack=3, frm=3).status, 404, "short, via node 3")

    def test_bad_ttl_is_refused_and_writes_nothing(self):
        a = self.ns[0]
        p = f"{self.mode}/ttl/bad/"
        for i, bad in enumerate(["0", "-1", "abc", "", "1.5", "1e3", "99999999999999999999",
                                 "3153600001", "%31%zz"]):
            k = f"{p}{i}"
            r = request(a.port, "PUT", f"/v0/entity?id={k}&ttl={bad}", body=b"x")
            check_eq(r.status, 400, f"PUT ttl={bad!r}")
            check_eq(get(a.port, k, ack=3, frm=3).status, 404, f"nothing written for ttl={bad!r}")
        r = request(a.port, "DELETE", f"/v0/entity?id={p}d&ttl=5")
        check_eq(r.status, 400, "DELETE with a ttl")
        r = request(a.port, "GET", f"/v0/entity?id={p}d&ttl=5")
        check_eq(r.status, 400, "GET with a ttl")
        if self.mode != "binary":  # peer requests come over HTTP: a bad expiry is refused too
            for bad in ("abc", "0", "-5", ""):
                k = f"{p}internal"
                r = request(a.port, "PUT", f"/v0/entity?id={k}&expires={bad}", body=b"x",
                            headers={"X-KV-Internal": "1", "X-KV-Version": "1000"})
                check_eq(r.status, 400, f"internal PUT expires={bad!r}")
            r = request(a.port, "DELETE", f"/v0/entity?id={p}internal&expires=5",
                        headers={"X-KV-Internal": "1", "X-KV-Version": "1000"})
            check_eq(r.status, 400, "internal DELETE with an expiry")
            check_eq(get(a.port, f"{p}internal", ack=3, frm=3).status, 404,
                     "nothing written by the refused internal requests")
        check(a.alive(), "node alive after bad ttls")


class TtlHttp(Ttl):
    mode = "http"


class TtlBinary(Ttl):
    mode = "binary"


class TtlHttpPipelined(Ttl):
    mode = "http-pipelined"
