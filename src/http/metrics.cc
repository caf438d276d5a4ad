#include "http/metrics.h"

#include <llhttp.h>

namespace kv::net {

const double Metrics::kBucketBounds[kBuckets] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                 0.005,  0.01,    0.025,  0.05,  0.1,
                                                 0.25,   0.5,     1.0,    2.5,   1e300};

int Metrics::MethodIndex(int m) {
  switch (m) {
    case HTTP_GET:
      return 0;
    case HTTP_PUT:
      return 1;
    case HTTP_DELETE:
      return 2;
    default:
      return 3;
  }
}

void Metrics::Record(int method, int status, uint64_t latency_ns) {
  if (status < 0 || status >= 600) status = 599;
  requests[MethodIndex(method)][status].fetch_add(1, std::memory_order_relaxed);
  double s = static_cast<double>(latency_ns) / 1e9;
  int b = 0;
  while (b < kBuckets - 1 && s > kBucketBounds[b]) ++b;
  latency_buckets[b].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ns.fetch_add(latency_ns, std::memory_order_relaxed);
  latency_count.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace kv::net
