// Peer authentication with a shared cluster secret (proto_spec/peer-protocol.md, section 11):
// loading --cluster-secret-file, key derivation, the binary handshake's proofs, the HTTP
// X-KV-Auth header and nonces. Keyed BLAKE2b-256 (libsodium crypto_generichash); every compare
// of a received MAC runs in constant time. Pure functions; libsodium is initialised when the
// program loads (Init() reports whether that worked).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kv::proto::auth {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kMacBytes = 32;
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMaxKeys = 2;  // a secret file holds one or two secrets (rotation)
inline constexpr size_t kMinSecretBytes = 16;
inline constexpr size_t kMaxSecretBytes = 1024;
// The HTTP header's timestamp must lie within this of the receiver's clock.
inline constexpr uint64_t kHttpWindowMs = 60000;

using Key = std::array<uint8_t, kKeyBytes>;
using Mac = std::array<uint8_t, kMacBytes>;
using Nonce = std::array<uint8_t, kNonceBytes>;

// The keys of a node: none (no secret: proves nothing, accepts anything), one, or two during a
// rotation. A value type: copy it into whatever needs it.
struct ClusterKeys {
  std::array<Key, kMaxKeys> keys{};
  size_t count = 0;
  bool enabled() const { return count > 0; }
};

// Whether libsodium is initialised (idempotent, thread-safe). False if it cannot work.
bool Init();

// Key_i = BLAKE2b-256 (unkeyed) of the secret's bytes.
Key DeriveKey(std::string_view secret);

// Parses a secret file's text: one secret per line; spaces, tabs and '\r' around a line are
// trimmed; empty lines are ignored; each secret 16..1024 bytes; one or two secrets. "" on
// success (*keys filled, in file order), else a one-line reason.
std::string ParseSecrets(std::string_view text, ClusterKeys* keys);
// Reads and parses the file at path ("" or a one-line reason naming the file). *loose is set
// when the file is readable by group or others (the caller warns).
std::string LoadSecretFile(const std::string& path, ClusterKeys* keys, bool* loose);

// 32 random bytes from the operating system's generator.
Nonce RandomNonce();

// ---- binary handshake (section 11.2) ------------------------------------------------------------
// What both proofs of one connection cover.
struct Transcript {
  std::string_view client_nonce;  // kNonceBytes
  std::string_view server_nonce;  // kNonceBytes
  uint64_t fingerprint = 0;
  std::string_view client_url;
  std::string_view server_url;
};

enum class Prover : uint8_t { kServer, kClient };  // who proves: which domain prefix

// MAC(key, "kvpeer-server-v1" or "kvpeer-client-v1" | client_nonce | server_nonce |
// fingerprint u64 LE | u16 LE len | client_url | u16 LE len | server_url).
Mac HandshakeMac(const Key& key, Prover who, const Transcript& t);
// Appends one MAC per key (nothing without a secret): the proofs field of HANDSHAKE_OK / AUTH.
void AppendProofs(std::string* out, const ClusterKeys& keys, Prover who, const Transcript& t);

enum class Verdict : uint8_t {
  kOk,         // accepted (a MAC matched one of our keys, or we hold no secret)
  kMissing,    // we hold a secret and the peer sent no proof / no header
  kMalformed,  // HTTP only: the header does not parse
  kStale,      // HTTP only: its time is outside the window
  kMismatch,   // no MAC matches any of our keys
};
const char* VerdictName(Verdict v);  // "ok", "missing", "malformed", "stale", "mismatch"

// proofs: n * kMacBytes bytes (n <= kMaxKeys, checked by the decoder). Accepts if any of them
// matches any of our keys; every comparison is constant-time.
Verdict VerifyProofs(const ClusterKeys& keys, Prover who, const Transcript& t,
                     std::string_view proofs);

// ---- HTTP peer requests (section 11.3) ----------------------------------------------------------
struct HttpMessage {
  std::string_view method;   // "GET", "PUT", "DELETE"
  std::string_view target;   // the request target exactly as sent
  std::string_view version;  // the X-KV-Version value, or empty
  std::string_view body;
};

// MAC(key, "kvhttp-v1\n" | method | "\n" | target | "\n" | version | "\n" | t | "\n" | body),
// t in decimal ASCII. The body is hashed in place.
Mac HttpMac(const Key& key, const HttpMessage& m, uint64_t t_ms);
// Appends the X-KV-Auth value "t=<ms>,m=<64 hex>[,m=<64 hex>]" (nothing without a secret).
void AppendHttpAuth(std::string* out, const ClusterKeys& keys, const HttpMessage& m, uint64_t t_ms);
// Checks an X-KV-Auth value (`present` false: no header) against our keys at now_ms.
Verdict VerifyHttpAuth(const ClusterKeys& keys, bool present, std::string_view header,
                       const HttpMessage& m, uint64_t now_ms, uint64_t window_ms = kHttpWindowMs);
// Longest X-KV-Auth value this build sends or accepts.
inline constexpr size_t kMaxHttpAuthBytes = 2 + 20 + kMaxKeys * (3 + 2 * kMacBytes);

}  // namespace kv::proto::auth
