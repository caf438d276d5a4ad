// The store's current shape: which memtables and segments hold its data (one immutable State,
// replaced by pointer swap) and the MANIFEST recording the live segments on disk. Every change of
// the segments (a flush's output, a compaction's) goes one way, Apply(): copy the manifest, edit
// it, write it, install it. Thread-safe; callers must keep each edit's removed segments a
// contiguous run of the current ones (flushes only prepend, one compaction at a time).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "storage/log_writer.h"
#include "storage/manifest.h"
#include "storage/memtable.h"
#include "storage/segment.h"
#include "storage/status.h"

namespace kv::storage {

// A memtable that no longer takes writes and waits for its flush.
struct Frozen {
  std::shared_ptr<MemTable> mem;
  std::vector<uint64_t> logs;      // ascending; all replayable into mem
  std::shared_ptr<LogWriter> log;  // last log, still open: synced before the flush
};

// Immutable once published. Newer sources hold newer versions of a key: active, then frozen,
// then segments, each list newest first.
struct State {
  std::shared_ptr<MemTable> active;
  std::vector<std::shared_ptr<Frozen>> frozen;     // newest first
  std::vector<std::shared_ptr<Segment>> segments;  // newest first
};

// One change of the segments. A flush puts its output in front of all segments and retires the
// oldest frozen memtable; a compaction puts its output in place of its inputs.
struct VersionEdit {
  // A contiguous run of the current segments, newest first, that `added` replaces; empty: `added`
  // goes in front of all of them.
  std::vector<std::shared_ptr<Segment>> removed;
  std::shared_ptr<Segment> added;     // null: the edit only removes (a merge that kept nothing)
  bool retire_oldest_frozen = false;  // `added` holds the oldest frozen memtable
  std::optional<uint64_t> min_log;    // logs below this are in segments now
};

class VersionSet {
 public:
  explicit VersionSet(std::string dir) : dir_(std::move(dir)) {}
  VersionSet(const VersionSet&) = delete;
  VersionSet& operator=(const VersionSet&) = delete;

  // Starts from what recovery found: the manifest on disk, the first unused file number and the
  // state opened from them. Before any other call; not concurrently with anything.
  void Reset(const Manifest& manifest, uint64_t next_file, std::shared_ptr<const State> state);

  // The current state; readers work from it without further locking.
  std::shared_ptr<const State> Current() const {
    std::lock_guard<std::mutex> l(state_mu_);
    return state_;
  }
  // File numbers for logs and segments, from one counter.
  uint64_t NewFileNumber() { return next_file_.fetch_add(1); }

  // The active memtable becomes the newest frozen one (`frozen->mem`), `fresh` the active one.
  // No manifest change: the logs say what the memtables hold. Callers serialize freezes.
  void FreezeActive(std::shared_ptr<Frozen> frozen, std::shared_ptr<MemTable> fresh);

  // Writes a manifest with `edit` applied (MANIFEST.tmp, fdatasync, rename, fsync dir), then
  // installs the edited state; edit.removed are marked obsolete (their files go when the last
  // reader lets go). On failure nothing is installed and edit.added is marked obsolete instead.
  // *manifest_bytes (if given) grows by the bytes written.
  Status Apply(const VersionEdit& edit, uint64_t* manifest_bytes);

  Manifest manifest() const;  // a copy of the installed manifest

 private:
  const std::string dir_;
  std::atomic<uint64_t> next_file_{1};
  // Lock order: manifest_mu_, then state_mu_. state_mu_ is held only for a pointer copy or swap.
  mutable std::mutex manifest_mu_;  // one Apply at a time
  Manifest manifest_;               // manifest_mu_
  mutable std::mutex state_mu_;
  std::shared_ptr<const State> state_;  // state_mu_
};

}  // namespace kv::storage
