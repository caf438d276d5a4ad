#include "peer/http_replica.h"

#include <llhttp.h>
#include <time.h>

#include "cluster/clock_skew.h"
#include "common/decimal.h"
#include "http/url.h"
#include "peer/auth_failures.h"

namespace kv::net {

bool HttpReplicaServer::Authenticated(const Request& req, const Responder& r) const {
  if (keys_ == nullptr || !keys_->enabled()) return true;
  const char* method = req.method == HTTP_PUT      ? "PUT"
                       : req.method == HTTP_DELETE ? "DELETE"
                       : req.method == HTTP_POST   ? "POST"
                                                   : "GET";
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  const uint64_t now_ms =
      static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  const std::optional<std::string_view> auth = req.KvHeader("auth");
  const proto::auth::Verdict v = proto::auth::VerifyHttpAuth(
      *keys_, auth.has_value(), auth.value_or(std::string_view()),
      proto::auth::HttpMessage{method, req.target, req.KvHeader("version").value_or(""), req.body},
      now_ms);
  if (v == proto::auth::Verdict::kOk) return true;
  AuthFailure kind = AuthFailure::kHttpMismatch;
  if (v == proto::auth::Verdict::kMissing) kind = AuthFailure::kHttpMissing;
  if (v == proto::auth::Verdict::kMalformed) kind = AuthFailure::kHttpMalformed;
  if (v == proto::auth::Verdict::kStale) kind = AuthFailure::kHttpStale;
  NoteAuthFailure(kind, r.RemoteIp(), std::string(method) + " " + req.target);
  return false;
}

void HttpReplicaServer::Handle(const Request& req, cluster::PeerOp op, const std::string& key,
                               int has_expires, std::string_view expires, Responder r) {
  if (!Authenticated(req, r)) return r.Respond(401, "peer request not authenticated\n");
  uint64_t version = 0;
  const std::optional<std::string_view> v = req.KvHeader("version");
  if (v && !ParseU64(*v, &version)) return r.Respond(400, "malformed X-KV-Version\n");
  if (op != cluster::PeerOp::kGet && !v) {
    return r.Respond(400, "internal write without a valid X-KV-Version\n");
  }
  // A PUT of a value that expires: expires=<Unix ms> in the target (covered by the MAC).
  uint64_t expires_ms = 0;
  if (has_expires != 0) {
    if (has_expires < 0 || op != cluster::PeerOp::kPut || !ParseU64(expires, &expires_ms) ||
        expires_ms == 0) {
      return r.Respond(400, "malformed expires\n");
    }
  }
  local_->Execute(cluster::PeerRequest{op, key, req.body, version, expires_ms}, &waiter_,
                  pending_.Put(Pending{r, op}));
}

void HttpReplicaServer::HandleRange(const Request& req, const cluster::PeerRequest& range,
                                    Responder r) {
  if (!Authenticated(req, r)) return r.Respond(401, "peer request not authenticated\n");
  local_->Execute(range, &waiter_, pending_.Put(Pending{r, cluster::PeerOp::kRange}));
}

void HttpReplicaServer::HandleBody(const Request& req, cluster::PeerOp op, Responder r) {
  if (!Authenticated(req, r)) return r.Respond(401, "peer request not authenticated\n");
  local_->Execute(cluster::PeerRequest{op, {}, req.body, 0}, &waiter_,
                  pending_.Put(Pending{r, op}));
}

void HttpReplicaServer::OnAnswer(uint64_t slot, cluster::PeerResponse&& resp) {
  Pending p = pending_.Take(slot);
  const Decimal version(resp.version);
  const std::string_view v = version.view();
  switch (resp.kind) {
    case cluster::PeerResponse::kValue:
      if (resp.expires_ms != 0) {
        return p.responder.Respond(
            200, resp.value,
            {{"X-KV-Version", v}, {"X-KV-Expires", Decimal(resp.expires_ms).view()}});
      }
      return p.responder.Respond(200, resp.value, {{"X-KV-Version", v}});
    case cluster::PeerResponse::kTombstone:
      return p.responder.Respond(404, "", {{"X-KV-Version", v}, {"X-KV-Tombstone", "1"}});
    case cluster::PeerResponse::kAbsent:
      return p.responder.Respond(404, "");
    case cluster::PeerResponse::kPage:
      return p.responder.Respond(200, resp.value, {{"Content-Type", "application/octet-stream"}});
    case cluster::PeerResponse::kStored:
      return p.responder.Respond(p.op == cluster::PeerOp::kPut ? 201 : 202, "",
                                 {{"X-KV-Version", v}});
    case cluster::PeerResponse::kRepairData:
      return p.responder.Respond(200, resp.value, {{"Content-Type", "application/octet-stream"}});
    default:
      if (resp.clock_skew) {
        return p.responder.Respond(cluster::kSkewHttpStatus, "clock skew: " + resp.error + "\n",
                                   {{cluster::kSkewHttpHeader, Decimal(resp.skew_ms).view()}});
      }
      return p.responder.Respond(resp.invalid ? 400 : resp.no_space ? 507 : 500, resp.error + "\n");
  }
}

}  // namespace kv::net
