#include "storage/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "storage/coding.h"

namespace kv::storage {

std::atomic<WriteFn> g_write_hook{nullptr};
std::atomic<SyncFn> g_sync_hook{nullptr};

std::string LogFileName(uint64_t number) {
  char b[40];
  snprintf(b, sizeof(b), "log-%06llu.log", static_cast<unsigned long long>(number));
  return b;
}

std::string SegmentFileName(uint64_t number) {
  char b[40];
  snprintf(b, sizeof(b), "seg-%06llu.seg", static_cast<unsigned long long>(number));
  return b;
}

bool ParseFileName(std::string_view name, bool* is_log, uint64_t* number) {
  if (name.size() < 9) return false;
  std::string_view prefix = name.substr(0, 4), suffix = name.substr(name.size() - 4);
  if (prefix == "log-" && suffix == ".log") {
    *is_log = true;
  } else if (prefix == "seg-" && suffix == ".seg") {
    *is_log = false;
  } else {
    return false;
  }
  std::string_view digits = name.substr(4, name.size() - 8);
  if (digits.empty() || digits.size() > 19) return false;
  uint64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *number = n;
  return true;
}

Status ErrnoStatus(int err, const std::string& what, const std::string& file) {
  std::string msg = what + " " + file + ": " + strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status(Code::kNoSpace, msg);
  return Status(Code::kIoError, msg);
}

Status WriteAll(int fd, std::string_view data, const std::string& file, size_t* written) {
  size_t done = 0;
  WriteFn hook = g_write_hook.load(std::memory_order_relaxed);
  while (done < data.size()) {
    ssize_t n = hook ? hook(fd, data.data() + done, data.size() - done)
                     : ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      if (written) *written = done;
      return ErrnoStatus(err, "write", file);
    }
    done += static_cast<size_t>(n);
  }
  if (written) *written = done;
  return Status::Ok();
}

Status SyncFd(int fd, const std::string& file) {
  SyncFn hook = g_sync_hook.load(std::memory_order_acquire);
  if ((hook ? hook(fd) : ::fdatasync(fd)) != 0) return ErrnoStatus(errno, "fdatasync", file);
  return Status::Ok();
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open dir", dir);
  Status s;
  if (::fsync(fd) != 0) s = ErrnoStatus(errno, "fsync dir", dir);
  ::close(fd);
  return s;
}

Status ReadWholeFile(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status(Code::kNotFound, "no file " + path);
    return ErrnoStatus(errno, "open", path);
  }
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return Status::Ok();
}

}  // namespace kv::storage
