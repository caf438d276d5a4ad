#include "node/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "cluster/ring.h"
#include "common/flags.h"
#include "common/log.h"
#include "http/url.h"

namespace kv::net {

namespace {

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t c = s.find(',', pos);
    if (c == std::string::npos) c = s.size();
    out.push_back(s.substr(pos, c - pos));
    pos = c + 1;
  }
  return out;
}

// Creates dir (and parents) if missing, then checks a file can be created in it.
bool EnsureWritableDir(const std::string& dir, std::string* err) {
  std::string path;
  size_t pos = 0;
  while (pos <= dir.size()) {
    size_t s = dir.find('/', pos);
    if (s == std::string::npos) s = dir.size();
    path = dir.substr(0, s);
    if (!path.empty() && mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      *err = "cannot create data dir " + dir + ": " + strerror(errno);
      return false;
    }
    pos = s + 1;
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    *err = "data dir " + dir + " is not a directory";
    return false;
  }
  std::string probe = dir + "/.write-probe";
  int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    *err = "data dir " + dir + " is not writable: " + strerror(errno);
    return false;
  }
  close(fd);
  unlink(probe.c_str());
  return true;
}

// What the flags give besides Config; the cross-flag checks in ParseArgs turn it into Config.
struct Given {
  std::string cluster, self, data, secret_file;
  bool port = false, threads = false;
};

// A flag taking a decimal number in [min, max], stored in *target; its default is *target's.
template <typename T>
flags::Flag Number(std::string name, T* target, uint64_t min, uint64_t max, std::string reason,
                   std::string help) {
  return {
      std::move(name), 0, "N", std::to_string(*target), std::move(help), [=](const std::string& v) {
        uint64_t n;
        if (!ParseU64(v, &n) || n < min || n > max) return reason;
        *target = static_cast<T>(n);
        return std::string();
      }};
}

// A flag whose value is kept as written in *target (for the cross-flag checks); an empty value
// is refused with `if_empty` when that is not empty.
flags::Flag Text(std::string name, std::string placeholder, std::string default_text,
                 std::string* target, std::string help, std::string if_empty = "") {
  return {std::move(name),
          0,
          std::move(placeholder),
          std::move(default_text),
          std::move(help),
          [target, if_empty](const std::string& v) {
            if (v.empty() && !if_empty.empty()) return if_empty;
            *target = v;
            return std::string();
          }};
}

// f, whose setter also records in *given that the flag was given.
flags::Flag Noted(flags::Flag f, bool* given) {
  f.set = [set = f.set, given](const std::string& v) {
    std::string reason = set(v);
    if (reason.empty()) *given = true;
    return reason;
  };
  return f;
}

// Every flag of ./node: parsing, --help and README.md's table come from here. The defaults shown
// are *cfg's values, so Usage and FlagsMarkdown pass a default Config.
std::vector<flags::Flag> Table(Config* cfg, Given* g) {
  flags::Flag port = Noted(Number("port", &cfg->port, 1, 65535, "expected 1..65535",
                                  "required: the port clients and peers connect to"),
                           &g->port);
  port.value = "PORT";
  port.default_text = "";
  flags::Flag threads =
      Noted(Number("threads", &cfg->threads, 1, 256, "expected 1..256", "event-loop threads"),
            &g->threads);
  threads.default_text = "number of cores";
  using storage::FsyncPolicy;
  return {
      port,
      Text("cluster", "URL,URL,...", "a cluster of one", &g->cluster,
           "every node's URL (`http://host:port`, host a name or an IP literal, IPv6 in "
           "brackets), this one included; the same list on every node"),
      Text("self", "URL", "the entry whose port is `--port`", &g->self,
           "this node's URL in the `--cluster` list"),
      Text("data", "DIR", "`./data/<port>`", &g->data, "data directory (created if missing)",
           "empty path"),
      threads,
      Text("cluster-secret-file", "PATH", "none: peers are not authenticated", &g->secret_file,
           "file with the cluster's shared secret (one line of 16..1024 bytes, e.g. 64 hex "
           "digits; two lines while rotating): peers prove they know it, in both peer "
           "protocols, and a node refuses peer requests that do not (proto_spec section 11)",
           "empty path"),
      flags::Choice("peer-protocol", &cfg->peer_protocol,
                    {{"binary", PeerProtocol::kBinary},
                     {"http", PeerProtocol::kHttp},
                     {"http-pipelined", PeerProtocol::kHttpPipelined}},
                    "node-to-node transport: `binary` (length-prefixed frames on persistent "
                    "connections), `http` (one request in flight per pooled connection, up to "
                    "128 per peer and loop) or `http-pipelined` (up to 4 connections per peer and "
                    "loop, pipelined)"),
      Number("max-value-bytes", &cfg->max_value_bytes, 0, 1ull << 30, "expected 0..2^30",
             "largest request body"),
      Number("max-connections", &cfg->max_connections, 1, 1000000, "expected 1..1000000",
             "open client connections"),
      Number("idle-timeout-ms", &cfg->idle_timeout_ms, 1, 86400000, "expected 1..86400000",
             "idle keep-alive connections (and connections that never send a byte) are closed "
             "after this"),
      Number("header-timeout-ms", &cfg->header_timeout_ms, 1, 86400000, "expected 1..86400000",
             "a connection whose request head (or the first bytes that tell its protocol) is "
             "not complete this long after its first byte is closed"),
      Number("body-timeout-ms", &cfg->body_timeout_ms, 1, 86400000, "expected 1..86400000",
             "a request whose body is not complete this long after its head is answered 408 "
             "and its connection closed (the default lets the largest value, 8 MiB, arrive at "
             "280 KB/s)"),
      Number("send-timeout-ms", &cfg->send_timeout_ms, 1, 86400000, "expected 1..86400000",
             "a client or peer connection whose pending output makes no progress for this long "
             "(it does not read) is closed"),
      Number("peer-handshake-timeout-ms", &cfg->peer_handshake_timeout_ms, 1, 86400000,
             "expected 1..86400000",
             "a binary peer connection whose handshake is not accepted this long after its "
             "preface is closed"),
      Number("max-pending-handshakes", &cfg->max_pending_handshakes, 1, 1000000,
             "expected 1..1000000",
             "binary peer connections per loop thread that sent the preface but no accepted "
             "handshake yet; past it the oldest is closed"),
      Number("request-timeout-ms", &cfg->request_timeout_ms, 1, 600000, "expected 1..600000",
             "how long a coordinator waits for replica answers"),
      Number("peer-timeout-min-ms", &cfg->peer_timeout_min_ms, 1, 600000, "expected 1..600000",
             "floor of a peer's adaptive timeout (twice its slowest recent answer, at most "
             "`--request-timeout-ms`)"),
      flags::Choice("read-fanout", &cfg->read_fanout,
                    {{"hedged", cluster::ReadFanout::kHedged}, {"all", cluster::ReadFanout::kAll}},
                    "`hedged`: a GET asks `ack` replicas first, more on a failure or past the "
                    "hedge delay (the p99 of answer times); `all`: every `from` replica at once"),
      flags::Choice("read-repair", &cfg->read_repair, {{"on", true}, {"off", false}},
                    "`on`: a GET whose replicas' answers disagree writes the newest to the stale "
                    "ones before it answers (later answers: in the background); `off`: never"),
      Number("max-clock-skew-ms", &cfg->max_clock_skew_ms, 0, 86400000, "expected 0..86400000",
             "a replica refuses a write whose version is more than this ahead of its own clock "
             "(nothing written; the coordinator logs and counts it per peer), so a forged "
             "version or a node whose clock is ahead cannot pin a key; `0`: no bound"),
      {"clock-offset-ms", 0, "N", "0",
       "for tests only: this node's clock reads N ms ahead of the system's (negative: behind)",
       [cfg](const std::string& v) {
         const bool neg = !v.empty() && v[0] == '-';
         uint64_t n;
         if (!ParseU64(neg ? v.substr(1) : v, &n) || n > 1000ull * 86400 * 365 * 100) {
           return std::string("expected a number of ms within 100 years");
         }
         cfg->clock_offset_ms = neg ? -static_cast<int64_t>(n) : static_cast<int64_t>(n);
         return std::string();
       }},
      flags::Choice("fsync", &cfg->fsync,
                    {{"periodic", FsyncPolicy::kPeriodic},
                     {"always", FsyncPolicy::kAlways},
                     {"never", FsyncPolicy::kNever}},
                    "`periodic`: fdatasync every 100 ms; `always`: every write is on disk "
                    "before it is acknowledged (group commit on a thread of its own, one "
                    "fdatasync at a time for all writes since the last, so the loops never wait "
                    "on the disk; writes per sync in /metrics); `never`: the kernel writes back "
                    "when it likes"),
      Number("memtable-bytes", &cfg->memtable_bytes, 4096, 1ull << 36, "expected 4096..2^36",
             "memtable size that triggers a flush to a sorted segment (each memtable at a size "
             "drawn from 3/4..1 of it, so replicas do not flush together)"),
      Number("tombstone-gc-seconds", &cfg->tombstone_gc_seconds, 0, 1ull << 40, "out of range",
             "compaction keeps tombstones at least this long, and in a cluster until a repair of "
             "their range that started after them completed against every replica "
             "(proto_spec section 13); also how long a hint is kept"),
      flags::Choice("hinted-handoff", &cfg->hinted_handoff, {{"on", true}, {"off", false}},
                    "`on`: a write a peer replica did not acknowledge is kept in a hint file "
                    "under `<data>/hints/` and replayed to that peer once it answers again; "
                    "`off`: never"),
      Number("max-hints-bytes", &cfg->max_hints_bytes, 0, 1ull << 50, "expected 0..2^50",
             "hint bytes kept per target node; further hints for it are dropped (counted)"),
      Number("hint-replay-rate", &cfg->hint_replay_rate, 0, 1ull << 32, "expected 0..2^32",
             "hints replayed per second to each peer, per event-loop thread, while that loop has "
             "room; less while it is busy with requests (down to 5% at 90% busy, "
             "`kv_loop_busy_ratio` in /metrics); `0`: unpaced"),
      Number("anti-entropy-interval-s", &cfg->anti_entropy_interval_s, 0, 1ull << 32,
             "expected 0..2^32",
             "seconds between background anti-entropy repairs of every range this node "
             "replicates (the first after a random 0.5..1.5 of it); `0`: only on "
             "`POST /v0/admin/repair`"),
      Number("repair-rate-mb", &cfg->repair_rate_mb, 1, 1ull << 20, "expected 1..2^20",
             "bytes per second (in MB) a repair this node drives may put on the wire while its "
             "loops have room; less while the busiest is busy with requests (down to 5% at 90% "
             "busy)"),
      Number("repair-cpu-percent", &cfg->repair_cpu_percent, 1, 100, "expected 1..100",
             "share of one core's time each repair thread of this node (the one driving its "
             "repairs, the one answering its peers') may spend scanning, hashing and writing; "
             "it sleeps in proportion after each ~2 ms of CPU; scaled down as "
             "`--repair-rate-mb` is while the loops are busy; `100`: no bound"),
      flags::Choice("log-level", &cfg->log_level,
                    {{"debug", static_cast<int>(LogLevel::kDebug)},
                     {"info", static_cast<int>(LogLevel::kInfo)},
                     {"warn", static_cast<int>(LogLevel::kWarn)},
                     {"error", static_cast<int>(LogLevel::kError)}},
                    "least severe log message written to stderr"),
  };
}

}  // namespace

std::string Usage() {
  Config cfg;
  Given given;
  return "usage: node --port PORT [options]\n" + flags::HelpText(Table(&cfg, &given));
}

std::string FlagsMarkdown() {
  Config cfg;
  Given given;
  return flags::MarkdownTable(Table(&cfg, &given));
}

ParseResult ParseArgs(int argc, char** argv, Config* cfg, std::string* err) {
  Given given;
  flags::Error e;
  switch (flags::Parse(Table(cfg, &given), argc, argv, nullptr, &e)) {
    case flags::Outcome::kHelp:
      return ParseResult::kHelp;
    case flags::Outcome::kHelpMarkdown:
      return ParseResult::kHelpMarkdown;
    case flags::Outcome::kError:
      *err = flags::Describe(e);
      return ParseResult::kError;
    case flags::Outcome::kOk:
      break;
  }
  const std::string &cluster_arg = given.cluster, &self_arg = given.self;
  if (!given.port) {
    *err = "--port is required (see --help)";
    return ParseResult::kError;
  }
  if (!given.threads) {
    unsigned hc = std::thread::hardware_concurrency();
    cfg->threads = hc == 0 ? 1 : static_cast<int>(hc);
  }
  std::string port_str = std::to_string(cfg->port);
  if (cluster_arg.empty()) {
    cfg->cluster = {self_arg.empty() ? "http://127.0.0.1:" + port_str : self_arg};
  } else {
    cfg->cluster = SplitComma(cluster_arg);
  }
  if (cfg->cluster.size() > 1024) {
    *err = "--cluster lists more than 1024 nodes";
    return ParseResult::kError;
  }
  int self = -1;
  for (size_t i = 0; i < cfg->cluster.size(); ++i) {
    const std::string& u = cfg->cluster[i];
    std::string host;
    uint16_t port;
    if (!cluster::Ring::ParseUrl(u, &host, &port)) {
      *err = "bad cluster URL '" + u + "': expected http://host:port";
      return ParseResult::kError;
    }
    for (size_t j = 0; j < i; ++j) {
      if (cfg->cluster[j] == u) {
        *err = "cluster URL '" + u + "' is listed twice";
        return ParseResult::kError;
      }
    }
    bool match = self_arg.empty() ? port == cfg->port : u == self_arg;
    if (match) {
      if (self >= 0) {
        *err = "more than one --cluster entry matches port " + port_str + ": give --self";
        return ParseResult::kError;
      }
      self = static_cast<int>(i);
    }
  }
  if (self < 0) {
    *err = self_arg.empty() ? "--port " + port_str + " is not in the --cluster list"
                            : "--self " + self_arg + " is not in the --cluster list";
    return ParseResult::kError;
  }
  cfg->self_index = static_cast<size_t>(self);
  cfg->self_url = cfg->cluster[self];
  if (!given.secret_file.empty()) {
    if (!proto::auth::Init()) {
      *err = "cannot initialise libsodium";
      return ParseResult::kError;
    }
    *err = proto::auth::LoadSecretFile(given.secret_file, &cfg->cluster_keys,
                                       &cfg->cluster_secret_loose);
    if (!err->empty()) return ParseResult::kError;
    cfg->cluster_secret_file = given.secret_file;
  }
  cfg->data_dir = given.data.empty() ? "./data/" + port_str : given.data;
  if (!EnsureWritableDir(cfg->data_dir, err)) return ParseResult::kError;
  return ParseResult::kOk;
}

const char* PeerProtocolName(PeerProtocol p) {
  switch (p) {
    case PeerProtocol::kHttp:
      return "http";
    case PeerProtocol::kHttpPipelined:
      return "http-pipelined";
    default:
      return "binary";
  }
}

}  // namespace kv::net
