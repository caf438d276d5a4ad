"""A slow network link in user space, for tests with delays between nodes.

This machine's kernel has no netem (nor fq/ETF) qdisc, so a delay on a link cannot be made with tc
in a network namespace. DelayProxy is a TCP forwarder on a loopback port instead: every byte it
receives, in either direction, is delivered to the other side `delay` seconds after it arrived,
in order. A node reached through one (its --cluster address is the proxy's, --self says so, and
it listens on its own port) sees every peer request and answer delayed by `delay` each way: a
round trip of 2 * delay on top of loopback.

One thread serves every connection of a proxy (selectors). An end of stream is delivered after
the bytes before it, as a shutdown of the other side's write half; a reset or error closes both
sockets of that connection at once (bytes still delayed are dropped). Reads do not wait for the
other side to drain: buffering is unbounded, which suits peer requests and answers, not bulk
streams. Connecting to the target blocks the thread (up to 5 s): fine on loopback. close() stops the thread and closes every socket. Only sockets are
touched: no process is started or signalled.
"""
import collections
import selectors
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


class _Pipe:
    """One direction of a proxied connection: bytes read from src wait in `due` until their time,
    then go to `out` and are written to dst as fast as dst takes them."""
    __slots__ = ("src", "dst", "due", "out", "eof_read", "eof_due", "shut")

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.due = collections.deque()  # (time, bytes or None for end of stream)
        self.out = bytearray()
        self.eof_read = False  # src said end of stream
        self.eof_due = False   # ... and its time has come: shut dst's write half once out is sent
        self.shut = False


class DelayProxy:
    def __init__(self, target_port, delay):
        self.target_port = target_port
        self.delay = float(delay)
        self.forwarded = 0  # bytes delivered, both directions
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((HOST, 0))
        self._lsock.listen(128)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._lsock, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._pipes = []  # every live direction
        self._stop = False
        self.error = None  # an unexpected exception that ended the thread
        self._thread = threading.Thread(target=self._run, name=f"delay-proxy-{self.port}",
                                        daemon=True)
        self._thread.start()

    def close(self):
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            return  # stuck (cannot happen short of a bug): leave its sockets to the process exit
        for p in list(self._pipes):
            self._drop(p)
        for s in (self._lsock, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()

    # ---- the thread

    def _run(self):
        try:
            self._loop()
        except Exception as e:  # a bug here: say so, instead of tests timing out in silence
            self.error = e
            sys.stderr.write(f"delay proxy {self.port} -> {self.target_port} died: {e!r}\n")

    def _loop(self):
        while not self._stop:
            now = time.monotonic()
            timeout = None
            for p in self._pipes:
                if p.due:
                    wait = max(0.0, p.due[0][0] - now)
                    timeout = wait if timeout is None else min(timeout, wait)
            for key, events in self._sel.select(timeout):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._wake_r.recv(64)
                else:
                    self._on_socket(key.fileobj, events)
            now = time.monotonic()
            for p in list(self._pipes):
                self._deliver(p, now)

    def _accept(self):
        try:
            client, _ = self._lsock.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            upstream = socket.create_connection((HOST, self.target_port), timeout=5)
        except OSError:
            client.close()  # the target is down: the connecting peer sees the close
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pipes.append(_Pipe(client, upstream))
        self._pipes.append(_Pipe(upstream, client))
        self._update(client)
        self._update(upstream)

    def _pipes_of(self, sock):
        """(pipe reading sock, pipe writing sock)."""
        reading = writing = None
        for p in self._pipes:
            if p.src is sock:
                reading = p
            if p.dst is sock:
                writing = p
        return reading, writing

    def _update(self, sock):
        """Registers sock for what its pipes need: reading until end of stream, writing while
        bytes wait for it."""
        reading, writing = self._pipes_of(sock)
        events = 0
        if reading is not None and not reading.eof_read:
            events |= selectors.EVENT_READ
        if writing is not None and writing.out:
            events |= selectors.EVENT_WRITE
        try:
            key = self._sel.get_key(sock)
        except (KeyError, ValueError):
            key = None
        if events == 0:
            if key is not None:
                self._sel.unregister(sock)
        elif key is None:
            self._sel.register(sock, events, "conn")
        elif key.events != events:
            self._sel.modify(sock, events, "conn")

    def _on_socket(self, sock, events):
        reading, writing = self._pipes_of(sock)
        if events & selectors.EVENT_READ and reading is not None:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None  # spurious wake-up
            except OSError:
                self._drop(reading)
                return
            if data:
                reading.due.append((time.monotonic() + self.delay, data))
            elif data is not None:  # b"": end of stream
                reading.eof_read = True
                reading.due.append((time.monotonic() + self.delay, None))
                self._update(sock)
        if events & selectors.EVENT_WRITE and writing is not None and writing in self._pipes:
            self._flush(writing)

    def _deliver(self, p, now):
        if p not in self._pipes:
            return
        while p.due and p.due[0][0] <= now:
            _, data = p.due.popleft()
            if data is None:
                p.eof_due = True
            else:
                p.out += data
        self._flush(p)

    def _flush(self, p):
        if p.out:
            try:
                n = p.dst.send(p.out)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self._drop(p)
                return
            del p.out[:n]
            self.forwarded += n
        if not p.out and p.eof_due and not p.shut:
            p.shut = True
            try:
                p.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if all(o.shut for o in self._pipes if o.src in (p.src, p.dst)):
                self._drop(p)  # both directions ended
                return
        self._update(p.dst)

    def _drop(self, p):
        """Closes both sockets of p's connection and forgets both directions."""
        for s in (p.src, p.dst):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self._pipes = [o for o in self._pipes if o.src not in (p.src, p.dst)]
