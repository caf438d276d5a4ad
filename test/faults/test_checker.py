#!/usr/bin/env python3
"""The fault suite checker's rules on hand-made histories (no network, no root needed).
Prints one line per case and ends with "checker: N passed, M failed"."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checker import Op, availability, divergence, lost_writes, stale_reads  # noqa: E402


def put(v, b, e, st=201, key="k"):
    return Op("put", key, v, b, e, st)


def dele(b, e, st=202, key="k"):
    return Op("del", key, None, b, e, st)


def get(v, b, e, st=200, key="k"):
    return Op("get", key, v, b, e, st)


def n_stale(*ops):
    return len(stale_reads(list(ops)))


CASES = [
    # (name, computed, expected)
    ("read of a value superseded by a write acked before the read began is stale",
     lambda: n_stale(put(b"a", 0, 1), put(b"b", 2, 3), get(b"a", 4, 5)), 1),
    ("read that began before the newer write was acked is not stale",
     lambda: n_stale(put(b"a", 0, 1), put(b"b", 2, 3), get(b"a", 2.5, 5)), 0),
    ("writes overlapping in time are concurrent: either may win",
     lambda: n_stale(put(b"a", 0, 2), put(b"b", 1, 3), get(b"a", 4, 5)), 0),
    ("a superseding write that failed (504) proves nothing",
     lambda: n_stale(put(b"a", 0, 1), put(b"b", 2, 3, 504), get(b"a", 4, 5)), 0),
    ("an old value read after an acked delete is stale",
     lambda: n_stale(put(b"a", 0, 1), dele(2, 3), get(b"a", 4, 5)), 1),
    ("a write with no answer may take effect any time later: never superseded for sure",
     lambda: n_stale(put(b"a", 0, 1, None), put(b"b", 2, 3), get(b"a", 4, 5)), 0),
    ("a value no put wrote is flagged",
     lambda: n_stale(put(b"a", 0, 1), get(b"zz", 4, 5)), 1),
    ("404 after an acked put with no delete is stale",
     lambda: n_stale(put(b"a", 0, 1), get(None, 2, 3, 404)), 1),
    ("404 explained by a failed delete that overlaps the put",
     lambda: n_stale(dele(0.5, 1.5, 504), put(b"a", 1, 2), get(None, 3, 4, 404)), 0),
    ("404 explained by a delete acked after the put",
     lambda: n_stale(put(b"a", 0, 1), dele(2, 3), get(None, 4, 5, 404)), 0),
    ("404 not explained by a delete certainly older than the put",
     lambda: n_stale(dele(0, 0.5), put(b"a", 1, 2), get(None, 3, 4, 404)), 1),
    ("404 not explained by a delete that began after the read ended",
     lambda: n_stale(put(b"a", 0, 1), get(None, 2, 3, 404), dele(4, 5)), 1),
    ("404 before any acked put is fine",
     lambda: n_stale(put(b"a", 0, 1, 504), get(None, 2, 3, 404)), 0),
    ("reads of other keys do not interfere",
     lambda: n_stale(put(b"a", 0, 1), put(b"b", 2, 3, key="j"), get(b"a", 4, 5)), 0),
    ("final read returning an older acked value is a lost write",
     lambda: len(lost_writes([put(b"a", 0, 1), put(b"b", 2, 3)], [get(b"a", 10, 11)])), 1),
    ("final read returning the last or a concurrent value is no loss",
     lambda: len(lost_writes([put(b"a", 0, 2), put(b"b", 1, 3)], [get(b"a", 10, 11)])), 0),
    ("final 404 after an acked put and no delete is a lost write",
     lambda: len(lost_writes([put(b"a", 0, 1)], [get(None, 10, 11, 404)])), 1),
    ("divergence: 3 equal copies or none are converged",
     lambda: divergence({0: {"x": b"1"}, 1: {"x": b"1"}, 2: {"x": b"1"}, 3: {}}, ["x", "y"],
                        3)[0], 0),
    ("divergence: a missing copy and a differing copy count",
     lambda: divergence({0: {"x": b"1", "y": b"2"}, 1: {"x": b"1", "y": b"3"},
                         2: {"y": b"2"}}, ["x", "y"], 3)[0], 2),
    ("availability: only requests wholly inside a window count",
     lambda: availability([get(b"a", 0.5, 0.6, 504), get(b"a", 1.5, 1.6, 504),
                           get(b"a", 1.7, 1.8, 200), get(b"a", 2.9, 3.1, 504)],
                          [(1.0, 3.0)])[:2], (2, 1)),
]


def main():
    passed = failed = 0
    for name, fn, want in CASES:
        got = fn()
        if got == want:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: expected {want}, got {got}")
    print(f"checker: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
