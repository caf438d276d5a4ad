#include "cluster/hints.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "cluster/coordinator.h"
#include "cluster/foreground_load.h"
#include "cluster/hint_file.h"
#include "cluster/hlc.h"
#include "cluster/peer_health.h"
#include "common/log.h"
#include "common/version.h"

namespace kv::cluster {

namespace {
constexpr int kSent = 0, kOk = 1, kFailed = 2;
constexpr char kSuffix[] = ".hint";

// "<seq>.hint" -> seq; false for any other name.
bool SeqOfName(const char* name, uint64_t* seq) {
  const size_t n = strlen(name), suffix = sizeof kSuffix - 1;
  if (n <= suffix || n - suffix > 19 || strcmp(name + n - suffix, kSuffix) != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n - suffix; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  *seq = v;
  return true;
}

// Writes all of data at the file's end; false (errno set) on an error.
bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads up to n bytes at off; the count read, or -1.
ssize_t ReadAt(int fd, char* buf, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = pread(fd, buf + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}
}  // namespace

const char* HintShared::DropName(int reason) {
  switch (reason) {
    case kExpired:
      return "expired";
    case kFull:
      return "full";
    case kCorrupt:
      return "corrupt";
    default:
      return "io_error";
  }
}

std::string HintShared::PathOf(uint64_t seq) const {
  char name[32];
  snprintf(name, sizeof name, "%06" PRIu64 "%s", seq, kSuffix);
  return opt_.dir + "/" + name;
}

bool HintShared::Open(const HintOptions& options, const std::vector<std::string>& urls,
                      std::string* err) {
  opt_ = options;
  urls_ = urls;
  for (size_t i = 0; i < urls.size(); ++i) {
    pending_.push_back(std::make_unique<std::atomic<uint64_t>>(0));
  }
  if (mkdir(opt_.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    *err = "cannot create " + opt_.dir + ": " + strerror(errno);
    return false;
  }
  DIR* d = opendir(opt_.dir.c_str());
  if (d == nullptr) {
    *err = "cannot read " + opt_.dir + ": " + strerror(errno);
    return false;
  }
  uint64_t max_seq = 0;
  while (dirent* e = readdir(d)) {
    File f;
    if (!SeqOfName(e->d_name, &f.seq)) continue;
    max_seq = std::max(max_seq, f.seq);
    f.path = opt_.dir + "/" + e->d_name;
    const int fd = open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
      LOG_WARN("hint file %s: %s: left alone", f.path.c_str(), strerror(errno));
      if (fd >= 0) close(fd);
      continue;
    }
    std::string head(hintfile::HeaderSize(hintfile::kMaxUrlBytes), '\0');
    const ssize_t n = ReadAt(fd, head.data(), head.size(), 0);
    close(fd);
    std::string url;
    size_t len = 0;
    const hintfile::Parse p =
        n < 0 ? hintfile::Parse::kCorrupt
              : hintfile::ParseHeader(std::string_view(head.data(), static_cast<size_t>(n)), &url,
                                      &len);
    if (p != hintfile::Parse::kOk) {
      // A file whose header never reached the disk whole holds no hint.
      LOG_WARN("hint file %s has no valid header: removed", f.path.c_str());
      unlink(f.path.c_str());
      continue;
    }
    const auto it = std::find(urls.begin(), urls.end(), url);
    if (it == urls.end()) {
      LOG_WARN("hint file %s is for %s, not in --cluster: left alone", f.path.c_str(), url.c_str());
      continue;
    }
    f.node = static_cast<uint32_t>(it - urls.begin());
    f.header_bytes = len;
    f.size = static_cast<uint64_t>(st.st_size);
    pending_[f.node]->fetch_add(f.size - len, std::memory_order_relaxed);
    found_.push_back(std::move(f));
  }
  closedir(d);
  std::sort(found_.begin(), found_.end(),
            [](const File& a, const File& b) { return a.seq < b.seq; });
  next_seq_.store(max_seq + 1, std::memory_order_relaxed);
  if (!found_.empty())
    LOG_INFO("%zu hint file(s) to replay in %s", found_.size(), opt_.dir.c_str());
  return true;
}

std::vector<HintShared::File> HintShared::Claim(int loop_index, int loops) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<File> mine;
  for (const File& f : found_) {
    if (f.seq % static_cast<uint64_t>(loops) == static_cast<uint64_t>(loop_index)) {
      mine.push_back(f);
    }
  }
  return mine;
}

HintLog::HintLog(HintShared* shared, int loop_index, int loops,
                 std::vector<PeerTransport*> transports, std::vector<CircuitBreaker*> breakers,
                 const Hlc* hlc, CoordinatorEnv* env, uint64_t request_timeout_ms,
                 PeerWaiter* waiter)
    : shared_(shared),
      transports_(std::move(transports)),
      breakers_(std::move(breakers)),
      hlc_(hlc),
      env_(env),
      request_timeout_ms_(request_timeout_ms),
      waiter_(waiter),
      targets_(transports_.size()) {
  for (const HintShared::File& found : shared_->Claim(loop_index, loops)) {
    if (found.node >= targets_.size() || transports_[found.node] == nullptr) continue;
    File f;
    f.seq = found.seq;
    f.path = found.path;
    f.header_bytes = found.header_bytes;
    f.size = found.size;
    f.counted = found.size - found.header_bytes;
    TargetOf(found.node).files.push_back(std::move(f));
  }
}

HintLog::~HintLog() {
  Close();
}

HintLog::Target& HintLog::TargetOf(uint32_t node) {
  if (!targets_[node]) {
    targets_[node] = std::make_unique<Target>();
    targets_[node]->node = node;
  }
  return *targets_[node];
}

void HintLog::Drop(int reason, uint64_t n) {
  shared_->dropped_[reason].fetch_add(n, std::memory_order_relaxed);
}

void HintLog::Add(uint32_t node, PeerOp op, std::string_view key, std::string_view value,
                  uint64_t version, uint64_t expires_ms) {
  const bool put = op == PeerOp::kPut;
  const size_t bytes =
      hintfile::RecordSize(key.size(), put ? value.size() + (expires_ms != 0 ? 8 : 0) : 0);
  std::atomic<uint64_t>& pending = *shared_->pending_[node];
  if (pending.fetch_add(bytes, std::memory_order_relaxed) + bytes > shared_->opt_.max_bytes) {
    pending.fetch_sub(bytes, std::memory_order_relaxed);
    return Drop(HintShared::kFull);
  }
  Target& t = TargetOf(node);
  if (t.buffered.empty()) dirty_.push_back(node);
  hintfile::AppendRecord(&t.buffered,
                         hintfile::Record{op, key, value, version, put ? expires_ms : 0});
  ++t.buffered_count;
  shared_->written_.fetch_add(1, std::memory_order_relaxed);
}

bool HintLog::OpenActive(Target& t) {
  File f;
  f.seq = shared_->NextSeq();
  f.path = shared_->PathOf(f.seq);
  f.fd = open(f.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  std::string header;
  hintfile::AppendHeader(&header, shared_->urls_[t.node]);
  if (f.fd < 0 || !WriteAll(f.fd, header.data(), header.size())) {
    LOG_ERROR("hint file %s: %s", f.path.c_str(), strerror(errno));
    if (f.fd >= 0) {
      close(f.fd);
      unlink(f.path.c_str());
    }
    return false;
  }
  f.header_bytes = f.size = header.size();
  f.active = true;
  t.files.push_back(std::move(f));
  return true;
}

void HintLog::FlushWrites() {
  for (uint32_t node : dirty_) {
    Target& t = *targets_[node];
    if (t.buffered.empty()) continue;
    t.idle = false;
    bool ok = !t.files.empty() && t.files.back().active;
    if (!ok) ok = OpenActive(t);
    File* f = ok ? &t.files.back() : nullptr;
    if (ok && !WriteAll(f->fd, t.buffered.data(), t.buffered.size())) {
      LOG_ERROR("hint file %s: write: %s: %" PRIu64 " hint(s) dropped", f->path.c_str(),
                strerror(errno), t.buffered_count);
      // Nothing after a torn record would be read: cut it off.
      if (ftruncate(f->fd, static_cast<off_t>(f->size)) != 0) f->active = false;
      ok = false;
    }
    if (ok) {
      f->size += t.buffered.size();
      f->counted += t.buffered.size();
      if (f->size >= kRollBytes) f->active = false;  // sealed: the next hint starts a new file
    } else {
      shared_->pending_[node]->fetch_sub(t.buffered.size(), std::memory_order_relaxed);
      Drop(HintShared::kIoError, t.buffered_count);
    }
    t.buffered.clear();
    t.buffered_count = 0;
  }
  dirty_.clear();
}

void HintLog::PeerAnswered(uint32_t node) {
  if (!has_pending(node)) return;
  Target& t = *targets_[node];
  t.retry_us = 0;
  t.backoff_us = kRetryMinUs;
  t.idle = false;
  kicked_ = true;
}

uint64_t HintLog::next_due_us() const {
  uint64_t due = UINT64_MAX;
  for (const auto& t : targets_) {
    if (!t || t->files.empty() || t->idle || t->failed || t->window.size() >= kWindow) continue;
    due = std::min(due, t->retry_us);
  }
  return due;
}

void HintLog::Pump(uint64_t now_us) {
  kicked_ = false;
  for (auto& t : targets_) {
    if (t && !t->files.empty() && !t->idle && !t->failed && t->retry_us <= now_us) {
      ReplayTarget(*t, now_us);
    }
  }
}

int HintLog::Ensure(Target& t, const File& f, uint64_t off, uint64_t n) {
  if (off + n > f.size) return 0;
  if (off >= t.chunk_off && off + n <= t.chunk_off + t.chunk.size()) return 1;
  const uint64_t want = std::min<uint64_t>(std::max<uint64_t>(n, kChunkBytes), f.size - off);
  t.chunk.resize(want);
  const ssize_t r = ReadAt(f.fd, t.chunk.data(), want, off);
  if (r < 0) {
    LOG_ERROR("hint file %s: read: %s", f.path.c_str(), strerror(errno));
    t.chunk.clear();
    return -1;
  }
  t.chunk.resize(static_cast<size_t>(r));
  t.chunk_off = off;
  return static_cast<uint64_t>(r) >= n ? 1 : 0;
}

void HintLog::ReplayTarget(Target& t, uint64_t now_us) {
  const uint32_t node = t.node;
  if (breakers_[node]->state(now_us / 1000) != CircuitBreaker::State::kClosed) {
    // The coordinator's pings close it once the peer answers (PeerAnswered then kicks).
    t.retry_us = now_us + t.backoff_us;
    return;
  }
  // A Send that fails at once resets the window and sets a back-off (OnAnswer): stop then.
  while (!t.failed && t.retry_us <= now_us && t.window.size() < kWindow && !t.files.empty()) {
    // Paced to replay_per_second, scaled down while this loop is busy with requests
    // (ForegroundLoad::Share; a new rate applies from the next replay due at the old one). A
    // pause of over a second starts the count again.
    if (const uint64_t full = shared_->opt_.replay_per_second; full != 0) {
      const uint64_t rate = ForegroundLoad::Scale(full, env_->BusyPermille());
      t.pace.SetRate(rate, now_us);
      if (!t.pace.started() || t.pace.due() + 1000000 < now_us) t.pace.Restart(now_us, rate);
      if (t.pace.due() > now_us) {
        t.retry_us = t.pace.due();
        return;
      }
    }
    File& f = t.files.front();
    if (f.fd < 0) {
      f.fd = open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (f.fd < 0) {
        LOG_ERROR("hint file %s: %s: its hints are dropped", f.path.c_str(), strerror(errno));
        Drop(HintShared::kIoError);
        f.read_error = true;
      }
    }
    if (t.read == 0) {
      t.read = t.acked = f.header_bytes;
      t.chunk.clear();
      t.chunk_off = 0;
    }
    if (t.read >= f.size || f.read_error) {
      if (!t.window.empty()) {
        t.idle = true;  // the file is done once its last answers are in (they clear idle)
        return;
      }
      FinishFront(t);
      continue;
    }
    // One HINTS request: the records from t.read on, copied as they are in the file, up to
    // kBatchHints of them and kBatchBytes (a larger first record goes alone).
    t.batch.clear();
    uint32_t hints = 0;
    bool read_failed = false;
    while (hints < kBatchHints && t.read < f.size) {
      const uint64_t at = t.read;
      int got = Ensure(t, f, at, 8);
      hintfile::Record rec;
      size_t len = 8;
      hintfile::Parse p = hintfile::Parse::kNeedMore;
      if (got == 1) {
        p = hintfile::ParseRecord(std::string_view(t.chunk).substr(at - t.chunk_off), &rec, &len);
        if (p == hintfile::Parse::kNeedMore) {
          got = Ensure(t, f, at, len);
          if (got == 1) {
            p = hintfile::ParseRecord(std::string_view(t.chunk).substr(at - t.chunk_off), &rec,
                                      &len);
          }
        }
      }
      if (got < 0) {
        read_failed = true;
        break;
      }
      if (p != hintfile::Parse::kOk) {
        // A torn or damaged tail (a crash in the middle of a write): the hints before it stand.
        LOG_WARN("hint file %s: no valid record at offset %" PRIu64 " of %" PRIu64
                 ": the rest is dropped",
                 f.path.c_str(), at, f.size);
        Drop(HintShared::kCorrupt);
        f.size = at;
        break;
      }
      if (version::Micros(rec.version) + shared_->opt_.grace_us < hlc_->WallUs()) {
        // Older than the tombstone GC grace: the tombstone that a replica needs to discard it
        // may be gone, so it could bring deleted data back.
        Drop(HintShared::kExpired);
        t.read = at + len;
        continue;
      }
      if (hints > 0 && t.batch.size() + len > kBatchBytes) break;  // the next batch's first
      t.batch.append(t.chunk, at - t.chunk_off, len);
      t.read = at + len;
      ++hints;
    }
    if (read_failed) t.retry_us = now_us + t.backoff_us;
    if (hints == 0) {
      // Only dropped records (or none): nothing to send for them.
      if (t.window.empty() || t.window.back().end < t.read) t.window.push_back({t.read, kOk, 0});
      Advance(t);
      continue;
    }
    const uint64_t seq = t.window_base + t.window.size();
    t.window.push_back({t.read, kSent, hints});
    ++t.in_flight;
    const uint64_t cookie = (uint64_t{node} << 32) | (seq & 0xffffffffu);
    PeerRequest req{PeerOp::kHints, {}, t.batch};
    if (hints == 1 && t.batch.size() > kBatchBytes) {
      // A hint larger than a batch goes as the PUT or REMOVE it stands for: over HTTP a request
      // body may not exceed --max-value-bytes, which its value alone never does.
      hintfile::Record rec;
      size_t len = 0;
      hintfile::ParseRecord(t.batch, &rec, &len);
      req = PeerRequest{rec.op, rec.key, rec.value, rec.version, rec.expires_ms};
    }
    // May answer at once (a connection known to be down): OnAnswer then marks it failed.
    transports_[node]->Send(req, env_->NowMs() + request_timeout_ms_, waiter_, cookie);
    t.pace.Sent(hints);
  }
}

void HintLog::OnAnswer(uint64_t cookie, const PeerResponse& r, uint64_t now_us) {
  Target& t = *targets_[cookie >> 32];
  const uint32_t i = static_cast<uint32_t>(cookie) - static_cast<uint32_t>(t.window_base);
  if (i >= t.window.size() || t.window[i].state != kSent) return;
  --t.in_flight;
  t.idle = false;
  kicked_ = true;
  if (r.kind == PeerResponse::kStored) {
    t.window[i].state = kOk;
    shared_->replayed_.fetch_add(t.window[i].hints, std::memory_order_relaxed);
  } else {
    t.window[i].state = kFailed;
    t.failed = true;
  }
  if (!t.failed) return Advance(t);
  // A request failed: the last answer to come in (a failure or not) starts the resend.
  if (t.in_flight != 0) return;
  // Every answer is in: send again from the first unanswered record after the back-off.
  Advance(t);
  t.window_base += t.window.size();
  t.window.clear();
  t.read = t.acked;
  t.failed = false;
  t.retry_us = now_us + t.backoff_us;
  t.backoff_us = std::min(t.backoff_us * 2, kRetryMaxUs);
}

void HintLog::Advance(Target& t) {
  while (!t.window.empty() && t.window.front().state == kOk) {
    t.acked = t.window.front().end;
    t.window.pop_front();
    ++t.window_base;
  }
  if (t.failed) return;
  if (t.window.empty()) t.backoff_us = kRetryMinUs;
}

void HintLog::FinishFront(Target& t) {
  File& f = t.files.front();
  shared_->pending_[t.node]->fetch_sub(f.counted, std::memory_order_relaxed);
  f.counted = 0;
  t.chunk.clear();
  t.chunk_off = 0;
  // Also the active file: the next hint for this target starts a new one.
  if (f.fd >= 0) close(f.fd);
  if (unlink(f.path.c_str()) != 0) {
    LOG_ERROR("hint file %s: unlink: %s", f.path.c_str(), strerror(errno));
  }
  t.files.pop_front();
  t.read = t.acked = 0;
}

void HintLog::Close() {
  FlushWrites();
  for (auto& t : targets_) {
    if (!t) continue;
    for (File& f : t->files) {
      if (f.fd >= 0) close(f.fd);
      f.fd = -1;
      f.active = false;
    }
  }
}

}  // namespace kv::cluster
