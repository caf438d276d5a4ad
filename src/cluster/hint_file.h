// The bytes of a hint file (proto_spec/storage-format.md, "Hint files"): a header naming the
// target node, then one record per hint in the storage log's record layout (lengths, key,
// value, version, type, XXH3). Pure functions over buffers; the caller does the file I/O.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluster/peer.h"

namespace kv::cluster::hintfile {

inline constexpr char kMagic[8] = {'k', 'v', 'h', 'i', 'n', 't', '0', '1'};
inline constexpr size_t kMaxUrlBytes = 4096;
inline constexpr size_t kMaxKeyBytes = 64 * 1024;
inline constexpr size_t kMaxValueBytes = size_t{1} << 30;  // --max-value-bytes' ceiling
// key_len, value_len, version, type, checksum.
inline constexpr size_t kRecordOverhead = 4 + 4 + 8 + 1 + 8;
inline constexpr uint8_t kTypeValue = 1;
inline constexpr uint8_t kTypeTombstone = 2;
inline constexpr uint8_t kTypeExpiring = 3;  // the stored value: expiry (u64 LE, Unix ms), value

enum class Parse { kOk, kNeedMore, kCorrupt };

// Magic, u32 url length, url, u64 XXH3 of the bytes before it.
void AppendHeader(std::string* out, std::string_view target_url);
inline size_t HeaderSize(size_t url_len) {
  return sizeof kMagic + 4 + url_len + 8;
}
// The header at the start of buf. kOk: *url and *len (its size) set. kNeedMore: buf is a prefix
// of a header that may still be valid; *len is the size needed when known, else 0.
Parse ParseHeader(std::string_view buf, std::string* url, size_t* len);

struct Record {
  PeerOp op = PeerOp::kPut;  // kPut (a value) or kRemove (a tombstone)
  std::string_view key;
  std::string_view value;  // empty for kRemove
  uint64_t version = 0;
  uint64_t expires_ms = 0;  // kPut: the value expires then (0: never)
};

inline size_t RecordSize(size_t key_len, size_t value_len) {
  return kRecordOverhead + key_len + value_len;
}
// op is kPut or kRemove (a kRemove's value is not stored). RecordSize(key, value + 8) for an
// expiring value.
void AppendRecord(std::string* out, const Record& r);
// The record at the start of buf; rec's views point into buf. kNeedMore: *len is the record's
// whole size once its lengths are in buf (else 8, the lengths' size).
Parse ParseRecord(std::string_view buf, Record* rec, size_t* len);

}  // namespace kv::cluster::hintfile
