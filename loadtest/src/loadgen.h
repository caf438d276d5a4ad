// The load engine: T threads, each with its own libuv loop and C/T keep-alive connections, one
// request in flight per connection (as wrk2). With a target rate R (open loop) connection i of
// C sends its k-th request at start + offset_i + k * C / R and the latency recorded is
// completion time minus that scheduled time, so a stall delays and is charged to every request
// that should have been sent during it (coordinated-omission correction). With R = 0 (closed
// loop) each connection sends the next request as soon as the previous one completes and the
// latency is measured from the actual send.
#pragma once
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "histogram.h"
#include "workload.h"

namespace kvload {

constexpr int64_t kPerSecondMax = 60'000'000;  // us: LoadStats::seconds' histograms' range

struct LoadOptions {
  int threads = 2;
  int connections = 10;
  double duration_s = 10;
  double rate = 0;  // total requests/s; 0 = closed loop
  int timeout_ms = 2000;
  bool per_second = false;  // also keep one histogram per second of the run (LoadStats::seconds)
  sockaddr_in addr{};
  WorkloadConfig workload;
};

struct LoadStats {
  Histogram latency_us;   // 1 us .. 60 s, 3 digits
  int64_t completed = 0;  // responses received (any status)
  int64_t bytes_read = 0;
  int64_t not_found = 0;  // 404 to GET: an expected miss, not an error
  int64_t connect_errors = 0, read_errors = 0, write_errors = 0, timeouts = 0;
  int64_t parse_errors = 0;
  std::array<int64_t, 600> status{};  // responses by status code
  std::vector<double> rps_samples;    // per-thread throughput, one sample per ~second
  int64_t ops[3] = {0, 0, 0};         // requests sent by Op
  double elapsed_s = 0;
  // With LoadOptions::per_second: second i holds the requests due (open loop; sent, closed
  // loop) in [start + i s, start + (i + 1) s), 2 significant digits. start_unix: the run's start.
  std::vector<Histogram> seconds;
  double start_unix = 0;

  int64_t errors_status() const;  // >= 400 except 404-on-GET (wrk's "Non-2xx or 3xx")
  int64_t errors_total() const {
    return connect_errors + read_errors + write_errors + timeouts + parse_errors + errors_status();
  }
  void merge(const LoadStats& o);
};

// Runs the load for opt.duration_s and returns the merged statistics.
LoadStats run_load(const LoadOptions& opt);

}  // namespace kvload
