// Randomized model test: random put/remove/get/scan against a std::map, with flushes,
// compactions and reopens in between, across small memtable and block sizes.
#include <doctest/doctest.h>

#include <map>

#include "storage/engine.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kOpsPerConfig = 40000;
#else
constexpr int kOpsPerConfig = 100000;
#endif

struct ModelEntry {
  uint64_t version;
  bool tombstone;
  std::string value;
};

std::string RandomKey(Rng& rng) {
  // 1500 keys of 1..12 bytes, with bytes 0x00 and 0xff to exercise byte ordering.
  uint64_t id = rng.Uniform(1500);
  Rng k(id + 1);
  size_t len = 1 + k.Uniform(12);
  std::string s;
  for (size_t i = 0; i < len; i++) {
    uint64_t r = k.Uniform(20);
    s.push_back(r == 0 ? '\0' : r == 1 ? '\xff' : static_cast<char>('a' + r));
  }
  return s;
}

void RunModel(uint64_t seed, Options opts) {
  TempDir tmp;
  opts.dir = tmp.store();
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(opts, &db).ok());
  std::map<std::string, ModelEntry> model;
  Rng rng(seed);
  uint64_t base = HlcVersion(NowMillis());  // young: tombstones are kept
  uint64_t clock = 0;
  int flushes = 0, compactions = 0, reopens = 0;
  for (int op = 0; op < kOpsPerConfig; op++) {
    uint64_t r = rng.Uniform(1000);
    if (r < 600) {  // write
      std::string key = RandomKey(rng);
      bool remove = rng.Uniform(4) == 0;
      auto it = model.find(key);
      uint64_t version;
      if (it != model.end() && rng.Uniform(8) == 0) {
        version = it->second.version - rng.Uniform(3);  // stale or equal: must be a no-op
      } else {
        version = base + (++clock) * 8;
      }
      std::string value =
          remove ? "" : key + "@" + std::to_string(version) + std::string(rng.Uniform(40), 'v');
      uint64_t stored = 0;
      Status s = remove ? db->Remove(key, version, &stored) : db->Put(key, value, version, &stored);
      REQUIRE(s.ok());
      if (it != model.end() && it->second.version >= version) {
        CHECK(stored == it->second.version);
      } else {
        CHECK(stored == version);
        model[key] = ModelEntry{version, remove, value};
      }
    } else if (r < 880) {  // get
      std::string key = RandomKey(rng);
      ReadResult res;
      REQUIRE(db->Get(key, &res).ok());
      auto it = model.find(key);
      if (it == model.end()) {
        CHECK(res.kind == ReadResult::kAbsent);
      } else {
        CHECK(res.version == it->second.version);
        CHECK(res.kind == (it->second.tombstone ? ReadResult::kTombstone : ReadResult::kValue));
        if (!it->second.tombstone) CHECK(res.value == it->second.value);
      }
    } else if (r < 990) {  // scan
      std::string a = RandomKey(rng), b = RandomKey(rng);
      if (b < a) std::swap(a, b);
      bool open_end = rng.Uniform(4) == 0;
      auto it = open_end ? db->Scan(a, std::nullopt) : db->Scan(a, std::string_view(b));
      auto mit = model.lower_bound(a);
      int limit = 1 + static_cast<int>(rng.Uniform(60));
      for (int i = 0; i < limit; i++) {
        bool model_valid = mit != model.end() && (open_end || mit->first < b);
        REQUIRE(it->Valid() == model_valid);
        if (!model_valid) break;
        CHECK(it->key() == mit->first);
        CHECK(it->version() == mit->second.version);
        CHECK(it->tombstone() == mit->second.tombstone);
        if (!mit->second.tombstone) CHECK(it->value() == mit->second.value);
        it->Next();
        ++mit;
      }
      CHECK(it->status().ok());
    } else if (r < 995) {
      REQUIRE(db->Flush().ok());
      flushes++;
    } else if (r < 997) {
      REQUIRE(db->CompactAll().ok());
      compactions++;
    } else if (rng.Uniform(4) == 0) {
      db.reset();
      REQUIRE(Engine::Open(opts, &db).ok());
      reopens++;
    }
  }
  Stats st = db->GetStats();
  MESSAGE("seed " << seed << ": " << model.size() << " keys, " << flushes << " explicit flushes, "
                  << st.flushes << " flushes since last open, " << compactions << " compactions, "
                  << reopens << " reopens, " << st.segments << " segments");
  // Full comparison at the end, after a last reopen.
  db.reset();
  REQUIRE(Engine::Open(opts, &db).ok());
  auto it = db->Scan("", std::nullopt);
  for (const auto& [k, e] : model) {
    REQUIRE(it->Valid());
    CHECK(it->key() == k);
    CHECK(it->version() == e.version);
    it->Next();
  }
  CHECK_FALSE(it->Valid());
  CHECK(it->status().ok());
}

}  // namespace

TEST_CASE("storage model: tiny memtable, no background threads") {
  Options o;
  o.fsync = FsyncPolicy::kNever;
  o.memtable_bytes = 8 << 10;
  o.block_bytes = 128;
  o.background = false;
  RunModel(1, o);
}

TEST_CASE("storage model: small memtable with background flush and compaction") {
  Options o;
  o.fsync = FsyncPolicy::kNever;
  o.memtable_bytes = 32 << 10;
  o.block_bytes = 512;
  o.background = true;
  RunModel(2, o);
}

TEST_CASE("storage model: larger memtable, periodic fsync, 4 KiB blocks") {
  Options o;
  o.fsync = FsyncPolicy::kPeriodic;
  o.memtable_bytes = 256 << 10;
  o.block_bytes = 4096;
  o.background = true;
  RunModel(3, o);
}
