// Coordinates one client request over its replicas (itself through the local engine, the others
// through PeerTransports), feeds every answer to a lock-free Accumulator and completes exactly
// once, as soon as the outcome is decided. Writes go to all `from` replicas at once. A GET, by
// default (ReadFanout::kHedged), asks `ack` of them (itself first when it is one), one more for
// each that fails, and all the rest once the first asked have not all answered within the hedge
// delay (the p99 of recent remote answer times, see hedge.h). The peers it asks first follow the
// key's ring order, except that a peer clearly slower than a later replica of the key (its recent
// answers kSlowPeerFactor times and kSlowPeerGapUs slower on average) goes after it: a slow but
// answering node does not hold every GET it is asked first for until the hedge time. Every
// kSlowPeerProbeEvery-th such GET still asks it first, so that its average follows it (also
// when no write reaches it). Each
// request to a peer times out at twice that peer's slowest recent answer (peer_health.h), within
// the request's own deadline.
// Peer health: only slow failures (timeouts, stalled connections) count towards a peer's circuit
// breaker; a refused connection is a fast failure that costs nothing and says the peer is down,
// so the next request tries it again and a restarted peer is used at once. While a peer's breaker
// is not closed, every kProbeIntervalMs this loop pings it (PeerTransport::Ping); any answer
// (a pong or a replica answer) closes the breaker, so a healed, resumed or restarted peer is back
// within about one interval plus a round trip.
// Clock skew: a peer that refuses a write's version as too far ahead of its clock (clock_skew)
// answered: that replica failed for this request (the others may still meet `ack`), but the
// answer counts for the peer's health like any other, and is counted per peer and logged (at
// most once per kSkewLogIntervalMs per peer) as this node's clock being ahead.
// Read repair (CoordinatorOptions::read_repair): when the answers a GET gathered by its decision
// disagree, the replicas that answered an older version or nothing get the newest (a PUT, or a
// REMOVE for a tombstone, carrying the newest version; last-write-wins makes a race with a newer
// write harmless) before the client is answered: the client's answer waits for those writes
// (blocking; each is bounded by the request's deadline like any replica request; a failed one
// is counted and the client still gets the newest). Answers that arrive after the decision are
// compared with the newest known and repaired in the background, at most kMaxBackgroundRepairs
// writes in flight per loop (the excess is counted as skipped). Agreeing answers cost a version
// compare per answer, nothing else.
// One Coordinator per loop thread; every call and callback happens on that thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/accumulator.h"
#include "cluster/hedge.h"
#include "cluster/hints.h"
#include "cluster/hlc.h"
#include "cluster/peer.h"
#include "cluster/peer_health.h"
#include "cluster/ring.h"

namespace kv::storage {
class Engine;
}

namespace kv::cluster {

class GroupCommitter;

struct Outcome {
  enum Kind : uint8_t {
    kValue,        // GET: newest answer is a value
    kNotFound,     // GET: newest answer is a tombstone, or nobody has the key
    kStored,       // PUT/DELETE: ack replicas stored it
    kUnavailable,  // ack answers can no longer be reached -> 504
    kNoSpace,      // this node's disk is full and that decided the failure -> 507
  } kind = kUnavailable;
  uint64_t version = 0;
  std::string value;
};

// Completion without allocation: a function pointer plus two words of caller context.
struct Completion {
  void (*fn)(void* ctx, uint64_t ctx2, Outcome&& outcome) = nullptr;
  void* ctx = nullptr;
  uint64_t ctx2 = 0;
};

// Cluster-wide shared state (one per process): topology, clock, engine, breakers.
struct ClusterState {
  ClusterState(std::vector<std::string> urls, size_t self, storage::Engine* engine);
  Ring ring;
  size_t self_index;
  Hlc hlc;
  storage::Engine* engine;
  GroupCommitter* committer = nullptr;                                // set with --fsync always
  std::vector<std::unique_ptr<CircuitBreaker>> breakers;              // per node (self's unused)
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> peer_failures;  // per node, for /metrics
  // Per node: the replica request timeout a loop last computed for it (PeerTimeout), in us; 0
  // until a Coordinator exists. For /v0/status and /metrics.
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> peer_timeout_us;
  // --max-clock-skew-ms: every loop's LocalReplica refuses writes further ahead of its clock.
  uint64_t max_clock_skew_ms;
  std::atomic<uint64_t> replica_skew_refusals{0};  // writes its LocalReplicas refused for skew
  // Per node: this node's writes that node refused for clock skew, and the skew (ms) the last
  // refusal named; for /v0/status and /metrics. Also when the coordinator last logged it.
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> peer_skew_refusals;
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> peer_last_skew_ms;
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> peer_skew_logged_us;
  std::atomic<uint64_t> get_hedges{0};   // GETs that asked the rest after the hedge delay
  std::atomic<uint64_t> get_retries{0};  // replicas asked by a GET in place of a failed one
  // Read repair (see Coordinator): repair writes sent while the client waited, and after it was
  // answered; repair writes that failed; background repairs skipped past the in-flight bound.
  std::atomic<uint64_t> read_repairs_blocking{0};
  std::atomic<uint64_t> read_repairs_background{0};
  std::atomic<uint64_t> read_repair_failures{0};
  std::atomic<uint64_t> read_repairs_skipped{0};

  // Replica requests sent to a node, and GETs that passed a node over as clearly slower (see
  // Coordinator), for /metrics: the sums of one row per Coordinator, so no two loop threads
  // write the same cache line on every request.
  uint64_t PeerRequests(size_t node) const { return SumOfRows(node); }
  uint64_t SlowPeerPasses(size_t node) const { return SumOfRows(ring.size() + node); }
  // A zeroed row of 2 * ring.size() counters (requests per node, then passes per node), written
  // by one thread only; lives as long as this.
  std::atomic<uint64_t>* AddPeerRequestRow();

 private:
  uint64_t SumOfRows(size_t column) const;
  mutable std::mutex rows_mu_;
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> rows_;
};

// kHedged: a GET asks `ack` replicas first (see above); kAll: every request asks all `from`.
enum class ReadFanout : uint8_t { kHedged, kAll };

struct CoordinatorOptions {
  uint64_t request_timeout_ms = 1000;
  // Floor of each peer's replica request timeout, which is otherwise twice that peer's slowest
  // recent answer (peer_health.h); at or above request_timeout_ms every replica request gets
  // the whole request timeout.
  uint64_t peer_timeout_min_ms = 200;
  ReadFanout read_fanout = ReadFanout::kHedged;
  uint64_t initial_hedge_us = 10000;  // hedge delay until the first answer times are measured
  bool read_repair = true;            // GETs whose answers disagree repair the stale replicas
  // Hinted handoff (hints.h): writes a peer did not acknowledge are kept there and replayed;
  // nullptr: off. loop_index of loops picks the hint files found at startup this loop replays.
  HintShared* hints = nullptr;
  int loop_index = 0;
  int loops = 1;
};

// What a Coordinator needs from its loop: two clocks and one timer.
class CoordinatorEnv {
 public:
  virtual uint64_t NowMs() = 0;  // the transports' deadline clock (uv_now)
  // A steady clock for answer times and the circuit breakers (CLOCK_MONOTONIC, which /v0/status
  // also reads the breakers' state with).
  virtual uint64_t NowUs() = 0;
  // (Re)arms the one timer to fire in delay_ms. When it has fired, the owner calls
  // Coordinator::OnTimer() once the loop has also run that iteration's I/O callbacks: answers
  // already received are counted before a GET is found late.
  virtual void ArmTimer(uint64_t delay_ms) = 0;
  // How busy this loop is (ForegroundLoad): background work on it (hint replay) slows down in
  // proportion. 0 where nothing measures it (tests).
  virtual uint32_t BusyPermille() { return 0; }

 protected:
  ~CoordinatorEnv() = default;
};

class Coordinator {
 public:
  static constexpr uint64_t kSlowPeerFactor = 4;
  static constexpr uint64_t kSlowPeerGapUs = 2000;
  // Under 1% of the GETs passing it over, so that the probes' slow answers do not set the hedge
  // delay (the p99 of answer times) for every GET.
  static constexpr uint64_t kSlowPeerProbeEvery = 128;
  static constexpr uint64_t kProbeIntervalMs = 100;
  static constexpr uint64_t kSkewLogIntervalMs = 60000;
  // Background read repair writes in flight per loop at most; more are skipped (and counted).
  static constexpr size_t kMaxBackgroundRepairs = 64;
  // transports[i] talks to node i (nullptr for self); local is this node's replica. env and
  // local outlive the Coordinator.
  Coordinator(ClusterState* state, Replica* local,
              std::vector<std::unique_ptr<PeerTransport>> transports,
              const CoordinatorOptions& options, CoordinatorEnv* env);
  ~Coordinator();

  // 1 <= ack <= from <= ring size (validated by the caller). `done` runs exactly once, maybe
  // before Execute returns. expires_ms: a kPut's value expires then (Unix ms), 0: never.
  void Execute(PeerOp op, std::string_view key, std::string_view value, int ack, int from,
               Completion done, uint64_t expires_ms = 0);
  size_t pending() const { return pending_; }
  // Pings every peer once, when the loop next runs its timer: a node that (re)starts says so to
  // its peers (over binary peers the ping's handshake closes their breaker for this node at
  // once; see BinaryServerContext::on_peer_hello).
  void Announce();
  // Hands every peer's queued requests to its socket (PeerTransport::Flush).
  void FlushPeers();
  // The timer armed through CoordinatorEnv::ArmTimer fired.
  void OnTimer();
  // Pings sent to peers whose breaker was not closed (for tests).
  uint64_t pings_sent() const { return pings_sent_; }
  uint64_t hedge_delay_us() const { return hedge_.delay_us(); }
  // Background read repair writes in flight (for tests).
  size_t background_repairs() const { return background_repairs_; }
  // Fails what is still pending (transports answer kError) and drops the hedge queue.
  void Close();
  PeerTransport* transport(size_t node) { return transports_[node].get(); }
  // node showed it is up (its binary handshake reached this loop): replay its hints now.
  void OnPeerUp(size_t node);

 private:
  struct Request;
  static Request* RequestOf(uint64_t cookie);
  // The answer of every replica request (peers through transports, and this node's own): a
  // client request's (Ask) and a read repair write's (Repair); and the answers to pings.
  void OnAnswer(uint64_t cookie, PeerResponse&& r);
  void OnPong(uint64_t node, PeerResponse&& r);
  // The answer to a hint replay (HintLog's cookie).
  void OnHintAnswer(uint64_t cookie, PeerResponse&& r);
  // now_us: NowUs() at the call, also the breakers' clock (in ms).
  void Ask(Request* r, int replica, const PeerRequest& preq, uint64_t now_us);
  void AskNext(Request* r, uint64_t now_us);
  // (Re)arms the loop's one timer for the earliest of the hedge queue's head and the next probe.
  void ArmTimer(uint64_t now_us);
  // A peer's breaker is not closed: make sure this loop pings it (see above).
  void StartProbing(uint64_t now_us);
  // Pings every peer whose breaker is not closed and has no ping of this loop out; stops when
  // all are closed.
  void Probe(uint64_t now_us);
  // A peer refused a write for clock skew: counted, logged now and then.
  void RecordSkewRefusal(uint32_t node, const PeerResponse& resp, uint64_t now_us);
  // Reorders the peers a hedged GET asks first (slots [begin, first) of nodes; later slots are
  // the spares) so that none of them is clearly slower than a spare: the fastest spare takes
  // the slow one's slot, and the slow one goes last.
  void PreferFasterPeers(uint32_t* nodes, int begin, int first, int from);
  // When a replica request to node, sent now_us, times out: its adaptive timeout plus the
  // value's transfer time, at most request_deadline_ms.
  uint64_t PeerDeadlineMs(uint64_t request_deadline_ms, uint32_t node, size_t value_bytes,
                          uint64_t now_us);
  // A GET succeeded: answers the client with the newest answer, after the blocking read repair
  // of the replicas that answered an older version when read repair is on.
  void FinishRead(Request* r);
  // Answers the client of a GET with slot r->reply of its answers.
  void Reply(Request* r);
  // A GET's answer of `slot` came after its decision: compares it with the newest known and
  // repairs, in the background, whichever side is older.
  void LateAnswer(Request* r, int slot);
  // Sends slot the newest answer (r->newest) as a PUT or REMOVE with its version.
  void Repair(Request* r, int slot, bool background, uint64_t now_us);
  void RepairDone(Request* r, bool background, bool ok);
  void Release(Request* r);

  ClusterState* state_;
  Replica* local_;
  std::vector<std::unique_ptr<PeerTransport>> transports_;
  CoordinatorOptions opt_;
  CoordinatorEnv* env_;
  std::atomic<uint64_t>* sent_;    // this loop's row of ClusterState's peer request counters
  std::atomic<uint64_t>* passes_;  // ... and of its slow-peer passes
  HedgeDelay hedge_;
  // What this loop knows of each node as a peer (self's entry unused).
  struct PeerStats {
    PeerTimeout timeout;
    uint64_t published_timeout_us = 0;  // last value stored in ClusterState::peer_timeout_us
    uint64_t answer_avg_us = 0;         // moving average of answer times, 1/8 each; 0: none yet
    uint64_t pass_candidates = 0;       // GETs that found it clearly slower than a spare
    bool ping_out = false;              // a ping of this loop is waiting for its answer
  };
  std::vector<PeerStats> peers_;
  // GETs waiting for their hedge time (us on NowUs), in the order they were asked; each holds a
  // reference on its request.
  std::deque<std::pair<Request*, uint64_t>> hedge_queue_;
  size_t pending_ = 0;
  std::vector<Request*> free_;
  MemberWaiter<Coordinator, &Coordinator::OnAnswer> waiter_;
  MemberWaiter<Coordinator, &Coordinator::OnPong> ping_waiter_;
  MemberWaiter<Coordinator, &Coordinator::OnHintAnswer> hint_waiter_;
  std::unique_ptr<HintLog> hints_;      // nullptr: hinted handoff off
  uint64_t timer_due_us_ = UINT64_MAX;  // when the loop's timer is armed to fire
  size_t background_repairs_ = 0;       // background repair writes in flight
  bool probing_ = false;                // some peer's breaker was seen not closed
  bool announce_ = false;               // the next Probe pings every peer (Announce)
  uint64_t next_probe_us_ = 0;          // when Probe runs next, while probing_
  uint64_t pings_sent_ = 0;
};

}  // namespace kv::cluster
