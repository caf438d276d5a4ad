#include "node/node_app.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <unordered_map>

#include "cluster/clock_skew.h"
#include "cluster/local_replica.h"
#include "common/decimal.h"
#include "common/json.h"
#include "common/log.h"
#include "common/range_page.h"
#include "common/slots.h"
#include "http/connection.h"
#include "http/url.h"
#include "node/cluster_range.h"
#include "peer/auth_failures.h"
#include "peer/binary.h"
#include "peer/http_peer.h"
#include "peer/http_replica.h"
#include "proto/wire.h"

namespace kv::net {

namespace {

constexpr char kVersion[] = "0.1.0";
constexpr uint64_t kSeqBits = 56;  // Completion ctx2 = op << 56 | pipeline sequence number
constexpr uint64_t kMaxTtlSeconds = 3153600000;  // 100 years

std::string U64(uint64_t v) {
  return std::string(Decimal(v).view());
}

// Seconds from microseconds, with all six decimals (for /metrics).
std::string SecondsOfUs(uint64_t us) {
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
  return buf;
}

// One /metrics counter without labels: its help line, its type and its value.
void AppendCounter(std::string* t, const char* name, const char* help, std::string_view value) {
  *t += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " ";
  *t += value;
  *t += "\n";
}

// Streams a storage range as `key \n value` records, several per chunk, skipping tombstones and
// values expired by now_ms (Unix ms, when the range was asked for). At most `limit` records
// (0: no limit).
class RangeStream final : public BodyStream {
 public:
  RangeStream(std::unique_ptr<storage::Iterator> it, uint64_t now_ms, uint64_t limit)
      : it_(std::move(it)), now_ms_(now_ms), left_(limit == 0 ? UINT64_MAX : limit) {}
  bool Produce(std::string* out, size_t budget, bool* failed) override {
    size_t start = out->size();
    int visited = 0;
    while (left_ > 0 && it_->Valid() && out->size() - start < budget && visited < 4096) {
      ++visited;
      it_->Get(&e_);
      if (!e_.tombstone && !storage::Expired(e_.expires_ms, now_ms_)) {
        out->append(e_.key);
        out->push_back('\n');
        out->append(e_.value);
        --left_;
      }
      it_->Next();
    }
    if (left_ == 0) return false;
    if (it_->Valid()) return true;
    if (!it_->status().ok()) {
      LOG_ERROR("range stream aborted: %s", it_->status().message().c_str());
      *failed = true;
    }
    return false;
  }

 private:
  std::unique_ptr<storage::Iterator> it_;
  storage::Iterator::Entry e_;
  const uint64_t now_ms_;
  uint64_t left_;
};

// One loop's node: classifies and takes its connections (HTTP, binary peers), routes HTTP
// requests, and runs the loop's before-poll step.
class NodeApp final : public Service, public RequestHandler {
 public:
  NodeApp(Worker& worker, NodeShared* node)
      : worker_(worker), node_(node), cfg_(*node->config), cluster_(node->cluster) {
    const Config& cfg = cfg_;
    http_.worker = &worker;
    http_.handler = this;
    routes_ = {
        {"/v0/entity", false, Member(&NodeApp::Entity)},
        {"/v0/entities", false, Member(&NodeApp::Entities)},
        {"/v0/status", false, Member(&NodeApp::StatusRoute)},
        {"/v0/admin/repair", false, Member(&NodeApp::AdminRepair)},
        {"/v0/admin/compact", false, Member(&NodeApp::AdminCompact)},
        {"/v0/internal/repair/", true, Member(&NodeApp::InternalPost)},
        {"/v0/internal/hints", false, Member(&NodeApp::InternalPost)},
        {"/metrics", false, Member(&NodeApp::MetricsRoute)},
    };
    http_.metrics = &node->http_metrics[static_cast<size_t>(worker.index())];
    http_.limits.max_value_bytes = cfg.max_value_bytes;
    http_.limits.idle_timeout_ms = cfg.idle_timeout_ms;
    http_.limits.header_timeout_ms = cfg.header_timeout_ms;
    http_.limits.body_timeout_ms = cfg.body_timeout_ms;
    http_.limits.max_header_bytes = cfg.max_header_bytes;
    http_.limits.send_timeout_ms = cfg.send_timeout_ms;
    // Woken by the group committer's thread once a batch is durable (--fsync always).
    uv_async_init(worker.loop(), &synced_, [](uv_async_t* a) {
      auto* self = static_cast<NodeApp*>(a->data);
      self->local_->DeliverSynced();  // answers leave in this iteration's before-poll step
    });
    synced_.data = this;
    local_ = std::make_unique<cluster::LocalReplica>(
        cluster_->engine, &cluster_->hlc, cluster_->committer, [this] { uv_async_send(&synced_); });
    local_->set_max_clock_skew(cluster_->max_clock_skew_ms, &cluster_->replica_skew_refusals);
    http_replica_ = std::make_unique<HttpReplicaServer>(local_.get(), &cfg_.cluster_keys);
    std::vector<std::unique_ptr<cluster::PeerTransport>> transports;
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      transports.push_back(i == cluster_->self_index ? nullptr : MakeTransport(i));
    }
    cluster::CoordinatorOptions co;
    co.request_timeout_ms = cfg.request_timeout_ms;
    co.peer_timeout_min_ms = cfg.peer_timeout_min_ms;
    co.read_fanout = cfg.read_fanout;
    co.read_repair = cfg.read_repair;
    co.hints = node->hints;
    co.loop_index = worker.index();
    co.loops = static_cast<int>(node->loops);
    coordinator_ = std::make_unique<cluster::Coordinator>(cluster_, local_.get(),
                                                          std::move(transports), co, &env_);
    uv_timer_init(worker.loop(), &env_.timer);
    env_.worker = &worker;
    if (cluster::ForegroundLoad* load = node->load; load != nullptr) {
      const auto index = static_cast<size_t>(worker.index());
      worker.set_on_busy([load, index](uint32_t busy) { load->Publish(index, busy); });
    }
    env_.timer.data = &env_;
    coordinator_->Announce();
    BinaryServerContext ctx;
    ctx.local = local_.get();
    ctx.ring = &cluster_->ring;
    ctx.self_index = cluster_->self_index;
    ctx.on_peer_hello = [this](size_t node) {
      cluster_->breakers[node]->OnSuccess();
      coordinator_->OnPeerUp(node);
    };
    BinaryServerOptions bo;
    bo.handshake_timeout_ms = cfg.peer_handshake_timeout_ms;
    bo.max_pending_handshakes = cfg.max_pending_handshakes;
    bo.send_timeout_ms = cfg.send_timeout_ms;
    ctx.keys = cfg.cluster_keys;
    binary_server_ = MakeBinaryPeerServer(worker.loop(), ctx, bo);
    SetUpRepair();
  }

  void StatusRoute(Request& req, std::string_view, std::string_view, Responder r) {
    if (req.method != HTTP_GET) return r.Respond(405, "", {{"Allow", "GET"}});
    r.Respond(200, Status(), {{"Content-Type", "application/json"}});
  }

  void MetricsRoute(Request& req, std::string_view, std::string_view, Responder r) {
    if (req.method != HTTP_GET) return r.Respond(405, "", {{"Allow", "GET"}});
    r.Respond(200, MetricsText(), {{"Content-Type", "text/plain; version=0.0.4"}});
  }

  // Service: the binary peer preface, or HTTP.
  enum Protocol { kHttp = 0, kBinaryPeer = 1 };
  int Classify(std::string_view first) override {
    switch (proto::SniffPreface(first.data(), first.size())) {
      case proto::Sniff::kBinary:
        return kBinaryPeer;
      case proto::Sniff::kNeedMore:
        return kNeedMore;
      default:
        return kHttp;
    }
  }

  void Accept(int protocol, uv_tcp_t* handle, std::string_view first, bool over_limit) override {
    if (protocol == kBinaryPeer && !over_limit) return binary_server_->Adopt(handle, first);
    auto* c = new HttpConnection(&http_, handle, first);  // frees itself once closed
    if (over_limit) c->RejectOverloaded();
  }

  void BeforePoll() override {
    // Writes whose fdatasync ended while this iteration ran (--fsync always): answered now, so
    // their answers leave with this iteration's flush.
    local_->DeliverSynced();
    // The coordinator's timer fired in this iteration's timer phase (see LoopEnv::ArmTimer).
    if (env_.fired) {
      env_.fired = false;
      coordinator_->OnTimer();
    }
    // Peer frames leave before this loop's own replica writes (one write(2) for the iteration):
    // a replicated write waits for the slower of the two, not their sum. Answers can dispatch
    // further pipelined requests, which queue more of both: until none.
    do {
      coordinator_->FlushPeers();
    } while (local_->Commit());
    binary_server_->Flush();  // the answers to peers' frames of this iteration
    for (auto& t : repair_transports_)
      if (t) t->Flush();
  }

  size_t pending() const override {
    return coordinator_->pending() + local_->pending() + repair_pending_ + repair_waiting_.size();
  }

  void Close() override {
    while (local_->Commit()) {
    }
    local_->Drain();  // the committer must not hand a batch back to a closed loop
    coordinator_->Close();
    binary_server_->Close();
    CloseRepair();
    uv_close(reinterpret_cast<uv_handle_t*>(&env_.timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&synced_), nullptr);
  }

 private:
  // One transport to peer i, of the configured protocol.
  std::unique_ptr<cluster::PeerTransport> MakeTransport(size_t i) {
    const Config& cfg = cfg_;
    cluster::PeerEndpoint ep;
    ep.url = cluster_->ring.url(i);
    cluster::Ring::ParseUrl(ep.url, &ep.host, &ep.port);
    ep.self_url = cfg.self_url;
    ep.cluster_fingerprint = cluster_->ring.Fingerprint();
    if (cfg.peer_protocol == PeerProtocol::kHttp) {
      // Like the HTTP/1.1 clients of the course's services (java.net.http): pooled keep-alive
      // connections, one request in flight on each; pipelining only past 128 in flight.
      HttpPeerOptions o;
      o.max_connections = 128;
      o.open_new_at = 1;
      o.keys = cfg.cluster_keys;
      return MakeHttpPeerTransport(worker_.loop(), ep, o);
    }
    if (cfg.peer_protocol == PeerProtocol::kHttpPipelined) {
      HttpPeerOptions o;
      o.keys = cfg.cluster_keys;
      return MakeHttpPeerTransport(worker_.loop(), ep, o);
    }
    BinaryPeerOptions o;
    o.keys = cfg.cluster_keys;
    return MakeBinaryPeerTransport(worker_.loop(), ep, o);
  }

  // ---- anti-entropy ----------------------------------------------------------------------------
  void SetUpRepair() {
    inbox_ = std::make_shared<LoopInbox>();
    uv_async_init(worker_.loop(), &inbox_async_,
                  [](uv_async_t* a) { static_cast<NodeApp*>(a->data)->DrainInbox(); });
    inbox_async_.data = this;
    inbox_->async = &inbox_async_;
    inbox_->app = this;
    {
      std::lock_guard<std::mutex> l(node_->inbox_mu);
      node_->inboxes.push_back(inbox_);
    }
    if (node_->repair_server != nullptr) {
      // A peer's REPAIR_* request runs on the repair server's thread; its answer comes back here.
      local_->set_repair_handler([this](const cluster::PeerRequest& req, cluster::PeerWaiter* w,
                                        uint64_t cookie) {
        ++repair_pending_;
        std::shared_ptr<LoopInbox> inbox = inbox_;
        node_->repair_server->Submit(
            req.op, std::string(req.value), [this, inbox, w, cookie](cluster::PeerResponse&& r) {
              inbox->Post([this, w, cookie, resp = std::move(r)]() mutable {
                --repair_pending_;
                w->OnPeerResponse(cookie, std::move(resp));
              });
            });
      });
    }
    if (worker_.index() == 0 && node_->repair_link != nullptr) {
      repair_transports_.resize(cluster_->ring.size());
      uv_async_init(worker_.loop(), &repair_calls_,
                    [](uv_async_t* a) { static_cast<NodeApp*>(a->data)->SendRepairCalls(); });
      repair_calls_.data = this;
      repair_calls_open_ = true;
      node_->repair_link->Attach(&repair_calls_);
    }
  }

  void CloseRepair() {
    {
      std::lock_guard<std::mutex> l(inbox_->mu);
      inbox_->async = nullptr;
      inbox_->items.clear();
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&inbox_async_), nullptr);
    for (auto& w : repair_waiting_) w.second.Respond(503, "node shutting down\n");
    repair_waiting_.clear();
    if (repair_calls_open_) {
      node_->repair_link->Attach(nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&repair_calls_), nullptr);
      for (auto& t : repair_transports_)
        if (t) t->Close();
    }
  }

  void DrainInbox() {
    std::vector<std::function<void()>> items;
    {
      std::lock_guard<std::mutex> l(inbox_->mu);
      items.swap(inbox_->items);
    }
    for (auto& fn : items) fn();
  }

 public:
  // A finished repair: answer the ?wait=1 requests waiting for it.
  void OnRepairDone() {
    for (size_t i = 0; i < repair_waiting_.size();) {
      cluster::RepairSummary s;
      if (node_->repair_driver->Finished(repair_waiting_[i].first, &s)) {
        repair_waiting_[i].second.Respond(200, s.Json(), {{"Content-Type", "application/json"}});
        repair_waiting_.erase(repair_waiting_.begin() + static_cast<ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }

 private:
  // Loop 0: the driver's queued peer calls go out on this loop's repair transports.
  void SendRepairCalls() {
    for (auto& call : node_->repair_link->TakeQueued()) {
      auto& t = repair_transports_[call->node];
      if (!t) t = MakeTransport(call->node);
      const uint64_t cookie = ++repair_call_seq_;
      repair_calls_pending_.emplace(cookie, call);
      t->Send(cluster::PeerRequest{call->op, {}, call->body, 0},
              uv_now(worker_.loop()) + RepairLinkImpl::kCallTimeoutMs, &repair_call_waiter_,
              cookie);
      t->Flush();
    }
  }

  void OnRepairCallAnswer(uint64_t cookie, cluster::PeerResponse&& resp) {
    auto it = repair_calls_pending_.find(cookie);
    if (it == repair_calls_pending_.end()) return;
    std::shared_ptr<RepairLinkImpl::PendingCall> call = std::move(it->second);
    repair_calls_pending_.erase(it);
    if (resp.kind == cluster::PeerResponse::kRepairData) {
      call->Finish(true, std::move(resp.value), {});
    } else {
      call->Finish(false, {}, resp.error.empty() ? "unexpected answer" : resp.error);
    }
  }

  void AdminRepair(Request& req, std::string_view, std::string_view query, Responder r) {
    cluster::RepairDriver* d = node_->repair_driver;
    if (req.method == HTTP_GET) {
      if (!query.empty()) return r.Respond(400, "no parameters expected\n");
      return r.Respond(200, RepairJson() + "\n", {{"Content-Type", "application/json"}});
    }
    if (req.method != HTTP_POST) return r.Respond(405, "", {{"Allow", "GET, POST"}});
    std::string wait;
    const int w = QueryParam(query, "wait", &wait);
    if (w < 0 || (w > 0 && wait != "0" && wait != "1")) {
      return r.Respond(400, "wait must be 0 or 1\n");
    }
    if (d == nullptr) return r.Respond(503, "repair is not available on this node\n");
    uint64_t running = 0;
    const uint64_t id = d->Start(false, &running);
    if (id == 0) {
      // One repair at a time: a second request is refused, not joined (its caller may poll GET).
      return r.Respond(409, d->Current().Json(), {{"Content-Type", "application/json"}});
    }
    if (w > 0 && wait == "1") {
      repair_waiting_.emplace_back(id, r);
      cluster::RepairSummary s;
      if (d->Finished(id, &s)) OnRepairDone();  // it may have finished already
      return;
    }
    r.Respond(202, d->Current().Json(), {{"Content-Type", "application/json"}});
  }

  // Flushes the memtable and merges every segment into one (tombstones past the GC rule go), on
  // the repair server's thread: never on a loop.
  void AdminCompact(Request& req, std::string_view, std::string_view, Responder r) {
    if (req.method != HTTP_POST) return r.Respond(405, "", {{"Allow", "POST"}});
    if (node_->repair_server == nullptr) return r.Respond(503, "not available\n");
    storage::Engine* engine = cluster_->engine;
    ++repair_pending_;
    std::shared_ptr<LoopInbox> inbox = inbox_;
    node_->repair_server->RunTask(
        [engine] {
          cluster::PeerResponse resp;
          storage::Status st = engine->Flush();
          if (st.ok()) st = engine->CompactAll();
          if (st.ok()) {
            resp.kind = cluster::PeerResponse::kStored;
          } else {
            resp.error = st.message();
          }
          return resp;
        },
        [this, inbox, r](cluster::PeerResponse&& resp) {
          inbox->Post([this, r, ok = resp.kind == cluster::PeerResponse::kStored,
                       err = resp.error]() mutable {
            --repair_pending_;
            if (ok)
              return r.Respond(200, "{\"compacted\":true}\n",
                               {{"Content-Type", "application/json"}});
            r.Respond(500, "compaction failed: " + err + "\n");
          });
        });
  }

  // The internal requests that POST a body: anti-entropy's and hint replay's.
  void InternalPost(Request& req, std::string_view path, std::string_view, Responder r) {
    cluster::PeerOp op;
    if (path == "/v0/internal/hints") {
      op = cluster::PeerOp::kHints;
    } else if (path == "/v0/internal/repair/tree") {
      op = cluster::PeerOp::kRepairTree;
    } else if (path == "/v0/internal/repair/entries") {
      op = cluster::PeerOp::kRepairEntries;
    } else if (path == "/v0/internal/repair/apply") {
      op = cluster::PeerOp::kRepairApply;
    } else {
      return r.Respond(400, "unknown path\n");
    }
    if (req.method != HTTP_POST) return r.Respond(405, "", {{"Allow", "POST"}});
    if (!HttpReplicaServer::IsReplicaRequest(req)) {
      return r.Respond(400, "internal requests need X-KV-Internal: 1\n");
    }
    if (cfg_.peer_protocol == PeerProtocol::kBinary && !cfg_.cluster_keys.enabled()) {
      return r.Respond(403, "peer requests are not accepted over HTTP in binary peer mode\n");
    }
    if (cluster::IsRepairOp(op) && node_->repair_server == nullptr) {
      return r.Respond(503, "not available\n");
    }
    http_replica_->HandleBody(req, op, r);
  }

  void RepairMetrics(std::string* t) const {
    using C = cluster::RepairCounters;
    static constexpr struct {
      const char* name;
      const char* help;
      std::atomic<uint64_t> C::*field;
    } kCounters[] = {
        {"kv_repair_runs_total", "Anti-entropy repairs this node drove.", &C::runs},
        {"kv_repair_runs_failed_total", "Repairs that did not reach every replica of a range.",
         &C::runs_failed},
        {"kv_repair_ranges_total", "Ranges repaired (attempted).", &C::ranges},
        {"kv_repair_keys_compared_total", "Local entries covered by repair hash trees.",
         &C::keys_compared},
        {"kv_repair_keys_differed_total", "Keys a repair found different on a peer.",
         &C::keys_differed},
        {"kv_repair_entries_sent_total", "Entries a repair pushed to peers.", &C::entries_sent},
        {"kv_repair_entries_received_total", "Entries a repair took from peers.",
         &C::entries_received},
        {"kv_repair_bytes_sent_total", "Repair request bytes this node sent.", &C::bytes_sent},
        {"kv_repair_bytes_received_total", "Repair answer bytes this node received.",
         &C::bytes_received},
        {"kv_repair_requests_served_total", "Peers' repair requests this node answered.",
         &C::served},
        {"kv_repair_entries_refused_total",
         "Repaired entries refused as too far ahead of this node's clock.", &C::refused},
    };
    const C* c = node_->repair_counters;
    for (const auto& k : kCounters) {
      AppendCounter(t, k.name, k.help, U64(c ? (c->*k.field).load() : 0));
    }
    const bool running = node_->repair_driver && node_->repair_driver->Current().running;
    *t += std::string("# TYPE kv_repair_running gauge\nkv_repair_running ") +
          (running ? "1" : "0") + "\n";
  }

  static bool ParseOpMethod(int method, cluster::PeerOp* op) {
    switch (method) {
      case HTTP_GET:
        *op = cluster::PeerOp::kGet;
        return true;
      case HTTP_PUT:
        *op = cluster::PeerOp::kPut;
        return true;
      case HTTP_DELETE:
        *op = cluster::PeerOp::kRemove;
        return true;
      default:
        return false;
    }
  }

  void Entity(Request& req, std::string_view, std::string_view query, Responder r) {
    cluster::PeerOp op;
    if (!ParseOpMethod(req.method, &op)) return r.Respond(405, "", {{"Allow", "GET, PUT, DELETE"}});
    // Every parameter of the route in one pass over the query (a replica's expires too).
    std::string* text = param_buf_;
    int found[kEntityParams];
    QueryParams(query, kEntityParamNames, kEntityParams, text, found);
    const std::string& key = text[kId];
    if (found[kId] < 0) return r.Respond(400, "malformed percent-encoding in id\n");
    if (found[kId] == 0 || key.empty()) return r.Respond(400, "id is required\n");
    if (HttpReplicaServer::IsReplicaRequest(req)) {
      // In binary peer mode without a cluster secret peers never come through HTTP: a client
      // claiming to be one is refused, so no client can write a replica's data with a version
      // of its choosing. With a secret, the request must prove it (http_replica: 401).
      if (cfg_.peer_protocol == PeerProtocol::kBinary && !cfg_.cluster_keys.enabled()) {
        return r.Respond(403, "peer requests are not accepted over HTTP in binary peer mode\n");
      }
      return http_replica_->Handle(req, op, key, found[kExpires], text[kExpires], r);
    }

    int n = static_cast<int>(cluster_->ring.size());
    uint64_t ack = 0, from = 0;
    const int has_ack = found[kAck], has_from = found[kFrom];
    if (has_ack > 0 && !ParseU64(text[kAck], &ack)) return r.Respond(400, "ack must be a number\n");
    if (has_from > 0 && !ParseU64(text[kFrom], &from)) {
      return r.Respond(400, "from must be a number\n");
    }
    if (has_ack < 0 || has_from < 0) return r.Respond(400, "malformed ack/from\n");
    if (has_from <= 0) from = static_cast<uint64_t>(n);
    if (has_ack <= 0) ack = from / 2 + 1;
    if (from < 1 || from > static_cast<uint64_t>(n) ||
        from > static_cast<uint64_t>(cluster::Accumulator::kMaxReplicas)) {
      return r.Respond(400, "from must be between 1 and the cluster size\n");
    }
    if (ack < 1 || ack > from) return r.Respond(400, "ack must be between 1 and from\n");
    // ttl=SECONDS (PUT only): the coordinator fixes the absolute expiry, replicated with the write.
    uint64_t expires_ms = 0;
    const int has_ttl = found[kTtl];
    if (has_ttl != 0) {
      uint64_t ttl = 0;
      if (op != cluster::PeerOp::kPut) return r.Respond(400, "ttl applies to PUT only\n");
      if (has_ttl < 0 || !ParseU64(text[kTtl], &ttl) || ttl < 1 || ttl > kMaxTtlSeconds) {
        return r.Respond(400, "ttl must be a whole number of seconds from 1 to 3153600000\n");
      }
      expires_ms = cluster_->hlc.WallUs() / 1000 + ttl * 1000;
    }

    cluster::Completion done;
    done.fn = &NodeApp::OnOutcome;
    done.ctx = r.connection();
    done.ctx2 = (static_cast<uint64_t>(op) << kSeqBits) | r.sequence();
    coordinator_->Execute(op, key, req.body, static_cast<int>(ack), static_cast<int>(from), done,
                          expires_ms);
  }

  static void OnOutcome(void* conn, uint64_t ctx2, cluster::Outcome&& o) {
    auto op = static_cast<cluster::PeerOp>(ctx2 >> kSeqBits);
    Responder r(static_cast<HttpConnection*>(conn), ctx2 & ((uint64_t{1} << kSeqBits) - 1));
    switch (o.kind) {
      case cluster::Outcome::kValue:
        return r.Respond(200, o.value);
      case cluster::Outcome::kNotFound:
        return r.Respond(404, "");
      case cluster::Outcome::kStored:
        return r.Respond(op == cluster::PeerOp::kPut ? 201 : 202, "");
      case cluster::Outcome::kNoSpace:
        return r.Respond(507, "no space left on device\n");
      default:
        return r.Respond(504, "not enough replicas answered\n");
    }
  }

  // A positive integer query parameter: 1 when present and valid, 0 when absent, -1 when bad.
  static int PositiveParam(std::string_view query, std::string_view name, uint64_t max,
                           uint64_t* out) {
    std::string text;
    const int found = QueryParam(query, name, &text);
    if (found == 0) return 0;
    if (found < 0 || !ParseU64(text, out) || *out == 0 || *out > max) return -1;
    return 1;
  }

  void Entities(Request& req, std::string_view, std::string_view query, Responder r) {
    if (req.method != HTTP_GET) return r.Respond(405, "", {{"Allow", "GET"}});
    std::string start, end;
    int s = QueryParam(query, "start", &start);
    int e = QueryParam(query, "end", &end);
    if (s < 0 || e < 0) return r.Respond(400, "malformed percent-encoding\n");
    if (HttpReplicaServer::IsReplicaRequest(req)) return RangePage(req, query, s, start, e, end, r);
    if (s == 0 || start.empty()) return r.Respond(400, "start is required\n");
    uint64_t limit = 0, from = 0;
    if (PositiveParam(query, "limit", UINT64_MAX, &limit) < 0) {
      return r.Respond(400, "limit must be a positive integer\n");
    }
    std::string scope;
    const int has_scope = QueryParam(query, "scope", &scope);
    if (has_scope < 0 || (has_scope > 0 && scope != "cluster" && scope != "local")) {
      return r.Respond(400, "scope must be cluster or local\n");
    }
    const uint64_t n = cluster_->ring.size();
    const int has_from = PositiveParam(query, "from", n, &from);
    if (has_from < 0) return r.Respond(400, "from must be between 1 and the cluster size\n");
    if (has_from > 0 && scope != "cluster") return r.Respond(400, "from needs scope=cluster\n");
    if (scope == "cluster") {
      ClusterRangeRead read;
      read.start = std::move(start);
      if (e > 0) read.end = std::move(end);
      read.limit = limit;
      read.from = has_from > 0 ? from : n;
      ClusterRangeEnv env;
      env.coordinator = coordinator_.get();
      env.local = local_.get();
      env.self = cluster_->self_index;
      env.nodes = n;
      env.loop = worker_.loop();
      env.timeout_ms = cfg_.request_timeout_ms;
      return StartClusterRange(env, std::move(read), r);
    }
    std::optional<std::string_view> end_opt;
    if (e > 0) end_opt = end;
    auto it = cluster_->engine->Scan(start, end_opt);
    r.Stream(200,
             std::make_unique<RangeStream>(std::move(it), cluster_->hlc.WallUs() / 1000, limit),
             {{"Content-Type", "application/octet-stream"}});
  }

  // A peer's page request (X-KV-Internal): start (may be empty), end, max_keys, max_bytes.
  void RangePage(Request& req, std::string_view query, int s, const std::string& start, int e,
                 const std::string& end, Responder r) {
    if (cfg_.peer_protocol == PeerProtocol::kBinary && !cfg_.cluster_keys.enabled()) {
      return r.Respond(403, "peer requests are not accepted over HTTP in binary peer mode\n");
    }
    uint64_t max_keys = 0, max_bytes = 0;
    if (s == 0 || start.size() > range_page::kMaxStartBytes ||
        end.size() > range_page::kMaxKeyBytes ||
        PositiveParam(query, "max_keys", UINT32_MAX, &max_keys) <= 0 ||
        PositiveParam(query, "max_bytes", UINT32_MAX, &max_bytes) <= 0) {
      return r.Respond(400, "a page request needs start, max_keys and max_bytes\n");
    }
    cluster::PeerRequest page{};
    page.op = cluster::PeerOp::kRange;
    page.key = start;
    page.end = end;
    page.has_end = e > 0;
    page.max_keys = static_cast<uint32_t>(max_keys);
    page.max_bytes = static_cast<uint32_t>(max_bytes);
    http_replica_->HandleRange(req, page, r);
  }

  std::string Status() const {
    const Config& cfg = cfg_;
    uint64_t now_ms = MonotonicNs() / 1000000;
    std::string j =
        "{\"url\":" + JsonString(cfg.self_url) + ",\"version\":" + JsonString(kVersion) +
        ",\"cluster_size\":" + U64(cluster_->ring.size()) +
        ",\"uptime_s\":" + U64((now_ms - worker_.server()->start_time_ms()) / 1000) +
        ",\"threads\":" + U64(static_cast<uint64_t>(cfg.threads)) +
        ",\"peer_protocol\":" + JsonString(PeerProtocolName(cfg.peer_protocol)) +
        ",\"read_fanout\":" +
        JsonString(cfg.read_fanout == cluster::ReadFanout::kAll ? "all" : "hedged") +
        ",\"open_connections\":" +
        U64(static_cast<uint64_t>(worker_.server()->open_connections().load())) + ",\"peers\":[";
    bool first = true;
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      auto& br = *cluster_->breakers[i];
      j += first ? "" : ",";
      first = false;
      j += "{\"url\":" + JsonString(cluster_->ring.url(i)) +
           ",\"state\":" + JsonString(cluster::CircuitBreaker::StateName(br.state(now_ms))) +
           ",\"failures\":" + U64(cluster_->peer_failures[i]->load()) +
           ",\"timeout_ms\":" + U64((PeerTimeoutUs(i) + 999) / 1000) +
           ",\"skew_refusals\":" + U64(cluster_->peer_skew_refusals[i]->load()) +
           ",\"last_skew_ms\":" + U64(cluster_->peer_last_skew_ms[i]->load()) +
           ",\"hints_pending_bytes\":" + U64(node_->hints ? node_->hints->pending_bytes(i) : 0) +
           "}";
    }
    j += "],\"max_clock_skew_ms\":" + U64(cluster_->max_clock_skew_ms) +
         ",\"skew_refusals\":" + U64(cluster_->replica_skew_refusals.load()) +
         ",\"hinted_handoff\":" + (node_->hints ? "true" : "false") +
         ",\"repair\":" + RepairJson() + "}\n";
    return j;
  }

  // The running or last repair, as GET /v0/admin/repair shows it (one line, no newline).
  std::string RepairJson() const {
    std::string j = node_->repair_driver ? node_->repair_driver->Current().Json()
                                         : cluster::RepairSummary().Json();
    if (!j.empty() && j.back() == '\n') j.pop_back();
    return j;
  }

  // The replica request timeout a loop last used for node i; the request timeout until then.
  uint64_t PeerTimeoutUs(size_t i) const {
    uint64_t us = cluster_->peer_timeout_us[i]->load(std::memory_order_relaxed);
    return us != 0 ? us : cfg_.request_timeout_ms * 1000;
  }

  std::string MetricsText() const {
    static const char* kMethods[] = {"GET", "PUT", "DELETE", "OTHER"};
    uint64_t counts[Metrics::kMethods][600] = {};
    uint64_t buckets[Metrics::kBuckets] = {};
    uint64_t sum_ns = 0, count = 0, proto_errors = 0, rejected = 0;
    for (size_t w = 0; w < node_->loops; ++w) {
      const Metrics& m = node_->http_metrics[w];
      for (int a = 0; a < Metrics::kMethods; ++a)
        for (int s = 0; s < 600; ++s) counts[a][s] += m.requests[a][s].load();
      for (int b = 0; b < Metrics::kBuckets; ++b) buckets[b] += m.latency_buckets[b].load();
      sum_ns += m.latency_sum_ns.load();
      count += m.latency_count.load();
      proto_errors += m.protocol_errors.load();
      rejected += m.rejected_connections.load();
    }
    std::string t;
    t += "# HELP kv_requests_total HTTP requests answered, by method and status.\n";
    t += "# TYPE kv_requests_total counter\n";
    for (int a = 0; a < Metrics::kMethods; ++a)
      for (int s = 0; s < 600; ++s)
        if (counts[a][s])
          t += std::string("kv_requests_total{method=\"") + kMethods[a] + "\",status=\"" +
               U64(static_cast<uint64_t>(s)) + "\"} " + U64(counts[a][s]) + "\n";
    t += "# HELP kv_request_duration_seconds Time from a complete request to its answer.\n";
    t += "# TYPE kv_request_duration_seconds histogram\n";
    uint64_t cum = 0;
    for (int b = 0; b < Metrics::kBuckets; ++b) {
      cum += buckets[b];
      char le[32];
      if (b == Metrics::kBuckets - 1)
        snprintf(le, sizeof le, "+Inf");
      else
        snprintf(le, sizeof le, "%g", Metrics::kBucketBounds[b]);
      t += std::string("kv_request_duration_seconds_bucket{le=\"") + le + "\"} " + U64(cum) + "\n";
    }
    char sum[64];
    snprintf(sum, sizeof sum, "%.9f", static_cast<double>(sum_ns) / 1e9);
    t += std::string("kv_request_duration_seconds_sum ") + sum + "\n";
    t += "kv_request_duration_seconds_count " + U64(count) + "\n";
    if (node_->load != nullptr) {
      t += "# HELP kv_loop_busy_ratio Share of the last ~100 ms each event loop spent outside its "
           "poll, plus the share its thread waited for a CPU (capped at 1); hint replay and repair "
           "slow down above 0.5.\n# TYPE kv_loop_busy_ratio gauge\n";
      for (size_t w = 0; w < node_->load->loops(); ++w) {
        char v[32];
        snprintf(v, sizeof v, "%.3f", node_->load->busy(w) / 1000.0);
        t += "kv_loop_busy_ratio{loop=\"" + U64(w) + "\"} " + v + "\n";
      }
    }
    t += "# TYPE kv_open_connections gauge\n";
    t += "kv_open_connections " +
         U64(static_cast<uint64_t>(worker_.server()->open_connections().load())) + "\n";
    t += "# TYPE kv_protocol_errors_total counter\nkv_protocol_errors_total " + U64(proto_errors) +
         "\n";
    t += "# TYPE kv_rejected_connections_total counter\nkv_rejected_connections_total " +
         U64(rejected) + "\n";
    t += "# HELP kv_peer_auth_failures_total Peers refused for want of a valid proof of the "
         "cluster secret, by transport and reason.\n";
    t += "# TYPE kv_peer_auth_failures_total counter\n";
    for (size_t k = 0; k < kAuthFailureKinds; ++k) {
      const auto kind = static_cast<AuthFailure>(k);
      t += std::string("kv_peer_auth_failures_total{reason=\"") + AuthFailureName(kind) + "\"} " +
           U64(AuthFailureCount(kind)) + "\n";
    }
    t += "# HELP kv_peer_failures_total Failed replica requests, by peer.\n";
    t += "# TYPE kv_peer_failures_total counter\n";
    uint64_t now_ms = MonotonicNs() / 1000000;
    std::string states;
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      const std::string& u = cluster_->ring.url(i);
      t += "kv_peer_failures_total{peer=\"" + u + "\"} " + U64(cluster_->peer_failures[i]->load()) +
           "\n";
      states +=
          "kv_peer_circuit_open{peer=\"" + u + "\"} " +
          (cluster_->breakers[i]->state(now_ms) == cluster::CircuitBreaker::State::kClosed ? "0"
                                                                                           : "1") +
          "\n";
    }
    t += "# TYPE kv_peer_circuit_open gauge\n" + states;
    t += "# HELP kv_peer_timeout_seconds Current replica request timeout, by peer.\n";
    t += "# TYPE kv_peer_timeout_seconds gauge\n";
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      t += "kv_peer_timeout_seconds{peer=\"" + cluster_->ring.url(i) + "\"} " +
           SecondsOfUs(PeerTimeoutUs(i)) + "\n";
    }
    t += "# HELP kv_peer_skew_refusals_total This node's writes a peer refused as too far ahead "
         "of its clock, by peer.\n";
    t += "# TYPE kv_peer_skew_refusals_total counter\n";
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      t += "kv_peer_skew_refusals_total{peer=\"" + cluster_->ring.url(i) + "\"} " +
           U64(cluster_->peer_skew_refusals[i]->load()) + "\n";
    }
    t += "# HELP kv_peer_last_skew_seconds How far ahead of a peer's clock it found this node's "
         "last refused write, by peer.\n";
    t += "# TYPE kv_peer_last_skew_seconds gauge\n";
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      t += "kv_peer_last_skew_seconds{peer=\"" + cluster_->ring.url(i) + "\"} " +
           SecondsOfUs(cluster_->peer_last_skew_ms[i]->load() * 1000) + "\n";
    }
    t += "# HELP kv_replica_skew_refusals_total Writes this node's replica refused as more than "
         "--max-clock-skew-ms ahead of its clock.\n";
    t += "# TYPE kv_replica_skew_refusals_total counter\nkv_replica_skew_refusals_total " +
         U64(cluster_->replica_skew_refusals.load()) + "\n";
    t += "# HELP kv_peer_requests_total Replica requests sent, by peer.\n";
    t += "# TYPE kv_peer_requests_total counter\n";
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      t += "kv_peer_requests_total{peer=\"" + cluster_->ring.url(i) + "\"} " +
           U64(cluster_->PeerRequests(i)) + "\n";
    }
    t += "# HELP kv_get_slow_peer_passes_total GETs that asked a later replica before a peer "
         "clearly slower than it, by that peer.\n";
    t += "# TYPE kv_get_slow_peer_passes_total counter\n";
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      t += "kv_get_slow_peer_passes_total{peer=\"" + cluster_->ring.url(i) + "\"} " +
           U64(cluster_->SlowPeerPasses(i)) + "\n";
    }
    storage::Stats st = cluster_->engine->GetStats();
    auto metric = [&t](const char* name, const char* kind, uint64_t value) {
      t += std::string("# TYPE ") + name + " " + kind + "\n" + name + " " + U64(value) + "\n";
    };
    metric("kv_get_hedges_total", "counter", cluster_->get_hedges.load());
    metric("kv_get_retries_total", "counter", cluster_->get_retries.load());
    t += "# HELP kv_read_repairs_total Read repair writes sent to stale replicas: while the "
         "client waited (blocking) or after it was answered (background).\n";
    t += "# TYPE kv_read_repairs_total counter\n";
    t += "kv_read_repairs_total{mode=\"blocking\"} " + U64(cluster_->read_repairs_blocking.load()) +
         "\n";
    t += "kv_read_repairs_total{mode=\"background\"} " +
         U64(cluster_->read_repairs_background.load()) + "\n";
    t += "# HELP kv_read_repair_failures_total Read repair writes that failed.\n";
    metric("kv_read_repair_failures_total", "counter", cluster_->read_repair_failures.load());
    t += "# HELP kv_read_repairs_skipped_total Background read repairs not sent: this loop "
         "already had the most in flight.\n";
    metric("kv_read_repairs_skipped_total", "counter", cluster_->read_repairs_skipped.load());
    t += std::string("# HELP kv_get_hedge_delay_seconds This loop's hedge delay for GETs.\n") +
         "# TYPE kv_get_hedge_delay_seconds gauge\nkv_get_hedge_delay_seconds " +
         SecondsOfUs(coordinator_->hedge_delay_us()) + "\n";
    HintMetrics(&t);
    RepairMetrics(&t);
    metric("kv_storage_memtable_bytes", "gauge", st.memtable_bytes);
    metric("kv_storage_segments", "gauge", st.segments);
    metric("kv_storage_segment_bytes", "gauge", st.segment_bytes);
    metric("kv_storage_index_filter_bytes", "gauge", st.index_filter_bytes);
    metric("kv_storage_keys_estimate", "gauge", st.keys_estimate);
    metric("kv_storage_flushes_total", "counter", st.flushes);
    metric("kv_storage_frozen_memtables", "gauge", st.frozen_memtables);
    metric("kv_storage_background_jobs", "gauge", st.background_jobs);
    metric("kv_storage_flush_waits_total", "counter", st.flush_waits);
    metric("kv_storage_freezes_without_spare_total", "counter", st.freezes_without_spare);
    metric("kv_storage_compactions_total", "counter", st.compactions);
    FsyncMetrics(&t);
    return t;
  }

  // The group commit of --fsync always (zeros otherwise): writes_total / syncs_total is the
  // number of writes one fdatasync made durable; the seconds, divided by syncs or writes, say
  // where a write's wait for the disk went.
  void FsyncMetrics(std::string* t) const {
    cluster::GroupCommitter::Counters c;
    if (cluster_->committer != nullptr) c = cluster_->committer->counters();
    AppendCounter(t, "kv_fsync_syncs_total",
                  "Group commits of --fsync always: each one fdatasync covering every write "
                  "handed over before it started.",
                  U64(c.syncs));
    AppendCounter(t, "kv_fsync_writes_total",
                  "Writes the group commits made durable (divided by kv_fsync_syncs_total: "
                  "writes per sync).",
                  U64(c.writes));
    AppendCounter(t, "kv_fsync_sync_seconds_total", "Time spent in the group commits' fdatasync.",
                  SecondsOfUs(c.sync_ns / 1000));
    AppendCounter(t, "kv_fsync_queue_seconds_total",
                  "Summed over writes: from being handed to the group commit to the start of the "
                  "fdatasync that covered them.",
                  SecondsOfUs(c.queue_ns / 1000));
    AppendCounter(t, "kv_fsync_wake_seconds_total",
                  "Summed over writes: from the end of their fdatasync to their answer on the "
                  "loop.",
                  SecondsOfUs(c.wake_ns / 1000));
  }

  // Hinted handoff's counters (zeros when it is off), and the bytes of hints kept per peer.
  void HintMetrics(std::string* t) const {
    const cluster::HintShared* h = node_->hints;
    *t +=
        "# HELP kv_hints_written_total Hints kept for peers that did not acknowledge a write.\n"
        "# TYPE kv_hints_written_total counter\nkv_hints_written_total " +
        U64(h ? h->written() : 0) + "\n";
    *t +=
        "# HELP kv_hints_replayed_total Hints a peer acknowledged on replay.\n"
        "# TYPE kv_hints_replayed_total counter\nkv_hints_replayed_total " +
        U64(h ? h->replayed() : 0) + "\n";
    *t +=
        "# HELP kv_hints_dropped_total Hints not kept or not replayed: older than the "
        "tombstone GC grace (expired), past --max-hints-bytes (full), damaged (corrupt), "
        "unwritable (io_error).\n# TYPE kv_hints_dropped_total counter\n";
    for (int r = 0; r < cluster::HintShared::kDropReasons; ++r) {
      *t += std::string("kv_hints_dropped_total{reason=\"") + cluster::HintShared::DropName(r) +
            "\"} " + U64(h ? h->dropped(r) : 0) + "\n";
    }
    *t +=
        "# HELP kv_hints_pending_bytes Bytes of hints kept for a peer, by peer.\n"
        "# TYPE kv_hints_pending_bytes gauge\n";
    for (size_t i = 0; i < cluster_->ring.size(); ++i) {
      if (i == cluster_->self_index) continue;
      *t += "kv_hints_pending_bytes{peer=\"" + cluster_->ring.url(i) + "\"} " +
            U64(h ? h->pending_bytes(i) : 0) + "\n";
    }
  }

  // The coordinator's clocks and hedge timer, on this loop.
  struct LoopEnv final : cluster::CoordinatorEnv {
    uv_timer_t timer;
    // Set in the timer phase; the before-poll step of the same iteration passes it on to the
    // Coordinator (after every other callback of the iteration, so it sees their answers).
    bool fired = false;
    uint64_t NowMs() override { return uv_now(timer.loop); }
    uint64_t NowUs() override { return uv_hrtime() / 1000; }
    uint32_t BusyPermille() override { return worker->busy_permille(); }
    const Worker* worker = nullptr;
    void ArmTimer(uint64_t delay_ms) override {
      uv_timer_start(
          &timer, [](uv_timer_t* t) { static_cast<LoopEnv*>(t->data)->fired = true; }, delay_ms, 0);
    }
  };

  Worker& worker_;
  NodeShared* node_;
  const Config& cfg_;
  cluster::ClusterState* cluster_;
  HttpContext http_;
  LoopEnv env_;
  std::unique_ptr<cluster::Coordinator> coordinator_;
  // This loop's replica: the coordinator's own writes, HTTP internal requests and binary peer
  // frames all go through it.
  std::unique_ptr<cluster::LocalReplica> local_;
  uv_async_t synced_;
  std::unique_ptr<HttpReplicaServer> http_replica_;
  std::unique_ptr<BinaryPeerServer> binary_server_;
  // Entity's query parameters, in this order; their decoded values kept for their capacity.
  enum { kId, kAck, kFrom, kTtl, kExpires, kEntityParams };
  static constexpr std::string_view kEntityParamNames[kEntityParams] = {"id", "ack", "from", "ttl",
                                                                        "expires"};
  std::string param_buf_[kEntityParams];
  // Anti-entropy: this loop's inbox, repair requests and compactions not answered yet, the
  // ?wait=1 requests waiting for a repair; on loop 0 the driver's calls, their transports.
  std::shared_ptr<LoopInbox> inbox_;
  uv_async_t inbox_async_;
  size_t repair_pending_ = 0;
  std::vector<std::pair<uint64_t, Responder>> repair_waiting_;
  uv_async_t repair_calls_;
  bool repair_calls_open_ = false;
  std::vector<std::unique_ptr<cluster::PeerTransport>> repair_transports_;
  std::unordered_map<uint64_t, std::shared_ptr<RepairLinkImpl::PendingCall>> repair_calls_pending_;
  uint64_t repair_call_seq_ = 0;
  cluster::MemberWaiter<NodeApp, &NodeApp::OnRepairCallAnswer> repair_call_waiter_{this};
};

}  // namespace

void LoopInbox::Post(std::function<void()> fn) {
  std::lock_guard<std::mutex> l(mu);
  if (async == nullptr) return;
  items.push_back(std::move(fn));
  uv_async_send(async);
}

void NotifyRepairDone(NodeShared* node) {
  std::lock_guard<std::mutex> l(node->inbox_mu);
  for (auto& inbox : node->inboxes) {
    // The closure runs on that loop, while its NodeApp lives (a closed inbox drops it).
    void* app = inbox->app;
    inbox->Post([app] { static_cast<NodeApp*>(app)->OnRepairDone(); });
  }
}

std::unique_ptr<Service> MakeNodeService(Worker& worker, NodeShared* node) {
  return std::make_unique<NodeApp>(worker, node);
}

WorkerOptions WorkerOptionsOf(const Config& cfg) {
  WorkerOptions o;
  o.port = cfg.port;
  o.threads = cfg.threads;
  o.max_connections = cfg.max_connections;
  o.idle_timeout_ms = cfg.idle_timeout_ms;
  // A connection that has not said enough to tell its protocol is idle, or stuck in headers.
  o.first_bytes_timeout_ms = std::min(cfg.idle_timeout_ms, cfg.header_timeout_ms);
  return o;
}

}  // namespace kv::net
