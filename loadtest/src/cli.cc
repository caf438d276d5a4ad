#include "cli.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/flags.h"

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

namespace {

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A flag taking an integer in [min, max], stored in *target; its default is *target's.
template <typename T>
kv::flags::Flag int_flag(char short_name, std::string name, std::string placeholder, T* target,
                         long min, long max, std::string help) {
  return {std::move(name),
          short_name,
          std::move(placeholder),
          std::to_string(*target),
          std::move(help),
          [=](const std::string& v) {
            long n;
            if (!parse_int(v.c_str(), min, max, &n)) {
              return "expected " + std::to_string(min) + ".." + std::to_string(max);
            }
            *target = static_cast<T>(n);
            return std::string();
          }};
}

// A flag taking a number that `ok` accepts, stored in *target; its default is *target's.
kv::flags::Flag fraction_flag(std::string name, double* target, bool (*ok)(double),
                              std::string help) {
  return {
      std::move(name), 0, "F", format_double(*target), std::move(help), [=](const std::string& v) {
        double d;
        if (!parse_double(v.c_str(), &d) || !ok(d)) return std::string("out of range");
        *target = d;
        return std::string();
      }};
}

kv::flags::Flag switch_flag(char short_name, std::string name, bool* target, std::string help) {
  return {std::move(name), short_name, "", "", std::move(help), [target](const std::string&) {
            *target = true;
            return std::string();
          }};
}

// Every kvload flag: parsing and --help come from here. The defaults shown are *cfg's values.
std::vector<kv::flags::Flag> flag_table(CliConfig* cfg) {
  LoadOptions& lo = cfg->load;
  WorkloadConfig& wl = lo.workload;
  kv::flags::Flag ack = int_flag(0, "ack", "A", &wl.ack, 1, 1000,
                                 "`ack` added to each request's query (with `--from`)");
  kv::flags::Flag from = int_flag(0, "from", "F", &wl.from, 1, 1000,
                                  "`from` added to each request's query (with `--ack`)");
  ack.default_text = from.default_text = "";
  return {
      int_flag('t', "threads", "N", &lo.threads, 1, 1024, "threads"),
      int_flag('c', "connections", "N", &lo.connections, 1, 100000,
               "connections, spread over threads"),
      {"duration", 'd', "T", format_double(lo.duration_s) + "s",
       "test duration: 10, 10s, 500ms, 2m",
       [&lo](const std::string& v) {
         return parse_duration(v, &lo.duration_s) ? std::string() : std::string("malformed");
       }},
      {"rate", 'R', "R", "",
       "total requests/s, open loop, as 1000 or 10k (0 or absent: closed loop)",
       [&lo](const std::string& v) {
         return parse_rate(v.c_str(), &lo.rate) ? std::string() : std::string("malformed");
       }},
      switch_flag('L', "latency", &cfg->latency_spectrum, "print the detailed percentile spectrum"),
      int_flag(0, "timeout", "MS", &lo.timeout_ms, 1, 3'600'000, "request timeout"),
      kv::flags::Choice("workload", &wl.kind,
                        {{"get", WorkloadKind::kGet},
                         {"put", WorkloadKind::kPut},
                         {"mixed", WorkloadKind::kMixed},
                         {"delete", WorkloadKind::kDelete}},
                        "what the requests do"),
      fraction_flag(
          "mix-get-ratio", &wl.get_ratio, [](double d) { return d >= 0 && d <= 1; },
          "mixed: fraction of GETs, the rest PUTs"),
      int_flag(0, "keys", "N", &wl.keys, 1, 1'000'000'000, "key space k0 .. k(N-1)"),
      kv::flags::Choice("key-dist", &wl.dist,
                        {{"uniform", KeyDist::kUniform}, {"zipfian", KeyDist::kZipfian}},
                        "how keys are drawn"),
      fraction_flag(
          "zipf-theta", &wl.zipf_theta, [](double d) { return d > 0 && d < 1; },
          "zipfian skew, 0 < F < 1"),
      int_flag(0, "value-size", "B", &wl.value_size, 0, 64L << 20, "PUT body size in bytes"),
      ack,
      from,
      {"json", 0, "FILE", "", "also write the summary and spectrum as JSON",
       [cfg](const std::string& v) {
         cfg->json_path = v;
         return std::string();
       }},
      {"per-second", 0, "FILE", "",
       "also write one line per second of the run: second, requests, p50, p99 and max (ms), by "
       "the time each request was due",
       [cfg](const std::string& v) {
         cfg->per_second_path = v;
         cfg->load.per_second = true;
         return std::string();
       }},
      switch_flag(0, "self-test", &cfg->self_test, "run kvload's own unit tests and exit"),
  };
}

}  // namespace

void print_usage(const char* prog) {
  CliConfig defaults;
  std::fprintf(stderr, "Usage: %s <options> http://127.0.0.1:PORT[/path]\n%s", prog,
               kv::flags::HelpText(flag_table(&defaults)).c_str());
}

std::string usage_markdown() {
  CliConfig defaults;
  return kv::flags::MarkdownTable(flag_table(&defaults));
}

bool parse_cli(int argc, char** argv, CliConfig* cfg, std::string* err) {
  LoadOptions& lo = cfg->load;
  WorkloadConfig& wl = lo.workload;
  std::vector<std::string> args;
  kv::flags::Error e;
  switch (kv::flags::Parse(flag_table(cfg), argc, argv, &args, &e)) {
    case kv::flags::Outcome::kHelp:
      cfg->help = true;
      return true;
    case kv::flags::Outcome::kHelpMarkdown:
      cfg->help_markdown = true;
      return true;
    case kv::flags::Outcome::kError:
      *err = e.kind == kv::flags::Error::Kind::kBadValue ? "invalid " + e.name + ": " + e.value
                                                         : "unknown or incomplete option: " + e.arg;
      return false;
    case kv::flags::Outcome::kOk:
      break;
  }
  if (cfg->self_test) return true;
  if (args.size() != 1) {
    *err = "expected exactly one URL";
    return false;
  }
  cfg->url = args[0];
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
