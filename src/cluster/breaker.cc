#include "cluster/breaker.h"

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

}  // namespace kv::cluster
