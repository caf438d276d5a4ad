// A cluster-wide range read (GET /v0/entities?scope=cluster): pages from every peer (RANGE
// requests through its transport) and this node's own entries read from its engine, merged by
// cluster::RangeMerge and streamed to the client as the local range is (chunked
// `key \n value` records). The answer waits for every node's first page: a range that cannot
// be read completely (`from` nodes failed) is a 504 before the first byte; once streaming, such
// a failure aborts the stream without its final chunk (the connection closes).
// Back-pressure: pages are asked for only as the merge consumes them (RangeMerge), and the
// merge runs only while the client connection has little unsent output (HttpConnection pulls
// the stream), so a slow client slows the peers' streams and no node buffers the range.
// Loop thread only; the read frees itself once answered and its last page request came back.
#pragma once
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "cluster/coordinator.h"
#include "cluster/local_replica.h"
#include "http/http.h"

namespace kv::net {

struct ClusterRangeRead {
  std::string start;
  std::optional<std::string> end;
  uint64_t limit = 0;  // records at most; 0: all
  size_t from = 1;     // the replication factor: the range fails once this many nodes failed
};

struct ClusterRangeEnv {
  cluster::Coordinator* coordinator = nullptr;  // its transports reach the peers
  cluster::LocalReplica* local = nullptr;       // this node's replica
  size_t self = 0;
  size_t nodes = 0;
  uv_loop_t* loop = nullptr;       // for deadlines (uv_now)
  uint64_t timeout_ms = 1000;      // per page request
  uint32_t page_bytes = 1u << 20;  // max_bytes of each page request
  uint32_t page_keys = 1u << 16;   // max_keys of each page request
};

// Starts the read; r is answered (504, or a 200 stream) once every node's first page came.
void StartClusterRange(const ClusterRangeEnv& env, ClusterRangeRead read, Responder r);

}  // namespace kv::net
