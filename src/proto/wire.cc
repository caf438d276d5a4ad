#include "proto/wire.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "proto/bytes.h"

namespace kv::proto {

namespace {

// Appends the header and reserves room for the payload so the frame costs at most one growth.
void PutHeader(std::string* out, FrameType type, uint64_t request_id, size_t payload_len) {
  out->reserve(out->size() + kFrameHeaderSize + payload_len);
  PutU32(out, static_cast<uint32_t>(payload_len));
  PutU8(out, static_cast<uint8_t>(type));
  PutU8(out, 0);  // flags
  PutU64(out, request_id);
}

// HANDSHAKE (no proofs field) or HANDSHAKE_OK (u8 count + proofs).
void PutUrlFrame(std::string* out, FrameType type, std::string_view url, uint64_t fingerprint,
                 std::string_view nonce, std::string_view proofs) {
  const bool ok = type == FrameType::kHandshakeOk;
  PutHeader(out, type, 0, 2 + url.size() + 8 + kNonceBytes + (ok ? 1 + proofs.size() : 0));
  PutU16(out, static_cast<uint16_t>(url.size()));
  out->append(url);
  PutU64(out, fingerprint);
  out->append(nonce.substr(0, kNonceBytes));
  if (nonce.size() < kNonceBytes) out->append(kNonceBytes - nonce.size(), '\0');
  if (ok) {
    PutU8(out, static_cast<uint8_t>(proofs.size() / kProofBytes));
    out->append(proofs);
  }
}

void PutAuthFrame(std::string* out, std::string_view proofs) {
  PutHeader(out, FrameType::kAuth, 0, 1 + proofs.size());
  PutU8(out, static_cast<uint8_t>(proofs.size() / kProofBytes));
  out->append(proofs);
}

void PutCodeFrame(std::string* out, FrameType type, uint64_t request_id, ErrorCode code,
                  std::string_view message) {
  message = message.substr(0, kMaxMessageBytes);
  PutHeader(out, type, request_id, 4 + message.size());
  PutU16(out, static_cast<uint16_t>(code));
  PutU16(out, static_cast<uint16_t>(message.size()));
  out->append(message);
}

void PutVersionFrame(std::string* out, FrameType type, uint64_t request_id, uint64_t version) {
  PutHeader(out, type, request_id, 8);
  PutU64(out, version);
}

void PutValueFrame(std::string* out, uint64_t request_id, uint64_t version, std::string_view value,
                   uint64_t expires_ms) {
  if (expires_ms == 0) {
    PutHeader(out, FrameType::kValue, request_id, 8 + 4 + value.size());
    PutU64(out, version);
  } else {
    PutHeader(out, FrameType::kValueExpiring, request_id, 8 + 8 + 4 + value.size());
    PutU64(out, version);
    PutU64(out, expires_ms);
  }
  PutU32(out, static_cast<uint32_t>(value.size()));
  out->append(value);
}

void PutOpaqueFrame(std::string* out, FrameType type, uint64_t request_id,
                    std::string_view payload) {
  PutHeader(out, type, request_id, payload.size());
  out->append(payload);
}

size_t RequestPayloadSize(Op op, std::string_view key, std::string_view value,
                          uint64_t expires_ms) {
  switch (op) {
    case Op::kGet:
      return 4 + key.size();
    case Op::kPut:
      return (expires_ms != 0 ? 8 : 0) + 8 + 4 + key.size() + 4 + value.size();
    case Op::kRemove:
      return 8 + 4 + key.size();
    case Op::kRepairTree:
    case Op::kRepairEntries:
    case Op::kRepairApply:
    case Op::kHints:
      return value.size();
  }
  return 4 + key.size();
}

size_t RangePayloadSize(std::string_view start, std::string_view end) {
  return 4 + start.size() + 1 + 4 + end.size() + 4 + 4;
}

}  // namespace

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadPreface:
      return "BAD_PREFACE";
    case ErrorCode::kUnsupportedVersion:
      return "UNSUPPORTED_VERSION";
    case ErrorCode::kBadHandshake:
      return "BAD_HANDSHAKE";
    case ErrorCode::kNotInCluster:
      return "NOT_IN_CLUSTER";
    case ErrorCode::kClusterMismatch:
      return "CLUSTER_MISMATCH";
    case ErrorCode::kFrameTooLarge:
      return "FRAME_TOO_LARGE";
    case ErrorCode::kUnknownFrameType:
      return "UNKNOWN_FRAME_TYPE";
    case ErrorCode::kMalformedFrame:
      return "MALFORMED_FRAME";
    case ErrorCode::kUnexpectedFrame:
      return "UNEXPECTED_FRAME";
    case ErrorCode::kTruncatedFrame:
      return "TRUNCATED_FRAME";
    case ErrorCode::kIdleTimeout:
      return "IDLE_TIMEOUT";
    case ErrorCode::kShuttingDown:
      return "SHUTTING_DOWN";
    case ErrorCode::kAuthFailed:
      return "AUTH_FAILED";
    case ErrorCode::kStorageError:
      return "STORAGE_ERROR";
    case ErrorCode::kNoSpace:
      return "NO_SPACE";
    case ErrorCode::kOverloaded:
      return "OVERLOADED";
    case ErrorCode::kInvalidRequest:
      return "INVALID_REQUEST";
    case ErrorCode::kInternal:
      return "INTERNAL";
    case ErrorCode::kClockSkew:
      return "CLOCK_SKEW";
  }
  return "UNKNOWN";
}

const char* FrameTypeName(FrameType type) {
  switch (type) {
    case FrameType::kHandshake:
      return "HANDSHAKE";
    case FrameType::kHandshakeOk:
      return "HANDSHAKE_OK";
    case FrameType::kError:
      return "ERROR";
    case FrameType::kPing:
      return "PING";
    case FrameType::kPong:
      return "PONG";
    case FrameType::kAuth:
      return "AUTH";
    case FrameType::kGet:
      return "GET";
    case FrameType::kPut:
      return "PUT";
    case FrameType::kRemove:
      return "REMOVE";
    case FrameType::kPutExpiring:
      return "PUT_EXPIRING";
    case FrameType::kValue:
      return "VALUE";
    case FrameType::kTombstone:
      return "TOMBSTONE";
    case FrameType::kAbsent:
      return "ABSENT";
    case FrameType::kStored:
      return "STORED";
    case FrameType::kErrorResponse:
      return "ERROR_RESPONSE";
    case FrameType::kValueExpiring:
      return "VALUE_EXPIRING";
    case FrameType::kRange:
      return "RANGE";
    case FrameType::kPage:
      return "PAGE";
    case FrameType::kRepairTree:
      return "REPAIR_TREE";
    case FrameType::kRepairEntries:
      return "REPAIR_ENTRIES";
    case FrameType::kRepairApply:
      return "REPAIR_APPLY";
    case FrameType::kRepairData:
      return "REPAIR_DATA";
    case FrameType::kHints:
      return "HINTS";
  }
  return "UNKNOWN";
}

bool IsKnownFrameType(uint8_t type) {
  return std::string_view(FrameTypeName(static_cast<FrameType>(type))) != "UNKNOWN";
}

Sniff SniffPreface(const char* data, size_t n) {
  const size_t m = std::min(n, kPrefaceMagicSize);
  if (m > 0 && std::memcmp(data, kPrefaceMagic, m) != 0) return Sniff::kHttp;
  return n < kPrefaceMagicSize ? Sniff::kNeedMore : Sniff::kBinary;
}

void AppendPreface(std::string* out, uint8_t version) {
  out->append(kPrefaceMagic, kPrefaceMagicSize);
  PutU8(out, version);
}

void EncodeHandshake(std::string* out, std::string_view self_url, uint64_t cluster_fingerprint,
                     std::string_view nonce) {
  PutUrlFrame(out, FrameType::kHandshake, self_url, cluster_fingerprint, nonce, {});
}

void EncodeHandshakeOk(std::string* out, std::string_view self_url, uint64_t cluster_fingerprint,
                       std::string_view nonce, std::string_view proofs) {
  PutUrlFrame(out, FrameType::kHandshakeOk, self_url, cluster_fingerprint, nonce, proofs);
}

void EncodeAuth(std::string* out, std::string_view proofs) {
  PutAuthFrame(out, proofs);
}

void EncodeError(std::string* out, ErrorCode code, std::string_view message, uint64_t request_id) {
  PutCodeFrame(out, FrameType::kError, request_id, code, message);
}

void EncodePing(std::string* out, uint64_t request_id, std::string_view payload) {
  PutOpaqueFrame(out, FrameType::kPing, request_id, payload);
}

void EncodePong(std::string* out, uint64_t request_id, std::string_view payload) {
  PutOpaqueFrame(out, FrameType::kPong, request_id, payload);
}

void EncodeRequest(std::string* out, uint64_t request_id, Op op, std::string_view key,
                   std::string_view value, uint64_t version, uint64_t expires_ms) {
  switch (op) {
    case Op::kRepairTree:
      return PutOpaqueFrame(out, FrameType::kRepairTree, request_id, value);
    case Op::kRepairEntries:
      return PutOpaqueFrame(out, FrameType::kRepairEntries, request_id, value);
    case Op::kRepairApply:
      return PutOpaqueFrame(out, FrameType::kRepairApply, request_id, value);
    case Op::kHints:
      return PutOpaqueFrame(out, FrameType::kHints, request_id, value);
    case Op::kGet:
      PutHeader(out, FrameType::kGet, request_id, RequestPayloadSize(op, key, value, 0));
      break;
    case Op::kPut:
      PutHeader(out, expires_ms != 0 ? FrameType::kPutExpiring : FrameType::kPut, request_id,
                RequestPayloadSize(op, key, value, expires_ms));
      PutU64(out, version);
      if (expires_ms != 0) PutU64(out, expires_ms);
      break;
    case Op::kRemove:
      PutHeader(out, FrameType::kRemove, request_id, RequestPayloadSize(op, key, value, 0));
      PutU64(out, version);
      break;
  }
  PutU32(out, static_cast<uint32_t>(key.size()));
  out->append(key);
  if (op == Op::kPut) {
    PutU32(out, static_cast<uint32_t>(value.size()));
    out->append(value);
  }
}

void EncodeValue(std::string* out, uint64_t request_id, uint64_t version, std::string_view value,
                 uint64_t expires_ms) {
  PutValueFrame(out, request_id, version, value, expires_ms);
}

void EncodeRange(std::string* out, uint64_t request_id, std::string_view start,
                 std::string_view end, bool has_end, uint32_t max_keys, uint32_t max_bytes) {
  if (!has_end) end = {};
  PutHeader(out, FrameType::kRange, request_id, RangePayloadSize(start, end));
  PutU32(out, static_cast<uint32_t>(start.size()));
  out->append(start);
  PutU8(out, has_end ? 1 : 0);
  PutU32(out, static_cast<uint32_t>(end.size()));
  out->append(end);
  PutU32(out, max_keys);
  PutU32(out, max_bytes);
}

size_t RangeFrameSize(std::string_view start, std::string_view end) {
  return kFrameHeaderSize + RangePayloadSize(start, end);
}

void EncodePage(std::string* out, uint64_t request_id, std::string_view page) {
  PutOpaqueFrame(out, FrameType::kPage, request_id, page);
}

void EncodeTombstone(std::string* out, uint64_t request_id, uint64_t version) {
  PutVersionFrame(out, FrameType::kTombstone, request_id, version);
}

void EncodeAbsent(std::string* out, uint64_t request_id) {
  PutHeader(out, FrameType::kAbsent, request_id, 0);
}

void EncodeStored(std::string* out, uint64_t request_id, uint64_t version) {
  PutVersionFrame(out, FrameType::kStored, request_id, version);
}

void EncodeRepairData(std::string* out, uint64_t request_id, std::string_view body) {
  PutOpaqueFrame(out, FrameType::kRepairData, request_id, body);
}

void EncodeErrorResponse(std::string* out, uint64_t request_id, ErrorCode code,
                         std::string_view message) {
  PutCodeFrame(out, FrameType::kErrorResponse, request_id, code, message);
}

void EncodeFrame(std::string* out, const Frame& f) {
  switch (f.type) {
    case FrameType::kHandshake:
    case FrameType::kHandshakeOk:
      PutUrlFrame(out, f.type, f.url, f.fingerprint, f.nonce, f.proofs);
      return;
    case FrameType::kAuth:
      PutAuthFrame(out, f.proofs);
      return;
    case FrameType::kError:
    case FrameType::kErrorResponse:
      PutCodeFrame(out, f.type, f.request_id, f.code, f.message);
      return;
    case FrameType::kPing:
    case FrameType::kPong:
      PutOpaqueFrame(out, f.type, f.request_id, f.payload);
      return;
    case FrameType::kGet:
      EncodeRequest(out, f.request_id, Op::kGet, f.key, {}, 0);
      return;
    case FrameType::kPut:
    case FrameType::kPutExpiring:
      EncodeRequest(out, f.request_id, Op::kPut, f.key, f.value, f.version, f.expires_ms);
      return;
    case FrameType::kRemove:
      EncodeRequest(out, f.request_id, Op::kRemove, f.key, {}, f.version);
      return;
    case FrameType::kValue:
    case FrameType::kValueExpiring:
      PutValueFrame(out, f.request_id, f.version, f.value, f.expires_ms);
      return;
    case FrameType::kTombstone:
    case FrameType::kStored:
      PutVersionFrame(out, f.type, f.request_id, f.version);
      return;
    case FrameType::kAbsent:
      PutHeader(out, f.type, f.request_id, 0);
      return;
    case FrameType::kRange:
      EncodeRange(out, f.request_id, f.key, f.end, f.has_end, f.max_keys, f.max_bytes);
      return;
    case FrameType::kPage:
      EncodePage(out, f.request_id, f.value);
      return;
    case FrameType::kRepairTree:
    case FrameType::kRepairEntries:
    case FrameType::kRepairApply:
    case FrameType::kRepairData:
    case FrameType::kHints:
      PutOpaqueFrame(out, f.type, f.request_id, f.value);
      return;
  }
}

size_t RequestFrameSize(Op op, std::string_view key, std::string_view value, uint64_t expires_ms) {
  return kFrameHeaderSize + RequestPayloadSize(op, key, value, expires_ms);
}

bool RequestFits(std::string_view key, std::string_view value) {
  return !key.empty() && key.size() <= kMaxKeyBytes && value.size() <= kMaxValueBytes;
}

bool BodyRequestFits(Op op, std::string_view body) {
  return body.size() >= (op == Op::kHints ? 1 : 16) && body.size() <= kMaxPayloadBytes;
}

bool RequestOp(FrameType type, Op* op) {
  switch (type) {
    case FrameType::kGet:
      *op = Op::kGet;
      return true;
    case FrameType::kPut:
    case FrameType::kPutExpiring:
      *op = Op::kPut;
      return true;
    case FrameType::kRemove:
      *op = Op::kRemove;
      return true;
    case FrameType::kRepairTree:
      *op = Op::kRepairTree;
      return true;
    case FrameType::kRepairEntries:
      *op = Op::kRepairEntries;
      return true;
    case FrameType::kRepairApply:
      *op = Op::kRepairApply;
      return true;
    case FrameType::kHints:
      *op = Op::kHints;
      return true;
    default:
      return false;
  }
}

std::string ErrorText(const Frame& f) {
  std::string s = ErrorCodeName(f.code);
  if (s == "UNKNOWN") s += " " + std::to_string(static_cast<uint16_t>(f.code));
  if (!f.message.empty()) {
    s += ": ";
    s.append(f.message);
  }
  return s;
}

std::optional<ProtocolError> CheckHandshake(std::string_view peer_url, uint64_t peer_fingerprint,
                                            const std::vector<std::string>& cluster_urls,
                                            uint64_t local_fingerprint) {
  if (std::find(cluster_urls.begin(), cluster_urls.end(), peer_url) == cluster_urls.end()) {
    return ProtocolError{ErrorCode::kNotInCluster,
                         "peer " + std::string(peer_url) + " is not in this node's cluster"};
  }
  if (peer_fingerprint != local_fingerprint) {
    char buf[96];
    snprintf(buf, sizeof buf, "cluster fingerprint %016llx differs from ours %016llx",
             static_cast<unsigned long long>(peer_fingerprint),
             static_cast<unsigned long long>(local_fingerprint));
    return ProtocolError{ErrorCode::kClusterMismatch, buf};
  }
  return std::nullopt;
}

}  // namespace kv::proto
