#include "cluster/coordinator.h"

#include <ctime>
#include <optional>

#include "cluster/local_replica.h"

namespace kv::cluster {

namespace {
uint64_t SteadyMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

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
    : ring(std::move(urls)), self_index(self), hlc(static_cast<uint16_t>(self)), engine(e) {
  for (size_t i = 0; i < ring.size(); ++i) {
    breakers.push_back(std::make_unique<CircuitBreaker>());
    peer_failures.push_back(std::make_unique<std::atomic<uint64_t>>(0));
  }
}

// One replicated request in flight. Lives until every replica asked has answered (transports
// answer each Send exactly once, timeouts included), which may be after the client was answered.
struct Coordinator::Request {
  std::optional<Accumulator> acc;
  uint32_t nodes[Accumulator::kMaxReplicas];
  PeerOp op = PeerOp::kGet;
  int from = 0;
  int outstanding = 0;  // answers still expected, +1 while Execute runs
  bool no_space = false;
  Completion done;
  std::string values[Accumulator::kMaxReplicas];
};

class Coordinator::Waiter final : public PeerWaiter {
 public:
  explicit Waiter(Coordinator* c) : c_(c) {}
  void OnPeerResponse(uint64_t cookie, PeerResponse&& r) override {
    // cookie = request pointer * 256 + replica index (see Execute)
    auto* req = reinterpret_cast<Request*>(cookie >> 8);
    int replica = static_cast<int>(cookie & 0xff);
    c_->RecordPeerHealth(req->nodes[replica], r);
    c_->Deliver(req, replica, std::move(r));
  }

 private:
  Coordinator* c_;
};

Coordinator::Coordinator(ClusterState* state,
                         std::vector<std::unique_ptr<PeerTransport>> transports,
                         uint64_t request_timeout_ms, uint64_t (*now_ms)(void*), void* clock)
    : state_(state),
      transports_(std::move(transports)),
      timeout_ms_(request_timeout_ms),
      now_ms_(now_ms),
      clock_(clock),
      waiter_(std::make_unique<Waiter>(this)) {}

Coordinator::~Coordinator() {
  for (Request* r : free_) delete r;
}

void Coordinator::Close() {
  for (auto& t : transports_) {
    if (t) t->Close();
  }
}

void Coordinator::Execute(PeerOp op, std::string_view key, std::string_view value, int ack,
                          int from, Completion done) {
  uint32_t replicas[Accumulator::kMaxReplicas];
  state_->ring.Replicas(key, static_cast<size_t>(from), replicas);
  uint64_t version = op == PeerOp::kGet ? 0 : state_->hlc.Now();

  Request* r;
  if (!free_.empty()) {
    r = free_.back();
    free_.pop_back();
  } else {
    r = new Request;
  }
  r->acc.emplace(ack, from);
  r->op = op;
  r->from = from;
  r->outstanding = from + 1;
  r->no_space = false;
  r->done = done;
  ++pending_;

  PeerRequest preq{op, key, value, version};
  uint64_t deadline = now_ms_(clock_) + timeout_ms_;
  uint64_t now_steady = SteadyMs();
  for (int i = 0; i < from; ++i) {
    uint32_t node = replicas[i];
    r->nodes[i] = node;
    if (node == state_->self_index) {
      if (op != PeerOp::kGet && value.size() <= WriteQueue<LocalSlot>::kMaxValue) {
        local_.Push(LocalSlot{r, i}, key, value, version, op == PeerOp::kRemove);
        continue;
      }
      storage::Code code;
      PeerResponse resp = ExecuteLocal(*state_->engine, preq, &code);
      if (code == storage::Code::kNoSpace) r->no_space = true;
      Deliver(r, i, std::move(resp));
      continue;
    }
    CircuitBreaker& br = *state_->breakers[node];
    if (!br.Allow(now_steady)) {
      PeerResponse failed;
      failed.error = "circuit open";
      Deliver(r, i, std::move(failed));
      continue;
    }
    // User-space pointers fit in 56 bits: the low byte carries the replica index.
    uint64_t cookie = (reinterpret_cast<uint64_t>(r) << 8) | static_cast<uint64_t>(i);
    transports_[node]->Send(preq, deadline, waiter_.get(), cookie);
  }
  Release(r);
}

void Coordinator::FlushLocalWrites() {
  // Answers delivered here can dispatch more pipelined requests, which queue new local writes:
  // repeat until none is left.
  auto deliver = [this](const LocalSlot& slot, PeerResponse&& resp, const storage::Status& st) {
    if (st.code() == storage::Code::kNoSpace) slot.request->no_space = true;
    Deliver(slot.request, slot.replica, std::move(resp));
  };
  while (local_.Commit(*state_->engine, deliver)) {
  }
}

// Only answers that came back through a transport say something about the peer (the local
// replica and replicas skipped by an open circuit do not).
void Coordinator::RecordPeerHealth(uint32_t node, const PeerResponse& resp) {
  CircuitBreaker& br = *state_->breakers[node];
  if (resp.kind == PeerResponse::kError) {
    br.OnFailure(SteadyMs());
    state_->peer_failures[node]->fetch_add(1, std::memory_order_relaxed);
  } else {
    br.OnSuccess();
  }
}

void Coordinator::Deliver(Request* r, int replica, PeerResponse&& resp) {
  AnswerKind kind = KindOf(resp);
  if (r->op == PeerOp::kGet && kind == AnswerKind::kValue)
    r->values[replica] = std::move(resp.value);
  bool decided = r->acc->Deliver(replica, kind, resp.version);
  if (decided) Finish(r);
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
