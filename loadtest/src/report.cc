#include "report.h"

#include <cmath>

namespace kvload {

namespace {

constexpr double kPercentiles[] = {50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0};

struct SampleStats {
  double mean = 0, stdev = 0, max = 0, within = 0;
};

SampleStats sample_stats(const std::vector<double>& xs) {
  SampleStats s;
  if (xs.empty()) return s;
  for (double x : xs) {
    s.mean += x;
    s.max = std::max(s.max, x);
  }
  s.mean /= static_cast<double>(xs.size());
  for (double x : xs) s.stdev += (x - s.mean) * (x - s.mean);
  s.stdev = xs.size() > 1 ? std::sqrt(s.stdev / static_cast<double>(xs.size() - 1)) : 0;
  int in = 0;
  for (double x : xs) in += (x >= s.mean - s.stdev && x <= s.mean + s.stdev) ? 1 : 0;
  s.within = 100.0 * in / static_cast<double>(xs.size());
  return s;
}

std::string format_count(double v) {
  char b[32];
  if (v >= 1e6) {
    std::snprintf(b, sizeof(b), "%.2fM", v / 1e6);
  } else if (v >= 1e3) {
    std::snprintf(b, sizeof(b), "%.2fk", v / 1e3);
  } else {
    std::snprintf(b, sizeof(b), "%.2f", v);
  }
  return b;
}

double ms(int64_t us) {
  return static_cast<double>(us) / 1000.0;
}

}  // namespace

std::string format_time_us(double us) {
  char b[32];
  if (us < 1000) {
    std::snprintf(b, sizeof(b), "%.2fus", us);
  } else if (us < 1e6) {
    std::snprintf(b, sizeof(b), "%.2fms", us / 1e3);
  } else if (us < 60e6) {
    std::snprintf(b, sizeof(b), "%.2fs", us / 1e6);
  } else {
    std::snprintf(b, sizeof(b), "%.2fm", us / 60e6);
  }
  return b;
}

std::string format_bytes(double v) {
  static const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  char b[32];
  std::snprintf(b, sizeof(b), "%.2f%s", v, kUnits[u]);
  return b;
}

void print_header(FILE* out, const CliConfig& cfg) {
  const LoadOptions& lo = cfg.load;
  const WorkloadConfig& wl = lo.workload;
  std::fprintf(out, "Running %s test @ %s\n", format_time_us(lo.duration_s * 1e6).c_str(),
               cfg.url.c_str());
  std::fprintf(out, "  %d threads and %d connections\n", lo.threads, lo.connections);
  std::fprintf(out, "  Workload %s", std::string(workload_name(wl.kind)).c_str());
  if (wl.kind == WorkloadKind::kMixed) std::fprintf(out, " (%.0f%% GET)", wl.get_ratio * 100);
  std::fprintf(out, ", %llu keys %s", static_cast<unsigned long long>(wl.keys),
               wl.dist == KeyDist::kZipfian ? "zipfian" : "uniform");
  if (wl.dist == KeyDist::kZipfian) std::fprintf(out, " (theta %.2f)", wl.zipf_theta);
  if (wl.kind == WorkloadKind::kPut || wl.kind == WorkloadKind::kMixed) {
    std::fprintf(out, ", value %zu B", wl.value_size);
  }
  if (wl.ack > 0) std::fprintf(out, ", ack %d/from %d", wl.ack, wl.from);
  if (lo.rate > 0) {
    std::fprintf(out, ", open loop at %.0f requests/s\n", lo.rate);
  } else {
    std::fprintf(out, ", closed loop (as fast as possible)\n");
  }
  std::fflush(out);
}

void print_report(FILE* out, const CliConfig& cfg, const LoadStats& st) {
  const Histogram& h = st.latency_us;
  SampleStats rps = sample_stats(st.rps_samples);
  std::fprintf(out, "  Thread Stats   Avg      Stdev     Max   +/- Stdev\n");
  std::fprintf(out, "    Latency   %8s %8s %8s %8.2f%%\n", format_time_us(h.mean()).c_str(),
               format_time_us(h.stdev()).c_str(),
               format_time_us(static_cast<double>(h.max())).c_str(), h.within_stdev_pct());
  std::fprintf(out, "    Req/Sec   %8s %8s %8s %8.2f%%\n", format_count(rps.mean).c_str(),
               format_count(rps.stdev).c_str(), format_count(rps.max).c_str(), rps.within);
  std::fprintf(out, "  Latency Distribution (HdrHistogram - Recorded Latency)\n");
  for (double p : kPercentiles) {
    std::fprintf(out, "%7.3f%% %8s\n", p,
                 format_time_us(static_cast<double>(h.value_at_percentile(p))).c_str());
  }
  if (cfg.latency_spectrum) {
    std::fprintf(out, "\n  Detailed Percentile spectrum:\n");
    h.print_spectrum(out, 1000.0);
  }
  std::fprintf(out, "----------------------------------------------------------\n");
  std::fprintf(out, "  %lld requests in %s, %s read\n", static_cast<long long>(st.completed),
               format_time_us(st.elapsed_s * 1e6).c_str(),
               format_bytes(static_cast<double>(st.bytes_read)).c_str());
  if (st.connect_errors || st.read_errors || st.write_errors || st.timeouts) {
    std::fprintf(out, "  Socket errors: connect %lld, read %lld, write %lld, timeout %lld\n",
                 static_cast<long long>(st.connect_errors), static_cast<long long>(st.read_errors),
                 static_cast<long long>(st.write_errors), static_cast<long long>(st.timeouts));
  }
  if (st.parse_errors) {
    std::fprintf(out, "  HTTP parse errors: %lld\n", static_cast<long long>(st.parse_errors));
  }
  if (st.errors_status()) {
    std::fprintf(out, "  Non-2xx or 3xx responses: %lld\n",
                 static_cast<long long>(st.errors_status()));
    for (size_t s = 400; s < st.status.size(); s++) {
      int64_t n = st.status[s] - (s == 404 ? st.not_found : 0);
      if (n > 0) std::fprintf(out, "    status %zu: %lld\n", s, static_cast<long long>(n));
    }
  }
  if (st.not_found) {
    std::fprintf(out, "  GET misses (404, not errors): %lld\n",
                 static_cast<long long>(st.not_found));
  }
  if (h.clamped()) {
    std::fprintf(out, "  Latencies above %s clamped: %lld\n",
                 format_time_us(static_cast<double>(h.highest_trackable())).c_str(),
                 static_cast<long long>(h.clamped()));
  }
  double secs = st.elapsed_s > 0 ? st.elapsed_s : 1;
  std::fprintf(out, "Requests/sec: %10.2f\n", static_cast<double>(st.completed) / secs);
  std::fprintf(out, "Transfer/sec: %10s\n",
               format_bytes(static_cast<double>(st.bytes_read) / secs).c_str());
}

bool write_json(const std::string& path, const CliConfig& cfg, const LoadStats& st) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  const LoadOptions& lo = cfg.load;
  const WorkloadConfig& wl = lo.workload;
  const Histogram& h = st.latency_us;
  double secs = st.elapsed_s > 0 ? st.elapsed_s : 1;
  std::fprintf(f, "{\n  \"url\": \"%s\",\n", cfg.url.c_str());
  std::fprintf(f,
               "  \"threads\": %d, \"connections\": %d, \"duration_s\": %.3f, "
               "\"target_rate\": %.3f,\n",
               lo.threads, lo.connections, lo.duration_s, lo.rate);
  std::fprintf(f,
               "  \"workload\": \"%s\", \"get_ratio\": %.4f, \"keys\": %llu, \"key_dist\": \"%s\", "
               "\"zipf_theta\": %.4f, \"value_size\": %zu, \"ack\": %d, \"from\": %d,\n",
               std::string(workload_name(wl.kind)).c_str(), wl.get_ratio,
               static_cast<unsigned long long>(wl.keys),
               wl.dist == KeyDist::kZipfian ? "zipfian" : "uniform", wl.zipf_theta, wl.value_size,
               wl.ack, wl.from);
  std::fprintf(f,
               "  \"requests\": %lld, \"elapsed_s\": %.6f, \"rps\": %.3f, \"bytes_read\": %lld,\n",
               static_cast<long long>(st.completed), st.elapsed_s,
               static_cast<double>(st.completed) / secs, static_cast<long long>(st.bytes_read));
  std::fprintf(f, "  \"sent\": {\"get\": %lld, \"put\": %lld, \"delete\": %lld},\n",
               static_cast<long long>(st.ops[0]), static_cast<long long>(st.ops[1]),
               static_cast<long long>(st.ops[2]));
  std::fprintf(f,
               "  \"latency_ms\": {\"mean\": %.3f, \"stdev\": %.3f, \"min\": %.3f, \"p50\": %.3f, "
               "\"p75\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p99.9\": %.3f, \"p99.99\": %.3f, "
               "\"p99.999\": %.3f, \"max\": %.3f},\n",
               h.mean() / 1000, h.stdev() / 1000, ms(h.min()), ms(h.value_at_percentile(50)),
               ms(h.value_at_percentile(75)), ms(h.value_at_percentile(90)),
               ms(h.value_at_percentile(99)), ms(h.value_at_percentile(99.9)),
               ms(h.value_at_percentile(99.99)), ms(h.value_at_percentile(99.999)), ms(h.max()));
  std::fprintf(f, "  \"not_found\": %lld, \"non_2xx_3xx\": %lld,\n",
               static_cast<long long>(st.not_found), static_cast<long long>(st.errors_status()));
  std::fprintf(f,
               "  \"errors\": {\"connect\": %lld, \"read\": %lld, \"write\": %lld, "
               "\"timeout\": %lld, \"parse\": %lld, \"total\": %lld, \"status\": {",
               static_cast<long long>(st.connect_errors), static_cast<long long>(st.read_errors),
               static_cast<long long>(st.write_errors), static_cast<long long>(st.timeouts),
               static_cast<long long>(st.parse_errors), static_cast<long long>(st.errors_total()));
  const char* sep = "";
  for (size_t s = 400; s < st.status.size(); s++) {
    int64_t n = st.status[s] - (s == 404 ? st.not_found : 0);
    if (n > 0) {
      std::fprintf(f, "%s\"%zu\": %lld", sep, s, static_cast<long long>(n));
      sep = ", ";
    }
  }
  std::fprintf(f, "}},\n  \"status\": {");
  sep = "";
  for (size_t s = 0; s < st.status.size(); s++) {
    if (st.status[s] > 0) {
      std::fprintf(f, "%s\"%zu\": %lld", sep, s, static_cast<long long>(st.status[s]));
      sep = ", ";
    }
  }
  std::fprintf(f, "},\n  \"spectrum\": [");
  sep = "\n    ";
  for (const Histogram::SpectrumRow& r : h.spectrum()) {
    std::fprintf(f, "%s{\"latency_ms\": %.3f, \"percentile\": %.6f, \"count\": %lld}", sep,
                 ms(r.value), r.percentile, static_cast<long long>(r.total_count));
    sep = ",\n    ";
  }
  std::fprintf(f, "\n  ]\n}\n");
  return std::fclose(f) == 0;
}

bool write_per_second(const std::string& path, const LoadStats& st) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  std::fprintf(f, "# start_unix %.3f\n# second requests p50_ms p99_ms max_ms\n", st.start_unix);
  for (size_t i = 0; i < st.seconds.size(); i++) {
    const Histogram& h = st.seconds[i];
    std::fprintf(f, "%zu %lld %.3f %.3f %.3f\n", i, static_cast<long long>(h.total_count()),
                 ms(h.value_at_percentile(50)), ms(h.value_at_percentile(99)), ms(h.max()));
  }
  return std::fclose(f) == 0;
}

}  // namespace kvload
