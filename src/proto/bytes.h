// Big-endian integer writers and a bounds-checked reader: the byte level of every binary peer
// format (frames in wire.cc and frame_decoder.cc, repair messages in repair.cc), on the
// encoding of common/big_endian.h (which range pages use too). Pure, inline.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/big_endian.h"

namespace kv::proto {

inline void PutU8(std::string* out, uint8_t v) {
  out->push_back(static_cast<char>(v));
}

inline void PutU16(std::string* out, uint16_t v) {
  const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 2);
}

inline void PutU32(std::string* out, uint32_t v) {
  be::AppendU32(out, v);
}

inline void PutU64(std::string* out, uint64_t v) {
  be::AppendU64(out, v);
}

inline uint16_t GetU16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}

inline uint32_t GetU32(const char* p) {
  return be::LoadU32(p);
}

inline uint64_t GetU64(const char* p) {
  return be::LoadU64(p);
}

// Bounds-checked cursor over one payload: every read fails (false) rather than overrun.
class Reader {
 public:
  Reader(const char* p, size_t n) : p_(p), left_(n) {}
  explicit Reader(std::string_view s) : Reader(s.data(), s.size()) {}
  size_t left() const { return left_; }
  bool U8(uint8_t* v) { return Take(1) ? (*v = static_cast<uint8_t>(p_[-1]), true) : false; }
  bool U16(uint16_t* v) { return Take(2) ? (*v = GetU16(p_ - 2), true) : false; }
  bool U32(uint32_t* v) { return Take(4) ? (*v = GetU32(p_ - 4), true) : false; }
  bool U64(uint64_t* v) { return Take(8) ? (*v = GetU64(p_ - 8), true) : false; }
  bool Bytes(size_t n, std::string_view* v) {
    if (!Take(n)) return false;
    *v = std::string_view(p_ - n, n);
    return true;
  }

 private:
  bool Take(size_t n) {
    if (n > left_) return false;
    p_ += n;
    left_ -= n;
    return true;
  }
  const char* p_;
  size_t left_;
};

}  // namespace kv::proto
