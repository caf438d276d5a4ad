// When to ask the remaining replicas of a GET: the coordinator asks `ack` replicas first and the
// others only if those have not all answered within delay_us(), the p99 of the last window of
// remote answer times rounded up to its histogram bucket, within [kMinUs, max_us].
// Caller guarantees: one instance per Coordinator, used from its loop thread only (no locking).
#pragma once
#include <cstdint>

namespace kv::cluster {

class HedgeDelay {
 public:
  // Until the first window is full the delay is initial_us; always within [kMinUs, max_us].
  HedgeDelay(uint64_t initial_us, uint64_t max_us);

  // One remote answer time. Every kWindow answers the delay becomes that window's p99.
  void Record(uint64_t micros);
  uint64_t delay_us() const { return delay_us_; }

  static constexpr uint64_t kMinUs = 100;
  static constexpr uint32_t kWindow = 1024;

  // Log-linear buckets: exact below 8 us, then 4 per power of two (at most 25% wide), the last
  // open-ended. Bucket(v) is the bucket holding v; UpperBound(b) the smallest value above it.
  static constexpr int kBuckets = 8 + 4 * 28;
  static int Bucket(uint64_t micros);
  static uint64_t UpperBound(int bucket);

 private:
  uint64_t max_us_;
  uint64_t delay_us_;
  uint32_t n_ = 0;
  uint32_t counts_[kBuckets] = {};
};

}  // namespace kv::cluster
