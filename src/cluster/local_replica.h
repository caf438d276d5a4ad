// Executes one replica request against the local engine. Shared by every way a replica request
// arrives (the coordinator's own replica, HTTP internal requests, binary peer frames), so all of
// them store and answer identically.
#pragma once
#include "cluster/peer.h"
#include "storage/engine.h"

namespace kv::cluster {

// kPut/kRemove -> kStored with the version the engine now holds (or kError with the reason);
// kGet -> kValue / kTombstone / kAbsent. storage_code (if given) receives the engine's code so
// callers can map kNoSpace to 507.
PeerResponse ExecuteLocal(storage::Engine& engine, const PeerRequest& req,
                          storage::Code* storage_code = nullptr);

// The answer to one write of a committed Engine::Write batch that returned `st`: kStored with the
// version the engine now holds, or kError with the reason.
PeerResponse StoredResponse(const storage::Status& st, const storage::Engine::WriteOp& op);

}  // namespace kv::cluster
