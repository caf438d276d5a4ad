"""Command line: --help, rejected flags (exit 2 with a one-line error), cluster of one."""
import os
import subprocess

from harness import (Group, NODE_BIN, Node, TestFailure, check, check_eq, free_ports, mkdtemp,
                     short, status_json, url_of)


def run_node(args, timeout=15):
    """Runs ./node with args to completion (bounded); returns (code, stdout, stderr)."""
    if not os.path.exists(NODE_BIN):
        raise TestFailure(f"{NODE_BIN} does not exist (build it with `make node`)")
    try:
        p = subprocess.run([NODE_BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        # subprocess.run kills the child it started before raising
        raise TestFailure(f"node {' '.join(args)} still running after {timeout}s (killed); "
                          "expected it to exit")
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def expect_usage_error(args):
    code, out, err = run_node(args)
    check(code == 2, f"`node {' '.join(args)}`: expected exit 2, got {code}; "
                     f"stderr={short(err)}")
    lines = [l for l in err.splitlines() if l.strip()]
    check(len(lines) == 1, f"`node {' '.join(args)}`: expected a one-line error on stderr, got "
                           f"{len(lines)} lines: {short(err)}")


class Cli(Group):
    test_timeout = 90

    def setup_group(self):
        self.tmp = mkdtemp("kvit-cli")

    def base(self, port=None):
        (p,) = free_ports(1) if port is None else (port,)
        d = os.path.join(self.tmp, f"d{p}")
        return p, ["--port", str(p), "--data", d]

    def test_help_exits_0(self):
        code, out, err = run_node(["--help"])
        check_eq(code, 0, "--help exit status")
        check("--port" in out + err, f"--help output does not mention --port: {short(out + err)}")

    def test_help_markdown_is_the_help_as_a_table(self):
        code, md, err = run_node(["--help-markdown"])
        check_eq(code, 0, "--help-markdown exit status")
        _, text, _ = run_node(["--help"])
        rows = [l for l in md.splitlines() if l.startswith("| `--")]
        check(len(rows) >= 10, f"--help-markdown printed {len(rows)} flag rows: {short(md)}")
        for row in rows:
            flag = row.split("`")[1].split(" ")[0]
            check(flag in text, f"{flag} is in --help-markdown but not in --help")

    def test_unknown_flag_exits_2(self):
        p, a = self.base()
        expect_usage_error(a + ["--bogus-flag"])

    def test_positional_argument_exits_2(self):
        p, a = self.base()
        expect_usage_error(a + ["stray"])

    def test_missing_port_exits_2(self):
        expect_usage_error(["--data", os.path.join(self.tmp, "noport")])

    def test_port_without_value_exits_2(self):
        expect_usage_error(["--port"])

    def test_malformed_port_exits_2(self):
        d = os.path.join(self.tmp, "badport")
        for bad in ["abc", "99999", "-1", "80x"]:
            expect_usage_error(["--port", bad, "--data", d])

    def test_malformed_numeric_flags_exit_2(self):
        for flag, bad in [("--threads", "abc"), ("--threads", "-1"),
                          ("--max-value-bytes", "lots"), ("--max-connections", "x"),
                          ("--idle-timeout-ms", "-5"), ("--request-timeout-ms", "soon"),
                          ("--memtable-bytes", "1.5.0"), ("--peer-timeout-min-ms", "0")]:
            p, a = self.base()
            expect_usage_error(a + [flag, bad])

    def test_malformed_enum_flags_exit_2(self):
        for flag, bad in [("--peer-protocol", "carrier-pigeon"), ("--fsync", "sometimes"),
                          ("--log-level", "loud"), ("--read-fanout", "most")]:
            p, a = self.base()
            expect_usage_error(a + [flag, bad])

    def test_malformed_cluster_url_exits_2(self):
        p, a = self.base()
        expect_usage_error(a + ["--cluster", f"not-a-url,{url_of(p)}"])

    def test_port_not_in_cluster_exits_2(self):
        p, q, r = free_ports(3)
        _, a = self.base(p)
        expect_usage_error(a + ["--cluster", f"{url_of(q)},{url_of(r)}"])

    def test_unwritable_data_dir_exits_2(self):
        # Tests may run as root, so permissions do not stop writes: use a path whose parent is a
        # regular file, which nobody can create.
        f = os.path.join(self.tmp, "plainfile")
        with open(f, "w") as fh:
            fh.write("x")
        (p,) = free_ports(1)
        expect_usage_error(["--port", str(p), "--data", os.path.join(f, "sub")])
        (p,) = free_ports(1)
        expect_usage_error(["--port", str(p), "--data", f])  # the data dir is a file

    def test_no_cluster_is_cluster_of_one(self):
        (p,) = free_ports(1)
        n = self.track(Node(p).start())
        st = status_json(p)
        check_eq(st.get("cluster_size"), 1, "cluster_size without --cluster")
        n.stop()

    def test_explicit_cluster_of_one(self):
        (p,) = free_ports(1)
        n = self.track(Node(p, cluster_ports=[p]).start())
        st = status_json(p)
        check_eq(st.get("cluster_size"), 1, "cluster_size with --cluster of self")
        check_eq(st.get("url"), url_of(p), "status url")
        n.stop()

    def test_bad_cluster_secret_file_exits_2(self):
        p, a = self.base()
        cases = {"missing": None, "empty": "\n\n", "short": "too-short\n",
                 "three": "".join(f"secret-number-{i}-0123456789\n" for i in range(3))}
        for name, text in cases.items():
            path = os.path.join(self.tmp, f"secret-{name}")
            if text is not None:
                with open(path, "w") as f:
                    f.write(text)
            expect_usage_error(a + ["--cluster-secret-file", path])

    def test_http_peers_without_a_secret_warn_once(self):
        # A node in HTTP peer mode without a secret says at start that peers are unauthenticated;
        # with a secret it does not.
        secret = os.path.join(self.tmp, "secret-ok")
        with open(secret, "w") as f:
            f.write("a-good-secret-0123456789abcdef\n")
        for extra, warns in (([], True), (["--cluster-secret-file", secret], False)):
            (port,) = free_ports(1)
            n = Node(port, mode="http", extra=extra, log_level="warn")
            n.start()
            n.stop()
            with open(n.log_path) as f:
                hits = f.read().count("peer requests over HTTP are not authenticated")
            check_eq(hits, 1 if warns else 0, f"warnings with {extra or 'no secret'}")
