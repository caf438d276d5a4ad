// Crash tests: a child process (this test binary re-executed as --child=storage-crash-writer,
// see unit/test_child.h) writes to a store and reports every acknowledged write through a pipe;
// the parent SIGKILLs it after a random number of acknowledgements (flushes and compactions run
// constantly with a tiny memtable, so kills land inside them too), reopens the store and checks
// every acknowledged write is there with its latest value.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>

#include "storage/engine.h"
#include "storage/file_io.h"
#include "storage_test_util.h"
#include "unit/test_child.h"

using namespace kv::storage;
using namespace kv::storage::testutil;

namespace {

constexpr uint32_t kCrashKeys = 400;

struct Ack {
  uint32_t key;
  uint32_t remove;
  uint64_t version;
};

std::string CrashKey(uint32_t id) {
  return "key" + std::to_string(id);
}
std::string CrashValue(uint32_t id, uint64_t version) {
  return std::to_string(id) + ":" + std::to_string(version) + std::string(version % 150, 'x');
}
uint32_t KeyFor(uint64_t version) {
  return static_cast<uint32_t>((version * 2654435761u) >> 7) % kCrashKeys;
}
bool IsRemove(uint64_t version) {
  return version % 5 == 0;
}

constexpr uint32_t kSegmentMarker = 0xffffffffu;  // Ack.key of "a segment write started"

// In the child: once armed, the first write(2) to a segment file (flush or compaction output)
// first tells the parent, which then kills the child in the middle of that flush/compaction.
std::atomic<int> g_marker_fd{-1};
std::atomic<uint64_t> g_acks_until_armed{UINT64_MAX};

ssize_t MarkSegmentWrites(int fd, const void* buf, size_t n) {
  if (g_acks_until_armed.load() == 0) {
    char link[64], target[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof(target) - 1);
    if (len > 0) {
      target[len] = '\0';
      if (strstr(target, ".seg") != nullptr && g_acks_until_armed.exchange(UINT64_MAX) == 0) {
        Ack m{kSegmentMarker, 0, 0};
        if (write(g_marker_fd.load(), &m, sizeof(m)) != static_cast<ssize_t>(sizeof(m))) _exit(6);
      }
    }
  }
  return ::write(fd, buf, n);
}

// The child process: writes until killed, reporting each acknowledged write on the pipe fd
// KV_CRASH_FD. Exits (with 3..6) only on an error, which the parent reports as "not killed".
int CrashWriter() {
  const char* dir = getenv("KV_CRASH_DIR");
  if (dir == nullptr) return 2;
  int fd = atoi(getenv("KV_CRASH_FD"));
  uint64_t version = strtoull(getenv("KV_CRASH_VERSION"), nullptr, 10);
  Options o;
  o.dir = dir;
  o.memtable_bytes = 24 << 10;
  o.block_bytes = 256;
  o.fsync = atoi(getenv("KV_CRASH_FSYNC")) == 1 ? FsyncPolicy::kAlways : FsyncPolicy::kPeriodic;
  o.background = true;
  uint64_t arm_after = strtoull(getenv("KV_CRASH_ARM_AFTER"), nullptr, 10);
  g_marker_fd.store(fd);
  g_write_hook.store(&MarkSegmentWrites);
  std::unique_ptr<Engine> db;
  if (!Engine::Open(o, &db).ok()) _exit(3);
  for (;; version++) {
    uint32_t id = KeyFor(version);
    Status s = IsRemove(version) ? db->Remove(CrashKey(id), version)
                                 : db->Put(CrashKey(id), CrashValue(id, version), version);
    if (!s.ok()) _exit(4);
    Ack a{id, IsRemove(version) ? 1u : 0u, version};
    if (write(fd, &a, sizeof(a)) != static_cast<ssize_t>(sizeof(a))) _exit(5);
    if (arm_after > 0 && --arm_after == 0) g_acks_until_armed.store(0);
  }
}

constexpr char kCrashWriter[] = "storage-crash-writer";
KV_TEST_CHILD(kCrashWriter, &CrashWriter);

}  // namespace

TEST_CASE("storage crash: SIGKILL at random moments loses no acknowledged write") {
  TempDir tmp;
  std::string dir = tmp.store();
  std::map<uint32_t, Ack> acked;  // latest acknowledged write per key, across rounds
  Rng rng(77);
  uint64_t next_version = HlcVersion(NowMillis());
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  const int rounds = 6;
#else
  const int rounds = 10;
#endif
  int rounds_with_segments = 0, killed_in_segment_write = 0;
  const std::string child_arg = std::string(kv::test::kChildFlag) + kCrashWriter;
  for (int round = 0; round < rounds; round++) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    uint64_t start = next_version;
    uint64_t arm_after = 20 + rng.Uniform(400);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      setenv("KV_CRASH_DIR", dir.c_str(), 1);
      setenv("KV_CRASH_FD", std::to_string(fds[1]).c_str(), 1);
      setenv("KV_CRASH_VERSION", std::to_string(start).c_str(), 1);
      setenv("KV_CRASH_FSYNC", round % 3 == 2 ? "1" : "0", 1);
      // Odd rounds: kill right as a flush or compaction starts writing a segment.
      setenv("KV_CRASH_ARM_AFTER", round % 2 == 1 ? std::to_string(arm_after).c_str() : "0", 1);
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      execl("/proc/self/exe", "unit_storage", child_arg.c_str(), nullptr);
      _exit(127);
    }
    close(fds[1]);
    // fsync=always rounds are slow (one fdatasync per write): kill those sooner.
    uint64_t kill_after = round % 2 == 1   ? UINT64_MAX
                          : round % 3 == 2 ? 20 + rng.Uniform(200)
                                           : 50 + rng.Uniform(round % 4 == 0 ? 800 : 6000);
    uint64_t got = 0, max_acked = start - 1;
    bool killed = false;
    Ack a;
    for (;;) {
      ssize_t n = read(fds[0], &a, sizeof(a));
      if (n == 0) break;                              // child gone and pipe drained
      REQUIRE(n == static_cast<ssize_t>(sizeof(a)));  // 16-byte pipe writes are atomic
      if (a.key == kSegmentMarker) {
        if (!killed) kill(pid, SIGKILL);
        killed = true;
        killed_in_segment_write++;
        continue;
      }
      acked[a.key] = a;
      max_acked = a.version;
      if (++got == kill_after && !killed) {
        kill(pid, SIGKILL);
        killed = true;
      }
    }
    close(fds[0]);
    int wstatus = 0;
    REQUIRE(waitpid(pid, &wstatus, 0) == pid);
    REQUIRE(killed);
    REQUIRE(WIFSIGNALED(wstatus));
    CHECK(WTERMSIG(wstatus) == SIGKILL);
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.path().extension() == ".seg") {
        rounds_with_segments++;
        break;
      }
    }
    // At most one write was in flight: the one after the last acknowledged.
    uint64_t in_flight = max_acked + 1;
    CAPTURE(round);
    CAPTURE(start);
    CAPTURE(max_acked);
    CAPTURE(got);
    Options o = SmallOptions(dir, false);
    std::unique_ptr<Engine> db;
    REQUIRE(Engine::Open(o, &db).ok());
    for (uint32_t id = 0; id < kCrashKeys; id++) {
      ReadResult r;
      REQUIRE(db->Get(CrashKey(id), &r).ok());
      auto it = acked.find(id);
      if (r.kind != ReadResult::kAbsent && r.version == in_flight && KeyFor(in_flight) == id) {
        // The unacknowledged last write made it: allowed, and from now on it is the latest.
        acked[id] = Ack{id, IsRemove(in_flight) ? 1u : 0u, in_flight};
        continue;
      }
      if (it == acked.end()) {
        CHECK(r.kind == ReadResult::kAbsent);
        continue;
      }
      CHECK(r.version == it->second.version);
      if (it->second.remove) {
        CHECK(r.kind == ReadResult::kTombstone);
      } else {
        CHECK(r.kind == ReadResult::kValue);
        CHECK(r.value == CrashValue(id, it->second.version));
      }
    }
    next_version = in_flight + 1000;
  }
  MESSAGE(rounds << " kill rounds, " << killed_in_segment_write
                 << " of them as a segment write started, " << acked.size()
                 << " keys acknowledged, segments present in " << rounds_with_segments
                 << " rounds");
  CHECK(rounds_with_segments > 0);
  CHECK(killed_in_segment_write == rounds / 2);
}
