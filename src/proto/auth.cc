#include "proto/auth.h"

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace kv::proto::auth {

namespace {

constexpr std::string_view kServerPrefix = "kvpeer-server-v1";
constexpr std::string_view kClientPrefix = "kvpeer-client-v1";
constexpr std::string_view kHttpPrefix = "kvhttp-v1\n";

// Initialised when the program loads whatever uses this file, so every function here works
// without an explicit Init() (sodium_init is idempotent and thread-safe).
const bool g_sodium_ready = sodium_init() >= 0;

// Streams bytes into one keyed BLAKE2b-256.
class Hasher {
 public:
  explicit Hasher(const Key& key) { crypto_generichash_init(&st_, key.data(), key.size(), 32); }
  ~Hasher() { sodium_memzero(&st_, sizeof st_); }
  void Update(std::string_view s) {
    crypto_generichash_update(&st_, reinterpret_cast<const unsigned char*>(s.data()), s.size());
  }
  void U16Le(size_t v) {
    const unsigned char b[2] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8)};
    crypto_generichash_update(&st_, b, 2);
  }
  void U64Le(uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    crypto_generichash_update(&st_, b, 8);
  }
  Mac Final() {
    Mac m;
    crypto_generichash_final(&st_, m.data(), m.size());
    return m;
  }

 private:
  crypto_generichash_state st_;
};

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

// Constant-time: does `mac` (kMacBytes) match any of our keys' `expected`?
bool AnyMatch(const Mac* expected, size_t n, const unsigned char* mac) {
  bool ok = false;
  for (size_t i = 0; i < n; ++i) ok |= crypto_verify_32(expected[i].data(), mac) == 0;
  return ok;
}

void AppendHex(std::string* out, const Mac& m) {
  static const char kHex[] = "0123456789abcdef";
  for (uint8_t b : m) {
    out->push_back(kHex[b >> 4]);
    out->push_back(kHex[b & 15]);
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

bool Init() {
  return g_sodium_ready && sodium_init() >= 0;
}

Key DeriveKey(std::string_view secret) {
  Key k;
  crypto_generichash(k.data(), k.size(), reinterpret_cast<const unsigned char*>(secret.data()),
                     secret.size(), nullptr, 0);
  return k;
}

std::string ParseSecrets(std::string_view text, ClusterKeys* keys) {
  ClusterKeys out;
  size_t found = 0, pos = 0, line = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view s = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line;
    while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
    while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
    if (s.empty()) continue;
    if (s.size() < kMinSecretBytes || s.size() > kMaxSecretBytes) {
      return "the secret on line " + std::to_string(line) + " has " + std::to_string(s.size()) +
             " bytes; expected " + std::to_string(kMinSecretBytes) + ".." +
             std::to_string(kMaxSecretBytes);
    }
    if (++found <= kMaxKeys) out.keys[found - 1] = DeriveKey(s);
  }
  if (found == 0) return "no secret in it (expected one or two lines)";
  if (found > kMaxKeys) {
    return std::to_string(found) + " secrets in it; expected one, or two while rotating";
  }
  out.count = found;
  *keys = out;
  sodium_memzero(&out, sizeof out);
  return "";
}

std::string LoadSecretFile(const std::string& path, ClusterKeys* keys, bool* loose) {
  *loose = false;
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) return "cannot read cluster secret file " + path + ": " + strerror(errno);
  struct stat st;
  if (fstat(fileno(f), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      fclose(f);
      return "cluster secret file " + path + " is not a regular file";
    }
    *loose = (st.st_mode & 077) != 0;
  }
  // Two secrets of the largest size, their line ends and some blank lines: anything larger is
  // not a secret file.
  constexpr size_t kMaxFileBytes = 4 * kMaxSecretBytes + 4096;
  std::string text(kMaxFileBytes + 1, '\0');
  const size_t n = fread(text.data(), 1, text.size(), f);
  const bool failed = ferror(f) != 0;
  fclose(f);
  std::string err;
  if (failed) {
    err = "cannot read cluster secret file " + path;
  } else if (n > kMaxFileBytes) {
    err = "cluster secret file " + path + " is over " + std::to_string(kMaxFileBytes) + " bytes";
  } else {
    text.resize(n);
    err = ParseSecrets(text, keys);
    if (!err.empty()) err = "cluster secret file " + path + ": " + err;
  }
  sodium_memzero(text.data(), text.size());
  return err;
}

Nonce RandomNonce() {
  Nonce n;
  randombytes_buf(n.data(), n.size());
  return n;
}

Mac HandshakeMac(const Key& key, Prover who, const Transcript& t) {
  Hasher h(key);
  h.Update(who == Prover::kServer ? kServerPrefix : kClientPrefix);
  h.Update(t.client_nonce);
  h.Update(t.server_nonce);
  h.U64Le(t.fingerprint);
  h.U16Le(t.client_url.size());
  h.Update(t.client_url);
  h.U16Le(t.server_url.size());
  h.Update(t.server_url);
  return h.Final();
}

void AppendProofs(std::string* out, const ClusterKeys& keys, Prover who, const Transcript& t) {
  for (size_t i = 0; i < keys.count; ++i) {
    const Mac m = HandshakeMac(keys.keys[i], who, t);
    out->append(reinterpret_cast<const char*>(m.data()), m.size());
  }
}

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kOk:
      return "ok";
    case Verdict::kMissing:
      return "missing";
    case Verdict::kMalformed:
      return "malformed";
    case Verdict::kStale:
      return "stale";
    case Verdict::kMismatch:
      return "mismatch";
  }
  return "unknown";
}

Verdict VerifyProofs(const ClusterKeys& keys, Prover who, const Transcript& t,
                     std::string_view proofs) {
  if (!keys.enabled()) return Verdict::kOk;
  if (proofs.empty()) return Verdict::kMissing;
  if (proofs.size() % kMacBytes != 0 || proofs.size() > kMaxKeys * kMacBytes) {
    return Verdict::kMismatch;
  }
  Mac expected[kMaxKeys];
  for (size_t i = 0; i < keys.count; ++i) expected[i] = HandshakeMac(keys.keys[i], who, t);
  bool ok = false;
  for (size_t off = 0; off < proofs.size(); off += kMacBytes) {
    ok |=
        AnyMatch(expected, keys.count, reinterpret_cast<const unsigned char*>(proofs.data() + off));
  }
  return ok ? Verdict::kOk : Verdict::kMismatch;
}

Mac HttpMac(const Key& key, const HttpMessage& m, uint64_t t_ms) {
  char t[24];
  const auto r = std::to_chars(t, t + sizeof t, t_ms);
  Hasher h(key);
  h.Update(kHttpPrefix);
  h.Update(m.method);
  h.Update("\n");
  h.Update(m.target);
  h.Update("\n");
  h.Update(m.version);
  h.Update("\n");
  h.Update(std::string_view(t, static_cast<size_t>(r.ptr - t)));
  h.Update("\n");
  h.Update(m.body);
  return h.Final();
}

void AppendHttpAuth(std::string* out, const ClusterKeys& keys, const HttpMessage& m,
                    uint64_t t_ms) {
  if (!keys.enabled()) return;
  char t[24];
  const auto r = std::to_chars(t, t + sizeof t, t_ms);
  out->append("t=");
  out->append(t, r.ptr);
  for (size_t i = 0; i < keys.count; ++i) {
    out->append(",m=");
    AppendHex(out, HttpMac(keys.keys[i], m, t_ms));
  }
}

Verdict VerifyHttpAuth(const ClusterKeys& keys, bool present, std::string_view header,
                       const HttpMessage& m, uint64_t now_ms, uint64_t window_ms) {
  if (!keys.enabled()) return Verdict::kOk;
  if (!present) return Verdict::kMissing;
  // t=<1..20 digits>(,m=<64 lowercase hex>){1,2}, nothing else.
  if (header.size() > kMaxHttpAuthBytes || header.substr(0, 2) != "t=") return Verdict::kMalformed;
  size_t p = 2, digits = 0;
  while (p < header.size() && header[p] >= '0' && header[p] <= '9') ++p, ++digits;
  uint64_t t = 0;
  const auto r = std::from_chars(header.data() + 2, header.data() + p, t);
  if (digits == 0 || digits > 20 || r.ec != std::errc()) return Verdict::kMalformed;
  unsigned char macs[kMaxKeys][kMacBytes];
  size_t n = 0;
  while (p < header.size()) {
    if (n == kMaxKeys || header.substr(p, 3) != ",m=" || header.size() - p < 3 + 2 * kMacBytes) {
      return Verdict::kMalformed;
    }
    p += 3;
    for (size_t i = 0; i < kMacBytes; ++i, p += 2) {
      const int hi = HexDigit(header[p]), lo = HexDigit(header[p + 1]);
      if (hi < 0 || lo < 0) return Verdict::kMalformed;
      macs[n][i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    ++n;
  }
  if (n == 0) return Verdict::kMalformed;
  const uint64_t skew = t > now_ms ? t - now_ms : now_ms - t;
  if (skew > window_ms) return Verdict::kStale;
  Mac expected[kMaxKeys];
  for (size_t i = 0; i < keys.count; ++i) expected[i] = HttpMac(keys.keys[i], m, t);
  bool ok = false;
  for (size_t i = 0; i < n; ++i) ok |= AnyMatch(expected, keys.count, macs[i]);
  return ok ? Verdict::kOk : Verdict::kMismatch;
}

}  // namespace kv::proto::auth
