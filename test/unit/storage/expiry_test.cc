// Values that expire (TTL): the engine stores the expiry with the value (entry type 3), returns
// it from Get and Scan, keeps it through flush, reopen and compaction, and compaction turns a
// value that has expired into a tombstone of its version, purged as tombstones are.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "storage/coding.h"
#include "storage/engine.h"
#include "storage/log_format.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

Status PutExpiring(Engine* db, std::string_view key, std::string_view value, uint64_t version,
                   uint64_t expires_ms, uint64_t* stored = nullptr) {
  Engine::WriteOp op{key, value, version, false, 0, expires_ms};
  Status s = db->Write(&op, 1);
  if (stored != nullptr) *stored = op.stored_version;
  return s;
}

void CheckValue(Engine* db, std::string_view key, std::string_view value, uint64_t version,
                uint64_t expires_ms) {
  ReadResult r;
  REQUIRE(db->Get(key, &r).ok());
  CHECK(r.kind == ReadResult::kValue);
  CHECK(r.value == value);
  CHECK(r.version == version);
  CHECK(r.expires_ms == expires_ms);
}

}  // namespace

TEST_CASE("expiry: Get and Scan return the value and its expiry, from memtable, segment, reopen") {
  TempDir tmp;
  const uint64_t exp = 1'900'000'000'000;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  REQUIRE(PutExpiring(db.get(), "a", "va", 10, exp).ok());
  REQUIRE(db->Put("b", "vb", 11).ok());
  REQUIRE(PutExpiring(db.get(), "c", "", 12, exp + 1).ok());  // an empty value expires too
  auto check_all = [&] {
    CheckValue(db.get(), "a", "va", 10, exp);
    CheckValue(db.get(), "b", "vb", 11, 0);
    CheckValue(db.get(), "c", "", 12, exp + 1);
    auto it = db->Scan("", std::nullopt);
    REQUIRE(it->Valid());
    CHECK(it->key() == "a");
    CHECK(it->value() == "va");
    CHECK(it->expires_ms() == exp);
    it->Next();
    REQUIRE(it->Valid());
    CHECK(it->key() == "b");
    CHECK(it->value() == "vb");
    CHECK(it->expires_ms() == 0);
    it->Next();
    REQUIRE(it->Valid());
    CHECK(it->value() == "");
    CHECK(it->expires_ms() == exp + 1);
    it->Next();
    CHECK_FALSE(it->Valid());
  };
  check_all();  // memtable
  db.reset();
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  check_all();  // replayed from the log
  REQUIRE(db->Flush().ok());
  check_all();  // segment
  db.reset();
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  check_all();
}

TEST_CASE("expiry: newest version wins between expiring and permanent values, both ways") {
  TempDir tmp;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  uint64_t stored = 0;
  REQUIRE(PutExpiring(db.get(), "k", "ttl", 10, 5000, &stored).ok());
  CHECK(stored == 10);
  REQUIRE(db->Put("k", "older", 9, &stored).ok());
  CHECK(stored == 10);
  CheckValue(db.get(), "k", "ttl", 10, 5000);
  REQUIRE(db->Put("k", "permanent", 11, &stored).ok());  // a later PUT without ttl: permanent
  CheckValue(db.get(), "k", "permanent", 11, 0);
  REQUIRE(db->Flush().ok());
  REQUIRE(PutExpiring(db.get(), "k", "ttl again", 12, 6000, &stored).ok());
  CheckValue(db.get(), "k", "ttl again", 12, 6000);
}

TEST_CASE("expiry: compaction turns an expired value into a tombstone of its version") {
  TempDir tmp;
  Options o = SmallOptions(tmp.store(), false);
  o.tombstone_gc_seconds = 3600;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(o, &db).ok());
  const uint64_t now = NowMillis();
  const uint64_t v = HlcVersion(now), old_v = HlcVersion(now - 2 * 3600 * 1000);
  REQUIRE(db->Put("expired", "under", v - 10).ok());
  REQUIRE(db->Put("old-expired", "under", old_v - 10).ok());
  REQUIRE(db->Flush().ok());
  REQUIRE(PutExpiring(db.get(), "expired", "x", v, now - 1000).ok());
  REQUIRE(PutExpiring(db.get(), "live", "y", v, now + 3600 * 1000).ok());
  // Written two hours ago, expired an hour ago: older than the GC grace, so purged outright.
  REQUIRE(PutExpiring(db.get(), "old-expired", "z", old_v, now - 3600 * 1000).ok());
  REQUIRE(db->Flush().ok());
  REQUIRE(db->CompactAll().ok());
  CHECK(db->GetStats().segments == 1);
  ReadResult r;
  REQUIRE(db->Get("expired", &r).ok());
  CHECK(r.kind == ReadResult::kTombstone);  // still hides the older value under it
  CHECK(r.version == v);
  CheckValue(db.get(), "live", "y", v, now + 3600 * 1000);
  REQUIRE(db->Get("old-expired", &r).ok());
  CHECK(r.kind == ReadResult::kAbsent);  // tombstone past the grace, and the value under it
}

TEST_CASE("expiry: log records of type 3 need room for the expiry") {
  std::string rec;
  std::string stored(kExpiryBytes, '\0');
  PutFixed64(stored.data(), 1234);
  stored += "value";
  EncodeLogRecord("key", stored, 42, EntryType::kExpiring, &rec);
  LogRecord r;
  size_t n = 0;
  REQUIRE(DecodeLogRecord(rec, &r, &n) == DecodeResult::kOk);
  CHECK(r.type == EntryType::kExpiring);
  CHECK(GetFixed64(r.value.data()) == 1234);
  EncodeLogRecord("key", "short", 42, EntryType::kExpiring, &rec);  // 5 bytes: no expiry
  CHECK(DecodeLogRecord(rec, &r, &n) == DecodeResult::kBadField);
  EncodeLogRecord("key", "v", 42, static_cast<EntryType>(4), &rec);
  CHECK(DecodeLogRecord(rec, &r, &n) == DecodeResult::kBadField);
}

TEST_CASE("expiry: a tombstone cannot carry an expiry") {
  TempDir tmp;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  Engine::WriteOp op{"k", "", 5, true, 0, 1000};
  CHECK(db->Write(&op, 1).code() == Code::kInvalidArgument);
  ReadResult r;
  REQUIRE(db->Get("k", &r).ok());
  CHECK(r.kind == ReadResult::kAbsent);
}

TEST_CASE("expiry: one batch of many short expiring and permanent values") {
  TempDir tmp;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  std::vector<std::string> keys, values;
  for (int i = 0; i < 64; ++i) {
    keys.push_back("k" + std::to_string(i));
    values.push_back(std::string(static_cast<size_t>(i % 9), static_cast<char>('a' + i % 26)));
  }
  std::vector<Engine::WriteOp> ops;
  for (int i = 0; i < 64; ++i) {
    ops.push_back(Engine::WriteOp{keys[i], values[i], 100, false, 0,
                                  i % 3 == 0 ? 0 : 5000 + static_cast<uint64_t>(i)});
  }
  REQUIRE(db->Write(ops.data(), ops.size()).ok());
  for (int pass = 0; pass < 2; ++pass) {  // memtable, then replayed from the log
    for (int i = 0; i < 64; ++i) {
      CAPTURE(i);
      CheckValue(db.get(), keys[i], values[i], 100,
                 i % 3 == 0 ? 0 : 5000 + static_cast<uint64_t>(i));
    }
    db.reset();
    REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  }
}

TEST_CASE("Iterator::Get gives every field of the entry, as the accessors do") {
  TempDir tmp;
  const uint64_t exp = 1'900'000'000'000;
  std::unique_ptr<Engine> db;
  REQUIRE(Engine::Open(SmallOptions(tmp.store(), false), &db).ok());
  REQUIRE(PutExpiring(db.get(), "a", "va", 10, exp).ok());
  REQUIRE(db->Put("b", "vb", 11).ok());
  REQUIRE(db->Remove("c", 12).ok());
  REQUIRE(db->Put("d", "old", 13).ok());
  auto check_all = [&] {
    struct Want {
      const char* key;
      const char* value;
      uint64_t version, expires_ms;
      bool tombstone;
    };
    const Want want[] = {{"a", "va", 10, exp, false},
                         {"b", "vb", 11, 0, false},
                         {"c", "", 12, 0, true},
                         {"d", "old", 13, 0, false}};
    auto it = db->Scan("", std::nullopt);
    for (const Want& w : want) {
      REQUIRE(it->Valid());
      Iterator::Entry e;
      it->Get(&e);
      CHECK(e.key == w.key);
      CHECK(e.value == w.value);
      CHECK(e.version == w.version);
      CHECK(e.expires_ms == w.expires_ms);
      CHECK(e.tombstone == w.tombstone);
      CHECK(e.value == it->value());
      CHECK(e.expires_ms == it->expires_ms());
      it->Next();
    }
    CHECK_FALSE(it->Valid());
  };
  check_all();  // memtable
  REQUIRE(db->Flush().ok());
  check_all();  // segment
}
