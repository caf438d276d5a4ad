// Peer health, the two things a coordinator knows of each peer before it sends to it: its circuit
// breaker (whether to send at all) and its replica request timeout (how long to wait).
//
// CircuitBreaker: for one peer node, shared by every loop thread: stops sending to a peer that
// keeps failing and lets a single probe through after a backoff. Caller guarantees: now_ms comes
// from one monotonic ms clock shared by all callers, and every Allow() that returned true is
// followed by OnSuccess() or OnFailure() once the request completes.
//
// PeerTimeout: how long a replica request to one peer may take before it counts as failed: twice
// the slowest answer that peer gave recently, clamped to [min_us, max_us], max_us being the
// request timeout.
// A hung peer then fails its requests, and opens its circuit breaker, within a few of its normal
// answer times instead of a full request timeout each; a write that needs every replica answers
// 504 as soon.
// "Recently": the current period and the one before (a period is period_us long). A period
// without answers keeps the previous maximum, so a peer that stops answering keeps its short
// timeout. Before the first answer: max_us.
// Caller guarantees: one instance per (Coordinator, peer), used from that loop thread only (no
// locking); every now_us comes from the same steady clock.
#pragma once
#include <atomic>
#include <cstdint>

namespace kv::cluster {

// closed -> (failure_threshold consecutive failures) -> open -> (backoff elapsed, first Allow) ->
// half-open with one probe -> success: closed / failure: open with doubled backoff (capped).
// A probe that is neither answered nor failed within open_ms is replaced by a new probe.
// Lock-free: the state, the time it was entered and the backoff exponent share one atomic word.
// Any success closes; any failure seen while half-open counts as the probe's failure.
class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  explicit CircuitBreaker(int failure_threshold = 5, uint64_t open_ms = 1000,
                          uint64_t max_open_ms = 8000);

  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Whether a request may be sent now. Closed: true. Open: false until the backoff has elapsed
  // since it opened, then true for exactly one caller (the probe; state becomes half-open).
  // Half-open: false while the probe is outstanding, unless it has been for open_ms or more,
  // in which case exactly one caller gets true as the new probe.
  bool Allow(uint64_t now_ms);

  // Closes; resets consecutive failures and the backoff to open_ms.
  void OnSuccess();
  // Counts a failure; opens at failure_threshold consecutive failures; a failure while
  // half-open re-opens with the backoff doubled (capped at max_open_ms). Failures while already
  // open (late answers to requests sent before it opened) do not extend the backoff.
  void OnFailure(uint64_t now_ms);

  // The stored state, except that open with its backoff elapsed reports kHalfOpen (the next
  // Allow lets a probe through).
  State state(uint64_t now_ms) const;
  uint64_t total_failures() const { return total_failures_.load(std::memory_order_relaxed); }
  uint64_t consecutive_failures() const {
    return consecutive_failures_.load(std::memory_order_relaxed);
  }
  // The backoff the breaker uses (or would use) for its current/next open period.
  uint64_t backoff_ms() const;

  static const char* StateName(State s);

 private:
  // word_ layout: bits 0..1 state, bits 2..7 backoff exponent, bits 8..63 ms the state began.
  static constexpr uint64_t kStateMask = 3;
  static constexpr int kShiftPos = 2;
  static constexpr uint64_t kShiftMask = 63;
  static constexpr int kTimePos = 8;

  static uint64_t Pack(State s, uint32_t shift, uint64_t ms) {
    return static_cast<uint64_t>(s) | (uint64_t{shift} << kShiftPos) | (ms << kTimePos);
  }
  static State StateOf(uint64_t w) { return static_cast<State>(w & kStateMask); }
  static uint32_t ShiftOf(uint64_t w) { return (w >> kShiftPos) & kShiftMask; }
  static uint64_t TimeOf(uint64_t w) { return w >> kTimePos; }
  uint64_t Backoff(uint32_t shift) const;

  const uint64_t threshold_;
  const uint64_t open_ms_;
  const uint64_t max_open_ms_;
  std::atomic<uint64_t> word_;
  std::atomic<uint64_t> consecutive_failures_{0};
  std::atomic<uint64_t> total_failures_{0};
};

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
