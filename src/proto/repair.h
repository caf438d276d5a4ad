// The bodies of the anti-entropy repair operations (proto_spec/peer-protocol.md, section 12):
// REPAIR_TREE, REPAIR_ENTRIES and REPAIR_APPLY requests and their one answer, REPAIR_DATA. The
// same bytes travel as the payload of a binary frame (0x13, 0x14, 0x15 / 0x25) and as the body
// of `POST /v0/internal/repair/{tree,entries,apply}` / its 200 answer. Pure codec: encoders are
// infallible, decoders validate everything and return false with a reason (the views they fill
// point into the decoded bytes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kv::proto {

// The hash tree: 65,536 leaves (a key's leaf is the top 16 bits of XXH3-64 of the key), fan-out
// 16, so levels 0 (the root, 1 node) .. 4 (the leaves).
inline constexpr uint32_t kRepairFanout = 16;
inline constexpr uint8_t kRepairLeafLevel = 4;
inline constexpr uint32_t kRepairLeaves = 65536;
inline constexpr size_t kRepairBitmapBytes = kRepairLeaves / 8;  // 8192
// Nodes at a level: 16^level.
inline constexpr uint32_t RepairLevelWidth(uint8_t level) {
  return uint32_t{1} << (4 * level);
}

// One stored entry as repair moves it: a value or a tombstone, with its own version; a value
// may expire (TTL): expires_ms, Unix ms, 0 for never and for tombstones.
struct RepairEntry {
  std::string_view key;
  uint64_t version = 0;
  bool tombstone = false;
  std::string_view value;  // empty for a tombstone
  bool digest = false;     // a value entry whose value was left out (digest answers only)
  uint64_t expires_ms = 0;
};

// REPAIR_TREE: the hashes of the children of `nodes` (indexes at `level`, 0..3, strictly
// ascending, each < 16^level) in the tree of the range as the replica holds it.
struct RepairTreeRequest {
  uint64_t range = 0;
  uint64_t session = 0;
  uint8_t level = 0;
  std::vector<uint32_t> nodes;
};

// REPAIR_ENTRIES, by mode:
// - leaves (default): the replica's entries (tombstones included) of the range in the leaves set
//   in `leaves` (bit i of byte i/8, most significant first, is leaf i), in key order, starting
//   after `after` (from the first key when !has_after), at most about max_bytes of entries (one
//   entry at least); with `digest`, values are left out (RepairEntry::digest): keys, versions
//   and tombstone flags only, to learn which keys differ before moving values.
// - keys: the replica's newest entry (value or tombstone) of each of `keys` (strictly ascending;
//   absent keys are skipped), in order, at most about max_bytes (one entry at least); `more`
//   says keys after the last entry returned were not looked at.
struct RepairEntriesRequest {
  uint64_t range = 0;
  uint64_t session = 0;
  uint32_t max_bytes = 0;
  bool has_after = false;
  bool digest = false;
  std::string_view after;
  std::string_view leaves;             // leaves mode: kRepairBitmapBytes
  bool by_keys = false;                // keys mode
  std::vector<std::string_view> keys;  // keys mode
};
inline constexpr uint32_t kRepairMaxKeys = 65536;  // keys per keys-mode request

// REPAIR_APPLY: entries for the replica to store, each with its own version (last write wins).
struct RepairApplyRequest {
  uint64_t range = 0;
  uint64_t session = 0;
  std::vector<RepairEntry> entries;
};

// REPAIR_DATA: one of three answers, by the request it answers.
struct RepairData {
  enum Kind : uint8_t { kTree = 1, kEntries = 2, kApplied = 3 } kind = kTree;
  // kTree: entries the replica's tree covers, and 16 hashes per requested node, in order.
  uint64_t keys = 0;
  std::vector<uint64_t> hashes;
  // kEntries: the page, and whether more entries follow the last one.
  bool more = false;
  std::vector<RepairEntry> entries;
  // kApplied: entries stored (or already held at a newer version) and refused (too far ahead).
  uint32_t applied = 0;
  uint32_t refused = 0;
};

// Bytes an entry takes in a body.
size_t RepairEntrySize(const RepairEntry& e);
void EncodeRepairEntry(std::string* out, const RepairEntry& e);

void EncodeRepairTreeRequest(std::string* out, const RepairTreeRequest& r);
void EncodeRepairEntriesRequest(std::string* out, const RepairEntriesRequest& r);
// The head of an APPLY body for n entries; EncodeRepairEntry appends each.
void EncodeRepairApplyHead(std::string* out, uint64_t range, uint64_t session, uint32_t n);
void EncodeRepairData(std::string* out, const RepairData& d);
// The head of an entries answer for n entries; EncodeRepairEntry appends each.
void EncodeRepairEntriesHead(std::string* out, bool more, uint32_t n);

bool DecodeRepairTreeRequest(std::string_view body, RepairTreeRequest* r, std::string* error);
bool DecodeRepairEntriesRequest(std::string_view body, RepairEntriesRequest* r, std::string* error);
bool DecodeRepairApplyRequest(std::string_view body, RepairApplyRequest* r, std::string* error);
bool DecodeRepairData(std::string_view body, RepairData* d, std::string* error);

// Leaf bitmap helpers.
inline bool RepairLeafSet(std::string_view bitmap, uint32_t leaf) {
  return (static_cast<uint8_t>(bitmap[leaf >> 3]) >> (7 - (leaf & 7))) & 1;
}
inline void SetRepairLeaf(std::string* bitmap, uint32_t leaf) {
  (*bitmap)[leaf >> 3] =
      static_cast<char>(static_cast<uint8_t>((*bitmap)[leaf >> 3]) | (0x80u >> (leaf & 7)));
}

}  // namespace kv::proto
