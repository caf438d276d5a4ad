// Big-endian integers in byte strings, as the peer protocol writes them (proto/, and the range
// pages of common/range_page.h). Readers guarantee the bytes are there.
#pragma once
#include <cstdint>
#include <string>

namespace kv::be {

inline void AppendU32(std::string* out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 4);
}

inline void AppendU64(std::string* out, uint64_t v) {
  AppendU32(out, static_cast<uint32_t>(v >> 32));
  AppendU32(out, static_cast<uint32_t>(v));
}

inline uint32_t LoadU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

inline uint64_t LoadU64(const char* p) {
  return (uint64_t{LoadU32(p)} << 32) | LoadU32(p + 4);
}

}  // namespace kv::be
