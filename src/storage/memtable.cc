#include "storage/memtable.h"

#include <cstring>
#include <new>

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
  const char* data;            // key bytes then value bytes
  std::atomic<Node*> next[1];  // really `height` entries

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

MemTable::MemTable(size_t arena_block_bytes) : arena_(arena_block_bytes) {
  head_ = NewNode(&arena_, kMaxHeight, 0);
  for (int i = 0; i < kMaxHeight; i++) head_->next[i].store(nullptr, std::memory_order_relaxed);
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

MemTable::Node* MemTable::FindGreaterOrEqual(std::string_view key, uint64_t version,
                                             Node** prev) const {
  Node* x = head_;
  uint64_t prefix = KeyPrefix(key);
  int level = max_height_.load(std::memory_order_relaxed) - 1;
  for (;;) {
    Node* next = x->Next(level);
    if (next != nullptr && Compare(next, key, prefix, version) < 0) {
      x = next;
    } else {
      if (prev) prev[level] = x;
      if (level == 0) return next;
      level--;
    }
  }
}

static_assert(sizeof(MemTable::InsertHint::prev) / sizeof(MemTable::Node*) == 12);

bool MemTable::FindForInsert(std::string_view key, InsertHint* hint, uint64_t* version) const {
  hint->height = max_height_.load(std::memory_order_relaxed);
  Node* n = FindGreaterOrEqual(key, UINT64_MAX, hint->prev);
  if (n == nullptr || n->key() != key) return false;
  *version = n->version;
  return true;
}

void MemTable::Insert(std::string_view key, std::string_view value, uint64_t version,
                      EntryType type) {
  InsertHint hint;
  hint.height = max_height_.load(std::memory_order_relaxed);
  FindGreaterOrEqual(key, version, hint.prev);
  InsertWithHint(hint, key, value, version, type);
}

void MemTable::InsertWithHint(const InsertHint& hint, std::string_view key, std::string_view value,
                              uint64_t version, EntryType type) {
  // The hint points before every node of `key`, which is right for a version newer than all
  // of them (nodes of a key are ordered newest first).
  Node* prev[kMaxHeight];
  int cur_height = max_height_.load(std::memory_order_relaxed);
  for (int i = 0; i < cur_height; i++) prev[i] = i < hint.height ? hint.prev[i] : head_;
  int height = RandomHeight();
  int cur_max = cur_height;
  if (height > cur_max) {
    for (int i = cur_max; i < height; i++) prev[i] = head_;
    // Readers seeing the new height before the links only find nullptr from head_: harmless.
    max_height_.store(height, std::memory_order_relaxed);
  }
  Node* n = NewNode(&arena_, height, key.size() + value.size());
  char* data = const_cast<char*>(n->data);
  if (!key.empty()) memcpy(data, key.data(), key.size());
  if (!value.empty()) memcpy(data + key.size(), value.data(), value.size());
  n->prefix = KeyPrefix(key);
  n->seq = count_.load(std::memory_order_relaxed) + 1;
  n->version = version;
  n->key_len = static_cast<uint32_t>(key.size());
  n->value_len = static_cast<uint32_t>(value.size());
  n->type = type;
  for (int i = 0; i < height; i++) {
    n->next[i].store(prev[i]->Next(i), std::memory_order_relaxed);
    prev[i]->next[i].store(n, std::memory_order_release);
  }
  count_.store(n->seq, std::memory_order_release);
}

bool MemTable::Get(std::string_view key, std::string_view* value, uint64_t* version,
                   EntryType* type) const {
  Node* n = FindGreaterOrEqual(key, UINT64_MAX, nullptr);
  if (n == nullptr || n->key() != key) return false;
  *value = n->value();
  *version = n->version;
  *type = n->type;
  return true;
}

void MemTable::Iterator::Seek(std::string_view key) {
  node_ = mt_->FindGreaterOrEqual(key, UINT64_MAX, nullptr);
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

}  // namespace kv::storage
