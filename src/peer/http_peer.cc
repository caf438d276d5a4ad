#include "peer/http_peer.h"

#include <strings.h>
#include <time.h>

#include <algorithm>
#include <charconv>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/clock_skew.h"
#include "common/decimal.h"
#include "common/log.h"
#include "http/client.h"
#include "http/url.h"

namespace kv::net {

namespace {

using cluster::PeerEndpoint;
using cluster::PeerOp;
using cluster::PeerRequest;
using cluster::PeerResponse;
using cluster::PeerWaiter;

constexpr std::string_view kTimeout = "timeout";
constexpr std::string_view kAborted = "aborted: pipeline timed out";
constexpr std::string_view kClosed = "closed";

// A timeout, and the requests a timeout aborted, are slow failures (PeerResponse::slow).
PeerResponse ErrorResponse(std::string_view reason) {
  PeerResponse r;
  r.kind = PeerResponse::kError;
  r.error.assign(reason);
  r.slow = reason == kTimeout || reason == kAborted;
  return r;
}

// One request waiting for its answer, in wire order on its connection.
struct Slot {
  PeerWaiter* waiter;
  uint64_t cookie;
  uint64_t deadline_ms;
  size_t bytes;
  PeerOp op;
  bool ping = false;  // GET /v0/status: 200 is kPong
};

// A failure to deliver once the transport's state is consistent again.
struct Failure {
  PeerWaiter* waiter;
  uint64_t cookie;
  std::string_view reason;  // static or owned by the transport until delivered
};

// FIFO of slots on a ring that only grows: no allocation per request once warm.
class SlotQueue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  const Slot& operator[](size_t i) const { return ring_[(head_ + i) & (ring_.size() - 1)]; }
  const Slot& front() const { return ring_[head_]; }
  void pop_front() {
    head_ = (head_ + 1) & (ring_.size() - 1);
    --size_;
  }
  void push_back(const Slot& s) {
    if (size_ == ring_.size()) Grow();
    ring_[(head_ + size_) & (ring_.size() - 1)] = s;
    ++size_;
  }

 private:
  void Grow() {
    std::vector<Slot> bigger(ring_.empty() ? 16 : 2 * ring_.size());
    for (size_t i = 0; i < size_; ++i) bigger[i] = (*this)[i];
    ring_.swap(bigger);
    head_ = 0;
  }
  std::vector<Slot> ring_;  // size is a power of two
  size_t head_ = 0;
  size_t size_ = 0;
};

struct Conn {
  HttpClientConnection* client = nullptr;
  SlotQueue fifo;
  size_t bytes = 0;       // estimated request bytes in fifo
  bool draining = false;  // server said Connection: close; no new requests
  bool dirty = false;     // has unflushed output
  // The response being parsed (it answers fifo.front()).
  int status = 0;
  bool has_version = false;
  bool bad_version = false;
  bool tombstone = false;
  uint64_t version = 0;
  uint64_t skew_ms = 0;     // X-KV-Clock-Skew-Ms: a write refused for clock skew
  uint64_t expires_ms = 0;  // X-KV-Expires: a GET's value expires then (0: never, or malformed)
  std::string body;

  void ResetResponse() {
    status = 0;
    has_version = bad_version = tombstone = false;
    version = skew_ms = expires_ms = 0;
    body.clear();
  }
};

// Maps the parsed response to what the coordinator sees; takes the body of a GET or repair 200.
PeerResponse MapResponse(const Slot& slot, Conn& c) {
  PeerResponse r;
  if (slot.ping && c.status == 200) {
    r.kind = PeerResponse::kPong;
    return r;
  }
  auto need_version = [&](PeerResponse::Kind kind) {
    if (!c.has_version || c.bad_version) return ErrorResponse("bad version");
    PeerResponse ok;
    ok.kind = kind;
    ok.version = c.version;
    return ok;
  };
  switch (slot.ping ? PeerOp{} : slot.op) {
    case PeerOp::kGet:
      if (c.status == 200) {
        r = need_version(PeerResponse::kValue);
        if (r.kind == PeerResponse::kValue) {
          r.value = std::move(c.body);
          r.expires_ms = c.expires_ms;
        }
        return r;
      }
      if (c.status == 404) {
        if (c.has_version || c.tombstone) return need_version(PeerResponse::kTombstone);
        r.kind = PeerResponse::kAbsent;
        return r;
      }
      break;
    case PeerOp::kPut:
      if (c.status == 201) return need_version(PeerResponse::kStored);
      break;
    case PeerOp::kRemove:
    case PeerOp::kHints:
      if (c.status == 202) return need_version(PeerResponse::kStored);
      break;
    case PeerOp::kRange:
      if (c.status == 200) {
        r.kind = PeerResponse::kPage;
        r.value = std::move(c.body);
        return r;
      }
      break;
    case PeerOp::kRepairTree:
    case PeerOp::kRepairEntries:
    case PeerOp::kRepairApply:
      if (c.status == 200) {
        r.kind = PeerResponse::kRepairData;
        r.value = std::move(c.body);
        return r;
      }
      break;
    default:
      break;
  }
  std::string reason = "http ";
  AppendDecimal(&reason, static_cast<uint64_t>(c.status));
  if (c.status == cluster::kSkewHttpStatus && c.skew_ms != 0 && !slot.ping &&
      slot.op != PeerOp::kGet) {
    reason += ": clock skew: ";
    AppendDecimal(&reason, c.skew_ms);
    reason += " ms ahead of the replica's clock";
    r = ErrorResponse(reason);
    r.clock_skew = true;
    r.skew_ms = c.skew_ms;
    return r;
  }
  return ErrorResponse(reason);
}

// The transport's state; frees itself once its handles are closed (see peer_http.h).
class HttpPeer final : public HttpClientDelegate {
 public:
  HttpPeer(uv_loop_t* loop, const PeerEndpoint& ep, const HttpPeerOptions& opts)
      : loop_(loop),
        host_(ep.host),
        port_(ep.port),
        max_bytes_(ep.max_in_flight_bytes),
        opts_(opts) {
    if (opts_.max_connections == 0) opts_.max_connections = 1;
    if (opts_.sweep_interval_ms == 0) opts_.sweep_interval_ms = 1;
    bool v6 = host_.find(':') != std::string::npos && host_.front() != '[';
    host_header_ = v6 ? "[" + host_ + "]" : host_;
    host_header_ += ':';
    AppendDecimal(&host_header_, port_);
    uv_timer_init(loop_, &sweep_);
    sweep_.data = this;
    conns_.reserve(opts_.max_connections);
  }

  size_t in_flight() const { return in_flight_; }

  // Writes every connection's queued requests now (PeerTransport::Flush: the worker's
  // before-poll step).
  void Flush() {
    if (closed_ || dirty_.empty()) return;  // every iteration: nothing to scan when idle
    // Flush may fail synchronously and drop its connection: collect the clients first.
    HttpClientConnection* clients[16];
    size_t n = 0;
    std::vector<HttpClientConnection*> more;
    for (Conn* c : dirty_) {
      c->dirty = false;
      if (n < std::size(clients)) {
        clients[n++] = c->client;
      } else {
        more.push_back(c->client);
      }
    }
    dirty_.clear();
    for (size_t i = 0; i < n; ++i) clients[i]->Flush();
    for (HttpClientConnection* c : more) c->Flush();
  }

  // ping: a GET /v0/status in place of req.
  void Send(const PeerRequest& req, bool ping, uint64_t deadline_ms, PeerWaiter* waiter,
            uint64_t cookie) {
    if (closed_) return waiter->OnPeerResponse(cookie, ErrorResponse(kClosed));
    if (deadline_ms <= uv_now(loop_))
      return waiter->OnPeerResponse(cookie, ErrorResponse(kTimeout));
    size_t bytes = 128 + host_header_.size() + 3 * (req.key.size() + req.end.size()) +
                   (req.op == PeerOp::kPut || cluster::HasBody(req.op) ? req.value.size() : 0);
    Conn* conn = Pick(bytes);
    if (conn == nullptr) return waiter->OnPeerResponse(cookie, ErrorResponse(pick_error_));
    if (ping) {
      AppendPing(&conn->client->out());
    } else {
      AppendRequest(&conn->client->out(), req);
    }
    conn->fifo.push_back(Slot{waiter, cookie, deadline_ms, bytes, req.op, ping});
    conn->bytes += bytes;
    ++in_flight_;
    if (!conn->dirty) {  // leaves with the next Flush
      conn->dirty = true;
      dirty_.push_back(conn);
    }
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&sweep_))) {
      uv_timer_start(&sweep_, &HttpPeer::OnSweep, opts_.sweep_interval_ms, opts_.sweep_interval_ms);
    }
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    std::vector<Failure> failures;
    while (!conns_.empty()) Discard(conns_.back().get(), kClosed, kClosed, ~0ull, &failures);
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), &HttpPeer::OnHandleClosed);
    Deliver(&failures);
  }

  // HttpClientDelegate
  void OnConnected(HttpClientConnection*) override {
    connect_failed_ = false;
    resolve_backoff_.Succeeded();
  }

  void OnResponseHeader(HttpClientConnection* c, std::string_view name,
                        std::string_view value) override {
    Conn* conn = static_cast<Conn*>(c->user_data);
    if (EqualsIgnoreCase(name, "x-kv-version")) {
      uint64_t v = 0;
      auto r = std::from_chars(value.data(), value.data() + value.size(), v);
      conn->has_version = true;
      conn->bad_version = r.ec != std::errc() || r.ptr != value.data() + value.size();
      conn->version = v;
    } else if (EqualsIgnoreCase(name, "x-kv-tombstone")) {
      conn->tombstone = value == "1";
    } else if (EqualsIgnoreCase(name, cluster::kSkewHttpHeader)) {
      conn->skew_ms = cluster::ParseSkewMs(value);
    } else if (EqualsIgnoreCase(name, "x-kv-expires")) {
      uint64_t v = 0;
      auto r = std::from_chars(value.data(), value.data() + value.size(), v);
      if (r.ec == std::errc() && r.ptr == value.data() + value.size()) conn->expires_ms = v;
    }
  }

  void OnResponseHeadersDone(HttpClientConnection* c, int status) override {
    static_cast<Conn*>(c->user_data)->status = status;
  }

  void OnResponseBody(HttpClientConnection* c, std::string_view chunk) override {
    Conn* conn = static_cast<Conn*>(c->user_data);
    if (conn->status == 200 && !conn->fifo.empty() && !conn->fifo.front().ping &&
        (conn->fifo.front().op == PeerOp::kGet || conn->fifo.front().op == PeerOp::kRange ||
         cluster::IsRepairOp(conn->fifo.front().op))) {
      conn->body.append(chunk);
    }
  }

  void OnResponseComplete(HttpClientConnection* c, int status, bool keep_alive) override {
    Conn* conn = static_cast<Conn*>(c->user_data);
    std::vector<Failure> none;
    if (conn->fifo.empty()) {  // an answer nobody asked for: the stream is out of step
      Discard(conn, "unsolicited response", "", 0, &none);
      return;
    }
    if (status >= 100 && status < 200) {  // interim (e.g. 100 Continue): the answer follows
      conn->ResetResponse();
      return;
    }
    Slot slot = conn->fifo.front();
    conn->fifo.pop_front();
    conn->bytes -= slot.bytes;
    --in_flight_;
    conn->status = status;
    PeerResponse resp = MapResponse(slot, *conn);
    conn->ResetResponse();
    if (!keep_alive) conn->draining = true;
    if (conn->draining && conn->fifo.empty()) Discard(conn, "", "", 0, &none);
    slot.waiter->OnPeerResponse(slot.cookie, std::move(resp));  // conn may be gone after this
  }

  void OnConnectionError(HttpClientConnection* c, std::string_view reason,
                         bool was_connected) override {
    Conn* conn = static_cast<Conn*>(c->user_data);
    std::string why(reason);
    if (!was_connected) {
      connect_failed_ = true;
      last_connect_error_ = why;
      if (why.rfind("cannot resolve", 0) == 0) {
        const uint64_t backoff = resolve_backoff_.Failed(uv_now(loop_));
        LOG_WARN("http peer %s: cannot resolve host %s; retrying in %llu ms", host_header_.c_str(),
                 host_.c_str(), static_cast<unsigned long long>(backoff));
      } else {
        resolve_backoff_.Succeeded();
      }
    }
    std::vector<Failure> failures;
    Discard(conn, why, why, 0, &failures);
    Deliver(&failures);
  }

 private:
  ~HttpPeer() = default;

  // The connection for a new request of `bytes`, or nullptr with pick_error_ set.
  Conn* Pick(size_t bytes) {
    Conn* best = nullptr;
    for (auto& c : conns_) {
      if (c->draining || c->client->closing()) continue;
      if (!c->fifo.empty() && c->bytes + bytes > max_bytes_) continue;
      if (best == nullptr || c->fifo.size() < best->fifo.size()) best = c.get();
      if (best->fifo.empty()) break;  // nothing beats an idle connection
    }
    bool want_new = best == nullptr || best->fifo.size() >= opts_.open_new_at;
    if (want_new && conns_.size() < opts_.max_connections) {
      // No back-off after a refused connect: the next request tries again, so a peer that comes
      // back is used at once. But while the peer looks down, one connection at a time tries:
      // the requests meanwhile queue on it (pipelined) instead of each opening one.
      const bool trying = connect_failed_ && std::any_of(conns_.begin(), conns_.end(), [](auto& c) {
                            return !c->client->connected() && !c->client->closing();
                          });
      // A name that did not resolve is retried after a back-off (it may not exist yet).
      if (!trying && !resolve_backoff_.Waiting(uv_now(loop_))) {
        if (Conn* fresh = Open()) return fresh;
      }
      if (best == nullptr) {
        pick_error_ = last_connect_error_.empty() ? "connection failed" : last_connect_error_;
        return nullptr;
      }
    }
    if (best == nullptr) pick_error_ = "overloaded";
    return best;
  }

  Conn* Open() {
    HttpClientConnection* client = HttpClientConnection::Create(loop_, this);
    int rc = client->Connect(host_, port_);
    if (rc != 0) {
      client->Close();
      connect_failed_ = true;
      last_connect_error_ = UvErrorReason(rc);
      return nullptr;
    }
    auto conn = std::make_unique<Conn>();
    conn->client = client;
    client->user_data = conn.get();
    conns_.push_back(std::move(conn));
    return conns_.back().get();
  }

  void AppendPing(std::string* out) {
    out->append("GET /v0/status HTTP/1.1\r\nHost: ");
    out->append(host_header_);
    out->append("\r\n\r\n");
  }

  // GET /v0/entities?start=S[&end=E]&max_keys=N&max_bytes=M (with X-KV-Internal: a page).
  static void AppendRangeTarget(std::string* out, const PeerRequest& req) {
    out->append("/v0/entities?start=");
    AppendPercentEncoded(out, req.key);
    if (req.has_end) {
      out->append("&end=");
      AppendPercentEncoded(out, req.end);
    }
    out->append("&max_keys=");
    AppendDecimal(out, req.max_keys);
    out->append("&max_bytes=");
    AppendDecimal(out, req.max_bytes);
  }

  void AppendRequest(std::string* out, const PeerRequest& req) {
    std::string_view method;
    std::string_view body_target;  // an op with a body: POST to it with the body
    switch (req.op) {
      case PeerOp::kGet:
        method = "GET";
        break;
      case PeerOp::kPut:
        method = "PUT";
        break;
      case PeerOp::kRemove:
        method = "DELETE";
        break;
      case PeerOp::kRange:
        method = "GET";
        break;
      case PeerOp::kRepairTree:
        body_target = "/v0/internal/repair/tree";
        break;
      case PeerOp::kRepairEntries:
        body_target = "/v0/internal/repair/entries";
        break;
      case PeerOp::kRepairApply:
        body_target = "/v0/internal/repair/apply";
        break;
      case PeerOp::kHints:
        body_target = "/v0/internal/hints";
        break;
    }
    const bool posted = !body_target.empty();
    if (posted) method = "POST";
    out->append(method);
    out->push_back(' ');
    const size_t target_at = out->size();
    if (posted) {
      out->append(body_target);
    } else if (req.op == PeerOp::kRange) {
      AppendRangeTarget(out, req);
    } else {
      out->append("/v0/entity?id=");
      AppendPercentEncoded(out, req.key);
      if (req.op == PeerOp::kPut && req.expires_ms != 0) {
        // In the target, so that the MAC covers it (X-KV-Auth).
        out->append("&expires=");
        AppendDecimal(out, req.expires_ms);
      }
    }
    const size_t target_end = out->size();
    out->append(" HTTP/1.1\r\nHost: ");
    out->append(host_header_);
    out->append("\r\nX-KV-Internal: 1\r\n");
    const bool versioned = req.op == PeerOp::kPut || req.op == PeerOp::kRemove;
    const Decimal version(req.version);
    const std::string_view version_text = versioned ? version.view() : "";
    if (versioned) {
      out->append("X-KV-Version: ");
      out->append(version_text);
      out->append("\r\n");
    }
    const bool has_body = req.op == PeerOp::kPut || posted;
    const std::string_view body = has_body ? req.value : std::string_view();
    if (opts_.keys.enabled()) {
      // The MAC covers the target as written above (copied: *out may grow while appending).
      target_.assign(*out, target_at, target_end - target_at);
      out->append("X-KV-Auth: ");
      proto::auth::AppendHttpAuth(
          out, opts_.keys, proto::auth::HttpMessage{method, target_, version_text, body}, WallMs());
      out->append("\r\n");
    }
    if (has_body) {
      out->append("Content-Length: ");
      AppendDecimal(out, body.size());
      out->append("\r\n\r\n");
      out->append(body);
    } else {
      out->append("\r\n");
    }
  }

  static uint64_t WallMs() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  }

  // Removes `conn` from the pool and closes it; its requests become failures: those due by
  // `now_ms` with `due_reason`, the others with `reason`.
  void Discard(Conn* conn, std::string_view reason, std::string_view due_reason, uint64_t now_ms,
               std::vector<Failure>* failures) {
    auto it = std::find_if(conns_.begin(), conns_.end(),
                           [conn](const std::unique_ptr<Conn>& c) { return c.get() == conn; });
    if (it == conns_.end()) return;
    std::unique_ptr<Conn> owned = std::move(*it);
    conns_.erase(it);
    if (owned->dirty) dirty_.erase(std::find(dirty_.begin(), dirty_.end(), owned.get()));
    owned->client->user_data = nullptr;
    owned->client->Close();
    in_flight_ -= owned->fifo.size();
    for (size_t i = 0; i < owned->fifo.size(); ++i) {
      const Slot& s = owned->fifo[i];
      std::string_view why = s.deadline_ms <= now_ms ? due_reason : reason;
      failures->push_back(Failure{s.waiter, s.cookie, why});
    }
  }

  // Hands out failures; the transport may be re-entered (Send, Close) from each callback.
  static void Deliver(std::vector<Failure>* failures) {
    for (const Failure& f : *failures) f.waiter->OnPeerResponse(f.cookie, ErrorResponse(f.reason));
  }

  static void OnSweep(uv_timer_t* h) {
    auto* self = static_cast<HttpPeer*>(h->data);
    uint64_t now = uv_now(self->loop_);
    std::vector<Conn*> expired;
    for (auto& c : self->conns_) {
      for (size_t i = 0; i < c->fifo.size(); ++i) {
        if (c->fifo[i].deadline_ms <= now) {
          expired.push_back(c.get());
          break;
        }
      }
    }
    std::vector<Failure> failures;
    for (Conn* c : expired) self->Discard(c, kAborted, kTimeout, now, &failures);
    if (self->in_flight_ == 0) uv_timer_stop(h);
    Deliver(&failures);
  }

  static void OnHandleClosed(uv_handle_t* h) {
    auto* self = static_cast<HttpPeer*>(h->data);
    delete self;
  }

  uv_loop_t* loop_;
  std::string host_;
  uint16_t port_;
  size_t max_bytes_;
  HttpPeerOptions opts_;
  std::string host_header_;
  std::string target_;  // scratch: the target of the request being authenticated
  uv_timer_t sweep_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> dirty_;  // the connections of conns_ with output for the next Flush
  size_t in_flight_ = 0;
  bool closed_ = false;
  bool connect_failed_ = false;  // the last connect failed, none succeeded since
  // A host name that does not resolve: logged, and no new connection while this backs off;
  // requests that need one fail at once meanwhile.
  ResolveBackoff resolve_backoff_;
  std::string last_connect_error_;
  std::string pick_error_;
};

class HttpPeerTransport final : public cluster::PeerTransport {
 public:
  HttpPeerTransport(uv_loop_t* loop, const PeerEndpoint& ep, const HttpPeerOptions& opts)
      : impl_(new HttpPeer(loop, ep, opts)) {}
  ~HttpPeerTransport() override { Close(); }

  void Send(const PeerRequest& req, uint64_t deadline_ms, PeerWaiter* waiter,
            uint64_t cookie) override {
    if (impl_ == nullptr) return waiter->OnPeerResponse(cookie, ErrorResponse(kClosed));
    impl_->Send(req, false, deadline_ms, waiter, cookie);
  }
  void Ping(uint64_t deadline_ms, PeerWaiter* waiter, uint64_t cookie) override {
    if (impl_ == nullptr) return waiter->OnPeerResponse(cookie, ErrorResponse(kClosed));
    impl_->Send(PeerRequest{PeerOp::kGet, {}, {}, 0}, true, deadline_ms, waiter, cookie);
  }
  void Flush() override {
    if (impl_) impl_->Flush();
  }
  size_t in_flight() const override { return impl_ ? impl_->in_flight() : 0; }
  void Close() override {
    HttpPeer* impl = std::exchange(impl_, nullptr);
    if (impl) impl->Close();
  }

 private:
  HttpPeer* impl_;
};

}  // namespace

std::unique_ptr<cluster::PeerTransport> MakeHttpPeerTransport(uv_loop_t* loop,
                                                              const cluster::PeerEndpoint& ep,
                                                              const HttpPeerOptions& options) {
  return std::make_unique<HttpPeerTransport>(loop, ep, options);
}

}  // namespace kv::net
