// The seam between the coordinator and the wire: one PeerTransport per (loop thread, peer node).
// Two implementations, HTTP (src/peer/http_peer.*) and binary (src/peer/binary*), behave
// identically from here. All calls and callbacks happen on the owning loop thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace kv::cluster {

// kRange: one page of the entries this replica holds in a key range (cluster-wide range reads,
// cluster/range_merge.h); answered kPage. kRepair*: anti-entropy (cluster/repair.h); their
// request and answer are opaque bodies (proto/repair.h) carried in PeerRequest::value and
// PeerResponse::value. kHints: hinted handoff's replay (cluster/hints.h); PeerRequest::value holds
// one or more hint records (cluster/hint_file.h, the storage log's record layout), each stored as
// the replica write it stands for; answered kStored with version = the number of records, or
// kError when any record was refused (nothing of a malformed or refused batch is written).
enum class PeerOp : uint8_t {
  kGet = 1,
  kPut = 2,
  kRemove = 3,
  kRepairTree = 4,
  kRepairEntries = 5,
  kRepairApply = 6,
  kRange = 7,
  kHints = 8,
};

inline bool IsRepairOp(PeerOp op) {
  return op == PeerOp::kRepairTree || op == PeerOp::kRepairEntries || op == PeerOp::kRepairApply;
}
// The ops whose request is an opaque body in PeerRequest::value (no key).
inline bool HasBody(PeerOp op) {
  return IsRepairOp(op) || op == PeerOp::kHints;
}

struct PeerRequest {
  PeerOp op;
  std::string_view key;    // empty for repair ops
  std::string_view value;  // kPut: the value; HasBody ops: the request body
  uint64_t version = 0;    // kPut/kRemove: the write's version; kGet: 0
  // kPut: the value expires then (Unix ms, fixed by the coordinator); 0: never. An expired value
  // answers as a tombstone of its version on every replica.
  uint64_t expires_ms = 0;
  // kRange: the page holds entries of [key, end) (no end: to the last key), at most max_keys of
  // them and, past its first entry, at most max_bytes of page (common/range_page.h limits both).
  std::string_view end{};
  bool has_end = false;
  uint32_t max_keys = 0;
  uint32_t max_bytes = 0;
};

struct PeerResponse {
  enum Kind : uint8_t {
    kError,       // transport failure, timeout, refused, protocol or remote error: replica failed
    kAbsent,      // kGet: the peer holds nothing for the key
    kValue,       // kGet: value + version
    kTombstone,   // kGet: deleted at version
    kStored,      // kPut/kRemove: stored; version = what the peer now holds for the key
                  // (kHints: version = the number of records stored)
    kPong,        // Ping: the peer answered
    kPage,        // kRange: value holds the page (common/range_page.h)
    kRepairData,  // kRepair*: value holds the answer body (proto/repair.h)
  } kind = kError;
  // kError only: the peer took its time (timeout, a connection that stalled, too many bytes
  // unanswered). Fast failures (refused, reset, closed, a name that does not resolve) leave it
  // false: they cost the request nothing and say the peer is down, not slow, so they never open
  // the circuit breaker and a peer that comes back is used at once.
  bool slow = false;
  bool no_space = false;  // kError: the replica's disk is full
  bool invalid = false;   // kError: the request itself was malformed (HTTP 400, INVALID_REQUEST)
  // kError: the replica refused the write because its version is skew_ms ahead of the
  // replica's clock, more than its --max-clock-skew-ms (cluster/clock_skew.h). An answer, not a
  // timeout: the peer is alive and fast, only this write failed on it.
  bool clock_skew = false;
  uint64_t skew_ms = 0;
  uint64_t version = 0;
  uint64_t expires_ms = 0;  // kValue: when the value expires (Unix ms); 0: never
  std::string value;
  // kPage: the page is value from this offset on (a transport may hand over its receive buffer
  // whole rather than copy the page out of it); 0 otherwise.
  size_t value_at = 0;
  std::string error;  // kError: short reason ("timeout", "connection refused", ...)
};

// Receives exactly one response per Send, on the loop thread, possibly before Send returns
// (e.g. connection already known dead). The waiter must stay alive until then.
class PeerWaiter {
 public:
  virtual void OnPeerResponse(uint64_t cookie, PeerResponse&& response) = 0;

 protected:
  ~PeerWaiter() = default;
};

// A PeerWaiter that hands each answer to a member function of its owner, for owners that wait
// on several kinds of answers (each kind gets its own member).
template <typename Owner, void (Owner::*OnAnswer)(uint64_t cookie, PeerResponse&& response)>
class MemberWaiter final : public PeerWaiter {
 public:
  explicit MemberWaiter(Owner* owner) : owner_(owner) {}
  void OnPeerResponse(uint64_t cookie, PeerResponse&& response) override {
    (owner_->*OnAnswer)(cookie, std::move(response));
  }

 private:
  Owner* owner_;
};

// What a coordinator needs of its own node's replica (LocalReplica; a fake one in tests):
// answers like a peer, through the waiter, exactly once, maybe before Execute returns.
class Replica {
 public:
  virtual void Execute(const PeerRequest& req, PeerWaiter* waiter, uint64_t cookie) = 0;

 protected:
  ~Replica() = default;
};

class PeerTransport {
 public:
  virtual ~PeerTransport() = default;
  // deadline_ms is on the uv_now() clock of the owning loop; past it the request fails with
  // kError "timeout" and a late answer is dropped.
  virtual void Send(const PeerRequest& req, uint64_t deadline_ms, PeerWaiter* waiter,
                    uint64_t cookie) = 0;
  // Asks the peer process to show it is alive (binary: PING/PONG on the request connection;
  // HTTP: GET /v0/status). Answered like Send: kPong, or kError. A TCP connect alone is no
  // proof: the kernel of a stopped (SIGSTOP) process still accepts connections.
  virtual void Ping(uint64_t deadline_ms, PeerWaiter* waiter, uint64_t cookie) = 0;
  // Hands what Send queued to the socket now rather than just before the loop next polls. The
  // loop calls it before it commits its own replica's writes, so that a replicated write costs
  // the slower of the peers' round trip and the local write, not their sum.
  virtual void Flush() {}
  // Requests sent and not yet answered (for tests and /metrics).
  virtual size_t in_flight() const = 0;
  // Fails every pending request with kError and closes connections; the loop can then be closed
  // once it has run the close callbacks.
  virtual void Close() = 0;
};

}  // namespace kv::cluster

namespace kv::cluster {

// Where a transport connects and who it says it is (binary handshake).
struct PeerEndpoint {
  std::string url;  // "http://127.0.0.1:8081" as listed in --cluster
  // "127.0.0.1", "::1" or a name; a name is resolved again for every new connection, off the
  // request path, so a peer whose address changes is followed.
  std::string host;
  uint16_t port = 0;
  std::string self_url;                   // this node's URL
  uint64_t cluster_fingerprint = 0;       // Ring::Fingerprint() of the cluster list
  size_t max_in_flight_bytes = 8u << 20;  // per connection; over it Send fails fast
};

}  // namespace kv::cluster
