// Helpers for the storage unit tests: a scratch directory removed on destruction, versions in
// both layouts, and a deterministic PRNG. Tests own their TempDir; nothing here is thread-safe.
#pragma once
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/version.h"
#include "storage/engine.h"

namespace kv::storage::testutil {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kvstorage-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string store() const { return path_ + "/db"; }

 private:
  std::string path_;
};

inline uint64_t NowMillis() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}
// A version as the cluster's clock makes it now (common/version.h): unix ms * 1000 microseconds,
// node 0. Adding n to it adds n / 1024 microseconds.
inline uint64_t HlcVersion(uint64_t ms) {
  return version::Make(ms * 1000, 0);
}
// A version in the legacy layout that binaries before issue 17 wrote: unix ms in bits 63..20.
inline uint64_t LegacyVersion(uint64_t ms, uint64_t logical = 0, uint64_t node = 0) {
  return version::MakeLegacy(ms, logical, node);
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  uint64_t Uniform(uint64_t n) { return Next() % n; }
};

inline Options SmallOptions(const std::string& dir, bool background) {
  Options o;
  o.dir = dir;
  o.fsync = FsyncPolicy::kNever;
  o.memtable_bytes = 16 << 10;
  o.block_bytes = 256;
  o.background = background;
  return o;
}

}  // namespace kv::storage::testutil
