#include "cluster/accumulator.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace kv::cluster {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif

struct Answer {
  AnswerKind kind;
  uint64_t version;
};

bool Ok(const Answer& a) {
  return a.kind != AnswerKind::kFailed;
}
uint64_t EffectiveVersion(const Answer& a) {
  return a.kind == AnswerKind::kAbsent ? 0 : a.version;
}
// Freshness rank of a non-failed answer: version, then real answers over kAbsent.
std::pair<uint64_t, int> Rank(const Answer& a) {
  return {EffectiveVersion(a), a.kind == AnswerKind::kAbsent ? 0 : 1};
}

TEST_CASE("Accumulator: simple quorum read") {
  Accumulator acc(2, 3);
  CHECK_FALSE(acc.decided());
  CHECK_FALSE(acc.Deliver(1, AnswerKind::kValue, 10));
  CHECK_FALSE(acc.decided());
  CHECK(acc.Deliver(0, AnswerKind::kValue, 20));
  CHECK(acc.decided());
  CHECK(acc.succeeded());
  CHECK(acc.freshest() == 0);
  CHECK(acc.freshest_kind() == AnswerKind::kValue);
  CHECK(acc.freshest_version() == 20);
  // A late answer neither decides again nor changes the frozen result.
  CHECK_FALSE(acc.Deliver(2, AnswerKind::kTombstone, 30));
  CHECK(acc.freshest() == 0);
  CHECK(acc.freshest_version() == 20);
  CHECK(acc.successes() == 3);
  CHECK(acc.kind(2) == AnswerKind::kTombstone);
  CHECK(acc.version(2) == 30);
}

TEST_CASE("Accumulator: failure decided by the (from - ack + 1)-th failure") {
  Accumulator acc(2, 3);
  CHECK_FALSE(acc.Deliver(2, AnswerKind::kFailed, 0));
  CHECK_FALSE(acc.Deliver(0, AnswerKind::kAbsent, 99));
  CHECK(acc.Deliver(1, AnswerKind::kFailed, 0));
  CHECK_FALSE(acc.succeeded());
  CHECK(acc.freshest() == 0);  // the kAbsent answer, counted before the decision
  CHECK(acc.freshest_kind() == AnswerKind::kAbsent);
  CHECK(acc.freshest_version() == 0);  // kAbsent counts as version 0
  CHECK(acc.failures() == 2);
}

TEST_CASE("Accumulator: all failed gives freshest -1") {
  Accumulator acc(1, 2);
  CHECK_FALSE(acc.Deliver(0, AnswerKind::kFailed, 5));
  CHECK(acc.Deliver(1, AnswerKind::kFailed, 5));
  CHECK_FALSE(acc.succeeded());
  CHECK(acc.freshest() == -1);
  CHECK(acc.freshest_kind() == AnswerKind::kFailed);
  CHECK(acc.freshest_version() == 0);
}

TEST_CASE("Accumulator: a real answer beats kAbsent, even at version 0") {
  Accumulator acc(3, 3);
  CHECK_FALSE(acc.Deliver(0, AnswerKind::kAbsent, 0));
  CHECK_FALSE(acc.Deliver(1, AnswerKind::kTombstone, 0));
  CHECK(acc.Deliver(2, AnswerKind::kAbsent, 0));
  CHECK(acc.freshest() == 1);
  CHECK(acc.freshest_kind() == AnswerKind::kTombstone);
}

TEST_CASE("Accumulator: kMaxReplicas replicas") {
  Accumulator acc(Accumulator::kMaxReplicas, Accumulator::kMaxReplicas);
  for (int i = 0; i < Accumulator::kMaxReplicas - 1; ++i) {
    CHECK_FALSE(acc.Deliver(i, AnswerKind::kStored, 100 + i));
  }
  CHECK(acc.Deliver(Accumulator::kMaxReplicas - 1, AnswerKind::kStored, 1));
  CHECK(acc.succeeded());
  CHECK(acc.freshest() == Accumulator::kMaxReplicas - 2);
}

// Every ack/from with from <= 5, every assignment of answer kinds, every delivery order, checked
// against a sequential model.
TEST_CASE("Accumulator: exhaustive single-thread table for from <= 5") {
  const AnswerKind kKinds[] = {AnswerKind::kFailed, AnswerKind::kAbsent, AnswerKind::kValue,
                               AnswerKind::kTombstone, AnswerKind::kStored};
  // Versions with ties (replicas 0 and 2, 1 and 4); kAbsent passes a non-zero version on purpose.
  const uint64_t kVersions[] = {5, 3, 5, 9, 3};
  const int kinds_used = kTsan ? 3 : 5;
  long runs = 0;
  for (int from = 1; from <= 5; ++from) {
    int assignments = 1;
    for (int i = 0; i < from; ++i) assignments *= kinds_used;
    for (int a = 0; a < assignments; ++a) {
      Answer answers[5];
      for (int i = 0, x = a; i < from; ++i, x /= kinds_used) {
        answers[i] = {kKinds[x % kinds_used], kVersions[i]};
      }
      std::vector<int> order(from);
      std::iota(order.begin(), order.end(), 0);
      do {
        for (int ack = 1; ack <= from; ++ack) {
          // Model: walk the order; the first threshold reached decides.
          int s = 0, f = 0, decider_pos = -1, best = -1;
          bool success = false;
          for (int pos = 0; pos < from && decider_pos < 0; ++pos) {
            const Answer& ans = answers[order[pos]];
            if (Ok(ans)) {
              if (best < 0 || Rank(ans) > Rank(answers[best])) best = order[pos];
              if (++s == ack) decider_pos = pos, success = true;
            } else if (++f == from - ack + 1) {
              decider_pos = pos;
            }
          }
          REQUIRE(decider_pos >= 0);  // all answers in: always decided

          Accumulator acc(ack, from);
          for (int pos = 0; pos < from; ++pos) {
            int r = order[pos];
            bool got = acc.Deliver(r, answers[r].kind, answers[r].version);
            if (got != (pos == decider_pos)) {
              FAIL("from=" << from << " ack=" << ack << " assignment=" << a << " pos=" << pos);
            }
            REQUIRE(acc.decided() == (pos >= decider_pos));
            if (pos == decider_pos) {
              REQUIRE(acc.succeeded() == success);
              REQUIRE(acc.freshest() == best);
              if (best >= 0) {
                REQUIRE(acc.freshest_kind() == answers[best].kind);
                REQUIRE(acc.freshest_version() == EffectiveVersion(answers[best]));
              }
            }
          }
          // Frozen after the decision.
          REQUIRE(acc.succeeded() == success);
          REQUIRE(acc.freshest() == best);
          ++runs;
        }
      } while (std::next_permutation(order.begin(), order.end()));
    }
  }
  MESSAGE("single-thread table runs: " << runs);
}

// Many accumulators, answers delivered by several threads in random order. The outcome is
// deterministic (ack + (from - ack + 1) > from: success iff at least ack answers succeed), the
// decider must be a success (resp. failure) answer, and freshest must rank at or above the
// decider and be beaten by at most (#successes - ack) successes, because at the decision at
// least ack successes were counted and freshest is at least as fresh as all of them. The decider
// also reads the caller's per-replica payload of freshest and of itself, which the memory
// ordering contract makes safe (TSan checks this).
TEST_CASE("Accumulator: multi-thread stress, exactly one decider with a consistent result") {
  const int kThreads = 4;
  const int kAccumulators = kTsan ? 50000 : 100000;
  const int kBatch = 256;  // accumulators in flight at once, so threads collide on the same ones

  struct Case {
    int ack = 1, from = 1;
    Answer answers[Accumulator::kMaxReplicas];
    uint64_t payload[Accumulator::kMaxReplicas];  // written by the delivering thread, plain
    std::unique_ptr<Accumulator> acc;
    std::atomic<int> deciders{0};
    int decider = -1;  // written by the decider only
    bool success = false;
    int freshest = -1;
    uint64_t freshest_version = 0;
    AnswerKind freshest_kind = AnswerKind::kFailed;
    uint64_t freshest_payload = 0;
    uint64_t decider_payload = 0;
  };
  std::vector<Case> cases(kAccumulators);
  std::mt19937_64 rng(2024);
  for (Case& c : cases) {
    c.from = 1 + static_cast<int>(rng() % Accumulator::kMaxReplicas);
    if (rng() % 4 == 0) c.from = 1 + static_cast<int>(rng() % 3);
    c.ack = 1 + static_cast<int>(rng() % c.from);
    int fail_pct = static_cast<int>(rng() % 101);
    for (int r = 0; r < c.from; ++r) {
      AnswerKind k = static_cast<int>(rng() % 100) < fail_pct
                         ? AnswerKind::kFailed
                         : static_cast<AnswerKind>(1 + rng() % 4);
      c.answers[r] = {k, 1 + rng() % 8};  // small version range: many ties
      c.payload[r] = 0;
    }
    c.acc = std::make_unique<Accumulator>(c.ack, c.from);
  }
  // Work items, shuffled within each batch.
  std::vector<std::pair<int, int>> items;
  for (int b = 0; b < kAccumulators; b += kBatch) {
    size_t start = items.size();
    for (int i = b; i < std::min(kAccumulators, b + kBatch); ++i) {
      for (int r = 0; r < cases[i].from; ++r) items.emplace_back(i, r);
    }
    std::shuffle(items.begin() + start, items.end(), rng);
  }
  std::atomic<size_t> next{0};  // relaxed: hands out items without creating happens-before
  auto worker = [&] {
    for (;;) {
      size_t n = next.fetch_add(1, std::memory_order_relaxed);
      if (n >= items.size()) return;
      auto [i, r] = items[n];
      Case& c = cases[i];
      c.payload[r] = (uint64_t{static_cast<uint32_t>(i)} << 8) | static_cast<uint64_t>(r);
      if (c.acc->Deliver(r, c.answers[r].kind, c.answers[r].version)) {
        c.deciders.fetch_add(1, std::memory_order_relaxed);
        c.decider = r;
        c.success = c.acc->succeeded();
        c.freshest = c.acc->freshest();
        c.freshest_version = c.acc->freshest_version();
        c.freshest_kind = c.acc->freshest_kind();
        if (c.freshest >= 0) c.freshest_payload = c.payload[c.freshest];
        c.decider_payload = c.payload[r];
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) pool.emplace_back(worker);
  for (auto& th : pool) th.join();

  long successes = 0, failures = 0;
  for (int i = 0; i < kAccumulators; ++i) {
    const Case& c = cases[i];
    INFO("case " << i << " ack=" << c.ack << " from=" << c.from);
    REQUIRE(c.deciders.load() == 1);
    int ok = 0;
    for (int r = 0; r < c.from; ++r) ok += Ok(c.answers[r]);
    REQUIRE(c.success == (ok >= c.ack));
    REQUIRE(Ok(c.answers[c.decider]) == c.success);
    REQUIRE(c.decider_payload == ((uint64_t{static_cast<uint32_t>(i)} << 8) | c.decider));
    if (c.freshest >= 0) {
      const Answer& f = c.answers[c.freshest];
      REQUIRE(Ok(f));
      REQUIRE(c.freshest_kind == f.kind);
      REQUIRE(c.freshest_version == EffectiveVersion(f));
      REQUIRE(c.freshest_payload == ((uint64_t{static_cast<uint32_t>(i)} << 8) | c.freshest));
    }
    if (c.success) {
      REQUIRE(c.freshest >= 0);
      const auto rank = Rank(c.answers[c.freshest]);
      REQUIRE(rank >= Rank(c.answers[c.decider]));
      int fresher = 0;
      for (int r = 0; r < c.from; ++r) fresher += Ok(c.answers[r]) && Rank(c.answers[r]) > rank;
      REQUIRE(fresher <= ok - c.ack);
      ++successes;
    } else {
      if (ok == 0) REQUIRE(c.freshest == -1);
      ++failures;
    }
    REQUIRE(c.acc->successes() == ok);
    REQUIRE(c.acc->failures() == c.from - ok);
    // Frozen: the late answers did not change the result.
    REQUIRE(c.acc->freshest() == c.freshest);
  }
  MESSAGE("stress: " << successes << " succeeded, " << failures << " failed");
  CHECK(successes > kAccumulators / 10);
  CHECK(failures > kAccumulators / 10);
}

}  // namespace
}  // namespace kv::cluster
