// Storage benchmark (figures, not a test): the same in-process workload on this engine and on
// LevelDB. 16-byte keys, 100-byte values; random put, random get of present and absent keys
// after flush, full scan. Prints ops/s, p50/p99 latency per op, the ratio to LevelDB, write
// amplification and index+filter RAM per key. For the p50 get at each size it also prints the
// machine's floor: the p50 of one and of two dependent random reads from a file-backed mapping as
// large as the store's segments, timed the same way.
// Usage: bench_storage [keys...]   (default: 100000 1000000 10000000). Environment: BENCH_DIR
// scratch directory (default /tmp); BENCH_FSYNC=periodic|never|always for this engine;
// BENCH_SKIP_LEVELDB=1 runs this engine alone (for profiling).
#include <fcntl.h>
#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/filter_policy.h>
#include <leveldb/write_batch.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/version.h"
#include "storage/engine.h"

namespace {

using Clock = std::chrono::steady_clock;
using kv::storage::Engine;

uint64_t Mix(uint64_t x) {  // bijective: distinct inputs give distinct keys
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
void MakeKey(uint64_t i, char* out) {
  static const char* hex = "0123456789abcdef";
  uint64_t v = Mix(i);
  for (int b = 15; b >= 0; b--, v >>= 4) out[b] = hex[v & 15];
}

uint64_t WcharBytes() {  // bytes this process handed to write(2) and friends
  std::ifstream f("/proc/self/io");
  std::string k;
  uint64_t v;
  while (f >> k >> v) {
    if (k == "wchar:") return v;
  }
  return 0;
}

struct Result {
  double ops_per_s = 0;
  double p50_us = 0, p99_us = 0;
  uint64_t faults = 0;  // page faults (minor + major) taken during the run
};

uint64_t PageFaults() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_minflt + ru.ru_majflt);
}

// Runs op(i) for i in [0, n) timing each call.
Result Measure(uint64_t n, const std::function<void(uint64_t)>& op) {
  std::vector<uint32_t> lat(n);
  uint64_t faults0 = PageFaults();
  auto start = Clock::now();
  for (uint64_t i = 0; i < n; i++) {
    auto t0 = Clock::now();
    op(i);
    lat[i] = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  Result r;
  r.faults = PageFaults() - faults0;
  r.ops_per_s = n / secs;
  std::nth_element(lat.begin(), lat.begin() + n / 2, lat.end());
  r.p50_us = lat[n / 2] / 1000.0;
  std::nth_element(lat.begin(), lat.begin() + n * 99 / 100, lat.end());
  r.p99_us = lat[n * 99 / 100] / 1000.0;
  return r;
}

// The least a point read of a present key can cost at a given data size on this machine: random
// 8-byte loads from a file of `bytes` random bytes, read through a read-only shared mapping of
// the page cache as segments are (4 KiB pages, populated up front), each read timed like the gets.
// "one": a load at a random line of a random 4 KiB page, what any design must do to return a
// value. "two": a load from the end of a random page, then one at a random line of the same page
// whose address depends on the first load's value: the two dependent trips of a sparse-index
// lookup (block trailer, then entry), both in one page (a segment's blocks are not page-aligned,
// so a real lookup can cost more).
struct Floor {
  double one_p50_us = 0, two_p50_us = 0;
};

Floor MemoryFloor(const std::string& path, uint64_t bytes) {
  constexpr uint64_t kPage = 4096, kChunk = 1 << 20;
  bytes = std::max<uint64_t>(bytes / kChunk, 1) * kChunk;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return {};
  std::vector<char> chunk(kChunk);
  bool ok = true;
  for (uint64_t off = 0; ok && off < bytes; off += kChunk) {
    for (uint64_t i = 0; i < kChunk; i += 8) {
      uint64_t v = Mix(off + i);
      memcpy(chunk.data() + i, &v, 8);
    }
    ok = ::write(fd, chunk.data(), kChunk) == static_cast<ssize_t>(kChunk);
  }
  void* m = ok ? ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0) : MAP_FAILED;
  ::close(fd);
  ::unlink(path.c_str());
  if (m == MAP_FAILED) return {};
  const char* base = static_cast<const char*>(m);
  const uint64_t pages = bytes / kPage, reads = 1000000;
  uint64_t rnd = 777, sink = 0;
  Floor f;
  f.one_p50_us = Measure(reads, [&](uint64_t) {
                   rnd = Mix(rnd);
                   uint64_t v;
                   memcpy(&v, base + (rnd % pages) * kPage + ((rnd >> 58) * 64), 8);
                   sink += v;
                 }).p50_us;
  f.two_p50_us = Measure(reads, [&](uint64_t) {
                   rnd = Mix(rnd);
                   const char* page = base + (rnd % pages) * kPage;
                   uint64_t w, v;
                   memcpy(&w, page + kPage - 64, 8);
                   memcpy(&v, page + (((rnd >> 58) ^ (w & 1)) % 63) * 64, 8);
                   sink += v;
                 }).p50_us;
  ::munmap(m, bytes);
  if (sink == 42) printf(" ");  // keeps the loads
  return f;
}

struct Workload {
  std::function<void(const char* key, const char* value)> put;
  std::function<bool(const char* key)> get;  // true when found
  std::function<void()> settle;              // flush + compaction, not timed
  std::function<uint64_t()> scan;            // returns entries seen
};

struct EngineResults {
  Result put, get_present, get_absent, scan;
  double write_amp = 0;
};

EngineResults RunWorkload(uint64_t n, Workload& w, const std::string& value_pool) {
  EngineResults out;
  uint64_t reads = std::min<uint64_t>(n, 1000000);
  char key[16];
  uint64_t w0 = WcharBytes();
  out.put = Measure(n, [&](uint64_t i) {
    MakeKey(i, key);
    w.put(key, value_pool.data() + (i * 7919) % (value_pool.size() - 100));
  });
  w.settle();
  out.write_amp = static_cast<double>(WcharBytes() - w0) / (n * 116.0);
  uint64_t rnd = 12345, misses = 0;
  out.get_present = Measure(reads, [&](uint64_t) {
    rnd = Mix(rnd);
    MakeKey(rnd % n, key);
    misses += !w.get(key);
  });
  out.get_absent = Measure(reads, [&](uint64_t) {
    rnd = Mix(rnd);
    MakeKey(n + rnd % (n * 4), key);
    misses += w.get(key);
  });
  if (misses != 0) fprintf(stderr, "BUG: %llu wrong lookups\n", (unsigned long long)misses);
  auto t0 = Clock::now();
  uint64_t seen = w.scan();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (seen != n)
    fprintf(stderr, "BUG: scan saw %llu of %llu\n", (unsigned long long)seen,
            (unsigned long long)n);
  out.scan.ops_per_s = seen / secs;
  return out;
}

void Print(const char* what, const Result& ours, const Result& theirs, bool latency) {
  if (latency) {
    printf(
        "  %-14s kv %10.0f ops/s p50 %6.2f us p99 %7.2f us | leveldb %10.0f ops/s p50 %6.2f us "
        "p99 %7.2f us | ratio %.2fx\n",
        what, ours.ops_per_s, ours.p50_us, ours.p99_us, theirs.ops_per_s, theirs.p50_us,
        theirs.p99_us, ours.ops_per_s / theirs.ops_per_s);
  } else {
    printf("  %-14s kv %10.0f keys/s %31s | leveldb %10.0f keys/s %31s | ratio %.2fx\n", what,
           ours.ops_per_s, "", theirs.ops_per_s, "", ours.ops_per_s / theirs.ops_per_s);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<uint64_t> sizes;
  for (int i = 1; i < argc; i++) sizes.push_back(strtoull(argv[i], nullptr, 10));
  if (sizes.empty()) sizes = {100000, 1000000, 10000000};
  const char* env_dir = getenv("BENCH_DIR");
  std::string base =
      std::string(env_dir ? env_dir : "/tmp") + "/bench_storage." + std::to_string(getpid());
  std::string value_pool(1 << 20, '\0');
  for (size_t i = 0; i < value_pool.size(); i++) value_pool[i] = static_cast<char>(Mix(i) & 0xff);
  printf(
      "storage benchmark: 16-byte keys, 100-byte values; kv = this engine (fsync periodic, "
      "64 MiB memtable), leveldb = %d.%d (sync=false, 64 MiB write buffer, 10-bit bloom)\n"
      "gets run after the store is flushed and fully compacted (kv: Flush+CompactAll, "
      "leveldb: CompactRange)\n",
      leveldb::kMajorVersion, leveldb::kMinorVersion);
  double p50_first = 0;
  for (uint64_t n : sizes) {
    std::filesystem::remove_all(base);
    std::filesystem::create_directories(base);
    printf("\n== %llu keys ==\n", (unsigned long long)n);
    fflush(stdout);

    // This engine.
    kv::storage::Options opts;
    opts.dir = base + "/kv";
    if (const char* f = getenv("BENCH_FSYNC")) {  // periodic (default) | never | always
      std::string_view v(f);
      opts.fsync = v == "never"    ? kv::storage::FsyncPolicy::kNever
                   : v == "always" ? kv::storage::FsyncPolicy::kAlways
                                   : kv::storage::FsyncPolicy::kPeriodic;
    }
    std::unique_ptr<Engine> db;
    kv::storage::Status s = Engine::Open(opts, &db);
    if (!s.ok()) {
      fprintf(stderr, "open: %s\n", s.message().c_str());
      return 1;
    }
    uint64_t version = kv::version::Make(static_cast<uint64_t>(time(nullptr)) * 1000000, 0);
    kv::storage::ReadResult rr;
    Workload kvw;
    kvw.put = [&](const char* k, const char* v) {
      kv::storage::Status st =
          db->Put(std::string_view(k, 16), std::string_view(v, 100), ++version);
      if (!st.ok()) fprintf(stderr, "put: %s\n", st.message().c_str());
    };
    kvw.get = [&](const char* k) {
      db->Get(std::string_view(k, 16), &rr);
      return rr.kind == kv::storage::ReadResult::kValue;
    };
    kvw.settle = [&] {
      db->Flush();
      db->CompactAll();
    };
    kvw.scan = [&] {
      uint64_t c = 0;
      for (auto it = db->Scan("", std::nullopt); it->Valid(); it->Next()) c++;
      return c;
    };
    EngineResults ours = RunWorkload(n, kvw, value_pool);
    kv::storage::Stats st = db->GetStats();
    db.reset();
    std::filesystem::remove_all(opts.dir);

    if (getenv("BENCH_SKIP_LEVELDB") != nullptr) {  // for profiling this engine alone
      printf(
          "  kv: put %.0f/s p50 %.2f us, get %.0f/s p50 %.2f us p99 %.2f us (%llu faults), "
          "absent %.0f/s, scan %.0f/s\n",
          ours.put.ops_per_s, ours.put.p50_us, ours.get_present.ops_per_s, ours.get_present.p50_us,
          ours.get_present.p99_us, (unsigned long long)ours.get_present.faults,
          ours.get_absent.ops_per_s, ours.scan.ops_per_s);
      std::filesystem::remove_all(base);
      continue;
    }
    // LevelDB.
    leveldb::Options lo;
    lo.create_if_missing = true;
    lo.write_buffer_size = 64 << 20;
    const leveldb::FilterPolicy* bloom = leveldb::NewBloomFilterPolicy(10);
    lo.filter_policy = bloom;
    leveldb::DB* ldb = nullptr;
    leveldb::Status ls = leveldb::DB::Open(lo, base + "/leveldb", &ldb);
    if (!ls.ok()) {
      fprintf(stderr, "leveldb open: %s\n", ls.ToString().c_str());
      return 1;
    }
    std::string lv;
    Workload lw;
    lw.put = [&](const char* k, const char* v) {
      ldb->Put(leveldb::WriteOptions(), leveldb::Slice(k, 16), leveldb::Slice(v, 100));
    };
    lw.get = [&](const char* k) {
      return ldb->Get(leveldb::ReadOptions(), leveldb::Slice(k, 16), &lv).ok();
    };
    lw.settle = [&] { ldb->CompactRange(nullptr, nullptr); };
    lw.scan = [&] {
      uint64_t c = 0;
      std::unique_ptr<leveldb::Iterator> it(ldb->NewIterator(leveldb::ReadOptions()));
      for (it->SeekToFirst(); it->Valid(); it->Next()) c++;
      return c;
    };
    EngineResults theirs = RunWorkload(n, lw, value_pool);
    delete ldb;
    delete bloom;
    std::filesystem::remove_all(base);

    Print("random put", ours.put, theirs.put, true);
    Print("get present", ours.get_present, theirs.get_present, true);
    Print("get absent", ours.get_absent, theirs.get_absent, true);
    Print("full scan", ours.scan, theirs.scan, false);
    printf(
        "  write amplification (write(2) bytes / user bytes, incl. final full compaction): "
        "kv %.2f, leveldb %.2f\n",
        ours.write_amp, theirs.write_amp);
    printf("  kv: %llu segments, %llu flushes, %llu compactions; index+filter RAM %.2f bytes/key\n",
           (unsigned long long)st.segments, (unsigned long long)st.flushes,
           (unsigned long long)st.compactions,
           static_cast<double>(st.index_filter_bytes) / static_cast<double>(n));
    if (p50_first == 0) p50_first = ours.get_present.p50_us;
    if (n != sizes[0]) {
      printf("  kv p50 get here / p50 get at %llu keys: %.2fx\n", (unsigned long long)sizes[0],
             ours.get_present.p50_us / p50_first);
    }
    Floor fl = MemoryFloor(base + ".floor", st.segment_bytes);
    if (fl.one_p50_us == 0) {
      printf("  floor: not measured (could not write or map a scratch file in %s)\n", base.c_str());
    } else {
      printf(
          "  floor, random reads from a %.2f GB file mapping (the segments' size): one read p50 "
          "%.2f us, two dependent reads p50 %.2f us; kv p50 get here = %.2fx the two-read "
          "floor; the two-read floor = %.2fx kv p50 get at %llu keys\n",
          st.segment_bytes / 1e9, fl.one_p50_us, fl.two_p50_us,
          ours.get_present.p50_us / fl.two_p50_us, fl.two_p50_us / p50_first,
          (unsigned long long)sizes[0]);
    }
    fflush(stdout);
  }
  return 0;
}
