"""Replicated clusters of two and three nodes, each run with --peer-protocol http, http-pipelined
and binary.

GET|PUT|DELETE /v0/entity?id=K[&ack=A&from=F]; from defaults to the cluster size, ack to
from/2+1. A test that stops nodes leaves them stopped; before_each restarts whatever is down (same
port and data dir) and waits until the cluster has healed (a write to every node succeeds through
every node), so each test starts from a whole cluster."""
import http.client
import signal
import threading

from delay_proxy import DelayProxy
from harness import (Group, Node, RawConn, check, check_eq, delete, entities, entity_path, get,
                     get_metrics, metric, poll, put, q, recv_queue_bytes, req_bytes, request,
                     run_threads, short, start_cluster, start_nodes, status_json, url_of,
                     wait_healthy)

REQUEST_TIMEOUT_MS = 1000
EXTRA = ["--request-timeout-ms", str(REQUEST_TIMEOUT_MS)]


class ClusterBase(Group):
    abstract = True
    size = 2
    mode = "http"
    test_timeout = 180

    def setup_group(self):
        self.ns = self.track(start_cluster(self.size, self.mode, extra=EXTRA))
        self.ports = [n.port for n in self.ns]

    def before_each(self):
        down = False
        for n in self.ns:
            n.resume()  # in case a test left it SIGSTOPped
            if not n.alive():
                n.start(wait=False)
                down = True
        for n in self.ns:
            if down:
                n.wait_ready()
        wait_healthy(self.ns)

    def key(self, name):
        return f"{self.mode}{self.size}/{name}"

    def holders(self, key):
        """Indexes of live nodes whose local data holds key (range query over local data)."""
        out = []
        kb = key.encode()
        for i, n in enumerate(self.ns):
            if not n.alive():
                continue
            r = entities(n.port, kb, kb + b"\x00")
            check_eq(r.status, 200, f"local range on node {i}")
            if r.body.startswith(kb + b"\n"):
                out.append(i)
        return out

    def heal(self):
        wait_healthy([n for n in self.ns])


def expect(r, status, what, body=None):
    check(r.status == status, f"{what}: expected {status}, got {r.status} {short(r.body, 80)}")
    if body is not None:
        check(r.body == body, f"{what}: expected body {short(body)}, got {short(r.body)}")


class TwoNodes(ClusterBase):
    abstract = True
    size = 2

    def test_ack_from_validation_400(self):
        a = self.ports[0]
        k = self.key("validate")
        bad = [("0", None), (None, "0"), ("0", "2"), ("3", "2"), ("2", "1"), (None, "3"),
               ("1", "3"), ("x", "2"), ("1", "y"), ("-1", "2"), ("1", "-1"), ("", "2"),
               ("1", ""), ("1.5", "2"), ("3", None)]
        for ack, frm in bad:
            p = "/v0/entity?id=" + q(k)
            if ack is not None:
                p += "&ack=" + ack
            if frm is not None:
                p += "&from=" + frm
            for m in ["GET", "PUT", "DELETE"]:
                r = request(a, m, p, body=b"v" if m == "PUT" else None)
                expect(r, 400, f"{m} ack={ack} from={frm}")
        expect(get(a, k), 404, "rejected PUTs must not write")

    def test_defaults_and_partial_params(self):
        a, b_ = self.ports
        k = self.key("defaults")
        expect(put(a, k, b"d"), 201, "PUT with default ack/from (2/2)")
        expect(get(b_, k, ack=1, frm=1), 200, "GET 1/1", b"d")
        expect(put(a, k, b"e", ack=2), 201, "PUT with only ack=2 (from = cluster size)")
        expect(get(b_, k, frm=1), 200, "GET with only from=1 (ack = 1)", b"e")
        expect(get(b_, k, ack=1), 200, "GET with only ack=1 (from = 2)", b"e")
        expect(delete(a, k, frm=2), 202, "DELETE with only from=2")
        expect(get(b_, k), 404, "GET default after DELETE")

    def test_node_down_2of2_is_504(self):
        a = self.ports[0]
        k = self.key("down504")
        expect(put(a, k, b"v", ack=2, frm=2), 201, "PUT 2/2 with both up")
        k2 = self.key("down504-untouched")
        expect(put(a, k2, b"u", ack=2, frm=2), 201, "PUT 2/2 with both up")
        self.ns[1].stop()
        expect(get(a, k, ack=2, frm=2), 504, "GET 2/2 with a node down")
        expect(put(a, k, b"w", ack=2, frm=2), 504, "PUT 2/2 with a node down")
        expect(delete(a, k, ack=2, frm=2), 504, "DELETE 2/2 with a node down")
        expect(put(a, k + "/dflt", b"w"), 504, "PUT with defaults (quorum of 2 = 2)")
        # (a write answered 504 may still have been applied on the live replica: k itself is
        # now undefined, so read another key)
        expect(get(a, k2, ack=1, frm=2), 200, "GET 1/2 still works", b"u")

    def test_overlapping_reads_and_writes(self):
        a, b_ = self.ports
        k = self.key("overlap1")
        expect(put(a, k, b"half", ack=1, frm=2), 201, "PUT 1/2 via node 0")
        expect(get(a, k, ack=2, frm=2), 200, "GET 2/2 via node 0", b"half")
        expect(get(b_, k, ack=2, frm=2), 200, "GET 2/2 via node 1", b"half")
        k2 = self.key("overlap2")
        expect(put(a, k2, b"full", ack=2, frm=2), 201, "PUT 2/2 via node 0")
        expect(get(a, k2, ack=1, frm=2), 200, "GET 1/2 via node 0", b"full")
        expect(get(b_, k2, ack=1, frm=2), 200, "GET 1/2 via node 1", b"full")
        expect(put(b_, k2, b"full2", ack=2, frm=2), 201, "overwrite 2/2 via node 1")
        expect(get(a, k2, ack=1, frm=2), 200, "GET 1/2 after overwrite via node 0", b"full2")

    def test_overlapping_delete(self):
        a, b_ = self.ports
        k = self.key("overdel")
        expect(put(a, k, b"x", ack=2, frm=2), 201, "PUT 2/2")
        expect(delete(a, k, ack=2, frm=2), 202, "DELETE 2/2 via node 0")
        expect(get(a, k, ack=1, frm=2), 404, "GET 1/2 via node 0")
        expect(get(b_, k, ack=1, frm=2), 404, "GET 1/2 via node 1")
        k2 = self.key("overdel2")
        expect(put(a, k2, b"y", ack=2, frm=2), 201, "PUT 2/2")
        expect(delete(b_, k2, ack=1, frm=2), 202, "DELETE 1/2 via node 1")
        expect(get(a, k2, ack=2, frm=2), 404, "GET 2/2 via node 0 sees the tombstone")

    def _missed(self, name, before, during, expect_status, expect_body):
        """before(): writes with both nodes up; node 1 stops; during(): writes 1/2 via node 0;
        node 1 restarts; a 2/2 read through node 1 must see the latest."""
        a, b_ = self.ports
        k = self.key(name)
        before(a, k)
        self.ns[1].stop()
        during(a, k)
        self.ns[1].start()
        self.heal()
        expect(get(b_, k, ack=2, frm=2), expect_status, f"{name}: GET 2/2 via restarted node",
               expect_body)
        expect(get(a, k, ack=2, frm=2), expect_status, f"{name}: GET 2/2 via node 0",
               expect_body)

    def test_missed_write(self):
        self._missed("missed-write", lambda a, k: None,
                     lambda a, k: expect(put(a, k, b"new", ack=1, frm=2), 201, "PUT 1/2"),
                     200, b"new")

    def test_missed_delete(self):
        self._missed("missed-delete",
                     lambda a, k: expect(put(a, k, b"old", ack=2, frm=2), 201, "PUT 2/2"),
                     lambda a, k: expect(delete(a, k, ack=1, frm=2), 202, "DELETE 1/2"),
                     404, None)

    def test_missed_overwrite(self):
        self._missed("missed-overwrite",
                     lambda a, k: expect(put(a, k, b"v1", ack=2, frm=2), 201, "PUT 2/2"),
                     lambda a, k: expect(put(a, k, b"v2", ack=1, frm=2), 201, "PUT 1/2"),
                     200, b"v2")

    def test_missed_recreate(self):
        def before(a, k):
            expect(put(a, k, b"v1", ack=2, frm=2), 201, "PUT 2/2")
            expect(delete(a, k, ack=2, frm=2), 202, "DELETE 2/2")

        self._missed("missed-recreate", before,
                     lambda a, k: expect(put(a, k, b"v2", ack=1, frm=2), 201, "PUT 1/2"),
                     200, b"v2")

    def test_missed_delete_and_recreate(self):
        def during(a, k):
            expect(delete(a, k, ack=1, frm=2), 202, "DELETE 1/2")
            expect(put(a, k, b"v3", ack=1, frm=2), 201, "PUT 1/2")

        self._missed("missed-del-recreate",
                     lambda a, k: expect(put(a, k, b"v1", ack=2, frm=2), 201, "PUT 2/2"),
                     during, 200, b"v3")

    def test_tolerate_failure(self):
        a = self.ports[0]
        k = self.key("tolerate")
        expect(put(a, k, b"t", ack=2, frm=2), 201, "PUT 2/2")
        self.ns[1].stop()
        expect(get(a, k, ack=1, frm=2), 200, "GET 1/2 with a node down", b"t")
        expect(delete(a, k, ack=1, frm=2), 202, "DELETE 1/2 with a node down")
        expect(get(a, k, ack=1, frm=2), 404, "GET 1/2 after DELETE")
        expect(put(a, k, b"t2", ack=1, frm=2), 201, "PUT 1/2 with a node down")
        expect(get(a, k, ack=1, frm=2), 200, "GET 1/2 after PUT", b"t2")

    def test_replication_factor_and_distribution(self):
        seen = set()
        for via in range(2):
            for i in range(12):
                k = self.key(f"dist/{via}/{i}")
                expect(put(self.ports[via], k, b"one", ack=1, frm=1), 201, f"PUT 1/1 {k}")
                h = self.holders(k)
                check(len(h) == 1, f"{k} written 1/1 via node {via} is held by nodes {h}")
                seen.add(h[0])
                # deterministic placement: the same key through the other node lands there too
                expect(put(self.ports[1 - via], k, b"two", ack=1, frm=1), 201, f"PUT 1/1 {k}")
                h2 = self.holders(k)
                check(h2 == h, f"{k}: 1/1 via node {via} placed on {h}, via node {1 - via} "
                               f"on {h2}")
                r = get(self.ports[via], k, ack=1, frm=1)
                check(r.status == 200 and r.body in (b"one", b"two"), f"GET 1/1 {k}: {r}")
        check(seen == {0, 1}, f"24 keys written 1/1 all landed on node(s) {seen}")
        k = self.key("dist/both")
        expect(put(self.ports[0], k, b"b", ack=2, frm=2), 201, "PUT 2/2")
        check_eq(self.holders(k), [0, 1], "2/2 write held by")

    def test_peer_restart_heals_by_itself(self):
        a = self.ports[0]
        self.ns[1].stop()
        expect(put(a, self.key("heal/0"), b"x", ack=2, frm=2), 504, "PUT 2/2 with peer down")
        self.ns[1].start()
        # no operator action: requests succeed again, and keep succeeding, within a bound
        wait_healthy(self.ns)
        k = self.key("heal/1")
        expect(put(a, k, b"y", ack=2, frm=2), 201, "2/2 PUT via node 0 after healing")
        expect(get(self.ports[1], k, ack=2, frm=2), 200, "2/2 GET via the restarted node", b"y")

    def test_hung_peer_504_while_1of2_works(self):
        a = self.ports[0]
        k = self.key("hung")
        expect(put(a, k, b"before", ack=2, frm=2), 201, "PUT 2/2 before the hang")
        self.ns[1].pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            for m, call in [("PUT", lambda: put(a, k, b"during", ack=2, frm=2, timeout=30)),
                            ("GET", lambda: get(a, k, ack=2, frm=2, timeout=30)),
                            ("DELETE", lambda: delete(a, k, ack=2, frm=2, timeout=30))]:
                expect(call(), 504, f"{m} 2/2 with a hung peer")
            expect(put(a, k, b"during1", ack=1, frm=2, timeout=30), 201,
                   "PUT 1/2 with a hung peer")
            expect(get(a, k, ack=1, frm=2, timeout=30), 200, "GET 1/2 with a hung peer",
                   b"during1")
            expect(request(a, "GET", "/v0/status", timeout=30), 200,
                   "coordinator status while its peer hangs")
        finally:
            self.ns[1].resume()
        self.heal()
        expect(get(self.ports[1], k, ack=2, frm=2), 200, "GET 2/2 after SIGCONT", b"during1")

    def test_50_concurrent_requests_one_coordinator(self):
        a = self.ports[0]
        barrier = threading.Barrier(50, timeout=60)

        def one(i, method):
            k = self.key(f"conc/{i}")
            c = http.client.HTTPConnection("127.0.0.1", a, timeout=60)
            try:
                barrier.wait()
                if method == "PUT":
                    c.request("PUT", f"/v0/entity?id={q(k)}&ack=2&from=2", body=b"c%d" % i)
                else:
                    c.request("GET", f"/v0/entity?id={q(k)}&ack=2&from=2")
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()

        res = run_threads([lambda i=i: one(i, "PUT") for i in range(50)])
        bad = [(i, s) for i, (s, _) in enumerate(res) if s != 201]
        check(not bad, f"concurrent 2/2 PUTs not 201: {bad[:10]}")
        barrier.reset()
        res = run_threads([lambda i=i: one(i, "GET") for i in range(50)])
        bad = [(i, s, v) for i, (s, v) in enumerate(res) if (s, v) != (200, b"c%d" % i)]
        check(not bad, f"concurrent 2/2 GETs wrong: {bad[:10]}")

    def test_large_binary_value_and_odd_keys_through_peers(self):
        a, b_ = self.ports
        v = bytes(range(256)) * 16384  # 4 MiB, every byte value
        k = self.key("big4m")
        expect(put(a, k, v, ack=2, frm=2), 201, "PUT 4 MiB 2/2 via node 0")
        r = get(b_, k, ack=2, frm=2)
        check(r.status == 200 and r.body == v, f"GET 4 MiB 2/2 via node 1: {r.status}, "
                                               f"{len(r.body)} bytes")
        # keys that need percent-encoding on the way to a peer keep their exact bytes
        for suffix in [b" sp ace", b"a+b", b"p%25q", b"&id=x", b"\xff\x00\x80", b"slash/?#"]:
            kb = self.key("odd/").encode() + suffix
            val = b"val:" + suffix
            expect(put(a, kb, val, ack=2, frm=2), 201, f"PUT 2/2 {kb!r}")
            for i, n in enumerate(self.ns):
                r = entities(n.port, kb, kb + b"\x00")
                check_eq(r.body, kb + b"\n" + val, f"local data of node {i} for key {kb!r}")
            expect(get(b_, kb, ack=2, frm=2), 200, f"GET 2/2 {kb!r} via node 1", val)
        # an empty value is a value, not a tombstone, on every replica
        k = self.key("empty")
        expect(put(a, k, b"", ack=2, frm=2), 201, "PUT empty 2/2")
        expect(get(b_, k, ack=2, frm=2), 200, "GET empty value 2/2 via node 1", b"")
        expect(get(b_, k, ack=1, frm=1), 200, "GET empty value 1/1 via node 1", b"")

    def test_pipelined_replicated_requests_answered_in_order(self):
        """Pipelined requests on one connection behave as if executed one after another
        (RFC 9112 9.3.2: only safe methods may be processed in parallel): a GET must not see
        the effect of a DELETE pipelined after it, nor miss the PUT pipelined before it."""
        for rnd in range(5):
            self._pipelined_round(rnd)

    def _pipelined_round(self, rnd):
        a = self.ports[0]
        reqs, want = [], []
        for i in range(40):
            k = self.key(f"pipe/{rnd}/{i}")
            v = b"p%d-" % i + b"v" * (i * 1000)  # growing values: replica work takes longer
            reqs.append(req_bytes("PUT", entity_path(k, 2, 2), body=v))
            want.append((201, None, f"PUT {k} 2/2"))
            reqs.append(req_bytes("GET", entity_path(k, 1 + i % 2, 2)))
            want.append((200, v, f"GET {k} {1 + i % 2}/2 after its PUT, before its DELETE"))
            reqs.append(req_bytes("DELETE", entity_path(k, 2, 2)))
            want.append((202, None, f"DELETE {k} 2/2"))
            reqs.append(req_bytes("GET", entity_path(k, 2, 2)))
            want.append((404, None, f"GET {k} 2/2 after its DELETE"))
        c = RawConn(a)
        try:
            c.send(b"".join(reqs))
            bad = []
            for i, (st, body, what) in enumerate(want):
                r = c.read_response()
                if r.status != st or (body is not None and r.body != body):
                    bad.append(f"#{i} {what}: got {r.status}")
            check(not bad, f"round {rnd}: {len(bad)} of {len(want)} pipelined replicated "
                           "responses wrong: "
                           + "; ".join(bad[:3]))
        finally:
            c.close()

    def test_concurrent_writes_to_one_key_converge(self):
        a, b_ = self.ports
        k = self.key("converge")
        for rnd in range(10):
            res = run_threads([lambda: put(a, k, b"from-0-%d" % rnd, ack=2, frm=2),
                               lambda: put(b_, k, b"from-1-%d" % rnd, ack=2, frm=2)])
            check_eq([r.status for r in res], [201, 201], f"round {rnd}: concurrent PUT 2/2")
            bodies = [entities(n.port, k, k + "\x00").body for n in self.ns]
            check(bodies[0] == bodies[1], f"round {rnd}: replicas diverge after both writes were "
                                          f"acknowledged by both: {bodies}")
            r0, r1 = get(a, k, ack=1, frm=1), get(b_, k, ack=2, frm=2)
            check(r0.body == r1.body and r0.body in (b"from-0-%d" % rnd, b"from-1-%d" % rnd),
                  f"round {rnd}: reads disagree: {r0.body!r} vs {r1.body!r}")

    def test_sigterm_finishes_in_flight_replicated_request(self):
        a = self.ports[0]
        k = self.key("inflight")
        self.ns[1].pause()
        c = RawConn(a, timeout=30)
        try:
            c.send(req_bytes("PUT", entity_path(k, 2, 2), body=b"x"))
            # the request is in flight once the coordinator has sent it to the hung peer
            poll(lambda: recv_queue_bytes(self.ports[1]) > 0, 10,
                 "the coordinator to forward the request to the stopped peer")
            self.ns[0].stop(signal.SIGTERM)  # asserts exit 0 within the stop bound
            r = c.read_response_or_close()
            check(r is not None, "in-flight request dropped without a response on SIGTERM")
            check_eq(r.status, 504, "in-flight 2/2 PUT with a hung peer, answered at shutdown")
        finally:
            c.close()
            self.ns[1].resume()

    def test_client_gone_while_request_pending(self):
        a = self.ports[0]
        self.ns[1].pause()
        try:
            for i in range(10):
                c = RawConn(a)
                c.send(req_bytes("GET", entity_path(self.key(f"gone/{i}"), 2, 2)))
                c.close(reset=(i % 2 == 0))
            expect(request(a, "GET", "/v0/status"), 200, "coordinator serving with abandoned "
                                                         "requests pending")
        finally:
            self.ns[1].resume()
        self.heal()
        check(self.ns[0].alive(), "coordinator died")
        expect(put(a, self.key("gone/after"), b"a", ack=2, frm=2), 201, "PUT 2/2 afterwards")

    def test_status_lists_peers(self):
        for i, n in enumerate(self.ns):
            st = status_json(n.port)
            check_eq(st.get("cluster_size"), 2, f"node {i} cluster_size")
            check_eq(st.get("url"), n.url, f"node {i} url")
            urls = {p.get("url") for p in st.get("peers", [])}
            other = self.ns[1 - i].url
            check(other in urls, f"node {i} peers {urls} lack {other}")


class ThreeNodes(ClusterBase):
    abstract = True
    size = 3

    def test_quorum_write_read_survives_one_down(self):
        for down in range(3):
            k = self.key(f"q/{down}")
            up = [i for i in range(3) if i != down]
            expect(put(self.ports[up[0]], k, b"q%d" % down), 201, "PUT with defaults (2/3)")
            self.ns[down].stop()
            for i in up:
                expect(get(self.ports[i], k), 200, f"quorum GET via node {i} with node {down} "
                                                   "down", b"q%d" % down)
            self.ns[down].start()
            self.heal()

    def test_quorum_delete_seen_after_node_returns(self):
        k = self.key("qdel")
        expect(put(self.ports[0], k, b"x", ack=3, frm=3), 201, "PUT 3/3")
        self.ns[2].stop()
        expect(delete(self.ports[0], k), 202, "quorum DELETE with node 2 down")
        self.ns[2].start()
        self.heal()
        expect(get(self.ports[2], k), 404, "quorum GET via the returned node")
        expect(get(self.ports[1], k), 404, "quorum GET via node 1")
        expect(get(self.ports[2], k, ack=3, frm=3), 404, "GET 3/3")

    def test_two_nodes_down(self):
        a = self.ports[0]
        k = self.key("two-down")
        expect(put(a, k, b"all", ack=3, frm=3), 201, "PUT 3/3")
        self.ns[1].stop()
        self.ns[2].stop()
        expect(put(a, self.key("two-down/new"), b"n"), 504, "default PUT with two nodes down")
        expect(get(a, k), 504, "default GET with two nodes down")
        expect(get(a, k, ack=1, frm=3), 200, "GET 1/3 of a 3/3-written key", b"all")

    def _get_counters(self, port):
        m = get_metrics(port)
        return {n: metric(m, n) for n in ("kv_peer_requests_total", "kv_get_hedges_total",
                                          "kv_get_retries_total", "kv_read_repairs_total")}

    def test_quorum_get_asks_one_peer(self):
        """A 2/3 GET is answered by the coordinator's own copy and one peer's: the third replica
        is asked only in place of a failed one (retry) or when the first are late (hedge), and
        the coordinator's counters add up to exactly that. The keys are written 3/3: with 2/3
        the third replica's write may still be on its way when a GET asks that replica (another
        loop thread's connection can overtake it), and the read repair it then gets is a peer
        request too (seen on a machine with slow system calls: 41 for 40 GETs, 1 repair)."""
        a = self.ports[0]
        keys = [self.key(f"fanout/{i}") for i in range(40)]
        for k in keys:
            expect(put(a, k, b"f", ack=3, frm=3), 201, f"PUT {k} 3/3")
        before = self._get_counters(a)
        for k in keys:
            expect(get(a, k), 200, f"GET {k} 2/3", b"f")
        after = self._get_counters(a)
        d = {n: after[n] - before[n] for n in after}
        check_eq(d["kv_read_repairs_total"], 0, f"read repairs of keys every replica holds ({d})")
        check_eq(d["kv_peer_requests_total"],
                 len(keys) + d["kv_get_hedges_total"] + d["kv_get_retries_total"],
                 f"peer requests for {len(keys)} GETs 2/3 (counter deltas {d})")

    def test_quorum_get_hedges_past_a_hung_peer(self):
        """With one peer hung (SIGSTOP, connections open, no answer), 2/3 GETs that asked it
        first ask the third replica at the hedge delay (at most half the request timeout, so
        before the hung one fails) and answer 200; the hedge counter shows it."""
        a = self.ports[0]
        keys = [self.key(f"hedge/{i}") for i in range(20)]
        for k in keys:
            expect(put(a, k, b"h", ack=3, frm=3), 201, f"PUT {k} 3/3")
        before = self._get_counters(a)
        self.ns[1].pause()
        try:
            for k in keys:
                expect(get(a, k, timeout=30), 200, f"GET {k} 2/3 with node 1 hung", b"h")
        finally:
            self.ns[1].resume()
        after = self._get_counters(a)
        check(after["kv_get_hedges_total"] > before["kv_get_hedges_total"],
              f"no hedged GET with node 1 hung: {before} -> {after}")

    def test_placement_first_from_nodes(self):
        """A key's replicas for from=1 are the first of its replicas for from=2; from=2 writes
        live on exactly two nodes, the same whichever node coordinates."""
        spread = set()
        for i in range(9):
            k1 = self.key(f"place/{i}")
            via = i % 3
            expect(put(self.ports[via], k1, b"1", ack=1, frm=1), 201, f"PUT 1/1 {k1}")
            h1 = self.holders(k1)
            check(len(h1) == 1, f"{k1} written 1/1 held by {h1}")
            expect(put(self.ports[(via + 1) % 3], k1, b"2", ack=2, frm=2), 201, f"PUT 2/2 {k1}")
            h2 = self.holders(k1)
            check(len(h2) == 2, f"{k1} written 2/2 held by {h2}")
            check(h1[0] in h2, f"{k1}: from=1 replica {h1} not among from=2 replicas {h2}")
            spread.update(h2)
            expect(put(self.ports[(via + 2) % 3], k1, b"3", ack=2, frm=2), 201, f"PUT 2/2 {k1}")
            check_eq(self.holders(k1), h2, f"{k1} 2/2 via another coordinator held by")
        check(spread == {0, 1, 2}, f"9 keys with from=2 only ever placed on {spread}")

    def test_write_after_an_acknowledged_one_wins_through_another_coordinator(self):
        """Versions are in microseconds (proto_spec/peer-protocol.md 1.1): a PUT that starts after
        another was acknowledged wins, whichever node coordinates each. The key lives on one
        replica (from=1) that coordinates neither write, so neither coordinator has seen the
        other's version; the first coordinator has the higher node id, which used to win ties
        within a millisecond. Every node runs on this machine's one clock."""
        k = self.key("realtime")
        expect(put(self.ports[0], k, b"0", ack=1, frm=1), 201, "PUT 1/1")
        (replica,) = self.holders(k)
        low, high = [i for i in range(3) if i != replica]
        for i in range(150):
            for first, second in ((high, low), (low, high)):
                expect(put(self.ports[first], k, b"a%d" % i, ack=1, frm=1), 201,
                       f"PUT via node {first}")
                expect(put(self.ports[second], k, b"b%d" % i, ack=1, frm=1), 201,
                       f"PUT via node {second}, right after")
                expect(get(self.ports[replica], k, ack=1, frm=1), 200,
                       f"GET after PUTs via {first} then {second}", b"b%d" % i)








class PeerTimeouts(Group):
    """A replica request times out at twice that peer's slowest recent answer, at least
    --peer-timeout-min-ms, not at the whole request timeout (60 s here): a write that needs a hung
    peer is answered 504 long before the client's 20 s socket timeout."""
    abstract = True
    mode = "http"
    test_timeout = 120

    def setup_group(self):
        # One loop per node: the status shows that loop's timeout.
        self.ns = self.track(start_cluster(2, self.mode, extra=[
            "--threads", "1", "--request-timeout-ms", "60000", "--peer-timeout-min-ms", "300"]))

    def test_hung_peer_fails_at_the_adaptive_timeout(self):
        a, peer = self.ns[0].port, self.ns[1].url
        for i in range(5):
            expect(put(a, f"{self.mode}/pt/{i}", b"v", ack=2, frm=2), 201, "PUT 2/2, both up")
        timeouts = {p.get("url"): p.get("timeout_ms") for p in status_json(a)["peers"]}
        check_eq(timeouts.get(peer), 300, "peer timeout after fast answers (the floor)")
        check_eq(metric(get_metrics(a), "kv_peer_timeout_seconds", peer=peer), 0.3,
                 "kv_peer_timeout_seconds")
        before = metric(get_metrics(a), "kv_peer_failures_total", peer=peer)
        self.ns[1].pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            expect(put(a, f"{self.mode}/pt/hung", b"w", ack=2, frm=2, timeout=20), 504,
                   "PUT 2/2 with the peer hung")
            expect(put(a, f"{self.mode}/pt/hung1", b"w", ack=1, frm=2, timeout=20), 201,
                   "PUT 1/2 with the peer hung")
        finally:
            self.ns[1].resume()
        after = metric(get_metrics(a), "kv_peer_failures_total", peer=peer)
        check(after >= before + 1, f"peer failures {before} -> {after}")


class DelayedLinks(Group):
    """Three nodes, each reached by its peers through a DelayProxy adding DELAYS[i] seconds each
    way (None: directly). Clients talk to each node's own port. One loop thread per node."""
    abstract = True
    mode = "http"
    test_timeout = 120
    DELAYS = (None, None, None)
    REQUEST_TIMEOUT_MS = 2000
    PEER_TIMEOUT_MIN_MS = 10

    def setup_group(self):
        self.proxies = []
        extra = ["--threads", "1", "--request-timeout-ms", str(self.REQUEST_TIMEOUT_MS),
                 "--peer-timeout-min-ms", str(self.PEER_TIMEOUT_MIN_MS)]

        def make_nodes(ports):
            proxies = [DelayProxy(p, d) if d is not None else None
                       for p, d in zip(ports, self.DELAYS)]
            self.proxies += [px for px in proxies if px is not None]
            ring = [px.port if px else p for p, px in zip(ports, proxies)]
            self.ring = [url_of(r) for r in ring]
            return [Node(p, cluster_ports=ring, mode=self.mode, extra=extra + ["--self", u])
                    for p, u in zip(ports, self.ring)]
        self.ns = self.track(start_nodes(len(self.DELAYS), make_nodes))
        a = self.ns[0].port
        poll(lambda: put(a, f"{self.mode}/slow/probe", b"p", ack=2, frm=3).status == 201, 40,
             "a write 2/3 through node 0 (node 1 reachable)", 0.1)

    def teardown_group(self):
        super().teardown_group()
        for px in self.proxies:
            px.close()


class SlowLinks(DelayedLinks):
    """Tests with delays between nodes (users' request 7). Node 0 is reached directly, node 1
    through a DelayProxy adding 250 ms each way, node 2 through one adding 1.5 s each way, so
    its answers (3 s round trip) always come after the 2 s request timeout. Clients talk to node
    0. --peer-timeout-min-ms is 10: a peer's timeout can only be long because its answers are
    slow. Node 1's answers would have to stall 500 ms beyond their round trip to time out."""
    abstract = True
    DELAYS = (None, 0.25, 1.5)  # one way, seconds; None: no proxy

    def test_slow_peer_is_waited_for_not_failed(self):
        a, slow = self.ns[0].port, self.ring[1]
        before = metric(get_metrics(a), "kv_peer_failures_total", peer=slow)
        for i in range(5):
            key, value = f"{self.mode}/slow/{i}", f"v{i}".encode()
            expect(put(a, key, value, ack=2, frm=3), 201, f"PUT 2/3 #{i}")
            expect(get(a, key, ack=2, frm=3), 200, f"GET 2/3 #{i}", value)
        expect(delete(a, f"{self.mode}/slow/0", ack=2, frm=3), 202, "DELETE 2/3")
        expect(get(a, f"{self.mode}/slow/0", ack=2, frm=3), 404, "GET 2/3 after the delete")
        # Every answer from node 1 takes at least its 500 ms round trip, so its timeout, twice
        # the slowest recent answer, is at least 1000 ms though the floor is 10 ms.
        peers = {p["url"]: p for p in status_json(a)["peers"]}
        t = peers[slow]["timeout_ms"]
        check(1000 <= t <= self.REQUEST_TIMEOUT_MS,
              f"node 1's timeout {t} ms: expected 1000..2000")
        check_eq(peers[slow]["state"], "closed", "node 1's circuit breaker")
        check_eq(metric(get_metrics(a), "kv_peer_failures_total", peer=slow), before,
                 "failed requests to node 1")

    def test_peer_slower_than_the_request_timeout_fails_only_what_needs_it(self):
        # Node 2 has failed every request sent to it so far (the PUTs 2/3 of setup and of the
        # other test went to it too), so its circuit breaker may be open: then a request that
        # needs it fails at once instead of at the timeout. 504 either way.
        a, slower = self.ns[0].port, self.ring[2]
        key = f"{self.mode}/slower/k"
        expect(put(a, key, b"v1", ack=3, frm=3), 504, "PUT 3/3 (node 2 answers after 3 s)")
        expect(put(a, key, b"v2", ack=2, frm=3), 201, "PUT 2/3")
        expect(get(a, key, ack=2, frm=3), 200, "GET 2/3", b"v2")
        expect(get(a, key, ack=3, frm=3), 504, "GET 3/3")
        peers = {p["url"]: p for p in status_json(a)["peers"]}
        check(peers[slower]["failures"] >= 1 and
              metric(get_metrics(a), "kv_peer_failures_total", peer=slower) >= 1,
              f"node 2's failures are counted: {peers[slower]}")


class SlowReplica(DelayedLinks):
    """Node 1 answers through a 500 ms round trip, node 2 at once. A GET 2/3 through node 0 asks
    itself and one peer first: not node 1, whose answers are clearly slower than node 2's, even
    for keys whose ring order puts node 1 first."""
    abstract = True
    DELAYS = (None, 0.25, None)
    PEER_TIMEOUT_MIN_MS = 200  # the default: node 2, reached directly, must not time out

    def test_get_asks_the_faster_replica_first(self):
        a, n1 = self.ns[0].port, self.ns[1].port
        # Keys whose first replica is node 1 (a 1/1 write lands there): hedged GETs of these
        # would ask node 1 first in ring order.
        keys = []
        # The writes that set the test up go through node 1's 500 ms round trip, timed by an
        # adaptive peer timeout (twice its slowest recent answer): on a loaded machine one can
        # time out (504) and is written again; what is tested is the GETs below.
        for i in range(200):
            k = f"{self.mode}/order/{i}"
            poll(lambda: put(a, k, b"x", ack=1, frm=1).status == 201, 30, f"PUT {k} 1/1")
            r = entities(n1, k.encode(), k.encode() + b"\x00")
            if r.status == 200 and r.body.startswith(k.encode() + b"\n"):
                keys.append(k)
                if len(keys) == 6:
                    break
        check_eq(len(keys), 6, "keys placed first on node 1")
        for k in keys:  # 3/3: node 1's answer, 500 ms, is timed before the client's
            poll(lambda: put(a, k, b"v-" + k.encode(), ack=3, frm=3).status == 201, 30,
                 f"PUT {k} 3/3")
        before = metric(get_metrics(a), "kv_peer_requests_total", peer=self.ring[1])
        passes = metric(get_metrics(a), "kv_get_slow_peer_passes_total", peer=self.ring[1])
        for k in keys:
            expect(get(a, k, ack=2, frm=3), 200, f"GET {k} 2/3", b"v-" + k.encode())
        asked = metric(get_metrics(a), "kv_peer_requests_total", peer=self.ring[1]) - before
        passes = metric(get_metrics(a), "kv_get_slow_peer_passes_total",
                        peer=self.ring[1]) - passes
        check(passes >= len(keys) - 1, f"{passes} GETs counted as passing node 1 over")
        # In ring order every one of these GETs would ask node 1; asked now only if node 2 was
        # late past the hedge delay (at most a few on a busy machine).
        check(asked < len(keys), f"node 1 asked by {asked} of {len(keys)} GETs 2/3")


def _per_mode(*bases):
    """Each base once per peer protocol, as a runnable subclass named after it: TwoNodesHttp,
    TwoNodesBinary, TwoNodesHttpPipelined, ... (the runner collects the module's classes)."""
    for base in bases:
        for suffix, mode in (("Http", "http"), ("Binary", "binary"),
                             ("HttpPipelined", "http-pipelined")):
            name = base.__name__ + suffix
            globals()[name] = type(name, (base,), {"mode": mode, "__module__": __name__})


_per_mode(TwoNodes, ThreeNodes, PeerTimeouts, SlowLinks, SlowReplica)
