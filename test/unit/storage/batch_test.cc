// Engine::Write (batched writes) against a model: each op must behave exactly as its own
// Put/Remove, including several ops on one key in one batch, and survive a reopen.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "storage/engine.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {
struct ModelEntry {
  uint64_t version = 0;
  bool tombstone = false;
  std::string value;
};

void CheckAgainstModel(Engine& e, const std::map<std::string, ModelEntry>& model) {
  // A scan walks the memtable's bottom level: keys ascending, each once, newest version.
  auto want = model.begin();
  for (auto it = e.Scan("", std::nullopt); it->Valid(); it->Next(), ++want) {
    REQUIRE(want != model.end());
    CHECK(it->key() == want->first);
    CHECK(it->version() == want->second.version);
  }
  CHECK(want == model.end());
  for (const auto& [k, m] : model) {
    ReadResult r;
    REQUIRE(e.Get(k, &r).ok());
    CAPTURE(k);
    CHECK(r.version == m.version);
    if (m.tombstone) {
      CHECK(r.kind == ReadResult::kTombstone);
    } else {
      CHECK(r.kind == ReadResult::kValue);
      CHECK(r.value == m.value);
    }
  }
}
}  // namespace

TEST_CASE("batched writes behave like single writes, also for one key repeated in a batch") {
  TempDir dir;
  std::unique_ptr<Engine> e;
  REQUIRE(Engine::Open(SmallOptions(dir.store(), false), &e).ok());
  std::map<std::string, ModelEntry> model;
  Rng rng(7);
  uint64_t base = HlcVersion(NowMillis());
  for (int round = 0; round < 400; ++round) {
    size_t n = 1 + rng.Uniform(24);
    std::vector<std::string> keys(n), values(n);
    std::vector<Engine::WriteOp> ops(n);
    for (size_t i = 0; i < n; ++i) {
      keys[i] = "k" + std::to_string(rng.Uniform(60));  // small key space: many repeats
      values[i] = std::string(rng.Uniform(40), static_cast<char>('a' + rng.Uniform(26)));
      ops[i].key = keys[i];
      ops[i].value = values[i];
      // Versions mostly increase, sometimes go back (a late replica write).
      ops[i].version = base + rng.Uniform(100000);
      ops[i].tombstone = rng.Uniform(5) == 0;
    }
    REQUIRE(e->Write(ops.data(), n).ok());
    for (size_t i = 0; i < n; ++i) {
      ModelEntry& m = model[keys[i]];
      if (ops[i].version > m.version) {
        m.version = ops[i].version;
        m.tombstone = ops[i].tombstone;
        m.value = ops[i].tombstone ? std::string() : values[i];
      }
      // What the store holds once this op (and the earlier ones) applied.
      CHECK(ops[i].stored_version >= ops[i].version);
    }
    if (round % 100 == 99) REQUIRE(e->Flush().ok());
  }
  CheckAgainstModel(*e, model);
  e.reset();
  REQUIRE(Engine::Open(SmallOptions(dir.store(), false), &e).ok());
  CheckAgainstModel(*e, model);
}

TEST_CASE("a batch op older than the stored version changes nothing and reports the newer one") {
  TempDir dir;
  std::unique_ptr<Engine> e;
  REQUIRE(Engine::Open(SmallOptions(dir.store(), false), &e).ok());
  uint64_t v = HlcVersion(NowMillis());
  REQUIRE(e->Put("a", "new", v + 10).ok());
  Engine::WriteOp ops[3];
  ops[0].key = "a";
  ops[0].value = "old";
  ops[0].version = v;
  ops[1].key = "b";
  ops[1].value = "x";
  ops[1].version = v + 5;
  ops[2].key = "b";
  ops[2].version = v + 3;  // older than ops[1] in the same batch
  ops[2].tombstone = true;
  REQUIRE(e->Write(ops, 3).ok());
  CHECK(ops[0].stored_version == v + 10);
  CHECK(ops[1].stored_version == v + 5);
  CHECK(ops[2].stored_version == v + 5);
  ReadResult r;
  REQUIRE(e->Get("a", &r).ok());
  CHECK(r.value == "new");
  REQUIRE(e->Get("b", &r).ok());
  CHECK(r.kind == ReadResult::kValue);
  CHECK(r.value == "x");
}

TEST_CASE("an old write is rejected by a flushed segment, also one opened from disk") {
  TempDir dir;
  std::unique_ptr<Engine> e;
  REQUIRE(Engine::Open(SmallOptions(dir.store(), false), &e).ok());
  uint64_t base = HlcVersion(NowMillis());
  uint64_t stored = 0;
  REQUIRE(e->Put("k", "new", base + 100, &stored).ok());
  REQUIRE(e->Put("other", "x", base + 300).ok());  // the segment's newest version is above k's
  REQUIRE(e->Flush().ok());
  REQUIRE(e->Put("k", "late", base + 50, &stored).ok());  // older than the segment's entry
  CHECK(stored == base + 100);
  REQUIRE(e->Put("k", "newer", base + 200, &stored).ok());  // newer than anything stored: skips
  CHECK(stored == base + 200);
  REQUIRE(e->Flush().ok());
  e.reset();
  REQUIRE(Engine::Open(SmallOptions(dir.store(), false), &e).ok());  // max versions unknown now
  REQUIRE(e->Put("k", "late", base + 150, &stored).ok());
  CHECK(stored == base + 200);
  ReadResult r;
  REQUIRE(e->Get("k", &r).ok());
  CHECK(r.value == "newer");
  CHECK(r.version == base + 200);
}
