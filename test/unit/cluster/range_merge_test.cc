// RangeMerge with fake nodes: every live key once, in order, newest version across nodes,
// tombstones hiding older values; at most one page request out per node and pages asked for only
// as they are consumed (back-pressure); fewer than `from` failed nodes is complete, `from` is a
// failure; limit; malformed pages fail their node.
#include "cluster/range_merge.h"

#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kv::cluster {
namespace {

struct Item {
  uint64_t version;
  bool tombstone;
  std::string value;
};
using Data = std::map<std::string, Item>;

// Nodes holding Data, answering each Fetch with a page of at most page_keys entries, at once
// (sync) or when the test says (Answer).
struct Fake final : RangeMerge::Fetcher {
  std::vector<Data> nodes;
  size_t page_keys = 2;
  bool sync = true;
  RangeMerge* merge = nullptr;
  std::deque<std::pair<size_t, std::string>> pending;  // (node, start) not answered yet
  std::vector<int> out;                                // requests out per node
  std::vector<int> fetched;                            // pages asked for per node
  std::vector<bool> down;
  int max_out = 0;

  explicit Fake(std::vector<Data> d)
      : nodes(std::move(d)), out(nodes.size()), fetched(nodes.size()), down(nodes.size()) {}

  std::string PageOf(size_t node, const std::string& start) const {
    std::string p;
    const size_t begin = range_page::Begin(&p);
    size_t last = begin, n = 0;
    auto it = nodes[node].lower_bound(start);
    for (; it != nodes[node].end() && n < page_keys; ++it, ++n) {
      last = range_page::Append(&p, range_page::Entry{it->first, it->second.value,
                                                      it->second.version, it->second.tombstone});
    }
    range_page::Finish(&p, begin, last, it != nodes[node].end());
    return p;
  }
  void Fetch(size_t node, std::string_view start) override {
    ++out[node];
    ++fetched[node];
    max_out = std::max(max_out, out[node]);
    pending.emplace_back(node, std::string(start));
    if (sync) Answer();
  }
  // Answers the oldest pending request.
  void Answer() {
    auto [node, start] = pending.front();
    pending.pop_front();
    --out[node];
    if (down[node]) return merge->OnFailure(node, "down");
    // Views must not be needed after OnPage: a fresh string each time.
    merge->OnPage(node, PageOf(node, start));
  }
};

std::string Records(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string s;
  for (auto& [k, v] : kv) s += k + "\n" + v;
  return s;
}

// Runs the merge to its end, answering as it waits; returns the output.
std::string Drain(RangeMerge& m, Fake& f, size_t budget = 7, RangeMerge::State* end = nullptr) {
  std::string out;
  for (int guard = 0; guard < 100000; ++guard) {
    RangeMerge::State st = m.Produce(&out, budget);
    if (st == RangeMerge::State::kWaiting) {
      REQUIRE(!f.pending.empty());
      f.Answer();
      continue;
    }
    if (st == RangeMerge::State::kRunning) continue;
    if (end) *end = st;
    return out;
  }
  FAIL("merge did not end");
  return out;
}

// Three nodes, every key on two of them (from = 2), with one disagreement of each kind.
std::vector<Data> ThreeNodes() {
  std::vector<Data> d(3);
  for (int i = 0; i < 30; ++i) {
    const std::string k = "k" + std::to_string(100 + i);
    const Item it{10, false, "v" + std::to_string(i)};
    d[i % 3][k] = it;
    d[(i + 1) % 3][k] = it;
  }
  d[0]["k105"] = Item{20, false, "newer"};  // k105 lives on 2 and 0: 0 has the newer value
  d[1]["k106"] = Item{30, true, ""};        // k106 on 0 and 1: deleted later on 1
  d[2]["k107"] = Item{5, true, ""};         // k107 on 1 and 2: an older tombstone on 2
  return d;
}

std::string Expected() {
  std::vector<std::pair<std::string, std::string>> kv;
  for (int i = 0; i < 30; ++i) {
    if (i == 6) continue;
    kv.emplace_back("k" + std::to_string(100 + i), i == 5 ? "newer" : "v" + std::to_string(i));
  }
  return Records(kv);
}

TEST_CASE("RangeMerge: every key once, in order, newest version wins, tombstones hide values") {
  for (bool sync : {true, false}) {
    for (size_t page_keys : {1, 2, 3, 50}) {
      CAPTURE(sync);
      CAPTURE(page_keys);
      Fake f(ThreeNodes());
      f.sync = sync;
      f.page_keys = page_keys;
      RangeMerge m(3, 2, 0, &f);
      f.merge = &m;
      m.Start("k");
      RangeMerge::State end;
      CHECK(Drain(m, f, 7, &end) == Expected());
      CHECK(end == RangeMerge::State::kDone);
      CHECK(m.records() == 29);
      CHECK(f.max_out == 1);  // one request out per node at a time
    }
  }
}

TEST_CASE("RangeMerge: pages are asked for only as they are consumed (back-pressure)") {
  Fake f(ThreeNodes());
  f.page_keys = 1;
  RangeMerge m(3, 2, 0, &f);
  f.merge = &m;
  m.Start("k");
  CHECK(m.Primed());
  // Each node: its first page being merged, and two more asked for (answered at once here,
  // they wait behind it); then nothing more while they wait.
  for (int n : f.fetched) CHECK(n == 1 + RangeMerge::kAhead);
  CHECK(f.pending.empty());
  std::string out;
  CHECK(m.Produce(&out, 1) == RangeMerge::State::kRunning);  // one record: "k100"
  CHECK(out == "k100\nv0");
  // k100 was on nodes 0 and 1: each of them moved on to its next page and asked for one more.
  CHECK(f.fetched == std::vector<int>{4, 4, 3});
  // Whatever the client's pace, a node has at most the page being merged and kAhead more
  // fetched beyond what the merge consumed (one key per page here: records bound pages).
  size_t records = 1;
  while (m.Produce(&out, 1) == RangeMerge::State::kRunning) {
    ++records;
    for (size_t i = 0; i < 3; ++i) {
      CHECK(static_cast<size_t>(f.fetched[i]) <= records + 1 + RangeMerge::kAhead);
    }
  }
  CHECK(f.max_out == 1);
  CHECK(out == Expected());
}

TEST_CASE("RangeMerge: a stalled node holds the merge back (waiting) until its page arrives") {
  Fake f(ThreeNodes());
  f.sync = false;
  RangeMerge m(3, 2, 0, &f);
  f.merge = &m;
  m.Start("k");
  CHECK_FALSE(m.Primed());
  std::string out;
  CHECK(m.Produce(&out, 100) == RangeMerge::State::kWaiting);
  CHECK(out.empty());
  f.Answer();
  f.Answer();
  CHECK_FALSE(m.Primed());
  CHECK(m.Produce(&out, 100) == RangeMerge::State::kWaiting);  // node 2 still owes its page
  CHECK(out.empty());
  f.Answer();
  CHECK(m.Primed());
  // Records until a node's first page is used up; its second is asked for and not answered.
  CHECK(m.Produce(&out, 1000) == RangeMerge::State::kWaiting);
  CHECK(out == "k100\nv0k101\nv1");
  CHECK(f.pending.size() == 3);
}

TEST_CASE("RangeMerge: fewer than `from` failed nodes is still complete; `from` failed is not") {
  SUBCASE("one node down from the start, from = 2: complete") {
    for (size_t down = 0; down < 3; ++down) {
      Fake f(ThreeNodes());
      f.down[down] = true;
      RangeMerge m(3, 2, 0, &f);
      f.merge = &m;
      m.Start("k");
      CHECK(m.Primed());
      RangeMerge::State end;
      const std::string got = Drain(m, f, 7, &end);
      CHECK(end == RangeMerge::State::kDone);
      CHECK(m.failures() == 1);
      CHECK(m.first_error() == "down");
      // Every key is there once; where the down node held the only newer version (k105 on 0,
      // k106's tombstone and k107's value on 1) the older one is what is left, as with any
      // replica read.
      std::string want = Expected();
      if (down == 0) {
        want.replace(want.find("newer"), 5, "v5");
      } else if (down == 1) {
        want.replace(want.find("k107"), 7, "k106\nv6");
      }
      CHECK(got == want);
    }
  }
  SUBCASE("a node fails mid-stream: the others still have every key") {
    Fake f(ThreeNodes());
    f.page_keys = 2;
    RangeMerge m(3, 2, 0, &f);
    f.merge = &m;
    m.Start("k");
    std::string out;
    for (int i = 0; i < 5; ++i) m.Produce(&out, 1);
    f.down[2] = true;
    RangeMerge::State end;
    out += Drain(m, f, 7, &end);
    CHECK(end == RangeMerge::State::kDone);
    CHECK(m.failures() == 1);
    CHECK(out == Expected());
  }
  SUBCASE("two of three down, from = 2: failed, before any record") {
    Fake f(ThreeNodes());
    f.down[0] = f.down[2] = true;
    RangeMerge m(3, 2, 0, &f);
    f.merge = &m;
    m.Start("k");
    CHECK(m.state() == RangeMerge::State::kFailed);
    std::string out;
    CHECK(m.Produce(&out, 100) == RangeMerge::State::kFailed);
    CHECK(out.empty());
  }
  SUBCASE("two of three down with from = 3 (the default for 3 nodes): complete") {
    Fake f(ThreeNodes());
    f.down[0] = f.down[1] = true;
    RangeMerge m(3, 3, 0, &f);
    f.merge = &m;
    m.Start("k");
    RangeMerge::State end;
    Drain(m, f, 7, &end);
    CHECK(end == RangeMerge::State::kDone);
  }
  SUBCASE("the second failure mid-stream fails the merge") {
    Fake f(ThreeNodes());
    f.page_keys = 1;
    RangeMerge m(3, 2, 0, &f);
    f.merge = &m;
    m.Start("k");
    std::string out;
    m.Produce(&out, 1);
    f.down[0] = f.down[1] = true;
    RangeMerge::State end;
    Drain(m, f, 1, &end);
    CHECK(end == RangeMerge::State::kFailed);
    CHECK(m.failures() == 2);
  }
}

TEST_CASE("RangeMerge: limit stops after N records; pages can be resumed after the last key") {
  std::string all;
  std::string start = "k";
  for (int page = 0; page < 20; ++page) {
    Fake f(ThreeNodes());
    RangeMerge m(3, 2, 4, &f);
    f.merge = &m;
    m.Start(start);
    RangeMerge::State end;
    const std::string got = Drain(m, f, 1000, &end);
    CHECK(end == RangeMerge::State::kDone);
    if (got.empty()) break;
    CHECK(m.records() <= 4);
    all += got;
    // The next page starts right after the last key returned.
    const size_t nl = got.rfind('\n');
    const size_t key_at = got.rfind('k', nl);
    start = range_page::NextStart(got.substr(key_at, nl - key_at));
  }
  CHECK(all == Expected());
}

// A node read in place, as this node's engine is.
struct MapSource final : RangeMerge::Source {
  const Data* data;
  Data::const_iterator it;
  bool started = false;
  int fail_after = -1;  // a read error after this many entries (-1: never)
  explicit MapSource(const Data* d, std::string_view start) : data(d) {
    it = d->lower_bound(std::string(start));
  }
  bool Next(range_page::Entry* e, std::string* error) override {
    if (started) ++it;
    started = true;
    if (fail_after == 0) {
      *error = "read error";
      return false;
    }
    if (fail_after > 0) --fail_after;
    if (it == data->end()) return false;
    *e = range_page::Entry{it->first, it->second.value, it->second.version, it->second.tombstone};
    return true;
  }
};

TEST_CASE("RangeMerge: a node read in place (this node's engine) merges like a paged one") {
  for (size_t self = 0; self < 3; ++self) {
    CAPTURE(self);
    Fake f(ThreeNodes());
    RangeMerge m(3, 2, 0, &f);
    f.merge = &m;
    m.SetSource(self, std::make_unique<MapSource>(&f.nodes[self], "k"));
    m.Start("k");
    CHECK(f.fetched[self] == 0);  // never asked for pages
    RangeMerge::State end;
    CHECK(Drain(m, f, 5, &end) == Expected());
    CHECK(end == RangeMerge::State::kDone);
    CHECK(f.fetched[self] == 0);
  }
  // Its read error fails it like a node; with from = 2 the others still complete the range.
  Fake f(ThreeNodes());
  RangeMerge m(3, 2, 0, &f);
  f.merge = &m;
  auto src = std::make_unique<MapSource>(&f.nodes[0], "k");
  src->fail_after = 3;
  m.SetSource(0, std::move(src));
  m.Start("k");
  RangeMerge::State end;
  std::string want = Expected();
  want.replace(want.find("newer"), 5, "v5");  // k105's newer value was on node 0 only
  CHECK(Drain(m, f, 5, &end) == want);
  CHECK(m.failures() == 1);
  CHECK(m.first_error() == "read error");
}

TEST_CASE("RangeMerge: a malformed page fails its node like a transport error") {
  struct Bad final : RangeMerge::Fetcher {
    RangeMerge* merge = nullptr;
    void Fetch(size_t node, std::string_view) override {
      if (node == 1) return merge->OnPage(node, std::string("\x07garbage"));
      std::string p;
      const size_t b = range_page::Begin(&p);
      const size_t last = range_page::Append(&p, {"a", "1", 1, false});
      range_page::Finish(&p, b, last, false);
      merge->OnPage(node, std::move(p));
    }
  } bad;
  RangeMerge m(2, 2, 0, &bad);
  bad.merge = &m;
  m.Start("");
  CHECK(m.failures() == 1);
  CHECK(m.first_error().find("malformed") == 0);
  std::string out;
  CHECK(m.Produce(&out, 100) == RangeMerge::State::kDone);
  CHECK(out == "a\n1");
}

}  // namespace
}  // namespace kv::cluster
