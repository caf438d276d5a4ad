// ./node: flags -> config -> storage + cluster state -> server; then wait for SIGTERM/SIGINT.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cluster/coordinator.h"
#include "cluster/foreground_load.h"
#include "cluster/hints.h"
#include "cluster/local_replica.h"
#include "cluster/repair.h"
#include "common/log.h"
#include "loop/worker.h"
#include "node/config.h"
#include "node/node_app.h"
#include "proto/auth.h"
#include "storage/engine.h"

int main(int argc, char** argv) {
  kv::net::Config cfg;
  std::string err;
  switch (kv::net::ParseArgs(argc, argv, &cfg, &err)) {
    case kv::net::ParseResult::kHelp:
      fputs(kv::net::Usage().c_str(), stdout);
      return 0;
    case kv::net::ParseResult::kHelpMarkdown:
      fputs(kv::net::FlagsMarkdown().c_str(), stdout);
      return 0;
    case kv::net::ParseResult::kError:
      fprintf(stderr, "node: %s\n", err.c_str());
      return 2;
    case kv::net::ParseResult::kOk:
      break;
  }
  kv::set_log_level(static_cast<kv::LogLevel>(cfg.log_level));
  // Buffers of up to a few MiB (range pages: 1 MiB by default, 8 MiB at most; answers) come and
  // go many times a second in a range stream. With glibc's defaults each one was mapped fresh or
  // the freed space trimmed from the thread's arena (madvise) and faulted in again by the next:
  // ~10% of a cluster range coordinator's CPU. Kept in the arenas instead, up to 16 MiB free at
  // an arena's top before it is given back.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  if (!kv::proto::auth::Init()) {
    fprintf(stderr, "node: cannot initialise libsodium\n");
    return 1;
  }
  if (cfg.cluster_keys.enabled()) {
    LOG_INFO("peers authenticated with %zu secret(s) from %s", cfg.cluster_keys.count,
             cfg.cluster_secret_file.c_str());
    if (cfg.cluster_secret_loose) {
      LOG_WARN("cluster secret file %s is readable by group or others: chmod 600 it",
               cfg.cluster_secret_file.c_str());
    }
  } else if (cfg.peer_protocol != kv::net::PeerProtocol::kBinary) {
    LOG_WARN(
        "peer requests over HTTP are not authenticated: anyone who can reach port %u can "
        "write replica data with X-KV-Internal; give every node --cluster-secret-file",
        cfg.port);
  }

  // Every thread started from here on inherits this mask; only sigwait below sees the signals.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Anti-entropy: ranges, and the history of full repairs the tombstone GC rule rests on (a
  // cluster purges a tombstone only once a repair that started after it reached every replica
  // of its range; a single node keeps the age rule alone). Built before the engine opens, so its
  // first compaction already follows the rule.
  kv::cluster::Ring range_ring(cfg.cluster);
  kv::cluster::RangeMap ranges(&range_ring, cfg.cluster.size());
  kv::cluster::RepairHistory history(cfg.data_dir + "/repair-history");
  if (!history.Load(&err)) LOG_WARN("%s", err.c_str());
  kv::storage::Options opts;
  if (cfg.cluster.size() > 1) {
    opts.tombstone_gc_filter = kv::cluster::TombstoneGcRule{
        &ranges, &history, (cfg.max_clock_skew_ms + cfg.request_timeout_ms) * 1000};
  }
  opts.dir = cfg.data_dir;
  opts.fsync = cfg.fsync;
  opts.memtable_bytes = cfg.memtable_bytes;
  opts.tombstone_gc_seconds = cfg.tombstone_gc_seconds;
  std::unique_ptr<kv::storage::Engine> engine;
  kv::storage::Status st = kv::storage::Engine::Open(opts, &engine);
  if (!st.ok()) {
    fprintf(stderr, "node: cannot open data dir %s: %s\n", cfg.data_dir.c_str(),
            st.message().c_str());
    return 1;
  }

  kv::cluster::ClusterState cluster(cfg.cluster, cfg.self_index, engine.get());
  cluster.max_clock_skew_ms = cfg.max_clock_skew_ms;
  cluster.hlc.set_offset_us(cfg.clock_offset_ms * 1000);
  if (cfg.clock_offset_ms != 0) {
    LOG_WARN("--clock-offset-ms %lld: this node's clock reads that far off (a test setting)",
             static_cast<long long>(cfg.clock_offset_ms));
  }
  // --fsync always: one thread runs the fdatasyncs for every loop (group commit), so no loop
  // waits on the disk: it reads, parses and appends the next requests while a sync runs, and the
  // sync covers everything appended before it starts. A single node too: syncing on its loop
  // stopped it for every sync (12.0K vs 23.6K PUT/s with the committer, 2-core VM, busy disk).
  std::unique_ptr<kv::cluster::GroupCommitter> committer;
  if (cfg.fsync == kv::storage::FsyncPolicy::kAlways) {
    committer = std::make_unique<kv::cluster::GroupCommitter>(engine.get());
    cluster.committer = committer.get();
  }
  // Hinted handoff: a single node has no peer to hint.
  std::unique_ptr<kv::cluster::HintShared> hints;
  if (cfg.hinted_handoff && cfg.cluster.size() > 1) {
    kv::cluster::HintOptions ho;
    ho.dir = cfg.data_dir + "/hints";
    ho.max_bytes = cfg.max_hints_bytes;
    ho.grace_us = cfg.tombstone_gc_seconds * 1000000;
    ho.replay_per_second = cfg.hint_replay_rate;
    hints = std::make_unique<kv::cluster::HintShared>();
    if (!hints->Open(ho, cfg.cluster, &err)) {
      fprintf(stderr, "node: %s\n", err.c_str());
      return 1;
    }
  }
  kv::cluster::RepairCounters repair_counters;
  kv::cluster::RepairStore repair_store(engine.get(), &cluster.hlc, &ranges, cfg.max_clock_skew_ms,
                                        &repair_counters);
  repair_store.set_cpu_percent(static_cast<uint32_t>(cfg.repair_cpu_percent));
  // Hint replay and repair slow down while the loops are busy with requests.
  kv::cluster::ForegroundLoad load(static_cast<size_t>(cfg.threads));
  repair_store.set_foreground(&load);
  kv::cluster::RepairServer repair_server(&repair_store);
  kv::net::RepairLinkImpl repair_link;
  kv::cluster::RepairDriverOptions ro;
  ro.rate_bytes_per_s = cfg.repair_rate_mb * 1000000;
  ro.interval_s = cfg.cluster.size() > 1 ? cfg.anti_entropy_interval_s : 0;
  kv::cluster::RepairDriver repair_driver(&repair_store, cfg.self_index, &history, &repair_link,
                                          ro);
  kv::net::NodeShared node;
  node.repair_server = &repair_server;
  node.repair_driver = &repair_driver;
  node.repair_counters = &repair_counters;
  node.repair_link = &repair_link;
  repair_driver.set_on_done([&node](uint64_t) { kv::net::NotifyRepairDone(&node); });
  node.hints = hints.get();
  node.load = &load;
  node.config = &cfg;
  node.cluster = &cluster;
  node.loops = static_cast<size_t>(cfg.threads);
  node.http_metrics = std::make_unique<kv::net::Metrics[]>(node.loops);
  kv::net::Server server(kv::net::WorkerOptionsOf(cfg), [&node](kv::net::Worker& w) {
    return kv::net::MakeNodeService(w, &node);
  });
  if (!server.Start(&err)) {
    fprintf(stderr, "node: %s\n", err.c_str());
    return 1;
  }
  LOG_INFO("node %s listening on port %u (%d threads, %zu nodes, %s peers, data %s)",
           cfg.self_url.c_str(), cfg.port, cfg.threads, cfg.cluster.size(),
           kv::net::PeerProtocolName(cfg.peer_protocol), cfg.data_dir.c_str());
  repair_driver.StartBackground();

  int sig = 0;
  sigwait(&stop_signals, &sig);
  LOG_INFO("signal %d: draining", sig);
  // Repair first: its calls fail at once, the driver ends, queued peer requests are refused.
  repair_link.Close();
  repair_driver.Stop();
  repair_server.Stop();
  server.Stop();

  // Busy connections get 8 s to finish; then they are closed so the node exits within 10 s.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread waiter([&] {
    server.Wait();
    std::lock_guard<std::mutex> g(mu);
    done = true;
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lk(mu);
    if (!cv.wait_for(lk, std::chrono::seconds(8), [&] { return done; })) {
      LOG_WARN("connections still busy after 8 s: closing them");
      server.ForceStop();
    }
  }
  waiter.join();
  if (committer) committer->Stop();  // every loop drained its batches when it closed
  st = engine->Flush();
  if (!st.ok()) LOG_ERROR("flush at shutdown: %s", st.message().c_str());
  engine.reset();
  LOG_INFO("stopped");
  return 0;
}
