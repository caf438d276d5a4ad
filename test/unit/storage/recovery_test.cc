// RecoverStore on hand-made directories: it holds the store's lock (a second open fails and
// releases nothing of the first), deletes what a crash left half done, replays the logs the
// manifest still needs in order into the memtable, and starts a new log above every number seen.
#include "storage/recovery.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "storage/coding.h"
#include "storage/log_format.h"
#include "storage/log_writer.h"
#include "storage/manifest.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

void WriteLog(const std::string& dir, uint64_t number, std::string_view key, std::string_view value,
              uint64_t version) {
  std::unique_ptr<LogWriter> w;
  REQUIRE(LogWriter::Create(dir + "/" + LogFileName(number), number, &w).ok());
  std::string rec;
  EncodeLogRecord(key, value, version, EntryType::kValue, &rec);
  uint64_t end = 0;
  REQUIRE(w->Append(rec, &end).ok());
}

void Touch(const std::string& path) {
  std::ofstream f(path);
  f << "half written";
}

std::string ValueOf(const MemTable& mem, std::string_view key, uint64_t* version) {
  std::string_view v;
  EntryType t;
  REQUIRE(mem.Get(key, &v, version, &t));
  return std::string(v);
}

std::shared_ptr<MemTable> NewMem() {
  return std::make_shared<MemTable>(4096);
}

}  // namespace

TEST_CASE("recovery: an empty directory gets a lock, no segments and a first log") {
  TempDir tmp;
  RecoveredStore r;
  REQUIRE(RecoverStore(tmp.store(), NewMem(), false, &r).ok());
  CHECK(r.lock_fd >= 0);
  CHECK(r.state->segments.empty());
  CHECK(r.state->active->Empty());
  REQUIRE(r.log);
  CHECK(r.logs == std::vector<uint64_t>{r.log->number()});
  CHECK(r.next_file == r.log->number() + 1);
  CHECK(std::filesystem::exists(tmp.store() + "/" + LogFileName(r.log->number())));

  RecoveredStore second;
  Status s = RecoverStore(tmp.store(), NewMem(), false, &second);
  CHECK(s.code() == Code::kIoError);
  CHECK(second.lock_fd == -1);  // closed on failure
  ::close(r.lock_fd);
  RecoveredStore third;  // the lock is free once its holder closes it
  REQUIRE(RecoverStore(tmp.store(), NewMem(), false, &third).ok());
  ::close(third.lock_fd);
}

TEST_CASE("recovery: leftovers of a crash go, needed logs are replayed in order") {
  TempDir tmp;
  const std::string dir = tmp.path();
  Manifest m;
  m.next_file = 5;
  m.min_log = 3;
  uint64_t bytes = 0;
  REQUIRE(WriteManifest(dir, m, &bytes).ok());
  WriteLog(dir, 2, "gone", "flushed already", 1);  // below min_log: in segments
  WriteLog(dir, 3, "k", "old", 10);
  WriteLog(dir, 7, "k", "new", 20);  // replayed after 3 whatever readdir says
  WriteLog(dir, 4, "k", "older than 7", 15);
  Touch(dir + "/" + SegmentFileName(9));  // not in the manifest: an unfinished flush
  Touch(dir + "/MANIFEST.tmp");

  RecoveredStore r;
  REQUIRE(RecoverStore(dir, NewMem(), false, &r).ok());
  CHECK_FALSE(std::filesystem::exists(dir + "/" + LogFileName(2)));
  CHECK_FALSE(std::filesystem::exists(dir + "/" + SegmentFileName(9)));
  CHECK_FALSE(std::filesystem::exists(dir + "/MANIFEST.tmp"));
  CHECK(r.manifest.min_log == 3);
  uint64_t version = 0;
  CHECK(ValueOf(*r.state->active, "k", &version) == "new");
  CHECK(version == 20);
  std::string_view v;
  EntryType t;
  CHECK_FALSE(r.state->active->Get("gone", &v, &version, &t));
  CHECK(r.log->number() == 10);  // above every file seen, the orphan segment's too
  CHECK(r.next_file == 11);
  CHECK(r.logs == std::vector<uint64_t>{3, 4, 7, 10});
  ::close(r.lock_fd);
}

TEST_CASE("recovery: a damaged manifest stops the open and releases the lock") {
  TempDir tmp;
  const std::string dir = tmp.path();
  Touch(dir + "/MANIFEST");
  RecoveredStore r;
  Status s = RecoverStore(dir, NewMem(), false, &r);
  CHECK(s.code() == Code::kCorruption);
  CHECK(r.lock_fd == -1);
  std::filesystem::remove(dir + "/MANIFEST");
  RecoveredStore again;
  REQUIRE(RecoverStore(dir, NewMem(), false, &again).ok());
  ::close(again.lock_fd);
}

TEST_CASE("recovery: a preallocated log's zeros end it, whatever follows its last record") {
  TempDir tmp;
  const std::string dir = tmp.store();
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + LogFileName(3);
  std::unique_ptr<LogWriter> w;
  REQUIRE(LogWriter::Create(path, 3, &w, true).ok());
  std::string rec;
  uint64_t end = 0;
  for (int i = 0; i < 100; ++i) {
    EncodeLogRecord("k" + std::to_string(i), std::string(100, 'v'), 7, EntryType::kValue, &rec);
    REQUIRE(w->Append(rec, &end).ok());
  }
  REQUIRE(w->Sync().ok());
  CHECK(w->size() == end);
  // The file runs on in zeros past the records: written once, so a sync does not grow it.
  CHECK(std::filesystem::file_size(path) == LogWriter::kPreallocateBytes);
  // A record past the preallocated bytes grows them by a whole step.
  const std::string big(LogWriter::kPreallocateBytes, 'b');
  EncodeLogRecord("big", big, 8, EntryType::kValue, &rec);
  REQUIRE(w->Append(rec, &end).ok());
  CHECK(std::filesystem::file_size(path) == 2 * LogWriter::kPreallocateBytes);
  w.reset();

  RecoveredStore r;
  REQUIRE(RecoverStore(dir, NewMem(), true, &r).ok());
  uint64_t version = 0;
  CHECK(ValueOf(*r.state->active, "k0", &version) == std::string(100, 'v'));
  CHECK(ValueOf(*r.state->active, "k99", &version) == std::string(100, 'v'));
  CHECK(ValueOf(*r.state->active, "big", &version) == big);
  CHECK(version == 8);
  // Replayed up to its last record: the zeros are cut, nothing else is.
  CHECK(std::filesystem::file_size(path) == end);
  ::close(r.lock_fd);
}
