// Appends records to one log file with a single write(2) each and tracks what is durable.
// Append() must be serialized by the caller (the engine's write mutex); SyncTo()/Sync() may be
// called from any thread and implement group commit: one fdatasync at a time covers every
// record appended before it began (see SyncTo).
//
// A preallocated log (for --fsync always) is filled with zeros ahead of its records,
// kPreallocateBytes at a time, so most of its fdatasyncs only write data blocks: an append that
// grows the file also changes its size and extents, which ext4 must commit to its journal with
// the data (measured here: about half the time of such an append's fdatasync). The zeros past
// the last record read as the log's end (ReplayLog).
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
  // Creates (or truncates to empty) the file at path; preallocate: see above.
  static Status Create(const std::string& path, uint64_t number, std::unique_ptr<LogWriter>* out,
                       bool preallocate = false);
  static constexpr uint64_t kPreallocateBytes = 1 << 20;
  ~LogWriter();  // closes the fd without syncing

  // Writes one encoded record. On failure the file is cut back to the last whole record (so a
  // failed write never leaves a torn record in front of later ones; a preallocated log gets
  // zeros over it instead) and *end is unchanged. A preallocated log grows its zeros here first
  // (in the page cache: the next fdatasync writes them); a disk that is full fails it then.
  Status Append(std::string_view record, uint64_t* end);
  // Makes every byte up to `offset` durable. One fdatasync runs at a time: a caller whose bytes
  // it covers waits for it, any other waits for it to end and then, unless another caller did
  // already, runs the next one for everything appended by then (so the records appended during
  // one sync share the next). Measured on ext4 (loadtest/REPORT.md, 2026-12-03 third session):
  // a second fdatasync of the same file started during one does not overlap it but waits for
  // its journal commit, and covers only the few records written since: two at a time gave
  // smaller batches and slower syncs. After a failed fdatasync every later one fails too,
  // whatever it returns: the kernel reports a writeback error once and may have dropped the
  // failed pages, so records after them would follow a hole that recovery stops at. What a
  // sync made durable before the failure stays acknowledged.
  Status SyncTo(uint64_t offset);
  Status Sync() { return SyncTo(size()); }
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  uint64_t number() const { return number_; }
  const std::string& path() const { return path_; }

 private:
  LogWriter(int fd, std::string path, uint64_t number, bool preallocate)
      : fd_(fd), path_(path), number_(number), preallocate_(preallocate) {}
  Status RepairTail();
  // Writes zeros over [from, to) (as far as it gets: zeroed_ follows); the file position is back
  // at size_ after it, also on failure.
  Status WriteZeros(uint64_t from, uint64_t to);

  int fd_;
  std::string path_;
  uint64_t number_;
  std::atomic<uint64_t> size_{0};  // bytes of whole records written
  bool needs_repair_ = false;      // a failed write left bytes past size_ (guarded by caller)
  uint64_t torn_end_ = 0;          // how far that write reached (preallocated: zeroed again)
  const bool preallocate_;
  uint64_t zeroed_ = 0;  // preallocated: bytes of the file written (records, then zeros)

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool syncing_ = false;  // an fdatasync is under way
  uint64_t synced_ = 0;
  bool failed_ = false;  // an fdatasync failed: every later one fails (SyncTo)
  Status last_failure_;
};

}  // namespace kv::storage
