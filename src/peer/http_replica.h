// The server half of the HTTP peer transport (http_peer.h is the client half): a replica request
// from a peer, `X-KV-Internal: 1` on /v0/entity, executed by this loop's LocalReplica (never
// forwarded) and answered in the internal format the client half parses:
//   GET    -> 200 + X-KV-Version + value | 404 + X-KV-Version + X-KV-Tombstone: 1 | 404
//   PUT    -> 201 + X-KV-Version (the version now stored)
//   DELETE -> 202 + X-KV-Version
//   POST /v0/internal/repair/{tree,entries,apply} -> 200 + the REPAIR_DATA body
//   POST /v0/internal/hints (body: hint records) -> 202 + X-KV-Version (the records stored)
//   errors -> 400 (bad request), 401 (not authenticated), 422 (clock skew), 507 (disk full),
//   500 (anything else), with a reason.
// Writes must carry X-KV-Version (the coordinator's version); it is observed by the HLC.
#pragma once
#include <string>

#include "cluster/local_replica.h"
#include "cluster/peer.h"
#include "common/slots.h"
#include "http/http.h"
#include "proto/auth.h"

namespace kv::net {

class HttpReplicaServer {
 public:
  // keys: the cluster secret's keys (none enabled: requests are not authenticated).
  HttpReplicaServer(cluster::LocalReplica* local, const proto::auth::ClusterKeys* keys)
      : local_(local), keys_(keys), waiter_(this) {}
  // A replica request: X-KV-Internal: 1.
  static bool IsReplicaRequest(const Request& req) { return req.KvHeader("internal") == "1"; }
  // Executes `op` on `key` (already validated by the route) and answers `r`. With a cluster
  // secret the request must carry a valid X-KV-Auth (proto_spec section 11.3), else 401 and
  // nothing runs; refusals are counted and logged (rate-limited, auth_failures.h).
  // has_expires and expires: the target's expires parameter as the route found it (QueryParam's
  // result and decoded value).
  void Handle(const Request& req, cluster::PeerOp op, const std::string& key, int has_expires,
              std::string_view expires, Responder r);
  // A range page request (GET /v0/entities with start, end, max_keys, max_bytes already
  // parsed into `range` by the route): authenticated as above, answered 200 with the page
  // (common/range_page.h) as the body.
  void HandleRange(const Request& req, const cluster::PeerRequest& range, Responder r);
  // A request whose body is the operation (cluster::HasBody: `POST /v0/internal/repair/...`,
  // body as proto/repair.h, answered 200 with the REPAIR_DATA body; `POST /v0/internal/hints`,
  // answered 202), authenticated the same way; 400 for a malformed body.
  void HandleBody(const Request& req, cluster::PeerOp op, Responder r);

 private:
  struct Pending {
    Responder responder;
    cluster::PeerOp op = cluster::PeerOp::kPut;
  };
  void OnAnswer(uint64_t slot, cluster::PeerResponse&& resp);
  bool Authenticated(const Request& req, const Responder& r) const;

  cluster::LocalReplica* local_;
  const proto::auth::ClusterKeys* keys_;
  Slots<Pending> pending_;
  cluster::MemberWaiter<HttpReplicaServer, &HttpReplicaServer::OnAnswer> waiter_;
};

}  // namespace kv::net
