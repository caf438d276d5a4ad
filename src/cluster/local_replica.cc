#include "cluster/local_replica.h"

namespace kv::cluster {

PeerResponse ExecuteLocal(storage::Engine& engine, const PeerRequest& req,
                          storage::Code* storage_code) {
  PeerResponse resp;
  storage::Status st;
  switch (req.op) {
    case PeerOp::kGet: {
      storage::ReadResult r;
      st = engine.Get(req.key, &r);
      if (st.ok()) {
        resp.version = r.version;
        if (r.kind == storage::ReadResult::kValue) {
          resp.kind = PeerResponse::kValue;
          resp.value = std::move(r.value);
        } else if (r.kind == storage::ReadResult::kTombstone) {
          resp.kind = PeerResponse::kTombstone;
        } else {
          resp.kind = PeerResponse::kAbsent;
        }
      }
      break;
    }
    case PeerOp::kPut:
      st = engine.Put(req.key, req.value, req.version, &resp.version);
      if (st.ok()) resp.kind = PeerResponse::kStored;
      break;
    case PeerOp::kRemove:
      st = engine.Remove(req.key, req.version, &resp.version);
      if (st.ok()) resp.kind = PeerResponse::kStored;
      break;
    default:
      st = storage::Status(storage::Code::kInvalidArgument, "unknown op");
  }
  if (storage_code) *storage_code = st.code();
  if (!st.ok()) {
    resp.kind = PeerResponse::kError;
    resp.error = st.message();
  }
  return resp;
}

PeerResponse StoredResponse(const storage::Status& st, const storage::Engine::WriteOp& op) {
  PeerResponse resp;
  if (st.ok()) {
    resp.kind = PeerResponse::kStored;
    resp.version = op.stored_version;
  } else {
    resp.error = st.message();
  }
  return resp;
}

}  // namespace kv::cluster
