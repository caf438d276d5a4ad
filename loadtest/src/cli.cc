#include "cli.h"

#include <arpa/inet.h>
#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kvload {

namespace {

bool parse_double(const char* s, double* out) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(v == v)) return false;
  *out = v;
  return true;
}

bool parse_int(const char* s, long min, long max, long* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

// Accepts "1000", "10k", "1.5k" for the rate.
bool parse_rate(const char* s, double* out) {
  std::string t(s);
  double mult = 1;
  if (!t.empty() && (t.back() == 'k' || t.back() == 'K')) {
    mult = 1000;
    t.pop_back();
  }
  double v;
  if (!parse_double(t.c_str(), &v) || v < 0) return false;
  *out = v * mult;
  return true;
}

enum LongOpt {
  kWorkload = 1000,
  kMix,
  kKeys,
  kKeyDist,
  kTheta,
  kValueSize,
  kAck,
  kFrom,
  kTimeout,
  kJson,
  kSelfTest,
};

}  // namespace

std::string_view workload_name(WorkloadKind k) {
  switch (k) {
    case WorkloadKind::kGet:
      return "get";
    case WorkloadKind::kPut:
      return "put";
    case WorkloadKind::kMixed:
      return "mixed";
    case WorkloadKind::kDelete:
      return "delete";
  }
  return "?";
}

bool parse_duration(std::string_view s, double* seconds) {
  std::string t(s);
  double mult = 1;
  auto ends = [&](const char* suf) {
    size_t n = std::strlen(suf);
    if (t.size() > n && t.compare(t.size() - n, n, suf) == 0) {
      t.resize(t.size() - n);
      return true;
    }
    return false;
  };
  if (ends("ms")) {
    mult = 0.001;
  } else if (ends("s")) {
    mult = 1;
  } else if (ends("m")) {
    mult = 60;
  } else if (ends("h")) {
    mult = 3600;
  }
  double v;
  if (!parse_double(t.c_str(), &v) || v <= 0) return false;
  *seconds = v * mult;
  return true;
}

bool parse_url(std::string_view url, sockaddr_in* addr, std::string* host_header,
               std::string* path) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return false;
  url.remove_prefix(kScheme.size());
  size_t slash = url.find('/');
  std::string_view hostport = url.substr(0, slash);
  std::string_view p = slash == std::string_view::npos ? std::string_view() : url.substr(slash);
  std::string host(hostport);
  int port = 80;
  size_t colon = hostport.rfind(':');
  if (colon != std::string_view::npos) {
    host = std::string(hostport.substr(0, colon));
    long v;
    std::string ps(hostport.substr(colon + 1));
    if (!parse_int(ps.c_str(), 1, 65535, &v)) return false;
    port = static_cast<int>(v);
  }
  std::string ip = host == "localhost" ? "127.0.0.1" : host;
  std::memset(addr, 0, sizeof(*addr));
  addr->sin_family = AF_INET;
  addr->sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip.c_str(), &addr->sin_addr) != 1) return false;
  *host_header = std::string(hostport);
  *path = (p.empty() || p == "/") ? "/v0/entity" : std::string(p);
  return true;
}

void print_usage(const char* prog) {
  std::fprintf(stderr,
               "Usage: %s <options> http://127.0.0.1:PORT[/path]\n"
               "  -t, --threads N        threads (default 2)\n"
               "  -c, --connections N    connections, spread over threads (default 10)\n"
               "  -d, --duration T       test duration: 10, 10s, 500ms, 2m (default 10s)\n"
               "  -R, --rate R           total requests/s, open loop (0 or absent: closed loop)\n"
               "  -L, --latency          print the detailed percentile spectrum\n"
               "      --timeout MS       request timeout (default 2000)\n"
               "      --workload W       get | put | mixed | delete (default get)\n"
               "      --mix-get-ratio F  mixed: fraction of GETs, the rest PUTs (default 0.9)\n"
               "      --keys N           key space k0 .. k(N-1) (default 100000)\n"
               "      --key-dist D       uniform | zipfian (default uniform)\n"
               "      --zipf-theta F     zipfian skew, 0 < F < 1 (default 0.99)\n"
               "      --value-size B     PUT body size in bytes (default 100)\n"
               "      --ack A --from F   replication parameters added to the query\n"
               "      --json FILE        also write the summary and spectrum as JSON\n"
               "      --self-test        run kvload's own unit tests and exit\n",
               prog);
}

bool parse_cli(int argc, char** argv, CliConfig* cfg, std::string* err) {
  static const option kLong[] = {
      {"threads", required_argument, nullptr, 't'},
      {"connections", required_argument, nullptr, 'c'},
      {"duration", required_argument, nullptr, 'd'},
      {"rate", required_argument, nullptr, 'R'},
      {"latency", no_argument, nullptr, 'L'},
      {"help", no_argument, nullptr, 'h'},
      {"workload", required_argument, nullptr, kWorkload},
      {"mix-get-ratio", required_argument, nullptr, kMix},
      {"keys", required_argument, nullptr, kKeys},
      {"key-dist", required_argument, nullptr, kKeyDist},
      {"zipf-theta", required_argument, nullptr, kTheta},
      {"value-size", required_argument, nullptr, kValueSize},
      {"ack", required_argument, nullptr, kAck},
      {"from", required_argument, nullptr, kFrom},
      {"timeout", required_argument, nullptr, kTimeout},
      {"json", required_argument, nullptr, kJson},
      {"self-test", no_argument, nullptr, kSelfTest},
      {nullptr, 0, nullptr, 0},
  };
  LoadOptions& lo = cfg->load;
  WorkloadConfig& wl = lo.workload;
  optind = 1;
  opterr = 0;
  int ch;
  long v;
  double d;
  auto bad = [&](const char* what) {
    *err = std::string("invalid ") + what + ": " + (optarg ? optarg : "");
    return false;
  };
  while ((ch = getopt_long(argc, argv, "t:c:d:R:Lh", kLong, nullptr)) != -1) {
    switch (ch) {
      case 't':
        if (!parse_int(optarg, 1, 1024, &v)) return bad("threads");
        lo.threads = static_cast<int>(v);
        break;
      case 'c':
        if (!parse_int(optarg, 1, 100000, &v)) return bad("connections");
        lo.connections = static_cast<int>(v);
        break;
      case 'd':
        if (!parse_duration(optarg, &lo.duration_s)) return bad("duration");
        break;
      case 'R':
        if (!parse_rate(optarg, &lo.rate)) return bad("rate");
        break;
      case 'L':
        cfg->latency_spectrum = true;
        break;
      case 'h':
        cfg->help = true;
        return true;
      case kWorkload: {
        std::string_view s(optarg);
        if (s == "get") {
          wl.kind = WorkloadKind::kGet;
        } else if (s == "put") {
          wl.kind = WorkloadKind::kPut;
        } else if (s == "mixed") {
          wl.kind = WorkloadKind::kMixed;
        } else if (s == "delete") {
          wl.kind = WorkloadKind::kDelete;
        } else {
          return bad("workload");
        }
        break;
      }
      case kMix:
        if (!parse_double(optarg, &d) || d < 0 || d > 1) return bad("mix-get-ratio");
        wl.get_ratio = d;
        break;
      case kKeys:
        if (!parse_int(optarg, 1, 1'000'000'000, &v)) return bad("keys");
        wl.keys = static_cast<uint64_t>(v);
        break;
      case kKeyDist:
        if (std::strcmp(optarg, "uniform") == 0) {
          wl.dist = KeyDist::kUniform;
        } else if (std::strcmp(optarg, "zipfian") == 0) {
          wl.dist = KeyDist::kZipfian;
        } else {
          return bad("key-dist");
        }
        break;
      case kTheta:
        if (!parse_double(optarg, &d) || d <= 0 || d >= 1) return bad("zipf-theta");
        wl.zipf_theta = d;
        break;
      case kValueSize:
        if (!parse_int(optarg, 0, 64L << 20, &v)) return bad("value-size");
        wl.value_size = static_cast<size_t>(v);
        break;
      case kAck:
        if (!parse_int(optarg, 1, 1000, &v)) return bad("ack");
        wl.ack = static_cast<int>(v);
        break;
      case kFrom:
        if (!parse_int(optarg, 1, 1000, &v)) return bad("from");
        wl.from = static_cast<int>(v);
        break;
      case kTimeout:
        if (!parse_int(optarg, 1, 3'600'000, &v)) return bad("timeout");
        lo.timeout_ms = static_cast<int>(v);
        break;
      case kJson:
        cfg->json_path = optarg;
        break;
      case kSelfTest:
        cfg->self_test = true;
        break;
      default:
        *err = std::string("unknown or incomplete option: ") + argv[optind - 1];
        return false;
    }
  }
  if (cfg->self_test) return true;
  if (optind != argc - 1) {
    *err = "expected exactly one URL";
    return false;
  }
  cfg->url = argv[optind];
  if (!parse_url(cfg->url, &lo.addr, &wl.host_header, &wl.path)) {
    *err = "bad URL (want http://IPv4-or-localhost:PORT[/path]): " + cfg->url;
    return false;
  }
  if ((wl.ack > 0) != (wl.from > 0) || wl.ack > wl.from) {
    *err = "--ack and --from go together, with 1 <= ack <= from";
    return false;
  }
  if (lo.threads > lo.connections) lo.threads = lo.connections;
  return true;
}

}  // namespace kvload
