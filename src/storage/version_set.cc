#include "storage/version_set.h"

#include <algorithm>

namespace kv::storage {

void VersionSet::Reset(const Manifest& manifest, uint64_t next_file,
                       std::shared_ptr<const State> state) {
  std::lock_guard<std::mutex> l(manifest_mu_);
  manifest_ = manifest;
  next_file_.store(next_file);
  std::lock_guard<std::mutex> sl(state_mu_);
  state_ = std::move(state);
}

void VersionSet::FreezeActive(std::shared_ptr<Frozen> frozen, std::shared_ptr<MemTable> fresh) {
  // Copy under state_mu_: a flush or compaction may have installed a newer state meanwhile.
  std::lock_guard<std::mutex> l(state_mu_);
  auto st = std::make_shared<State>(*state_);
  st->active = std::move(fresh);
  st->frozen.insert(st->frozen.begin(), std::move(frozen));
  state_ = std::move(st);
}

Status VersionSet::Apply(const VersionEdit& edit, uint64_t* manifest_bytes) {
  {
    std::lock_guard<std::mutex> l(manifest_mu_);
    Manifest m = manifest_;
    size_t at = 0;
    if (!edit.removed.empty()) {
      auto pos = std::find(m.segments.begin(), m.segments.end(), edit.removed.front()->number());
      at = static_cast<size_t>(pos - m.segments.begin());
      m.segments.erase(pos, pos + static_cast<long>(edit.removed.size()));
    }
    if (edit.added)
      m.segments.insert(m.segments.begin() + static_cast<long>(at), edit.added->number());
    if (edit.min_log) m.min_log = *edit.min_log;
    m.next_file = next_file_.load();
    uint64_t mbytes = 0;
    Status s = WriteManifest(dir_, m, &mbytes);
    if (!s.ok()) {
      if (edit.added) edit.added->MarkObsolete();
      return s;
    }
    manifest_ = m;
    std::lock_guard<std::mutex> sl(state_mu_);
    auto next = std::make_shared<State>(*state_);
    if (edit.retire_oldest_frozen) next->frozen.pop_back();
    auto sp = next->segments.begin() + static_cast<long>(at);
    next->segments.erase(sp, sp + static_cast<long>(edit.removed.size()));
    if (edit.added)
      next->segments.insert(next->segments.begin() + static_cast<long>(at), edit.added);
    state_ = std::move(next);
    if (manifest_bytes) *manifest_bytes += mbytes;
  }
  // Files go away when the last snapshot or iterator reading them lets go.
  for (const auto& seg : edit.removed) seg->MarkObsolete();
  return Status::Ok();
}

Manifest VersionSet::manifest() const {
  std::lock_guard<std::mutex> l(manifest_mu_);
  return manifest_;
}

}  // namespace kv::storage
