// Layout constants and the footer of a segment file (see proto_spec/storage-format.md):
//   data blocks | filter | filter xxh3 | index | index xxh3 | footer (56 bytes)
// A data block is
//   entry 0 | ... | entry n-1 | offset u32 x n | key prefix u64 x n | n u32
//   | xxh3 u64 of the offsets, prefixes and n
// and an entry is
//   key_len u32 | value_len u32 | version u64 | type u8 | key | value | low 32 bits of its xxh3
// A key prefix is KeyPrefix() of the entry's key. A point read binary searches the prefixes,
// verifies the trailer, then reads (and verifies) only the entry it lands on.
// Pure data and functions; no I/O.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "storage/coding.h"

namespace kv::storage {

constexpr uint32_t kSegmentMagic = 0x4b565347;  // "GSVK" little-endian: 47 53 56 4b
constexpr uint32_t kSegmentFormatVersion = 1;
constexpr size_t kFooterBytes = 56;
constexpr size_t kEntryHeaderBytes = 17;
constexpr size_t kEntryChecksumBytes = 4;
constexpr size_t kChecksumBytes = 8;

// Checksum stored after each entry: the low half of its XXH3.
inline uint32_t EntryChecksum(const char* p, size_t n) {
  return static_cast<uint32_t>(Checksum(p, n));
}

// A data block's trailer, located within the block's bounds (Segment::LocateBlock; trusted
// once Segment::VerifyBlock passed): `count` entries whose start offsets are at `offsets`, followed
// by their key prefixes at `prefixes`.
struct BlockView {
  const char* data = nullptr;
  const char* offsets = nullptr;   // count little-endian u32
  const char* prefixes = nullptr;  // count little-endian u64
  uint32_t count = 0;
  uint32_t EntryStart(uint32_t i) const { return GetFixed32(offsets + 4 * i); }
  // End of entry i: the next entry's start, or the start of the offsets for the last one.
  uint32_t EntryEnd(uint32_t i) const {
    return i + 1 < count ? EntryStart(i + 1) : static_cast<uint32_t>(offsets - data);
  }
  uint64_t Prefix(uint32_t i) const { return GetFixed64(prefixes + 8 * i); }
};

struct Footer {
  uint64_t filter_offset = 0, filter_size = 0;  // sizes exclude the 8-byte checksum after them
  uint64_t index_offset = 0, index_size = 0;
  uint64_t entries = 0;
  uint32_t format_version = kSegmentFormatVersion;

  void EncodeTo(std::string* out) const;
  // False when the checksum, magic or version is wrong.
  bool DecodeFrom(const char* p);
};

}  // namespace kv::storage
