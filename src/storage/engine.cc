// Engine::Impl: the write path, reads and iterators; it delegates the rest. The current
// memtables and segments and the manifest are the VersionSet's (version_set.h), the threads and
// their scheduling BackgroundWork's (background.h), opening a directory RecoverStore's
// (recovery.h). Impl does the flush and compaction jobs those threads run.
//
// Locks (always taken in this order when nested):
//   write_mu     serializes writers: newest-wins check, log append, memtable insert, freeze.
//   flush_mu     one flush at a time (background thread or Flush()).
//   compact_mu   one compaction at a time (background thread or CompactAll()).
//   VersionSet's manifest and state locks: manifest rewrite + install; the state pointer.
//   BackgroundWork's lock: wake-ups (never held while a job runs).
// Readers copy the current State (an immutable snapshot of memtables and segments) and work
// lock-free from there, so they never wait for a flush, a compaction or a writer. The only shared
// lock a read takes is the VersionSet's state lock for the ~20 ns of a shared_ptr copy;
// std::atomic<shared_ptr> in libstdc++ 12 is a spin lock on the same cache line, so it would not
// be cheaper. Memtable reads are lock-free (see memtable.h); segment reads go through an
// immutable mmap. Writers hold write_mu across lookup + write(2) + insert: the write(2)
// serializes them anyway, and holding one lock keeps "check the stored version, then write"
// atomic.
#include "storage/engine.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <vector>

#include "common/log.h"
#include "storage/background.h"
#include "storage/bloom.h"
#include "storage/compaction.h"
#include "storage/file_io.h"
#include "storage/log_format.h"
#include "storage/log_writer.h"
#include "storage/memtable.h"
#include "storage/merge.h"
#include "storage/recovery.h"
#include "storage/segment.h"
#include "storage/segment_writer.h"
#include "storage/version_set.h"

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

std::vector<uint64_t> SegmentSizes(const State& st) {  // newest first
  std::vector<uint64_t> sizes;
  for (const auto& seg : st.segments) sizes.push_back(seg->file_size());
  return sizes;
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
  std::string_view value() const override {
    std::string_view v = it_->value();
    return it_->type() == EntryType::kExpiring ? v.substr(kExpiryBytes) : v;
  }
  uint64_t version() const override { return it_->version(); }
  bool tombstone() const override { return it_->type() == EntryType::kTombstone; }
  uint64_t expires_ms() const override {
    return it_->type() == EntryType::kExpiring ? GetFixed64(it_->value().data()) : 0;
  }
  Status status() const override { return it_->status(); }
  void Get(Entry* e) const override {
    const EntryType type = it_->type();
    const std::string_view v = it_->value();
    e->key = it_->key();
    e->version = it_->version();
    e->tombstone = type == EntryType::kTombstone;
    if (type == EntryType::kExpiring) {
      e->expires_ms = GetFixed64(v.data());
      e->value = v.substr(kExpiryBytes);
    } else {
      e->expires_ms = 0;
      e->value = v;
    }
  }

 private:
  std::shared_ptr<const State> st_;  // keeps memtables and segment files alive
  std::unique_ptr<MergingIter> it_;
  std::optional<std::string> end_;
};

}  // namespace

struct Engine::Impl final : BackgroundJobs {
  explicit Impl(const Options& o) : opts(o), versions(o.dir), bg(o, this) {}

  const Options opts;
  int lock_fd = -1;
  VersionSet versions;

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
  std::atomic<bool> flush_failing{false};  // last background flush failed
  Status flush_error;                      // write_mu

  std::mutex flush_mu, compact_mu;

  std::atomic<uint64_t> last_scan_ms{0};  // when Scan() was last called (0: never)
  bool ScansRecent() const {
    uint64_t t = last_scan_ms.load(std::memory_order_relaxed);
    return t != 0 && NowMillis() - t < kScanRecentMs;
  }

  // Stats.
  std::atomic<uint64_t> user_bytes{0}, disk_bytes{0}, flushes{0}, compactions{0};
  std::atomic<uint64_t> freezes_without_spare{0};

  // Declared last: its threads call into the members above, and are stopped in ~Engine.
  BackgroundWork bg;

  std::shared_ptr<const State> Snapshot() const { return versions.Current(); }
  std::string Path(const std::string& name) const { return opts.dir + "/" + name; }

  Status Open();
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
  std::shared_ptr<MemTable> NewMemTable() const {
    return std::make_shared<MemTable>(ArenaBlockFor(opts.memtable_bytes),
                                      HashBucketsFor(opts.memtable_bytes));
  }
  // Writes segment `number` with what fill() adds, synced and opened into *out; *out stays null
  // when fill() added nothing. On failure the partial file is deleted.
  Status WriteSegment(uint64_t number, const std::function<Status(SegmentWriter*)>& fill,
                      std::shared_ptr<Segment>* out, uint64_t* file_size);
  Status FlushOldest(bool* did);  // flush_mu held
  // Merges segments [begin, end) of st (newest-first indexes); compact_mu held.
  Status CompactRange(const std::shared_ptr<const State>& st, size_t begin, size_t end);

  // BackgroundJobs.
  void PrepareSpares() override;
  Status FlushFrozen(bool* any) override;
  void FlushFinished(const Status& s) override;
  Status CompactAsNeeded() override;
  bool CompactionBehind() override {
    return storage::CompactionBehind(SegmentSizes(*Snapshot()), opts.memtable_bytes);
  }
  uint64_t CompactionsDone() override { return compactions.load(); }
  void IndexMemTables() override;
  Status SyncLog() override;
};

// ---- open and recovery ---------------------------------------------------------------------

Status Engine::Impl::Open() {
  RecoveredStore r;
  Status s = RecoverStore(opts.dir, NewMemTable(), opts.fsync == FsyncPolicy::kAlways, &r);
  lock_fd = r.lock_fd;
  if (!s.ok()) return s;
  versions.Reset(r.manifest, r.next_file, r.state);
  log = std::move(r.log);
  active_logs = std::move(r.logs);
  freeze_at = NextFreezeSize();
  // The writers' rule, applied to what was replayed.
  if (r.state->active->MemoryUsage() >= freeze_at) {
    std::lock_guard<std::mutex> l(write_mu);
    Status fs = Freeze();
    if (!fs.ok()) LOG_WARN("storage: freeze after recovery failed: %s", fs.message().c_str());
  }
  return Status::Ok();
}

Status Engine::Open(const Options& options, std::unique_ptr<Engine>* out) {
  if (options.dir.empty()) return Status(Code::kInvalidArgument, "empty store directory");
  Options o = options;
  if (o.block_bytes < 64) o.block_bytes = 64;
  auto impl = std::make_unique<Impl>(o);
  Status s = impl->Open();
  if (!s.ok()) return s;
  impl->bg.Start();
  out->reset(new Engine(std::move(impl)));
  return Status::Ok();
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
  impl_->bg.Stop();
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
  uint64_t number = versions.NewFileNumber();
  std::unique_ptr<LogWriter> w;
  Status s =
      LogWriter::Create(Path(LogFileName(number)), number, &w, opts.fsync == FsyncPolicy::kAlways);
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
  versions.FreezeActive(std::move(f), std::move(fresh));
  log = std::move(w);
  active_logs = {number};
  freeze_at = NextFreezeSize();
  if (opts.background) bg.Kick(true, false);
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
    if (ops[i].key.size() > kMaxKeyBytes || ops[i].value.size() > kMaxValueBytes ||
        (ops[i].tombstone && ops[i].expires_ms != 0)) {
      return Status(Code::kInvalidArgument, "key or value too large");
    }
  }
  thread_local std::string records;
  thread_local std::string one;
  thread_local std::vector<uint32_t> accepted;  // indexes of the accepted ops, ascending
  // The stored values of expiring ops (expiry, then value), by op index; empty for the others.
  thread_local std::vector<std::string> expiring;
  if (!expiring.empty()) expiring.clear();
  auto type_of = [](const Engine::WriteOp& op) {
    if (op.tombstone) return EntryType::kTombstone;
    return op.expires_ms != 0 ? EntryType::kExpiring : EntryType::kValue;
  };
  // Built when the log record is encoded, kept for the memtable insert.
  auto stored_value = [&](const Engine::WriteOp& op, size_t i) -> std::string_view {
    if (op.expires_ms == 0 || op.tombstone) return op.value;
    if (expiring.size() < n) expiring.resize(n);  // once: views stay valid (SSO strings move)
    std::string& s = expiring[i];
    if (s.empty()) {
      s.resize(kExpiryBytes);
      PutFixed64(s.data(), op.expires_ms);
      s.append(op.value);
    }
    return s;
  };
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
      EncodeLogRecord(op.key, stored_value(op, i), op.version, type_of(op), &one);
      records.append(one);
    }
    if (!accepted.empty()) {
      Status s = log->Append(records, &end);
      if (!s.ok()) return s;
      for (uint32_t i : accepted) {  // batch order: one key's versions go in increasing
        st->active->Insert(ops[i].key, stored_value(ops[i], i), ops[i].version, type_of(ops[i]));
        user_bytes.fetch_add(ops[i].key.size() + ops[i].value.size(), std::memory_order_relaxed);
      }
      // The skiplist (for scans) is built in the background, in batches, while scans come;
      // otherwise by the first scan.
      if (opts.background && st->active->Pending() >= kIndexBatch && ScansRecent()) {
        bg.KickIndex();
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
  out->expires_ms = 0;
  if (hit) {
    out->kind = t == EntryType::kTombstone ? ReadResult::kTombstone : ReadResult::kValue;
    if (t == EntryType::kExpiring) {
      out->expires_ms = GetFixed64(v.data());
      v.remove_prefix(kExpiryBytes);
    }
    out->value.assign(v);
    return Status::Ok();
  }
  for (const auto& seg : st->segments) {
    Status s = seg->GetHashed(key, hash, &out->value, &out->version, &t);
    if (s.ok()) {
      out->kind = t == EntryType::kTombstone ? ReadResult::kTombstone : ReadResult::kValue;
      if (t == EntryType::kExpiring) {
        out->expires_ms = GetFixed64(out->value.data());
        out->value.erase(0, kExpiryBytes);
      }
      return s;
    }
    if (s.code() != Code::kNotFound) return s;
  }
  out->kind = ReadResult::kAbsent;
  out->version = 0;
  out->value.clear();
  return Status::Ok();
}

std::unique_ptr<Iterator> Engine::Scan(std::string_view start, std::optional<std::string_view> end,
                                       bool background) {
  if (!background) impl_->last_scan_ms.store(NowMillis(), std::memory_order_relaxed);
  std::shared_ptr<const State> st = impl_->Snapshot();
  // Inserts into the active memtable never took the state lock, so reading its count after the
  // copy sees the same range of possible entries as reading it under the lock did.
  const uint64_t active_snap = st->active->Count();
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

Status Engine::Impl::WriteSegment(uint64_t number,
                                  const std::function<Status(SegmentWriter*)>& fill,
                                  std::shared_ptr<Segment>* out, uint64_t* file_size) {
  std::string path = Path(SegmentFileName(number));
  SegmentWriter w(opts.block_bytes);
  Status s = w.Open(path);
  if (s.ok()) s = fill(&w);
  if (s.ok() && w.entries() > 0) s = w.Finish();
  std::shared_ptr<Segment> seg;
  if (s.ok() && w.entries() > 0) s = Segment::Open(opts.dir, number, &seg, true);
  if (s.ok() && seg) seg->set_max_version(w.max_version());
  if (!s.ok() || w.entries() == 0) w.Abandon();
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  *out = std::move(seg);
  *file_size = w.file_size();
  return Status::Ok();
}

Status Engine::Impl::FlushOldest(bool* did) {
  *did = false;
  std::shared_ptr<const State> st = Snapshot();
  if (st->frozen.empty()) return Status::Ok();
  std::shared_ptr<Frozen> f = st->frozen.back();
  if (opts.fsync != FsyncPolicy::kNever) {
    // Keeps the window short; the segment will hold the records anyway. A log whose sync
    // failed acknowledges nothing more (LogWriter::SyncTo), and its flush is what makes its
    // records durable again: so it goes on.
    Status s = f->log->Sync();
    if (!s.ok()) LOG_WARN("storage: flushing despite a failed log sync: %s", s.message().c_str());
  }
  VersionEdit edit;
  uint64_t bytes = 0;
  Status s = WriteSegment(
      versions.NewFileNumber(),
      [&f](SegmentWriter* w) {
        Status s;
        MemTable::SortedRun it(f->mem.get());  // frozen: no insert runs alongside
        for (; s.ok() && it.Valid(); it.Next()) {
          s = w->Add(it.key(), it.value(), it.version(), it.type());
        }
        return s;
      },
      &edit.added, &bytes);
  if (!s.ok()) return s;
  edit.retire_oldest_frozen = true;
  edit.min_log = f->logs.back() + 1;  // newer memtables only use higher-numbered logs
  s = versions.Apply(edit, &bytes);
  if (!s.ok()) return s;
  disk_bytes.fetch_add(bytes, std::memory_order_relaxed);
  for (uint64_t n : f->logs) ::unlink(Path(LogFileName(n)).c_str());
  flushes.fetch_add(1, std::memory_order_relaxed);
  *did = true;
  return Status::Ok();
}

Status Engine::Impl::FlushFrozen(bool* any) {
  std::lock_guard<std::mutex> l(flush_mu);
  Status s;
  for (bool did = true; did && s.ok();) {
    s = FlushOldest(&did);
    *any |= did;
  }
  return s;
}

void Engine::Impl::FlushFinished(const Status& s) {
  {
    std::lock_guard<std::mutex> l(write_mu);
    if (!s.ok()) flush_error = s;
    flush_failing.store(!s.ok());
  }
  stall_cv.notify_all();
}

Status Engine::Flush() {
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    Status s = impl_->Freeze();
    if (!s.ok()) return s;
  }
  bool any = false;
  Status s = impl_->FlushFrozen(&any);
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    if (s.ok()) impl_->flush_failing.store(false);
  }
  impl_->stall_cv.notify_all();
  if (s.ok() && impl_->opts.background) impl_->bg.Kick(false, true);
  return s;
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
  VersionEdit edit;
  uint64_t bytes = 0;
  Status s = WriteSegment(
      versions.NewFileNumber(),
      [&](SegmentWriter* w) {
        return MergeInto(inputs, drop_before, now, w, opts.tombstone_gc_filter);
      },
      &edit.added, &bytes);
  if (!s.ok()) return s;
  // Flushes only prepend, so the inputs are still one contiguous run.
  edit.removed = std::move(inputs);
  s = versions.Apply(edit, &bytes);
  if (!s.ok()) return s;
  disk_bytes.fetch_add(bytes, std::memory_order_relaxed);
  compactions.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status Engine::Impl::CompactAsNeeded() {
  std::lock_guard<std::mutex> l(compact_mu);
  for (;;) {
    std::shared_ptr<const State> st = Snapshot();
    size_t b, e;
    if (!PickCompaction(SegmentSizes(*st), opts.memtable_bytes, &b, &e)) return Status::Ok();
    Status s = CompactRange(st, b, e);
    if (!s.ok()) return s;
    if (bg.NoteCompacted()) return Status::Ok();
  }
}

Status Engine::CompactAll() {
  std::lock_guard<std::mutex> l(impl_->compact_mu);
  std::shared_ptr<const State> st = impl_->Snapshot();
  size_t n = st->segments.size();
  if (n == 0) return Status::Ok();
  return impl_->CompactRange(st, 0, n);
}

// ---- index and sync (background) -----------------------------------------------------------

void Engine::Impl::IndexMemTables() {
  // Only the memtables are kept while indexing: holding the State would keep segments that
  // a compaction replaced alive (and their files on disk).
  std::vector<std::shared_ptr<MemTable>> mems;
  {
    std::shared_ptr<const State> st = Snapshot();
    mems.push_back(st->active);
    for (const auto& f : st->frozen) mems.push_back(f->mem);
  }
  for (const auto& m : mems) m->Index();
}

Status Engine::Impl::SyncLog() {
  std::shared_ptr<LogWriter> w;
  {
    std::lock_guard<std::mutex> l(write_mu);
    w = log;
  }
  return w->Sync();
}

Status Engine::Sync() {
  return impl_->SyncLog();
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
  out.flush_waits = impl_->bg.flush_waits();
  out.freezes_without_spare = impl_->freezes_without_spare.load();
  {
    std::lock_guard<std::mutex> l(impl_->write_mu);
    out.spare_memtables = impl_->spare_mem ? 1 : 0;
  }
  out.background_jobs = impl_->bg.jobs();
  return out;
}

}  // namespace kv::storage
