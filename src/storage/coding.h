// Little-endian fixed-width encoding, the XXH3 checksum and file naming shared by every on-disk
// format of the storage engine. Pure functions: callers provide buffers large enough to hold them.
#pragma once
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace kv::storage {

// Entry types, as stored in log records and data blocks. An expiring value's stored value is its
// expiry time (u64 little-endian, Unix milliseconds) followed by the value's bytes.
enum class EntryType : uint8_t { kValue = 1, kTombstone = 2, kExpiring = 3 };
constexpr size_t kExpiryBytes = 8;

// A type byte read from disk, and the stored value's length: false when they cannot be an entry.
inline bool ValidEntry(uint8_t type, uint64_t value_len) {
  return type == static_cast<uint8_t>(EntryType::kValue) ||
         type == static_cast<uint8_t>(EntryType::kTombstone) ||
         (type == static_cast<uint8_t>(EntryType::kExpiring) && value_len >= kExpiryBytes);
}

inline void PutFixed32(char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<char>(v >> (8 * i));
}
inline void PutFixed64(char* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<char>(v >> (8 * i));
}
inline uint32_t GetFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint64_t GetFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline void AppendFixed32(std::string* s, uint32_t v) {
  char b[4];
  PutFixed32(b, v);
  s->append(b, 4);
}
inline void AppendFixed64(std::string* s, uint64_t v) {
  char b[8];
  PutFixed64(b, v);
  s->append(b, 8);
}

// The first 8 bytes of key as a big-endian number, zero padded. When two keys' prefixes differ
// they order like the keys; when they are equal the keys must be compared in full.
inline uint64_t KeyPrefix(std::string_view key) {
  uint64_t p = 0;
  size_t n = key.size() < 8 ? key.size() : 8;
  for (size_t i = 0; i < n; i++) p |= uint64_t{static_cast<uint8_t>(key[i])} << (56 - 8 * i);
  return p;
}

inline uint64_t Checksum(const char* p, size_t n) {
  return XXH3_64bits(p, n);
}

// File names inside the store directory. Numbers come from one counter, so a log and a segment
// never share a number.
std::string LogFileName(uint64_t number);      // log-000042.log
std::string SegmentFileName(uint64_t number);  // seg-000042.seg
// Parses a file name made by the functions above; returns false for any other name.
bool ParseFileName(std::string_view name, bool* is_log, uint64_t* number);

}  // namespace kv::storage
