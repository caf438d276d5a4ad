#include "common/json.h"

namespace kv {

namespace {

// The bytes JSON escapes with one letter after the backslash, and those letters.
constexpr char kShortEscapes[][2] = {{'"', '"'},  {'\\', '\\'}, {'\b', 'b'}, {'\f', 'f'},
                                     {'\n', 'n'}, {'\r', 'r'},  {'\t', 't'}};

}  // namespace

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->reserve(out->size() + s.size() + 2);
  out->push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != '"' && c != '\\') {
      out->push_back(ch);
      continue;
    }
    out->push_back('\\');
    char letter = 0;
    for (const auto& e : kShortEscapes) {
      if (e[0] == ch) letter = e[1];
    }
    if (letter != 0) {
      out->push_back(letter);
    } else {
      out->append("u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
  out->push_back('"');
}

std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

}  // namespace kv
