// The coordinator against scripted peers: which replicas a request asks, when, and what it
// answers. Peers are fake transports answered by the test; the clocks and the timer are fake.
#include "cluster/coordinator.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kv::cluster {
namespace {

struct Sent {
  PeerOp op;
  std::string key;
  uint64_t deadline_ms;
  PeerWaiter* waiter;
  uint64_t cookie;
  bool answered = false;
  std::string value;  // kPut
  uint64_t version = 0;
};

class FakePeer final : public PeerTransport {
 public:
  void Send(const PeerRequest& req, uint64_t deadline_ms, PeerWaiter* waiter,
            uint64_t cookie) override {
    sent.push_back(Sent{req.op, std::string(req.key), deadline_ms, waiter, cookie, false,
                        std::string(req.value), req.version});
    if (closed) Answer(sent.size() - 1, PeerResponse{});  // like the real ones: fails at once
  }
  void Ping(uint64_t deadline_ms, PeerWaiter* waiter, uint64_t cookie) override {
    pings.push_back(Sent{PeerOp::kGet, "", deadline_ms, waiter, cookie, false, "", 0});
    if (closed) AnswerPing(pings.size() - 1, PeerResponse{});
  }
  size_t in_flight() const override {
    size_t n = 0;
    for (const Sent& s : sent) n += s.answered ? 0 : 1;
    return n;
  }
  void Close() override {
    closed = true;
    for (size_t i = 0; i < sent.size(); ++i)
      if (!sent[i].answered) Answer(i, PeerResponse{});
    for (size_t i = 0; i < pings.size(); ++i)
      if (!pings[i].answered) AnswerPing(i, PeerResponse{});
  }
  void AnswerPing(size_t i, PeerResponse r) {
    REQUIRE(!pings[i].answered);
    pings[i].answered = true;
    pings[i].waiter->OnPeerResponse(pings[i].cookie, std::move(r));
  }
  void Answer(size_t i, PeerResponse r) {
    REQUIRE(!sent[i].answered);
    sent[i].answered = true;
    sent[i].waiter->OnPeerResponse(sent[i].cookie, std::move(r));
  }
  std::vector<Sent> sent;
  std::vector<Sent> pings;
  bool closed = false;
};

struct FakeEnv final : CoordinatorEnv {
  uint64_t ms = 1000, us = 1000000;
  std::vector<uint64_t> armed;  // every ArmTimer delay
  uint64_t NowMs() override { return ms; }
  uint64_t NowUs() override { return us; }
  void ArmTimer(uint64_t delay_ms) override { armed.push_back(delay_ms); }
};

PeerResponse Value(std::string v, uint64_t version) {
  PeerResponse r;
  r.kind = PeerResponse::kValue;
  r.value = std::move(v);
  r.version = version;
  return r;
}
PeerResponse Kind(PeerResponse::Kind k, uint64_t version = 0) {
  PeerResponse r;
  r.kind = k;
  r.version = version;
  return r;
}

struct Result {
  int calls = 0;
  Outcome outcome;
};

// This node's replica in the tests: a map where the newest version wins. Reads answer at once;
// writes wait for Commit(), as LocalReplica's wait for the loop's commit once per iteration.
struct FakeReplica final : Replica {
  struct Entry {
    std::string value;
    uint64_t version = 0;
    bool tombstone = false;
  };
  struct Queued {
    PeerOp op;
    std::string key, value;
    uint64_t version;
    PeerWaiter* waiter;
    uint64_t cookie;
  };
  std::map<std::string, Entry> store;
  std::vector<Queued> queued;
  bool disk_full = false;

  void Put(const std::string& key, std::string value, uint64_t version) {
    store[key] = Entry{std::move(value), version, false};
  }
  void Execute(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie) override {
    if (req.op != PeerOp::kGet) {
      queued.push_back(Queued{req.op, std::string(req.key), std::string(req.value), req.version,
                              waiter, cookie});
      return;
    }
    PeerResponse r;
    auto it = store.find(std::string(req.key));
    if (it == store.end()) {
      r.kind = PeerResponse::kAbsent;
    } else {
      r.kind = it->second.tombstone ? PeerResponse::kTombstone : PeerResponse::kValue;
      r.value = it->second.value;
      r.version = it->second.version;
    }
    waiter->OnPeerResponse(cookie, std::move(r));
  }
  void Commit() {
    std::vector<Queued> q;
    q.swap(queued);
    for (Queued& w : q) {
      PeerResponse r;
      if (disk_full) {
        r.error = "no space left on device";
        r.no_space = true;
      } else {
        Entry& e = store[w.key];
        if (w.version > e.version) e = Entry{w.value, w.version, w.op == PeerOp::kRemove};
        r.kind = PeerResponse::kStored;
        r.version = e.version;
      }
      w.waiter->OnPeerResponse(w.cookie, std::move(r));
    }
  }
};

// Three nodes, this one is node 0.
struct Fixture {
  FakeReplica local;
  std::unique_ptr<ClusterState> state;
  FakePeer* peers[3] = {nullptr, nullptr, nullptr};
  FakeEnv env;
  std::unique_ptr<Coordinator> coord;

  // read_repair off: for tests of other things whose answers disagree.
  explicit Fixture(ReadFanout fanout = ReadFanout::kHedged, bool read_repair = true) {
    state = std::make_unique<ClusterState>(
        std::vector<std::string>{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"},
        0, nullptr);
    std::vector<std::unique_ptr<PeerTransport>> ts;
    ts.emplace_back();
    for (int i = 1; i < 3; ++i) {
      auto p = std::make_unique<FakePeer>();
      peers[i] = p.get();
      ts.push_back(std::move(p));
    }
    CoordinatorOptions co;
    co.request_timeout_ms = 1000;
    co.read_fanout = fanout;
    co.initial_hedge_us = 5000;
    co.read_repair = read_repair;
    coord = std::make_unique<Coordinator>(state.get(), &local, std::move(ts), co, &env);
  }
  ~Fixture() { coord->Close(); }

  void Run(PeerOp op, const std::string& key, int ack, int from, Result* res,
           std::string_view value = {}) {
    Completion c;
    c.fn = [](void* ctx, uint64_t, Outcome&& o) {
      auto* r = static_cast<Result*>(ctx);
      ++r->calls;
      r->outcome = std::move(o);
    };
    c.ctx = res;
    coord->Execute(op, key, value, ack, from, c);
    local.Commit();
  }
  // The key's replica order over the three nodes.
  std::vector<uint32_t> Order(const std::string& key) const {
    std::vector<uint32_t> out(3);
    state->ring.Replicas(key, 3, out.data());
    return out;
  }
  size_t SentTotal() const { return peers[1]->sent.size() + peers[2]->sent.size(); }
  // The first peer (not node 0) in the key's replica order, and the other one.
  std::pair<int, int> Peers(const std::string& key) const {
    std::vector<int> p;
    for (uint32_t n : Order(key))
      if (n != 0) p.push_back(static_cast<int>(n));
    return {p[0], p[1]};
  }
  // Starts a GET 2/3 of key; returns Peers(key).
  std::pair<int, int> Get23(const std::string& key, Result* res) {
    Run(PeerOp::kGet, key, 2, 3, res);
    return Peers(key);
  }
  // Time passes by `ms`, peer `node` answers its ping `i`, and the timer fires.
  void AnswerPingAfter(int node, size_t i, PeerResponse r, uint64_t ms) {
    env.us += ms * 1000;
    env.ms += ms;
    peers[node]->AnswerPing(i, std::move(r));
    coord->OnTimer();
  }
  // The initial hedge delay passes and the timer fires.
  void PassHedgeTime() {
    env.us += 5000;
    coord->OnTimer();
  }
};

TEST_CASE("Coordinator: hedged GET 2/3 asks itself and one peer, in ring order") {
  for (int k = 0; k < 20; ++k) {
    Fixture f;
    std::string key = "key" + std::to_string(k);
    f.local.Put(key, "local", 100);
    Result res;
    auto [first, second] = f.Get23(key, &res);
    CHECK(res.calls == 0);
    REQUIRE(f.peers[first]->sent.size() == 1);
    CHECK(f.peers[second]->sent.empty());
    CHECK(f.peers[first]->sent[0].op == PeerOp::kGet);
    CHECK(f.peers[first]->sent[0].key == key);
    CHECK(f.peers[first]->sent[0].deadline_ms == f.env.ms + 1000);
    // waiting for the hedge time: the timer is armed for the initial delay, 5 ms
    REQUIRE(f.env.armed.size() == 1);
    CHECK(f.env.armed[0] == 5);
    f.peers[first]->Answer(0, Value("remote", 200));
    // its own copy is older: the client waits for the read repair of it (see below)
    CHECK(res.calls == 0);
    f.local.Commit();
    REQUIRE(res.calls == 1);
    CHECK(res.outcome.kind == Outcome::kValue);
    CHECK(res.outcome.value == "remote");
    CHECK(res.outcome.version == 200);
    CHECK(f.local.store[key].value == "remote");
    // the hedge time passes: the request was decided, nobody else is asked
    f.PassHedgeTime();
    CHECK(f.SentTotal() == 1);
    CHECK(f.state->get_hedges.load() == 0);
    CHECK(f.coord->pending() == 0);
    CHECK(f.state->PeerRequests(static_cast<size_t>(first)) == 1);
    CHECK(f.state->PeerRequests(static_cast<size_t>(second)) == 0);
  }
}

TEST_CASE("Coordinator: a hedged GET asks a clearly slower peer after the faster replica") {
  // Each PUT 2/3 asks both peers; the test has them reply after the given times, which set this
  // loop's average answer time of each. Then a GET 2/3 asks itself and one peer.
  struct Reply {
    int peer;
    uint64_t after_us;  // after the send; kNever: no reply
    bool ok = true;     // stored, or failed
  };
  constexpr uint64_t kNever = UINT64_MAX;
  // Runs a PUT 2/3 of key; the peers reply as given, in time order (a first on a tie).
  auto put23 = [](Fixture& f, const std::string& key, Reply a, Reply b) {
    Result res;
    f.Run(PeerOp::kPut, key, 2, 3, &res, "v");
    const uint64_t sent = f.env.us;
    if (b.after_us < a.after_us) std::swap(a, b);
    for (const Reply& r : {a, b}) {
      if (r.after_us == kNever) continue;
      f.env.us = sent + r.after_us;
      f.peers[r.peer]->Answer(f.peers[r.peer]->sent.size() - 1,
                              r.ok ? Kind(PeerResponse::kStored, 1) : Kind(PeerResponse::kError));
    }
    REQUIRE(res.calls == 1);
  };
  // Runs a GET 2/3 and returns the one peer it asked, which answers after first_us or
  // second_us (its own answer time).
  auto asked_by_get = [](Fixture& f, const std::string& key, int first, int second,
                         uint64_t first_us = 0, uint64_t second_us = 0) {
    auto gets_to = [&f](int peer) {
      size_t n = 0;
      for (const Sent& s : f.peers[peer]->sent) n += s.op == PeerOp::kGet ? 1 : 0;
      return n;
    };
    Result res;
    f.Run(PeerOp::kGet, key, 2, 3, &res);
    REQUIRE(gets_to(first) + gets_to(second) == 1);
    int peer = gets_to(first) == 1 ? first : second;
    f.env.us += peer == first ? first_us : second_us;
    f.peers[peer]->Answer(f.peers[peer]->sent.size() - 1, Value("v", 1));
    REQUIRE(res.calls == 1);
    f.peers[peer]->sent.clear();
    return peer;
  };
  const std::string key = "ordered";
  Fixture f(ReadFanout::kHedged, /*read_repair=*/false);
  auto [first, second] = f.Peers(key);
  SUBCASE("10 ms against 1 ms: the faster replica first") {
    put23(f, key, {first, 10000}, {second, 1000});
    CHECK(asked_by_get(f, key, first, second) == second);
    CHECK(f.state->SlowPeerPasses(static_cast<size_t>(first)) == 1);
  }
  SUBCASE("every kSlowPeerProbeEvery-th GET still asks the slow peer first") {
    put23(f, key, {first, 10000}, {second, 1000});
    std::vector<int> asked;
    for (uint64_t i = 0; i < 2 * Coordinator::kSlowPeerProbeEvery; ++i) {
      // the same answer times again
      if (asked_by_get(f, key, first, second, 10000, 1000) == first) {
        asked.push_back(static_cast<int>(i));
      }
    }
    const int every = static_cast<int>(Coordinator::kSlowPeerProbeEvery);
    CHECK(asked == std::vector<int>{every - 1, 2 * every - 1});
    CHECK(f.state->SlowPeerPasses(static_cast<size_t>(first)) ==
          2 * Coordinator::kSlowPeerProbeEvery - 2);
  }
  SUBCASE("the probes' slow answers do not set the hedge delay") {
    put23(f, key, {first, 10000}, {second, 1000});
    for (uint32_t i = 0; i < 2 * HedgeDelay::kWindow; ++i) {
      asked_by_get(f, key, first, second, 10000, 1000);
    }
    // the p99 of 1 ms answers with one 10 ms probe in every kSlowPeerProbeEvery
    CHECK(f.coord->hedge_delay_us() < 2000);
  }
  SUBCASE("3 ms against 1 ms (under 4x): ring order") {
    put23(f, key, {first, 3000}, {second, 1000});
    CHECK(asked_by_get(f, key, first, second) == first);
    CHECK(f.state->SlowPeerPasses(static_cast<size_t>(first)) == 0);
  }
  SUBCASE("1.5 ms against 0.1 ms (under 2 ms apart): ring order") {
    put23(f, key, {first, 1500}, {second, 100});
    CHECK(asked_by_get(f, key, first, second) == first);
  }
  SUBCASE("fast failures leave the average alone, slow ones raise it") {
    put23(f, key, {first, 10000}, {second, 1000});
    // The slow peer is refused at once 8 times (4 in a row at most: 5 would open its circuit
    // breaker): still 10 ms on average, still passed over. Counted as answers, the failures
    // would bring it under 4 ms.
    for (int round = 0; round < 2; ++round) {
      if (round > 0) put23(f, key, {first, 10000}, {second, 1000});  // a success between
      for (int i = 0; i < 4; ++i) put23(f, key, {first, 0, false}, {second, 1000});
    }
    CHECK(asked_by_get(f, key, first, second) == second);
    // the fast peer times out after 50 ms twice: 1 -> 7.1 -> 12.5 ms, no longer 4x faster than
    // the other's 10 ms (which answers in 10 ms again): ring order
    put23(f, key, {second, 50000, false}, {first, 10000});
    put23(f, key, {second, 50000, false}, {first, 10000});
    CHECK(asked_by_get(f, key, first, second) == first);
  }
  SUBCASE("a peer that never answered is not preferred") {
    put23(f, key, {first, 10000}, {second, kNever});
    CHECK(asked_by_get(f, key, first, second) == first);
  }
  SUBCASE("nor one that only failed at once") {
    put23(f, key, {second, 100, false}, {first, 10100});  // refused: not an answer time
    CHECK(asked_by_get(f, key, first, second) == first);
  }
}

TEST_CASE("Coordinator: a hedged GET whose peer fails asks the next replica at once") {
  Fixture f;
  std::string key = "failing";
  f.local.Put(key, "local", 300);
  Result res;
  auto [first, second] = f.Get23(key, &res);
  f.peers[first]->Answer(0, Kind(PeerResponse::kError));
  CHECK(res.calls == 0);
  REQUIRE(f.peers[second]->sent.size() == 1);
  CHECK(f.state->get_retries.load() == 1);
  f.peers[second]->Answer(0, Kind(PeerResponse::kAbsent));
  // the peer that had nothing gets its own copy (read repair) before the client is answered
  CHECK(res.calls == 0);
  REQUIRE(f.peers[second]->sent.size() == 2);
  CHECK(f.peers[second]->sent[1].op == PeerOp::kPut);
  f.peers[second]->Answer(1, Kind(PeerResponse::kStored, 300));
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.kind == Outcome::kValue);  // its own copy is the newest answer
  CHECK(res.outcome.value == "local");
  CHECK(res.outcome.version == 300);
  f.PassHedgeTime();
  CHECK(f.SentTotal() == 3);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Coordinator: a hedged GET whose peer is silent asks the rest at the hedge time") {
  Fixture f(ReadFanout::kHedged, /*read_repair=*/false);
  Result res;
  auto [first, second] = f.Get23("silent", &res);
  REQUIRE(f.env.armed.size() == 1);
  // early: the timer may fire before the hedge time (ms ticks); it re-arms for the rest
  f.env.us += 4500;
  f.coord->OnTimer();
  CHECK(f.peers[second]->sent.empty());
  REQUIRE(f.env.armed.size() == 2);
  CHECK(f.env.armed[1] == 1);
  f.env.us += 500;
  f.coord->OnTimer();
  REQUIRE(f.peers[second]->sent.size() == 1);
  CHECK(f.state->get_hedges.load() == 1);
  CHECK(f.env.armed.size() == 2);  // queue empty: not re-armed
  f.peers[second]->Answer(0, Value("v2", 50));
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.kind == Outcome::kValue);
  CHECK(res.outcome.value == "v2");
  CHECK(f.coord->pending() == 1);  // the silent peer still owes an answer
  f.peers[first]->Answer(0, Value("late", 999));
  CHECK(res.calls == 1);
  CHECK(res.outcome.value == "v2");
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Coordinator: hedged GET 2/3 fails (504) only once every replica was tried") {
  Fixture f;
  Result res;
  auto [first, second] = f.Get23("down", &res);
  f.peers[first]->Answer(0, Kind(PeerResponse::kError));
  CHECK(res.calls == 0);
  REQUIRE(f.peers[second]->sent.size() == 1);
  f.peers[second]->Answer(0, Kind(PeerResponse::kError));
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.kind == Outcome::kUnavailable);
  CHECK(f.SentTotal() == 2);
  f.PassHedgeTime();
  CHECK(f.SentTotal() == 2);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Coordinator: a hedged GET asks itself first when it is a replica") {
  Fixture f;
  // keys whose order puts node 0 second: GET 1/2 is answered locally, nobody asked
  int tried = 0;
  for (int k = 0; k < 200 && tried < 10; ++k) {
    std::string key = "self" + std::to_string(k);
    auto order = f.Order(key);
    if (order[1] != 0) continue;
    ++tried;
    f.local.Put(key, "mine", 7);
    Result res;
    f.Run(PeerOp::kGet, key, 1, 2, &res);
    REQUIRE(res.calls == 1);
    CHECK(res.outcome.kind == Outcome::kValue);
    CHECK(res.outcome.value == "mine");
    CHECK(f.SentTotal() == 0);
  }
  CHECK(tried == 10);
  CHECK(f.env.armed.empty());
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Coordinator: GET with ack == from and every write ask all `from` replicas at once") {
  Fixture f;
  std::string key = "all";
  Result get;
  f.Run(PeerOp::kGet, key, 3, 3, &get);
  CHECK(f.peers[1]->sent.size() == 1);
  CHECK(f.peers[2]->sent.size() == 1);
  CHECK(f.env.armed.empty());
  f.peers[1]->Answer(0, Kind(PeerResponse::kAbsent));
  f.peers[2]->Answer(0, Kind(PeerResponse::kAbsent));
  REQUIRE(get.calls == 1);
  CHECK(get.outcome.kind == Outcome::kNotFound);

  for (PeerOp op : {PeerOp::kPut, PeerOp::kRemove}) {
    Result w;
    f.Run(op, key, 1, 3, &w, "v");
    // the local write was committed (Run commits it): ack 1 is reached, peers still asked
    REQUIRE(w.calls == 1);
    CHECK(w.outcome.kind == Outcome::kStored);
    for (int p = 1; p < 3; ++p) {
      REQUIRE(f.peers[p]->sent.size() >= 2);
      CHECK(f.peers[p]->sent.back().op == op);
      f.peers[p]->Answer(f.peers[p]->sent.size() - 1, Kind(PeerResponse::kStored, 1));
    }
  }
  CHECK(f.env.armed.empty());
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Coordinator: --read-fanout all asks every replica of a GET at once") {
  Fixture f(ReadFanout::kAll, /*read_repair=*/false);
  Result res;
  f.Run(PeerOp::kGet, "k", 2, 3, &res);
  CHECK(f.peers[1]->sent.size() == 1);
  CHECK(f.peers[2]->sent.size() == 1);
  CHECK(f.env.armed.empty());
  f.peers[1]->Answer(0, Value("x", 5));
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.value == "x");
  f.peers[2]->Answer(0, Kind(PeerResponse::kAbsent));
  CHECK(res.calls == 1);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Coordinator: the hedge delay comes from the peers' answer times") {
  Fixture f;
  std::string key = "timing";
  // HedgeDelay::kWindow answers taking 3 ms each
  for (uint32_t i = 0; i < HedgeDelay::kWindow; ++i) {
    Result res;
    int first = f.Get23(key, &res).first;
    f.env.us += 3000;
    f.peers[first]->Answer(f.peers[first]->sent.size() - 1, Kind(PeerResponse::kAbsent));
    REQUIRE(res.calls == 1);
  }
  // 3000 us lies in [3072 - 512, 3072): the bucket's upper bound is the delay
  CHECK(f.coord->hedge_delay_us() == 3072);
  f.env.us += 10000;
  f.coord->OnTimer();
  CHECK(f.SentTotal() == HedgeDelay::kWindow);  // every request was decided in time
  Result res;
  f.Get23(key, &res);
  CHECK(f.env.armed.back() == 4);  // 3072 us, in whole ms
}

TEST_CASE("Coordinator: a peer's requests time out at twice its slowest recent answer") {
  Fixture f;  // request timeout 1000 ms, peer timeout floor 200 ms
  auto put = [&f](Result* res) { f.Run(PeerOp::kPut, "slow", 2, 3, res, "v"); };
  auto last = [&f](int peer) -> Sent& { return f.peers[peer]->sent.back(); };
  Result r1;
  put(&r1);
  // nothing measured yet: the whole request timeout
  CHECK(last(1).deadline_ms == f.env.ms + 1000);
  CHECK(last(2).deadline_ms == f.env.ms + 1000);
  f.env.us += 150000;  // node 1 answers in 150 ms, node 2 in 400 ms
  f.peers[1]->Answer(0, Kind(PeerResponse::kStored, 1));
  REQUIRE(r1.calls == 1);
  f.env.us += 250000;
  f.peers[2]->Answer(0, Kind(PeerResponse::kStored, 1));
  CHECK(f.state->peer_timeout_us[1]->load() == 1000000);  // published when next used

  Result r2;
  put(&r2);
  CHECK(last(1).deadline_ms == f.env.ms + 300);  // 2 x 150 ms
  CHECK(last(2).deadline_ms == f.env.ms + 800);  // 2 x 400 ms
  CHECK(f.state->peer_timeout_us[1]->load() == 300000);
  CHECK(f.state->peer_timeout_us[2]->load() == 800000);
  // a failure is not an answer time; a faster answer does not lower the slowest
  f.peers[1]->Answer(1, Kind(PeerResponse::kError));
  f.env.us += 10000;
  f.peers[2]->Answer(1, Kind(PeerResponse::kStored, 2));
  REQUIRE(r2.calls == 1);

  Result r3;
  put(&r3);
  CHECK(last(1).deadline_ms == f.env.ms + 300);
  CHECK(last(2).deadline_ms == f.env.ms + 800);
  f.env.us += 600000;  // node 2 answers in 600 ms: 1200 ms, capped by the request timeout
  f.peers[2]->Answer(2, Kind(PeerResponse::kStored, 3));
  f.peers[1]->Answer(2, Kind(PeerResponse::kStored, 3));
  REQUIRE(r3.calls == 1);

  Result r4;
  put(&r4);
  CHECK(last(2).deadline_ms == f.env.ms + 1000);
  CHECK(last(1).deadline_ms == f.env.ms + 1000);  // its 600 ms answer: 1200, capped
  f.peers[1]->Answer(3, Kind(PeerResponse::kStored, 4));
  f.peers[2]->Answer(3, Kind(PeerResponse::kStored, 4));
  CHECK(r4.calls == 1);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Coordinator: a large value gets its transfer time on top of the peer's timeout") {
  Fixture f;  // request timeout 1000 ms, peer timeout floor 200 ms
  Result r1;
  f.Run(PeerOp::kPut, "small", 2, 3, &r1, "v");
  f.env.us += 100000;  // both answer in 100 ms: their timeout becomes the 200 ms floor
  f.peers[1]->Answer(0, Kind(PeerResponse::kStored, 1));
  f.peers[2]->Answer(0, Kind(PeerResponse::kStored, 1));
  REQUIRE(r1.calls == 1);
  Result r2;
  f.Run(PeerOp::kPut, "small", 2, 3, &r2, "v");
  CHECK(f.peers[1]->sent.back().deadline_ms == f.env.ms + 200);
  Result big;  // 1 us per 10 bytes: 300 ms more for 3 MB
  f.Run(PeerOp::kPut, "big", 2, 3, &big, std::string(3000000, 'b'));
  CHECK(f.peers[1]->sent.back().deadline_ms == f.env.ms + 500);
  CHECK(f.peers[2]->sent.back().deadline_ms == f.env.ms + 500);
  Result huge;  // never past the request's own deadline
  f.Run(PeerOp::kPut, "huge", 2, 3, &huge, std::string(9000000, 'h'));
  CHECK(f.peers[1]->sent.back().deadline_ms == f.env.ms + 1000);
}

TEST_CASE("PeerTimeout: twice the slowest answer of two periods, within its bounds") {
  const uint64_t period = 10000000;
  PeerTimeout t(200000, 1000000, period);
  uint64_t now = 5000000;
  CHECK(t.timeout_us(now) == 1000000);  // no answer yet
  t.Record(30000, now);
  CHECK(t.timeout_us(now) == 200000);  // 60 ms: the floor
  t.Record(150000, now + 1);
  CHECK(t.timeout_us(now + 2) == 300000);
  t.Record(10000, now + 3);
  CHECK(t.timeout_us(now + 4) == 300000);  // the slowest, not the last
  t.Record(900000, now + 5);
  CHECK(t.timeout_us(now + 6) == 1000000);  // 1.8 s: the request timeout
  // next period: the previous one still counts
  now += period;
  t.Record(120000, now);
  CHECK(t.slowest_us() == 900000);
  // one more: the 900 ms answer is two periods old and forgotten
  now += period;
  CHECK(t.timeout_us(now) == 240000);
  // periods without answers keep the last maximum (a peer that stopped answering)
  now += 5 * period;
  CHECK(t.timeout_us(now) == 240000);
  CHECK(t.slowest_us() == 120000);
}

PeerResponse Failure(bool slow) {
  PeerResponse r;
  r.error = slow ? "timeout" : "connection refused";
  r.slow = slow;
  return r;
}

TEST_CASE("Coordinator: only slow failures open a peer's circuit; fast ones never hold it back") {
  Fixture f;
  Result res[40];
  int n = 0;
  // PUT 1/3 asks every replica; only peer 1's answers matter here (peer 2 never answers).
  auto put = [&](PeerResponse answer) {
    Result& r = res[n++];
    size_t before = f.peers[1]->sent.size();
    f.Run(PeerOp::kPut, "k" + std::to_string(n), 1, 3, &r, "v");
    REQUIRE(r.calls == 1);  // its own write decides
    if (f.peers[1]->sent.size() == before) return false;
    f.peers[1]->Answer(before, std::move(answer));
    return true;
  };
  // A peer that refuses (it is down, or restarting) is asked every time, however often it failed.
  for (int i = 0; i < 20; ++i) CHECK(put(Failure(false)));
  CHECK(f.state->breakers[1]->state(f.env.ms) == CircuitBreaker::State::kClosed);
  CHECK(f.state->peer_failures[1]->load() == 20);
  // A peer that times out 5 times in a row is not asked any more...
  for (int i = 0; i < 5; ++i) CHECK(put(Failure(true)));
  CHECK(f.state->breakers[1]->state(f.env.ms / 1000) != CircuitBreaker::State::kClosed);
  CHECK_FALSE(put(Failure(true)));
  // ... and is pinged instead: at once (the timer is armed to fire now), then every
  // kProbeIntervalMs while its breaker is open.
  CHECK(f.peers[1]->pings.empty());
  REQUIRE(!f.env.armed.empty());
  CHECK(f.env.armed.back() == 0);
  f.coord->OnTimer();
  REQUIRE(f.peers[1]->pings.size() == 1);
  CHECK(f.peers[2]->pings.empty());
  f.AnswerPingAfter(1, 0, Failure(true), Coordinator::kProbeIntervalMs);
  REQUIRE(f.peers[1]->pings.size() == 2);
  // A pong closes it: the next request is sent to the peer again.
  f.AnswerPingAfter(1, 1, Kind(PeerResponse::kPong), 0);
  CHECK(f.state->breakers[1]->state(f.env.ms / 1000) == CircuitBreaker::State::kClosed);
  CHECK(put(Kind(PeerResponse::kStored, 1)));
  // No more pings once every breaker is closed.
  f.env.us += 10 * Coordinator::kProbeIntervalMs * 1000;
  f.coord->OnTimer();
  CHECK(f.peers[1]->pings.size() == 2);
  CHECK(f.coord->pings_sent() == 2);
}

TEST_CASE("Coordinator: Announce pings every peer once, whatever its breaker") {
  Fixture f;
  f.coord->Announce();
  CHECK(f.peers[1]->pings.empty());  // from the timer, on the loop
  REQUIRE(!f.env.armed.empty());
  CHECK(f.env.armed.back() == 0);
  f.coord->OnTimer();
  REQUIRE(f.peers[1]->pings.size() == 1);
  REQUIRE(f.peers[2]->pings.size() == 1);
  f.peers[1]->AnswerPing(0, Kind(PeerResponse::kPong));
  f.peers[2]->AnswerPing(0, Failure(false));  // not up yet: nothing follows
  f.env.us += 10 * Coordinator::kProbeIntervalMs * 1000;
  f.coord->OnTimer();
  CHECK(f.peers[1]->pings.size() == 1);
  CHECK(f.peers[2]->pings.size() == 1);
  CHECK(f.state->breakers[2]->state(f.env.us / 1000) == CircuitBreaker::State::kClosed);
}

TEST_CASE("Coordinator: a circuit opened by another loop is pinged too, and a pong closes it") {
  Fixture f;
  for (int i = 0; i < 5; ++i) f.state->breakers[1]->OnFailure(f.env.us / 1000);
  REQUIRE(f.state->breakers[1]->state(f.env.us / 1000) == CircuitBreaker::State::kOpen);
  Result res;
  f.Run(PeerOp::kPut, "k", 1, 3, &res, "v");
  CHECK(f.peers[1]->sent.empty());  // circuit open: not asked
  f.coord->OnTimer();
  REQUIRE(f.peers[1]->pings.size() == 1);
  CHECK(f.peers[1]->pings[0].deadline_ms > f.env.ms);
  f.peers[1]->AnswerPing(0, Kind(PeerResponse::kPong));
  Result res2;
  f.Run(PeerOp::kPut, "k2", 1, 3, &res2, "v");
  CHECK(f.peers[1]->sent.size() == 1);
}

TEST_CASE("Coordinator: its own replica's full disk fails a write that needed it as 507") {
  Fixture f;
  f.local.disk_full = true;
  Result w;
  f.Run(PeerOp::kPut, "k", 3, 3, &w, "v");  // 3/3: its own copy is needed
  REQUIRE(w.calls == 1);
  CHECK(w.outcome.kind == Outcome::kNoSpace);
  for (int p = 1; p < 3; ++p) f.peers[p]->Answer(0, Kind(PeerResponse::kStored, 1));
  Result ok;
  f.Run(PeerOp::kPut, "k", 2, 3, &ok, "v");  // 2/3: the peers make it
  CHECK(ok.calls == 0);
  for (int p = 1; p < 3; ++p) f.peers[p]->Answer(1, Kind(PeerResponse::kStored, 2));
  REQUIRE(ok.calls == 1);
  CHECK(ok.outcome.kind == Outcome::kStored);
}

TEST_CASE("Coordinator: Close answers pending requests and empties the hedge queue") {
  Fixture f;
  Result res;
  f.Get23("pending", &res);
  CHECK(f.coord->pending() == 1);
  f.coord->Close();
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.kind == Outcome::kUnavailable);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE(
    "Coordinator: a peer's clock-skew refusal fails that replica, counted per peer, "
    "not as slow") {
  Fixture f;
  auto refusal = [](uint64_t ms) {
    PeerResponse r;
    r.error = "3600000 ms ahead of the replica's clock (limit 2000 ms, --max-clock-skew-ms)";
    r.clock_skew = true;
    r.skew_ms = ms;
    return r;
  };
  // 3/3: one refusal fails the write (504), at once.
  Result all;
  f.Run(PeerOp::kPut, "k", 3, 3, &all, "v");
  CHECK(all.calls == 0);
  f.peers[1]->Answer(0, refusal(3600000));
  REQUIRE(all.calls == 1);
  CHECK(all.outcome.kind == Outcome::kUnavailable);
  f.peers[2]->Answer(0, Kind(PeerResponse::kStored, 1));
  CHECK(f.state->peer_skew_refusals[1]->load() == 1);
  CHECK(f.state->peer_last_skew_ms[1]->load() == 3600000);
  CHECK(f.state->peer_skew_refusals[2]->load() == 0);
  CHECK(f.state->peer_failures[1]->load() == 1);
  // 2/3: the others meet ack; the refusing peer's skew is updated to the latest refusal.
  Result two;
  f.Run(PeerOp::kPut, "k", 2, 3, &two, "v");
  f.peers[1]->Answer(1, refusal(3500000));
  CHECK(two.calls == 0);
  f.peers[2]->Answer(1, Kind(PeerResponse::kStored, 2));
  REQUIRE(two.calls == 1);
  CHECK(two.outcome.kind == Outcome::kStored);
  CHECK(f.state->peer_skew_refusals[1]->load() == 2);
  CHECK(f.state->peer_last_skew_ms[1]->load() == 3500000);
  // Many refusals never open the peer's circuit: they are prompt answers. It is asked every
  // time, and its next stored answer is taken as usual.
  for (int i = 0; i < 20; ++i) {
    Result r;
    const size_t before = f.peers[1]->sent.size();
    f.Run(PeerOp::kPut, "k" + std::to_string(i), 1, 3, &r, "v");
    REQUIRE(f.peers[1]->sent.size() == before + 1);
    f.peers[1]->Answer(before, refusal(3600000));
  }
  CHECK(f.state->breakers[1]->state(f.env.ms) == CircuitBreaker::State::kClosed);
  CHECK(f.state->peer_skew_refusals[1]->load() == 22);
  f.coord->OnTimer();
  CHECK(f.peers[1]->pings.empty());  // nothing to probe
}

// ---- read repair -------------------------------------------------------------------------

// The writes (PUT or REMOVE) sent to a peer.
std::vector<const Sent*> Writes(const FakePeer* p) {
  std::vector<const Sent*> w;
  for (const Sent& s : p->sent)
    if (s.op != PeerOp::kGet) w.push_back(&s);
  return w;
}
uint64_t Repairs(const ClusterState& st) {
  return st.read_repairs_blocking.load() + st.read_repairs_background.load();
}

TEST_CASE("Read repair: the stale replicas get the newest value and version before the client") {
  Fixture f;
  const std::string key = "rr";
  f.local.Put(key, "old", 100);
  Result res;
  f.Run(PeerOp::kGet, key, 3, 3, &res);  // asks all three at once
  f.peers[1]->Answer(0, Value("new", 300));
  f.peers[2]->Answer(0, Value("mid", 200));
  // this node (100) and node 2 (200) are stale; node 1 holds the newest
  CHECK(res.calls == 0);
  CHECK(Writes(f.peers[1]).empty());
  auto w2 = Writes(f.peers[2]);
  REQUIRE(w2.size() == 1);
  CHECK(w2[0]->op == PeerOp::kPut);
  CHECK(w2[0]->key == key);
  CHECK(w2[0]->value == "new");
  CHECK(w2[0]->version == 300);
  REQUIRE(f.local.queued.size() == 1);
  CHECK(f.local.queued[0].op == PeerOp::kPut);
  CHECK(f.local.queued[0].value == "new");
  CHECK(f.local.queued[0].version == 300);
  CHECK(f.state->read_repairs_blocking.load() == 2);
  // the client waits for both repair writes
  f.peers[2]->Answer(1, Kind(PeerResponse::kStored, 300));
  CHECK(res.calls == 0);
  f.local.Commit();
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.kind == Outcome::kValue);
  CHECK(res.outcome.value == "new");
  CHECK(res.outcome.version == 300);
  CHECK(f.local.store[key].value == "new");
  CHECK(f.local.store[key].version == 300);
  CHECK(f.state->read_repairs_background.load() == 0);
  CHECK(f.state->read_repair_failures.load() == 0);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Read repair: a newest tombstone is repaired as a REMOVE with its version") {
  Fixture f;
  const std::string key = "gone";
  f.local.Put(key, "alive", 100);
  Result res;
  f.Run(PeerOp::kGet, key, 3, 3, &res);
  f.peers[1]->Answer(0, Kind(PeerResponse::kTombstone, 400));
  f.peers[2]->Answer(0, Kind(PeerResponse::kAbsent));  // answered nothing: stale too
  CHECK(res.calls == 0);
  CHECK(Writes(f.peers[1]).empty());
  auto w2 = Writes(f.peers[2]);
  REQUIRE(w2.size() == 1);
  CHECK(w2[0]->op == PeerOp::kRemove);
  CHECK(w2[0]->version == 400);
  REQUIRE(f.local.queued.size() == 1);
  CHECK(f.local.queued[0].op == PeerOp::kRemove);
  CHECK(f.local.queued[0].version == 400);
  f.local.Commit();
  f.peers[2]->Answer(1, Kind(PeerResponse::kStored, 400));
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.kind == Outcome::kNotFound);
  CHECK(res.outcome.version == 400);
  CHECK(f.local.store[key].tombstone);
  CHECK(f.local.store[key].version == 400);
  CHECK(f.state->read_repairs_blocking.load() == 2);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Read repair: agreeing answers trigger none, nor does a GET with read repair off") {
  for (bool on : {true, false}) {
    Fixture f(ReadFanout::kHedged, on);
    f.local.Put("same", "v", 100);
    Result res;
    f.Run(PeerOp::kGet, "same", 3, 3, &res);
    f.peers[1]->Answer(0, Value("v", 100));
    CHECK(res.calls == 0);
    f.peers[2]->Answer(0, Value("v", 100));
    REQUIRE(res.calls == 1);  // at once: nothing to wait for
    CHECK(res.outcome.value == "v");
    Result none;  // nobody holds it: agreement too
    f.Run(PeerOp::kGet, "nobody", 3, 3, &none);
    f.peers[1]->Answer(1, Kind(PeerResponse::kAbsent));
    f.peers[2]->Answer(1, Kind(PeerResponse::kAbsent));
    REQUIRE(none.calls == 1);
    CHECK(none.outcome.kind == Outcome::kNotFound);
    if (!on) {  // disagreeing, but off: answered at once, nothing written
      Result diff;
      f.Run(PeerOp::kGet, "same", 3, 3, &diff);
      f.peers[1]->Answer(2, Value("w", 200));
      f.peers[2]->Answer(2, Kind(PeerResponse::kAbsent));
      REQUIRE(diff.calls == 1);
      CHECK(diff.outcome.value == "w");
    }
    CHECK(Writes(f.peers[1]).empty());
    CHECK(Writes(f.peers[2]).empty());
    CHECK(f.local.queued.empty());
    CHECK(Repairs(*f.state) == 0);
    CHECK(f.coord->pending() == 0);
  }
}

TEST_CASE("Read repair: a repair write that fails still answers the client with the newest") {
  Fixture f;
  f.local.Put("k", "new", 300);
  Result res;
  f.Run(PeerOp::kGet, "k", 3, 3, &res);
  f.peers[1]->Answer(0, Value("new", 300));
  f.peers[2]->Answer(0, Value("old", 100));
  CHECK(res.calls == 0);
  REQUIRE(Writes(f.peers[2]).size() == 1);
  PeerResponse timeout;
  timeout.error = "timeout";
  timeout.slow = true;
  f.peers[2]->Answer(1, std::move(timeout));
  REQUIRE(res.calls == 1);
  CHECK(res.outcome.kind == Outcome::kValue);
  CHECK(res.outcome.value == "new");
  CHECK(res.outcome.version == 300);
  CHECK(f.state->read_repairs_blocking.load() == 1);
  CHECK(f.state->read_repair_failures.load() == 1);
  // The repair write's answer counts for the peer's health like any other: a slow failure.
  CHECK(f.state->peer_failures[2]->load() == 1);
  CHECK(f.state->breakers[2]->consecutive_failures() == 1);
  // A stale peer whose circuit is open is not written to: the repair fails at once.
  for (int i = 0; i < 5; ++i) f.state->breakers[2]->OnFailure(f.env.us / 1000);
  f.local.Put("k2", "new", 300);
  Result open;
  f.Run(PeerOp::kGet, "k2", 2, 3, &open);  // hedged: itself and node 1
  REQUIRE(f.peers[2]->sent.size() == 2);   // the open circuit failed node 2 at once
  f.peers[1]->Answer(1, Kind(PeerResponse::kAbsent));
  REQUIRE(f.peers[1]->sent.size() == 3);  // the repair of node 1
  f.peers[1]->Answer(2, Kind(PeerResponse::kStored, 300));
  REQUIRE(open.calls == 1);
  CHECK(open.outcome.value == "new");
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Read repair: answers after the client's are compared and repaired in the background") {
  Fixture f(ReadFanout::kAll);  // GET 2/3 asks all three; the third answer comes late
  SUBCASE("a late older answer gets the newest") {
    f.local.Put("k", "v", 200);
    Result res;
    f.Run(PeerOp::kGet, "k", 2, 3, &res);
    f.peers[1]->Answer(0, Value("v", 200));
    REQUIRE(res.calls == 1);  // agreed: answered at once
    CHECK(Repairs(*f.state) == 0);
    f.peers[2]->Answer(0, Kind(PeerResponse::kAbsent));
    auto w = Writes(f.peers[2]);
    REQUIRE(w.size() == 1);
    CHECK(w[0]->op == PeerOp::kPut);
    CHECK(w[0]->value == "v");
    CHECK(w[0]->version == 200);
    CHECK(f.state->read_repairs_background.load() == 1);
    CHECK(f.state->read_repairs_blocking.load() == 0);
    CHECK(f.coord->background_repairs() == 1);
    f.peers[2]->Answer(1, Kind(PeerResponse::kStored, 200));
    CHECK(f.coord->background_repairs() == 0);
    CHECK(res.calls == 1);
  }
  SUBCASE("the newest only the client got is kept for a late older answer") {
    f.local.Put("k", "mine", 200);
    Result res;
    f.Run(PeerOp::kGet, "k", 1, 3, &res);  // its own answer decides
    REQUIRE(res.calls == 1);
    CHECK(res.outcome.value == "mine");
    f.peers[1]->Answer(0, Value("older", 100));
    f.peers[2]->Answer(0, Value("mine", 200));
    auto w = Writes(f.peers[1]);
    REQUIRE(w.size() == 1);
    CHECK(w[0]->value == "mine");
    CHECK(w[0]->version == 200);
    CHECK(Writes(f.peers[2]).empty());
    f.peers[1]->Answer(1, Kind(PeerResponse::kStored, 200));
  }
  SUBCASE("a late newer answer repairs every earlier one") {
    f.local.Put("k", "old", 100);
    Result res;
    f.Run(PeerOp::kGet, "k", 2, 3, &res);
    f.peers[1]->Answer(0, Value("old", 100));
    REQUIRE(res.calls == 1);
    CHECK(res.outcome.value == "old");
    f.peers[2]->Answer(0, Kind(PeerResponse::kTombstone, 500));
    auto w = Writes(f.peers[1]);
    REQUIRE(w.size() == 1);
    CHECK(w[0]->op == PeerOp::kRemove);
    CHECK(w[0]->version == 500);
    REQUIRE(f.local.queued.size() == 1);
    CHECK(f.local.queued[0].op == PeerOp::kRemove);
    CHECK(Writes(f.peers[2]).empty());
    CHECK(f.state->read_repairs_background.load() == 2);
    f.local.Commit();
    f.peers[1]->Answer(1, Kind(PeerResponse::kStored, 500));
    CHECK(f.local.store["k"].tombstone);
  }
  CHECK(f.coord->background_repairs() == 0);
  CHECK(f.coord->pending() == 0);
}

TEST_CASE("Read repair: at most kMaxBackgroundRepairs background writes in flight per loop") {
  Fixture f(ReadFanout::kAll);
  const size_t bound = Coordinator::kMaxBackgroundRepairs, n = bound + 10;
  std::vector<Result> res(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string key = "b" + std::to_string(i);
    f.local.Put(key, "v", 100);
    f.Run(PeerOp::kGet, key, 1, 3, &res[i]);  // its own answer decides
    REQUIRE(res[i].calls == 1);
  }
  for (size_t i = 0; i < n; ++i) f.peers[1]->Answer(i, Kind(PeerResponse::kAbsent));
  CHECK(Writes(f.peers[1]).size() == bound);
  CHECK(f.coord->background_repairs() == bound);
  CHECK(f.state->read_repairs_background.load() == bound);
  CHECK(f.state->read_repairs_skipped.load() == n - bound);
  // one answered: room for one more
  f.peers[1]->Answer(n, Kind(PeerResponse::kStored, 100));
  CHECK(f.coord->background_repairs() == bound - 1);
  f.peers[2]->Answer(0, Kind(PeerResponse::kAbsent));
  CHECK(Writes(f.peers[2]).size() == 1);
  CHECK(f.coord->background_repairs() == bound);
  for (size_t i = 1; i < n; ++i) f.peers[2]->Answer(i, Kind(PeerResponse::kAbsent));
  CHECK(Writes(f.peers[2]).size() == 1);
  CHECK(f.state->read_repairs_skipped.load() == 2 * n - bound - 1);
  // the rest answered: nothing in flight, every request released
  for (FakePeer* p : {f.peers[1], f.peers[2]}) {
    for (size_t i = 0; i < p->sent.size(); ++i)
      if (!p->sent[i].answered) p->Answer(i, Kind(PeerResponse::kStored, 100));
  }
  CHECK(f.coord->background_repairs() == 0);
  CHECK(f.coord->pending() == 0);
  CHECK(f.state->read_repair_failures.load() == 0);
}

TEST_CASE("HedgeDelay: buckets cover every value within 25%") {
  int prev = -1;
  for (uint64_t v = 0; v < (1u << 20); v += 1 + v / 64) {
    int b = HedgeDelay::Bucket(v);
    CHECK(b >= prev);
    prev = b;
    CHECK(HedgeDelay::UpperBound(b) > v);
    CHECK(HedgeDelay::UpperBound(b) <= v + v / 4 + 1);
    if (b > 0) CHECK(HedgeDelay::UpperBound(b - 1) <= v);
  }
  CHECK(HedgeDelay::Bucket(~0ull) == HedgeDelay::kBuckets - 1);
}

TEST_CASE("HedgeDelay: the p99 of each window, clamped") {
  HedgeDelay h(7000, 50000);
  CHECK(h.delay_us() == 7000);
  // 99% at 200 us, 1% slower: the p99 is the 200 us bucket's bound, 224
  for (uint32_t i = 0; i < HedgeDelay::kWindow; ++i) {
    h.Record(i < HedgeDelay::kWindow - 10 ? 200 : 40000);
    if (i + 1 < HedgeDelay::kWindow) CHECK(h.delay_us() == 7000);
  }
  CHECK(h.delay_us() == 224);
  // eleven slow answers: the slow one is the p99
  for (uint32_t i = 0; i < HedgeDelay::kWindow; ++i) h.Record(i < 11 ? 40000 : 200);
  CHECK(h.delay_us() == 40960);
  for (uint32_t i = 0; i < HedgeDelay::kWindow; ++i) h.Record(5);
  CHECK(h.delay_us() == HedgeDelay::kMinUs);
  for (uint32_t i = 0; i < HedgeDelay::kWindow; ++i) h.Record(900000);
  CHECK(h.delay_us() == 50000);
  HedgeDelay clamped(1, 10);
  CHECK(clamped.delay_us() == HedgeDelay::kMinUs);
}

}  // namespace
}  // namespace kv::cluster
