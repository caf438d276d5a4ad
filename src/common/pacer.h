// Paces work to a rate (units per second) on the caller's steady clock, which ticks ticks_per_s
// times a second (1e6: microseconds, 1e9: nanoseconds). The units sent since the count started
// are due at start + sent / rate; a new rate carries over the units sent and not yet paid for at
// the old one, so changing the rate neither forgives nor charges twice what was sent. Not
// thread-safe: one user.
#pragma once
#include <algorithm>
#include <cstdint>

namespace kv {

class Pacer {
 public:
  explicit Pacer(uint64_t ticks_per_s) : ticks_per_s_(ticks_per_s) {}

  bool started() const { return rate_ != 0; }
  // Starts the count again at now, nothing sent, at rate (at least 1).
  void Restart(uint64_t now, uint64_t rate) {
    start_ = now;
    sent_ = 0;
    rate_ = std::max<uint64_t>(rate, 1);
  }
  // From now on at rate (at least 1).
  void SetRate(uint64_t rate, uint64_t now) {
    rate = std::max<uint64_t>(rate, 1);
    if (rate == rate_) return;
    if (rate_ != 0 && now > start_) {
      const auto paid = static_cast<uint64_t>(static_cast<unsigned __int128>(now - start_) * rate_ /
                                              ticks_per_s_);
      sent_ = sent_ > paid ? sent_ - paid : 0;
      start_ = now;
    }
    rate_ = rate;
  }
  void Sent(uint64_t units) { sent_ += units; }
  // When everything sent so far is paid for: the next unit may go then.
  uint64_t due() const {
    return start_ +
           static_cast<uint64_t>(static_cast<unsigned __int128>(sent_) * ticks_per_s_ / rate_);
  }

 private:
  uint64_t ticks_per_s_;
  uint64_t start_ = 0, sent_ = 0, rate_ = 0;
};

}  // namespace kv
