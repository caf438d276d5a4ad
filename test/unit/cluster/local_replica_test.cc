// LocalReplica over a real engine: reads at once, writes batched until Commit, versions observed,
// large values at once; with a GroupCommitter (--fsync always) answers only after the committer's
// thread made the batch durable and the loop delivered it.
#include "cluster/local_replica.h"

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "../storage/storage_test_util.h"
#include "common/version.h"

namespace kv::cluster {
namespace {

using storage::testutil::TempDir;

struct Answers final : PeerWaiter {
  std::map<uint64_t, PeerResponse> got;
  void OnPeerResponse(uint64_t cookie, PeerResponse&& r) override {
    CHECK(got.count(cookie) == 0);  // exactly once
    got[cookie] = std::move(r);
  }
};

struct Store {
  TempDir tmp;
  std::unique_ptr<storage::Engine> engine;
  explicit Store(storage::FsyncPolicy fsync = storage::FsyncPolicy::kNever) {
    storage::Options o;
    o.dir = tmp.store();
    o.fsync = fsync;
    REQUIRE(storage::Engine::Open(o, &engine).ok());
  }
  uint64_t LogWrites() const { return engine->GetStats().disk_bytes_written; }
};

PeerRequest Put(std::string_view k, std::string_view v, uint64_t version) {
  return PeerRequest{PeerOp::kPut, k, v, version};
}

TEST_CASE("LocalReplica: writes wait for Commit, go in one batch, and are then read back") {
  Store s;
  Hlc hlc(0);
  LocalReplica r(s.engine.get(), &hlc);
  Answers a;
  const uint64_t v = version::Make(1000000, 3);
  r.Execute(Put("a", "1", v), &a, 1);
  r.Execute(Put("b", "2", v + 1), &a, 2);
  r.Execute(PeerRequest{PeerOp::kRemove, "c", {}, v + 2}, &a, 3);
  CHECK(a.got.empty());
  CHECK(r.pending() == 3);
  CHECK(hlc.Last() >= v + 2);  // a peer's versions are observed on arrival
  // Not committed yet: a read does not see them.
  r.Execute(PeerRequest{PeerOp::kGet, "a", {}, 0}, &a, 4);
  REQUIRE(a.got.count(4) == 1);
  CHECK(a.got[4].kind == PeerResponse::kAbsent);
  CHECK(r.Commit());
  CHECK_FALSE(r.Commit());
  CHECK(r.pending() == 0);
  for (uint64_t c : {1, 2, 3}) {
    REQUIRE(a.got.count(c) == 1);
    CHECK(a.got[c].kind == PeerResponse::kStored);
  }
  CHECK(a.got[2].version == v + 1);
  r.Execute(PeerRequest{PeerOp::kGet, "b", {}, 0}, &a, 5);
  CHECK(a.got[5].kind == PeerResponse::kValue);
  CHECK(a.got[5].value == "2");
  r.Execute(PeerRequest{PeerOp::kGet, "c", {}, 0}, &a, 6);
  CHECK(a.got[6].kind == PeerResponse::kTombstone);
  // An older version changes nothing and answers with the one kept.
  r.Execute(Put("b", "old", v), &a, 7);
  r.Commit();
  CHECK(a.got[7].kind == PeerResponse::kStored);
  CHECK(a.got[7].version == v + 1);
}

TEST_CASE("LocalReplica: a large value is written at once, with what was queued before it") {
  Store s;
  Hlc hlc(0);
  LocalReplica r(s.engine.get(), &hlc);
  Answers a;
  const std::string big(LocalReplica::kMaxBatchedValue + 1, 'x');
  r.Execute(Put("small", "s", 10), &a, 1);
  r.Execute(Put("big", big, 11), &a, 2);
  CHECK(a.got.count(2) == 1);
  CHECK(a.got[2].kind == PeerResponse::kStored);
  r.Commit();
  CHECK(a.got.count(1) == 1);
}

TEST_CASE("LocalReplica: an answer that queues a write leaves it for the next Commit") {
  Store s;
  Hlc hlc(0);
  LocalReplica r(s.engine.get(), &hlc);
  struct Chain final : PeerWaiter {
    LocalReplica* r;
    int answers = 0;
    void OnPeerResponse(uint64_t cookie, PeerResponse&& resp) override {
      CHECK(resp.kind == PeerResponse::kStored);
      ++answers;
      if (cookie < 3)
        r->Execute(PeerRequest{PeerOp::kPut, "k", "v", 100 + cookie + 1}, this, cookie + 1);
      CHECK_FALSE(r->Commit());  // re-entered: nothing happens now
    }
  } chain;
  chain.r = &r;
  r.Execute(Put("k", "v", 100), &chain, 0);
  int rounds = 0;
  while (r.Commit()) ++rounds;
  CHECK(rounds == 4);
  CHECK(chain.answers == 4);
}

TEST_CASE("LocalReplica: with a GroupCommitter, writes are answered once durable, by the loop") {
  Store s(storage::FsyncPolicy::kAlways);
  Hlc hlc(0);
  GroupCommitter committer(s.engine.get());
  std::atomic<int> wakes{0};
  LocalReplica r(s.engine.get(), &hlc, &committer, [&wakes] { wakes.fetch_add(1); });
  Answers a;
  for (uint64_t i = 0; i < 50; ++i) {
    r.Execute(Put("k" + std::to_string(i), "v", 1000 + i), &a, i);
  }
  CHECK(r.Commit());  // returns without waiting for the disk
  // Answers only come through the loop (DeliverSynced), never from the committer's thread.
  CHECK(a.got.empty());
  r.Drain();  // waits for the committer, then delivers on this thread
  CHECK(r.pending() == 0);
  REQUIRE(a.got.size() == 50);
  for (auto& [cookie, resp] : a.got) CHECK(resp.kind == PeerResponse::kStored);
  // Durable and visible.
  r.Execute(PeerRequest{PeerOp::kGet, "k7", {}, 0}, &a, 100);
  CHECK(a.got[100].kind == PeerResponse::kValue);
  committer.Stop();          // joins the thread: every wake-up has happened
  CHECK(wakes.load() >= 1);  // the loop was woken to deliver
}

TEST_CASE("GroupCommitter: many batches from two loops, each answered exactly once") {
  Store s(storage::FsyncPolicy::kAlways);
  Hlc hlc(0);
  GroupCommitter committer(s.engine.get());
  LocalReplica r1(s.engine.get(), &hlc, &committer, [] {});
  LocalReplica r2(s.engine.get(), &hlc, &committer, [] {});
  Answers a1, a2;
  for (uint64_t round = 0; round < 20; ++round) {
    for (uint64_t i = 0; i < 10; ++i) {
      const uint64_t c = round * 10 + i;
      r1.Execute(Put("one" + std::to_string(c), "v", 5000 + c), &a1, c);
      r2.Execute(Put("two" + std::to_string(c), "v", 5000 + c), &a2, c);
    }
    r1.Commit();
    r2.Commit();
    r1.DeliverSynced();  // whatever is durable by now
  }
  r1.Drain();
  r2.Drain();
  CHECK(a1.got.size() == 200);
  CHECK(a2.got.size() == 200);
  committer.Stop();
}

}  // namespace
}  // namespace kv::cluster
