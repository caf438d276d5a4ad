"""A peer that comes back is used at once (every peer mode; nodes named `localhost`).

Three nodes. One is stopped while clients keep sending writes that need it (ack=3, each answered
504 while it is down), then restarted on its data: from the moment it answers /v0/status, every
request through the other two that needs it succeeds, whatever the length of the outage. A refused
connection is a fast failure that never opens a circuit breaker and needs no back-off. A paused
peer (SIGSTOP) times out and its breaker opens; once resumed it is pinged back into use."""
import time

from harness import Group, check, check_eq, get, poll, put, start_cluster, status_json, url_of

REQUESTS_AFTER_READY = 40


class Rejoin(Group):
    abstract = True
    mode = "http"
    test_timeout = 180

    def setup_group(self):
        self.ns = self.track(start_cluster(3, self.mode, extra=["--request-timeout-ms", "1000"]))

    def _outage(self, seconds, tag):
        a, b, c = self.ns
        c.stop()
        # Writes that need the stopped node, for the whole outage (bounded by count and time).
        end = time.monotonic() + seconds
        refused = 0
        for i in range(10000):
            if time.monotonic() >= end:
                break
            refused += put(a.port, f"{tag}/down/{i}", b"x", ack=3, frm=3).status == 504
            time.sleep(0.02)
        check(refused >= 1, "writes that need the stopped node were answered 504 meanwhile")
        c.start()  # returns once it answers /v0/status
        failed = []
        for i in range(REQUESTS_AFTER_READY):
            coord = (a, b)[i % 2]
            key, value = f"{tag}/up/{i}", f"v{i}".encode()
            r = put(coord.port, key, value, ack=3, frm=3)
            if r.status != 201:
                failed.append(f"PUT {key} via {coord.port}: {r.status}")
            r = get(coord.port, key, ack=3, frm=3)
            if r.status != 200 or r.body != value:
                failed.append(f"GET {key} via {coord.port}: {r.status}")
        check_eq(failed, [], "requests that need the restarted node, sent once it was ready")

    def test_rejoin_after_1s_outage(self):
        self._outage(1.0, f"{self.mode}/1s")

    def test_rejoin_after_10s_outage(self):
        self._outage(10.0, f"{self.mode}/10s")

    def test_paused_peer_is_pinged_back_into_use(self):
        a, b, c = self.ns
        c.pause()
        try:
            # Requests to it time out: slow failures, which open its circuit breaker on node a.
            def opened():
                put(a.port, f"{self.mode}/paused/{time.monotonic()}", b"x", ack=2, frm=3)
                peers = {p["url"]: p for p in status_json(a.port)["peers"]}
                return peers[url_of(c.port)]["state"] != "closed"
            poll(opened, 60, "node a's circuit breaker for the paused node to open", 0.01)
        finally:
            c.resume()
        # Nothing is sent to it while open but pings, and a ping answered closes the breaker.
        def closed():
            peers = {p["url"]: p for p in status_json(a.port)["peers"]}
            return peers[url_of(c.port)]["state"] == "closed"
        poll(closed, 30, "node a's circuit breaker for the resumed node to close", 0.01)
        for i in range(REQUESTS_AFTER_READY):
            key = f"{self.mode}/resumed/{i}"
            check_eq(put(a.port, key, b"v", ack=3, frm=3).status, 201, f"PUT {key} 3/3")


class RejoinHttp(Rejoin):
    mode = "http"


class RejoinBinary(Rejoin):
    mode = "binary"


class RejoinHttpPipelined(Rejoin):
    mode = "http-pipelined"
