#!/usr/bin/env python3
"""Fold `perf script` output into stacks, render an SVG flame graph and a text summary.

Written for flamegraphs/record.sh (no third-party code). Input: the text of

    perf script -F comm,tid,period,ip,sym,dso

(perf's default inline expansion on). Output:

  --svg FILE     a self-contained SVG flame graph (tooltips via <title>; click a frame to zoom,
                 click the bottom frame or "Reset zoom" to undo, "Search" highlights a regex)
  --folded FILE  the folded stacks ("root;...;leaf COUNT"), kernel frames suffixed _[k],
                 inlined frames suffixed _[i]
  --txt FILE     the summary: CPU by area, self time by function, time per syscall, and, when
                 --requests is given, CPU microseconds per request

Usage: flamegraph.py --perf-script perf.txt [--svg out.svg] [--txt out.txt] [--folded out]
                     [--title T] [--subtitle S] [--requests N] [--seconds S] [--freq F]
                     [--syscalls perf-stat.csv] [--header-file extra.txt]
"""
import argparse
import collections
import html
import math
import os
import re
import sys

# ---------------------------------------------------------------------------------------------
# perf script -> stacks


def _bare(name):
    """Last `::` component of a C++ name, template arguments and parameters stripped."""
    depth = 0
    cut = []
    for ch in name:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(0, depth - 1)
        elif depth == 0:
            cut.append(ch)
    s = "".join(cut)
    return s.rsplit("::", 1)[-1].strip()


def _collapse_group(entries):
    """Entries printed by perf for one address: (name, inlined). Returns innermost-first names.

    perf prints the inline chain of an address innermost first; the containing function is
    printed either before or after it, and sometimes repeated as the outermost "inlined" entry.
    """
    real = [n for n, inl in entries if not inl]
    inl = [n for n, i in entries if i]
    out = []
    for n in inl:
        if not out or out[-1] != n:
            out.append(n)
    if real:
        r = real[0]
        while out and (out[-1] == r or _bare(out[-1]) == _bare(r)):
            out.pop()
        return [(n, True) for n in out] + [(r, False)]
    return [(n, True) for n in out[:-1]] + [(out[-1], False)] if out else []


THREAD_ROOTS = ("clone3", "clone", "_start", "__libc_start_main", "__libc_start_call_main")


def parse_perf_script(lines):
    """Yields (comm, frames leaf-first [(name, kind)], period). kind: 'k' kernel, 'i' inlined,
    'u' user, tid). Stacks that do not end at a thread entry are left as they are (see
    repair_roots)."""
    header = None
    chain = []  # (addr, name, inlined, dso)

    def flush():
        if header is None:
            return None
        comm, tid, period = header
        frames = []
        i = 0
        while i < len(chain):
            j = i
            while j < len(chain) and chain[j][0] == chain[i][0]:
                j += 1
            group = chain[i:j]
            dso = group[0][3]
            kernel = "kernel.kallsyms" in dso or dso.startswith("[kernel")
            names = _collapse_group([(g[1], g[2]) for g in group])
            for n, inl in names:
                if n == "[unknown]":
                    if dso in ("[unknown]", ""):
                        continue
                    n = "[" + os.path.basename(dso) + "]"
                frames.append((n, "k" if kernel else ("i" if inl else "u")))
            i = j
        # drop repeated identical frames (perf prints some libc wrappers twice)
        dedup = []
        for f in frames:
            if not dedup or dedup[-1] != f:
                dedup.append(f)
        return comm, dedup, period, tid

    line_re = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            r = flush()
            if r:
                yield r
            header, chain = None, []
            continue
        if line[0] not in " \t":
            parts = line.split()
            # comm may contain spaces: the last two fields are tid and period
            try:
                period = int(parts[-1])
                tid = parts[-2]
                comm = " ".join(parts[:-2]) or "?"
            except (ValueError, IndexError):
                period, comm, tid = 1, parts[0], "?"
            r = flush()
            if r:
                yield r
            header, chain = (comm, tid, period), []
            continue
        m = line_re.match(line)
        if not m:
            continue
        addr, sym, dso = m.group(1), m.group(2), m.group(3)
        inlined = sym.endswith(" (inlined)")
        if inlined:
            sym = sym[: -len(" (inlined)")]
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        chain.append((addr, sym, inlined, dso))
    r = flush()
    if r:
        yield r


def repair_roots(stacks):
    """perf copies the user stack from the sampled SP upwards and stops at the first page that
    is not mapped in. libuv's uv__io_poll keeps a 12 KB epoll_event array on the stack, mostly
    never touched, so most event-loop stacks stop inside libuv, below uv_run. For such a stack
    (rootmost frame in libuv, thread seen elsewhere with a complete stack through uv_run) the
    thread's usual path down to uv_run is put back; anything else that does not reach a thread
    entry gets an "[unwind incomplete]" root frame. Returns (stacks, repaired, incomplete)
    with sample counts."""
    prefixes = {}
    for comm, fr, p, tid in stacks:
        names = [n for n, _ in fr]
        if fr and names[-1] in THREAD_ROOTS and "uv_run" in names:
            i = names.index("uv_run")
            key = tuple(fr[i:])
            prefixes.setdefault(tid, collections.Counter())[key] += 1
    out, repaired, incomplete = [], 0, 0
    for comm, fr, p, tid in stacks:
        if fr and fr[-1][0] not in THREAD_ROOTS:
            if fr[-1][0].startswith("[libuv") and tid in prefixes:
                fr = fr + list(prefixes[tid].most_common(1)[0][0])
                repaired += 1
            else:
                fr = fr + [("[unwind incomplete]", "u")]
                incomplete += 1
        out.append((comm, fr, p, tid))
    return out, repaired, incomplete


# ---------------------------------------------------------------------------------------------
# classification

ALLOC_RE = re.compile(
    r"^(malloc|free|calloc|realloc|cfree|_int_malloc|_int_free|_int_realloc|malloc_consolidate|"
    r"unlink_chunk.*|tcache_\w+|__libc_malloc|__libc_free|__libc_calloc|__libc_realloc|"
    r"__GI___libc_malloc|__GI___libc_free|__GI___libc_realloc|sysmalloc|alloc_perturb|"
    r"_int_free_merge_chunk|_int_free_create_chunk|_int_free_maybe_consolidate|"
    r"operator new.*|operator delete.*|__malloc_\w+|arena_get2|checked_request2size)$")
# libc/libstdc++ helpers that do work on behalf of their caller: attributed to the caller
PASS_RE = re.compile(
    r"^(__mem\w+|mem(cpy|move|set|cmp|chr)\w*|__str\w+|str\w+|__wmem\w+|std::|__gnu_cxx::|"
    r"__GI_mem\w+|__GI_str\w+|_?_?memcpy\w*|__nss\w+|\[libstdc\+\+.*\]|\[libc\.so.*\]|"
    r"__cxa\w+|_Unwind\w+|XXH\w+|\[libxxhash.*\])")
SYSCALL_WRAP_RE = re.compile(
    r"^(__GI___libc_\w+|__libc_\w+|__GI___(writev|readv|read|write|epoll\w*|send\w*|recv\w*|"
    r"close|fdatasync|fsync|pwrite\w*|pread\w*|futex\w*)|writev|readv|read|write|epoll_wait|"
    r"epoll_pwait|epoll_ctl|__writev|__readv|__read|__write|__send\w*|__recv\w*|send\w*|"
    r"recv\w*|fdatasync|fsync|__fdatasync|syscall|__futex\w+|__lll_lock_wait\w*|"
    r"__pthread_mutex\w+|pthread_mutex\w+|___pthread_\w+|__pthread_\w+|pthread_cond\w+|"
    r"___pthread_cond\w+|__GI___pthread\w+|__GI___lll\w+|__lll_lock_wake\w*|clock_gettime|"
    r"__clock_gettime\w*|__vdso_clock_gettime|__GI___clock_gettime)$")

# (area, colour family) in the order shown in the summary
AREAS = [
    ("HTTP parse: client requests (llhttp + callbacks)", "red"),
    ("HTTP server: connection, response formatting", "orange"),
    ("peer HTTP client: request formatting, slots", "purple"),
    ("peer HTTP client: response parsing (llhttp + callbacks)", "magenta"),
    ("peer binary client: BinaryPeer", "blue"),
    ("peer binary codec (kv::proto)", "aqua"),
    ("peer server side (binary/HTTP replica requests)", "blue"),
    ("coordinator (kv::cluster)", "olive"),
    ("storage engine (kv::storage)", "green"),
    ("node app / routing / other node code", "yellow"),
    ("memory allocation (malloc/free/new/delete)", "gold"),
    ("libuv (event loop internals)", "cyan"),
    ("libc locks, other libc", "grey"),
    ("syscall entry/exit (user<->kernel switch)", "steel"),
    ("kernel: TCP/IP over loopback", "brown"),
    ("kernel: epoll", "sand"),
    ("kernel: file I/O (WAL, fsync)", "darkgreen"),
    ("kernel: page faults, memory", "khaki"),
    ("kernel: scheduler, timers, irq", "slate"),
    ("kernel: other syscall work (vfs, fd lookup, poll)", "slate2"),
    ("unattributed", "grey"),
]
AREA_NAMES = [a for a, _ in AREAS]
AREA_COLOR = dict(AREAS)

PEER_HTTP_PARSE_CB = re.compile(r"HttpClientConnection::On(Header\w*|Body|MessageComplete|"
                                r"MessageBegin|Status\w*)\b")
SERVER_PARSE_CB = re.compile(r"HttpConnection::On(MessageBegin|Url|Header\w*|Body|"
                             r"MessageComplete)\b|HttpConnection::CountHeaderBytes")
KERNEL_TCP_RE = re.compile(
    r"^(tcp_\w+|__tcp_\w+|tcp\w*|ip_\w+|__ip_\w+|ipv4_\w+|inet_\w+|__inet_\w+|sock_\w+|"
    r"__sock_\w+|sk_\w+|__sk_\w+|skb_\w+|__skb_\w+|__kfree_skb|kfree_skb\w*|consume_skb|"
    r"alloc_skb\w*|__alloc_skb|net_rx_action|__napi_poll|process_backlog|"
    r"__netif_receive_skb\w*|netif_\w+|__dev_queue_xmit|dev_hard_start_xmit|loopback_xmit|"
    r"__local_bh_enable_ip|do_softirq\w*|handle_softirqs|__do_softirq|release_sock|"
    r"lock_sock\w*|__release_sock|__x64_sys_sendto|__sys_sendto|__sys_recvfrom|"
    r"sock_sendmsg|sock_recvmsg|sock_write_iter|sock_read_iter|security_socket_\w+|"
    r"bpf_\w+|nf_\w+|__copy_skb_header|validate_xmit_skb\w*|dst_release|__dev_xmit_skb|"
    r"sch_direct_xmit|__qdisc_run|eth_type_trans|inet6?_\w+)$")
KERNEL_EPOLL_RE = re.compile(r"^(ep_\w+|do_epoll_\w+|__x64_sys_epoll\w*|__do_sys_epoll\w*|"
                             r"__se_sys_epoll\w*|epoll_\w+|__ep_\w+|ep_poll_callback)$")
KERNEL_FILE_RE = re.compile(r"^(ext4_\w+|jbd2_\w+|__jbd2_\w+|filemap_\w+|__filemap_\w+|"
                            r"generic_perform_write|file_write_and_wait_range|vfs_fsync\w*|"
                            r"do_fsync|__x64_sys_fdatasync|__x64_sys_fsync|iomap_\w+|"
                            r"blk_\w+|submit_bio\w*|__x64_sys_pwrite64|__x64_sys_pread64)$")
KERNEL_MM_RE = re.compile(r"^(asm_exc_page_fault|exc_page_fault|do_user_addr_fault|"
                          r"handle_mm_fault|__handle_mm_fault|do_anonymous_page|"
                          r"__x64_sys_munmap|__x64_sys_mmap|__x64_sys_brk|__x64_sys_madvise|"
                          r"do_madvise\w*|unmap_\w+|zap_\w+|clear_page\w*)$")
KERNEL_SCHED_RE = re.compile(r"^(schedule|__schedule|schedule_hrtimeout\w*|"
                             r"finish_task_switch\w*|asm_sysvec_\w+|sysvec_\w+|"
                             r"hrtimer_\w+|__hrtimer_\w+|irq_exit\w*|"
                             r"__x64_sys_futex|do_futex|futex_\w+|asm_common_interrupt|"
                             r"common_interrupt|try_to_wake_up|__wake_up\w*)$")


# kernel frames of the user<->kernel switch itself. On a paravirtualised guest (PVM here) timer
# ticks that fall while interrupts are off are taken at the next irq enable: the one early in
# do_syscall_64 collects the cost of entering the kernel.
ENTRY_EXIT_RE = re.compile(r"^(pvm_irq_enable|__raw_callee_save_pvm_\w+|pvm_\w+|"
                           r"syscall_enter_from_user_mode\w*|syscall_exit_to_user_mode\w*|"
                           r"exit_to_user_mode\w*|arch_exit_to_user_mode\w*|"
                           r"entry_SYSCALL_64\w*|do_syscall_64|syscall_trace_enter\w*|"
                           r"native_irq_enable|__x86_indirect_thunk_\w+|"
                           r"__x86_return_thunk|fpregs_\w+|switch_fpu_\w+)$")


def classify(frames_leaf_first):
    """One area per sample: the first attributable frame from the leaf up."""
    fr = frames_leaf_first
    if fr and fr[0][1] == "k":
        kpart = [n for n, k in fr if k == "k"]
        if "do_syscall_64" in kpart:
            below = kpart[: kpart.index("do_syscall_64")]
            if all(ENTRY_EXIT_RE.match(n) for n in below):
                return "syscall entry/exit (user<->kernel switch)"
        if any(KERNEL_MM_RE.match(n) for n in kpart):
            return "kernel: page faults, memory"
        if any(KERNEL_FILE_RE.match(n) for n in kpart):
            return "kernel: file I/O (WAL, fsync)"
        if any(KERNEL_TCP_RE.match(n) for n in kpart):
            return "kernel: TCP/IP over loopback"
        if any(KERNEL_EPOLL_RE.match(n) for n in kpart):
            return "kernel: epoll"
        if any(KERNEL_SCHED_RE.match(n) for n in kpart):
            return "kernel: scheduler, timers, irq"
        return "kernel: other syscall work (vfs, fd lookup, poll)"
    user = [(n, k) for n, k in fr if k != "k"]
    for idx, (n, k) in enumerate(user):
        above = [m for m, _ in user[idx + 1:]]
        if ALLOC_RE.match(n):
            return "memory allocation (malloc/free/new/delete)"
        if n.startswith("llhttp"):
            if any("HttpClientConnection" in m for m in above):
                return "peer HTTP client: response parsing (llhttp + callbacks)"
            return "HTTP parse: client requests (llhttp + callbacks)"
        if PEER_HTTP_PARSE_CB.search(n):
            return "peer HTTP client: response parsing (llhttp + callbacks)"
        if SERVER_PARSE_CB.search(n):
            return "HTTP parse: client requests (llhttp + callbacks)"
        if n.startswith("kv::proto::"):
            return "peer binary codec (kv::proto)"
        if "BinaryServer" in n or "ServerConn" in n or "BinaryPeerServer" in n:
            return "peer server side (binary/HTTP replica requests)"
        if "BinaryPeer" in n or "ClientConn" in n:
            return "peer binary client: BinaryPeer"
        if ("HttpPeer" in n or "HttpClientConnection" in n or "SlotQueue" in n
                or re.search(r"kv::net::\(anonymous namespace\)::(MapResponse|AppendU64|"
                             r"ErrorResponse|IEquals|Conn::)", n)
                or "AppendPercentEncoded" in n):
            return "peer HTTP client: request formatting, slots"
        if n.startswith("kv::storage::"):
            return "storage engine (kv::storage)"
        if n.startswith("kv::cluster::"):
            return "coordinator (kv::cluster)"
        if (n.startswith("kv::net::HttpConnection") or n.startswith("kv::net::Responder")
                or n.startswith("kv::net::Worker") or n.startswith("kv::net::Server")
                or n.startswith("kv::net::Metrics") or "StatusText" in n
                or "AppendDecimal" in n or "AppendHex" in n or n.startswith("kv::net::Request")):
            return "HTTP server: connection, response formatting"
        if n.startswith("kv::"):
            return "node app / routing / other node code"
        if n.startswith("[libuv") or n.startswith("uv_") or n.startswith("uv__"):
            return "libuv (event loop internals)"
        if idx == 0 and _wrapper_syscall(n):
            return "syscall entry/exit (user<->kernel switch)"
        if SYSCALL_WRAP_RE.match(n):
            return "libc locks, other libc"
        if PASS_RE.match(n) or k == "i":
            continue
        if n in THREAD_ROOTS or n.startswith("["):
            continue
    return "unattributed"


SYSCALL_FRAME_RE = re.compile(r"^(?:__x64_sys_|__ia32_sys_|__do_sys_|__se_sys_|ksys_|do_sys_)"
                              r"(\w+)$")


KNOWN_SYSCALLS = {
    "read", "readv", "write", "writev", "pread64", "pwrite64", "pwritev", "recvfrom",
    "recvmsg", "sendto", "sendmsg", "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl",
    "accept4", "accept", "close", "fdatasync", "fsync", "futex", "openat", "mmap", "munmap",
    "madvise", "brk", "getrandom", "ioctl", "fcntl", "lseek", "fstat", "newfstatat", "rename",
    "unlink", "shutdown", "setsockopt", "getsockopt", "connect", "socket", "eventfd2",
    "timerfd_settime", "nanosleep", "clock_nanosleep", "sched_yield",
}


def _wrapper_syscall(name):
    n = name
    for pre in ("__GI___libc_", "__GI___", "__GI_", "__libc_", "___", "__"):
        if n.startswith(pre):
            n = n[len(pre):]
            break
    if n.endswith("64") and n[:-2] in KNOWN_SYSCALLS:
        n = n[:-2]
    return n if n in KNOWN_SYSCALLS else None


def syscall_of(frames_leaf_first):
    """Name of the syscall a kernel sample is in: from the libc wrapper that issued it, else
    from the kernel frames below do_syscall_64. None outside syscalls."""
    k = [n for n, kind in frames_leaf_first if kind == "k"]
    user = [n for n, kind in frames_leaf_first if kind != "k"]
    if not k and frames_leaf_first:  # sampled on the libc wrapper right after `syscall`
        return _wrapper_syscall(frames_leaf_first[0][0])
    if "do_syscall_64" not in k:
        return None
    if user:
        s = _wrapper_syscall(user[0])
        if s:
            return s
    i = k.index("do_syscall_64")
    for n in reversed(k[:i]):
        m = SYSCALL_FRAME_RE.match(n)
        if m:
            return m.group(1)
        if n == "do_writev":
            return "writev"
        if n == "do_readv":
            return "readv"
        if n.startswith("do_epoll_"):
            return "epoll_" + n[len("do_epoll_"):]
        if n in ("vfs_write", "vfs_read", "vfs_writev", "vfs_readv"):
            return n[4:]
    return "(unknown: " + (user[0] if user else "?") + ")"


# ---------------------------------------------------------------------------------------------
# summary

def build_summary(samples, args, stat_counts):
    total = sum(p for _, _, p, _ in samples)
    n = len(samples)
    out = []
    w = out.append
    req = args.requests
    per_req = (lambda v: v / 1000.0 / req) if req else None  # period ns -> us per request

    def pct(v):
        return 100.0 * v / total if total else 0.0

    w(args.title)
    if args.subtitle:
        w(args.subtitle)
    if args.header_file and os.path.exists(args.header_file):
        with open(args.header_file) as f:
            w(f.read().rstrip("\n"))
    w("")
    cpu_s = total / 1e9
    w(f"samples: {n} (cpu-clock), node CPU time sampled: {cpu_s:.2f} s"
      + (f" over {args.seconds:g} s = {cpu_s / args.seconds:.2f} cores busy" if args.seconds else ""))
    if req:
        w(f"requests answered by the node during the recording: {req}"
          + (f" ({req / args.seconds:.0f}/s)" if args.seconds else ""))
        w(f"CPU per request: {total / 1000.0 / req:.1f} us")
    w(f"stacks: {100.0 * args.repaired / n:.1f}% stopped inside libuv's uv__io_poll and were joined"
      f" to the loop thread's uv_run path; {100.0 * args.incomplete / n:.1f}% not unwound to a "
      "thread entry")
    w("")

    # areas
    area = collections.Counter()
    for _, fr, p, a in samples:
        area[a] += p
    w("== CPU by area (each sample counted once: its innermost attributable frame; sums to 100%)")
    w(f"{'area':58s} {'%CPU':>6s}" + (f" {'us/req':>7s}" if req else ""))
    for a in AREA_NAMES:
        if area[a]:
            w(f"{a:58s} {pct(area[a]):6.1f}" + (f" {per_req(area[a]):7.2f}" if req else ""))
    kern = sum(v for a, v in area.items() if a.startswith("kernel"))
    w(f"{'  (all kernel areas)':58s} {pct(kern):6.1f}" + (f" {per_req(kern):7.2f}" if req else ""))
    w("")

    # inclusive
    def incl(pred):
        return sum(p for _, fr, p, _ in samples if any(pred(nm) for nm, _ in fr))

    groups = [
        ("client HTTP request parsing: llhttp frames not below the request handler",
         None),
        ("storage engine: any kv::storage:: frame", lambda s: s.startswith("kv::storage::")),
        ("coordinator: kv::cluster::Coordinator", lambda s: s.startswith("kv::cluster::Coordinator")),
        ("peer transport, client side: HttpPeer/HttpClientConnection/BinaryPeer/kv::proto",
         lambda s: ("HttpPeer" in s or "HttpClientConnection" in s or "BinaryPeer" in s
                    or s.startswith("kv::proto::"))),
        ("response write path: HttpConnection::Flush", lambda s: "HttpConnection::Flush" in s),
        ("memory allocation: malloc/free/new/delete", lambda s: bool(ALLOC_RE.match(s))),
        ("syscalls: kernel time incl. entry/exit + samples on libc wrappers", "SYSCALL"),
        ("kernel TCP/IP: tcp_* frames", lambda s: s.startswith("tcp_")),
    ]
    w("== Inclusive time (a sample counts for every group its stack passes through; overlaps)")
    for label, pred in groups:
        if label.startswith("client HTTP request parsing"):
            v = 0
            for _, fr, p, _ in samples:
                names = [nm for nm, _ in fr]
                idx = [i for i, nm in enumerate(names) if nm.startswith("llhttp")]
                if not idx:
                    continue
                if any("HttpClientConnection" in nm for nm in names):
                    continue
                below = names[: idx[0]]  # leafward of the innermost llhttp frame
                if any("NodeApp" in nm or "Coordinator" in nm or "Dispatch" in nm for nm in below):
                    continue
                v += p
        elif pred == "SYSCALL":
            v = sum(p for _, fr, p, _ in samples if syscall_of(fr))
        else:
            v = incl(pred)
        w(f"  {pct(v):5.1f}%" + (f" {per_req(v):7.2f} us/req" if req else "") + f"  {label}")
    w("")

    # syscalls
    sysc = collections.Counter()
    issuer = collections.defaultdict(collections.Counter)
    for _, fr, p, _ in samples:
        s = syscall_of(fr)
        if s:
            sysc[s] += p
            # first kv:: frame above the kernel part
            who = next((nm for nm, k in fr if k != "k" and nm.startswith("kv::")), "?")
            if who == "kv::net::Worker::Run":
                who = "(libuv loop itself)"
            issuer[s][_short(who)] += p
    w("== CPU in syscalls, by syscall (kernel time + entry/exit + samples on the libc wrapper;")
    w("   then the innermost kv:: caller that issued most of it)")
    for s, v in sysc.most_common(12):
        top = ", ".join(f"{c} {100.0 * x / v:.0f}%" for c, x in issuer[s].most_common(2))
        w(f"  {pct(v):5.1f}%" + (f" {per_req(v):7.2f} us/req" if req else "") + f"  {s:14s} {top}")
    w("")
    if stat_counts:
        sreq = args.syscall_requests
        w(f"== Syscalls counted by perf stat (tracepoints) over {args.syscall_seconds:g} s right "
          f"after the recording, {sreq} requests answered")
        tot = stat_counts.get("raw_syscalls:sys_enter")
        if tot is not None:
            w(f"  all syscalls: {tot}" + (f" = {tot / sreq:.2f} per request" if sreq else ""))
        for ev, c in sorted(stat_counts.items(), key=lambda kv: -kv[1]):
            if ev == "raw_syscalls:sys_enter" or c == 0:
                continue
            name = ev.split("sys_enter_")[-1]
            w(f"  {name:14s} {c:10d}" + (f"  {c / sreq:6.2f} per request" if sreq else ""))
        w("")

    # self time
    selfc = collections.Counter()
    for _, fr, p, _ in samples:
        nm, k = fr[0]
        selfc[(nm, k)] += p
    w("== Top 30 functions by self time (leaf frame; [k] kernel, [i] inlined)")
    for (nm, k), v in selfc.most_common(30):
        tag = {"k": " [k]", "i": " [i]"}.get(k, "")
        w(f"  {pct(v):5.1f}%  {_short(nm)}{tag}")
    w("")
    return "\n".join(out) + "\n"


def _short(name, limit=110):
    s = name.replace("kv::net::(anonymous namespace)::", "kv::net::")
    s = s.replace("(anonymous namespace)::", "")
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    return s


# ---------------------------------------------------------------------------------------------
# SVG

PALETTE = {
    "red": (220, 70, 50), "orange": (235, 140, 40), "purple": (150, 90, 200),
    "magenta": (200, 70, 170), "blue": (70, 120, 220), "aqua": (60, 180, 200),
    "olive": (160, 160, 60), "green": (80, 170, 80), "yellow": (225, 200, 60),
    "gold": (245, 175, 30), "cyan": (110, 200, 210), "grey": (170, 170, 170),
    "brown": (190, 120, 80), "sand": (215, 170, 120), "darkgreen": (60, 130, 90),
    "khaki": (200, 190, 130), "slate": (140, 150, 180), "steel": (150, 170, 200), "slate2": (175, 160, 200),
}


def frame_area(name, kind, ancestors):
    """Area of a single frame (for its colour), consistent with classify()."""
    if kind == "k":
        return classify([(name, "k")])
    return classify([(name, kind)] + [(a, "u") for a in ancestors])


def _color(area, name):
    base = PALETTE[AREA_COLOR.get(area, "grey")]
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xFFFF
    j = (h % 41) - 20  # small per-name variation
    return "rgb(%d,%d,%d)" % tuple(max(0, min(255, c + j)) for c in base)


FONT_W = 6.2  # px per character at 11px monospace (same constant in SVG_JS)


def _fit(name, w):
    n = int((w - 6) // FONT_W)
    if n < 3:
        return ""
    return name if len(name) <= n else name[: n - 2] + ".."


class Node:
    __slots__ = ("name", "kind", "value", "children")

    def __init__(self, name, kind):
        self.name, self.kind, self.value, self.children = name, kind, 0, {}


def build_tree(samples):
    root = Node("all", "u")
    for comm, fr, p, _ in samples:
        root.value += p
        node = root
        for name, kind in [(comm, "u")] + list(reversed(fr)):
            key = (name, kind)
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = Node(name, kind)
            child.value += p
            node = child
    return root


SVG_JS = r"""
var svg, frames, details, matchedtxt, searchbtn, W, PAD, FONT_W = 6.2, zoomed = null;
function init(evt) {
  svg = document.documentElement;
  frames = document.getElementById("frames").children;
  details = document.getElementById("details").firstChild;
  matchedtxt = document.getElementById("matched");
  searchbtn = document.getElementById("search");
  W = +svg.getAttribute("data-width"); PAD = +svg.getAttribute("data-pad");
  for (var i = 0; i < frames.length; i++) {
    var g = frames[i];
    g.onclick = function () { zoom(this); };
    g.onmouseover = function () { details.nodeValue = this.firstChild.firstChild.nodeValue; };
    g.onmouseout = function () { details.nodeValue = " "; };
  }
  document.getElementById("unzoom").onclick = function () { zoom(null); };
  searchbtn.onclick = function () { search(); };
}
function fit(g, w) {
  var t = g.lastChild, name = g.getAttribute("data-n");
  var n = Math.floor((w - 6) / FONT_W);
  t.textContent = n < 3 ? "" : (name.length <= n ? name : name.substring(0, n - 2) + "..");
}
function layout(x0, w, depth) {
  var scale = (W - 2 * PAD) / w;
  for (var i = 0; i < frames.length; i++) {
    var g = frames[i], fx = +g.getAttribute("data-x"), fw = +g.getAttribute("data-w"),
        d = +g.getAttribute("data-d"), r = g.children[1], t = g.children[2];
    var nx, nw;
    if (fx + fw <= x0 || fx >= x0 + w) { g.style.display = "none"; continue; }
    if (d < depth) { nx = PAD; nw = W - 2 * PAD; g.style.opacity = 0.6; }
    else { nx = PAD + (fx - x0) * scale; nw = fw * scale; g.style.opacity = 1; }
    if (nw < 0.3) { g.style.display = "none"; continue; }
    g.style.display = "block";
    r.setAttribute("x", nx); r.setAttribute("width", nw);
    t.setAttribute("x", nx + 3); fit(g, nw);
  }
}
function zoom(g) {
  if (!g || +g.getAttribute("data-d") == 0) { zoomed = null;
    layout(0, +svg.getAttribute("data-total"), -1); return; }
  zoomed = g;
  layout(+g.getAttribute("data-x"), +g.getAttribute("data-w"), +g.getAttribute("data-d"));
}
function search() {
  var term = prompt("Search (regular expression), empty to clear", "");
  if (term === null) return;
  var re = null, iv = [];
  if (term) { try { re = new RegExp(term); } catch (e) { alert(e); return; } }
  for (var i = 0; i < frames.length; i++) {
    var g = frames[i], r = g.children[1];
    if (!r.getAttribute("data-fill")) r.setAttribute("data-fill", r.getAttribute("fill"));
    if (re && re.test(g.getAttribute("data-n"))) {
      r.setAttribute("fill", "rgb(255,0,255)");
      iv.push([+g.getAttribute("data-x"), +g.getAttribute("data-x") + +g.getAttribute("data-w")]);
    } else r.setAttribute("fill", r.getAttribute("data-fill"));
  }
  iv.sort(function (a, b) { return a[0] - b[0]; });
  var sum = 0, end = -1;
  for (var j = 0; j < iv.length; j++) {
    var s = Math.max(iv[j][0], end);
    if (iv[j][1] > s) { sum += iv[j][1] - s; end = iv[j][1]; }
  }
  matchedtxt.textContent = re ? ("Matched \"" + term + "\": " +
      (100 * sum / +svg.getAttribute("data-total")).toFixed(1) + "% of samples") : "";
  searchbtn.textContent = re ? "Search (active)" : "Search";
}
"""


def render_svg(samples, title, subtitle, min_px=0.25, width=1200):
    root = build_tree(samples)
    total = root.value or 1
    pad = 10
    fh = 16
    scale = (width - 2 * pad) / total
    rows = []  # (depth, x, value, name, kind, area)
    maxdepth = [0]

    def walk(node, depth, x, ancestors):
        if node.value * scale < min_px:
            return
        if depth == 0:
            area = "unattributed"
        else:
            area = frame_area(node.name, node.kind, ancestors)
        rows.append((depth, x, node.value, node.name, node.kind, area))
        maxdepth[0] = max(maxdepth[0], depth)
        cx = x
        for key in sorted(node.children):
            ch = node.children[key]
            walk(ch, depth + 1, cx, [node.name] + ancestors if depth else ancestors)
            cx += ch.value

    walk(root, 0, 0, [])
    legend_areas = []
    seen = set()
    for _, _, _, _, _, a in rows:
        if a not in seen and a != "unattributed":
            seen.add(a)
    for a in AREA_NAMES:
        if a in seen:
            legend_areas.append(a)
    legend_rows = math.ceil(len(legend_areas) / 3)
    top = 58 + legend_rows * 15
    height = top + (maxdepth[0] + 1) * fh + 40
    e = html.escape
    o = []
    o.append('<?xml version="1.0" standalone="no"?>')
    o.append(f'<svg version="1.1" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
             f'onload="init(evt)" data-width="{width}" data-pad="{pad}" data-total="{total}">')
    o.append("<style>text{font-family:monospace;font-size:11px;fill:#000}"
             ".f{cursor:pointer}.f:hover rect{stroke:#000;stroke-width:0.5}"
             ".btn{cursor:pointer;fill:#225;text-decoration:underline}</style>")
    o.append("<script><![CDATA[" + SVG_JS + "]]></script>")
    o.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f0"/>')
    o.append(f'<text x="{width / 2}" y="20" text-anchor="middle" style="font-size:15px">'
             f'{e(title)}</text>')
    o.append(f'<text x="{width / 2}" y="37" text-anchor="middle">{e(subtitle)}</text>')
    o.append(f'<text id="unzoom" class="btn" x="{pad}" y="20">Reset zoom</text>')
    o.append(f'<text id="search" class="btn" x="{width - pad}" y="20" '
             f'text-anchor="end">Search</text>')
    for i, a in enumerate(legend_areas):
        col, row = i % 3, i // 3
        x = pad + col * (width - 2 * pad) / 3
        y = 52 + row * 15
        o.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" '
                 f'fill="{_color(a, "")}"/><text x="{x + 14}" y="{y}">{e(a)}</text>')
    o.append('<g id="frames">')
    for depth, x, value, name, kind, area in rows:
        y = height - 40 - (depth + 1) * fh
        label = name + {"k": " [kernel]", "i": " [inlined]"}.get(kind, "")
        if depth == 0:
            label = name = "all"
        tip = (f"{label} ({value * 100.0 / total:.2f}% of samples, "
               f"{value / 1e6:.0f} ms CPU) area: {area}")
        rx = pad + x * scale
        rw = value * scale
        o.append(f'<g class="f" data-x="{x}" data-w="{value}" data-d="{depth}" '
                 f'data-n="{e(name)}"><title>{e(tip)}</title>'
                 f'<rect x="{rx:.1f}" y="{y}" width="{rw:.1f}" height="{fh - 1}" rx="2" '
                 f'fill="{_color(area, name) if depth else "rgb(200,200,200)"}"/>'
                 f'<text x="{rx + 3:.1f}" y="{y + fh - 4}">{e(_fit(name, rw))}</text></g>')
    o.append("</g>")
    o.append(f'<text id="details" x="{pad}" y="{height - 22}"> </text>')
    o.append(f'<text id="matched" x="{width - pad}" y="{height - 22}" text-anchor="end"></text>')
    o.append(f'<text x="{pad}" y="{height - 6}" style="fill:#666">Width = share of CPU samples; '
             "bottom = thread, top = leaf. Click a frame to zoom, Reset zoom to undo. "
             "Frames narrower than a pixel are omitted.</text>")
    o.append("</svg>")
    return "\n".join(o) + "\n"


# ---------------------------------------------------------------------------------------------

def read_stat(path):
    counts = {}
    if not path or not os.path.exists(path):
        return counts
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            # perf stat -x, : value,unit,event,...
            if len(parts) >= 3 and ":" in parts[2]:
                try:
                    counts[parts[2]] = int(float(parts[0]))
                except ValueError:
                    pass
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--perf-script", required=True, help="perf script output ('-' for stdin)")
    ap.add_argument("--svg")
    ap.add_argument("--txt")
    ap.add_argument("--folded")
    ap.add_argument("--title", default="Flame graph")
    ap.add_argument("--subtitle", default="")
    ap.add_argument("--header-file")
    ap.add_argument("--requests", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--syscalls", help="perf stat -x, output with syscall tracepoint counts")
    ap.add_argument("--syscall-requests", type=int, default=0,
                    help="requests answered while the syscalls were counted")
    ap.add_argument("--syscall-seconds", type=float, default=0)
    ap.add_argument("--min-px", type=float, default=0.25)
    args = ap.parse_args()

    src = sys.stdin if args.perf_script == "-" else open(args.perf_script, errors="replace")
    stacks, args.repaired, args.incomplete = repair_roots(list(parse_perf_script(src)))
    samples = [(comm, fr, p, classify(fr)) for comm, fr, p, _ in stacks]
    if not samples:
        sys.exit("no samples in the perf script output")

    if args.folded:
        agg = collections.Counter()
        for comm, fr, p, _ in samples:
            names = [comm] + [n + {"k": "_[k]", "i": "_[i]"}.get(k, "") for n, k in reversed(fr)]
            agg[";".join(names)] += 1
        with open(args.folded, "w") as f:
            for k, v in sorted(agg.items()):
                f.write(f"{k} {v}\n")
    if args.txt:
        with open(args.txt, "w") as f:
            f.write(build_summary(samples, args, read_stat(args.syscalls)))
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(render_svg(samples, args.title, args.subtitle, args.min_px))


if __name__ == "__main__":
    main()
