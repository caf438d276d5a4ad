// The binary peer protocol over libuv (proto_spec/peer-protocol.md): the client transport, one
// per (loop thread, peer), and the server side that serves peers' connections on this loop.
// Everything runs on the owning loop thread.
//
// Connections: one per (loop thread, peer) in each direction. A node runs one loop per core and
// each loop owns its transports, so a connection is only ever touched by one thread: no locks,
// no cross-thread wake-ups (uv_async) on the request path, and the coordinator's Send goes
// straight into the connection's output buffer. The cost is more sockets (threads x peers x 2
// per node), which is small for the cluster sizes this store targets; one multiplexed
// connection already carries thousands of requests in flight, so sharing one per peer across
// threads would add a hand-off (lock + uv_async + extra copy) per request for nothing.
//
// Client (MakeBinaryPeerTransport):
// - Lazy: the first Send connects and writes preface + HANDSHAKE (with a fresh nonce); requests
//   queue until HANDSHAKE_OK arrives. Its proofs are verified against options.keys (a server
//   that cannot prove our secret is refused like a refused handshake, counted and logged, see
//   auth_failures.h); then AUTH (our proofs) and the queued requests leave at once behind it
//   (the server decodes in order; if it refuses AUTH it executes none of them and every
//   pending request fails with the ERROR frame's reason). One round trip per new connection.
// - Names: a host name is resolved again for every new connection (uv_getaddrinfo, off the
//   request path; requests queue behind the lookup), so a peer whose address changes is
//   followed; its addresses are tried in order (IPv4 first) until one accepts. A name that does
//   not resolve fails the queued requests, is logged, and Sends fail at once for a back-off that
//   doubles from resolve_backoff_min_ms to resolve_backoff_max_ms (DNS not ready at boot).
// - Multiplexed: request id = (slot generation << 32) | slot index in a reusable slot table, so
//   answers are matched in any order without per-request allocation, and a late answer to a
//   request that already failed (timeout) matches nothing and is dropped; the connection stays.
// - Coalesced: Send appends the encoded frame to the connection's output buffer; Flush (the
//   worker's before-poll step) hands everything queued during the loop iteration to one
//   uv_write; frames queued while a write is in flight leave together when it completes.
// - Deadlines: one repeating timer (sweep_interval_ms, running only while requests are pending)
//   fails requests past their deadline with "timeout", exactly once each. If nothing arrived on
//   the connection since an expired request was queued, stall_after_ms or more before, the
//   connection is stalled (a partition,
//   a lost SYN, a stopped process): it is dropped, its other requests fail "connection stalled",
//   and the next Send opens a fresh one instead of waiting for TCP's retransmission back-off.
// - Failures: connect failure, EOF, reset, write error, ERROR frame, refused HANDSHAKE_OK or a
//   protocol error in the peer's bytes fail every pending request at once with the reason and
//   drop the connection; the next Send opens a fresh one, at once: a refused connection is a
//   fast failure (PeerResponse::slow false) with no back-off, so a restarted peer is used as
//   soon as it listens. Only a refused handshake or a protocol error before HANDSHAKE_OK (the
//   peer is up but will not talk to us) makes Sends fail at once for reconnect_backoff_ms.
//   Timeouts, stalls and "overloaded" are slow failures (they count towards circuit breakers).
// - Ping: a PING frame with a request id, answered kPong by the peer's PONG (proof of life).
// - Bound: a Send that would take the queued + unanswered request bytes over
//   ep.max_in_flight_bytes fails at once with "overloaded" (a single request larger than the cap
//   is still sent when nothing else is in flight, as in the HTTP transport, so the largest legal
//   value always goes through). A request over the protocol limits fails at once.
// - Close() fails every pending request with "closed", closes the connection and the handles;
//   later Sends fail with "closed". The destructor calls Close(). Handles free themselves in
//   their close callbacks without touching the transport, so the transport may be destroyed
//   right after Close() (even from inside a waiter callback); the loop must run once more
//   (uv_run NOWAIT) to free them.
//
// Server (MakeBinaryPeerServer): one per loop; answers HANDSHAKE with HANDSHAKE_OK carrying a
// fresh nonce and its proofs, and verifies AUTH against ctx.keys before any request (a client
// without a valid proof gets ERROR(AUTH_FAILED), counted and logged, and nothing it sent runs);
// executes GET/PUT/REMOVE with
// cluster::ExecuteLocal (PUT/REMOVE versions observed by the HLC first), answers PING with PONG,
// tells ctx.on_peer_hello of every accepted handshake,
// coalesces answers into one write per loop iteration, stops reading a connection whose unsent
// answers pass options.output_high_water bytes and resumes once they drain, and closes one that
// writes nothing for options.send_timeout_ms, one whose handshake is not accepted within
// options.handshake_timeout_ms, and the oldest of more than options.max_pending_handshakes
// connections waiting for their handshake (a timer of its own). A refused HANDSHAKE
// or any protocol error in the input is answered with an ERROR frame (nothing after the bad
// frame is executed) and the connection closes once it is written; other connections are not
// affected. Close() (also called by the destructor) closes every adopted connection; as for the
// client, the object may be destroyed right after it.
#pragma once
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cluster/local_replica.h"
#include "cluster/peer.h"
#include "cluster/ring.h"
#include "loop/resolve.h"
#include "proto/auth.h"

namespace kv::net {

std::unique_ptr<cluster::PeerTransport> MakeBinaryPeerTransport(uv_loop_t* loop,
                                                                const cluster::PeerEndpoint& ep);

// Tunables of the client transport (the defaults are what the node uses).
struct BinaryPeerOptions {
  uint64_t reconnect_backoff_ms = 150;  // after a refused handshake, fail fast this long
  uint64_t sweep_interval_ms = 20;      // deadline sweep period
  // A connection is stalled when a request expires after at least this long with nothing
  // received since it was sent (see Deadlines above).
  uint64_t stall_after_ms = 100;
  // After a host name failed to resolve, fail fast this long, doubling up to the max.
  uint64_t resolve_backoff_min_ms = 100;
  uint64_t resolve_backoff_max_ms = 5000;
  // Resolves a host name for each new connection in place of uv_getaddrinfo (tests): false when
  // it does not resolve.
  std::function<bool(const std::string& host, uint16_t port, Addresses* out)> resolve;
  // The cluster secret's keys (none: prove nothing, accept any server).
  proto::auth::ClusterKeys keys;
};

std::unique_ptr<cluster::PeerTransport> MakeBinaryPeerTransport(uv_loop_t* loop,
                                                                const cluster::PeerEndpoint& ep,
                                                                const BinaryPeerOptions& options);

struct BinaryServerContext {
  // Executes the requests (this loop's LocalReplica: versions observed, writes batched); the
  // loop commits its writes once per iteration.
  cluster::LocalReplica* local = nullptr;
  const cluster::Ring* ring = nullptr;  // for the handshake: peer URL in ring, same fingerprint
  size_t self_index = 0;
  // Called with the peer's index in the ring when a peer's handshake (and AUTH) was accepted: proof
  // that its process runs (e.g. it just restarted), which closes its circuit breaker at once.
  std::function<void(size_t node)> on_peer_hello;
  // The cluster secret's keys (none: accept any client, prove nothing).
  proto::auth::ClusterKeys keys;
};

class BinaryPeerServer {
 public:
  virtual ~BinaryPeerServer() = default;
  // Takes ownership of an accepted connection (allocated with new, reading stopped) whose first
  // bytes (`first_bytes`, already read) begin with the preface.
  virtual void Adopt(uv_tcp_t* handle, std::string_view first_bytes) = 0;
  // Writes the answers queued during the loop iteration (the worker's before-poll step).
  virtual void Flush() = 0;
  // Closes every adopted connection (shutdown).
  virtual void Close() = 0;
};

std::unique_ptr<BinaryPeerServer> MakeBinaryPeerServer(uv_loop_t* loop,
                                                       const BinaryServerContext& ctx);

// Tunables of the server side (the defaults are what the node uses).
struct BinaryServerOptions {
  size_t output_high_water = 1u << 20;  // stop reading a connection with this much unsent output
  // A connection whose handshake is not accepted this long after it was adopted is closed, and
  // so is the oldest such connection once there are more than max_pending_handshakes of them
  // (a peer sends its preface and HANDSHAKE in one write: only a stranger keeps one pending).
  uint64_t handshake_timeout_ms = 10000;
  size_t max_pending_handshakes = 64;
  // A connection whose unsent output makes no progress this long (the peer does not read) is
  // closed.
  uint64_t send_timeout_ms = 30000;
};

std::unique_ptr<BinaryPeerServer> MakeBinaryPeerServer(uv_loop_t* loop,
                                                       const BinaryServerContext& ctx,
                                                       const BinaryServerOptions& options);

}  // namespace kv::net
