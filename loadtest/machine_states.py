#!/usr/bin/env python3
"""What the whole machine did while a benchmark ran (a diagnostic, not a benchmark).

sample OUT SECONDS [STEP] [MATCH]: every STEP seconds (0.25), one line
  "time busy nodes kvload other iowait steal psi_cpu_us psi_io_us dirty_kb writeback_kb top"
  where busy is the cores in use (0..nproc, from /proc/stat: everything but idle, iowait and
  steal), nodes and kvload the cores used by the processes named node whose command line
  holds MATCH (default /tmp/kv: the benchmarks' data directories) and named kvload, other =
  busy - nodes - kvload (every other process and kernel thread, short-lived ones included),
  iowait and steal in cores, psi_* the microseconds of stalled tasks ("some") in the step
  (/proc/pressure), dirty/writeback from /proc/meminfo, and top the three other processes that
  used the most CPU in the step, as name:pid:cores.
window OUT T0 T1: "busy nodes kvload other iowait steal" (cores) averaged over [T0, T1), then
  the worst second's other + steal (cores).
per-second OUT T0 N: the same, averaged per second for N seconds from unix time T0 (a kvload
  --per-second file's start_unix), one line per second, to set beside kvload's seconds.

  python3 loadtest/machine_states.py sample /tmp/m.txt 120 &
  ./loadtest/kvload ... --per-second /tmp/s.txt URL
  python3 loadtest/machine_states.py per-second /tmp/m.txt $(awk '/start_unix/ {print $3}' /tmp/s.txt) 10
"""
import os
import sys
import time

HZ = os.sysconf('SC_CLK_TCK')


def cpu_ticks():
    f = open('/proc/stat').readline().split()[1:]
    v = [int(x) for x in f]
    # user nice system idle iowait irq softirq steal
    return v


def psi(kind):
    try:
        for line in open(f'/proc/pressure/{kind}'):
            if line.startswith('some'):
                return int(line.split('total=')[1])
    except OSError:
        pass
    return 0


def meminfo():
    d = {}
    for line in open('/proc/meminfo'):
        k, v = line.split(':')
        if k in ('Dirty', 'Writeback'):
            d[k] = int(v.split()[0])
    return d.get('Dirty', 0), d.get('Writeback', 0)


def proc_cpu(match):
    out = {}
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            st = open(f'/proc/{p}/stat').read()
        except OSError:
            continue
        name = st[st.index('(') + 1:st.rindex(')')].replace(' ', '_')
        if name == 'node':
            try:
                if match not in open(f'/proc/{p}/cmdline').read():
                    name = 'other-node'
            except OSError:
                continue
        f = st[st.rindex(')') + 2:].split()
        out[p] = (name, int(f[11]) + int(f[12]), f[19])  # name, CPU ticks, start time
    return out


def sample(out, seconds, step, match):
    end = time.time() + seconds
    prev = (time.time(), cpu_ticks(), psi('cpu'), psi('io'), proc_cpu(match))
    with open(out, 'w') as f:
        while time.time() < end:
            time.sleep(step)
            cur = (time.time(), cpu_ticks(), psi('cpu'), psi('io'), proc_cpu(match))
            dt = cur[0] - prev[0]
            d = [a - b for a, b in zip(cur[1], prev[1])]
            cores = lambda ticks: ticks / HZ / dt
            busy = cores(sum(d[:8]) - d[3] - d[4] - d[7])
            dirty, wb = meminfo()
            used = []
            ours = {'node': 0, 'kvload': 0}
            for p, (name, t, started) in cur[4].items():
                # A process new in this step spent all its CPU in it (a restarted node's start).
                dt_p = t - prev[4][p][1] if p in prev[4] and prev[4][p][2] == started else t
                if dt_p <= 0:
                    continue
                if name in ours:
                    ours[name] += dt_p
                else:
                    used.append((dt_p, name, p))
            used.sort(reverse=True)
            top = ','.join(f'{n}:{p}:{cores(u):.2f}' for u, n, p in used[:3]) or '-'
            nodes, kv = cores(ours['node']), cores(ours['kvload'])
            f.write(f'{cur[0]:.3f} {busy:.3f} {nodes:.3f} {kv:.3f} {max(0, busy - nodes - kv):.3f} '
                    f'{cores(d[4]):.3f} {cores(d[7]):.3f} '
                    f'{cur[2] - prev[2]} {cur[3] - prev[3]} {dirty} {wb} {top}\n')
            f.flush()
            prev = cur


def per_second(out, t0, n):
    rows = [line.split() for line in open(out)]
    print('# second busy nodes kvload other iowait steal psi_cpu_ms psi_io_ms dirty_kb writeback_kb top')
    for s in range(n):
        sel = [r for r in rows if t0 + s < float(r[0]) <= t0 + s + 1]
        if not sel:
            print(s, '-')
            continue
        m = lambda i: sum(float(r[i]) for r in sel) / len(sel)
        sm = lambda i: sum(float(r[i]) for r in sel) / 1000
        tops = {}
        for r in sel:
            for e in r[11].split(','):
                if e != '-':
                    name, pid, share = e.rsplit(':', 2)
                    tops[f'{name}:{pid}'] = tops.get(f'{name}:{pid}', 0) + float(share) / len(sel)
        top = ','.join(f'{k}:{v:.2f}' for k, v in sorted(tops.items(), key=lambda x: -x[1])[:4])
        print(f'{s} {m(1):.2f} {m(2):.2f} {m(3):.2f} {m(4):.2f} {m(5):.2f} {m(6):.2f} '
              f'{sm(7):.0f} {sm(8):.0f} {sel[-1][9]} {sel[-1][10]} {top or "-"}')


def window(out, t0, t1):
    sel = [r.split() for r in open(out)]
    sel = [r for r in sel if t0 < float(r[0]) <= t1 + 0.125]
    if not sel:
        print('- - - - - - -')
        return
    worst = 0
    for i in range(int(t1 - t0)):  # whole seconds of the window only
        sec = [r for r in sel if t0 + i < float(r[0]) <= t0 + i + 1]
        if sec:
            worst = max(worst, sum(float(r[4]) + float(r[6]) for r in sec) / len(sec))
    print(' '.join(f'{sum(float(r[i]) for r in sel) / len(sel):.2f}' for i in range(1, 7)),
          f'{worst:.2f}')


if __name__ == '__main__':
    if len(sys.argv) >= 4 and sys.argv[1] == 'sample':
        sample(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.25,
               sys.argv[5] if len(sys.argv) > 5 else '/tmp/kv')
    elif len(sys.argv) == 5 and sys.argv[1] == 'window':
        window(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == 'per-second':
        per_second(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        print(__doc__)
        sys.exit(2)
