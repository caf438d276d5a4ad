// The node's configuration: command-line flags parsed and validated into one struct.
// ParseArgs touches nothing on disk except checking that the data directory is writable and
// reading --cluster-secret-file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cluster/clock_skew.h"
#include "cluster/coordinator.h"
#include "proto/auth.h"
#include "storage/engine.h"

namespace kv::net {

// kHttp: pooled keep-alive HTTP/1.1 connections, one request in flight on each (the usual HTTP
// client, the baseline); kHttpPipelined: up to 4 connections per peer and loop, pipelined.
enum class PeerProtocol { kBinary, kHttp, kHttpPipelined };
const char* PeerProtocolName(PeerProtocol p);

struct Config {
  uint16_t port = 0;
  std::vector<std::string> cluster;  // all node URLs, this node included
  std::string self_url;
  size_t self_index = 0;  // position of self_url in cluster
  std::string data_dir;
  int threads = 0;
  PeerProtocol peer_protocol = PeerProtocol::kBinary;
  uint64_t max_value_bytes = 8ull << 20;
  uint64_t max_connections = 10000;
  uint64_t idle_timeout_ms = 60000;
  uint64_t header_timeout_ms = 10000;
  uint64_t body_timeout_ms = 30000;
  uint64_t send_timeout_ms = 30000;
  uint64_t peer_handshake_timeout_ms = 10000;
  uint64_t max_pending_handshakes = 64;
  uint64_t request_timeout_ms = 1000;
  uint64_t peer_timeout_min_ms = 200;
  cluster::ReadFanout read_fanout = cluster::ReadFanout::kHedged;
  bool read_repair = true;
  uint64_t max_clock_skew_ms = cluster::kDefaultMaxClockSkewMs;  // 0: writes are not bounded
  int64_t clock_offset_ms = 0;  // for tests: this node's clock runs that far ahead (or behind)
  size_t max_header_bytes = 16 * 1024;
  storage::FsyncPolicy fsync = storage::FsyncPolicy::kPeriodic;
  uint64_t memtable_bytes = 64ull << 20;
  uint64_t tombstone_gc_seconds = 86400;
  bool hinted_handoff = true;
  uint64_t max_hints_bytes = 1ull << 30;    // per target node
  uint64_t hint_replay_rate = 10000;        // hints replayed per second per peer and loop
  uint64_t anti_entropy_interval_s = 3600;  // background repairs; 0: never
  uint64_t repair_rate_mb = 8;              // repair wire bytes per second, in MB
  uint64_t repair_cpu_percent = 25;         // CPU of one core a thread's repair work may use
  int log_level = 1;                        // kv::LogLevel
  // --cluster-secret-file: the path, the keys derived from its secrets (none without the flag),
  // and whether the file is readable by group or others (main warns).
  std::string cluster_secret_file;
  proto::auth::ClusterKeys cluster_keys;
  bool cluster_secret_loose = false;
};

enum class ParseResult { kOk, kHelp, kHelpMarkdown, kError };

// Parses argv into *cfg. kError: *err holds a one-line reason (the caller prints it, exits 2).
// kHelp, kHelpMarkdown: the caller prints Usage() or FlagsMarkdown() and exits 0.
ParseResult ParseArgs(int argc, char** argv, Config* cfg, std::string* err);

// The --help text.
std::string Usage();

// The flags as a markdown table: README.md's section "Running a node" holds it between the
// markers <!-- flags:begin --> and <!-- flags:end --> (`make readme-flags` rewrites it).
std::string FlagsMarkdown();

}  // namespace kv::net
