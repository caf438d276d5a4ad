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

TEST_CASE("hint records: the HINTS request vector's payload (proto_spec/vectors/hints_request)") {
  std::string out;
  hintfile::AppendRecord(&out, {PeerOp::kPut, "apple", "red", 0x9828906079000c07ull});
  hintfile::AppendRecord(&out, {PeerOp::kRemove, "pear", "", 0x9828906079000c08ull});
  CHECK(Hex(out) ==
        "0500000003000000"
        "6170706c65"
        "726564"
        "070c007960902898"
        "01"
        "0dec5f520feb8a00"
        "0400000000000000"
        "70656172"
        "080c007960902898"
        "02"
        "9ed1c4aeb6652558");
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

// A peer the test answers by hand. Replays arrive as HINTS requests: each keeps its records.
struct Peer final : PeerTransport {
  struct Rec {
    PeerOp op;
    std::string key, value;
    uint64_t version;
  };
  struct Req {
    PeerOp op;
    std::vector<Rec> recs;
    PeerWaiter* waiter;
    uint64_t cookie;
    std::string key(size_t i = 0) const { return i < recs.size() ? recs[i].key : ""; }
  };
  std::vector<Req> reqs;
  size_t answered = 0;
  bool down = false;  // fails every request at once, as a transport whose connection is dead
  void Send(const PeerRequest& r, uint64_t, PeerWaiter* w, uint64_t cookie) override {
    Req q{r.op, {}, w, cookie};
    if (r.op != PeerOp::kHints)
      q.recs.push_back({r.op, std::string(r.key), std::string(r.value), r.version});
    for (std::string_view rest = r.op == PeerOp::kHints ? r.value : ""; !rest.empty();) {
      hintfile::Record rec;
      size_t len = 0;
      REQUIRE(hintfile::ParseRecord(rest, &rec, &len) == hintfile::Parse::kOk);
      q.recs.push_back({rec.op, std::string(rec.key), std::string(rec.value), rec.version});
      rest.remove_prefix(len);
    }
    reqs.push_back(std::move(q));
    if (down) {
      ++answered;
      w->OnPeerResponse(cookie, PeerResponse{});
    }
  }
  void Ping(uint64_t, PeerWaiter*, uint64_t) override {}
  size_t in_flight() const override { return reqs.size() - answered; }
  void Close() override {}
  // Every record sent, in order.
  std::vector<std::string> Keys() const {
    std::vector<std::string> out;
    for (const Req& q : reqs)
      for (const Rec& r : q.recs) out.push_back(r.key);
    return out;
  }
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
  // Answers request i: kStored (its records stored) or kError.
  void Answer(size_t i, PeerResponse::Kind kind) {
    PeerResponse r;
    r.kind = kind;
    if (kind == PeerResponse::kStored) r.version = peer.reqs[i].recs.size();
    ++peer.answered;
    log->OnAnswer(peer.reqs[i].cookie, r, env.us);
  }
  void AddMany(int n) {
    for (int i = 0; i < n; ++i) log->Add(1, PeerOp::kPut, "k" + std::to_string(i), "v", Version(1));
    log->FlushWrites();
  }
  uint64_t Version(uint64_t age_us) { return version::Make(g_wall_us - age_us, 3); }
};

TEST_CASE("HintLog: replays in order, in one HINTS request, with the original versions") {
  Fixture f;
  f.log->Add(1, PeerOp::kPut, "a", "va", f.Version(3));
  f.log->Add(1, PeerOp::kRemove, "b", "", f.Version(2));
  f.log->Add(1, PeerOp::kPut, "c", "vc", f.Version(1));
  CHECK(f.shared.written() == 3);
  CHECK(f.shared.pending_bytes(1) == 3 * hintfile::kRecordOverhead + 7);
  f.log->FlushWrites();
  CHECK(Files(f.dir + "/hints").size() == 1);
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 1);
  const Peer::Req& q = f.peer.reqs[0];
  CHECK(q.op == PeerOp::kHints);
  REQUIRE(q.recs.size() == 3);
  CHECK(q.recs[0].op == PeerOp::kPut);
  CHECK(q.recs[0].key == "a");
  CHECK(q.recs[0].value == "va");
  CHECK(q.recs[0].version == f.Version(3));
  CHECK(q.recs[1].op == PeerOp::kRemove);
  CHECK(q.recs[1].key == "b");
  CHECK(q.recs[1].version == f.Version(2));
  CHECK(q.recs[2].key == "c");
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 1);  // nothing sent twice while it is out
  CHECK(Files(f.dir + "/hints").size() == 1);
  f.Answer(0, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.shared.replayed() == 3);
  CHECK(f.shared.pending_bytes(1) == 0);
  CHECK(Files(f.dir + "/hints").empty());
  CHECK_FALSE(f.log->has_pending(1));
}

TEST_CASE("HintLog: kBatchHints per request; the file goes once every request is acknowledged") {
  Fixture f;
  f.AddMany(2 * HintLog::kBatchHints + 2);
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 3);
  CHECK(f.peer.reqs[0].recs.size() == HintLog::kBatchHints);
  CHECK(f.peer.reqs[1].recs.size() == HintLog::kBatchHints);
  CHECK(f.peer.reqs[2].recs.size() == 2);
  const std::vector<std::string> keys = f.peer.Keys();
  REQUIRE(keys.size() == 2 * HintLog::kBatchHints + 2);
  for (size_t i = 0; i < keys.size(); ++i) CHECK(keys[i] == "k" + std::to_string(i));
  f.Answer(2, PeerResponse::kStored);
  f.Answer(0, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(Files(f.dir + "/hints").size() == 1);  // the middle request is not acknowledged yet
  CHECK(f.shared.pending_bytes(1) > 0);
  f.Answer(1, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.shared.replayed() == 2 * HintLog::kBatchHints + 2);
  CHECK(f.shared.pending_bytes(1) == 0);
  CHECK(Files(f.dir + "/hints").empty());
}

TEST_CASE("HintLog: a request holds at most kBatchBytes of hints; a larger hint goes as its PUT") {
  Fixture f(64 << 20);
  const std::string big(HintLog::kBatchBytes, 'x');
  const std::string mid(HintLog::kBatchBytes / 2, 'y');
  f.log->Add(1, PeerOp::kPut, "mid1", mid, f.Version(1));
  f.log->Add(1, PeerOp::kPut, "mid2", mid, f.Version(1));  // with mid1: over kBatchBytes
  f.log->Add(1, PeerOp::kPut, "big", big, f.Version(1));
  f.log->Add(1, PeerOp::kPut, "small", "s", f.Version(1));
  f.log->FlushWrites();
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 4);
  CHECK(f.peer.reqs[0].key() == "mid1");
  CHECK(f.peer.reqs[0].recs.size() == 1);
  CHECK(f.peer.reqs[1].key() == "mid2");
  CHECK(f.peer.reqs[1].recs.size() == 1);
  CHECK(f.peer.reqs[2].op == PeerOp::kPut);  // alone, as the write it stands for
  CHECK(f.peer.reqs[2].key() == "big");
  CHECK(f.peer.reqs[2].recs[0].value == big);
  CHECK(f.peer.reqs[2].recs[0].version == f.Version(1));
  CHECK(f.peer.reqs[0].op == PeerOp::kHints);  // over kBatchBytes with the next, but not alone
  CHECK(f.peer.reqs[3].op == PeerOp::kHints);
  for (size_t i = 0; i < 4; ++i) f.Answer(i, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.shared.replayed() == 4);
  CHECK(Files(f.dir + "/hints").empty());
  CHECK(f.peer.reqs[3].key() == "small");
}

TEST_CASE("HintLog: a failed replay is sent again from the first unacknowledged hint") {
  Fixture f;
  const int n = 2 * HintLog::kBatchHints + 22;
  f.AddMany(n);
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 3);
  f.Answer(0, PeerResponse::kStored);
  f.Answer(1, PeerResponse::kError);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 3);  // the last one still out: nothing more until it answers
  f.Answer(2, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 3);  // the back-off
  CHECK(f.log->next_due_us() == f.env.us + HintLog::kRetryMinUs);
  f.env.us += HintLog::kRetryMinUs;
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 5);
  CHECK(f.peer.reqs[3].key() == "k" + std::to_string(HintLog::kBatchHints));
  CHECK(f.peer.reqs[3].recs.size() == HintLog::kBatchHints);
  CHECK(f.peer.reqs[4].key() == "k" + std::to_string(2 * HintLog::kBatchHints));
  CHECK(f.peer.reqs[4].recs.size() == 22);
  f.Answer(3, PeerResponse::kStored);
  f.Answer(4, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.shared.pending_bytes(1) == 0);
  CHECK(Files(f.dir + "/hints").empty());
}

TEST_CASE("HintLog: a peer that fails every replay at once costs one request per back-off") {
  Fixture f;
  f.AddMany(3);
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
  REQUIRE(f.peer.reqs.size() == 3);
  CHECK(f.peer.reqs[2].key() == "k0");
  CHECK(f.peer.reqs[2].recs.size() == 3);
}

TEST_CASE("HintLog: at most kWindow requests in flight, and none while the breaker is open") {
  Fixture f;
  f.AddMany(static_cast<int>(HintLog::kWindow + 1) * HintLog::kBatchHints);
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
  REQUIRE(f.peer.reqs.size() == HintLog::kWindow + 1);
  CHECK(f.peer.reqs.back().key() == "k" + std::to_string(HintLog::kWindow * HintLog::kBatchHints));
}

// 1000 hints for node 1 in a log paced to 1000 replays/s (a request of kBatchHints is paid for
// kBatchHints ms); AnswerAll answers every request sent.
struct Paced : Fixture {
  size_t answered = 0;
  Paced() : Fixture(1 << 20, "", 1000) { AddMany(1000); }
  void AnswerAll() {
    while (answered < peer.reqs.size()) Answer(answered++, PeerResponse::kStored);
  }
};

TEST_CASE("HintLog: --hint-replay-rate paces the replays by the injected clock") {
  Paced f;
  const uint64_t batch_us = HintLog::kBatchHints * 1000;  // what one full request pays for
  auto answer_all = [&] { f.AnswerAll(); };
  const uint64_t t0 = f.env.us;
  f.log->Pump(t0);
  REQUIRE(f.peer.reqs.size() == 1);  // not the window an unpaced replay would send
  CHECK(f.peer.reqs[0].recs.size() == HintLog::kBatchHints);
  CHECK(f.log->next_due_us() == t0 + batch_us);
  answer_all();
  f.log->Pump(t0 + batch_us - 1);
  CHECK(f.peer.reqs.size() == 1);
  f.log->Pump(t0 + batch_us);
  CHECK(f.peer.reqs.size() == 2);
  // Three requests' time later: the three that came due meanwhile, no more; each answer kicks
  // the log, and a kick sends nothing early.
  f.env.us = t0 + 4 * batch_us;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 5);
  answer_all();
  CHECK(f.log->kicked());
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 5);
  CHECK(f.log->next_due_us() == t0 + 5 * batch_us);
  // The peer's answer (PeerAnswered clears the back-off) does not bypass the pace either.
  f.log->PeerAnswered(1);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 5);
  // Keys in order, nothing skipped.
  const std::vector<std::string> keys = f.peer.Keys();
  CHECK(keys.size() == 5 * HintLog::kBatchHints);
  for (size_t i = 0; i < keys.size(); ++i) CHECK(keys[i] == "k" + std::to_string(i));
  // A long pause (no due replays meanwhile: e.g. the peer was down) does not turn into a burst:
  // the count starts again.
  f.env.us = t0 + 10 * 1000000ull;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 6);
  CHECK(f.log->next_due_us() == f.env.us + batch_us);
  // Late by less than a second, the ones due catch up, but never past the window.
  f.env.us += 10 * batch_us;  // 10 due: the window (one unanswered) holds them back
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 6 + HintLog::kWindow - 1);
  answer_all();
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 6 + 2 * HintLog::kWindow - 1);
}

TEST_CASE("HintLog: a busy loop replays at its share of the rate, and at the full rate once free") {
  Paced f;
  auto answer_all = [&] { f.AnswerAll(); };
  f.env.busy = 1000;  // the loop is busy with requests: the minimum share
  const uint64_t rate = 1000 * ForegroundLoad::kMinShare / 1000;
  const uint64_t gap = HintLog::kBatchHints * 1000000 / rate;  // one request's worth
  const uint64_t t0 = f.env.us;
  f.log->Pump(t0);
  REQUIRE(f.peer.reqs.size() == 1);
  CHECK(f.log->next_due_us() == t0 + gap);
  answer_all();
  f.env.us = t0 + gap - 1;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 1);  // a free loop would have sent more by now
  f.env.us = t0 + gap;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 2);
  answer_all();
  // Free again: the new rate applies from the request due at the old one, which was paid for
  // at the old rate (no burst on the change); from then on one per kBatchHints ms.
  const uint64_t batch_us = HintLog::kBatchHints * 1000;
  f.env.busy = 0;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 2);
  CHECK(f.log->next_due_us() == t0 + 2 * gap);
  f.env.us = t0 + 2 * gap;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 3);
  CHECK(f.log->next_due_us() == f.env.us + batch_us);
  answer_all();
  f.env.us += 3 * batch_us;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 6);  // three due in three requests' time
  answer_all();
  // Busy halfway: a share of the full rate, from the next request due.
  f.env.busy = (ForegroundLoad::kFreeBelow + ForegroundLoad::kFullAt) / 2;
  const uint64_t mid_rate = 1000 * ForegroundLoad::Share(f.env.busy) / 1000;
  REQUIRE(mid_rate < 1000);
  f.env.us += batch_us;
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == 7);
  CHECK(f.log->next_due_us() == f.env.us + HintLog::kBatchHints * 1000000 / mid_rate);
  const std::vector<std::string> keys = f.peer.Keys();
  for (size_t i = 0; i < keys.size(); ++i) CHECK(keys[i] == "k" + std::to_string(i));
}

TEST_CASE("HintLog: unpaced (rate 0), a whole window leaves at once") {
  Fixture f;
  f.AddMany(static_cast<int>(HintLog::kWindow + 1) * HintLog::kBatchHints);
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.size() == HintLog::kWindow);
  for (const Peer::Req& q : f.peer.reqs) CHECK(q.recs.size() == HintLog::kBatchHints);
}

TEST_CASE("HintLog: hints older than the grace are dropped, not replayed") {
  Fixture f;
  f.log->Add(1, PeerOp::kPut, "old", "v", f.Version(11 * 1000000ull));
  f.log->Add(1, PeerOp::kPut, "new", "v", f.Version(9 * 1000000ull));
  f.log->Add(1, PeerOp::kPut, "old2", "v", f.Version(12 * 1000000ull));
  f.log->FlushWrites();
  f.log->Pump(f.env.us);
  REQUIRE(f.peer.reqs.size() == 1);
  REQUIRE(f.peer.reqs[0].recs.size() == 1);
  CHECK(f.peer.reqs[0].key() == "new");
  CHECK(f.shared.dropped(HintShared::kExpired) == 2);
  f.Answer(0, PeerResponse::kStored);
  f.log->Pump(f.env.us);
  CHECK(f.shared.pending_bytes(1) == 0);
  CHECK(Files(f.dir + "/hints").empty());
}

TEST_CASE("HintLog: a file of expired hints only is dropped without a request") {
  Fixture f;
  f.log->Add(1, PeerOp::kPut, "old", "v", f.Version(11 * 1000000ull));
  f.log->Add(1, PeerOp::kRemove, "old2", "", f.Version(12 * 1000000ull));
  f.log->FlushWrites();
  f.log->Pump(f.env.us);
  CHECK(f.peer.reqs.empty());
  CHECK(f.shared.dropped(HintShared::kExpired) == 2);
  CHECK(f.shared.pending_bytes(1) == 0);
  CHECK(Files(f.dir + "/hints").empty());
  CHECK_FALSE(f.log->has_pending(1));
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
  REQUIRE(g.peer.reqs.size() == 1);
  REQUIRE(g.peer.reqs[0].recs.size() == 2);
  CHECK(g.peer.reqs[0].key() == "x");
  CHECK(g.peer.reqs[0].recs[1].op == PeerOp::kRemove);
  g.Answer(0, PeerResponse::kStored);
  g.log->Pump(g.env.us);
  CHECK(g.shared.dropped(HintShared::kCorrupt) == 1);
  CHECK(g.shared.pending_bytes(1) == 0);
  CHECK(Files(dir + "/hints").empty());
}

}  // namespace
}  // namespace kv::cluster
