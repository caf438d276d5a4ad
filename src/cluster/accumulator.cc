#include "cluster/accumulator.h"

#include <cassert>

namespace kv::cluster {

Accumulator::Accumulator(int ack, int from) : ack_(ack), from_(from) {
  assert(1 <= ack && ack <= from && from <= kMaxReplicas);
  for (int i = 0; i < kMaxReplicas; ++i) {
    kinds_[i].store(static_cast<uint8_t>(AnswerKind::kFailed), std::memory_order_relaxed);
    versions_[i].store(0, std::memory_order_relaxed);
  }
}

bool Accumulator::Fresher(int a, int b) const {
  uint64_t va = versions_[a].load(std::memory_order_relaxed);
  uint64_t vb = versions_[b].load(std::memory_order_relaxed);
  if (va != vb) return va > vb;
  return kind(a) != AnswerKind::kAbsent && kind(b) == AnswerKind::kAbsent;
}

bool Accumulator::Deliver(int replica, AnswerKind kind, uint64_t version) {
  assert(replica >= 0 && replica < from_);
#ifndef NDEBUG
  uint32_t prev_mask = delivered_mask_.fetch_or(1u << replica, std::memory_order_relaxed);
  assert((prev_mask & (1u << replica)) == 0 && "replica delivered twice");
  (void)prev_mask;
#endif
  const bool ok = kind != AnswerKind::kFailed;
  if (ok) {
    // Fill the slot, then publish it as the best if it is fresher. Both happen before this
    // answer is counted, so whoever counts after us and then reads best_ sees at least this.
    kinds_[replica].store(static_cast<uint8_t>(kind), std::memory_order_relaxed);
    versions_[replica].store(kind == AnswerKind::kAbsent ? 0 : version, std::memory_order_relaxed);
    int best = best_.load(std::memory_order_acquire);
    while ((best < 0 || Fresher(replica, best)) &&
           !best_.compare_exchange_weak(best, replica, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
    }
  }
  // acq_rel on the single counter chains every counted answer (and what its caller wrote before
  // it) to the decider.
  const uint32_t prev = counts_.fetch_add(ok ? 1u : kFailureUnit, std::memory_order_acq_rel);
  const int s = static_cast<int>(prev & (kFailureUnit - 1));
  const int f = static_cast<int>(prev >> 16);
  // Only one threshold can ever be reached (ack + from - ack + 1 > from), so crossing it is
  // the decision and happens in exactly one call.
  const bool decides = ok ? s + 1 == ack_ : f + 1 == from_ - ack_ + 1;
  if (!decides) return false;
  succeeded_.store(ok, std::memory_order_relaxed);
  freshest_.store(best_.load(std::memory_order_acquire), std::memory_order_relaxed);
  return true;
}

AnswerKind Accumulator::freshest_kind() const {
  int i = freshest();
  return i < 0 ? AnswerKind::kFailed : kind(i);
}

uint64_t Accumulator::freshest_version() const {
  int i = freshest();
  return i < 0 ? 0 : version(i);
}

int Accumulator::successes() const {
  return static_cast<int>(counts_.load(std::memory_order_acquire) & (kFailureUnit - 1));
}

int Accumulator::failures() const {
  return static_cast<int>(counts_.load(std::memory_order_acquire) >> 16);
}

bool Accumulator::decided() const {
  const uint32_t c = counts_.load(std::memory_order_acquire);
  return static_cast<int>(c & (kFailureUnit - 1)) >= ack_ ||
         static_cast<int>(c >> 16) >= from_ - ack_ + 1;
}

}  // namespace kv::cluster
