#include "storage/log_reader.h"

#include <unistd.h>

#include <cerrno>

#include "common/log.h"
#include "storage/file_io.h"

namespace kv::storage {

Status ReplayLog(const std::string& path, bool truncate_tail,
                 const std::function<void(const LogRecord&)>& fn, uint64_t* valid_bytes) {
  std::string data;
  Status s = ReadWholeFile(path, &data);
  if (!s.ok()) return s;
  size_t pos = 0;
  while (pos < data.size()) {
    LogRecord rec;
    size_t n = 0;
    DecodeResult r = DecodeLogRecord(std::string_view(data).substr(pos), &rec, &n);
    if (r != DecodeResult::kOk) {
      // A preallocated log (LogWriter) ends in zeros: its end, not damage.
      if (data.find_first_not_of('\0', pos) != std::string::npos) {
        const char* why = r == DecodeResult::kTruncated     ? "short record"
                          : r == DecodeResult::kBadChecksum ? "bad checksum"
                                                            : "bad field";
        LOG_WARN("storage: log %s: %s at offset %zu, cutting %zu tail bytes", path.c_str(), why,
                 pos, data.size() - pos);
      }
      if (truncate_tail && ::truncate(path.c_str(), static_cast<off_t>(pos)) != 0) {
        return ErrnoStatus(errno, "truncate torn log", path);
      }
      break;
    }
    fn(rec);
    pos += n;
  }
  *valid_bytes = pos;
  return Status::Ok();
}

}  // namespace kv::storage
