// Coordinates one client request over its replicas: asks all `from` of them at once (itself
// through the local engine, the others through PeerTransports), feeds every answer to a
// lock-free Accumulator and completes exactly once, as soon as the outcome is decided.
// One Coordinator per loop thread; every call and callback happens on that thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/accumulator.h"
#include "cluster/breaker.h"
#include "cluster/hlc.h"
#include "cluster/local_replica.h"
#include "cluster/peer.h"
#include "cluster/ring.h"
#include "storage/engine.h"

namespace kv::cluster {

struct Outcome {
  enum Kind : uint8_t {
    kValue,        // GET: newest answer is a value
    kNotFound,     // GET: newest answer is a tombstone, or nobody has the key
    kStored,       // PUT/DELETE: ack replicas stored it
    kUnavailable,  // ack answers can no longer be reached -> 504
    kNoSpace,      // this node's disk is full and that decided the failure -> 507
  } kind = kUnavailable;
  uint64_t version = 0;
  std::string value;
};

// Completion without allocation: a function pointer plus two words of caller context.
struct Completion {
  void (*fn)(void* ctx, uint64_t ctx2, Outcome&& outcome) = nullptr;
  void* ctx = nullptr;
  uint64_t ctx2 = 0;
};

// Cluster-wide shared state (one per process): topology, clock, engine, breakers.
struct ClusterState {
  ClusterState(std::vector<std::string> urls, size_t self, storage::Engine* engine);
  Ring ring;
  size_t self_index;
  Hlc hlc;
  storage::Engine* engine;
  std::vector<std::unique_ptr<CircuitBreaker>> breakers;              // per node (self's unused)
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> peer_failures;  // per node, for /metrics
};

class Coordinator {
 public:
  // transports[i] talks to node i (nullptr for self). now_ms: the loop's clock (uv_now).
  Coordinator(ClusterState* state, std::vector<std::unique_ptr<PeerTransport>> transports,
              uint64_t request_timeout_ms, uint64_t (*now_ms)(void* clock), void* clock);
  ~Coordinator();

  // 1 <= ack <= from <= ring size (validated by the caller). `done` runs exactly once, maybe
  // before Execute returns.
  void Execute(PeerOp op, std::string_view key, std::string_view value, int ack, int from,
               Completion done);
  size_t pending() const { return pending_; }
  // Commits the local replica writes queued since the last call with one engine write (one
  // log write(2)) and delivers their answers. The owner calls it once per loop iteration,
  // after I/O callbacks and before answers are written; clients are answered only after it.
  void FlushLocalWrites();
  void Close();
  PeerTransport* transport(size_t node) { return transports_[node].get(); }

 private:
  struct Request;
  class Waiter;
  void Deliver(Request* r, int replica, PeerResponse&& resp);
  void RecordPeerHealth(uint32_t node, const PeerResponse& resp);
  void Finish(Request* r);
  void Release(Request* r);

  // A local replica write waiting for FlushLocalWrites: which request, which replica slot.
  struct LocalSlot {
    Request* request = nullptr;
    int replica = 0;
  };

  ClusterState* state_;
  WriteQueue<LocalSlot> local_;
  std::vector<std::unique_ptr<PeerTransport>> transports_;
  uint64_t timeout_ms_;
  uint64_t (*now_ms_)(void*);
  void* clock_;
  size_t pending_ = 0;
  std::vector<Request*> free_;
  std::unique_ptr<Waiter> waiter_;
};

}  // namespace kv::cluster
