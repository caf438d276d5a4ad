#include "net/config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "../storage/storage_test_util.h"

using namespace kv::net;
using kv::storage::testutil::TempDir;

namespace {
struct Args {
  explicit Args(std::vector<std::string> a) : s(std::move(a)) {
    s.insert(s.begin(), "node");
    for (auto& x : s) p.push_back(x.data());
  }
  int argc() { return static_cast<int>(p.size()); }
  char** argv() { return p.data(); }
  std::vector<std::string> s;
  std::vector<char*> p;
};

ParseResult Parse(std::vector<std::string> a, Config* c, std::string* err) {
  Args args(std::move(a));
  return ParseArgs(args.argc(), args.argv(), c, err);
}
}  // namespace

TEST_CASE("defaults: a cluster of one on --port") {
  Config c;
  TempDir tmp;
  std::string err, dir = tmp.path();
  REQUIRE(Parse({"--port", "8080", "--data", dir}, &c, &err) == ParseResult::kOk);
  CHECK(c.port == 8080);
  CHECK(c.cluster.size() == 1);
  CHECK(c.self_index == 0);
  CHECK(c.threads >= 1);
  CHECK(c.peer_protocol == PeerProtocol::kBinary);
  CHECK(c.max_value_bytes == 8u << 20);
  CHECK(c.request_timeout_ms == 1000);
  CHECK(c.peer_timeout_min_ms == 200);
  CHECK(c.read_fanout == kv::cluster::ReadFanout::kHedged);
  Config d;
  REQUIRE(Parse({"--port", "8080", "--data", dir, "--read-fanout", "all", "--peer-timeout-min-ms",
                 "75"},
                &d, &err) == ParseResult::kOk);
  CHECK(d.read_fanout == kv::cluster::ReadFanout::kAll);
  CHECK(d.peer_timeout_min_ms == 75);
}

TEST_CASE("self is found by port or by --self") {
  Config c;
  TempDir tmp;
  std::string err, dir = tmp.path();
  REQUIRE(Parse({"--port=8081", "--data", dir, "--cluster",
                 "http://127.0.0.1:8080,http://127.0.0.1:8081,http://127.0.0.1:8082"},
                &c, &err) == ParseResult::kOk);
  CHECK(c.self_index == 1);
  CHECK(c.self_url == "http://127.0.0.1:8081");
  Config d;
  REQUIRE(Parse({"--port", "9000", "--data", dir, "--self", "http://127.0.0.1:8082", "--cluster",
                 "http://127.0.0.1:8080,http://127.0.0.1:8082"},
                &d, &err) == ParseResult::kOk);
  CHECK(d.self_index == 1);
}

TEST_CASE("bad flags are errors with a reason") {
  TempDir tmp;
  std::string dir = tmp.path();
  const std::vector<std::vector<std::string>> bad = {
      {"--port", "0", "--data", dir},
      {"--port", "70000", "--data", dir},
      {"--port", "abc", "--data", dir},
      {"--data", dir},
      {"--port", "8080", "--bogus", "1", "--data", dir},
      {"--port", "8080", "--threads", "0", "--data", dir},
      {"--port", "8080", "--peer-protocol", "grpc", "--data", dir},
      {"--port", "8080", "--fsync", "sometimes", "--data", dir},
      {"--port", "8080", "--read-fanout", "some", "--data", dir},
      {"--port", "8080", "--peer-timeout-min-ms", "0", "--data", dir},
      {"--port", "8080", "--log-level", "loud", "--data", dir},
      {"--port", "8080", "--cluster", "http://127.0.0.1:8081", "--data", dir},
      {"--port", "8080", "--cluster", "127.0.0.1:8080", "--data", dir},
      {"--port", "8080", "--cluster", "http://127.0.0.1:8080,http://127.0.0.1:8080", "--data", dir},
      {"--port", "8080", "--data", "/proc/definitely/not/writable"},
      {"--port"},
      {"stray"},
  };
  for (const auto& a : bad) {
    Config c;
    std::string err;
    CAPTURE(a.size());
    CHECK(Parse(a, &c, &err) == ParseResult::kError);
    CHECK_FALSE(err.empty());
    CHECK(err.find('\n') == std::string::npos);
  }
}

TEST_CASE("--help wins") {
  Config c;
  std::string err;
  CHECK(Parse({"--port", "8080", "--help"}, &c, &err) == ParseResult::kHelp);
}
