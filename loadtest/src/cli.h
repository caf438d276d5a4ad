// kvload command line: wrk2-style options plus the key-value workload options.
#pragma once
#include <string>
#include <string_view>

#include "loadgen.h"

namespace kvload {

struct CliConfig {
  LoadOptions load;
  std::string url;
  std::string json_path;
  std::string per_second_path;    // --per-second FILE
  bool latency_spectrum = false;  // -L
  bool self_test = false;
  bool help = false;
  bool help_markdown = false;
};

// Parses argv through the flag table in cli.cc (common/flags.h: -t N, -tN, --threads N,
// --threads=N, grouped switches, the URL anywhere); on error returns false with a message in *err.
bool parse_cli(int argc, char** argv, CliConfig* cfg, std::string* err);
// The --help text, on stderr.
void print_usage(const char* prog);
// The flags as a markdown table (kvload --help-markdown).
std::string usage_markdown();

// "10", "10s", "500ms", "2m", "1h" -> seconds; false if malformed or not positive.
bool parse_duration(std::string_view s, double* seconds);
// "http://127.0.0.1:8080[/path]" -> address, Host header and path ("/v0/entity" when the URL
// has none). Only numeric IPv4 and "localhost" are accepted: kvload loads loopback targets.
bool parse_url(std::string_view url, sockaddr_in* addr, std::string* host_header,
               std::string* path);

std::string_view workload_name(WorkloadKind k);

}  // namespace kvload
