// Bump allocator for memtable nodes: memory is freed all at once when the arena dies.
// Allocate() is for a single thread (the memtable writer); MemoryUsage() may be read by any.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

namespace kv::storage {

class Arena {
 public:
  explicit Arena(size_t block_bytes = 256 << 10) : block_bytes_(block_bytes) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Returns 8-byte aligned memory of n bytes, valid until the arena is destroyed.
  char* Allocate(size_t n) {
    n = (n + 7) & ~size_t{7};
    if (n <= left_) {
      char* p = ptr_;
      ptr_ += n;
      left_ -= n;
      return p;
    }
    return AllocateSlow(n);
  }
  size_t MemoryUsage() const { return usage_.load(std::memory_order_relaxed); }

 private:
  char* AllocateSlow(size_t n);

  size_t block_bytes_;
  char* ptr_ = nullptr;
  size_t left_ = 0;
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::atomic<size_t> usage_{0};
};

}  // namespace kv::storage
