// Blocked bloom filter over XXH3 key hashes: each key sets kBloomProbes bits inside one 64-byte
// block, so a lookup touches one cache line. ~10 bits per key gives about 1% false positives.
// Builder is single-threaded; a built filter (BloomFilter) is immutable and safe to share.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kv::storage {

constexpr uint32_t kBloomBitsPerKey = 10;
constexpr uint32_t kBloomProbes = 6;

// The key hash every filter uses: callers probing several filters hash once.
uint64_t BloomHash(std::string_view key);

class BloomBuilder {
 public:
  void AddKey(std::string_view key);
  // Filter bytes: num_probes u32 | bit blocks (64 bytes each).
  std::string Finish() const;

 private:
  std::vector<uint64_t> hashes_;
};

class BloomFilter {
 public:
  BloomFilter() = default;
  // Takes the bytes made by BloomBuilder::Finish(); false if they are malformed.
  bool Init(std::string data);
  // False means definitely absent. An empty/uninitialized filter says maybe.
  bool MayContain(std::string_view key) const { return MayContainHash(BloomHash(key)); }
  bool MayContainHash(uint64_t hash) const;
  // Starts loading the cache line MayContainHash(hash) will read.
  void Prefetch(uint64_t hash) const;
  size_t MemoryUsage() const { return data_.capacity(); }

 private:
  std::string data_;
  uint32_t probes_ = 0;
  uint64_t blocks_ = 0;
};

}  // namespace kv::storage
