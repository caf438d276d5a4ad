// Appends records to one log file with a single write(2) each and tracks what is durable.
// Append() must be serialized by the caller (the engine's write mutex); SyncTo()/Sync() may be
// called from any thread and implement group commit: one fdatasync covers all appended records,
// and up to kMaxSyncs run at once (see SyncTo).
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
  LogWriter(int fd, std::string path, uint64_t number, bool preallocate)
      : fd_(fd), path_(path), number_(number), preallocate_(preallocate) {}
  Status RepairTail();
  // Writes zeros from zeroed_ to at least `end` (whole kPreallocateBytes steps); the file
  // position is back at size_ after it, also on failure.
  Status Preallocate(uint64_t end);
  Status WriteZeros(uint64_t from, uint64_t to, uint64_t* reached);

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
  uint64_t in_flight_[kMaxSyncs] = {};  // the offsets the fdatasyncs under way will make durable
  int syncs_ = 0;                       // how many are under way
  uint64_t synced_ = 0;
  uint64_t failures_ = 0;  // fdatasyncs that failed
  Status last_failure_;
};

}  // namespace kv::storage
