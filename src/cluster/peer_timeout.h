// How long a replica request to one peer may take before it counts as failed: twice the slowest
// answer that peer gave recently, clamped to [min_us, max_us], max_us being the request timeout.
// A hung peer then fails its requests, and opens its circuit breaker, within a few of its normal
// answer times instead of a full request timeout each; a write that needs every replica answers
// 504 as soon.
// "Recently": the current period and the one before (a period is period_us long). A period
// without answers keeps the previous maximum, so a peer that stops answering keeps its short
// timeout. Before the first answer: max_us.
// Caller guarantees: one instance per (Coordinator, peer), used from that loop thread only (no
// locking); every now_us comes from the same steady clock.
#pragma once
#include <cstdint>

namespace kv::cluster {

class PeerTimeout {
 public:
  PeerTimeout(uint64_t min_us, uint64_t max_us, uint64_t period_us = 10'000'000);

  // A successful answer that took answer_us, received at now_us (a steady clock).
  void Record(uint64_t answer_us, uint64_t now_us);
  // The timeout for a request sent at now_us.
  uint64_t timeout_us(uint64_t now_us);
  // Slowest answer in the current and previous period (0: none yet).
  uint64_t slowest_us() const { return cur_max_ > prev_max_ ? cur_max_ : prev_max_; }

 private:
  void Rotate(uint64_t now_us);

  uint64_t min_us_;
  uint64_t max_us_;
  uint64_t period_us_;
  uint64_t period_end_ = 0;  // 0: no answer yet
  uint64_t cur_max_ = 0;
  uint64_t prev_max_ = 0;
};

}  // namespace kv::cluster
