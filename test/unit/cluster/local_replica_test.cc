// LocalReplica over a real engine: reads at once, writes batched until Commit, versions observed,
// large values at once; with a GroupCommitter (--fsync always) answers only after the committer's
// thread made the batch durable and the loop delivered it.
#include "cluster/local_replica.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "../storage/storage_test_util.h"
#include "cluster/clock_skew.h"
#include "cluster/hint_file.h"
#include "common/range_page.h"
#include "common/version.h"
#include "storage/file_io.h"

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

// Holds every fdatasync the engine makes (storage::g_sync_hook) until released (each by the
// order it was called in, or all), and records what each covered: the log's records written
// when the sync was called (the file's position: a preallocated log's size runs ahead of them),
// published as durable when it returns.
struct SyncGate {
  std::mutex mu;
  std::condition_variable cv;
  bool all_open = false;
  std::set<int> open;    // syncs released one by one (1: the first called)
  int fail_errno = 0;    // returned by the syncs instead of the real one (0: the real one)
  int fail_only = 0;     // n: only the n-th sync called fails (0: every one)
  int entered = 0;       // syncs called
  int returned = 0;      // syncs that returned
  uint64_t durable = 0;  // bytes covered by the syncs that returned
  static SyncGate* current;
  static int Sync(int fd) {
    SyncGate* g = current;
    const off_t written = ::lseek(fd, 0, SEEK_CUR);
    if (written < 0) return -1;
    std::unique_lock<std::mutex> l(g->mu);
    const int me = ++g->entered;
    g->cv.notify_all();
    g->cv.wait(l, [g, me] { return g->all_open || g->open.count(me) != 0; });
    ++g->returned;
    g->cv.notify_all();
    if (g->fail_errno != 0 && (g->fail_only == 0 || g->fail_only == me)) {
      errno = g->fail_errno;
      return -1;
    }
    const int rc = ::fdatasync(fd);
    g->durable = std::max(g->durable, static_cast<uint64_t>(written));
    return rc;
  }
  SyncGate() {
    current = this;
    storage::g_sync_hook.store(&SyncGate::Sync);
  }
  ~SyncGate() {
    Release();
    storage::g_sync_hook.store(nullptr);
  }
  // Bounded only so that a broken committer fails the test instead of hanging it.
  bool WaitFor(const std::function<bool()>& cond) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::seconds(30), cond);
  }
  void Release(int sync = 0) {  // 0: all
    std::lock_guard<std::mutex> l(mu);
    if (sync == 0) all_open = true;
    open.insert(sync);
    cv.notify_all();
  }
  uint64_t Durable() {
    std::lock_guard<std::mutex> l(mu);
    return durable;
  }
};
SyncGate* SyncGate::current = nullptr;

// Records, with each answer, how many log bytes were durable when it was given.
struct DurableAnswers final : PeerWaiter {
  SyncGate* gate;
  std::map<uint64_t, std::pair<PeerResponse, uint64_t>> got;
  explicit DurableAnswers(SyncGate* g) : gate(g) {}
  void OnPeerResponse(uint64_t cookie, PeerResponse&& r) override {
    CHECK(got.count(cookie) == 0);
    got[cookie] = {std::move(r), gate->Durable()};
  }
};

TEST_CASE(
    "GroupCommitter: a write is answered only after an fdatasync that covers it returned; the "
    "writes appended while a sync runs share the next one; answers keep the order of hand-over") {
  Store s(storage::FsyncPolicy::kAlways);
  Hlc hlc(0);
  GroupCommitter committer(s.engine.get());
  LocalReplica r(s.engine.get(), &hlc, &committer, [] {});
  SyncGate gate;
  DurableAnswers a(&gate);
  for (uint64_t i = 0; i < 10; ++i) r.Execute(Put("a" + std::to_string(i), "v", 100 + i), &a, i);
  CHECK(r.Commit());
  const uint64_t first_end = s.LogWrites();
  REQUIRE(gate.WaitFor([&] { return gate.entered == 1; }));  // the first batch's sync is held
  // The loop goes on appending while the disk works: Commit does not wait for the sync.
  for (uint64_t i = 10; i < 25; ++i) {
    r.Execute(Put("b" + std::to_string(i), "v", 100 + i), &a, i);
    if (i % 5 == 4) CHECK(r.Commit());  // three batches handed over during the first sync
  }
  const uint64_t second_end = s.LogWrites();
  CHECK(second_end > first_end);
  r.DeliverSynced();
  CHECK(a.got.empty());      // nothing is answered while its sync has not returned
  CHECK(gate.entered == 1);  // the others wait for the sync under way
  gate.Release(1);
  // The first batch is answered; the three later ones go with one more sync, once it returns.
  REQUIRE(gate.WaitFor([&] { return gate.entered == 2; }));
  r.DeliverSynced();  // the committer handed the first batch back before its next sync
  CHECK(a.got.size() == 10);
  CHECK(r.pending() == 15);
  gate.Release(2);
  r.Drain();
  REQUIRE(a.got.size() == 25);
  for (auto& [cookie, answer] : a.got) {
    CHECK(answer.first.kind == PeerResponse::kStored);
    CHECK(answer.second >= (cookie < 10 ? first_end : second_end));
  }
  committer.Stop();
  CHECK(gate.entered == 2);
  const GroupCommitter::Counters c = committer.counters();
  CHECK(c.syncs == 2);
  CHECK(c.writes == 25);
  CHECK(c.sync_ns > 0);
}

// A replica with a committer over a store whose fdatasyncs are held and fail with EIO.
struct FailingSyncs {
  Store s{storage::FsyncPolicy::kAlways};
  Hlc hlc{0};
  GroupCommitter committer{s.engine.get()};
  LocalReplica r{s.engine.get(), &hlc, &committer, [] {}};
  SyncGate gate;
  FailingSyncs() { gate.fail_errno = EIO; }
};

TEST_CASE("GroupCommitter: a failed fdatasync answers every write it covered with an error") {
  FailingSyncs f;
  LocalReplica& r = f.r;
  SyncGate& gate = f.gate;
  GroupCommitter& committer = f.committer;
  Answers a;
  for (uint64_t i = 0; i < 5; ++i) r.Execute(Put("e" + std::to_string(i), "v", 100 + i), &a, i);
  CHECK(r.Commit());
  gate.Release();
  r.Drain();
  REQUIRE(a.got.size() == 5);
  for (auto& [cookie, resp] : a.got) {
    CHECK(resp.kind == PeerResponse::kError);
    CHECK(resp.error.find("fdatasync") != std::string::npos);
  }
  committer.Stop();
}

TEST_CASE(
    "GroupCommitter: after a failed sync nothing later on that log is acknowledged, also what "
    "a later sync returned success for (the kernel reports the error once)") {
  FailingSyncs f;
  LocalReplica& r = f.r;
  SyncGate& gate = f.gate;
  GroupCommitter& committer = f.committer;
  gate.fail_only = 2;
  Answers a;
  for (uint64_t i = 0; i < 5; ++i) r.Execute(Put("f" + std::to_string(i), "v", 100 + i), &a, i);
  CHECK(r.Commit());
  gate.Release(1);  // the first sync succeeds
  r.Drain();
  REQUIRE(a.got.size() == 5);
  for (auto& [cookie, resp] : a.got) CHECK(resp.kind == PeerResponse::kStored);
  a.got.clear();
  for (uint64_t i = 5; i < 12; ++i) r.Execute(Put("g" + std::to_string(i), "v", 100 + i), &a, i);
  CHECK(r.Commit());
  gate.Release(2);  // the second fails
  r.Drain();
  REQUIRE(a.got.size() == 7);
  for (auto& [cookie, resp] : a.got) CHECK(resp.kind == PeerResponse::kError);
  // A write after it is refused too, though a sync now would succeed: the failed pages may be
  // lost, and this record follows them in the log.
  a.got.clear();
  r.Execute(Put("h", "v", 200), &a, 100);
  CHECK(r.Commit());
  gate.Release();
  r.Drain();
  REQUIRE(a.got.count(100) == 1);
  CHECK(a.got[100].kind == PeerResponse::kError);
  committer.Stop();
}

// The injected wall clock in microseconds (a plain function pointer, so it reads a global).
constexpr uint64_t kWall = 1700000000000000;  // a realistic unix time in microseconds
std::atomic<uint64_t> g_wall{kWall};
uint64_t FakeWall() {
  return g_wall.load(std::memory_order_relaxed);
}

// What one write answers once committed (or at once, when refused).
PeerResponse WriteOnce(LocalReplica& r, PeerOp op, std::string_view key, uint64_t version) {
  Answers a;
  r.Execute(PeerRequest{op, key, op == PeerOp::kPut ? "v" : "", version}, &a, 1);
  r.Commit();
  REQUIRE(a.got.count(1) == 1);
  return a.got[1];
}

PeerResponse ReadOnce(LocalReplica& r, std::string_view key) {
  Answers a;
  r.Execute(PeerRequest{PeerOp::kGet, key, {}, 0}, &a, 1);
  REQUIRE(a.got.count(1) == 1);
  return a.got[1];
}

TEST_CASE(
    "LocalReplica: a write more than the max clock skew ahead is refused, nothing written "
    "or observed") {
  Store s;
  g_wall = kWall;
  Hlc hlc(0, &FakeWall);
  LocalReplica r(s.engine.get(), &hlc);
  std::atomic<uint64_t> refusals{0};
  constexpr uint64_t kMax = 2000;
  r.set_max_clock_skew(kMax, &refusals);
  const uint64_t before = hlc.Now();
  for (PeerOp op : {PeerOp::kPut, PeerOp::kRemove}) {
    CAPTURE(static_cast<int>(op));
    // N + 1 ms ahead, and one microsecond over N ms: refused at once, without a Commit.
    for (uint64_t ahead_us : {(kMax + 1) * 1000, kMax * 1000 + 1}) {
      Answers a;
      const uint64_t v = version::Make(kWall + ahead_us, 2);
      r.Execute(PeerRequest{op, "k", "v", v}, &a, 1);
      REQUIRE(a.got.count(1) == 1);
      CHECK(a.got[1].kind == PeerResponse::kError);
      CHECK(a.got[1].clock_skew);
      CHECK(a.got[1].skew_ms == kMax + 1);
      CHECK(a.got[1].error ==
            "2001 ms ahead of the replica's clock (limit 2000 ms, "
            "--max-clock-skew-ms)");
      CHECK(r.pending() == 0);
      CHECK(hlc.Last() == before);  // not observed: the clock is not dragged ahead
    }
    CHECK(ReadOnce(r, "k").kind == PeerResponse::kAbsent);
  }
  CHECK(refusals.load() == 4);
  CHECK(hlc.Now() == version::Make(kWall + 1, 0));  // the next version follows the wall clock
  // Exactly N ms ahead, and anything behind: accepted, and observed.
  const uint64_t edge = version::Make(kWall + kMax * 1000, 2);
  CHECK(WriteOnce(r, PeerOp::kPut, "k", edge).kind == PeerResponse::kStored);
  CHECK(hlc.Last() == edge);
  CHECK(WriteOnce(r, PeerOp::kRemove, "old", version::Make(kWall - 3600000000, 1)).kind ==
        PeerResponse::kStored);
  CHECK(ReadOnce(r, "old").kind == PeerResponse::kTombstone);
  CHECK(refusals.load() == 4);
  // The clock moves on: a version that was too far ahead is accepted once within the bound.
  const uint64_t later = version::Make(kWall + 5000000, 2);
  CHECK(WriteOnce(r, PeerOp::kPut, "k2", later).clock_skew);
  g_wall = kWall + 3000000;
  CHECK(WriteOnce(r, PeerOp::kPut, "k2", later).kind == PeerResponse::kStored);
}

TEST_CASE("LocalReplica: the issue's forged version is refused and a normal write then wins") {
  Store s;
  g_wall = kWall;
  Hlc hlc(0, &FakeWall);
  LocalReplica r(s.engine.get(), &hlc);
  const uint64_t forged = 18446744073709551000ull;
  const PeerResponse p = WriteOnce(r, PeerOp::kPut, "k", forged);
  CHECK(p.clock_skew);  // the default bound applies
  CHECK(p.skew_ms > 1000ull * 3600 * 24 * 365 * 100);
  CHECK(hlc.Last() == 0);
  CHECK(WriteOnce(r, PeerOp::kRemove, "k", forged).clock_skew);
  CHECK(WriteOnce(r, PeerOp::kPut, "k", hlc.Now()).kind == PeerResponse::kStored);
  CHECK(ReadOnce(r, "k").kind == PeerResponse::kValue);
  CHECK(WriteOnce(r, PeerOp::kRemove, "k", hlc.Now()).kind == PeerResponse::kStored);
  CHECK(ReadOnce(r, "k").kind == PeerResponse::kTombstone);
}

TEST_CASE("LocalReplica: legacy (ms) versions are bounded by their time too") {
  Store s;
  g_wall = kWall;
  Hlc hlc(0, &FakeWall);
  LocalReplica r(s.engine.get(), &hlc);
  r.set_max_clock_skew(1000, nullptr);
  const uint64_t ms = kWall / 1000;
  // An old binary's write of now, or of the past: accepted and stored as it is.
  const uint64_t now_legacy = version::MakeLegacy(ms, 5, 1);
  CHECK(WriteOnce(r, PeerOp::kPut, "a", now_legacy).version == now_legacy);
  CHECK(WriteOnce(r, PeerOp::kPut, "b", version::MakeLegacy(ms + 1000, 0, 1)).kind ==
        PeerResponse::kStored);
  // One ms past the bound: refused, with the skew its ms give.
  const PeerResponse p = WriteOnce(r, PeerOp::kRemove, "a", version::MakeLegacy(ms + 1001, 0, 1));
  CHECK(p.clock_skew);
  CHECK(p.skew_ms == 1001);
  CHECK(ReadOnce(r, "a").kind == PeerResponse::kValue);
}

TEST_CASE("LocalReplica: --max-clock-skew-ms 0 bounds nothing; a clock offset moves the bound") {
  Store s;
  g_wall = kWall;
  Hlc hlc(0, &FakeWall);
  LocalReplica r(s.engine.get(), &hlc);
  r.set_max_clock_skew(0, nullptr);
  const uint64_t far = version::Make(kWall + 3600000000, 1);
  CHECK(WriteOnce(r, PeerOp::kPut, "k", far).kind == PeerResponse::kStored);
  CHECK(hlc.Last() == far);

  Store s2;
  Hlc fast(0, &FakeWall);
  fast.set_offset_us(3600000000);  // this node's clock an hour ahead (--clock-offset-ms)
  CHECK(fast.WallUs() == kWall + 3600000000);
  CHECK(version::Micros(fast.Now()) == kWall + 3600000000);
  LocalReplica r2(s2.engine.get(), &fast);
  r2.set_max_clock_skew(2000, nullptr);
  CHECK(WriteOnce(r2, PeerOp::kPut, "k", far).kind == PeerResponse::kStored);
  fast.set_offset_us(-3600000000);
  CHECK(fast.WallUs() == kWall - 3600000000);
  CHECK(WriteOnce(r2, PeerOp::kPut, "k", version::Make(kWall, 1)).clock_skew);
}

TEST_CASE("LocalReplica: a value answers with its expiry, and as a tombstone once expired") {
  Store s;
  g_wall = kWall;
  Hlc hlc(0, &FakeWall);
  LocalReplica r(s.engine.get(), &hlc);
  const uint64_t expires = kWall / 1000 + 60000;  // a minute from the fake wall clock
  const uint64_t v = version::Make(kWall, 1);
  Answers a;
  r.Execute(PeerRequest{PeerOp::kPut, "k", "v", v, expires}, &a, 1);
  r.Commit();
  REQUIRE(a.got.count(1) == 1);
  CHECK(a.got[1].kind == PeerResponse::kStored);
  r.Execute(PeerRequest{PeerOp::kGet, "k", {}, 0}, &a, 2);
  CHECK(a.got[2].kind == PeerResponse::kValue);
  CHECK(a.got[2].value == "v");
  CHECK(a.got[2].expires_ms == expires);
  g_wall = (expires + 1) * 1000;  // past it
  r.Execute(PeerRequest{PeerOp::kGet, "k", {}, 0}, &a, 3);
  CHECK(a.got[3].kind == PeerResponse::kTombstone);
  CHECK(a.got[3].version == v);
  // A later PUT without an expiry makes the key permanent again.
  r.Execute(PeerRequest{PeerOp::kPut, "k", "forever", version::Make(g_wall, 1)}, &a, 4);
  r.Commit();
  r.Execute(PeerRequest{PeerOp::kGet, "k", {}, 0}, &a, 5);
  CHECK(a.got[5].kind == PeerResponse::kValue);
  CHECK(a.got[5].value == "forever");
  CHECK(a.got[5].expires_ms == 0);
  g_wall = kWall;
}

TEST_CASE("clock skew: the refusal's text carries the skew") {
  CHECK(ParseSkewMs(SkewMessage(3600123, 2000)) == 3600123);
  CHECK(ParseSkewMs("CLOCK_SKEW: 5 ms") == 0);  // the number must lead
  CHECK(ParseSkewMs("") == 0);
  CHECK(SkewRefusalMs(version::Make(kWall + 1, 0), kWall, 0) == 0);
  CHECK(SkewRefusalMs(version::Make(kWall + 1001, 0), kWall, 1) == 2);
  CHECK(SkewRefusalMs(version::Make(kWall + 1000, 0), kWall, 1) == 0);
  CHECK(SkewRefusalMs(version::Make(1, 0), kWall, 1) == 0);
}

}  // namespace
}  // namespace kv::cluster

namespace kv::cluster {
namespace {

// Reads a kPage answer's entries as "key=value@version" / "key=X@version" (tombstone).
std::vector<std::string> Entries(const PeerResponse& r, bool* more) {
  REQUIRE(r.kind == PeerResponse::kPage);
  range_page::Reader reader(std::string_view(r.value).substr(r.value_at));
  *more = reader.more();
  std::vector<std::string> out;
  range_page::Entry e;
  range_page::Reader::Result res;
  while ((res = reader.Next(&e)) == range_page::Reader::kEntry) {
    out.push_back(std::string(e.key) + "=" + (e.tombstone ? "X" : std::string(e.value)) + "@" +
                  std::to_string(e.version));
  }
  CHECK(res == range_page::Reader::kEnd);
  return out;
}

PeerRequest Range(std::string_view start, std::string_view end, uint32_t keys, uint32_t bytes) {
  PeerRequest r{};
  r.op = PeerOp::kRange;
  r.key = start;
  r.end = end;
  r.has_end = !end.empty();
  r.max_keys = keys;
  r.max_bytes = bytes;
  return r;
}

TEST_CASE("LocalReplica: range pages hold tombstones, stop at max_keys/max_bytes, say more") {
  Store s;
  Hlc hlc(0);
  LocalReplica r(s.engine.get(), &hlc);
  Answers a;
  const uint64_t v = version::Make(1000000, 3);
  r.Execute(Put("p/a", "1", v), &a, 1);
  r.Execute(Put("p/b", std::string(100, 'b'), v), &a, 2);
  r.Execute(PeerRequest{PeerOp::kRemove, "p/c", {}, v + 1}, &a, 3);
  r.Execute(Put("p/d", "4", v), &a, 4);
  r.Execute(Put("q", "out of range", v), &a, 5);
  while (r.Commit()) {
  }
  bool more = false;
  r.Execute(Range("p/", "p0", 100, 1 << 20), &a, 10);
  const std::string vs = std::to_string(v), vs1 = std::to_string(v + 1);
  CHECK(Entries(a.got[10], &more) ==
        std::vector<std::string>{"p/a=1@" + vs, "p/b=" + std::string(100, 'b') + "@" + vs,
                                 "p/c=X@" + vs1, "p/d=4@" + vs});
  CHECK_FALSE(more);
  r.Execute(Range("p/", "p0", 2, 1 << 20), &a, 11);
  CHECK(Entries(a.got[11], &more).size() == 2);
  CHECK(more);
  // A continuation after p/b (p/b + 0x00) starts at the tombstone.
  r.Execute(Range(range_page::NextStart("p/b"), "p0", 1, 1 << 20), &a, 12);
  CHECK(Entries(a.got[12], &more) == std::vector<std::string>{"p/c=X@" + vs1});
  CHECK(more);
  // max_bytes: the page stops before an entry that would pass it, but holds at least one.
  r.Execute(Range("p/", "p0", 100, 1), &a, 13);
  CHECK(Entries(a.got[13], &more).size() == 1);
  CHECK(more);
  r.Execute(Range("p/", "p0", 100, 2 * (range_page::kEntryOverhead + 3) + 1), &a, 14);
  CHECK(Entries(a.got[14], &more).size() == 1);  // p/b's 100 bytes do not fit
  // No end: to the last key.
  r.Execute(Range("p/d", "", 100, 1 << 20), &a, 15);
  CHECK(Entries(a.got[15], &more) ==
        std::vector<std::string>{"p/d=4@" + vs, "q=out of range@" + vs});
  CHECK_FALSE(more);
  // An empty range: an empty page.
  r.Execute(Range("x", "", 100, 1 << 20), &a, 16);
  CHECK(Entries(a.got[16], &more).empty());
  // Out of the limits: an error, nothing read.
  r.Execute(Range("p/", "", 0, 1 << 20), &a, 17);
  CHECK(a.got[17].kind == PeerResponse::kError);
  r.Execute(Range("p/", "", 1, 0), &a, 18);
  CHECK(a.got[18].kind == PeerResponse::kError);
}

TEST_CASE("LocalReplica: repair operations go to the repair handler, or fail without one") {
  Store s;
  Hlc hlc(0);
  LocalReplica r(s.engine.get(), &hlc);
  Answers a;
  r.Execute(PeerRequest{PeerOp::kRepairTree, {}, "body", 0}, &a, 1);
  REQUIRE(a.got.count(1) == 1);
  CHECK(a.got[1].kind == PeerResponse::kError);
  std::vector<PeerOp> ops;
  r.set_repair_handler([&ops](const PeerRequest& req, PeerWaiter* w, uint64_t cookie) {
    ops.push_back(req.op);
    PeerResponse resp;
    resp.kind = PeerResponse::kRepairData;
    resp.value = std::string(req.value);
    w->OnPeerResponse(cookie, std::move(resp));
  });
  r.Execute(PeerRequest{PeerOp::kRepairEntries, {}, "e", 0}, &a, 2);
  r.Execute(PeerRequest{PeerOp::kRepairApply, {}, "a", 0}, &a, 3);
  CHECK(ops == std::vector<PeerOp>{PeerOp::kRepairEntries, PeerOp::kRepairApply});
  CHECK(a.got[3].value == "a");
  CHECK(r.pending() == 0);  // nothing queued as a write
}

std::string Hints(const std::vector<hintfile::Record>& recs) {
  std::string body;
  for (const hintfile::Record& r : recs) hintfile::AppendRecord(&body, r);
  return body;
}

TEST_CASE("LocalReplica: a HINTS request stores its records in one batch, answered once") {
  Store s;
  g_wall = kWall;
  Hlc hlc(0, &FakeWall);
  LocalReplica r(s.engine.get(), &hlc);
  Answers a;
  const uint64_t v = version::Make(kWall - 1000, 3);
  const uint64_t expires = kWall / 1000 + 3600000;
  WriteOnce(r, PeerOp::kPut, "newer", v + 10);  // a newer write than its hint: kept
  const std::string body = Hints({{PeerOp::kPut, "a", "1", v},
                                  {PeerOp::kRemove, "b", "", v + 1},
                                  {PeerOp::kPut, "c", "3", v + 2, expires},
                                  {PeerOp::kPut, "newer", "old", v + 3}});
  const uint64_t before = s.LogWrites();
  r.Execute(PeerRequest{PeerOp::kHints, {}, body, 0}, &a, 1);
  CHECK(a.got.empty());
  CHECK(r.pending() == 4);
  CHECK(hlc.Last() >= v + 3);  // observed on arrival, as a PUT's version is
  CHECK(r.Commit());
  REQUIRE(a.got.count(1) == 1);
  CHECK(a.got[1].kind == PeerResponse::kStored);
  CHECK(a.got[1].version == 4);  // the records stored
  CHECK(s.LogWrites() > before);
  CHECK(ReadOnce(r, "a").value == "1");
  CHECK(ReadOnce(r, "b").kind == PeerResponse::kTombstone);
  const PeerResponse c = ReadOnce(r, "c");
  CHECK(c.value == "3");
  CHECK(c.expires_ms == expires);
  const PeerResponse n = ReadOnce(r, "newer");
  CHECK(n.value != "old");
  CHECK(n.version == v + 10);
}

TEST_CASE("LocalReplica: a malformed or refused HINTS request writes nothing") {
  Store s;
  g_wall = kWall;
  Hlc hlc(0, &FakeWall);
  std::atomic<uint64_t> refusals{0};
  LocalReplica r(s.engine.get(), &hlc);
  r.set_max_clock_skew(2000, &refusals);
  Answers a;
  const uint64_t v = version::Make(kWall - 1000, 3);
  const std::string good = Hints({{PeerOp::kPut, "a", "1", v}, {PeerOp::kPut, "b", "2", v}});
  std::string flipped = good;
  flipped[flipped.size() - 3] ^= 1;  // the second record's checksum
  const std::string ahead = Hints(
      {{PeerOp::kPut, "a", "1", v}, {PeerOp::kPut, "b", "2", version::Make(kWall + 2001000, 3)}});
  const std::vector<std::string> bad = {"", flipped, good.substr(0, good.size() - 1), good + "junk",
                                        "\x01"};
  uint64_t cookie = 0;
  for (const std::string& body : bad) {
    CAPTURE(body.size());
    r.Execute(PeerRequest{PeerOp::kHints, {}, body, 0}, &a, ++cookie);
    REQUIRE(a.got.count(cookie) == 1);  // at once
    CHECK(a.got[cookie].kind == PeerResponse::kError);
    CHECK(a.got[cookie].invalid);
  }
  r.Execute(PeerRequest{PeerOp::kHints, {}, ahead, 0}, &a, ++cookie);
  REQUIRE(a.got.count(cookie) == 1);
  CHECK(a.got[cookie].clock_skew);
  CHECK(a.got[cookie].skew_ms == 2001);
  CHECK(refusals.load() == 1);
  CHECK(r.pending() == 0);
  CHECK_FALSE(r.Commit());
  CHECK(hlc.Last() == 0);  // nothing observed either
  CHECK(ReadOnce(r, "a").kind == PeerResponse::kAbsent);
  CHECK(ReadOnce(r, "b").kind == PeerResponse::kAbsent);
}

TEST_CASE("LocalReplica: with a GroupCommitter, a HINTS request is answered once durable") {
  Store s(storage::FsyncPolicy::kAlways);
  Hlc hlc(0);
  GroupCommitter committer(s.engine.get());
  LocalReplica r(s.engine.get(), &hlc, &committer, [] {});
  Answers a;
  std::vector<hintfile::Record> recs;
  std::vector<std::string> keys;
  for (size_t i = 0; i < 2 * LocalReplica::kSyncBatch + 3; ++i)
    keys.push_back("k" + std::to_string(i));
  for (size_t i = 0; i < keys.size(); ++i) recs.push_back({PeerOp::kPut, keys[i], "v", 1000 + i});
  r.Execute(Put("before", "v", 999), &a, 1);
  r.Execute(PeerRequest{PeerOp::kHints, {}, Hints(recs), 0}, &a, 2);
  r.Execute(Put("after", "v", 2000), &a, 3);
  r.Commit();
  r.Drain();
  REQUIRE(a.got.size() == 3);
  CHECK(a.got[2].kind == PeerResponse::kStored);
  CHECK(a.got[2].version == keys.size());
  for (const std::string& k : keys) CHECK(ReadOnce(r, k).kind == PeerResponse::kValue);
  committer.Stop();
}

}  // namespace
}  // namespace kv::cluster
