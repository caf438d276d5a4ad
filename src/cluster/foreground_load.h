// How busy the node's loop threads are, so that background work yields to requests: hint replay
// and anti-entropy repair scale their configured rates by Share() of the busy level. A loop's busy
// level is the share of wall time it spent outside its poll (handling events) plus the share its
// thread waited for a CPU (other processes had the cores), over its last sampling window, in
// permille; each loop publishes its own (loop/worker.h measures it), any thread reads them.
//
// Why: on a 2-core machine at half of saturation the loop that coordinates the requests is
// already busy most of the time, and a fixed background rate (10K hint replays/s, repair at 25%
// of a core) took the CPU it needed: the foreground p99 rose 3-100x (loadtest/REPORT.md, #19).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace kv::cluster {

class ForegroundLoad {
 public:
  // Below kFreeBelow background work runs at its full configured rate; from there the share
  // falls linearly to kMinShare at kFullAt and above (never 0: hints and repairs still progress
  // under sustained load, slowly).
  static constexpr uint32_t kFreeBelow = 500;
  static constexpr uint32_t kFullAt = 900;
  static constexpr uint32_t kMinShare = 50;

  explicit ForegroundLoad(size_t loops);
  // Loop `loop`'s busy level (permille, clamped to 1000). Its own thread, any time.
  void Publish(size_t loop, uint32_t busy_permille);
  uint32_t busy(size_t loop) const;
  uint32_t max_busy() const;  // of every loop
  size_t loops() const { return n_; }
  // The share (permille) of its configured rate that background work may use at this busy level.
  static uint32_t Share(uint32_t busy_permille);
  // A configured rate (or bound) at this busy level: full * Share(busy_permille) / 1000.
  static uint64_t Scale(uint64_t full, uint32_t busy_permille) {
    return full * Share(busy_permille) / 1000;
  }

 private:
  size_t n_;
  std::unique_ptr<std::atomic<uint32_t>[]> busy_;
};

}  // namespace kv::cluster
