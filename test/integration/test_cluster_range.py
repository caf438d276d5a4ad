"""Cluster-wide range reads, GET /v0/entities?start=S[&end=E]&scope=cluster[&limit=N][&from=F],
in every peer mode, on one 3-node cluster per mode (nodes named `localhost`, hinted handoff
off so that a replica that missed writes stays stale). Each test writes under its own prefix.

- Through any node: every live key of the range exactly once, in byte order, with its newest
  value, deleted keys absent; each node's own (local) range holds only part of it (from=2).
- Replicas that disagree: writes and deletes made while a replica was down are newest, and win
  over the stale replica's values (read through the stale node itself).
- limit=N pages: the next page starts after the last key; the pages cover every key once.
- One node down with from=2: still complete. Two down: 504 before the first byte, or, once
  streaming, the chunked stream ends without its final chunk.
- A slow client with a small receive buffer still gets everything.
- Bad parameters: 400.
A test that stops nodes leaves them stopped; before_each restarts them and waits until healthy."""
import socket
import time

from harness import (Group, RawConn, check, check_eq, delete, entities, put, put_many, q,
                     range_body, req_bytes, request, short, start_cluster, wait_healthy)

EXTRA = ["--hinted-handoff", "off", "--request-timeout-ms", "1000"]


def crange(port, start, end=None, limit=None, frm=None, timeout=30):
    p = "/v0/entities?start=" + q(start) + "&scope=cluster"
    if end is not None:
        p += "&end=" + q(end)
    if limit is not None:
        p += f"&limit={limit}"
    if frm is not None:
        p += f"&from={frm}"
    return request(port, "GET", p, timeout=timeout)


def parse_records(body, values):
    """Splits a range body into keys, knowing every value (all values here have one length per
    test): returns the list of keys."""
    keys = []
    i = 0
    while i < len(body):
        nl = body.index(b"\n", i)
        k = body[i:nl]
        keys.append(k)
        i = nl + 1 + len(values[k])
    return keys


class ClusterRange(Group):
    abstract = True
    mode = "http"
    test_timeout = 240

    def setup_group(self):
        self.ns = self.track(start_cluster(3, self.mode, extra=EXTRA))
        self.ports = [n.port for n in self.ns]

    def before_each(self):
        down = False
        for n in self.ns:
            n.resume()
            if not n.alive():
                n.start(wait=False)
                down = True
        if down:
            for n in self.ns:
                n.wait_ready()
        wait_healthy(self.ns)

    def p(self, name):
        return f"{self.mode}/cr/{name}/"

    def fill(self, prefix, n, size=20, frm=2, via=None):
        items = [(f"{prefix}{i:05d}", f"{i:05d}-".encode() * (size // 6 + 1)) for i in range(n)]
        items = [(k, v[:size]) for k, v in items]
        for j in range(3):  # through every node, a third each
            part = items[j::3]
            put_many(self.ports[j if via is None else via], part, ack=2, frm=frm)
        return items

    def expect_all(self, port, prefix, items, frm=2, what=""):
        r = crange(port, prefix, prefix + "\xff", frm=frm)
        check_eq(r.status, 200, f"cluster range status {what}")
        check("chunked" in (r.header("Transfer-Encoding") or "").lower(), "chunked answer")
        want = range_body(sorted(items))
        check(r.body == want, f"cluster range {what}: {len(r.body)} bytes, want {len(want)}: "
                              f"{short(r.body)} vs {short(want)}")

    def test_every_key_once_in_order_through_every_node(self):
        pre = self.p("all")
        items = self.fill(pre, 600, frm=2)
        for i, port in enumerate(self.ports):
            self.expect_all(port, pre, items, frm=2, what=f"through node {i}")
            self.expect_all(port, pre, items, frm=None, what=f"through node {i}, default from")
        # Each node's own range holds about two thirds (from=2): less than everything, and
        # without scope=cluster (or with scope=local) that is still the answer.
        for port in self.ports:
            local = entities(port, pre, pre + "\xff")
            check_eq(local.status, 200, "local range")
            n = local.body.count(b"\n")
            check(0 < n < 600, f"a node's own range holds {n} of 600 keys")
            scoped = request(port, "GET", "/v0/entities?start=" + q(pre) + "&end=" +
                             q(pre + "\xff") + "&scope=local")
            check_eq(scoped.body, local.body, "scope=local is the local range")

    def test_deleted_keys_are_absent(self):
        pre = self.p("del")
        items = self.fill(pre, 90)
        gone = set()
        for i in range(0, 90, 4):
            k = items[i][0]
            check_eq(delete(self.ports[i % 3], k, ack=2, frm=2).status, 202, f"DELETE {k}")
            gone.add(k)
        self.expect_all(self.ports[1], pre, [kv for kv in items if kv[0] not in gone])

    def test_newest_value_wins_when_replicas_disagree(self):
        pre = self.p("lww")
        items = dict(self.fill(pre, 120, frm=3))  # every node holds every key
        stale = self.ns[2]
        stale.stop()
        newer = {}
        for i in range(0, 120, 3):
            k = f"{pre}{i:05d}"
            newer[k] = b"NEW-" + k.encode()
            check_eq(put(self.ports[0], k, newer[k], ack=2, frm=3).status, 201, f"PUT {k}")
        deleted = set()
        for i in range(1, 120, 6):
            k = f"{pre}{i:05d}"
            check_eq(delete(self.ports[1], k, ack=2, frm=3).status, 202, f"DELETE {k}")
            deleted.add(k)
        stale.start()
        # The stale node still holds the old values and no tombstones (hints are off).
        local = entities(stale.port, pre, pre + "\xff").body
        check(local.count(b"\n") == 120 and b"NEW-" not in local, "the restarted node is stale")
        want = {k: newer.get(k, v) for k, v in items.items() if k not in deleted}
        # Through the stale node: the newer versions and tombstones of the others win.
        self.expect_all(stale.port, pre, list(want.items()), frm=3, what="through the stale node")
        # And with one of the up-to-date nodes down, the other one still outvotes the stale node.
        self.ns[0].stop()
        self.expect_all(stale.port, pre, list(want.items()), frm=3, what="with node 0 down")

    def test_limit_pages_cover_every_key_once(self):
        pre = self.p("page")
        items = self.fill(pre, 200)
        values = {k.encode(): v for k, v in items}
        start, seen, pages = pre, [], 0
        while True:
            r = crange(self.ports[pages % 3], start, pre + "\xff", limit=17, frm=2)
            check_eq(r.status, 200, f"page {pages}")
            keys = parse_records(r.body, values)
            check(len(keys) <= 17, f"page {pages} has {len(keys)} keys, limit 17")
            pages += 1
            if not keys:
                break
            seen += keys
            start = keys[-1] + b"\x00"  # right after the last key
            check(pages < 50, "paging ends")
        check_eq(seen, sorted(values), "the pages cover every key once, in order")
        check_eq(pages, 13, "12 full or partial pages and an empty one")
        # The local range takes limit too.
        r = request(self.ports[0], "GET", "/v0/entities?start=" + q(pre) + "&limit=5")
        check_eq(r.status, 200, "local range with limit")
        check_eq(len(parse_records(r.body, values)), 5, "local range limit")

    def test_one_node_down_is_still_complete_with_from_2(self):
        pre = self.p("down1")
        items = self.fill(pre, 300)
        self.ns[1].stop()
        for i in (0, 2):
            self.expect_all(self.ports[i], pre, items, frm=2, what=f"node 1 down, via node {i}")

    def test_two_nodes_down_is_504_with_from_2(self):
        pre = self.p("down2")
        self.fill(pre, 30)
        self.ns[1].stop()
        self.ns[2].stop()
        r = crange(self.ports[0], pre, pre + "\xff", frm=2)
        check_eq(r.status, 504, f"two of three down, from=2: {short(r.body)}")
        # A stopped (SIGSTOP) node fails by timeout instead: still 504, within the timeouts.
        self.ns[2].start()
        self.ns[1].start()
        self.ns[1].pause()
        self.ns[2].pause()
        r = crange(self.ports[0], pre, pre + "\xff", frm=2)
        check_eq(r.status, 504, "two of three paused, from=2")

    def test_nodes_failing_mid_stream_abort_it_without_the_final_chunk(self):
        pre = self.p("abort")
        # 20000 x 1 KiB: each node holds ~13 MiB, far more than the two pages the coordinator
        # keeps per node plus what the sockets hold, so the stream still needs the other nodes
        # when they go.
        self.fill(pre, 20000, size=1024)
        c = RawConn(self.ports[0], timeout=30, rcvbuf=16384)
        try:
            c.send(req_bytes("GET", "/v0/entities?start=" + q(pre) + "&end=" + q(pre + "\xff") +
                             "&scope=cluster&from=2"))
            head = c._take_until(b"\r\n\r\n")
            check(head.startswith(b"HTTP/1.1 200"), f"stream started: {short(head)}")
            c._take(64 * 1024)
            self.ns[1].stop()
            self.ns[2].stop()
            rest = b""
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    d = c.sock.recv(1 << 16)
                except (ConnectionResetError, socket.timeout):
                    break
                if not d:
                    break
                rest += d
            check(time.time() < deadline, "the stream ended")
            check(not rest.endswith(b"\r\n0\r\n\r\n"), "the stream did not end with its final "
                                                       "chunk")
        finally:
            c.close()

    def test_slow_client_gets_everything(self):
        pre = self.p("slow")
        items = self.fill(pre, 1500, size=1000)
        want = range_body(sorted(items))
        c = RawConn(self.ports[2], timeout=30, rcvbuf=4096)
        try:
            c.send(req_bytes("GET", "/v0/entities?start=" + q(pre) + "&end=" + q(pre + "\xff") +
                             "&scope=cluster&from=2"))
            head = c._take_until(b"\r\n\r\n")
            check(head.startswith(b"HTTP/1.1 200"), f"status: {short(head)}")
            body = b""
            deadline = time.time() + 120
            while time.time() < deadline:  # small reads with pauses: a slow reader
                size = int(c._take_until(b"\r\n"), 16)
                if size == 0:
                    c._take(2)
                    break
                while size > 0:
                    part = c._take(min(size, 4096))
                    body += part
                    size -= len(part)
                    time.sleep(0.001)
                c._take(2)
            check_eq(body, want, "a slow client's range")
        finally:
            c.close()

    def test_bad_parameters_are_400(self):
        port = self.ports[0]
        base = "/v0/entities?start=a"
        for bad in ["&scope=cluster&limit=0", "&scope=cluster&limit=-1", "&limit=x", "&limit=",
                    "&scope=everything", "&scope=cluster&from=0", "&scope=cluster&from=4",
                    "&scope=cluster&from=x", "&from=2", "&scope=cluster&limit=1.5"]:
            r = request(port, "GET", base + bad)
            check_eq(r.status, 400, f"GET {base + bad}: {short(r.body)}")
        r = request(port, "GET", "/v0/entities?scope=cluster")
        check_eq(r.status, 400, "no start")
        r = request(port, "GET", "/v0/entities?start=&scope=cluster")
        check_eq(r.status, 400, "empty start")
        r = request(port, "PUT", "/v0/entities?start=a&scope=cluster", body=b"")
        check_eq(r.status, 405, "PUT on a range")
        # A page request claims to come from a peer: refused in binary mode (no secret), and
        # without its parameters 400 over HTTP peers.
        r = request(port, "GET", "/v0/entities?start=a", headers={"X-KV-Internal": "1"})
        check_eq(r.status, 403 if self.mode == "binary" else 400, "page request w/o max_keys")


class ClusterRangeHttp(ClusterRange):
    mode = "http"


class ClusterRangeBinary(ClusterRange):
    mode = "binary"


class ClusterRangeHttpPipelined(ClusterRange):
    mode = "http-pipelined"
