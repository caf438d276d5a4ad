#include "cluster/peer_timeout.h"

#include <algorithm>

namespace kv::cluster {

PeerTimeout::PeerTimeout(uint64_t min_us, uint64_t max_us, uint64_t period_us)
    : min_us_(std::min(min_us, max_us)),
      max_us_(max_us),
      period_us_(std::max<uint64_t>(period_us, 1)) {}

void PeerTimeout::Rotate(uint64_t now_us) {
  if (period_end_ == 0 || now_us < period_end_) return;
  if (cur_max_ != 0) {  // an empty period keeps what the one before it saw
    prev_max_ = cur_max_;
    cur_max_ = 0;
  }
  period_end_ = now_us + period_us_;
}

void PeerTimeout::Record(uint64_t answer_us, uint64_t now_us) {
  if (period_end_ == 0) period_end_ = now_us + period_us_;
  Rotate(now_us);
  cur_max_ = std::max(cur_max_, std::max<uint64_t>(answer_us, 1));
}

uint64_t PeerTimeout::timeout_us(uint64_t now_us) {
  Rotate(now_us);
  const uint64_t slowest = slowest_us();
  if (slowest == 0) return max_us_;
  return std::clamp(2 * slowest, min_us_, max_us_);
}

}  // namespace kv::cluster
