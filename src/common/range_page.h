// A range page: one answer to a replica's RANGE request, the same bytes in both peer transports
// (binary PAGE frame payload, HTTP internal answer body; proto_spec/peer-protocol.md section 14).
// The entries a replica holds in [start, end), tombstones included, in ascending byte order of
// keys, with a flag saying whether the range goes on after the last one. The next page of the
// range starts at NextStart(last key) (last key + one 0x00 byte: the smallest greater key).
// Pure functions over bytes; no allocation but the growth of the caller's string.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kv::range_page {

// Layout (big-endian): u8 flags (bit 0: more; other bits 0) | u32 last (offset of the last
// entry from the start of the page, 0 when there is none), then entries to the end of the page:
//   u32 key_len | key | u64 version | u8 kind (0 value, 1 tombstone) | u32 value_len | value
// (a tombstone's value_len is 0). Keys strictly ascending. `last` lets a reader ask for the next
// page as soon as this one arrives, before it has read it.
inline constexpr size_t kHeaderBytes = 5;
inline constexpr size_t kEntryOverhead = 4 + 8 + 1 + 4;
inline constexpr uint8_t kFlagMore = 1;
inline constexpr size_t kMaxKeyBytes = 64u << 10;   // as a stored key
inline constexpr size_t kMaxValueBytes = 8u << 20;  // as a stored value
inline constexpr size_t kMaxPageBytes = 8u << 20;   // largest max_bytes a request may ask for
inline constexpr size_t kMaxStartBytes = kMaxKeyBytes + 1;  // a continuation key is one longer
inline constexpr uint32_t kMaxPageKeys = 1u << 20;  // largest max_keys a request may ask for

struct Entry {
  std::string_view key;
  std::string_view value;  // empty for a tombstone
  uint64_t version = 0;
  bool tombstone = false;
};

inline size_t EntryBytes(size_t key_bytes, size_t value_bytes) {
  return kEntryOverhead + key_bytes + value_bytes;
}

// Starts a page at the end of *out (its header); returns where it begins.
size_t Begin(std::string* out);
// Appends an entry; returns where it begins in *out (for Finish).
size_t Append(std::string* out, const Entry& e);
// Completes the header of the page that begins at `begin`: last_entry is what the last Append
// returned (ignored when the page has no entry).
void Finish(std::string* out, size_t begin, size_t last_entry, bool more);

// Where the page after one ending at last_key starts.
std::string NextStart(std::string_view last_key);

// Reads a page's entries in place (views into the page's bytes). Checks every field against the
// page's end and the limits above, and that keys ascend strictly: a page that breaks any of it
// reads as kError from the entry on.
class Reader {
 public:
  enum Result { kEntry, kEnd, kError };
  Reader() = default;
  explicit Reader(std::string_view page);
  Result Next(Entry* e);
  bool more() const { return more_; }
  // The key of the page's last entry, from the header (checked against the page's bounds; the
  // entries read later must end on it, else Next fails); false when the page has none or the
  // header is wrong.
  bool LastKey(std::string_view* key) const;
  const char* error() const { return error_; }

 private:
  Result Fail(const char* why) {
    error_ = why;
    failed_ = true;
    return kError;
  }
  std::string_view page_;
  std::string_view rest_;
  size_t last_ = 0;  // from the header
  std::string_view last_key_;
  bool has_last_ = false;
  bool more_ = false;
  bool failed_ = false;
  const char* error_ = nullptr;
};

}  // namespace kv::range_page
