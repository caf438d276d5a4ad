"""Restart (SIGTERM/SIGINT then start: data kept) and crash (SIGKILL then start: every
acknowledged write kept). Each test starts its own node with a fresh data dir."""
import http.client
import random
import signal
import threading

from harness import (Group, RawConn, TestFailure, check, check_eq, delete, entities, entity_path,
                     get, poll, put, put_many, rand_bytes, range_body, req_bytes, short,
                     start_single)


def write_mixed(port, prefix):
    """Writes, overwrites and deletes under prefix; returns the expected {key: value|None}."""
    want = {}
    for i in range(60):
        k = f"{prefix}/{i:03d}"
        v = f"v{i}-".encode() * (i % 7 + 1)
        check_eq(put(port, k, v).status, 201, f"PUT {k}")
        want[k] = v
    for i in range(0, 60, 5):
        k = f"{prefix}/{i:03d}"
        v = b"overwritten-" + str(i).encode()
        check_eq(put(port, k, v).status, 201, f"overwrite {k}")
        want[k] = v
    for i in range(1, 60, 7):
        k = f"{prefix}/{i:03d}"
        check_eq(delete(port, k).status, 202, f"DELETE {k}")
        want[k] = None
    k = f"{prefix}/recreated"
    put(port, k, b"old")
    delete(port, k)
    check_eq(put(port, k, b"new").status, 201, "re-create")
    want[k] = b"new"
    want[f"{prefix}/empty"] = b""
    check_eq(put(port, f"{prefix}/empty", b"").status, 201, "PUT empty value")
    v = bytes(range(256)) * 3
    want[f"{prefix}/binary"] = v
    check_eq(put(port, f"{prefix}/binary", v).status, 201, "PUT binary value")
    v = rand_bytes(1 << 20, 1)
    want[f"{prefix}/onemib"] = v
    check_eq(put(port, f"{prefix}/onemib", v).status, 201, "PUT 1 MiB value")
    return want


def verify(port, want, when):
    for k, v in sorted(want.items()):
        r = get(port, k)
        if v is None:
            check_eq(r.status, 404, f"{when}: deleted key {k}")
        else:
            check_eq(r.status, 200, f"{when}: status of {k}")
            check(r.body == v, f"{when}: value of {k}: expected {short(v)}, got {short(r.body)}")
    live = sorted((k, v) for k, v in want.items() if v is not None)
    prefix = min(want).split("/")[0] + "/"
    r = entities(port, prefix, prefix[:-1] + "0")
    check_eq(r.status, 200, f"{when}: range status")
    check(r.body == range_body(live), f"{when}: range over {prefix} differs "
                                      f"({len(r.body)} bytes vs {len(range_body(live))} expected)")


class Persistence(Group):
    test_timeout = 180

    def test_sigterm_restart_keeps_data(self):
        n = self.track(start_single())
        want = write_mixed(n.port, "term")
        n.stop(signal.SIGTERM)  # asserts exit status 0
        n.start()
        verify(n.port, want, "after SIGTERM restart")
        # and a second generation on top of the recovered state
        check_eq(put(n.port, "term/gen2", b"second").status, 201, "PUT after restart")
        want["term/gen2"] = b"second"
        check_eq(delete(n.port, "term/000").status, 202, "DELETE after restart")
        want["term/000"] = None
        n.stop(signal.SIGTERM)
        n.start()
        verify(n.port, want, "after second SIGTERM restart")
        n.stop()

    def test_sigint_exits_0_and_keeps_data(self):
        n = self.track(start_single())
        check_eq(put(n.port, "int/a", b"kept").status, 201, "PUT")
        n.stop(signal.SIGINT)
        n.start()
        check_eq(get(n.port, "int/a").body, b"kept", "value after SIGINT restart")
        n.stop()

    def test_sigterm_with_open_keepalive_connections(self):
        n = self.track(start_single())
        conns = []
        try:
            for i in range(5):
                c = RawConn(n.port)
                conns.append(c)
                c.send(req_bytes("PUT", entity_path(f"ka-term/{i}"), body=b"x%d" % i))
                check_eq(c.read_response().status, 201, "PUT on held connection")
            silent = RawConn(n.port)  # connected, never sent anything
            conns.append(silent)
            n.stop(signal.SIGTERM)  # must still exit 0, not wait for the clients
        finally:
            for c in conns:
                c.close()
        n.start()
        for i in range(5):
            check_eq(get(n.port, f"ka-term/{i}").body, b"x%d" % i, f"ka-term/{i} after restart")
        n.stop()

    def test_sigkill_keeps_acknowledged_writes(self):
        n = self.track(start_single())
        want = write_mixed(n.port, "kill")
        n.kill()
        check(n.exit_codes[-1] == -signal.SIGKILL, f"exit {n.exit_codes[-1]}")
        n.start()
        verify(n.port, want, "after SIGKILL restart")
        n.stop()

    def test_sigkill_during_concurrent_writes(self):
        """Four writers own disjoint keys; the node is SIGKILLed mid-stream. After restart every
        key holds its last acknowledged state, or the state of the one write that was in flight
        when the node died (it may or may not have been applied)."""
        n = self.track(start_single())
        stop = threading.Event()
        acked = [0]
        lock = threading.Lock()
        states = [dict() for _ in range(4)]  # key -> (acked state, in-flight state or "none")

        def writer(t):
            conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
            st = states[t]
            i = 0
            try:
                while not stop.is_set() and i < 20000:
                    if i % 4 == 3:  # delete a key written earlier
                        k = f"crash/{t}/{i - 2:05d}"
                        newv, method, body = None, "DELETE", None
                    else:
                        k = f"crash/{t}/{i:05d}"
                        newv = f"{t}:{i}:".encode() * (1 + i % 13)
                        method, body = "PUT", newv
                    prev = st.get(k, ("absent", "none"))[0]
                    st[k] = (prev, newv)  # in flight
                    conn.request(method, entity_path(k), body=body)
                    r = conn.getresponse()
                    r.read()
                    want = 202 if method == "DELETE" else 201
                    if r.status != want:
                        raise TestFailure(f"{method} {k}: status {r.status}")
                    st[k] = (newv, "none")
                    with lock:
                        acked[0] += 1
                    i += 1
            except (OSError, http.client.HTTPException):
                if not stop.is_set():
                    raise
            finally:
                conn.close()

        threads = []
        errors = []

        def run(t):
            try:
                writer(t)
            except BaseException as e:  # noqa
                errors.append(e)

        for t in range(4):
            th = threading.Thread(target=run, args=(t,), daemon=True)
            th.start()
            threads.append(th)
        try:
            poll(lambda: acked[0] >= 400 or errors, 60, "400 acknowledged writes")
            check(not errors, f"writer failed before the crash: {errors[:1]}")
        finally:
            stop.set()
            n.kill()
            for th in threads:
                th.join(30)
        check(not any(th.is_alive() for th in threads), "writer threads did not stop")
        n.start()
        checked = 0
        for t in range(4):
            for k, (acked_state, inflight) in sorted(states[t].items()):
                r = get(n.port, k)
                got = r.body if r.status == 200 else None
                check(r.status in (200, 404), f"GET {k}: status {r.status}")
                allowed = [None if acked_state == "absent" else acked_state]
                if inflight != "none":
                    allowed.append(inflight)
                check(got in allowed, f"after crash, {k} = {short(got)}; acknowledged state "
                                      f"{short(acked_state)}, in flight {short(inflight)}")
                checked += 1
        check(acked[0] >= 400 and checked > 0, f"{acked[0]} writes acknowledged, {checked} keys "
                                                "checked")
        n.stop()

    def test_fsync_always_sigkill(self):
        n = self.track(start_single(extra=["--fsync", "always"]))
        want = {f"fsa/{i}": f"val{i}".encode() for i in range(30)}
        for k, v in want.items():
            check_eq(put(n.port, k, v).status, 201, f"PUT {k}")
        n.kill()
        n.start()
        verify(n.port, want, "fsync=always after SIGKILL")
        n.stop()

    def test_small_memtable_flushes_survive_restart(self):
        """--memtable-bytes 65536 forces many flushes to segments; data and order survive
        SIGTERM and SIGKILL restarts."""
        n = self.track(start_single(extra=["--memtable-bytes", "65536"]))
        items = {f"mt/{i:05d}": rand_bytes(200, i) for i in range(2000)}
        keys = list(items)
        order = keys[:]
        random.Random(3).shuffle(order)
        put_many(n.port, [(k, items[k]) for k in order])
        over = [(k, b"over-" + k.encode()) for k in keys[::5]]
        put_many(n.port, over)
        items.update(dict(over))
        for k in keys[3::7]:
            check_eq(delete(n.port, k).status, 202, f"DELETE {k}")
            items[k] = None

        def check_all(when):
            live = [(k, v) for k, v in sorted(items.items()) if v is not None]
            r = entities(n.port, "mt/", "mt0")
            check_eq(r.status, 200, f"{when}: range status")
            check(r.body == range_body(live), f"{when}: range differs ({len(r.body)} bytes, "
                                              f"expected {len(range_body(live))})")
            for k in keys[::97] + keys[3::7][:10]:
                r = get(n.port, k)
                if items[k] is None:
                    check_eq(r.status, 404, f"{when}: deleted {k}")
                else:
                    check_eq(r.body, items[k], f"{when}: {k}")
        check_all("before restart")
        n.stop()
        n.start()
        check_all("after SIGTERM restart")
        n.kill()
        n.start()
        check_all("after SIGKILL restart")
        n.stop()
