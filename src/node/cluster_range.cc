#include "node/cluster_range.h"

#include <uv.h>

#include <memory>
#include <utility>

#include "cluster/range_merge.h"
#include "common/log.h"

namespace kv::net {

namespace {

using cluster::PeerResponse;
using cluster::RangeMerge;

class RangeBody;

// The read: fetches pages for the merge and owns it. Lives until it is answered (or its stream
// is gone) and no page request is out (a transport answers each, maybe much later).
class ClusterRange final : public RangeMerge::Fetcher, public cluster::PeerWaiter {
 public:
  ClusterRange(const ClusterRangeEnv& env, ClusterRangeRead read, Responder r)
      : env_(env),
        read_(std::move(read)),
        merge_(env.nodes, read_.from, read_.limit, this),
        responder_(r) {}

  void Start() {
    // This node's own entries are read in place from its engine, not as pages.
    std::optional<std::string_view> end;
    if (read_.end) end = *read_.end;
    merge_.SetSource(env_.self, env_.local->RangeSource(read_.start, end));
    ++depth_;
    merge_.Start(read_.start);
    --depth_;
    Settle();
  }

  // RangeBody's side.
  bool Produce(std::string* out, size_t budget, bool* failed) {
    ++depth_;
    const RangeMerge::State st = merge_.Produce(out, budget);
    --depth_;
    waiting_ = st == RangeMerge::State::kWaiting;
    switch (st) {
      case RangeMerge::State::kFailed:
        LOG_WARN("cluster range aborted after %llu records: %zu nodes failed (first: %s)",
                 static_cast<unsigned long long>(merge_.records()), merge_.failures(),
                 merge_.first_error().c_str());
        *failed = true;
        return false;
      case RangeMerge::State::kDone:
        return false;
      default:
        return true;
    }
  }
  bool waiting() const { return waiting_; }
  void Detach() {
    body_ = nullptr;
    orphaned_ = true;
    if (depth_ == 0) Settle();
  }

  // RangeMerge::Fetcher
  void Fetch(size_t node, std::string_view start) override {
    cluster::PeerRequest req{};
    req.op = cluster::PeerOp::kRange;
    req.key = start;
    if (read_.end) {
      req.end = *read_.end;
      req.has_end = true;
    }
    req.max_keys = env_.page_keys;
    if (read_.limit != 0 && read_.limit < req.max_keys) {
      req.max_keys = static_cast<uint32_t>(read_.limit);
    }
    req.max_bytes = env_.page_bytes;
    ++in_flight_;
    if (node == env_.self) return env_.local->Execute(req, this, node);
    env_.coordinator->transport(node)->Send(req, uv_now(env_.loop) + env_.timeout_ms, this, node);
  }

  // PeerWaiter: a page (or failure) of node `cookie`.
  void OnPeerResponse(uint64_t node, PeerResponse&& r) override {
    --in_flight_;
    if (!orphaned_) {
      ++depth_;
      if (r.kind == PeerResponse::kPage) {
        merge_.OnPage(node, std::move(r.value), r.value_at);
      } else {
        merge_.OnFailure(node, r.kind == PeerResponse::kError ? r.error : "unexpected answer");
      }
      --depth_;
    }
    if (depth_ == 0) Settle();
  }

 private:
  // After every outside call: answer once primed, wake a waiting stream, free when done.
  void Settle();

  ClusterRangeEnv env_;
  ClusterRangeRead read_;
  RangeMerge merge_;
  Responder responder_;  // until answered
  RangeBody* body_ = nullptr;
  size_t in_flight_ = 0;
  int depth_ = 0;  // calls of ours on the stack: answers that arrive inside wait for Settle
  bool started_ = false;
  bool orphaned_ = false;  // answered 504, or the stream is gone: only waits for its requests
  bool waiting_ = false;
};

// The response body: the connection owns it, the read outlives it.
class RangeBody final : public BodyStream {
 public:
  explicit RangeBody(ClusterRange* read) : read_(read) {}
  ~RangeBody() override { read_->Detach(); }
  bool Produce(std::string* out, size_t budget, bool* failed) override {
    return read_->Produce(out, budget, failed);
  }
  bool waiting() const override { return read_->waiting(); }
  void WakeUp() { Wake(); }

 private:
  ClusterRange* read_;
};

void ClusterRange::Settle() {
  if (!orphaned_ && !started_ &&
      (merge_.Primed() || merge_.state() == RangeMerge::State::kFailed)) {
    started_ = true;
    if (merge_.state() == RangeMerge::State::kFailed) {
      LOG_WARN("cluster range refused: %zu nodes failed (first: %s)", merge_.failures(),
               merge_.first_error().c_str());
      orphaned_ = true;
      responder_.Respond(504, "the range cannot be read completely: too many nodes failed\n");
    } else {
      auto body = std::make_unique<RangeBody>(this);
      body_ = body.get();
      ++depth_;  // a connection already gone destroys the body (Detach) inside Stream
      responder_.Stream(200, std::move(body), {{"Content-Type", "application/octet-stream"}});
      --depth_;
    }
  } else if (!orphaned_ && body_ != nullptr && waiting_) {
    waiting_ = false;
    body_->WakeUp();
  }
  if (orphaned_ && in_flight_ == 0) delete this;
}

}  // namespace

void StartClusterRange(const ClusterRangeEnv& env, ClusterRangeRead read, Responder r) {
  auto* range = new ClusterRange(env, std::move(read), r);  // frees itself (Settle)
  range->Start();
}

}  // namespace kv::net
