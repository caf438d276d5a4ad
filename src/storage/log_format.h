// Encoding of one write-ahead log record (see proto_spec/storage-format.md):
//   key_len u32 | value_len u32 | key | value | version u64 | type u8 | xxh3 u64
// All integers little-endian; the checksum covers every byte before it. Pure functions.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "storage/coding.h"

namespace kv::storage {

constexpr size_t kLogHeaderBytes = 8;    // key_len + value_len
constexpr size_t kLogTrailerBytes = 17;  // version + type + checksum
constexpr uint32_t kMaxKeyBytes = 64u << 10;
constexpr uint32_t kMaxValueBytes = 64u << 20;

// Replaces *out with the encoded record.
void EncodeLogRecord(std::string_view key, std::string_view value, uint64_t version, EntryType type,
                     std::string* out);

struct LogRecord {
  std::string_view key, value;
  uint64_t version = 0;
  EntryType type = EntryType::kValue;
};

enum class DecodeResult { kOk, kTruncated, kBadChecksum, kBadField };
// Decodes the record at the start of data; *consumed is its length when kOk.
DecodeResult DecodeLogRecord(std::string_view data, LogRecord* rec, size_t* consumed);

}  // namespace kv::storage
