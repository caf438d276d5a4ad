#include "storage/log_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "storage/coding.h"
#include "storage/file_io.h"
#include "storage/log_format.h"

namespace kv::storage {

void EncodeLogRecord(std::string_view key, std::string_view value, uint64_t version, EntryType type,
                     std::string* out) {
  size_t n = kLogHeaderBytes + key.size() + value.size() + kLogTrailerBytes;
  out->resize(n);
  char* p = out->data();
  PutFixed32(p, static_cast<uint32_t>(key.size()));
  PutFixed32(p + 4, static_cast<uint32_t>(value.size()));
  p += kLogHeaderBytes;
  if (!key.empty()) memcpy(p, key.data(), key.size());
  p += key.size();
  if (!value.empty()) memcpy(p, value.data(), value.size());
  p += value.size();
  PutFixed64(p, version);
  p[8] = static_cast<char>(type);
  PutFixed64(p + 9, Checksum(out->data(), n - 8));
}

DecodeResult DecodeLogRecord(std::string_view data, LogRecord* rec, size_t* consumed) {
  if (data.size() < kLogHeaderBytes) return DecodeResult::kTruncated;
  uint32_t klen = GetFixed32(data.data()), vlen = GetFixed32(data.data() + 4);
  if (klen > kMaxKeyBytes || vlen > kMaxValueBytes + kExpiryBytes) {
    // Lengths this large were never written: either garbage or a torn header.
    return DecodeResult::kBadField;
  }
  size_t n = kLogHeaderBytes + klen + vlen + kLogTrailerBytes;
  if (data.size() < n) return DecodeResult::kTruncated;
  if (Checksum(data.data(), n - 8) != GetFixed64(data.data() + n - 8)) {
    return DecodeResult::kBadChecksum;
  }
  const char* p = data.data() + kLogHeaderBytes;
  uint8_t type = static_cast<uint8_t>(p[klen + vlen + 8]);
  if (!ValidEntry(type, vlen)) return DecodeResult::kBadField;
  rec->key = std::string_view(p, klen);
  rec->value = std::string_view(p + klen, vlen);
  rec->version = GetFixed64(p + klen + vlen);
  rec->type = static_cast<EntryType>(type);
  *consumed = n;
  return DecodeResult::kOk;
}

Status LogWriter::Create(const std::string& path, uint64_t number, std::unique_ptr<LogWriter>* out,
                         bool preallocate) {
  // Preallocated, records go at size_ through the file position, not at the file's end.
  const int append = preallocate ? 0 : O_APPEND;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | append | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create log", path);
  out->reset(new LogWriter(fd, path, number, preallocate));
  return Status::Ok();
}

LogWriter::~LogWriter() {
  ::close(fd_);
}

Status LogWriter::RepairTail() {
  const uint64_t size = size_.load(std::memory_order_relaxed);
  if (preallocate_) {
    // Zeros over the torn bytes: whole records of the failed write must not be replayed after
    // a shorter record written over their start.
    Status s = WriteZeros(size, torn_end_);
    if (!s.ok()) return s;
  } else if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    return ErrnoStatus(errno, "truncate after failed write", path_);
  }
  needs_repair_ = false;
  return Status::Ok();
}

Status LogWriter::WriteZeros(uint64_t from, uint64_t to) {
  static const char kZeros[64 * 1024] = {};
  Status s;
  if (::lseek(fd_, static_cast<off_t>(from), SEEK_SET) < 0) {
    s = ErrnoStatus(errno, "seek log", path_);
  }
  uint64_t at = from;
  while (s.ok() && at < to) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof kZeros, to - at));
    size_t written = 0;
    s = WriteAll(fd_, std::string_view(kZeros, n), path_, &written);
    at += written;
  }
  zeroed_ = std::max(zeroed_, at);
  // The next record goes at size_.
  if (::lseek(fd_, static_cast<off_t>(size_.load(std::memory_order_relaxed)), SEEK_SET) < 0 &&
      s.ok()) {
    s = ErrnoStatus(errno, "seek log", path_);
  }
  return s;
}

Status LogWriter::Append(std::string_view record, uint64_t* end) {
  if (needs_repair_) {
    Status s = RepairTail();
    if (!s.ok()) return s;
  }
  const uint64_t start = size_.load(std::memory_order_relaxed);
  if (preallocate_ && start + record.size() > zeroed_) {
    // Whole kPreallocateBytes steps, up to at least the record's end.
    const uint64_t end = start + record.size();
    Status s =
        WriteZeros(zeroed_, (end + kPreallocateBytes - 1) / kPreallocateBytes * kPreallocateBytes);
    if (!s.ok()) return s;
  }
  size_t written = 0;
  Status s = WriteAll(fd_, record, path_, &written);
  if (!s.ok()) {
    if (written > 0) {
      torn_end_ = start + written;
      needs_repair_ = true;
      RepairTail();  // best effort now; retried before the next append otherwise
    }
    return s;
  }
  *end = size_.load(std::memory_order_relaxed) + record.size();
  size_.store(*end, std::memory_order_release);
  return Status::Ok();
}

Status LogWriter::SyncTo(uint64_t offset) {
  std::unique_lock<std::mutex> lock(sync_mu_);
  for (;;) {
    if (synced_ >= offset) return Status::Ok();
    if (failed_) return last_failure_;
    if (!syncing_) break;
    sync_cv_.wait(lock);  // the sync under way ended: covered now, or ours is next
  }
  // Leader: one fdatasync covers everything appended so far, including followers' records.
  const uint64_t target = size();
  syncing_ = true;
  lock.unlock();
  Status s = SyncFd(fd_, path_);
  lock.lock();
  syncing_ = false;
  if (!s.ok()) {
    failed_ = true;
    last_failure_ = s;
  } else {
    synced_ = std::max(synced_, target);
  }
  sync_cv_.notify_all();
  return s;
}

}  // namespace kv::storage
