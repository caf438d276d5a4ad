// The range page codec: what Append writes, Reader reads back in place; every malformed page is
// a clean kError, never a read past the page.
#include "common/range_page.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace kv::range_page {
namespace {

std::string Page(const std::vector<Entry>& entries, bool more) {
  std::string p;
  const size_t begin = Begin(&p);
  size_t last = begin;
  for (const Entry& e : entries) last = Append(&p, e);
  Finish(&p, begin, last, more);
  return p;
}

TEST_CASE("range page: entries, tombstones and the more flag read back in place") {
  const std::string p = Page(
      {{"a", "1", 7, false}, {"b", "", 9, true}, {std::string(300, 'c'), "xyz", 1, false}}, true);
  CHECK(p.size() == kHeaderBytes + 3 * kEntryOverhead + 1 + 1 + 1 + 300 + 3);
  Reader r(p);
  CHECK(r.more());
  std::string_view last;
  REQUIRE(r.LastKey(&last));
  CHECK(last == std::string(300, 'c'));
  Entry e;
  REQUIRE(r.Next(&e) == Reader::kEntry);
  CHECK((e.key == "a" && e.value == "1" && e.version == 7 && !e.tombstone));
  REQUIRE(r.Next(&e) == Reader::kEntry);
  CHECK((e.key == "b" && e.value.empty() && e.version == 9 && e.tombstone));
  REQUIRE(r.Next(&e) == Reader::kEntry);
  CHECK(e.value == "xyz");
  CHECK(e.value.data() > p.data());  // a view into the page, not a copy
  CHECK(e.value.data() < p.data() + p.size());
  CHECK(r.Next(&e) == Reader::kEnd);
  CHECK(r.Next(&e) == Reader::kEnd);
}

TEST_CASE("range page: an empty page, and a tombstone's value is never written") {
  const std::string empty = Page({}, false);
  CHECK(empty.size() == kHeaderBytes);
  Reader r(empty);
  std::string_view last;
  CHECK_FALSE(r.more());
  CHECK_FALSE(r.LastKey(&last));
  Entry e;
  CHECK(r.Next(&e) == Reader::kEnd);
  const std::string t = Page({{"k", "ignored", 3, true}}, false);
  Reader rt(t);
  REQUIRE(rt.Next(&e) == Reader::kEntry);
  CHECK((e.tombstone && e.value.empty()));
}

TEST_CASE("range page: the next page starts right after the last key") {
  CHECK(NextStart("abc") == std::string("abc\0", 4));
  CHECK(std::string_view("abc") < NextStart("abc"));
  CHECK(NextStart("abc") < std::string_view("abc\x01", 4));  // nothing fits in between
}

TEST_CASE("range page: every truncation and corruption reads as kError, never past the page") {
  const std::string good = Page({{"a", "1", 7, false}, {"b", "22", 8, false}}, true);
  auto read_all = [](std::string_view page) {
    Reader r(page);
    Entry e;
    Reader::Result res;
    int n = 0;
    while ((res = r.Next(&e)) == Reader::kEntry) {
      CHECK(e.key.data() >= page.data());
      CHECK(e.value.data() + e.value.size() <= page.data() + page.size());
      ++n;
    }
    return res;
  };
  CHECK(read_all(good) == Reader::kEnd);
  for (size_t cut = 0; cut < good.size(); ++cut) {
    CAPTURE(cut);
    // A prefix ends mid-entry (an error) or on an entry boundary (then `last` disagrees).
    CHECK(read_all(std::string_view(good).substr(0, cut)) == Reader::kError);
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      read_all(bad);  // must not crash nor read out of bounds (ASan); may still be valid
    }
  }
  std::string flags = good;
  flags[0] = 2;
  CHECK(read_all(flags) == Reader::kError);
  // Keys must ascend strictly.
  CHECK(read_all(Page({{"b", "1", 1, false}, {"a", "1", 1, false}}, false)) == Reader::kError);
  CHECK(read_all(Page({{"a", "1", 1, false}, {"a", "1", 2, false}}, false)) == Reader::kError);
  // A tombstone that carries a value.
  std::string tv = Page({{"a", "", 1, true}}, false);
  tv[kHeaderBytes + 4 + 1 + 8 + 1 + 3] = 1;  // value length 1
  tv.push_back('x');
  CHECK(read_all(tv) == Reader::kError);
}

}  // namespace
}  // namespace kv::range_page
