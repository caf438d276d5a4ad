#!/usr/bin/env python3
"""Integration test runner: python3 test/integration/run.py [-k SUBSTRING]... [-v]

Discovers test/integration/test_*.py, runs every Group subclass (nodes started once per group)
and each of its test_* methods in definition order. One line per test (ok / FAIL: reason); the
last line is exactly `integration: N passed, M failed`; exit status 1 if any failed.
-k selects tests whose full name (module.Group.test) contains the substring (repeatable: any).
-v prints tracebacks and node log tails for failures, and group setup/teardown times.
"""
import argparse
import glob
import importlib
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test exceeded its time limit")


def discover():
    groups = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        modname = os.path.splitext(os.path.basename(path))[0]
        mod = importlib.import_module(modname)
        for name, cls in vars(mod).items():
            if not (isinstance(cls, type) and issubclass(cls, harness.Group)):
                continue
            if cls.__dict__.get("abstract", False) or cls.__module__ != modname:
                continue
            tests = []
            for klass in reversed(cls.__mro__):
                for attr in klass.__dict__:
                    if attr.startswith("test_") and callable(getattr(cls, attr)) \
                            and attr not in tests:
                        tests.append(attr)
            groups.append((f"{modname}.{name}", cls, tests))
    return groups


def reason_of(e):
    msg = str(e).replace("\n", " ")
    if len(msg) > 400:
        msg = msg[:400] + "..."
    return f"{type(e).__name__}: {msg}" if not isinstance(e, harness.TestFailure) else msg


def with_alarm(seconds, fn):
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", action="append", default=[], help="run tests whose name contains this")
    ap.add_argument("-v", action="store_true", help="verbose failures")
    args = ap.parse_args()
    os.chdir(harness.REPO)

    passed = failed = 0
    t_all = time.monotonic()

    def selected(full):
        return not args.k or any(k in full for k in args.k)

    try:
        groups = discover()
    except Exception as e:  # an import error in a test module
        print(f"FAIL discovery: {reason_of(e)}")
        traceback.print_exc()
        print("integration: 0 passed, 1 failed")
        return 1

    try:
        for gname, cls, tests in groups:
            chosen = [t for t in tests if selected(f"{gname}.{t}")]
            if not chosen:
                continue
            g = cls()
            t0 = time.monotonic()
            setup_err = None
            try:
                with_alarm(max(g.test_timeout, 120), g.setup_group)
            except Exception as e:  # TestTimeout included
                setup_err = e
                if args.v:
                    traceback.print_exc()
                    print(g.logs())
            if args.v:
                print(f"  [{gname}: setup {time.monotonic() - t0:.1f}s]")
            try:
                for t in chosen:
                    full = f"{gname}.{t}"
                    if setup_err is not None:
                        failed += 1
                        print(f"FAIL {full}: group setup failed: {reason_of(setup_err)}",
                              flush=True)
                        continue
                    t1 = time.monotonic()
                    try:
                        def run_one():
                            g.before_each()
                            getattr(g, t)()
                        with_alarm(g.test_timeout, run_one)
                        passed += 1
                        print(f"ok   {full} ({time.monotonic() - t1:.1f}s)", flush=True)
                    except Exception as e:
                        failed += 1
                        print(f"FAIL {full}: {reason_of(e)} ({time.monotonic() - t1:.1f}s)",
                              flush=True)
                        if args.v:
                            traceback.print_exc()
                            print(g.logs(), flush=True)
            finally:
                try:
                    with_alarm(60, g.teardown_group)
                except Exception as e:
                    print(f"  [{gname}: teardown error: {reason_of(e)}]")
                harness.cleanup_all()
    except KeyboardInterrupt:
        print("interrupted")
        failed += 1
    finally:
        harness.cleanup_all()

    if args.v:
        print(f"  [total {time.monotonic() - t_all:.1f}s]")
    print(f"integration: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
