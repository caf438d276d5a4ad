#include "cluster/ring.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace kv::cluster {
namespace {

std::vector<std::string> Urls(size_t n, uint16_t base_port = 8080) {
  std::vector<std::string> urls;
  for (size_t i = 0; i < n; ++i) {
    urls.push_back("http://127.0.0.1:" + std::to_string(base_port + i));
  }
  return urls;
}

std::string RandomKey(std::mt19937_64& rng) {
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  size_t len = 4 + rng() % 28;
  std::string k(len, ' ');
  for (char& c : k) c = kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return k;
}

// Brute force: the replica order by sorting on the exposed scores (URL breaks ties).
std::vector<uint32_t> ReferenceOrder(const Ring& ring, std::string_view key) {
  std::vector<uint32_t> order(ring.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    uint64_t sa = ring.Score(key, a), sb = ring.Score(key, b);
    if (sa != sb) return sa > sb;
    return ring.url(a) < ring.url(b);
  });
  return order;
}

void CheckBalance(size_t nodes, size_t keys, bool random_keys) {
  Ring ring(Urls(nodes));
  std::vector<std::vector<uint64_t>> counts(nodes, std::vector<uint64_t>(nodes, 0));
  std::mt19937_64 rng(12345 + nodes);
  std::vector<uint32_t> out(nodes);
  std::string key;
  for (size_t k = 0; k < keys; ++k) {
    key = random_keys ? RandomKey(rng) : "user:" + std::to_string(k);
    ring.Replicas(key, nodes, out.data());
    for (size_t pos = 0; pos < nodes; ++pos) ++counts[pos][out[pos]];
  }
  for (size_t pos = 0; pos < nodes; ++pos) {
    auto [mn, mx] = std::minmax_element(counts[pos].begin(), counts[pos].end());
    INFO("nodes=" << nodes << " position=" << pos << " min=" << *mn << " max=" << *mx);
    REQUIRE(*mn > 0);
    CHECK(static_cast<double>(*mx) / static_cast<double>(*mn) <= 1.05);
  }
}

TEST_CASE("Ring: balance of 1M random keys over 3, 5 and 10 nodes, every position") {
  for (size_t nodes : {3, 5, 10}) CheckBalance(nodes, 1000000, true);
}

TEST_CASE("Ring: balance of 1M sequential keys over 5 nodes") {
  CheckBalance(5, 1000000, false);
}

TEST_CASE("Ring: Replicas matches a brute-force sort and has the prefix property") {
  for (size_t nodes : {1, 2, 3, 7, 33, 40}) {  // 33 and 40 exercise the n > 32 selection path
    Ring ring(Urls(nodes, 9000));
    std::mt19937_64 rng(nodes);
    std::vector<uint32_t> out(nodes);
    for (int k = 0; k < 300; ++k) {
      std::string key = RandomKey(rng);
      std::vector<uint32_t> ref = ReferenceOrder(ring, key);
      for (size_t n = 0; n <= nodes; ++n) {
        std::fill(out.begin(), out.end(), UINT32_MAX);
        ring.Replicas(key, n, out.data());
        for (size_t i = 0; i < n; ++i) REQUIRE(out[i] == ref[i]);
        for (size_t i = n; i < nodes; ++i) REQUIRE(out[i] == UINT32_MAX);  // writes only n
      }
      CHECK(ring.Primary(key) == ref[0]);
    }
  }
}

TEST_CASE("Ring: order depends on the URL set, not on the list order") {
  std::vector<std::string> urls = Urls(7);
  urls.push_back("http://[::1]:7000");
  urls.push_back("http://node-a.example:80");
  Ring a(urls);
  std::mt19937_64 rng(7);
  std::vector<std::string> shuffled = urls;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  Ring b(shuffled);
  uint32_t oa[9], ob[9];
  for (int k = 0; k < 20000; ++k) {
    std::string key = RandomKey(rng);
    a.Replicas(key, 9, oa);
    b.Replicas(key, 9, ob);
    for (int i = 0; i < 9; ++i) REQUIRE(a.url(oa[i]) == b.url(ob[i]));
  }
}

TEST_CASE("Ring: two instances built from the same list agree") {
  Ring a(Urls(5)), b(Urls(5));
  std::mt19937_64 rng(99);
  uint32_t oa[5], ob[5];
  for (int k = 0; k < 20000; ++k) {
    std::string key = RandomKey(rng);
    a.Replicas(key, 3, oa);
    b.Replicas(key, 3, ob);
    REQUIRE(std::equal(oa, oa + 3, ob));
  }
  CHECK(a.Fingerprint() == b.Fingerprint());
}

TEST_CASE("Ring: known keys keep their placement (golden values)") {
  // Every node, and every future build, must compute the same orders: a change to the hashing
  // would make nodes of a mixed-version cluster disagree about replicas.
  Ring ring(Urls(5));
  struct Golden {
    const char* key;
    uint32_t order[5];
  };
  const Golden golden[] = {
      {"", {2, 1, 4, 3, 0}},
      {"hello", {2, 0, 4, 3, 1}},
      {"user:42", {1, 0, 3, 2, 4}},
  };
  for (const Golden& g : golden) {
    INFO(g.key);
    uint32_t out[5];
    ring.Replicas(g.key, 5, out);
    CHECK(std::equal(out, out + 5, g.order));
    CHECK(ring.Primary(g.key) == g.order[0]);
  }
  CHECK(ring.Fingerprint() == 0x904ac074dbc4eb23ull);
}

TEST_CASE("Ring: adding a node moves only keys that now belong to it") {
  Ring before(Urls(5));
  Ring after(Urls(6));  // same 5 URLs plus one
  std::mt19937_64 rng(5);
  size_t moved = 0, total = 100000;
  for (size_t k = 0; k < total; ++k) {
    std::string key = RandomKey(rng);
    uint32_t p0 = before.Primary(key), p1 = after.Primary(key);
    if (after.url(p1) != before.url(p0)) {
      REQUIRE(p1 == 5);  // the only way a primary changes is to the new node
      ++moved;
    }
    // The relative order of the old nodes is unchanged.
    uint32_t ob[5], oa[6];
    before.Replicas(key, 5, ob);
    after.Replicas(key, 6, oa);
    std::vector<std::string> old_order, new_order;
    for (uint32_t i : ob) old_order.push_back(before.url(i));
    for (uint32_t i : oa) {
      if (i != 5) new_order.push_back(after.url(i));
    }
    REQUIRE(old_order == new_order);
  }
  // About 1/6 of the keys move.
  CHECK(moved > total / 6 - total / 100);
  CHECK(moved < total / 6 + total / 100);
}

TEST_CASE("Ring: fingerprint") {
  std::vector<std::string> urls = Urls(4);
  std::vector<std::string> reversed(urls.rbegin(), urls.rend());
  CHECK(Ring(urls).Fingerprint() == Ring(reversed).Fingerprint());
  std::vector<std::string> other = urls;
  other[2] = "http://127.0.0.1:9999";
  CHECK(Ring(urls).Fingerprint() != Ring(other).Fingerprint());
  std::vector<std::string> fewer(urls.begin(), urls.begin() + 3);
  CHECK(Ring(urls).Fingerprint() != Ring(fewer).Fingerprint());
  CHECK(Ring(urls).size() == 4);
  CHECK(Ring(urls).url(1) == urls[1]);
}

TEST_CASE("Ring: ParseUrl accepts") {
  struct Case {
    const char* url;
    const char* host;
    uint16_t port;
  };
  const Case cases[] = {
      {"http://127.0.0.1:8080", "127.0.0.1", 8080},
      {"http://127.0.0.1:8080/", "127.0.0.1", 8080},
      {"http://localhost:1", "localhost", 1},
      {"http://node-3.kv.internal:65535", "node-3.kv.internal", 65535},
      {"HTTP://Example.COM:80", "Example.COM", 80},
      {"http://[::1]:9000", "::1", 9000},
      {"http://[fe80::1:2:3]:443/", "fe80::1:2:3", 443},
      {"http://[::ffff:10.0.0.1]:8080", "::ffff:10.0.0.1", 8080},
      {"http://host:008080", "host", 8080},
  };
  for (const Case& c : cases) {
    INFO(c.url);
    std::string host;
    uint16_t port = 0;
    REQUIRE(Ring::ParseUrl(c.url, &host, &port));
    CHECK(host == c.host);
    CHECK(port == c.port);
  }
  CHECK(Ring::ParseUrl("http://a:1", nullptr, nullptr));
}

TEST_CASE("Ring: ParseUrl rejects") {
  const char* cases[] = {
      "",
      "127.0.0.1:8080",          // no scheme
      "https://127.0.0.1:8080",  // other scheme
      "ftp://host:21",
      "http:/host:80",
      "http://host",        // missing port
      "http://host:",       // empty port
      "http://host:0",      // zero port
      "http://host:65536",  // overflow
      "http://host:99999999999999999999",
      "http://host:80a",
      "http://host:-80",
      "http://host:+80",
      "http://:8080",  // empty host
      "http://host:80/path",
      "http://host:80//",
      "http://host:80?x=1",
      "http://user@host:80",
      "http://ho st:80",
      "http://host:80:90",
      "http://[::1]",
      "http://[::1:8080",
      "http://[]:8080",
      "http://[::1]8080",
      "http://[zz::1]:8080",
      "http://::1:8080",
      " http://host:80",
      "http://host:80 ",
  };
  for (const char* url : cases) {
    INFO(url);
    std::string host = "unchanged";
    uint16_t port = 7;
    CHECK_FALSE(Ring::ParseUrl(url, &host, &port));
    CHECK(host == "unchanged");
    CHECK(port == 7);
  }
}

}  // namespace
}  // namespace kv::cluster
