#include "cluster/hedge.h"

#include <algorithm>
#include <iterator>

namespace kv::cluster {

HedgeDelay::HedgeDelay(uint64_t initial_us, uint64_t max_us)
    : max_us_(std::max(max_us, kMinUs)), delay_us_(std::clamp(initial_us, kMinUs, max_us_)) {}

int HedgeDelay::Bucket(uint64_t v) {
  if (v < 8) return static_cast<int>(v);
  int e = 63 - __builtin_clzll(v);  // 2^e <= v < 2^(e+1), e >= 3
  int b = 8 + (e - 3) * 4 + static_cast<int>((v >> (e - 2)) & 3);
  return std::min(b, kBuckets - 1);
}

uint64_t HedgeDelay::UpperBound(int b) {
  if (b < 8) return static_cast<uint64_t>(b) + 1;
  int e = (b - 8) / 4 + 3;
  uint64_t sub = static_cast<uint64_t>((b - 8) % 4);
  return (5 + sub) << (e - 2);
}

void HedgeDelay::Record(uint64_t micros) {
  ++counts_[Bucket(micros)];
  if (++n_ < kWindow) return;
  // The answer ranked ceil(0.99 n): the 1% slowest are above it.
  uint32_t rank = n_ - n_ / 100, seen = 0;
  int b = 0;
  while (seen + counts_[b] < rank) seen += counts_[b++];
  delay_us_ = std::clamp(UpperBound(b), kMinUs, max_us_);
  n_ = 0;
  std::fill(std::begin(counts_), std::end(counts_), 0u);
}

}  // namespace kv::cluster
