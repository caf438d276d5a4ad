#include "workload.h"

#include <cmath>
#include <cstdio>

namespace kvload {

Zipfian::Zipfian(uint64_t n, double theta) : n_(n ? n : 1), theta_(theta) {
  double zeta2 = 1.0 + std::pow(0.5, theta_);
  zeta_n_ = 0;
  for (uint64_t i = 1; i <= n_; i++) zeta_n_ += 1.0 / std::pow(static_cast<double>(i), theta_);
  alpha_ = 1.0 / (1.0 - theta_);
  eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n_), 1.0 - theta_)) / (1.0 - zeta2 / zeta_n_);
  half_pow_theta_ = std::pow(0.5, theta_);
}

uint64_t Zipfian::rank(Rng& rng) const {
  double u = rng.uniform01();
  double uz = u * zeta_n_;
  if (uz < 1.0) return 0;
  if (uz < 1.0 + half_pow_theta_) return n_ > 1 ? 1 : 0;
  auto r = static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
  return r < n_ ? r : n_ - 1;
}

double Zipfian::probability(uint64_t r) const {
  return 1.0 / (std::pow(static_cast<double>(r + 1), theta_) * zeta_n_);
}

uint64_t scramble_rank(uint64_t rank, uint64_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int i = 0; i < 8; i++) {
    h ^= (rank >> (8 * i)) & 0xFF;
    h *= 0x100000001B3ull;
  }
  return n ? h % n : 0;
}

std::string_view op_name(Op op) {
  switch (op) {
    case Op::kGet:
      return "GET";
    case Op::kPut:
      return "PUT";
    case Op::kDelete:
      return "DELETE";
  }
  return "?";
}

Workload::Workload(const WorkloadConfig& cfg, std::shared_ptr<const Zipfian> zipf, uint64_t seed)
    : cfg_(cfg), zipf_(std::move(zipf)), rng_(seed) {
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  value_.resize(cfg_.value_size);
  for (char& c : value_) c = kAlphabet[rng_.below(sizeof(kAlphabet) - 1)];
  if (cfg_.ack > 0) query_ += "&ack=" + std::to_string(cfg_.ack);
  if (cfg_.from > 0) query_ += "&from=" + std::to_string(cfg_.from);
}

uint64_t Workload::next_key() {
  if (cfg_.dist == KeyDist::kZipfian && zipf_) return scramble_rank(zipf_->rank(rng_), cfg_.keys);
  return rng_.below(cfg_.keys);
}

Op Workload::next_request(std::string& out) {
  Op op = Op::kGet;
  switch (cfg_.kind) {
    case WorkloadKind::kGet:
      op = Op::kGet;
      break;
    case WorkloadKind::kPut:
      op = Op::kPut;
      break;
    case WorkloadKind::kDelete:
      op = Op::kDelete;
      break;
    case WorkloadKind::kMixed:
      op = rng_.uniform01() < cfg_.get_ratio ? Op::kGet : Op::kPut;
      break;
  }
  char key[32];
  int klen = std::snprintf(key, sizeof(key), "k%llu", static_cast<unsigned long long>(next_key()));
  out.clear();
  out.append(op_name(op));
  out.append(" ");
  out.append(cfg_.path);
  out.append("?id=");
  out.append(key, static_cast<size_t>(klen));
  out.append(query_);
  out.append(" HTTP/1.1\r\nHost: ");
  out.append(cfg_.host_header);
  if (op == Op::kPut) {
    out.append("\r\nContent-Length: ");
    out.append(std::to_string(value_.size()));
    out.append("\r\n\r\n");
    out.append(value_);
  } else {
    out.append("\r\n\r\n");
  }
  return op;
}

}  // namespace kvload
