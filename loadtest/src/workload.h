// What kvload sends: the key distribution (uniform or YCSB-style scrambled zipfian), the
// operation mix and the HTTP/1.1 request text for /v0/entity.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace kvload {

// splitmix64: small, fast, good enough for choosing keys and operations.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }

 private:
  uint64_t s_;
};

// Zipfian ranks over [0, n) with skew theta (0 < theta < 1), following Gray et al., "Quickly
// generating billion-record synthetic databases" (the generator YCSB uses). Rank 0 is the most
// popular. Construction is O(n) (the zeta constant); draws are O(1). Immutable after
// construction, so one instance may be shared by threads each with their own Rng.
class Zipfian {
 public:
  Zipfian(uint64_t n, double theta);
  uint64_t rank(Rng& rng) const;
  uint64_t n() const { return n_; }
  // Probability of rank r (exact: 1 / ((r+1)^theta * zeta_n)), for tests.
  double probability(uint64_t r) const;

 private:
  uint64_t n_;
  double theta_, alpha_, zeta_n_, eta_, half_pow_theta_;
};

enum class KeyDist { kUniform, kZipfian };
enum class Op { kGet, kPut, kDelete };
enum class WorkloadKind { kGet, kPut, kMixed, kDelete };

struct WorkloadConfig {
  WorkloadKind kind = WorkloadKind::kGet;
  double get_ratio = 0.9;  // mixed: probability of GET, the rest PUT
  uint64_t keys = 100000;
  KeyDist dist = KeyDist::kUniform;
  double zipf_theta = 0.99;
  size_t value_size = 100;
  int ack = 0;  // 0 = not sent
  int from = 0;
  std::string path = "/v0/entity";
  std::string host_header = "127.0.0.1";
};

// Per-thread request factory. The zipfian table is shared (const).
class Workload {
 public:
  Workload(const WorkloadConfig& cfg, std::shared_ptr<const Zipfian> zipf, uint64_t seed);
  // Picks the next operation and key and writes the complete request into `out` (replacing its
  // contents). Returns the operation chosen.
  Op next_request(std::string& out);
  uint64_t next_key();

 private:
  const WorkloadConfig& cfg_;
  std::shared_ptr<const Zipfian> zipf_;
  Rng rng_;
  std::string value_;  // PUT body, value_size bytes
  std::string query_;  // "&ack=A&from=F" or empty
};

// Zipfian ranks are scrambled over the key space (FNV-1a of the rank, modulo n) so that the hot
// keys are not neighbours, as YCSB's ScrambledZipfianGenerator does.
uint64_t scramble_rank(uint64_t rank, uint64_t n);

std::string_view op_name(Op op);

}  // namespace kvload
