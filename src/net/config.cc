#include "net/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "cluster/ring.h"
#include "common/log.h"
#include "net/url.h"

namespace kv::net {

const char* Usage() {
  return "usage: node --port PORT [options]\n"
         "  --cluster URL,URL,...      all nodes (http://host:port), this one included; host\n"
         "                             a name or an IP literal ([v6] in brackets);\n"
         "                             default: a cluster of one\n"
         "  --self URL                 this node's URL in --cluster (default: the entry on "
         "--port)\n"
         "  --data DIR                 data directory (default ./data/<port>)\n"
         "  --threads N                event-loop threads (default: number of cores)\n"
         "  --peer-protocol P          binary|http|http-pipelined between nodes (default binary)\n"
         "  --max-value-bytes N        largest request body (default 8388608)\n"
         "  --max-connections N        open client connections (default 10000)\n"
         "  --idle-timeout-ms N        close idle keep-alive connections (default 60000)\n"
         "  --request-timeout-ms N     replica answers wait at most this (default 1000)\n"
         "  --peer-timeout-min-ms N    a peer's answer waits twice its slowest recent answer,\n"
         "                             at least this (default 200), at most the request timeout\n"
         "  --read-fanout F            hedged: a GET asks ack replicas, the rest after the p99\n"
         "                             of answer times or on a failure; all: every replica at\n"
         "                             once (default hedged)\n"
         "  --fsync P                  periodic|always|never (default periodic, 100 ms)\n"
         "  --memtable-bytes N         flush the memtable past 3/4..1 of this, drawn per memtable\n"
         "                             so replicas do not flush together (default 67108864)\n"
         "  --tombstone-gc-seconds N   keep tombstones at least this long (default 86400)\n"
         "  --log-level L              debug|info|warn|error (default info)\n"
         "  --help                     this text\n";
}

namespace {

bool ParseNum(const std::string& s, uint64_t min, uint64_t max, uint64_t* out) {
  uint64_t v;
  if (!ParseU64(s, &v) || v < min || v > max) return false;
  *out = v;
  return true;
}

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

}  // namespace

ParseResult ParseArgs(int argc, char** argv, Config* cfg, std::string* err) {
  std::string cluster_arg, self_arg, data_arg;
  bool have_port = false, have_threads = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") return ParseResult::kHelp;
    if (a.rfind("--", 0) != 0) {
      *err = "unexpected argument '" + a + "' (see --help)";
      return ParseResult::kError;
    }
    std::string name = a, value;
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else {
      if (i + 1 >= argc) {
        *err = "flag " + a + " needs a value";
        return ParseResult::kError;
      }
      value = argv[++i];
    }
    uint64_t n = 0;
    auto bad = [&](const char* what) {
      *err = "bad value '" + value + "' for " + name + ": " + what;
      return ParseResult::kError;
    };
    if (name == "--port") {
      if (!ParseNum(value, 1, 65535, &n)) return bad("expected 1..65535");
      cfg->port = static_cast<uint16_t>(n);
      have_port = true;
    } else if (name == "--cluster") {
      cluster_arg = value;
    } else if (name == "--self") {
      self_arg = value;
    } else if (name == "--data") {
      if (value.empty()) return bad("empty path");
      data_arg = value;
    } else if (name == "--threads") {
      if (!ParseNum(value, 1, 256, &n)) return bad("expected 1..256");
      cfg->threads = static_cast<int>(n);
      have_threads = true;
    } else if (name == "--peer-protocol") {
      if (value == "binary")
        cfg->peer_protocol = PeerProtocol::kBinary;
      else if (value == "http")
        cfg->peer_protocol = PeerProtocol::kHttp;
      else if (value == "http-pipelined")
        cfg->peer_protocol = PeerProtocol::kHttpPipelined;
      else
        return bad("expected binary, http or http-pipelined");
    } else if (name == "--max-value-bytes") {
      if (!ParseNum(value, 0, 1ull << 30, &cfg->max_value_bytes)) return bad("expected 0..2^30");
    } else if (name == "--max-connections") {
      if (!ParseNum(value, 1, 1000000, &cfg->max_connections)) return bad("expected 1..1000000");
    } else if (name == "--idle-timeout-ms") {
      if (!ParseNum(value, 1, 86400000, &cfg->idle_timeout_ms)) return bad("expected 1..86400000");
    } else if (name == "--request-timeout-ms") {
      if (!ParseNum(value, 1, 600000, &cfg->request_timeout_ms)) return bad("expected 1..600000");
    } else if (name == "--peer-timeout-min-ms") {
      if (!ParseNum(value, 1, 600000, &cfg->peer_timeout_min_ms)) return bad("expected 1..600000");
    } else if (name == "--read-fanout") {
      if (value == "hedged")
        cfg->read_fanout = cluster::ReadFanout::kHedged;
      else if (value == "all")
        cfg->read_fanout = cluster::ReadFanout::kAll;
      else
        return bad("expected hedged or all");
    } else if (name == "--fsync") {
      if (value == "periodic")
        cfg->fsync = storage::FsyncPolicy::kPeriodic;
      else if (value == "always")
        cfg->fsync = storage::FsyncPolicy::kAlways;
      else if (value == "never")
        cfg->fsync = storage::FsyncPolicy::kNever;
      else
        return bad("expected periodic, always or never");
    } else if (name == "--memtable-bytes") {
      if (!ParseNum(value, 4096, 1ull << 36, &cfg->memtable_bytes))
        return bad("expected 4096..2^36");
    } else if (name == "--tombstone-gc-seconds") {
      if (!ParseNum(value, 0, 1ull << 40, &cfg->tombstone_gc_seconds)) return bad("out of range");
    } else if (name == "--log-level") {
      LogLevel l;
      if (!parse_log_level(value, &l)) return bad("expected debug, info, warn or error");
      cfg->log_level = static_cast<int>(l);
    } else {
      *err = "unknown flag " + name + " (see --help)";
      return ParseResult::kError;
    }
  }
  if (!have_port) {
    *err = "--port is required (see --help)";
    return ParseResult::kError;
  }
  if (!have_threads) {
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
  cfg->data_dir = data_arg.empty() ? "./data/" + port_str : data_arg;
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
