// kvload: open-loop (wrk2-style, coordinated-omission corrected) or closed-loop HTTP load
// generator for the key-value store. See loadtest/README.md.
#include <csignal>
#include <cstdio>

#include "cli.h"
#include "loadgen.h"
#include "report.h"
#include "self_test.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  kvload::CliConfig cfg;
  std::string err;
  if (!kvload::parse_cli(argc, argv, &cfg, &err)) {
    std::fprintf(stderr, "kvload: %s\n", err.c_str());
    kvload::print_usage(argv[0]);
    return 2;
  }
  if (cfg.help) {
    kvload::print_usage(argv[0]);
    return 0;
  }
  if (cfg.help_markdown) {
    std::fputs(kvload::usage_markdown().c_str(), stdout);
    return 0;
  }
  if (cfg.self_test) return kvload::run_self_test();
  kvload::print_header(stdout, cfg);
  kvload::LoadStats st = kvload::run_load(cfg.load);
  kvload::print_report(stdout, cfg, st);
  if (!cfg.json_path.empty() && !kvload::write_json(cfg.json_path, cfg, st)) {
    std::fprintf(stderr, "kvload: cannot write %s\n", cfg.json_path.c_str());
    return 1;
  }
  if (!cfg.per_second_path.empty() && !kvload::write_per_second(cfg.per_second_path, st)) {
    std::fprintf(stderr, "kvload: cannot write %s\n", cfg.per_second_path.c_str());
    return 1;
  }
  return 0;
}
