// Anti-entropy repair (proto_spec/peer-protocol.md, section 12) and the tombstone GC rule that
// rests on it (section 13).
//
// Ranges: the keys whose replica set (the first `replication` nodes of Ring::Replicas) is the
// same set of nodes form one range, named by the ClusterFingerprint of its members' URLs. A node
// repairs each range it belongs to against the range's other members.
// Hash tree: per range, 65,536 leaves by the top 16 bits of XXH3-64(key), fan-out 16; a leaf is
// the sum (mod 2^64) of its entries' hashes H(key, version, tombstone), so one scan of the store
// builds it, tombstones included.
// Exchange (the driver, one repair at a time, on its own thread): fetch the peer's tree nodes level
// by level, descending only into the children that differ; for the leaves that differ, walk the
// peer's entries (pages) and this node's in key order side by side, store the peer's newer ones
// here and push this node's newer ones to the peer, each with its own version (last write wins;
// never a new version). Two rounds over the peers when the first brought anything here, so every
// member ends up with the union of what each held when it was scanned.
// Serving (RepairServer): a peer's REPAIR_* requests run on one low-priority worker thread, never
// on a loop; their answers are handed back to the loop that received them.
// GC: RepairHistory keeps, per range, when the last repair that completed against every member
// started; TombstoneGcRule lets compaction purge a tombstone only once such a repair started more
// than the margin (max clock skew + request timeout) after the tombstone's version time.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cluster/foreground_load.h"
#include "cluster/hlc.h"
#include "cluster/peer.h"
#include "cluster/ring.h"
#include "common/pacer.h"
#include "proto/repair.h"
#include "storage/engine.h"

namespace kv::cluster {

// ---- the hash tree -----------------------------------------------------------------------------
uint64_t RepairKeyHash(std::string_view key);  // XXH3-64, seed 0
inline uint32_t RepairLeafOf(std::string_view key) {
  return static_cast<uint32_t>(RepairKeyHash(key) >> 48);
}
// XXH3-64 of the key seeded with the version; a tombstone's is hashed once more (seed 1) so that
// a value and a tombstone of the same version differ.
uint64_t RepairEntryHash(std::string_view key, uint64_t version, bool tombstone);

class RepairTree {
 public:
  RepairTree();
  void Add(std::string_view key, uint64_t version, bool tombstone);
  // Computes the levels above the leaves (each node the sum of its 16 children). After the Adds.
  void Finish();
  uint64_t node(uint8_t level, uint32_t index) const { return levels_[level][index]; }
  uint64_t keys() const { return keys_; }

 private:
  std::vector<uint64_t> levels_[proto::kRepairLeafLevel + 1];
  uint64_t keys_ = 0;
};

// ---- ranges ------------------------------------------------------------------------------------
struct RepairRange {
  uint64_t id = 0;
  std::vector<uint32_t> members;  // node indexes, ascending
};

// Thread-safe; the ring must outlive it.
class RangeMap {
 public:
  RangeMap(const Ring* ring, size_t replication);
  size_t replication() const { return n_; }
  // The range id of a key.
  uint64_t RangeOf(std::string_view key) const;
  // Every possible range node belongs to (every n-subset of the nodes that holds it).
  std::vector<RepairRange> RangesOf(size_t node) const;
  uint64_t IdOf(const std::vector<uint32_t>& members) const;
  bool single() const { return n_ == ring_->size(); }

 private:
  const Ring* ring_;
  size_t n_;
  uint64_t all_id_ = 0;  // the one range when n == ring size
  mutable std::mutex mu_;
  mutable std::unordered_map<uint64_t, uint64_t> by_mask_;  // member bitmask -> id (<= 64 nodes)
};

// ---- repair history (<data>/repair-history) --------------------------------------------------
// Per range: the start (unix us) of the last repair that completed against every member. Text:
// "kv-repair-history 1\n" then one "<range id, 16 hex digits> <start us>\n" per range. Rewritten
// whole (temp file, fsync, rename) on each record. Thread-safe.
class RepairHistory {
 public:
  explicit RepairHistory(std::string path) : path_(std::move(path)) {}
  // A missing file is an empty history; a damaged one is an error (and stays empty: no
  // tombstone is purged on its account).
  bool Load(std::string* error);
  bool Record(uint64_t range, uint64_t start_us, std::string* error);
  uint64_t LastFull(uint64_t range) const;  // 0: never

  static std::string Encode(const std::map<uint64_t, uint64_t>& entries);
  static bool Decode(std::string_view text, std::map<uint64_t, uint64_t>* entries);

 private:
  std::string path_;
  mutable std::mutex mu_;
  std::map<uint64_t, uint64_t> entries_;
};

// The compaction predicate (storage::Options::tombstone_gc_filter): a tombstone whose age already
// passed the grace may go only if a full repair of its range started more than margin_us after
// its version time.
struct TombstoneGcRule {
  const RangeMap* ranges = nullptr;
  const RepairHistory* history = nullptr;
  uint64_t margin_us = 0;
  bool operator()(std::string_view key, uint64_t version) const;
};

// ---- the store side: trees, entries, applying (any thread)
// ---------------------------------------
struct RepairCounters {
  std::atomic<uint64_t> runs{0}, runs_failed{0}, ranges{0}, keys_compared{0}, keys_differed{0},
      entries_sent{0}, entries_received{0}, bytes_sent{0}, bytes_received{0}, served{0},
      served_bytes{0}, refused{0};
};

class RepairStore {
 public:
  RepairStore(storage::Engine* engine, Hlc* hlc, const RangeMap* ranges, uint64_t max_skew_ms,
              RepairCounters* counters)
      : engine_(engine), hlc_(hlc), ranges_(ranges), max_skew_ms_(max_skew_ms), c_(counters) {}
  // Bounds the CPU time the repair work of each calling thread (scans, hashing, reads by key,
  // writes) takes to `percent` of one core: after every ~2 ms of its CPU time the thread sleeps
  // in proportion. 100: no bound. Set before use.
  void set_cpu_percent(uint32_t percent) { cpu_percent_ = percent < 1 ? 1 : percent; }
  // The node's loops' busy levels: while the busiest is busy with requests, that bound scales
  // down by ForegroundLoad::Share (at least 1%). Set before use; nullptr: fixed.
  void set_foreground(const ForegroundLoad* load) { load_ = load; }
  const ForegroundLoad* foreground() const { return load_; }
  storage::Status BuildTree(uint64_t range, RepairTree* out) const;
  // The entries of the range in the set leaves, after `after` (when has_after), in key order,
  // until about max_bytes: appends a REPAIR_DATA entries body to *out.
  storage::Status CollectEntries(const proto::RepairEntriesRequest& q, std::string* out) const;
  // Stores entries with their versions (last write wins); one too far ahead of this node's clock
  // (max skew) is refused, as a write would be.
  storage::Status Apply(const std::vector<proto::RepairEntry>& entries, uint32_t* applied,
                        uint32_t* refused);
  // Calls fn for each entry of the range in the set leaves (key order) after `after`, until fn
  // returns false.
  storage::Status Walk(uint64_t range, std::string_view leaves, bool has_after,
                       std::string_view after,
                       const std::function<bool(const proto::RepairEntry&)>& fn) const;
  // The same over an iterator the caller keeps (one snapshot for a whole walk), from its current
  // entry on; an entry fn refuses stays current.
  storage::Status Continue(storage::Iterator* it, uint64_t range, std::string_view leaves,
                           const std::function<bool(const proto::RepairEntry&)>& fn) const;
  std::unique_ptr<storage::Iterator> Scan() const;  // the whole store, from its first key
  const RangeMap* ranges() const { return ranges_; }
  RepairCounters* counters() const { return c_; }
  Hlc* hlc() const { return hlc_; }

 private:
  storage::Engine* engine_;
  Hlc* hlc_;
  const RangeMap* ranges_;
  uint64_t max_skew_ms_;
  RepairCounters* c_;
  uint32_t cpu_percent_ = 100;
  const ForegroundLoad* load_ = nullptr;
  uint32_t EffectiveCpuPercent() const;
  void PaceCpu(uint32_t units = 1) const;  // units: entries of work done since the last call
};

// ---- the serving side
// ------------------------------------------------------------------------------ Answers peers'
// REPAIR_* requests on one worker thread (nice 10), one at a time, so no loop ever scans the store.
// Keeps the trees it built for the last few (session, range) pairs, so a descent costs one scan.
class RepairServer {
 public:
  explicit RepairServer(RepairStore* store);
  ~RepairServer();
  void Stop();  // answers what is queued with an error, then joins
  using Done = std::function<void(PeerResponse&&)>;
  // done runs on the worker thread (or at once when stopped).
  void Submit(PeerOp op, std::string body, Done done);
  // Runs task on the worker thread (e.g. a forced compaction), then done with its answer.
  void RunTask(std::function<PeerResponse()> task, Done done);
  // Runs one request on the calling thread (tests, and the worker).
  PeerResponse Handle(PeerOp op, std::string_view body);

 private:
  struct Job {
    PeerOp op;
    std::string body;
    Done done;
    std::function<PeerResponse()> task;  // set: run it instead of a request
  };
  void Enqueue(Job job);
  std::shared_ptr<RepairTree> TreeFor(uint64_t range, uint64_t session, storage::Status* st);
  void Run();

  RepairStore* store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  struct Cached {
    uint64_t range, session;
    std::shared_ptr<RepairTree> tree;
  };
  std::deque<Cached> cache_;  // worker thread only; newest last
  std::thread thread_;
};

// ---- the driver
// -------------------------------------------------------------------------------------- How the
// driver reaches a peer: one request, answered (true, *answer the REPAIR_DATA body) or failed
// (false, *error). Blocking; called from the driver's thread only.
class RepairLink {
 public:
  virtual bool Call(size_t node, PeerOp op, const std::string& body, std::string* answer,
                    std::string* error) = 0;

 protected:
  ~RepairLink() = default;
};

struct RepairSummary {
  uint64_t id = 0;  // 0: no repair ran yet
  bool running = false;
  bool ok = false;
  bool background = false;
  std::string error;
  uint64_t started_unix_ms = 0;
  uint64_t ranges = 0, ranges_failed = 0, keys_compared = 0, keys_differed = 0, entries_sent = 0,
           entries_received = 0, bytes_sent = 0, bytes_received = 0;
  double seconds = 0;
  std::string Json() const;
};

struct RepairDriverOptions {
  uint64_t rate_bytes_per_s = 32u << 20;  // request + answer bytes on the wire
  uint64_t page_bytes = 1u << 20;         // entries per ENTRIES answer / APPLY request
  uint64_t interval_s = 0;                // background repairs; 0: never
};

class RepairDriver {
 public:
  RepairDriver(RepairStore* store, size_t self, RepairHistory* history, RepairLink* link,
               const RepairDriverOptions& options);
  ~RepairDriver();
  // Called on the driver's thread when a repair ends (before Start may run another). Set first.
  void set_on_done(std::function<void(uint64_t id)> fn) { on_done_ = std::move(fn); }
  // Starts the background schedule (interval_s > 0): the first run after a random 0.5..1.5
  // interval, then every interval.
  void StartBackground();
  // Starts a repair unless one runs: returns its id; 0 when one was running (*running its id).
  uint64_t Start(bool background, uint64_t* running);
  RepairSummary Current() const;  // the running repair, else the last
  // The summary of repair `id` once it finished (true), else false (running, or not the last
  // to finish: repairs run one at a time, and a waiter is told as soon as its own finished).
  bool Finished(uint64_t id, RepairSummary* out) const;
  void Stop();

 private:
  void Run(uint64_t id);
  bool RunRange(const RepairRange& range, RepairSummary* s, std::string* error);
  bool Exchange(const RepairRange& range, uint64_t session, const RepairTree& tree, size_t peer,
                RepairSummary* s, bool* received, std::string* error);
  bool Call(size_t node, PeerOp op, const std::string& body, std::string* answer, RepairSummary* s,
            std::string* error);
  void Pace(uint64_t bytes);
  void Publish(const RepairSummary& s);

  RepairStore* store_;
  size_t self_;
  RepairHistory* history_;
  RepairLink* link_;
  RepairDriverOptions opts_;
  std::function<void(uint64_t)> on_done_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  RepairSummary current_;    // guarded by mu_
  RepairSummary last_done_;  // the last repair that finished; guarded by mu_
  uint64_t next_id_ = 1;
  bool stop_ = false;
  std::thread run_thread_, schedule_thread_;
  // Pacing (driver thread only).
  Pacer pace_{1000000000};  // bytes on the wire, on the nanosecond clock
};

}  // namespace kv::cluster
