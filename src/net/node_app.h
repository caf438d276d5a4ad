// The node's request handler, one per loop thread: routes /v0/entity (client and internal
// replica requests), /v0/entities (streamed range), /v0/status and /metrics, and hands binary
// peer connections to the binary protocol server.
#pragma once
#include <memory>

#include "cluster/coordinator.h"
#include "net/http.h"
#include "net/server.h"

namespace kv::net {

// Builds the handler for one worker; `cluster` must outlive every worker.
std::unique_ptr<RequestHandler> MakeNodeApp(Worker& worker, cluster::ClusterState* cluster);

}  // namespace kv::net
