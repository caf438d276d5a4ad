// The node's service, one per loop thread: takes each connection the worker classified (HTTP or
// a binary peer), routes /v0/entity (client requests through the coordinator, HTTP peer
// requests to this loop's replica), /v0/entities (streamed range), /v0/status and /metrics,
// and runs the loop's before-poll step (peer frames, then the local replica's commit).
#pragma once
#include <memory>

#include "cluster/coordinator.h"
#include "http/metrics.h"
#include "loop/worker.h"
#include "node/config.h"

namespace kv::net {

// What every loop's service shares; outlives the workers.
struct NodeShared {
  const Config* config = nullptr;
  cluster::ClusterState* cluster = nullptr;
  size_t loops = 0;
  std::unique_ptr<Metrics[]> http_metrics;  // one per loop, indexed by Worker::index()
  cluster::HintShared* hints = nullptr;     // hinted handoff; nullptr: off
};

std::unique_ptr<Service> MakeNodeService(Worker& worker, NodeShared* node);

// The worker options of a node's configuration.
WorkerOptions WorkerOptionsOf(const Config& cfg);

}  // namespace kv::net
