"""Client workers and the nemesis of the fault suite (threads in the root namespace).

A Worker loops until its stop time (bounded by count too): picks a random node and a random key
of a bounded set, and sends PUT (a value no other write ever uses), GET or DELETE with
ack/from = 2/3, on a keep-alive connection per node; it records every request as a checker.Op.
A connection is dropped after any error and whenever its node was restarted since it was opened
(so a restart does not show up as a broken keep-alive connection). Workers are closed-loop with a
2 s client timeout: while a node is SIGSTOPped, each worker soon waits on it, so little load
reaches the other nodes during a pause (the per-fault line shows it).

The Nemesis runs a schedule of faults, each held for fault_s seconds, then healed, then quiet_s
seconds with no fault: cut one node off from its peers, split the cluster in two halves, slow
one node's link, SIGKILL a node and restart it on its data dir, SIGSTOP a node and SIGCONT it.
It records (kind, target, start, heal) per fault; heal is when the fault stopped being in force
(for a kill: when the restarted node answers /v0/status).
"""
import http.client
import random
import threading
import time

from checker import Op
from netcluster import PORT

KEY_LEN = 6      # "k/0042"
VALUE_LEN = 16   # "w03-000000001234"
FAULT_KINDS = ("isolate", "split", "slow", "kill", "pause")


def key_name(i):
    return f"k/{i:04d}"


def entity_path(key, ack, frm):
    return f"/v0/entity?id={key.replace('/', '%2F')}&ack={ack}&from={frm}"


class Worker(threading.Thread):
    def __init__(self, wid, cluster, keys, stop_at, seed, timeout=2.0, max_ops=10 ** 6):
        super().__init__(name=f"worker-{wid}", daemon=True)
        self.wid, self.cluster, self.keys, self.stop_at = wid, cluster, keys, stop_at
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.max_ops = max_ops
        self.ops = []
        self.conns = {}  # node idx -> (generation, HTTPConnection)
        self.seq = 0
        self.error = None

    def conn(self, nd):
        gen_conn = self.conns.get(nd.idx)
        if gen_conn is not None and gen_conn[0] == nd.generation:
            return gen_conn[1]
        if gen_conn is not None:
            gen_conn[1].close()
        c = http.client.HTTPConnection(nd.ip, PORT, timeout=self.timeout)
        self.conns[nd.idx] = (nd.generation, c)
        return c

    def drop(self, idx):
        gen_conn = self.conns.pop(idx, None)
        if gen_conn is not None:
            gen_conn[1].close()

    def one(self):
        nd = self.rng.choice(self.cluster.nodes)
        key = self.rng.choice(self.keys)
        x = self.rng.random()
        value = None
        if x < 0.45:
            kind, method = "put", "PUT"
            self.seq += 1
            value = f"w{self.wid:02d}-{self.seq:012d}".encode()
            assert len(value) == VALUE_LEN
        elif x < 0.92:
            kind, method = "get", "GET"
        else:
            kind, method = "del", "DELETE"
        path = entity_path(key, 2, 3)
        c = self.conn(nd)
        status = body = None
        begin = time.monotonic()
        try:
            c.request(method, path, body=value if kind == "put" else None)
            r = c.getresponse()
            body = r.read()
            status = r.status
        except (OSError, http.client.HTTPException):
            self.drop(nd.idx)
        end = time.monotonic()
        got = body if (kind == "get" and status == 200) else value
        self.ops.append(Op(kind, key, got, begin, end, status, nd.idx, self.wid))

    def run(self):
        try:
            while time.monotonic() < self.stop_at and len(self.ops) < self.max_ops:
                self.one()
        except Exception as e:  # a bug in the worker: reported by the runner
            self.error = e
        finally:
            for _, c in self.conns.values():
                c.close()


class Nemesis(threading.Thread):
    def __init__(self, cluster, stop_at, fault_s, quiet_s, seed, kinds=FAULT_KINDS, log=print):
        super().__init__(name="nemesis", daemon=True)
        self.cluster, self.stop_at = cluster, stop_at
        self.fault_s, self.quiet_s = fault_s, quiet_s
        self.rng = random.Random(seed)
        self.kinds = list(kinds)
        self.log = log
        self.faults = []  # dicts: kind, target, start, heal
        self.error = None
        self.current = None  # a fault in force: heal() undoes it
        self.lock = threading.Lock()

    def wait_until(self, t):
        """The nemesis's timed waits: the fault durations are timed by nature. Returns early
        when the run ends."""
        while True:
            left = min(t, self.stop_at) - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    def inject(self, kind):
        n = self.cluster.n
        nodes = list(range(n))
        self.rng.shuffle(nodes)
        c = self.cluster
        if kind == "isolate":
            target = [nodes[0]]
            c.cut_off([target, nodes[1:]])
        elif kind == "split":
            half = nodes[:n // 2]
            target = sorted(half)
            c.cut_off([half, nodes[n // 2:]])
        elif kind == "slow":
            target = [nodes[0]]
            c.slow_link(nodes[0])
        elif kind == "kill":
            target = [nodes[0]]
            c.nodes[nodes[0]].sigkill()
        elif kind == "pause":
            target = [nodes[0]]
            c.nodes[nodes[0]].pause()
        else:
            raise ValueError(kind)
        return target

    def heal(self):
        """Undoes the fault in force, if any; returns when it no longer is."""
        with self.lock:
            f = self.current
            if f is None:
                return
            c = self.cluster
            kind = f["kind"]
            if kind in ("isolate", "split"):
                c.heal_cuts()
            elif kind == "slow":
                c.heal_slow()
            elif kind == "kill":
                nd = c.nodes[f["target"][0]]
                nd.start()
                nd.wait_ready()
            elif kind == "pause":
                c.nodes[f["target"][0]].resume()
            f["heal"] = time.monotonic()
            self.current = None
            self.log(f"  heal   {kind:7} n{f['target']} at {f['heal'] - self.t0:6.2f}s")

    def run(self):
        self.t0 = time.monotonic()
        try:
            # The first fault after one quiet period, so the run starts with a measured window.
            self.wait_until(time.monotonic() + self.quiet_s)
            i = 0
            while time.monotonic() + self.fault_s < self.stop_at and i < 1000:
                kind = self.kinds[i % len(self.kinds)]
                i += 1
                start = time.monotonic()
                with self.lock:
                    target = self.inject(kind)
                    self.current = {"kind": kind, "target": target, "start": start, "heal": None}
                    self.faults.append(self.current)
                self.log(f"  fault  {kind:7} n{target} at {start - self.t0:6.2f}s")
                self.wait_until(start + self.fault_s)
                self.heal()
                self.wait_until(time.monotonic() + self.quiet_s)
        except Exception as e:  # reported by the runner
            self.error = e

    def windows_after_heals(self, run_end, after_heal=1.0):
        """[(start, stop)]: from 1 s after each heal to the next fault's start (or the end of
        the workload). Each fault's own window is kept in its "window" (None if empty)."""
        out = []
        for i, f in enumerate(self.faults):
            f["window"] = None
            if f["heal"] is None:
                continue
            stop = self.faults[i + 1]["start"] if i + 1 < len(self.faults) else run_end
            if stop > f["heal"] + after_heal:
                f["window"] = (f["heal"] + after_heal, stop)
                out.append(f["window"])
        return out
