// Tests of the binary peer transport and server: a real server (BinaryPeerServer over a real
// storage::Engine in a temp dir) and real clients on one uv loop over loopback, plus raw sockets
// and a scripted peer for what a well-behaved peer never does. Every wait drives the loop until
// a condition holds, bounded by RunUntil's safety timer.
#include "peer/binary.h"

#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluster/hint_file.h"
#include "cluster/hlc.h"
#include "cluster/ring.h"
#include "common/fingerprint.h"
#include "common/range_page.h"
#include "peer/auth_failures.h"
#include "peer/frames.h"
#include "proto/auth.h"
#include "proto/frame_decoder.h"
#include "proto/wire.h"
#include "storage/engine.h"
#include "unit/net_support/net_test_util.h"
#include "unit/storage/storage_test_util.h"

namespace {

using kv::test::Collector;
using kv::test::DeadPort;
using kv::test::Get;
using kv::test::Loop;
using kv::test::Put;
using kv::test::Remove;
using kv::test::RunFor;

using kv::cluster::PeerEndpoint;
using kv::cluster::PeerRequest;
using kv::cluster::PeerResponse;
using kv::cluster::PeerTransport;
using kv::net::BinaryPeerOptions;
using kv::net::BinaryPeerServer;
using kv::net::BinaryServerOptions;
using kv::net::MakeBinaryPeerServer;
using kv::net::MakeBinaryPeerTransport;
using kv::proto::ErrorCode;
using kv::proto::FrameDecoder;
using kv::proto::FrameType;
using kv::test::RunUntil;

constexpr uint64_t kFar = 600000;  // a deadline that never fires within a test
constexpr char kClientUrl[] = "http://127.0.0.1:7001";
constexpr char kOtherUrl[] = "http://127.0.0.1:7002";
const std::string kNonce(kv::proto::kNonceBytes, 'N');  // raw clients' and scripted servers'

kv::proto::auth::ClusterKeys Keys(const std::string& secrets) {
  kv::proto::auth::ClusterKeys k;
  REQUIRE(kv::proto::auth::ParseSecrets(secrets, &k) == "");
  return k;
}

// A decoded frame that owns its bytes.
struct OwnedFrame {
  FrameType type;
  uint64_t id = 0;
  uint64_t version = 0;
  ErrorCode code{};
  std::string key, value, message, payload, url, nonce, proofs;
  uint64_t fingerprint = 0;
};

OwnedFrame Own(const kv::proto::Frame& f) {
  OwnedFrame o;
  o.type = f.type;
  o.id = f.request_id;
  o.version = f.version;
  o.code = f.code;
  o.key = f.key;
  o.value = f.value;
  o.message = f.message;
  o.payload = f.payload;
  o.url = f.url;
  o.fingerprint = f.fingerprint;
  o.nonce = f.nonce;
  o.proofs = f.proofs;
  return o;
}

// Decodes everything a server sent to a raw client; *failed if the bytes broke the protocol.
std::vector<OwnedFrame> DecodeFromServer(const std::string& bytes, bool* failed) {
  FrameDecoder d(FrameDecoder::Role::kClient);
  d.Feed(bytes.data(), bytes.size());
  std::vector<OwnedFrame> out;
  kv::proto::Frame f;
  kv::proto::DecodeResult r;
  while ((r = d.Next(&f)) == kv::proto::DecodeResult::kFrame) out.push_back(Own(f));
  *failed = r == kv::proto::DecodeResult::kError || !d.Finish();
  return out;
}

// A raw TCP connection (accepted by the test listener, or opened by the test) that collects what
// it reads and writes whatever the test says. Owned by the Harness; closed before the loop ends.
struct RawConn {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  std::string in;
  bool connected = false;
  bool eof = false;
  bool closing = false;
  bool closed = false;
  std::function<void(RawConn&, std::string_view)> on_data;
  std::unique_ptr<FrameDecoder> decoder;  // scripted peers decode what the client sends
  std::vector<OwnedFrame> frames;         // scripted: what the client sent, AUTH frames left out
  std::vector<OwnedFrame> auths;          // scripted: the client's AUTH frames
  char buf[65536];

  explicit RawConn(uv_loop_t* loop) {
    uv_tcp_init(loop, &tcp);
    tcp.data = this;
  }

  void StartReading() {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* c = static_cast<RawConn*>(h->data);
          *b = uv_buf_init(c->buf, sizeof c->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* c = static_cast<RawConn*>(s->data);
          if (n > 0) {
            c->in.append(b->base, static_cast<size_t>(n));
            if (c->on_data) c->on_data(*c, std::string_view(b->base, static_cast<size_t>(n)));
          } else if (n < 0) {
            c->eof = true;
            uv_read_stop(s);
          }
        });
  }

  void Write(std::string data) {
    if (closing) return;
    struct Req {
      uv_write_t req;
      std::string data;
    };
    auto* w = new Req{{}, std::move(data)};
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                      [](uv_write_t* r, int) { delete static_cast<Req*>(r->data); });
    if (rc != 0) delete w;
  }

  void Shutdown() {
    auto* req = new uv_shutdown_t;
    if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp),
                    [](uv_shutdown_t* r, int) { delete r; }) != 0) {
      delete req;
    }
  }

  void Close() {
    if (closing) return;
    closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp),
             [](uv_handle_t* h) { static_cast<RawConn*>(h->data)->closed = true; });
  }
};

// A test node: a uv_tcp listener on 127.0.0.1:<ephemeral> that, in kServe mode, reads the
// preface of each accepted connection and Adopts it into a real BinaryPeerServer over a real
// engine; in kSilent mode accepts and never answers; in kScripted mode answers the handshake and
// records the client's frames, leaving the answers to the test.
class Harness {
 public:
  enum class Mode { kServe, kSilent, kScripted };

  // Listens on bind_host:bind_port (0: ephemeral); its URL is http://url_host:port.
  explicit Harness(uv_loop_t* loop, Mode mode = Mode::kServe, BinaryServerOptions opts = {},
                   const char* bind_host = "127.0.0.1", uint16_t bind_port = 0,
                   const char* url_host = "127.0.0.1", kv::proto::auth::ClusterKeys keys = {})
      : loop_(loop), mode_(mode), keys_(keys) {
    bind_host_ = bind_host;
    uv_tcp_init(loop_, &listener_);
    listener_.data = this;
    sockaddr_in addr;
    uv_ip4_addr(bind_host, bind_port, &addr);
    REQUIRE(uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, &OnConnection) == 0);
    sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    url = std::string("http://") + url_host + ":" + std::to_string(port);
    urls = {url, kClientUrl, kOtherUrl};
    fingerprint = kv::ClusterFingerprint(urls);
    ring = std::make_unique<kv::cluster::Ring>(urls);

    kv::storage::Options o;
    o.dir = dir_.store();
    o.fsync = kv::storage::FsyncPolicy::kNever;
    o.background = false;
    REQUIRE(kv::storage::Engine::Open(o, &engine).ok());
    local = std::make_unique<kv::cluster::LocalReplica>(engine.get(), &hlc);
    // As the node's before-poll step does: the writes of each iteration are committed, then
    // the answers written, before the loop polls.
    uv_prepare_init(loop_, &before_poll_);
    before_poll_.data = this;
    uv_prepare_start(&before_poll_, [](uv_prepare_t* h) {
      auto* self = static_cast<Harness*>(h->data);
      while (self->local->Commit()) {
      }
      if (self->server) self->server->Flush();
    });
    kv::net::BinaryServerContext ctx;
    ctx.local = local.get();
    ctx.ring = ring.get();
    ctx.self_index = 0;
    ctx.on_peer_hello = [this](size_t node) { hellos.push_back(node); };
    ctx.keys = keys;
    server = MakeBinaryPeerServer(loop_, ctx, opts);
  }

  ~Harness() {
    while (local->Commit()) {
    }
    server->Close();
    uv_close(reinterpret_cast<uv_handle_t*>(&before_poll_), nullptr);
    for (auto& c : raws_) c->Close();
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_),
             [](uv_handle_t* h) { static_cast<Harness*>(h->data)->listener_closed_ = true; });
    CHECK(RunUntil(loop_, [&] {
      if (!listener_closed_ || sniffing_ != 0) return false;
      for (auto& c : raws_) {
        if (!c->closed) return false;
      }
      return true;
    }));
    server.reset();
  }

  PeerEndpoint Endpoint(std::string self_url = kClientUrl) const {
    PeerEndpoint ep;
    ep.url = url;
    ep.host = "127.0.0.1";
    ep.port = port;
    ep.self_url = std::move(self_url);
    ep.cluster_fingerprint = fingerprint;
    return ep;
  }

  // A raw client connection to this node (connected once `connected`).
  RawConn* Connect() {
    raws_.push_back(std::make_unique<RawConn>(loop_));
    RawConn* c = raws_.back().get();
    c->connect_req.data = c;
    sockaddr_in addr;
    uv_ip4_addr(bind_host_.c_str(), port, &addr);
    REQUIRE(uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<const sockaddr*>(&addr),
                           [](uv_connect_t* r, int status) {
                             auto* c = static_cast<RawConn*>(r->data);
                             if (status == 0) {
                               c->connected = true;
                               c->StartReading();
                             } else {
                               c->eof = true;
                             }
                           }) == 0);
    return c;
  }

  // Preface + a HANDSHAKE from `self_url` with fingerprint `fp` (0: the cluster's) + an AUTH
  // with `proofs` (none: what a node without a secret sends).
  std::string Hello(std::string_view self_url = kClientUrl, uint64_t fp = 0,
                    std::string_view proofs = {}) const {
    std::string s;
    kv::proto::AppendPreface(&s);
    kv::proto::EncodeHandshake(&s, self_url, fp == 0 ? fingerprint : fp, kNonce);
    kv::proto::EncodeAuth(&s, proofs);
    return s;
  }

  // Connections accepted in kSilent / kScripted mode.
  std::vector<RawConn*> peers;
  // Scripted mode: what HANDSHAKE_OK says.
  std::string scripted_url;
  uint64_t scripted_fingerprint = 0;

  uint16_t port = 0;
  std::string url;
  std::vector<std::string> urls;
  uint64_t fingerprint = 0;
  size_t accepted = 0;
  size_t adopted = 0;
  std::vector<size_t> hellos;  // ring indexes of the peers whose handshake was accepted
  std::unique_ptr<kv::cluster::Ring> ring;
  kv::cluster::Hlc hlc{1};
  std::unique_ptr<kv::storage::Engine> engine;
  std::unique_ptr<kv::cluster::LocalReplica> local;
  std::unique_ptr<BinaryPeerServer> server;

  kv::storage::ReadResult Read(std::string_view key) {
    kv::storage::ReadResult r;
    REQUIRE(engine->Get(key, &r).ok());
    return r;
  }

 private:
  // Reads the first bytes of a connection to be adopted (the HTTP server's role in the node).
  struct Sniff {
    Harness* harness;
    std::string bytes;
    char buf[4096];
  };

  static void OnConnection(uv_stream_t* listener, int status) {
    auto* self = static_cast<Harness*>(listener->data);
    if (status != 0) return;
    ++self->accepted;
    if (self->mode_ != Mode::kServe) {
      self->raws_.push_back(std::make_unique<RawConn>(self->loop_));
      RawConn* c = self->raws_.back().get();
      REQUIRE(uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)) == 0);
      c->connected = true;
      if (self->mode_ == Mode::kScripted) {
        c->decoder = std::make_unique<FrameDecoder>(FrameDecoder::Role::kServer);
        c->on_data = [self](RawConn& c, std::string_view data) {
          c.decoder->Feed(data.data(), data.size());
          kv::proto::Frame f;
          while (c.decoder->Next(&f) == kv::proto::DecodeResult::kFrame) {
            if (f.type == FrameType::kAuth) {
              c.auths.push_back(Own(f));
              continue;
            }
            c.frames.push_back(Own(f));
            if (f.type == FrameType::kHandshake) {
              // Proves with the harness's keys, as a real server would.
              const std::string server_url =
                  self->scripted_url.empty() ? self->url : self->scripted_url;
              const uint64_t fp =
                  self->scripted_fingerprint == 0 ? self->fingerprint : self->scripted_fingerprint;
              std::string proofs;
              kv::proto::auth::AppendProofs(
                  &proofs, self->keys_, kv::proto::auth::Prover::kServer,
                  kv::proto::auth::Transcript{f.nonce, kNonce, fp, f.url, server_url});
              std::string ok;
              kv::proto::EncodeHandshakeOk(&ok, server_url, fp, kNonce, proofs);
              c.Write(std::move(ok));
            }
          }
        };
      }
      c->StartReading();
      self->peers.push_back(c);
      return;
    }
    auto* h = new uv_tcp_t;
    uv_tcp_init(self->loop_, h);
    REQUIRE(uv_accept(listener, reinterpret_cast<uv_stream_t*>(h)) == 0);
    h->data = new Sniff{self, {}, {}};
    ++self->sniffing_;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(h),
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* s = static_cast<Sniff*>(h->data);
          *b = uv_buf_init(s->buf, sizeof s->buf);
        },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* b) {
          auto* s = static_cast<Sniff*>(st->data);
          Harness* self = s->harness;
          if (n > 0) s->bytes.append(b->base, static_cast<size_t>(n));
          if (n >= 0 && s->bytes.size() < kv::proto::kPrefaceMagicSize) return;
          uv_read_stop(st);
          --self->sniffing_;
          auto* h = reinterpret_cast<uv_tcp_t*>(st);
          std::unique_ptr<Sniff> owned(s);
          if (n < 0) {
            uv_close(reinterpret_cast<uv_handle_t*>(h),
                     [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
            return;
          }
          ++self->adopted;
          self->server->Adopt(h, owned->bytes);
        });
  }

  uv_loop_t* loop_;
  Mode mode_;
  kv::proto::auth::ClusterKeys keys_;
  std::string bind_host_;
  uv_prepare_t before_poll_;
  kv::storage::testutil::TempDir dir_;
  uv_tcp_t listener_;
  bool listener_closed_ = false;
  int sniffing_ = 0;
  std::vector<std::unique_ptr<RawConn>> raws_;
};

bool Contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("binary transport: put/get/remove round trips keep the newest version") {
  Loop l;
  Harness node(&l.loop);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
  const uint64_t d = l.now() + kFar;
  const std::string odd_key = std::string("a\0b\xff", 4);
  const std::string big(1 << 20, 'v');

  t->Send(Put("k", "v100", 100), d, &w, 1);
  CHECK(t->in_flight() == 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  t->Send(Get("k"), d, &w, 2);
  t->Send(Put("k", "older", 50), d, &w, 3);  // older than what is stored: kept, answers 100
  t->Send(Get("k"), d, &w, 4);
  t->Send(Get("missing"), d, &w, 5);
  t->Send(Put(odd_key, big, 300), d, &w, 6);
  t->Send(Put("empty", "", 301), d, &w, 7);
  CHECK(t->in_flight() == 6);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 7; }));
  t->Send(Remove("k", 200), d, &w, 8);
  t->Send(Get("k"), d, &w, 9);
  t->Send(Remove("k", 150), d, &w, 10);  // older remove: tombstone at 200 stays
  t->Send(Put("k", "v120", 120), d, &w, 11);
  t->Send(Get(odd_key), d, &w, 12);
  t->Send(Get("empty"), d, &w, 13);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 13; }));
  CHECK(t->in_flight() == 0);
  CHECK(w.each_once());

  CHECK(w.one(1).kind == PeerResponse::kStored);
  CHECK(w.one(1).version == 100);
  CHECK(w.one(2).kind == PeerResponse::kValue);
  CHECK(w.one(2).value == "v100");
  CHECK(w.one(2).version == 100);
  CHECK(w.one(3).kind == PeerResponse::kStored);
  CHECK(w.one(3).version == 100);
  CHECK(w.one(4).kind == PeerResponse::kValue);
  CHECK(w.one(4).value == "v100");
  CHECK(w.one(5).kind == PeerResponse::kAbsent);
  CHECK(w.one(6).kind == PeerResponse::kStored);
  CHECK(w.one(6).version == 300);
  CHECK(w.one(7).kind == PeerResponse::kStored);
  CHECK(w.one(8).kind == PeerResponse::kStored);
  CHECK(w.one(8).version == 200);
  CHECK(w.one(9).kind == PeerResponse::kTombstone);
  CHECK(w.one(9).version == 200);
  CHECK(w.one(10).kind == PeerResponse::kStored);
  CHECK(w.one(10).version == 200);
  CHECK(w.one(11).kind == PeerResponse::kStored);
  CHECK(w.one(11).version == 200);
  CHECK(w.one(12).kind == PeerResponse::kValue);
  CHECK(w.one(12).value == big);
  CHECK(w.one(12).version == 300);
  CHECK(w.one(13).kind == PeerResponse::kValue);
  CHECK(w.one(13).value.empty());
  // The server stored through the engine and its clock observed the incoming versions.
  CHECK(node.Read("k").kind == kv::storage::ReadResult::kTombstone);
  CHECK(node.hlc.Last() >= 301);
  CHECK(node.adopted == 1);  // one persistent connection carried everything
}

TEST_CASE("binary transport: 1000 requests in flight on one connection, each answered once") {
  Loop l;
  Harness node(&l.loop);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
  const uint64_t d = l.now() + kFar;
  std::vector<std::string> keys, values;
  for (int i = 0; i < 1000; ++i) {
    keys.push_back("key" + std::to_string(i));
    values.push_back(std::string(static_cast<size_t>(i % 97), static_cast<char>('a' + i % 26)));
  }
  for (int i = 0; i < 1000; ++i) t->Send(Put(keys[i], values[i], 1000 + i), d, &w, i);
  CHECK(t->in_flight() == 1000);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1000; }));
  CHECK(w.each_once());
  for (int i = 0; i < 1000; ++i) {
    CHECK(w.one(i).kind == PeerResponse::kStored);
    CHECK(w.one(i).version == uint64_t(1000 + i));
  }
  // Reads, with a waiter that sends another request from inside each callback (re-entry).
  Collector r;
  size_t chained = 0;
  r.then = [&](uint64_t cookie, const PeerResponse&) {
    if (cookie < 1000) {
      ++chained;
      t->Send(Get(keys[cookie]), d, &r, cookie + 1000);
    }
  };
  for (int i = 0; i < 1000; ++i) t->Send(Get(keys[i]), d, &r, i);
  REQUIRE(RunUntil(&l.loop, [&] { return r.count == 2000; }));
  CHECK(r.each_once());
  for (int i = 0; i < 2000; ++i) {
    CHECK(r.one(i).kind == PeerResponse::kValue);
    CHECK(r.one(i).value == values[i % 1000]);
  }
  CHECK(chained == 1000);
  CHECK(t->in_flight() == 0);
  CHECK(node.adopted == 1);
}

TEST_CASE("binary transport: answers match by id in any order; late answers are dropped") {
  Loop l;
  Harness peer(&l.loop, Harness::Mode::kScripted);
  Collector w;
  BinaryPeerOptions opts;
  opts.stall_after_ms = kFar;  // however slow the machine, the connection stays
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, peer.Endpoint(), opts));
  t->Send(Get("a"), l.now() + 30, &w, 1);  // will time out before its answer
  t->Send(Get("b"), l.now() + kFar, &w, 2);
  t->Send(Put("c", "x", 9), l.now() + kFar, &w, 3);
  REQUIRE(
      RunUntil(&l.loop, [&] { return !peer.peers.empty() && peer.peers[0]->frames.size() == 4; }));
  RawConn* c = peer.peers[0];
  REQUIRE(c->frames[0].type == FrameType::kHandshake);
  CHECK(c->frames[0].url == kClientUrl);
  CHECK(c->frames[0].fingerprint == peer.fingerprint);
  const OwnedFrame a = c->frames[1], b = c->frames[2], put = c->frames[3];
  CHECK(a.key == "a");
  CHECK(put.version == 9);
  CHECK(a.id != b.id);
  CHECK(a.id != 0);

  std::string answers;  // c first, then b: reverse order
  PeerResponse stored;
  stored.kind = PeerResponse::kStored;
  stored.version = 9;
  kv::net::EncodePeerResponse(&answers, put.id, stored);
  kv::proto::EncodeErrorResponse(&answers, b.id, ErrorCode::kNoSpace, "disk full");
  c->Write(answers);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));  // a times out meanwhile
  CHECK(w.one(1).error == "timeout");
  CHECK(w.one(2).kind == PeerResponse::kError);
  CHECK(Contains(w.one(2).error, "NO_SPACE"));
  CHECK(w.one(3).kind == PeerResponse::kStored);
  CHECK(w.one(3).version == 9);

  // The late answer to a, then a PING: the connection is still up and answers it.
  std::string late;
  PeerResponse absent;
  absent.kind = PeerResponse::kAbsent;
  kv::net::EncodePeerResponse(&late, a.id, absent);
  kv::proto::EncodePing(&late, 77, "hi");
  c->Write(late);
  REQUIRE(RunUntil(&l.loop, [&] { return c->frames.size() == 5; }));
  CHECK(c->frames[4].type == FrameType::kPong);
  CHECK(c->frames[4].id == 77);
  CHECK(c->frames[4].payload == "hi");
  CHECK(w.count == 3);
  CHECK(w.each_once());
  CHECK(t->in_flight() == 0);
  // Still the same connection for the next request.
  t->Send(Get("d"), l.now() + kFar, &w, 4);
  REQUIRE(RunUntil(&l.loop, [&] { return c->frames.size() == 6; }));
  CHECK(peer.accepted == 1);
}

TEST_CASE("binary transport: a refused handshake fails the requests and the server closes") {
  Loop l;
  Harness node(&l.loop);
  Collector w;

  SUBCASE("wrong cluster fingerprint") {
    PeerEndpoint ep = node.Endpoint();
    ep.cluster_fingerprint ^= 1;
    auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, ep));
    t->Send(Put("k", "v", 5), l.now() + kFar, &w, 1);
    t->Send(Get("k"), l.now() + kFar, &w, 2);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
    CHECK(w.one(1).kind == PeerResponse::kError);
    CHECK(Contains(w.one(1).error, "CLUSTER_MISMATCH"));
    CHECK(Contains(w.one(2).error, "CLUSTER_MISMATCH"));
    // Backing off: the next Send fails before it returns, with the same reason.
    t->Send(Get("k"), l.now() + kFar, &w, 3);
    CHECK(w.count == 3);
    CHECK(Contains(w.one(3).error, "CLUSTER_MISMATCH"));
    CHECK(t->in_flight() == 0);
    // The pipelined PUT was never executed.
    CHECK(node.Read("k").kind == kv::storage::ReadResult::kAbsent);
  }

  SUBCASE("client URL not in the cluster") {
    auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint("http://10.9.9.9:1")));
    t->Send(Put("k", "v", 5), l.now() + kFar, &w, 1);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
    CHECK(Contains(w.one(1).error, "NOT_IN_CLUSTER"));
    CHECK(node.Read("k").kind == kv::storage::ReadResult::kAbsent);
  }

  SUBCASE("server answers with a URL other than the one dialled") {
    Harness peer(&l.loop, Harness::Mode::kScripted);
    peer.scripted_url = kOtherUrl;
    auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, peer.Endpoint()));
    t->Send(Get("k"), l.now() + kFar, &w, 1);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
    CHECK(Contains(w.one(1).error, "NOT_IN_CLUSTER"));
  }

  SUBCASE("raw: ERROR frame, then the server closes; nothing after it is executed") {
    RawConn* c = node.Connect();
    std::string bytes = node.Hello(kClientUrl, node.fingerprint ^ 2);
    kv::proto::EncodeRequest(&bytes, 1, kv::proto::Op::kPut, "raw", "v", 5);
    REQUIRE(RunUntil(&l.loop, [&] { return c->connected; }));
    c->Write(bytes);
    REQUIRE(RunUntil(&l.loop, [&] { return c->eof; }));
    bool failed = false;
    auto frames = DecodeFromServer(c->in, &failed);
    CHECK_FALSE(failed);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type == FrameType::kError);
    CHECK(frames[0].code == ErrorCode::kClusterMismatch);
    CHECK(node.Read("raw").kind == kv::storage::ReadResult::kAbsent);
  }
}

TEST_CASE("binary server: bad bytes close only their connection; the node keeps serving") {
  Loop l;
  Harness node(&l.loop);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
  t->Send(Put("k", "before", 10), l.now() + kFar, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  REQUIRE(w.one(1).kind == PeerResponse::kStored);

  std::string bytes = node.Hello();
  ErrorCode want = ErrorCode::kInternal;
  bool any_code = false;
  std::string header(kv::proto::kFrameHeaderSize, '\0');
  SUBCASE("random bytes") {
    std::mt19937 rng(12345);
    for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(rng()));
    any_code = true;
  }
  SUBCASE("oversize length") {
    header[0] = header[1] = header[2] = header[3] = '\xff';
    header[4] = static_cast<char>(FrameType::kPut);
    bytes += header;
    want = ErrorCode::kFrameTooLarge;
  }
  SUBCASE("unknown frame type") {
    header[4] = '\x7e';
    bytes += header;
    want = ErrorCode::kUnknownFrameType;
  }
  SUBCASE("truncated frame at EOF") {
    std::string put;
    kv::proto::EncodeRequest(&put, 3, kv::proto::Op::kPut, "trunc", "value", 11);
    bytes += put.substr(0, put.size() - 2);
    want = ErrorCode::kTruncatedFrame;
  }
  SUBCASE("bad preface version") {
    bytes.clear();
    kv::proto::AppendPreface(&bytes, 9);
    want = ErrorCode::kUnsupportedVersion;
  }
  SUBCASE("request before the handshake") {
    bytes.clear();
    kv::proto::AppendPreface(&bytes);
    kv::proto::EncodeRequest(&bytes, 3, kv::proto::Op::kPut, "early", "value", 11);
    want = ErrorCode::kBadHandshake;
  }
  RawConn* c = node.Connect();
  REQUIRE(RunUntil(&l.loop, [&] { return c->connected; }));
  c->Write(bytes);
  c->Shutdown();  // so a frame cut short reaches EOF on the server
  REQUIRE(RunUntil(&l.loop, [&] { return c->eof; }));
  bool failed = false;
  auto frames = DecodeFromServer(c->in, &failed);
  CHECK_FALSE(failed);
  REQUIRE_FALSE(frames.empty());
  CHECK(frames.back().type == FrameType::kError);
  if (!any_code) CHECK(frames.back().code == want);
  CHECK(node.Read("trunc").kind == kv::storage::ReadResult::kAbsent);
  CHECK(node.Read("early").kind == kv::storage::ReadResult::kAbsent);

  // The other connection was not disturbed.
  t->Send(Get("k"), l.now() + kFar, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  CHECK(w.one(2).kind == PeerResponse::kValue);
  CHECK(w.one(2).value == "before");
  CHECK(node.adopted == 2);
}

TEST_CASE("binary server: pipelined GETs with large answers pass the output high water") {
  Loop l;
  BinaryServerOptions opts;
  opts.output_high_water = 64 << 10;
  Harness node(&l.loop, Harness::Mode::kServe, opts);
  const std::string big(256 << 10, 'z');
  REQUIRE(node.engine->Put("big", big, 5).ok());
  RawConn* c = node.Connect();
  REQUIRE(RunUntil(&l.loop, [&] { return c->connected; }));
  std::string bytes = node.Hello();
  constexpr int kGets = 48;
  for (int i = 1; i <= kGets; ++i)
    kv::proto::EncodeRequest(&bytes, i, kv::proto::Op::kGet, "big", {}, 0);
  kv::proto::EncodePing(&bytes, 999);
  c->Write(bytes);
  c->Shutdown();  // the server answers everything, then closes
  REQUIRE(RunUntil(&l.loop, [&] { return c->eof; }));
  bool failed = false;
  auto frames = DecodeFromServer(c->in, &failed);
  CHECK_FALSE(failed);
  REQUIRE(frames.size() == kGets + 2);
  CHECK(frames[0].type == FrameType::kHandshakeOk);
  CHECK(frames[0].url == node.url);
  CHECK(frames[0].fingerprint == node.fingerprint);
  for (int i = 1; i <= kGets; ++i) {
    CHECK(frames[i].type == FrameType::kValue);
    CHECK(frames[i].id == uint64_t(i));
    CHECK(frames[i].value == big);
  }
  CHECK(frames.back().type == FrameType::kPong);
  CHECK(frames.back().id == 999);
}

TEST_CASE("binary transport: a refused connection fails fast, and the next Send tries again") {
  Loop l;
  const uint16_t port = DeadPort(&l.loop);
  PeerEndpoint ep;
  ep.url = "http://127.0.0.1:" + std::to_string(port);
  ep.host = "127.0.0.1";
  ep.port = port;
  ep.self_url = kClientUrl;
  ep.cluster_fingerprint = kv::ClusterFingerprint({ep.url, kClientUrl, kOtherUrl});
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, ep));
  t->Send(Get("k"), l.now() + kFar, &w, 1);
  t->Send(Get("k"), l.now() + kFar, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  CHECK(w.one(1).error == "connection refused");
  CHECK(w.one(2).error == "connection refused");
  CHECK_FALSE(w.one(1).slow);  // a fast failure: no circuit breaker for a peer that is down
  // No back-off: the next Send connects again (and is refused again)...
  t->Send(Get("k"), l.now() + kFar, &w, 3);
  CHECK(w.count == 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  CHECK(w.one(3).error == "connection refused");
  CHECK(t->in_flight() == 0);
  // ... so the first request after the peer is back on its port is served.
  Harness back(&l.loop, Harness::Mode::kServe, {}, "127.0.0.1", port);
  t->Send(Get("k"), l.now() + kFar, &w, 4);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 4; }));
  CHECK(w.one(4).kind == PeerResponse::kAbsent);
  t->Close();
}

// Resolves "peer.test" to whatever `ip` says at the time; counts the lookups.
struct FakeDns {
  std::string ip;  // empty: the name does not resolve
  int lookups = 0;
  BinaryPeerOptions Options() {
    BinaryPeerOptions o;
    o.resolve = [this](const std::string& host, uint16_t port, kv::net::Addresses* out) {
      ++lookups;
      CHECK(host == "peer.test");
      if (ip.empty()) return false;
      for (size_t start = 0; start <= ip.size();) {  // "a,b": two addresses, in that order
        size_t end = std::min(ip.find(',', start), ip.size());
        sockaddr_storage a;
        REQUIRE(kv::net::ParseIpLiteral(ip.substr(start, end - start), port, &a));
        out->push_back(a);
        start = end + 1;
      }
      return true;
    };
    o.resolve_backoff_min_ms = 30;
    return o;
  }
};

TEST_CASE("ResolveBackoff: from the minimum, doubling with each failure in a row, capped") {
  kv::net::ResolveBackoff b(100, 500);
  CHECK_FALSE(b.Waiting(0));
  CHECK(b.Failed(1000) == 100);
  CHECK(b.Waiting(1099));
  CHECK_FALSE(b.Waiting(1100));
  CHECK(b.Failed(1100) == 200);
  CHECK(b.Failed(1300) == 400);
  CHECK(b.Failed(1700) == 500);
  CHECK(b.Failed(2200) == 500);
  CHECK(b.Waiting(2699));
  b.Succeeded();  // a lookup that worked: the next failure starts from the minimum again
  CHECK(b.Failed(3000) == 100);
}

// h's endpoint by the name peer.test (h calls itself http://peer.test:port).
PeerEndpoint NamedEndpoint(const Harness& h) {
  PeerEndpoint ep = h.Endpoint();
  ep.host = "peer.test";
  return ep;
}

TEST_CASE("binary transport: a name that does not resolve yet fails fast, retried after back-off") {
  Loop l;
  Harness named(&l.loop, Harness::Mode::kServe, {}, "127.0.0.2", 0, "peer.test");
  FakeDns dns;
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, NamedEndpoint(named), dns.Options()));
  t->Send(Get("k"), l.now() + kFar, &w, 1);
  REQUIRE(w.count == 1);  // before Send returned
  CHECK(w.one(1).error == "cannot resolve host peer.test");
  CHECK_FALSE(w.one(1).slow);
  CHECK(dns.lookups == 1);
  // Within the back-off: fails at once without asking again.
  dns.ip = "127.0.0.2";
  t->Send(Get("k"), l.now() + kFar, &w, 2);
  CHECK(w.count == 2);
  CHECK(dns.lookups == 1);
  RunFor(&l.loop, 40);
  t->Send(Get("k"), l.now() + kFar, &w, 3);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  CHECK(w.one(3).kind == PeerResponse::kAbsent);
  CHECK(dns.lookups == 2);
  CHECK(named.accepted == 1);
  t->Close();
}

TEST_CASE("binary transport: the name is resolved again for each connection") {
  Loop l;
  Harness moved(&l.loop, Harness::Mode::kServe, {}, "127.0.0.2", 0, "peer.test");
  auto first = std::make_unique<Harness>(&l.loop, Harness::Mode::kServe, BinaryServerOptions{},
                                         "127.0.0.1", moved.port, "peer.test");
  FakeDns dns;
  dns.ip = "127.0.0.1";
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, NamedEndpoint(moved), dns.Options()));
  t->Send(Put("k", "v", 5), l.now() + kFar, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).kind == PeerResponse::kStored);
  CHECK(first->Read("k").value == "v");
  // The peer moves to another address: its old one goes away, the name follows it.
  first.reset();
  dns.ip = "127.0.0.2";
  t->Send(Get("k"), l.now() + kFar, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  if (w.one(2).kind == PeerResponse::kError) {  // the request raced the old connection's EOF
    t->Send(Get("k"), l.now() + kFar, &w, 3);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
    CHECK(w.one(3).kind == PeerResponse::kAbsent);
  } else {
    CHECK(w.one(2).kind == PeerResponse::kAbsent);
  }
  CHECK(moved.accepted == 1);
  CHECK(dns.lookups == 2);
  t->Close();
}

TEST_CASE("binary transport: a refused address falls through to the next one of the name") {
  Loop l;
  Harness named(&l.loop, Harness::Mode::kServe, {}, "127.0.0.2", 0, "peer.test");
  FakeDns dns;
  dns.ip = "127.0.0.3,127.0.0.2";  // nobody listens on the first
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, NamedEndpoint(named), dns.Options()));
  t->Send(Get("k"), l.now() + kFar, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).kind == PeerResponse::kAbsent);
  CHECK(named.accepted == 1);
  t->Close();
}

TEST_CASE("binary transport: a real name (localhost) is resolved with getaddrinfo") {
  Loop l;
  Harness node(&l.loop);
  PeerEndpoint ep = node.Endpoint();
  ep.host = "localhost";
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, ep));
  t->Send(Put("k", "v", 7), l.now() + kFar, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).kind == PeerResponse::kStored);
  CHECK(node.Read("k").value == "v");
  t->Close();
}

TEST_CASE("binary transport: Ping is answered by the peer's PONG; the peer hears our hello") {
  Loop l;
  Harness node(&l.loop);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
  CHECK(node.hellos.empty());
  t->Ping(l.now() + kFar, &w, 1);
  t->Send(Get("k"), l.now() + kFar, &w, 2);
  t->Ping(l.now() + kFar, &w, 3);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  CHECK(w.one(1).kind == PeerResponse::kPong);
  CHECK(w.one(2).kind == PeerResponse::kAbsent);
  CHECK(w.one(3).kind == PeerResponse::kPong);
  CHECK(t->in_flight() == 0);
  CHECK(node.hellos == std::vector<size_t>{1});  // kClientUrl is node 1 of its ring
  // A refused handshake is no hello.
  auto stranger =
      l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint(kOtherUrl + std::string("0"))));
  stranger->Ping(l.now() + kFar, &w, 4);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 4; }));
  CHECK(w.one(4).kind == PeerResponse::kError);
  CHECK(node.hellos.size() == 1);
  stranger->Close();
  t->Close();
}

TEST_CASE("binary transport: a Ping to a silent peer times out, slow") {
  Loop l;
  Harness silent(&l.loop, Harness::Mode::kSilent);
  BinaryPeerOptions opts;
  opts.sweep_interval_ms = 5;
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, silent.Endpoint(), opts));
  t->Ping(l.now() + 20, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).error == "timeout");
  CHECK(w.one(1).slow);
  t->Close();
}

TEST_CASE(
    "binary transport: a broken connection fails its requests at once; next Send reconnects") {
  Loop l;
  Harness peer(&l.loop, Harness::Mode::kScripted);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, peer.Endpoint()));
  for (int i = 0; i < 5; ++i) t->Send(Get("k"), l.now() + kFar, &w, i);
  REQUIRE(
      RunUntil(&l.loop, [&] { return !peer.peers.empty() && peer.peers[0]->frames.size() == 6; }));

  SUBCASE("peer closes") {
    peer.peers[0]->Close();
  }
  SUBCASE("peer sends bytes that break the protocol") {
    std::string junk(kv::proto::kFrameHeaderSize, '\0');
    junk[4] = static_cast<char>(FrameType::kGet);  // a request is not an answer
    junk[3] = 5;
    junk += std::string(5, 'x');
    peer.peers[0]->Write(junk);
  }
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 5; }));
  CHECK(w.each_once());
  for (int i = 0; i < 5; ++i) {
    CHECK(w.one(i).kind == PeerResponse::kError);
    CHECK(w.one(i).error != "timeout");
  }
  CHECK(t->in_flight() == 0);
  // The handshake had completed, so no backoff: the next Send opens a fresh connection.
  t->Send(Get("k"), l.now() + kFar, &w, 9);
  REQUIRE(RunUntil(&l.loop,
                   [&] { return peer.peers.size() == 2 && peer.peers[1]->frames.size() == 2; }));
  CHECK(peer.accepted == 2);
}

TEST_CASE("binary transport: a silent server times every request out exactly once") {
  Loop l;
  Harness silent(&l.loop, Harness::Mode::kSilent);
  BinaryPeerOptions opts;
  opts.sweep_interval_ms = 5;
  opts.stall_after_ms = 10;
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, silent.Endpoint(), opts));
  // Connected first (a ping that never expires), so that the requests below all go out.
  t->Ping(l.now() + kFar, &w, 999);
  REQUIRE(RunUntil(&l.loop, [&] { return !silent.peers.empty() && !silent.peers[0]->in.empty(); }));
  for (int i = 0; i < 100; ++i) t->Send(Put("k", "v", 1 + i), l.now() + 20 + i % 7, &w, i);
  CHECK(t->in_flight() == 101);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 101; }));
  CHECK(w.each_once());
  // The first to expire time out; nothing came back on the connection meanwhile, so it counts as
  // stalled and the rest fail with it: all slow failures (they open the circuit breaker).
  int timeouts = 0;
  for (int i = 0; i < 100; ++i) {
    CHECK(w.one(i).slow);
    timeouts += w.one(i).error == "timeout";
    if (w.one(i).error != "timeout") CHECK(w.one(i).error == "connection stalled");
  }
  CHECK(timeouts >= 1);
  CHECK(w.one(999).error == "connection stalled");
  CHECK(t->in_flight() == 0);
  // The silent peer received the preface and HANDSHAKE only: requests wait for its proof.
  std::string hello;
  kv::proto::AppendPreface(&hello);
  kv::proto::EncodeHandshake(&hello, kClientUrl, silent.fingerprint, kNonce);
  CHECK(silent.peers[0]->in.size() == hello.size());
  // An already expired deadline fails at once.
  t->Send(Get("k"), l.now(), &w, 500);
  CHECK(w.count == 102);
  CHECK(w.one(500).error == "timeout");
  // The stalled connection was dropped: the next request goes on a fresh one.
  t->Send(Get("k"), l.now() + kFar, &w, 501);
  REQUIRE(RunUntil(&l.loop, [&] {
    return silent.peers.size() == 2 && silent.peers[1]->in.size() > kv::proto::kFrameHeaderSize;
  }));
  CHECK(silent.accepted == 2);
  CHECK(w.count == 102);
  t->Close();
  CHECK(w.one(501).error == "closed");
}

TEST_CASE(
    "binary transport: a request that times out soon after it was sent keeps the connection") {
  Loop l;
  Harness silent(&l.loop, Harness::Mode::kSilent);
  BinaryPeerOptions opts;
  opts.sweep_interval_ms = 5;
  opts.stall_after_ms = 600000;  // silence this long would be a stall; 20 ms is not
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, silent.Endpoint(), opts));
  t->Send(Get("k"), l.now() + 20, &w, 1);
  t->Send(Get("k"), l.now() + kFar, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).error == "timeout");
  CHECK(t->in_flight() == 1);  // the other request still waits on the same connection
  t->Send(Get("k"), l.now() + kFar, &w, 3);
  REQUIRE(RunUntil(&l.loop, [&] {
    return !silent.peers.empty() && silent.peers[0]->in.size() > 3 * kv::proto::kFrameHeaderSize;
  }));
  CHECK(silent.accepted == 1);
  t->Close();
  CHECK(w.count == 3);
}

TEST_CASE("binary transport: over the in-flight byte cap a request fails fast as overloaded") {
  Loop l;
  Harness silent(&l.loop, Harness::Mode::kSilent);
  PeerEndpoint ep = silent.Endpoint();
  const std::string value(1000, 'v');
  const size_t frame = kv::proto::RequestFrameSize(kv::proto::Op::kPut, "key", value);
  ep.max_in_flight_bytes = 10 * frame + frame / 2;
  BinaryPeerOptions opts;
  opts.sweep_interval_ms = 5;
  opts.stall_after_ms = kFar;  // however slow the machine, the connection stays
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, ep, opts));
  const uint64_t soon = l.now() + 30;
  for (int i = 0; i < 10; ++i) t->Send(Put("key", value, 1), soon, &w, i);
  CHECK(w.count == 0);
  CHECK(t->in_flight() == 10);
  t->Send(Put("key", value, 1), l.now() + kFar, &w, 10);
  CHECK(w.count == 1);  // before Send returned
  CHECK(w.one(10).error == "overloaded");
  t->Send(Get("key"), l.now() + kFar, &w, 11);  // small enough to fit in what is left
  CHECK(w.count == 1);
  CHECK(t->in_flight() == 11);

  // Requests over the protocol's limits never go out.
  t->Send(Get(""), l.now() + kFar, &w, 12);
  t->Send(Get(std::string(kv::proto::kMaxKeyBytes + 1, 'k')), l.now() + kFar, &w, 13);
  CHECK(w.count == 3);
  CHECK(w.one(12).kind == PeerResponse::kError);
  CHECK(w.one(13).kind == PeerResponse::kError);

  // Once the first ten time out their bytes are free again (the connection and the request
  // still on it stay).
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 13; }));
  for (int i = 0; i < 10; ++i) CHECK(w.one(i).error == "timeout");
  t->Send(Put("key", value, 2), soon + kFar, &w, 14);
  CHECK(w.count == 13);
  CHECK(t->in_flight() == 2);
  t->Close();
  CHECK(w.count == 15);
}

TEST_CASE("binary transport: a request bigger than the cap still goes when nothing is in flight") {
  Loop l;
  Harness node(&l.loop);
  PeerEndpoint ep = node.Endpoint();
  ep.max_in_flight_bytes = 1000;
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, ep));
  const std::string value(5000, 'v');
  t->Send(Put("k", value, 1), l.now() + kFar, &w, 1);
  t->Send(Put("k", value, 2), l.now() + kFar, &w, 2);
  CHECK(w.count == 1);
  CHECK(w.one(2).error == "overloaded");
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  CHECK(w.one(1).kind == PeerResponse::kStored);
}

TEST_CASE("binary transport: Close fails pending requests once and frees everything") {
  Loop l;
  Harness silent(&l.loop, Harness::Mode::kSilent);
  Collector w;

  SUBCASE("Close then destroy") {
    auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, silent.Endpoint()));
    for (int i = 0; i < 10; ++i) t->Send(Get("k"), l.now() + kFar, &w, i);
    REQUIRE(RunUntil(&l.loop, [&] { return silent.accepted == 1; }));
    t->Close();
    CHECK(w.count == 10);
    CHECK(w.each_once());
    for (int i = 0; i < 10; ++i) CHECK(w.one(i).error == "closed");
    CHECK(t->in_flight() == 0);
    t->Send(Get("k"), l.now() + kFar, &w, 10);
    CHECK(w.one(10).error == "closed");
    t->Close();  // idempotent
    t.reset();
    CHECK(w.count == 11);
  }

  SUBCASE("destroyed while connecting, without Close") {
    auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, silent.Endpoint()));
    t->Send(Get("k"), l.now() + kFar, &w, 1);
    t.reset();
    CHECK(w.one(1).error == "closed");
  }

  SUBCASE("destroyed from inside a waiter callback") {
    Harness node(&l.loop);
    auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
    Collector pending;
    w.then = [&](uint64_t, const PeerResponse&) { t.reset(); };
    t->Send(Put("x", "y", 3), l.now() + kFar, &w, 100);
    for (int i = 0; i < 5; ++i) t->Send(Get("k"), l.now() + kFar, &pending, i);
    // The first answer destroys the transport; the others fail as closed, once each.
    REQUIRE(RunUntil(&l.loop, [&] { return t.get() == nullptr; }));
    CHECK(w.count == 1);
    CHECK(w.one(100).kind == PeerResponse::kStored);
    CHECK(pending.count == 5);
    CHECK(pending.each_once());
    for (int i = 0; i < 5; ++i) CHECK(pending.one(i).kind == PeerResponse::kError);
  }
  // Loop teardown (Loop's destructor) checks that no handle was left open.
}

// ---- authentication (proto_spec section 11) ----------------------------------------------------

namespace {

const std::string kA = "binary-test-secret-A-0123456789";
const std::string kB = "binary-test-secret-B-0123456789";

// A real server with `server` keys and a real client transport with `client` keys.
struct AuthCase {
  std::string server, client;  // secret files ("" for none)
  bool ok;
  kv::net::AuthFailure counted;  // on refusal: which counter moves
};

kv::proto::auth::ClusterKeys KeysOrNone(const std::string& text) {
  return text.empty() ? kv::proto::auth::ClusterKeys{} : Keys(text);
}

}  // namespace

TEST_CASE("binary auth: every combination of secrets; refused peers write nothing") {
  using kv::net::AuthFailure;
  const AuthCase cases[] = {
      {"", "", true, AuthFailure::kCount},
      {kA, kA, true, AuthFailure::kCount},
      {kA, kA + "\n" + kB, true, AuthFailure::kCount},
      {kA + "\n" + kB, kA, true, AuthFailure::kCount},
      {kA + "\n" + kB, kB, true, AuthFailure::kCount},
      {kB, kA + "\n" + kB, true, AuthFailure::kCount},
      {kB + "\n" + kA, kA + "\n" + kB, true, AuthFailure::kCount},
      {kB, kB + "\n" + kA, true, AuthFailure::kCount},
      // The client finds no valid server proof: it refuses the server and sends nothing.
      {kA, kB, false, AuthFailure::kBinaryServerMismatch},
      {kB, kA, false, AuthFailure::kBinaryServerMismatch},
      {"", kA, false, AuthFailure::kBinaryServerMissing},
      // A client without a secret proves nothing: the server refuses it.
      {kA, "", false, AuthFailure::kBinaryMissing},
  };
  for (const AuthCase& c : cases) {
    CAPTURE(c.server);
    CAPTURE(c.client);
    Loop l;
    Harness node(&l.loop, Harness::Mode::kServe, {}, "127.0.0.1", 0, "127.0.0.1",
                 KeysOrNone(c.server));
    BinaryPeerOptions opts;
    opts.keys = KeysOrNone(c.client);
    const uint64_t before = c.ok ? 0 : kv::net::AuthFailureCount(c.counted);
    Collector w;
    auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint(), opts));
    t->Send(Put("k", "v", 5), l.now() + kFar, &w, 1);
    t->Send(Get("k"), l.now() + kFar, &w, 2);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
    if (c.ok) {
      CHECK(w.one(1).kind == PeerResponse::kStored);
      CHECK(w.one(2).kind == PeerResponse::kValue);
      CHECK(node.Read("k").kind == kv::storage::ReadResult::kValue);
      CHECK(node.hellos.size() == 1);
    } else {
      CHECK(w.one(1).kind == PeerResponse::kError);
      CHECK(Contains(w.one(1).error, "AUTH_FAILED"));
      CHECK(w.one(2).kind == PeerResponse::kError);
      CHECK(node.Read("k").kind == kv::storage::ReadResult::kAbsent);
      CHECK(node.hellos.empty());
      CHECK(kv::net::AuthFailureCount(c.counted) == before + 1);
    }
  }
}

TEST_CASE("binary auth: a client that cannot prove the secret runs nothing, pipelined or not") {
  Loop l;
  Harness node(&l.loop, Harness::Mode::kServe, {}, "127.0.0.1", 0, "127.0.0.1", Keys(kA));
  const uint64_t mismatch = kv::net::AuthFailureCount(kv::net::AuthFailure::kBinaryMismatch);
  const uint64_t missing = kv::net::AuthFailureCount(kv::net::AuthFailure::kBinaryMissing);
  std::string bytes;
  ErrorCode want = ErrorCode::kAuthFailed;
  SUBCASE("a proof made with another secret, then a PUT") {
    // The raw client never saw the server nonce: a proof with the right secret over a guessed
    // transcript is as good as any forgery.
    std::string proofs;
    kv::proto::auth::AppendProofs(
        &proofs, Keys(kA), kv::proto::auth::Prover::kClient,
        kv::proto::auth::Transcript{kNonce, kNonce, node.fingerprint, kClientUrl, node.url});
    bytes = node.Hello(kClientUrl, 0, proofs);
  }
  SUBCASE("no proof, then a PUT") {
    bytes = node.Hello();
  }
  SUBCASE("two wrong proofs") {
    bytes = node.Hello(kClientUrl, 0, std::string(64, 'x'));
  }
  SUBCASE("a PUT before AUTH") {
    kv::proto::AppendPreface(&bytes);
    kv::proto::EncodeHandshake(&bytes, kClientUrl, node.fingerprint, kNonce);
    want = ErrorCode::kBadHandshake;
  }
  kv::proto::EncodeRequest(&bytes, 1, kv::proto::Op::kPut, "forged", "v", ~0ull);
  RawConn* c = node.Connect();
  REQUIRE(RunUntil(&l.loop, [&] { return c->connected; }));
  c->Write(bytes);
  REQUIRE(RunUntil(&l.loop, [&] { return c->eof; }));
  bool failed = false;
  auto frames = DecodeFromServer(c->in, &failed);
  CHECK_FALSE(failed);
  REQUIRE(frames.size() == 2);
  CHECK(frames[0].type == FrameType::kHandshakeOk);
  CHECK(frames[0].proofs.size() == kv::proto::kProofBytes);
  CHECK(frames[0].nonce.size() == kv::proto::kNonceBytes);
  CHECK(frames[1].type == FrameType::kError);
  CHECK(frames[1].code == want);
  CHECK(node.Read("forged").kind == kv::storage::ReadResult::kAbsent);
  CHECK(node.hellos.empty());
  if (want == ErrorCode::kAuthFailed) {
    CHECK(kv::net::AuthFailureCount(kv::net::AuthFailure::kBinaryMismatch) +
              kv::net::AuthFailureCount(kv::net::AuthFailure::kBinaryMissing) ==
          mismatch + missing + 1);
  }
}

TEST_CASE("binary auth: server nonces are fresh, so a recorded server proof is worthless") {
  Loop l;
  Harness node(&l.loop, Harness::Mode::kServe, {}, "127.0.0.1", 0, "127.0.0.1", Keys(kA));
  std::vector<OwnedFrame> oks;
  for (int i = 0; i < 2; ++i) {
    RawConn* c = node.Connect();
    REQUIRE(RunUntil(&l.loop, [&] { return c->connected; }));
    std::string hello;
    kv::proto::AppendPreface(&hello);
    kv::proto::EncodeHandshake(&hello, kClientUrl, node.fingerprint, kNonce);
    c->Write(hello);
    REQUIRE(RunUntil(&l.loop, [&] { return !c->in.empty(); }));
    bool failed = false;
    auto frames = DecodeFromServer(c->in, &failed);
    REQUIRE(frames.size() == 1);
    oks.push_back(frames[0]);
    c->Close();
  }
  CHECK(oks[0].nonce != oks[1].nonce);
  CHECK(oks[0].proofs != oks[1].proofs);  // the same client nonce both times
}

TEST_CASE("binary auth: an impostor server gets neither AUTH nor requests") {
  Loop l;
  // The scripted peer proves with secret B; the client holds A.
  Harness peer(&l.loop, Harness::Mode::kScripted, {}, "127.0.0.1", 0, "127.0.0.1", Keys(kB));
  BinaryPeerOptions opts;
  opts.keys = Keys(kA);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, peer.Endpoint(), opts));
  t->Send(Put("k", "secret value", 5), l.now() + kFar, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(Contains(w.one(1).error, "AUTH_FAILED"));
  REQUIRE(RunUntil(&l.loop, [&] { return !peer.peers.empty() && peer.peers[0]->eof; }));
  REQUIRE(peer.peers[0]->frames.size() == 1);
  CHECK(peer.peers[0]->frames[0].type == FrameType::kHandshake);
  CHECK(peer.peers[0]->auths.empty());
  CHECK(peer.peers[0]->in.find("secret value") == std::string::npos);

  // The same peer proving with A as well (rotation) is accepted: AUTH, then the request.
  Harness good(&l.loop, Harness::Mode::kScripted, {}, "127.0.0.1", 0, "127.0.0.1",
               Keys(kB + "\n" + kA));
  auto t2 = l.Flushed(MakeBinaryPeerTransport(&l.loop, good.Endpoint(), opts));
  t2->Send(Put("k", "v", 5), l.now() + kFar, &w, 2);
  REQUIRE(
      RunUntil(&l.loop, [&] { return !good.peers.empty() && good.peers[0]->frames.size() == 2; }));
  REQUIRE(good.peers[0]->auths.size() == 1);
  CHECK(good.peers[0]->auths[0].proofs.size() == kv::proto::kProofBytes);
  CHECK(good.peers[0]->frames[1].type == FrameType::kPut);
}

TEST_CASE("auth failures: every one is counted, one line a minute per address and reason") {
  using kv::net::AuthFailure;
  using kv::net::AuthFailureCount;
  using kv::net::NoteAuthFailure;
  const uint64_t missing = AuthFailureCount(AuthFailure::kHttpMissing);
  const uint64_t stale = AuthFailureCount(AuthFailure::kHttpStale);
  CHECK(NoteAuthFailure(AuthFailure::kHttpMissing, "192.0.2.1", "first"));
  CHECK_FALSE(NoteAuthFailure(AuthFailure::kHttpMissing, "192.0.2.1", "again"));
  CHECK_FALSE(NoteAuthFailure(AuthFailure::kHttpMissing, "192.0.2.1", "and again"));
  CHECK(NoteAuthFailure(AuthFailure::kHttpMissing, "192.0.2.2", "another address"));
  CHECK(NoteAuthFailure(AuthFailure::kHttpStale, "192.0.2.1", "another reason"));
  CHECK(AuthFailureCount(AuthFailure::kHttpMissing) == missing + 4);
  CHECK(AuthFailureCount(AuthFailure::kHttpStale) == stale + 1);
  CHECK(std::string(kv::net::AuthFailureName(AuthFailure::kBinaryServerMismatch)) ==
        "binary_server_mismatch");
}

TEST_CASE("binary transport: range pages of a real replica, small ones copied, large handed over") {
  Loop l;
  Harness node(&l.loop);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
  const uint64_t d = l.now() + kFar;
  t->Send(Put("r/a", "1", 10), d, &w, 1);
  t->Send(Remove("r/b", 11), d, &w, 2);
  for (int i = 0; i < 300; ++i) {
    t->Send(Put("r/c" + std::to_string(100 + i), std::string(1000, 'x'), 12), d, &w, 3 + i);
  }
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 302; }));
  auto range = [](std::string_view start, uint32_t keys, uint32_t bytes) {
    kv::cluster::PeerRequest r{};
    r.op = kv::cluster::PeerOp::kRange;
    r.key = start;
    r.end = "r0";
    r.has_end = true;
    r.max_keys = keys;
    r.max_bytes = bytes;
    return r;
  };
  t->Send(range("r/", 2, 1 << 20), d, &w, 1001);     // small: copied out of the frame
  t->Send(range("r/", 1000, 1 << 20), d, &w, 1002);  // ~300 KB: the receive buffer handed over
  t->Send(range("r/", 0, 1), d, &w, 1003);           // out of the limits: refused locally
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 305; }));
  CHECK(w.each_once());
  auto entries = [&](uint64_t cookie, bool* more) {
    const PeerResponse& p = w.one(cookie);
    REQUIRE(p.kind == PeerResponse::kPage);
    kv::range_page::Reader reader(std::string_view(p.value).substr(p.value_at));
    *more = reader.more();
    std::vector<std::string> keys;
    kv::range_page::Entry e;
    while (reader.Next(&e) == kv::range_page::Reader::kEntry) keys.emplace_back(e.key);
    return keys;
  };
  bool more = false;
  CHECK(entries(1001, &more) == std::vector<std::string>{"r/a", "r/b"});  // the tombstone too
  CHECK(more);
  CHECK(w.one(1001).value_at == 0);
  CHECK(entries(1002, &more).size() == 302);
  CHECK_FALSE(more);
  CHECK(w.one(1002).value_at > 0);  // the frame's buffer, header and all
  CHECK(w.one(1003).kind == PeerResponse::kError);
  // The connection goes on after a handed-over frame.
  t->Send(Get("r/a"), d, &w, 1004);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 306; }));
  CHECK(w.one(1004).value == "1");
}

TEST_CASE("binary transport: a HINTS request stores its records on the replica, all or none") {
  Loop l;
  Harness node(&l.loop);
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
  const uint64_t d = l.now() + kFar;
  using kv::cluster::PeerOp;
  namespace hintfile = kv::cluster::hintfile;
  std::string body;
  hintfile::AppendRecord(&body, {PeerOp::kPut, "h/a", "1", 10});
  hintfile::AppendRecord(&body, {PeerOp::kRemove, "h/b", "", 11});
  hintfile::AppendRecord(&body, {PeerOp::kPut, "h/c", std::string(5000, 'c'), 12});
  t->Send(PeerRequest{PeerOp::kHints, {}, body, 0}, d, &w, 1);
  std::string damaged = body;
  damaged[10] ^= 1;  // the first record's key: its checksum no longer matches
  hintfile::AppendRecord(&damaged, {PeerOp::kPut, "h/d", "4", 13});
  t->Send(PeerRequest{PeerOp::kHints, {}, damaged, 0}, d, &w, 2);
  t->Send(PeerRequest{PeerOp::kHints, {}, "", 0}, d, &w, 3);  // empty: refused before sending
  // Reads see what was answered (a write queued in the same iteration may not be seen yet).
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  t->Send(Get("h/a"), d, &w, 4);
  t->Send(Get("h/b"), d, &w, 5);
  t->Send(Get("h/c"), d, &w, 6);
  t->Send(Get("h/d"), d, &w, 7);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 7; }));
  CHECK(w.each_once());
  CHECK(w.one(1).kind == PeerResponse::kStored);
  CHECK(w.one(1).version == 3);  // the records stored
  CHECK(w.one(2).kind == PeerResponse::kError);
  CHECK(Contains(w.one(2).error, "INVALID_REQUEST"));
  CHECK(w.one(3).kind == PeerResponse::kError);
  CHECK(w.one(4).value == "1");
  CHECK(w.one(4).version == 10);
  CHECK(w.one(5).kind == PeerResponse::kTombstone);
  CHECK(w.one(6).value == std::string(5000, 'c'));
  CHECK(w.one(7).kind == PeerResponse::kAbsent);  // nothing of the damaged request was written
  CHECK(node.adopted == 1);                       // one connection throughout
}

TEST_CASE("binary transport: repair requests carry their body and come back as REPAIR_DATA") {
  Loop l;
  Harness node(&l.loop);
  // Without a repair handler the replica fails the request; the connection stays up.
  Collector w;
  auto t = l.Flushed(MakeBinaryPeerTransport(&l.loop, node.Endpoint()));
  const uint64_t d = l.now() + kFar;
  const std::string body = std::string("\x11\x22", 2) + std::string(30, '\0');
  t->Send(PeerRequest{kv::cluster::PeerOp::kRepairTree, {}, body, 0}, d, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).kind == PeerResponse::kError);
  std::vector<std::pair<kv::cluster::PeerOp, std::string>> seen;
  node.local->set_repair_handler(
      [&seen](const PeerRequest& req, kv::cluster::PeerWaiter* waiter, uint64_t cookie) {
        seen.emplace_back(req.op, std::string(req.value));
        PeerResponse r;
        if (req.value.size() == 17) {  // a malformed body, say
          r.invalid = true;
          r.error = "invalid request: bad";
        } else {
          r.kind = PeerResponse::kRepairData;
          r.value = "answer:" + std::string(req.value);
        }
        waiter->OnPeerResponse(cookie, std::move(r));
      });
  t->Send(PeerRequest{kv::cluster::PeerOp::kRepairEntries, {}, body, 0}, d, &w, 2);
  t->Send(PeerRequest{kv::cluster::PeerOp::kRepairApply, {}, std::string(17, 'x'), 0}, d, &w, 3);
  t->Send(PeerRequest{kv::cluster::PeerOp::kRepairTree, {}, "short", 0}, d, &w, 4);  // < 16 B
  t->Send(Get("k"), d, &w, 5);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 5; }));
  CHECK(w.each_once());
  CHECK(w.one(2).kind == PeerResponse::kRepairData);
  CHECK(w.one(2).value == "answer:" + body);
  CHECK(w.one(3).kind == PeerResponse::kError);
  CHECK(Contains(w.one(3).error, "INVALID_REQUEST"));
  CHECK(w.one(4).kind == PeerResponse::kError);   // refused before sending
  CHECK(w.one(5).kind == PeerResponse::kAbsent);  // the connection carries on
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].first == kv::cluster::PeerOp::kRepairEntries);
  CHECK(seen[0].second == body);
  CHECK(seen[1].first == kv::cluster::PeerOp::kRepairApply);
  CHECK(node.adopted == 1);
}
