// The repair driver's way to its peers (cluster::RepairLink): the driver's thread queues a
// request and waits; loop 0 sends it over a transport of its own per peer (so repair pages never
// queue behind or ahead of client traffic on the coordinator's connections) and hands the answer
// back. Thread-safe.
#pragma once
#include <uv.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "cluster/repair.h"

namespace kv::net {

class RepairLinkImpl final : public cluster::RepairLink {
 public:
  static constexpr uint64_t kCallTimeoutMs = 60000;  // a peer's tree build may take seconds

  struct PendingCall {
    size_t node = 0;
    cluster::PeerOp op = cluster::PeerOp::kRepairTree;
    std::string body;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool ok = false;
    std::string answer, error;
    void Finish(bool ok_, std::string answer_, std::string error_);
  };

  // Driver thread.
  bool Call(size_t node, cluster::PeerOp op, const std::string& body, std::string* answer,
            std::string* error) override;

  // Loop 0: the async handle to wake it with (nullptr detaches), and the calls queued.
  void Attach(uv_async_t* async);
  std::deque<std::shared_ptr<PendingCall>> TakeQueued();
  // Fails every queued and waiting call; later calls fail at once.
  void Close();

 private:
  std::mutex mu_;
  uv_async_t* async_ = nullptr;
  bool closed_ = false;
  std::deque<std::shared_ptr<PendingCall>> queued_;
  std::set<std::shared_ptr<PendingCall>> waiting_;
};

}  // namespace kv::net
