// Hybrid logical clock: hands out unique, strictly increasing 64-bit versions for writes.
// Caller guarantees: node ids are distinct across the cluster and fit in 10 bits (0..1023).
#pragma once
#include <atomic>
#include <cstdint>

#include "common/version.h"

namespace kv::cluster {

// Versions use the layout of common/version.h: bit 63 set, unix microseconds, 10-bit node id.
// The node id makes versions of distinct nodes unique; the microseconds make a write that starts
// after another was acknowledged get the greater version when the nodes' clocks agree (unless the
// first node's versions ran ahead of its clock, by borrowing or by observing a faster peer, by
// more than the time between the two writes). Every version it returns is greater than every
// legacy (ms layout) version. Observe trusts what it is given: bounding how far ahead a version
// may be is the caller's (LocalReplica refuses a write more than --max-clock-skew-ms ahead of
// WallUs() and observes only what it accepts). All methods are thread-safe and lock-free (one CAS
// loop on one atomic word). proto_spec/peer-protocol.md 1.1 says what clock skew does.
class Hlc {
 public:
  static constexpr uint16_t kMaxNode = version::kMaxNode;

  // wall_us returns unix time in microseconds; nullptr means CLOCK_REALTIME. node_id must be
  // <= kMaxNode.
  explicit Hlc(uint16_t node_id, uint64_t (*wall_us)() = nullptr);

  // A version strictly greater than every value Now returned before and every value passed to
  // Observe: microseconds max(wall, last microseconds + 1). Several writes within one wall
  // microsecond borrow the following microseconds; the wall clock catches up afterwards.
  uint64_t Now();

  // Makes every later Now() return more than remote (e.g. a version seen from a peer). A legacy
  // remote needs nothing (every Now() exceeds it) but is still recorded in Last().
  void Observe(uint64_t remote);

  // The greatest value returned or observed (0 before any).
  uint64_t Last() const { return last_.load(std::memory_order_acquire); }
  uint16_t node_id() const { return node_; }

  // This node's notion of the wall clock, in unix microseconds: wall_us() plus the offset (0
  // unless a test set one). Now() follows it; LocalReplica bounds accepted versions by it.
  uint64_t WallUs() const;
  // For tests only (--clock-offset-ms): shifts WallUs() by offset_us, as if this node's clock
  // were that far ahead (negative: behind). Set before versions are made.
  void set_offset_us(int64_t offset_us) { offset_us_.store(offset_us, std::memory_order_relaxed); }

  // CLOCK_REALTIME in microseconds.
  static uint64_t RealWallUs();

 private:
  const uint16_t node_;
  uint64_t (*const wall_us_)();
  std::atomic<uint64_t> last_{0};
  std::atomic<int64_t> offset_us_{0};
};

}  // namespace kv::cluster
