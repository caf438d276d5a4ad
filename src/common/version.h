// The layout of a write's u64 version, shared by the cluster's clock (which makes versions) and
// storage (which ages tombstones by them). Pure functions; callers need no other guarantee.
#pragma once
#include <cstdint>

namespace kv::version {

// Current layout (bit 63 = 1):  1 | unix time in microseconds (53 bits) | node id (10 bits).
// Legacy layout (bit 63 = 0), written by binaries before issue 17:
//                               unix time in ms (44 bits) | logical counter (10) | node id (10).
// Legacy versions always have bit 63 clear (their ms stay below 2^43, i.e. before year 2248), so
// every current version is greater than every legacy one. Both are compared as plain u64s.
inline constexpr int kNodeBits = 10;
inline constexpr uint64_t kMaxNode = (uint64_t{1} << kNodeBits) - 1;
inline constexpr uint64_t kCurrentFlag = uint64_t{1} << 63;
inline constexpr uint64_t kMaxMicros = (uint64_t{1} << 53) - 1;  // ~285 years after 1970
inline constexpr int kLegacyMillisShift = 20;

inline constexpr bool IsLegacy(uint64_t v) {
  return (v & kCurrentFlag) == 0;
}

// A version in the current layout. micros must be <= kMaxMicros and node <= kMaxNode.
inline constexpr uint64_t Make(uint64_t micros, uint64_t node) {
  return kCurrentFlag | (micros << kNodeBits) | (node & kMaxNode);
}

// A version in the legacy layout, as old binaries wrote them (tests and documents use it).
inline constexpr uint64_t MakeLegacy(uint64_t ms, uint64_t logical, uint64_t node) {
  return (ms << kLegacyMillisShift) | ((logical & kMaxNode) << kNodeBits) | (node & kMaxNode);
}

// The node id, the low 10 bits in both layouts.
inline constexpr uint64_t Node(uint64_t v) {
  return v & kMaxNode;
}

// The physical time of any version in unix microseconds (a legacy version: its ms * 1000).
inline constexpr uint64_t Micros(uint64_t v) {
  return IsLegacy(v) ? (v >> kLegacyMillisShift) * 1000 : (v & ~kCurrentFlag) >> kNodeBits;
}

// The physical time of any version in unix ms: what tombstone garbage collection ages by.
inline constexpr uint64_t UnixMillis(uint64_t v) {
  return Micros(v) / 1000;
}

}  // namespace kv::version
