#include "storage/memtable.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "storage/bloom.h"

namespace kv::storage {

char* Arena::AllocateSlow(size_t n) {
  if (n > block_bytes_ / 4) {  // big object: own block, keep the current one
    blocks_.emplace_back(new char[n]);
    usage_.fetch_add(n, std::memory_order_relaxed);
    return blocks_.back().get();
  }
  blocks_.emplace_back(new char[block_bytes_]);
  usage_.fetch_add(block_bytes_, std::memory_order_relaxed);
  ptr_ = blocks_.back().get() + n;
  left_ = block_bytes_ - n;
  return blocks_.back().get();
}

struct MemTable::Node {
  uint64_t prefix;  // first 8 key bytes, big-endian, zero padded: most compares stop here
  uint64_t seq;     // 1-based insert number: iterators hide nodes past their snapshot
  uint64_t version;
  uint32_t key_len;
  uint32_t value_len;
  EntryType type;
  uint8_t height;
  const char* data;              // key bytes then value bytes
  std::atomic<Node*> hash_next;  // older node in the same hash bucket
  Node* pending_next;            // older node on the pending stack (until indexed)
  std::atomic<Node*> next[1];    // really `height` entries

  std::string_view key() const { return {data, key_len}; }
  std::string_view value() const { return {data + key_len, value_len}; }
  Node* Next(int level) const { return next[level].load(std::memory_order_acquire); }
};

namespace {
// Orders (key asc, version desc). Differing zero-padded prefixes order like the keys.
inline int Compare(const MemTable::Node* n, std::string_view key, uint64_t prefix,
                   uint64_t version) {
  if (n->prefix != prefix) return n->prefix < prefix ? -1 : 1;
  int c = n->key().compare(key);
  if (c != 0) return c;
  if (n->version > version) return -1;
  if (n->version < version) return 1;
  return 0;
}

MemTable::Node* NewNode(Arena* arena, int height, size_t data_len) {
  size_t bytes = sizeof(MemTable::Node) + sizeof(std::atomic<MemTable::Node*>) * (height - 1);
  char* mem = arena->Allocate(bytes + data_len);
  auto* n = new (mem) MemTable::Node();
  for (int i = 1; i < height; i++) new (&n->next[i]) std::atomic<MemTable::Node*>(nullptr);
  n->height = static_cast<uint8_t>(height);
  n->data = mem + bytes;
  return n;
}
}  // namespace

MemTable::MemTable(size_t arena_block_bytes, size_t hash_buckets) : arena_(arena_block_bytes) {
  int bits = 1;
  while ((size_t{1} << bits) < hash_buckets && bits < 40) bits++;
  bucket_count_ = size_t{1} << bits;
  bucket_shift_ = 64 - bits;
  buckets_ = new std::atomic<Node*>[bucket_count_];
  for (size_t i = 0; i < bucket_count_; i++) buckets_[i].store(nullptr, std::memory_order_relaxed);
  head_ = NewNode(&arena_, kMaxHeight, 0);
  for (int i = 0; i < kMaxHeight; i++) head_->next[i].store(nullptr, std::memory_order_relaxed);
}

MemTable::~MemTable() {
  delete[] buckets_;
}

int MemTable::RandomHeight() {
  int h = 1;
  for (;;) {
    rnd_ ^= rnd_ << 13;
    rnd_ ^= rnd_ >> 7;
    rnd_ ^= rnd_ << 17;
    if (h < kMaxHeight && (rnd_ & 3) == 0) {
      h++;
    } else {
      return h;
    }
  }
}

MemTable::Node* MemTable::FindGreaterOrEqual(std::string_view key) const {
  Node* x = head_;
  uint64_t prefix = KeyPrefix(key);
  int level = max_height_.load(std::memory_order_relaxed) - 1;
  for (;;) {
    Node* next = x->Next(level);
    if (next != nullptr && Compare(next, key, prefix, UINT64_MAX) < 0) {
      x = next;
    } else {
      if (level == 0) return next;
      level--;
    }
  }
}

void MemTable::Insert(std::string_view key, std::string_view value, uint64_t version,
                      EntryType type) {
  Node* n = NewNode(&arena_, RandomHeight(), key.size() + value.size());
  char* data = const_cast<char*>(n->data);
  if (!key.empty()) memcpy(data, key.data(), key.size());
  if (!value.empty()) memcpy(data + key.size(), value.data(), value.size());
  n->prefix = KeyPrefix(key);
  n->seq = count_.load(std::memory_order_relaxed) + 1;
  n->version = version;
  n->key_len = static_cast<uint32_t>(key.size());
  n->value_len = static_cast<uint32_t>(value.size());
  n->type = type;
  // Newest first in its chain: versions of a key are inserted in increasing order (the
  // engine's contract), so the first match a reader finds is the newest.
  std::atomic<Node*>& bucket = buckets_[BloomHash(key) >> bucket_shift_];
  n->hash_next.store(bucket.load(std::memory_order_relaxed), std::memory_order_relaxed);
  bucket.store(n, std::memory_order_release);
  // Onto the pending stack for Index(), which may take the whole stack at any moment.
  Node* top = pending_.load(std::memory_order_relaxed);
  do {
    n->pending_next = top;
  } while (!pending_.compare_exchange_weak(top, n, std::memory_order_release,
                                           std::memory_order_relaxed));
  if (version > max_version_.load(std::memory_order_relaxed)) {
    max_version_.store(version, std::memory_order_release);
  }
  count_.store(n->seq, std::memory_order_release);
}

MemTable::SortItem MemTable::ItemOf(Node* n) {
  return SortItem{n->prefix, n->version, n, n->key_len};
}

int MemTable::CompareKeys(const SortItem& a, const SortItem& b) {
  if (a.prefix != b.prefix) return a.prefix < b.prefix ? -1 : 1;
  if (a.key_len <= 8 && b.key_len <= 8) {  // zero-padded prefixes tie: the shorter key first
    return a.key_len == b.key_len ? 0 : (a.key_len < b.key_len ? -1 : 1);
  }
  return a.node->key().compare(b.node->key());
}

void MemTable::SortItems(std::vector<SortItem>* items) {
  std::sort(items->begin(), items->end(), [](const SortItem& a, const SortItem& b) {
    int c = CompareKeys(a, b);
    return c != 0 ? c < 0 : a.version > b.version;  // a key's newest version first
  });
}

void MemTable::Index() const {
  std::lock_guard<std::mutex> lock(index_mu_);
  Node* n = pending_.exchange(nullptr, std::memory_order_acquire);
  if (n == nullptr) return;
  batch_.clear();
  uint64_t max_seq = 0;
  for (; n != nullptr; n = n->pending_next) {
    batch_.push_back(ItemOf(n));
    max_seq = std::max(max_seq, n->seq);
  }
  // In the skiplist's order, so each node goes after the previous one and its search starts
  // where the previous one ended.
  SortItems(&batch_);
  Node* prev[kMaxHeight];
  for (int i = 0; i < kMaxHeight; i++) prev[i] = head_;
  for (const SortItem& x : batch_) Link(x.node, prev);
  indexed_.store(max_seq, std::memory_order_release);
}

void MemTable::Link(Node* n, Node** prev) const {
  // Finger search: prev[level] is a node before n at every level (the head, or the previous,
  // smaller insert's predecessor there). Top-down, each level starts from whichever is further
  // along: the node reached on the level above, or prev[level].
  const std::string_view key = n->key();
  const int height = n->height;
  int top = max_height_.load(std::memory_order_relaxed);
  if (height > top) {
    for (int i = top; i < height; i++) prev[i] = head_;
    // Readers seeing the new height before the links only find nullptr from head_: harmless.
    max_height_.store(height, std::memory_order_relaxed);
    top = height;
  }
  Node* x = head_;
  for (int level = top - 1; level >= 0; level--) {
    Node* p = prev[level];
    if (p != head_ && (x == head_ || Compare(x, p->key(), p->prefix, p->version) < 0)) x = p;
    for (;;) {
      Node* next = x->Next(level);
      if (next == nullptr || Compare(next, key, n->prefix, n->version) >= 0) break;
      x = next;
    }
    prev[level] = x;
  }
  for (int i = 0; i < height; i++) {
    n->next[i].store(prev[i]->Next(i), std::memory_order_relaxed);
    prev[i]->next[i].store(n, std::memory_order_release);
  }
  // n now precedes everything still to come in this batch.
  for (int i = 0; i < height; i++) prev[i] = n;
}

bool MemTable::Get(std::string_view key, std::string_view* value, uint64_t* version,
                   EntryType* type) const {
  return Get(key, BloomHash(key), value, version, type);
}

bool MemTable::Get(std::string_view key, uint64_t hash, std::string_view* value, uint64_t* version,
                   EntryType* type) const {
  // Only the first Count() inserts, as iterators: Insert publishes a node in its chain before it
  // counts it, so a Get that took it while the writer was in between would be newer than a scan
  // started right after it (and a scan's snapshot covers every node counted, see Insert).
  const uint64_t visible = count_.load(std::memory_order_acquire);
  if (visible == 0) return false;  // no bucket line to miss on
  const uint64_t prefix = KeyPrefix(key);
  const Node* n = buckets_[hash >> bucket_shift_].load(std::memory_order_acquire);
  for (; n != nullptr; n = n->hash_next.load(std::memory_order_acquire)) {
    if (n->seq <= visible && n->prefix == prefix && n->key() == key) {
      *value = n->value();
      *version = n->version;
      *type = n->type;
      return true;
    }
  }
  return false;
}

void MemTable::Iterator::Seek(std::string_view key) {
  node_ = mt_->FindGreaterOrEqual(key);
  SkipInvisible();
}

void MemTable::Iterator::SkipInvisible() {
  // Nodes of one key are newest first; the first one inside the snapshot is the answer. Keys
  // whose every node is newer than the snapshot are skipped entirely.
  while (node_ != nullptr && node_->seq > snap_) node_ = node_->Next(0);
}

void MemTable::Iterator::Next() {
  std::string_view k = node_->key();
  do {
    node_ = node_->Next(0);
  } while (node_ != nullptr && node_->key() == k);
  SkipInvisible();
}

std::string_view MemTable::Iterator::key() const {
  return node_->key();
}
std::string_view MemTable::Iterator::value() const {
  return node_->value();
}
uint64_t MemTable::Iterator::version() const {
  return node_->version;
}
EntryType MemTable::Iterator::type() const {
  return node_->type;
}

MemTable::SortedRun::SortedRun(const MemTable* mt) {
  items_.reserve(mt->Count());
  // Every node is in one hash chain, and the chains no longer change. Bucket heads are
  // independent loads: the ones a few buckets ahead are fetched while this chain is walked.
  constexpr size_t kAhead = 64;
  for (size_t b = 0; b < mt->bucket_count_; b++) {
    if (b + kAhead < mt->bucket_count_) {
      __builtin_prefetch(mt->buckets_[b + kAhead].load(std::memory_order_relaxed));
    }
    for (Node* n = mt->buckets_[b].load(std::memory_order_acquire); n != nullptr;
         n = n->hash_next.load(std::memory_order_acquire)) {
      items_.push_back(ItemOf(n));
    }
  }
  SortItems(&items_);
}

void MemTable::SortedRun::Next() {
  // Start loading the nodes a few steps ahead: header and first data line.
  constexpr size_t kAhead = 8;
  const size_t at = i_;
  do {
    if (i_ + kAhead < items_.size()) {
      const char* p = reinterpret_cast<const char*>(items_[i_ + kAhead].node);
      __builtin_prefetch(p);
      __builtin_prefetch(p + 64);
    }
    i_++;
  } while (i_ < items_.size() && CompareKeys(items_[i_], items_[at]) == 0);  // older versions
}

std::string_view MemTable::SortedRun::key() const {
  return items_[i_].node->key();
}
std::string_view MemTable::SortedRun::value() const {
  return items_[i_].node->value();
}
uint64_t MemTable::SortedRun::version() const {
  return items_[i_].node->version;
}
EntryType MemTable::SortedRun::type() const {
  return items_[i_].node->type;
}

}  // namespace kv::storage
