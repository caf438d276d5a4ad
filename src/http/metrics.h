// Per-loop counters of the HTTP server side, written by the loop thread, read by /metrics from
// any thread.
#pragma once
#include <atomic>
#include <cstdint>

namespace kv::net {

struct Metrics {
  static constexpr int kMethods = 4;  // GET, PUT, DELETE, other
  static constexpr int kBuckets = 15;
  static const double kBucketBounds[kBuckets];  // seconds; the last is +Inf
  std::atomic<uint64_t> requests[kMethods][600] = {};
  std::atomic<uint64_t> latency_buckets[kBuckets] = {};  // non-cumulative
  std::atomic<uint64_t> latency_sum_ns{0};
  std::atomic<uint64_t> latency_count{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> rejected_connections{0};

  void Record(int method, int status, uint64_t latency_ns);
  static int MethodIndex(int llhttp_method);
};

}  // namespace kv::net
