// The node's service, one per loop thread: takes each connection the worker classified (HTTP or
// a binary peer), routes /v0/entity (client requests through the coordinator, HTTP peer
// requests to this loop's replica), /v0/entities (streamed range), /v0/status and /metrics,
// and runs the loop's before-poll step (peer frames, then the local replica's commit).
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "cluster/coordinator.h"
#include "cluster/foreground_load.h"
#include "cluster/repair.h"
#include "http/metrics.h"
#include "loop/worker.h"
#include "node/config.h"
#include "node/repair_link.h"

namespace kv::net {

// A loop's mailbox for work finished on other threads (repair requests the RepairServer ran,
// forced compactions, finished repairs): closures queue here and run on the loop.
struct LoopInbox {
  std::mutex mu;
  uv_async_t* async = nullptr;  // nullptr once the loop closed: posts are dropped
  void* app = nullptr;          // the loop's NodeApp
  std::vector<std::function<void()>> items;
  void Post(std::function<void()> fn);
};

// What every loop's service shares; outlives the workers.
struct NodeShared {
  const Config* config = nullptr;
  cluster::ClusterState* cluster = nullptr;
  size_t loops = 0;
  std::unique_ptr<Metrics[]> http_metrics;  // one per loop, indexed by Worker::index()
  cluster::HintShared* hints = nullptr;     // hinted handoff; nullptr: off
  // Every loop's busy level, for background work that yields to requests; nullptr in tests.
  cluster::ForegroundLoad* load = nullptr;
  // Anti-entropy (cluster/repair.h); all set in a node (main), left null in some tests.
  cluster::RepairServer* repair_server = nullptr;
  cluster::RepairDriver* repair_driver = nullptr;
  cluster::RepairCounters* repair_counters = nullptr;
  RepairLinkImpl* repair_link = nullptr;
  std::mutex inbox_mu;
  std::vector<std::shared_ptr<LoopInbox>> inboxes;  // every loop's, for NotifyRepairDone
};

// Wakes every loop to answer the `POST /v0/admin/repair?wait=1` requests whose repair ended
// (the driver's on_done).
void NotifyRepairDone(NodeShared* node);

std::unique_ptr<Service> MakeNodeService(Worker& worker, NodeShared* node);

// The worker options of a node's configuration.
WorkerOptions WorkerOptionsOf(const Config& cfg);

}  // namespace kv::net
