// Writes one sorted segment file: entries are added in strictly ascending key order, cut into
// ~block_bytes data blocks; Finish() appends the bloom filter, the sparse index and the footer,
// then fdatasyncs. Single-threaded. A file that never reached Finish() is not in the manifest
// and is deleted at the next open.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "storage/bloom.h"
#include "storage/coding.h"
#include "storage/status.h"

namespace kv::storage {

class SegmentWriter {
 public:
  explicit SegmentWriter(uint32_t block_bytes) : block_bytes_(block_bytes) {}
  ~SegmentWriter();

  Status Open(const std::string& path);  // without Open, bytes accumulate in Contents()
  Status Add(std::string_view key, std::string_view value, uint64_t version, EntryType type);
  Status Finish();
  void Abandon();  // closes and deletes the file

  uint64_t entries() const { return entries_; }
  uint64_t max_version() const { return max_version_; }  // newest version added
  uint64_t file_size() const { return offset_; }
  const std::string& Contents() const { return out_; }  // in-memory mode only

 private:
  void FinishBlock();
  Status Emit(std::string_view bytes, bool force_write);

  uint32_t block_bytes_;
  int fd_ = -1;
  std::string path_;
  std::string out_;                 // pending file bytes (whole file in memory mode)
  std::string block_;               // current data block
  std::vector<uint32_t> offsets_;   // entry starts within block_
  std::vector<uint64_t> prefixes_;  // entry key prefixes
  std::string index_;               // encoded index body, without the count
  uint32_t blocks_ = 0;
  std::string first_key_;  // of the current block
  std::string last_key_;
  uint64_t offset_ = 0;  // file bytes emitted so far
  uint64_t entries_ = 0;
  uint64_t max_version_ = 0;
  BloomBuilder bloom_;
  Status status_;
};

}  // namespace kv::storage
