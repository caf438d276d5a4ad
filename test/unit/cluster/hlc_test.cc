#include "cluster/hlc.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace kv::cluster {
namespace {

// The injected wall clock in microseconds (a plain function pointer, so it reads a global).
std::atomic<uint64_t> g_wall{0};
uint64_t FakeWall() {
  return g_wall.load(std::memory_order_relaxed);
}

constexpr uint64_t kT = 1700000000000000;  // a realistic unix time in microseconds
constexpr uint64_t kTms = kT / 1000;

using version::Make;
using version::MakeLegacy;

TEST_CASE("version: field packing round-trips in both layouts") {
  uint64_t v = Make(kT + 7, 1023);
  CHECK_FALSE(version::IsLegacy(v));
  CHECK(version::Micros(v) == kT + 7);
  CHECK(version::UnixMillis(v) == kTms);
  CHECK(version::Node(v) == 1023);
  CHECK_FALSE(version::IsLegacy(Make(version::kMaxMicros, 5)));  // the range end keeps the flag
  CHECK(version::Micros(Make(version::kMaxMicros, 5)) == version::kMaxMicros);
  uint64_t old = MakeLegacy(kTms + 5, 7, 3);
  CHECK(old == (((kTms + 5) << 20) | (7 << 10) | 3));
  CHECK(version::IsLegacy(old));
  CHECK(version::Micros(old) == (kTms + 5) * 1000);
  CHECK(version::UnixMillis(old) == kTms + 5);
  CHECK(version::Node(old) == 3);
  // Current versions order by (microseconds, node).
  CHECK(Make(kT, 1023) < Make(kT + 1, 0));
  CHECK(Make(kT, 4) < Make(kT, 5));
}

TEST_CASE("version: every legacy version is below every current one") {
  const uint64_t last_legacy_ms = (uint64_t{1} << 43) - 1;  // year 2248
  const uint64_t newest_legacy = MakeLegacy(last_legacy_ms, 1023, 1023);
  CHECK(version::IsLegacy(newest_legacy));
  CHECK(newest_legacy < Make(0, 0));
  // Even a legacy write from a clock a year ahead loses to a current write made now.
  CHECK(MakeLegacy(kTms + 365ull * 86400 * 1000, 0, 9) < Make(kT, 0));
  // ...and the old scheme's counter no longer decides within a millisecond: an earlier legacy
  // write with a high counter still loses to a later current one.
  CHECK(MakeLegacy(kTms, 1023, 1023) < Make(kT, 0));
}

TEST_CASE("Hlc: follows an advancing clock") {
  g_wall = kT;
  Hlc hlc(5, &FakeWall);
  uint64_t a = hlc.Now();
  CHECK(a == Make(kT, 5));
  g_wall = kT + 10;
  uint64_t b = hlc.Now();
  CHECK(b == Make(kT + 10, 5));
  CHECK(hlc.Last() == b);
}

TEST_CASE("Hlc: a stuck clock borrows the next microseconds, then the clock catches up") {
  g_wall = kT;
  Hlc hlc(9, &FakeWall);
  uint64_t prev = hlc.Now();
  CHECK(prev == Make(kT, 9));
  for (uint64_t i = 1; i <= 5000; ++i) {  // more than the old 1024-per-ms counter allowed
    uint64_t v = hlc.Now();
    REQUIRE(v > prev);
    REQUIRE(v == Make(kT + i, 9));
    prev = v;
  }
  // The wall clock reaching the borrowed microsecond does not reuse it...
  g_wall = kT + 5000;
  CHECK(hlc.Now() == Make(kT + 5001, 9));
  // ...and once it passes, versions follow it again.
  g_wall = kT + 9000;
  CHECK(hlc.Now() == Make(kT + 9000, 9));
}

TEST_CASE("Hlc: a clock going backwards never makes versions go backwards") {
  g_wall = kT;
  Hlc hlc(1, &FakeWall);
  uint64_t a = hlc.Now();
  g_wall = kT - 5000000;  // 5 s back (an NTP step)
  uint64_t b = hlc.Now();
  CHECK(b > a);
  CHECK(b == Make(kT + 1, 1));
  g_wall = kT - 1;
  uint64_t c = hlc.Now();
  CHECK(c > b);
  CHECK(c == Make(kT + 2, 1));
  g_wall = kT + 3;
  CHECK(hlc.Now() == Make(kT + 3, 1));
}

TEST_CASE(
    "Hlc: a write begun 1 us after another was acknowledged elsewhere gets a greater version") {
  // Two coordinators sharing one wall clock (clocks that agree). The first write's version is
  // taken at t, it is acknowledged, and the second write starts 1 us later on the other node.
  for (uint16_t first_node : {0, 1, 1023}) {
    for (uint16_t second_node : {0, 2, 1022}) {
      if (first_node == second_node) continue;
      CAPTURE(first_node);
      CAPTURE(second_node);
      g_wall = kT;
      Hlc first(first_node, &FakeWall), second(second_node, &FakeWall);
      // The second node was busy just before: its own last version is from the same instant.
      uint64_t second_before = second.Now();
      uint64_t w1 = first.Now();
      REQUIRE(w1 > 0);
      g_wall = kT + 1;
      uint64_t w2 = second.Now();
      CHECK(w2 > w1);
      CHECK(w2 > second_before);
      // The other direction, within the same millisecond: the second node makes 100 writes,
      // one per microsecond, and the first writes 1 us after the last was acknowledged. (With
      // the old ms layout the second node's counter, now near 100, would have won.)
      uint64_t w3 = 0;
      for (uint64_t i = 0; i < 100; ++i) {
        g_wall = kT + 500 + i;
        w3 = second.Now();
      }
      g_wall = kT + 600;
      CHECK(first.Now() > w3);
    }
  }
}

TEST_CASE("Hlc: Observe makes later versions exceed the remote one") {
  g_wall = kT;
  Hlc hlc(2, &FakeWall);
  uint64_t own = hlc.Now();
  SUBCASE("remote ahead (a peer whose clock runs an hour fast)") {
    uint64_t remote = Make(kT + 3600000000ull, 900);
    hlc.Observe(remote);
    CHECK(hlc.Last() == remote);
    uint64_t v = hlc.Now();
    CHECK(v > remote);
    CHECK(v == Make(kT + 3600000001ull, 2));
    g_wall = kT + 10;  // our clock moving on does not bring versions back below the remote
    CHECK(hlc.Now() == Make(kT + 3600000002ull, 2));
  }
  SUBCASE("remote far in the future, near the end of the range") {
    uint64_t remote = Make(version::kMaxMicros - 2, 1023);
    hlc.Observe(remote);
    uint64_t v = hlc.Now();
    CHECK(v > remote);
    CHECK(v == Make(version::kMaxMicros - 1, 2));
  }
  SUBCASE("remote in the same microsecond with a higher node") {
    uint64_t remote = Make(kT, 1000);
    hlc.Observe(remote);
    uint64_t v = hlc.Now();
    CHECK(v > remote);
    CHECK(v == Make(kT + 1, 2));
  }
  SUBCASE("an older remote changes nothing") {
    hlc.Observe(Make(kT - 10, 3));
    CHECK(hlc.Last() == own);
    g_wall = kT + 1;  // (the shared fake clock may have moved on; pin it)
    CHECK(hlc.Now() == Make(kT + 1, 2));
  }
  SUBCASE("a legacy remote, even from a clock a day ahead, is below every later version") {
    uint64_t remote = MakeLegacy(kTms + 86400000, 1023, 7);
    hlc.Observe(remote);
    uint64_t v = hlc.Now();
    CHECK(v > remote);
    CHECK(v == Make(kT + 1, 2));  // not dragged a day ahead: the wall clock still rules
  }
}

TEST_CASE("Hlc: Observe of legacy versions before any Now") {
  g_wall = kT;
  Hlc hlc(4, &FakeWall);
  const uint64_t remote = MakeLegacy(kTms + 5, 3, 1);
  hlc.Observe(remote);
  CHECK(hlc.Last() == remote);  // recorded: Last() is the greatest value observed
  hlc.Observe(MakeLegacy(kTms, 0, 1));
  CHECK(hlc.Last() == remote);
  uint64_t v = hlc.Now();
  CHECK(v > remote);
  CHECK(v == Make(kT, 4));
  hlc.Observe(remote);  // a legacy version after a current one changes nothing
  CHECK(hlc.Last() == v);
  CHECK(hlc.Now() == Make(kT + 1, 4));
}

TEST_CASE("Hlc: the real clock is close to unix time and versions increase") {
  Hlc hlc(0);
  uint64_t a = hlc.Now();
  uint64_t b = hlc.Now();
  CHECK(b > a);
  CHECK_FALSE(version::IsLegacy(a));
  CHECK(version::Micros(a) >= kT);  // after Nov 2023
  CHECK(version::Micros(a) <= Hlc::RealWallUs());
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
        if (observe && i % 64 == 0) hlc.Observe(v + (uint64_t{1} << 10) * 3);  // 3 us ahead
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
  for (uint64_t v : va) REQUIRE(version::Node(v) == 1);
  for (uint64_t v : vb) REQUIRE(version::Node(v) == 2);
  std::vector<uint64_t> all = va;
  all.insert(all.end(), vb.begin(), vb.end());
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
}

}  // namespace
}  // namespace kv::cluster
