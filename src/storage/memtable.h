// The in-memory sorted table of recent writes: a skiplist ordered by (key ascending, version
// descending), one node per accepted write. Insert() must be called by one thread at a time (the
// engine serializes writers under its log mutex); Get() and iterators are lock-free and may run
// from any number of threads concurrently with the writer.
//
// Concurrency choice: a skiplist whose links are published with release stores and read with
// acquire loads, so readers never take a lock and never wait for the writer. Writers are already
// serialized by the single log append, so a writer lock costs nothing extra; a shared_mutex over a
// std::map was the alternative and makes every reader bounce the same cache line.
#pragma once
#include <atomic>
#include <cstdint>
#include <string_view>

#include "storage/arena.h"
#include "storage/coding.h"

namespace kv::storage {

class MemTable {
 public:
  explicit MemTable(size_t arena_block_bytes);
  MemTable(const MemTable&) = delete;
  MemTable& operator=(const MemTable&) = delete;

  // Adds an entry. The caller guarantees the version is higher than any version already held
  // for the key (the engine checks before logging), so a key's nodes stay newest-first.
  void Insert(std::string_view key, std::string_view value, uint64_t version, EntryType type);

  // Insert position remembered by FindForInsert. It stays valid across inserts of keys that
  // sort after its key (they never become its predecessors), so a batch searched once can be
  // inserted in descending key order without searching again; any other insert invalidates it.
  struct Node;
  struct InsertHint {
    Node* prev[12];
    int height = 0;  // levels filled in prev[]; higher ones (grown since) start at the head
  };
  // Writer only: finds the newest version of key (false if none) and the insert position, so
  // that a following InsertWithHint of a newer version does not search again.
  bool FindForInsert(std::string_view key, InsertHint* hint, uint64_t* version) const;
  void InsertWithHint(const InsertHint& hint, std::string_view key, std::string_view value,
                      uint64_t version, EntryType type);

  // Newest entry for key; false when the memtable holds none.
  bool Get(std::string_view key, std::string_view* value, uint64_t* version, EntryType* type) const;

  size_t MemoryUsage() const { return arena_.MemoryUsage(); }
  uint64_t Count() const { return count_.load(std::memory_order_acquire); }
  bool Empty() const { return Count() == 0; }

  // Iterates the newest entry of each key among the first `snapshot` inserts (a stable view
  // while the writer keeps inserting). The memtable must outlive the iterator.
  class Iterator {
   public:
    Iterator(const MemTable* mt, uint64_t snapshot) : mt_(mt), snap_(snapshot) {}
    void Seek(std::string_view key);  // first key >= key
    void SeekToFirst() { Seek(std::string_view()); }
    bool Valid() const { return node_ != nullptr; }
    void Next();
    std::string_view key() const;
    std::string_view value() const;
    uint64_t version() const;
    EntryType type() const;

   private:
    void SkipInvisible();  // move to the first visible node of a key, from node_
    const MemTable* mt_;
    uint64_t snap_;
    const Node* node_ = nullptr;
  };

 private:
  static constexpr int kMaxHeight = 12;
  int RandomHeight();
  // First node >= (key, version); fills prev[] when non-null.
  Node* FindGreaterOrEqual(std::string_view key, uint64_t version, Node** prev) const;

  Arena arena_;
  Node* head_;
  std::atomic<int> max_height_{1};
  std::atomic<uint64_t> count_{0};
  uint64_t rnd_ = 0x2545F4914F6CDD1Dull;
};

}  // namespace kv::storage
