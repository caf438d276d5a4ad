// Background work's share of its configured rate by the loops' busy level
// (cluster/foreground_load.h): all of it while the loops have room, less as they fill, never none.
#include "cluster/foreground_load.h"

#include <doctest/doctest.h>

namespace kv::cluster {
namespace {

TEST_CASE("ForegroundLoad::Share: full below the free level, falling to the minimum, never 0") {
  CHECK(ForegroundLoad::Share(0) == 1000);
  CHECK(ForegroundLoad::Share(ForegroundLoad::kFreeBelow) == 1000);
  CHECK(ForegroundLoad::Share(ForegroundLoad::kFullAt) == ForegroundLoad::kMinShare);
  CHECK(ForegroundLoad::Share(1000) == ForegroundLoad::kMinShare);
  CHECK(ForegroundLoad::Share(5000) == ForegroundLoad::kMinShare);  // out of range: clamped
  const uint32_t mid = (ForegroundLoad::kFreeBelow + ForegroundLoad::kFullAt) / 2;
  CHECK(ForegroundLoad::Share(mid) < 1000);
  CHECK(ForegroundLoad::Share(mid) > ForegroundLoad::kMinShare);
  uint32_t prev = 1000;
  for (uint32_t b = 0; b <= 1000; ++b) {  // never rises with the load, never below the minimum
    const uint32_t s = ForegroundLoad::Share(b);
    CHECK(s <= prev);
    CHECK(s >= ForegroundLoad::kMinShare);
    prev = s;
  }
}

TEST_CASE("ForegroundLoad::Scale: a configured rate at a busy level") {
  CHECK(ForegroundLoad::Scale(10000, 0) == 10000);
  CHECK(ForegroundLoad::Scale(10000, ForegroundLoad::kFullAt) ==
        10000 * ForegroundLoad::kMinShare / 1000);
  CHECK(ForegroundLoad::Scale(8000000, 700) == 8000000 * ForegroundLoad::Share(700) / 1000);
  CHECK(ForegroundLoad::Scale(25, 1000) == 1);  // 25 * 50 / 1000, rounded down
}

TEST_CASE("ForegroundLoad: each loop's level, the busiest one, clamped to 1000") {
  ForegroundLoad load(3);
  CHECK(load.max_busy() == 0);
  load.Publish(0, 200);
  load.Publish(2, 700);
  load.Publish(7, 999);  // no such loop: ignored
  CHECK(load.busy(0) == 200);
  CHECK(load.busy(1) == 0);
  CHECK(load.max_busy() == 700);
  load.Publish(1, 4000);
  CHECK(load.busy(1) == 1000);
  CHECK(load.max_busy() == 1000);
  load.Publish(1, 0);
  load.Publish(2, 100);
  CHECK(load.max_busy() == 200);
}

}  // namespace
}  // namespace kv::cluster
