// Sorted entry sources (memtable, segment) behind one small interface, and their newest-wins
// merge: for each key in ascending order, the entry with the highest version among all sources.
// Used by Scan and by compaction. Single-threaded; sources must outlive the iterators (callers
// hold the memtables/segments through shared_ptr).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/coding.h"
#include "storage/memtable.h"
#include "storage/segment.h"
#include "storage/status.h"

namespace kv::storage {

// key() and value() stay valid while the source lives, even after Next() (they point into the
// segment's mmap or the memtable's arena).
class EntryIter {
 public:
  virtual ~EntryIter() = default;
  virtual void Seek(std::string_view key) = 0;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  virtual uint64_t version() const = 0;
  virtual EntryType type() const = 0;
  virtual Status status() const { return Status::Ok(); }
};

// The memtable must stay alive while the iterator is used.
std::unique_ptr<EntryIter> NewMemIter(std::shared_ptr<const MemTable> mem, uint64_t snapshot);
std::unique_ptr<EntryIter> NewSegmentIter(std::shared_ptr<const Segment> seg);

// Each child's position (key, version, validity) is read once per move of that child and kept
// in a flat array, so finding the smallest key costs no virtual call per child and entry: a scan
// moves one child per entry, not every child's accessors (this ran for every key of every range
// stream and compaction). Final, so that a caller holding a MergingIter calls it directly.
class MergingIter final : public EntryIter {
 public:
  explicit MergingIter(std::vector<std::unique_ptr<EntryIter>> children);
  void Seek(std::string_view key) override;
  bool Valid() const override { return cur_ != nullptr; }
  void Next() override;
  std::string_view key() const override { return cur_->key; }
  std::string_view value() const override { return cur_->it->value(); }
  uint64_t version() const override { return cur_->version; }
  EntryType type() const override { return cur_->it->type(); }
  // First error of any child; iteration stops at it.
  Status status() const override { return status_; }

 private:
  struct Child {
    std::unique_ptr<EntryIter> it;
    std::string_view key;  // valid while the source lives (see EntryIter)
    uint64_t version = 0;
    bool valid = false;
  };
  // Reads c's position after it moved; a child that ended with an error sets status_.
  void Load(Child* c);
  void FindCurrent();
  std::vector<Child> children_;
  const Child* cur_ = nullptr;
  Status status_;
};

}  // namespace kv::storage
