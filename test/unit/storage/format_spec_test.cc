// Checks the hex examples in proto_spec/storage-format.md against the code: the encoders must
// produce exactly those bytes, and the decoders must read them back.
#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include "common/version.h"
#include "storage/coding.h"
#include "storage/log_format.h"
#include "storage/manifest.h"
#include "storage/segment.h"
#include "storage/segment_writer.h"
#include "storage_test_util.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

std::string SpecText() {
  // Tests run from the repository root; fall back to the path next to the build directory.
  for (std::string p : {"proto_spec/storage-format.md", "../proto_spec/storage-format.md",
                        "../../proto_spec/storage-format.md"}) {
    std::ifstream f(p);
    if (f) return std::string(std::istreambuf_iterator<char>(f), {});
  }
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    std::string dir(exe);
    for (int up = 0; up < 4; up++) {
      dir = dir.substr(0, dir.rfind('/'));
      std::ifstream f(dir + "/proto_spec/storage-format.md");
      if (f) return std::string(std::istreambuf_iterator<char>(f), {});
    }
  }
  return "";
}

// Blocks fenced as ```hex <name>; '#' starts a comment; the rest is hex byte pairs.
std::map<std::string, std::string> HexBlocks(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line, name;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line.rfind("```hex ", 0) == 0) {
      name = line.substr(7);
      out[name];
      inside = true;
    } else if (inside && line.rfind("```", 0) == 0) {
      inside = false;
    } else if (inside) {
      line = line.substr(0, line.find('#'));
      std::istringstream bytes(line);
      std::string b;
      while (bytes >> b) out[name].push_back(static_cast<char>(std::stoul(b, nullptr, 16)));
    }
  }
  return out;
}

// The spec's examples: the log record and the tombstone carry a current-layout version, the
// segment's value a legacy one from the same millisecond (which still compares below it).
const uint64_t kCurrent = kv::version::Make(1700000000000003ull, 7);
const uint64_t kLegacy = kv::version::MakeLegacy(1700000000000ull, 3, 7);

}  // namespace

TEST_CASE("storage format: the spec's hex examples match the encoders and decode back") {
  std::string spec = SpecText();
  REQUIRE_FALSE(spec.empty());
  auto blocks = HexBlocks(spec);
  REQUIRE(blocks.count("log-record"));
  REQUIRE(blocks.count("segment"));
  REQUIRE(blocks.count("manifest"));

  CHECK(kCurrent == 0x9828906079000c07ull);
  CHECK(kLegacy == 0x18bcfe5680000c07ull);
  CHECK(kLegacy < kCurrent);
  CHECK(kv::version::UnixMillis(kLegacy) == kv::version::UnixMillis(kCurrent));

  std::string rec;
  EncodeLogRecord("apple", "red", kCurrent, EntryType::kValue, &rec);
  CHECK(rec == blocks["log-record"]);
  LogRecord r;
  size_t used = 0;
  REQUIRE(DecodeLogRecord(blocks["log-record"], &r, &used) == DecodeResult::kOk);
  CHECK(used == rec.size());
  CHECK(r.key == "apple");
  CHECK(r.value == "red");
  CHECK(r.version == kCurrent);

  SegmentWriter w(4096);
  REQUIRE(w.Add("apple", "red", kLegacy, EntryType::kValue).ok());
  REQUIRE(w.Add("pear", "", kCurrent, EntryType::kTombstone).ok());
  REQUIRE(w.Finish().ok());
  CHECK(w.Contents() == blocks["segment"]);
  // The reader accepts the spec's bytes.
  TempDir tmp;
  {
    std::ofstream f(tmp.path() + "/" + SegmentFileName(3), std::ios::binary);
    f << blocks["segment"];
  }
  std::shared_ptr<Segment> seg;
  REQUIRE(Segment::Open(tmp.path(), 3, &seg).ok());
  std::string value;
  uint64_t version;
  EntryType type;
  REQUIRE(seg->Get("apple", &value, &version, &type).ok());
  CHECK(value == "red");
  CHECK(version == kLegacy);
  REQUIRE(seg->Get("pear", &value, &version, &type).ok());
  CHECK(type == EntryType::kTombstone);
  CHECK(version == kCurrent);
  CHECK(seg->Get("plum", &value, &version, &type).code() == Code::kNotFound);

  Manifest m;
  m.next_file = 5;
  m.min_log = 4;
  m.segments = {3};
  CHECK(m.Encode() == blocks["manifest"]);
  Manifest back;
  REQUIRE(back.Decode(blocks["manifest"], "spec").ok());
  CHECK(back.next_file == 5);
  CHECK(back.min_log == 4);
  CHECK(back.segments == std::vector<uint64_t>{3});
}
