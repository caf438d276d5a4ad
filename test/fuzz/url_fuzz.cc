// libFuzzer target for the request-target helpers (url.h): SplitTarget, PercentDecode,
// PercentEncode, QueryParam, ParseU64, EqualsIgnoreCase. The input is a request target.
// Checked against simple reference implementations: decoding is exact (a decoded string encodes
// and decodes back to itself), QueryParam finds the first parameter of that name, ParseU64
// agrees with a 128-bit reference.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/url.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reference decoder: false on '%' without two hex digits after it.
bool RefDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
    } else if (i + 2 < in.size() && Hex(in[i + 1]) >= 0 && Hex(in[i + 2]) >= 0) {
      out->push_back(static_cast<char>(Hex(in[i + 1]) * 16 + Hex(in[i + 2])));
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

bool RefParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  unsigned __int128 v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > UINT64_MAX) return false;
  }
  *out = static_cast<uint64_t>(v);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kv::net;
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  std::string_view path, query;
  SplitTarget(target, &path, &query);
  Require(path.data() == target.data() && path.find('?') == std::string_view::npos);
  if (path.size() == target.size()) {
    Require(query.empty());
  } else {
    Require(path.size() + 1 + query.size() == target.size() && target[path.size()] == '?');
  }

  std::string dec, ref;
  const bool ok = PercentDecode(target, &dec);
  Require(ok == RefDecode(target, &ref));
  if (ok) {
    Require(dec == ref);
    std::string enc, again;
    PercentEncode(dec, &enc);
    // Only unreserved bytes stay as they are; every other byte is %XX.
    for (size_t i = 0; i < enc.size(); ++i) {
      const char c = enc[i];
      if (c == '%') {
        Require(i + 2 < enc.size() && Hex(enc[i + 1]) >= 0 && Hex(enc[i + 2]) >= 0);
        i += 2;
      } else {
        Require(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
                c == '~');
      }
    }
    Require(PercentDecode(enc, &again) && again == dec);
  }

  // QueryParam for a name taken from the query's first parameter, and for the node's names.
  std::string_view first = query.substr(0, query.find('&'));
  std::string_view first_name = first.substr(0, first.find('='));
  for (std::string_view name : {first_name, std::string_view("id"), std::string_view("ack"),
                                std::string_view("from"), std::string_view("start")}) {
    std::string v;
    int found = QueryParam(query, name, &v);
    // Reference: the first part whose name matches.
    int want = 0;
    std::string want_v;
    std::string_view q = query;
    while (!q.empty()) {
      size_t amp = q.find('&');
      std::string_view part = q.substr(0, amp);
      q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
      size_t eq = part.find('=');
      if (part.substr(0, eq) != name) continue;
      std::string_view raw =
          eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
      want = RefDecode(raw, &want_v) ? 1 : -1;
      break;
    }
    Require(found == want);
    if (found == 1) Require(v == want_v);
    uint64_t a = 0, b = 0;
    const bool pa = ParseU64(v, &a);
    Require(pa == RefParseU64(v, &b));
    if (pa) Require(a == b);
  }
  uint64_t a = 0, b = 0;
  const bool pa = ParseU64(target, &a);
  Require(pa == RefParseU64(target, &b));
  if (pa) Require(a == b);

  // Case-insensitive equality agrees with lowering both sides.
  const size_t half = size / 2;
  std::string_view x = target.substr(0, half), y = target.substr(half);
  std::string lx(x), ly(y);
  for (char& c : lx) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : ly) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  Require(EqualsIgnoreCase(x, y) == (lx == ly));
  Require(EqualsIgnoreCase(x, x));
  return 0;
}
