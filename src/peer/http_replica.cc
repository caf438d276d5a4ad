#include "peer/http_replica.h"

#include <charconv>

#include "http/url.h"

namespace kv::net {

void HttpReplicaServer::Handle(const Request& req, cluster::PeerOp op, const std::string& key,
                               Responder r) {
  uint64_t version = 0;
  const std::optional<std::string_view> v = req.KvHeader("version");
  if (v && !ParseU64(*v, &version)) return r.Respond(400, "malformed X-KV-Version\n");
  if (op != cluster::PeerOp::kGet && !v) {
    return r.Respond(400, "internal write without a valid X-KV-Version\n");
  }
  local_->Execute(cluster::PeerRequest{op, key, req.body, version}, &waiter_,
                  pending_.Put(Pending{r, op}));
}

void HttpReplicaServer::OnAnswer(uint64_t slot, cluster::PeerResponse&& resp) {
  Pending p = pending_.Take(slot);
  char buf[24];
  const std::string_view v(buf, std::to_chars(buf, buf + sizeof buf, resp.version).ptr - buf);
  switch (resp.kind) {
    case cluster::PeerResponse::kValue:
      return p.responder.Respond(200, resp.value, {{"X-KV-Version", v}});
    case cluster::PeerResponse::kTombstone:
      return p.responder.Respond(404, "", {{"X-KV-Version", v}, {"X-KV-Tombstone", "1"}});
    case cluster::PeerResponse::kAbsent:
      return p.responder.Respond(404, "");
    case cluster::PeerResponse::kStored:
      return p.responder.Respond(p.op == cluster::PeerOp::kPut ? 201 : 202, "",
                                 {{"X-KV-Version", v}});
    default:
      return p.responder.Respond(resp.no_space ? 507 : 500, resp.error + "\n");
  }
}

}  // namespace kv::net
