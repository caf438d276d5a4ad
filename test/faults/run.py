#!/usr/bin/env python3
"""Fault suite: ./node clusters in network namespaces under a nemesis, with a history checker.

  python3 test/faults/run.py [--modes binary,http,http-pipelined] [--duration 60] [options]

Per peer mode: N nodes (default 5), each in its own namespace on a bridge (netcluster.py); client
workers in the root namespace write unique values, read and delete keys of a bounded set through
random nodes with ack=2&from=3 and log every request (workload.py); the nemesis cuts a node off,
splits the cluster in halves, slows a node's link (tbf), SIGKILLs and restarts a node, SIGSTOPs
and resumes a node, one fault at a time with quiet periods between. At the end everything is
healed, the cluster must accept writes to every node again, each node's local copies are compared
(divergence), and every key is read once more with a quorum. The rules of the checks are written
out in checker.py.

Printed per mode: requests, ok, 504, no answer, lost, stale, crashed, divergence, availability
after heals. Checks, each counted as passed or failed:
  lost = 0            always asserted
  crashed = 0         always asserted (a node that exited without the nemesis killing it, or
                      did not exit 0 on the final SIGTERM)
  stale = 0           asserted unless --no-assert-stale
  availability        504s <= 0.1% of the requests that began 1 s or more after a heal and ended
                      before the next fault; asserted unless --no-assert-availability
  divergence = 0      asserted only with --assert-divergence: the store has no anti-entropy or
                      read repair yet (a separate issue), so replicas that missed writes during a
                      fault stay behind; the figure is printed either way.
The history (every request with its begin and end times and result, the final reads, the
faults) is kept in memory for the checks; --history FILE also writes it out as JSON lines.
The last line is "faults: N passed, M failed". Without root or working `ip netns` it prints why
it skipped and "faults: 0 passed, 0 failed".

Everything it creates (namespaces kvf<pid>-*, bridge and veths kvf<pid>*, processes, temp dir,
nft rules and qdiscs, which live in the namespaces or on our veths) is removed at exit, on
failure and on SIGTERM/SIGINT; leftovers of earlier runs whose process is gone are removed first.
"""
import argparse
import json
import os
import random
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import netcluster  # noqa: E402
import workload  # noqa: E402
from netcluster import SetupError, http_request  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
AVAILABILITY_TARGET = 0.001  # the bound on 504s after heals
HEALTH_TIMEOUT = 60.0


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(f"got {signal.Signals(signum).name}")


def log(msg):
    print(msg, flush=True)


def wait_healthy(cluster, timeout=HEALTH_TIMEOUT, streak=5):
    """Polls (bounded) until through every node `streak` writes in a row to all n replicas
    succeed: the nodes have reconnected to each other. Returns seconds taken."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    n = cluster.n
    for nd in cluster.nodes:
        good = 0
        last = None
        while good < streak:
            if time.monotonic() > deadline:
                raise SetupError(f"cluster not healthy after {timeout:.0f}s: writes {n}/{n} "
                                 f"through node {nd.idx} still fail ({last})")
            try:
                st, body = http_request(nd.ip, "PUT",
                                        f"/v0/entity?id=__probe__{nd.idx}&ack={n}&from={n}",
                                        body=b"p", timeout=5)
                last = st
            except OSError as e:
                st, last = None, e
            if st == 201:
                good += 1
            else:
                good = 0
                time.sleep(0.05)
    return time.monotonic() - t0


def local_copies(cluster, nkeys):
    """{node idx: {key: value}}: each node's own live copies of the suite's keys."""
    rec = workload.KEY_LEN + 1 + workload.VALUE_LEN
    out = {}
    for nd in cluster.nodes:
        st, body = http_request(nd.ip, "GET", "/v0/entities?start=k%2F&end=k0", timeout=30)
        if st != 200:
            raise SetupError(f"range stream of node {nd.idx} answered {st}")
        if len(body) % rec:
            raise SetupError(f"range stream of node {nd.idx}: {len(body)} bytes is not a "
                             f"multiple of the {rec}-byte record")
        kv = {}
        for i in range(0, len(body), rec):
            r = body[i:i + rec]
            if r[workload.KEY_LEN:workload.KEY_LEN + 1] != b"\n" or not r.startswith(b"k/"):
                raise SetupError(f"range stream of node {nd.idx}: bad record {r!r}")
            kv[r[:workload.KEY_LEN].decode()] = r[workload.KEY_LEN + 1:]
        out[nd.idx] = kv
    return out


def final_reads(cluster, keys, rng, attempts=10):
    """One quorum read per key (ack=2&from=3) through a random node, retried (bounded) until it
    answers 200 or 404. Returns (ops, keys that never answered)."""
    ops, unread = [], []
    for k in keys:
        for _ in range(attempts):
            nd = rng.choice(cluster.nodes)
            begin = time.monotonic()
            try:
                st, body = http_request(nd.ip, "GET", workload.entity_path(k, 2, 3), timeout=5)
            except OSError:
                st, body = None, None
            end = time.monotonic()
            if st in (200, 404):
                ops.append(checker.Op("get", k, body if st == 200 else None, begin, end, st,
                                      nd.idx))
                break
        else:
            unread.append(k)
    return ops, unread


def fault_summary(f, ops, t0, window):
    """One line on the requests that began while fault f was in force: how many, 504s, no
    answer, and the median time of those through its target node(s) against the others; then
    the 504s in the window after its heal (the availability figure, for this fault alone)."""
    end = f["heal"] if f["heal"] is not None else float("inf")
    during = [op for op in ops if f["start"] <= op.begin < end]
    n504 = sum(1 for op in during if op.status == 504)
    none = sum(1 for op in during if op.status is None)

    def median_ms(xs):
        xs = sorted(op.end - op.begin for op in xs)
        return f"{1000 * xs[len(xs) // 2]:.1f} ms" if xs else "-"
    via = [op for op in during if op.node in f["target"]]
    rest = [op for op in during if op.node not in f["target"]]
    return (f"{f['kind']:7} n{f['target']} {f['start'] - t0:5.1f}s-{end - t0:5.1f}s: "
            f"{len(during)} requests, {n504} x 504, {none} no answer; median via target "
            f"{median_ms(via)}, via others {median_ms(rest)}; after heal " +
            ("(no window)" if window is None else
             "{1} of {0} answered 504".format(*checker.availability(ops, [window]))))


def write_history(path, mode, ops, finals, faults, t0):
    """Appends the run's history to path as JSON lines: every request (times in seconds from the
    start of the workload, status null when no answer came), the final reads and the faults."""
    def val(v):
        return v.decode("latin-1") if isinstance(v, bytes) else v
    with open(path, "a") as f:
        for what, xs in (("op", ops), ("final", finals)):
            for op in sorted(xs, key=lambda o: o.begin):
                f.write(json.dumps({"mode": mode, "type": what, "worker": op.worker,
                                    "node": op.node, "kind": op.kind, "key": op.key,
                                    "value": val(op.value), "begin": round(op.begin - t0, 6),
                                    "end": round(op.end - t0, 6), "status": op.status}) + "\n")
        for flt in faults:
            f.write(json.dumps({"mode": mode, "type": "fault", "kind": flt["kind"],
                                "target": flt["target"], "start": round(flt["start"] - t0, 6),
                                "heal": None if flt["heal"] is None else
                                round(flt["heal"] - t0, 6)}) + "\n")


def stale_gap(r, idx):
    """How close the two writes that make read r stale were, in seconds: for a value, from the
    answer to the put it returned to the begin of the earliest acknowledged write that
    superseded it; for a 404, from the answer to the last delete before the unexplained put to
    the begin of that put (None for a phantom or a 404 with no delete at all). Under 1 ms, the
    two versions can share their millisecond."""
    ki = idx[r.key]
    if r.status == 404:
        p = ki.unexplained_put_before(r.begin, r.end)
        older = [d.end for d in ki.deletes if d.effect_end() <= p.begin] if p else []
        return p.begin - max(older) if older else None
    w1 = ki.put_by_value.get(r.value)
    if w1 is None:
        return None
    later = [w for w in ki.acked if w.begin > w1.end and w.end < r.begin]
    return min(w.begin for w in later) - w1.end if later else None


def run_mode(mode, args):
    """Runs one peer mode; returns a list of (check name, ok, asserted, detail)."""
    log(f"== mode {mode}: {args.nodes} nodes, {args.workers} workers, {args.keys} keys, "
        f"{args.duration:.0f}s")
    cluster = netcluster.NetCluster(args.nodes, mode, args.node, log=log)
    rng = random.Random(args.seed)
    checks = []
    try:
        cluster.setup()
        cluster.start_all()
        took = wait_healthy(cluster)
        log(f"  cluster up: {', '.join(nd.url for nd in cluster.nodes)} (healthy in {took:.1f}s)")

        keys = [workload.key_name(i) for i in range(args.keys)]
        t0 = time.monotonic()
        stop_at = t0 + args.duration
        workers = [workload.Worker(w, cluster, keys, stop_at, rng.randrange(1 << 30))
                   for w in range(args.workers)]
        nemesis = workload.Nemesis(cluster, stop_at, args.fault_seconds, args.quiet_seconds,
                                   rng.randrange(1 << 30), kinds=args.faults.split(","), log=log)
        nemesis.t0 = t0
        for t in workers + [nemesis]:
            t.start()
        for t in workers + [nemesis]:
            t.join(timeout=max(1.0, stop_at - time.monotonic()) + 60)
            if t.is_alive():
                raise SetupError(f"{t.name} still running 60 s after the end of the workload")
        for t in workers + [nemesis]:
            if t.error is not None:
                raise SetupError(f"{t.name} failed: {t.error!r}")
        workload_end = time.monotonic()

        # Final heal: whatever fault is in force, every link and every process.
        nemesis.heal()
        cluster.heal_cuts()
        cluster.heal_slow()
        for nd in cluster.nodes:
            nd.resume()
            if nd.reap():  # killed by the nemesis and not restarted yet, or crashed
                nd.start()
                nd.wait_ready()
        took = wait_healthy(cluster)
        log(f"  healed; every node writes to all {args.nodes} again after {took:.1f}s")

        # Divergence: poll the nodes' local copies until they agree or the settle time is over.
        settle_start = time.monotonic()
        settle_end = settle_start + args.settle_seconds
        div_first = None
        while True:
            div, examples = checker.divergence(local_copies(cluster, args.keys), keys, 3)
            div_first = div if div_first is None else div_first
            if div == 0 or time.monotonic() >= settle_end:
                break
            time.sleep(0.5)
        log(f"  divergence: {div_first} keys once healthy, {div} after "
            f"{time.monotonic() - settle_start:.1f}s (settle at most {args.settle_seconds:.0f}s)")

        copies = local_copies(cluster, args.keys)
        finals, unread = final_reads(cluster, keys, rng)
        live = sum(1 for r in finals if r.status == 200)
        log(f"  local copies per node: {[len(copies[nd.idx]) for nd in cluster.nodes]} "
            f"(sum {sum(len(c) for c in copies.values())}); keys live by quorum read: {live} "
            f"(3 copies each when converged)")

        # Every exit: each must be the nemesis's SIGKILL, or 0 after the final SIGTERM.
        cluster.stop_all()
        crashes = [c for nd in cluster.nodes for c in nd.crashes()]
        for nd in cluster.nodes:
            if nd.crashes():
                log(f"    node {nd.idx} log: {nd.log_tail(5)}")

        ops = [op for w in workers for op in w.ops]
        if args.history:
            write_history(args.history, mode, ops, finals, nemesis.faults, t0)
        idx = checker.index_history(ops)
        stale = checker.stale_reads(ops, idx)
        lost = checker.lost_writes(ops, finals, idx)
        windows = nemesis.windows_after_heals(workload_end)
        av_total, av_504, av_noans = checker.availability(ops, windows)
        frac = av_504 / av_total if av_total else 0.0

        n_ok = sum(1 for op in ops if op.status in (200, 201, 202, 404))
        n_504 = sum(1 for op in ops if op.status == 504)
        n_none = sum(1 for op in ops if op.status is None)
        n_other = len(ops) - n_ok - n_504 - n_none
        kinds = ",".join(f["kind"] for f in nemesis.faults)
        log(f"  faults: {len(nemesis.faults)} ({kinds})")
        log(f"  {mode}: requests {len(ops)}, ok {n_ok}, 504 {n_504}, no answer {n_none}, "
            f"other {n_other}; lost {len(lost)}, stale {len(stale)}, crashed {len(crashes)}, "
            f"divergence {div}/{args.keys} keys; after heals: {av_504} of {av_total} answered "
            f"504 ({100 * frac:.3f}%), {av_noans} no answer; final reads unanswered {len(unread)}")
        for f in nemesis.faults:
            log("    " + fault_summary(f, ops, t0, f["window"]))
        for op, why in lost[:5]:
            log(f"    lost: {why}")
        if stale:
            gaps = [stale_gap(op, idx) for op, _ in stale]
            under = sum(1 for g in gaps if g is not None and g < 0.001)
            log(f"    stale reads where the superseding write began < 1 ms after the superseded "
                f"one was answered (versions may share a millisecond): {under} of {len(stale)}")
        for op, why in stale[:5]:
            log(f"    stale: {why}")
        for c in crashes[:5]:
            log(f"    crash: {c}")
        for k, holders in examples[:3]:
            log(f"    divergent: {k}: {holders}")
        checks += [
            ("lost=0", not lost and not unread, True,
             f"{len(lost)} lost, {len(unread)} keys unreadable at the end"),
            ("crashed=0", not crashes, True, f"{len(crashes)} crashed"),
            ("stale=0", not stale, args.assert_stale, f"{len(stale)} stale"),
            (f"504 after heals <= {100 * AVAILABILITY_TARGET:.1f}%",
             frac <= AVAILABILITY_TARGET, args.assert_availability,
             f"{av_504}/{av_total} = {100 * frac:.3f}%"),
            ("divergence=0", div == 0, args.assert_divergence, f"{div} keys"),
        ]
    except (SetupError, OSError) as e:
        log(f"  error: {e}")
        if args.verbose:
            traceback.print_exc()
        for nd in cluster.nodes:
            log(f"    node {nd.idx} log: {nd.log_tail(5)}")
        checks.append(("run completed", False, True, str(e)))
    finally:
        old = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)]
        cluster.cleanup()
        for s, h in zip((signal.SIGTERM, signal.SIGINT), old):
            signal.signal(s, h)
    return checks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="binary,http,http-pipelined")
    ap.add_argument("--duration", type=float, default=60.0, help="workload seconds per mode")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--faults", default=",".join(workload.FAULT_KINDS),
                    help="the nemesis's faults, injected in this order, round robin")
    ap.add_argument("--fault-seconds", type=float, default=3.0)
    ap.add_argument("--quiet-seconds", type=float, default=4.0,
                    help="no fault for this long after each heal (availability is measured "
                         "from 1 s after the heal)")
    ap.add_argument("--settle-seconds", type=float, default=10.0,
                    help="after the final heal, wait at most this long for replicas to agree")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--node", default=os.path.join(REPO, "node"))
    ap.add_argument("--no-assert-stale", dest="assert_stale", action="store_false")
    ap.add_argument("--no-assert-availability", dest="assert_availability",
                    action="store_false")
    ap.add_argument("--assert-divergence", action="store_true",
                    help="fail on divergence after healing (off: waits for the repair issue)")
    ap.add_argument("--history", metavar="FILE",
                    help="append every request, final read and fault as JSON lines to FILE")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.nodes < 3:
        ap.error("--nodes must be at least 3 (requests use ack=2&from=3)")
    bad = set(args.faults.split(",")) - set(workload.FAULT_KINDS)
    if bad:
        ap.error(f"unknown faults {sorted(bad)}; known: {','.join(workload.FAULT_KINDS)}")
    if args.seed is None:
        args.seed = random.randrange(1 << 30)

    ok, why = netcluster.netns_usable()
    if not ok:
        log(f"faults: SKIPPED: {why} (the fault suite needs root and network namespaces)")
        log("faults: 0 passed, 0 failed")
        return 0
    if not os.path.exists(args.node):
        log(f"faults: {args.node} does not exist (build it with `make node`)")
        log("faults: 0 passed, 1 failed")
        return 1

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log(f"faults: seed {args.seed} (rerun with --seed {args.seed})")
    netcluster.cleanup_leftovers(log)
    passed = failed = 0
    try:
        for mode in args.modes.split(","):
            for name, good, asserted, detail in run_mode(mode, args):
                if not asserted:
                    log(f"  not asserted {mode}: {name} ({detail})")
                elif good:
                    passed += 1
                    log(f"ok   {mode}: {name} ({detail})")
                else:
                    failed += 1
                    log(f"FAIL {mode}: {name} ({detail})")
    except Interrupted as e:
        log(f"faults: interrupted ({e}); cleaned up")
        failed += 1
    log(f"faults: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
