#include "peer/frames.h"

#include "cluster/clock_skew.h"

namespace kv::net {

cluster::PeerRequest ToPeerRequest(const proto::Frame& f) {
  if (f.type == proto::FrameType::kRange) {
    cluster::PeerRequest req{};
    req.op = cluster::PeerOp::kRange;
    req.key = f.key;
    req.end = f.end;
    req.has_end = f.has_end;
    req.max_keys = f.max_keys;
    req.max_bytes = f.max_bytes;
    return req;
  }
  proto::Op op = proto::Op::kGet;
  proto::RequestOp(f.type, &op);
  cluster::PeerRequest req{};
  req.op = ToPeerOp(op);
  req.key = f.key;
  if (op == proto::Op::kPut) {
    req.value = f.value;
    req.expires_ms = f.expires_ms;
  }
  if (proto::HasBody(op)) req.value = f.value;
  if (op == proto::Op::kPut || op == proto::Op::kRemove) req.version = f.version;
  return req;
}

cluster::PeerResponse ToPeerResponse(const proto::Frame& f) {
  cluster::PeerResponse r;
  switch (f.type) {
    case proto::FrameType::kValue:
    case proto::FrameType::kValueExpiring:
      r.kind = cluster::PeerResponse::kValue;
      r.expires_ms = f.expires_ms;
      r.value.assign(f.value);
      break;
    case proto::FrameType::kTombstone:
      r.kind = cluster::PeerResponse::kTombstone;
      break;
    case proto::FrameType::kStored:
      r.kind = cluster::PeerResponse::kStored;
      break;
    case proto::FrameType::kAbsent:
      r.kind = cluster::PeerResponse::kAbsent;
      return r;
    case proto::FrameType::kPage:
      r.kind = cluster::PeerResponse::kPage;
      r.value.assign(f.value);
      return r;
    case proto::FrameType::kRepairData:
      r.kind = cluster::PeerResponse::kRepairData;
      r.value.assign(f.value);
      return r;
    case proto::FrameType::kErrorResponse:
    case proto::FrameType::kError:
      r.kind = cluster::PeerResponse::kError;
      r.error = proto::ErrorText(f);
      if (f.type == proto::FrameType::kErrorResponse && f.code == proto::ErrorCode::kClockSkew) {
        r.clock_skew = true;
        r.skew_ms = cluster::ParseSkewMs(f.message);
      }
      return r;
    default:
      r.kind = cluster::PeerResponse::kError;
      r.error = std::string("unexpected frame ") + proto::FrameTypeName(f.type);
      return r;
  }
  r.version = f.version;  // VALUE, TOMBSTONE and STORED carry one
  return r;
}

void EncodePeerResponse(std::string* out, uint64_t request_id, const cluster::PeerResponse& r,
                        proto::ErrorCode error_code) {
  switch (r.kind) {
    case cluster::PeerResponse::kValue:
      return proto::EncodeValue(out, request_id, r.version, r.value, r.expires_ms);
    case cluster::PeerResponse::kTombstone:
      return proto::EncodeTombstone(out, request_id, r.version);
    case cluster::PeerResponse::kAbsent:
      return proto::EncodeAbsent(out, request_id);
    case cluster::PeerResponse::kStored:
      return proto::EncodeStored(out, request_id, r.version);
    case cluster::PeerResponse::kPage:
      return proto::EncodePage(out, request_id, r.value);
    case cluster::PeerResponse::kRepairData:
      return proto::EncodeRepairData(out, request_id, r.value);
    case cluster::PeerResponse::kError:
    case cluster::PeerResponse::kPong:  // not an answer to a request
      break;
  }
  proto::EncodeErrorResponse(out, request_id, error_code, r.error);
}

}  // namespace kv::net
