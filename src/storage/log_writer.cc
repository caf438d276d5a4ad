#include "storage/log_writer.h"

#include <fcntl.h>
#include <unistd.h>

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

Status LogWriter::Create(const std::string& path, uint64_t number,
                         std::unique_ptr<LogWriter>* out) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create log", path);
  out->reset(new LogWriter(fd, path, number));
  return Status::Ok();
}

LogWriter::~LogWriter() {
  ::close(fd_);
}

Status LogWriter::RepairTail() {
  if (::ftruncate(fd_, static_cast<off_t>(size_.load(std::memory_order_relaxed))) != 0) {
    return ErrnoStatus(errno, "truncate after failed write", path_);
  }
  needs_repair_ = false;
  return Status::Ok();
}

Status LogWriter::Append(std::string_view record, uint64_t* end) {
  if (needs_repair_) {
    Status s = RepairTail();
    if (!s.ok()) return s;
  }
  size_t written = 0;
  Status s = WriteAll(fd_, record, path_, &written);
  if (!s.ok()) {
    if (written > 0) {
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
    bool covered = false;
    for (int i = 0; i < syncs_; ++i) covered = covered || in_flight_[i] >= offset;
    if (!covered && syncs_ < kMaxSyncs) break;
    sync_cv_.wait(lock);  // a sync ended: covered now, or a slot is free (or it failed: retry)
  }
  // Leader: one fdatasync covers everything appended so far, including followers' records.
  const uint64_t target = size();
  const uint64_t failures_before = failures_;
  in_flight_[syncs_++] = target;
  lock.unlock();
  Status s = SyncFd(fd_, path_);
  lock.lock();
  for (int i = 0; i < syncs_; ++i) {
    if (in_flight_[i] == target) {
      in_flight_[i] = in_flight_[--syncs_];
      break;
    }
  }
  if (!s.ok()) {
    ++failures_;
    last_failure_ = s;
  } else if (failures_ != failures_before) {
    s = last_failure_;  // another failed meanwhile: the error may have been this one's
  } else if (target > synced_) {
    synced_ = target;
  }
  sync_cv_.notify_all();
  return s;
}

}  // namespace kv::storage
