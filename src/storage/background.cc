#include "storage/background.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "common/log.h"

namespace kv::storage {

namespace {

// Longest a flush waits for compaction to catch up (CompactionBehind) before it goes ahead.
constexpr auto kFlushWaitLimit = std::chrono::seconds(1);

// Lowers the calling thread's scheduling priority by `nice` levels below the one it inherited
// (Linux: a thread id is a PRIO_PROCESS target), so a node started under nice keeps the gap.
void NiceThisThread(int nice) {
  if (nice == 0) return;
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  int base = getpriority(PRIO_PROCESS, tid);  // -1 is also a valid nice value: errno tells
  if (errno != 0) base = 0;
  int target = std::min(base + nice, 19);
  if (setpriority(PRIO_PROCESS, tid, target) != 0) {
    LOG_DEBUG("storage: setpriority(%d) for the flush thread failed: errno %d", target, errno);
  }
}

// Puts the calling thread under SCHED_IDLE (any thread may lower its own policy).
void IdleThisThread() {
  sched_param sp{};
  if (int e = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp); e != 0) {
    LOG_DEBUG("storage: SCHED_IDLE for a background thread failed: errno %d", e);
  }
}

}  // namespace

void BackgroundWork::Start() {
  if (opts_.background) {
    threads_.emplace_back([this] { FlushThread(); });
    threads_.emplace_back([this] { CompactThread(); });
    threads_.emplace_back([this] { IndexThread(); });
    {  // all three are running at their priority before Start returns
      std::unique_lock<std::mutex> lock(mu_);
      started_cv_.wait(lock, [this] { return started_ == 3; });
    }
    Kick(true, true);
  }
  if (opts_.fsync == FsyncPolicy::kPeriodic) threads_.emplace_back([this] { SyncThread(); });
}

void BackgroundWork::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    shutting_down_ = true;
  }
  cv_.notify_all();
  index_cv_.notify_all();
  compacted_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void BackgroundWork::Kick(bool flush, bool compact) {
  {
    std::lock_guard<std::mutex> l(mu_);
    flush_wanted_ |= flush;
    compact_wanted_ |= compact;
  }
  cv_.notify_all();
}

void BackgroundWork::KickIndex() {
  if (index_kicked_.exchange(true)) return;
  { std::lock_guard<std::mutex> l(mu_); }  // the thread checks the flag under mu_
  index_cv_.notify_one();
}

bool BackgroundWork::NoteCompacted() {
  std::lock_guard<std::mutex> l(mu_);
  compacted_cv_.notify_all();
  return shutting_down_;
}

uint64_t BackgroundWork::jobs() {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<uint64_t>(running_.load()) + (flush_wanted_ ? 1 : 0) +
         (compact_wanted_ ? 1 : 0);
}

void BackgroundWork::WaitForCompaction() {
  if (!jobs_->CompactionBehind()) return;
  flush_waits_.fetch_add(1, std::memory_order_relaxed);
  Kick(false, true);
  const auto deadline = std::chrono::steady_clock::now() + kFlushWaitLimit;
  uint64_t seen = jobs_->CompactionsDone();
  // The state is looked at without mu_ (dropping the last reference to replaced segments
  // unmaps and unlinks them); a merge installed in between has counted itself in
  // CompactionsDone() before its notification, so that is not lost.
  while (jobs_->CompactionBehind()) {
    std::unique_lock<std::mutex> lock(mu_);
    // Bounded: a compaction that cannot finish (disk full) delays each flush by at most this.
    if (!compacted_cv_.wait_until(
            lock, deadline, [&] { return shutting_down_ || jobs_->CompactionsDone() != seen; })) {
      return;
    }
    if (shutting_down_) return;
    seen = jobs_->CompactionsDone();
  }
}

std::unique_lock<std::mutex> BackgroundWork::StartThread(const char* name, bool idle, int nice) {
  pthread_setname_np(pthread_self(), name);  // for top -H, perf and /proc/PID/task/*/comm
  if (idle) {
    IdleThisThread();
  } else {
    NiceThisThread(nice);
  }
  std::unique_lock<std::mutex> lock(mu_);
  ++started_;
  started_cv_.notify_all();
  return lock;
}

bool BackgroundWork::TakeJob(std::unique_lock<std::mutex>& lock, bool* wanted) {
  for (;;) {
    if (shutting_down_) return false;
    if (*wanted) break;
    cv_.wait(lock);
  }
  *wanted = false;
  running_.fetch_add(1);
  lock.unlock();
  return true;
}

void BackgroundWork::FlushThread() {
  std::unique_lock<std::mutex> lock = StartThread("kv-flush", false, opts_.flush_nice);
  while (TakeJob(lock, &flush_wanted_)) {
    jobs_->PrepareSpares();  // for the next freeze, which asked for this flush
    WaitForCompaction();
    bool any = false;
    Status s = jobs_->FlushFrozen(&any);
    jobs_->FlushFinished(s);
    if (any) Kick(false, true);
    lock.lock();
    running_.fetch_sub(1);
    if (!s.ok()) {
      LOG_WARN("storage: background flush failed (retrying in 1 s): %s", s.message().c_str());
      flush_wanted_ = true;
      cv_.wait_for(lock, std::chrono::seconds(1));
    }
  }
}

void BackgroundWork::CompactThread() {
  std::unique_lock<std::mutex> lock = StartThread("kv-compact", opts_.background_idle, 0);
  while (TakeJob(lock, &compact_wanted_)) {
    Status s = jobs_->CompactAsNeeded();
    lock.lock();
    running_.fetch_sub(1);
    if (!s.ok()) {
      // Disk full: retry later. Corruption: reads of the bad block already answer kCorruption;
      // the merge is retried on the next flush.
      LOG_WARN("storage: background compaction failed: %s", s.message().c_str());
    }
  }
}

void BackgroundWork::IndexThread() {
  // Nothing waits for it (a scan links what is still pending itself; a flush sorts the frozen
  // table's nodes on its own), so it can be the first to give way.
  std::unique_lock<std::mutex> lock = StartThread("kv-index", opts_.background_idle, 0);
  for (;;) {
    if (shutting_down_) return;
    if (!index_kicked_.exchange(false)) {
      index_cv_.wait(lock);
      continue;
    }
    lock.unlock();
    jobs_->IndexMemTables();
    lock.lock();
  }
}

void BackgroundWork::SyncThread() {
  pthread_setname_np(pthread_self(), "kv-sync");
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutting_down_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (shutting_down_) return;
    lock.unlock();
    Status s = jobs_->SyncLog();
    if (!s.ok()) LOG_WARN("storage: periodic log sync failed: %s", s.message().c_str());
    lock.lock();
  }
}

}  // namespace kv::storage
