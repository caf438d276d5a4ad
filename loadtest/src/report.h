// Output of a kvload run: wrk2's text layout on stdout and an optional JSON summary.
#pragma once
#include <cstdio>
#include <string>

#include "cli.h"
#include "loadgen.h"

namespace kvload {

std::string format_time_us(double us);   // "812.00us", "1.02ms", "3.50s", "1.20m"
std::string format_bytes(double bytes);  // "512.00B", "19.90MB"

void print_header(FILE* out, const CliConfig& cfg);
void print_report(FILE* out, const CliConfig& cfg, const LoadStats& st);
// Returns false if the file cannot be written.
bool write_json(const std::string& path, const CliConfig& cfg, const LoadStats& st);
// --per-second: "# start_unix T" then one line per second: "second requests p50_ms p99_ms max_ms"
// (a second with no request due: zeros). Returns false if the file cannot be written.
bool write_per_second(const std::string& path, const LoadStats& st);

}  // namespace kvload
