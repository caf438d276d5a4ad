// Static cluster topology: maps a key to its ordered replica list by rendezvous (HRW) hashing.
// Caller guarantees: URLs are distinct; the Ring is immutable after construction (share freely).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kv::cluster {

// Every node scores every key with XXH3 seeded by a per-node seed (XXH3 of the node's URL); a
// key's replica order is the nodes sorted by descending score (ties, which need a 64-bit
// collision, are broken by URL). The order depends only on the URL strings and the key, never on
// the order of the URL list, and the first k nodes of the order are the same for every n >= k.
class Ring {
 public:
  // Replica order computations for n up to kInlineReplicas use an insertion sort over a stack
  // buffer (one hash per node); above that, one selection pass per replica. Never allocates.
  static constexpr size_t kInlineReplicas = 32;

  // urls as given in --cluster, e.g. "http://127.0.0.1:8080"; indexes below refer to this list.
  explicit Ring(std::vector<std::string> urls);

  size_t size() const { return nodes_.size(); }
  const std::string& url(size_t i) const { return nodes_[i].url; }

  // Writes the first n (n <= size()) node indexes of the key's replica order to out, highest
  // score first. Deterministic, allocation-free.
  void Replicas(std::string_view key, size_t n, uint32_t* out) const;

  // The first node of the key's replica order (same as Replicas(key, 1, &out)).
  uint32_t Primary(std::string_view key) const;

  // The score node i gives the key (exposed for tests and diagnostics).
  uint64_t Score(std::string_view key, size_t i) const { return Mix(KeyHash(key), nodes_[i].seed); }

  // ClusterFingerprint (common/fingerprint.h) of the URLs: equal for any ordering of the same
  // set, so two nodes can check they were started with the same --cluster.
  uint64_t Fingerprint() const { return fingerprint_; }

  // Accepts exactly "http://host:port" or "http://host:port/" (scheme case-insensitive); host is a
  // DNS name (letters, digits, '-', '.'), an IPv4 address or a bracketed IPv6 address ("[::1]",
  // returned in *host without the brackets); port is decimal in [1, 65535]. Rejects anything else.
  // On success fills *host and *port (either may be null); on failure leaves them unchanged.
  static bool ParseUrl(std::string_view url, std::string* host, uint16_t* port);

 private:
  struct Node {
    std::string url;
    uint64_t seed;
  };

  static uint64_t KeyHash(std::string_view key);
  static uint64_t Mix(uint64_t key_hash, uint64_t seed);
  // True if node a's (score_a) ranks before node b's (score_b) for the same key.
  bool Before(uint64_t score_a, uint32_t a, uint64_t score_b, uint32_t b) const;

  std::vector<Node> nodes_;
  uint64_t fingerprint_ = 0;
};

}  // namespace kv::cluster
