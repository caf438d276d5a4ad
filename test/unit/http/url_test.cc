#include "http/url.h"

#include <doctest/doctest.h>

using namespace kv::net;

TEST_CASE("SplitTarget separates path and query") {
  std::string_view p, q;
  SplitTarget("/v0/entity?id=a&ack=1", &p, &q);
  CHECK(p == "/v0/entity");
  CHECK(q == "id=a&ack=1");
  SplitTarget("/v0/status", &p, &q);
  CHECK(p == "/v0/status");
  CHECK(q.empty());
}

TEST_CASE("PercentDecode decodes %XX, keeps '+', rejects broken escapes") {
  std::string out;
  CHECK(PercentDecode("hello%20world", &out));
  CHECK(out == "hello world");
  CHECK(PercentDecode("a+b", &out));
  CHECK(out == "a+b");
  CHECK(PercentDecode("%00%ff%FF", &out));
  CHECK(out == std::string("\0\xff\xff", 3));
  CHECK_FALSE(PercentDecode("%", &out));
  CHECK_FALSE(PercentDecode("%4", &out));
  CHECK_FALSE(PercentDecode("%zz", &out));
  CHECK_FALSE(PercentDecode("abc%2", &out));
}

TEST_CASE("PercentEncode round-trips every byte") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  std::string enc, dec;
  PercentEncode(all, &enc);
  for (char c : enc) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '%';
    CHECK(ok);
  }
  REQUIRE(PercentDecode(enc, &dec));
  CHECK(dec == all);
}

TEST_CASE("QueryParam finds, decodes and reports malformed values") {
  std::string v;
  CHECK(QueryParam("id=k%31&ack=2", "id", &v) == 1);
  CHECK(v == "k1");
  CHECK(QueryParam("id=k&ack=2", "ack", &v) == 1);
  CHECK(v == "2");
  CHECK(QueryParam("id=k", "from", &v) == 0);
  CHECK(QueryParam("idx=1&id=", "id", &v) == 1);
  CHECK(v.empty());
  CHECK(QueryParam("id", "id", &v) == 1);
  CHECK(v.empty());
  CHECK(QueryParam("id=%g1", "id", &v) == -1);
  CHECK(QueryParam("id=first&id=second", "id", &v) == 1);
  CHECK(v == "first");
}

TEST_CASE("QueryParams finds several names in one pass, as QueryParam finds each") {
  const std::string_view names[] = {"id", "ack", "from", "ttl"};
  const char* queries[] = {"id=k%31&ack=2&from=3",
                           "from=1&id=a&id=b&ttl=5&ack",
                           "ack=%zz&id=x",
                           "",
                           "idx=1&ttl=%35&from=2&ack=1&id=k",
                           "&&=&id=&ttl"};
  for (const char* q : queries) {
    CAPTURE(q);
    std::string out[4];
    int found[4];
    QueryParams(q, names, 4, out, found);
    for (size_t i = 0; i < 4; ++i) {
      CAPTURE(names[i]);
      std::string one;
      const int f = QueryParam(q, names[i], &one);
      CHECK(found[i] == f);
      if (f == 1) CHECK(out[i] == one);
    }
  }
  std::string out[2];
  int found[2];
  const std::string_view two[] = {"id", "ttl"};
  QueryParams("ttl=%37&id=first&id=second", two, 2, out, found);
  CHECK(found[0] == 1);
  CHECK(out[0] == "first");
  CHECK(found[1] == 1);
  CHECK(out[1] == "7");
}

TEST_CASE("ParseU64 accepts plain decimals only") {
  uint64_t v = 0;
  CHECK(ParseU64("0", &v));
  CHECK(v == 0);
  CHECK(ParseU64("18446744073709551615", &v));
  CHECK(v == UINT64_MAX);
  CHECK_FALSE(ParseU64("18446744073709551616", &v));
  CHECK_FALSE(ParseU64("", &v));
  CHECK_FALSE(ParseU64("-1", &v));
  CHECK_FALSE(ParseU64("1a", &v));
  CHECK_FALSE(ParseU64(" 1", &v));
  // Leading zeros past 20 digits still fit (found by url_fuzz: refused by a length shortcut).
  CHECK(ParseU64("0000000000000000000000370247089", &v));
  CHECK(v == 370247089);
  CHECK(ParseU64("000000000000000000000018446744073709551615", &v));
  CHECK(v == UINT64_MAX);
  CHECK_FALSE(ParseU64("000000000000000000000018446744073709551616", &v));
}

TEST_CASE("EqualsIgnoreCase compares ASCII letters without case, lengths exactly") {
  CHECK(EqualsIgnoreCase("X-KV-Version", "x-kv-version"));
  CHECK(EqualsIgnoreCase("", ""));
  CHECK_FALSE(EqualsIgnoreCase("expect", "expects"));
  CHECK_FALSE(EqualsIgnoreCase("x-kv-version", "x-kv-versioN2"));
  CHECK_FALSE(EqualsIgnoreCase("a-b", "a_b"));
}

TEST_CASE("EqualsIgnoreCase compares past a NUL byte (found by url_fuzz)") {
  using namespace std::string_view_literals;
  CHECK_FALSE(
      EqualsIgnoreCase("4\0"
                       "51"sv,
                       "4\0"
                       "55"sv));
  CHECK_FALSE(EqualsIgnoreCase("\0a"sv, "\0b"sv));
  CHECK(EqualsIgnoreCase("\0A"sv, "\0a"sv));
  // Only ASCII letters fold: bytes 0xC0..0xDE are not 0xE0..0xFE.
  CHECK_FALSE(EqualsIgnoreCase("\xC0"sv, "\xE0"sv));
}
