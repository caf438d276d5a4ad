// This node's replica: executes replica operations (GET, PUT, REMOVE, RANGE pages) on the local
// engine for every way they arrive (the coordinator's own replica, HTTP peer requests, binary peer
// frames), so all of them store, batch, observe versions and map errors identically. One per loop
// thread; every call and every answer on that thread, except where GroupCommitter says otherwise.
//
// - Reads are answered at once, from what is committed (a write queued in the same iteration and
//   not yet answered may not be seen; an answered one always is).
// - A write whose version is more than the max clock skew ahead of the HLC's WallUs() is refused
//   at once (kError, clock_skew; cluster/clock_skew.h): nothing is written or observed, so neither
//   a forged version nor a peer with a wrong clock can pin a key or drag this node's clock.
// - Writes observe their version in the HLC (a peer's clock may run ahead), then queue; Commit(),
//   which the loop calls once per iteration before it polls, writes every queued write with one
//   Engine::Write (one log write(2)) and answers them in order. A value over kMaxBatchedValue is
//   written at once instead (it would only delay the others).
// - With a GroupCommitter (--fsync always), Commit() does not wait for the disk: the committer's
//   thread runs the fdatasync that covers the batch (one for every loop's batches meanwhile)
//   and wakes the loop, whose DeliverSynced() answers the batch. The loop never waits on the
//   disk. A batch leaves mid-iteration once it has kSyncBatch writes, so its sync starts before
//   the iteration ends. Without a committer, an engine opened with kAlways syncs inside Commit().
// - A HINTS request (hinted handoff's replay) is its records, each executed as the PUT or
//   REMOVE it stands for, all in the same Engine::Write, answered once (kStored, version = the
//   number of records). All or nothing: every record is parsed and its version checked before
//   any is observed or queued, so a malformed record (kError, invalid) or one too far ahead
//   (clock_skew) fails the whole request and nothing of it is written.
// - Errors: kError with the engine's message; no_space when the disk is full (HTTP 507).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster/hlc.h"
#include "cluster/peer.h"
#include "cluster/range_merge.h"
#include "storage/engine.h"

namespace kv::cluster {

class GroupCommitter;

class LocalReplica final : public Replica {
 public:
  static constexpr size_t kMaxBatchedValue = 64 * 1024;
  static constexpr size_t kSyncBatch = 32;  // with a committer: see Execute

  // committer: nullptr unless writes must reach the disk before they are answered. wake: called
  // from the committer's thread when a batch is durable (the loop then calls DeliverSynced).
  LocalReplica(storage::Engine* engine, Hlc* hlc, GroupCommitter* committer = nullptr,
               std::function<void()> wake = nullptr);
  ~LocalReplica();

  // Writes more than max_ms ahead of the HLC's WallUs() are refused (0: none is; the default is
  // kDefaultMaxClockSkewMs); each refusal adds 1 to *refusals when that is not null (shared by
  // every loop's replica, for /metrics). Before the first Execute.
  void set_max_clock_skew(uint64_t max_ms, std::atomic<uint64_t>* refusals) {
    max_skew_ms_ = max_ms;
    skew_refusals_ = refusals;
  }

  // The REPAIR_* operations are handed to this (the node runs them off the loop and answers
  // through the waiter on this loop later); unset, they fail.
  using RepairHandler = std::function<void(const PeerRequest&, PeerWaiter*, uint64_t cookie)>;
  void set_repair_handler(RepairHandler h) { repair_ = std::move(h); }

  void Execute(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie) override;
  // Writes what is queued and answers it (or hands it to the committer). Answers may queue more
  // writes: returns true if it committed anything, so the caller repeats until false.
  bool Commit();
  // Answers the batches the committer made durable since the last call. Loop thread: from the
  // wake-up, and before every poll (a sync that ended while the loop was busy is answered at
  // the iteration's end, not after the next poll's reads).
  void DeliverSynced();
  // Waits until the committer has handed back every batch and answers them (shutdown: the
  // committer must not hand a batch to a destroyed replica).
  void Drain();
  // Writes queued, or written and waiting for their fdatasync.
  size_t pending() const { return count_ + waiting_sync_; }
  storage::Engine* engine() const { return engine_; }

  // The answer to a kRange request: one page (common/range_page.h) of the entries in
  // [req.key, req.end), tombstones included, read from one engine snapshot; kError for a
  // request out of the limits or a read error. Answered at once, on the caller's thread. A
  // value expired by now_ms (Unix ms) is in the page as the tombstone of its version.
  static PeerResponse ReadPage(storage::Engine* engine, const PeerRequest& req, uint64_t now_ms);
  // The same entries as a merge source read in place (no pages): a cluster-wide range's own
  // node. Holds one engine snapshot until destroyed.
  std::unique_ptr<RangeMerge::Source> RangeSource(std::string_view start,
                                                  std::optional<std::string_view> end) const;
  // The answer to one write of a batch whose Engine::Write returned st.
  static PeerResponse StoredResponse(const storage::Status& st, const storage::Engine::WriteOp& op);

 private:
  friend class GroupCommitter;
  struct Item {
    PeerWaiter* waiter = nullptr;  // nullptr: a HINTS record that a later item answers for
    uint64_t cookie = 0;
    uint32_t records = 0;  // != 0: answers a HINTS request of that many records, queued last
    std::string key, value;
    uint64_t version = 0;
    bool tombstone = false;
    uint64_t expires_ms = 0;
  };
  // A written batch waiting for its fdatasync.
  struct Batch {
    std::vector<Item> items;
    std::vector<storage::Engine::WriteOp> ops;
    storage::Status status;  // of the write, then of the sync
    uint64_t synced_ns = 0;  // steady clock: when its fdatasync returned
  };
  void Answer(Batch* b);
  void Refuse(uint64_t ahead_ms, PeerWaiter* waiter, uint64_t cookie);
  // Queues one write (Commit writes it).
  void Queue(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie, uint32_t records);
  void ExecuteHints(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie);
  static PeerResponse AnswerOf(const storage::Status& st, const storage::Engine::WriteOp& op,
                               const Item& w);
  // From the committer's thread: every batch of `done` is durable (or failed with its status);
  // one lock and one wake-up for all of them.
  void Synced(std::vector<std::unique_ptr<Batch>>* done);

  storage::Engine* engine_;
  Hlc* hlc_;
  uint64_t max_skew_ms_;
  std::atomic<uint64_t>* skew_refusals_ = nullptr;
  GroupCommitter* committer_;
  std::function<void()> wake_;
  RepairHandler repair_;
  std::vector<Item> items_;         // the first count_ are queued
  std::vector<PeerRequest> hints_;  // ExecuteHints' records (views into the request)
  size_t count_ = 0;
  std::vector<Item> answering_;
  std::vector<storage::Engine::WriteOp> ops_;
  size_t waiting_sync_ = 0;  // writes handed to the committer and not delivered yet
  bool committing_ = false;
  std::mutex synced_mu_;                 // guards synced_ (committer thread -> loop thread)
  std::atomic<bool> has_synced_{false};  // set with synced_: something to deliver
  std::condition_variable synced_cv_;
  std::vector<std::unique_ptr<Batch>> synced_;
};

// The one thread that runs fdatasync for --fsync always: loops hand it written batches; it takes
// every batch handed over so far and syncs the log up to their end with one fdatasync (group
// commit), so the batches handed over while a sync runs share the next one (one thread: the log
// runs one fdatasync at a time, storage::LogWriter::SyncTo says why). Batches go back to their
// LocalReplica in the order they were handed over, one hand-over and one wake-up per loop for
// all a sync made durable. Stop() (or the destructor) finishes the batches handed so far.
// Thread-safe.
class GroupCommitter {
 public:
  explicit GroupCommitter(storage::Engine* engine);
  ~GroupCommitter();
  void Stop();

  // What the group commit did so far (for /metrics; any thread, each figure read on its own).
  struct Counters {
    uint64_t syncs = 0;     // fdatasync rounds (one covers every batch taken for it)
    uint64_t writes = 0;    // writes those rounds made durable: writes / syncs is the batch size
    uint64_t sync_ns = 0;   // time spent in the rounds' fdatasync
    uint64_t queue_ns = 0;  // per write: from its hand-over to the start of its round's sync
    uint64_t wake_ns = 0;   // per write: from its sync's end to its answer on the loop
  };
  Counters counters() const;

 private:
  friend class LocalReplica;
  struct Job {
    LocalReplica* replica;
    std::unique_ptr<LocalReplica::Batch> batch;
    storage::SyncToken token;
    uint64_t handed_ns = 0;  // steady clock
  };
  void Submit(Job job);
  void Run();

  storage::Engine* engine_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Job> jobs_;  // handed over, not taken by a round yet
  bool stop_ = false;
  std::atomic<uint64_t> syncs_{0}, writes_{0}, sync_ns_{0}, queue_ns_{0}, wake_ns_{0};
  std::thread thread_;  // last: started once everything above is constructed
};

}  // namespace kv::cluster
