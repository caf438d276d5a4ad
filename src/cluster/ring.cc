#include "cluster/ring.h"

#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "common/fingerprint.h"

namespace kv::cluster {

Ring::Ring(std::vector<std::string> urls) : fingerprint_(ClusterFingerprint(urls)) {
  nodes_.reserve(urls.size());
  for (std::string& u : urls) {
    uint64_t seed = XXH3_64bits(u.data(), u.size());
    nodes_.push_back(Node{std::move(u), seed});
  }
}

uint64_t Ring::KeyHash(std::string_view key) {
  return XXH3_64bits(key.data(), key.size());
}

uint64_t Ring::Mix(uint64_t key_hash, uint64_t seed) {
  // XXH3 on 8 bytes is a keyed full-avalanche mix (xor with a seed-derived mask, then rrmxmx):
  // one hash of the key per lookup, then one cheap mix per node.
  return XXH3_64bits_withSeed(&key_hash, sizeof key_hash, seed);
}

bool Ring::Before(uint64_t score_a, uint32_t a, uint64_t score_b, uint32_t b) const {
  if (score_a != score_b) return score_a > score_b;
  // Only reachable on a 64-bit score collision: break it by URL so the order still does not
  // depend on the position of the URLs in the list (duplicates fall back to the index).
  int c = nodes_[a].url.compare(nodes_[b].url);
  if (c != 0) return c < 0;
  return a < b;
}

uint32_t Ring::Primary(std::string_view key) const {
  assert(!nodes_.empty());
  uint64_t h = KeyHash(key);
  uint32_t best = 0;
  uint64_t best_score = Mix(h, nodes_[0].seed);
  for (uint32_t i = 1; i < nodes_.size(); ++i) {
    uint64_t s = Mix(h, nodes_[i].seed);
    if (Before(s, i, best_score, best)) {
      best = i;
      best_score = s;
    }
  }
  return best;
}

void Ring::Replicas(std::string_view key, size_t n, uint32_t* out) const {
  assert(n <= nodes_.size());
  if (n == 0) return;
  if (n == 1) {
    out[0] = Primary(key);
    return;
  }
  const uint64_t h = KeyHash(key);
  const uint32_t count = static_cast<uint32_t>(nodes_.size());
  if (n <= kInlineReplicas) {
    // Keep the best n seen so far in out[0..filled), sorted, with their scores alongside.
    uint64_t scores[kInlineReplicas];
    size_t filled = 0;
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t s = Mix(h, nodes_[i].seed);
      if (filled == n && !Before(s, i, scores[n - 1], out[n - 1])) continue;
      size_t pos = filled < n ? filled++ : n - 1;
      while (pos > 0 && Before(s, i, scores[pos - 1], out[pos - 1])) {
        scores[pos] = scores[pos - 1];
        out[pos] = out[pos - 1];
        --pos;
      }
      scores[pos] = s;
      out[pos] = i;
    }
    return;
  }
  // Large n: selection passes, each picking the best node ranked after the previous pick.
  uint64_t prev_score = 0;
  uint32_t prev = 0;
  for (size_t r = 0; r < n; ++r) {
    bool found = false;
    uint64_t best_score = 0;
    uint32_t best = 0;
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t s = Mix(h, nodes_[i].seed);
      if (r > 0 && !Before(prev_score, prev, s, i)) continue;
      if (!found || Before(s, i, best_score, best)) {
        found = true;
        best_score = s;
        best = i;
      }
    }
    out[r] = best;
    prev_score = best_score;
    prev = best;
  }
}

namespace {

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
bool IsHex(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool ValidName(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '-' && c != '.') return false;
  }
  return h.front() != '.' && h.front() != '-';
}

bool ValidIpv6(std::string_view h) {
  // Shape check only (hex digits, ':' and '.' for an embedded IPv4 tail, at least two ':');
  // the resolver rejects whatever is still malformed.
  if (h.size() < 2 || h.size() > 45) return false;
  int colons = 0;
  for (char c : h) {
    if (c == ':') {
      ++colons;
    } else if (!IsHex(c) && c != '.') {
      return false;
    }
  }
  return colons >= 2;
}

}  // namespace

bool Ring::ParseUrl(std::string_view url, std::string* host, uint16_t* port) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = url[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);

  std::string_view h;
  std::string_view p;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return false;
    h = rest.substr(1, close - 1);
    if (!ValidIpv6(h)) return false;
    rest.remove_prefix(close + 1);
    if (rest.empty() || rest.front() != ':') return false;
    p = rest.substr(1);
  } else {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) return false;
    h = rest.substr(0, colon);
    if (!ValidName(h)) return false;
    p = rest.substr(colon + 1);
  }
  if (p.empty()) return false;
  uint32_t value = 0;
  for (char c : p) {
    if (!IsDigit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) return false;
  }
  if (value == 0) return false;
  if (host != nullptr) host->assign(h);
  if (port != nullptr) *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace kv::cluster
