"""Harness for the integration tests: real ./node processes on free loopback ports.

What it gives a test:
  - Node: one ./node process with its own temp data dir and log file; start (waits for
    GET /v0/status == 200 by bounded polling), stop (SIGTERM, waits, asserts exit 0), kill
    (SIGKILL), pause/resume (SIGSTOP/SIGCONT), restart on the same port and data dir.
  - start_single / start_cluster: pick free ports, retry with fresh ports if a node dies at
    startup (another process grabbed the port between our probe and its bind).
  - request/get/put/delete/entities: ordinary requests through http.client (new connection each).
  - RawConn: a raw socket with a tiny HTTP/1.1 response parser for byte-level tests
    (pipelining, garbage, partial sends, chunked, 100-continue, close detection).
  - Group: base class of a test group; the runner calls setup_group once, then every test_*
    method, then teardown_group (always). Nodes a group starts are killed on teardown.

Every process we start is remembered by PID in _PROCS and killed by cleanup_all() (called by the
runner in a finally block and at exit). Nothing else is ever signalled.
"""
import atexit
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_BIN = os.environ.get("KV_NODE", os.path.join(REPO, "node"))
HOST = "127.0.0.1"

# Generous bounds: the test machine is small and shared. They bound waits, they are not
# performance assertions.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
HEAL_TIMEOUT = 40.0
IO_TIMEOUT = 20.0

_PROCS = {}  # pid -> Popen, every node process this run started and has not reaped
_TMPDIRS = []
_LOCK = threading.Lock()


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure(f"{what}: expected {short(expected)}, got {short(actual)}")


def short(v, n=160):
    r = repr(v)
    if len(r) > n:
        extra = f" ({len(v)} bytes)" if isinstance(v, (bytes, str)) else ""
        return r[:n] + "..." + extra
    return r


def poll(cond, timeout, what, interval=0.05):
    """Calls cond() until it returns a truthy value or timeout seconds pass (then fails).
    Exceptions from cond count as 'not yet'; the last one is reported on failure."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, http.client.HTTPException, TestFailure) as e:
            last = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {type(last).__name__}: {last})" if last else ""
            raise TestFailure(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def mkdtemp(tag="kvit"):
    d = tempfile.mkdtemp(prefix=tag + "-")
    with _LOCK:
        _TMPDIRS.append(d)
    return d


def free_ports(n):
    """n distinct currently-free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# Nodes name each other by host name, as deployments do (the store resolves names itself);
# clients connect to HOST.
NODE_HOST = "localhost"


def url_of(port):
    return f"http://{NODE_HOST}:{port}"


def cleanup_all():
    """Kills every node process this run started (by PID) and removes temp dirs."""
    with _LOCK:
        procs = list(_PROCS.values())
        _PROCS.clear()
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with _LOCK:
        dirs = list(_TMPDIRS)
        _TMPDIRS.clear()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(cleanup_all)


class NodeDied(TestFailure):
    pass


class Node:
    """One ./node process. Keeps port, data dir and flags across restarts."""

    def __init__(self, port, cluster_ports=None, mode="http", threads=2, extra=(),
                 log_level="warn", data=None, pass_cluster=True):
        self.port = port
        self.cluster_ports = list(cluster_ports) if cluster_ports else None
        self.mode = mode
        self.threads = threads
        self.extra = list(extra)
        self.log_level = log_level
        self.base = mkdtemp(f"kvit-{port}")
        self.data = data or os.path.join(self.base, "data")
        self.log_path = os.path.join(self.base, "node.log")
        self.pass_cluster = pass_cluster
        self.proc = None
        self.exit_codes = []

    @property
    def url(self):
        return url_of(self.port)

    def args(self):
        a = [NODE_BIN, "--port", str(self.port)]
        if self.cluster_ports and self.pass_cluster:
            a += ["--cluster", ",".join(url_of(p) for p in self.cluster_ports)]
        a += ["--data", self.data, "--peer-protocol", self.mode, "--threads", str(self.threads),
              "--log-level", self.log_level]
        return a + self.extra

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait=True, timeout=START_TIMEOUT):
        check(not self.alive(), f"node {self.port} already running")
        if not os.path.exists(NODE_BIN):
            raise TestFailure(f"{NODE_BIN} does not exist (build it with `make node`)")
        with open(self.log_path, "ab") as log:
            log.write(f"==== start {' '.join(self.args())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        with _LOCK:
            _PROCS[self.proc.pid] = self.proc
        if wait:
            self.wait_ready(timeout)
        return self

    def _reap(self):
        with _LOCK:
            _PROCS.pop(self.proc.pid, None)
        self.exit_codes.append(self.proc.returncode)

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                raise NodeDied(f"node on port {self.port} exited with status "
                               f"{self.proc.returncode} during startup: {self.log_tail(3)}")
            try:
                r = request(self.port, "GET", "/v0/status", timeout=2)
                if r.status == 200:
                    return
                last = f"status {r.status}"
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.05)
        raise TestFailure(f"node on port {self.port} not ready after {timeout:.0f}s "
                          f"(last: {last}); log: {self.log_tail(3)}")

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT, expect_code=0):
        """Graceful stop; fails unless the process exits with expect_code within timeout."""
        if not self.alive():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure(f"node {self.port} did not exit within {timeout:.0f}s of "
                              f"{signal.Signals(sig).name} (killed)")
        self._reap()
        code = self.proc.returncode
        if expect_code is not None and code != expect_code:
            raise TestFailure(f"node {self.port} exited with status {code} after "
                              f"{signal.Signals(sig).name}, expected {expect_code}; "
                              f"log: {self.log_tail(3)}")

    def kill(self):
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.returncode is not None:
            self._reap()

    def pause(self):
        """SIGSTOP, then waits until every thread of the process is actually stopped (the signal
        is asynchronous: a running thread could otherwise still serve a request)."""
        self.proc.send_signal(signal.SIGSTOP)
        pid = self.proc.pid

        def all_stopped():
            states = []
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            return states and all(s in ("T", "t") for s in states)
        poll(all_stopped, 10, f"node {self.port} to stop after SIGSTOP", 0.01)

    def resume(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self, wait=True):
        self.stop()
        return self.start(wait=wait)

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            lines = [l for l in lines if l.strip()]
            return " | ".join(lines[-n:]) if lines else "(empty log)"
        except OSError:
            return "(no log)"


def start_single(extra=(), mode="http", attempts=3, **kw):
    """Starts a cluster-of-one node (no --cluster) on a fresh port; retries on startup death."""
    err = None
    for _ in range(attempts):
        (port,) = free_ports(1)
        n = Node(port, mode=mode, extra=extra, **kw)
        try:
            return n.start()
        except NodeDied as e:
            err = e
    raise err


def start_nodes(n, make_nodes, attempts=3):
    """Starts the nodes make_nodes(ports) builds on n fresh free ports, all at once, and waits
    until each answers; with fresh ports again if one dies at startup (its port was taken)."""
    err = None
    for _ in range(attempts):
        nodes = make_nodes(free_ports(n))
        try:
            for nd in nodes:
                nd.start(wait=False)
            for nd in nodes:
                nd.wait_ready()
            return nodes
        except NodeDied as e:
            err = e
            for nd in nodes:
                nd.kill()
    raise err


def start_cluster(n, mode, extra=(), attempts=3):
    """Starts n nodes that know each other; waits until each of them can write to all."""
    nodes = start_nodes(n, lambda ports: [Node(p, cluster_ports=ports, mode=mode, extra=extra)
                                          for p in ports], attempts)
    wait_healthy(nodes)
    return nodes


def wait_healthy(nodes, timeout=HEAL_TIMEOUT, streak=20):
    """Polls until, through every node, `streak` consecutive writes to all len(nodes) replicas
    succeed, each on a new connection (so they spread over the node's loop threads): the cluster
    has (re)connected by itself. One success is not enough: right after a peer restarts, a loop
    thread that saw its connect fail may still fail fast for a while. Bounded by timeout."""
    total = len(nodes)
    for i, nd in enumerate(nodes):
        def ok(nd=nd, i=i):
            for _ in range(streak):
                r = put(nd.port, f"__probe__/{i}", b"p", ack=total, frm=total, timeout=10)
                if r.status != 201:
                    raise TestFailure(f"probe PUT {total}/{total} answered {r.status} "
                                      f"{short(r.body, 60)}")
            return True
        poll(ok, timeout, f"{streak} consecutive {total}/{total} writes through node {nd.port} "
                          "(cluster healthy)", 0.1)


# ---------------------------------------------------------------- ordinary requests (http.client)

class Resp:
    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.version = version
        self.chunked = False

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.reason} body={short(self.body, 80)}>"


def q(key):
    """Percent-encodes every byte that is not unreserved (keys may be str or bytes)."""
    return urllib.parse.quote(key, safe="")


def entity_path(key, ack=None, frm=None, raw_key=False):
    p = "/v0/entity?id=" + (key if raw_key else q(key))
    if ack is not None:
        p += f"&ack={ack}"
    if frm is not None:
        p += f"&from={frm}"
    return p


def request(port, method, path, body=None, headers=None, timeout=IO_TIMEOUT):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        resp = Resp(r.status, r.reason, r.getheaders(), data)
        resp.chunked = r.chunked if hasattr(r, "chunked") else False
        return resp
    finally:
        c.close()


def get(port, key, ack=None, frm=None, timeout=IO_TIMEOUT):
    return request(port, "GET", entity_path(key, ack, frm), timeout=timeout)


def put(port, key, value, ack=None, frm=None, timeout=IO_TIMEOUT):
    return request(port, "PUT", entity_path(key, ack, frm), body=value, timeout=timeout)


def delete(port, key, ack=None, frm=None, timeout=IO_TIMEOUT):
    return request(port, "DELETE", entity_path(key, ack, frm), timeout=timeout)


def entities(port, start, end=None, timeout=IO_TIMEOUT):
    p = "/v0/entities?start=" + q(start)
    if end is not None:
        p += "&end=" + q(end)
    return request(port, "GET", p, timeout=timeout)


def status_json(port):
    r = request(port, "GET", "/v0/status")
    check_eq(r.status, 200, "GET /v0/status status")
    return json.loads(r.body.decode("utf-8"))


def b(x):
    return x.encode() if isinstance(x, str) else x


def range_body(items):
    """Expected /v0/entities body for [(key, value)] already in order."""
    return b"".join(b(k) + b"\n" + b(v) for k, v in items)


# -------------------------------------------------------------------------- metrics parsing

_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?\s*$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line; fails on a malformed line."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        check(m is not None, f"malformed metrics line: {line!r}")
        labels = dict(_LABEL_RE.findall(m.group(3) or ""))
        v = m.group(4)
        try:
            val = float(v)
        except ValueError:
            raise TestFailure(f"metric value is not a number: {line!r}")
        out.append((m.group(1), labels, val))
    return out


def metric(samples, name, **labels):
    """Sum of the samples called name whose labels include the given ones (None if none)."""
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    return sum(vals) if vals else None


def get_metrics(port):
    r = request(port, "GET", "/metrics")
    check_eq(r.status, 200, "GET /metrics status")
    return parse_metrics(r.body.decode("utf-8"))


# ------------------------------------------------------------------------------- raw sockets

class Closed(Exception):
    """The peer closed (or reset) the connection."""


class RawConn:
    """A raw TCP connection with a small HTTP/1.1 response parser. Every read is bounded by the
    socket timeout."""

    def __init__(self, port, timeout=IO_TIMEOUT, rcvbuf=None, nodelay=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.sock.connect((HOST, port))
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Sends, ignoring a peer that already closed; returns False if it had."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self):
        if self.eof:
            raise Closed("connection closed")
        try:
            d = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof = True
            raise Closed("connection reset")
        if not d:
            self.eof = True
            raise Closed("connection closed")
        self.buf += d

    def _take_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            check(len(self.buf) <= limit, "response head too large")
            self._fill()

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="GET"):
        """Reads one response (a 1xx is returned as is, with no body). Raises Closed if the
        connection ends first, socket.timeout if nothing comes within the timeout."""
        head = self._take_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        check(len(parts) >= 2 and parts[0].startswith(b"HTTP/"),
              f"malformed status line {short(lines[0])}")
        version = parts[0].decode()
        status = int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        headers = []
        for l in lines[1:]:
            k, sep, v = l.partition(b":")
            check(sep == b":", f"malformed response header {short(l)}")
            headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
        r = Resp(status, reason, headers, b"", version)
        if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if "chunked" in te:
            r.chunked = True
            parts = []
            while True:
                size_line = self._take_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._take_until(b"\r\n") != b"":  # trailers
                        pass
                    break
                parts.append(self._take(size))
                check(self._take(2) == b"\r\n", "chunk not followed by CRLF")
            r.body = b"".join(parts)
        elif cl is not None:
            r.body = self._take(int(cl))
        else:
            while True:  # body until close
                try:
                    self._fill()
                except Closed:
                    break
            r.body, self.buf = self.buf, b""
        return r

    def read_response_or_close(self, method="GET"):
        """A response, or None if the connection was closed/reset before a complete one."""
        try:
            return self.read_response(method)
        except Closed:
            return None

    def wait_closed(self, timeout=10.0):
        """True once the peer has closed (EOF or reset) within timeout; data that arrives
        meanwhile is kept in self.buf. False if still open at the deadline."""
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(min(left, 0.5))
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    self.eof = True
                    return True
                if not d:
                    self.eof = True
                    return True
                self.buf += d
        finally:
            self.sock.settimeout(self.timeout)

    def is_open_now(self):
        """Non-blocking check: False if EOF/reset is already visible."""
        if self.eof:
            return False
        self.sock.setblocking(False)
        try:
            d = self.sock.recv(65536)
            if not d:
                self.eof = True
                return False
            self.buf += d
            return True
        except BlockingIOError:
            return True
        except ConnectionResetError:
            self.eof = True
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def close(self, reset=False):
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     (1).to_bytes(4, "little") + (0).to_bytes(4, "little"))
            self.sock.close()
        except OSError:
            pass


def req_bytes(method, path, body=None, headers=None, version="HTTP/1.1"):
    """Serialises one request; Content-Length added when body is given and not already set."""
    h = [("Host", f"{HOST}")]
    h += list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in h}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        h.append(("Content-Length", str(len(body))))
    out = f"{method} {path} {version}\r\n".encode()
    for k, v in h:
        out += f"{k}: {v}\r\n".encode("latin-1")
    return out + b"\r\n" + (body or b"")


def chunked(parts):
    out = b""
    for p in parts:
        if p:
            out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n\r\n"


def put_many(port, items, batch=100, ack=None, frm=None):
    """PUTs [(key, value)] pipelined over one keep-alive connection; asserts every 201."""
    c = RawConn(port)
    try:
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            c.send(b"".join(req_bytes("PUT", entity_path(k, ack, frm), body=b(v))
                            for k, v in chunk))
            for k, _ in chunk:
                r = c.read_response()
                check_eq(r.status, 201, f"pipelined PUT {short(k)} status")
    finally:
        c.close()


def run_threads(fns, timeout=120):
    """Runs callables in parallel threads; returns their results in order, re-raising the first
    exception. Bounded: fails if any is still running after timeout."""
    results = [None] * len(fns)
    errors = [None] * len(fns)

    def wrap(i, f):
        try:
            results[i] = f()
        except BaseException as e:  # noqa: B902 - reported to the caller
            errors[i] = e

    ts = [threading.Thread(target=wrap, args=(i, f), daemon=True) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    check(not any(t.is_alive() for t in ts), f"threads still running after {timeout}s")
    for e in errors:
        if e is not None:
            raise e
    return results


def recv_queue_bytes(port):
    """Bytes waiting unread in the receive queues of established TCP sockets whose local port is
    port (from /proc/net/tcp*). With the node on port SIGSTOPped, > 0 means a peer has sent it
    a request that nobody is reading."""
    total = 0
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    local, st, queues = cols[1], cols[3], cols[4]
                    if st == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                        total += int(queues.split(":")[1], 16)
        except OSError:
            pass
    return total


def rand_bytes(n, seed):
    return random.Random(seed).randbytes(n)


# ------------------------------------------------------------------------------------ groups

class Group:
    """A group of tests sharing nodes. Subclasses define setup_group() and test_* methods; the
    runner calls them in definition order. Set abstract = True on bases that should not run."""
    abstract = True
    test_timeout = 120  # per test, seconds (enforced by the runner)

    def __init__(self):
        self.nodes = []

    def track(self, node_or_nodes):
        if isinstance(node_or_nodes, list):
            self.nodes.extend(node_or_nodes)
        else:
            self.nodes.append(node_or_nodes)
        return node_or_nodes

    def setup_group(self):
        pass

    def before_each(self):
        pass

    def teardown_group(self):
        for n in self.nodes:
            n.kill()

    def logs(self, n=15):
        return "\n".join(f"--- node {nd.port} log tail:\n" + nd.log_tail(n).replace(" | ", "\n")
                         for nd in self.nodes)
