#!/usr/bin/env python3
"""Checks the Makefile's DEPS_<module> against the includes: reads lines "module: dep dep ..."
on stdin (what `make check-deps` prints) and, for each module, compares the archives listed with
the module itself plus every module (and llhttp) that src/<module> or test/unit/<module> includes,
directly or through the modules it includes. Prints the differences; exit status 1 if any."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def direct_deps(module, modules):
    deps = set()
    for top in (ROOT / "src" / module, ROOT / "test" / "unit" / module):
        for f in sorted(top.glob("*.[ch]*")) if top.is_dir() else []:
            for inc in INCLUDE.findall(f.read_text(errors="replace")):
                head = inc.split("/")[0]
                if "/" in inc and head in modules and head != module:
                    deps.add(head)
                elif inc == "llhttp.h":
                    deps.add("llhttp")
    return deps


def main():
    declared = {}
    for line in sys.stdin:
        if ":" in line:
            name, deps = line.split(":", 1)
            declared[name.strip()] = set(deps.split())
    modules = set(declared)
    direct = {m: direct_deps(m, modules) for m in modules}
    bad = 0
    for m in sorted(modules):
        want, todo = {m}, [m]
        while todo:
            for d in direct.get(todo.pop(), ()):
                if d not in want:
                    want.add(d)
                    todo.append(d)
        if want != declared[m]:
            bad += 1
            extra = " ".join(sorted(declared[m] - want)) or "-"
            missing = " ".join(sorted(want - declared[m])) or "-"
            print(f"DEPS_{m}: listed but not included: {extra}; included but not listed: {missing}")
    # Dependencies run one way: no two modules include each other, directly or through others.
    closure = {}
    for m in modules:
        seen, todo = set(), [m]
        while todo:
            for d in direct.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        closure[m] = seen
    for a in sorted(modules):
        for b in sorted(modules):
            if a < b and b in closure[a] and a in closure[b]:
                bad += 1
                print(f"modules {a} and {b} include each other: dependencies must run one way")
    print("check-deps: " + ("DEPS_* match the includes, no cycles" if bad == 0 else f"{bad} problems"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
