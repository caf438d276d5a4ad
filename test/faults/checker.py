"""The fault suite's history and its checks. Pure functions over records: no network, no clock.

An operation record (Op) is one client request: kind "put", "get" or "del", the key, for a put the
value it wrote (every put writes a value no other put ever writes), begin and end (the client's
monotonic clock just before sending and just after the answer), the HTTP status, or None when no
answer came (timeout, refused or reset connection), and for a get the value it returned.

Outcomes:
  - a write (put or del) is *acknowledged* when it answered 201 / 202;
  - a write that answered anything else or nothing may or may not have taken effect (a 504'd
    write may have reached one replica, or reach it later through a hint); it can still be what
    a read returns. Its version was taken by the coordinator before it answered, so a write that
    answered at time t has a version from before t. A write that got no answer at all may still be
    executed later (a SIGSTOPped coordinator resumes and runs it), so its end counts as infinite.

Version order. The store orders writes of a key by their versions (hybrid logical clock, wall
time first; last write wins). All namespaces share one clock. Write W2 is *certainly newer* than
W1 when W2 began after W1 ended (W1.end < W2.begin): W2's coordinator took its version after W1's
was taken. That is the only order the checker relies on; writes that overlap in time are
concurrent and either may win.

Rules (each flags only what is certain):
  stale read: a get R that answered 200 with the value of put W1 is stale if some acknowledged
    write W2 (put or del) of the key is certainly newer than W1 (W1.end < W2.begin) and was
    acknowledged before R began (W2.end < R.begin): R should have seen W2 or something newer.
    A get R that answered 404 is stale if some acknowledged put P ended before R began and no
    delete D could explain the 404, i.e. every delete of the key either ended before P began
    (certainly older than P) or began after R ended. Deletes that failed or got no answer may
    explain a 404 too (they may have taken effect).
    A 200 with a value no put ever wrote is flagged as well (a phantom).
  lost write: the final quorum read of each key, made after the last heal, once every request
    has ended, is checked by the same rule: it must return the last acknowledged write's value or
    something newer or concurrent, never something certainly older, nor 404 when an acknowledged
    put is not explained by a delete.
  divergence: after the final heal and a settle period, every node's local copy of the keys (its
    range stream, tombstones absent): a key is converged when no node holds it, or exactly `from`
    nodes hold it with one and the same value. (Replicas are the first `from` nodes of the key's
    rendezvous order; no node outside them ever stores the key, so `from` holders with equal
    values are exactly the replicas agreeing, and anything else is a disagreement.)
  availability: among requests that began 1 s or more after a heal and ended before the next
    fault began (no fault in force during the whole request), the fraction that answered 504.
"""
import bisect
import collections

INF = float("inf")


class Op:
    __slots__ = ("kind", "key", "value", "begin", "end", "status", "node", "worker")

    def __init__(self, kind, key, value, begin, end, status, node=-1, worker=-1):
        self.kind, self.key, self.value = kind, key, value
        self.begin, self.end, self.status = begin, end, status
        self.node, self.worker = node, worker

    def acked(self):
        return (self.kind == "put" and self.status == 201) or \
               (self.kind == "del" and self.status == 202)

    def effect_end(self):
        """Latest time at which this write's version may have been taken."""
        return self.end if self.status is not None else INF

    def __repr__(self):
        v = f" {self.value!r}" if self.value is not None else ""
        return (f"<{self.kind} {self.key!r}{v} [{self.begin:.4f}, {self.end:.4f}] "
                f"-> {self.status} via n{self.node}>")


class KeyIndex:
    """Per-key indexes over the writes, so each read is checked in O(log n)."""

    def __init__(self, writes):
        self.put_by_value = {w.value: w for w in writes if w.kind == "put"}
        acked = [w for w in writes if w.acked()]
        # Acked writes sorted by begin, with the suffix minimum of their ends: the earliest
        # acknowledgement among writes that began after a given time.
        acked.sort(key=lambda w: w.begin)
        self.acked_begins = [w.begin for w in acked]
        self.acked = acked
        self.suffix_min_end = [INF] * (len(acked) + 1)
        self.suffix_arg = [None] * (len(acked) + 1)
        for i in range(len(acked) - 1, -1, -1):
            if acked[i].end < self.suffix_min_end[i + 1]:
                self.suffix_min_end[i], self.suffix_arg[i] = acked[i].end, acked[i]
            else:
                self.suffix_min_end[i], self.suffix_arg[i] = \
                    self.suffix_min_end[i + 1], self.suffix_arg[i + 1]
        # Acked puts sorted by end, with the prefix maximum of their begins: among puts acked
        # before a time, the one that began last (the hardest for a delete to explain away).
        puts = sorted((w for w in writes if w.kind == "put" and w.acked()), key=lambda w: w.end)
        self.put_ends = [w.end for w in puts]
        self.prefix_max_put = []
        best = None
        for w in puts:
            if best is None or w.begin > best.begin:
                best = w
            self.prefix_max_put.append(best)
        self.deletes = [w for w in writes if w.kind == "del"]

    def newer_acked_before(self, after, before):
        """An acked write that began after `after` and was acknowledged before `before`."""
        i = bisect.bisect_right(self.acked_begins, after)
        if i < len(self.acked) and self.suffix_min_end[i] < before:
            return self.suffix_arg[i]
        return None

    def unexplained_put_before(self, read_begin, read_end):
        """An acked put that ended before read_begin and that no delete can explain away."""
        i = bisect.bisect_left(self.put_ends, read_begin)
        if i == 0:
            return None
        p = self.prefix_max_put[i - 1]
        for d in self.deletes:
            if d.effect_end() > p.begin and d.begin < read_end:
                return None
        return p


def check_read(index, r):
    """None if read r is consistent with the rules above, else a one-line reason."""
    if r.status == 200:
        w1 = index.put_by_value.get(r.value)
        if w1 is None:
            return f"returned a value no put wrote: {r!r}"
        w2 = index.newer_acked_before(w1.effect_end(), r.begin)
        if w2 is not None:
            return f"{r!r} returned the value of {w1!r}, superseded by {w2!r}"
    elif r.status == 404:
        p = index.unexplained_put_before(r.begin, r.end)
        if p is not None:
            return f"{r!r} answered 404 after {p!r}, with no delete that could explain it"
    return None


def index_history(ops):
    by_key = collections.defaultdict(list)
    for op in ops:
        if op.kind in ("put", "del"):
            by_key[op.key].append(op)
    return collections.defaultdict(lambda: KeyIndex([]),
                                   {k: KeyIndex(ws) for k, ws in by_key.items()})


def stale_reads(ops, indexes=None):
    """[(read, reason)] for every read of the history that the rules flag."""
    indexes = indexes if indexes is not None else index_history(ops)
    out = []
    for op in ops:
        if op.kind == "get":
            why = check_read(indexes[op.key], op)
            if why:
                out.append((op, why))
    return out


def lost_writes(ops, final_reads, indexes=None):
    """[(final read, reason)]: final quorum reads (Ops, begun after every request ended) that
    return something certainly older than an acknowledged write."""
    indexes = indexes if indexes is not None else index_history(ops)
    out = []
    for r in final_reads:
        why = check_read(indexes[r.key], r)
        if why:
            out.append((r, why))
    return out


def divergence(local, keys, replicas):
    """local: {node: {key: value}} (each node's own live copies). Returns (count, examples):
    keys held by some node but not by exactly `replicas` nodes with one value."""
    n = 0
    examples = []
    for k in keys:
        holders = {nd: kv[k] for nd, kv in local.items() if k in kv}
        if not holders:
            continue
        if len(holders) == replicas and len(set(holders.values())) == 1:
            continue
        n += 1
        if len(examples) < 5:
            examples.append((k, holders))
    return n, examples


def availability(ops, windows):
    """windows: [(start, stop)] with no fault in force (start = heal + 1 s). Returns
    (requests, answered 504, no answer) over requests that began and ended inside one window."""
    windows = sorted(windows)
    starts = [w[0] for w in windows]
    total = n504 = noans = 0
    for op in ops:
        i = bisect.bisect_right(starts, op.begin) - 1
        if i < 0:
            continue
        start, stop = windows[i]
        if not (start <= op.begin and op.end < stop):
            continue
        total += 1
        if op.status == 504:
            n504 += 1
        elif op.status is None:
            noans += 1
    return total, n504, noans
