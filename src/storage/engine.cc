// Engine::Impl: ties the log, memtables, segments, manifest and background threads together.
//
// Locks (always taken in this order when nested):
//   write_mu_    serializes writers: newest-wins check, log append, memtable insert, freeze.
//   flush_mu_    one flush at a time (background thread or Flush()).
//   compact_mu_  one compaction at a time (background thread or CompactAll()).
//   manifest_mu_ manifest rewrite + install of a flush or compaction result.
//   state_mu_    guards only the state_ pointer; held for a pointer copy or swap, never for I/O.
// Readers copy state_ (an immutable snapshot of memtables and segments) and work lock-free from
// there, so they never wait for a flush, a compaction or a writer. The only shared lock a read
// takes is state_mu_ for the ~20 ns of a shared_ptr copy; std::atomic<shared_ptr> in libstdc++
// 12 is a spin lock on the same cache line, so it would not be cheaper. Memtable reads are
// lock-free (see memtable.h); segment reads go through an immutable mmap.
// Writers hold write_mu_ across lookup + write(2) + insert: the write(2) serializes them anyway,
// and holding one lock keeps "check the stored version, then write" atomic.
#include "storage/engine.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "common/log.h"
#include "storage/bloom.h"
#include "storage/compaction.h"
#include "storage/file_io.h"
#include "storage/log_format.h"
#include "storage/log_reader.h"
#include "storage/log_writer.h"
#include "storage/manifest.h"
#include "storage/memtable.h"
#include "storage/merge.h"
#include "storage/segment.h"
#include "storage/segment_writer.h"

namespace kv::storage {

namespace {

constexpr size_t kMaxFrozen = 2;  // writers stall (background mode) past this many frozen tables
// Memtable nodes waiting for the skiplist before the index thread is woken: the larger the batch,
// the shorter each node's finger search, and the longer a scan may wait to index the rest
// (~10 ms for 16K nodes). Measured single-node PUT, 1M keys: 16K gave 1.07x the rps of 4K.
constexpr uint64_t kIndexBatch = 16384;
// The index thread keeps the skiplist current only while scans come (one in the last minute):
// point reads, writes and the flush (MemTable::SortedRun) never need it; otherwise the first
// scan indexes what is pending.
// Even at SCHED_IDLE its batches cost the request threads: on a 3-node cluster at 21K PUT/s,
// p99 2.6-3.4 ms with it, 0.6-0.9 ms without (more rescheduling IPIs when a core is busy).
constexpr uint64_t kScanRecentMs = 60000;

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

struct Frozen {
  std::shared_ptr<MemTable> mem;
  std::vector<uint64_t> logs;      // ascending; all replayable into mem
  std::shared_ptr<LogWriter> log;  // last log, still open: synced before the flush
};

// Immutable once published.
struct State {
  std::shared_ptr<MemTable> active;
  std::vector<std::shared_ptr<Frozen>> frozen;     // newest first
  std::vector<std::shared_ptr<Segment>> segments;  // newest first
};

uint64_t NowMillis() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// About one bucket per entry of ~128 bytes: chains stay short for 100-byte values, and the
// index costs 1/16 of the memtable (8 bytes per 128).
size_t HashBucketsFor(uint64_t memtable_bytes) {
  return static_cast<size_t>(std::clamp<uint64_t>(memtable_bytes / 128, 16, 1u << 24));
}

size_t ArenaBlockFor(uint64_t memtable_bytes) {
  return static_cast<size_t>(std::clamp<uint64_t>(memtable_bytes / 16, 4096, 1 << 20));
}

// Public iterator over a merged snapshot.
class ScanIterator : public Iterator {
 public:
  ScanIterator(std::shared_ptr<const State> st, std::unique_ptr<MergingIter> it,
               std::optional<std::string> end)
      : st_(std::move(st)), it_(std::move(it)), end_(std::move(end)) {}
  bool Valid() const override {
    return it_->Valid() && (!end_ || it_->key() < std::string_view(*end_));
  }
  void Next() override { it_->Next(); }
  std::string_view key() const override { return it_->key(); }
  std::string_view value() const override { return it_->value(); }
  uint64_t version() const override { return it_->version(); }
  bool tombstone() const override { return it_->type() == EntryType::kTombstone; }
  Status status() const override { return it_->status(); }

 private:
  std::shared_ptr<const State> st_;  // keeps memtables and segment files alive
  std::unique_ptr<MergingIter> it_;
  std::optional<std::string> end_;
};

}  // namespace

struct Engine::Impl {
  Options opts;
  int lock_fd = -1;

  std::mutex write_mu;
  std::condition_variable stall_cv;   // with write_mu: a flush finished
  std::shared_ptr<LogWriter> log;     // write_mu
  std::vector<uint64_t> active_logs;  // write_mu: logs replayable into the active memtable
  // write_mu: the next log, created and its directory entry synced by the flush thread, so
  // that Freeze (on a writer's thread, under write_mu) need not sync a directory itself.
  std::unique_ptr<LogWriter> spare_log;
  // write_mu: the next active memtable, made by the flush thread: its hash buckets (4 MiB for
  // the default 64 MiB memtable) are zeroed there, not in the writer's freeze, where their 1024
  // first-touch page faults (1.5-2 us each on this project's VM) stalled every request of the
  // loop thread for a few milliseconds.
  std::shared_ptr<MemTable> spare_mem;
  uint64_t freeze_at = 0;  // write_mu: the active memtable is frozen past this size
  std::mt19937_64 rng{std::random_device{}()};  // write_mu
  uint64_t NextFreezeSize() {                   // write_mu
    if (!opts.memtable_jitter) return opts.memtable_bytes;
    return opts.memtable_bytes - rng() % (opts.memtable_bytes / 4 + 1);
  }

  std::mutex flush_mu, compact_mu, manifest_mu;
  Manifest manifest;  // manifest_mu

  mutable std::mutex state_mu;
  std::shared_ptr<const State> state;  // state_mu

  std::atomic<uint64_t> next_file{1};

  // Background threads.
  std::mutex bg_mu;
  std::condition_variable bg_cv;
  bool shutting_down = false;             // bg_mu
  bool flush_wanted = false;              // bg_mu
  bool compact_wanted = false;            // bg_mu
  std::atomic<bool> index_kicked{false};  // the index thread has memtable nodes to link
  std::atomic<int> bg_running{0};         // flushes and compactions in progress
  std::condition_variable index_cv;       // with bg_mu
  std::condition_variable compacted_cv;   // with bg_mu: a compaction replaced segments
  std::vector<std::thread> threads;
  int bg_started = 0;  // with bg_mu: background threads past their setup
  std::condition_variable bg_started_cv;
  std::atomic<bool> flush_failing{false};  // last background flush failed
  Status flush_error;                      // write_mu

  std::atomic<uint64_t> last_scan_ms{0};  // when Scan() was last called (0: never)
  bool ScansRecent() const {
    uint64_t t = last_scan_ms.load(std::memory_order_relaxed);
    return t != 0 && NowMillis() - t < kScanRecentMs;
  }

  // Stats.
  std::atomic<uint64_t> user_bytes{0}, disk_bytes{0}, flushes{0}, compactions{0}, flush_waits{0};
  std::atomic<uint64_t> freezes_without_spare{0};

  std::shared_ptr<const State> Snapshot() const {
    std::lock_guard<std::mutex> l(state_mu);
    return state;
  }
  std::string Path(const std::string& name) const { return opts.dir + "/" + name; }

  Status Recover();
  Status WriteBatch(Engine::WriteOp* ops, size_t n, SyncToken* token = nullptr);
  Status Write(std::string_view key, std::string_view value, uint64_t version, EntryType type,
               uint64_t* stored_version);
  // Newest version of key in st, where it can matter: tables whose newest version of any key
  // is below min_version cannot hold one >= min_version and are skipped (with versions from a
  // clock: all but the active memtable, so a write usually reads no segment).
  Status LookupVersion(const State& st, std::string_view key, uint64_t min_version, bool* found,
                       uint64_t* version);
  Status Freeze();                                 // write_mu held
  Status NewLog(std::unique_ptr<LogWriter>* out);  // creates the next log, directory synced
  void PrepareSpares();                            // flush thread: spare_log, spare_mem
  std::shared_ptr<MemTable> NewMemTable() const {
    return std::make_shared<MemTable>(ArenaBlockFor(opts.memtable_bytes),
                                      HashBucketsFor(opts.memtable_bytes));
  }
  void WaitForCompaction();       // flush thread: past kMaxSegments
  Status FlushOldest(bool* did);  // flush_mu held
  // Merges segments [begin, end) of st (newest-first indexes); compact_mu held.
  Status CompactRange(const std::shared_ptr<const State>& st, size_t begin, size_t end);
  Status MaybeCompact();                                        // compact_mu held
  static std::vector<uint64_t> SegmentSizes(const State& st) {  // newest first
    std::vector<uint64_t> sizes;
    for (const auto& seg : st.segments) sizes.push_back(seg->file_size());
    return sizes;
  }
  // A background thread's first step: its priority (SCHED_IDLE, else nice), then counted as
  // started (Open waits for all three); returns holding bg_mu.
  std::unique_lock<std::mutex> StartBackgroundThread(const char* name, bool idle, int nice);
  void FlushThread();
  void CompactThread();
  void IndexThread();  // links memtable nodes into the skiplist in batches (MemTable::Index)
  void SyncThread();
  void Kick(bool flush, bool compact) {
    {
      std::lock_guard<std::mutex> l(bg_mu);
      flush_wanted |= flush;
      compact_wanted |= compact;
    }
    bg_cv.notify_all();
  }
};

// ---- open and recovery ---------------------------------------------------------------------

Status Engine::Impl::Recover() {
  if (::mkdir(opts.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "mkdir", opts.dir);
  }
  lock_fd = ::open(Path("LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return ErrnoStatus(errno, "open", Path("LOCK"));
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return Status(Code::kIoError, "store " + opts.dir + " is locked by another process");
  }
  Status s = ReadManifest(opts.dir, &manifest);
  if (s.code() == Code::kNotFound) {
    manifest = Manifest();
  } else if (!s.ok()) {
    return s;
  }
  // Survey the directory: orphan segments (unfinished flush/compaction output) and logs already
  // in segments are deleted; the rest of the logs are replayed in order.
  std::vector<uint64_t> logs;
  uint64_t max_number = manifest.next_file;
  DIR* d = ::opendir(opts.dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, "opendir", opts.dir);
  std::vector<std::string> to_delete;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    bool is_log;
    uint64_t number;
    if (name == "MANIFEST.tmp") {
      to_delete.push_back(name);
    } else if (ParseFileName(name, &is_log, &number)) {
      max_number = std::max(max_number, number + 1);
      if (is_log) {
        if (number < manifest.min_log) {
          to_delete.push_back(name);
        } else {
          logs.push_back(number);
        }
      } else if (std::find(manifest.segments.begin(), manifest.segments.end(), number) ==
                 manifest.segments.end()) {
        to_delete.push_back(name);
      }
    }
  }
  ::closedir(d);
  for (const auto& name : to_delete) ::unlink(Path(name).c_str());
  next_file.store(max_number);

  auto st = std::make_shared<State>();
  for (uint64_t number : manifest.segments) {
    std::shared_ptr<Segment> seg;
    s = Segment::Open(opts.dir, number, &seg);
    if (!s.ok()) return s;
    st->segments.push_back(std::move(seg));
  }
  std::shared_ptr<MemTable> mem = NewMemTable();
  std::sort(logs.begin(), logs.end());
  for (uint64_t number : logs) {
    uint64_t valid;
    s = ReplayLog(
        Path(LogFileName(number)), true,
        [&](const LogRecord& r) {
          // Only accepted writes are logged, so versions rise per key; the check guards against
          // anything replayed twice.
          std::string_view v;
          uint64_t ver;
          EntryType t;
          if (mem->Get(r.key, &v, &ver, &t) && ver >= r.version) return;
          mem->Insert(r.key, r.value, r.version, r.type);
        },
        &valid);
    if (!s.ok()) return s;
  }
  std::unique_ptr<LogWriter> w;
  uint64_t number = next_file.fetch_add(1);
  s = LogWriter::Create(Path(LogFileName(number)), number, &w);
  if (!s.ok()) return s;
  s = SyncDir(opts.dir);
  if (!s.ok()) return s;
  log = std::move(w);
  active_logs = logs;
  active_logs.push_back(number);
  st->active = mem;
  state = st;
  freeze_at = NextFreezeSize();
  if (mem->MemoryUsage() >= freeze_at) {  // the writers' rule, applied to what was replayed
    std::lock_guard<std::mutex> l(write_mu);
    Status fs = Freeze();
    if (!fs.ok()) LOG_WARN("storage: freeze after recovery failed: %s", fs.message().c_str());
  }
  return Status::Ok();
}

Status Engine::Open(const Options& options, std::unique_ptr<Engine>* out) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  if (impl->opts.dir.empty()) return Status(Code::kInvalidArgument, "empty store directory");
  if (impl->opts.block_bytes < 64) impl->opts.block_bytes = 64;
  Status s = impl->Recover();
  if (!s.ok()) {
    if (impl->lock_fd >= 0) ::close(impl->lock_fd);
    return s;
  }
  Impl* p = impl.get();
  if (options.background) {
    p->threads.emplace_back([p] { p->FlushThread(); });
    p->threads.emplace_back([p] { p->CompactThread(); });
    p->threads.emplace_back([p] { p->IndexThread(); });
    {  // all three are running at their priority before Open returns
      std::unique_lock<std::mutex> lock(p->bg_mu);
      p->bg_started_cv.wait(lock, [p] { return p->bg_started == 3; });
    }
    p->Kick(true, true);
  }
  if (options.fsync == FsyncPolicy::kPeriodic) p->threads.emplace_back([p] { p->SyncThread(); });
  out->reset(new Engine(std::move(impl)));
  return Status::Ok();
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> l(impl_->bg_mu);
    impl_->shutting_down = true;
  }
  impl_->bg_cv.notify_all();
  impl_->index_cv.notify_all();
  impl_->compacted_cv.notify_all();
  for (auto& t : impl_->threads) t.join();
  std::shared_ptr<LogWriter> log;
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    log = impl_->log;
  }
  if (impl_->opts.fsync != FsyncPolicy::kNever) {
    Status s = log->Sync();
    if (!s.ok()) LOG_WARN("storage: final log sync failed: %s", s.message().c_str());
  }
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
}

// ---- writes --------------------------------------------------------------------------------

Status Engine::Impl::LookupVersion(const State& st, std::string_view key, uint64_t min_version,
                                   bool* found, uint64_t* version) {
  // The filter lines of the segments that are asked are fetched while the memtables are.
  const uint64_t hash = BloomHash(key);
  for (const auto& seg : st.segments) {
    if (seg->max_version() >= min_version) seg->PrefetchFilter(hash);
  }
  std::string_view v;
  EntryType t;
  *found = true;
  if (st.active->MaxVersion() >= min_version && st.active->Get(key, hash, &v, version, &t)) {
    return Status::Ok();
  }
  for (const auto& f : st.frozen) {
    if (f->mem->MaxVersion() < min_version) continue;
    if (f->mem->Get(key, hash, &v, version, &t)) return Status::Ok();
  }
  for (const auto& seg : st.segments) {
    if (seg->max_version() < min_version) continue;
    Status s = seg->GetHashed(key, hash, nullptr, version, &t);
    if (s.ok()) return s;
    if (s.code() != Code::kNotFound) return s;
  }
  *found = false;
  return Status::Ok();
}

Status Engine::Impl::NewLog(std::unique_ptr<LogWriter>* out) {
  uint64_t number = next_file.fetch_add(1);
  std::unique_ptr<LogWriter> w;
  Status s = LogWriter::Create(Path(LogFileName(number)), number, &w);
  // The new log's directory entry must survive a power cut before records in it are acked.
  if (s.ok() && opts.fsync != FsyncPolicy::kNever) s = SyncDir(opts.dir);
  if (!s.ok()) {
    if (w) ::unlink(w->path().c_str());
    return s;
  }
  *out = std::move(w);
  return Status::Ok();
}

void Engine::Impl::PrepareSpares() {
  bool need_log, need_mem;
  {
    std::lock_guard<std::mutex> l(write_mu);
    need_log = !spare_log;
    need_mem = !spare_mem;
  }
  // Only this thread makes spares: none appears meanwhile.
  if (need_mem) {
    std::shared_ptr<MemTable> m = NewMemTable();
    std::lock_guard<std::mutex> l(write_mu);
    spare_mem = std::move(m);
  }
  if (!need_log) return;
  // An empty log left behind by a crash is replayed as nothing and removed with the others.
  std::unique_ptr<LogWriter> w;
  Status s = NewLog(&w);
  if (!s.ok()) {
    LOG_WARN("storage: preparing the next log failed: %s", s.message().c_str());
    return;
  }
  std::lock_guard<std::mutex> l(write_mu);
  spare_log = std::move(w);
}

Status Engine::Impl::Freeze() {
  std::shared_ptr<const State> cur = Snapshot();
  if (cur->active->Empty()) return Status::Ok();
  std::unique_ptr<LogWriter> w = std::move(spare_log);
  if (w && w->number() < log->number()) {
    // Numbered before the active log (a freeze made its own log while the spare was being
    // created): logs must be numbered in the order they are used, or recovery would treat
    // this one as older than the flushed memtables. Never written to: drop it.
    ::unlink(w->path().c_str());
    w.reset();
  }
  if (!w) {  // no usable spare (first freeze, or the flush thread is behind): make one here
    Status s = NewLog(&w);
    if (!s.ok()) return s;
  }
  const uint64_t number = w->number();
  auto f = std::make_shared<Frozen>();
  f->mem = cur->active;
  f->logs = active_logs;
  f->log = log;
  std::shared_ptr<MemTable> fresh = std::move(spare_mem);
  if (!fresh) {
    fresh = NewMemTable();
    freezes_without_spare.fetch_add(1, std::memory_order_relaxed);
  }
  {
    // Copy under state_mu: a flush or compaction may have installed a newer state since `cur`.
    std::lock_guard<std::mutex> l(state_mu);
    auto st = std::make_shared<State>(*state);
    st->active = std::move(fresh);
    st->frozen.insert(st->frozen.begin(), f);
    state = std::move(st);
  }
  log = std::move(w);
  active_logs = {number};
  freeze_at = NextFreezeSize();
  if (opts.background) Kick(true, false);
  return Status::Ok();
}

Status Engine::Impl::Write(std::string_view key, std::string_view value, uint64_t version,
                           EntryType type, uint64_t* stored_version) {
  Engine::WriteOp op{key, value, version, type == EntryType::kTombstone, 0};
  Status s = WriteBatch(&op, 1);
  if (s.ok() && stored_version) *stored_version = op.stored_version;
  return s;
}

// Every write goes through here, alone or batched: under the write mutex each op gets the
// newest-wins check (also against earlier ops of the batch); the records of the accepted ops
// leave in one write(2); then they enter the memtable. With kAlways the caller returns after one
// fdatasync that covers them, and also after the newer write an old op lost to (it may still await
// its group commit).
Status Engine::Impl::WriteBatch(Engine::WriteOp* ops, size_t n, SyncToken* token) {
  for (size_t i = 0; i < n; ++i) {
    if (ops[i].key.size() > kMaxKeyBytes || ops[i].value.size() > kMaxValueBytes) {
      return Status(Code::kInvalidArgument, "key or value too large");
    }
  }
  thread_local std::string records;
  thread_local std::string one;
  thread_local std::vector<uint32_t> accepted;  // indexes of the accepted ops, ascending
  records.clear();
  accepted.clear();
  std::shared_ptr<LogWriter> sync_log;
  uint64_t end = 0;
  {
    std::unique_lock<std::mutex> lock(write_mu);
    std::shared_ptr<const State> st = Snapshot();
    while (opts.background && st->frozen.size() >= kMaxFrozen) {
      // Backpressure: memory stays bounded while flushes catch up. A failing flush (disk full)
      // fails the write instead of blocking it forever.
      if (flush_failing.load()) return flush_error;
      stall_cv.wait(lock);
      st = Snapshot();
    }
    for (size_t i = 0; i < n; ++i) {
      Engine::WriteOp& op = ops[i];
      uint64_t have = 0;
      bool found = false;
      // An earlier accepted op of this batch on the same key is newer than anything stored.
      for (size_t a = accepted.size(); a-- > 0;) {
        if (ops[accepted[a]].key == op.key) {
          found = true;
          have = ops[accepted[a]].version;
          break;
        }
      }
      if (!found) {
        Status s = LookupVersion(*st, op.key, op.version, &found, &have);
        if (!s.ok()) return s;
      }
      if (found && have >= op.version) {
        op.stored_version = have;
        continue;
      }
      accepted.push_back(static_cast<uint32_t>(i));
      op.stored_version = op.version;
      EncodeLogRecord(op.key, op.value, op.version,
                      op.tombstone ? EntryType::kTombstone : EntryType::kValue, &one);
      records.append(one);
    }
    if (!accepted.empty()) {
      Status s = log->Append(records, &end);
      if (!s.ok()) return s;
      for (uint32_t i : accepted) {  // batch order: one key's versions go in increasing
        st->active->Insert(ops[i].key, ops[i].value, ops[i].version,
                           ops[i].tombstone ? EntryType::kTombstone : EntryType::kValue);
        user_bytes.fetch_add(ops[i].key.size() + ops[i].value.size(), std::memory_order_relaxed);
      }
      // The skiplist (for scans) is built in the background, in batches, while scans come;
      // otherwise by the first scan.
      if (opts.background && st->active->Pending() >= kIndexBatch && ScansRecent() &&
          !index_kicked.exchange(true)) {
        { std::lock_guard<std::mutex> l(bg_mu); }  // the thread checks the flag under bg_mu
        index_cv.notify_one();
      }
      disk_bytes.fetch_add(records.size(), std::memory_order_relaxed);
      if (st->active->MemoryUsage() >= freeze_at) {
        s = Freeze();
        // The writes themselves are logged and applied; a failed freeze is retried next time.
        if (!s.ok()) LOG_WARN("storage: memtable freeze failed: %s", s.message().c_str());
      }
    } else {
      end = log->size();
    }
    if (opts.fsync == FsyncPolicy::kAlways) sync_log = log;
  }
  if (sync_log && token != nullptr) {
    token->log = std::move(sync_log);
    token->end = end;
    return Status::Ok();
  }
  if (sync_log) return sync_log->SyncTo(end);
  return Status::Ok();
}

Status Engine::Write(WriteOp* ops, size_t n) {
  return impl_->WriteBatch(ops, n);
}

Status Engine::Write(WriteOp* ops, size_t n, SyncToken* token) {
  *token = SyncToken{};
  return impl_->WriteBatch(ops, n, token);
}

Status Engine::WaitDurable(const SyncToken& token) {
  return token.log ? token.log->SyncTo(token.end) : Status::Ok();
}

Status Engine::Put(std::string_view key, std::string_view value, uint64_t version,
                   uint64_t* stored_version) {
  return impl_->Write(key, value, version, EntryType::kValue, stored_version);
}

Status Engine::Remove(std::string_view key, uint64_t version, uint64_t* stored_version) {
  return impl_->Write(key, std::string_view(), version, EntryType::kTombstone, stored_version);
}

Status Engine::Sync() {
  std::shared_ptr<LogWriter> log;
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    log = impl_->log;
  }
  return log->Sync();
}

// ---- reads ---------------------------------------------------------------------------------

Status Engine::Get(std::string_view key, ReadResult* out) {
  std::shared_ptr<const State> st = impl_->Snapshot();
  std::string_view v;
  EntryType t;
  const uint64_t hash = BloomHash(key);  // memtables and segments alike
  for (const auto& seg : st->segments) seg->PrefetchFilter(hash);
  bool hit = st->active->Get(key, hash, &v, &out->version, &t);
  for (size_t i = 0; !hit && i < st->frozen.size(); i++) {
    hit = st->frozen[i]->mem->Get(key, hash, &v, &out->version, &t);
  }
  if (hit) {
    out->kind = t == EntryType::kValue ? ReadResult::kValue : ReadResult::kTombstone;
    out->value.assign(v);
    return Status::Ok();
  }
  for (const auto& seg : st->segments) {
    Status s = seg->GetHashed(key, hash, &out->value, &out->version, &t);
    if (s.ok()) {
      out->kind = t == EntryType::kValue ? ReadResult::kValue : ReadResult::kTombstone;
      return s;
    }
    if (s.code() != Code::kNotFound) return s;
  }
  out->kind = ReadResult::kAbsent;
  out->version = 0;
  out->value.clear();
  return Status::Ok();
}

std::unique_ptr<Iterator> Engine::Scan(std::string_view start,
                                       std::optional<std::string_view> end) {
  impl_->last_scan_ms.store(NowMillis(), std::memory_order_relaxed);
  std::shared_ptr<const State> st;
  uint64_t active_snap;
  {
    std::lock_guard<std::mutex> l(impl_->state_mu);
    st = impl_->state;
    active_snap = st->active->Count();
  }
  std::vector<std::unique_ptr<EntryIter>> children;
  children.push_back(NewMemIter(st->active, active_snap));
  for (const auto& f : st->frozen) children.push_back(NewMemIter(f->mem, f->mem->Count()));
  for (const auto& seg : st->segments) children.push_back(NewSegmentIter(seg));
  auto it = std::make_unique<MergingIter>(std::move(children));
  it->Seek(start);
  std::optional<std::string> e;
  if (end) e.emplace(*end);
  return std::make_unique<ScanIterator>(std::move(st), std::move(it), std::move(e));
}

// ---- flush ---------------------------------------------------------------------------------

Status Engine::Impl::FlushOldest(bool* did) {
  *did = false;
  std::shared_ptr<const State> st = Snapshot();
  if (st->frozen.empty()) return Status::Ok();
  std::shared_ptr<Frozen> f = st->frozen.back();
  if (opts.fsync != FsyncPolicy::kNever) {
    Status s = f->log->Sync();  // the segment will hold it anyway; keeps the window short
    if (!s.ok()) return s;
  }
  uint64_t number = next_file.fetch_add(1);
  std::string path = Path(SegmentFileName(number));
  SegmentWriter w(opts.block_bytes);
  Status s = w.Open(path);
  if (s.ok()) {
    MemTable::SortedRun it(f->mem.get());  // frozen: no insert runs alongside
    for (; s.ok() && it.Valid(); it.Next()) {
      s = w.Add(it.key(), it.value(), it.version(), it.type());
    }
  }
  if (s.ok()) s = w.Finish();
  std::shared_ptr<Segment> seg;
  if (s.ok()) s = Segment::Open(opts.dir, number, &seg, true);
  if (s.ok()) seg->set_max_version(w.max_version());
  if (!s.ok()) {
    w.Abandon();
    ::unlink(path.c_str());
    return s;
  }
  {
    std::lock_guard<std::mutex> l(manifest_mu);
    Manifest m = manifest;
    m.segments.insert(m.segments.begin(), number);
    m.min_log = f->logs.back() + 1;  // newer memtables only use higher-numbered logs
    m.next_file = next_file.load();
    uint64_t mbytes = 0;
    s = WriteManifest(opts.dir, m, &mbytes);
    if (!s.ok()) {
      seg->MarkObsolete();
      return s;
    }
    manifest = m;
    std::lock_guard<std::mutex> sl(state_mu);
    auto next = std::make_shared<State>(*state);
    next->frozen.pop_back();
    next->segments.insert(next->segments.begin(), seg);
    state = std::move(next);
    disk_bytes.fetch_add(w.file_size() + mbytes, std::memory_order_relaxed);
  }
  for (uint64_t n : f->logs) ::unlink(Path(LogFileName(n)).c_str());
  flushes.fetch_add(1, std::memory_order_relaxed);
  *did = true;
  return Status::Ok();
}

Status Engine::Flush() {
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    Status s = impl_->Freeze();
    if (!s.ok()) return s;
  }
  Status s;
  {
    std::lock_guard<std::mutex> l(impl_->flush_mu);
    for (bool did = true; did && s.ok();) s = impl_->FlushOldest(&did);
  }
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    if (s.ok()) impl_->flush_failing.store(false);
  }
  impl_->stall_cv.notify_all();
  if (s.ok() && impl_->opts.background) impl_->Kick(false, true);
  return s;
}

void Engine::Impl::WaitForCompaction() {
  if (!CompactionBehind(SegmentSizes(*Snapshot()), opts.memtable_bytes)) return;
  flush_waits.fetch_add(1, std::memory_order_relaxed);
  Kick(false, true);
  const auto deadline = std::chrono::steady_clock::now() + kFlushWaitLimit;
  uint64_t seen = compactions.load();
  // The state is looked at without bg_mu (dropping the last reference to replaced segments
  // unmaps and unlinks them); a merge installed in between has counted itself in `compactions`
  // before its notification, so that is not lost.
  while (CompactionBehind(SegmentSizes(*Snapshot()), opts.memtable_bytes)) {
    std::unique_lock<std::mutex> lock(bg_mu);
    // Bounded: a compaction that cannot finish (disk full) delays each flush by at most this.
    if (!compacted_cv.wait_until(lock, deadline,
                                 [&] { return shutting_down || compactions.load() != seen; })) {
      return;
    }
    if (shutting_down) return;
    seen = compactions.load();
  }
}

std::unique_lock<std::mutex> Engine::Impl::StartBackgroundThread(const char* name, bool idle,
                                                                 int nice) {
  pthread_setname_np(pthread_self(), name);  // for top -H, perf and /proc/PID/task/*/comm
  if (idle) {
    IdleThisThread();
  } else {
    NiceThisThread(nice);
  }
  std::unique_lock<std::mutex> lock(bg_mu);
  ++bg_started;
  bg_started_cv.notify_all();
  return lock;
}

void Engine::Impl::FlushThread() {
  std::unique_lock<std::mutex> lock = StartBackgroundThread("kv-flush", false, opts.flush_nice);
  for (;;) {
    if (shutting_down) return;
    if (!flush_wanted) {
      bg_cv.wait(lock);
      continue;
    }
    flush_wanted = false;
    bg_running.fetch_add(1);
    lock.unlock();
    PrepareSpares();  // for the next freeze, which asked for this flush
    WaitForCompaction();
    Status s;
    bool did = true, any = false;
    {
      std::lock_guard<std::mutex> l(flush_mu);
      while (did && s.ok()) {
        s = FlushOldest(&did);
        any |= did;
      }
    }
    {
      std::lock_guard<std::mutex> l(write_mu);
      if (!s.ok()) flush_error = s;
      flush_failing.store(!s.ok());
    }
    stall_cv.notify_all();
    if (any) Kick(false, true);
    lock.lock();
    bg_running.fetch_sub(1);
    if (!s.ok()) {
      LOG_WARN("storage: background flush failed (retrying in 1 s): %s", s.message().c_str());
      flush_wanted = true;
      bg_cv.wait_for(lock, std::chrono::seconds(1));
    }
  }
}

// ---- compaction ----------------------------------------------------------------------------

Status Engine::Impl::CompactRange(const std::shared_ptr<const State>& st, size_t begin,
                                  size_t end) {
  std::vector<std::shared_ptr<Segment>> inputs(st->segments.begin() + begin,
                                               st->segments.begin() + end);
  bool oldest = end == st->segments.size();
  uint64_t gc_ms = opts.tombstone_gc_seconds * 1000;
  uint64_t now = NowMillis();
  uint64_t drop_before = oldest && now > gc_ms ? now - gc_ms : 0;
  uint64_t number = next_file.fetch_add(1);
  std::string path = Path(SegmentFileName(number));
  SegmentWriter w(opts.block_bytes);
  Status s = w.Open(path);
  if (s.ok()) s = MergeInto(inputs, drop_before, &w);
  if (s.ok() && w.entries() > 0) s = w.Finish();
  std::shared_ptr<Segment> seg;
  if (s.ok() && w.entries() > 0) s = Segment::Open(opts.dir, number, &seg, true);
  if (s.ok() && seg) seg->set_max_version(w.max_version());
  if (!s.ok() || w.entries() == 0) w.Abandon();
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  {
    std::lock_guard<std::mutex> l(manifest_mu);
    Manifest m = manifest;
    // Flushes only prepend, so the inputs are still one contiguous run.
    auto pos = std::find(m.segments.begin(), m.segments.end(), inputs.front()->number());
    size_t at = static_cast<size_t>(pos - m.segments.begin());
    m.segments.erase(pos, pos + static_cast<long>(inputs.size()));
    if (seg) m.segments.insert(m.segments.begin() + static_cast<long>(at), number);
    m.next_file = next_file.load();
    uint64_t mbytes = 0;
    s = WriteManifest(opts.dir, m, &mbytes);
    if (!s.ok()) {
      if (seg) seg->MarkObsolete();
      return s;
    }
    manifest = m;
    std::lock_guard<std::mutex> sl(state_mu);
    auto next = std::make_shared<State>(*state);
    auto sp = next->segments.begin() + static_cast<long>(at);
    next->segments.erase(sp, sp + static_cast<long>(inputs.size()));
    if (seg) next->segments.insert(next->segments.begin() + static_cast<long>(at), seg);
    state = std::move(next);
    disk_bytes.fetch_add(w.file_size() + mbytes, std::memory_order_relaxed);
  }
  // Files go away when the last snapshot or iterator reading them lets go.
  for (auto& in : inputs) in->MarkObsolete();
  compactions.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status Engine::Impl::MaybeCompact() {
  for (;;) {
    std::shared_ptr<const State> st = Snapshot();
    size_t b, e;
    if (!PickCompaction(SegmentSizes(*st), opts.memtable_bytes, &b, &e)) return Status::Ok();
    Status s = CompactRange(st, b, e);
    if (!s.ok()) return s;
    std::lock_guard<std::mutex> l(bg_mu);
    compacted_cv.notify_all();
    if (shutting_down) return Status::Ok();
  }
}

Status Engine::CompactAll() {
  std::lock_guard<std::mutex> l(impl_->compact_mu);
  std::shared_ptr<const State> st = impl_->Snapshot();
  size_t n = st->segments.size();
  if (n == 0) return Status::Ok();
  return impl_->CompactRange(st, 0, n);
}

void Engine::Impl::IndexThread() {
  // Nothing waits for it (a scan links what is still pending itself; a flush sorts the frozen
  // table's nodes on its own), so it can be the first to give way.
  std::unique_lock<std::mutex> lock = StartBackgroundThread("kv-index", opts.background_idle, 0);
  for (;;) {
    if (shutting_down) return;
    if (!index_kicked.exchange(false)) {
      index_cv.wait(lock);
      continue;
    }
    lock.unlock();
    // Only the memtables are kept while indexing: holding the State would keep segments that
    // a compaction replaced alive (and their files on disk).
    std::vector<std::shared_ptr<MemTable>> mems;
    {
      std::shared_ptr<const State> st = Snapshot();
      mems.push_back(st->active);
      for (const auto& f : st->frozen) mems.push_back(f->mem);
    }
    for (const auto& m : mems) m->Index();
    mems.clear();
    lock.lock();
  }
}

void Engine::Impl::CompactThread() {
  std::unique_lock<std::mutex> lock = StartBackgroundThread("kv-compact", opts.background_idle, 0);
  for (;;) {
    if (shutting_down) return;
    if (!compact_wanted) {
      bg_cv.wait(lock);
      continue;
    }
    compact_wanted = false;
    bg_running.fetch_add(1);
    lock.unlock();
    Status s;
    {
      std::lock_guard<std::mutex> l(compact_mu);
      s = MaybeCompact();
    }
    lock.lock();
    bg_running.fetch_sub(1);
    if (!s.ok()) {
      // Disk full: retry later. Corruption: reads of the bad block already answer kCorruption;
      // the merge is retried on the next flush.
      LOG_WARN("storage: background compaction failed: %s", s.message().c_str());
    }
  }
}

// ---- periodic sync -------------------------------------------------------------------------

void Engine::Impl::SyncThread() {
  pthread_setname_np(pthread_self(), "kv-sync");
  std::unique_lock<std::mutex> lock(bg_mu);
  while (!shutting_down) {
    bg_cv.wait_for(lock, std::chrono::milliseconds(100));
    if (shutting_down) return;
    lock.unlock();
    std::shared_ptr<LogWriter> w;
    {
      std::lock_guard<std::mutex> l(write_mu);
      w = log;
    }
    Status s = w->Sync();
    if (!s.ok()) LOG_WARN("storage: periodic log sync failed: %s", s.message().c_str());
    lock.lock();
  }
}

// ---- stats ---------------------------------------------------------------------------------

Stats Engine::GetStats() const {
  Stats out;
  std::shared_ptr<const State> st = impl_->Snapshot();
  out.memtable_bytes = st->active->MemoryUsage();
  out.keys_estimate = st->active->Count();
  for (const auto& f : st->frozen) {
    out.memtable_bytes += f->mem->MemoryUsage();
    out.keys_estimate += f->mem->Count();
  }
  out.segments = st->segments.size();
  for (const auto& seg : st->segments) {
    out.segment_bytes += seg->file_size();
    out.index_filter_bytes += seg->MemoryUsage();
    out.keys_estimate += seg->entries();
  }
  out.user_bytes_written = impl_->user_bytes.load();
  out.disk_bytes_written = impl_->disk_bytes.load();
  out.flushes = impl_->flushes.load();
  out.compactions = impl_->compactions.load();
  out.frozen_memtables = st->frozen.size();
  out.flush_waits = impl_->flush_waits.load();
  out.freezes_without_spare = impl_->freezes_without_spare.load();
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    out.spare_memtables = impl_->spare_mem ? 1 : 0;
  }
  {
    std::lock_guard<std::mutex> l(impl_->bg_mu);
    out.background_jobs = static_cast<uint64_t>(impl_->bg_running.load()) +
                          (impl_->flush_wanted ? 1 : 0) + (impl_->compact_wanted ? 1 : 0);
  }
  return out;
}

}  // namespace kv::storage
