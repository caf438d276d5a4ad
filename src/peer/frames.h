// The adapter between the binary peer frames (proto/wire.h) and the coordinator's peer types
// (cluster/peer.h): the one place where the two meet, used by both halves of the binary
// transport. Pure functions; views returned point into their argument.
#pragma once
#include <cstdint>
#include <string>

#include "cluster/peer.h"
#include "proto/wire.h"

namespace kv::net {

// The two op enums share their values, so converting is a cast.
static_assert(static_cast<int>(proto::Op::kGet) == static_cast<int>(cluster::PeerOp::kGet) &&
              static_cast<int>(proto::Op::kPut) == static_cast<int>(cluster::PeerOp::kPut) &&
              static_cast<int>(proto::Op::kRemove) == static_cast<int>(cluster::PeerOp::kRemove) &&
              static_cast<int>(proto::Op::kRepairTree) ==
                  static_cast<int>(cluster::PeerOp::kRepairTree) &&
              static_cast<int>(proto::Op::kRepairEntries) ==
                  static_cast<int>(cluster::PeerOp::kRepairEntries) &&
              static_cast<int>(proto::Op::kRepairApply) ==
                  static_cast<int>(cluster::PeerOp::kRepairApply) &&
              static_cast<int>(proto::Op::kHints) == static_cast<int>(cluster::PeerOp::kHints));
inline proto::Op ToProtoOp(cluster::PeerOp op) {
  return static_cast<proto::Op>(op);
}
inline cluster::PeerOp ToPeerOp(proto::Op op) {
  return static_cast<cluster::PeerOp>(op);
}

// A GET/PUT/REMOVE/RANGE/REPAIR_*/HINTS frame as a request (views into the frame, valid as long as
// its views are). Caller guarantees proto::RequestOp(frame.type) holds or frame is a RANGE; any
// other frame reads as a GET.
cluster::PeerRequest ToPeerRequest(const proto::Frame& frame);

// VALUE/TOMBSTONE/ABSENT/STORED/PAGE/REPAIR_DATA -> their kinds (PAGE, REPAIR_DATA: value = the
// body); ERROR_RESPONSE and ERROR -> kError with proto::ErrorText ("<CODE_NAME>: <message>");
// anything else -> kError "unexpected frame <TYPE>".
cluster::PeerResponse ToPeerResponse(const proto::Frame& frame);

// Appends the frame that answers request_id with r: kValue/kTombstone/kAbsent/kStored map to
// their frames, kPage to PAGE; kError becomes an ERROR_RESPONSE with error_code and r.error as the
// message.
void EncodePeerResponse(std::string* out, uint64_t request_id, const cluster::PeerResponse& r,
                        proto::ErrorCode error_code = proto::ErrorCode::kStorageError);

}  // namespace kv::net
