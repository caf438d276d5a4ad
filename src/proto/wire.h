// Wire format of the binary peer protocol (proto_spec/peer-protocol.md): limits, types, codes,
// preface sniffing and encoders. Caller keeps keys/values/URLs within the k*Bytes limits.
// A leaf: it knows frames and bytes only; net/peer_frames.h maps them to the cluster's types.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kv::proto {

// ---- limits and layout (all integers on the wire are big-endian) -----------------------------
// Version 2 (issue 18): HANDSHAKE / HANDSHAKE_OK carry nonces and proofs, AUTH follows.
inline constexpr uint8_t kProtocolVersion = 2;
// 0x00 then ASCII "KVPEER": a NUL can never begin an HTTP request, so byte 0 tells them apart.
inline constexpr char kPrefaceMagic[] = {'\0', 'K', 'V', 'P', 'E', 'E', 'R'};
inline constexpr size_t kPrefaceMagicSize = sizeof(kPrefaceMagic);  // 7
inline constexpr size_t kPrefaceSize = kPrefaceMagicSize + 1;       // magic + version byte

// Frame header: u32 payload length | u8 type | u8 flags (0) | u64 request id.
inline constexpr size_t kFrameHeaderSize = 14;
inline constexpr size_t kMaxKeyBytes = 64u << 10;   // 65536
inline constexpr size_t kMaxValueBytes = 8u << 20;  // 8388608
inline constexpr size_t kMaxUrlBytes = 2048;
inline constexpr size_t kMaxMessageBytes = 1024;
inline constexpr size_t kMaxPingPayloadBytes = 64;
inline constexpr size_t kNonceBytes = 32;  // HANDSHAKE, HANDSHAKE_OK
inline constexpr size_t kProofBytes = 32;  // one MAC (proto/auth.h)
inline constexpr size_t kMaxProofs = 2;    // one per secret a node holds
// Largest payload a receiver accepts (a PUT with the largest key and value needs 8454160).
inline constexpr size_t kMaxPayloadBytes = kMaxValueBytes + kMaxKeyBytes + 64;  // 8454208
inline constexpr size_t kMaxFrameBytes = kFrameHeaderSize + kMaxPayloadBytes;

enum class FrameType : uint8_t {
  // connection-level
  kHandshake = 0x01,    // client -> server: self URL + cluster fingerprint + client nonce
  kHandshakeOk = 0x02,  // server -> client: server URL + fingerprint + server nonce + proofs
  kError = 0x03,        // either way: fatal connection error, sender closes after it
  kPing = 0x04,         // either way: echo request
  kPong = 0x05,         // either way: echo reply (same request id and payload as the ping)
  kAuth = 0x06,         // client -> server, right after HANDSHAKE_OK: the client's proofs
  // requests (client -> server)
  kGet = 0x10,
  kPut = 0x11,
  kRemove = 0x12,
  kRepairTree = 0x13,     // anti-entropy: hash tree nodes of a range (body: proto/repair.h)
  kRepairEntries = 0x14,  // anti-entropy: the entries of a set of leaves
  kRepairApply = 0x15,    // anti-entropy: entries to store with their own versions
  kPutExpiring = 0x16,    // PUT of a value that expires (TTL): PUT's fields plus its expiry
  kRange = 0x18,          // one page of a key range (cluster-wide range reads)
  kHints = 0x19,          // hinted handoff: hint records to store, each as its replica write
  // responses (server -> client)
  kValue = 0x20,
  kTombstone = 0x21,
  kAbsent = 0x22,
  kStored = 0x23,
  kErrorResponse = 0x24,  // one request failed; the connection stays up
  kRepairData = 0x25,     // the answer to a REPAIR_* request (body: proto/repair.h)
  kValueExpiring = 0x26,  // VALUE of a value that expires: VALUE's fields plus its expiry
  kPage = 0x28,           // the answer to RANGE: a range page (common/range_page.h)
};

// Codes 1..99 are fatal connection errors (ERROR frame, then close); 100.. are request errors
// (ERROR_RESPONSE). Receivers accept codes they do not know and treat them as generic errors.
enum class ErrorCode : uint16_t {
  kBadPreface = 1,
  kUnsupportedVersion = 2,
  kBadHandshake = 3,
  kNotInCluster = 4,
  kClusterMismatch = 5,
  kFrameTooLarge = 6,
  kUnknownFrameType = 7,
  kMalformedFrame = 8,
  kUnexpectedFrame = 9,
  kTruncatedFrame = 10,
  kIdleTimeout = 11,
  kShuttingDown = 12,
  kAuthFailed = 13,
  kStorageError = 100,
  kNoSpace = 101,
  kOverloaded = 102,
  kInvalidRequest = 103,
  kInternal = 104,
  kClockSkew = 105,  // a write's version too far ahead of the replica's clock
};

// "BAD_PREFACE", ... as in the spec; "UNKNOWN" for codes this build does not know.
const char* ErrorCodeName(ErrorCode code);
// "HANDSHAKE", ... ; "UNKNOWN" for other values.
const char* FrameTypeName(FrameType type);
// True for the frame types of the protocol version this build speaks.
bool IsKnownFrameType(uint8_t type);

// The replica operation a request frame carries (GET, PUT, REMOVE or a REPAIR_* request).
enum class Op : uint8_t {
  kGet = 1,
  kPut = 2,
  kRemove = 3,
  kRepairTree = 4,
  kRepairEntries = 5,
  kRepairApply = 6,
  kHints = 8,  // 7 is cluster::PeerOp::kRange, which has a frame of its own
};
// True for the REPAIR_* operations, whose frames carry an opaque body (proto/repair.h).
inline bool IsRepairOp(Op op) {
  return op == Op::kRepairTree || op == Op::kRepairEntries || op == Op::kRepairApply;
}
// True for the operations whose frames carry an opaque body: REPAIR_* and HINTS.
inline bool HasBody(Op op) {
  return IsRepairOp(op) || op == Op::kHints;
}

struct ProtocolError {
  ErrorCode code = ErrorCode::kInternal;
  std::string reason;
};

// One decoded frame. Only the fields of its type are meaningful; the others stay default.
// The string_views point into the FrameDecoder's buffer (see FrameDecoder for their lifetime).
struct Frame {
  FrameType type = FrameType::kError;
  uint64_t request_id = 0;
  uint64_t version = 0;      // PUT, REMOVE, VALUE, TOMBSTONE, STORED
  uint64_t expires_ms = 0;   // PUT_EXPIRING, VALUE_EXPIRING: Unix ms (0 in every other frame)
  uint64_t fingerprint = 0;  // HANDSHAKE, HANDSHAKE_OK
  ErrorCode code{};          // ERROR, ERROR_RESPONSE (may be a value this build does not know)
  std::string_view url;      // HANDSHAKE, HANDSHAKE_OK
  std::string_view key;      // GET, PUT, REMOVE; RANGE: its start (inclusive)
  // PUT, VALUE; PAGE: the page bytes; REPAIR_*: the whole payload (the repair body)
  std::string_view value;
  std::string_view end;      // RANGE, when has_end (exclusive)
  bool has_end = false;      // RANGE
  uint32_t max_keys = 0;     // RANGE
  uint32_t max_bytes = 0;    // RANGE
  std::string_view message;  // ERROR, ERROR_RESPONSE
  std::string_view payload;  // PING, PONG
  std::string_view nonce;    // HANDSHAKE, HANDSHAKE_OK: kNonceBytes
  std::string_view proofs;   // HANDSHAKE_OK, AUTH: n * kProofBytes, n <= kMaxProofs
};

// ---- preface ---------------------------------------------------------------------------------
enum class Sniff { kBinary, kHttp, kNeedMore };
// Classifies the first bytes of an accepted connection. kNeedMore only while data[0..n) is a
// proper prefix of kPrefaceMagic (n == 0 included); kHttp as soon as a byte differs; kBinary
// once the whole magic matched (the version byte is checked by FrameDecoder, which answers an
// unsupported version with an ERROR frame).
Sniff SniffPreface(const char* data, size_t n);
void AppendPreface(std::string* out, uint8_t version = kProtocolVersion);

// ---- encoders (append one frame to *out) -----------------------------------------------------
// Pure and infallible: a frame that breaks a limit is refused by the receiver instead. Messages
// longer than kMaxMessageBytes are cut. Growth of *out is the only allocation.
// nonce: kNonceBytes; proofs: n * kProofBytes (n <= kMaxProofs; empty: no secret).
void EncodeHandshake(std::string* out, std::string_view self_url, uint64_t cluster_fingerprint,
                     std::string_view nonce);
void EncodeHandshakeOk(std::string* out, std::string_view self_url, uint64_t cluster_fingerprint,
                       std::string_view nonce, std::string_view proofs);
void EncodeAuth(std::string* out, std::string_view proofs);
// Connection error: the sender closes the connection right after writing it. request_id names
// the frame that caused it, or 0.
void EncodeError(std::string* out, ErrorCode code, std::string_view message,
                 uint64_t request_id = 0);
void EncodePing(std::string* out, uint64_t request_id, std::string_view payload = {});
void EncodePong(std::string* out, uint64_t request_id, std::string_view payload = {});
// kGet ignores value and version; kRemove ignores value. A kPut with expires_ms != 0 (Unix ms)
// is a PUT_EXPIRING frame. An op with a body (HasBody: REPAIR_*, proto/repair.h; HINTS, hint
// records) sends value as its whole payload and ignores key and version.
void EncodeRequest(std::string* out, uint64_t request_id, Op op, std::string_view key,
                   std::string_view value, uint64_t version, uint64_t expires_ms = 0);
// RANGE: the page of [start, end) (no end when !has_end); start up to kMaxKeyBytes + 1 bytes.
void EncodeRange(std::string* out, uint64_t request_id, std::string_view start,
                 std::string_view end, bool has_end, uint32_t max_keys, uint32_t max_bytes);
size_t RangeFrameSize(std::string_view start, std::string_view end);
void EncodePage(std::string* out, uint64_t request_id, std::string_view page);
// The answers to a request: VALUE (VALUE_EXPIRING with expires_ms != 0), TOMBSTONE, ABSENT,
// STORED or ERROR_RESPONSE.
void EncodeValue(std::string* out, uint64_t request_id, uint64_t version, std::string_view value,
                 uint64_t expires_ms = 0);
void EncodeTombstone(std::string* out, uint64_t request_id, uint64_t version);
void EncodeAbsent(std::string* out, uint64_t request_id);
void EncodeStored(std::string* out, uint64_t request_id, uint64_t version);
// REPAIR_DATA: body is the answer's bytes (proto/repair.h).
void EncodeRepairData(std::string* out, uint64_t request_id, std::string_view body);
void EncodeErrorResponse(std::string* out, uint64_t request_id, ErrorCode code,
                         std::string_view message);
// Encodes any decoded frame back to its bytes (used by tests and the fuzzer).
void EncodeFrame(std::string* out, const Frame& frame);

// Size of the frame EncodeRequest would append (for the client's bytes-in-flight accounting).
size_t RequestFrameSize(Op op, std::string_view key, std::string_view value,
                        uint64_t expires_ms = 0);
// True if a request with this key and value fits the protocol limits.
bool RequestFits(std::string_view key, std::string_view value);
// True if the body of a HasBody(op) request fits its frame (REPAIR_*: at least range and
// session; HINTS: not empty).
bool BodyRequestFits(Op op, std::string_view body);

// ---- helpers for the transport ---------------------------------------------------------------
// True for GET/PUT/PUT_EXPIRING/REMOVE/REPAIR_*/HINTS; *op receives the operation.
bool RequestOp(FrameType type, Op* op);
// The text of an ERROR or ERROR_RESPONSE frame: "<CODE_NAME>: <message>" (": <message>" left out
// when empty; "UNKNOWN <number>" for a code this build does not know).
std::string ErrorText(const Frame& frame);

// Whether to accept a peer's HANDSHAKE (server) or HANDSHAKE_OK (client): nullopt to accept,
// else NOT_IN_CLUSTER (url is not byte-for-byte one of cluster_urls) or CLUSTER_MISMATCH.
// local_fingerprint is kv::ClusterFingerprint (common/fingerprint.h) of this node's cluster.
std::optional<ProtocolError> CheckHandshake(std::string_view peer_url, uint64_t peer_fingerprint,
                                            const std::vector<std::string>& cluster_urls,
                                            uint64_t local_fingerprint);

}  // namespace kv::proto
