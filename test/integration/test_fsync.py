"""--fsync always: every PUT is answered 201 only once its record is on disk, through the group
commit (one fdatasync for every write handed over before it started), on a single node and in a
3-node cluster; /metrics counts the group commit (kv_fsync_syncs_total, kv_fsync_writes_total:
writes per sync is their ratio) and shows zeros under another policy. SIGKILL then restart keeps
every acknowledged write (the process dies, the page cache survives: the unit tests with a held
fdatasync, test/unit/cluster/local_replica_test.cc, prove the order sync-then-answer)."""
from harness import (Group, check, check_eq, get, get_metrics, metric, put, run_threads,
                     start_cluster, start_single, wait_healthy)

FSYNC_COUNTERS = ["kv_fsync_syncs_total", "kv_fsync_writes_total", "kv_fsync_sync_seconds_total",
                  "kv_fsync_queue_seconds_total", "kv_fsync_wake_seconds_total"]


def put_all(port, prefix, threads, per_thread, ack=None, frm=None):
    """PUTs threads x per_thread keys from concurrent clients; asserts every 201; returns them."""
    def writer(t):
        got = {}
        for i in range(per_thread):
            k, v = f"{prefix}/{t}/{i}", f"v{t}-{i}".encode()
            check_eq(put(port, k, v, ack=ack, frm=frm).status, 201, f"PUT {k}")
            got[k] = v
        return got

    want = {}
    for part in run_threads([lambda t=t: writer(t) for t in range(threads)]):
        want.update(part)
    return want


class FsyncAlways(Group):
    def test_single_node_group_commit_counted_and_kept_after_sigkill(self):
        n = self.track(start_single(extra=["--fsync", "always"]))
        before = get_metrics(n.port)
        for name in FSYNC_COUNTERS:
            check(metric(before, name) is not None, f"/metrics has {name}")
        want = put_all(n.port, "gc", threads=8, per_thread=25)
        m = get_metrics(n.port)
        writes = metric(m, "kv_fsync_writes_total") - metric(before, "kv_fsync_writes_total")
        syncs = metric(m, "kv_fsync_syncs_total") - metric(before, "kv_fsync_syncs_total")
        # Every acknowledged PUT went through the group commit, and one sync covers >= 1 write.
        check_eq(writes, len(want), "kv_fsync_writes_total after the PUTs")
        check(1 <= syncs <= writes, f"{syncs} syncs for {writes} writes")
        check(metric(m, "kv_fsync_sync_seconds_total") > 0, "time in fdatasync counted")
        n.kill()
        n.start()
        for k, v in want.items():
            r = get(n.port, k)
            check_eq((r.status, r.body), (200, v), f"after SIGKILL, {k}")
        n.stop()

    def test_periodic_node_shows_zeros(self):
        n = self.track(start_single(extra=["--fsync", "periodic"]))
        put_all(n.port, "p", threads=2, per_thread=5)
        m = get_metrics(n.port)
        for name in FSYNC_COUNTERS:
            check_eq(metric(m, name), 0, name)
        n.stop()

    def test_cluster_every_replica_syncs_before_acknowledging(self):
        ns = self.track(start_cluster(3, "binary", extra=["--fsync", "always"]))
        before = [metric(get_metrics(nd.port), "kv_fsync_writes_total") for nd in ns]
        want = put_all(ns[0].port, "c", threads=4, per_thread=20, ack=3, frm=3)
        for nd, b in zip(ns, before):
            # ack 3 of 3: each replica answered every write only after its own sync.
            got = metric(get_metrics(nd.port), "kv_fsync_writes_total") - b
            check(got >= len(want), f"node {nd.port}: {got} writes synced, {len(want)} PUT 3/3")
        for nd in ns:
            nd.kill()
        for nd in ns:
            nd.start(wait=False)
        for nd in ns:
            nd.wait_ready()
        wait_healthy(ns)
        for k, v in want.items():
            r = get(ns[0].port, k, ack=3, frm=3)
            check_eq((r.status, r.body), (200, v), f"after SIGKILL of every node, {k} 3/3")
        # Read repair (on by default) finds no replica without a key: each kept every write.
        m = get_metrics(ns[0].port)
        check_eq(metric(m, "kv_read_repairs_total"), 0, "read repairs after the restart")
        for nd in ns:
            nd.stop()
