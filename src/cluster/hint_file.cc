#include "cluster/hint_file.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace kv::cluster::hintfile {

namespace {
void PutU32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 4);
}
void PutU64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 8);
}
uint64_t GetLE(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t Hash(const char* p, size_t n) {
  return XXH3_64bits(p, n);
}
}  // namespace

void AppendHeader(std::string* out, std::string_view target_url) {
  const size_t start = out->size();
  out->append(kMagic, sizeof kMagic);
  PutU32(out, static_cast<uint32_t>(target_url.size()));
  out->append(target_url);
  PutU64(out, Hash(out->data() + start, out->size() - start));
}

Parse ParseHeader(std::string_view buf, std::string* url, size_t* len) {
  *len = 0;
  const size_t fixed = sizeof kMagic + 4;
  if (memcmp(buf.data(), kMagic, std::min(buf.size(), sizeof kMagic)) != 0) return Parse::kCorrupt;
  if (buf.size() < fixed) return Parse::kNeedMore;
  const uint64_t url_len = GetLE(buf.data() + sizeof kMagic, 4);
  if (url_len == 0 || url_len > kMaxUrlBytes) return Parse::kCorrupt;
  *len = HeaderSize(url_len);
  if (buf.size() < *len) return Parse::kNeedMore;
  if (GetLE(buf.data() + *len - 8, 8) != Hash(buf.data(), *len - 8)) return Parse::kCorrupt;
  url->assign(buf.data() + fixed, url_len);
  return Parse::kOk;
}

void AppendRecord(std::string* out, const Record& r) {
  const size_t start = out->size();
  const bool tombstone = r.op == PeerOp::kRemove;
  const std::string_view value = tombstone ? std::string_view() : r.value;
  const bool expiring = !tombstone && r.expires_ms != 0;
  const size_t stored = value.size() + (expiring ? 8 : 0);
  out->reserve(start + RecordSize(r.key.size(), stored));
  PutU32(out, static_cast<uint32_t>(r.key.size()));
  PutU32(out, static_cast<uint32_t>(stored));
  out->append(r.key);
  if (expiring) PutU64(out, r.expires_ms);
  out->append(value);
  PutU64(out, r.version);
  out->push_back(static_cast<char>(tombstone  ? kTypeTombstone
                                   : expiring ? kTypeExpiring
                                              : kTypeValue));
  PutU64(out, Hash(out->data() + start, out->size() - start));
}

Parse ParseRecord(std::string_view buf, Record* rec, size_t* len) {
  *len = 8;
  if (buf.size() < 8) return Parse::kNeedMore;
  const uint64_t key_len = GetLE(buf.data(), 4), value_len = GetLE(buf.data() + 4, 4);
  if (key_len == 0 || key_len > kMaxKeyBytes || value_len > kMaxValueBytes) return Parse::kCorrupt;
  *len = RecordSize(key_len, value_len);
  if (buf.size() < *len) return Parse::kNeedMore;
  const char* p = buf.data();
  const size_t body = *len - 8;
  if (GetLE(p + body, 8) != Hash(p, body)) return Parse::kCorrupt;
  const uint8_t type = static_cast<uint8_t>(p[body - 1]);
  if (type != kTypeValue && type != kTypeTombstone && type != kTypeExpiring) {
    return Parse::kCorrupt;
  }
  if (type == kTypeTombstone && value_len != 0) return Parse::kCorrupt;
  if (type == kTypeExpiring && value_len < 8) return Parse::kCorrupt;
  rec->op = type == kTypeTombstone ? PeerOp::kRemove : PeerOp::kPut;
  rec->key = std::string_view(p + 8, key_len);
  rec->value = std::string_view(p + 8 + key_len, value_len);
  rec->expires_ms = 0;
  if (type == kTypeExpiring) {
    rec->expires_ms = GetLE(rec->value.data(), 8);
    rec->value.remove_prefix(8);
  }
  rec->version = GetLE(p + 8 + key_len + value_len, 8);
  return Parse::kOk;
}

}  // namespace kv::cluster::hintfile
