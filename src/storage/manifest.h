// The MANIFEST file: which segments are live (newest first), the oldest log still needed, and
// the next file number. Replaced atomically (write MANIFEST.tmp, fdatasync, rename, fsync dir),
// so a crash leaves either the old or the new manifest. Callers serialize Write().
//   magic u32 "KVMF" | format u32 | next_file u64 | min_log u64 | count u32 | seg u64 x count
//   | xxh3 u64 of everything before
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "storage/status.h"

namespace kv::storage {

struct Manifest {
  uint64_t next_file = 1;
  uint64_t min_log = 0;            // logs numbered below this are already in segments
  std::vector<uint64_t> segments;  // newest first

  std::string Encode() const;
  // kCorruption naming path when malformed.
  Status Decode(const std::string& data, const std::string& path);
};

// kNotFound when there is no manifest yet.
Status ReadManifest(const std::string& dir, Manifest* m);
Status WriteManifest(const std::string& dir, const Manifest& m, uint64_t* bytes_written);

}  // namespace kv::storage
