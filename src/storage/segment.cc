#include "storage/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "storage/file_io.h"

namespace kv::storage {

namespace {
Status Corrupt(const std::string& path, const char* what, uint64_t offset) {
  return Status(Code::kCorruption,
                "corrupted segment " + path + ": " + what + " at offset " + std::to_string(offset));
}

}  // namespace

Status Segment::Open(const std::string& dir, uint64_t number, std::shared_ptr<Segment>* out,
                     bool populate) {
  std::shared_ptr<Segment> seg(new Segment());
  seg->dir_ = dir;
  seg->number_ = number;
  seg->path_ = dir + "/" + SegmentFileName(number);
  const std::string& path = seg->path_;
  seg->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (seg->fd_ < 0) return ErrnoStatus(errno, "open segment", path);
  struct stat st;
  if (::fstat(seg->fd_, &st) != 0) return ErrnoStatus(errno, "stat segment", path);
  seg->size_ = static_cast<uint64_t>(st.st_size);
  if (seg->size_ < kFooterBytes) return Corrupt(path, "file shorter than footer", 0);
  void* m = ::mmap(nullptr, seg->size_, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0),
                   seg->fd_, 0);
  if (m == MAP_FAILED) return ErrnoStatus(errno, "mmap segment", path);
  seg->map_ = static_cast<const char*>(m);
  const char* base = seg->map_;
  uint64_t footer_off = seg->size_ - kFooterBytes;
  Footer& f = seg->footer_;
  if (!f.DecodeFrom(base + footer_off)) return Corrupt(path, "bad footer", footer_off);
  if (f.filter_offset + f.filter_size + kChecksumBytes != f.index_offset ||
      f.index_offset + f.index_size + kChecksumBytes != footer_off) {
    return Corrupt(path, "footer offsets do not add up", footer_off);
  }
  // Filter.
  const char* fp = base + f.filter_offset;
  if (Checksum(fp, f.filter_size) != GetFixed64(fp + f.filter_size) ||
      !seg->filter_.Init(std::string(fp, f.filter_size))) {
    return Corrupt(path, "bad filter", f.filter_offset);
  }
  // Sparse index.
  const char* ip = base + f.index_offset;
  if (f.index_size < 4 || Checksum(ip, f.index_size) != GetFixed64(ip + f.index_size)) {
    return Corrupt(path, "bad index", f.index_offset);
  }
  uint32_t blocks = GetFixed32(ip);
  const char* p = ip + 4;
  const char* end = ip + f.index_size;
  seg->index_.reserve(blocks + 1);
  uint64_t expect_off = 0;
  for (uint32_t i = 0; i < blocks; i++) {
    if (end - p < 16) return Corrupt(path, "bad index", f.index_offset);
    IndexEntry e;
    e.offset = GetFixed64(p);
    e.size = GetFixed32(p + 8);
    uint32_t klen = GetFixed32(p + 12);
    p += 16;
    if (static_cast<uint64_t>(end - p) < klen || e.offset != expect_off) {
      return Corrupt(path, "bad index", f.index_offset);
    }
    expect_off = e.offset + e.size + kChecksumBytes;
    e.key_off = static_cast<uint32_t>(seg->index_keys_.size());
    seg->prefixes_.push_back(KeyPrefix(std::string_view(p, klen)));
    seg->index_keys_.append(p, klen);
    p += klen;
    seg->index_.push_back(e);
  }
  if (p != end || expect_off != f.filter_offset) return Corrupt(path, "bad index", f.index_offset);
  seg->index_.push_back(
      IndexEntry{f.filter_offset, 0, static_cast<uint32_t>(seg->index_keys_.size())});
  for (size_t i = 0; i < seg->prefixes_.size(); i += kTopFanout) {
    seg->top_.push_back(seg->prefixes_[i]);
  }
  seg->prefixes_.shrink_to_fit();
  seg->top_.shrink_to_fit();
  seg->index_.shrink_to_fit();
  seg->index_keys_.shrink_to_fit();
  *out = std::move(seg);
  return Status::Ok();
}

Segment::~Segment() {
  if (map_ != nullptr) ::munmap(const_cast<char*>(map_), size_);
  if (fd_ >= 0) ::close(fd_);
  if (obsolete_.load()) ::unlink(path_.c_str());
}

uint64_t Segment::MemoryUsage() const {
  return index_.capacity() * sizeof(IndexEntry) + index_keys_.capacity() +
         (prefixes_.capacity() + top_.capacity()) * sizeof(uint64_t) + filter_.MemoryUsage();
}

size_t Segment::TopSlot(uint64_t prefix) const {
  return static_cast<size_t>(std::upper_bound(top_.begin(), top_.end(), prefix) - top_.begin());
}

namespace {
inline void PrefetchRange(const void* begin, const void* end) {
  auto b = reinterpret_cast<uintptr_t>(begin) & ~uintptr_t{63};
  for (auto p = b; p < reinterpret_cast<uintptr_t>(end); p += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(p));
  }
}
}  // namespace

void Segment::PrefetchBucket(size_t j) const {
  if (j == 0) return;
  size_t lo = (j - 1) * kTopFanout, hi = std::min(j * kTopFanout, prefixes_.size());
  PrefetchRange(prefixes_.data() + lo, prefixes_.data() + hi);
  PrefetchRange(index_.data() + lo, index_.data() + hi);
}

void Segment::PrefetchBlockTrailer(size_t b) const {
  // The entry offsets and prefixes, the entry count and the checksum end the block; ~12 bytes
  // per entry, so the last 512 bytes hold them for blocks of up to ~40 entries.
  const char* end = map_ + index_[b].offset + index_[b].size + kChecksumBytes;
  PrefetchRange(std::max(end - 512, map_ + index_[b].offset), end);
}

long Segment::FindBlock(std::string_view key) const {
  return FindBlock(key, TopSlot(KeyPrefix(key)));
}

long Segment::FindBlock(std::string_view key, size_t j) const {
  // The answer is the last block whose first key <= key. Blocks whose prefix is below the key's
  // prefix qualify, those above do not; only equal prefixes need full key compares.
  const uint64_t prefix = KeyPrefix(key);
  // hi = number of blocks with prefix <= key's prefix: j = TopSlot(prefix) picked the bucket.
  if (j == 0) return -1;
  size_t bucket_end = std::min(j * kTopFanout, prefixes_.size());
  size_t hi = static_cast<size_t>(
      std::upper_bound(prefixes_.begin() + static_cast<long>((j - 1) * kTopFanout),
                       prefixes_.begin() + static_cast<long>(bucket_end), prefix) -
      prefixes_.begin());
  if (prefixes_[hi - 1] != prefix) return static_cast<long>(hi) - 1;
  // Blocks [lo, hi) share the key's prefix (long common key prefixes): search their full keys.
  size_t lo = static_cast<size_t>(
      std::lower_bound(prefixes_.begin(), prefixes_.begin() + static_cast<long>(hi), prefix) -
      prefixes_.begin());
  size_t a = lo, b = hi;  // first block in [lo, hi) whose key > key
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    if (IndexKey(mid) <= key) {
      a = mid + 1;
    } else {
      b = mid;
    }
  }
  return static_cast<long>(a) - 1;
}

Status Segment::LocateBlock(size_t b, BlockView* view) const {
  const IndexEntry& e = index_[b];
  const char* p = map_ + e.offset;
  if (e.size < 4) return Corrupt(path_, "bad block", e.offset);
  uint32_t count = GetFixed32(p + e.size - 4);
  if (count == 0 || 12ull * count + 4 > e.size) return Corrupt(path_, "bad block", e.offset);
  view->data = p;
  view->offsets = p + e.size - 4 - 12ull * count;
  view->prefixes = view->offsets + 4ull * count;
  view->count = count;
  return Status::Ok();
}

Status Segment::VerifyBlock(size_t b, const BlockView& view) const {
  const IndexEntry& e = index_[b];
  if (Checksum(view.offsets, 12ull * view.count + 4) != GetFixed64(view.data + e.size)) {
    return Corrupt(path_, "bad block", e.offset);
  }
  return Status::Ok();
}

Status Segment::ReadBlock(size_t b, BlockView* view) const {
  Status s = LocateBlock(b, view);
  return s.ok() ? VerifyBlock(b, *view) : s;
}

Status Segment::ReadEntry(size_t b, const BlockView& view, uint32_t i, std::string_view* key,
                          std::string_view* value, uint64_t* version, EntryType* type) const {
  uint32_t start = view.EntryStart(i), end = view.EntryEnd(i);
  uint64_t limit = static_cast<uint64_t>(view.offsets - view.data);
  if (start >= end || end > limit || end - start < kEntryHeaderBytes + kEntryChecksumBytes) {
    return Corrupt(path_, "bad entry offsets in block", index_[b].offset);
  }
  const char* p = view.data + start;
  size_t n = end - start - kEntryChecksumBytes;
  if (EntryChecksum(p, n) != GetFixed32(p + n)) {
    return Corrupt(path_, "bad entry checksum in block", index_[b].offset);
  }
  uint32_t klen = GetFixed32(p), vlen = GetFixed32(p + 4);
  uint8_t t = static_cast<uint8_t>(p[16]);
  if (kEntryHeaderBytes + uint64_t{klen} + vlen != n || !ValidEntry(t, vlen)) {
    return Corrupt(path_, "bad entry in block", index_[b].offset);
  }
  *version = GetFixed64(p + 8);
  *type = static_cast<EntryType>(t);
  *key = std::string_view(p + kEntryHeaderBytes, klen);
  *value = std::string_view(p + kEntryHeaderBytes + klen, vlen);
  return Status::Ok();
}

Status Segment::FindInBlock(std::string_view key, size_t b, std::string* value, uint64_t* version,
                            EntryType* type) const {
  // The prefixes narrow the search to the entries sharing the key's prefix (almost always one or
  // none); only those are read, each verified before its key is trusted. The search runs on the
  // trailer before its checksum is checked, so that the first entry it picks is already on its
  // way from memory while the rest of the trailer arrives and is verified: at millions of keys
  // these are two cache and TLB misses, overlapped instead of one after the other. Nothing the
  // search found is used before the trailer checks out.
  BlockView view;
  Status s = LocateBlock(b, &view);
  if (!s.ok()) return s;
  const uint64_t prefix = KeyPrefix(key);
  uint32_t lo = 0, hi = view.count;
  while (lo < hi) {  // first entry with prefix >= key's
    uint32_t mid = lo + (hi - lo) / 2;
    if (view.Prefix(mid) < prefix) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == view.count || view.Prefix(lo) != prefix) {
    s = VerifyBlock(b, view);
    return s.ok() ? Status(Code::kNotFound, "") : s;
  }
  uint32_t end = lo + 1;
  if (end < view.count && view.Prefix(end) == prefix) {  // several: find the end of the run
    uint32_t a = end, z = view.count;
    while (a < z) {
      uint32_t mid = a + (z - a) / 2;
      if (view.Prefix(mid) <= prefix) {
        a = mid + 1;
      } else {
        z = mid;
      }
    }
    end = a;
  }
  {
    // The entry the search below reads first. Its offsets are not verified yet: clamped to the
    // block, they only direct a prefetch, of at most kEntryPrefetchBytes (a large value is
    // read from memory as it is copied anyway).
    constexpr uint32_t kEntryPrefetchBytes = 256;
    uint32_t first = lo + (end - lo) / 2;
    uint32_t limit = static_cast<uint32_t>(view.offsets - view.data);
    uint32_t from = std::min(view.EntryStart(first), limit);
    uint32_t to =
        std::min({std::max(view.EntryEnd(first), from), limit, from + kEntryPrefetchBytes});
    PrefetchRange(view.data + from, view.data + to);
  }
  s = VerifyBlock(b, view);
  if (!s.ok()) return s;
  std::string_view k, v;
  while (lo < end) {  // binary search of full keys within [lo, end)
    uint32_t mid = lo + (end - lo) / 2;
    s = ReadEntry(b, view, mid, &k, &v, version, type);
    if (!s.ok()) return s;
    int c = k.compare(key);
    if (c == 0) {
      if (value) value->assign(v);
      return Status::Ok();
    }
    if (c < 0) {
      lo = mid + 1;
    } else {
      end = mid;
    }
  }
  return Status(Code::kNotFound, "");
}

Status Segment::Get(std::string_view key, std::string* value, uint64_t* version,
                    EntryType* type) const {
  return GetHashed(key, BloomHash(key), value, version, type);
}

Status Segment::GetHashed(std::string_view key, uint64_t hash, std::string* value,
                          uint64_t* version, EntryType* type) const {
  // A lookup at the scale of millions of keys is a chain of cache misses: filter, index bucket,
  // block trailer, entry. The index bucket is fetched while the filter line arrives, and the
  // trailer as soon as the block is known.
  size_t j = TopSlot(KeyPrefix(key));
  PrefetchBucket(j);
  if (!filter_.MayContainHash(hash)) return Status(Code::kNotFound, "");
  long b = FindBlock(key, j);
  if (b < 0) return Status(Code::kNotFound, "");
  PrefetchBlockTrailer(static_cast<size_t>(b));
  return FindInBlock(key, static_cast<size_t>(b), value, version, type);
}

bool Segment::Iterator::LoadBlock(size_t b) {
  block_ = b;
  entry_ = 0;
  view_ = BlockView();
  if (b + 1 >= seg_->index_.size()) {  // past the last block
    valid_ = false;
    return false;
  }
  status_ = seg_->ReadBlock(b, &view_);
  if (!status_.ok()) {
    valid_ = false;
    return false;
  }
  return true;
}

void Segment::Iterator::ParseEntry() {
  while (entry_ >= view_.count) {
    if (!LoadBlock(block_ + 1)) return;
  }
  status_ = seg_->ReadEntry(block_, view_, entry_, &key_, &value_, &version_, &type_);
  valid_ = status_.ok();
  entry_++;
}

void Segment::Iterator::Seek(std::string_view key) {
  long b = seg_->FindBlock(key);
  if (!LoadBlock(b < 0 ? 0 : static_cast<size_t>(b))) return;
  ParseEntry();
  while (valid_ && key_ < key) ParseEntry();
}

void Segment::Iterator::Next() {
  ParseEntry();
}

}  // namespace kv::storage
