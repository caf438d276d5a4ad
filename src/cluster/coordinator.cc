#include "cluster/coordinator.h"

#include <algorithm>
#include <cinttypes>
#include <optional>
#include <utility>

#include "cluster/clock_skew.h"
#include "common/log.h"

namespace kv::cluster {

namespace {
AnswerKind KindOf(const PeerResponse& r) {
  switch (r.kind) {
    case PeerResponse::kAbsent:
      return AnswerKind::kAbsent;
    case PeerResponse::kValue:
      return AnswerKind::kValue;
    case PeerResponse::kTombstone:
      return AnswerKind::kTombstone;
    case PeerResponse::kStored:
      return AnswerKind::kStored;
    default:
      return AnswerKind::kFailed;
  }
}
}  // namespace

ClusterState::ClusterState(std::vector<std::string> urls, size_t self, storage::Engine* e)
    : ring(std::move(urls)),
      self_index(self),
      hlc(static_cast<uint16_t>(self)),
      engine(e),
      max_clock_skew_ms(kDefaultMaxClockSkewMs) {
  for (size_t i = 0; i < ring.size(); ++i) {
    peer_skew_refusals.push_back(std::make_unique<std::atomic<uint64_t>>(0));
    peer_last_skew_ms.push_back(std::make_unique<std::atomic<uint64_t>>(0));
    peer_skew_logged_us.push_back(std::make_unique<std::atomic<uint64_t>>(0));
    breakers.push_back(std::make_unique<CircuitBreaker>());
    peer_failures.push_back(std::make_unique<std::atomic<uint64_t>>(0));
    peer_timeout_us.push_back(std::make_unique<std::atomic<uint64_t>>(0));
  }
}

// A row of peer request counters is padded by a cache line at each end: rows of different loops
// never share one.
constexpr size_t kPad = 64 / sizeof(std::atomic<uint64_t>);

uint64_t ClusterState::SumOfRows(size_t column) const {
  std::lock_guard<std::mutex> l(rows_mu_);
  uint64_t n = 0;
  for (const auto& row : rows_) n += row[kPad + column].load(std::memory_order_relaxed);
  return n;
}

std::atomic<uint64_t>* ClusterState::AddPeerRequestRow() {
  const size_t n = 2 * ring.size() + 2 * kPad;
  auto row = std::make_unique<std::atomic<uint64_t>[]>(n);
  for (size_t i = 0; i < n; ++i) row[i].store(0, std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(rows_mu_);
  rows_.push_back(std::move(row));
  return rows_.back().get() + kPad;
}

// One replicated request in flight. Lives until every replica asked has answered (transports
// answer each Send exactly once, timeouts included) and it has left the hedge queue, which may
// be after the client was answered.
struct Coordinator::Request {
  std::optional<Accumulator> acc;
  uint32_t nodes[Accumulator::kMaxReplicas];  // replica slot -> node, in the order they are asked
  PeerOp op = PeerOp::kGet;
  int from = 0;
  int next = 0;         // slots [0, next) have been asked
  int first = 0;        // slots [0, first) are asked by Execute, even after the decision
  int outstanding = 0;  // answers still expected, +1 while Execute runs, +1 in the hedge queue
  bool hedged = false;  // a GET asking `ack` replicas first
  bool no_space = false;
  uint64_t deadline_ms = 0;
  // Kept for the replicas asked after Execute returned and for read repair writes (GETs only).
  std::string key;
  Completion done;
  uint64_t sent_us[Accumulator::kMaxReplicas];  // of the replica request (GET or repair write)
  std::string values[Accumulator::kMaxReplicas];
  uint64_t value_expires[Accumulator::kMaxReplicas];  // each value's expiry (GETs)
  // GETs: slots that answered anything (failures too), slots that answered (not failed), and the
  // version each answered slot holds as far as this request knows (its answer's, 0 for absent,
  // then that of a repair write sent to it).
  uint32_t done_mask = 0;
  uint32_t answered = 0;
  uint64_t held[Accumulator::kMaxReplicas];
  bool decided = false;  // the outcome is decided: later answers are late
  int reply = -1;        // GET: the slot whose answer the client gets
  // Read repair: the slot of the newest answer known (its bytes still in values[]) and its
  // version; the blocking repair writes the client still waits for.
  int newest = -1;
  uint64_t newest_version = 0;
  int blocking = 0;
  // Writes with hinted handoff on: the version and the value (the key is in `key`), for the
  // hints of replicas that fail, maybe after the client was answered.
  uint64_t version = 0;
  uint64_t expires_ms = 0;  // of a kPut's value
  std::string write_value;
};

namespace {
// A replica request's cookie is the request's pointer * 256 plus a low byte: the replica slot
// (kSlotMask) and flag bits. A read repair write's carries kRepairBit, and kBackgroundBit when
// it is a background one; an answer made up by Ask (its peer's circuit is open) kNotSentBit:
// it was never sent.
constexpr uint64_t kSlotMask = 0x1f;
constexpr uint64_t kRepairBit = 0x20;
constexpr uint64_t kNotSentBit = 0x40;
constexpr uint64_t kBackgroundBit = 0x80;
static_assert(Accumulator::kMaxReplicas <= kSlotMask + 1);
int Slots(uint32_t mask) {
  return __builtin_popcount(mask);
}
}  // namespace

// cookie = request pointer * 256 + its low byte (slot and flags, see above).
Coordinator::Request* Coordinator::RequestOf(uint64_t cookie) {
  return reinterpret_cast<Request*>(cookie >> 8);
}

// The answer to a ping of Probe: cookie = node.
void Coordinator::OnPong(uint64_t node, PeerResponse&& r) {
  peers_[node].ping_out = false;
  if (r.kind == PeerResponse::kError) return;
  state_->breakers[node]->OnSuccess();
  if (hints_) hints_->PeerAnswered(static_cast<uint32_t>(node));
}

void Coordinator::OnHintAnswer(uint64_t cookie, PeerResponse&& r) {
  hints_->OnAnswer(cookie, r, env_->NowUs());
}

void Coordinator::OnPeerUp(size_t node) {
  if (hints_) hints_->PeerAnswered(static_cast<uint32_t>(node));
}

Coordinator::Coordinator(ClusterState* state, Replica* local,
                         std::vector<std::unique_ptr<PeerTransport>> transports,
                         const CoordinatorOptions& options, CoordinatorEnv* env)
    : state_(state),
      local_(local),
      transports_(std::move(transports)),
      opt_(options),
      env_(env),
      sent_(state->AddPeerRequestRow()),
      passes_(sent_ + state->ring.size()),
      hedge_(options.initial_hedge_us, options.request_timeout_ms * 1000 / 2),
      peers_(state->ring.size(), PeerStats{PeerTimeout(options.peer_timeout_min_ms * 1000,
                                                       options.request_timeout_ms * 1000)}),
      waiter_(this),
      ping_waiter_(this),
      hint_waiter_(this) {
  if (options.hints != nullptr) {
    std::vector<PeerTransport*> transports;
    std::vector<CircuitBreaker*> breakers;
    for (size_t i = 0; i < transports_.size(); ++i) {
      transports.push_back(transports_[i].get());
      breakers.push_back(state->breakers[i].get());
    }
    hints_ = std::make_unique<HintLog>(options.hints, options.loop_index, options.loops,
                                       std::move(transports), std::move(breakers), &state->hlc, env,
                                       options.request_timeout_ms, &hint_waiter_);
    // Hints found at startup are tried when the loop first runs its timer (Announce arms it).
  }
}

Coordinator::~Coordinator() {
  for (Request* r : free_) delete r;
}

void Coordinator::Close() {
  for (auto& t : transports_) {
    if (t) t->Close();
  }
  if (hints_) hints_->Close();  // what the closed transports failed is hinted, and written
  while (!hedge_queue_.empty()) {
    Request* r = hedge_queue_.front().first;
    hedge_queue_.pop_front();
    Release(r);
  }
}

void Coordinator::Execute(PeerOp op, std::string_view key, std::string_view value, int ack,
                          int from, Completion done, uint64_t expires_ms) {
  Request* r;
  if (!free_.empty()) {
    r = free_.back();
    free_.pop_back();
  } else {
    r = new Request;
  }
  state_->ring.Replicas(key, static_cast<size_t>(from), r->nodes);
  r->acc.emplace(ack, from);
  r->op = op;
  r->from = from;
  r->next = 0;
  r->outstanding = 1;
  r->hedged = op == PeerOp::kGet && ack < from && opt_.read_fanout == ReadFanout::kHedged;
  r->no_space = false;
  r->deadline_ms = env_->NowMs() + opt_.request_timeout_ms;
  r->done = done;
  r->done_mask = 0;
  r->answered = 0;
  r->decided = false;
  r->reply = -1;
  r->newest = -1;
  r->blocking = 0;
  ++pending_;

  int first = from;
  if (op == PeerOp::kGet && (r->hedged || opt_.read_repair)) r->key.assign(key.data(), key.size());
  if (r->hedged) {
    // Itself first when it is a replica (its answer costs no message), then ring order except
    // for clearly slower peers.
    for (int i = 1; i < from; ++i) {
      if (r->nodes[i] == state_->self_index) {
        std::rotate(r->nodes, r->nodes + i, r->nodes + i + 1);
        break;
      }
    }
    first = ack;
    PreferFasterPeers(r->nodes, r->nodes[0] == state_->self_index ? 1 : 0, first, from);
  }
  uint64_t version = op == PeerOp::kGet ? 0 : state_->hlc.Now();
  r->version = version;
  if (op != PeerOp::kPut) expires_ms = 0;
  r->expires_ms = expires_ms;
  if (op != PeerOp::kGet && hints_) {
    // A replica that fails, even after the client was answered, gets a hint: keep the write.
    r->key.assign(key.data(), key.size());
    r->write_value.assign(value.data(), op == PeerOp::kPut ? value.size() : 0);
  }
  PeerRequest preq{op, key, value, version, expires_ms};
  const uint64_t now_us = env_->NowUs();  // breakers, answer times and the hedge time
  r->first = first;
  // A replica that fails at once is replaced from inside OnAnswer (AskNext), moving r->next on.
  while (r->next < first) Ask(r, r->next++, preq, now_us);
  if (r->hedged && r->next < from && !r->acc->decided()) {
    ++r->outstanding;
    hedge_queue_.emplace_back(r, now_us + hedge_.delay_us());
    if (hedge_queue_.size() == 1) ArmTimer(now_us);
  }
  Release(r);
}

void Coordinator::Ask(Request* r, int i, const PeerRequest& preq, uint64_t now_us) {
  uint32_t node = r->nodes[i];
  // User-space pointers fit in 56 bits: the low byte carries the replica index.
  const uint64_t cookie = (reinterpret_cast<uint64_t>(r) << 8) | static_cast<uint64_t>(i);
  ++r->outstanding;
  if (node == state_->self_index) return local_->Execute(preq, &waiter_, cookie);
  CircuitBreaker& br = *state_->breakers[node];
  if (!br.Allow(now_us / 1000)) {
    if (!probing_) StartProbing(now_us);
    PeerResponse failed;
    failed.error = "circuit open";
    OnAnswer(cookie | kNotSentBit, std::move(failed));
    return;
  }
  // Only this thread writes its row: a plain increment, no locked instruction.
  sent_[node].store(sent_[node].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  r->sent_us[i] = now_us;
  transports_[node]->Send(preq, PeerDeadlineMs(r->deadline_ms, node, preq.value.size(), now_us),
                          &waiter_, cookie);
}

uint64_t Coordinator::PeerDeadlineMs(uint64_t request_deadline_ms, uint32_t node,
                                     size_t value_bytes, uint64_t now_us) {
  PeerStats& ps = peers_[node];
  const uint64_t timeout_us = ps.timeout.timeout_us(now_us);
  if (timeout_us != ps.published_timeout_us) {
    ps.published_timeout_us = timeout_us;
    state_->peer_timeout_us[node]->store(timeout_us, std::memory_order_relaxed);
  }
  // A large value takes its time to cross before the peer can answer: 1 us per 10 bytes (as if
  // at 10 MB/s) on top of the peer's timeout, which its small answers set.
  const uint64_t transfer_us = value_bytes / 10;
  return std::min(request_deadline_ms, env_->NowMs() + (timeout_us + transfer_us + 999) / 1000);
}

void Coordinator::RecordSkewRefusal(uint32_t node, const PeerResponse& resp, uint64_t now_us) {
  const uint64_t n = state_->peer_skew_refusals[node]->fetch_add(1, std::memory_order_relaxed) + 1;
  state_->peer_last_skew_ms[node]->store(resp.skew_ms, std::memory_order_relaxed);
  // Once per interval per peer, over every loop: the first loop to swap the time logs.
  std::atomic<uint64_t>& logged = *state_->peer_skew_logged_us[node];
  uint64_t last = logged.load(std::memory_order_relaxed);
  if (last != 0 && now_us - last < kSkewLogIntervalMs * 1000) return;
  if (!logged.compare_exchange_strong(last, now_us, std::memory_order_relaxed)) return;
  LOG_WARN("clock skew: peer %s refused this node's write: its version is %" PRIu64
           " ms ahead of that peer's clock (refusals from it so far: %" PRIu64
           "); this node's clock is probably ahead by about %" PRIu64
           " ms: writes that need that peer fail until the clocks agree (check NTP)",
           state_->ring.url(node).c_str(), resp.skew_ms, n, resp.skew_ms);
}

void Coordinator::PreferFasterPeers(uint32_t* nodes, int begin, int first, int from) {
  // Only measured peers are compared: a peer with no answer yet is neither passed over nor
  // preferred.
  for (int i = begin; i < first; ++i) {
    int fastest = -1;
    for (int j = first; j < from; ++j) {
      const uint64_t a = peers_[nodes[j]].answer_avg_us;
      if (a != 0 && (fastest < 0 || a < peers_[nodes[fastest]].answer_avg_us)) fastest = j;
    }
    if (fastest < 0) return;
    const uint32_t slow = nodes[i];
    const uint64_t mine = peers_[slow].answer_avg_us, best = peers_[nodes[fastest]].answer_avg_us;
    if (mine <= kSlowPeerFactor * best || mine - best <= kSlowPeerGapUs) continue;
    if (++peers_[slow].pass_candidates % kSlowPeerProbeEvery == 0) continue;  // a probe: ask it
    nodes[i] = nodes[fastest];
    std::rotate(nodes + fastest, nodes + fastest + 1, nodes + from);  // the spares keep order
    nodes[from - 1] = slow;
    // Only this thread writes its row: a plain increment, no locked instruction.
    passes_[slow].store(passes_[slow].load(std::memory_order_relaxed) + 1,
                        std::memory_order_relaxed);
  }
}

// Asks the next replica of a hedged GET after Execute returned (in place of a failed one, or at
// the hedge time).
void Coordinator::AskNext(Request* r, uint64_t now_us) {
  PeerRequest preq{PeerOp::kGet, r->key, {}, 0};
  Ask(r, r->next++, preq, now_us);
}

// The loop's timers tick in whole milliseconds: round up, OnTimer re-arms if it came early.
void Coordinator::ArmTimer(uint64_t now_us) {
  uint64_t due = UINT64_MAX;
  if (!hedge_queue_.empty()) due = hedge_queue_.front().second;
  if (probing_) due = std::min(due, next_probe_us_);
  if (hints_) due = std::min(due, hints_->next_due_us());
  timer_due_us_ = due;
  if (due == UINT64_MAX) return;
  env_->ArmTimer(due > now_us ? (due - now_us + 999) / 1000 : 0);
}

void Coordinator::StartProbing(uint64_t now_us) {
  probing_ = true;
  next_probe_us_ = now_us;  // the first ping leaves at once
  ArmTimer(now_us);
}

void Coordinator::Announce() {
  announce_ = true;
  StartProbing(env_->NowUs());
}

void Coordinator::Probe(uint64_t now_us) {
  const uint64_t now_ms = now_us / 1000;
  bool any = false;
  const bool all = std::exchange(announce_, false);
  for (uint32_t node = 0; node < transports_.size(); ++node) {
    if (node == state_->self_index) continue;
    const bool closed = state_->breakers[node]->state(now_ms) == CircuitBreaker::State::kClosed;
    if (closed && !all) continue;
    any = any || !closed;
    PeerStats& ps = peers_[node];
    if (ps.ping_out) continue;
    ps.ping_out = true;
    ++pings_sent_;
    const uint64_t timeout_ms = (ps.timeout.timeout_us(now_us) + 999) / 1000;
    transports_[node]->Ping(env_->NowMs() + timeout_ms, &ping_waiter_, node);
  }
  probing_ = any;
  next_probe_us_ = now_us + kProbeIntervalMs * 1000;
}

void Coordinator::FlushPeers() {
  if (hints_) {
    // Hints of this iteration reach their files; answers to replays refill the windows.
    hints_->FlushWrites();
    if (hints_->kicked()) hints_->Pump(env_->NowUs());
    if (hints_->next_due_us() < timer_due_us_) ArmTimer(env_->NowUs());
  }
  for (auto& t : transports_) {
    if (t) t->Flush();
  }
}

void Coordinator::OnTimer() {
  uint64_t now = env_->NowUs();
  if (probing_ && next_probe_us_ <= now) Probe(now);
  if (hints_) hints_->Pump(now);
  while (!hedge_queue_.empty() && hedge_queue_.front().second <= now) {
    Request* r = hedge_queue_.front().first;
    hedge_queue_.pop_front();
    if (!r->acc->decided() && r->next < r->from) {
      state_->get_hedges.fetch_add(1, std::memory_order_relaxed);
      while (r->next < r->from) AskNext(r, now);
    }
    Release(r);
  }
  // Entries are in ask order; a delay that shrank meanwhile only fires a later one late.
  ArmTimer(now);
}

// One replica's answer to a request of Ask or Repair: cookie as there. Only a peer's answer (one
// that came back through its transport, not one its open circuit made up) says something about
// the peer: its circuit breaker and failure count, its timeout (answers only) and its moving
// average of answer times (a failure only when it took longer than that average); a GET's answer
// time also sets the hedge delay. This node's own replica is not a peer, and its full disk makes
// the request's failure a 507. A read repair write's answer then ends that write (RepairDone).
void Coordinator::OnAnswer(uint64_t cookie, PeerResponse&& resp) {
  Request* r = RequestOf(cookie);
  const int replica = static_cast<int>(cookie & kSlotMask);
  const bool repair = (cookie & kRepairBit) != 0;
  const uint32_t node = r->nodes[replica];
  if (node == state_->self_index) {
    if (resp.no_space && !repair) r->no_space = true;
  } else if ((cookie & kNotSentBit) == 0) {
    const uint64_t now_us = env_->NowUs();
    const uint64_t took = now_us - r->sent_us[replica];
    CircuitBreaker& br = *state_->breakers[node];
    PeerStats& ps = peers_[node];
    const bool failed = resp.kind == PeerResponse::kError;
    if (resp.clock_skew) RecordSkewRefusal(node, resp, now_us);
    if (failed) state_->peer_failures[node]->fetch_add(1, std::memory_order_relaxed);
    // A skew refusal failed the write on that replica, but it is a prompt answer: the peer is up,
    // and its answer time is as good as any.
    if (!failed || resp.clock_skew) {
      br.OnSuccess();
      if (hints_) hints_->PeerAnswered(node);
      ps.timeout.Record(took, now_us);
    } else if (resp.slow) {
      br.OnFailure(now_us / 1000);
      if (!probing_ && br.state(now_us / 1000) != CircuitBreaker::State::kClosed) {
        StartProbing(now_us);
      }
    }
    // A failure only ever makes a measured peer look slower: a fast one (refused, reset) says
    // nothing of its speed.
    uint64_t& avg = ps.answer_avg_us;
    if (!failed || resp.clock_skew || (avg != 0 && took > avg)) {
      avg = avg == 0 ? took : avg - avg / 8 + took / 8;
    }
    if (!failed && r->hedged && !repair) hedge_.Record(took);
  }
  if (repair) {
    return RepairDone(r, (cookie & kBackgroundBit) != 0, resp.kind == PeerResponse::kStored);
  }
  AnswerKind kind = KindOf(resp);
  // A peer that did not store a write gets a hint, except one that refused its version as too
  // far ahead of its clock: replayed later, it would let that version in after all.
  if (kind == AnswerKind::kFailed && r->op != PeerOp::kGet && hints_ &&
      node != state_->self_index && !resp.clock_skew) {
    hints_->Add(node, r->op, r->key, r->write_value, r->version, r->expires_ms);
  }
  if (r->op == PeerOp::kGet) {
    r->done_mask |= 1u << replica;
    if (kind != AnswerKind::kFailed) {
      r->answered |= 1u << replica;
      r->held[replica] = kind == AnswerKind::kAbsent ? 0 : resp.version;
      if (kind == AnswerKind::kValue) {
        r->values[replica] = std::move(resp.value);
        r->value_expires[replica] = resp.expires_ms;
      }
    }
  }
  if (r->acc->Deliver(replica, kind, resp.version)) {
    // The outcome is decided: a GET that succeeded gets its newest answer (FinishRead); every
    // other request its outcome now.
    r->decided = true;
    if (r->op == PeerOp::kGet && r->acc->succeeded()) {
      FinishRead(r);
    } else {
      Outcome o;
      o.kind = !r->acc->succeeded() ? (r->no_space ? Outcome::kNoSpace : Outcome::kUnavailable)
                                    : Outcome::kStored;
      Completion done = r->done;
      done.fn(done.ctx, done.ctx2, std::move(o));
    }
  } else if (r->decided) {
    if (r->op == PeerOp::kGet && kind != AnswerKind::kFailed) LateAnswer(r, replica);
  } else if (kind == AnswerKind::kFailed && r->hedged && r->next < r->from) {
    // Each failure leaves one spare to ask: the outcome stays open until the spares are spent.
    state_->get_retries.fetch_add(1, std::memory_order_relaxed);
    AskNext(r, env_->NowUs());
  }
  Release(r);
}

void Coordinator::FinishRead(Request* r) {
  const int f = r->acc->freshest();
  r->reply = f;
  if (!opt_.read_repair || f < 0) return Reply(r);
  const uint64_t v = r->held[f];
  r->newest = f;
  r->newest_version = v;
  // The common path: every answer holds the newest version (an absent newest is version 0).
  uint32_t stale = 0;
  for (uint32_t m = r->answered; m != 0; m &= m - 1) {
    const int i = __builtin_ctz(m);
    if (r->held[i] < v) stale |= 1u << i;
  }
  if (stale == 0) return Reply(r);
  // Blocking read repair: the client is answered once every stale replica answered its write
  // (RepairDone). Counted in full first: a write may fail before Repair returns.
  r->blocking = Slots(stale);
  const uint64_t now_us = env_->NowUs();
  for (uint32_t m = stale; m != 0; m &= m - 1) Repair(r, __builtin_ctz(m), false, now_us);
}

void Coordinator::Reply(Request* r) {
  Outcome o;
  const int f = r->reply;
  if (f >= 0 && r->acc->kind(f) == AnswerKind::kValue) {
    o.kind = Outcome::kValue;
    o.version = r->acc->version(f);
    // (Slots asked so far are [0, max(next, first)); no more are asked once decided.)
    if (r->newest == f && r->done_mask != (1u << std::max(r->next, r->first)) - 1) {
      // Replicas asked have not all answered: a late stale one would need these bytes. Another
      // answer of the same version keeps them (the usual case); else the client gets a copy.
      int same = -1;
      for (uint32_t m = r->answered & ~(1u << f); m != 0 && same < 0; m &= m - 1) {
        const int j = __builtin_ctz(m);
        if (r->acc->kind(j) == AnswerKind::kValue && r->acc->version(j) == o.version) same = j;
      }
      if (same >= 0) {
        r->newest = same;
        o.value = std::move(r->values[f]);
      } else {
        o.value = r->values[f];
      }
    } else {
      o.value = std::move(r->values[f]);
    }
  } else {
    o.kind = Outcome::kNotFound;
    o.version = f >= 0 ? r->acc->version(f) : 0;
  }
  Completion done = r->done;
  done.fn(done.ctx, done.ctx2, std::move(o));
}

void Coordinator::LateAnswer(Request* r, int slot) {
  if (r->newest < 0) return;  // read repair off, or the GET failed
  const uint64_t v = r->held[slot];
  if (v == r->newest_version) return;
  const uint64_t now_us = env_->NowUs();
  if (v < r->newest_version) return Repair(r, slot, true, now_us);
  // Newer than anything before: every other answer is stale now.
  r->newest = slot;
  r->newest_version = v;
  for (uint32_t m = r->answered & ~(1u << slot); m != 0; m &= m - 1) {
    const int i = __builtin_ctz(m);
    if (r->held[i] < v) Repair(r, i, true, now_us);
  }
}

void Coordinator::Repair(Request* r, int slot, bool background, uint64_t now_us) {
  if (background && background_repairs_ >= kMaxBackgroundRepairs) {
    state_->read_repairs_skipped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // r->newest is always a slot whose own answer was the newest (a value, or a tombstone).
  const bool tombstone = r->acc->kind(r->newest) == AnswerKind::kTombstone;
  const std::string_view value =
      tombstone ? std::string_view() : std::string_view(r->values[r->newest]);
  PeerRequest preq{tombstone ? PeerOp::kRemove : PeerOp::kPut, r->key, value, r->newest_version,
                   tombstone ? 0 : r->value_expires[r->newest]};
  r->held[slot] = r->newest_version;
  ++r->outstanding;
  if (background) {
    ++background_repairs_;
    state_->read_repairs_background.fetch_add(1, std::memory_order_relaxed);
  } else {
    state_->read_repairs_blocking.fetch_add(1, std::memory_order_relaxed);
  }
  const uint64_t cookie = (reinterpret_cast<uint64_t>(r) << 8) | static_cast<uint64_t>(slot) |
                          kRepairBit | (background ? kBackgroundBit : 0);
  const uint32_t node = r->nodes[slot];
  if (node == state_->self_index) return local_->Execute(preq, &waiter_, cookie);
  if (!state_->breakers[node]->Allow(now_us / 1000)) {
    if (!probing_) StartProbing(now_us);
    return RepairDone(r, background, false);
  }
  sent_[node].store(sent_[node].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  r->sent_us[slot] = now_us;
  // A blocking repair is part of the client's request and ends with it; a background one gets
  // a request timeout of its own.
  const uint64_t deadline_ms =
      background ? env_->NowMs() + opt_.request_timeout_ms : r->deadline_ms;
  transports_[node]->Send(preq, PeerDeadlineMs(deadline_ms, node, value.size(), now_us), &waiter_,
                          cookie);
}

void Coordinator::RepairDone(Request* r, bool background, bool ok) {
  if (!ok) state_->read_repair_failures.fetch_add(1, std::memory_order_relaxed);
  if (background) {
    --background_repairs_;
  } else if (--r->blocking == 0) {
    Reply(r);
  }
  Release(r);
}

void Coordinator::Release(Request* r) {
  if (--r->outstanding != 0) return;
  --pending_;
  for (int i = 0; i < r->from; ++i) r->values[i].clear();
  r->write_value.clear();
  if (free_.size() < 1024) {
    free_.push_back(r);
  } else {
    delete r;
  }
}

}  // namespace kv::cluster
