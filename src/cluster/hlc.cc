#include "cluster/hlc.h"

#include <time.h>

#include <cassert>

namespace kv::cluster {

Hlc::Hlc(uint16_t node_id, uint64_t (*wall_ms)())
    : node_(node_id), wall_ms_(wall_ms != nullptr ? wall_ms : &Hlc::RealWallMs) {
  assert(node_id <= kMaxNode);
}

uint64_t Hlc::RealWallMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

uint64_t Hlc::Now() {
  // Read the wall clock once: a retry only happens because another thread advanced last_, and
  // the result is then derived from that newer value anyway.
  const uint64_t wall = wall_ms_();
  uint64_t last = last_.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t ms = WallMs(last);
    uint32_t logical = 0;
    if (wall > ms) {
      ms = wall;
    } else if (Logical(last) < kMaxLogical) {
      logical = Logical(last) + 1;
    } else {
      ++ms;  // counter exhausted within this ms: borrow the next ms
    }
    uint64_t next = Make(ms, logical, node_);
    if (last_.compare_exchange_weak(last, next, std::memory_order_acq_rel,
                                    std::memory_order_relaxed)) {
      return next;
    }
  }
}

void Hlc::Observe(uint64_t remote) {
  uint64_t last = last_.load(std::memory_order_relaxed);
  while (last < remote && !last_.compare_exchange_weak(last, remote, std::memory_order_acq_rel,
                                                       std::memory_order_relaxed)) {
  }
}

}  // namespace kv::cluster
