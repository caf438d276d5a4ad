// Refused peer authentications (proto_spec section 11), process-wide: counted for /metrics and
// logged at most once per minute per (peer address, reason), so a misconfigured or hostile peer
// that reconnects in a loop cannot flood the log. Thread-safe; refusals are rare, so a mutex.
#pragma once
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "loop/resolve.h"  // RemoteIp

namespace kv::net {

enum class AuthFailure : uint8_t {
  kBinaryMissing,         // a client sent AUTH without a proof
  kBinaryMismatch,        // a client's proofs do not verify
  kBinaryServerMissing,   // a server we dialed sent HANDSHAKE_OK without a proof
  kBinaryServerMismatch,  // a server's proofs do not verify
  kHttpMissing,           // an internal request without X-KV-Auth
  kHttpMalformed,         // X-KV-Auth does not parse
  kHttpStale,             // its time is outside the window
  kHttpMismatch,          // no MAC matches
  kCount,
};
inline constexpr size_t kAuthFailureKinds = static_cast<size_t>(AuthFailure::kCount);

// The metric label: "binary_missing", ..., "http_mismatch".
const char* AuthFailureName(AuthFailure kind);

// Counts one refusal and logs it (WARN) unless this address and reason were logged in the last
// minute. peer: the remote IP (no port, so reconnects share it); detail: what it claimed.
// Returns whether it logged.
bool NoteAuthFailure(AuthFailure kind, std::string_view peer, std::string_view detail);

// Refusals counted since the process started.
uint64_t AuthFailureCount(AuthFailure kind);

}  // namespace kv::net
