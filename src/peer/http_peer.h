// HTTP/1.1 cluster::PeerTransport: replica requests to one peer, pipelined over a small pool of
// persistent keep-alive connections. Caller guarantees: one transport per (loop thread, peer),
// every call on that loop's thread, and the loop keeps running after Close() until it has run
// the transport's close callbacks (uv_run(loop, UV_RUN_NOWAIT) once is enough).
//
// Wire format (the server half, peer/http_replica.*, implements the same):
//   GET|PUT|DELETE /v0/entity?id=<percent-encoded key> HTTP/1.1
//   Host: host:port / X-KV-Internal: 1 / X-KV-Version: <u64> (PUT, DELETE) /
//   X-KV-Auth: t=<ms>,m=<hex>[,m=<hex>] (with a cluster secret: options.keys) / Content-Length
//   A 401 (the peer does not accept our proof) is a failure like any other status.
//   GET 200 + X-KV-Version -> kValue; 404 + X-KV-Version (+ X-KV-Tombstone: 1) -> kTombstone;
//   404 without X-KV-Version -> kAbsent; PUT 201 / DELETE 202 + X-KV-Version -> kStored;
//   anything else -> kError ("http 507", "bad version", ...).
//   Ping: GET /v0/status HTTP/1.1 / Host; 200 -> kPong, anything else -> kError.
//
// Policies:
// - Pool: up to max_connections, opened lazily: a new one when every open connection already has
//   open_new_at requests in flight (or its byte budget is used up). Requests go to the connection
//   with the fewest in flight; requests queued in one loop iteration leave in one write, at Flush
//   (the worker's before-poll step).
// - Failures: a failed connect fails that connection's requests at once ("connection refused"...).
//   There is no back-off: the next Send connects again, so a peer that comes back is used at once;
//   but after a failed connect only one connection at a time tries, and the requests meanwhile
//   queue on it. A broken connection (EOF, reset,
//   unparsable or unsolicited response) fails its in-flight requests and is dropped; the next Send
//   opens a fresh one, so a restarted peer is picked up again without intervention.
// - Deadlines: one repeating timer (sweep_interval_ms) fails requests past their deadline with
//   "timeout" exactly once (slow failures, PeerResponse::slow, as is the abort below). HTTP/1.1
//   cannot skip an answer in a pipeline, so the connection that carried a timed-out request is
//   closed and its other in-flight requests fail with "aborted: pipeline timed out"; late answers
//   therefore never arrive.
// - Bound: a Send that would take a connection's unanswered request bytes over
//   ep.max_in_flight_bytes (and no other connection can take it) fails with "overloaded". A single
//   request bigger than the budget is still sent on a connection with nothing in flight.
// - Close(): fails every pending request with "closed" (synchronously, once each) and closes all
//   handles; later Sends fail with "closed" at once. Destroying the transport calls Close(). The
//   internal state frees itself from its last close callback, so the PeerTransport object itself
//   may be destroyed at any time, even from inside a waiter callback.
#pragma once
#include <uv.h>

#include <cstdint>
#include <memory>

#include "cluster/peer.h"
#include "proto/auth.h"

namespace kv::net {

struct HttpPeerOptions {
  size_t max_connections = 4;
  size_t open_new_at = 8;           // in-flight requests per connection before opening another
  uint64_t sweep_interval_ms = 25;  // deadline sweep period
  // The cluster secret's keys: every request carries X-KV-Auth (proto_spec section 11.3) unless
  // there are none.
  proto::auth::ClusterKeys keys;
};

std::unique_ptr<cluster::PeerTransport> MakeHttpPeerTransport(uv_loop_t* loop,
                                                              const cluster::PeerEndpoint& ep,
                                                              const HttpPeerOptions& options = {});

}  // namespace kv::net
