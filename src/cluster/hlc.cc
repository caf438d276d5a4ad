#include "cluster/hlc.h"

#include <time.h>

#include <algorithm>
#include <cassert>

namespace kv::cluster {

Hlc::Hlc(uint16_t node_id, uint64_t (*wall_us)())
    : node_(node_id), wall_us_(wall_us != nullptr ? wall_us : &Hlc::RealWallUs) {
  assert(node_id <= kMaxNode);
}

uint64_t Hlc::RealWallUs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

uint64_t Hlc::WallUs() const {
  return wall_us_() + static_cast<uint64_t>(offset_us_.load(std::memory_order_relaxed));
}

uint64_t Hlc::Now() {
  // Read the wall clock once: a retry only happens because another thread advanced last_, and
  // the result is then derived from that newer value anyway.
  const uint64_t wall = WallUs();
  uint64_t last = last_.load(std::memory_order_relaxed);
  for (;;) {
    // A legacy last (or 0) is below every current version: only the wall clock counts then.
    const uint64_t floor = version::IsLegacy(last) ? 0 : version::Micros(last) + 1;
    const uint64_t next = version::Make(std::max(wall, floor), node_);
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
