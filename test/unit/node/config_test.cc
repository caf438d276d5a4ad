#include "node/config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../storage/storage_test_util.h"
#include "common/log.h"

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
  CHECK(c.read_repair);
  Config d;
  REQUIRE(Parse({"--port", "8080", "--data", dir, "--read-fanout", "all", "--peer-timeout-min-ms",
                 "75", "--read-repair", "off"},
                &d, &err) == ParseResult::kOk);
  CHECK(d.read_fanout == kv::cluster::ReadFanout::kAll);
  CHECK_FALSE(d.read_repair);
  Config e;
  CHECK(Parse({"--port", "8080", "--data", dir, "--read-repair", "maybe"}, &e, &err) ==
        ParseResult::kError);
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
  CHECK(Parse({"-h", "--port", "0"}, &c, &err) == ParseResult::kHelp);
  CHECK(Parse({"--help-markdown"}, &c, &err) == ParseResult::kHelpMarkdown);
}

TEST_CASE("errors read as before: one line naming the flag and the reason") {
  TempDir tmp;
  const std::string dir = tmp.path();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--port", "8080", "--bogus", "1"}, "unknown flag --bogus (see --help)"},
      {{"--port", "8080", "-x"}, "unexpected argument '-x' (see --help)"},
      {{"--port", "8080", "stray"}, "unexpected argument 'stray' (see --help)"},
      {{"--port"}, "flag --port needs a value"},
      {{"--port", "70000"}, "bad value '70000' for --port: expected 1..65535"},
      {{"--port=8080", "--data="}, "bad value '' for --data: empty path"},
      {{"--port", "8080", "--peer-protocol", "grpc"},
       "bad value 'grpc' for --peer-protocol: expected binary, http or http-pipelined"},
      {{"--port", "8080", "--read-fanout", "some"},
       "bad value 'some' for --read-fanout: expected hedged or all"},
      {{"--port", "8080", "--log-level", "loud"},
       "bad value 'loud' for --log-level: expected debug, info, warn or error"},
      {{"--port", "8080", "--tombstone-gc-seconds", "-1"},
       "bad value '-1' for --tombstone-gc-seconds: out of range"},
      {{"--data", dir}, "--port is required (see --help)"},
  };
  for (const auto& [args, message] : cases) {
    Config c;
    std::string err;
    CAPTURE(message);
    CHECK(Parse(args, &c, &err) == ParseResult::kError);
    CHECK(err == message);
  }
}

TEST_CASE("every flag sets its field") {
  TempDir tmp;
  const std::string dir = tmp.path();
  Config c;
  std::string err;
  REQUIRE(Parse({"--port",
                 "8080",
                 "--data",
                 dir,
                 "--threads",
                 "3",
                 "--peer-protocol",
                 "http-pipelined",
                 "--max-value-bytes",
                 "10",
                 "--max-connections",
                 "11",
                 "--idle-timeout-ms",
                 "12",
                 "--request-timeout-ms",
                 "13",
                 "--fsync",
                 "always",
                 "--memtable-bytes",
                 "8192",
                 "--tombstone-gc-seconds",
                 "0",
                 "--log-level",
                 "warn",
                 "--self",
                 "http://127.0.0.1:8080"},
                &c, &err) == ParseResult::kOk);
  CHECK(c.data_dir == dir);
  CHECK(c.threads == 3);
  CHECK(c.peer_protocol == PeerProtocol::kHttpPipelined);
  CHECK(c.max_value_bytes == 10);
  CHECK(c.max_connections == 11);
  CHECK(c.idle_timeout_ms == 12);
  CHECK(c.request_timeout_ms == 13);
  CHECK(c.fsync == kv::storage::FsyncPolicy::kAlways);
  CHECK(c.memtable_bytes == 8192);
  CHECK(c.tombstone_gc_seconds == 0);
  CHECK(c.log_level == static_cast<int>(kv::LogLevel::kWarn));
  CHECK(c.self_url == "http://127.0.0.1:8080");
}

namespace {
// README.md of this checkout, found from the working directory upwards (test/run_unit.sh runs the
// unit binaries from the repository root); "" when there is none.
std::string ReadReadme() {
  std::string dir = ".";
  for (int up = 0; up < 8; ++up, dir += "/..") {
    if (!std::ifstream(dir + "/Makefile")) continue;
    std::ifstream f(dir + "/README.md");
    if (!f) continue;
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  return "";
}
}  // namespace

TEST_CASE("README.md's flag table is the generated one (make readme-flags rewrites it)") {
  const std::string readme = ReadReadme();
  REQUIRE_MESSAGE(!readme.empty(), "no README.md from the working directory up: run from the repo");
  size_t begin = readme.find("<!-- flags:begin");
  REQUIRE(begin != std::string::npos);
  begin = readme.find('\n', begin) + 1;
  const size_t end = readme.find("<!-- flags:end -->", begin);
  REQUIRE(end != std::string::npos);
  CHECK_MESSAGE(
      readme.substr(begin, end - begin) == FlagsMarkdown(),
      "README.md's flag table differs from ./node --help-markdown: run make readme-flags");
  CHECK(FlagsMarkdown().find("| `--port PORT` |") != std::string::npos);
}

TEST_CASE("--cluster-secret-file: one or two secrets, else a one-line error") {
  TempDir tmp;
  const std::string dir = tmp.path();
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << text;
    return path;
  };
  Config c;
  std::string err;
  REQUIRE(Parse({"--port", "8080", "--data", dir}, &c, &err) == ParseResult::kOk);
  CHECK_FALSE(c.cluster_keys.enabled());

  const std::string one = write("one", "0123456789abcdef0123456789abcdef\n");
  Config d;
  REQUIRE(Parse({"--port", "8080", "--data", dir, "--cluster-secret-file", one}, &d, &err) ==
          ParseResult::kOk);
  CHECK(d.cluster_keys.count == 1);
  CHECK(d.cluster_keys.keys[0] == kv::proto::auth::DeriveKey("0123456789abcdef0123456789abcdef"));
  CHECK(d.cluster_secret_file == one);

  const std::string two =
      write("two", "0123456789abcdef0123456789abcdef\r\n\r\n  fedcba9876543210fedcba98 \n");
  Config e;
  REQUIRE(Parse({"--port", "8080", "--data", dir, "--cluster-secret-file", two}, &e, &err) ==
          ParseResult::kOk);
  CHECK(e.cluster_keys.count == 2);
  CHECK(e.cluster_keys.keys[1] == kv::proto::auth::DeriveKey("fedcba9876543210fedcba98"));

  struct Bad {
    std::string path, says;
  } bad[] = {
      {write("empty", "\n\n"), "no secret"},
      {write("three", "0123456789abcdef\n1123456789abcdef\n2123456789abcdef\n"), "3 secrets"},
      {write("short", "tooshort\n"), "8 bytes"},
      {dir + "/missing", "cannot read cluster secret file"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.path);
    Config f;
    CHECK(Parse({"--port", "8080", "--data", dir, "--cluster-secret-file", b.path}, &f, &err) ==
          ParseResult::kError);
    CHECK(err.find(b.says) != std::string::npos);
    CHECK(err.find('\n') == std::string::npos);
  }
  Config g;
  CHECK(Parse({"--port", "8080", "--data", dir, "--cluster-secret-file", ""}, &g, &err) ==
        ParseResult::kError);
}
