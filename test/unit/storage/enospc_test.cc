// Disk-full tests through the write(2) seam in file_io.h: a failed or short log write fails the
// Put with kNoSpace and leaves no torn record behind; a failed flush keeps the data readable;
// once space is back, writes and flushes succeed and a reopen finds every acknowledged write.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "storage/engine.h"
#include "storage/file_io.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

enum Mode { kPass = 0, kFailAll = 1, kShortThenFail = 2 };
std::atomic<int> g_mode{kPass};
std::atomic<bool> g_only_segments{false};

bool IsSegmentFd(int fd) {
  char link[64], target[PATH_MAX];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  return strstr(target, ".seg") != nullptr;
}

ssize_t FullDisk(int fd, const void* buf, size_t n) {
  int mode = g_mode.load();
  if (mode == kPass || (g_only_segments.load() && !IsSegmentFd(fd))) return ::write(fd, buf, n);
  if (mode == kShortThenFail && n > 1) {
    g_mode.store(kFailAll);
    return ::write(fd, buf, n / 2);  // part of the record reaches the file, then the disk fills
  }
  errno = ENOSPC;
  return -1;
}

struct HookGuard {
  HookGuard() {
    g_mode.store(kPass);
    g_only_segments.store(false);
    g_write_hook.store(&FullDisk);
  }
  ~HookGuard() { g_write_hook.store(nullptr); }
};

// A small store's options with each kind of log in turn, one subcase each.
Options EachLogKind(const TempDir& tmp) {
  Options o = SmallOptions(tmp.store(), false);
  o.memtable_bytes = 1 << 20;
  SUBCASE("appended log") {
    o.fsync = FsyncPolicy::kNever;
  }
  SUBCASE("preallocated log (--fsync always)") {
    o.fsync = FsyncPolicy::kAlways;
  }
  return o;
}

}  // namespace

TEST_CASE("storage enospc: failed log writes report kNoSpace and leave the store consistent") {
  HookGuard guard;
  TempDir tmp;
  Options o = EachLogKind(tmp);
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  for (int i = 0; i < 50; i++) REQUIRE(db->Put("k" + std::to_string(i), "v1", 10).ok());

  g_mode.store(kShortThenFail);
  Status s = db->Put("k1", "v2", 20);
  CHECK(s.code() == Code::kNoSpace);
  CHECK(s.message().find(".log") != std::string::npos);
  CHECK(db->Put("k2", "v2", 20).code() == Code::kNoSpace);
  CHECK(db->Remove("k3", 20).code() == Code::kNoSpace);
  ReadResult r;
  REQUIRE(db->Get("k1", &r).ok());
  CHECK(r.version == 10);  // the failed write is not visible
  CHECK(r.value == "v1");

  g_mode.store(kPass);  // space is back
  REQUIRE(db->Put("k4", "v2", 20).ok());
  REQUIRE(db->Put("new", "x", 5).ok());
  db.reset();
  REQUIRE(Engine::Open(o, &db).ok());  // no torn record in the middle of the log
  REQUIRE(db->Get("k1", &r).ok());
  CHECK(r.version == 10);
  REQUIRE(db->Get("k4", &r).ok());
  CHECK(r.version == 20);
  REQUIRE(db->Get("new", &r).ok());
  CHECK(r.kind == ReadResult::kValue);
  REQUIRE(db->Get("k49", &r).ok());
  CHECK(r.value == "v1");
}

// A short write of a batch can leave whole records of it in the file. A shorter record written
// over their start must not let the rest of them replay: cut away (appended log) or zeroed over
// (preallocated log).
TEST_CASE("storage enospc: whole records of a failed batch never replay after a later write") {
  HookGuard guard;
  TempDir tmp;
  Options o = EachLogKind(tmp);
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  REQUIRE(db->Put("before", "v", 1).ok());
  // Half of this batch reaches the file: the two short records whole, the long one in part.
  const std::string big(4000, 'b');
  Engine::WriteOp ops[3] = {{"a1", "x", 5}, {"a2", "y", 5}, {"a3", big, 5}};
  g_mode.store(kShortThenFail);
  CHECK(db->Write(ops, 3).code() == Code::kNoSpace);
  g_mode.store(kPass);
  // Encoded as long as a1's record: a2's whole record follows it in the file unless removed.
  REQUIRE(db->Put("d1", "z", 6).ok());
  db.reset();
  REQUIRE(Engine::Open(o, &db).ok());
  ReadResult r;
  REQUIRE(db->Get("d1", &r).ok());
  CHECK(r.kind == ReadResult::kValue);
  REQUIRE(db->Get("before", &r).ok());
  CHECK(r.kind == ReadResult::kValue);
  for (const char* k : {"a1", "a2", "a3"}) {
    REQUIRE(db->Get(k, &r).ok());
    CHECK_MESSAGE(r.kind == ReadResult::kAbsent, k);
  }
}

// fdatasync of the log fails once with EIO (the seam in file_io.h); every other sync is real.
std::atomic<int> g_log_sync_failures{0};
int FailLogSyncOnce(int fd) {
  if (!IsSegmentFd(fd) && g_log_sync_failures.fetch_sub(1) > 0) {
    errno = EIO;
    return -1;
  }
  return ::fdatasync(fd);
}

TEST_CASE(
    "storage: after a failed log fdatasync no write on that log is acknowledged, and a "
    "flush makes its records durable and a new log takes writes again") {
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  o.fsync = FsyncPolicy::kAlways;
  o.memtable_bytes = 1 << 20;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  REQUIRE(db->Put("a", "1", 10).ok());
  g_log_sync_failures.store(1);
  g_sync_hook.store(&FailLogSyncOnce);
  CHECK(db->Put("b", "2", 10).code() == Code::kIoError);
  // The next fdatasync would succeed; the log still acknowledges nothing.
  CHECK(db->Put("c", "3", 10).code() == Code::kIoError);
  CHECK(g_log_sync_failures.load() == 0);
  // The flush goes on past the log's failed sync: the segment holds what the log held.
  REQUIRE(db->Flush().ok());
  CHECK(db->Put("d", "4", 10).ok());  // the new log
  g_sync_hook.store(nullptr);
  db.reset();
  REQUIRE(Engine::Open(o, &db).ok());
  ReadResult r;
  for (const char* k : {"a", "d"}) {
    REQUIRE(db->Get(k, &r).ok());
    CHECK_MESSAGE(r.kind == ReadResult::kValue, k);
  }
}

TEST_CASE("storage enospc: a flush that hits a full disk keeps data and succeeds later") {
  HookGuard guard;
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  for (int i = 0; i < 500; i++) REQUIRE(db->Put("k" + std::to_string(i), "value", 10).ok());
  g_only_segments.store(true);
  g_mode.store(kShortThenFail);
  CHECK(db->Flush().code() == Code::kNoSpace);
  CHECK(db->CompactAll().ok());  // nothing to compact yet
  ReadResult r;
  for (int i = 0; i < 500; i += 7) {
    REQUIRE(db->Get("k" + std::to_string(i), &r).ok());
    CHECK(r.value == "value");
  }
  g_mode.store(kPass);
  REQUIRE(db->Flush().ok());
  CHECK(db->GetStats().segments >= 1);
  db.reset();
  REQUIRE(Engine::Open(o, &db).ok());
  for (int i = 0; i < 500; i++) {
    REQUIRE(db->Get("k" + std::to_string(i), &r).ok());
    CHECK(r.value == "value");
  }
}

TEST_CASE("storage enospc: background flush failures fail writes instead of blocking them") {
  HookGuard guard;
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), true);
  o.memtable_bytes = 8 << 10;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  g_only_segments.store(true);
  g_mode.store(kFailAll);
  int ok = 0;
  Status s;
  for (int i = 0; i < 100000 && s.ok(); i++) {
    s = db->Put("k" + std::to_string(i), std::string(100, 'v'), 10);
    if (s.ok()) ok++;
  }
  CHECK(s.code() == Code::kNoSpace);  // memtables are full and cannot be flushed
  g_mode.store(kPass);
  REQUIRE(db->Flush().ok());
  REQUIRE(db->Put("after", "x", 1).ok());
  db.reset();
  REQUIRE(Engine::Open(o, &db).ok());
  ReadResult r;
  for (int i = 0; i < ok; i++) {
    REQUIRE(db->Get("k" + std::to_string(i), &r).ok());
    CHECK(r.kind == ReadResult::kValue);
  }
  REQUIRE(db->Get("after", &r).ok());
  CHECK(r.kind == ReadResult::kValue);
}
