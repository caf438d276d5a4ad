// BackgroundWork with fake jobs: what a kick runs and in which order, a flush that wrote segments
// asks for a compaction, a failed flush is retried, Stop() ends every thread. No engine, no disk.
#include "storage/background.h"

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

using namespace kv::storage;

namespace {

class FakeJobs : public BackgroundJobs {
 public:
  void PrepareSpares() override { Note("spares"); }
  Status FlushFrozen(bool* any) override {
    std::unique_lock<std::mutex> l(mu_);
    Status s = flush_failures_ > 0 ? Status(Code::kNoSpace, "full") : Status::Ok();
    if (flush_failures_ > 0) flush_failures_--;
    *any = s.ok() && frozen_ > 0;
    if (*any) frozen_ = 0;
    calls_.push_back("flush");
    cv_.notify_all();
    return s;
  }
  void FlushFinished(const Status& s) override { Note(s.ok() ? "flushed" : "flush failed"); }
  Status CompactAsNeeded() override {
    Note("compact");
    return Status::Ok();
  }
  bool CompactionBehind() override { return false; }
  uint64_t CompactionsDone() override { return 0; }
  void IndexMemTables() override { Note("index"); }
  Status SyncLog() override {
    Note("sync");
    return Status::Ok();
  }

  void SetFrozen(int n, int failures) {
    std::lock_guard<std::mutex> l(mu_);
    frozen_ = n;
    flush_failures_ = failures;
  }
  // Waits until `n` calls named `what` were made; returns every call so far.
  std::vector<std::string> WaitFor(const std::string& what, size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return Count(what) >= n; });
    return calls_;
  }
  std::vector<std::string> Calls() {
    std::lock_guard<std::mutex> l(mu_);
    return calls_;
  }

 private:
  void Note(const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    calls_.push_back(what);
    cv_.notify_all();
  }
  size_t Count(const std::string& what) const {
    size_t n = 0;
    for (const auto& c : calls_) n += c == what;
    return n;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> calls_;
  int frozen_ = 0;
  int flush_failures_ = 0;
};

Options BackgroundOptions(FsyncPolicy fsync) {
  Options o;
  o.dir = "unused";
  o.fsync = fsync;
  o.background = true;
  o.background_idle = false;
  o.flush_nice = 0;
  return o;
}

std::vector<std::string> Without(std::vector<std::string> calls, const std::string& what) {
  std::erase(calls, what);
  return calls;
}

}  // namespace

TEST_CASE("background: a flush kick prepares spares, flushes, reports, then asks for a merge") {
  FakeJobs jobs;
  BackgroundWork bg(BackgroundOptions(FsyncPolicy::kNever), &jobs);
  bg.Start();  // asks for one flush and one compaction
  jobs.WaitFor("flushed", 1);
  jobs.WaitFor("compact", 1);
  jobs.SetFrozen(1, 0);
  bg.Kick(true, false);
  jobs.WaitFor("flushed", 2);
  std::vector<std::string> calls = jobs.WaitFor("compact", 2);  // the flush wrote a segment
  bg.Stop();
  CHECK(Without(calls, "compact") ==
        std::vector<std::string>{"spares", "flush", "flushed", "spares", "flush", "flushed"});
  CHECK(Without(jobs.Calls(), "sync") == Without(calls, "sync"));  // nothing runs after Stop
  CHECK(bg.jobs() == 0);
}

TEST_CASE("background: a failed flush is reported and retried until it succeeds") {
  FakeJobs jobs;
  jobs.SetFrozen(1, 1);
  BackgroundWork bg(BackgroundOptions(FsyncPolicy::kNever), &jobs);
  bg.Start();
  std::vector<std::string> calls = jobs.WaitFor("flushed", 1);
  bg.Stop();
  CHECK(Without(calls, "compact") ==
        std::vector<std::string>{"spares", "flush", "flush failed", "spares", "flush", "flushed"});
}

TEST_CASE("background: the index thread runs once per kick that found it idle") {
  FakeJobs jobs;
  BackgroundWork bg(BackgroundOptions(FsyncPolicy::kNever), &jobs);
  bg.Start();
  bg.KickIndex();
  jobs.WaitFor("index", 1);
  bg.KickIndex();
  jobs.WaitFor("index", 2);
  bg.Stop();
  bg.Stop();  // idempotent
}

TEST_CASE("background: the periodic policy syncs the log without any kick, also in foreground") {
  FakeJobs jobs;
  Options o = BackgroundOptions(FsyncPolicy::kPeriodic);
  o.background = false;
  BackgroundWork bg(o, &jobs);
  bg.Start();
  jobs.WaitFor("sync", 2);
  bg.Stop();
  CHECK(Without(jobs.Calls(), "sync").empty());  // no flush, merge or index thread
}
