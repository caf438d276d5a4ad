// Appends records to one log file with a single write(2) each and tracks what is durable.
// Append() must be serialized by the caller (the engine's write mutex); SyncTo()/Sync() may be
// called from any thread and implement group commit: one fdatasync covers all appended records,
// and up to kMaxSyncs run at once (see SyncTo).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "storage/status.h"

namespace kv::storage {

class LogWriter {
 public:
  // Creates (or truncates to empty) the file at path.
  static Status Create(const std::string& path, uint64_t number, std::unique_ptr<LogWriter>* out);
  ~LogWriter();  // closes the fd without syncing

  // Writes one encoded record. On failure the file is cut back to the last whole record (so a
  // failed write never leaves a torn record in front of later ones) and *end is unchanged.
  Status Append(std::string_view record, uint64_t* end);
  static constexpr int kMaxSyncs = 2;
  // Makes every byte up to `offset` durable. A caller whose bytes an fdatasync in flight covers
  // (it began after they were written) waits for it; any other starts its own at once while
  // fewer than kMaxSyncs run: a record appended just after a sync began then waits for one sync
  // of its own, not for the rest of that one and then its own. The file system orders them
  // (a later fdatasync returns once everything written before it is on disk). A sync that was
  // under way when another failed fails too: the kernel reports a writeback error to one
  // fdatasync only, and the failed pages may be the other's.
  Status SyncTo(uint64_t offset);
  Status Sync() { return SyncTo(size()); }
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  uint64_t number() const { return number_; }
  const std::string& path() const { return path_; }

 private:
  LogWriter(int fd, std::string path, uint64_t number) : fd_(fd), path_(path), number_(number) {}
  Status RepairTail();

  int fd_;
  std::string path_;
  uint64_t number_;
  std::atomic<uint64_t> size_{0};  // bytes of whole records written
  bool needs_repair_ = false;      // a failed write left bytes past size_ (guarded by caller)

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  uint64_t in_flight_[kMaxSyncs] = {};  // the offsets the fdatasyncs under way will make durable
  int syncs_ = 0;                       // how many are under way
  uint64_t synced_ = 0;
  uint64_t failures_ = 0;  // fdatasyncs that failed
  Status last_failure_;
};

}  // namespace kv::storage
