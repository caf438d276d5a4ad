// Anti-entropy pieces: the hash tree (one scan, order-free sums, differences found by level),
// ranges, the repair-history file, the tombstone GC rule, and a whole repair between two
// in-process stores (a driver on one, a RepairServer on the other, joined by a direct link).
#include "cluster/repair.h"

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "../storage/storage_test_util.h"
#include "common/version.h"

namespace kv::cluster {
namespace {

using storage::testutil::TempDir;

const std::vector<std::string> kUrls = {"http://a:1", "http://b:2", "http://c:3"};

struct Node {
  TempDir tmp;
  std::unique_ptr<storage::Engine> engine;
  Hlc hlc{1};
  Ring ring{kUrls};
  RangeMap ranges{&ring, kUrls.size()};
  RepairCounters counters;
  std::unique_ptr<RepairStore> store;
  Node() {
    storage::Options o;
    o.dir = tmp.store();
    o.fsync = storage::FsyncPolicy::kNever;
    o.background = false;
    REQUIRE(storage::Engine::Open(o, &engine).ok());
    store = std::make_unique<RepairStore>(engine.get(), &hlc, &ranges, 2000, &counters);
  }
  std::map<std::string, std::pair<uint64_t, std::string>> Dump() const {
    std::map<std::string, std::pair<uint64_t, std::string>> out;
    for (auto it = engine->Scan("", std::nullopt); it->Valid(); it->Next()) {
      out[std::string(it->key())] = {it->version(),
                                     it->tombstone() ? "<tombstone>" : std::string(it->value())};
    }
    return out;
  }
};

// Versions a minute old (within any clock-skew bound), the same base for every store.
uint64_t V(uint64_t us) {
  static const uint64_t base = Hlc::RealWallUs() - 60000000;
  return version::Make(base + us, 1);
}

// Every request goes straight to the peer's RepairServer::Handle on the caller's thread.
struct DirectLink final : RepairLink {
  std::map<size_t, RepairServer*> servers;
  size_t calls = 0;
  bool fail = false;
  bool Call(size_t node, PeerOp op, const std::string& body, std::string* answer,
            std::string* error) override {
    ++calls;
    if (fail) {
      *error = "down";
      return false;
    }
    PeerResponse r = servers.at(node)->Handle(op, body);
    if (r.kind != PeerResponse::kRepairData) {
      *error = r.error;
      return false;
    }
    *answer = std::move(r.value);
    return true;
  }
};

// Starts a repair on driver and waits (bounded) until it finished; its summary.
RepairSummary RunRepair(RepairDriver* driver) {
  uint64_t running = 0;
  const uint64_t id = driver->Start(false, &running);
  REQUIRE(id != 0);
  RepairSummary s;
  for (int i = 0; i < 2000 && !driver->Finished(id, &s); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a unit test of a thread
  }
  REQUIRE(driver->Finished(id, &s));
  return s;
}

TEST_CASE("tree: order-free sums, and a changed entry changes exactly its path") {
  RepairTree a, b;
  a.Add("x", 5, false);
  a.Add("y", 6, true);
  b.Add("y", 6, true);
  b.Add("x", 5, false);
  a.Finish();
  b.Finish();
  CHECK(a.node(0, 0) == b.node(0, 0));
  CHECK(a.keys() == 2);
  RepairTree c;
  c.Add("x", 5, false);
  c.Add("y", 6, false);  // a value where a holds a tombstone of the same version
  c.Finish();
  CHECK(c.node(0, 0) != a.node(0, 0));
  const uint32_t leaf = RepairLeafOf("y");
  CHECK(c.node(4, leaf) != a.node(4, leaf));
  CHECK(c.node(3, leaf / 16) != a.node(3, leaf / 16));
  CHECK(c.node(1, leaf >> 12) != a.node(1, leaf >> 12));
  const uint32_t other = (leaf + 1) % proto::kRepairLeaves;
  if (other != RepairLeafOf("x")) CHECK(c.node(4, other) == a.node(4, other));
  RepairTree empty;
  empty.Finish();
  CHECK(empty.node(0, 0) == 0);
}

TEST_CASE("ranges: from = cluster size is one range of every node; smaller, every subset") {
  Ring ring(kUrls);
  RangeMap all(&ring, 3);
  CHECK(all.single());
  auto r = all.RangesOf(1);
  REQUIRE(r.size() == 1);
  CHECK(r[0].members == std::vector<uint32_t>{0, 1, 2});
  CHECK(all.RangeOf("anything") == r[0].id);
  RangeMap two(&ring, 2);
  auto r2 = two.RangesOf(0);
  CHECK(r2.size() == 2);  // {a,b} and {a,c}
  for (int i = 0; i < 200; ++i) {
    const std::string k = "k" + std::to_string(i);
    uint32_t rep[2];
    ring.Replicas(k, 2, rep);
    std::vector<uint32_t> m(rep, rep + 2);
    std::sort(m.begin(), m.end());
    CHECK(two.RangeOf(k) == two.IdOf(m));
  }
}

TEST_CASE("repair history: written atomically, read back, damaged files refused") {
  TempDir tmp;
  const std::string path = tmp.path() + "/repair-history";
  RepairHistory h(path);
  std::string err;
  CHECK(h.Load(&err));  // missing: empty
  CHECK(h.LastFull(42) == 0);
  REQUIRE(h.Record(42, 1000, &err));
  REQUIRE(h.Record(0xffffffffffffffffull, 7, &err));
  REQUIRE(h.Record(42, 900, &err));  // never goes back
  CHECK(h.LastFull(42) == 1000);
  RepairHistory again(path);
  REQUIRE(again.Load(&err));
  CHECK(again.LastFull(42) == 1000);
  CHECK(again.LastFull(0xffffffffffffffffull) == 7);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "kv-repair-history 1\n000000000000002a 1000\nffffffffffffffff 7\n");
  std::map<uint64_t, uint64_t> m;
  CHECK_FALSE(RepairHistory::Decode("kv-repair-history 2\n", &m));
  CHECK_FALSE(RepairHistory::Decode("kv-repair-history 1\n2a 1000\n", &m));
  CHECK_FALSE(RepairHistory::Decode("kv-repair-history 1\n000000000000002a 1000", &m));
  CHECK_FALSE(RepairHistory::Decode("kv-repair-history 1\n000000000000002a -1\n", &m));
  CHECK_FALSE(RepairHistory::Decode("kv-repair-history 1\n000000000000002a 10x\n", &m));
  CHECK(RepairHistory::Decode("kv-repair-history 1\n", &m));
  { std::ofstream(path) << "garbage"; }
  RepairHistory damaged(path);
  CHECK_FALSE(damaged.Load(&err));
  CHECK(damaged.LastFull(42) == 0);
}

TEST_CASE("GC rule: a tombstone goes only once a full repair started margin after it") {
  TempDir tmp;
  Ring ring(kUrls);
  RangeMap ranges(&ring, 3);
  RepairHistory h(tmp.path() + "/repair-history");
  TombstoneGcRule rule{&ranges, &h, 3000000};
  const uint64_t t = 1700000000000000ull;
  const uint64_t v = version::Make(t, 4);
  CHECK_FALSE(rule("k", v));  // no repair ever
  std::string err;
  REQUIRE(h.Record(ranges.RangeOf("k"), t + 3000000, &err));
  CHECK_FALSE(rule("k", v));  // started within the margin: the tombstone may have been in flight
  REQUIRE(h.Record(ranges.RangeOf("k"), t + 3000001, &err));
  CHECK(rule("k", v));
  CHECK_FALSE(rule("k", version::Make(t + 1, 4)));  // a younger tombstone
  // Legacy (ms) versions age by their ms.
  CHECK(rule("k", version::MakeLegacy(t / 1000 - 1, 0, 1)));
}

TEST_CASE("compaction keeps an expired tombstone the filter refuses, drops one it allows") {
  TempDir tmp;
  bool allow = false;
  storage::Options o;
  o.dir = tmp.store();
  o.background = false;
  o.tombstone_gc_seconds = 0;
  o.tombstone_gc_filter = [&allow](std::string_view, uint64_t) { return allow; };
  std::unique_ptr<storage::Engine> e;
  REQUIRE(storage::Engine::Open(o, &e).ok());
  const uint64_t old = version::Make(Hlc::RealWallUs() - 10000000, 1);
  REQUIRE(e->Put("k", "v", old).ok());
  REQUIRE(e->Remove("k", old + 1024).ok());
  REQUIRE(e->Flush().ok());
  REQUIRE(e->CompactAll().ok());
  storage::ReadResult r;
  REQUIRE(e->Get("k", &r).ok());
  CHECK(r.kind == storage::ReadResult::kTombstone);
  allow = true;
  REQUIRE(e->CompactAll().ok());
  REQUIRE(e->Get("k", &r).ok());
  CHECK(r.kind == storage::ReadResult::kAbsent);
}

TEST_CASE("a repair makes two stores identical, both ways, and a second one moves nothing") {
  Node a, b;
  // Common entries, entries on one side only, a newer value on each side, tombstones.
  for (int i = 0; i < 3000; ++i) {
    const std::string k = "key" + std::to_string(i);
    REQUIRE(a.engine->Put(k, "v" + std::to_string(i), V(i)).ok());
    REQUIRE(b.engine->Put(k, "v" + std::to_string(i), V(i)).ok());
  }
  for (int i = 0; i < 50; ++i) {
    REQUIRE(a.engine->Put("only-a" + std::to_string(i), "A", V(10)).ok());
    REQUIRE(b.engine->Put("only-b" + std::to_string(i), "B", V(10)).ok());
  }
  REQUIRE(a.engine->Put("key7", "newer-on-a", V(100000)).ok());
  REQUIRE(b.engine->Put("key8", "newer-on-b", V(100000)).ok());
  REQUIRE(b.engine->Remove("key9", V(100000)).ok());
  REQUIRE(a.engine->Remove("gone", V(5)).ok());
  REQUIRE(b.engine->Flush().ok());  // some of b's entries in a segment, some in the memtable
  REQUIRE(b.engine->Put("key10", "late", V(200000)).ok());

  RepairServer server_b(b.store.get());
  DirectLink link;
  link.servers[1] = &server_b;
  link.fail = false;
  // b and c are a's peers; c is "b" too (the same server), so the exchange runs twice.
  link.servers[2] = &server_b;
  TempDir hist;
  RepairHistory history(hist.path() + "/repair-history");
  RepairDriverOptions opts;
  opts.page_bytes = 4096;  // many pages
  opts.rate_bytes_per_s = 1ull << 40;
  RepairDriver driver(a.store.get(), 0, &history, &link, opts);
  RepairSummary s = RunRepair(&driver);
  CHECK_MESSAGE(s.ok, s.error);
  CHECK(a.Dump() == b.Dump());
  CHECK(a.Dump().at("key8").second == "newer-on-b");
  CHECK(b.Dump().at("key7").second == "newer-on-a");
  CHECK(a.Dump().at("key9").second == "<tombstone>");
  CHECK(b.Dump().at("gone").second == "<tombstone>");
  CHECK(s.entries_received == 50 + 1 + 1 + 1);  // only-b*, key8, key9, key10
  CHECK(s.entries_sent == 50 + 1 + 1);          // only-a*, key7, gone
  CHECK(history.LastFull(a.ranges.RangeOf("x")) != 0);
  // Identical now: a second repair only compares trees.
  s = RunRepair(&driver);
  CHECK(s.ok);
  CHECK(s.keys_differed == 0);
  CHECK(s.entries_sent + s.entries_received == 0);
  CHECK(s.bytes_sent + s.bytes_received < 2000);  // the root's 16 children per peer
}

TEST_CASE("a repair that cannot reach a peer fails and records nothing") {
  Node a;
  REQUIRE(a.engine->Put("k", "v", V(1)).ok());
  DirectLink link;
  link.fail = true;
  TempDir hist;
  RepairHistory history(hist.path() + "/repair-history");
  RepairDriver driver(a.store.get(), 0, &history, &link, RepairDriverOptions());
  RepairSummary s = RunRepair(&driver);
  CHECK_FALSE(s.ok);
  CHECK(s.ranges_failed == 1);
  CHECK(history.LastFull(a.ranges.RangeOf("k")) == 0);
  CHECK(s.Json().find("\"state\":\"failed\"") != std::string::npos);
}

TEST_CASE("RepairServer: malformed requests are invalid, apply outside the range refused") {
  Node b;
  RepairServer server(b.store.get());
  PeerResponse r = server.Handle(PeerOp::kRepairTree, "junk");
  CHECK(r.kind == PeerResponse::kError);
  CHECK(r.invalid);
  std::string body;
  proto::EncodeRepairApplyHead(&body, 12345, 1, 1);  // not a range id of this ring
  proto::EncodeRepairEntry(&body, proto::RepairEntry{"k", V(1), false, "v"});
  r = server.Handle(PeerOp::kRepairApply, body);
  CHECK(r.invalid);
  CHECK(b.Dump().empty());
  // A version too far ahead of this clock is refused like a write.
  body.clear();
  proto::EncodeRepairApplyHead(&body, b.ranges.RangeOf("k"), 1, 1);
  proto::EncodeRepairEntry(
      &body,
      proto::RepairEntry{"k", version::Make(Hlc::RealWallUs() + 60000000, 1), false, "future"});
  r = server.Handle(PeerOp::kRepairApply, body);
  REQUIRE(r.kind == PeerResponse::kRepairData);
  proto::RepairData d;
  std::string err;
  REQUIRE(proto::DecodeRepairData(r.value, &d, &err));
  CHECK(d.applied == 0);
  CHECK(d.refused == 1);
  CHECK(b.Dump().empty());
  server.Stop();
  bool answered = false;
  server.Submit(PeerOp::kRepairTree, "x",
                [&](PeerResponse&& resp) { answered = resp.kind == PeerResponse::kError; });
  CHECK(answered);  // after Stop: at once, with an error
}

}  // namespace
}  // namespace kv::cluster

namespace kv::cluster {
namespace {

TEST_CASE("RepairServer: digests leave values out; keys mode answers the newest, skips absent") {
  Node b;
  REQUIRE(b.engine->Put("a", "value-a", V(1)).ok());
  REQUIRE(b.engine->Put("c", "value-c", V(2)).ok());
  REQUIRE(b.engine->Remove("d", V(3)).ok());
  RepairServer server(b.store.get());
  const uint64_t range = b.ranges.RangeOf("a");
  std::string all(proto::kRepairBitmapBytes, '\xff');
  proto::RepairEntriesRequest q;
  q.range = range;
  q.session = 1;
  q.max_bytes = 1 << 20;
  q.digest = true;
  q.leaves = all;
  std::string body;
  proto::EncodeRepairEntriesRequest(&body, q);
  PeerResponse r = server.Handle(PeerOp::kRepairEntries, body);
  REQUIRE(r.kind == PeerResponse::kRepairData);
  proto::RepairData d;
  std::string err;
  REQUIRE(proto::DecodeRepairData(r.value, &d, &err));
  REQUIRE(d.entries.size() == 3);
  CHECK(d.entries[0].digest);
  CHECK(d.entries[0].value.empty());
  CHECK(d.entries[2].tombstone);
  proto::RepairEntriesRequest k;
  k.range = range;
  k.session = 1;
  k.max_bytes = 1 << 20;
  k.by_keys = true;
  k.keys = {"a", "b", "d"};
  body.clear();
  proto::EncodeRepairEntriesRequest(&body, k);
  r = server.Handle(PeerOp::kRepairEntries, body);
  REQUIRE(r.kind == PeerResponse::kRepairData);
  REQUIRE(proto::DecodeRepairData(r.value, &d, &err));
  REQUIRE(d.entries.size() == 2);  // "b" is absent
  CHECK(d.entries[0].key == "a");
  CHECK(d.entries[0].value == "value-a");
  CHECK(d.entries[1].key == "d");
  CHECK(d.entries[1].tombstone);
  CHECK_FALSE(d.more);
}

}  // namespace
}  // namespace kv::cluster

namespace kv::cluster {
namespace {

TEST_CASE("a repair fetches values the peer holds newer by key, page by page") {
  Node a, b;
  for (int i = 0; i < 200; ++i) {
    const std::string k = "k" + std::to_string(1000 + i);
    REQUIRE(a.engine->Put(k, "old", V(1)).ok());
    REQUIRE(b.engine->Put(k, i % 10 == 0 ? std::string(3000, 'n') : "old", V(i % 10 == 0 ? 9 : 1))
                .ok());
  }
  RepairServer server_b(b.store.get());
  DirectLink link;
  link.servers[1] = &server_b;
  link.servers[2] = &server_b;
  TempDir hist;
  RepairHistory history(hist.path() + "/repair-history");
  RepairDriverOptions opts;
  opts.page_bytes = 4096;  // one 3000-byte value per answer: `more` set, asked again
  opts.rate_bytes_per_s = 1ull << 40;
  RepairDriver driver(a.store.get(), 0, &history, &link, opts);
  RepairSummary s = RunRepair(&driver);
  CHECK_MESSAGE(s.ok, s.error);
  CHECK(s.entries_received == 20);
  CHECK(s.entries_sent == 0);
  CHECK(a.Dump() == b.Dump());
  // Digests, then the 20 values: far less than the 200 entries of the differing leaves' worth.
  CHECK(s.bytes_received < 20 * 3000 + 200 * 40 + 10000);
}

}  // namespace
}  // namespace kv::cluster
