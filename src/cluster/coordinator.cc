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
  int outstanding = 0;  // answers still expected, +1 while Execute runs, +1 in the hedge queue
  bool hedged = false;  // a GET asking `ack` replicas first
  bool no_space = false;
  uint64_t deadline_ms = 0;
  std::string key;  // kept for the replicas asked after Execute returned (hedged GETs only)
  Completion done;
  uint64_t sent_us[Accumulator::kMaxReplicas];
  std::string values[Accumulator::kMaxReplicas];
};

// cookie = request pointer * 256 + replica index (see Ask).
Coordinator::Request* Coordinator::RequestOf(uint64_t cookie) {
  return reinterpret_cast<Request*>(cookie >> 8);
}

void Coordinator::OnPeerAnswer(uint64_t cookie, PeerResponse&& r) {
  Request* req = RequestOf(cookie);
  const int replica = static_cast<int>(cookie & 0xff);
  const bool failed = r.kind == PeerResponse::kError;
  const uint64_t now_us = env_->NowUs();
  const uint64_t took = now_us - req->sent_us[replica];
  RecordPeerAnswer(req->nodes[replica], r, took, now_us);
  if (!failed && req->hedged) hedge_.Record(took);
  Deliver(req, replica, std::move(r));
}

// This node's own replica is not a peer (no answer times, no breaker); its full disk makes the
// request's failure a 507.
void Coordinator::OnLocalAnswer(uint64_t cookie, PeerResponse&& r) {
  Request* req = RequestOf(cookie);
  if (r.no_space) req->no_space = true;
  Deliver(req, static_cast<int>(cookie & 0xff), std::move(r));
}

// The answer to a ping of Probe: cookie = node.
void Coordinator::OnPong(uint64_t node, PeerResponse&& r) {
  peers_[node].ping_out = false;
  if (r.kind != PeerResponse::kError) state_->breakers[node]->OnSuccess();
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
      local_waiter_(this),
      ping_waiter_(this) {}

Coordinator::~Coordinator() {
  for (Request* r : free_) delete r;
}

void Coordinator::Close() {
  for (auto& t : transports_) {
    if (t) t->Close();
  }
  while (!hedge_queue_.empty()) {
    Request* r = hedge_queue_.front().first;
    hedge_queue_.pop_front();
    Release(r);
  }
}

void Coordinator::Execute(PeerOp op, std::string_view key, std::string_view value, int ack,
                          int from, Completion done) {
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
  ++pending_;

  int first = from;
  if (r->hedged) {
    // Itself first when it is a replica (its answer costs no message), then ring order except
    // for clearly slower peers.
    for (int i = 1; i < from; ++i) {
      if (r->nodes[i] == state_->self_index) {
        std::rotate(r->nodes, r->nodes + i, r->nodes + i + 1);
        break;
      }
    }
    r->key.assign(key.data(), key.size());
    first = ack;
    PreferFasterPeers(r->nodes, r->nodes[0] == state_->self_index ? 1 : 0, first, from);
  }
  uint64_t version = op == PeerOp::kGet ? 0 : state_->hlc.Now();
  PeerRequest preq{op, key, value, version};
  const uint64_t now_us = env_->NowUs();  // breakers, answer times and the hedge time
  // A replica that fails at once is replaced from inside Deliver (AskNext), moving r->next on.
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
  if (node == state_->self_index) return local_->Execute(preq, &local_waiter_, cookie);
  CircuitBreaker& br = *state_->breakers[node];
  if (!br.Allow(now_us / 1000)) {
    if (!probing_) StartProbing(now_us);
    PeerResponse failed;
    failed.error = "circuit open";
    Deliver(r, i, std::move(failed));
    return;
  }
  // Only this thread writes its row: a plain increment, no locked instruction.
  sent_[node].store(sent_[node].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  r->sent_us[i] = now_us;
  PeerStats& ps = peers_[node];
  const uint64_t timeout_us = ps.timeout.timeout_us(now_us);
  if (timeout_us != ps.published_timeout_us) {
    ps.published_timeout_us = timeout_us;
    state_->peer_timeout_us[node]->store(timeout_us, std::memory_order_relaxed);
  }
  // A large value takes its time to cross before the peer can answer: 1 us per 10 bytes (as if
  // at 10 MB/s) on top of the peer's timeout, which its small answers set.
  const uint64_t transfer_us = preq.value.size() / 10;
  const uint64_t deadline_ms =
      std::min(r->deadline_ms, env_->NowMs() + (timeout_us + transfer_us + 999) / 1000);
  transports_[node]->Send(preq, deadline_ms, &waiter_, cookie);
}

// Only answers that came back through a transport say something about the peer (the local
// replica and replicas skipped by an open circuit do not).
void Coordinator::RecordPeerAnswer(uint32_t node, const PeerResponse& resp, uint64_t took_us,
                                   uint64_t now_us) {
  CircuitBreaker& br = *state_->breakers[node];
  PeerStats& ps = peers_[node];
  const bool failed = resp.kind == PeerResponse::kError;
  if (resp.clock_skew) RecordSkewRefusal(node, resp, now_us);
  if (failed && !resp.clock_skew) {
    if (resp.slow) {
      br.OnFailure(now_us / 1000);
      if (!probing_ && br.state(now_us / 1000) != CircuitBreaker::State::kClosed) {
        StartProbing(now_us);
      }
    }
    state_->peer_failures[node]->fetch_add(1, std::memory_order_relaxed);
  } else {
    // A skew refusal failed the write on that replica, but it is a prompt answer: the peer is
    // up, and its answer time is as good as any.
    if (failed) state_->peer_failures[node]->fetch_add(1, std::memory_order_relaxed);
    br.OnSuccess();
    ps.timeout.Record(took_us, now_us);
  }
  // A failure only ever makes a measured peer look slower: a fast one (refused, reset) says
  // nothing of its speed.
  uint64_t& avg = ps.answer_avg_us;
  if (failed && !resp.clock_skew && (avg == 0 || took_us <= avg)) return;
  avg = avg == 0 ? took_us : avg - avg / 8 + took_us / 8;
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
  for (auto& t : transports_) {
    if (t) t->Flush();
  }
}

void Coordinator::OnTimer() {
  uint64_t now = env_->NowUs();
  if (probing_ && next_probe_us_ <= now) Probe(now);
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

void Coordinator::Deliver(Request* r, int replica, PeerResponse&& resp) {
  AnswerKind kind = KindOf(resp);
  if (r->op == PeerOp::kGet && kind == AnswerKind::kValue)
    r->values[replica] = std::move(resp.value);
  bool decided = r->acc->Deliver(replica, kind, resp.version);
  if (decided) {
    Finish(r);
  } else if (kind == AnswerKind::kFailed && r->hedged && r->next < r->from) {
    // Each failure leaves one spare to ask: the outcome stays open until the spares are spent.
    state_->get_retries.fetch_add(1, std::memory_order_relaxed);
    AskNext(r, env_->NowUs());
  }
  Release(r);
}

void Coordinator::Finish(Request* r) {
  Outcome o;
  if (!r->acc->succeeded()) {
    o.kind = r->no_space ? Outcome::kNoSpace : Outcome::kUnavailable;
  } else if (r->op != PeerOp::kGet) {
    o.kind = Outcome::kStored;
  } else {
    int f = r->acc->freshest();
    AnswerKind k = r->acc->freshest_kind();
    if (f >= 0 && k == AnswerKind::kValue) {
      o.kind = Outcome::kValue;
      o.version = r->acc->freshest_version();
      o.value = std::move(r->values[f]);
    } else {
      o.kind = Outcome::kNotFound;
      o.version = f >= 0 ? r->acc->freshest_version() : 0;
    }
  }
  Completion done = r->done;
  done.fn(done.ctx, done.ctx2, std::move(o));
}

void Coordinator::Release(Request* r) {
  if (--r->outstanding != 0) return;
  --pending_;
  for (int i = 0; i < r->from; ++i) r->values[i].clear();
  if (free_.size() < 1024) {
    free_.push_back(r);
  } else {
    delete r;
  }
}

}  // namespace kv::cluster
