// The bound on how far ahead of a replica's clock a write's version may be
// (--max-clock-skew-ms): the rule, the refusal's message and its parsing, shared by the replica
// that refuses (LocalReplica) and the transports that carry the refusal back to the coordinator.
// Pure functions. proto_spec/peer-protocol.md 1.2 specifies the rule and why the default is what
// it is.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "common/version.h"

namespace kv::cluster {

// Default --max-clock-skew-ms: far above what NTP keeps nodes within (well under 1 ms on a LAN)
// and above the clock steps NTP daemons make (ntpd steps past 128 ms, chrony's usual makestep 1 s),
// so a healthy node is never refused; low enough that a forged or bad-clock version pins a key
// for at most 2 s and drags no replica's clock further ahead than that.
inline constexpr uint64_t kDefaultMaxClockSkewMs = 2000;

// How far (in ms, rounded up) version's time is ahead of wall_us, when it is more than max_ms
// ahead: then the replica refuses the write. 0 when it is within the bound, or max_ms is 0 (off).
// Both version layouts are decoded by version::Micros (a legacy version by its ms).
inline uint64_t SkewRefusalMs(uint64_t version, uint64_t wall_us, uint64_t max_ms) {
  if (max_ms == 0) return 0;
  const uint64_t us = version::Micros(version);
  if (us <= wall_us || us - wall_us <= max_ms * 1000) return 0;
  return (us - wall_us + 999) / 1000;
}

// The refusal's text (binary ERROR_RESPONSE CLOCK_SKEW message, HTTP 422 body): it starts with
// the skew in ms, which ParseSkewMs reads back.
inline std::string SkewMessage(uint64_t ahead_ms, uint64_t max_ms) {
  return std::to_string(ahead_ms) + " ms ahead of the replica's clock (limit " +
         std::to_string(max_ms) + " ms, --max-clock-skew-ms)";
}

// Over HTTP (an internal write), a refusal answers this status, with the skew in this header and
// SkewMessage as the body; over the binary protocol it is ERROR_RESPONSE CLOCK_SKEW (105) with
// SkewMessage as the message.
inline constexpr int kSkewHttpStatus = 422;
inline constexpr char kSkewHttpHeader[] = "X-KV-Clock-Skew-Ms";

// The leading decimal number of a refusal's text (0 if none).
inline uint64_t ParseSkewMs(std::string_view text) {
  uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) break;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

}  // namespace kv::cluster
