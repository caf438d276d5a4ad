#include "common/range_page.h"

#include "common/big_endian.h"

namespace kv::range_page {

using be::AppendU32;
using be::AppendU64;
using be::LoadU32;

size_t Begin(std::string* out) {
  const size_t at = out->size();
  out->append(kHeaderBytes, '\0');
  return at;
}

size_t Append(std::string* out, const Entry& e) {
  const size_t at = out->size();
  const std::string_view value = e.tombstone ? std::string_view() : e.value;
  AppendU32(out, static_cast<uint32_t>(e.key.size()));
  out->append(e.key);
  AppendU64(out, e.version);
  out->push_back(e.tombstone ? '\1' : '\0');
  AppendU32(out, static_cast<uint32_t>(value.size()));
  out->append(value);
  return at;
}

void Finish(std::string* out, size_t begin, size_t last_entry, bool more) {
  const size_t last = out->size() > begin + kHeaderBytes ? last_entry - begin : 0;
  (*out)[begin] = static_cast<char>(more ? kFlagMore : 0);
  for (int i = 0; i < 4; ++i) {
    (*out)[begin + 1 + static_cast<size_t>(i)] = static_cast<char>(last >> (24 - 8 * i));
  }
}

std::string NextStart(std::string_view last_key) {
  std::string s;
  s.reserve(last_key.size() + 1);
  s.append(last_key);
  s.push_back('\0');
  return s;
}

Reader::Reader(std::string_view page) {
  if (page.size() < kHeaderBytes) {
    Fail("page shorter than its header");
    return;
  }
  const auto flags = static_cast<uint8_t>(page[0]);
  if ((flags & ~kFlagMore) != 0) {
    Fail("unknown page flags");
    return;
  }
  more_ = (flags & kFlagMore) != 0;
  last_ = LoadU32(page.data() + 1);
  page_ = page;
  rest_ = page.substr(kHeaderBytes);
}

bool Reader::LastKey(std::string_view* key) const {
  if (failed_ || last_ < kHeaderBytes || last_ > page_.size() - 4) return false;
  const uint32_t key_len = LoadU32(page_.data() + last_);
  if (key_len == 0 || key_len > page_.size() - last_ - 4) return false;
  *key = page_.substr(last_ + 4, key_len);
  return true;
}

Reader::Result Reader::Next(Entry* e) {
  if (failed_) return kError;
  if (rest_.empty()) {
    if (last_ != (has_last_ ? static_cast<size_t>(last_key_.data() - 4 - page_.data()) : 0)) {
      return Fail("last entry offset does not match the entries");
    }
    return kEnd;
  }
  if (rest_.size() < kEntryOverhead) return Fail("truncated entry");
  const char* p = rest_.data();
  const uint32_t key_len = LoadU32(p);
  if (key_len == 0 || key_len > kMaxKeyBytes) return Fail("key length out of bounds");
  if (rest_.size() < kEntryOverhead + key_len) return Fail("key overruns the page");
  e->key = std::string_view(p + 4, key_len);
  p += 4 + key_len;
  e->version = (uint64_t{LoadU32(p)} << 32) | LoadU32(p + 4);
  const auto kind = static_cast<uint8_t>(p[8]);
  if (kind > 1) return Fail("unknown entry kind");
  e->tombstone = kind == 1;
  const uint32_t value_len = LoadU32(p + 9);
  if (value_len > kMaxValueBytes || (e->tombstone && value_len != 0)) {
    return Fail("value length out of bounds");
  }
  const size_t total = kEntryOverhead + key_len + value_len;
  if (rest_.size() < total) return Fail("value overruns the page");
  e->value = std::string_view(p + 13, value_len);
  if (has_last_ && !(last_key_ < e->key)) return Fail("keys do not ascend");
  last_key_ = e->key;
  has_last_ = true;
  rest_.remove_prefix(total);
  return kEntry;
}

}  // namespace kv::range_page
