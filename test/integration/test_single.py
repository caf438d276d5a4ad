"""Single node: the entity API, every status code, HTTP/1.1 details, connection limits."""
import random
import threading

from harness import (Group, RawConn, check, check_eq, chunked, delete, entities, entity_path, get,
                     get_metrics, metric, poll, put, rand_bytes, req_bytes, request, short,
                     start_single, status_json)


def send_in_background(conn, data):
    """Sends data from a thread (the server may answer, or close, before reading all of it);
    returns the thread. Errors from a peer that closed early are ignored."""
    def go():
        try:
            conn.sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


class SingleNode(Group):
    """One node with default limits, shared by every test here (each test uses its own keys)."""

    def setup_group(self):
        self.n = self.track(start_single())
        self.port = self.n.port

    def before_each(self):
        check(self.n.alive(), f"node died: {self.n.log_tail(3)}")

    def after_check_alive(self):
        r = request(self.port, "GET", "/v0/status")
        check_eq(r.status, 200, "node still serving (GET /v0/status)")

    # ---- basic CRUD and status codes ------------------------------------------------------

    def test_put_get_delete(self):
        check_eq(get(self.port, "crud").status, 404, "GET of an absent key")
        r = put(self.port, "crud", b"value-1")
        check_eq(r.status, 201, "PUT status")
        r = get(self.port, "crud")
        check_eq(r.status, 200, "GET status")
        check_eq(r.body, b"value-1", "GET body")
        check_eq(put(self.port, "crud", b"value-2").status, 201, "overwrite PUT status")
        check_eq(get(self.port, "crud").body, b"value-2", "GET after overwrite")
        check_eq(delete(self.port, "crud").status, 202, "DELETE status")
        check_eq(get(self.port, "crud").status, 404, "GET after DELETE")
        check_eq(delete(self.port, "crud").status, 202, "DELETE of an already deleted key")
        check_eq(delete(self.port, "never-existed").status, 202, "DELETE of an absent key")
        check_eq(put(self.port, "crud", b"again").status, 201, "re-create PUT")
        check_eq(get(self.port, "crud").body, b"again", "GET after re-create")

    def test_empty_value(self):
        check_eq(put(self.port, "empty", b"").status, 201, "PUT of an empty value")
        r = get(self.port, "empty")
        check_eq(r.status, 200, "GET of an empty value: status")
        check_eq(r.body, b"", "GET of an empty value: body")

    def test_binary_value_all_256_bytes(self):
        v = bytes(range(256)) * 4 + bytes(reversed(range(256)))
        check_eq(put(self.port, "bin256", v).status, 201, "PUT binary")
        r = get(self.port, "bin256")
        check_eq(r.status, 200, "GET binary status")
        check_eq(r.body, v, "binary value round trip")

    def test_value_4mib(self):
        v = rand_bytes(4 << 20, 4)
        check_eq(put(self.port, "big4m", v).status, 201, "PUT 4 MiB")
        r = get(self.port, "big4m")
        check_eq(r.status, 200, "GET 4 MiB status")
        check(r.body == v, f"4 MiB value differs: got {len(r.body)} bytes")

    def test_missing_or_empty_id_400(self):
        for m in ["GET", "PUT", "DELETE"]:
            body = b"x" if m == "PUT" else None
            for path in ["/v0/entity", "/v0/entity?id=", "/v0/entity?idx=a", "/v0/entity?"]:
                r = request(self.port, m, path, body=body)
                check_eq(r.status, 400, f"{m} {path}")

    def test_unknown_path_400(self):
        for m, path in [("GET", "/"), ("GET", "/v0/entityx?id=a"), ("GET", "/v1/entity?id=a"),
                        ("PUT", "/nope"), ("GET", "/v0"), ("DELETE", "/v0/statuses")]:
            body = b"x" if m == "PUT" else None
            check_eq(request(self.port, m, path, body=body).status, 400, f"{m} {path}")

    def test_method_not_allowed_405(self):
        for m, path, need in [("POST", "/v0/entity?id=a", ["GET", "PUT", "DELETE"]),
                              ("PATCH", "/v0/entity?id=a", ["GET", "PUT", "DELETE"]),
                              ("POST", "/v0/status", ["GET"]),
                              ("DELETE", "/v0/entities?start=a", ["GET"])]:
            body = b"x" if m in ("POST", "PATCH") else None
            r = request(self.port, m, path, body=body)
            check_eq(r.status, 405, f"{m} {path}")
            allow = r.header("Allow")
            check(allow is not None, f"{m} {path}: 405 without an Allow header")
            methods = {x.strip().upper() for x in allow.split(",")}
            for x in need:
                check(x in methods, f"{m} {path}: Allow {allow!r} lacks {x}")
        check_eq(get(self.port, "a").status, 404, "POST/PATCH must not have written key a")

    def test_payload_too_large_413(self):
        # Default --max-value-bytes is 8 MiB. The body is sent from a thread: the node may answer
        # 413 as soon as it sees Content-Length and close without reading the body.
        c = RawConn(self.port)
        try:
            big = 8 * 1024 * 1024 + 1
            c.send(req_bytes("PUT", entity_path("too-big"),
                             headers={"Content-Length": str(big)}))
            t = send_in_background(c, b"z" * big)
            r = c.read_response()
            check_eq(r.status, 413, "PUT of 8 MiB + 1 byte")
            t.join(30)
        finally:
            c.close()
        check_eq(get(self.port, "too-big").status, 404, "rejected value must not be stored")
        # exactly 8 MiB is allowed
        v = rand_bytes(8 * 1024 * 1024, 8)
        check_eq(put(self.port, "max8m", v).status, 201, "PUT of exactly 8 MiB")
        check(get(self.port, "max8m").body == v, "8 MiB value round trip")

    def test_headers_too_large_431(self):
        c = RawConn(self.port)
        try:
            c.send(req_bytes("GET", "/v0/status", headers={"X-Big": "a" * (17 * 1024)}))
            r = c.read_response()
            check_eq(r.status, 431, "one 17 KiB header")
        finally:
            c.close()
        c = RawConn(self.port)
        try:
            hs = [(f"X-H{i}", "b" * 100) for i in range(200)]  # ~21 KiB in many headers
            c.send(req_bytes("GET", "/v0/status", headers=hs))
            r = c.read_response()
            check_eq(r.status, 431, "200 headers of 100 bytes")
        finally:
            c.close()
        # 8 KiB of headers is fine
        r = request(self.port, "GET", "/v0/status", headers={"X-Ok": "c" * 8192})
        check_eq(r.status, 200, "8 KiB header")

    # ---- status and metrics ---------------------------------------------------------------

    def test_status_json(self):
        st = status_json(self.port)
        for k in ["url", "cluster_size", "uptime_s", "version", "peers"]:
            check(k in st, f"/v0/status lacks {k!r}: {short(st, 300)}")
        check(isinstance(st["url"], str) and st["url"].endswith(f":{self.port}"),
              f"status url {st['url']!r} does not end with :{self.port}")
        check_eq(st["cluster_size"], 1, "cluster_size")
        check(isinstance(st["uptime_s"], (int, float)) and st["uptime_s"] >= 0,
              f"uptime_s {st['uptime_s']!r}")
        check(isinstance(st["peers"], list), "peers is not a list")
        for p in st["peers"]:
            check(isinstance(p, dict) and "url" in p and "state" in p, f"peer entry {p!r}")
        r = request(self.port, "GET", "/v0/status")
        ct = r.header("Content-Type") or ""
        check("json" in ct, f"status Content-Type {ct!r}")

    def test_metrics(self):
        for i in range(3):
            get(self.port, f"metrics-absent-{i}")
        m1 = get_metrics(self.port)
        before = metric(m1, "kv_requests_total", method="GET", status="404") or 0
        check(before >= 3, f"kv_requests_total{{method=GET,status=404}} = {before}, expected >= 3")
        for i in range(5):
            check_eq(get(self.port, f"metrics-absent-{i}").status, 404, "GET absent")
        put(self.port, "metrics-k", b"v")
        r = request(self.port, "GET", "/metrics")
        ct = r.header("Content-Type") or ""
        check(ct.startswith("text/plain"), f"/metrics Content-Type {ct!r}")
        # counters may be bumped just after the response is written: poll, then check exact
        poll(lambda: metric(get_metrics(self.port), "kv_requests_total", method="GET",
                            status="404") - before >= 5, 10, "GET/404 count to grow by 5")
        m2 = get_metrics(self.port)
        after = metric(m2, "kv_requests_total", method="GET", status="404")
        check_eq(after - before, 5, "increase of GET/404 count after 5 GETs of absent keys")
        check((metric(m2, "kv_requests_total", method="PUT", status="201") or 0) >= 1,
              "kv_requests_total{method=PUT,status=201} missing or 0")
        for gauge in ("kv_storage_frozen_memtables", "kv_storage_background_jobs"):
            v = metric(m2, gauge)
            check(v is not None and v >= 0, f"{gauge} missing or negative: {v}")
        buckets = [(l.get("le"), v) for n, l, v in m2 if n == "kv_request_duration_seconds_bucket"]
        check(len(buckets) >= 2, "no kv_request_duration_seconds_bucket samples")
        check(any(le == "+Inf" for le, _ in buckets), "no le=\"+Inf\" bucket")
        # cumulative: within each label set other than le, counts never decrease with le
        series = {}
        for n, l, v in m2:
            if n == "kv_request_duration_seconds_bucket":
                key = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
                le = float("inf") if l["le"] == "+Inf" else float(l["le"])
                series.setdefault(key, []).append((le, v))
        for key, pts in series.items():
            pts.sort()
            vals = [v for _, v in pts]
            check(vals == sorted(vals), f"histogram buckets not cumulative for {key}: {pts}")
        oc = metric(m2, "kv_open_connections")
        check(oc is not None and oc >= 1, f"kv_open_connections = {oc}")
        names = {n for n, _, _ in m2}
        check(any(any(w in n for w in ("storage", "memtable", "segment", "disk", "keys", "log"))
                  for n in names), f"no storage metric among {sorted(names)[:30]}")

    def test_open_connections_metric_follows_connections(self):
        # The node may not have seen the earlier tests' connections close yet: wait until only
        # the metrics request's own connection is counted (one of them closing between the two
        # readings below made this fail once in CI: 6 with 5 more open, base 2).
        poll(lambda: metric(get_metrics(self.port), "kv_open_connections") == 1, 10,
             "kv_open_connections to count only the metrics request's own connection")
        base = 1
        conns = [RawConn(self.port) for _ in range(5)]
        try:
            for c in conns:
                c.send(req_bytes("GET", "/v0/status"))
                check_eq(c.read_response().status, 200, "status on held connection")
            now = metric(get_metrics(self.port), "kv_open_connections")
            check(now >= base + 5, f"kv_open_connections {now} with 5 more open (was {base})")
        finally:
            for c in conns:
                c.close()
        poll(lambda: metric(get_metrics(self.port), "kv_open_connections") <= base, 10,
             f"kv_open_connections to fall back to {base} after closing 5 connections")

    # ---- percent-decoding -----------------------------------------------------------------

    def test_percent_encoded_keys(self):
        # Only %XX sequences decode; '+' is NOT a space (the API is not form-encoded).
        r = request(self.port, "PUT", "/v0/entity?id=hello%20world", body=b"spaced")
        check_eq(r.status, 201, "PUT hello%20world")
        r = entities(self.port, "hello world", "hello world\x00")
        check_eq(r.body, b"hello world\nspaced", "key stored as decoded 'hello world'")
        check_eq(request(self.port, "GET", "/v0/entity?id=hello+world").status, 404,
                 "hello+world is another key ('+' is not a space)")
        check_eq(request(self.port, "PUT", "/v0/entity?id=a+b", body=b"plus").status, 201,
                 "PUT a+b")
        check_eq(request(self.port, "GET", "/v0/entity?id=a%2Bb").body, b"plus",
                 "a%2Bb is the key a+b")
        check_eq(request(self.port, "GET", "/v0/entity?id=a%2bb").body, b"plus",
                 "lower-case hex %2b")
        check_eq(request(self.port, "GET", "/v0/entity?id=a%20b").status, 404, "a%20b is absent")
        # reserved characters inside a key, and other parameters around id
        r = request(self.port, "PUT", "/v0/entity?x=1&id=k%26y%3Dz%25%2F%3F&z=2", body=b"amp")
        check_eq(r.status, 201, "PUT key with encoded & = % / ?")
        check_eq(entities(self.port, "k&y=z%/?", "k&y=z%/?\x00").body, b"k&y=z%/?\namp",
                 "key bytes k&y=z%/?")
        check_eq(get(self.port, "k&y=z%/?").body, b"amp", "GET through re-encoded key")
        # non-ASCII bytes
        key = "\u20ac/\u00e9".encode("utf-8")
        check_eq(request(self.port, "PUT", "/v0/entity?id=%E2%82%AC%2F%C3%A9", body=b"eur")
                 .status, 201, "PUT UTF-8 key")
        check_eq(get(self.port, key).body, b"eur", "GET UTF-8 key")

    # ---- HTTP/1.1 connection handling -----------------------------------------------------

    def test_keep_alive(self):
        c = RawConn(self.port)
        try:
            c.send(req_bytes("PUT", entity_path("ka"), body=b"one"))
            check_eq(c.read_response().status, 201, "PUT on keep-alive connection")
            c.send(req_bytes("GET", entity_path("ka")))
            r = c.read_response()
            check_eq((r.status, r.body), (200, b"one"), "GET on same connection")
            check("close" not in (r.header("Connection") or "").lower(),
                  f"server asked to close a keep-alive connection: {r.headers}")
            c.send(req_bytes("DELETE", entity_path("ka")))
            check_eq(c.read_response().status, 202, "DELETE on same connection")
            c.send(req_bytes("GET", entity_path("ka")))
            check_eq(c.read_response().status, 404, "GET after DELETE on same connection")
            check(c.is_open_now(), "keep-alive connection closed by the server")
        finally:
            c.close()

    def test_pipelined_50_in_one_write(self):
        reqs, expect = [], []
        for i in range(25):
            v = f"pipe-value-{i}-".encode() * (i + 1)
            reqs.append(req_bytes("PUT", entity_path(f"pipe/{i}"), body=v))
            expect.append((201, None))
            reqs.append(req_bytes("GET", entity_path(f"pipe/{i}")))
            expect.append((200, v))
        check_eq(len(reqs), 50, "request count")
        c = RawConn(self.port)
        try:
            c.send(b"".join(reqs))
            for i, (st, body) in enumerate(expect):
                r = c.read_response()
                check_eq(r.status, st, f"pipelined response #{i} status")
                if body is not None:
                    check_eq(r.body, body, f"pipelined response #{i} body")
            check(c.is_open_now(), "connection closed after pipelined batch")
        finally:
            c.close()

    def test_pipelined_mixed_statuses_in_order(self):
        reqs = [req_bytes("GET", entity_path("pipe-mixed-absent")),
                req_bytes("PUT", entity_path("pipe-mixed"), body=b"m"),
                req_bytes("GET", "/v0/nowhere"),
                req_bytes("POST", entity_path("pipe-mixed"), body=b"x"),
                req_bytes("GET", entity_path("pipe-mixed")),
                req_bytes("DELETE", entity_path("pipe-mixed")),
                req_bytes("GET", "/v0/entity"),
                req_bytes("GET", entity_path("pipe-mixed")),
                req_bytes("PUT", entity_path("pipe-mixed"), headers={
                    "Transfer-Encoding": "chunked"}) + chunked([b"ch", b"unk"]),
                req_bytes("GET", entity_path("pipe-mixed"))]
        c = RawConn(self.port)
        try:
            c.send(b"".join(reqs))
            got = [c.read_response() for _ in reqs]
            check_eq([r.status for r in got], [404, 201, 400, 405, 200, 202, 400, 404, 201, 200],
                     "statuses in request order")
            check_eq(got[4].body, b"m", "body of the 5th response")
            check_eq(got[9].body, b"chunk", "body of the last response")
        finally:
            c.close()

    def test_expect_100_continue(self):
        c = RawConn(self.port)
        try:
            v = b"continued-body" * 100
            c.send(req_bytes("PUT", entity_path("cont"),
                             headers={"Content-Length": str(len(v)), "Expect": "100-continue"}))
            r = c.read_response()
            check_eq(r.status, 100, "interim response before the body is sent")
            check(r.version == "HTTP/1.1", f"interim status line version {r.version}")
            c.send(v)
            r = c.read_response()
            check_eq(r.status, 201, "final response after 100 Continue")
        finally:
            c.close()
        check_eq(get(self.port, "cont").body, v, "value sent after 100 Continue")

    def test_chunked_request_body(self):
        parts = [b"first-", b"x" * 1000, b"", b"\x00\r\n\xff", b"-last"]
        v = b"".join(parts)
        c = RawConn(self.port)
        try:
            c.send(req_bytes("PUT", entity_path("chunked"),
                             headers={"Transfer-Encoding": "chunked"}) + chunked(parts))
            check_eq(c.read_response().status, 201, "chunked PUT")
            # chunk extension, upper-case hex, trailer, and the body in several writes
            c.send(req_bytes("PUT", entity_path("chunked2"),
                             headers={"Transfer-Encoding": "chunked"}))
            c.send(b"A;ext=1\r\n0123456789\r\n")
            c.send(b"3\r\nabc\r\n")
            c.send(b"0\r\nX-Trailer: t\r\n\r\n")
            check_eq(c.read_response().status, 201, "chunked PUT with extension and trailer")
            # an empty chunked body stores an empty value
            c.send(req_bytes("PUT", entity_path("chunked-empty"),
                             headers={"Transfer-Encoding": "chunked"}) + b"0\r\n\r\n")
            check_eq(c.read_response().status, 201, "empty chunked PUT")
        finally:
            c.close()
        check_eq(get(self.port, "chunked").body, v, "chunked value")
        check_eq(get(self.port, "chunked2").body, b"0123456789abc", "chunked value 2")
        r = get(self.port, "chunked-empty")
        check_eq((r.status, r.body), (200, b""), "empty chunked value")

    def test_http10_closes_after_response(self):
        c = RawConn(self.port)
        try:
            c.send(b"GET /v0/status HTTP/1.0\r\n\r\n")
            r = c.read_response()
            check_eq(r.status, 200, "HTTP/1.0 GET status")
            check(c.wait_closed(10), "HTTP/1.0 connection not closed after the response")
        finally:
            c.close()

    def test_connection_close_honoured(self):
        c = RawConn(self.port)
        try:
            # the second request follows in the same write: it must not be answered
            c.send(req_bytes("PUT", entity_path("conn-close"), body=b"cc",
                             headers={"Connection": "close"}) +
                   req_bytes("PUT", entity_path("conn-close-2"), body=b"no"))
            r = c.read_response()
            check_eq(r.status, 201, "PUT with Connection: close")
            check(c.wait_closed(10), "connection not closed after Connection: close")
            check_eq(c.buf, b"", "bytes after the response to a Connection: close request")
        finally:
            c.close()
        check_eq(get(self.port, "conn-close").body, b"cc", "value of the Connection: close PUT")

    def test_partial_request_does_not_block_others(self):
        slow = RawConn(self.port)
        try:
            whole = req_bytes("PUT", entity_path("slowloris"), body=b"slow-value")
            slow.send(whole[:7])
            # another client is served while the first request is incomplete
            check_eq(put(self.port, "slowloris-other", b"o").status, 201, "other client's PUT")
            check_eq(get(self.port, "slowloris-other").body, b"o", "other client's GET")
            for i in range(7, len(whole)):  # the rest one byte per write
                slow.send(whole[i:i + 1])
            check_eq(slow.read_response().status, 201, "byte-by-byte PUT")
        finally:
            slow.close()
        check_eq(get(self.port, "slowloris").body, b"slow-value", "byte-by-byte value")

    def test_garbage_gets_400_or_close_and_node_keeps_serving(self):
        rng = random.Random(7)
        cases = [
            ("random bytes", bytes(rng.randrange(256) for _ in range(4096)) + b"\r\n\r\n"),
            ("tls hello", bytes.fromhex("160301020001000200030300") + b"\x00" * 64),
            # (a request line without a version is HTTP/0.9 to llhttp, so not garbage)
            ("bad version", b"GET /v0/status HTTP/1.1x\r\n\r\n"),
            ("unknown version", b"GET /v0/status HTTP/3.7\r\n\r\n"),
            ("two content-lengths",
             b"PUT /v0/entity?id=garb4 HTTP/1.1\r\nContent-Length: 1\r\n"
             b"Content-Length: 2\r\n\r\nab"),
            ("word", b"HELLO\r\n\r\n"),
            ("header without colon", b"GET /v0/status HTTP/1.1\r\nHost x\r\n\r\n"),
            ("bad content-length",
             b"PUT /v0/entity?id=garb1 HTTP/1.1\r\nContent-Length: abc\r\n\r\nxyz"),
            ("negative content-length",
             b"PUT /v0/entity?id=garb2 HTTP/1.1\r\nContent-Length: -3\r\n\r\nxyz"),
            ("bad chunk size",
             b"PUT /v0/entity?id=garb3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n"),
            ("nul in request line", b"GET /v0/sta\x00tus HTTP/1.1\r\n\r\n"),
            ("binary junk", b"\x00\x01\x02\x03\xff\xfe\xfd" * 100),
        ]
        bystander = RawConn(self.port)
        try:
            bystander.send(req_bytes("GET", "/v0/status"))
            check_eq(bystander.read_response().status, 200, "bystander before garbage")
            for name, data in cases:
                c = RawConn(self.port)
                try:
                    c.try_send(data)
                    r = c.read_response_or_close()
                    if r is not None:
                        check_eq(r.status, 400, f"{name}: response to garbage")
                    check(c.wait_closed(10), f"{name}: connection not closed after garbage")
                finally:
                    c.close()
                bystander.send(req_bytes("GET", "/v0/status"))
                check_eq(bystander.read_response().status, 200, f"bystander after {name}")
                check_eq(request(self.port, "GET", "/v0/status").status, 200,
                         f"new client after {name}")
        finally:
            bystander.close()
        for k in ["garb1", "garb2", "garb3", "garb4"]:
            check_eq(get(self.port, k).status, 404, f"malformed request must not write {k}")

    def test_valid_request_then_garbage_on_same_connection(self):
        c = RawConn(self.port)
        try:
            c.send(req_bytes("PUT", entity_path("before-garbage"), body=b"ok") +
                   b"\x7f\x00garbage garbage\r\n\r\n")
            r = c.read_response()
            check_eq(r.status, 201, "request before garbage answered")
            r = c.read_response_or_close()
            if r is not None:
                check_eq(r.status, 400, "response to the garbage")
            check(c.wait_closed(10), "connection not closed after garbage")
        finally:
            c.close()
        check_eq(get(self.port, "before-garbage").body, b"ok", "value before garbage")


class MaxValueBytes(Group):
    """--max-value-bytes 1000: the limit is exact, for Content-Length and chunked bodies."""

    def setup_group(self):
        self.n = self.track(start_single(extra=["--max-value-bytes", "1000"]))
        self.port = self.n.port

    def test_limit_exact(self):
        check_eq(put(self.port, "mv-1000", b"a" * 1000).status, 201, "PUT of 1000 bytes")
        check_eq(len(get(self.port, "mv-1000").body), 1000, "1000-byte value")
        c = RawConn(self.port)
        try:
            c.send(req_bytes("PUT", entity_path("mv-1001"), body=b"b" * 1001))
            check_eq(c.read_response().status, 413, "PUT of 1001 bytes")
        finally:
            c.close()
        check_eq(get(self.port, "mv-1001").status, 404, "1001-byte value not stored")

    def test_chunked_over_limit(self):
        c = RawConn(self.port)
        try:
            c.send(req_bytes("PUT", entity_path("mv-chunked"),
                             headers={"Transfer-Encoding": "chunked"}))
            c.try_send(chunked([b"c" * 400] * 3))
            check_eq(c.read_response().status, 413, "chunked PUT of 1200 bytes")
        finally:
            c.close()
        check_eq(get(self.port, "mv-chunked").status, 404, "over-limit chunked value not stored")

    def test_expect_continue_over_limit(self):
        c = RawConn(self.port)
        try:
            c.send(req_bytes("PUT", entity_path("mv-expect"),
                             headers={"Content-Length": "5000", "Expect": "100-continue"}))
            r = c.read_response()
            if r.status == 100:  # allowed, though answering 413 at once is better
                c.try_send(b"d" * 5000)
                r = c.read_response()
            check_eq(r.status, 413, "Expect: 100-continue with a body over the limit")
        finally:
            c.close()
        check_eq(request(self.port, "GET", "/v0/status").status, 200, "node still serving")


class MaxConnections(Group):
    """--max-connections 8: the ninth connection gets 503 and is closed; a slot frees on close."""

    def setup_group(self):
        self.n = self.track(start_single(extra=["--max-connections", "8"]))
        self.port = self.n.port

    def test_503_past_max_connections(self):
        # connections from earlier requests (readiness polls) must be gone first
        poll(lambda: metric(get_metrics(self.port), "kv_open_connections") <= 1, 10,
             "kv_open_connections to settle at 1 (the metrics request itself)")
        held = []
        try:
            for i in range(8):
                c = RawConn(self.port)
                held.append(c)
                c.send(req_bytes("GET", "/v0/status"))
                check_eq(c.read_response().status, 200, f"held connection #{i + 1}")
            extra = RawConn(self.port)
            try:
                extra.try_send(req_bytes("GET", "/v0/status"))
                r = extra.read_response_or_close()
                check(r is not None, "9th connection closed without a 503 response")
                check_eq(r.status, 503, "9th connection response")
                check(extra.wait_closed(10), "9th connection not closed after 503")
            finally:
                extra.close()
            # the held ones still work
            for i, c in enumerate(held):
                c.send(req_bytes("GET", "/v0/status"))
                check_eq(c.read_response().status, 200, f"held connection #{i + 1} after 503")
            held.pop().close()

            def new_conn_served():
                c = RawConn(self.port, timeout=5)
                try:
                    c.send(req_bytes("GET", "/v0/status"))
                    r = c.read_response_or_close()
                    return r is not None and r.status == 200
                finally:
                    c.close()
            poll(new_conn_served, 15, "a new connection to be served after one was closed", 0.1)
        finally:
            for c in held:
                c.close()


class IdleTimeout(Group):
    """--idle-timeout-ms 300: idle keep-alive connections are closed by the node."""

    def setup_group(self):
        self.n = self.track(start_single(extra=["--idle-timeout-ms", "300"]))
        self.port = self.n.port

    def test_idle_keepalive_connection_closed(self):
        c = RawConn(self.port)
        try:
            c.send(req_bytes("GET", "/v0/status"))
            check_eq(c.read_response().status, 200, "first request")
            check(c.wait_closed(10), "idle keep-alive connection still open 10 s after its last "
                                     "request (--idle-timeout-ms 300)")
        finally:
            c.close()
        check_eq(request(self.port, "GET", "/v0/status").status, 200, "node still serving")

    def test_silent_connection_closed(self):
        c = RawConn(self.port)
        try:
            check(c.wait_closed(10), "connection that never sent a byte still open after 10 s "
                                     "(--idle-timeout-ms 300)")
        finally:
            c.close()


class ManyIdleConnections(Group):
    """500 idle connections held open while a new client is served."""

    def setup_group(self):
        self.n = self.track(start_single(extra=["--max-connections", "4096"]))
        self.port = self.n.port

    def test_500_idle_connections(self):
        idle = []
        try:
            for i in range(500):
                idle.append(RawConn(self.port))
            check_eq(put(self.port, "many-idle", b"served").status, 201, "new client PUT")
            r = get(self.port, "many-idle")
            check_eq((r.status, r.body), (200, b"served"), "new client GET")
            # the idle ones were really accepted: a sample of them is served too
            for i in range(0, 500, 50):
                idle[i].send(req_bytes("GET", entity_path("many-idle")))
                r = idle[i].read_response()
                check_eq((r.status, r.body), (200, b"served"), f"idle connection #{i}")
            check_eq(request(self.port, "GET", "/v0/status").status, 200,
                     "new client while 500 connections are open")
        finally:
            for c in idle:
                c.close()


class PeerRequestsOverHttpInBinaryMode(Group):
    """In binary peer mode (the default) peers never use HTTP: a client that sends the peer
    headers is refused with 403 and writes nothing (issue: a forged version pinned a key)."""

    def setup_group(self):
        self.n = self.track(start_single(mode="binary"))
        self.port = self.n.port

    def test_forged_replica_write_refused(self):
        forged = {"X-KV-Internal": "1", "X-KV-Version": "18446744073709551000"}
        r = request(self.port, "PUT", entity_path("pinned"), body=b"poisoned", headers=forged)
        check_eq(r.status, 403, "forged replica PUT")
        check_eq(get(self.port, "pinned").status, 404, "nothing was written")
        r = request(self.port, "DELETE", entity_path("pinned"), headers=forged)
        check_eq(r.status, 403, "forged replica DELETE")
        r = request(self.port, "GET", entity_path("pinned"), headers={"X-KV-Internal": "1"})
        check_eq(r.status, 403, "forged replica GET")
        check_eq(put(self.port, "pinned", b"good").status, 201, "a client's PUT")
        check_eq(get(self.port, "pinned").body, b"good", "the client's value is read back")
        check_eq(request(self.port, "DELETE", entity_path("pinned")).status, 202, "client DELETE")
        check_eq(get(self.port, "pinned").status, 404, "the DELETE took effect")
