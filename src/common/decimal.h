// Decimal text of an unsigned integer, without allocating: the one formatter for HTTP status
// lines, lengths, versions and metrics.
#pragma once
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace kv {

class Decimal {
 public:
  explicit Decimal(uint64_t v)
      : n_(static_cast<size_t>(std::to_chars(buf_, buf_ + 20, v).ptr - buf_)) {}
  std::string_view view() const { return {buf_, n_}; }

 private:
  char buf_[20];
  size_t n_;
};

inline void AppendDecimal(std::string* out, uint64_t v) {
  out->append(Decimal(v).view());
}

}  // namespace kv
