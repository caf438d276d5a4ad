#include "storage/manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "storage/coding.h"
#include "storage/file_io.h"

namespace kv::storage {

namespace {
constexpr uint32_t kManifestMagic = 0x464d564b;  // "KVMF"
constexpr uint32_t kManifestFormat = 1;
}  // namespace

std::string Manifest::Encode() const {
  std::string out;
  AppendFixed32(&out, kManifestMagic);
  AppendFixed32(&out, kManifestFormat);
  AppendFixed64(&out, next_file);
  AppendFixed64(&out, min_log);
  AppendFixed32(&out, static_cast<uint32_t>(segments.size()));
  for (uint64_t s : segments) AppendFixed64(&out, s);
  AppendFixed64(&out, Checksum(out.data(), out.size()));
  return out;
}

Status Manifest::Decode(const std::string& data, const std::string& path) {
  auto bad = [&](const char* why) {
    return Status(Code::kCorruption, "corrupted manifest " + path + ": " + why);
  };
  if (data.size() < 36) return bad("too short");
  size_t body = data.size() - 8;
  if (Checksum(data.data(), body) != GetFixed64(data.data() + body)) return bad("bad checksum");
  if (GetFixed32(data.data()) != kManifestMagic) return bad("bad magic");
  if (GetFixed32(data.data() + 4) != kManifestFormat) return bad("unknown format version");
  next_file = GetFixed64(data.data() + 8);
  min_log = GetFixed64(data.data() + 16);
  uint32_t n = GetFixed32(data.data() + 24);
  if (body != 28 + 8ull * n) return bad("bad segment count");
  segments.clear();
  for (uint32_t i = 0; i < n; i++) segments.push_back(GetFixed64(data.data() + 28 + 8 * i));
  return Status::Ok();
}

Status ReadManifest(const std::string& dir, Manifest* m) {
  std::string path = dir + "/MANIFEST", data;
  Status s = ReadWholeFile(path, &data);
  if (!s.ok()) return s;
  return m->Decode(data, path);
}

Status WriteManifest(const std::string& dir, const Manifest& m, uint64_t* bytes_written) {
  std::string tmp = dir + "/MANIFEST.tmp", path = dir + "/MANIFEST";
  std::string data = m.Encode();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create", tmp);
  Status s = WriteAll(fd, data, tmp);
  if (s.ok()) s = SyncFd(fd, tmp);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoStatus(errno, "rename", tmp);
  if (s.ok()) s = SyncDir(dir);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (bytes_written) *bytes_written += data.size();
  return Status::Ok();
}

}  // namespace kv::storage
