// Test vectors (proto_spec/vectors/*.hex) decode to the documented fields and re-encode byte for
// byte; preface sniffing; encoders; fingerprint and handshake checks; error texts.
#include "proto/wire.h"

#include <doctest/doctest.h>
#include <xxhash.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/fingerprint.h"
#include "common/range_page.h"
#include "common/version.h"
#include "proto/frame_decoder.h"

namespace kv::proto {
namespace {

using Role = FrameDecoder::Role;

constexpr uint64_t kFp = 0xc1822ae292bd75fbull;
// The spec's example versions: kV1 in the current layout (us 1700000000000003, node 2), kV2 in
// the legacy ms layout (ms 1700000000500, logical 0, node 1). The wire carries both alike.
constexpr uint64_t kV1 = version::Make(1700000000000003ull, 2);
constexpr uint64_t kV2 = version::MakeLegacy(1700000000500ull, 0, 1);
static_assert(kV1 == 0x9828906079000c02ull && kV2 == 0x18bcfe569f400001ull);
const std::vector<std::string> kCluster = {"http://127.0.0.1:8081", "http://127.0.0.1:8082",
                                           "http://127.0.0.1:8083"};

std::string VectorDir() {
  const char* root = std::getenv("KV_REPO_ROOT");
  return std::string(root && *root ? root : ".") + "/proto_spec/vectors/";
}

// Reads a vector file: '#' starts a comment to the end of the line, the rest is hex digits and
// whitespace.
std::string ReadVector(const std::string& name) {
  const std::string path = VectorDir() + name + ".hex";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path
                                            << " (run from the repo root or set "
                                               "KV_REPO_ROOT)");
  std::string out, line, digits;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    for (char c : line) {
      if (std::isspace(static_cast<unsigned char>(c))) continue;
      REQUIRE_MESSAGE(std::isxdigit(static_cast<unsigned char>(c)), path << ": bad char " << c);
      digits.push_back(c);
    }
  }
  REQUIRE_MESSAGE(digits.size() % 2 == 0, path << ": odd number of hex digits");
  for (size_t i = 0; i < digits.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

void CheckSameFrame(const Frame& a, const Frame& b) {
  CHECK(a.type == b.type);
  CHECK(a.request_id == b.request_id);
  CHECK(a.version == b.version);
  CHECK(a.fingerprint == b.fingerprint);
  CHECK(a.code == b.code);
  CHECK(a.url == b.url);
  CHECK(a.key == b.key);
  CHECK(a.value == b.value);
  CHECK(a.message == b.message);
  CHECK(a.payload == b.payload);
  CHECK(a.nonce == b.nonce);
  CHECK(a.proofs == b.proofs);
}

std::string Bytes(int from, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(from + i));
  return s;
}

std::string Unhex(const std::string& hex) {
  std::string s;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    s.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return s;
}

// Feeds `setup` + `bytes` to d and returns the last frame (the one `bytes` holds); its views
// point into d.
Frame DecodeLast(FrameDecoder& d, const std::string& setup, const std::string& bytes) {
  const std::string all = setup + bytes;
  d.Feed(all.data(), all.size());
  Frame f, last;
  int n = 0;
  DecodeResult r;
  while ((r = d.Next(&f)) == DecodeResult::kFrame) {
    last = f;
    ++n;
  }
  REQUIRE_MESSAGE(r == DecodeResult::kNeedMore, d.error().reason);
  CHECK(d.buffered() == 0);
  CHECK(d.Finish());
  REQUIRE(n >= 1);
  return last;
}

struct Setup {
  std::string server;  // preface + handshake: what precedes requests
  std::string client;  // handshake-ok: what precedes responses
};

Setup MakeSetup() {
  Setup s;
  s.server = ReadVector("preface") + ReadVector("handshake") + ReadVector("auth");
  s.client = ReadVector("handshake_ok");
  return s;
}

TEST_CASE("vector: preface") {
  const std::string v = ReadVector("preface");
  std::string enc;
  AppendPreface(&enc);
  CHECK(enc == v);
  CHECK(v.size() == kPrefaceSize);
  CHECK(SniffPreface(v.data(), v.size()) == Sniff::kBinary);
  CHECK(SniffPreface(v.data(), kPrefaceMagicSize) == Sniff::kBinary);
  FrameDecoder d(Role::kServer);
  d.Feed(v.data(), v.size());
  Frame f;
  CHECK(d.Next(&f) == DecodeResult::kNeedMore);
  CHECK(d.buffered() == 0);
  CHECK_FALSE(d.handshake_done());
}

TEST_CASE("vector: handshake and handshake_ok") {
  const std::string preface = ReadVector("preface");
  const std::string hs = ReadVector("handshake");
  FrameDecoder d1(Role::kServer);
  Frame f = DecodeLast(d1, preface, hs);
  Frame want;
  want.type = FrameType::kHandshake;
  want.url = "http://127.0.0.1:8081";
  want.fingerprint = kFp;
  const std::string client_nonce = Bytes(0x00, 32), server_nonce = Bytes(0x20, 32);
  want.nonce = client_nonce;
  CheckSameFrame(f, want);
  std::string enc;
  EncodeHandshake(&enc, "http://127.0.0.1:8081", kFp, client_nonce);
  CHECK(enc == hs);
  enc.clear();
  EncodeFrame(&enc, f);
  CHECK(enc == hs);

  // The proofs are those of section 11.5 (secret A; auth_test.cc recomputes them).
  const std::string ok = ReadVector("handshake_ok");
  FrameDecoder d2(Role::kClient);
  f = DecodeLast(d2, "", ok);
  want.type = FrameType::kHandshakeOk;
  want.url = "http://127.0.0.1:8082";
  want.nonce = server_nonce;
  const std::string server_proof =
      Unhex("e31b8cdb645aaa3dd5adb7b07a612392544f277b0acd61d65159695dbbe5920e");
  want.proofs = server_proof;
  CheckSameFrame(f, want);
  enc.clear();
  EncodeHandshakeOk(&enc, "http://127.0.0.1:8082", kFp, server_nonce, server_proof);
  CHECK(enc == ok);
  enc.clear();
  EncodeFrame(&enc, f);
  CHECK(enc == ok);

  const std::string auth = ReadVector("auth");
  FrameDecoder d3(Role::kServer);
  f = DecodeLast(d3, preface + hs, auth);
  const std::string client_proof =
      Unhex("528c99308ccdceaed5143fe7dab905cda00545523fe696ff5b9522aed5012ed9");
  Frame want_auth;
  want_auth.type = FrameType::kAuth;
  want_auth.proofs = client_proof;
  CheckSameFrame(f, want_auth);
  CHECK(d3.handshake_done());
  enc.clear();
  EncodeAuth(&enc, client_proof);
  CHECK(enc == auth);
  enc.clear();
  EncodeFrame(&enc, f);
  CHECK(enc == auth);
}

TEST_CASE("vector: requests") {
  const Setup s = MakeSetup();
  struct Case {
    const char* name;
    Op op;
    uint64_t id;
    const char* value;
    uint64_t version;
  };
  const Case cases[] = {{"get_request", Op::kGet, 1, "", 0},
                        {"put_request", Op::kPut, 2, "hello", kV1},
                        {"remove_request", Op::kRemove, 3, "", kV2}};
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string v = ReadVector(c.name);
    FrameDecoder d(Role::kServer);
    const Frame f = DecodeLast(d, s.server, v);
    Op op{};
    REQUIRE(RequestOp(f.type, &op));
    CHECK(op == c.op);
    CHECK(f.request_id == c.id);
    CHECK(f.key == "user:42");
    CHECK(f.value == c.value);
    CHECK(f.version == c.version);
    std::string enc;
    EncodeRequest(&enc, c.id, c.op, "user:42", c.value, c.version);
    CHECK(enc == v);
    CHECK(RequestFrameSize(c.op, "user:42", c.value) == v.size());
    enc.clear();
    EncodeFrame(&enc, f);
    CHECK(enc == v);
  }
}

TEST_CASE("vector: hints_request") {
  // The payload is hint records (storage-format.md, "Hint files"): the frame carries them as an
  // opaque body; test/unit/cluster/hints_test.cc reads the records themselves.
  const Setup s = MakeSetup();
  const std::string v = ReadVector("hints_request");
  FrameDecoder d(Role::kServer);
  const Frame f = DecodeLast(d, s.server, v);
  Op op{};
  REQUIRE(RequestOp(f.type, &op));
  CHECK(op == Op::kHints);
  CHECK(HasBody(op));
  CHECK_FALSE(IsRepairOp(op));
  CHECK(std::string(FrameTypeName(f.type)) == "HINTS");
  CHECK(f.request_id == 9);
  CHECK(f.value == v.substr(kFrameHeaderSize));
  CHECK(f.value.size() == 62);
  std::string enc;
  EncodeRequest(&enc, 9, Op::kHints, "", f.value, 0);
  CHECK(enc == v);
  CHECK(RequestFrameSize(Op::kHints, "", f.value) == v.size());
  enc.clear();
  EncodeFrame(&enc, f);
  CHECK(enc == v);
  CHECK(BodyRequestFits(Op::kHints, "x"));
  CHECK_FALSE(BodyRequestFits(Op::kHints, ""));
  // A client never accepts a request frame, and a HINTS frame without a body is malformed.
  FrameDecoder client(Role::kClient);
  const std::string answer_side = s.client + v;
  client.Feed(answer_side.data(), answer_side.size());
  Frame g;
  DecodeResult r;
  while ((r = client.Next(&g)) == DecodeResult::kFrame) {
  }
  CHECK(r == DecodeResult::kError);
  std::string empty;
  EncodeRequest(&empty, 10, Op::kHints, "", "", 0);
  FrameDecoder server(Role::kServer);
  const std::string all = s.server + empty;
  server.Feed(all.data(), all.size());
  while ((r = server.Next(&g)) == DecodeResult::kFrame) {
  }
  CHECK(r == DecodeResult::kError);
}

TEST_CASE("vector: responses") {
  const Setup s = MakeSetup();
  struct Case {
    const char* name;
    uint64_t id;
    FrameType type;
    uint64_t version;
    const char* value;
    void (*encode)(std::string* out, uint64_t id);
  };
  const Case cases[] = {
      {"value_response", 1, FrameType::kValue, kV1, "hello",
       [](std::string* out, uint64_t id) { EncodeValue(out, id, kV1, "hello"); }},
      {"tombstone_response", 4, FrameType::kTombstone, kV2, "",
       [](std::string* out, uint64_t id) { EncodeTombstone(out, id, kV2); }},
      {"absent_response", 5, FrameType::kAbsent, 0, "",
       [](std::string* out, uint64_t id) { EncodeAbsent(out, id); }},
      {"stored_response", 2, FrameType::kStored, kV1, "",
       [](std::string* out, uint64_t id) { EncodeStored(out, id, kV1); }},
      {"error_response", 6, FrameType::kErrorResponse, 0, "",
       [](std::string* out, uint64_t id) {
         EncodeErrorResponse(out, id, ErrorCode::kNoSpace, "disk full");
       }},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string v = ReadVector(c.name);
    FrameDecoder d(Role::kClient);
    const Frame f = DecodeLast(d, s.client, v);
    CHECK(f.request_id == c.id);
    CHECK(f.type == c.type);
    CHECK(f.version == c.version);
    CHECK(f.value == c.value);
    if (c.type == FrameType::kErrorResponse) {
      CHECK(f.code == ErrorCode::kNoSpace);
      CHECK(f.message == "disk full");
      CHECK(ErrorText(f) == "NO_SPACE: disk full");
    }
    std::string enc;
    c.encode(&enc, c.id);
    CHECK(enc == v);
    enc.clear();
    EncodeFrame(&enc, f);
    CHECK(enc == v);
  }
  std::string enc;
  EncodeErrorResponse(&enc, 6, ErrorCode::kNoSpace, "disk full");
  CHECK(enc == ReadVector("error_response"));
}

TEST_CASE("vector: PUT_EXPIRING and VALUE_EXPIRING (TTL)") {
  const Setup s = MakeSetup();
  const uint64_t expires = 1700000060000;
  const std::string put = ReadVector("put_expiring_request");
  FrameDecoder ds(Role::kServer);
  Frame f = DecodeLast(ds, s.server, put);
  CHECK(f.type == FrameType::kPutExpiring);
  Op op{};
  REQUIRE(RequestOp(f.type, &op));
  CHECK(op == Op::kPut);
  CHECK(f.request_id == 2);
  CHECK(f.version == kV1);
  CHECK(f.expires_ms == expires);
  CHECK(f.key == "user:42");
  CHECK(f.value == "hello");
  std::string enc;
  EncodeRequest(&enc, 2, Op::kPut, "user:42", "hello", kV1, expires);
  CHECK(enc == put);
  CHECK(RequestFrameSize(Op::kPut, "user:42", "hello", expires) == put.size());
  enc.clear();
  EncodeFrame(&enc, f);
  CHECK(enc == put);
  // Without an expiry the same call is a plain PUT.
  enc.clear();
  EncodeRequest(&enc, 2, Op::kPut, "user:42", "hello", kV1, 0);
  CHECK(enc == ReadVector("put_request"));

  const std::string value = ReadVector("value_expiring_response");
  FrameDecoder dc(Role::kClient);
  f = DecodeLast(dc, s.client, value);
  CHECK(f.type == FrameType::kValueExpiring);
  CHECK(f.request_id == 1);
  CHECK(f.version == kV1);
  CHECK(f.expires_ms == expires);
  CHECK(f.value == "hello");
  enc.clear();
  EncodeValue(&enc, 1, kV1, "hello", expires);
  CHECK(enc == value);
  enc.clear();
  EncodeFrame(&enc, f);
  CHECK(enc == value);

  // An EXPIRING frame whose expiry is 0 is malformed (0 would mean "never": a plain frame).
  std::string zero = put;
  for (size_t i = 0; i < 8; ++i) zero[kFrameHeaderSize + 8 + i] = 0;
  FrameDecoder dz(Role::kServer);
  dz.Feed(s.server.data(), s.server.size());
  dz.Feed(zero.data(), zero.size());
  Frame g;
  DecodeResult r = DecodeResult::kFrame;
  while (r == DecodeResult::kFrame) r = dz.Next(&g);
  CHECK(r == DecodeResult::kError);
  CHECK(dz.error().code == ErrorCode::kMalformedFrame);
  CHECK(dz.error().reason.find("expiry is 0") != std::string::npos);
}

TEST_CASE("vector: range request and page response") {
  const Setup s = MakeSetup();
  const std::string rv = ReadVector("range_request");
  FrameDecoder sd(Role::kServer);
  const Frame r = DecodeLast(sd, s.server, rv);
  CHECK(r.type == FrameType::kRange);
  CHECK(r.request_id == 8);
  CHECK(r.key == "user:");
  CHECK(r.has_end);
  CHECK(r.end == "user;");
  CHECK(r.max_keys == 1000);
  CHECK(r.max_bytes == 1048576);
  std::string enc;
  EncodeRange(&enc, 8, "user:", "user;", true, 1000, 1048576);
  CHECK(enc == rv);
  CHECK(RangeFrameSize("user:", "user;") == rv.size());
  enc.clear();
  EncodeFrame(&enc, r);
  CHECK(enc == rv);

  // The page codec (common/range_page.h) writes the vector's payload byte for byte.
  std::string page;
  const size_t begin = range_page::Begin(&page);
  range_page::Append(&page, range_page::Entry{"user:42", "hello", kV1, false});
  const size_t last = range_page::Append(&page, range_page::Entry{"user:43", "", kV2, true});
  range_page::Finish(&page, begin, last, true);
  const std::string pv = ReadVector("page_response");
  FrameDecoder cd(Role::kClient);
  const Frame p = DecodeLast(cd, s.client, pv);
  CHECK(p.type == FrameType::kPage);
  CHECK(p.request_id == 8);
  CHECK(p.value == page);
  enc.clear();
  EncodePage(&enc, 8, page);
  CHECK(enc == pv);
  enc.clear();
  EncodeFrame(&enc, p);
  CHECK(enc == pv);
  range_page::Reader reader(p.value);
  CHECK(reader.more());
  std::string_view last_key;
  REQUIRE(reader.LastKey(&last_key));
  CHECK(last_key == "user:43");
  range_page::Entry e;
  REQUIRE(reader.Next(&e) == range_page::Reader::kEntry);
  CHECK((e.key == "user:42" && e.value == "hello" && e.version == kV1 && !e.tombstone));
  REQUIRE(reader.Next(&e) == range_page::Reader::kEntry);
  CHECK((e.key == "user:43" && e.value.empty() && e.version == kV2 && e.tombstone));
  CHECK(reader.Next(&e) == range_page::Reader::kEnd);
}

TEST_CASE("range: a RANGE payload cut short after its start fails the decoder with a reason") {
  // Found by peer_decoder_fuzz: a start length that leaves no room for the end length made the
  // decoder return kError without failing (no error, and the next Next() went on decoding).
  const Setup s = MakeSetup();
  std::string frame;
  EncodeRange(&frame, 1, std::string(10, 'k'), "", false, 1, 1);  // payload 4+10+1+4+4+4 = 27
  // Claim a 20-byte start: it swallows has_end and most of what follows.
  frame[kFrameHeaderSize + 3] = 20;
  FrameDecoder d(Role::kServer);
  const std::string all = s.server + frame;
  d.Feed(all.data(), all.size());
  Frame f;
  DecodeResult r;
  while ((r = d.Next(&f)) == DecodeResult::kFrame) {
  }
  CHECK(r == DecodeResult::kError);
  CHECK(d.failed());
  CHECK(d.error().code == ErrorCode::kMalformedFrame);
  CHECK_FALSE(d.error().reason.empty());
  CHECK(d.Next(&f) == DecodeResult::kError);
}

TEST_CASE("range: a RANGE frame out of its limits is a protocol error") {
  const Setup s = MakeSetup();
  auto decode = [&](const std::string& frame) {
    FrameDecoder d(Role::kServer);
    const std::string all = s.server + frame;
    d.Feed(all.data(), all.size());
    Frame f;
    DecodeResult r;
    while ((r = d.Next(&f)) == DecodeResult::kFrame) {
    }
    return r;
  };
  std::string ok;
  EncodeRange(&ok, 1, "a", "", false, 1, 1);
  CHECK(decode(ok) == DecodeResult::kNeedMore);
  std::string zero_keys;
  EncodeRange(&zero_keys, 1, "a", "", false, 0, 1);
  CHECK(decode(zero_keys) == DecodeResult::kError);
  std::string zero_bytes;
  EncodeRange(&zero_bytes, 1, "a", "", false, 1, 0);
  CHECK(decode(zero_bytes) == DecodeResult::kError);
  std::string bad_flag = ok;
  bad_flag[kFrameHeaderSize + 4 + 1] = 2;  // has_end
  CHECK(decode(bad_flag) == DecodeResult::kError);
  std::string end_without_flag;  // an end whose has_end is 0
  EncodeRange(&end_without_flag, 1, "a", "z", true, 1, 1);
  end_without_flag[kFrameHeaderSize + 4 + 1] = 0;
  CHECK(decode(end_without_flag) == DecodeResult::kError);
  std::string long_start;  // a continuation key may be one byte longer than a key, not two
  EncodeRange(&long_start, 1, std::string(kMaxKeyBytes + 1, 'k'), "", false, 1, 1);
  CHECK(decode(long_start) == DecodeResult::kNeedMore);
  long_start.clear();
  EncodeRange(&long_start, 1, std::string(kMaxKeyBytes + 2, 'k'), "", false, 1, 1);
  CHECK(decode(long_start) == DecodeResult::kError);
  // A server never gets a PAGE, a client never a RANGE.
  std::string page;
  EncodePage(&page, 1, std::string(5, '\0'));
  CHECK(decode(page) == DecodeResult::kError);
}

TEST_CASE("vector: ping, pong, error frame (both directions)") {
  const Setup s = MakeSetup();
  const std::string ping = ReadVector("ping"), pong = ReadVector("pong");
  const std::string err = ReadVector("error_frame");
  const std::string payload("\x00\x00\x01\x8b\xcf\xe5\x68\x00", 8);
  for (Role role : {Role::kServer, Role::kClient}) {
    const std::string& setup = role == Role::kServer ? s.server : s.client;
    FrameDecoder d1(role), d2(role), d3(role);
    Frame f = DecodeLast(d1, setup, ping);
    CHECK(f.type == FrameType::kPing);
    CHECK(f.request_id == 7);
    CHECK(f.payload == payload);
    f = DecodeLast(d2, setup, pong);
    CHECK(f.type == FrameType::kPong);
    CHECK(f.request_id == 7);
    CHECK(f.payload == payload);
    f = DecodeLast(d3, setup, err);
    CHECK(f.type == FrameType::kError);
    CHECK(f.request_id == 0);
    CHECK(f.code == ErrorCode::kClusterMismatch);
    CHECK(f.message == "cluster list differs");
    CHECK(ErrorText(f) == "CLUSTER_MISMATCH: cluster list differs");
  }
  std::string enc;
  EncodePing(&enc, 7, payload);
  CHECK(enc == ping);
  enc.clear();
  EncodePong(&enc, 7, payload);
  CHECK(enc == pong);
  enc.clear();
  EncodeError(&enc, ErrorCode::kClusterMismatch, "cluster list differs");
  CHECK(enc == err);
  // A refused handshake: the client decoder takes an ERROR frame instead of HANDSHAKE_OK.
  FrameDecoder d(Role::kClient);
  const Frame f = DecodeLast(d, "", err);
  CHECK(f.type == FrameType::kError);
}

TEST_CASE("sniff: no HTTP request can look like the preface") {
  std::string preface;
  AppendPreface(&preface);
  for (size_t n = 0; n < kPrefaceMagicSize; ++n) {
    CHECK(SniffPreface(preface.data(), n) == Sniff::kNeedMore);
  }
  CHECK(SniffPreface(preface.data(), preface.size()) == Sniff::kBinary);
  // Any first byte other than 0x00 is HTTP at once.
  for (int b = 1; b < 256; ++b) {
    const char c = static_cast<char>(b);
    CHECK(SniffPreface(&c, 1) == Sniff::kHttp);
  }
  for (const char* req : {"GET / HTTP/1.1\r\n", "PUT /kv?key=a HTTP/1.1\r\n", "POST /x", "DELETE",
                          "HEAD /", "OPTIONS *", "PRI * HTTP/2.0\r\n", "\r\nGET /"}) {
    CAPTURE(req);
    CHECK(SniffPreface(req, std::string_view(req).size()) == Sniff::kHttp);
  }
  // Differs in the middle of the magic: HTTP as soon as the differing byte arrives.
  const std::string near("\0KVPEEX\x01", 8);
  CHECK(SniffPreface(near.data(), 6) == Sniff::kNeedMore);
  CHECK(SniffPreface(near.data(), 7) == Sniff::kHttp);
  // The version byte does not matter to the sniffer; the decoder rejects unknown versions.
  const std::string v9("\0KVPEER\x09", 8);
  CHECK(SniffPreface(v9.data(), v9.size()) == Sniff::kBinary);
}

TEST_CASE("cluster fingerprint: sorted URL list joined by newlines, XXH3-64") {
  const std::string joined = "http://127.0.0.1:8081\nhttp://127.0.0.1:8082\nhttp://127.0.0.1:8083";
  CHECK(ClusterFingerprint(kCluster) == XXH3_64bits(joined.data(), joined.size()));
  CHECK(ClusterFingerprint(kCluster) == kFp);
  CHECK(ClusterFingerprint({kCluster[2], kCluster[0], kCluster[1]}) == kFp);
  CHECK(ClusterFingerprint({kCluster[0], kCluster[1]}) != kFp);
  CHECK(ClusterFingerprint({kCluster[0], kCluster[1], "http://127.0.0.1:8084"}) != kFp);
}

TEST_CASE("handshake check: membership and fingerprint") {
  CHECK_FALSE(CheckHandshake("http://127.0.0.1:8082", kFp, kCluster, kFp).has_value());
  auto e = CheckHandshake("http://127.0.0.1:9999", kFp, kCluster, kFp);
  REQUIRE(e.has_value());
  CHECK(e->code == ErrorCode::kNotInCluster);
  // URLs compare byte for byte: no normalisation.
  e = CheckHandshake("http://127.0.0.1:8082/", kFp, kCluster, kFp);
  REQUIRE(e.has_value());
  CHECK(e->code == ErrorCode::kNotInCluster);
  e = CheckHandshake("http://127.0.0.1:8082", kFp ^ 1, kCluster, kFp);
  REQUIRE(e.has_value());
  CHECK(e->code == ErrorCode::kClusterMismatch);
  CHECK(e->reason.find("c1822ae292bd75fa") != std::string::npos);
}

TEST_CASE("encoders append to the caller's buffer") {
  std::string out = "xyz";
  EncodeRequest(&out, 9, Op::kGet, "k", "ignored", 123);
  CHECK(out.substr(0, 3) == "xyz");
  CHECK(out.size() == 3 + RequestFrameSize(Op::kGet, "k", ""));
  // kGet ignores value and version; kRemove ignores the value.
  std::string a, b;
  EncodeRequest(&a, 9, Op::kGet, "k", "", 0);
  CHECK(out.substr(3) == a);
  EncodeRequest(&a, 1, Op::kRemove, "k", "v", 5);
  EncodeRequest(&b, 9, Op::kGet, "k", "", 0);
  EncodeRequest(&b, 1, Op::kRemove, "k", "", 5);
  CHECK(a == b);
}

TEST_CASE("error messages are cut to kMaxMessageBytes") {
  std::string out;
  const std::string longmsg(5000, 'm');
  EncodeError(&out, ErrorCode::kInternal, longmsg);
  CHECK(out.size() == kFrameHeaderSize + 4 + kMaxMessageBytes);
  std::string out2;
  EncodeErrorResponse(&out2, 3, ErrorCode::kStorageError, longmsg);
  FrameDecoder d(Role::kClient);
  std::string all = ReadVector("handshake_ok") + out2;
  d.Feed(all.data(), all.size());
  Frame f;
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  REQUIRE(d.Next(&f) == DecodeResult::kFrame);
  CHECK(f.type == FrameType::kErrorResponse);
  CHECK(f.code == ErrorCode::kStorageError);
  CHECK(f.message.size() == kMaxMessageBytes);
}

TEST_CASE("request limits") {
  CHECK(RequestFits("k", ""));
  CHECK_FALSE(RequestFits("", "v"));
  CHECK(RequestFits(std::string(kMaxKeyBytes, 'k'), std::string(kMaxValueBytes, 'v')));
  CHECK_FALSE(RequestFits(std::string(kMaxKeyBytes + 1, 'k'), ""));
  CHECK_FALSE(RequestFits("k", std::string(kMaxValueBytes + 1, 'v')));
  CHECK(RequestFrameSize(Op::kPut, std::string(kMaxKeyBytes, 'k'),
                         std::string(kMaxValueBytes, 'v')) <= kMaxFrameBytes);
  CHECK(RequestFrameSize(Op::kPut, std::string(kMaxKeyBytes, 'k'), std::string(kMaxValueBytes, 'v'),
                         1) <= kMaxFrameBytes);
}

TEST_CASE("names") {
  CHECK(std::string(ErrorCodeName(ErrorCode::kOverloaded)) == "OVERLOADED");
  CHECK(std::string(ErrorCodeName(static_cast<ErrorCode>(999))) == "UNKNOWN");
  CHECK(std::string(FrameTypeName(FrameType::kErrorResponse)) == "ERROR_RESPONSE");
  int known = 0;
  for (int t = 0; t < 256; ++t) known += IsKnownFrameType(static_cast<uint8_t>(t));
  CHECK(known == 23);  // 14 + PUT/VALUE_EXPIRING, RANGE/PAGE, REPAIR_TREE/ENTRIES/APPLY/DATA
  Frame f;
  f.type = FrameType::kErrorResponse;
  f.code = static_cast<ErrorCode>(999);
  f.message = "later";
  CHECK(ErrorText(f) == "UNKNOWN 999: later");
  f.message = "";
  f.code = ErrorCode::kOverloaded;
  CHECK(ErrorText(f) == "OVERLOADED");
}

}  // namespace
}  // namespace kv::proto
