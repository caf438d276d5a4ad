// The adapter between binary frames and the coordinator's peer types (net/peer_frames.h): every
// request and response kind maps both ways, error frames become their text, and a response
// encodes to the frame the protocol's own encoder writes.
#include "peer/frames.h"

#include <doctest/doctest.h>

#include <string>

#include "proto/frame_decoder.h"

namespace kv::net {
namespace {

using cluster::PeerOp;
using cluster::PeerResponse;
using proto::ErrorCode;
using proto::Frame;
using proto::FrameType;

constexpr uint64_t kV = (1700000000000ull << 20) | 7;

// Decodes the one response frame in bytes (a client decoder past the handshake) and hands it to
// check while its views are alive.
template <typename Check>
void DecodeResponse(const std::string& bytes, Check check) {
  std::string all;
  proto::EncodeHandshakeOk(&all, "http://127.0.0.1:8081", 1, std::string(proto::kNonceBytes, 'n'),
                           "");
  all += bytes;
  proto::FrameDecoder d(proto::FrameDecoder::Role::kClient);
  d.Feed(all.data(), all.size());
  Frame f;
  REQUIRE(d.Next(&f) == proto::DecodeResult::kFrame);
  REQUIRE(d.Next(&f) == proto::DecodeResult::kFrame);
  check(f);
  CHECK(d.Next(&f) == proto::DecodeResult::kNeedMore);
}

TEST_CASE("ops map both ways") {
  for (PeerOp op : {PeerOp::kGet, PeerOp::kPut, PeerOp::kRemove}) {
    CHECK(ToPeerOp(ToProtoOp(op)) == op);
  }
  CHECK(ToProtoOp(PeerOp::kGet) == proto::Op::kGet);
  CHECK(ToProtoOp(PeerOp::kPut) == proto::Op::kPut);
  CHECK(ToProtoOp(PeerOp::kRemove) == proto::Op::kRemove);
}

TEST_CASE("request frames become peer requests") {
  Frame f;
  f.key = "user:42";
  f.value = "hello";
  f.version = kV;
  f.type = FrameType::kPut;
  cluster::PeerRequest req = ToPeerRequest(f);
  CHECK(req.op == PeerOp::kPut);
  CHECK(req.key == "user:42");
  CHECK(req.value == "hello");
  CHECK(req.version == kV);
  // GET carries neither value nor version; REMOVE no value.
  f.type = FrameType::kGet;
  req = ToPeerRequest(f);
  CHECK(req.op == PeerOp::kGet);
  CHECK(req.key == "user:42");
  CHECK(req.value.empty());
  CHECK(req.version == 0);
  f.type = FrameType::kRemove;
  req = ToPeerRequest(f);
  CHECK(req.op == PeerOp::kRemove);
  CHECK(req.value.empty());
  CHECK(req.version == kV);
}

TEST_CASE("responses encode to the protocol's frames and decode back") {
  struct Case {
    PeerResponse::Kind kind;
    FrameType type;
    uint64_t version;
    const char* value;
  };
  const Case cases[] = {{PeerResponse::kValue, FrameType::kValue, kV, "hello"},
                        {PeerResponse::kValue, FrameType::kValue, kV, ""},
                        {PeerResponse::kTombstone, FrameType::kTombstone, kV, ""},
                        {PeerResponse::kAbsent, FrameType::kAbsent, 0, ""},
                        {PeerResponse::kStored, FrameType::kStored, kV, ""}};
  for (const Case& c : cases) {
    CAPTURE(static_cast<int>(c.kind));
    PeerResponse r;
    r.kind = c.kind;
    r.version = c.version;
    r.value = c.value;
    std::string enc;
    EncodePeerResponse(&enc, 9, r);
    DecodeResponse(enc, [&](const Frame& f) {
      CHECK(f.type == c.type);
      CHECK(f.request_id == 9);
      CHECK(f.version == c.version);
      CHECK(f.value == c.value);
      const PeerResponse back = ToPeerResponse(f);
      CHECK(back.kind == c.kind);
      CHECK(back.version == c.version);
      CHECK(back.value == c.value);
      CHECK(back.error.empty());
    });
  }
}

TEST_CASE("error responses carry the code and the message") {
  PeerResponse r;
  r.kind = PeerResponse::kError;
  r.error = "disk full";
  std::string enc, want;
  EncodePeerResponse(&enc, 6, r, ErrorCode::kNoSpace);
  proto::EncodeErrorResponse(&want, 6, ErrorCode::kNoSpace, "disk full");
  CHECK(enc == want);
  DecodeResponse(enc, [](const Frame& f) {
    const PeerResponse back = ToPeerResponse(f);
    CHECK(back.kind == PeerResponse::kError);
    CHECK(back.error == "NO_SPACE: disk full");
  });
  // The default code is STORAGE_ERROR.
  enc.clear();
  EncodePeerResponse(&enc, 6, r);
  DecodeResponse(enc, [](const Frame& f) {
    CHECK(f.code == ErrorCode::kStorageError);
    CHECK(ToPeerResponse(f).error == "STORAGE_ERROR: disk full");
  });
}

TEST_CASE("connection errors and unexpected frames read as failed replicas") {
  Frame f;
  f.type = FrameType::kError;
  f.code = ErrorCode::kClusterMismatch;
  f.message = "cluster list differs";
  PeerResponse r = ToPeerResponse(f);
  CHECK(r.kind == PeerResponse::kError);
  CHECK(r.error == "CLUSTER_MISMATCH: cluster list differs");
  f.type = FrameType::kErrorResponse;
  f.code = static_cast<ErrorCode>(999);
  f.message = "later";
  CHECK(ToPeerResponse(f).error == "UNKNOWN 999: later");
  for (FrameType t : {FrameType::kGet, FrameType::kPing, FrameType::kHandshakeOk}) {
    f = Frame{};
    f.type = t;
    r = ToPeerResponse(f);
    CHECK(r.kind == PeerResponse::kError);
    CHECK(r.error == std::string("unexpected frame ") + proto::FrameTypeName(t));
  }
}

TEST_CASE("a clock-skew refusal crosses as CLOCK_SKEW and comes back with its skew") {
  PeerResponse refused;
  refused.clock_skew = true;
  refused.skew_ms = 3600001;
  refused.error = "3600001 ms ahead of the replica's clock (limit 2000 ms, --max-clock-skew-ms)";
  std::string bytes;
  EncodePeerResponse(&bytes, 9, refused, ErrorCode::kClockSkew);
  DecodeResponse(bytes, [&](const Frame& f) {
    CHECK(f.type == FrameType::kErrorResponse);
    CHECK(f.code == ErrorCode::kClockSkew);
    PeerResponse r = ToPeerResponse(f);
    CHECK(r.kind == PeerResponse::kError);
    CHECK(r.clock_skew);
    CHECK(r.skew_ms == 3600001);
    CHECK_FALSE(r.slow);
    CHECK(r.error == "CLOCK_SKEW: " + refused.error);
  });
  // Another request error is no skew refusal, whatever its message says.
  bytes.clear();
  proto::EncodeErrorResponse(&bytes, 10, ErrorCode::kStorageError, "5 ms ahead");
  DecodeResponse(bytes, [&](const Frame& f) {
    PeerResponse r = ToPeerResponse(f);
    CHECK(r.kind == PeerResponse::kError);
    CHECK_FALSE(r.clock_skew);
  });
  CHECK(std::string(proto::ErrorCodeName(ErrorCode::kClockSkew)) == "CLOCK_SKEW");
}

}  // namespace
}  // namespace kv::net
