// Replays one log file at startup, record by record. A torn or corrupt tail (short record, bad
// checksum) ends the replay: the file is cut at the last whole record with a warning naming the
// file and offset. Single-threaded; used only by recovery (RecoverStore).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "storage/log_format.h"
#include "storage/status.h"

namespace kv::storage {

// Calls fn for each valid record in order. *valid_bytes is the length of the kept prefix.
// If truncate_tail, a bad tail is removed from the file with ftruncate. A tail of zeros (a
// preallocated log's) ends the log quietly; any other bad tail is logged as a warning.
Status ReplayLog(const std::string& path, bool truncate_tail,
                 const std::function<void(const LogRecord&)>& fn, uint64_t* valid_bytes);

}  // namespace kv::storage
