#include "storage/compaction.h"

#include <algorithm>

#include "common/version.h"
#include "storage/coding.h"
#include "storage/engine.h"
#include "storage/merge.h"

namespace kv::storage {

namespace {
int Tier(uint64_t size, uint64_t base) {
  int t = 0;
  uint64_t limit = base;
  while (size > limit && t < 30) {
    limit *= 4;
    t++;
  }
  return t;
}
}  // namespace

bool PickCompaction(const std::vector<uint64_t>& sizes, uint64_t base_bytes, size_t* begin,
                    size_t* end) {
  if (base_bytes == 0) base_bytes = 1;
  size_t i = 0;
  while (i < sizes.size()) {
    int t = Tier(sizes[i], base_bytes);
    size_t j = i + 1;
    while (j < sizes.size() && Tier(sizes[j], base_bytes) == t) j++;
    if (j - i >= kMinMergeWidth) {
      // Merge the oldest members of the run first: they are the ones that will not grow.
      *end = j;
      *begin = j - std::min(j - i, kMaxMergeWidth);
      return true;
    }
    i = j;
  }
  return false;
}

bool CompactionBehind(const std::vector<uint64_t>& sizes, uint64_t base_bytes) {
  size_t b, e;
  return sizes.size() > kMaxSegments && PickCompaction(sizes, base_bytes, &b, &e);
}

Status MergeInto(const std::vector<std::shared_ptr<Segment>>& inputs,
                 uint64_t drop_tombstones_before_ms, uint64_t now_ms, SegmentWriter* out,
                 const TombstoneFilter& filter) {
  std::vector<std::unique_ptr<EntryIter>> children;
  for (const auto& seg : inputs) children.push_back(NewSegmentIter(seg));
  MergingIter it(std::move(children));
  for (it.Seek(std::string_view()); it.Valid(); it.Next()) {
    EntryType type = it.type();
    std::string_view value = it.value();
    // An expired value is a tombstone of its version from here on (and purged as one).
    if (type == EntryType::kExpiring && Expired(GetFixed64(value.data()), now_ms)) {
      type = EntryType::kTombstone;
      value = std::string_view();
    }
    if (type == EntryType::kTombstone &&
        version::UnixMillis(it.version()) < drop_tombstones_before_ms &&
        (!filter || filter(it.key(), it.version()))) {
      continue;
    }
    Status s = out->Add(it.key(), value, it.version(), type);
    if (!s.ok()) return s;
  }
  return it.status();
}

}  // namespace kv::storage
