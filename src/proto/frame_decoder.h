// Incremental, validating decoder for one direction of a binary peer connection (bytes in, frames
// out). Caller: one thread; drains Next() after each Feed(); uses a Frame's views only until Feed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "proto/wire.h"

namespace kv::proto {

enum class DecodeResult { kFrame, kNeedMore, kError };

// State machine: server side expects preface -> HANDSHAKE -> AUTH -> frames; client side expects
// HANDSHAKE_OK or ERROR -> frames. Any violation is a ProtocolError and the decoder stays failed.
// A length prefix is checked against its type's limits before the payload is buffered, so the
// buffer holds at most one frame plus what a single Feed() brought. Next() never moves the
// buffer: views of several frames pulled in a row stay valid together until the next Feed().
class FrameDecoder {
 public:
  // kServer decodes what a connecting peer sends (it accepted the connection); kClient decodes
  // what the accepting node sends back.
  enum class Role : uint8_t { kServer, kClient };

  explicit FrameDecoder(Role role);

  // Appends bytes received from the network. Ignored once the decoder has failed.
  void Feed(const char* data, size_t n);
  // kFrame: *frame holds the next frame. kNeedMore: no complete frame buffered. kError: the
  // stream violated the protocol; error() says how; every later call returns kError again.
  DecodeResult Next(Frame* frame);
  // Hands over the buffer that holds the frame the last Next() returned, instead of the caller
  // copying a large payload out of it (PAGE): *out ends with the payload, which starts at
  // *payload_at; bytes received after the frame stay buffered here (at most one Feed's worth is
  // copied). Only right after Next() returned kFrame (else false, nothing moved). Views of every
  // frame returned before point into *out afterwards.
  bool TakeFrame(std::string* out, size_t* payload_at);
  // The peer closed its side. True if the stream ended on a frame boundary (nothing buffered);
  // else the decoder fails with TRUNCATED_FRAME and this returns false.
  bool Finish();

  bool failed() const { return state_ == State::kFailed; }
  const ProtocolError& error() const { return error_; }
  // True once HANDSHAKE and AUTH (server) or HANDSHAKE_OK (client) have been decoded.
  bool handshake_done() const { return state_ == State::kFrames || state_ == State::kPeerError; }
  // True once the peer sent an ERROR frame: it is closing; nothing may follow.
  bool peer_error() const { return state_ == State::kPeerError; }
  // Bytes received and not yet returned as frames.
  size_t buffered() const { return buf_.size() - pos_; }
  Role role() const { return role_; }

 private:
  enum class State : uint8_t {
    kPreface,
    kHandshake,
    kAuth,  // server: HANDSHAKE seen, AUTH (or ERROR) must come next
    kHandshakeReply,
    kFrames,
    kPeerError,
    kFailed
  };

  DecodeResult Fail(ErrorCode code, std::string reason);
  // Checks a header against the state and the type's payload limits.
  bool CheckHeader(uint8_t type, uint8_t flags, uint64_t request_id, uint32_t length);
  // Parses a complete payload of a type CheckHeader accepted into *frame.
  bool ParsePayload(FrameType type, const char* p, uint32_t length, Frame* frame);

  Role role_;
  State state_;
  ProtocolError error_;
  std::string buf_;
  size_t pos_ = 0;              // start of the first byte not yet consumed
  size_t pending_frame_ = 0;    // size of the incomplete frame at pos_, once its header is known
  bool just_returned_ = false;  // the last Next() returned the frame at [last_at_, pos_)
  size_t last_at_ = 0;
};

}  // namespace kv::proto
