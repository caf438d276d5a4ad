// Unit tests of the storage building blocks (memtable, bloom filter, log records, segments,
// compaction policy) and of the Engine's basic contract.
#include <doctest/doctest.h>
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>

#include "storage/bloom.h"
#include "storage/compaction.h"
#include "storage/engine.h"
#include "storage/log_format.h"
#include "storage/memtable.h"
#include "storage/segment.h"
#include "storage/segment_writer.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

TEST_CASE("storage: memtable skiplist built in sorted batches matches a model, also mid-way") {
  MemTable mt(1 << 16);
  Rng rng(11);
  std::map<std::string, uint64_t> model;
  uint64_t version = 0;
  auto check_iteration = [&](const std::map<std::string, uint64_t>& want, uint64_t snap) {
    MemTable::Iterator it(&mt, snap);  // indexes whatever is pending
    auto w = want.begin();
    for (it.SeekToFirst(); it.Valid(); it.Next(), ++w) {
      REQUIRE(w != want.end());
      CHECK(it.key() == w->first);
      CHECK(it.version() == w->second);
    }
    CHECK(w == want.end());
  };
  for (int round = 0; round < 200; ++round) {
    size_t n = 1 + rng.Uniform(60);  // batches of any size, keys new and old, repeated
    for (size_t i = 0; i < n; i++) {
      std::string k = "key" + std::to_string(rng.Uniform(3000));
      mt.Insert(k, k, ++version, EntryType::kValue);
      model[k] = version;
    }
    CHECK(mt.Pending() >= n);
    if (round % 3 == 0) {
      mt.Index();
      CHECK(mt.Pending() == 0);
    }
    if (round % 50 == 0) check_iteration(model, mt.Count());
  }
  std::string_view v;
  uint64_t ver;
  EntryType t;
  for (const auto& [k, want] : model) {
    REQUIRE(mt.Get(k, &v, &ver, &t));
    CHECK(ver == want);
  }
  check_iteration(model, mt.Count());
  MemTable::Iterator seek(&mt, mt.Count());  // every level's links: Seek descends from the top
  for (const auto& [k, want] : model) {
    seek.Seek(k);
    REQUIRE(seek.Valid());
    CHECK(seek.key() == k);
    CHECK(seek.version() == want);
  }
}

TEST_CASE("storage: memtable sorted run (the flush's view) matches a model, partly indexed") {
  for (int indexed_share : {0, 50, 100}) {  // percent of the inserts linked before the run
    MemTable mt(1 << 16);
    Rng rng(17 + indexed_share);
    struct Want {
      uint64_t version;
      EntryType type;
      std::string value;
    };
    std::map<std::string, Want> model;
    const int total = 5000;
    for (int i = 1; i <= total; i++) {
      // Keys that tie on their 8-byte prefix ("user:000..."), short ones that tie on their
      // zero-padded prefix ("7", "7\0", "7\0\0"), repeats.
      std::string k = rng.Uniform(2)
                          ? "user:0000000" + std::to_string(rng.Uniform(800))
                          : std::to_string(rng.Uniform(300)) + std::string(rng.Uniform(3), '\0');
      EntryType t = rng.Uniform(5) == 0 ? EntryType::kTombstone : EntryType::kValue;
      std::string v = t == EntryType::kValue ? "v" + std::to_string(i) : "";
      mt.Insert(k, v, static_cast<uint64_t>(i), t);
      model[k] = Want{static_cast<uint64_t>(i), t, v};
      if (i == total * indexed_share / 100) mt.Index();
    }
    MemTable::SortedRun run(&mt);
    auto w = model.begin();
    for (; run.Valid(); run.Next(), ++w) {
      REQUIRE(w != model.end());
      CHECK(run.key() == w->first);
      CHECK(run.version() == w->second.version);
      CHECK(run.type() == w->second.type);
      CHECK(run.value() == w->second.value);
    }
    CHECK(w == model.end());
  }
}

TEST_CASE("storage: memtable point lookups go through the hash index, also in crowded buckets") {
  MemTable mt(4096, 2);  // two buckets: every chain holds many keys and versions
  std::map<std::string, std::pair<uint64_t, std::string>> model;
  Rng rng(5);
  for (uint64_t version = 1; version <= 3000; version++) {
    std::string k = "k" + std::to_string(rng.Uniform(300));
    std::string v = "v" + std::to_string(version);
    bool tomb = rng.Uniform(7) == 0;
    mt.Insert(k, tomb ? "" : v, version, tomb ? EntryType::kTombstone : EntryType::kValue);
    model[k] = {version, tomb ? std::string() : v};
  }
  std::string_view v;
  uint64_t ver;
  EntryType t;
  for (const auto& [k, want] : model) {
    REQUIRE(mt.Get(k, &v, &ver, &t));
    CHECK(ver == want.first);
    CHECK(v == want.second);
    CHECK((t == EntryType::kTombstone) == want.second.empty());
    // The engine passes the segments' BloomHash: it must find the same entry.
    std::string_view v2;
    uint64_t ver2 = 0;
    REQUIRE(mt.Get(k, BloomHash(k), &v2, &ver2, &t));
    CHECK(ver2 == want.first);
    CHECK(v2 == want.second);
  }
  CHECK_FALSE(mt.Get("k300", &v, &ver, &t));
  CHECK_FALSE(mt.Get("", &v, &ver, &t));
}

TEST_CASE("storage: memtable keeps newest version first and snapshots hide later inserts") {
  MemTable mt(4096);
  mt.Insert("b", "b1", 1, EntryType::kValue);
  mt.Insert("a", "a1", 5, EntryType::kValue);
  MemTable::Iterator snap(&mt, mt.Count());
  mt.Insert("b", "", 7, EntryType::kTombstone);
  mt.Insert("c", "c1", 2, EntryType::kValue);

  std::string_view v;
  uint64_t ver;
  EntryType t;
  REQUIRE(mt.Get("b", &v, &ver, &t));
  CHECK(ver == 7);
  CHECK(t == EntryType::kTombstone);
  CHECK_FALSE(mt.Get("bb", &v, &ver, &t));

  std::vector<std::pair<std::string, uint64_t>> seen;
  for (snap.SeekToFirst(); snap.Valid(); snap.Next()) seen.emplace_back(snap.key(), snap.version());
  CHECK(seen == std::vector<std::pair<std::string, uint64_t>>{{"a", 5}, {"b", 1}});

  MemTable::Iterator all(&mt, mt.Count());
  seen.clear();
  for (all.Seek("b"); all.Valid(); all.Next()) seen.emplace_back(all.key(), all.version());
  CHECK(seen == std::vector<std::pair<std::string, uint64_t>>{{"b", 7}, {"c", 2}});
}

TEST_CASE("storage: bloom filter has no false negatives and few false positives") {
  BloomBuilder b;
  for (int i = 0; i < 10000; i++) b.AddKey("key" + std::to_string(i));
  BloomFilter f;
  REQUIRE(f.Init(b.Finish()));
  for (int i = 0; i < 10000; i++) CHECK(f.MayContain("key" + std::to_string(i)));
  int fp = 0;
  for (int i = 0; i < 10000; i++) fp += f.MayContain("other" + std::to_string(i));
  CHECK(fp < 300);  // ~1% expected at 10 bits/key; 3% bounds it with wide margin
  CHECK(f.MemoryUsage() <= 10000 * 10 / 8 + 128);
  BloomFilter bad;
  CHECK_FALSE(bad.Init(std::string(7, '\0')));
}

TEST_CASE("storage: log record round trip and torn record detection") {
  std::string rec;
  EncodeLogRecord("key", "value", 42, EntryType::kValue, &rec);
  LogRecord r;
  size_t n = 0;
  REQUIRE(DecodeLogRecord(rec, &r, &n) == DecodeResult::kOk);
  CHECK(n == rec.size());
  CHECK(r.key == "key");
  CHECK(r.value == "value");
  CHECK(r.version == 42);
  CHECK(r.type == EntryType::kValue);
  for (size_t cut = 0; cut < rec.size(); cut++) {
    CHECK(DecodeLogRecord(std::string_view(rec).substr(0, cut), &r, &n) != DecodeResult::kOk);
  }
  for (size_t i = 0; i < rec.size(); i++) {
    std::string bad = rec;
    bad[i] ^= 0x10;
    CHECK(DecodeLogRecord(bad, &r, &n) != DecodeResult::kOk);
  }
}

TEST_CASE("storage: segment write, point reads, seeks and iteration") {
  TempDir tmp;
  std::map<std::string, std::pair<uint64_t, std::string>> model;
  SegmentWriter w(128);
  REQUIRE(w.Open(tmp.path() + "/" + SegmentFileName(7)).ok());
  for (int i = 0; i < 2000; i += 2) {
    char k[16];
    snprintf(k, sizeof(k), "k%06d", i);
    std::string v(static_cast<size_t>(i % 50), static_cast<char>('a' + i % 26));
    model[k] = {static_cast<uint64_t>(i + 1), v};
    REQUIRE(w.Add(k, v, static_cast<uint64_t>(i + 1),
                  i % 10 == 0 ? EntryType::kTombstone : EntryType::kValue)
                .ok());
  }
  REQUIRE(w.Finish().ok());
  std::shared_ptr<Segment> seg;
  REQUIRE(Segment::Open(tmp.path(), 7, &seg).ok());
  CHECK(seg->entries() == 1000);
  for (int i = 0; i < 2000; i++) {
    char k[16];
    snprintf(k, sizeof(k), "k%06d", i);
    std::string v;
    uint64_t ver;
    EntryType t;
    Status s = seg->Get(k, &v, &ver, &t);
    if (i % 2 == 0) {
      REQUIRE(s.ok());
      CHECK(ver == static_cast<uint64_t>(i + 1));
      CHECK(v == model[k].second);
      CHECK((t == EntryType::kTombstone) == (i % 10 == 0));
    } else {
      CHECK(s.code() == Code::kNotFound);
    }
  }
  std::string v;
  uint64_t ver;
  EntryType t;
  CHECK(seg->Get("a", &v, &ver, &t).code() == Code::kNotFound);
  CHECK(seg->Get("z", &v, &ver, &t).code() == Code::kNotFound);
  Segment::Iterator it(seg);
  it.Seek("k000999");
  auto mit = model.lower_bound("k000999");
  size_t count = 0;
  for (; it.Valid(); it.Next(), ++mit, ++count) {
    REQUIRE(mit != model.end());
    CHECK(it.key() == mit->first);
    CHECK(it.version() == mit->second.first);
  }
  CHECK(mit == model.end());
  CHECK(count == 500);
  CHECK(it.status().ok());
}

TEST_CASE("storage: segment lookups when many blocks share a long key prefix") {
  TempDir tmp;
  SegmentWriter w(64);  // tiny blocks: many blocks, all with the same 8-byte key prefix
  std::vector<std::string> keys;
  for (int i = 0; i < 3000; i += 3) {
    char k[32];
    snprintf(k, sizeof(k), "user:000000%05d", i);
    keys.push_back(k);
    REQUIRE(w.Add(k, std::to_string(i), 1, EntryType::kValue).ok());
  }
  REQUIRE(w.Finish().ok());
  REQUIRE(w.entries() == keys.size());
  {
    std::string path = tmp.path() + "/" + SegmentFileName(9);
    FILE* f = fopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    fwrite(w.Contents().data(), 1, w.Contents().size(), f);
    fclose(f);
  }
  std::shared_ptr<Segment> seg;
  REQUIRE(Segment::Open(tmp.path(), 9, &seg).ok());
  for (int i = 0; i < 3000; i++) {
    char k[32];
    snprintf(k, sizeof(k), "user:000000%05d", i);
    std::string v;
    uint64_t ver;
    EntryType t;
    Status s = seg->Get(k, &v, &ver, &t);
    if (i % 3 == 0) {
      REQUIRE(s.ok());
      CHECK(v == std::to_string(i));
    } else {
      CHECK(s.code() == Code::kNotFound);
    }
    Segment::Iterator it(seg);
    it.Seek(k);
    auto want = std::lower_bound(keys.begin(), keys.end(), std::string(k));
    REQUIRE(it.Valid() == (want != keys.end()));
    if (it.Valid()) CHECK(it.key() == *want);
  }
  std::string v;
  uint64_t ver;
  EntryType t;
  CHECK(seg->Get("user:", &v, &ver, &t).code() == Code::kNotFound);
  CHECK(seg->Get("user:000000", &v, &ver, &t).code() == Code::kNotFound);
  CHECK(seg->Get("user:000000999999", &v, &ver, &t).code() == Code::kNotFound);
  CHECK(seg->Get("user:1", &v, &ver, &t).code() == Code::kNotFound);
}

TEST_CASE("storage: size-tiered pick merges a contiguous run of one tier") {
  size_t b = 0, e = 0;
  CHECK_FALSE(PickCompaction({100, 100, 100}, 100, &b, &e));
  REQUIRE(PickCompaction({100, 90, 80, 100, 5000}, 100, &b, &e));
  CHECK(b == 0);
  CHECK(e == 4);
  REQUIRE(PickCompaction({100, 350, 300, 390, 310, 5000}, 100, &b, &e));
  CHECK(b == 1);
  CHECK(e == 5);
}

TEST_CASE("storage: compaction is behind only past kMaxSegments with something to merge") {
  std::vector<uint64_t> sizes(kMaxSegments, 100);  // one tier, mergeable, but not too many
  CHECK_FALSE(CompactionBehind(sizes, 100));
  sizes.push_back(100);
  CHECK(CompactionBehind(sizes, 100));
  // As many segments, each in its own 4x tier: nothing to merge, so nothing to wait for.
  std::vector<uint64_t> tiers;
  for (size_t i = 0; i <= kMaxSegments; i++) tiers.push_back(uint64_t{100} << (2 * i));
  CHECK_FALSE(CompactionBehind(tiers, 100));
  tiers.insert(tiers.begin(), {100, 100, 100});  // plus four in the smallest tier
  CHECK(CompactionBehind(tiers, 100));
}

TEST_CASE("storage: engine put/get/remove, newest version wins, reopen") {
  TempDir tmp;
  for (bool background : {false, true}) {
    std::unique_ptr<Engine> db;
    REQUIRE(
        Engine::Open(SmallOptions(tmp.store() + std::to_string(background), background), &db).ok());
    uint64_t stored = 0;
    REQUIRE(db->Put("k", "v10", 10, &stored).ok());
    CHECK(stored == 10);
    REQUIRE(db->Put("k", "v5", 5, &stored).ok());  // older: no-op, reports the newer version
    CHECK(stored == 10);
    ReadResult r;
    REQUIRE(db->Get("k", &r).ok());
    CHECK(r.kind == ReadResult::kValue);
    CHECK(r.value == "v10");
    CHECK(r.version == 10);
    REQUIRE(db->Remove("k", 8, &stored).ok());  // older tombstone: no-op
    CHECK(stored == 10);
    REQUIRE(db->Remove("k", 12, &stored).ok());
    CHECK(stored == 12);
    REQUIRE(db->Get("k", &r).ok());
    CHECK(r.kind == ReadResult::kTombstone);
    CHECK(r.version == 12);
    REQUIRE(db->Flush().ok());
    // The check also applies against data that is only in segments.
    REQUIRE(db->Put("k", "v11", 11, &stored).ok());
    CHECK(stored == 12);
    REQUIRE(db->Put("k", "v13", 13, &stored).ok());
    CHECK(stored == 13);
    REQUIRE(db->Get("absent", &r).ok());
    CHECK(r.kind == ReadResult::kAbsent);
    db.reset();
    REQUIRE(
        Engine::Open(SmallOptions(tmp.store() + std::to_string(background), background), &db).ok());
    REQUIRE(db->Get("k", &r).ok());
    CHECK(r.value == "v13");
    CHECK(r.version == 13);
  }
}

TEST_CASE("storage: a second Open of the same directory is refused") {
  TempDir tmp;
  std::unique_ptr<Engine> a, b;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &a).ok());
  CHECK_FALSE(Engine::Open(SmallOptions(tmp.store(), false), &b).ok());
}

TEST_CASE("storage: tombstones are dropped by compaction only when old enough") {
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  o.tombstone_gc_seconds = 3600;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  uint64_t now = NowMillis();
  uint64_t old_v = HlcVersion(now - 2 * 3600 * 1000), young_v = HlcVersion(now);
  REQUIRE(db->Put("old", "x", old_v - 5).ok());
  REQUIRE(db->Put("young", "x", young_v - 5).ok());
  REQUIRE(db->Flush().ok());
  REQUIRE(db->Remove("old", old_v).ok());
  REQUIRE(db->Remove("young", young_v).ok());
  REQUIRE(db->Flush().ok());
  REQUIRE(db->Put("other", "x", young_v).ok());
  REQUIRE(db->Flush().ok());
  REQUIRE(db->CompactAll().ok());
  CHECK(db->GetStats().segments == 1);
  ReadResult r;
  REQUIRE(db->Get("old", &r).ok());
  CHECK(r.kind == ReadResult::kAbsent);  // tombstone and the value under it are gone
  REQUIRE(db->Get("young", &r).ok());
  CHECK(r.kind == ReadResult::kTombstone);
  CHECK(r.version == young_v);
  int n = 0;
  for (auto it = db->Scan("", std::nullopt); it->Valid(); it->Next()) n++;
  CHECK(n == 2);
}

TEST_CASE("storage: an open iterator keeps its snapshot through writes, flush and compaction") {
  TempDir tmp;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  for (int i = 0; i < 300; i++) REQUIRE(db->Put("k" + std::to_string(1000 + i), "a", 1).ok());
  REQUIRE(db->Flush().ok());
  for (int i = 0; i < 300; i += 2) REQUIRE(db->Put("k" + std::to_string(1000 + i), "b", 2).ok());
  auto it = db->Scan("k1100", "k1200");
  const uint64_t held = db->GetStats().segments;  // the iterator's snapshot holds these
  REQUIRE(held >= 1);
  for (int i = 0; i < 300; i++) REQUIRE(db->Put("k" + std::to_string(1000 + i), "c", 3).ok());
  REQUIRE(db->Put("k1150x", "new", 3).ok());
  REQUIRE(db->Flush().ok());
  REQUIRE(db->CompactAll().ok());
  int n = 0;
  for (; it->Valid(); it->Next(), n++) {
    int i = std::stoi(std::string(it->key().substr(1)));
    CHECK(it->value() == (i % 2 == 0 ? "b" : "a"));
  }
  CHECK(it->status().ok());
  CHECK(n == 100);
  auto seg_files = [&] {
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(tmp.store())) {
      files += e.path().extension() == ".seg";
    }
    return files;
  };
  CHECK(db->GetStats().segments == 1);
  // The compacted inputs the iterator reads live on, beside the compaction's output.
  CHECK(seg_files() == static_cast<int>(held) + 1);
  it.reset();
  CHECK(seg_files() == 1);  // and go away with it
  ReadResult r;
  REQUIRE(db->Get("k1150", &r).ok());
  CHECK(r.value == "c");
}

TEST_CASE("storage: background compactions that skip the oldest segment keep old tombstones") {
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), true);
  o.tombstone_gc_seconds = 1;  // every tombstone below is old enough to collect
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  uint64_t old = HlcVersion(NowMillis() - 3600 * 1000);
  auto key = [](int i) { return "k" + std::to_string(1000 + i); };
  // The oldest segment: large (a higher size tier than the small ones below) with the values.
  for (int i = 0; i < 300; i++) REQUIRE(db->Put(key(i), "value", old + 1).ok());
  for (int i = 0; i < 3000; i++) REQUIRE(db->Put("filler" + std::to_string(i), "x", old).ok());
  REQUIRE(db->Flush().ok());
  auto check_removed = [&](Engine* e, int upto) {
    for (int i = 0; i < upto; i++) {
      ReadResult r;
      REQUIRE(e->Get(key(i), &r).ok());
      CHECK(r.kind != ReadResult::kValue);  // a delete never comes back
    }
  };
  for (int round = 0; round < 12; round++) {
    for (int i = round * 25; i < round * 25 + 25; i++) REQUIRE(db->Remove(key(i), old + 2).ok());
    REQUIRE(db->Flush().ok());  // small segments: background merges them among themselves
    check_removed(db.get(), round * 25 + 25);
  }
  Stats st = db->GetStats();
  db.reset();  // joins the background threads
  o.background = false;
  REQUIRE(Engine::Open(o, &db).ok());
  check_removed(db.get(), 300);
  MESSAGE("background compactions before the full one: " << st.compactions);
  REQUIRE(db->CompactAll().ok());  // includes the oldest segment: tombstones and values go
  for (int i = 0; i < 300; i++) {
    ReadResult r;
    REQUIRE(db->Get(key(i), &r).ok());
    CHECK(r.kind == ReadResult::kAbsent);
  }
  ReadResult r;
  REQUIRE(db->Get("filler7", &r).ok());
  CHECK(r.kind == ReadResult::kValue);
}

namespace {
// (name, nice, scheduling policy) of each of this process's threads, from /proc/self/task/*/stat
// (fields 2, 19 and 41).
std::multiset<std::tuple<std::string, int, int>> ThreadPriorities() {
  std::multiset<std::tuple<std::string, int, int>> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream f(e.path() / "stat");
    std::string line;
    std::getline(f, line);
    size_t open = line.find('('), close = line.rfind(')');  // the name may hold spaces
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string name = line.substr(open + 1, close - open - 1);
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    int nice = 0;
    for (int i = 3; i <= 41 && rest >> field; i++) {
      if (i == 19) nice = std::stoi(field);
      if (i == 41) out.insert({name, nice, std::stoi(field)});
    }
  }
  return out;
}

size_t CountThreads(const std::string& name, int nice, int policy) {
  return ThreadPriorities().count({name, nice, policy});
}
}  // namespace

TEST_CASE("storage: compaction and index threads run under SCHED_IDLE, the flush thread niced") {
  TempDir tmp;
  // Relative to the nice value this test runs at (`nice make test` must pass too).
  errno = 0;
  const int base = getpriority(PRIO_PROCESS, 0);
  REQUIRE(errno == 0);
  const int flush = std::min(base + 7, 19);
  for (bool background_idle : {true, false}) {
    Options o = SmallOptions(tmp.store() + std::to_string(background_idle), true);
    o.background_idle = background_idle;
    o.flush_nice = 7;
    const int bg = background_idle ? SCHED_IDLE : SCHED_OTHER;
    REQUIRE(CountThreads("kv-flush", flush, SCHED_OTHER) == 0);
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    // Open returns once the three are set up, each named for top -H and perf.
    CHECK(CountThreads("kv-compact", base, bg) == 1);
    CHECK(CountThreads("kv-index", base, bg) == 1);
    CHECK(CountThreads("kv-flush", flush, SCHED_OTHER) == 1);
    db.reset();
    CHECK(CountThreads("kv-compact", base, bg) == 0);
    CHECK(CountThreads("kv-index", base, bg) == 0);
    CHECK(CountThreads("kv-flush", flush, SCHED_OTHER) == 0);
  }
}

TEST_CASE("storage: memtables freeze at sizes spread over [3/4, 1] of memtable_bytes") {
  TempDir tmp;
  for (bool jitter : {true, false}) {
    Options o = SmallOptions(tmp.store() + std::to_string(jitter), false);
    o.memtable_bytes = 64 << 10;
    o.memtable_jitter = jitter;
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    const std::string value(200, 'v');
    std::set<uint64_t> before_freeze;  // the active table's size before the insert that froze it
    int freezes = 0;
    for (int i = 0; freezes < 20 && i < 200000; i++) {
      uint64_t before = db->GetStats().memtable_bytes;  // active only: frozen ones are flushed
      REQUIRE(db->Put("k" + std::to_string(i), value, static_cast<uint64_t>(i + 1)).ok());
      if (db->GetStats().frozen_memtables == 0) continue;
      CHECK(before <= o.memtable_bytes);
      CHECK(before + 4096 + 256 >= o.memtable_bytes * 3 / 4);  // one arena block, one entry
      before_freeze.insert(before);
      freezes++;
      REQUIRE(db->Flush().ok());
    }
    REQUIRE(freezes == 20);
    if (jitter) {
      CHECK(before_freeze.size() >= 2);  // 20 draws from [48K, 64K] in 4 KiB arena steps
    } else {
      CHECK(*before_freeze.begin() + 4096 + 256 >= o.memtable_bytes);
    }
  }
}

TEST_CASE("storage: a freeze takes the memtable the flush thread made ahead") {
  TempDir tmp;
  const std::string value(200, 'v');
  // Writes until the active memtable froze n more times (each frozen one flushed by hand when
  // there are no background threads).
  auto freeze = [&](Engine* db, bool flush_by_hand, int* next_key) {
    uint64_t before = db->GetStats().flushes + db->GetStats().frozen_memtables;
    while (db->GetStats().flushes + db->GetStats().frozen_memtables == before) {
      REQUIRE(db->Put("k" + std::to_string((*next_key)++), value, 1).ok());
    }
    if (flush_by_hand) REQUIRE(db->Flush().ok());
  };
  SUBCASE("without background threads every freeze makes its own") {
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
    int k = 0;
    for (int i = 0; i < 3; i++) freeze(db.get(), true, &k);
    CHECK(db->GetStats().freezes_without_spare >= 3);
    CHECK(db->GetStats().spare_memtables == 0);
  }
  SUBCASE("with them the writer's freeze makes none") {
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(SmallOptions(tmp.store(), true), &db).ok());
    // Open kicks the flush thread, which prepares the spares first: wait for it (bounded).
    for (int i = 0; i < 10000000 && db->GetStats().spare_memtables == 0; i++) {
      std::this_thread::yield();
    }
    REQUIRE(db->GetStats().spare_memtables == 1);
    int k = 0;
    freeze(db.get(), false, &k);
    CHECK(db->GetStats().freezes_without_spare == 0);
  }
}

TEST_CASE("storage: stats count frozen memtables until they are flushed") {
  TempDir tmp;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());  // no background threads
  const std::string value(200, 'v');
  for (int i = 0; i < 400; i++) REQUIRE(db->Put("k" + std::to_string(i), value, 1).ok());
  Stats st = db->GetStats();
  CHECK(st.frozen_memtables >= 1);  // 80 KB through a 16 KB memtable, nothing flushes them
  CHECK(st.background_jobs == 0);
  REQUIRE(db->Flush().ok());
  st = db->GetStats();
  CHECK(st.frozen_memtables == 0);
  CHECK(st.background_jobs == 0);
  CHECK(st.flushes >= 2);
}
