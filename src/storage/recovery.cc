#include "storage/recovery.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "storage/file_io.h"
#include "storage/log_format.h"
#include "storage/log_reader.h"

namespace kv::storage {

namespace {

Status Recover(const std::string& dir, std::shared_ptr<MemTable> mem, bool preallocate_log,
               RecoveredStore* out) {
  auto path = [&dir](const std::string& name) { return dir + "/" + name; };
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "mkdir", dir);
  }
  out->lock_fd = ::open(path("LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (out->lock_fd < 0) return ErrnoStatus(errno, "open", path("LOCK"));
  if (::flock(out->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return Status(Code::kIoError, "store " + dir + " is locked by another process");
  }
  Manifest& manifest = out->manifest;
  Status s = ReadManifest(dir, &manifest);
  if (s.code() == Code::kNotFound) {
    manifest = Manifest();
  } else if (!s.ok()) {
    return s;
  }
  // Survey the directory: orphan segments (unfinished flush/compaction output) and logs already
  // in segments are deleted; the rest of the logs are replayed in order.
  std::vector<uint64_t> logs;
  uint64_t max_number = manifest.next_file;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, "opendir", dir);
  std::vector<std::string> to_delete;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    bool is_log;
    uint64_t number;
    if (name == "MANIFEST.tmp") {
      to_delete.push_back(name);
    } else if (ParseFileName(name, &is_log, &number)) {
      max_number = std::max(max_number, number + 1);
      if (is_log) {
        if (number < manifest.min_log) {
          to_delete.push_back(name);
        } else {
          logs.push_back(number);
        }
      } else if (std::find(manifest.segments.begin(), manifest.segments.end(), number) ==
                 manifest.segments.end()) {
        to_delete.push_back(name);
      }
    }
  }
  ::closedir(d);
  for (const auto& name : to_delete) ::unlink(path(name).c_str());

  auto st = std::make_shared<State>();
  for (uint64_t number : manifest.segments) {
    std::shared_ptr<Segment> seg;
    s = Segment::Open(dir, number, &seg);
    if (!s.ok()) return s;
    st->segments.push_back(std::move(seg));
  }
  std::sort(logs.begin(), logs.end());
  for (uint64_t number : logs) {
    uint64_t valid;
    s = ReplayLog(
        path(LogFileName(number)), true,
        [&](const LogRecord& r) {
          // Only accepted writes are logged, so versions rise per key; the check guards against
          // anything replayed twice.
          std::string_view v;
          uint64_t ver;
          EntryType t;
          if (mem->Get(r.key, &v, &ver, &t) && ver >= r.version) return;
          mem->Insert(r.key, r.value, r.version, r.type);
        },
        &valid);
    if (!s.ok()) return s;
  }
  uint64_t number = max_number;
  s = LogWriter::Create(path(LogFileName(number)), number, &out->log, preallocate_log);
  if (!s.ok()) return s;
  s = SyncDir(dir);
  if (!s.ok()) return s;
  out->next_file = number + 1;
  out->logs = logs;
  out->logs.push_back(number);
  st->active = std::move(mem);
  out->state = std::move(st);
  return Status::Ok();
}

}  // namespace

Status RecoverStore(const std::string& dir, std::shared_ptr<MemTable> mem, bool preallocate_log,
                    RecoveredStore* out) {
  Status s = Recover(dir, std::move(mem), preallocate_log, out);
  if (!s.ok() && out->lock_fd >= 0) {
    ::close(out->lock_fd);
    out->lock_fd = -1;
  }
  return s;
}

}  // namespace kv::storage
