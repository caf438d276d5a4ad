#include "proto/frame_decoder.h"

#include <cstring>
#include <utility>

#include "proto/bytes.h"

namespace kv::proto {

namespace {

// Buffers bigger than this are released once drained, so an idle connection that once carried
// an 8 MiB value does not keep 8 MiB.
constexpr size_t kKeepCapacity = 256u << 10;

// Smallest and largest payload of each frame type in protocol version 2.
struct Bounds {
  size_t min, max;
};

Bounds PayloadBounds(FrameType t) {
  switch (t) {
    case FrameType::kHandshake:
      return {2 + 1 + 8 + kNonceBytes, 2 + kMaxUrlBytes + 8 + kNonceBytes};
    case FrameType::kHandshakeOk:
      return {2 + 1 + 8 + kNonceBytes + 1,
              2 + kMaxUrlBytes + 8 + kNonceBytes + 1 + kMaxProofs * kProofBytes};
    case FrameType::kAuth:
      return {1, 1 + kMaxProofs * kProofBytes};
    case FrameType::kError:
    case FrameType::kErrorResponse:
      return {4, 4 + kMaxMessageBytes};
    case FrameType::kPing:
    case FrameType::kPong:
      return {0, kMaxPingPayloadBytes};
    case FrameType::kGet:
      return {4 + 1, 4 + kMaxKeyBytes};
    case FrameType::kPut:
      return {8 + 4 + 1 + 4, 8 + 4 + kMaxKeyBytes + 4 + kMaxValueBytes};
    case FrameType::kPutExpiring:
      return {8 + 8 + 4 + 1 + 4, 8 + 8 + 4 + kMaxKeyBytes + 4 + kMaxValueBytes};
    case FrameType::kRemove:
      return {8 + 4 + 1, 8 + 4 + kMaxKeyBytes};
    case FrameType::kValue:
      return {8 + 4, 8 + 4 + kMaxValueBytes};
    case FrameType::kValueExpiring:
      return {8 + 8 + 4, 8 + 8 + 4 + kMaxValueBytes};
    case FrameType::kTombstone:
    case FrameType::kStored:
      return {8, 8};
    case FrameType::kAbsent:
      return {0, 0};
    case FrameType::kRange:
      return {4 + 1 + 4 + 4 + 4, 4 + kMaxKeyBytes + 1 + 1 + 4 + kMaxKeyBytes + 4 + 4};
    case FrameType::kRepairTree:
    case FrameType::kRepairEntries:
    case FrameType::kRepairApply:
      return {16, kMaxPayloadBytes};  // at least range + session; the body is checked above
    case FrameType::kHints:
      return {1, kMaxPayloadBytes};  // hint records: cluster/hint_file.h checks each
    case FrameType::kPage:
    case FrameType::kRepairData:
      return {1, kMaxPayloadBytes};
  }
  return {0, 0};
}

bool ServerAccepts(FrameType t) {
  switch (t) {
    case FrameType::kGet:
    case FrameType::kPut:
    case FrameType::kPutExpiring:
    case FrameType::kRemove:
    case FrameType::kRange:
    case FrameType::kRepairTree:
    case FrameType::kRepairEntries:
    case FrameType::kRepairApply:
    case FrameType::kHints:
    case FrameType::kPing:
    case FrameType::kPong:
    case FrameType::kError:
      return true;
    default:
      return false;
  }
}

bool ClientAccepts(FrameType t) {
  switch (t) {
    case FrameType::kValue:
    case FrameType::kValueExpiring:
    case FrameType::kTombstone:
    case FrameType::kAbsent:
    case FrameType::kStored:
    case FrameType::kErrorResponse:
    case FrameType::kPage:
    case FrameType::kRepairData:
    case FrameType::kPing:
    case FrameType::kPong:
    case FrameType::kError:
      return true;
    default:
      return false;
  }
}

std::string Num(uint64_t v) {
  return std::to_string(v);
}

}  // namespace

FrameDecoder::FrameDecoder(Role role)
    : role_(role), state_(role == Role::kServer ? State::kPreface : State::kHandshakeReply) {}

void FrameDecoder::Feed(const char* data, size_t n) {
  just_returned_ = false;
  if (state_ == State::kFailed) {
    std::string().swap(buf_);  // views of earlier frames end here, as documented
    pos_ = 0;
    return;
  }
  if (pos_ > 0) {
    if (pos_ == buf_.size()) {
      if (buf_.capacity() > kKeepCapacity) {
        std::string().swap(buf_);
      } else {
        buf_.clear();
      }
    } else {
      buf_.erase(0, pos_);
    }
    pos_ = 0;
  }
  // The incomplete frame Next() last saw now starts at offset 0.
  if (pending_frame_ > buf_.size() + n) buf_.reserve(pending_frame_);
  pending_frame_ = 0;
  buf_.append(data, n);
}

DecodeResult FrameDecoder::Fail(ErrorCode code, std::string reason) {
  state_ = State::kFailed;
  error_.code = code;
  error_.reason = std::move(reason);
  // The buffer is released by the next Feed(): frames returned earlier may still be in use.
  return DecodeResult::kError;
}

bool FrameDecoder::CheckHeader(uint8_t raw_type, uint8_t flags, uint64_t request_id,
                               uint32_t length) {
  if (length > kMaxPayloadBytes) {
    Fail(ErrorCode::kFrameTooLarge,
         "frame payload length " + Num(length) + " exceeds the maximum " + Num(kMaxPayloadBytes));
    return false;
  }
  if (!IsKnownFrameType(raw_type)) {
    Fail(ErrorCode::kUnknownFrameType, "unknown frame type " + Num(raw_type));
    return false;
  }
  const auto type = static_cast<FrameType>(raw_type);
  const char* name = FrameTypeName(type);  // a string only when a frame fails
  const bool in_handshake =
      state_ == State::kHandshake || state_ == State::kAuth || state_ == State::kHandshakeReply;
  const ErrorCode malformed = in_handshake ? ErrorCode::kBadHandshake : ErrorCode::kMalformedFrame;
  if (flags != 0) {
    Fail(malformed, std::string(name) + " frame has non-zero flags " + Num(flags));
    return false;
  }
  switch (state_) {
    case State::kHandshake:
      if (type != FrameType::kHandshake) {
        Fail(ErrorCode::kBadHandshake, "expected HANDSHAKE, got " + std::string(name));
        return false;
      }
      break;
    case State::kAuth:
      if (type != FrameType::kAuth && type != FrameType::kError) {
        Fail(ErrorCode::kBadHandshake, "expected AUTH, got " + std::string(name));
        return false;
      }
      break;
    case State::kHandshakeReply:
      if (type != FrameType::kHandshakeOk && type != FrameType::kError) {
        Fail(ErrorCode::kBadHandshake, "expected HANDSHAKE_OK or ERROR, got " + std::string(name));
        return false;
      }
      break;
    default:
      if (!(role_ == Role::kServer ? ServerAccepts(type) : ClientAccepts(type))) {
        Fail(ErrorCode::kUnexpectedFrame,
             std::string(name) + " frame not allowed " +
                 (role_ == Role::kServer ? "from a connecting node" : "from an accepting node") +
                 " after the handshake");
        return false;
      }
      break;
  }
  if ((type == FrameType::kHandshake || type == FrameType::kHandshakeOk ||
       type == FrameType::kAuth) &&
      request_id != 0) {
    Fail(ErrorCode::kBadHandshake, std::string(name) + " frame has non-zero request id");
    return false;
  }
  const Bounds b = PayloadBounds(type);
  if (length > b.max) {
    Fail(in_handshake ? ErrorCode::kBadHandshake : ErrorCode::kFrameTooLarge,
         std::string(name) + " payload length " + Num(length) + " exceeds its maximum " +
             Num(b.max));
    return false;
  }
  if (length < b.min) {
    Fail(malformed, std::string(name) + " payload length " + Num(length) +
                        " is below its minimum " + Num(b.min));
    return false;
  }
  return true;
}

bool FrameDecoder::ParsePayload(FrameType type, const char* p, uint32_t length, Frame* f) {
  Reader r(p, length);
  const char* name = FrameTypeName(type);  // a string only when a frame fails
  const ErrorCode malformed =
      (type == FrameType::kHandshake || type == FrameType::kHandshakeOk || type == FrameType::kAuth)
          ? ErrorCode::kBadHandshake
          : ErrorCode::kMalformedFrame;
  auto bad = [&](const std::string& what) {
    Fail(malformed, std::string(name) + " payload: " + what);
    return false;
  };
  // A length-prefixed field whose length must lie in [min, max] and fit in the payload.
  auto field = [&](size_t len, size_t min, size_t max, const char* what, std::string_view* out) {
    if (len < min || len > max) {
      return bad(std::string(what) + " length " + Num(len) + " outside " + Num(min) + ".." +
                 Num(max));
    }
    if (!r.Bytes(len, out)) {
      return bad(std::string(what) + " length " + Num(len) + " overruns the payload");
    }
    return true;
  };
  // u8 n, then n proofs of kProofBytes.
  auto proofs = [&]() {
    uint8_t n = 0;
    if (!r.U8(&n)) return bad("missing proof count");
    if (n > kMaxProofs) return bad("proof count " + Num(n) + " over " + Num(kMaxProofs));
    if (!r.Bytes(n * kProofBytes, &f->proofs)) return bad("proofs overrun the payload");
    return true;
  };
  // An EXPIRING frame's expiry: never 0 (that would mean "never expires": a plain frame).
  auto expiry = [&]() {
    r.U64(&f->expires_ms);
    return f->expires_ms != 0 || bad("expiry is 0");
  };
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  switch (type) {
    case FrameType::kHandshake:
    case FrameType::kHandshakeOk:
      if (!r.U16(&u16) || !field(u16, 1, kMaxUrlBytes, "url", &f->url)) return false;
      if (!r.U64(&f->fingerprint)) return bad("missing fingerprint");
      if (!r.Bytes(kNonceBytes, &f->nonce)) return bad("missing nonce");
      if (type == FrameType::kHandshakeOk && !proofs()) return false;
      break;
    case FrameType::kAuth:
      if (!proofs()) return false;
      break;
    case FrameType::kError:
    case FrameType::kErrorResponse:
      r.U16(&u16);
      f->code = static_cast<ErrorCode>(u16);
      if (!r.U16(&u16) || !field(u16, 0, kMaxMessageBytes, "message", &f->message)) return false;
      break;
    case FrameType::kPing:
    case FrameType::kPong:
      r.Bytes(length, &f->payload);
      break;
    case FrameType::kGet:
      if (!r.U32(&u32) || !field(u32, 1, kMaxKeyBytes, "key", &f->key)) return false;
      break;
    case FrameType::kPut:
    case FrameType::kPutExpiring:
      r.U64(&f->version);
      if (type == FrameType::kPutExpiring && !expiry()) return false;
      if (!r.U32(&u32) || !field(u32, 1, kMaxKeyBytes, "key", &f->key)) return false;
      if (!r.U32(&u32)) return bad("missing value length");
      if (!field(u32, 0, kMaxValueBytes, "value", &f->value)) return false;
      break;
    case FrameType::kRemove:
      r.U64(&f->version);
      if (!r.U32(&u32) || !field(u32, 1, kMaxKeyBytes, "key", &f->key)) return false;
      break;
    case FrameType::kValue:
    case FrameType::kValueExpiring:
      r.U64(&f->version);
      if (type == FrameType::kValueExpiring && !expiry()) return false;
      if (!r.U32(&u32) || !field(u32, 0, kMaxValueBytes, "value", &f->value)) return false;
      break;
    case FrameType::kTombstone:
    case FrameType::kStored:
      r.U64(&f->version);
      break;
    case FrameType::kAbsent:
      break;
    case FrameType::kRange: {
      uint8_t has_end = 0;
      // Every read that fails names itself (a long start can leave no room for what follows).
      if (!r.U32(&u32)) return bad("missing start length");
      if (!field(u32, 0, kMaxKeyBytes + 1, "start", &f->key)) return false;
      if (!r.U8(&has_end) || has_end > 1) return bad("has_end must be 0 or 1");
      f->has_end = has_end == 1;
      if (!r.U32(&u32)) return bad("missing end length");
      if (!field(u32, 0, f->has_end ? kMaxKeyBytes : 0, "end", &f->end)) return false;
      if (!r.U32(&f->max_keys) || f->max_keys == 0) return bad("max_keys must be positive");
      if (!r.U32(&f->max_bytes) || f->max_bytes == 0) return bad("max_bytes must be positive");
      break;
    }
    case FrameType::kPage:  // the page: common/range_page.h decodes and checks it
    case FrameType::kRepairTree:
    case FrameType::kRepairEntries:
    case FrameType::kRepairApply:
    case FrameType::kRepairData:
    case FrameType::kHints:
      r.Bytes(length, &f->value);  // the body: proto/repair.h or cluster/hint_file.h checks it
      break;
  }
  if (r.left() != 0) return bad(Num(r.left()) + " trailing bytes");
  return true;
}

bool FrameDecoder::TakeFrame(std::string* out, size_t* payload_at) {
  if (!just_returned_) return false;
  just_returned_ = false;
  std::string rest(buf_, pos_);
  buf_.resize(pos_);
  out->swap(buf_);
  buf_.swap(rest);
  *payload_at = last_at_ + kFrameHeaderSize;
  pos_ = 0;
  return true;
}

DecodeResult FrameDecoder::Next(Frame* frame) {
  just_returned_ = false;
  if (state_ == State::kFailed) return DecodeResult::kError;
  if (state_ == State::kPreface) {
    const size_t avail = buffered();
    const char* p = buf_.data() + pos_;
    const size_t m = avail < kPrefaceMagicSize ? avail : kPrefaceMagicSize;
    if (std::memcmp(p, kPrefaceMagic, m) != 0) {
      return Fail(ErrorCode::kBadPreface, "connection does not start with the peer preface");
    }
    if (avail < kPrefaceSize) return DecodeResult::kNeedMore;
    const auto version = static_cast<uint8_t>(p[kPrefaceMagicSize]);
    if (version != kProtocolVersion) {
      return Fail(ErrorCode::kUnsupportedVersion,
                  "protocol version " + Num(version) +
                      " not supported; supported: " + Num(kProtocolVersion));
    }
    pos_ += kPrefaceSize;
    state_ = State::kHandshake;
  }
  const size_t avail = buffered();
  if (state_ == State::kPeerError && avail > 0) {
    return Fail(ErrorCode::kUnexpectedFrame, "bytes after an ERROR frame");
  }
  if (avail < kFrameHeaderSize) return DecodeResult::kNeedMore;
  const char* p = buf_.data() + pos_;
  const uint32_t length = GetU32(p);
  const auto raw_type = static_cast<uint8_t>(p[4]);
  const auto flags = static_cast<uint8_t>(p[5]);
  const uint64_t request_id = GetU64(p + 6);
  if (!CheckHeader(raw_type, flags, request_id, length)) return DecodeResult::kError;
  if (avail < kFrameHeaderSize + length) {
    pending_frame_ = kFrameHeaderSize + length;  // Feed() reserves it: one growth per frame
    return DecodeResult::kNeedMore;
  }
  const auto type = static_cast<FrameType>(raw_type);
  Frame f;
  f.type = type;
  f.request_id = request_id;
  if (!ParsePayload(type, p + kFrameHeaderSize, length, &f)) {
    return DecodeResult::kError;
  }
  last_at_ = pos_;
  just_returned_ = true;
  pos_ += kFrameHeaderSize + length;
  if (type == FrameType::kError) {
    state_ = State::kPeerError;
  } else if (state_ == State::kHandshake) {
    state_ = State::kAuth;
  } else if (state_ == State::kAuth || state_ == State::kHandshakeReply) {
    state_ = State::kFrames;
  }
  *frame = f;
  return DecodeResult::kFrame;
}

bool FrameDecoder::Finish() {
  if (state_ == State::kFailed) return false;
  if (buffered() > 0) {
    Fail(ErrorCode::kTruncatedFrame,
         "connection closed with " + Num(buffered()) + " bytes of an incomplete frame");
    return false;
  }
  return true;
}

}  // namespace kv::proto
