// Opening a store directory, after a clean stop or a crash: take its LOCK, read the manifest,
// delete what a crash left half done, open the live segments, replay the remaining logs into a
// memtable, start a new log. Single-threaded, before the store is shared; the caller owns the
// result.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "storage/log_writer.h"
#include "storage/manifest.h"
#include "storage/memtable.h"
#include "storage/status.h"
#include "storage/version_set.h"

namespace kv::storage {

struct RecoveredStore {
  int lock_fd = -1;  // flock'ed: the store is this process's until the caller closes it
  Manifest manifest;
  uint64_t next_file = 1;        // first unused file number
  std::shared_ptr<State> state;  // the live segments; active = the memtable the logs replayed into
  std::unique_ptr<LogWriter> log;  // the new, empty log, its directory entry synced
  std::vector<uint64_t> logs;      // ascending: the replayed logs and the new one
};

// Creates dir if missing. Deletes MANIFEST.tmp, segments the manifest does not list (output of an
// unfinished flush or compaction) and logs below its min_log; replays the other logs in number
// order into `mem` (empty), truncating each at its last good record. A corrupted manifest or live
// segment fails with kCorruption naming the file; on any failure the lock is released. The new
// log is preallocated (LogWriter) when preallocate_log.
Status RecoverStore(const std::string& dir, std::shared_ptr<MemTable> mem, bool preallocate_log,
                    RecoveredStore* out);

}  // namespace kv::storage
