// VersionSet: each edit (a flush's segment in front, a compaction's output in place of its run)
// is written to the MANIFEST and installed in the state readers see, together; a failed manifest
// write installs nothing. Replaced segments' files go once the last reference lets go.
#include "storage/version_set.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "storage/coding.h"
#include "storage/file_io.h"
#include "storage/manifest.h"
#include "storage/segment_writer.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

std::shared_ptr<Segment> MakeSegment(const std::string& dir, uint64_t number) {
  SegmentWriter w(256);
  REQUIRE(w.Open(dir + "/" + SegmentFileName(number)).ok());
  REQUIRE(w.Add("key" + std::to_string(number), "value", number, EntryType::kValue).ok());
  REQUIRE(w.Finish().ok());
  std::shared_ptr<Segment> seg;
  REQUIRE(Segment::Open(dir, number, &seg).ok());
  return seg;
}

std::vector<uint64_t> Numbers(const State& st) {
  std::vector<uint64_t> out;
  for (const auto& seg : st.segments) out.push_back(seg->number());
  return out;
}

Manifest OnDisk(const std::string& dir) {
  Manifest m;
  REQUIRE(ReadManifest(dir, &m).ok());
  return m;
}

bool Exists(const std::string& dir, uint64_t number) {
  return std::filesystem::exists(dir + "/" + SegmentFileName(number));
}

ssize_t NoSpace(int, const void*, size_t) {
  errno = ENOSPC;
  return -1;
}

// A set with two frozen memtables (newest first) and no segments; file numbers from 10.
struct Fixture {
  TempDir tmp;
  std::string dir = tmp.path();
  VersionSet vs{dir};
  std::shared_ptr<Frozen> newer = std::make_shared<Frozen>(), older = std::make_shared<Frozen>();
  Fixture() {
    auto st = std::make_shared<State>();
    st->active = std::make_shared<MemTable>(4096);
    newer->mem = std::make_shared<MemTable>(4096);
    older->mem = std::make_shared<MemTable>(4096);
    st->frozen = {newer, older};
    Manifest m;
    m.next_file = 10;
    vs.Reset(m, 10, st);
  }
  void Flush(uint64_t number, uint64_t min_log) {
    VersionEdit e;
    e.added = MakeSegment(dir, number);
    e.retire_oldest_frozen = true;
    e.min_log = min_log;
    REQUIRE(vs.Apply(e, nullptr).ok());
  }
};

}  // namespace

TEST_CASE("version set: file numbers come from one counter starting where recovery left it") {
  Fixture f;
  CHECK(f.vs.NewFileNumber() == 10);
  CHECK(f.vs.NewFileNumber() == 11);
}

TEST_CASE("version set: a flush edit prepends its segment, retires the oldest frozen memtable") {
  Fixture f;
  VersionEdit e;
  e.added = MakeSegment(f.dir, 3);
  e.retire_oldest_frozen = true;
  e.min_log = 5;
  f.vs.NewFileNumber();
  uint64_t bytes = 7;
  REQUIRE(f.vs.Apply(e, &bytes).ok());
  CHECK(bytes == 7 + f.vs.manifest().Encode().size());  // grows by what was written

  std::shared_ptr<const State> st = f.vs.Current();
  CHECK(Numbers(*st) == std::vector<uint64_t>{3});
  REQUIRE(st->frozen.size() == 1);
  CHECK(st->frozen[0] == f.newer);
  Manifest m = OnDisk(f.dir);
  CHECK(m.segments == std::vector<uint64_t>{3});
  CHECK(m.min_log == 5);
  CHECK(m.next_file == 11);  // numbers handed out before the edit are never reused
  CHECK(f.vs.manifest().segments == m.segments);

  f.Flush(4, 6);
  CHECK(Numbers(*f.vs.Current()) == std::vector<uint64_t>{4, 3});
  CHECK(f.vs.Current()->frozen.empty());
  CHECK(OnDisk(f.dir).segments == std::vector<uint64_t>{4, 3});
  CHECK(OnDisk(f.dir).min_log == 6);
}

TEST_CASE("version set: a compaction edit replaces its run in place and frees the inputs") {
  Fixture f;
  f.Flush(5, 1);
  f.Flush(6, 2);
  auto st = std::make_shared<State>(*f.vs.Current());
  // A third segment on top, through the same path.
  VersionEdit top;
  top.added = MakeSegment(f.dir, 7);
  REQUIRE(f.vs.Apply(top, nullptr).ok());
  REQUIRE(Numbers(*f.vs.Current()) == std::vector<uint64_t>{7, 6, 5});

  VersionEdit e;
  e.removed = {f.vs.Current()->segments[1]};  // the middle one
  e.added = MakeSegment(f.dir, 8);
  REQUIRE(f.vs.Apply(e, nullptr).ok());
  CHECK(Numbers(*f.vs.Current()) == std::vector<uint64_t>{7, 8, 5});
  CHECK(OnDisk(f.dir).segments == std::vector<uint64_t>{7, 8, 5});
  CHECK(OnDisk(f.dir).min_log == 2);  // untouched by an edit without min_log
  CHECK(Exists(f.dir, 6));            // a reader (st, e) still holds it
  st.reset();
  e.removed.clear();
  CHECK_FALSE(Exists(f.dir, 6));

  VersionEdit all;  // a merge of everything that kept no entry
  all.removed = f.vs.Current()->segments;
  REQUIRE(f.vs.Apply(all, nullptr).ok());
  all.removed.clear();
  top.added.reset();
  e.added.reset();
  CHECK(f.vs.Current()->segments.empty());
  CHECK(OnDisk(f.dir).segments.empty());
  CHECK_FALSE(Exists(f.dir, 7));
  CHECK_FALSE(Exists(f.dir, 8));
  CHECK_FALSE(Exists(f.dir, 5));
}

TEST_CASE("version set: a failed manifest write installs nothing and drops the new segment") {
  Fixture f;
  f.Flush(3, 1);
  std::shared_ptr<const State> before = f.vs.Current();
  VersionEdit e;
  e.added = MakeSegment(f.dir, 4);
  e.retire_oldest_frozen = true;
  e.min_log = 9;
  g_write_hook.store(&NoSpace);
  Status s = f.vs.Apply(e, nullptr);
  g_write_hook.store(nullptr);
  CHECK(s.code() == Code::kNoSpace);
  CHECK(f.vs.Current() == before);
  CHECK(OnDisk(f.dir).segments == std::vector<uint64_t>{3});
  CHECK(OnDisk(f.dir).min_log == 1);
  CHECK(f.vs.manifest().min_log == 1);
  CHECK_FALSE(std::filesystem::exists(f.dir + "/MANIFEST.tmp"));
  e.added.reset();
  CHECK_FALSE(Exists(f.dir, 4));
  CHECK(Exists(f.dir, 3));
}

TEST_CASE("version set: freezing makes the active memtable the newest frozen one") {
  Fixture f;
  std::shared_ptr<const State> before = f.vs.Current();
  auto frozen = std::make_shared<Frozen>();
  frozen->mem = before->active;
  auto fresh = std::make_shared<MemTable>(4096);
  f.vs.FreezeActive(frozen, fresh);
  std::shared_ptr<const State> st = f.vs.Current();
  CHECK(st->active == fresh);
  REQUIRE(st->frozen.size() == 3);
  CHECK(st->frozen[0] == frozen);
  CHECK(st->frozen[1] == f.newer);
  CHECK(before->active == frozen->mem);  // earlier snapshots are never changed
  CHECK(before->frozen.size() == 2);
  CHECK_FALSE(std::filesystem::exists(f.dir + "/MANIFEST"));  // no manifest write
}
