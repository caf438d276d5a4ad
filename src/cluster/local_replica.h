// Executes one replica request against the local engine. Shared by every way a replica request
// arrives (the coordinator's own replica, HTTP internal requests, binary peer frames), so all of
// them store and answer identically.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "cluster/peer.h"
#include "storage/engine.h"

namespace kv::cluster {

// kPut/kRemove -> kStored with the version the engine now holds (or kError with the reason);
// kGet -> kValue / kTombstone / kAbsent. storage_code (if given) receives the engine's code so
// callers can map kNoSpace to 507.
PeerResponse ExecuteLocal(storage::Engine& engine, const PeerRequest& req,
                          storage::Code* storage_code = nullptr);

// The answer to one write of a committed Engine::Write batch that returned `st`: kStored with the
// version the engine now holds, or kError with the reason.
PeerResponse StoredResponse(const storage::Status& st, const storage::Engine::WriteOp& op);

// Local replica writes queued during one loop iteration and committed together with one
// Engine::Write (one log write(2)). Key and value are copied: the connection that carried them
// reuses its buffers for the next pipelined request before the commit. Tag is what the owner
// needs to answer the write. One loop thread only.
template <typename Tag>
class WriteQueue {
 public:
  static constexpr size_t kMaxValue = 64 * 1024;  // larger values are written at once

  void Push(const Tag& tag, std::string_view key, std::string_view value, uint64_t version,
            bool tombstone) {
    if (count_ == items_.size()) items_.emplace_back();
    Item& w = items_[count_++];
    w.tag = tag;
    w.key.assign(key);
    w.value.assign(tombstone ? std::string_view() : value);
    w.version = version;
    w.tombstone = tombstone;
  }

  // Commits what is queued and calls done(tag, response, status) for each write, in queue
  // order; writes that done() queues wait for the next Commit. False when nothing was queued.
  template <typename Done>
  bool Commit(storage::Engine& engine, Done&& done) {
    if (count_ == 0) return false;
    size_t n = count_;
    count_ = 0;
    flushing_.swap(items_);
    ops_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const Item& w = flushing_[i];
      ops_[i] = storage::Engine::WriteOp{w.key, w.value, w.version, w.tombstone, 0};
    }
    storage::Status st = engine.Write(ops_.data(), n);
    for (size_t i = 0; i < n; ++i) done(flushing_[i].tag, StoredResponse(st, ops_[i]), st);
    return true;
  }

 private:
  struct Item {
    Tag tag{};
    std::string key, value;
    uint64_t version = 0;
    bool tombstone = false;
  };
  std::vector<Item> items_;     // queued this iteration (the first count_)
  std::vector<Item> flushing_;  // being committed
  size_t count_ = 0;
  std::vector<storage::Engine::WriteOp> ops_;
};

}  // namespace kv::cluster
