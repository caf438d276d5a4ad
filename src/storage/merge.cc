#include "storage/merge.h"

namespace kv::storage {

namespace {
class MemIter : public EntryIter {
 public:
  MemIter(std::shared_ptr<const MemTable> mem, uint64_t snap)
      : mem_(std::move(mem)), it_(mem_.get(), snap) {}
  void Seek(std::string_view key) override { it_.Seek(key); }
  bool Valid() const override { return it_.Valid(); }
  void Next() override { it_.Next(); }
  std::string_view key() const override { return it_.key(); }
  std::string_view value() const override { return it_.value(); }
  uint64_t version() const override { return it_.version(); }
  EntryType type() const override { return it_.type(); }

 private:
  std::shared_ptr<const MemTable> mem_;
  MemTable::Iterator it_;
};

class SegIter : public EntryIter {
 public:
  explicit SegIter(std::shared_ptr<const Segment> seg) : it_(std::move(seg)) {}
  void Seek(std::string_view key) override { it_.Seek(key); }
  bool Valid() const override { return it_.Valid(); }
  void Next() override { it_.Next(); }
  std::string_view key() const override { return it_.key(); }
  std::string_view value() const override { return it_.value(); }
  uint64_t version() const override { return it_.version(); }
  EntryType type() const override { return it_.type(); }
  Status status() const override { return it_.status(); }

 private:
  Segment::Iterator it_;
};
}  // namespace

std::unique_ptr<EntryIter> NewMemIter(std::shared_ptr<const MemTable> mem, uint64_t snapshot) {
  return std::make_unique<MemIter>(std::move(mem), snapshot);
}

std::unique_ptr<EntryIter> NewSegmentIter(std::shared_ptr<const Segment> seg) {
  return std::make_unique<SegIter>(std::move(seg));
}

void MergingIter::FindCurrent() {
  cur_ = nullptr;
  for (auto& c : children_) {
    if (!c->Valid()) {
      Status s = c->status();
      if (!s.ok()) {
        status_ = s;
        cur_ = nullptr;
        return;
      }
      continue;
    }
    if (cur_ == nullptr) {
      cur_ = c.get();
      continue;
    }
    int cmp = c->key().compare(cur_->key());
    if (cmp < 0 || (cmp == 0 && c->version() > cur_->version())) cur_ = c.get();
  }
}

void MergingIter::Seek(std::string_view key) {
  for (auto& c : children_) c->Seek(key);
  FindCurrent();
}

void MergingIter::Next() {
  if (!status_.ok() || cur_ == nullptr) return;
  // Copy the key: advancing the current child invalidates its view.
  // Keys point into memory that lives as long as the source (segment mmap, memtable arena),
  // so the view stays valid while the children advance.
  std::string_view key = cur_->key();
  for (auto& c : children_) {
    if (c->Valid() && c->key() == key) c->Next();
  }
  FindCurrent();
}

}  // namespace kv::storage
