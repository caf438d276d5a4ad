#include "cluster/peer_health.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace kv::cluster {
namespace {

using State = CircuitBreaker::State;
constexpr uint64_t kT0 = 1000000;

#if defined(__SANITIZE_THREAD__)
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif

// Opens a default breaker (threshold 5, 1000 ms, cap 8000) at time t.
void Open(CircuitBreaker& b, uint64_t t) {
  for (int i = 0; i < 5; ++i) b.OnFailure(t);
  REQUIRE(b.state(t) == State::kOpen);
}

TEST_CASE("CircuitBreaker: stays closed below the threshold and opens at it") {
  CircuitBreaker b;
  CHECK(b.state(kT0) == State::kClosed);
  for (int i = 0; i < 4; ++i) {
    b.OnFailure(kT0 + i);
    CHECK(b.state(kT0 + i) == State::kClosed);
    CHECK(b.Allow(kT0 + i));
  }
  CHECK(b.consecutive_failures() == 4);
  b.OnFailure(kT0 + 10);
  CHECK(b.state(kT0 + 10) == State::kOpen);
  CHECK(b.consecutive_failures() == 5);
  CHECK(b.total_failures() == 5);
  CHECK_FALSE(b.Allow(kT0 + 10));
  CHECK_FALSE(b.Allow(kT0 + 1009));
  CHECK(b.state(kT0 + 1009) == State::kOpen);
  CHECK(b.state(kT0 + 1010) == State::kHalfOpen);  // a probe would go through now
}

TEST_CASE("CircuitBreaker: a success resets the consecutive count") {
  CircuitBreaker b(3);
  b.OnFailure(kT0);
  b.OnFailure(kT0);
  b.OnSuccess();
  CHECK(b.consecutive_failures() == 0);
  b.OnFailure(kT0);
  b.OnFailure(kT0);
  CHECK(b.state(kT0) == State::kClosed);
  b.OnFailure(kT0);
  CHECK(b.state(kT0) == State::kOpen);
  CHECK(b.total_failures() == 5);
}

TEST_CASE("CircuitBreaker: exactly one probe after the backoff; its success closes") {
  CircuitBreaker b;
  Open(b, kT0);
  CHECK(b.Allow(kT0 + 1000));
  CHECK(b.state(kT0 + 1000) == State::kHalfOpen);
  CHECK_FALSE(b.Allow(kT0 + 1000));
  CHECK_FALSE(b.Allow(kT0 + 1500));
  b.OnSuccess();
  CHECK(b.state(kT0 + 1500) == State::kClosed);
  CHECK(b.consecutive_failures() == 0);
  CHECK(b.Allow(kT0 + 1500));
  CHECK(b.Allow(kT0 + 1500));
  CHECK(b.backoff_ms() == 1000);
}

TEST_CASE("CircuitBreaker: failed probes double the backoff up to the cap; success resets it") {
  CircuitBreaker b;
  uint64_t t = kT0;
  Open(b, t);
  const uint64_t expected[] = {1000, 2000, 4000, 8000, 8000, 8000};
  for (uint64_t backoff : expected) {
    CHECK(b.backoff_ms() == backoff);
    CHECK_FALSE(b.Allow(t + backoff - 1));
    CHECK(b.Allow(t + backoff));  // the probe
    t += backoff;
    CHECK_FALSE(b.Allow(t));
    t += 3;
    b.OnFailure(t);  // probe failed: re-opened at t
    CHECK(b.state(t) == State::kOpen);
  }
  CHECK(b.Allow(t + 8000));
  b.OnSuccess();
  CHECK(b.backoff_ms() == 1000);
  // Opening again starts from the base backoff.
  t += 9000;
  Open(b, t);
  CHECK_FALSE(b.Allow(t + 999));
  CHECK(b.Allow(t + 1000));
}

TEST_CASE("CircuitBreaker: a probe that never reports is replaced after open_ms") {
  CircuitBreaker b(5, 1000, 8000);
  Open(b, kT0);
  REQUIRE(b.Allow(kT0 + 1000));
  CHECK_FALSE(b.Allow(kT0 + 1999));
  CHECK(b.Allow(kT0 + 2000));  // new probe
  CHECK_FALSE(b.Allow(kT0 + 2000));
  CHECK_FALSE(b.Allow(kT0 + 2999));
  CHECK(b.Allow(kT0 + 3000));
}

TEST_CASE("CircuitBreaker: failures while open do not extend the backoff") {
  CircuitBreaker b;
  Open(b, kT0);
  b.OnFailure(kT0 + 900);  // late answer of a request sent before it opened
  CHECK(b.Allow(kT0 + 1000));
  CHECK(b.total_failures() == 6);
}

TEST_CASE("CircuitBreaker: threshold 1 and state names") {
  CircuitBreaker b(1, 50, 100);
  b.OnFailure(kT0);
  CHECK(b.state(kT0) == State::kOpen);
  CHECK(b.Allow(kT0 + 50));
  b.OnFailure(kT0 + 50);
  CHECK_FALSE(b.Allow(kT0 + 149));
  CHECK(b.Allow(kT0 + 150));
  CHECK(std::strcmp(CircuitBreaker::StateName(State::kClosed), "closed") == 0);
  CHECK(std::strcmp(CircuitBreaker::StateName(State::kOpen), "open") == 0);
  CHECK(std::strcmp(CircuitBreaker::StateName(State::kHalfOpen), "half-open") == 0);
}

TEST_CASE("CircuitBreaker: N threads calling Allow at the same instant get exactly one probe") {
  // Threads spin on a shared round number (no futex wake-up skew), so they reach Allow together
  // as often as the cores allow; every round must still grant exactly one probe.
  const int kThreads = 4;
  const int kRounds = kTsan ? 300 : 3000;
  CircuitBreaker b(2, 100, 800);
  std::atomic<int> round{0};
  std::atomic<int> done{0};
  std::atomic<int> granted{0};
  std::atomic<uint64_t> now{kT0};
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&] {
      for (int r = 1; r <= kRounds; ++r) {
        while (round.load(std::memory_order_acquire) < r) std::this_thread::yield();
        const uint64_t at = now.load(std::memory_order_relaxed);
        if (b.Allow(at)) granted.fetch_add(1);
        if (b.Allow(at)) granted.fetch_add(1);  // a second try at the same instant: never
        done.fetch_add(1, std::memory_order_acq_rel);
      }
    });
  }
  int bad_rounds = 0;
  uint64_t t = kT0;
  for (int r = 1; r <= kRounds; ++r) {
    // Open the breaker (from closed, or by failing the previous probe), then release the
    // threads exactly when the probe becomes due.
    if (r % 2 == 1) b.OnSuccess();
    b.OnFailure(t);
    b.OnFailure(t);
    REQUIRE(b.state(t) == State::kOpen);
    t += b.backoff_ms();
    now.store(t, std::memory_order_relaxed);
    granted.store(0);
    done.store(0);
    round.store(r, std::memory_order_release);
    while (done.load(std::memory_order_acquire) < kThreads) std::this_thread::yield();
    if (granted.load() != 1) ++bad_rounds;
    CHECK(b.state(t) == State::kHalfOpen);
  }
  for (auto& th : pool) th.join();
  CHECK(bad_rounds == 0);
}

}  // namespace
}  // namespace kv::cluster
