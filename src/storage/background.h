// The engine's background threads: when they run (wake-ups, retries, a flush waiting for
// compaction to catch up) and at which priority; the work itself is the engine's (BackgroundJobs).
// Start() once, Stop() before the jobs go away; Kick*/Note*/jobs() are safe from any thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "storage/engine.h"
#include "storage/status.h"

namespace kv::storage {

// What the background threads do, implemented by the engine. Each is called from one thread.
class BackgroundJobs {
 public:
  virtual ~BackgroundJobs() = default;
  virtual void PrepareSpares() = 0;           // before a flush: the next freeze's log and memtable
  virtual Status FlushFrozen(bool* any) = 0;  // writes every frozen memtable as a segment
  virtual void FlushFinished(const Status& s) = 0;  // a background flush's outcome, for writers
  // Merges segments while the policy asks for it, calling NoteCompacted() after each merge.
  virtual Status CompactAsNeeded() = 0;
  virtual bool CompactionBehind() = 0;     // a flush should wait for compaction first
  virtual uint64_t CompactionsDone() = 0;  // counts every installed merge
  virtual void IndexMemTables() = 0;       // links pending memtable nodes into the skiplists
  virtual Status SyncLog() = 0;            // fdatasync of the active log
};

class BackgroundWork {
 public:
  BackgroundWork(const Options& opts, BackgroundJobs* jobs) : opts_(opts), jobs_(jobs) {}
  ~BackgroundWork() { Stop(); }
  BackgroundWork(const BackgroundWork&) = delete;
  BackgroundWork& operator=(const BackgroundWork&) = delete;

  // With opts.background: the flush thread (niced by opts.flush_nice), the compaction and index
  // threads (SCHED_IDLE with opts.background_idle), all at their priority before this returns,
  // then a flush and a compaction are asked for. With FsyncPolicy::kPeriodic: the sync thread.
  void Start();
  void Stop();  // wakes every thread and joins it; idempotent

  void Kick(bool flush, bool compact);  // asks for a flush and/or a compaction
  void KickIndex();                     // wakes the index thread unless already woken
  // After each installed merge: wakes flushes waiting for compaction; true once stopping.
  bool NoteCompacted();
  uint64_t jobs();  // flushes and compactions running or asked for
  uint64_t flush_waits() const { return flush_waits_.load(); }

 private:
  // A background thread's first step: its priority (SCHED_IDLE, else nice), then counted as
  // started (Start waits for all three); returns holding mu_.
  std::unique_lock<std::mutex> StartThread(const char* name, bool idle, int nice);
  // Holding mu_ (in `lock`), waits for *wanted or Stop(); then clears *wanted, counts the job as
  // running and returns true with mu_ released. False (mu_ held): stopping.
  bool TakeJob(std::unique_lock<std::mutex>& lock, bool* wanted);
  void WaitForCompaction();  // flush thread: past kMaxSegments, up to kFlushWaitLimit
  void FlushThread();
  void CompactThread();
  void IndexThread();
  void SyncThread();

  const Options opts_;
  BackgroundJobs* const jobs_;
  std::mutex mu_;
  std::condition_variable cv_;             // with mu_: flush or compaction asked for, or stopping
  bool shutting_down_ = false;             // mu_
  bool flush_wanted_ = false;              // mu_
  bool compact_wanted_ = false;            // mu_
  std::atomic<bool> index_kicked_{false};  // the index thread has memtable nodes to link
  std::atomic<int> running_{0};            // flushes and compactions in progress
  std::condition_variable index_cv_;       // with mu_
  std::condition_variable compacted_cv_;   // with mu_: a compaction replaced segments
  int started_ = 0;                        // mu_: threads past their setup
  std::condition_variable started_cv_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> flush_waits_{0};
};

}  // namespace kv::storage
