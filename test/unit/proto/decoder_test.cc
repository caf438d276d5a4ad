// FrameDecoder: randomized encode/decode round trips, split and coalesced delivery, the
// connection state machine, and every class of malformed input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proto/frame_decoder.h"
#include "proto/wire.h"

namespace kv::proto {
namespace {

using Role = FrameDecoder::Role;

constexpr uint64_t kFp = 0x0123456789abcdefull;

// A frame that owns its bytes (decoded views die at the next Feed).
struct Owned {
  FrameType type = FrameType::kError;
  uint64_t request_id = 0, version = 0, fingerprint = 0;
  ErrorCode code{};
  std::string url, key, value, message, payload, nonce, proofs;

  static Owned From(const Frame& f) {
    Owned o;
    o.type = f.type;
    o.request_id = f.request_id;
    o.version = f.version;
    o.fingerprint = f.fingerprint;
    o.code = f.code;
    o.url = f.url;
    o.key = f.key;
    o.value = f.value;
    o.message = f.message;
    o.payload = f.payload;
    o.nonce = f.nonce;
    o.proofs = f.proofs;
    return o;
  }
  Frame View() const {
    Frame f;
    f.type = type;
    f.request_id = request_id;
    f.version = version;
    f.fingerprint = fingerprint;
    f.code = code;
    f.url = url;
    f.key = key;
    f.value = value;
    f.message = message;
    f.payload = payload;
    f.nonce = nonce;
    f.proofs = proofs;
    return f;
  }
  bool operator==(const Owned&) const = default;
};

const std::string kNonce(kNonceBytes, 'n');
const std::string kProof(kProofBytes, 'p');

std::string ServerStart() {
  std::string s;
  AppendPreface(&s);
  EncodeHandshake(&s, "http://127.0.0.1:8081", kFp, kNonce);
  EncodeAuth(&s, kProof);
  return s;
}

std::string ClientStart() {
  std::string s;
  EncodeHandshakeOk(&s, "http://127.0.0.1:8082", kFp, kNonce, kProof);
  return s;
}

// Result of pushing a byte stream through a decoder in chunks.
struct Run {
  std::vector<Owned> frames;
  bool error = false;
  ProtocolError err;
  size_t max_buffered = 0;
};

// Feeds `bytes` in chunks whose sizes come from next_chunk, draining after every Feed, then
// signals EOF.
template <typename ChunkFn>
Run Drive(Role role, const std::string& bytes, ChunkFn next_chunk, bool finish = true) {
  FrameDecoder d(role);
  Run run;
  size_t off = 0;
  Frame f;
  while (off < bytes.size() && !run.error) {
    const size_t n = std::min(next_chunk(), bytes.size() - off);
    d.Feed(bytes.data() + off, n);
    off += n;
    run.max_buffered = std::max(run.max_buffered, d.buffered());
    DecodeResult r;
    while ((r = d.Next(&f)) == DecodeResult::kFrame) run.frames.push_back(Owned::From(f));
    if (r == DecodeResult::kError) run.error = true;
  }
  if (!run.error && finish && !d.Finish()) run.error = true;
  if (run.error) {
    run.err = d.error();
    CHECK(d.failed());
    CHECK(d.Next(&f) == DecodeResult::kError);  // terminal
  }
  return run;
}

Run DriveAll(Role role, const std::string& bytes, bool finish = true) {
  return Drive(
      role, bytes, [&] { return bytes.size() + 1; }, finish);
}

Run DriveBytewise(Role role, const std::string& bytes) {
  return Drive(role, bytes, [] { return size_t{1}; });
}

ProtocolError ExpectError(Role role, const std::string& bytes, bool finish = false) {
  const Run run = DriveAll(role, bytes, finish);
  REQUIRE(run.error);
  return run.err;
}

std::string AbsentResponse(uint64_t id) {
  std::string s;
  EncodeAbsent(&s, id);
  return s;
}

// ---- random messages -------------------------------------------------------------------------

struct Gen {
  std::mt19937_64 rng;
  explicit Gen(uint64_t seed) : rng(seed) {}

  uint64_t U64() { return rng(); }
  size_t Below(size_t n) { return static_cast<size_t>(rng() % n); }
  // Mostly short, sometimes empty, occasionally large or at the limit.
  size_t Len(size_t min, size_t max) {
    const size_t pick = Below(100);
    size_t n;
    if (pick < 70) {
      n = min + Below(40);
    } else if (pick < 90) {
      n = min + Below(600);
    } else if (pick < 98) {
      n = min + Below(std::min<size_t>(max - min + 1, 70000));
    } else {
      n = pick == 98 ? min : max;
    }
    return std::min(std::max(n, min), max);
  }
  std::string Bytes(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  }
  // Big values are rarer so the test stays fast.
  size_t ValueLen() { return Below(500) == 0 ? Below(kMaxValueBytes + 1) : Len(0, 2000); }
  uint64_t Id() { return Below(4) == 0 ? Below(16) : U64(); }

  // Appends one random frame a connecting node may send after the handshake.
  Owned ToServer(std::string* out) {
    Owned o;
    o.request_id = Id();
    switch (Below(6)) {
      case 0:
      case 1: {
        o.type = FrameType::kPut;
        o.key = Bytes(Len(1, kMaxKeyBytes));
        o.value = Bytes(ValueLen());
        o.version = U64();
        EncodeRequest(out, o.request_id, Op::kPut, o.key, o.value, o.version);
        break;
      }
      case 2:
        o.type = FrameType::kGet;
        o.key = Bytes(Len(1, kMaxKeyBytes));
        EncodeRequest(out, o.request_id, Op::kGet, o.key, "", 0);
        break;
      case 3:
        o.type = FrameType::kRemove;
        o.key = Bytes(Len(1, kMaxKeyBytes));
        o.version = U64();
        EncodeRequest(out, o.request_id, Op::kRemove, o.key, "", o.version);
        break;
      case 4:
        o.type = FrameType::kPing;
        o.payload = Bytes(Below(kMaxPingPayloadBytes + 1));
        EncodePing(out, o.request_id, o.payload);
        break;
      default:
        o.type = FrameType::kPong;
        o.payload = Bytes(Below(kMaxPingPayloadBytes + 1));
        EncodePong(out, o.request_id, o.payload);
        break;
    }
    return o;
  }

  // Appends one random frame an accepting node may send after HANDSHAKE_OK.
  Owned ToClient(std::string* out) {
    Owned o;
    o.request_id = Id();
    switch (Below(7)) {
      case 0:
      case 1:
        o.type = FrameType::kValue;
        o.version = U64();
        o.value = Bytes(ValueLen());
        EncodeValue(out, o.request_id, o.version, o.value);
        break;
      case 2:
        o.type = FrameType::kTombstone;
        o.version = U64();
        EncodeTombstone(out, o.request_id, o.version);
        break;
      case 3:
        o.type = FrameType::kAbsent;
        EncodeAbsent(out, o.request_id);
        break;
      case 4:
        o.type = FrameType::kStored;
        o.version = U64();
        EncodeStored(out, o.request_id, o.version);
        break;
      case 5:
        o.type = FrameType::kErrorResponse;
        o.code = static_cast<ErrorCode>(Below(2) ? 100 + Below(5) : Below(65536));
        o.message = Bytes(Len(0, kMaxMessageBytes));
        EncodeErrorResponse(out, o.request_id, o.code, o.message);
        break;
      default:
        o.type = Below(2) ? FrameType::kPing : FrameType::kPong;
        o.payload = Bytes(Below(kMaxPingPayloadBytes + 1));
        EncodeFrame(out, o.View());
        break;
    }
    return o;
  }
};

// ---- round trips -----------------------------------------------------------------------------

TEST_CASE("random request streams decode to what was encoded, however they are split") {
  Gen g(0x5eed0001);
  std::string stream = ServerStart();
  std::vector<Owned> want;
  for (int i = 0; i < 3000; ++i) want.push_back(g.ToServer(&stream));

  SUBCASE("one Feed") {
    const Run run = DriveAll(Role::kServer, stream);
    REQUIRE_FALSE(run.error);
    REQUIRE(run.frames.size() == want.size() + 2);
    CHECK(run.frames[0].type == FrameType::kHandshake);
    CHECK(run.frames[0].url == "http://127.0.0.1:8081");
    CHECK(run.frames[0].fingerprint == kFp);
    CHECK(run.frames[1].type == FrameType::kAuth);
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(i);
      CHECK(run.frames[i + 2] == want[i]);
    }
  }
  SUBCASE("random chunks") {
    std::mt19937 r(7);
    const Run run = Drive(Role::kServer, stream, [&] {
      return r() % 4 == 0 ? size_t{1} + r() % 16 : size_t{1} + r() % 100000;
    });
    REQUIRE_FALSE(run.error);
    REQUIRE(run.frames.size() == want.size() + 2);
    for (size_t i = 0; i < want.size(); ++i) CHECK(run.frames[i + 2] == want[i]);
  }
}

TEST_CASE("random response streams decode to what was encoded, however they are split") {
  Gen g(0x5eed0002);
  std::string stream = ClientStart();
  std::vector<Owned> want;
  for (int i = 0; i < 3000; ++i) want.push_back(g.ToClient(&stream));
  std::mt19937 r(11);
  const Run run = Drive(Role::kClient, stream, [&] { return size_t{1} + r() % 50000; });
  REQUIRE_FALSE(run.error);
  REQUIRE(run.frames.size() == want.size() + 1);
  CHECK(run.frames[0].type == FrameType::kHandshakeOk);
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(run.frames[i + 1] == want[i]);
  }
  // Re-encoding the decoded frames reproduces the stream byte for byte.
  std::string again;
  for (const Owned& o : run.frames) EncodeFrame(&again, o.View());
  CHECK(again == stream);
}

TEST_CASE("whole streams delivered one byte at a time") {
  Gen g(0x5eed0003);
  std::string to_server = ServerStart(), to_client = ClientStart();
  std::vector<Owned> want_s, want_c;
  for (int i = 0; i < 300; ++i) {
    // Keep it quick: small frames only (a one-byte Feed per byte).
    std::string s, c;
    Owned a = g.ToServer(&s), b = g.ToClient(&c);
    if (s.size() < 4096) {
      to_server += s;
      want_s.push_back(a);
    }
    if (c.size() < 4096) {
      to_client += c;
      want_c.push_back(b);
    }
  }
  const Run rs = DriveBytewise(Role::kServer, to_server);
  REQUIRE_FALSE(rs.error);
  REQUIRE(rs.frames.size() == want_s.size() + 2);
  for (size_t i = 0; i < want_s.size(); ++i) CHECK(rs.frames[i + 2] == want_s[i]);
  const Run rc = DriveBytewise(Role::kClient, to_client);
  REQUIRE_FALSE(rc.error);
  REQUIRE(rc.frames.size() == want_c.size() + 1);
  for (size_t i = 0; i < want_c.size(); ++i) CHECK(rc.frames[i + 1] == want_c[i]);
  // Never more than one frame buffered when fed byte by byte and drained.
  CHECK(rs.max_buffered < 4096);
}

TEST_CASE("a frame is not returned until its last byte arrives") {
  std::string start = ServerStart();
  std::string frame;
  EncodeRequest(&frame, 42, Op::kPut, "key", "value", 77);
  FrameDecoder d(Role::kServer);
  d.Feed(start.data(), start.size());
  Frame f;
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  for (size_t i = 0; i + 1 < frame.size(); ++i) {
    d.Feed(&frame[i], 1);
    REQUIRE(d.Next(&f) == DecodeResult::kNeedMore);
  }
  d.Feed(&frame.back(), 1);
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  CHECK(f.type == FrameType::kPut);
  CHECK(f.request_id == 42);
  CHECK(f.key == "key");
  CHECK(f.value == "value");
  CHECK(f.version == 77);
  CHECK(d.Next(&f) == DecodeResult::kNeedMore);
  CHECK(d.Finish());
}

TEST_CASE("views of earlier frames survive later Next calls until the next Feed") {
  std::string s = ServerStart();
  EncodeRequest(&s, 1, Op::kGet, "first", "", 0);
  EncodeRequest(&s, 2, Op::kGet, "second", "", 0);
  std::string big;
  EncodeRequest(&big, 3, Op::kPut, "k", std::string(1 << 20, 'v'), 1);
  s += big.substr(0, 100);  // the start of a large frame: Next sees its header
  FrameDecoder d(Role::kServer);
  d.Feed(s.data(), s.size());
  Frame hs, auth, a, b, c;
  REQUIRE(d.Next(&hs) == DecodeResult::kFrame);
  REQUIRE(d.Next(&auth) == DecodeResult::kFrame);
  REQUIRE(d.Next(&a) == DecodeResult::kFrame);
  REQUIRE(d.Next(&b) == DecodeResult::kFrame);
  REQUIRE(d.Next(&c) == DecodeResult::kNeedMore);
  CHECK(hs.url == "http://127.0.0.1:8081");
  CHECK(a.key == "first");
  CHECK(b.key == "second");
  d.Feed(big.data() + 100, big.size() - 100);
  REQUIRE(d.Next(&c) == DecodeResult::kFrame);
  CHECK(c.value.size() == size_t{1} << 20);
}

TEST_CASE("TakeFrame hands over the buffer of the frame just returned; what follows stays") {
  std::string s = ServerStart();
  std::string big;
  EncodeRequest(&big, 3, Op::kPut, "k", std::string(100000, 'v'), 1);
  std::string next;
  EncodeRequest(&next, 4, Op::kGet, "after", "", 0);
  FrameDecoder d(Role::kServer);
  d.Feed(s.data(), s.size());
  Frame f;
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  std::string taken;
  size_t at = 0;
  REQUIRE(d.Next(&f) == DecodeResult::kNeedMore);
  CHECK_FALSE(d.TakeFrame(&taken, &at));  // the last Next returned no frame
  const std::string both = big + next.substr(0, 10);
  d.Feed(both.data(), both.size());
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  REQUIRE(d.TakeFrame(&taken, &at));
  CHECK(taken.substr(at) == big.substr(kFrameHeaderSize));
  CHECK_FALSE(d.TakeFrame(&taken, &at));  // once
  CHECK(d.buffered() == 10);
  d.Feed(next.data() + 10, next.size() - 10);
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  CHECK(f.key == "after");
  CHECK(d.Finish());
}

TEST_CASE("largest request and response at the limits decode") {
  const std::string key(kMaxKeyBytes, 'k'), value(kMaxValueBytes, 'v');
  std::string s = ServerStart();
  EncodeRequest(&s, 1, Op::kPut, key, value, 5);
  EncodeRequest(&s, 2, Op::kGet, key, "", 0);
  const Run rs = Drive(Role::kServer, s, [] { return size_t{65536}; });
  REQUIRE_FALSE(rs.error);
  REQUIRE(rs.frames.size() == 4);
  CHECK(rs.frames[2].key == key);
  CHECK(rs.frames[2].value == value);
  // Buffering stays at about one frame.
  CHECK(rs.max_buffered <= kMaxFrameBytes + 65536);

  std::string c = ClientStart();
  EncodeValue(&c, 1, 9, value);
  const Run rc = DriveAll(Role::kClient, c);
  REQUIRE_FALSE(rc.error);
  REQUIRE(rc.frames.size() == 2);
  CHECK(rc.frames[1].value == value);
}

TEST_CASE("zero-length fields that are allowed") {
  std::string s = ServerStart();
  EncodeRequest(&s, 1, Op::kPut, "k", "", 3);  // empty value
  EncodePing(&s, 2, "");
  const Run rs = DriveAll(Role::kServer, s);
  REQUIRE_FALSE(rs.error);
  REQUIRE(rs.frames.size() == 4);
  CHECK(rs.frames[2].value.empty());
  CHECK(rs.frames[3].payload.empty());

  std::string c = ClientStart();
  EncodeValue(&c, 1, 0, "");  // empty value
  EncodeErrorResponse(&c, 2, ErrorCode::kOverloaded, "");
  const Run rc = DriveAll(Role::kClient, c);
  REQUIRE_FALSE(rc.error);
  REQUIRE(rc.frames.size() == 3);
  CHECK(rc.frames[2].code == ErrorCode::kOverloaded);
}

// ---- malformed input -------------------------------------------------------------------------

// Raw frame with arbitrary header fields.
std::string RawFrame(uint8_t type, uint64_t id, const std::string& payload, uint8_t flags = 0,
                     int64_t length = -1) {
  std::string out;
  const uint32_t len =
      length < 0 ? static_cast<uint32_t>(payload.size()) : static_cast<uint32_t>(length);
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(len >> (8 * i)));
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(flags));
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(id >> (8 * i)));
  return out + payload;
}

std::string Be(uint64_t v, int bytes) {
  std::string s;
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>(v >> (8 * i)));
  return s;
}

TEST_CASE("oversize length is refused from the header alone, before buffering") {
  for (uint32_t len : {uint32_t(kMaxPayloadBytes + 1), 0x7fffffffu, 0xffffffffu}) {
    CAPTURE(len);
    const std::string hdr = RawFrame(0x11, 1, "", 0, len);
    FrameDecoder d(Role::kServer);
    const std::string start = ServerStart();
    d.Feed(start.data(), start.size());
    Frame f;
    REQUIRE(d.Next(&f) == DecodeResult::kFrame);
    REQUIRE(d.Next(&f) == DecodeResult::kFrame);
    d.Feed(hdr.data(), hdr.size());
    REQUIRE(d.Next(&f) == DecodeResult::kError);
    CHECK(d.error().code == ErrorCode::kFrameTooLarge);
    // Later input is dropped, not buffered, and nothing more is decoded.
    const std::string more(1 << 16, 'x');
    d.Feed(more.data(), more.size());
    CHECK(d.buffered() == 0);
    CHECK(d.Next(&f) == DecodeResult::kError);
  }
  // Over the limit of its own type: a GET as long as a PUT is refused at its header too.
  CHECK(ExpectError(Role::kServer, ServerStart() + RawFrame(0x10, 1, "", 0, 4 + kMaxKeyBytes + 1))
            .code == ErrorCode::kFrameTooLarge);
  CHECK(ExpectError(Role::kClient, ClientStart() + RawFrame(0x21, 1, "", 0, 9)).code ==
        ErrorCode::kFrameTooLarge);
  CHECK(
      ExpectError(Role::kServer, ServerStart() + RawFrame(0x04, 1, "", 0, kMaxPingPayloadBytes + 1))
          .code == ErrorCode::kFrameTooLarge);
}

TEST_CASE("truncated stream then EOF") {
  std::string s = ServerStart();
  EncodeRequest(&s, 1, Op::kPut, "key", "value", 1);
  EncodeRequest(&s, 2, Op::kGet, "key", "", 0);
  // Every cut point except the frame boundaries is a truncation; the boundaries are clean EOFs.
  std::vector<size_t> boundaries = {0, kPrefaceSize};
  {
    std::string t;
    AppendPreface(&t);
    EncodeHandshake(&t, "http://127.0.0.1:8081", kFp, kNonce);
    boundaries.push_back(t.size());
    EncodeAuth(&t, kProof);
    boundaries.push_back(t.size());
    EncodeRequest(&t, 1, Op::kPut, "key", "value", 1);
    boundaries.push_back(t.size());
    boundaries.push_back(s.size());
  }
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    CAPTURE(cut);
    const Run run = DriveAll(Role::kServer, s.substr(0, cut), /*finish=*/true);
    const bool boundary = std::find(boundaries.begin(), boundaries.end(), cut) != boundaries.end();
    CHECK(run.error == !boundary);
    if (!boundary) CHECK(run.err.code == ErrorCode::kTruncatedFrame);
  }
}

TEST_CASE("unknown frame type") {
  for (uint8_t t : {0x00, 0x07, 0x17, 0x27, 0x7f, 0xff}) {
    CAPTURE(int(t));
    CHECK(ExpectError(Role::kServer, ServerStart() + RawFrame(t, 1, "abc")).code ==
          ErrorCode::kUnknownFrameType);
    CHECK(ExpectError(Role::kClient, ClientStart() + RawFrame(t, 1, "abc")).code ==
          ErrorCode::kUnknownFrameType);
    // Refused from the header: no need for the payload to arrive.
    CHECK(ExpectError(Role::kServer, ServerStart() + RawFrame(t, 1, "", 0, 1000)).code ==
          ErrorCode::kUnknownFrameType);
  }
}

TEST_CASE("bad preface and unknown protocol version") {
  CHECK(ExpectError(Role::kServer, "GET / HTTP/1.1\r\n\r\n").code == ErrorCode::kBadPreface);
  // Detected at the first differing byte, without waiting for the whole preface.
  CHECK(ExpectError(Role::kServer, std::string("\0KX", 3)).code == ErrorCode::kBadPreface);
  for (int v : {0, 1, 3, 255}) {  // version 1 (no authentication) is no longer spoken
    std::string p(kPrefaceMagic, kPrefaceMagicSize);
    p.push_back(static_cast<char>(v));
    const ProtocolError e = ExpectError(Role::kServer, p);
    CHECK(e.code == ErrorCode::kUnsupportedVersion);
    CHECK(e.reason.find("supported: 2") != std::string::npos);
  }
  // A client expects no preface: the accepting node starts with HANDSHAKE_OK.
  std::string p;
  AppendPreface(&p);
  CHECK(ExpectError(Role::kClient, p + ClientStart()).code == ErrorCode::kUnknownFrameType);
  // A node that only speaks HTTP answers the preface with an HTTP error: "HTTP" read as a
  // length is far over the limit.
  CHECK(ExpectError(Role::kClient, "HTTP/1.1 400 Bad Request\r\n\r\n").code ==
        ErrorCode::kFrameTooLarge);
}

TEST_CASE("bad handshake") {
  std::string preface;
  AppendPreface(&preface);
  auto hs_payload = [](const std::string& url, uint64_t fp) {
    return Be(url.size(), 2) + url + Be(fp, 8) + kNonce;
  };
  SUBCASE("a request before the handshake") {
    std::string s = preface;
    EncodeRequest(&s, 1, Op::kGet, "k", "", 0);
    CHECK(ExpectError(Role::kServer, s).code == ErrorCode::kBadHandshake);
  }
  SUBCASE("a ping before the handshake") {
    std::string s = preface;
    EncodePing(&s, 1, "");
    CHECK(ExpectError(Role::kServer, s).code == ErrorCode::kBadHandshake);
  }
  SUBCASE("handshake with a request id") {
    CHECK(ExpectError(Role::kServer, preface + RawFrame(0x01, 5, hs_payload("http://a", 1))).code ==
          ErrorCode::kBadHandshake);
  }
  SUBCASE("empty url") {
    CHECK(ExpectError(Role::kServer, preface + RawFrame(0x01, 0, hs_payload("", 1))).code ==
          ErrorCode::kBadHandshake);
  }
  SUBCASE("url length overruns the payload") {
    const std::string p = Be(200, 2) + "http://a" + Be(1, 8);
    CHECK(ExpectError(Role::kServer, preface + RawFrame(0x01, 0, p)).code ==
          ErrorCode::kBadHandshake);
  }
  SUBCASE("trailing bytes") {
    CHECK(ExpectError(Role::kServer, preface + RawFrame(0x01, 0, hs_payload("http://a", 1) + "x"))
              .code == ErrorCode::kBadHandshake);
  }
  SUBCASE("url over the limit, refused from the header") {
    CHECK(ExpectError(Role::kServer,
                      preface + RawFrame(0x01, 0, "", 0, 2 + kMaxUrlBytes + 8 + kNonceBytes + 1))
              .code == ErrorCode::kBadHandshake);
  }
  SUBCASE("large frame before the handshake is refused from its header") {
    CHECK(ExpectError(Role::kServer, preface + RawFrame(0x11, 1, "", 0, 1 << 20)).code ==
          ErrorCode::kBadHandshake);
  }
  SUBCASE("second handshake") {
    std::string s = ServerStart();
    EncodeHandshake(&s, "http://127.0.0.1:8081", kFp, kNonce);
    CHECK(ExpectError(Role::kServer, s).code == ErrorCode::kUnexpectedFrame);
  }
  SUBCASE("client gets a response before HANDSHAKE_OK") {
    const std::string s = AbsentResponse(1);
    CHECK(ExpectError(Role::kClient, s).code == ErrorCode::kBadHandshake);
  }
  SUBCASE("client gets a HANDSHAKE instead of HANDSHAKE_OK") {
    std::string s;
    EncodeHandshake(&s, "http://a", 1, kNonce);
    CHECK(ExpectError(Role::kClient, s).code == ErrorCode::kBadHandshake);
  }
  SUBCASE("handshake with flags") {
    CHECK(ExpectError(Role::kServer, preface + RawFrame(0x01, 0, hs_payload("http://a", 1), 0x80))
              .code == ErrorCode::kBadHandshake);
  }
}

TEST_CASE("zero-length and inconsistent payload lengths") {
  const std::string s = ServerStart(), c = ClientStart();
  struct Case {
    const char* what;
    bool to_server;
    std::string frame;
  };
  const std::string k = "key";
  const std::vector<Case> cases = {
      {"GET with empty payload", true, RawFrame(0x10, 1, "")},
      {"GET with zero key length", true, RawFrame(0x10, 1, Be(0, 4) + "x")},
      {"GET key length past the payload", true, RawFrame(0x10, 1, Be(9, 4) + k)},
      {"GET key shorter than the payload", true, RawFrame(0x10, 1, Be(1, 4) + k)},
      {"GET key over the limit", true,
       RawFrame(0x10, 1, Be(kMaxKeyBytes + 1, 4) + std::string(kMaxKeyBytes, 'k'))},
      {"PUT with empty payload", true, RawFrame(0x11, 1, "")},
      {"PUT without value length", true, RawFrame(0x11, 1, Be(1, 8) + Be(3, 4) + k + "xy")},
      {"PUT value length past the payload", true,
       RawFrame(0x11, 1, Be(1, 8) + Be(3, 4) + k + Be(10, 4) + "v")},
      {"PUT key length swallowing the value", true,
       RawFrame(0x11, 1, Be(1, 8) + Be(8, 4) + k + Be(1, 4) + "v")},
      {"PUT with trailing bytes", true,
       RawFrame(0x11, 1, Be(1, 8) + Be(3, 4) + k + Be(1, 4) + "v" + "zz")},
      {"PUT key length 2^32-1", true,
       RawFrame(0x11, 1, Be(1, 8) + Be(0xffffffff, 4) + k + Be(1, 4) + "v")},
      {"PUT with zero key", true, RawFrame(0x11, 1, Be(1, 8) + Be(0, 4) + Be(5, 4) + "vvvvv")},
      {"REMOVE too short", true, RawFrame(0x12, 1, Be(1, 8) + Be(0, 4))},
      {"REMOVE trailing bytes", true, RawFrame(0x12, 1, Be(1, 8) + Be(3, 4) + k + "x")},
      {"ERROR with empty payload", true, RawFrame(0x03, 0, "")},
      {"ERROR message length past payload", true, RawFrame(0x03, 0, Be(1, 2) + Be(5, 2) + "ab")},
      {"PUT with flags", true,
       RawFrame(0x11, 1, Be(1, 8) + Be(3, 4) + k + Be(1, 4) + "v", /*flags=*/1)},
      {"VALUE with empty payload", false, RawFrame(0x20, 1, "")},
      {"VALUE length past payload", false, RawFrame(0x20, 1, Be(1, 8) + Be(4, 4) + "abc")},
      {"VALUE trailing", false, RawFrame(0x20, 1, Be(1, 8) + Be(2, 4) + "abc")},
      {"TOMBSTONE short", false, RawFrame(0x21, 1, Be(1, 7))},
      {"STORED empty", false, RawFrame(0x23, 1, "")},
      {"ABSENT with payload", false, RawFrame(0x22, 1, "x")},
      {"ERROR_RESPONSE short", false, RawFrame(0x24, 1, Be(100, 2))},
      {"ERROR_RESPONSE message over the limit", false,
       RawFrame(0x24, 1,
                Be(100, 2) + Be(kMaxMessageBytes + 1, 2) + std::string(kMaxMessageBytes + 1, 'm'))},
  };
  for (const Case& cs : cases) {
    CAPTURE(cs.what);
    const ProtocolError e = ExpectError(cs.to_server ? Role::kServer : Role::kClient,
                                        (cs.to_server ? s : c) + cs.frame);
    // Lengths beyond a type's maximum are FRAME_TOO_LARGE; everything else is malformed.
    CHECK((e.code == ErrorCode::kMalformedFrame || e.code == ErrorCode::kFrameTooLarge));
    CHECK_FALSE(e.reason.empty());
  }
}

TEST_CASE("frames sent in the wrong direction") {
  const std::string resp = AbsentResponse(1);
  CHECK(ExpectError(Role::kServer, ServerStart() + resp).code == ErrorCode::kUnexpectedFrame);
  std::string req;
  EncodeRequest(&req, 1, Op::kGet, "k", "", 0);
  CHECK(ExpectError(Role::kClient, ClientStart() + req).code == ErrorCode::kUnexpectedFrame);
  std::string ok;
  EncodeHandshakeOk(&ok, "http://a", 1, kNonce, "");
  CHECK(ExpectError(Role::kServer, ServerStart() + ok).code == ErrorCode::kUnexpectedFrame);
  CHECK(ExpectError(Role::kClient, ClientStart() + ok).code == ErrorCode::kUnexpectedFrame);
}

TEST_CASE("nothing may follow an ERROR frame") {
  std::string s = ClientStart();
  EncodeError(&s, ErrorCode::kShuttingDown, "bye");
  FrameDecoder d(Role::kClient);
  d.Feed(s.data(), s.size());
  Frame f;
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  CHECK(f.type == FrameType::kError);
  CHECK(d.peer_error());
  CHECK(d.Next(&f) == DecodeResult::kNeedMore);
  CHECK(d.Finish());
  const std::string more = AbsentResponse(1);
  d.Feed(more.data(), 1);
  CHECK(d.Next(&f) == DecodeResult::kError);
  CHECK(d.error().code == ErrorCode::kUnexpectedFrame);
}

TEST_CASE("a failed decoder stays failed and decodes nothing more") {
  std::string s = ServerStart() + RawFrame(0x7f, 1, "");
  std::string good;
  EncodeRequest(&good, 1, Op::kPut, "k", "v", 1);
  FrameDecoder d(Role::kServer);
  d.Feed(s.data(), s.size());
  Frame f;
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  REQUIRE(d.Next(&f) == DecodeResult::kError);
  const ProtocolError e = d.error();
  for (int i = 0; i < 3; ++i) {
    d.Feed(good.data(), good.size());
    CHECK(d.Next(&f) == DecodeResult::kError);
  }
  CHECK_FALSE(d.Finish());
  CHECK(d.error().code == e.code);
  CHECK(d.error().reason == e.reason);
  CHECK(d.buffered() == 0);
}

TEST_CASE("random garbage never crashes and always ends in a protocol error or a need for more") {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 2000; ++i) {
    const Role role = i % 2 ? Role::kClient : Role::kServer;
    std::string s = role == Role::kServer ? ServerStart() : ClientStart();
    // Valid start, then random bytes (sometimes a corrupted valid frame).
    std::string tail;
    Gen g(rng());
    if (rng() % 2) {
      if (role == Role::kServer) {
        g.ToServer(&tail);
      } else {
        g.ToClient(&tail);
      }
      tail[rng() % tail.size()] ^= static_cast<char>(1 + rng() % 255);
    } else {
      tail = g.Bytes(rng() % 64);
    }
    s += tail;
    std::mt19937 r(i);
    const Run run = Drive(
        role, s, [&] { return size_t{1} + r() % 32; }, /*finish=*/false);
    if (run.error) CHECK_FALSE(run.err.reason.empty());
    CHECK(run.frames.size() >= 1);  // the valid handshake always decodes
  }
}

TEST_CASE("AUTH: the server's second handshake frame") {
  std::string hs;
  AppendPreface(&hs);
  EncodeHandshake(&hs, "http://127.0.0.1:8081", kFp, kNonce);
  SUBCASE("n = 0, 1 and 2 decode; the proofs are passed on as they are") {
    for (size_t n : {0, 1, 2}) {
      const std::string proofs(n * kProofBytes, 'q');
      std::string s = hs;
      EncodeAuth(&s, proofs);
      EncodeRequest(&s, 1, Op::kGet, "k", "", 0);
      const Run run = DriveAll(Role::kServer, s, false);
      REQUIRE_FALSE(run.error);
      REQUIRE(run.frames.size() == 3);
      CHECK(run.frames[0].nonce == kNonce);
      CHECK(run.frames[1].type == FrameType::kAuth);
      CHECK(run.frames[1].proofs == proofs);
      CHECK(run.frames[2].type == FrameType::kGet);
    }
  }
  SUBCASE("a request before AUTH is refused: nothing runs before the client proved itself") {
    std::string s = hs;
    EncodeRequest(&s, 1, Op::kPut, "k", "v", 1);
    EncodeAuth(&s, kProof);
    const Run run = DriveAll(Role::kServer, s, false);
    CHECK(run.error);
    CHECK(run.err.code == ErrorCode::kBadHandshake);
    REQUIRE(run.frames.size() == 1);  // the HANDSHAKE only
    CHECK(run.frames[0].type == FrameType::kHandshake);
  }
  SUBCASE("PING before AUTH is refused too") {
    std::string s = hs;
    EncodePing(&s, 1, "x");
    CHECK(ExpectError(Role::kServer, s).code == ErrorCode::kBadHandshake);
  }
  SUBCASE("ERROR instead of AUTH: the client refused our proof") {
    std::string s = hs;
    EncodeError(&s, ErrorCode::kAuthFailed, "server proof does not verify");
    const Run run = DriveAll(Role::kServer, s, true);
    CHECK_FALSE(run.error);
    REQUIRE(run.frames.size() == 2);
    CHECK(run.frames[1].code == ErrorCode::kAuthFailed);
  }
  SUBCASE("more than two proofs") {
    CHECK(
        ExpectError(Role::kServer, hs + RawFrame(0x06, 0, Be(3, 1) + std::string(96, 'q'))).code ==
        ErrorCode::kBadHandshake);
  }
  SUBCASE("count and length disagree") {
    CHECK(
        ExpectError(Role::kServer, hs + RawFrame(0x06, 0, Be(2, 1) + std::string(32, 'q'))).code ==
        ErrorCode::kBadHandshake);
    CHECK(
        ExpectError(Role::kServer, hs + RawFrame(0x06, 0, Be(1, 1) + std::string(33, 'q'))).code ==
        ErrorCode::kBadHandshake);
    CHECK(ExpectError(Role::kServer, hs + RawFrame(0x06, 0, "")).code == ErrorCode::kBadHandshake);
  }
  SUBCASE("non-zero request id") {
    CHECK(ExpectError(Role::kServer, hs + RawFrame(0x06, 7, Be(0, 1))).code ==
          ErrorCode::kBadHandshake);
  }
  SUBCASE("AUTH after the handshake, or to a client") {
    std::string s = ServerStart();
    EncodeAuth(&s, kProof);
    CHECK(ExpectError(Role::kServer, s).code == ErrorCode::kUnexpectedFrame);
    std::string c = ClientStart();
    EncodeAuth(&c, kProof);
    CHECK(ExpectError(Role::kClient, c).code == ErrorCode::kUnexpectedFrame);
  }
  SUBCASE("truncated AUTH at every cut") {
    std::string s = hs;
    EncodeAuth(&s, kProof + kProof);
    for (size_t cut = hs.size() + 1; cut < s.size(); ++cut) {
      CAPTURE(cut);
      const Run run = DriveAll(Role::kServer, s.substr(0, cut), true);
      CHECK(run.error);
      CHECK(run.err.code == ErrorCode::kTruncatedFrame);
    }
  }
  SUBCASE("HANDSHAKE_OK with too many proofs or a short nonce") {
    std::string p = Be(8, 2) + "http://a" + Be(1, 8) + kNonce + Be(3, 1) + std::string(96, 'q');
    CHECK(ExpectError(Role::kClient, RawFrame(0x02, 0, p)).code == ErrorCode::kBadHandshake);
    p = Be(8, 2) + "http://a" + Be(1, 8) + kNonce.substr(1) + Be(0, 1);
    CHECK(ExpectError(Role::kClient, RawFrame(0x02, 0, p)).code == ErrorCode::kBadHandshake);
  }
}

}  // namespace
}  // namespace kv::proto
