// Server side of the binary peer protocol: serves the connections other nodes opened to this
// loop (handed over by the HTTP server once it saw the preface). Policies in peer_binary.h.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/slots.h"
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

class BinaryServer;

// One adopted connection. Attached (owner != nullptr) until it starts closing; its close
// callback deletes it and the handle, which the acceptor allocated with new.
struct ServerConn {
  ServerConn(BinaryServer* o, uv_tcp_t* h)
      : owner(o), tcp(h), decoder(proto::FrameDecoder::Role::kServer) {
    write_req.data = this;
  }

  size_t unsent() const { return out.size() + writing.size(); }

  BinaryServer* owner;
  uv_tcp_t* tcp;
  uv_write_t write_req;
  proto::FrameDecoder decoder;
  std::string out;      // answers queued and not yet handed to uv_write
  std::string writing;  // the bytes of the write in flight
  bool reading = false;
  bool read_done = false;  // EOF or read error seen: nothing more will arrive
  bool stopped = false;    // ERROR sent or received: no further frame is handled
  bool paused = false;     // frames left in the decoder while over the output high water
  bool write_active = false;
  bool close_after_write = false;
  bool dirty = false;  // in owner->dirty_
  bool closing = false;
  bool handle_closed = false;
  bool handshaken = false;        // it proved itself (AUTH verified)
  uint64_t adopted_ms = 0;        // loop time it was adopted
  uint64_t send_progress_ms = 0;  // loop time the write in flight last made progress
  size_t send_queue_seen = 0;     // its unwritten bytes then
  size_t unanswered = 0;          // requests handed to the replica and not answered yet
  size_t queued_writes = 0;       // of which writes still queued (not committed)
  std::string final_error;        // an ERROR frame to send once every request is answered
  // The handshake's transcript, kept from HANDSHAKE until AUTH is verified.
  std::string client_url;
  std::string client_nonce;
  proto::auth::Nonce server_nonce{};
};

// The connection goes once its handle is closed and the replica answered all it was handed.
void MaybeDelete(ServerConn* c) {
  if (c->handle_closed && c->unanswered == 0) delete c;
}

void OnConnClosed(uv_handle_t* h) {
  auto* c = static_cast<ServerConn*>(h->data);
  delete reinterpret_cast<uv_tcp_t*>(h);
  c->handle_closed = true;
  MaybeDelete(c);
}

class BinaryServer final : public BinaryPeerServer {
 public:
  BinaryServer(uv_loop_t* loop, const BinaryServerContext& ctx, const BinaryServerOptions& opts)
      : loop_(loop), ctx_(ctx), opts_(opts), waiter_(this) {
    for (size_t i = 0; i < ctx_.ring->size(); ++i) urls_.push_back(ctx_.ring->url(i));
    fingerprint_ = ctx_.ring->Fingerprint();
    self_url_ = ctx_.ring->url(ctx_.self_index);
    if (opts_.output_high_water == 0) opts_.output_high_water = 1;
    // Checks the handshake and send timeouts four times per the shorter one (50 ms .. 1 s).
    sweep_ = new uv_timer_t;
    uv_timer_init(loop_, sweep_);
    sweep_->data = this;
    const uint64_t every = std::clamp<uint64_t>(
        std::min(opts_.handshake_timeout_ms, opts_.send_timeout_ms) / 4, 50, 1000);
    uv_timer_start(sweep_, &BinaryServer::OnSweep, every, every);
    uv_unref(reinterpret_cast<uv_handle_t*>(sweep_));
  }

  ~BinaryServer() override { Close(); }

  void Adopt(uv_tcp_t* handle, std::string_view first_bytes) override {
    if (closed_) {
      uv_close(reinterpret_cast<uv_handle_t*>(handle),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
      return;
    }
    auto* c = new ServerConn(this, handle);
    handle->data = c;
    c->adopted_ms = uv_now(loop_);
    conns_.push_back(c);
    pending_.push_back(c);
    if (pending_.size() > opts_.max_pending_handshakes) {
      LOG_DEBUG("binary peer connection closed: over %zu waiting for their handshake",
                opts_.max_pending_handshakes);
      CloseNow(pending_.front());
    }
    uv_tcp_nodelay(handle, 1);
    c->decoder.Feed(first_bytes.data(), first_bytes.size());
    Process(c);
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    std::vector<ServerConn*> conns = std::move(conns_);
    for (ServerConn* c : conns) CloseNow(c);
    dirty_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(sweep_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    sweep_ = nullptr;
  }

  // The worker's before-poll step: each connection's answers of the iteration in one write.
  void Flush() override {
    if (closed_ || dirty_.empty()) return;
    std::swap(dirty_, flushing_);
    for (ServerConn* c : flushing_) {
      c->dirty = false;
      StartWrite(c);
    }
    flushing_.clear();
  }

 private:
  // Handles the frames buffered in c's decoder until it needs more input, the connection
  // stops, or the unsent output passes the high water (then reading pauses until it drains).
  void Process(ServerConn* c) {
    proto::Frame f;
    c->paused = false;
    while (!c->stopped) {
      if (c->unsent() >= opts_.output_high_water) {
        c->paused = true;
        break;
      }
      proto::DecodeResult r = c->decoder.Next(&f);
      if (r == proto::DecodeResult::kNeedMore) break;
      if (r == proto::DecodeResult::kError) {
        // Frames before the bad one are executed and answered first (Fatal).
        const proto::ProtocolError& e = c->decoder.error();
        LOG_WARN("binary peer connection: protocol error %s: %s", proto::ErrorCodeName(e.code),
                 e.reason.c_str());
        Fatal(c, e.code, e.reason);
        break;
      }
      // Anything but a write runs after the writes that came before it (CommitWrites).
      proto::Op op;
      if (!proto::RequestOp(f.type, &op)) {
        CommitWrites(c);
        if (f.type == proto::FrameType::kRange) {
          Execute(c, f);
        } else {
          HandleControl(c, f);
        }
        continue;
      }
      if (op == proto::Op::kGet) CommitWrites(c);
      Execute(c, f);
    }
    if (c->closing) return;
    if (c->read_done && !c->paused && !c->stopped) FinishInput(c);
    UpdateReading(c);
    if (!c->out.empty()) MarkDirty(c);
  }

  // PUT/REMOVE frames are queued in the loop's replica and committed with the other writes of
  // the iteration (one log write(2)); a frame that is not a write first commits those of its
  // connection, so it sees them.
  void CommitWrites(ServerConn* c) {
    if (c->queued_writes == 0) return;
    ctx_.local->Commit();
  }

  // Hands a request to the replica; its answer comes through waiter_ (maybe at once).
  void Execute(ServerConn* c, const proto::Frame& f) {
    const cluster::PeerRequest req = ToPeerRequest(f);
    const bool write = req.op == cluster::PeerOp::kPut || req.op == cluster::PeerOp::kRemove;
    ++c->unanswered;
    if (write) ++c->queued_writes;
    ctx_.local->Execute(req, &waiter_, slots_.Put(Slot{c, f.request_id, write}));
  }

  struct Slot {
    ServerConn* conn = nullptr;
    uint64_t request_id = 0;
    bool write = false;
  };

  void OnAnswer(uint64_t slot, cluster::PeerResponse&& resp) {
    const Slot s = slots_.Take(slot);
    ServerConn* c = s.conn;
    --c->unanswered;
    if (s.write) --c->queued_writes;
    if (c->closing) return MaybeDelete(c);
    EncodePeerResponse(&c->out, s.request_id, resp,
                       resp.clock_skew ? proto::ErrorCode::kClockSkew
                       : resp.no_space ? proto::ErrorCode::kNoSpace
                       : resp.invalid  ? proto::ErrorCode::kInvalidRequest
                                       : proto::ErrorCode::kStorageError);
    if (c->unanswered == 0 && !c->final_error.empty()) {
      c->out.append(c->final_error);
      c->final_error.clear();
    }
    if (c->unanswered == 0 && c->close_after_write) return CloseAfterWrite(c);
    MarkDirty(c);
  }

  // The peer half-closed and every complete frame it sent was handled: a clean end unless a
  // frame was cut short. Either way the connection closes once its answers are written.
  void FinishInput(ServerConn* c) {
    if (!c->decoder.Finish()) {
      const proto::ProtocolError& e = c->decoder.error();
      LOG_WARN("binary peer connection: %s", e.reason.c_str());
      return Fatal(c, e.code, e.reason);
    }
    c->stopped = true;
    CloseAfterWrite(c);
  }

  // A frame that is not a request: the handshake, AUTH, PING, ERROR, PONG.
  void HandleControl(ServerConn* c, const proto::Frame& f) {
    switch (f.type) {
      case proto::FrameType::kHandshake: {
        auto refused = proto::CheckHandshake(f.url, f.fingerprint, urls_, fingerprint_);
        if (refused) {
          LOG_WARN("binary peer connection from %.*s refused: %s: %s",
                   static_cast<int>(f.url.size()), f.url.data(),
                   proto::ErrorCodeName(refused->code), refused->reason.c_str());
          return Fatal(c, refused->code, refused->reason);
        }
        c->client_url.assign(f.url);
        c->client_nonce.assign(f.nonce);
        c->server_nonce = proto::auth::RandomNonce();
        proofs_.clear();
        proto::auth::AppendProofs(&proofs_, ctx_.keys, proto::auth::Prover::kServer, Transcript(c));
        proto::EncodeHandshakeOk(&c->out, self_url_, fingerprint_, ServerNonce(c), proofs_);
        return;
      }
      case proto::FrameType::kAuth: {
        const proto::auth::Verdict v = proto::auth::VerifyProofs(
            ctx_.keys, proto::auth::Prover::kClient, Transcript(c), f.proofs);
        if (v != proto::auth::Verdict::kOk) {
          NoteAuthFailure(v == proto::auth::Verdict::kMissing ? AuthFailure::kBinaryMissing
                                                              : AuthFailure::kBinaryMismatch,
                          RemoteIp(c->tcp), "binary peer claiming to be " + c->client_url);
          return Fatal(c, proto::ErrorCode::kAuthFailed, "no valid proof of the cluster secret");
        }
        c->handshaken = true;  // proved itself: no longer a pending handshake
        std::erase(pending_, c);
        if (ctx_.on_peer_hello) {
          auto it = std::find(urls_.begin(), urls_.end(), c->client_url);
          if (it != urls_.end()) ctx_.on_peer_hello(static_cast<size_t>(it - urls_.begin()));
        }
        std::string().swap(c->client_nonce);
        return;
      }
      case proto::FrameType::kPing:
        proto::EncodePong(&c->out, f.request_id, f.payload);
        return;
      case proto::FrameType::kError:  // the peer is closing: nothing more will come
        LOG_DEBUG("binary peer connection closed by the peer: %s", proto::ErrorText(f).c_str());
        c->stopped = true;
        return CloseAfterWrite(c);
      default:  // PONG: nothing to do
        return;
    }
  }

  static std::string_view ServerNonce(const ServerConn* c) {
    return {reinterpret_cast<const char*>(c->server_nonce.data()), c->server_nonce.size()};
  }

  proto::auth::Transcript Transcript(const ServerConn* c) const {
    return proto::auth::Transcript{c->client_nonce, ServerNonce(c), fingerprint_, c->client_url,
                                   self_url_};
  }

  // Answers with an ERROR frame after whatever was already answered, handles nothing more and
  // closes once it is written.
  // (After the answers still to come, with --fsync always.)
  void Fatal(ServerConn* c, proto::ErrorCode code, std::string_view reason) {
    CommitWrites(c);
    proto::EncodeError(c->unanswered == 0 ? &c->out : &c->final_error, code, reason);
    c->stopped = true;
    CloseAfterWrite(c);
  }

  // Closes once every request is answered and every answer written.
  void CloseAfterWrite(ServerConn* c) {
    c->close_after_write = true;
    if (c->unanswered > 0) return;
    if (c->out.empty() && !c->write_active) return CloseNow(c);
    MarkDirty(c);
  }

  void UpdateReading(ServerConn* c) {
    if (c->closing) return;
    const bool want = !c->stopped && !c->read_done && !c->paused;
    auto* stream = reinterpret_cast<uv_stream_t*>(c->tcp);
    if (want && !c->reading) {
      int rc = uv_read_start(stream, &binary_io::AllocReadBuffer, &BinaryServer::OnRead);
      if (rc != 0) return CloseNow(c);
      c->reading = true;
    } else if (!want && c->reading) {
      uv_read_stop(stream);
      c->reading = false;
    }
  }

  void MarkDirty(ServerConn* c) {
    if (c->dirty || c->closing) return;
    c->dirty = true;
    dirty_.push_back(c);
  }

  void CloseNow(ServerConn* c) {
    if (c->closing) return;
    c->closing = true;
    c->owner = nullptr;
    c->reading = false;
    if (c->dirty) std::erase(dirty_, c);
    if (!c->handshaken) std::erase(pending_, c);
    std::erase(conns_, c);
    uv_close(reinterpret_cast<uv_handle_t*>(c->tcp), &OnConnClosed);
  }

  void StartWrite(ServerConn* c) {
    if (c->closing || c->write_active || c->out.empty()) return;
    if (TryWriteNow(reinterpret_cast<uv_stream_t*>(c->tcp), &c->out) < 0) return CloseNow(c);
    if (c->out.empty()) return AfterWrite(c);  // written at once: the same follow-up as OnWrite
    std::swap(c->out, c->writing);
    uv_buf_t buf = uv_buf_init(c->writing.data(), static_cast<unsigned>(c->writing.size()));
    int rc = uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(c->tcp), &buf, 1,
                      &BinaryServer::OnWrite);
    if (rc != 0) return CloseNow(c);
    c->write_active = true;
    c->send_progress_ms = uv_now(loop_);
    c->send_queue_seen = c->tcp->write_queue_size;
  }

  // Closes connections past their handshake timeout, and those whose write in flight made no
  // progress (the peer does not read) for the send timeout.
  static void OnSweep(uv_timer_t* t) {
    auto* self = static_cast<BinaryServer*>(t->data);
    const uint64_t now = uv_now(self->loop_);
    std::vector<ServerConn*> expired;
    for (ServerConn* c : self->pending_) {
      if (now - c->adopted_ms > self->opts_.handshake_timeout_ms) expired.push_back(c);
    }
    for (ServerConn* c : self->conns_) {
      if (!c->write_active) continue;
      const size_t queued = c->tcp->write_queue_size;
      if (queued != c->send_queue_seen) {
        c->send_queue_seen = queued;
        c->send_progress_ms = now;
      } else if (now - c->send_progress_ms > self->opts_.send_timeout_ms) {
        expired.push_back(c);
      }
    }
    for (ServerConn* c : expired) {
      LOG_DEBUG("binary peer connection closed: %s timeout", c->handshaken ? "send" : "handshake");
      self->CloseNow(c);
    }
  }

  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* c = static_cast<ServerConn*>(stream->data);
    BinaryServer* self = c->owner;
    if (self == nullptr) return;
    if (nread > 0) {
      c->decoder.Feed(buf->base, static_cast<size_t>(nread));
      return self->Process(c);
    }
    if (nread == 0) return;
    c->read_done = true;
    self->UpdateReading(c);
    if (nread != UV_EOF) return self->CloseNow(c);  // reset or error: nobody to answer
    // Paused: the frames still buffered are handled first (OnWrite -> Process).
    if (!c->stopped && !c->paused) self->FinishInput(c);
  }

  static void OnWrite(uv_write_t* req, int status) {
    auto* c = static_cast<ServerConn*>(req->data);
    c->write_active = false;
    BinaryServer* self = c->owner;
    if (self == nullptr) return;  // closing: cancelled
    if (status != 0) return self->CloseNow(c);
    binary_io::ResetWritten(&c->writing);
    self->AfterWrite(c);
  }

  // Everything queued so far is written: resume input held back by backpressure, send what it
  // produced, or close after a final ERROR frame.
  void AfterWrite(ServerConn* c) {
    if (c->paused) {
      Process(c);  // frames left over from before the pause
      if (c->closing) return;
    }
    if (!c->out.empty()) return StartWrite(c);
    if (c->close_after_write) CloseNow(c);
  }

  uv_loop_t* loop_;
  BinaryServerContext ctx_;
  BinaryServerOptions opts_;
  std::vector<std::string> urls_;
  uint64_t fingerprint_ = 0;
  std::string self_url_;
  std::string proofs_;           // scratch for HANDSHAKE_OK's proofs
  uv_timer_t* sweep_ = nullptr;  // owned; freed by its close callback
  std::vector<ServerConn*> conns_;
  std::vector<ServerConn*> pending_;   // handshake not accepted yet, oldest first
  std::vector<ServerConn*> dirty_;     // connections with output to flush
  std::vector<ServerConn*> flushing_;  // dirty_ being flushed (kept for its capacity)
  Slots<Slot> slots_;                  // requests handed to the replica, by cookie
  cluster::MemberWaiter<BinaryServer, &BinaryServer::OnAnswer> waiter_;
  bool closed_ = false;
};

}  // namespace

std::unique_ptr<BinaryPeerServer> MakeBinaryPeerServer(uv_loop_t* loop,
                                                       const BinaryServerContext& ctx,
                                                       const BinaryServerOptions& options) {
  return std::make_unique<BinaryServer>(loop, ctx, options);
}

std::unique_ptr<BinaryPeerServer> MakeBinaryPeerServer(uv_loop_t* loop,
                                                       const BinaryServerContext& ctx) {
  return MakeBinaryPeerServer(loop, ctx, BinaryServerOptions{});
}

}  // namespace kv::net
