"""A cluster of ./node processes, each in its own network namespace, joined by a bridge.

Layout of one run (NAME = "kvf" + the runner's PID, unique while the run lives):
  - a bridge NAMEbr in the root namespace with address 10.231.S.254/24 (S: a /24 no address of
    the root namespace uses yet), through which the client workers reach every node;
  - per node i (0-based) a namespace NAME-n<i> whose eth0 (one end of a veth pair; the other end,
    NAMEh<i>, is a port of the bridge) has 10.231.S.<i+1>/24; the node listens there on PORT;
  - per namespace an nftables table `inet kvfault` with an input and an output chain, empty until
    the nemesis cuts links (rules `ip saddr {...} drop` / `ip daddr {...} drop`: packets between
    nodes are dropped silently, as on a real partition; the root namespace, i.e. the clients, is
    never cut off);
  - a slow link is a tbf qdisc on both ends of a node's veth (this kernel has no netem): every
    byte to and from that node passes a token bucket of 512 kbit/s, so its traffic queues
    and, past the bucket's latency bound, is dropped and retransmitted.

Everything is removed by cleanup(): node processes (by PID, SIGCONT then SIGKILL), namespaces
(which takes their veth ends, nft tables and qdiscs with them), the bridge, the temp dir.
cleanup_leftovers() removes what earlier runs left behind (node processes in their namespaces,
namespaces, links and temp dirs whose name starts with "kvf<pid>" for a PID that is no longer a
running fault suite), so a run killed with SIGKILL
costs nothing the next run does not clean up.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

PREFIX = "kvf"
PORT = 7000
START_TIMEOUT = 30.0


class SetupError(Exception):
    pass


def sh(*args, check=True, input=None, timeout=20):
    """Runs a command (argv list), returns stdout; raises SetupError with its stderr on failure."""
    r = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise SetupError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def netns_usable():
    """(True, "") if we are root and can create a namespace, else (False, why)."""
    if os.geteuid() != 0:
        return False, "not running as root"
    if shutil.which("ip") is None:
        return False, "no `ip` command (iproute2)"
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "del", name)
        return True, ""
    except (SetupError, OSError, subprocess.TimeoutExpired) as e:
        sh("ip", "netns", "del", name, check=False)
        return False, f"`ip netns` does not work here ({e})"


def _run_is_alive(pid):
    """True if pid is a live process running the fault suite (so its namespaces are in use)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"faults" in f.read()
    except OSError:
        return False


def cleanup_leftovers(log=print):
    """Removes namespaces (with the nodes in them), links and temp dirs of earlier runs whose
    process is gone."""
    own = f"{PREFIX}{os.getpid()}"
    pat = re.compile(rf"^{PREFIX}(\d+)")
    for line in sh("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = pat.match(name)
        if m and not name.startswith(own) and not _run_is_alive(int(m.group(1))):
            log(f"removing leftover namespace {name}")
            _kill_pids_in_netns(name)
            sh("ip", "netns", "del", name, check=False)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = pat.match(name)
        if m and not name.startswith(own) and not _run_is_alive(int(m.group(1))):
            log(f"removing leftover temp dir {os.path.join(tmp, name)}")
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
    for line in sh("ip", "-o", "link", "show", check=False).splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = pat.match(name)
        if m and not name.startswith(own) and not _run_is_alive(int(m.group(1))):
            log(f"removing leftover link {name}")
            sh("ip", "link", "del", name, check=False)


def _kill_pids_in_netns(name):
    """SIGKILLs the processes a dead run left in its namespace (`ip netns pids` lists them by PID;
    they can only be our nodes: nothing else is ever started there)."""
    for p in sh("ip", "netns", "pids", name, check=False).split():
        try:
            os.kill(int(p), signal.SIGCONT)
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _free_subnet():
    used = set()
    for m in re.finditer(r"inet 10\.231\.(\d+)\.", sh("ip", "-o", "-4", "addr", "show")):
        used.add(int(m.group(1)))
    for s in range(1, 255):
        if s not in used:
            return s
    raise SetupError("no free 10.231.x.0/24 subnet")


class NetNode:
    """One ./node in namespace ns at ip:PORT. Remembers its argv so it restarts on its data dir."""

    def __init__(self, idx, ns, ip, data, log_path):
        self.idx, self.ns, self.ip, self.data, self.log_path = idx, ns, ip, data, log_path
        self.url = f"http://{ip}:{PORT}"
        self.argv = None
        self.proc = None
        self.paused = False
        self.ending = None  # how we ended the current process: "nemesis" (SIGKILL), "stop"
        self.exits = []  # (status, how it was ended: "nemesis", "stop" or None) per process
        self.generation = 0  # bumped on every start: workers drop older connections

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        with open(self.log_path, "ab") as log:
            log.write(f"==== start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns] + self.argv,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        # `ip netns exec` execs the command in place: this PID is the node's.
        self.ending = None
        self.paused = False
        self.generation += 1

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"node {self.idx} exited with {self.proc.returncode} at start: "
                                 f"{self.log_tail(3)}")
            try:
                if status(self.ip, timeout=2)["url"]:
                    return
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                last = e
            time.sleep(0.05)
        raise SetupError(f"node {self.idx} not ready after {timeout:.0f}s ({last})")

    def sigkill(self):
        """Nemesis kill: SIGKILL, then reap (a process that had already exited is reaped first,
        as ended by nobody)."""
        if self.reap():
            return
        self.ending = "nemesis"
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.reap(wait=10)

    def pause(self, timeout=10.0):
        """SIGSTOP, then polls (bounded) until every thread of the process is stopped: the
        signal is asynchronous, and the fault is in force only once no thread runs."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = []
                for t in os.listdir(f"/proc/{self.proc.pid}/task"):
                    with open(f"/proc/{self.proc.pid}/task/{t}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                return  # exited meanwhile: seen as a crash at the end
            if states and all(st in ("T", "t") for st in states):
                return
            time.sleep(0.005)
        raise SetupError(f"node {self.idx} not stopped {timeout:.0f}s after SIGSTOP")

    def resume(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def reap(self, wait=0.0):
        """Records the exit of a finished process (once); returns True if it has exited."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=wait) if wait else self.proc.poll()
        except subprocess.TimeoutExpired:
            pass
        if self.proc.returncode is None:
            return False
        if not getattr(self.proc, "_kv_reaped", False):
            self.proc._kv_reaped = True
            self.exits.append((self.proc.returncode, self.ending))
        return True

    def crashes(self):
        """Exits we did not cause: any exit but our SIGKILL, and a final SIGTERM that did not
        end with status 0."""
        return [f"node {self.idx} exited with status {code}" +
                (" after the final SIGTERM" if how == "stop" else "")
                for code, how in self.exits
                if how is None or (how == "stop" and code != 0)]

    def log_tail(self, n=10):
        try:
            with open(self.log_path, "rb") as f:
                lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
            return " | ".join(lines[-n:]) or "(empty log)"
        except OSError:
            return "(no log)"


def http_request(ip, method, path, body=None, timeout=5.0):
    c = http.client.HTTPConnection(ip, PORT, timeout=timeout)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def status(ip, timeout=2.0):
    st, body = http_request(ip, "GET", "/v0/status", timeout=timeout)
    if st != 200:
        raise ValueError(f"status {st}")
    return json.loads(body)


class NetCluster:
    def __init__(self, n, mode, node_bin, node_args=(), log=print):
        self.n, self.mode, self.node_bin, self.log = n, mode, node_bin, log
        self.node_args = list(node_args)
        self.name = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.name}br"
        self.tmp = tempfile.mkdtemp(prefix=f"{self.name}-")
        self.nodes = []
        self.subnet = None
        self.slow = set()  # node indexes with a tbf qdisc
        self.cut = False   # some nft drop rule is installed

    # ---- setup

    def setup(self):
        self.subnet = _free_subnet()
        net = f"10.231.{self.subnet}"
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{net}.254/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(self.n):
            ns, host_end = f"{self.name}-n{i}", f"{self.name}h{i}"
            ip = f"{net}.{i + 1}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", f"{self.name}x{i}")
            sh("ip", "link", "set", f"{self.name}x{i}", "netns", ns)
            sh("ip", "-n", ns, "link", "set", f"{self.name}x{i}", "name", "eth0")
            sh("ip", "link", "set", host_end, "master", self.bridge)
            sh("ip", "link", "set", host_end, "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=(
                "table inet kvfault {\n"
                "  chain in { type filter hook input priority 0; policy accept; }\n"
                "  chain out { type filter hook output priority 0; policy accept; }\n"
                "}\n"))
            d = os.path.join(self.tmp, f"n{i}")
            os.makedirs(d)
            self.nodes.append(NetNode(i, ns, ip, os.path.join(d, "data"),
                                      os.path.join(d, "node.log")))
        cluster = ",".join(nd.url for nd in self.nodes)
        # Authenticated peers, as a deployment runs them (proto_spec section 11).
        secret = os.path.join(self.tmp, "cluster-secret")
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        for nd in self.nodes:
            nd.argv = [self.node_bin, "--port", str(PORT), "--cluster", cluster, "--self", nd.url,
                       "--data", nd.data, "--peer-protocol", self.mode, "--threads", "1",
                       "--log-level", "warn", "--cluster-secret-file", secret] + self.node_args

    def start_all(self):
        for nd in self.nodes:
            nd.start()
        for nd in self.nodes:
            nd.wait_ready()

    # ---- faults

    def cut_off(self, groups):
        """Drops every packet between nodes of different groups (lists of node indexes; nodes in
        no group keep every link)."""
        group_of = {i: g for g, members in enumerate(groups) for i in members}
        for i, nd in enumerate(self.nodes):
            if i not in group_of:
                continue
            others = [self.nodes[j].ip for j in group_of if group_of[j] != group_of[i]]
            if not others:
                continue
            s = "{ " + ", ".join(others) + " }"
            sh("ip", "netns", "exec", nd.ns, "nft", "-f", "-", input=(
                f"add rule inet kvfault in ip saddr {s} drop\n"
                f"add rule inet kvfault out ip daddr {s} drop\n"))
        self.cut = True

    def heal_cuts(self):
        for nd in self.nodes:
            sh("ip", "netns", "exec", nd.ns, "nft", "-f", "-",
               input="flush chain inet kvfault in\nflush chain inet kvfault out\n")
        self.cut = False

    def slow_link(self, i, rate="512kbit"):
        """A token bucket on both ends of node i's veth: its traffic in both directions."""
        tbf = ["tbf", "rate", rate, "burst", "8kb", "latency", "150ms"]
        sh("ip", "netns", "exec", self.nodes[i].ns, "tc", "qdisc", "add", "dev", "eth0", "root",
           *tbf)
        sh("tc", "qdisc", "add", "dev", f"{self.name}h{i}", "root", *tbf)
        self.slow.add(i)

    def heal_slow(self):
        for i in sorted(self.slow):
            sh("ip", "netns", "exec", self.nodes[i].ns, "tc", "qdisc", "del", "dev", "eth0",
               "root", check=False)
            sh("tc", "qdisc", "del", "dev", f"{self.name}h{i}", "root", check=False)
        self.slow.clear()

    # ---- teardown

    def stop_all(self, timeout=20.0):
        """SIGTERM (after SIGCONT) to every live node; waits; SIGKILL past the timeout. Every
        exit is recorded in the node's exits."""
        live = [nd for nd in self.nodes if not nd.reap()]
        for nd in live:
            nd.resume()
            nd.ending = "stop"
            nd.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for nd in live:
            try:
                nd.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                nd.proc.kill()  # counted as a crash: status -9 after the final SIGTERM
                nd.proc.wait(timeout=10)
            nd.reap()

    def cleanup(self):
        for nd in self.nodes:
            if nd.proc is not None and nd.proc.poll() is None:
                try:
                    nd.proc.send_signal(signal.SIGCONT)
                    nd.proc.kill()
                    nd.proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        for i in range(self.n):
            sh("ip", "netns", "del", f"{self.name}-n{i}", check=False)
            sh("ip", "link", "del", f"{self.name}h{i}", check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
