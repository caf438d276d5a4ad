// The repair bodies (proto/repair.h): the spec's vectors decode to the documented fields as
// frames and as bodies, and re-encode byte for byte; round trips; malformed bodies are refused.
#include "proto/repair.h"

#include <doctest/doctest.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/version.h"
#include "proto/bytes.h"
#include "proto/frame_decoder.h"
#include "proto/wire.h"

namespace kv::proto {
namespace {

constexpr uint64_t kV1 = version::Make(1700000000000003ull, 2);
constexpr uint64_t kRange = 0x1122334455667788ull;

std::string ReadVector(const std::string& name) {
  const char* root = std::getenv("KV_REPO_ROOT");
  const std::string path =
      std::string(root && *root ? root : ".") + "/proto_spec/vectors/" + name + ".hex";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::string out, line, digits;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    for (char c : line)
      if (!std::isspace(static_cast<unsigned char>(c))) digits.push_back(c);
  }
  for (size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// The frame a vector holds, decoded as the given side would (after the handshake vectors).
Frame Decode(FrameDecoder& d, bool server, const std::string& bytes) {
  const std::string setup =
      server ? ReadVector("preface") + ReadVector("handshake") + ReadVector("auth")
             : ReadVector("handshake_ok");
  const std::string all = setup + bytes;
  d.Feed(all.data(), all.size());
  Frame f, last;
  while (d.Next(&f) == DecodeResult::kFrame) last = f;
  REQUIRE_MESSAGE(!d.failed(), d.error().reason);
  return last;
}

TEST_CASE("vector: repair_tree_request") {
  const std::string v = ReadVector("repair_tree_request");
  FrameDecoder d(FrameDecoder::Role::kServer);
  const Frame f = Decode(d, true, v);
  REQUIRE(f.type == FrameType::kRepairTree);
  CHECK(f.request_id == 5);
  RepairTreeRequest q;
  std::string err;
  REQUIRE(DecodeRepairTreeRequest(f.value, &q, &err));
  CHECK(q.range == kRange);
  CHECK(q.session == 7);
  CHECK(q.level == 1);
  CHECK(q.nodes == std::vector<uint32_t>{3, 10});
  std::string body, frame;
  EncodeRepairTreeRequest(&body, q);
  EncodeRequest(&frame, 5, Op::kRepairTree, {}, body, 0);
  CHECK(frame == v);
  EncodeFrame(&(frame = std::string()), f);
  CHECK(frame == v);
}

TEST_CASE("vector: repair_apply_request") {
  const std::string v = ReadVector("repair_apply_request");
  FrameDecoder d(FrameDecoder::Role::kServer);
  const Frame f = Decode(d, true, v);
  REQUIRE(f.type == FrameType::kRepairApply);
  RepairApplyRequest q;
  std::string err;
  REQUIRE(DecodeRepairApplyRequest(f.value, &q, &err));
  CHECK(q.range == kRange);
  CHECK(q.session == 7);
  REQUIRE(q.entries.size() == 2);
  CHECK(q.entries[0].key == "k1");
  CHECK(q.entries[0].version == kV1);
  CHECK_FALSE(q.entries[0].tombstone);
  CHECK(q.entries[0].value == "hello");
  CHECK(q.entries[1].key == "k2");
  CHECK(q.entries[1].tombstone);
  std::string body, frame;
  EncodeRepairApplyHead(&body, kRange, 7, 2);
  for (const auto& e : q.entries) EncodeRepairEntry(&body, e);
  EncodeRequest(&frame, 6, Op::kRepairApply, {}, body, 0);
  CHECK(frame == v);
}

TEST_CASE("vectors: repair_data tree, entries, applied") {
  struct Case {
    const char* name;
    RepairData::Kind kind;
  } cases[] = {{"repair_data_tree", RepairData::kTree},
               {"repair_data_entries", RepairData::kEntries},
               {"repair_data_applied", RepairData::kApplied}};
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string v = ReadVector(c.name);
    FrameDecoder d(FrameDecoder::Role::kClient);
    const Frame f = Decode(d, false, v);
    REQUIRE(f.type == FrameType::kRepairData);
    RepairData data;
    std::string err;
    REQUIRE_MESSAGE(DecodeRepairData(f.value, &data, &err), err);
    CHECK(data.kind == c.kind);
    if (c.kind == RepairData::kTree) {
      CHECK(data.keys == 1000);
      REQUIRE(data.hashes.size() == 16);
      CHECK(data.hashes[15] == 0x0102030405060708ull + 15);
    } else if (c.kind == RepairData::kEntries) {
      CHECK(data.more);
      REQUIRE(data.entries.size() == 1);
      CHECK(data.entries[0].value == "hello");
    } else {
      CHECK(data.applied == 2);
      CHECK(data.refused == 0);
    }
    std::string body, frame;
    EncodeRepairData(&body, data);
    EncodeRepairData(&frame, f.request_id, body);
    CHECK(frame == v);
  }
}

TEST_CASE("repair entries request: round trip with a bitmap, and from the start") {
  std::string leaves(kRepairBitmapBytes, '\0');
  SetRepairLeaf(&leaves, 0);
  SetRepairLeaf(&leaves, 65535);
  SetRepairLeaf(&leaves, 9);
  RepairEntriesRequest q;
  q.range = kRange;
  q.session = 3;
  q.max_bytes = 1 << 20;
  q.has_after = true;
  q.after = "key-17";
  q.leaves = leaves;
  std::string body;
  EncodeRepairEntriesRequest(&body, q);
  CHECK(body.size() == 8 + 8 + 4 + 1 + 4 + 6 + kRepairBitmapBytes);
  RepairEntriesRequest back;
  std::string err;
  REQUIRE(DecodeRepairEntriesRequest(body, &back, &err));
  CHECK(back.after == "key-17");
  CHECK(back.has_after);
  CHECK(back.max_bytes == (1u << 20));
  CHECK(RepairLeafSet(back.leaves, 0));
  CHECK(RepairLeafSet(back.leaves, 9));
  CHECK(RepairLeafSet(back.leaves, 65535));
  CHECK_FALSE(RepairLeafSet(back.leaves, 8));
  CHECK_FALSE(RepairLeafSet(back.leaves, 10));
  // A key without has_after is malformed; so is a short bitmap or a trailing byte.
  q.has_after = false;
  body.clear();
  EncodeRepairEntriesRequest(&body, q);
  CHECK_FALSE(DecodeRepairEntriesRequest(body, &back, &err));
  q.after = {};
  body.clear();
  EncodeRepairEntriesRequest(&body, q);
  CHECK(DecodeRepairEntriesRequest(body, &back, &err));
  CHECK_FALSE(DecodeRepairEntriesRequest(body + "x", &back, &err));
  CHECK_FALSE(DecodeRepairEntriesRequest(body.substr(0, body.size() - 1), &back, &err));
}

TEST_CASE("repair bodies: malformed ones are refused with a reason") {
  std::string err;
  RepairTreeRequest t;
  std::string body;
  EncodeRepairTreeRequest(&body, RepairTreeRequest{kRange, 1, 4, {0}});
  CHECK_FALSE(DecodeRepairTreeRequest(body, &t, &err));  // level 4: leaves have no children
  body.clear();
  EncodeRepairTreeRequest(&body, RepairTreeRequest{kRange, 1, 1, {16}});
  CHECK_FALSE(DecodeRepairTreeRequest(body, &t, &err));  // beyond level 1's 16 nodes
  body.clear();
  EncodeRepairTreeRequest(&body, RepairTreeRequest{kRange, 1, 2, {5, 5}});
  CHECK_FALSE(DecodeRepairTreeRequest(body, &t, &err));  // not ascending
  body.clear();
  EncodeRepairTreeRequest(&body, RepairTreeRequest{kRange, 1, 0, {}});
  CHECK_FALSE(DecodeRepairTreeRequest(body, &t, &err));  // no node
  CHECK_FALSE(DecodeRepairTreeRequest("", &t, &err));
  CHECK(!err.empty());

  RepairApplyRequest a;
  std::string apply;
  EncodeRepairApplyHead(&apply, kRange, 1, 1);
  EncodeRepairEntry(&apply, RepairEntry{"k", kV1, false, "v"});
  CHECK(DecodeRepairApplyRequest(apply, &a, &err));
  CHECK_FALSE(DecodeRepairApplyRequest(apply.substr(0, apply.size() - 1), &a, &err));
  std::string bad_flags = apply;
  bad_flags[20 + 4 + 1 + 8] = 7;  // the entry's flags
  CHECK_FALSE(DecodeRepairApplyRequest(bad_flags, &a, &err));
  std::string liar;
  EncodeRepairApplyHead(&liar, kRange, 1, 0xffffffffu);  // a count the body cannot hold
  CHECK_FALSE(DecodeRepairApplyRequest(liar, &a, &err));
  std::string empty_key;
  EncodeRepairApplyHead(&empty_key, kRange, 1, 1);
  EncodeRepairEntry(&empty_key, RepairEntry{"", kV1, false, "v"});
  CHECK_FALSE(DecodeRepairApplyRequest(empty_key, &a, &err));

  RepairData d;
  CHECK_FALSE(DecodeRepairData("", &d, &err));
  CHECK_FALSE(DecodeRepairData(std::string(1, '\x09'), &d, &err));
  CHECK_FALSE(DecodeRepairData(std::string("\x03\0\0\0\x01", 5), &d, &err));  // cut short
}

TEST_CASE("repair entries: an expiring value carries its expiry (flags 4), tombstones never") {
  std::string apply;
  EncodeRepairApplyHead(&apply, kRange, 1, 3);
  const RepairEntry in[] = {{"a", kV1, false, "va", false, 1700000060000},
                            {"b", kV1, true, "", false, 1700000060000},  // a tombstone: dropped
                            {"c", kV1, false, "vc", false, 0}};
  for (const RepairEntry& e : in) EncodeRepairEntry(&apply, e);
  CHECK(apply.size() ==
        20 + RepairEntrySize(in[0]) + RepairEntrySize(in[1]) + RepairEntrySize(in[2]));
  CHECK(RepairEntrySize(in[0]) == RepairEntrySize(in[2]) + 8);
  RepairApplyRequest a;
  std::string err;
  REQUIRE(DecodeRepairApplyRequest(apply, &a, &err));
  REQUIRE(a.entries.size() == 3);
  CHECK(a.entries[0].value == "va");
  CHECK(a.entries[0].expires_ms == 1700000060000);
  CHECK_FALSE(a.entries[0].tombstone);
  CHECK(a.entries[1].tombstone);
  CHECK(a.entries[1].expires_ms == 0);
  CHECK(a.entries[2].expires_ms == 0);
  // An expiring entry whose expiry is 0 is malformed.
  std::string zero;
  EncodeRepairApplyHead(&zero, kRange, 1, 1);
  EncodeRepairEntry(&zero, RepairEntry{"a", kV1, false, "va", false, 1});
  for (size_t i = 0; i < 8; ++i) zero[20 + 4 + 1 + 8 + 1 + i] = 0;
  CHECK_FALSE(DecodeRepairApplyRequest(zero, &a, &err));
}

TEST_CASE("repair frames: accepted by the right side only") {
  std::string frame;
  EncodeRepairData(&frame, 1, std::string("\x03\0\0\0\0\0\0\0\0", 9));
  FrameDecoder server(FrameDecoder::Role::kServer);
  const std::string setup = ReadVector("preface") + ReadVector("handshake") + ReadVector("auth");
  const std::string all = setup + frame;
  server.Feed(all.data(), all.size());
  Frame f;
  DecodeResult r;
  while ((r = server.Next(&f)) == DecodeResult::kFrame) {
  }
  CHECK(r == DecodeResult::kError);  // REPAIR_DATA from a connecting node
  CHECK(server.error().code == ErrorCode::kUnexpectedFrame);
  CHECK(BodyRequestFits(Op::kRepairApply, std::string(16, '\0')));
  CHECK_FALSE(BodyRequestFits(Op::kRepairApply, std::string(15, '\0')));
  CHECK(IsKnownFrameType(0x13));
  CHECK(IsKnownFrameType(0x25));
  CHECK(IsKnownFrameType(0x18));  // RANGE
  CHECK(IsKnownFrameType(0x19));  // HINTS
  CHECK_FALSE(IsKnownFrameType(0x17));
}

}  // namespace
}  // namespace kv::proto

namespace kv::proto {
namespace {

TEST_CASE("repair entries request: keys mode and digest entries") {
  RepairEntriesRequest q;
  q.range = kRange;
  q.session = 9;
  q.max_bytes = 4096;
  q.by_keys = true;
  q.keys = {"a", "b", "key-3"};
  std::string body;
  EncodeRepairEntriesRequest(&body, q);
  CHECK(body.size() == 8 + 8 + 4 + 1 + 4 + (4 + 1) + (4 + 1) + (4 + 5) + 4);
  RepairEntriesRequest back;
  std::string err;
  REQUIRE_MESSAGE(DecodeRepairEntriesRequest(body, &back, &err), err);
  CHECK(back.by_keys);
  CHECK(back.keys == std::vector<std::string_view>{"a", "b", "key-3"});
  q.keys = {"b", "a"};  // not ascending
  body.clear();
  EncodeRepairEntriesRequest(&body, q);
  CHECK_FALSE(DecodeRepairEntriesRequest(body, &back, &err));
  q.keys = {"a"};
  q.digest = true;  // keys mode takes no digest flag
  body.clear();
  EncodeRepairEntriesRequest(&body, q);
  CHECK_FALSE(DecodeRepairEntriesRequest(body, &back, &err));

  // A digest entry: value left out, flags 2; it re-encodes exactly and can never be applied.
  RepairData d;
  d.kind = RepairData::kEntries;
  d.entries = {RepairEntry{"k", kV1, false, "ignored", true}, RepairEntry{"t", kV1, true, {}}};
  std::string data;
  EncodeRepairData(&data, d);
  CHECK(data.size() == 6 + (4 + 1 + 8 + 1 + 4) * 2);
  RepairData back_d;
  REQUIRE(DecodeRepairData(data, &back_d, &err));
  CHECK(back_d.entries[0].digest);
  CHECK(back_d.entries[0].value.empty());
  CHECK(back_d.entries[1].tombstone);
  std::string apply;
  EncodeRepairApplyHead(&apply, kRange, 1, 1);
  EncodeRepairEntry(&apply, RepairEntry{"k", kV1, false, "v", true});
  RepairApplyRequest a;
  CHECK_FALSE(DecodeRepairApplyRequest(apply, &a, &err));
}

}  // namespace
}  // namespace kv::proto
