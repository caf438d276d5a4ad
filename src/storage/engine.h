// The node's persistent key-value store: an append log, a memtable, and sorted immutable
// segments with sparse indexes and bloom filters, merged by background compaction.
// Knows nothing of HTTP or the cluster. Every method is safe to call from many threads at once;
// readers never wait for a flush or a compaction.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "storage/status.h"

namespace kv::storage {

class LogWriter;

// Where a write's log record ends, for a caller that waits for its fdatasync itself (see
// Engine::Write with a token). Empty (log == nullptr) when nothing needs syncing.
struct SyncToken {
  std::shared_ptr<LogWriter> log;
  uint64_t end = 0;
};

enum class FsyncPolicy { kPeriodic, kAlways, kNever };

struct Options {
  std::string dir;                             // created if missing
  FsyncPolicy fsync = FsyncPolicy::kPeriodic;  // periodic: fdatasync every 100 ms
  uint64_t memtable_bytes = 64ull << 20;       // freeze + flush past this
  // Each memtable is frozen at a size drawn from [3/4, 1] x memtable_bytes rather than at
  // memtable_bytes exactly. Replicas receive the same writes, so without it they all flush at
  // the same moment: a quorum (2 of 3) then always waits on a flushing replica, and nodes that
  // share cores flush on top of each other (3 nodes on 2 cores at 26K PUT/s: 96 of the run's
  // ~190 scheduling delays over 1 ms fell in the 2 s of the simultaneous flushes).
  // false: exactly memtable_bytes.
  bool memtable_jitter = true;
  uint64_t tombstone_gc_seconds = 86400;  // compaction keeps younger tombstones
  // When set, compaction drops a tombstone older than tombstone_gc_seconds only if this also
  // says so for its key and version (a cluster purges only what every replica is known to hold,
  // cluster/repair.h). Called from the compaction thread; must be thread-safe. Unset: age alone.
  std::function<bool(std::string_view key, uint64_t version)> tombstone_gc_filter;
  uint32_t block_bytes = 4096;  // target data block size
  bool background = true;       // flush/compaction threads; false: only
                                // when Flush()/CompactAll() are called
  // The compaction and index threads run under SCHED_IDLE: a request thread that wakes takes
  // the CPU from them at once, so their work does not show up as a latency spike (at nice 10 a
  // merge or an index batch held a core for 1-4 ms time slices: p99 of a 3-node cluster at 21K
  // PUT/s went from ~4 ms to ~1.2 ms). Compaction cannot fall behind without bound: a flush
  // waits (up to 1 s each) while the store has more than kMaxSegments segments.
  // false: they run as the caller does (as does the sync thread always).
  bool background_idle = true;
  // Nice levels the flush thread runs below the caller (0: as the caller). Not SCHED_IDLE: with the
  // request threads busy it then only ran once writers stalled behind it (single node at saturation
  // after a fill: wrk p99 140 ms, max 245 ms, vs 0.8 / 4.8 ms at nice 10), since nothing else frees
  // a core.
  int flush_nice = 10;
};

// What Get() found for a key. Versions are caller-given ordered stamps (the cluster's HLC):
// for any key the entry with the highest version wins, whatever order writes arrived in.
// A value may carry an expiry time (Unix milliseconds, 0: never). The engine stores and returns
// it and treats it as a tombstone of the same version only in compaction, once past (see
// Options::tombstone_gc_seconds); a reader compares it with its own clock.
// The one rule for "has this value expired": expires_ms (Unix ms, 0: never) is at or before
// now_ms. Readers, range streams, pages and repair all ask it; an expired value is then a
// tombstone of its version.
inline bool Expired(uint64_t expires_ms, uint64_t now_ms) {
  return expires_ms != 0 && expires_ms <= now_ms;
}

struct ReadResult {
  enum Kind { kAbsent, kValue, kTombstone } kind = kAbsent;
  uint64_t version = 0;
  uint64_t expires_ms = 0;  // kValue: when it expires (0: never)
  std::string value;
};

// Ascending byte order of keys over [start, end). Sees a stable snapshot taken at Scan(); never
// blocks writers, flushes or compaction; keeps the files it reads alive until destroyed.
// Tombstones are exposed (tombstone() == true); the caller decides whether to skip them.
// Use from one thread at a time.
class Iterator {
 public:
  // The current entry's fields, as the accessors below give them.
  struct Entry {
    std::string_view key;
    std::string_view value;
    uint64_t version = 0;
    uint64_t expires_ms = 0;
    bool tombstone = false;
  };
  virtual ~Iterator() = default;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  virtual uint64_t version() const = 0;
  virtual bool tombstone() const = 0;
  virtual uint64_t expires_ms() const = 0;  // a value's expiry (Unix ms), 0: never
  virtual Status status() const = 0;  // a read error ends iteration (Valid() false) and shows here
  // Every field of the current entry (Valid() only) in one call: a range stream reads them all
  // for each key, and five calls each decoding the entry's type cost more than the copy.
  virtual void Get(Entry* e) const {
    e->key = key();
    e->value = value();
    e->version = version();
    e->expires_ms = expires_ms();
    e->tombstone = tombstone();
  }
};

struct Stats {
  uint64_t memtable_bytes = 0;  // active + frozen
  uint64_t segments = 0;
  uint64_t segment_bytes = 0;       // on disk
  uint64_t index_filter_bytes = 0;  // RAM held by sparse indexes and bloom filters
  uint64_t keys_estimate = 0;
  uint64_t user_bytes_written = 0;  // keys+values handed to Put/Remove
  uint64_t disk_bytes_written = 0;  // log + segments + compaction output
  uint64_t flushes = 0;
  uint64_t compactions = 0;
  uint64_t frozen_memtables = 0;       // waiting for (or in) a flush
  uint64_t background_jobs = 0;        // flushes and compactions running or asked for
  uint64_t flush_waits = 0;            // flushes that waited for compaction to catch up
  uint64_t spare_memtables = 0;        // 0 or 1: made by the flush thread for the next freeze
  uint64_t freezes_without_spare = 0;  // freezes that made their memtable on the writer's thread
};

class Engine {
 public:
  // Opens (or creates) the store in options.dir: replays logs, loads segment indexes and filters.
  // A corrupted segment makes Open fail with kCorruption naming the file.
  static Status Open(const Options& options, std::unique_ptr<Engine>* out);
  ~Engine();  // stops background work, syncs the log; does not need to flush the memtable

  // Returns once the log record reached the kernel (or, with FsyncPolicy::kAlways, the disk).
  // A write whose version is older than what the store holds for the key changes nothing and
  // still succeeds; *stored_version (if given) is then the newer version the store keeps.
  // kNoSpace on ENOSPC: the store stays consistent and later writes succeed once space is back.
  Status Put(std::string_view key, std::string_view value, uint64_t version,
             uint64_t* stored_version = nullptr);
  Status Remove(std::string_view key, uint64_t version, uint64_t* stored_version = nullptr);
  Status Get(std::string_view key, ReadResult* out);

  // Several writes with one log write(2) (and, with kAlways, one fdatasync): each op behaves as
  // its own Put/Remove (newest version wins, also between ops of the same batch, applied in
  // order). Returns the status shared by all ops; per-op results land in stored_version.
  struct WriteOp {
    std::string_view key;
    std::string_view value;
    uint64_t version = 0;
    bool tombstone = false;
    uint64_t stored_version = 0;  // out: the version the store holds for key afterwards
    uint64_t expires_ms = 0;      // a value that expires then (Unix ms); 0: never
  };
  Status Write(WriteOp* ops, size_t n);
  // The same, but with FsyncPolicy::kAlways it returns once the records reached the kernel and
  // fills *token instead of waiting for the disk: the caller must WaitDurable(*token) (from any
  // thread, e.g. one that group-commits for several writers) before it acknowledges the writes.
  Status Write(WriteOp* ops, size_t n, SyncToken* token);
  // Returns once the log records up to token reached the disk (at once for an empty token).
  Status WaitDurable(const SyncToken& token);
  // background: a scan by background work (anti-entropy repair) that must not keep the index
  // thread running for the next minute as a client's scan does (kScanRecentMs in engine.cc): its
  // iterator links what is pending itself, on the caller's thread.
  std::unique_ptr<Iterator> Scan(std::string_view start, std::optional<std::string_view> end,
                                 bool background = false);

  Status Flush();       // freeze the memtable and write it as a segment now (waits)
  Status CompactAll();  // merge all segments into one now (waits)
  Status Sync();        // fdatasync the active log
  Stats GetStats() const;

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::storage
