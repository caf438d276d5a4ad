// An open, immutable segment file: footer, sparse index and bloom filter are verified and held
// in memory at open; data blocks are read through a read-only mmap and verified on every read.
// Thread-safe (immutable after Open). Shared by shared_ptr: a segment marked obsolete by
// compaction deletes its file when the last reader (Get, iterator, snapshot) lets go of it.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/bloom.h"
#include "storage/coding.h"
#include "storage/segment_format.h"
#include "storage/status.h"

namespace kv::storage {

class Segment {
 public:
  // Fails with kCorruption naming the file when footer, index or filter do not check out.
  // populate: map every page up front (MAP_POPULATE). Used for files just written, whose pages
  // are in the page cache: point reads then take no page faults.
  static Status Open(const std::string& dir, uint64_t number, std::shared_ptr<Segment>* out,
                     bool populate = false);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // kOk with the entry, kNotFound, or kCorruption (bad block checksum) naming file and offset.
  Status Get(std::string_view key, std::string* value, uint64_t* version, EntryType* type) const;
  // Same with the key's BloomHash() computed by the caller; value may be null (version only).
  Status GetHashed(std::string_view key, uint64_t hash, std::string* value, uint64_t* version,
                   EntryType* type) const;
  void PrefetchFilter(uint64_t hash) const { filter_.Prefetch(hash); }

  void MarkObsolete() { obsolete_.store(true); }
  // Newest version of any entry, when known: set by the flush or compaction that wrote the file
  // (before the segment is shared); a segment opened from disk says UINT64_MAX (not stored in
  // the format). Writers skip segments that cannot hold a version >= theirs.
  void set_max_version(uint64_t v) { max_version_ = v; }
  uint64_t max_version() const { return max_version_; }
  uint64_t number() const { return number_; }
  uint64_t file_size() const { return size_; }
  uint64_t entries() const { return footer_.entries; }
  uint64_t MemoryUsage() const;  // sparse index + filter
  const Footer& footer() const { return footer_; }
  const std::string& path() const { return path_; }

  class Iterator {
   public:
    explicit Iterator(std::shared_ptr<const Segment> seg) : seg_(std::move(seg)) {}
    void Seek(std::string_view key);  // first key >= key
    bool Valid() const { return valid_; }
    void Next();
    std::string_view key() const { return key_; }
    std::string_view value() const { return value_; }
    uint64_t version() const { return version_; }
    EntryType type() const { return type_; }
    const Status& status() const { return status_; }

   private:
    bool LoadBlock(size_t b);  // verifies; positions before its first entry
    void ParseEntry();         // entry_ of the block, or the next block's first at block end
    std::shared_ptr<const Segment> seg_;
    size_t block_ = 0;
    BlockView view_;
    uint32_t entry_ = 0;
    bool valid_ = false;
    std::string_view key_, value_;
    uint64_t version_ = 0;
    EntryType type_ = EntryType::kValue;
    Status status_;
  };

 private:
  struct IndexEntry {
    uint64_t offset;
    uint32_t size;     // block bytes, without the block checksum
    uint32_t key_off;  // into index_keys_; the key ends at the next entry's key_off
  };
  static constexpr size_t kTopFanout = 16;
  Segment() = default;
  std::string_view IndexKey(size_t i) const {
    return std::string_view(index_keys_)
        .substr(index_[i].key_off, index_[i + 1].key_off - index_[i].key_off);
  }
  // Block that may hold key, or -1 when key sorts before the first block.
  long FindBlock(std::string_view key) const;
  // Same, with j = TopSlot(KeyPrefix(key)) computed by the caller.
  long FindBlock(std::string_view key, size_t j) const;
  // Number of top_ entries <= prefix: the bucket of prefixes_ to search is j - 1.
  size_t TopSlot(uint64_t prefix) const;
  // Start loading the lines a FindBlock in bucket j - 1 and a read of block b will touch.
  void PrefetchBucket(size_t j) const;
  void PrefetchBlockTrailer(size_t b) const;
  // Finds block b's trailer (entry offsets, prefixes, count) within the block's bounds, without
  // reading its checksum: nothing taken from it may be trusted before VerifyBlock.
  Status LocateBlock(size_t b, BlockView* view) const;
  Status VerifyBlock(size_t b, const BlockView& view) const;
  // Both: block b's trailer, verified.
  Status ReadBlock(size_t b, BlockView* view) const;
  // Verifies entry i of a block and decodes it.
  Status ReadEntry(size_t b, const BlockView& view, uint32_t i, std::string_view* key,
                   std::string_view* value, uint64_t* version, EntryType* type) const;
  // Search of block b; its trailer is verified before anything found in it is used.
  Status FindInBlock(std::string_view key, size_t b, std::string* value, uint64_t* version,
                     EntryType* type) const;

  std::string dir_, path_;
  uint64_t number_ = 0;
  int fd_ = -1;
  const char* map_ = nullptr;
  uint64_t size_ = 0;
  Footer footer_;
  std::vector<IndexEntry> index_;  // one per block plus a sentinel (key_off = total)
  std::string index_keys_;
  // Block search structure: the first-key prefix of every block (dense, so the last steps of a
  // search stay within a cache line or two) and every kTopFanout-th of them (small enough to
  // stay in cache), so a lookup takes one or two cache misses whatever the segment size.
  std::vector<uint64_t> prefixes_;
  std::vector<uint64_t> top_;
  BloomFilter filter_;
  std::atomic<bool> obsolete_{false};
  uint64_t max_version_ = UINT64_MAX;
};

}  // namespace kv::storage
