// `kvload --self-test`: unit tests of the histogram, the key generators, the request text and
// the command line, run inside the binary (the Makefile links every loadtest/src/*.cc into
// kvload). Prints one line per failed check and ends with "N passed, M failed".
#include "self_test.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "cli.h"
#include "histogram.h"
#include "workload.h"

namespace kvload {

namespace {

int g_pass = 0, g_fail = 0;

void check(bool ok, const char* what, int line) {
  if (ok) {
    g_pass++;
  } else {
    g_fail++;
    std::printf("FAIL self_test.cc:%d: %s\n", line, what);
  }
}
#define CHECK(cond) check((cond), #cond, __LINE__)

bool near(double a, double b, double rel) {
  return std::fabs(a - b) <= rel * std::fabs(b);
}

void test_histogram_geometry() {
  Histogram h(60'000'000, 3);
  CHECK(h.sub_bucket_count() == 2048);
  CHECK(h.bucket_count() == 16);  // 2048 << 15 > 60e6
  // Values below the sub-bucket count are exact.
  for (int64_t v = 0; v < 2048; v++) {
    if (h.lowest_equivalent(v) != v || h.highest_equivalent(v) != v) {
      CHECK(false && "exact below 2048");
      return;
    }
  }
  // Everywhere else the equivalence range is within 1/1000 of the value and contains it.
  Rng rng(7);
  bool ok = true;
  for (int i = 0; i < 200000 && ok; i++) {
    int64_t v = 1 + static_cast<int64_t>(rng.below(60'000'000));
    int64_t lo = h.lowest_equivalent(v), hi = h.highest_equivalent(v);
    ok = lo <= v && v <= hi &&
         static_cast<double>(hi - lo + 1) <= std::max(1.0, 0.001 * static_cast<double>(v));
    ok = ok && h.median_equivalent(v) >= lo && h.median_equivalent(v) <= hi;
  }
  CHECK(ok);
  // Ranges tile the value space: the next range starts right after this one ends.
  ok = true;
  for (int64_t v = 1; v < 60'000'000 && ok; v = h.highest_equivalent(v) + 1) {
    int64_t next = h.highest_equivalent(v) + 1;
    ok = h.lowest_equivalent(next) == next;
  }
  CHECK(ok);
  CHECK(h.values_equivalent(10'000'000, 10'000'001));
  CHECK(!h.values_equivalent(1000, 1001));
}

void test_histogram_uniform() {
  Histogram h;
  for (int64_t v = 1; v <= 10000; v++) h.record(v);
  CHECK(h.total_count() == 10000);
  CHECK(h.min() == 1);
  CHECK(h.max() == 10000);
  CHECK(near(h.mean(), 5000.5, 1e-9));
  CHECK(near(h.stdev(), 2886.751, 1e-4));
  CHECK(near(static_cast<double>(h.value_at_percentile(50)), 5000, 0.002));
  CHECK(near(static_cast<double>(h.value_at_percentile(90)), 9000, 0.002));
  CHECK(near(static_cast<double>(h.value_at_percentile(99)), 9900, 0.002));
  CHECK(near(static_cast<double>(h.value_at_percentile(99.9)), 9990, 0.002));
  CHECK(h.value_at_percentile(100) == 10000);
  CHECK(h.value_at_percentile(0) >= 1 && h.value_at_percentile(0) <= 1);
  CHECK(near(h.within_stdev_pct(), 57.7, 0.01));  // uniform: 1/sqrt(3) within one stdev
}

// The coordinated-omission example of HdrHistogram's documentation: 10000 fast results and one
// long stall. Recorded naively the stall is one sample; percentiles must show exactly that.
void test_histogram_outlier() {
  Histogram h;
  h.record_n(1000, 10000);
  h.record(50'000'000);
  CHECK(h.total_count() == 10001);
  CHECK(h.values_equivalent(h.value_at_percentile(99.99), 1000));
  CHECK(h.values_equivalent(h.value_at_percentile(99.999), 50'000'000));
  CHECK(h.max() == 50'000'000);
  // Clamping above the trackable range.
  Histogram c;
  c.record(1'000'000'000);
  CHECK(c.clamped() == 1);
  CHECK(c.max() == 60'000'000);
  c.record(-5);
  CHECK(c.min() == 0);
}

void test_histogram_merge_and_reset() {
  Histogram a, b, all;
  Rng rng(11);
  for (int i = 0; i < 50000; i++) {
    int64_t v = 1 + static_cast<int64_t>(rng.below(5'000'000));
    (i % 2 ? a : b).record(v);
    all.record(v);
  }
  CHECK(a.merge(b));
  CHECK(a.total_count() == all.total_count());
  CHECK(a.max() == all.max() && a.min() == all.min());
  bool same = true;
  for (double p : {1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    same = same && a.value_at_percentile(p) == all.value_at_percentile(p);
  }
  CHECK(same);
  CHECK(near(a.mean(), all.mean(), 1e-9));
  Histogram other(1000, 2);
  CHECK(!a.merge(other));  // different geometry is refused
  a.reset();
  CHECK(a.total_count() == 0 && a.max() == 0 && a.value_at_percentile(99) == 0);
}

void test_histogram_spectrum() {
  Histogram h;
  Rng rng(3);
  for (int i = 0; i < 100000; i++) h.record(100 + static_cast<int64_t>(rng.below(100000)));
  auto rows = h.spectrum(5);
  CHECK(rows.size() > 50);
  CHECK(!rows.empty() && rows.front().percentile == 0.0);
  CHECK(!rows.empty() && rows.back().percentile == 100.0 &&
        rows.back().total_count == h.total_count() && rows.back().value == h.max());
  bool mono = true;
  for (size_t i = 1; i < rows.size(); i++) {
    mono = mono && rows[i].percentile > rows[i - 1].percentile &&
           rows[i].value >= rows[i - 1].value && rows[i].total_count >= rows[i - 1].total_count;
  }
  CHECK(mono);
  // Steps: 10 rows per halving of the remaining distance: 0, 10, 20, ..., 50, 55, 60, ...
  CHECK(rows.size() > 6 && near(rows[1].percentile, 10.0, 1e-9) &&
        near(rows[5].percentile, 50.0, 1e-9) && near(rows[6].percentile, 55.0, 1e-9));
  // Each row's value is where that percentile is reached.
  bool consistent = true;
  for (const auto& r : rows) {
    if (r.percentile > 0 && r.percentile < 100) {
      consistent = consistent && r.value == h.value_at_percentile(r.percentile);
    }
  }
  CHECK(consistent);
  Histogram empty;
  CHECK(empty.spectrum().empty());
  Histogram one;
  one.record(42);
  auto r1 = one.spectrum();
  CHECK(r1.size() == 2 && r1[0].value == 42 && r1[1].percentile == 100.0);
}

void test_zipfian() {
  Zipfian z(1000, 0.99);
  Rng rng(5);
  std::map<uint64_t, int> freq;
  const int kDraws = 300000;
  bool in_range = true;
  for (int i = 0; i < kDraws; i++) {
    uint64_t r = z.rank(rng);
    in_range = in_range && r < 1000;
    freq[r]++;
  }
  CHECK(in_range);
  double p0 = static_cast<double>(freq[0]) / kDraws;
  CHECK(near(p0, z.probability(0), 0.05));
  double p1 = static_cast<double>(freq[1]) / kDraws;
  CHECK(near(p1, z.probability(1), 0.05));
  CHECK(freq[0] > freq[9] && freq[9] > freq[500]);
  // The head (top 10 ranks) carries roughly what the exact law says.
  double head = 0, head_exact = 0;
  for (uint64_t r = 0; r < 10; r++) {
    head += static_cast<double>(freq[r]) / kDraws;
    head_exact += z.probability(r);
  }
  CHECK(near(head, head_exact, 0.05));
  bool scr = true;
  for (uint64_t r = 0; r < 1000; r++) scr = scr && scramble_rank(r, 777) < 777;
  CHECK(scr);
  CHECK(scramble_rank(0, 1000) != scramble_rank(1, 1000));
}

void test_workload() {
  WorkloadConfig cfg;
  cfg.kind = WorkloadKind::kPut;
  cfg.value_size = 37;
  cfg.ack = 2;
  cfg.from = 3;
  cfg.keys = 10;
  cfg.host_header = "127.0.0.1:9";
  Workload w(cfg, nullptr, 1);
  std::string req;
  CHECK(w.next_request(req) == Op::kPut);
  CHECK(req.rfind("PUT /v0/entity?id=k", 0) == 0);
  CHECK(req.find("&ack=2&from=3 HTTP/1.1\r\n") != std::string::npos);
  CHECK(req.find("\r\nHost: 127.0.0.1:9\r\n") != std::string::npos);
  CHECK(req.find("\r\nContent-Length: 37\r\n\r\n") != std::string::npos);
  size_t body = req.find("\r\n\r\n");
  CHECK(body != std::string::npos && req.size() - body - 4 == 37);

  WorkloadConfig mc;
  mc.kind = WorkloadKind::kMixed;
  mc.get_ratio = 0.8;
  Workload m(mc, nullptr, 2);
  int gets = 0;
  bool well_formed = true;
  for (int i = 0; i < 10000; i++) {
    Op op = m.next_request(req);
    gets += op == Op::kGet;
    well_formed = well_formed && req.find("&ack") == std::string::npos &&
                  (op == Op::kGet ? req.size() - req.find("\r\n\r\n") == 4 : true);
  }
  CHECK(gets > 7700 && gets < 8300);
  CHECK(well_formed);

  WorkloadConfig dc;
  dc.kind = WorkloadKind::kDelete;
  dc.keys = 5;
  Workload d(dc, nullptr, 3);
  bool keys_ok = true;
  for (int i = 0; i < 1000; i++) {
    d.next_request(req);
    keys_ok = keys_ok && req.rfind("DELETE /v0/entity?id=k", 0) == 0 && req[22] >= '0' &&
              req[22] <= '4' && req[23] == ' ';
  }
  CHECK(keys_ok);
}

void test_cli() {
  double s = 0;
  CHECK(parse_duration("6s", &s) && s == 6);
  CHECK(parse_duration("2m", &s) && s == 120);
  CHECK(parse_duration("500ms", &s) && near(s, 0.5, 1e-12));
  CHECK(parse_duration("7", &s) && s == 7);
  CHECK(!parse_duration("x", &s) && !parse_duration("-1s", &s) && !parse_duration("", &s));
  sockaddr_in a;
  std::string host, path;
  CHECK(parse_url("http://127.0.0.1:8080", &a, &host, &path) && host == "127.0.0.1:8080" &&
        path == "/v0/entity" && ntohs(a.sin_port) == 8080);
  CHECK(parse_url("http://localhost:81/other", &a, &host, &path) && path == "/other");
  CHECK(!parse_url("https://127.0.0.1:1", &a, &host, &path));
  CHECK(!parse_url("http://127.0.0.1:99999", &a, &host, &path));

  const char* argv[] = {"kvload",
                        "-t2",
                        "-c",
                        "8",
                        "-d",
                        "3s",
                        "-R",
                        "1k",
                        "--workload",
                        "mixed",
                        "--mix-get-ratio",
                        "0.5",
                        "--ack",
                        "2",
                        "--from",
                        "3",
                        "--key-dist",
                        "zipfian",
                        "-L",
                        "http://127.0.0.1:1234"};
  CliConfig cfg;
  std::string err;
  bool ok = parse_cli(static_cast<int>(sizeof(argv) / sizeof(argv[0])), const_cast<char**>(argv),
                      &cfg, &err);
  CHECK(ok);
  CHECK(cfg.load.threads == 2 && cfg.load.connections == 8 && cfg.load.duration_s == 3 &&
        cfg.load.rate == 1000 && cfg.latency_spectrum);
  CHECK(cfg.load.workload.kind == WorkloadKind::kMixed && cfg.load.workload.get_ratio == 0.5 &&
        cfg.load.workload.ack == 2 && cfg.load.workload.from == 3 &&
        cfg.load.workload.dist == KeyDist::kZipfian);
  const char* bad[] = {"kvload", "--ack", "3", "--from", "2", "http://127.0.0.1:1"};
  CliConfig cfg2;
  CHECK(!parse_cli(6, const_cast<char**>(bad), &cfg2, &err));
  // The URL may stand anywhere (or after --); --name=value and grouped switches work as well.
  const char* mixed[] = {"kvload", "http://127.0.0.1:1/p", "--threads=3", "-Lc4", "--", "x"};
  CliConfig cfg3;
  CHECK(!parse_cli(6, const_cast<char**>(mixed), &cfg3, &err) && err == "expected exactly one URL");
  CliConfig cfg4;
  CHECK(parse_cli(5, const_cast<char**>(mixed), &cfg4, &err) && cfg4.load.threads == 3 &&
        cfg4.load.connections == 4 && cfg4.latency_spectrum && cfg4.load.workload.path == "/p");
  const char* errs[][3] = {
      {"kvload", "-t", "0"}, {"kvload", "--bogus", "x"}, {"kvload", "-h", "?"}};
  CliConfig cfg5;
  CHECK(!parse_cli(3, const_cast<char**>(errs[0]), &cfg5, &err) && err == "invalid threads: 0");
  CHECK(!parse_cli(3, const_cast<char**>(errs[1]), &cfg5, &err) &&
        err == "unknown or incomplete option: --bogus");
  CHECK(parse_cli(3, const_cast<char**>(errs[2]), &cfg5, &err) && cfg5.help);
  const char* ps[] = {"kvload", "--per-second", "/tmp/x", "http://127.0.0.1:1"};
  CliConfig cfg6;
  CHECK(!cfg6.load.per_second);
  CHECK(parse_cli(4, const_cast<char**>(ps), &cfg6, &err) && cfg6.per_second_path == "/tmp/x" &&
        cfg6.load.per_second);
}

// Per-second histograms of threads that saw different numbers of seconds merge second by second.
void test_per_second_merge() {
  LoadStats a, b;
  a.seconds.assign(1, Histogram(kPerSecondMax, 2));
  a.seconds[0].record(100);
  b.seconds.assign(3, Histogram(kPerSecondMax, 2));
  b.seconds[0].record(300);
  b.seconds[2].record(5000);
  b.start_unix = 12.5;
  a.merge(b);
  CHECK(a.seconds.size() == 3 && a.seconds[0].total_count() == 2 &&
        a.seconds[1].total_count() == 0 && a.seconds[2].total_count() == 1);
  CHECK(a.seconds[0].max() >= 300 && a.seconds[2].values_equivalent(a.seconds[2].max(), 5000));
  CHECK(a.start_unix == 12.5);
}

}  // namespace

int run_self_test() {
  test_histogram_geometry();
  test_histogram_uniform();
  test_histogram_outlier();
  test_histogram_merge_and_reset();
  test_histogram_spectrum();
  test_zipfian();
  test_workload();
  test_cli();
  test_per_second_merge();
  std::printf("kvload self-test: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}

}  // namespace kvload
