// Hinted handoff: a write that a peer replica did not acknowledge (timeout, refused or reset
// connection, open breaker, remote error) is kept by its coordinator in a hint file per target
// node and replayed to that node, oldest first, with its original version, once the node
// answers again (last-write-wins makes a replay that races a newer write, or repeats one,
// harmless). Hints never count towards `ack`. A hint whose version is older than the tombstone
// GC grace is dropped when it comes up for replay (a tombstone it would have needed may be gone,
// so it could bring deleted data back), and a new hint past --max-hints-bytes for its target is
// dropped at once; both are counted (anti-entropy repairs what they leave behind).
//
// HintShared is the process's part (the directory, limits, counters, the files found at
// startup); HintLog is one loop's part, owned by that loop's Coordinator: every call happens on
// the loop thread. Each loop appends to files of its own (one active file per target) and
// replays its own files and those it claimed at startup, so no file has two writers. Appends are
// buffered and written (one write(2) per target) in the loop's before-poll step, so a hint is in
// the kernel once the loop polls again; hint files are never fsynced (a power loss may lose
// hints, which anti-entropy then covers; an acknowledged write never depends on a hint). Replay
// keeps at most kWindow requests in flight per target and loop, reads the file in bounded
// chunks and is paced (HintOptions::replay_per_second, scaled by the loop's busy level), so the
// foreground keeps its latency. A file is deleted (or, the active one, truncated
// back to its header) only once every record in it was acknowledged by the target (or
// dropped); after a crash at most the unacknowledged part of it is sent again.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/peer.h"
#include "common/pacer.h"

namespace kv::cluster {

struct HintOptions {
  std::string dir;                     // <data>/hints
  uint64_t max_bytes = 1ull << 30;     // per target node: pending record bytes
  uint64_t grace_us = 86400000000ull;  // --tombstone-gc-seconds
  // Replays sent per second per target and loop; 0: unpaced. Unpaced, a replay of 200K hints
  // ran at ~90-140K hints/s and raised the foreground p99 at half saturation 3-24x
  // (bench-repair, case hints, on a loaded 2-core machine).
  uint64_t replay_per_second = 0;
};

class HintShared {
 public:
  // Counters for /metrics; pending bytes per target for /v0/status too.
  enum Drop { kExpired, kFull, kCorrupt, kIoError, kDropReasons };
  static const char* DropName(int reason);

  // Creates dir if missing and takes stock of the hint files in it (their targets are matched
  // against urls, the cluster list; a file for a node no longer listed is left alone and
  // logged). *err: why the directory cannot be used.
  bool Open(const HintOptions& options, const std::vector<std::string>& urls, std::string* err);
  const HintOptions& options() const { return opt_; }

  // A file found at startup, claimed by the loop loop_index of loops: seq % loops.
  struct File {
    uint64_t seq = 0;
    std::string path;
    uint32_t node = 0;
    uint64_t header_bytes = 0;
    uint64_t size = 0;
  };
  std::vector<File> Claim(int loop_index, int loops);
  // A fresh file number: greater than every one found at startup.
  uint64_t NextSeq() { return next_seq_.fetch_add(1, std::memory_order_relaxed); }
  std::string PathOf(uint64_t seq) const;

  uint64_t pending_bytes(size_t node) const {
    return pending_[node]->load(std::memory_order_relaxed);
  }
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  uint64_t replayed() const { return replayed_.load(std::memory_order_relaxed); }
  uint64_t dropped(int reason) const { return dropped_[reason].load(std::memory_order_relaxed); }

 private:
  friend class HintLog;
  HintOptions opt_;
  std::vector<std::string> urls_;
  std::mutex mu_;
  std::vector<File> found_;
  std::atomic<uint64_t> next_seq_{1};
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> pending_;  // per node: record bytes
  std::atomic<uint64_t> written_{0}, replayed_{0};
  std::atomic<uint64_t> dropped_[kDropReasons] = {};
};

class CoordinatorEnv;
class CircuitBreaker;
class Hlc;

// One loop's hints. Sends through the loop's transports; each answer comes back to the owner's
// waiter, which hands it to OnAnswer.
class HintLog {
 public:
  static constexpr size_t kWindow = 4;                  // HINTS requests in flight per target
  static constexpr uint32_t kBatchHints = 64;           // hints per HINTS request...
  static constexpr size_t kBatchBytes = 64 * 1024;      // ...and bytes (a larger one goes alone,
                                                        // as its PUT or REMOVE)
  static constexpr uint64_t kRollBytes = 4 << 20;       // the active file is sealed past it
  static constexpr size_t kChunkBytes = 64 * 1024;      // file read size (more for big ones)
  static constexpr uint64_t kRetryMinUs = 100 * 1000;   // back-off after a failed replay...
  static constexpr uint64_t kRetryMaxUs = 1000 * 1000;  // ...doubling up to this
  // transports[i] talks to node i (nullptr for self); breakers[i] is node i's. All outlive this.
  HintLog(HintShared* shared, int loop_index, int loops, std::vector<PeerTransport*> transports,
          std::vector<CircuitBreaker*> breakers, const Hlc* hlc, CoordinatorEnv* env,
          uint64_t request_timeout_ms, PeerWaiter* waiter);
  ~HintLog();

  // A write to node failed: keep it (or drop it when the target is over the limit).
  void Add(uint32_t node, PeerOp op, std::string_view key, std::string_view value, uint64_t version,
           uint64_t expires_ms = 0);
  // Writes what Add buffered (the loop's before-poll step).
  void FlushWrites();
  // node answered something (a pong, a replica answer, its handshake): replay to it now.
  void PeerAnswered(uint32_t node);
  bool has_pending(uint32_t node) const { return targets_[node] && !targets_[node]->files.empty(); }
  // Sends what is due (replay windows to refill, retries whose back-off elapsed).
  void Pump(uint64_t now_us);
  bool kicked() const { return kicked_; }
  // When Pump next has something to do on its own (a retry), UINT64_MAX if never.
  uint64_t next_due_us() const;
  // The answer to a replay sent with cookie.
  void OnAnswer(uint64_t cookie, const PeerResponse& r, uint64_t now_us);
  // Writes what is buffered and closes the files (the loop is closing).
  void Close();

 private:
  struct File {
    uint64_t seq = 0;
    std::string path;
    int fd = -1;
    uint64_t header_bytes = 0;
    uint64_t size = 0;     // bytes in the file (written)
    uint64_t counted = 0;  // record bytes counted in HintShared's pending bytes
    bool active = false;   // this loop appends to it
    bool read_error = false;
  };
  struct Target {
    uint32_t node = 0;
    std::deque<File> files;  // oldest first; the back one may be active
    std::string buffered;    // records Add kept for the active file
    uint64_t buffered_count = 0;
    // Replay of files.front(): records [header, acked) answered; [acked, read) in flight (the
    // window: one entry per HINTS request, or per run of dropped records, with its end offset
    // and whether it was answered); read: next to send.
    uint64_t acked = 0, read = 0;
    struct Sent {
      uint64_t end;
      int state;       // kSent, kOk or kFailed
      uint32_t hints;  // records the request carries
    };
    std::deque<Sent> window;
    uint64_t window_base = 0;  // sequence number of window.front() (cookies carry it)
    size_t in_flight = 0;      // window entries not answered yet
    bool failed = false;       // a replay failed: resend from acked after the back-off
    bool idle = false;         // nothing to send until Add, an answer or the peer's answer
    uint64_t retry_us = 0;     // no replay before this
    Pacer pace{1000000};       // replays, on the microsecond clock
    uint64_t backoff_us = kRetryMinUs;
    std::string chunk;  // bytes of files.front() from chunk_off
    uint64_t chunk_off = 0;
    std::string batch;  // the HINTS request being built
  };
  Target& TargetOf(uint32_t node);
  bool OpenActive(Target& t);
  void ReplayTarget(Target& t, uint64_t now_us);
  // Makes t.chunk hold bytes [off, off + n) of f (t.files.front()), reading at least
  // kChunkBytes at a time. 1: done; 0: f ends before; -1: a read error.
  int Ensure(Target& t, const File& f, uint64_t off, uint64_t n);
  // Every record of t.files.front() was answered: delete it, or truncate the active one.
  void FinishFront(Target& t);
  void Advance(Target& t);
  void Drop(int reason, uint64_t n = 1);

  HintShared* shared_;
  std::vector<PeerTransport*> transports_;
  std::vector<CircuitBreaker*> breakers_;
  const Hlc* hlc_;
  CoordinatorEnv* env_;
  uint64_t request_timeout_ms_;
  PeerWaiter* waiter_;
  std::vector<std::unique_ptr<Target>> targets_;
  std::vector<uint32_t> dirty_;  // targets with buffered records
  bool kicked_ = false;
};

}  // namespace kv::cluster
