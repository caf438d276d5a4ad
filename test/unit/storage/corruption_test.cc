// Corruption tests: torn and corrupted log tails are cut at the last whole record; flipped bits
// in any part of a segment are detected (Open refuses with the file name, or the affected reads
// fail) and never turn into wrong data.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "storage/engine.h"
#include "storage/segment.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;
namespace fs = std::filesystem;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}
std::vector<std::string> FilesWithExt(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
std::string Key(int i) {
  return "key" + std::to_string(10000 + i);
}
std::string Value(int i) {
  return "value-" + std::to_string(i) + std::string(i % 37, 'z');
}
// Options for a store whose Key(0..n) / Value(i) at version 100 + i are all in one segment
// (written here); returns that segment's path.
std::string WriteOneSegment(const std::string& dir, int n, Options* o) {
  *o = SmallOptions(dir, false);
  o->memtable_bytes = 4 << 20;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(*o, &db).ok());
  for (int i = 0; i < n; i++) REQUIRE(db->Put(Key(i), Value(i), 100 + i).ok());
  REQUIRE(db->Flush().ok());
  db.reset();
  auto segs = FilesWithExt(o->dir, ".seg");
  REQUIRE(segs.size() == 1);
  return segs[0];
}

}  // namespace

TEST_CASE("storage corruption: torn log tail is cut, everything before it kept") {
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  o.memtable_bytes = 1 << 20;  // everything stays in the log
  const int n = 40;
  {
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    for (int i = 0; i < n; i++) REQUIRE(db->Put(Key(i), Value(i), 100 + i).ok());
  }
  auto logs = FilesWithExt(o.dir, ".log");
  REQUIRE(logs.size() == 1);
  const std::string pristine = ReadFile(logs[0]);
  // Record boundaries: record i ends at ends[i].
  std::vector<size_t> ends;
  size_t pos = 0;
  for (int i = 0; i < n; i++) {
    pos += 8 + Key(i).size() + Value(i).size() + 17;
    ends.push_back(pos);
  }
  REQUIRE(ends.back() == pristine.size());
  Rng rng(5);
  for (int trial = 0; trial < 12; trial++) {
    fs::remove_all(o.dir);
    fs::create_directories(o.dir);
    size_t cut = rng.Uniform(pristine.size());
    bool flip = trial % 2 == 1;
    std::string data = pristine;
    if (flip) {
      data[cut] ^= static_cast<char>(1 << rng.Uniform(8));  // corrupt a record mid-log
    } else {
      data.resize(cut);  // torn tail
    }
    WriteFile(logs[0], data);
    int kept = 0;
    while (kept < n && ends[kept] <= cut) kept++;
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    for (int i = 0; i < n; i++) {
      ReadResult r;
      REQUIRE(db->Get(Key(i), &r).ok());
      if (i < kept) {
        CHECK(r.kind == ReadResult::kValue);
        CHECK(r.value == Value(i));
      } else {
        CHECK(r.kind == ReadResult::kAbsent);
      }
    }
    // The cut log no longer has the bad tail, and new writes after it survive a reopen.
    CHECK(fs::file_size(logs[0]) == (kept == 0 ? 0 : ends[kept - 1]));
    REQUIRE(db->Put("after", "x", 1).ok());
    db.reset();
    REQUIRE(Engine::Open(o, &db).ok());
    ReadResult r;
    REQUIRE(db->Get("after", &r).ok());
    CHECK(r.kind == ReadResult::kValue);
    if (kept > 0) {
      REQUIRE(db->Get(Key(kept - 1), &r).ok());
      CHECK(r.value == Value(kept - 1));
    }
  }
}

TEST_CASE("storage corruption: flipped bits in every part of a segment are detected") {
  TempDir tmp;
  Options o;
  const int n = 3000;
  const std::string seg_path = WriteOneSegment(tmp.store(), n, &o);
  REQUIRE(FilesWithExt(o.dir, ".log").size() == 1);  // the new, empty log
  const std::string seg_name = fs::path(seg_path).filename().string();
  const std::string pristine = ReadFile(seg_path);
  Footer f;
  {
    std::shared_ptr<Segment> seg;
    uint64_t number = std::stoull(seg_name.substr(4));
    REQUIRE(Segment::Open(o.dir, number, &seg).ok());
    f = seg->footer();
  }
  struct Region {
    const char* name;
    uint64_t begin, end;
    bool open_fails;
  };
  std::vector<Region> regions = {
      {"data blocks", 0, f.filter_offset, false},
      {"filter", f.filter_offset, f.index_offset, true},
      {"index", f.index_offset, pristine.size() - kFooterBytes, true},
      {"footer", pristine.size() - kFooterBytes, pristine.size(), true},
  };
  Rng rng(9);
  for (const Region& region : regions) {
    CAPTURE(region.name);
    for (int trial = 0; trial < 8; trial++) {
      std::string data = pristine;
      uint64_t off = region.begin + rng.Uniform(region.end - region.begin);
      CAPTURE(off);
      data[off] ^= static_cast<char>(1 << rng.Uniform(8));
      WriteFile(seg_path, data);
      std::unique_ptr<Engine> db;
      Status s = Engine::Open(o, &db);
      if (region.open_fails) {
        REQUIRE_FALSE(s.ok());
        CHECK(s.code() == Code::kCorruption);
        CHECK(s.message().find(seg_name) != std::string::npos);
        continue;
      }
      REQUIRE(s.ok());
      int bad = 0;
      for (int i = 0; i < n; i++) {
        ReadResult r;
        Status g = db->Get(Key(i), &r);
        if (!g.ok()) {
          CHECK(g.code() == Code::kCorruption);
          CHECK(g.message().find(seg_name) != std::string::npos);
          bad++;
          continue;
        }
        REQUIRE(r.kind == ReadResult::kValue);  // never wrong data
        CHECK(r.value == Value(i));
        CHECK(r.version == static_cast<uint64_t>(100 + i));
      }
      CHECK(bad > 0);
      auto it = db->Scan("", std::nullopt);
      int seen = 0;
      for (; it->Valid(); it->Next()) seen++;
      CHECK(seen < n);
      CHECK(it->status().code() == Code::kCorruption);
      CHECK(db->CompactAll().code() == Code::kCorruption);  // compaction never drops bad data
      // A write must know the stored version: it fails exactly where reads fail.
      for (int i = 0; i < n; i += 97) {
        ReadResult r;
        Status gs = db->Get(Key(i), &r);
        uint64_t stored = 0;
        Status ps = db->Put(Key(i), "stale", 1, &stored);
        CHECK(ps.ok() == gs.ok());
        if (ps.ok()) CHECK(stored == static_cast<uint64_t>(100 + i));
      }
    }
  }
  // A truncated segment is refused too.
  WriteFile(seg_path, pristine.substr(0, pristine.size() - 3));
  std::unique_ptr<Engine> db;
  Status s = Engine::Open(o, &db);
  CHECK(s.code() == Code::kCorruption);
  CHECK(s.message().find(seg_name) != std::string::npos);
  WriteFile(seg_path, pristine);
  REQUIRE(Engine::Open(o, &db).ok());
}

TEST_CASE("storage corruption: a block whose trailer is damaged answers no read") {
  // A point read searches a block's trailer (entry offsets, key prefixes, count) before its
  // checksum has been checked, to start fetching the entry early. Whatever byte of the trailer
  // or of its checksum is flipped, every read of a key in that block must fail, hits included.
  TempDir tmp;
  Options o;
  const int n = 500;
  const std::string seg_path = WriteOneSegment(tmp.store(), n, &o);
  const std::string pristine = ReadFile(seg_path);
  Footer f;
  REQUIRE(f.DecodeFrom(pristine.data() + pristine.size() - kFooterBytes));
  // The first block: offset 0, its size (without the checksum) in the index's first entry.
  const uint64_t block_size = GetFixed32(pristine.data() + f.index_offset + 4 + 8);
  const uint32_t count = GetFixed32(pristine.data() + block_size - 4);
  REQUIRE(count > 1);
  const uint64_t trailer = block_size - 4 - 12ull * count;
  REQUIRE(f.filter_offset > block_size + kChecksumBytes);  // more than one block
  // The byte positions to damage: first and last entry offset, first and last key prefix, the
  // count, the checksum.
  std::vector<uint64_t> spots = {trailer,
                                 trailer + 4ull * count - 1,
                                 trailer + 4ull * count,
                                 block_size - 5,
                                 block_size - 4,
                                 block_size,
                                 block_size + kChecksumBytes - 1};
  for (uint64_t spot : spots) {
    CAPTURE(spot);
    std::string data = pristine;
    data[spot] ^= 1;
    WriteFile(seg_path, data);
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    uint32_t failed = 0;
    for (int i = 0; i < n; i++) {
      ReadResult r;
      Status g = db->Get(Key(i), &r);
      if (!g.ok()) {
        CHECK(g.code() == Code::kCorruption);
        failed++;
        continue;
      }
      REQUIRE(r.kind == ReadResult::kValue);
      CHECK(r.value == Value(i));
    }
    CHECK(failed == count);  // exactly the keys of the damaged block
  }
}

TEST_CASE("storage corruption: a damaged manifest stops Open with its name") {
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  {
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    REQUIRE(db->Put("a", "b", 1).ok());
    REQUIRE(db->Flush().ok());
  }
  std::string m = ReadFile(o.dir + "/MANIFEST");
  m[m.size() / 2] ^= 1;
  WriteFile(o.dir + "/MANIFEST", m);
  std::unique_ptr<Engine> db;
  Status s = Engine::Open(o, &db);
  CHECK(s.code() == Code::kCorruption);
  CHECK(s.message().find("MANIFEST") != std::string::npos);
}
