#include "cluster/local_replica.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "cluster/clock_skew.h"
#include "cluster/hint_file.h"
#include "common/range_page.h"

namespace kv::cluster {

namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

PeerResponse ErrorOf(const storage::Status& st) {
  PeerResponse r;
  r.kind = PeerResponse::kError;
  r.error = st.message();
  r.no_space = st.code() == storage::Code::kNoSpace;
  return r;
}

// A value that has expired by this node's clock answers as the tombstone of its version it has
// become (the clock is read only for a value that expires).
PeerResponse Read(storage::Engine* engine, std::string_view key, const Hlc& hlc) {
  storage::ReadResult r;
  storage::Status st = engine->Get(key, &r);
  if (!st.ok()) return ErrorOf(st);
  PeerResponse resp;
  resp.version = r.version;
  switch (r.kind) {
    case storage::ReadResult::kValue:
      if (r.expires_ms != 0 && storage::Expired(r.expires_ms, hlc.WallUs() / 1000)) {
        resp.kind = PeerResponse::kTombstone;
        break;
      }
      resp.kind = PeerResponse::kValue;
      resp.expires_ms = r.expires_ms;
      resp.value = std::move(r.value);
      break;
    case storage::ReadResult::kTombstone:
      resp.kind = PeerResponse::kTombstone;
      break;
    default:
      resp.kind = PeerResponse::kAbsent;
  }
  return resp;
}

uint64_t ExpiresOf(const PeerRequest& req) {
  return req.op == PeerOp::kPut ? req.expires_ms : 0;
}

}  // namespace

// An expired value is the tombstone of its version it has become (as in Read).
PeerResponse LocalReplica::ReadPage(storage::Engine* engine, const PeerRequest& req,
                                    uint64_t now_ms) {
  PeerResponse resp;
  if (req.key.size() > range_page::kMaxStartBytes || req.max_keys == 0 || req.max_bytes == 0) {
    resp.error = "invalid range request";
    return resp;
  }
  const uint32_t max_keys = std::min(req.max_keys, range_page::kMaxPageKeys);
  const size_t max_bytes = std::min<size_t>(req.max_bytes, range_page::kMaxPageBytes);
  std::optional<std::string_view> end;
  if (req.has_end) end = req.end;
  auto it = engine->Scan(req.key, end);
  std::string& page = resp.value;
  // The page never grows past max_bytes (but for a single larger first entry): reserved at
  // once, it is filled without the copies of growing by doubling; the bytes not used are never
  // touched.
  page.reserve(max_bytes + range_page::kHeaderBytes);
  const size_t begin = range_page::Begin(&page);
  size_t last = begin;
  uint32_t n = 0;
  // Stops before an entry that would take the page past max_bytes, except the first: every
  // page moves the range on.
  storage::Iterator::Entry e;
  for (; it->Valid() && n < max_keys; it->Next(), ++n) {
    it->Get(&e);
    const bool tombstone = e.tombstone || storage::Expired(e.expires_ms, now_ms);
    const std::string_view value = tombstone ? std::string_view() : e.value;
    if (n > 0 && page.size() + range_page::EntryBytes(e.key.size(), value.size()) >
                     max_bytes + range_page::kHeaderBytes) {
      break;
    }
    last = range_page::Append(&page, range_page::Entry{e.key, value, e.version, tombstone});
  }
  if (!it->status().ok()) return ErrorOf(it->status());
  range_page::Finish(&page, begin, last, it->Valid());
  resp.kind = PeerResponse::kPage;
  return resp;
}

namespace {

class EngineSource final : public RangeMerge::Source {
 public:
  EngineSource(std::unique_ptr<storage::Iterator> it, uint64_t now_ms)
      : it_(std::move(it)), now_ms_(now_ms) {}
  bool Next(range_page::Entry* e, std::string* error) override {
    if (started_) it_->Next();
    started_ = true;
    if (!it_->Valid()) {
      if (!it_->status().ok()) *error = it_->status().message();
      return false;
    }
    it_->Get(&got_);
    e->key = got_.key;
    e->tombstone = got_.tombstone || storage::Expired(got_.expires_ms, now_ms_);
    e->value = e->tombstone ? std::string_view() : got_.value;
    e->version = got_.version;
    return true;
  }

 private:
  std::unique_ptr<storage::Iterator> it_;
  storage::Iterator::Entry got_;
  const uint64_t now_ms_;
  bool started_ = false;
};

}  // namespace

std::unique_ptr<RangeMerge::Source> LocalReplica::RangeSource(
    std::string_view start, std::optional<std::string_view> end) const {
  return std::make_unique<EngineSource>(engine_->Scan(start, end), hlc_->WallUs() / 1000);
}

PeerResponse LocalReplica::StoredResponse(const storage::Status& st,
                                          const storage::Engine::WriteOp& op) {
  if (!st.ok()) return ErrorOf(st);
  PeerResponse resp;
  resp.kind = PeerResponse::kStored;
  resp.version = op.stored_version;
  return resp;
}

LocalReplica::LocalReplica(storage::Engine* engine, Hlc* hlc, GroupCommitter* committer,
                           std::function<void()> wake)
    : engine_(engine),
      hlc_(hlc),
      max_skew_ms_(kDefaultMaxClockSkewMs),
      committer_(committer),
      wake_(std::move(wake)) {}

LocalReplica::~LocalReplica() = default;

void LocalReplica::Execute(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie) {
  switch (req.op) {
    case PeerOp::kGet:
      return waiter->OnPeerResponse(cookie, Read(engine_, req.key, *hlc_));
    case PeerOp::kRange:
      return waiter->OnPeerResponse(cookie, ReadPage(engine_, req, hlc_->WallUs() / 1000));
    case PeerOp::kPut:
    case PeerOp::kRemove:
      break;
    case PeerOp::kHints:
      return ExecuteHints(req, waiter, cookie);
    case PeerOp::kRepairTree:
    case PeerOp::kRepairEntries:
    case PeerOp::kRepairApply:
      if (repair_) return repair_(req, waiter, cookie);
      [[fallthrough]];
    default: {
      PeerResponse bad;
      bad.error = "unknown op";
      return waiter->OnPeerResponse(cookie, std::move(bad));
    }
  }
  // Checked before anything else: a refused version is neither written nor observed.
  if (const uint64_t ahead = SkewRefusalMs(req.version, hlc_->WallUs(), max_skew_ms_)) {
    return Refuse(ahead, waiter, cookie);
  }
  hlc_->Observe(req.version);
  if (req.value.size() > kMaxBatchedValue && committer_ == nullptr) {
    storage::Engine::WriteOp op{req.key, req.value,     req.version, req.op == PeerOp::kRemove,
                                0,       ExpiresOf(req)};
    storage::Status st = engine_->Write(&op, 1);
    return waiter->OnPeerResponse(cookie, StoredResponse(st, op));
  }
  Queue(req, waiter, cookie, 0);
  // A large value goes alone: it would only delay the others. With a committer, a batch also
  // leaves once it has kSyncBatch writes: its fdatasync then runs while the loop handles the
  // rest of the iteration's requests, instead of every client waiting in the same phase (one
  // batch, one sync, one batch, ...).
  if (req.value.size() > kMaxBatchedValue || (committer_ != nullptr && count_ >= kSyncBatch)) {
    Commit();
  }
}

void LocalReplica::Refuse(uint64_t ahead_ms, PeerWaiter* waiter, uint64_t cookie) {
  if (skew_refusals_ != nullptr) skew_refusals_->fetch_add(1, std::memory_order_relaxed);
  PeerResponse refused;
  refused.clock_skew = true;
  refused.skew_ms = ahead_ms;
  refused.error = SkewMessage(ahead_ms, max_skew_ms_);
  waiter->OnPeerResponse(cookie, std::move(refused));
}

void LocalReplica::Queue(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie,
                         uint32_t records) {
  // Key and value are copied: the connection that carried them reuses its buffers for the next
  // request before the commit.
  const bool tombstone = req.op == PeerOp::kRemove;
  if (count_ == items_.size()) items_.emplace_back();
  Item& w = items_[count_++];
  w.waiter = waiter;
  w.cookie = cookie;
  w.records = records;
  w.key.assign(req.key);
  w.value.assign(tombstone ? std::string_view() : req.value);
  w.version = req.version;
  w.tombstone = tombstone;
  w.expires_ms = ExpiresOf(req);
}

void LocalReplica::ExecuteHints(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie) {
  // Every record is checked before any is observed or queued: a batch is stored whole or not at
  // all (its sender replays it again; last write wins makes the repeat harmless).
  const uint64_t wall_us = hlc_->WallUs();
  uint64_t ahead = 0;
  hints_.clear();
  for (std::string_view rest = req.value; !rest.empty();) {
    hintfile::Record rec;
    size_t len = 0;
    if (hintfile::ParseRecord(rest, &rec, &len) != hintfile::Parse::kOk) {
      PeerResponse bad;
      bad.invalid = true;
      bad.error = "invalid hints: record " + std::to_string(hints_.size() + 1) +
                  (rest.size() < len ? " is cut short" : " is malformed");
      return waiter->OnPeerResponse(cookie, std::move(bad));
    }
    ahead = std::max(ahead, SkewRefusalMs(rec.version, wall_us, max_skew_ms_));
    hints_.push_back(PeerRequest{rec.op, rec.key, rec.value, rec.version, rec.expires_ms});
    rest.remove_prefix(len);
  }
  if (hints_.empty()) {
    PeerResponse bad;
    bad.invalid = true;
    bad.error = "invalid hints: no records";
    return waiter->OnPeerResponse(cookie, std::move(bad));
  }
  if (ahead != 0) return Refuse(ahead, waiter, cookie);
  // One Engine::Write for the whole batch (Commit writes every queued write at once): its last
  // write answers for all of them.
  const size_t n = hints_.size();
  for (size_t i = 0; i < n; ++i) {
    hlc_->Observe(hints_[i].version);
    if (i + 1 < n) {
      Queue(hints_[i], nullptr, 0, 0);
    } else {
      Queue(hints_[i], waiter, cookie, static_cast<uint32_t>(n));
    }
  }
  if (committer_ != nullptr && count_ >= kSyncBatch) Commit();
}

PeerResponse LocalReplica::AnswerOf(const storage::Status& st, const storage::Engine::WriteOp& op,
                                    const Item& w) {
  PeerResponse r = StoredResponse(st, op);
  if (w.records != 0 && r.kind == PeerResponse::kStored) r.version = w.records;
  return r;
}

bool LocalReplica::Commit() {
  // An answer that leads back here (a waiter that commits) finds its writes for the caller's
  // next round: the caller repeats until nothing is left.
  if (count_ == 0 || committing_) return false;
  committing_ = true;
  const size_t n = count_;
  count_ = 0;
  if (committer_ != nullptr) {
    auto b = std::make_unique<Batch>();
    b->items.assign(std::make_move_iterator(items_.begin()),
                    std::make_move_iterator(items_.begin() + static_cast<ptrdiff_t>(n)));
    b->ops.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const Item& w = b->items[i];
      b->ops[i] = storage::Engine::WriteOp{w.key, w.value, w.version, w.tombstone, 0, w.expires_ms};
    }
    storage::SyncToken token;
    b->status = engine_->Write(b->ops.data(), n, &token);
    if (!b->status.ok() || token.log == nullptr) {
      Answer(b.get());
    } else {
      waiting_sync_ += n;
      committer_->Submit(GroupCommitter::Job{this, std::move(b), std::move(token)});
    }
    committing_ = false;
    return true;
  }
  answering_.swap(items_);
  ops_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const Item& w = answering_[i];
    ops_[i] = storage::Engine::WriteOp{w.key, w.value, w.version, w.tombstone, 0, w.expires_ms};
  }
  storage::Status st = engine_->Write(ops_.data(), n);
  // Answers may queue new writes (into items_, which answering_ no longer is).
  for (size_t i = 0; i < n; ++i) {
    Item& w = answering_[i];
    if (w.waiter != nullptr) w.waiter->OnPeerResponse(w.cookie, AnswerOf(st, ops_[i], w));
  }
  // Keep the larger buffer set for the next iteration.
  if (count_ == 0 && answering_.size() > items_.size()) answering_.swap(items_);
  committing_ = false;
  return true;
}

void LocalReplica::Answer(Batch* b) {
  for (size_t i = 0; i < b->items.size(); ++i) {
    Item& w = b->items[i];
    if (w.waiter != nullptr) w.waiter->OnPeerResponse(w.cookie, AnswerOf(b->status, b->ops[i], w));
  }
}

void LocalReplica::Synced(std::vector<std::unique_ptr<Batch>>* done) {
  // Under the lock: once Drain has taken the last batch, this replica is not touched again.
  std::lock_guard<std::mutex> l(synced_mu_);
  for (auto& b : *done) synced_.push_back(std::move(b));
  done->clear();
  has_synced_.store(true, std::memory_order_release);
  synced_cv_.notify_all();
  if (wake_) wake_();
}

void LocalReplica::Drain() {
  while (waiting_sync_ > 0) {
    {
      std::unique_lock<std::mutex> l(synced_mu_);
      synced_cv_.wait(l, [this] { return !synced_.empty(); });
    }
    DeliverSynced();
  }
}

void LocalReplica::DeliverSynced() {
  // Called at every iteration's end too: without a finished sync it costs one atomic load.
  if (!has_synced_.load(std::memory_order_acquire)) return;
  has_synced_.store(false, std::memory_order_relaxed);
  std::vector<std::unique_ptr<Batch>> done;
  {
    std::lock_guard<std::mutex> l(synced_mu_);
    done.swap(synced_);
  }
  if (done.empty()) return;
  const uint64_t now = NowNs();
  uint64_t wake_ns = 0;
  for (auto& b : done) {
    waiting_sync_ -= b->items.size();
    wake_ns += (now - std::min(now, b->synced_ns)) * b->items.size();
    Answer(b.get());
  }
  committer_->wake_ns_.fetch_add(wake_ns, std::memory_order_relaxed);
}

GroupCommitter::GroupCommitter(storage::Engine* engine)
    : engine_(engine), thread_([this] { Run(); }) {}

GroupCommitter::~GroupCommitter() {
  Stop();
}

void GroupCommitter::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

GroupCommitter::Counters GroupCommitter::counters() const {
  Counters c;
  c.syncs = syncs_.load(std::memory_order_relaxed);
  c.writes = writes_.load(std::memory_order_relaxed);
  c.sync_ns = sync_ns_.load(std::memory_order_relaxed);
  c.queue_ns = queue_ns_.load(std::memory_order_relaxed);
  c.wake_ns = wake_ns_.load(std::memory_order_relaxed);
  return c;
}

void GroupCommitter::Submit(Job job) {
  job.handed_ns = NowNs();
  {
    std::lock_guard<std::mutex> l(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void GroupCommitter::Run() {
  pthread_setname_np(pthread_self(), "kv-commit");  // for top -H, perf and /proc/PID/task/*/comm
  std::vector<Job> round;
  std::vector<std::unique_ptr<LocalReplica::Batch>> back;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and everything handed over is done
      round.swap(jobs_);
    }
    // The first wait syncs everything appended so far (the log's own group commit); the later
    // ones of the same log return at once, or fail with it (LogWriter::SyncTo).
    const uint64_t start = NowNs();
    uint64_t writes = 0, queue_ns = 0;
    for (Job& j : round) {
      storage::Status st = engine_->WaitDurable(j.token);
      if (!st.ok()) j.batch->status = st;
      const uint64_t n = j.batch->items.size();
      writes += n;
      queue_ns += (start - std::min(start, j.handed_ns)) * n;
    }
    const uint64_t end = NowNs();
    syncs_.fetch_add(1, std::memory_order_relaxed);
    writes_.fetch_add(writes, std::memory_order_relaxed);
    sync_ns_.fetch_add(end - start, std::memory_order_relaxed);
    queue_ns_.fetch_add(queue_ns, std::memory_order_relaxed);
    // In hand-over order, one hand-over and one wake-up per loop for all of its batches.
    for (size_t i = 0; i < round.size(); ++i) {
      LocalReplica* r = round[i].replica;
      if (r == nullptr) continue;
      for (size_t k = i; k < round.size(); ++k) {
        if (round[k].replica != r) continue;
        round[k].batch->synced_ns = end;
        back.push_back(std::move(round[k].batch));
        round[k].replica = nullptr;
      }
      r->Synced(&back);
    }
    round.clear();
  }
}

}  // namespace kv::cluster
