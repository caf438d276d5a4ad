#include "cluster/hlc.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace kv::cluster {
namespace {

// The injected wall clock (a plain function pointer, so it reads a global).
std::atomic<uint64_t> g_wall{0};
uint64_t FakeWall() {
  return g_wall.load(std::memory_order_relaxed);
}

constexpr uint64_t kT = 1700000000000;  // a realistic unix ms

TEST_CASE("Hlc: field packing round-trips") {
  uint64_t v = Hlc::Make(kT, 1023, 1023);
  CHECK(Hlc::WallMs(v) == kT);
  CHECK(Hlc::Logical(v) == 1023);
  CHECK(Hlc::Node(v) == 1023);
  v = Hlc::Make(kT + 5, 7, 3);
  CHECK(Hlc::WallMs(v) == kT + 5);
  CHECK(Hlc::Logical(v) == 7);
  CHECK(Hlc::Node(v) == 3);
  // Ordering follows (ms, logical, node).
  CHECK(Hlc::Make(kT, 1023, 1023) < Hlc::Make(kT + 1, 0, 0));
  CHECK(Hlc::Make(kT, 4, 1023) < Hlc::Make(kT, 5, 0));
}

TEST_CASE("Hlc: follows an advancing clock with logical 0") {
  g_wall = kT;
  Hlc hlc(5, &FakeWall);
  uint64_t a = hlc.Now();
  CHECK(Hlc::WallMs(a) == kT);
  CHECK(Hlc::Logical(a) == 0);
  CHECK(Hlc::Node(a) == 5);
  g_wall = kT + 10;
  uint64_t b = hlc.Now();
  CHECK(b == Hlc::Make(kT + 10, 0, 5));
  CHECK(hlc.Last() == b);
}

TEST_CASE("Hlc: stuck clock increments logical, then borrows the next ms on overflow") {
  g_wall = kT;
  Hlc hlc(9, &FakeWall);
  uint64_t prev = hlc.Now();
  CHECK(prev == Hlc::Make(kT, 0, 9));
  for (uint32_t i = 1; i <= Hlc::kMaxLogical; ++i) {
    uint64_t v = hlc.Now();
    REQUIRE(v > prev);
    REQUIRE(v == Hlc::Make(kT, i, 9));
    prev = v;
  }
  uint64_t v = hlc.Now();  // the 1025th call in the same ms
  CHECK(v == Hlc::Make(kT + 1, 0, 9));
  v = hlc.Now();
  CHECK(v == Hlc::Make(kT + 1, 1, 9));
  // When the wall clock catches up with the borrowed ms, logical keeps counting...
  g_wall = kT + 1;
  CHECK(hlc.Now() == Hlc::Make(kT + 1, 2, 9));
  // ...and once it passes, logical restarts at 0.
  g_wall = kT + 2;
  CHECK(hlc.Now() == Hlc::Make(kT + 2, 0, 9));
}

TEST_CASE("Hlc: a clock going backwards never makes versions go backwards") {
  g_wall = kT;
  Hlc hlc(1, &FakeWall);
  uint64_t a = hlc.Now();
  g_wall = kT - 5000;
  uint64_t b = hlc.Now();
  CHECK(b > a);
  CHECK(b == Hlc::Make(kT, 1, 1));
  g_wall = kT - 1;
  uint64_t c = hlc.Now();
  CHECK(c > b);
  CHECK(c == Hlc::Make(kT, 2, 1));
  g_wall = kT + 1;
  CHECK(hlc.Now() == Hlc::Make(kT + 1, 0, 1));
}

TEST_CASE("Hlc: Observe makes later versions exceed the remote one") {
  g_wall = kT;
  Hlc hlc(2, &FakeWall);
  uint64_t own = hlc.Now();
  SUBCASE("remote ahead in wall time") {
    uint64_t remote = Hlc::Make(kT + 60000, 17, 900);
    hlc.Observe(remote);
    uint64_t v = hlc.Now();
    CHECK(v > remote);
    CHECK(v == Hlc::Make(kT + 60000, 18, 2));
  }
  SUBCASE("remote in the same ms with a higher logical and node") {
    uint64_t remote = Hlc::Make(kT, 3, 1000);
    hlc.Observe(remote);
    uint64_t v = hlc.Now();
    CHECK(v > remote);
    CHECK(v == Hlc::Make(kT, 4, 2));
  }
  SUBCASE("remote at the logical limit") {
    uint64_t remote = Hlc::Make(kT, Hlc::kMaxLogical, 1023);
    hlc.Observe(remote);
    uint64_t v = hlc.Now();
    CHECK(v > remote);
    CHECK(v == Hlc::Make(kT + 1, 0, 2));
  }
  SUBCASE("an older remote changes nothing") {
    hlc.Observe(Hlc::Make(kT - 10, 0, 3));
    CHECK(hlc.Last() == own);
    CHECK(hlc.Now() == Hlc::Make(kT, 1, 2));
  }
}

TEST_CASE("Hlc: the real clock is close to unix time and versions increase") {
  Hlc hlc(0);
  uint64_t a = hlc.Now();
  uint64_t b = hlc.Now();
  CHECK(b > a);
  CHECK(Hlc::WallMs(a) >= kT);  // after Nov 2023
  CHECK(Hlc::WallMs(a) <= Hlc::RealWallMs());
}

// Each thread's sequence is strictly increasing and no value repeats across threads.
void CheckConcurrentUniqueness(Hlc& hlc, int threads, int per_thread, bool observe) {
  std::vector<std::vector<uint64_t>> got(threads);
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<uint64_t>& mine = got[t];
      mine.reserve(per_thread);
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      for (int i = 0; i < per_thread; ++i) {
        uint64_t v = hlc.Now();
        mine.push_back(v);
        if (observe && i % 64 == 0) hlc.Observe(v + (uint64_t{1} << 10) * 3);
        if (t == 0 && i % 1000 == 0) g_wall.fetch_add(1);  // the clock moves, sometimes
      }
    });
  }
  for (auto& th : pool) th.join();
  std::vector<uint64_t> all;
  for (auto& v : got) {
    for (size_t i = 1; i < v.size(); ++i) REQUIRE(v[i] > v[i - 1]);
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
  CHECK(all.size() == static_cast<size_t>(threads) * per_thread);
}

TEST_CASE("Hlc: 4 threads x 100K calls on a slow clock are unique and per-thread increasing") {
  g_wall = kT;
  Hlc hlc(7, &FakeWall);
  CheckConcurrentUniqueness(hlc, 4, 100000, false);
}

TEST_CASE("Hlc: 4 threads x 100K calls with concurrent Observe") {
  g_wall = kT;
  Hlc hlc(7, &FakeWall);
  CheckConcurrentUniqueness(hlc, 4, 100000, true);
}

TEST_CASE("Hlc: the real clock under 4 threads") {
  Hlc hlc(3);
  CheckConcurrentUniqueness(hlc, 4, 100000, false);
}

TEST_CASE("Hlc: distinct nodes never tie, even with identical clocks and cross-observation") {
  g_wall = kT;
  Hlc a(1, &FakeWall), b(2, &FakeWall);
  std::vector<uint64_t> va, vb;
  for (int i = 0; i < 5000; ++i) {
    va.push_back(a.Now());
    vb.push_back(b.Now());
    if (i % 7 == 0) b.Observe(va.back());
    if (i % 11 == 0) a.Observe(vb.back());
  }
  for (uint64_t v : va) REQUIRE(Hlc::Node(v) == 1);
  for (uint64_t v : vb) REQUIRE(Hlc::Node(v) == 2);
  std::vector<uint64_t> all = va;
  all.insert(all.end(), vb.begin(), vb.end());
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
}

}  // namespace
}  // namespace kv::cluster
