// Lock-free completion of one replicated request: counts replica answers and elects, exactly
// once, the answer that decides the outcome. Caller guarantees: each replica is delivered at most
// once, and the Accumulator outlives every Deliver call.
#pragma once
#include <atomic>
#include <cstdint>

namespace kv::cluster {

enum class AnswerKind : uint8_t { kFailed, kAbsent, kValue, kTombstone, kStored };

// Answers may arrive from any thread in any order. All answers go through one atomic counter
// word (successes and failures packed together, one acq_rel fetch_add each), so they have a
// single total order and the answer that reaches a threshold first is the only decider. Since
// ack + (from - ack + 1) > from, at most one threshold can ever be reached, and once all `from`
// answers are in exactly one has been. No mutex, no spinning on other threads' progress.
//
// Memory ordering contract: if a caller writes per-replica data (e.g. the value bytes of
// replica i) BEFORE calling Deliver(i, ...), the thread whose Deliver returns true may read the
// data of every replica whose answer was counted before (or by) the deciding call, and of
// freshest(). Data of answers delivered after the decision must not be read without other
// synchronization (those callers get false and should just drop their data or keep ownership).
class Accumulator {
 public:
  static constexpr int kMaxReplicas = 16;

  // Requires 1 <= ack <= from <= kMaxReplicas.
  Accumulator(int ack, int from);

  Accumulator(const Accumulator&) = delete;
  Accumulator& operator=(const Accumulator&) = delete;

  // replica in [0, from), each delivered at most once, from any thread. Any kind but kFailed is
  // a success; version is ignored for kFailed and taken as 0 for kAbsent. Returns true for
  // exactly one call over the accumulator's life: the ack-th success (outcome success) or the
  // (from - ack + 1)-th failure (outcome failure). Every other call returns false.
  bool Deliver(int replica, AnswerKind kind, uint64_t version);

  // The getters below are valid after the deciding Deliver returned true, on that thread or on
  // any thread that synchronizes with it (they are then frozen).
  bool succeeded() const { return succeeded_.load(std::memory_order_relaxed); }
  // Replica index of the highest-version non-failed answer among those counted by the time of
  // the decision (at least all answers counted up to and including the decider; possibly also
  // answers racing with it). Ties keep the earlier answer, except that a real answer beats
  // kAbsent at the same version. -1 if there was none.
  int freshest() const { return freshest_.load(std::memory_order_relaxed); }
  AnswerKind freshest_kind() const;
  uint64_t freshest_version() const;

  // Progress so far (any thread; a racy snapshot while answers are still arriving).
  int successes() const;
  int failures() const;
  bool decided() const;

  int ack() const { return ack_; }
  int from() const { return from_; }

  // The kind/version recorded for a replica that has been delivered and whose Deliver
  // happens-before this call (for callers inspecting all answers, e.g. read repair).
  AnswerKind kind(int replica) const {
    return static_cast<AnswerKind>(kinds_[replica].load(std::memory_order_relaxed));
  }
  uint64_t version(int replica) const { return versions_[replica].load(std::memory_order_relaxed); }

 private:
  static constexpr uint32_t kFailureUnit = 1u << 16;  // failures in the high half of counts_

  // Ranking of a non-failed answer: version first, then real answers above kAbsent.
  bool Fresher(int a, int b) const;

  const int ack_;
  const int from_;
  std::atomic<uint32_t> counts_{0};  // low 16 bits successes, high 16 bits failures
  std::atomic<int> best_{-1};        // freshest non-failed answer published so far
  std::atomic<int> freshest_{-1};    // frozen by the decider
  std::atomic<bool> succeeded_{false};
#ifndef NDEBUG
  std::atomic<uint32_t> delivered_mask_{0};
#endif
  std::atomic<uint8_t> kinds_[kMaxReplicas];
  std::atomic<uint64_t> versions_[kMaxReplicas];
};

}  // namespace kv::cluster
