#include "storage/bloom.h"

#include <xxhash.h>

#include <algorithm>

#include "storage/coding.h"

namespace kv::storage {

namespace {
constexpr uint32_t kBlockBits = 512;

// Bit positions within the block come from the upper half of the hash, stepped by a second
// odd-ish delta (double hashing); the lower half picks the block.
inline void ForEachBit(uint64_t h, uint32_t probes, uint64_t blocks, uint64_t* block,
                       uint32_t* bits) {
  *block = (static_cast<unsigned __int128>(h & 0xffffffffu) * blocks) >> 32;
  uint32_t a = static_cast<uint32_t>(h >> 32);
  uint32_t delta = (a >> 17) | (a << 15) | 1;
  for (uint32_t i = 0; i < probes; i++) {
    bits[i] = a % kBlockBits;
    a += delta;
  }
}
}  // namespace

void BloomBuilder::AddKey(std::string_view key) {
  hashes_.push_back(BloomHash(key));
}

std::string BloomBuilder::Finish() const {
  uint64_t bits = std::max<uint64_t>(hashes_.size() * kBloomBitsPerKey, kBlockBits);
  uint64_t blocks = (bits + kBlockBits - 1) / kBlockBits;
  std::string out(4 + blocks * (kBlockBits / 8), '\0');
  PutFixed32(out.data(), kBloomProbes);
  uint8_t* base = reinterpret_cast<uint8_t*>(out.data() + 4);
  for (uint64_t h : hashes_) {
    uint64_t block;
    uint32_t pos[kBloomProbes];
    ForEachBit(h, kBloomProbes, blocks, &block, pos);
    uint8_t* b = base + block * (kBlockBits / 8);
    for (uint32_t p : pos) b[p / 8] |= static_cast<uint8_t>(1u << (p % 8));
  }
  return out;
}

bool BloomFilter::Init(std::string data) {
  if (data.size() < 4 || (data.size() - 4) % (kBlockBits / 8) != 0) return false;
  probes_ = GetFixed32(data.data());
  if (probes_ == 0 || probes_ > 30) return false;
  blocks_ = (data.size() - 4) / (kBlockBits / 8);
  if (blocks_ == 0) return false;
  data_ = std::move(data);
  data_.shrink_to_fit();
  return true;
}

uint64_t BloomHash(std::string_view key) {
  return XXH3_64bits(key.data(), key.size());
}

void BloomFilter::Prefetch(uint64_t h) const {
  if (blocks_ == 0) return;
  uint64_t block = (static_cast<unsigned __int128>(h & 0xffffffffu) * blocks_) >> 32;
  __builtin_prefetch(data_.data() + 4 + block * (kBlockBits / 8));
}

bool BloomFilter::MayContainHash(uint64_t h) const {
  if (blocks_ == 0) return true;
  uint64_t block;
  uint32_t pos[30];
  ForEachBit(h, probes_, blocks_, &block, pos);
  const uint8_t* b = reinterpret_cast<const uint8_t*>(data_.data() + 4) + block * (kBlockBits / 8);
  for (uint32_t i = 0; i < probes_; i++) {
    if ((b[pos[i] / 8] & (1u << (pos[i] % 8))) == 0) return false;
  }
  return true;
}

}  // namespace kv::storage
