#include "http/url.h"

#include <cstdint>

namespace kv::net {

void SplitTarget(std::string_view target, std::string_view* path, std::string_view* query) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) {
    *path = target;
    *query = {};
  } else {
    *path = target.substr(0, q);
    *query = target.substr(q + 1);
  }
}

static int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c != '%') {
      out->push_back(c);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

void PercentEncode(std::string_view in, std::string* out) {
  static const char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : in) {
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~';
    if (plain) {
      out->push_back(static_cast<char>(c));
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
}

int QueryParam(std::string_view query, std::string_view name, std::string* out) {
  int found = 0;
  QueryParams(query, &name, 1, out, &found);
  return found;
}

void QueryParams(std::string_view query, const std::string_view* names, size_t n, std::string* out,
                 int* found) {
  for (size_t i = 0; i < n; ++i) found[i] = 0;
  size_t left = n;
  while (!query.empty() && left > 0) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = part.find('=');
    std::string_view k = part.substr(0, eq);
    for (size_t i = 0; i < n; ++i) {
      if (found[i] != 0 || k != names[i]) continue;  // the first occurrence wins
      std::string_view v = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
      found[i] = PercentDecode(v, &out[i]) ? 1 : -1;
      --left;
      break;
    }
  }
}

static char AsciiLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Byte by byte: strncasecmp would stop at a NUL and call "a\0b" equal to "a\0c".
bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

// Any length: leading zeros do not make a number too large ("000...0001" is 1); the overflow
// check alone decides.
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace kv::net
