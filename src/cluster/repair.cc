#include "cluster/repair.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <random>

#include "cluster/clock_skew.h"
#include "common/fingerprint.h"
#include "common/json.h"
#include "common/log.h"
#include "common/version.h"

namespace kv::cluster {

namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

uint64_t UnixMs() {
  return Hlc::RealWallUs() / 1000;
}

// Repair's threads run under SCHED_IDLE, like compaction: a loop thread that wakes takes the CPU
// from a tree scan at once (at nice 10 the scans of back-to-back repairs of identical replicas
// raised the foreground p99 at half saturation ~9x on a 2-core machine). Starvation is bounded
// by the peers' 60 s request deadline: a repair that cannot get the CPU fails and is retried.
// If the policy cannot be set, nice 10.
void LowerPriority() {
  sched_param sp{};
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0) {
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  }
}

uint64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// While held, a SCHED_IDLE thread runs as SCHED_OTHER: the engine's write lock must not be held
// by a thread that any busy request thread keeps off the CPU, while a loop's own write waits
// behind it for as long (priority inversion). Best effort: nothing changes if the policy cannot
// be set.
class NormalPriorityScope {
 public:
  NormalPriorityScope() {
    int policy = 0;
    sched_param sp{};
    if (pthread_getschedparam(pthread_self(), &policy, &sp) == 0 && policy == SCHED_IDLE) {
      sched_param zero{};
      raised_ = pthread_setschedparam(pthread_self(), SCHED_OTHER, &zero) == 0;
    }
  }
  ~NormalPriorityScope() {
    if (raised_) {
      sched_param zero{};
      pthread_setschedparam(pthread_self(), SCHED_IDLE, &zero);
    }
  }
  NormalPriorityScope(const NormalPriorityScope&) = delete;
  NormalPriorityScope& operator=(const NormalPriorityScope&) = delete;

 private:
  bool raised_ = false;
};

PeerResponse Invalid(const std::string& why) {
  PeerResponse r;
  r.kind = PeerResponse::kError;
  r.invalid = true;
  r.error = "invalid request: " + why;
  return r;
}

PeerResponse Failed(const storage::Status& st) {
  PeerResponse r;
  r.kind = PeerResponse::kError;
  r.error = st.message();
  r.no_space = st.code() == storage::Code::kNoSpace;
  return r;
}

PeerResponse Data(std::string body) {
  PeerResponse r;
  r.kind = PeerResponse::kRepairData;
  r.value = std::move(body);
  return r;
}

}  // namespace

// ---- tree
// ----------------------------------------------------------------------------------------

uint64_t RepairKeyHash(std::string_view key) {
  return XXH3_64bits(key.data(), key.size());
}

uint64_t RepairEntryHash(std::string_view key, uint64_t version, bool tombstone) {
  uint64_t h = XXH3_64bits_withSeed(key.data(), key.size(), version);
  if (tombstone) h = XXH3_64bits_withSeed(&h, sizeof h, 1);
  return h;
}

RepairTree::RepairTree() {
  for (uint8_t l = 0; l <= proto::kRepairLeafLevel; ++l) {
    levels_[l].assign(proto::RepairLevelWidth(l), 0);
  }
}

void RepairTree::Add(std::string_view key, uint64_t version, bool tombstone) {
  levels_[proto::kRepairLeafLevel][RepairLeafOf(key)] += RepairEntryHash(key, version, tombstone);
  ++keys_;
}

void RepairTree::Finish() {
  for (int l = proto::kRepairLeafLevel - 1; l >= 0; --l) {
    std::vector<uint64_t>& up = levels_[l];
    const std::vector<uint64_t>& down = levels_[l + 1];
    for (size_t i = 0; i < up.size(); ++i) {
      uint64_t sum = 0;
      for (size_t c = 0; c < proto::kRepairFanout; ++c) sum += down[i * proto::kRepairFanout + c];
      up[i] = sum;
    }
  }
}

// ---- ranges
// --------------------------------------------------------------------------------------

RangeMap::RangeMap(const Ring* ring, size_t replication)
    : ring_(ring), n_(std::min(std::max<size_t>(replication, 1), ring->size())) {
  std::vector<uint32_t> all(ring->size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint32_t>(i);
  all_id_ = IdOf(all);
}

uint64_t RangeMap::IdOf(const std::vector<uint32_t>& members) const {
  std::vector<std::string> urls;
  for (uint32_t m : members) urls.push_back(ring_->url(m));
  return ClusterFingerprint(urls);
}

uint64_t RangeMap::RangeOf(std::string_view key) const {
  if (single()) return all_id_;
  uint32_t idx[Ring::kInlineReplicas * 4];
  const size_t n = std::min(n_, sizeof idx / sizeof idx[0]);
  ring_->Replicas(key, n, idx);
  uint64_t mask = 0;
  for (size_t i = 0; i < n; ++i) mask |= uint64_t{1} << (idx[i] & 63);
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_mask_.find(mask);
  if (it != by_mask_.end()) return it->second;
  std::vector<uint32_t> members(idx, idx + n);
  std::sort(members.begin(), members.end());
  const uint64_t id = IdOf(members);
  by_mask_.emplace(mask, id);
  return id;
}

std::vector<RepairRange> RangeMap::RangesOf(size_t node) const {
  std::vector<RepairRange> out;
  const size_t total = ring_->size();
  if (single()) {
    RepairRange r;
    for (size_t i = 0; i < total; ++i) r.members.push_back(static_cast<uint32_t>(i));
    r.id = all_id_;
    out.push_back(std::move(r));
    return out;
  }
  // Every n-subset that holds node: choose n-1 of the others (small clusters only).
  std::vector<uint32_t> others;
  for (size_t i = 0; i < total; ++i)
    if (i != node) others.push_back(static_cast<uint32_t>(i));
  std::vector<bool> pick(others.size(), false);
  std::fill(pick.begin(), pick.begin() + static_cast<ptrdiff_t>(n_ - 1), true);
  do {
    RepairRange r;
    r.members.push_back(static_cast<uint32_t>(node));
    for (size_t i = 0; i < others.size(); ++i)
      if (pick[i]) r.members.push_back(others[i]);
    std::sort(r.members.begin(), r.members.end());
    r.id = IdOf(r.members);
    out.push_back(std::move(r));
  } while (std::prev_permutation(pick.begin(), pick.end()) && out.size() < 4096);
  return out;
}

// ---- history
// ---------------------------------------------------------------------------------------

std::string RepairHistory::Encode(const std::map<uint64_t, uint64_t>& entries) {
  std::string s = "kv-repair-history 1\n";
  for (const auto& [range, start] : entries) {
    char line[64];
    snprintf(line, sizeof line, "%016" PRIx64 " %" PRIu64 "\n", range, start);
    s += line;
  }
  return s;
}

bool RepairHistory::Decode(std::string_view text, std::map<uint64_t, uint64_t>* entries) {
  constexpr std::string_view kHead = "kv-repair-history 1\n";
  if (text.substr(0, kHead.size()) != kHead) return false;
  text.remove_prefix(kHead.size());
  std::map<uint64_t, uint64_t> out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return false;
    const std::string line(text.substr(0, nl));
    text.remove_prefix(nl + 1);
    uint64_t range = 0, start = 0;
    int used = 0;
    if (line.size() < 18 || line[16] != ' ' ||
        sscanf(line.c_str(), "%16" SCNx64 " %" SCNu64 "%n", &range, &start, &used) != 2 ||
        static_cast<size_t>(used) != line.size() || line[17] < '0' || line[17] > '9') {
      return false;
    }
    out[range] = start;
  }
  *entries = std::move(out);
  return true;
}

bool RepairHistory::Load(std::string* error) {
  FILE* f = fopen(path_.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT) return true;
    *error = "cannot open " + path_;
    return false;
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0 && text.size() < (1u << 20)) text.append(buf, n);
  fclose(f);
  std::map<uint64_t, uint64_t> entries;
  if (!Decode(text, &entries)) {
    *error = path_ + " is damaged; no tombstone is purged until a repair rewrites it";
    return false;
  }
  std::lock_guard<std::mutex> l(mu_);
  entries_ = std::move(entries);
  return true;
}

bool RepairHistory::Record(uint64_t range, uint64_t start_us, std::string* error) {
  std::lock_guard<std::mutex> l(mu_);
  std::map<uint64_t, uint64_t> next = entries_;
  uint64_t& slot = next[range];
  slot = std::max(slot, start_us);
  const std::string text = Encode(next);
  const std::string tmp = path_ + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = "cannot create " + tmp;
    return false;
  }
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  fdatasync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), path_.c_str()) != 0) {
    unlink(tmp.c_str());
    *error = "cannot write " + path_;
    return false;
  }
  entries_ = std::move(next);
  return true;
}

uint64_t RepairHistory::LastFull(uint64_t range) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(range);
  return it == entries_.end() ? 0 : it->second;
}

bool TombstoneGcRule::operator()(std::string_view key, uint64_t version) const {
  const uint64_t last = history->LastFull(ranges->RangeOf(key));
  return last != 0 && version::Micros(version) + margin_us < last;
}

// ---- store side
// --------------------------------------------------------------------------------------

// SCHED_IDLE alone did not keep repair from the foreground: on a 2-core machine at half
// saturation, each slice of a scan or hash a request thread has to preempt still costs it the
// wake-up (back-to-back repairs of identical replicas raised the p99 ~4x). A duty cycle bounds
// how much of the time a core is held by repair at all.
uint32_t RepairStore::EffectiveCpuPercent() const {
  if (load_ == nullptr) return cpu_percent_;
  return static_cast<uint32_t>(
      std::max<uint64_t>(1, ForegroundLoad::Scale(cpu_percent_, load_->max_busy())));
}

void RepairStore::PaceCpu(uint32_t units) const {
  if (cpu_percent_ >= 100) return;
  constexpr uint64_t kSliceNs = 2000000;
  thread_local uint64_t calls = 0, mark_ns = 0;
  calls += units;
  if (calls < 32) return;  // the clock is read once per 32 units of work (entries)
  calls = 0;
  const uint64_t cpu = ThreadCpuNs();
  if (mark_ns == 0 || cpu < mark_ns) {
    mark_ns = cpu;
    return;
  }
  const uint64_t used = cpu - mark_ns;
  if (used < kSliceNs) return;
  const uint64_t percent = EffectiveCpuPercent();
  std::this_thread::sleep_for(std::chrono::nanoseconds(used * (100 - percent) / percent));
  mark_ns = ThreadCpuNs();
}

storage::Status RepairStore::Continue(
    storage::Iterator* it, uint64_t range, std::string_view leaves,
    const std::function<bool(const proto::RepairEntry&)>& fn) const {
  const bool single = ranges_->single();
  const uint64_t now_ms = hlc_->WallUs() / 1000;
  for (; it->Valid(); it->Next()) {
    const std::string_view key = it->key();
    if (!leaves.empty() && !proto::RepairLeafSet(leaves, RepairLeafOf(key))) continue;
    if (!single && ranges_->RangeOf(key) != range) continue;
    proto::RepairEntry e;
    e.key = key;
    e.version = it->version();
    e.tombstone = it->tombstone();
    e.expires_ms = e.tombstone ? 0 : it->expires_ms();
    // An expired value is the tombstone of its version it has become: hashed and sent as one,
    // so a replica whose compaction already made it one does not differ from one that did not.
    if (storage::Expired(e.expires_ms, now_ms)) {
      e.tombstone = true;
      e.expires_ms = 0;
    }
    if (!e.tombstone) e.value = it->value();
    if (!fn(e)) return storage::Status::Ok();  // e stays current
    PaceCpu();
  }
  return it->status();
}

std::unique_ptr<storage::Iterator> RepairStore::Scan() const {
  return engine_->Scan(std::string_view(), std::nullopt, /*background=*/true);
}

storage::Status RepairStore::Walk(uint64_t range, std::string_view leaves, bool has_after,
                                  std::string_view after,
                                  const std::function<bool(const proto::RepairEntry&)>& fn) const {
  auto it =
      engine_->Scan(has_after ? after : std::string_view(), std::nullopt, /*background=*/true);
  if (has_after && it->Valid() && it->key() == after) it->Next();
  return Continue(it.get(), range, leaves, fn);
}

storage::Status RepairStore::BuildTree(uint64_t range, RepairTree* out) const {
  storage::Status st = Walk(range, {}, false, {}, [out](const proto::RepairEntry& e) {
    out->Add(e.key, e.version, e.tombstone);
    return true;
  });
  out->Finish();
  return st;
}

storage::Status RepairStore::CollectEntries(const proto::RepairEntriesRequest& q,
                                            std::string* out) const {
  std::string entries;
  uint32_t n = 0;
  bool more = false;
  auto add = [&](proto::RepairEntry e) {
    if (q.digest && !e.tombstone) e.digest = true;
    if (n > 0 && entries.size() + proto::RepairEntrySize(e) > q.max_bytes) {
      more = true;
      return false;
    }
    proto::EncodeRepairEntry(&entries, e);
    ++n;
    return true;
  };
  storage::Status st;
  if (q.by_keys) {
    const uint64_t now_ms = hlc_->WallUs() / 1000;
    for (std::string_view key : q.keys) {
      if (!ranges_->single() && ranges_->RangeOf(key) != q.range) continue;
      PaceCpu();
      storage::ReadResult r;
      st = engine_->Get(key, &r);
      if (!st.ok()) return st;
      if (r.kind == storage::ReadResult::kAbsent) continue;
      // An expired value goes as the tombstone of its version, as in Continue.
      const bool tomb =
          r.kind == storage::ReadResult::kTombstone || storage::Expired(r.expires_ms, now_ms);
      if (!add(proto::RepairEntry{key, r.version, tomb, tomb ? std::string_view() : r.value, false,
                                  tomb ? 0 : r.expires_ms})) {
        break;
      }
    }
  } else {
    st = Walk(q.range, q.leaves, q.has_after, q.after, add);
    if (!st.ok()) return st;
  }
  proto::EncodeRepairEntriesHead(out, more, n);
  out->append(entries);
  return storage::Status::Ok();
}

storage::Status RepairStore::Apply(const std::vector<proto::RepairEntry>& entries,
                                   uint32_t* applied, uint32_t* refused) {
  std::vector<storage::Engine::WriteOp> ops;
  ops.reserve(entries.size());
  *applied = *refused = 0;
  const uint64_t wall = hlc_->WallUs();
  for (const proto::RepairEntry& e : entries) {
    // As a replica write: a version too far ahead of this clock is neither stored nor observed.
    if (SkewRefusalMs(e.version, wall, max_skew_ms_) != 0) {
      ++*refused;
      continue;
    }
    hlc_->Observe(e.version);
    ops.push_back(
        storage::Engine::WriteOp{e.key, e.value, e.version, e.tombstone, 0, e.expires_ms});
  }
  if (c_ != nullptr) c_->refused.fetch_add(*refused, std::memory_order_relaxed);
  // In batches of at most kApplyBatch: one Engine::Write holds the store's write lock for its
  // whole batch, and the loops' own writes wait behind it.
  constexpr size_t kApplyBatch = 128;
  for (size_t i = 0; i < ops.size(); i += kApplyBatch) {
    const size_t n = std::min(kApplyBatch, ops.size() - i);
    storage::Status st;
    {
      NormalPriorityScope normal;
      st = engine_->Write(ops.data() + i, n);
    }
    if (!st.ok()) return st;
    *applied += static_cast<uint32_t>(n);
    PaceCpu(static_cast<uint32_t>(n));
  }
  return storage::Status::Ok();
}

// ---- serving side
// ------------------------------------------------------------------------------------

RepairServer::RepairServer(RepairStore* store) : store_(store), thread_([this] { Run(); }) {}

RepairServer::~RepairServer() {
  Stop();
}

void RepairServer::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RepairServer::Submit(PeerOp op, std::string body, Done done) {
  Enqueue(Job{op, std::move(body), std::move(done), nullptr});
}

void RepairServer::RunTask(std::function<PeerResponse()> task, Done done) {
  Enqueue(Job{PeerOp::kGet, {}, std::move(done), std::move(task)});
}

void RepairServer::Enqueue(Job job) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stop_) {
      jobs_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  PeerResponse r;
  r.error = "shutting down";
  job.done(std::move(r));
}

void RepairServer::Run() {
  LowerPriority();
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      if (stop_) {
        l.unlock();
        PeerResponse r;
        r.error = "shutting down";
        job.done(std::move(r));
        continue;
      }
    }
    job.done(job.task ? job.task() : Handle(job.op, job.body));
  }
}

std::shared_ptr<RepairTree> RepairServer::TreeFor(uint64_t range, uint64_t session,
                                                  storage::Status* st) {
  for (const Cached& c : cache_) {
    if (c.range == range && c.session == session) return c.tree;
  }
  auto tree = std::make_shared<RepairTree>();
  *st = store_->BuildTree(range, tree.get());
  if (!st->ok()) return nullptr;
  cache_.push_back(Cached{range, session, tree});
  if (cache_.size() > 4) cache_.pop_front();
  return tree;
}

PeerResponse RepairServer::Handle(PeerOp op, std::string_view body) {
  std::string error;
  RepairCounters* c = store_->counters();
  if (c != nullptr) {
    c->served.fetch_add(1, std::memory_order_relaxed);
    c->served_bytes.fetch_add(body.size(), std::memory_order_relaxed);
  }
  switch (op) {
    case PeerOp::kRepairTree: {
      proto::RepairTreeRequest q;
      if (!proto::DecodeRepairTreeRequest(body, &q, &error)) return Invalid(error);
      storage::Status st;
      std::shared_ptr<RepairTree> tree = TreeFor(q.range, q.session, &st);
      if (!tree) return Failed(st);
      proto::RepairData d;
      d.kind = proto::RepairData::kTree;
      d.keys = tree->keys();
      d.hashes.reserve(q.nodes.size() * proto::kRepairFanout);
      for (uint32_t n : q.nodes) {
        for (uint32_t k = 0; k < proto::kRepairFanout; ++k) {
          d.hashes.push_back(
              tree->node(static_cast<uint8_t>(q.level + 1), n * proto::kRepairFanout + k));
        }
      }
      std::string out;
      proto::EncodeRepairData(&out, d);
      return Data(std::move(out));
    }
    case PeerOp::kRepairEntries: {
      proto::RepairEntriesRequest q;
      if (!proto::DecodeRepairEntriesRequest(body, &q, &error)) return Invalid(error);
      q.max_bytes = std::clamp<uint32_t>(q.max_bytes, 4096, 4u << 20);
      std::string out;
      storage::Status st = store_->CollectEntries(q, &out);
      if (!st.ok()) return Failed(st);
      return Data(std::move(out));
    }
    case PeerOp::kRepairApply: {
      proto::RepairApplyRequest q;
      if (!proto::DecodeRepairApplyRequest(body, &q, &error)) return Invalid(error);
      for (const proto::RepairEntry& e : q.entries) {
        if (store_->ranges()->RangeOf(e.key) != q.range) return Invalid("entry outside the range");
      }
      proto::RepairData d;
      d.kind = proto::RepairData::kApplied;
      storage::Status st = store_->Apply(q.entries, &d.applied, &d.refused);
      if (!st.ok()) return Failed(st);
      std::string out;
      proto::EncodeRepairData(&out, d);
      return Data(std::move(out));
    }
    default:
      return Invalid("not a repair operation");
  }
}

// ---- driver
// ------------------------------------------------------------------------------------------

std::string RepairSummary::Json() const {
  if (id == 0) return "{\"state\":\"never\"}\n";
  char nums[640];
  snprintf(nums, sizeof nums,
           "\"ranges\":%" PRIu64 ",\"ranges_failed\":%" PRIu64 ",\"keys_compared\":%" PRIu64
           ",\"keys_differed\":%" PRIu64 ",\"entries_sent\":%" PRIu64
           ",\"entries_received\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
           ",\"bytes_received\":%" PRIu64 ",\"seconds\":%.3f",
           ranges, ranges_failed, keys_compared, keys_differed, entries_sent, entries_received,
           bytes_sent, bytes_received, seconds);
  std::string j = "{\"id\":" + std::to_string(id) + ",\"state\":" +
                  JsonString(running ? "running"
                             : ok    ? "done"
                                     : "failed") +
                  ",\"background\":" + (background ? "true" : "false") +
                  ",\"started_unix_ms\":" + std::to_string(started_unix_ms) + "," + nums;
  if (!error.empty()) j += ",\"error\":" + JsonString(error);
  return j + "}\n";
}

RepairDriver::RepairDriver(RepairStore* store, size_t self, RepairHistory* history,
                           RepairLink* link, const RepairDriverOptions& options)
    : store_(store), self_(self), history_(history), link_(link), opts_(options) {
  if (opts_.rate_bytes_per_s == 0) opts_.rate_bytes_per_s = 1;
}

RepairDriver::~RepairDriver() {
  Stop();
}

void RepairDriver::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (schedule_thread_.joinable()) schedule_thread_.join();
  if (run_thread_.joinable()) run_thread_.join();
}

void RepairDriver::StartBackground() {
  if (opts_.interval_s == 0) return;
  schedule_thread_ = std::thread([this] {
    std::mt19937_64 rng(std::random_device{}());
    const uint64_t interval_ms = opts_.interval_s * 1000;
    uint64_t wait_ms = interval_ms / 2 + rng() % (interval_ms + 1);  // 0.5 .. 1.5 interval
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      if (cv_.wait_for(l, std::chrono::milliseconds(wait_ms), [this] { return stop_; })) return;
      l.unlock();
      uint64_t running = 0;
      Start(true, &running);
      l.lock();
      wait_ms = interval_ms;
    }
  });
}

uint64_t RepairDriver::Start(bool background, uint64_t* running) {
  std::lock_guard<std::mutex> l(mu_);
  if (current_.running) {
    *running = current_.id;
    return 0;
  }
  if (stop_) return 0;
  if (run_thread_.joinable()) run_thread_.join();  // the last run has finished: reap it
  const uint64_t id = next_id_++;
  current_ = RepairSummary();
  current_.id = id;
  current_.running = true;
  current_.background = background;
  current_.started_unix_ms = UnixMs();
  run_thread_ = std::thread([this, id] { Run(id); });
  return id;
}

RepairSummary RepairDriver::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_;
}

bool RepairDriver::Finished(uint64_t id, RepairSummary* out) const {
  std::lock_guard<std::mutex> l(mu_);
  if (last_done_.id != id) return false;
  *out = last_done_;
  return true;
}

void RepairDriver::Publish(const RepairSummary& s) {
  std::lock_guard<std::mutex> l(mu_);
  current_ = s;
}

void RepairDriver::Run(uint64_t id) {
  LowerPriority();
  RepairSummary s = Current();
  RepairCounters* c = store_->counters();
  const uint64_t t0 = NowNs();
  pace_.Restart(t0, opts_.rate_bytes_per_s);
  std::string first_error;
  for (const RepairRange& range : store_->ranges()->RangesOf(self_)) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) {
        first_error = first_error.empty() ? "stopped" : first_error;
        break;
      }
    }
    std::string error;
    ++s.ranges;
    if (!RunRange(range, &s, &error)) {
      ++s.ranges_failed;
      if (first_error.empty()) first_error = error;
      LOG_WARN("repair %" PRIu64 ": range %016" PRIx64 " not repaired: %s", id, range.id,
               error.c_str());
    }
    s.seconds = static_cast<double>(NowNs() - t0) / 1e9;
    Publish(s);
  }
  s.running = false;
  s.ok = first_error.empty();
  s.error = first_error;
  s.seconds = static_cast<double>(NowNs() - t0) / 1e9;
  if (c != nullptr) {
    c->runs.fetch_add(1, std::memory_order_relaxed);
    if (!s.ok) c->runs_failed.fetch_add(1, std::memory_order_relaxed);
  }
  LOG_INFO("repair %" PRIu64 " %s: %" PRIu64 " ranges, %" PRIu64 " keys compared, %" PRIu64
           " differed, %" PRIu64 " entries sent, %" PRIu64 " received, %.3f s",
           id, s.ok ? "done" : "failed", s.ranges, s.keys_compared, s.keys_differed, s.entries_sent,
           s.entries_received, s.seconds);
  {
    std::lock_guard<std::mutex> l(mu_);
    current_ = s;
    last_done_ = s;
  }
  if (on_done_) on_done_(id);
}

bool RepairDriver::RunRange(const RepairRange& range, RepairSummary* s, std::string* error) {
  // The start of this range's repair, on this node's clock: what the GC rule compares with.
  const uint64_t start_us = store_->hlc()->WallUs();
  std::mt19937_64 rng(std::random_device{}() ^ start_us);
  bool all_ok = true;
  // Round 1 brings the union of every member's entries here (the local tree is rebuilt after an
  // exchange that brought anything, so the next peer is not sent what it already holds); round
  // 2, only when a peer after the first brought something, hands that to the peers met before.
  for (int round = 0; round < 2; ++round) {
    RepairTree tree;
    bool stale = true;
    const uint64_t session = rng();  // peers' cached trees are stale after a round
    bool late_news = false;
    size_t peers = 0;
    for (uint32_t peer : range.members) {
      if (peer == self_) continue;
      if (stale) {
        tree = RepairTree();
        storage::Status st = store_->BuildTree(range.id, &tree);
        if (!st.ok()) {
          *error = "local scan: " + st.message();
          return false;
        }
        if (round == 0 && peers == 0) {
          s->keys_compared += tree.keys();
          if (store_->counters()) store_->counters()->keys_compared.fetch_add(tree.keys());
        }
        stale = false;
      }
      bool received = false;
      std::string e;
      if (!Exchange(range, session, tree, peer, s, &received, &e)) {
        all_ok = false;
        if (error->empty()) *error = e;
      }
      stale = received;
      late_news = late_news || (received && peers > 0);
      ++peers;
    }
    if (!late_news) break;
  }
  if (store_->counters()) store_->counters()->ranges.fetch_add(1, std::memory_order_relaxed);
  if (!all_ok) return false;
  std::string e;
  if (!history_->Record(range.id, start_us, &e)) LOG_WARN("repair history: %s", e.c_str());
  return true;
}

void RepairDriver::Pace(uint64_t bytes) {
  // The byte rate, scaled down while the node's loops are busy with requests (the pages pass
  // through them).
  uint64_t rate = opts_.rate_bytes_per_s;
  if (const ForegroundLoad* load = store_->foreground(); load != nullptr) {
    rate = ForegroundLoad::Scale(rate, load->max_busy());
  }
  const uint64_t now = NowNs();
  pace_.SetRate(rate, now);
  pace_.Sent(bytes);
  if (pace_.due() > now) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::nanoseconds(pace_.due() - now), [this] { return stop_; });
  }
}

bool RepairDriver::Call(size_t node, PeerOp op, const std::string& body, std::string* answer,
                        RepairSummary* s, std::string* error) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      *error = "stopped";
      return false;
    }
  }
  answer->clear();
  const bool ok = link_->Call(node, op, body, answer, error);
  s->bytes_sent += body.size();
  s->bytes_received += answer->size();
  if (RepairCounters* c = store_->counters()) {
    c->bytes_sent.fetch_add(body.size(), std::memory_order_relaxed);
    c->bytes_received.fetch_add(answer->size(), std::memory_order_relaxed);
  }
  Pace(body.size() + answer->size());
  return ok;
}

bool RepairDriver::Exchange(const RepairRange& range, uint64_t session, const RepairTree& tree,
                            size_t peer, RepairSummary* s, bool* received, std::string* error) {
  RepairCounters* c = store_->counters();
  std::string body, answer, why;
  // Descend: the children of the nodes that differ, level by level.
  proto::RepairTreeRequest tq;
  tq.range = range.id;
  tq.session = session;
  tq.nodes = {0};
  // An empty local tree (a wiped replica) differs wherever the peer holds anything: all of the
  // peer's entries are wanted, so the descent (about 550 KB of hashes) is skipped.
  uint8_t first_level = 0;
  if (tree.keys() == 0) {
    tq.nodes.resize(proto::kRepairLeaves);
    for (uint32_t i = 0; i < proto::kRepairLeaves; ++i) tq.nodes[i] = i;
    first_level = proto::kRepairLeafLevel;
  }
  for (uint8_t level = first_level; level < proto::kRepairLeafLevel; ++level) {
    tq.level = level;
    body.clear();
    proto::EncodeRepairTreeRequest(&body, tq);
    if (!Call(peer, PeerOp::kRepairTree, body, &answer, s, &why)) {
      *error = "tree from " + std::to_string(peer) + ": " + why;
      return false;
    }
    proto::RepairData d;
    if (!proto::DecodeRepairData(answer, &d, &why) || d.kind != proto::RepairData::kTree ||
        d.hashes.size() != tq.nodes.size() * proto::kRepairFanout) {
      *error = "bad tree answer: " + why;
      return false;
    }
    std::vector<uint32_t> next;
    for (size_t i = 0; i < tq.nodes.size(); ++i) {
      for (uint32_t k = 0; k < proto::kRepairFanout; ++k) {
        const uint32_t child = tq.nodes[i] * proto::kRepairFanout + k;
        if (d.hashes[i * proto::kRepairFanout + k] != tree.node(level + 1, child)) {
          next.push_back(child);
        }
      }
    }
    if (next.empty()) return true;  // identical
    tq.nodes = std::move(next);
  }
  // tq.nodes: the leaves that differ. Walk both sides' entries of those leaves in key order.
  std::string leaves(proto::kRepairBitmapBytes, '\0');
  for (uint32_t leaf : tq.nodes) proto::SetRepairLeaf(&leaves, leaf);

  // This node's entries of those leaves, read into a buffer a page at a time.
  struct Local {
    std::string key, value;
    uint64_t version;
    bool tombstone;
    uint64_t expires_ms;
  };
  std::vector<Local> local;
  size_t li = 0;
  // One snapshot for the whole walk: entries stored here meanwhile (the peer's, applied below)
  // must not come back as this node's own.
  std::unique_ptr<storage::Iterator> local_it = store_->Scan();
  bool local_more = true;
  auto fill_local = [&]() -> bool {
    local.clear();
    li = 0;
    size_t bytes = 0;
    bool stopped_early = false;
    storage::Status st =
        store_->Continue(local_it.get(), range.id, leaves, [&](const proto::RepairEntry& e) {
          if (bytes >= opts_.page_bytes) {
            stopped_early = true;
            return false;
          }
          local.push_back(Local{std::string(e.key), std::string(e.value), e.version, e.tombstone,
                                e.expires_ms});
          bytes += proto::RepairEntrySize(e);
          return true;
        });
    if (!st.ok()) {
      *error = "local scan: " + st.message();
      return false;
    }
    local_more = stopped_early;
    return true;
  };
  // The peer's, a page at a time.
  proto::RepairData remote;
  std::string remote_body;
  size_t ri = 0;
  bool remote_more = true, remote_started = false;
  std::string remote_after;
  // With entries here, the peer's come as digests first (keys and versions: ~23 B an entry
  // instead of the value's size), and only the values this node lacks are fetched by key. A
  // wiped replica wants every value anyway: full entries at once.
  const bool digest = tree.keys() > 0;
  auto fill_remote = [&]() -> bool {
    proto::RepairEntriesRequest q;
    q.range = range.id;
    q.session = session;
    q.max_bytes = static_cast<uint32_t>(opts_.page_bytes);
    q.digest = digest;
    q.has_after = remote_started;
    q.after = remote_after;
    q.leaves = leaves;
    body.clear();
    proto::EncodeRepairEntriesRequest(&body, q);
    if (!Call(peer, PeerOp::kRepairEntries, body, &remote_body, s, &why)) {
      *error = "entries from " + std::to_string(peer) + ": " + why;
      return false;
    }
    remote = proto::RepairData();
    if (!proto::DecodeRepairData(remote_body, &remote, &why) ||
        remote.kind != proto::RepairData::kEntries) {
      *error = "bad entries answer: " + why;
      return false;
    }
    ri = 0;
    remote_started = true;
    remote_more = remote.more;
    if (!remote.entries.empty()) remote_after.assign(remote.entries.back().key);
    return true;
  };
  // Entries for here (applied in batches) and for the peer (pushed in APPLY pages).
  std::vector<Local> mine;
  size_t mine_bytes = 0;
  std::string push;
  uint32_t push_n = 0;
  auto flush_mine = [&]() -> bool {
    if (mine.empty()) return true;
    std::vector<proto::RepairEntry> es;
    for (const Local& l : mine)
      es.push_back({l.key, l.version, l.tombstone, l.value, false, l.expires_ms});
    uint32_t applied = 0, refused = 0;
    storage::Status st = store_->Apply(es, &applied, &refused);
    if (!st.ok()) {
      *error = "local write: " + st.message();
      return false;
    }
    mine.clear();
    mine_bytes = 0;
    return true;
  };
  auto flush_push = [&]() -> bool {
    if (push_n == 0) return true;
    std::string req;
    proto::EncodeRepairApplyHead(&req, range.id, session, push_n);
    req += push;
    push.clear();
    push_n = 0;
    if (!Call(peer, PeerOp::kRepairApply, req, &answer, s, &why)) {
      *error = "apply to " + std::to_string(peer) + ": " + why;
      return false;
    }
    proto::RepairData d;
    if (!proto::DecodeRepairData(answer, &d, &why) || d.kind != proto::RepairData::kApplied) {
      *error = "bad apply answer: " + why;
      return false;
    }
    return true;
  };
  auto keep = [&](const proto::RepairEntry& e) {
    mine.push_back(
        Local{std::string(e.key), std::string(e.value), e.version, e.tombstone, e.expires_ms});
    mine_bytes += proto::RepairEntrySize(e);
    ++s->entries_received;
    if (c) c->entries_received.fetch_add(1, std::memory_order_relaxed);
    *received = true;
  };
  // Keys whose value the peer holds newer (digest mode), fetched in batches, ascending.
  std::vector<std::string> want;
  size_t want_bytes = 0;
  auto flush_want = [&]() -> bool {
    size_t from = 0;
    while (from < want.size()) {
      proto::RepairEntriesRequest q;
      q.range = range.id;
      q.session = session;
      q.max_bytes = static_cast<uint32_t>(opts_.page_bytes);
      q.by_keys = true;
      for (size_t i = from; i < want.size(); ++i) q.keys.push_back(want[i]);
      body.clear();
      proto::EncodeRepairEntriesRequest(&body, q);
      std::string got;
      if (!Call(peer, PeerOp::kRepairEntries, body, &got, s, &why)) {
        *error = "values from " + std::to_string(peer) + ": " + why;
        return false;
      }
      proto::RepairData d;
      if (!proto::DecodeRepairData(got, &d, &why) || d.kind != proto::RepairData::kEntries ||
          (d.more && d.entries.empty())) {
        *error = "bad values answer: " + why;
        return false;
      }
      for (const proto::RepairEntry& e : d.entries) {
        if (e.digest) {
          *error = "values answer without values";
          return false;
        }
        keep(e);
      }
      if (!d.more) break;
      const std::string_view last = d.entries.back().key;
      while (from < want.size() && want[from] <= last) ++from;
      if (mine_bytes >= opts_.page_bytes && !flush_mine()) return false;
    }
    want.clear();
    want_bytes = 0;
    return flush_mine();
  };
  auto take_remote = [&](const proto::RepairEntry& e) {
    if (!e.digest) return keep(e);
    want.emplace_back(e.key);
    want_bytes += e.key.size();
  };
  auto give_local = [&](const Local& l) {
    proto::EncodeRepairEntry(&push, {l.key, l.version, l.tombstone, l.value, false, l.expires_ms});
    ++push_n;
    ++s->entries_sent;
    if (c) c->entries_sent.fetch_add(1, std::memory_order_relaxed);
  };
  if (!fill_local() || !fill_remote()) return false;
  for (;;) {
    if (li == local.size() && local_more && !fill_local()) return false;
    if (ri == remote.entries.size() && remote_more && !fill_remote()) return false;
    const bool have_l = li < local.size(), have_r = ri < remote.entries.size();
    if (!have_l && !have_r) break;
    int cmp;
    if (!have_l) {
      cmp = 1;
    } else if (!have_r) {
      cmp = -1;
    } else {
      const int k = std::string_view(local[li].key).compare(remote.entries[ri].key);
      cmp = k < 0 ? -1 : k > 0 ? 1 : 0;
    }
    if (cmp == 0 && local[li].version == remote.entries[ri].version) {
      ++li;
      ++ri;
      continue;
    }
    ++s->keys_differed;
    if (c) c->keys_differed.fetch_add(1, std::memory_order_relaxed);
    if (cmp < 0) {
      give_local(local[li++]);
    } else if (cmp > 0) {
      take_remote(remote.entries[ri++]);
    } else if (local[li].version > remote.entries[ri].version) {
      give_local(local[li++]);
      ++ri;
    } else {
      take_remote(remote.entries[ri++]);
      ++li;
    }
    if (mine_bytes >= opts_.page_bytes && !flush_mine()) return false;
    if (push.size() >= opts_.page_bytes && !flush_push()) return false;
    if ((want.size() >= 4096 || want_bytes >= (256u << 10)) && !flush_want()) return false;
  }
  return flush_want() && flush_mine() && flush_push();
}

}  // namespace kv::cluster
