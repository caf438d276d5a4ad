#include "storage/segment_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "storage/file_io.h"
#include "storage/segment_format.h"

namespace kv::storage {

void Footer::EncodeTo(std::string* out) const {
  size_t start = out->size();
  AppendFixed64(out, filter_offset);
  AppendFixed64(out, filter_size);
  AppendFixed64(out, index_offset);
  AppendFixed64(out, index_size);
  AppendFixed64(out, entries);
  AppendFixed32(out, format_version);
  AppendFixed32(out, kSegmentMagic);
  AppendFixed64(out, Checksum(out->data() + start, kFooterBytes - 8));
}

bool Footer::DecodeFrom(const char* p) {
  if (Checksum(p, kFooterBytes - 8) != GetFixed64(p + kFooterBytes - 8)) return false;
  if (GetFixed32(p + 44) != kSegmentMagic) return false;
  format_version = GetFixed32(p + 40);
  if (format_version != kSegmentFormatVersion) return false;
  filter_offset = GetFixed64(p);
  filter_size = GetFixed64(p + 8);
  index_offset = GetFixed64(p + 16);
  index_size = GetFixed64(p + 24);
  entries = GetFixed64(p + 32);
  return true;
}

SegmentWriter::~SegmentWriter() {
  if (fd_ >= 0) ::close(fd_);
}

Status SegmentWriter::Open(const std::string& path) {
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return ErrnoStatus(errno, "create segment", path);
  return Status::Ok();
}

void SegmentWriter::Abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }
}

Status SegmentWriter::Emit(std::string_view bytes, bool force_write) {
  out_.append(bytes);
  offset_ += bytes.size();
  if (fd_ >= 0 && (force_write || out_.size() >= (256u << 10))) {
    Status s = WriteAll(fd_, out_, path_);
    out_.clear();
    return s;
  }
  return Status::Ok();
}

void SegmentWriter::FinishBlock() {
  if (block_.empty()) return;
  size_t trailer = block_.size();
  for (uint32_t o : offsets_) AppendFixed32(&block_, o);
  for (uint64_t p : prefixes_) AppendFixed64(&block_, p);
  AppendFixed32(&block_, static_cast<uint32_t>(offsets_.size()));
  AppendFixed64(&block_, Checksum(block_.data() + trailer, block_.size() - trailer));
  offsets_.clear();
  prefixes_.clear();
  AppendFixed64(&index_, offset_);
  AppendFixed32(&index_, static_cast<uint32_t>(block_.size() - kChecksumBytes));
  AppendFixed32(&index_, static_cast<uint32_t>(first_key_.size()));
  index_.append(first_key_);
  blocks_++;
  if (status_.ok()) status_ = Emit(block_, false);
  block_.clear();
}

Status SegmentWriter::Add(std::string_view key, std::string_view value, uint64_t version,
                          EntryType type) {
  if (!status_.ok()) return status_;
  if (block_.empty()) first_key_.assign(key);
  size_t start = block_.size();
  offsets_.push_back(static_cast<uint32_t>(start));
  prefixes_.push_back(KeyPrefix(key));
  char h[kEntryHeaderBytes];
  PutFixed32(h, static_cast<uint32_t>(key.size()));
  PutFixed32(h + 4, static_cast<uint32_t>(value.size()));
  PutFixed64(h + 8, version);
  h[16] = static_cast<char>(type);
  block_.append(h, sizeof(h));
  block_.append(key);
  block_.append(value);
  AppendFixed32(&block_, EntryChecksum(block_.data() + start, block_.size() - start));
  bloom_.AddKey(key);
  entries_++;
  max_version_ = std::max(max_version_, version);
  if (block_.size() >= block_bytes_) FinishBlock();
  return status_;
}

Status SegmentWriter::Finish() {
  FinishBlock();
  if (!status_.ok()) return status_;
  Footer f;
  f.entries = entries_;
  std::string filter = bloom_.Finish();
  f.filter_offset = offset_;
  f.filter_size = filter.size();
  AppendFixed64(&filter, Checksum(filter.data(), filter.size()));
  status_ = Emit(filter, false);
  if (!status_.ok()) return status_;
  std::string index;
  AppendFixed32(&index, blocks_);
  index.append(index_);
  f.index_offset = offset_;
  f.index_size = index.size();
  AppendFixed64(&index, Checksum(index.data(), index.size()));
  std::string footer;
  f.EncodeTo(&footer);
  index.append(footer);
  status_ = Emit(index, true);
  if (!status_.ok() || fd_ < 0) return status_;
  status_ = SyncFd(fd_, path_);
  if (status_.ok()) {
    ::close(fd_);
    fd_ = -1;
  }
  return status_;
}

}  // namespace kv::storage
