// The in-memory table of recent writes, one node per accepted write, with two indexes:
// - a hash index (key -> newest node) for point lookups: Get() and the writer's version check
//   cost a bucket and a short chain, a few cache misses whatever the table size;
// - a skiplist ordered by (key ascending, version descending) for iterators (range scans).
//   Nodes enter it in sorted batches, not one by one: Insert() only publishes the node in the
//   hash index and on a pending stack; Index() (the engine's index thread while scans come, or
//   an iterator that needs the nodes) sorts the pending nodes and links them in ascending
//   order, each search starting from the previous insert position, so a node costs a few hops
//   instead of a full descent with a cache miss per hop. The writer's request path never walks
//   the skiplist, and the flush does not use it either (SortedRun).
//
// Concurrency: Insert() is called by one thread at a time (the engine serializes writers under
// its log mutex); Index() by one thread at a time (index_mu_); Get() and iterators are lock-free
// and run from any number of threads concurrently with both. Links are published with release
// stores and read with acquire loads. The pending stack is single-producer (Insert) /
// single-consumer (Index, which takes the whole stack at once).
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include "storage/arena.h"
#include "storage/coding.h"

namespace kv::storage {

class MemTable {
 public:
  // hash_buckets (rounded up to a power of two): the point-lookup index, about one bucket per
  // expected entry; 128 bytes of memtable per bucket is the engine's choice.
  explicit MemTable(size_t arena_block_bytes, size_t hash_buckets = 1024);
  ~MemTable();
  MemTable(const MemTable&) = delete;
  MemTable& operator=(const MemTable&) = delete;

  // Adds an entry. The caller guarantees the version is higher than any version already held
  // for the key (the engine checks with Get before logging), so a key's nodes stay newest-first.
  // The node is visible to Get at once and to iterators once indexed (see Iterator).
  void Insert(std::string_view key, std::string_view value, uint64_t version, EntryType type);

  // Links every pending node into the skiplist. Any thread; callers are serialized.
  void Index() const;
  // Inserted nodes not yet in the skiplist (approximate while a writer inserts).
  uint64_t Pending() const { return Count() - indexed_.load(std::memory_order_acquire); }

  struct Node;
  // Newest entry for key; false when the memtable holds none. Looked up in the hash index
  // (one bucket chain, newest insert first), not in the skiplist: a few cache misses instead
  // of one per skiplist hop. hash = BloomHash(key): the segments' key hash, so the engine
  // computes it once for the memtables and the segments' filters.
  bool Get(std::string_view key, std::string_view* value, uint64_t* version, EntryType* type) const;
  bool Get(std::string_view key, uint64_t hash, std::string_view* value, uint64_t* version,
           EntryType* type) const;

  size_t MemoryUsage() const { return arena_.MemoryUsage() + bucket_count_ * sizeof(Node*); }
  uint64_t Count() const { return count_.load(std::memory_order_acquire); }
  // Newest version inserted (0 when empty): no key here has a version above it.
  uint64_t MaxVersion() const { return max_version_.load(std::memory_order_acquire); }
  bool Empty() const { return Count() == 0; }

  // Iterates the newest entry of each key among the first `snapshot` inserts (a stable view
  // while the writer keeps inserting). Construction indexes what is pending, so every one of
  // those inserts is in the skiplist. The memtable must outlive the iterator.
  class Iterator {
   public:
    Iterator(const MemTable* mt, uint64_t snapshot) : mt_(mt), snap_(snapshot) {
      if (mt->indexed_.load(std::memory_order_acquire) < snapshot) mt->Index();
    }
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
  // A node with what ordering needs inline, so that sorting compares flat memory, not nodes
  // (Index() and SortedRun): key prefix, version, and key length (keys of up to 8 bytes are told
  // apart by prefix and length alone).
  struct SortItem {
    uint64_t prefix;
    uint64_t version;
    Node* node;
    uint32_t key_len;
  };

 public:
  // The newest entry of each key, in key order, of a table no longer inserted into (frozen):
  // the flush's view. It gathers the nodes from the hash index and sorts flat (prefix, version,
  // node) items rather than linking the pending nodes into the skiplist and walking it: the
  // flush of a 64 MiB table spent 97% of its CPU ordering nodes that way (walk 38%, sort 29%,
  // linking 29%), a pointer chase with a cache miss per node. Here bucket heads are prefetched
  // ahead, most compares stop at the item, and the walk prefetches the nodes ahead. The
  // memtable must outlive it.
  class SortedRun {
   public:
    explicit SortedRun(const MemTable* mt);
    bool Valid() const { return i_ < items_.size(); }
    void Next();
    std::string_view key() const;
    std::string_view value() const;
    uint64_t version() const;
    EntryType type() const;

   private:
    std::vector<SortItem> items_;
    size_t i_ = 0;
  };

 private:
  static constexpr int kMaxHeight = 12;
  int RandomHeight();  // Insert()'s: the height is chosen when the node is made
  // First node of the first key >= key (its newest version).
  Node* FindGreaterOrEqual(std::string_view key) const;
  // Index(): links n into the skiplist; prev[] holds the previous (smaller) insert's
  // predecessors, or the head, and is updated for the next one.
  void Link(Node* n, Node** prev) const;
  static SortItem ItemOf(Node* n);
  static int CompareKeys(const SortItem& a, const SortItem& b);
  // (key ascending, version descending): the skiplist's and the flush's order.
  static void SortItems(std::vector<SortItem>* items);

  Arena arena_;
  // Hash index: bucket -> newest node of the chain; a node's hash_next links older ones. The
  // writer publishes a node into its chain with a release store after it is fully built.
  std::atomic<Node*>* buckets_;
  size_t bucket_count_;
  int bucket_shift_;  // bucket = hash >> bucket_shift_
  Node* head_;
  // The skiplist and its bookkeeping change only in Index() (const: the table's content does
  // not change, only how it is reachable).
  mutable std::atomic<int> max_height_{1};
  mutable std::mutex index_mu_;
  mutable std::vector<SortItem> batch_;          // index_mu_: the pending nodes being indexed
  mutable std::atomic<uint64_t> indexed_{0};     // every node with seq <= indexed_ is linked
  mutable std::atomic<Node*> pending_{nullptr};  // newest first, via pending_next
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> max_version_{0};
  uint64_t rnd_ = 0x2545F4914F6CDD1Dull;  // Insert() only
};

}  // namespace kv::storage
