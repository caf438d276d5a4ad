#include "cluster/foreground_load.h"

#include <algorithm>

namespace kv::cluster {

ForegroundLoad::ForegroundLoad(size_t loops)
    : n_(loops), busy_(std::make_unique<std::atomic<uint32_t>[]>(loops)) {}  // zeros (C++20)

void ForegroundLoad::Publish(size_t loop, uint32_t busy_permille) {
  if (loop < n_)
    busy_[loop].store(std::min<uint32_t>(busy_permille, 1000), std::memory_order_relaxed);
}

uint32_t ForegroundLoad::busy(size_t loop) const {
  return loop < n_ ? busy_[loop].load(std::memory_order_relaxed) : 0;
}

uint32_t ForegroundLoad::max_busy() const {
  uint32_t m = 0;
  for (size_t i = 0; i < n_; ++i) m = std::max(m, busy_[i].load(std::memory_order_relaxed));
  return m;
}

uint32_t ForegroundLoad::Share(uint32_t busy_permille) {
  if (busy_permille <= kFreeBelow) return 1000;
  if (busy_permille >= kFullAt) return kMinShare;
  const uint32_t over = busy_permille - kFreeBelow;  // 1 .. (kFullAt - kFreeBelow - 1)
  return 1000 - over * (1000 - kMinShare) / (kFullAt - kFreeBelow);
}

}  // namespace kv::cluster
