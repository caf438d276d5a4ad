// The server half of the HTTP peer transport (http_peer.h is the client half): a replica request
// from a peer, `X-KV-Internal: 1` on /v0/entity, executed by this loop's LocalReplica (never
// forwarded) and answered in the internal format the client half parses:
//   GET    -> 200 + X-KV-Version + value | 404 + X-KV-Version + X-KV-Tombstone: 1 | 404
//   PUT    -> 201 + X-KV-Version (the version now stored)
//   DELETE -> 202 + X-KV-Version
//   errors -> 400 (bad request), 507 (disk full), 500 (anything else), with a reason.
// Writes must carry X-KV-Version (the coordinator's version); it is observed by the HLC.
#pragma once
#include <string>

#include "cluster/local_replica.h"
#include "cluster/peer.h"
#include "common/slots.h"
#include "http/http.h"

namespace kv::net {

class HttpReplicaServer {
 public:
  explicit HttpReplicaServer(cluster::LocalReplica* local) : local_(local), waiter_(this) {}
  // A replica request: X-KV-Internal: 1.
  static bool IsReplicaRequest(const Request& req) { return req.KvHeader("internal") == "1"; }
  // Executes `op` on `key` (already validated by the route) and answers `r`.
  void Handle(const Request& req, cluster::PeerOp op, const std::string& key, Responder r);

 private:
  struct Pending {
    Responder responder;
    cluster::PeerOp op = cluster::PeerOp::kPut;
  };
  void OnAnswer(uint64_t slot, cluster::PeerResponse&& resp);

  cluster::LocalReplica* local_;
  Slots<Pending> pending_;
  cluster::MemberWaiter<HttpReplicaServer, &HttpReplicaServer::OnAnswer> waiter_;
};

}  // namespace kv::net
