// Hint files and HintLog: the record and header bytes (proto_spec/storage-format.md, "Hint
// files"), replay in order with the original versions, the window, a failed replay resent from
// the first unacknowledged hint, files removed once acknowledged, hints found again after a
// restart (a torn tail ignored), and the drops by age and by size.
#include "cluster/hints.h"

#include <dirent.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "cluster/coordinator.h"
#include "cluster/foreground_load.h"
#include "cluster/hint_file.h"
#include "cluster/hlc.h"
#include "cluster/peer_health.h"
#include "storage/log_format.h"

namespace kv::cluster {
namespace {

std::string Hex(const std::string& s) {
  std::string out;
  char b[4];
  for (unsigned char c : s) {
    snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

TEST_CASE("hint record: the storage log record's bytes (the same vector)") {
  std::string out;
  hintfile::AppendRecord(&out, {PeerOp::kPut, "apple", "red", 0x9828906079000c07ull});
  CHECK(Hex(out) ==
        "0500000003000000"
        "6170706c65"
        "726564"
        "070c007960902898"
        "01"
        "0dec5f520feb8a00");
  hintfile::Record r;
  size_t len = 0;
  REQUIRE(hintfile::ParseRecord(out, &r, &len) == hintfile::Parse::kOk);
  CHECK(len == out.size());
  CHECK(r.op == PeerOp::kPut);
  CHECK(r.key == "apple");
  CHECK(r.value == "red");
  CHECK(r.version == 0x9828906079000c07ull);
  // Every prefix needs more; any flipped byte is caught.
  for (size_t n = 0; n < out.size(); ++n) {
    CHECK(hintfile::ParseRecord(out.substr(0, n), &r, &len) == hintfile::Parse::kNeedMore);
  }
  for (size_t i = 8; i < out.size(); ++i) {
    std::string bad = out;
    bad[i] ^= 0x20;
    CHECK(hintfile::ParseRecord(bad, &r, &len) == hintfile::Parse::kCorrupt);
  }
}

TEST_CASE("hint record: a tombstone stores no value") {
  std::string out;
  hintfile::AppendRecord(&out, {PeerOp::kRemove, "k", "ignored", 7});
  hintfile::Record r;
  size_t len = 0;
  REQUIRE(hintfile::ParseRecord(out, &r, &len) == hintfile::Parse::kOk);
  CHECK(r.op == PeerOp::kRemove);
  CHECK(r.value.empty());
  CHECK(out.size() == hintfile::RecordSize(1, 0));
}

TEST_CASE("hint record: an expiring value keeps its expiry (type 3, as in the storage log)") {
  std::string out;
  hintfile::AppendRecord(&out, {PeerOp::kPut, "k", "val", 7, 1700000060000});
  CHECK(out.size() == hintfile::RecordSize(1, 3 + 8));
  CHECK(static_cast<uint8_t>(out[out.size() - 9]) == hintfile::kTypeExpiring);
  hintfile::Record r;
  size_t len = 0;
  REQUIRE(hintfile::ParseRecord(out, &r, &len) == hintfile::Parse::kOk);
  CHECK(r.op == PeerOp::kPut);
  CHECK(r.value == "val");
  CHECK(r.expires_ms == 1700000060000);
  CHECK(r.version == 7);
  // The same bytes as the storage engine's log record of that entry.
  std::string stored(8, '\0');
  for (int i = 0; i < 8; ++i) stored[i] = static_cast<char>(1700000060000ull >> (8 * i));
  std::string rec;
  storage::EncodeLogRecord("k", stored + "val", 7, storage::EntryType::kExpiring, &rec);
  CHECK(rec == out);
  // A removal never carries one.
  out.clear();
  hintfile::AppendRecord(&out, {PeerOp::kRemove, "k", "", 7, 1700000060000});
  REQUIRE(hintfile::ParseRecord(out, &r, &len) == hintfile::Parse::kOk);
  CHECK(r.op == PeerOp::kRemove);
  CHECK(r.expires_ms == 0);
}

TEST_CASE("hint file header: vector, and damaged headers") {
  std::string out;
  hintfile::AppendHeader(&out, "http://n2:8080");
  CHECK(Hex(out) ==
        "6b7668696e743031"
        "0e000000"
        "687474703a2f2f6e323a38303830"
        "d882411ed4d812aa");
  std::string url;
  size_t len = 0;
  REQUIRE(hintfile::ParseHeader(out, &url, &len) == hintfile::Parse::kOk);
  CHECK(url == "http://n2:8080");
  CHECK(len == out.size());
  CHECK(hintfile::ParseHeader(out.substr(0, 20), &url, &len) == hintfile::Parse::kNeedMore);
  std::string bad = out;
  bad[15] ^= 1;
  CHECK(hintfile::ParseHeader(bad, &url, &len) == hintfile::Parse::kCorrupt);
  CHECK(hintfile::ParseHeader("not a hint file", &url, &len) == hintfile::Parse::kCorrupt);
}

// A peer the test answers by hand.
struct Peer final : PeerTransport {
  struct Req {
    PeerOp op;
    std::string key, value;
    uint64_t version;
    PeerWaiter* waiter;
    uint64_t cookie;
  };
  std::vector<Req> reqs;
  size_t answered = 0;
  bool down = false;  // fails every request at once, as a transport whose connection is dead
  void Send(const PeerRequest& r, uint64_t, PeerWaiter* w, uint64_t cookie) override {
    reqs.push_back({r.op, std::string(r.key), std::string(r.value), r.version, w, cookie});
    if (down) {
      ++answered;
      w->OnPeerResponse(cookie, PeerResponse{});
    }
  }
  void Ping(uint64_t, PeerWaiter*, uint64_t) override {}
  size_t in_flight() const override { return reqs.size() - answered; }
  void Close() override {}
};

struct Env final : CoordinatorEnv {
  uint64_t us = 5000000;
  uint32_t busy = 0;  // the loop's busy level the log sees (permille)
  uint64_t NowMs() override { return us / 1000; }
  uint64_t NowUs() override { return us; }
  void ArmTimer(uint64_t) override {}
  uint32_t BusyPermille() override { return busy; }
};

uint64_t g_wall_us = 1700000000000000ull;
uint64_t FakeWall() {
  return g_wall_us;
}

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = d ? readdir(d) : nullptr) {
    if (e->d_name[0] != '.') out.push_back(e->d_name);
  }
  if (d) closedir(d);
  return out;
}

// One loop's HintLog for target node 1 of {self, peer}, its answers handed back by the test.
struct Fixture : PeerWaiter {
  std::string dir;
  std::vector<std::string> urls{"http://self:1", "http://peer:2"};
  Hlc hlc{0, &FakeWall};
  CircuitBreaker self_breaker, breaker;
  Env env;
  Peer peer;
  HintShared shared;
  std::unique_ptr<HintLog> log;
  bool remove_dir = true;  // the destructor removes the directory

  ~Fixture() {
    log.reset();
    if (!remove_dir) return;
    for (const std::string& name : Files(dir + "/hints")) unlink((dir + "/hints/" + name).c_str());
    rmdir((dir + "/hints").c_str());
    rmdir(dir.c_str());
  }
  uint64_t replay_per_second = 0;  // HintOptions::replay_per_second of the next Open

  explicit Fixture(uint64_t max_bytes = 1 << 20, std::string d = "", uint64_t rate = 0)
      : replay_per_second(rate) {
    g_wall_us = 1700000000000000ull;
    if (d.empty()) {
      char tmpl[] = "/tmp/hints_test.XXXXXX";
      REQUIRE(mkdtemp(tmpl) != nullptr);
      d = tmpl;
    }
    dir = d;
    Open(max_bytes);
  }
  void Open(uint64_t max_bytes) {
    HintOptions o;
    o.dir = dir + "/hints";
    o.max_bytes = max_bytes;
    o.grace_us = 10 * 1000000ull;
    o.replay_per_second = replay_per_second;
    std::string err;
    REQUIRE(shared.Open(o, urls, &err));
    log = std::make_unique<HintLog>(&shared, 0, 1, std::vector<PeerTransport*>{nullptr, &peer},
                                    std::vector<CircuitBreaker*>{&self_breaker, &breaker}, &hlc,
                                    &env, 1000, this);
  }
  void OnPeerResponse(uint64_t cookie, PeerResponse&& r) override {
    log->OnAnswer(cookie, r, env.us);
  }
  void Answer(size_t i, PeerResponse::Kind kind) {
    PeerResponse r;
    r.kind = kind;
    ++peer.answered;
    log->OnAnswer(peer.reqs[i].cookie, r, env.us);
  }
  uint64_t Version(uint64_t age_us) { return version::Make(g_wall_us - age_us, 3); }
};

TEST_CASE("HintLog: replays in order with the original versions, then removes the file") {
  Fixture f;
  f.log->Add(1, PeerOp::kPut, "a", "va", f.Version(3));
  f.log->Add(1, PeerOp::kRemove, "b", "", f.Version(2));
  f.log->Add(1, PeerOp::kPut, "c", "vc", f.Version(1));
  CHECK(f.shared.written() == 3);
  CHECK(f.shared.pending_bytes(1) == 3 * hintfile::kRecordOverhead + 7);
  f.log->FlushWrites();
  CHECK(Files(f.dir + "/hints").size() == 1);
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 3);
  CHECK(f.peer.reqs[0].key == "a");
  CHECK(f.peer.reqs[0].value == "va");
  CHECK(f.peer.reqs[0].version == f.Version(3));
  CHECK(f.peer.reqs[1].op == PeerOp::kRemove);
  CHECK(f.peer.reqs[1].key == "b");
  CHECK(f.peer.reqs[2].key == "c");
  f.Answer(2, PeerResponse::kStored);
  f.Answer(0, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(Files(f.dir + "/hints").size() == 1);  // "b" is not acknowledged yet
  f.Answer(1, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.shared.replayed() == 3);
  CHECK(f.shared.pending_bytes(1) == 0);
  CHECK(Files(f.dir + "/hints").empty());
  CHECK_FALSE(f.log->has_pending(1));
}

TEST_CASE("HintLog: a failed replay is sent again from the first unacknowledged hint") {
  Fixture f;
  for (char k = 'a'; k <= 'd'; ++k)
    f.log->Add(1, PeerOp::kPut, std::string(1, k), "v", f.Version(1));
  f.log->FlushWrites();
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 4);
  f.Answer(0, PeerResponse::kStored);
  f.Answer(1, PeerResponse::kError);
  f.Answer(2, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 4);  // "d" still out: nothing more until every answer is in
  f.Answer(3, PeerResponse::kError);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 4);  // the back-off
  CHECK(f.log->next_due_us() == f.env.us + HintLog::kRetryMinUs);
  f.env.us += HintLog::kRetryMinUs;
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 7);
  CHECK(f.peer.reqs[4].key == "b");
  CHECK(f.peer.reqs[5].key == "c");
  CHECK(f.peer.reqs[6].key == "d");
  for (size_t i = 4; i < 7; ++i) f.Answer(i, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.shared.pending_bytes(1) == 0);
  CHECK(Files(f.dir + "/hints").empty());
}

TEST_CASE("HintLog: a peer that fails every replay at once costs one request per back-off") {
  Fixture f;
  for (int i = 0; i < 3; ++i)
    f.log->Add(1, PeerOp::kPut, "k" + std::to_string(i), "v", f.Version(1));
  f.log->FlushWrites();
  f.peer.down = true;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 1);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 1);
  f.env.us += HintLog::kRetryMinUs;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 2);
  CHECK(f.log->next_due_us() == f.env.us + 2 * HintLog::kRetryMinUs);  // doubled
  f.peer.down = false;
  f.log->PeerAnswered(1);  // e.g. its handshake: at once, and from the first hint
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 5);
  CHECK(f.peer.reqs[2].key == "k0");
}

TEST_CASE("HintLog: at most kWindow replays in flight, and none while the breaker is open") {
  Fixture f;
  for (int i = 0; i < 40; ++i)
    f.log->Add(1, PeerOp::kPut, "k" + std::to_string(i), "v", f.Version(1));
  f.log->FlushWrites();
  for (int i = 0; i < 5; ++i) f.breaker.OnFailure(f.env.us / 1000);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.empty());
  f.breaker.OnSuccess();
  f.log->PeerAnswered(1);
  CHECK(f.log->kicked());
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == HintLog::kWindow);
  f.Answer(0, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == HintLog::kWindow + 1);
  CHECK(f.peer.reqs.back().key == "k16");
}

// 100 hints for node 1 in a log paced to 1000 replays/s; AnswerAll answers every replay sent.
struct Paced : Fixture {
  size_t answered = 0;
  Paced() : Fixture(1 << 20, "", 1000) {
    for (int i = 0; i < 100; ++i)
      log->Add(1, PeerOp::kPut, "k" + std::to_string(i), "v", Version(1));
    log->FlushWrites();
  }
  void AnswerAll() {
    while (answered < peer.reqs.size()) Answer(answered++, PeerResponse::kStored);
  }
};

TEST_CASE("HintLog: --hint-replay-rate paces the replays by the injected clock") {
  Paced f;  // one replay per 1000 us
  auto answer_all = [&] { f.AnswerAll(); };
  const uint64_t t0 = f.env.us;
  f.log->Pump(t0);
  REQUIRE(f.peer.reqs.size() == 1);  // not the window of 16 unpaced replays would send
  CHECK(f.log->next_due_us() == t0 + 1000);
  answer_all();
  f.log->Pump(t0 + 999);
  CHECK(f.peer.reqs.size() == 1);
  f.log->Pump(t0 + 1000);
  CHECK(f.peer.reqs.size() == 2);
  // 5 ms later: the five that came due meanwhile, no more; each answer kicks the log, and a
  // kick sends nothing early.
  f.env.us = t0 + 6000;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 7);
  answer_all();
  CHECK(f.log->kicked());
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 7);
  CHECK(f.log->next_due_us() == t0 + 7000);
  // The peer's answer (PeerAnswered clears the back-off) does not bypass the pace either.
  f.log->PeerAnswered(1);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 7);
  // Keys in order, nothing skipped.
  for (size_t i = 0; i < f.peer.reqs.size(); ++i)
    CHECK(f.peer.reqs[i].key == "k" + std::to_string(i));
  // A long pause (no due replays meanwhile: e.g. the peer was down) does not turn into a burst:
  // the count starts again.
  f.env.us = t0 + 10 * 1000000ull;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 8);
  CHECK(f.log->next_due_us() == f.env.us + 1000);
  // Late by less than a second, the ones due catch up, but never past the window.
  f.env.us += 100 * 1000;  // 100 due: the window (16 unanswered) holds them back
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 8 + HintLog::kWindow - 1);
  answer_all();
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 8 + 2 * HintLog::kWindow - 1);
}

TEST_CASE("HintLog: a busy loop replays at its share of the rate, and at the full rate once free") {
  Paced f;  // one replay per 1000 us while the loop has room
  auto answer_all = [&] { f.AnswerAll(); };
  f.env.busy = 1000;  // the loop is busy with requests: the minimum share
  const uint64_t rate = 1000 * ForegroundLoad::kMinShare / 1000;
  const uint64_t gap = 1000000 / rate;
  const uint64_t t0 = f.env.us;
  f.log->Pump(t0);
  REQUIRE(f.peer.reqs.size() == 1);
  CHECK(f.log->next_due_us() == t0 + gap);
  answer_all();
  f.env.us = t0 + gap - 1;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 1);  // 1000 us later a free loop would have sent one more
  f.env.us = t0 + gap;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 2);
  answer_all();
  // Free again: the new rate applies from the replay due at the old one, which was paid for at
  // the old rate (no burst on the change); from then on one per 1000 us.
  f.env.busy = 0;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 2);
  CHECK(f.log->next_due_us() == t0 + 2 * gap);
  f.env.us = t0 + 2 * gap;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 3);
  CHECK(f.log->next_due_us() == f.env.us + 1000);
  answer_all();
  f.env.us += 5000;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 8);  // five due in 5 ms
  answer_all();
  // Busy halfway: a share of the full rate, from the next replay due.
  f.env.busy = (ForegroundLoad::kFreeBelow + ForegroundLoad::kFullAt) / 2;
  const uint64_t mid_rate = 1000 * ForegroundLoad::Share(f.env.busy) / 1000;
  REQUIRE(mid_rate < 1000);
  f.env.us += 1000;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 9);
  CHECK(f.log->next_due_us() == f.env.us + 1000000 / mid_rate);
  for (size_t i = 0; i < f.peer.reqs.size(); ++i)
    CHECK(f.peer.reqs[i].key == "k" + std::to_string(i));
}

TEST_CASE("HintLog: unpaced (rate 0), a whole window leaves at once") {
  Fixture f;
  for (int i = 0; i < 40; ++i)
    f.log->Add(1, PeerOp::kPut, "k" + std::to_string(i), "v", f.Version(1));
  f.log->FlushWrites();
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == HintLog::kWindow);
}

TEST_CASE("HintLog: hints older than the grace are dropped, not replayed") {
  Fixture f;
  f.log->Add(1, PeerOp::kPut, "old", "v", f.Version(11 * 1000000ull));
  f.log->Add(1, PeerOp::kPut, "new", "v", f.Version(9 * 1000000ull));
  f.log->FlushWrites();
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 1);
  CHECK(f.peer.reqs[0].key == "new");
  CHECK(f.shared.dropped(HintShared::kExpired) == 1);
}

TEST_CASE("HintLog: hints past max_bytes for their target are dropped and counted") {
  const uint64_t one = hintfile::RecordSize(2, 10);
  Fixture f(2 * one);
  for (int i = 0; i < 5; ++i) f.log->Add(1, PeerOp::kPut, "k" + std::to_string(i), "0123456789", 1);
  CHECK(f.shared.written() == 2);
  CHECK(f.shared.dropped(HintShared::kFull) == 3);
  CHECK(f.shared.pending_bytes(1) == 2 * one);
}

TEST_CASE("HintLog: hints survive a restart; a torn tail is ignored") {
  std::string dir;
  {
    Fixture f;
    f.remove_dir = false;  // g goes on with it
    dir = f.dir;
    f.log->Add(1, PeerOp::kPut, "x", "vx", f.Version(1));
    f.log->Add(1, PeerOp::kRemove, "y", "", f.Version(1));
    f.log->Close();
  }
  auto files = Files(dir + "/hints");
  REQUIRE(files.size() == 1);
  {
    std::ofstream out(dir + "/hints/" + files[0], std::ios::app | std::ios::binary);
    out << std::string("\x05\x00\x00\x00\x09", 5);  // a record cut short by a crash
  }
  Fixture g(1 << 20, dir);
  CHECK(g.shared.pending_bytes(1) > 0);
  g.log->Pump(g.env.us);
  REQUIRE(g.peer.reqs.size() == 2);
  CHECK(g.peer.reqs[0].key == "x");
  CHECK(g.peer.reqs[1].op == PeerOp::kRemove);
  g.Answer(0, PeerResponse::kStored);
  g.Answer(1, PeerResponse::kStored);
  g.log->Pump(g.env.us);
  CHECK(g.shared.dropped(HintShared::kCorrupt) == 1);
  CHECK(g.shared.pending_bytes(1) == 0);
  CHECK(Files(dir + "/hints").empty());
}

}  // namespace
}  // namespace kv::cluster
