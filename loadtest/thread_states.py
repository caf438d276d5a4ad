#!/usr/bin/env python3
"""Where the nodes' threads spend a benchmark's time (a diagnostic, not a benchmark).

sample OUT SECONDS [MATCH]: every 20 ms, for each thread of every ./node process whose --data
  contains MATCH (default /tmp/kvrepair) and of every kvload, writes one line
  "time node tid comm state wchan cpu_ns runqueue_wait_ns" (the last two from schedstat).
  Node "n<i+1>" is the one whose data directory ends in /<i>.
summary OUT FROM TO: per thread over [FROM, TO) (unix seconds): CPU seconds, seconds spent
  runnable but waiting for a CPU, and the share of samples in each state other than R and
  plain sleeps (a loop thread blocked on a lock or the disk shows here).

  python3 loadtest/thread_states.py sample /tmp/s.txt 120 &
  PARTS=none CASES=hints DUR=10 bash loadtest/bench_repair.sh
  python3 loadtest/thread_states.py summary /tmp/s.txt <start of a kvload run> <its end>
"""
import collections
import os
import sys
import time


def procs(match):
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            cl = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\0')
        except OSError:
            continue
        if cl[0].endswith(b'kvload'):
            yield p, 'kvload'
        elif cl[0].endswith(b'node') and b'--data' in cl[:-1]:
            d = cl[cl.index(b'--data') + 1].decode()
            if match in d and d.rsplit('/', 1)[1].isdigit():
                yield p, 'n%d' % (int(d.rsplit('/', 1)[1]) + 1)


def sample(out, seconds, match):
    end = time.time() + seconds
    with open(out, 'w') as f:
        while time.time() < end:
            now = time.time()
            for p, name in list(procs(match)):
                try:
                    tids = os.listdir(f'/proc/{p}/task')
                except OSError:
                    continue
                for tid in tids:
                    base = f'/proc/{p}/task/{tid}'
                    try:
                        st = open(base + '/stat').read()
                        comm = st[st.index('(') + 1:st.rindex(')')].replace(' ', '_')
                        state = st[st.rindex(')') + 2]
                        wchan = open(base + '/wchan').read().strip() or '0'
                        run, wait = open(base + '/schedstat').read().split()[:2]
                    except (OSError, ValueError):
                        continue
                    if state == 'R':
                        wchan = '-'
                    f.write(f'{now:.3f} {name} {tid} {comm} {state} {wchan} {run} {wait}\n')
            time.sleep(0.02)


def summary(out, a, b):
    first, last, states = {}, {}, collections.defaultdict(collections.Counter)
    for line in open(out):
        t, name, tid, comm, state, wchan, run, wait = line.split()
        if not a <= float(t) < b:
            continue
        k = (name, tid, comm)
        first.setdefault(k, (int(run), int(wait)))
        last[k] = (int(run), int(wait))
        states[k][state + ' ' + wchan] += 1
    quiet = {'S do_epoll_wait', 'S 0', 'R -', 'S do_sigtimedwait.isra.0'}
    for k in sorted(first):
        cpu = (last[k][0] - first[k][0]) / 1e9
        wait = (last[k][1] - first[k][1]) / 1e9
        n = sum(states[k].values())
        other = ', '.join(f'{s} {c / n:.2f}' for s, c in states[k].most_common()
                          if s not in quiet and not (s == 'S futex_do_wait' and c == n))
        if cpu >= 0.05 or wait >= 0.05:
            print(f'{k[0]:6} {k[1]:7} {k[2]:12} cpu {cpu:6.2f} s  runqueue wait {wait:6.2f} s  '
                  f'R {states[k]["R -"] / n:.2f}  {other}')


if __name__ == '__main__':
    if len(sys.argv) >= 4 and sys.argv[1] == 'sample':
        sample(sys.argv[2], float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else '/tmp/kvrepair')
    elif len(sys.argv) == 5 and sys.argv[1] == 'summary':
        summary(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(__doc__)
