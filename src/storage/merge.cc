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

MergingIter::MergingIter(std::vector<std::unique_ptr<EntryIter>> children) {
  children_.resize(children.size());
  for (size_t i = 0; i < children.size(); ++i) children_[i].it = std::move(children[i]);
}

void MergingIter::Load(Child* c) {
  c->valid = c->it->Valid();
  if (c->valid) {
    c->key = c->it->key();
    c->version = c->it->version();
    return;
  }
  c->key = std::string_view();
  if (status_.ok()) {
    Status s = c->it->status();
    if (!s.ok()) status_ = s;
  }
}

void MergingIter::FindCurrent() {
  cur_ = nullptr;
  if (!status_.ok()) return;
  for (const Child& c : children_) {
    if (!c.valid) continue;
    if (cur_ == nullptr) {
      cur_ = &c;
      continue;
    }
    const int cmp = c.key.compare(cur_->key);
    if (cmp < 0 || (cmp == 0 && c.version > cur_->version)) cur_ = &c;
  }
}

void MergingIter::Seek(std::string_view key) {
  status_ = Status::Ok();
  for (Child& c : children_) {
    c.it->Seek(key);
    Load(&c);
  }
  FindCurrent();
}

void MergingIter::Next() {
  if (!status_.ok() || cur_ == nullptr) return;
  // Keys point into memory that lives as long as the source (segment mmap, memtable arena),
  // so the view stays valid while the children advance.
  const std::string_view key = cur_->key;
  for (Child& c : children_) {
    if (c.valid && c.key == key) {
      c.it->Next();
      Load(&c);
    }
  }
  FindCurrent();
}

}  // namespace kv::storage
