// The cluster fingerprint: one 64-bit value that names a cluster's member list, so two nodes can
// check that they were started with the same --cluster (proto_spec/peer-protocol.md, section 6).
// Used by the ring (cluster::Ring::Fingerprint) and by the binary handshake.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kv {

// XXH3-64 (seed 0) of the URLs sorted bytewise and joined by '\n' (no trailing newline). The
// same for any order of the same URLs; URLs compare byte for byte (no normalisation).
uint64_t ClusterFingerprint(const std::vector<std::string>& cluster_urls);

}  // namespace kv
