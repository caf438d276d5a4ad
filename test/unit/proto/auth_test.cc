// Peer authentication (proto/auth.h): the vectors of proto_spec section 11.5 (computed
// independently by proto_spec/vectors/auth_vectors.py), secret files, rotation combinations,
// and the HTTP header's checks.
#include "proto/auth.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace kv::proto::auth {
namespace {

const std::string kSecretA = "kvnode-test-secret-A-0123456789";
const std::string kSecretB = "kvnode-test-secret-B-0123456789";

std::string Hex(const uint8_t* p, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kHex[p[i] >> 4]);
    s.push_back(kHex[p[i] & 15]);
  }
  return s;
}
template <typename A>
std::string Hex(const A& a) {
  return Hex(a.data(), a.size());
}

std::string Bytes(int from, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(from + i));
  return s;
}

const std::string kClientNonce = Bytes(0x00, 32);
const std::string kServerNonce = Bytes(0x20, 32);

Transcript Example() {
  Transcript t;
  t.client_nonce = kClientNonce;
  t.server_nonce = kServerNonce;
  t.fingerprint = 0xc1822ae292bd75fbull;
  t.client_url = "http://127.0.0.1:8081";
  t.server_url = "http://127.0.0.1:8082";
  return t;
}

ClusterKeys Keys(const std::string& text) {
  ClusterKeys k;
  REQUIRE(ParseSecrets(text, &k) == "");
  return k;
}

HttpMessage Put() {
  return HttpMessage{"PUT", "/v0/entity?id=user%3A42", "10964172036854778882", "hello"};
}

TEST_CASE("auth: the spec's vectors, byte for byte") {
  REQUIRE(Init());
  CHECK(Hex(DeriveKey(kSecretA)) ==
        "769691537945cb89a0736cc7645587a0a39b0112117fb39092bf9f5860a74c24");
  CHECK(Hex(DeriveKey(kSecretB)) ==
        "7d99f7d55b9395f487d72f6023865604dccd71ea6bef4b637efc49e8b554fc29");
  const Key a = DeriveKey(kSecretA), b = DeriveKey(kSecretB);
  const Transcript t = Example();
  CHECK(Hex(HandshakeMac(a, Prover::kServer, t)) ==
        "e31b8cdb645aaa3dd5adb7b07a612392544f277b0acd61d65159695dbbe5920e");
  CHECK(Hex(HandshakeMac(a, Prover::kClient, t)) ==
        "528c99308ccdceaed5143fe7dab905cda00545523fe696ff5b9522aed5012ed9");
  CHECK(Hex(HandshakeMac(b, Prover::kServer, t)) ==
        "2d12580e4d7108dfbbbb51a0be7cf28629f9f25ed534ef78a5dbf16049826944");
  CHECK(Hex(HandshakeMac(b, Prover::kClient, t)) ==
        "d21f0484ea30fb2e839cb04324c0d8e6d99aa401113206a8dcb047152eb49ba5");
  CHECK(Hex(HttpMac(a, Put(), 1700000000000ull)) ==
        "81ed0cc73f4a81c305c9794ffff8894f2aed9b0d1f4ed2750e46e92b12be2c1b");
  CHECK(Hex(HttpMac(b, Put(), 1700000000000ull)) ==
        "6cb5606260dd5ee6dbe5b1aed55b2bc605b288774ba1b41475f16cb68296f044");
  const HttpMessage get{"GET", "/v0/entity?id=user%3A42", "", ""};
  CHECK(Hex(HttpMac(a, get, 1700000000000ull)) ==
        "d1597684a4495dff9477eea44a8ee838467b2f949bc5d7aa4e692213fc1bce72");
  CHECK(Hex(HttpMac(b, get, 1700000000000ull)) ==
        "5ce1ab2e028377311bf1375e0a1133c1ccc42d4d4f58ae720a798c76d0699dd6");
  // The header: both MACs in file order.
  std::string h;
  AppendHttpAuth(&h, Keys(kSecretA + "\n" + kSecretB + "\n"), Put(), 1700000000000ull);
  CHECK(h ==
        "t=1700000000000,m=81ed0cc73f4a81c305c9794ffff8894f2aed9b0d1f4ed2750e46e92b12be2c1b,"
        "m=6cb5606260dd5ee6dbe5b1aed55b2bc605b288774ba1b41475f16cb68296f044");
}

TEST_CASE("auth: secret files") {
  ClusterKeys k;
  CHECK(ParseSecrets(kSecretA, &k) == "");
  CHECK(k.count == 1);
  CHECK(k.keys[0] == DeriveKey(kSecretA));
  // Trimmed, CRLF, blank lines ignored, order kept.
  CHECK(ParseSecrets("\n  " + kSecretB + " \r\n\r\n\t" + kSecretA + "\r\n\n", &k) == "");
  CHECK(k.count == 2);
  CHECK(k.keys[0] == DeriveKey(kSecretB));
  CHECK(k.keys[1] == DeriveKey(kSecretA));
  ClusterKeys untouched;
  CHECK(ParseSecrets("", &untouched).find("no secret") != std::string::npos);
  CHECK(ParseSecrets(" \r\n\n", &untouched).find("no secret") != std::string::npos);
  CHECK(ParseSecrets(kSecretA + "\n" + kSecretB + "\n" + kSecretA, &untouched).find("3 secrets") !=
        std::string::npos);
  CHECK(ParseSecrets("short-15-bytes!", &untouched).find("line 1 has 15 bytes") !=
        std::string::npos);
  CHECK(ParseSecrets(std::string(16, 'x'), &k) == "");
  CHECK(ParseSecrets(std::string(1024, 'x'), &k) == "");
  CHECK(ParseSecrets(kSecretA + "\n" + std::string(1025, 'x'), &untouched)
            .find("line 2 has 1025 bytes") != std::string::npos);
  CHECK_FALSE(untouched.enabled());

  char path[] = "/tmp/kv_secret_XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, kSecretA.data(), kSecretA.size()) == static_cast<ssize_t>(kSecretA.size()));
  close(fd);
  bool loose = true;
  CHECK(LoadSecretFile(path, &k, &loose) == "");
  CHECK_FALSE(loose);  // mkstemp: 0600
  CHECK(k.count == 1);
  chmod(path, 0644);
  CHECK(LoadSecretFile(path, &k, &loose) == "");
  CHECK(loose);
  unlink(path);
  CHECK(LoadSecretFile(path, &k, &loose).find("cannot read cluster secret file") == 0);
  CHECK(LoadSecretFile("/tmp", &k, &loose).find("not a regular file") != std::string::npos);
}

TEST_CASE("auth: handshake proofs under every rotation combination") {
  const std::string ab = kSecretA + "\n" + kSecretB;
  const std::string ba = kSecretB + "\n" + kSecretA;
  const ClusterKeys a = Keys(kSecretA), b = Keys(kSecretB), kab = Keys(ab), kba = Keys(ba);
  const ClusterKeys none;
  const Transcript t = Example();
  struct Case {
    const ClusterKeys* prover;
    const ClusterKeys* verifier;
    bool ok;
  } cases[] = {
      {&a, &a, true},   {&a, &kab, true},   {&a, &kba, true},  {&kab, &a, true},
      {&kba, &a, true}, {&kab, &b, true},   {&kba, &b, true},  {&b, &kab, true},
      {&b, &kba, true}, {&kab, &kba, true}, {&b, &b, true},    {&a, &b, false},
      {&b, &a, false},  {&none, &a, false}, {&a, &none, true}, {&none, &none, true},
  };
  for (const Case& c : cases) {
    for (Prover who : {Prover::kServer, Prover::kClient}) {
      std::string proofs;
      AppendProofs(&proofs, *c.prover, who, t);
      CHECK(proofs.size() == c.prover->count * kMacBytes);
      const Verdict v = VerifyProofs(*c.verifier, who, t, proofs);
      CHECK(v == (c.ok ? Verdict::kOk : (proofs.empty() ? Verdict::kMissing : Verdict::kMismatch)));
    }
  }
  // A server's proof is no client proof (domain separation), and every transcript field counts.
  std::string proofs;
  AppendProofs(&proofs, a, Prover::kServer, t);
  CHECK(VerifyProofs(a, Prover::kClient, t, proofs) == Verdict::kMismatch);
  Transcript t2 = t;
  t2.fingerprint ^= 1;
  CHECK(VerifyProofs(a, Prover::kServer, t2, proofs) == Verdict::kMismatch);
  t2 = t;
  t2.client_url = "http://127.0.0.1:8083";
  CHECK(VerifyProofs(a, Prover::kServer, t2, proofs) == Verdict::kMismatch);
  t2 = t;
  t2.server_url = "http://127.0.0.1:8083";
  CHECK(VerifyProofs(a, Prover::kServer, t2, proofs) == Verdict::kMismatch);
  const std::string other_nonce = Bytes(0x40, 32);
  t2 = t;
  t2.server_nonce = other_nonce;
  CHECK(VerifyProofs(a, Prover::kServer, t2, proofs) == Verdict::kMismatch);
  t2 = t;
  t2.client_nonce = other_nonce;
  CHECK(VerifyProofs(a, Prover::kServer, t2, proofs) == Verdict::kMismatch);
  // Truncated or over-long proof fields never match.
  CHECK(VerifyProofs(a, Prover::kServer, t, proofs.substr(0, 31)) == Verdict::kMismatch);
  CHECK(VerifyProofs(a, Prover::kServer, t, proofs + proofs + proofs) == Verdict::kMismatch);
  std::string flipped = proofs;
  flipped[31] ^= 1;
  CHECK(VerifyProofs(a, Prover::kServer, t, flipped) == Verdict::kMismatch);
  // A wrong MAC next to a right one still passes: any match counts.
  CHECK(VerifyProofs(a, Prover::kServer, t, flipped + proofs) == Verdict::kOk);
}

TEST_CASE("auth: nonces are random") {
  CHECK(RandomNonce() != RandomNonce());
}

TEST_CASE("auth: the HTTP header") {
  const ClusterKeys a = Keys(kSecretA), b = Keys(kSecretB), kab = Keys(kSecretA + "\n" + kSecretB);
  const uint64_t t = 1700000000000ull;
  std::string h;
  AppendHttpAuth(&h, a, Put(), t);
  CHECK(VerifyHttpAuth(a, true, h, Put(), t) == Verdict::kOk);
  CHECK(VerifyHttpAuth(kab, true, h, Put(), t) == Verdict::kOk);
  CHECK(VerifyHttpAuth(b, true, h, Put(), t) == Verdict::kMismatch);
  CHECK(VerifyHttpAuth(ClusterKeys{}, false, "", Put(), t) == Verdict::kOk);
  CHECK(VerifyHttpAuth(a, false, "", Put(), t) == Verdict::kMissing);
  // The window: +-60 s inclusive.
  CHECK(VerifyHttpAuth(a, true, h, Put(), t + 60000) == Verdict::kOk);
  CHECK(VerifyHttpAuth(a, true, h, Put(), t - 60000) == Verdict::kOk);
  CHECK(VerifyHttpAuth(a, true, h, Put(), t + 60001) == Verdict::kStale);
  CHECK(VerifyHttpAuth(a, true, h, Put(), t - 60001) == Verdict::kStale);
  // Every covered field counts.
  HttpMessage m = Put();
  m.method = "DELETE";
  CHECK(VerifyHttpAuth(a, true, h, m, t) == Verdict::kMismatch);
  m = Put();
  m.target = "/v0/entity?id=user%3A43";
  CHECK(VerifyHttpAuth(a, true, h, m, t) == Verdict::kMismatch);
  m = Put();
  m.body = "hellO";
  CHECK(VerifyHttpAuth(a, true, h, m, t) == Verdict::kMismatch);
  m = Put();
  m.version = "10964172036854778883";
  CHECK(VerifyHttpAuth(a, true, h, m, t) == Verdict::kMismatch);
  m = Put();
  m.version = "";
  CHECK(VerifyHttpAuth(a, true, h, m, t) == Verdict::kMismatch);
  // A changed time is a changed MAC.
  std::string h2 = h;
  h2[h2.find(',') - 1] = '1';
  CHECK(VerifyHttpAuth(a, true, h2, Put(), t) == Verdict::kMismatch);
  // Rotation: a sender with A+B passes a receiver with B only.
  std::string hab;
  AppendHttpAuth(&hab, kab, Put(), t);
  CHECK(VerifyHttpAuth(b, true, hab, Put(), t) == Verdict::kOk);
  // Malformed headers.
  const std::string mac(64, 'a');
  for (const std::string& bad :
       {std::string(""), std::string("t="), std::string("t=1"), "x=1,m=" + mac, "t=,m=" + mac,
        "t=1,m=" + mac.substr(1), "t=1,m=" + std::string(64, 'A'),
        "t=1,m=" + mac + ",m=" + mac + ",m=" + mac, "t=1,m=" + mac + ",", "t=1 ,m=" + mac,
        "t=123456789012345678901,m=" + mac, "t=1,m=" + mac + "a"}) {
    CHECK_MESSAGE(VerifyHttpAuth(a, true, bad, Put(), 1) == Verdict::kMalformed, bad);
  }
  CHECK(VerifyHttpAuth(a, true, "t=1,m=" + mac, Put(), 1) == Verdict::kMismatch);
  CHECK(h.size() <= kMaxHttpAuthBytes);
  CHECK(hab.size() <= kMaxHttpAuthBytes);
  CHECK(std::string(VerdictName(Verdict::kStale)) == "stale");
}

}  // namespace
}  // namespace kv::proto::auth
