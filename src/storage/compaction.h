// Size-tiered compaction: which segments to merge, and the merge itself.
// Segments are kept newest first and a merge always takes a contiguous run of them, so the
// output can take the run's place without breaking "a newer segment holds newer versions".
// Pure policy + a single-threaded merge; the engine serializes compactions and installs results.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "storage/segment.h"
#include "storage/segment_writer.h"
#include "storage/status.h"

namespace kv::storage {

constexpr size_t kMinMergeWidth = 4;  // segments of one tier merged together
constexpr size_t kMaxMergeWidth = 10;

// Picks a contiguous run [*begin, *end) of the newest-first sizes to merge: the newest run of
// at least kMinMergeWidth segments in the same size tier (tier = log4(size / base_bytes)).
// False when nothing needs merging.
bool PickCompaction(const std::vector<uint64_t>& sizes, uint64_t base_bytes, size_t* begin,
                    size_t* end);

// Past this many segments a flush waits for compaction before adding one more (which in turn
// stalls writers past two frozen memtables): so compaction, running at SCHED_IDLE, gets the CPU
// even under a load that keeps every request thread busy. Size-tiered merging leaves fewer than
// kMinMergeWidth segments per 4x size tier: ~12 segments for 1 TB over 64 MiB memtables.
constexpr size_t kMaxSegments = 32;

// True when compaction is behind: more than kMaxSegments segments and something to merge.
bool CompactionBehind(const std::vector<uint64_t>& sizes, uint64_t base_bytes);

// Merges inputs (newest first) into out, keeping the newest entry of each key. Tombstones whose
// version time (version::UnixMillis, the one decoder of both version layouts) is below
// drop_tombstones_before_ms are dropped (pass 0 to keep all: the caller must only drop them when
// the run includes the oldest segment, or an older value would come back). Stops at the first
// read error. A value that expired at or before now_ms (Unix ms) is written as a tombstone of its
// version, and dropped under the same rule. filter, when set, must also return true for a
// tombstone to be dropped.
using TombstoneFilter = std::function<bool(std::string_view key, uint64_t version)>;
Status MergeInto(const std::vector<std::shared_ptr<Segment>>& inputs,
                 uint64_t drop_tombstones_before_ms, uint64_t now_ms, SegmentWriter* out,
                 const TombstoneFilter& filter = nullptr);

}  // namespace kv::storage
