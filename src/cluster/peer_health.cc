#include "cluster/peer_health.h"

#include <algorithm>
#include <cassert>

namespace kv::cluster {

CircuitBreaker::CircuitBreaker(int failure_threshold, uint64_t open_ms, uint64_t max_open_ms)
    : threshold_(failure_threshold < 1 ? 1 : static_cast<uint64_t>(failure_threshold)),
      open_ms_(open_ms),
      max_open_ms_(max_open_ms < open_ms ? open_ms : max_open_ms),
      word_(Pack(State::kClosed, 0, 0)) {}

uint64_t CircuitBreaker::Backoff(uint32_t shift) const {
  uint64_t b = open_ms_;
  for (uint32_t i = 0; i < shift && b < max_open_ms_; ++i) b *= 2;
  return b < max_open_ms_ ? b : max_open_ms_;
}

uint64_t CircuitBreaker::backoff_ms() const {
  return Backoff(ShiftOf(word_.load(std::memory_order_acquire)));
}

bool CircuitBreaker::Allow(uint64_t now_ms) {
  uint64_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    const State s = StateOf(w);
    if (s == State::kClosed) return true;
    const uint64_t since = TimeOf(w);
    const uint64_t wait = s == State::kOpen ? Backoff(ShiftOf(w)) : open_ms_;
    if (now_ms < since + wait) return false;
    // Backoff elapsed (or the probe went missing): race to become the probe. The loser sees
    // a fresh half-open word and returns false above.
    if (word_.compare_exchange_weak(w, Pack(State::kHalfOpen, ShiftOf(w), now_ms),
                                    std::memory_order_acq_rel, std::memory_order_acquire)) {
      return true;
    }
  }
}

void CircuitBreaker::OnSuccess() {
  consecutive_failures_.store(0, std::memory_order_relaxed);
  uint64_t w = word_.load(std::memory_order_acquire);
  const uint64_t closed = Pack(State::kClosed, 0, 0);
  while (w != closed && !word_.compare_exchange_weak(w, closed, std::memory_order_acq_rel,
                                                     std::memory_order_acquire)) {
  }
}

void CircuitBreaker::OnFailure(uint64_t now_ms) {
  total_failures_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t consecutive = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  uint64_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    uint64_t next;
    switch (StateOf(w)) {
      case State::kClosed:
        if (consecutive < threshold_) return;
        next = Pack(State::kOpen, 0, now_ms);
        break;
      case State::kHalfOpen: {
        uint32_t shift = ShiftOf(w);
        if (Backoff(shift) < max_open_ms_ && shift < kShiftMask) ++shift;
        next = Pack(State::kOpen, shift, now_ms);
        break;
      }
      default:
        return;  // already open
    }
    if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return;
    }
  }
}

CircuitBreaker::State CircuitBreaker::state(uint64_t now_ms) const {
  const uint64_t w = word_.load(std::memory_order_acquire);
  const State s = StateOf(w);
  if (s == State::kOpen && now_ms >= TimeOf(w) + Backoff(ShiftOf(w))) return State::kHalfOpen;
  return s;
}

const char* CircuitBreaker::StateName(State s) {
  switch (s) {
    case State::kClosed:
      return "closed";
    case State::kOpen:
      return "open";
    case State::kHalfOpen:
      return "half-open";
  }
  return "?";
}

// ---- PeerTimeout ----

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
