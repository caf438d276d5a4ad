// Client side of the binary peer protocol: cluster::PeerTransport over one multiplexed TCP
// connection per (loop thread, peer). Policies are documented in peer_binary.h.
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/log.h"
#include "http/client.h"
#include "loop/resolve.h"
#include "loop/uv_write.h"
#include "peer/auth_failures.h"
#include "peer/binary.h"
#include "peer/binary_io.h"
#include "peer/frames.h"
#include "proto/auth.h"
#include "proto/frame_decoder.h"
#include "proto/wire.h"

namespace kv::net {

namespace {

using cluster::PeerEndpoint;
using cluster::PeerOp;
using cluster::PeerRequest;
using cluster::PeerResponse;
using cluster::PeerWaiter;

constexpr std::string_view kTimeout = "timeout";
constexpr std::string_view kClosed = "closed";
constexpr std::string_view kOverloaded = "overloaded";
// PAGE payloads from this size on are handed over with the receive buffer (FrameDecoder::
// TakeFrame) instead of being copied.
constexpr size_t kHandOverBytes = 64u << 10;

PeerResponse ErrorResponse(std::string_view reason, bool slow = false) {
  PeerResponse r;
  r.kind = PeerResponse::kError;
  r.error.assign(reason);
  r.slow = slow;
  return r;
}

// A request to fail once the transport's state is consistent again.
struct Failure {
  PeerWaiter* waiter;
  uint64_t cookie;
};

// Hands out failures with one reason. Touches nothing but its arguments: a waiter may re-enter
// or even destroy the transport.
void Deliver(const std::vector<Failure>& failures, const std::string& reason, bool slow) {
  for (const Failure& f : failures) {
    f.waiter->OnPeerResponse(f.cookie, ErrorResponse(reason, slow));
  }
}

class BinaryPeer;

// One TCP connection to the peer. While attached (owner != nullptr) the transport owns it; once
// detached it only finishes closing: its close callback deletes it (all uv requests embedded
// here have had their callbacks, with UV_ECANCELED if need be, before that).
struct ClientConn {
  explicit ClientConn(BinaryPeer* o) : owner(o), decoder(proto::FrameDecoder::Role::kClient) {}

  BinaryPeer* owner;
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  proto::FrameDecoder decoder;
  std::string out;      // frames queued and not yet handed to uv_write
  std::string writing;  // the bytes of the write in flight
  std::string held;     // requests queued before HANDSHAKE_OK: they follow AUTH
  proto::auth::Nonce client_nonce{};
  Addresses addrs;  // where to connect: tried in order until one accepts
  size_t next_addr = 0;
  NameLookup* lookup = nullptr;  // the host name's lookup, while it runs
  uint64_t last_rx_ms = 0;       // uv_now when bytes last arrived (0: never)
  bool connected = false;
  bool write_active = false;
  bool handshake_ok = false;
  bool closing = false;
};

void OnConnClosed(uv_handle_t* h) {
  delete static_cast<ClientConn*>(h->data);
}

template <typename Handle>
void DeleteHandle(uv_handle_t* h) {
  delete reinterpret_cast<Handle*>(h);
}

class BinaryPeer final : public cluster::PeerTransport {
 public:
  BinaryPeer(uv_loop_t* loop, const PeerEndpoint& ep, const BinaryPeerOptions& opts)
      : loop_(loop),
        peer_urls_{ep.url},
        self_url_(ep.self_url),
        fingerprint_(ep.cluster_fingerprint),
        max_bytes_(ep.max_in_flight_bytes),
        host_(ep.host),
        port_(ep.port),
        opts_(opts),
        resolve_backoff_(opts.resolve_backoff_min_ms, opts.resolve_backoff_max_ms) {
    if (opts_.sweep_interval_ms == 0) opts_.sweep_interval_ms = 1;
    literal_ = ParseIpLiteral(host_, port_, &addr_);
    sweep_ = new uv_timer_t;
    uv_timer_init(loop_, sweep_);
    sweep_->data = this;
  }

  ~BinaryPeer() override { Close(); }

  void Ping(uint64_t deadline_ms, PeerWaiter* waiter, uint64_t cookie) override {
    if (closed_) return waiter->OnPeerResponse(cookie, ErrorResponse(kClosed));
    if (deadline_ms <= uv_now(loop_)) {
      return waiter->OnPeerResponse(cookie, ErrorResponse(kTimeout, true));
    }
    if (conn_ == nullptr && !Open()) {
      return waiter->OnPeerResponse(cookie, ErrorResponse(last_error_));
    }
    const uint64_t id = Acquire(waiter, cookie, deadline_ms, proto::kFrameHeaderSize, true);
    proto::EncodePing(Queue(conn_), id);
    Queued();
  }

  void Send(const PeerRequest& req, uint64_t deadline_ms, PeerWaiter* waiter,
            uint64_t cookie) override {
    if (closed_) return waiter->OnPeerResponse(cookie, ErrorResponse(kClosed));
    if (deadline_ms <= uv_now(loop_)) {
      return waiter->OnPeerResponse(cookie, ErrorResponse(kTimeout, true));
    }
    if (req.op == PeerOp::kRange) return SendRange(req, deadline_ms, waiter, cookie);
    const proto::Op op = ToProtoOp(req.op);
    const std::string_view value =
        req.op == PeerOp::kPut || proto::HasBody(op) ? req.value : std::string_view();
    if (proto::HasBody(op) ? !proto::BodyRequestFits(op, value)
                           : !proto::RequestFits(req.key, value)) {
      return waiter->OnPeerResponse(
          cookie, ErrorResponse(req.key.empty() ? "invalid request: empty key"
                                                : "invalid request: key or value too large"));
    }
    const uint64_t expires = req.op == PeerOp::kPut ? req.expires_ms : 0;
    const size_t bytes = proto::RequestFrameSize(op, req.key, value, expires);
    if (bytes_in_flight_ > 0 && bytes_in_flight_ + bytes > max_bytes_) {
      return waiter->OnPeerResponse(cookie, ErrorResponse(kOverloaded, true));
    }
    if (conn_ == nullptr && !Open()) {
      return waiter->OnPeerResponse(cookie, ErrorResponse(last_error_));
    }
    const uint64_t id = Acquire(waiter, cookie, deadline_ms, bytes, false);
    proto::EncodeRequest(Queue(conn_), id, op, req.key, value, req.version, expires);
    Queued();
  }

  // A RANGE frame: one page of [req.key, req.end).
  void SendRange(const PeerRequest& req, uint64_t deadline_ms, PeerWaiter* waiter,
                 uint64_t cookie) {
    if (req.key.size() > proto::kMaxKeyBytes + 1 || req.end.size() > proto::kMaxKeyBytes ||
        req.max_keys == 0 || req.max_bytes == 0) {
      return waiter->OnPeerResponse(cookie, ErrorResponse("invalid request: range limits"));
    }
    const size_t bytes = proto::RangeFrameSize(req.key, req.has_end ? req.end : "");
    if (bytes_in_flight_ > 0 && bytes_in_flight_ + bytes > max_bytes_) {
      return waiter->OnPeerResponse(cookie, ErrorResponse(kOverloaded, true));
    }
    if (conn_ == nullptr && !Open()) {
      return waiter->OnPeerResponse(cookie, ErrorResponse(last_error_));
    }
    const uint64_t id = Acquire(waiter, cookie, deadline_ms, bytes, false);
    proto::EncodeRange(Queue(conn_), id, req.key, req.end, req.has_end, req.max_keys,
                       req.max_bytes);
    Queued();
  }

  size_t in_flight() const override { return in_flight_; }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    std::vector<Failure> failures;
    if (conn_ != nullptr) Detach(&failures);
    uv_close(reinterpret_cast<uv_handle_t*>(sweep_), &DeleteHandle<uv_timer_t>);
    sweep_ = nullptr;
    Deliver(failures, std::string(kClosed), false);
  }

 private:
  // One request sent (or queued) and not answered yet. A slot is reused after its request
  // completes; its generation changes then, so the old request id no longer matches it.
  struct Slot {
    PeerWaiter* waiter = nullptr;
    uint64_t cookie = 0;
    uint64_t deadline_ms = 0;
    uint64_t sent_ms = 0;  // uv_now when queued
    size_t bytes = 0;
    uint32_t generation = 1;
    bool live = false;
    bool ping = false;  // answered by PONG, not by a response frame
  };

  static uint32_t SlotIndex(uint64_t id) { return static_cast<uint32_t>(id); }
  static uint32_t SlotGeneration(uint64_t id) { return static_cast<uint32_t>(id >> 32); }

  uint64_t Acquire(PeerWaiter* waiter, uint64_t cookie, uint64_t deadline_ms, size_t bytes,
                   bool ping) {
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Slot& s = slots_[index];
    s.waiter = waiter;
    s.cookie = cookie;
    s.deadline_ms = deadline_ms;
    s.sent_ms = uv_now(loop_);
    s.bytes = bytes;
    s.live = true;
    s.ping = ping;
    ++in_flight_;
    bytes_in_flight_ += bytes;
    return (uint64_t{s.generation} << 32) | index;
  }

  // The live slot request `id` names, or nullptr (unknown, stale or already failed).
  Slot* Find(uint64_t id) {
    const uint32_t index = SlotIndex(id);
    if (index >= slots_.size()) return nullptr;
    Slot& s = slots_[index];
    return s.live && s.generation == SlotGeneration(id) ? &s : nullptr;
  }

  void Release(Slot* s) {
    s->live = false;
    if (++s->generation == 0) s->generation = 1;  // ids are never 0 (0 names the connection)
    --in_flight_;
    bytes_in_flight_ -= s->bytes;
    free_.push_back(static_cast<uint32_t>(s - slots_.data()));
  }

  void CollectAll(std::vector<Failure>* failures) {
    if (in_flight_ == 0) return;
    for (Slot& s : slots_) {
      if (!s.live) continue;
      failures->push_back(Failure{s.waiter, s.cookie});
      Release(&s);
    }
  }

  // Where requests go: behind AUTH once the server proved itself, else held until then.
  static std::string* Queue(ClientConn* c) { return c->handshake_ok ? &c->out : &c->held; }

  static std::string_view NonceView(const proto::auth::Nonce& n) {
    return {reinterpret_cast<const char*>(n.data()), n.size()};
  }

  // A frame was queued on conn_ (it leaves with the next Flush): watch its deadline.
  void Queued() {
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(sweep_))) {
      uv_timer_start(sweep_, &BinaryPeer::OnSweep, opts_.sweep_interval_ms,
                     opts_.sweep_interval_ms);
    }
  }

  // Starts a connection with preface + HANDSHAKE queued (requests queue behind them while the
  // name resolves and the connect runs); false with last_error_ set while backing off after a
  // refused handshake or a name that did not resolve, or if the connect could not start.
  bool Open() {
    const uint64_t now = uv_now(loop_);
    if (now < retry_at_ms_ || resolve_backoff_.Waiting(now)) return false;
    auto* c = NewConn();
    conn_ = c;
    if (literal_) {
      c->addrs.push_back(addr_);
    } else if (opts_.resolve) {
      if (!opts_.resolve(host_, port_, &c->addrs)) {
        DropNewConn(c);
        NoteResolveFailure("cannot resolve host " + host_);
        return false;
      }
    } else {
      int rc = 0;
      c->lookup = NameLookup::Start(
          loop_, host_, port_,
          [c](int status, Addresses addrs) { OnResolved(c, status, std::move(addrs)); }, &rc);
      if (c->lookup == nullptr) {
        DropNewConn(c);
        NoteResolveFailure("cannot resolve host " + host_ + ": " + uv_strerror(rc));
        return false;
      }
      return true;
    }
    int rc = ConnectNext(c);
    if (rc != 0) {
      DropNewConn(c);
      last_error_ = UvErrorReason(rc);
      return false;
    }
    return true;
  }

  // A connection, not connecting yet; with the preface and HANDSHAKE queued unless it takes
  // over the queue of another.
  ClientConn* NewConn(bool handshake = true) {
    auto* c = new ClientConn(this);
    uv_tcp_init(loop_, &c->tcp);
    c->tcp.data = c;
    c->connect_req.data = c;
    c->write_req.data = c;
    if (handshake) {
      c->client_nonce = proto::auth::RandomNonce();
      proto::AppendPreface(&c->out);
      proto::EncodeHandshake(&c->out, self_url_, fingerprint_, NonceView(c->client_nonce));
    }
    return c;
  }

  // Undoes NewConn for a connection nothing was queued on yet.
  void DropNewConn(ClientConn* c) {
    conn_ = nullptr;
    c->owner = nullptr;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &OnConnClosed);
  }

  // Connects c to its next address; 0, or the uv error if no attempt could start.
  static int ConnectNext(ClientConn* c) {
    int rc = UV_EAI_NONAME;
    while (c->next_addr < c->addrs.size()) {
      const sockaddr_storage& a = c->addrs[c->next_addr++];
      rc = uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<const sockaddr*>(&a),
                          &BinaryPeer::OnConnect);
      if (rc == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        uv_tcp_keepalive(&c->tcp, 1, 30);
        return 0;
      }
    }
    return rc;
  }

  static void OnResolved(ClientConn* c, int status, Addresses addrs) {
    BinaryPeer* self = c->owner;
    c->lookup = nullptr;
    if (self == nullptr) return;  // cannot happen: Detach cancels the lookup
    if (status != 0) {
      self->NoteResolveFailure("cannot resolve host " + self->host_ + ": " + uv_strerror(status));
      return self->FailConnection(self->last_error_, false);
    }
    self->resolve_backoff_.Succeeded();
    c->addrs = std::move(addrs);
    int rc = ConnectNext(c);
    if (rc != 0) self->FailConnection(std::string(UvErrorReason(rc)), false);
  }

  // The connect to c's current address failed and another one is left: a fresh handle tries it
  // with everything c had queued (nothing of it was written).
  void ConnectToNextAddress(ClientConn* c) {
    ClientConn* next = NewConn(false);
    next->out.swap(c->out);
    next->held.swap(c->held);
    next->client_nonce = c->client_nonce;
    next->addrs.swap(c->addrs);
    next->next_addr = c->next_addr;
    c->owner = nullptr;
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &OnConnClosed);
    conn_ = next;
    int rc = ConnectNext(next);
    if (rc != 0) FailConnection(std::string(UvErrorReason(rc)), false);
  }

  // The host name did not resolve: log it, and fail Sends at once for a back-off that doubles
  // with each failure in a row (the name may not exist yet while a cluster boots).
  void NoteResolveFailure(std::string reason) {
    const uint64_t backoff = resolve_backoff_.Failed(uv_now(loop_));
    LOG_WARN("binary peer %s: %s; retrying in %llu ms", peer_urls_[0].c_str(), reason.c_str(),
             static_cast<unsigned long long>(backoff));
    last_error_ = std::move(reason);
  }

  // Drops the current connection (closing it) and moves every pending request to *failures.
  void Detach(std::vector<Failure>* failures) {
    ClientConn* c = std::exchange(conn_, nullptr);
    c->owner = nullptr;
    if (c->lookup != nullptr) c->lookup->Cancel();
    c->lookup = nullptr;
    if (!c->closing) {
      c->closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &OnConnClosed);
    }
    CollectAll(failures);
  }

  // The connection failed: every pending request fails with `reason`, slow or not (see
  // PeerResponse::slow). A refused handshake or a protocol error (backoff) makes Sends fail at
  // once for reconnect_backoff_ms: the peer is up but will not talk to us. A refused connection,
  // a reset or an EOF do not: the next Send connects again, so a restarted peer is used at once.
  // The waiters may destroy the transport: nothing touches `this` after Deliver.
  void FailConnection(std::string reason, bool slow, bool backoff = false) {
    if (backoff) retry_at_ms_ = uv_now(loop_) + opts_.reconnect_backoff_ms;
    last_error_ = reason;
    LOG_DEBUG("binary peer %s: connection failed: %s", peer_urls_[0].c_str(), reason.c_str());
    std::vector<Failure> failures;
    Detach(&failures);
    if (in_flight_ == 0 && sweep_ != nullptr) uv_timer_stop(sweep_);
    Deliver(failures, reason, slow);
  }

  // The worker's before-poll step, and a connect or write completing: everything queued in one
  // uv_write, unless not connected yet or a write is in flight (its completion sends what
  // accumulated meanwhile).
  void Flush() override {
    ClientConn* c = conn_;
    if (closed_ || c == nullptr || !c->connected || c->write_active || c->out.empty()) return;
    int tried = TryWriteNow(reinterpret_cast<uv_stream_t*>(&c->tcp), &c->out);
    if (tried < 0) return FailConnection(std::string(UvErrorReason(tried)), false);
    if (c->out.empty()) return;  // all taken by the socket: nothing to complete
    std::swap(c->out, c->writing);
    uv_buf_t buf = uv_buf_init(c->writing.data(), static_cast<unsigned>(c->writing.size()));
    int rc = uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1,
                      &BinaryPeer::OnWrite);
    if (rc != 0) return FailConnection(std::string(UvErrorReason(rc)), false);
    c->write_active = true;
  }

  // A frame about the connection rather than a request (HANDSHAKE_OK, ERROR, PING): answered or
  // acted on here; a failure calls the waiters, and the caller re-checks conn->owner after it.
  static bool IsConnectionFrame(proto::FrameType t) {
    return t == proto::FrameType::kHandshakeOk || t == proto::FrameType::kError ||
           t == proto::FrameType::kPing;
  }
  void OnConnectionFrame(const proto::Frame& f) {
    ClientConn* c = conn_;
    switch (f.type) {
      case proto::FrameType::kHandshakeOk: {
        auto refused = proto::CheckHandshake(f.url, f.fingerprint, peer_urls_, fingerprint_);
        if (refused) {
          return FailConnection(
              std::string(proto::ErrorCodeName(refused->code)) + ": " + refused->reason, false,
              true);
        }
        proto::auth::Transcript t{NonceView(c->client_nonce), f.nonce, fingerprint_, self_url_,
                                  peer_urls_[0]};
        const proto::auth::Verdict v =
            proto::auth::VerifyProofs(opts_.keys, proto::auth::Prover::kServer, t, f.proofs);
        if (v != proto::auth::Verdict::kOk) {
          NoteAuthFailure(v == proto::auth::Verdict::kMissing ? AuthFailure::kBinaryServerMissing
                                                              : AuthFailure::kBinaryServerMismatch,
                          RemoteIp(&c->tcp), "binary peer " + peer_urls_[0] + " we dialed");
          return FailConnection("AUTH_FAILED: peer did not prove the cluster secret", false, true);
        }
        std::string proofs;
        proto::auth::AppendProofs(&proofs, opts_.keys, proto::auth::Prover::kClient, t);
        proto::EncodeAuth(&c->out, proofs);
        c->out.append(c->held);
        std::string().swap(c->held);
        c->handshake_ok = true;
        return;  // AUTH and the held requests leave with the next Flush
      }
      case proto::FrameType::kError:
        return FailConnection(proto::ErrorText(f), false, !c->handshake_ok);
      case proto::FrameType::kPing:
        proto::EncodePong(&c->out, f.request_id, f.payload);  // leaves with the next Flush
        return;
      default:
        return;
    }
  }

  static void OnConnect(uv_connect_t* req, int status) {
    auto* c = static_cast<ClientConn*>(req->data);
    BinaryPeer* self = c->owner;
    if (self == nullptr) return;  // detached: closing (UV_ECANCELED) or already failed
    if (status != 0) {
      if (c->next_addr < c->addrs.size()) return self->ConnectToNextAddress(c);
      return self->FailConnection(std::string(UvErrorReason(status)), false);
    }
    c->connected = true;
    int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), &binary_io::AllocReadBuffer,
                           &BinaryPeer::OnRead);
    if (rc != 0) return self->FailConnection(std::string(UvErrorReason(rc)), false);
    self->Flush();
  }

  // Reads the peer's frames: decodes every complete frame buffered and hands each answer to its
  // request's waiter (ToPeerResponse), until c is detached (a waiter closed the transport, or
  // the connection failed). Frames about the connection go to OnConnectionFrame.
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* c = static_cast<ClientConn*>(stream->data);
    if (c->owner == nullptr || nread == 0) return;
    if (nread < 0) {
      std::string reason(UvErrorReason(static_cast<int>(nread)));
      if (nread == UV_EOF && !c->decoder.Finish()) reason += " mid-frame";
      return c->owner->FailConnection(std::move(reason), false);
    }
    c->last_rx_ms = uv_now(c->owner->loop_);
    c->decoder.Feed(buf->base, static_cast<size_t>(nread));
    proto::Frame f;
    while (c->owner != nullptr) {
      const proto::DecodeResult d = c->decoder.Next(&f);
      if (d == proto::DecodeResult::kNeedMore) return;
      if (d == proto::DecodeResult::kError) {
        const proto::ProtocolError& e = c->decoder.error();
        LOG_WARN("binary peer %s: protocol error %s: %s", c->owner->peer_urls_[0].c_str(),
                 proto::ErrorCodeName(e.code), e.reason.c_str());
        return c->owner->FailConnection(
            std::string("protocol error: ") + proto::ErrorCodeName(e.code) + ": " + e.reason, false,
            !c->handshake_ok);
      }
      if (IsConnectionFrame(f.type)) {
        c->owner->OnConnectionFrame(f);
        continue;
      }
      // An answer to a request that already timed out is dropped, and so is a PONG that answers
      // no ping of ours (or a response frame that answers a ping).
      Slot* s = c->owner->Find(f.request_id);
      if (s == nullptr || s->ping != (f.type == proto::FrameType::kPong)) continue;
      PeerWaiter* waiter = s->waiter;
      const uint64_t cookie = s->cookie;
      c->owner->Release(s);
      if (f.type == proto::FrameType::kPong) {
        PeerResponse pong;
        pong.kind = PeerResponse::kPong;
        waiter->OnPeerResponse(cookie, std::move(pong));
        continue;
      }
      if (f.type == proto::FrameType::kPage && f.value.size() >= kHandOverBytes) {
        // A page of up to a few MiB: the receive buffer goes to the waiter, not a copy of it.
        PeerResponse page;
        page.kind = PeerResponse::kPage;
        if (c->decoder.TakeFrame(&page.value, &page.value_at)) {
          waiter->OnPeerResponse(cookie, std::move(page));
          continue;
        }
      }
      waiter->OnPeerResponse(cookie, ToPeerResponse(f));
    }
  }

  static void OnWrite(uv_write_t* req, int status) {
    auto* c = static_cast<ClientConn*>(req->data);
    c->write_active = false;
    BinaryPeer* self = c->owner;
    if (self == nullptr) return;
    if (status != 0) return self->FailConnection(std::string(UvErrorReason(status)), false);
    binary_io::ResetWritten(&c->writing);
    self->Flush();
  }

  static void OnSweep(uv_timer_t* h) {
    auto* self = static_cast<BinaryPeer*>(h->data);
    const uint64_t now = uv_now(self->loop_);
    const uint64_t last_rx = self->conn_ != nullptr ? self->conn_->last_rx_ms : 0;
    std::vector<Failure> expired, stalled;
    bool stall = false;
    for (Slot& s : self->slots_) {
      if (!s.live || s.deadline_ms > now) continue;
      // Nothing arrived on the connection since this request was queued, for all its time: the
      // connection is dead or stuck (a peer gone without a reset, a partition, a connect whose
      // SYNs are lost, a stopped process). TCP may take minutes to say so, and its
      // retransmissions seconds to resume after a heal: a fresh connection is tried instead.
      if (s.sent_ms >= last_rx && now - s.sent_ms >= self->opts_.stall_after_ms) stall = true;
      expired.push_back(Failure{s.waiter, s.cookie});
      self->Release(&s);
    }
    if (stall && self->conn_ != nullptr) self->Detach(&stalled);
    if (self->in_flight_ == 0) uv_timer_stop(h);
    Deliver(expired, std::string(kTimeout), true);
    Deliver(stalled, "connection stalled", true);
  }

  uv_loop_t* loop_;
  const std::vector<std::string> peer_urls_;  // the one URL HANDSHAKE_OK must carry
  const std::string self_url_;
  const uint64_t fingerprint_;
  const size_t max_bytes_;
  const std::string host_;  // a name (resolved for each connection) or an IP literal
  const uint16_t port_;
  BinaryPeerOptions opts_;
  bool literal_ = false;
  sockaddr_storage addr_{};  // host_ if it is an IP literal
  uv_timer_t* sweep_;        // owned; freed by its close callback
  ClientConn* conn_ = nullptr;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  size_t in_flight_ = 0;
  size_t bytes_in_flight_ = 0;
  bool closed_ = false;
  uint64_t retry_at_ms_ = 0;  // Sends fail at once before this (uv_now ms): see FailConnection
  ResolveBackoff resolve_backoff_;
  std::string last_error_ = "connection failed";
};

}  // namespace

std::unique_ptr<cluster::PeerTransport> MakeBinaryPeerTransport(uv_loop_t* loop,
                                                                const cluster::PeerEndpoint& ep,
                                                                const BinaryPeerOptions& options) {
  return std::make_unique<BinaryPeer>(loop, ep, options);
}

std::unique_ptr<cluster::PeerTransport> MakeBinaryPeerTransport(uv_loop_t* loop,
                                                                const cluster::PeerEndpoint& ep) {
  return MakeBinaryPeerTransport(loop, ep, BinaryPeerOptions{});
}

}  // namespace kv::net
