// The JSON string escaper: what must be escaped is, everything else is copied byte for byte.
#include "common/json.h"

#include <doctest/doctest.h>

#include <string>

namespace kv {
namespace {

TEST_CASE("plain text is quoted and copied") {
  CHECK(JsonString("") == "\"\"");
  CHECK(JsonString("http://node-1.example:8080") == "\"http://node-1.example:8080\"");
  CHECK(JsonString("caf\xc3\xa9 /~") == "\"caf\xc3\xa9 /~\"");  // UTF-8 and '/' pass through
}

TEST_CASE("quotes, backslashes and control bytes are escaped") {
  CHECK(JsonString("a\"b") == R"("a\"b")");
  CHECK(JsonString("a\\b") == R"("a\\b")");
  CHECK(JsonString("http://h:1/\"},{\"x\":\"") == R"("http://h:1/\"},{\"x\":\"")");
  CHECK(JsonString("\b\f\n\r\t") == R"("\b\f\n\r\t")");
  CHECK(JsonString(std::string("\x00\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\x7f\"");
}

TEST_CASE("every byte below 0x20 is escaped, every other byte but '\"' and '\\\\' copied") {
  for (int b = 0; b < 256; ++b) {
    CAPTURE(b);
    const std::string in(1, static_cast<char>(b));
    const std::string got = JsonString(in);
    if (b < 0x20 || b == '"' || b == '\\') {
      CHECK(got.size() > 3);
      CHECK(got[1] == '\\');
    } else {
      CHECK(got == "\"" + in + "\"");
    }
  }
}

TEST_CASE("appends to what is there") {
  std::string out = "{\"url\":";
  AppendJsonString(&out, "x\"y");
  CHECK(out == R"({"url":"x\"y")");
}

}  // namespace
}  // namespace kv
