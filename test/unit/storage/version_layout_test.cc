// Stores written by binaries before issue 17 hold legacy (ms layout) versions: they must still
// open, read, compare below current (microsecond) versions and age for tombstone GC.
#include <doctest/doctest.h>

#include "common/version.h"
#include "storage/engine.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

ReadResult Read(Engine* db, const std::string& key) {
  ReadResult r;
  REQUIRE(db->Get(key, &r).ok());
  return r;
}

}  // namespace

TEST_CASE("storage: a store of legacy versions opens, reads, and current writes supersede it") {
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  const uint64_t now = NowMillis();
  const uint64_t l_seg = LegacyVersion(now - 60000, 3, 1);          // a minute ago, in a segment
  const uint64_t l_ahead = LegacyVersion(now + 86400000, 1023, 2);  // a clock a day fast
  const uint64_t l_log = LegacyVersion(now, 5, 3);                  // only in the log
  const uint64_t l_tomb = LegacyVersion(now, 6, 3);
  {  // what an old binary left behind: segments and an unflushed log
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    REQUIRE(db->Put("a", "old-a", l_seg).ok());
    REQUIRE(db->Put("b", "old-b", l_ahead).ok());
    REQUIRE(db->Flush().ok());
    REQUIRE(db->Put("c", "old-c", l_log).ok());
    REQUIRE(db->Remove("d", l_tomb).ok());
  }
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  ReadResult r = Read(db.get(), "a");
  CHECK(r.kind == ReadResult::kValue);
  CHECK(r.value == "old-a");
  CHECK(r.version == l_seg);
  CHECK(Read(db.get(), "b").version == l_ahead);
  CHECK(Read(db.get(), "c").value == "old-c");
  r = Read(db.get(), "d");
  CHECK(r.kind == ReadResult::kTombstone);
  CHECK(r.version == l_tomb);

  // A current write supersedes every legacy version, even one from a clock a day ahead.
  const uint64_t v = HlcVersion(now) + 7;
  uint64_t stored = 0;
  REQUIRE(db->Put("a", "new-a", v, &stored).ok());
  CHECK(stored == v);
  REQUIRE(db->Put("b", "new-b", v, &stored).ok());
  CHECK(stored == v);
  REQUIRE(db->Put("d", "new-d", v, &stored).ok());  // over the legacy tombstone
  CHECK(stored == v);
  // A legacy write arriving late (say from an old node) loses to the current one.
  REQUIRE(db->Put("a", "late-old-a", LegacyVersion(now + 1000, 0, 1), &stored).ok());
  CHECK(stored == v);
  REQUIRE(db->Remove("b", l_ahead + 1, &stored).ok());
  CHECK(stored == v);

  auto check_all = [&](Engine* e) {
    CHECK(Read(e, "a").value == "new-a");
    CHECK(Read(e, "b").value == "new-b");
    CHECK(Read(e, "b").version == v);
    CHECK(Read(e, "c").value == "old-c");  // untouched legacy data stays readable
    CHECK(Read(e, "c").version == l_log);
    CHECK(Read(e, "d").value == "new-d");
  };
  check_all(db.get());
  REQUIRE(db->Flush().ok());
  REQUIRE(db->CompactAll().ok());  // both layouts in one merge
  check_all(db.get());
  db.reset();
  REQUIRE(Engine::Open(o, &db).ok());
  check_all(db.get());
}

TEST_CASE("storage: tombstone GC ages versions of both layouts") {
  const uint64_t now = NowMillis();
  const uint64_t two_hours = 2 * 3600 * 1000;
  // The one decoder: unix ms from either layout.
  CHECK(kv::version::UnixMillis(LegacyVersion(now, 1023, 1023)) == now);
  CHECK(kv::version::UnixMillis(HlcVersion(now) + 999 * 1024 + 1023) == now);
  CHECK(kv::version::UnixMillis(HlcVersion(now - two_hours)) == now - two_hours);

  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  o.tombstone_gc_seconds = 3600;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  struct Case {
    std::string key;
    uint64_t version;
    bool collected;
  };
  const Case cases[] = {
      {"legacy-old", LegacyVersion(now - two_hours, 4, 1), true},
      {"legacy-young", LegacyVersion(now, 4, 1), false},
      {"current-old", HlcVersion(now - two_hours) + 1, true},
      {"current-young", HlcVersion(now) + 1, false},
  };
  for (const Case& c : cases) {
    REQUIRE(db->Put(c.key, "x", kv::version::IsLegacy(c.version) ? c.version - 1 : 1).ok());
  }
  REQUIRE(db->Flush().ok());
  for (const Case& c : cases) REQUIRE(db->Remove(c.key, c.version).ok());
  REQUIRE(db->Flush().ok());
  REQUIRE(db->CompactAll().ok());
  for (const Case& c : cases) {
    CAPTURE(c.key);
    ReadResult r = Read(db.get(), c.key);
    if (c.collected) {
      CHECK(r.kind == ReadResult::kAbsent);  // the tombstone and the value under it are gone
    } else {
      CHECK(r.kind == ReadResult::kTombstone);
      CHECK(r.version == c.version);
    }
  }
}
