// Hybrid logical clock: hands out unique, strictly increasing 64-bit versions for writes.
// Caller guarantees: node ids are distinct across the cluster and fit in 10 bits (0..1023).
#pragma once
#include <atomic>
#include <cstdint>

namespace kv::cluster {

// Version layout: bits 63..20 unix wall-clock ms, bits 19..10 logical counter (0..1023),
// bits 9..0 node id. Versions from distinct nodes never tie, and ordering follows wall time when
// clocks agree. All methods are thread-safe and lock-free (one CAS loop on one atomic word).
class Hlc {
 public:
  static constexpr int kNodeBits = 10;
  static constexpr int kLogicalBits = 10;
  static constexpr uint16_t kMaxNode = (1u << kNodeBits) - 1;
  static constexpr uint32_t kMaxLogical = (1u << kLogicalBits) - 1;

  // wall_ms returns unix time in ms; nullptr means CLOCK_REALTIME. node_id must be <= kMaxNode.
  explicit Hlc(uint16_t node_id, uint64_t (*wall_ms)() = nullptr);

  // A version strictly greater than every value Now returned before and every value passed to
  // Observe. Uses max(wall, last ms); same ms -> logical + 1; logical overflow -> ms + 1.
  uint64_t Now();

  // Makes every later Now() return more than remote (e.g. a version seen from a peer).
  void Observe(uint64_t remote);

  // The last value returned or observed (0 before any).
  uint64_t Last() const { return last_.load(std::memory_order_acquire); }
  uint16_t node_id() const { return node_; }

  static uint64_t WallMs(uint64_t v) { return v >> (kNodeBits + kLogicalBits); }
  static uint32_t Logical(uint64_t v) { return (v >> kNodeBits) & kMaxLogical; }
  static uint16_t Node(uint64_t v) { return v & kMaxNode; }
  static uint64_t Make(uint64_t ms, uint32_t logical, uint16_t node) {
    return (ms << (kNodeBits + kLogicalBits)) | (uint64_t{logical & kMaxLogical} << kNodeBits) |
           (node & kMaxNode);
  }

  // CLOCK_REALTIME in ms.
  static uint64_t RealWallMs();

 private:
  const uint16_t node_;
  uint64_t (*const wall_ms_)();
  std::atomic<uint64_t> last_{0};
};

}  // namespace kv::cluster
