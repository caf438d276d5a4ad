// libFuzzer target for the binary peer protocol decoder (src/proto/frame_decoder.h).
// Input: byte 0 picks the role (bit 0: 0 server, 1 client) and the Feed chunk size (bits 1-7,
// 0 = everything at once); the rest is the byte stream. Besides ASan/UBSan findings it checks
// that decoding is exact: the frames decoded re-encode to precisely the bytes consumed, and it
// runs the handshake's proof check on every HANDSHAKE_OK and AUTH (a forged proof never passes).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "proto/auth.h"
#include "proto/frame_decoder.h"
#include "proto/repair.h"
#include "proto/wire.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

// A repair body the repair codec accepts re-encodes to exactly its bytes.
void CheckRepairBody(kv::proto::FrameType type, std::string_view body) {
  namespace p = kv::proto;
  std::string err, again;
  switch (type) {
    case p::FrameType::kRepairTree: {
      p::RepairTreeRequest q;
      if (!p::DecodeRepairTreeRequest(body, &q, &err)) return Require(!err.empty());
      p::EncodeRepairTreeRequest(&again, q);
      break;
    }
    case p::FrameType::kRepairEntries: {
      p::RepairEntriesRequest q;
      if (!p::DecodeRepairEntriesRequest(body, &q, &err)) return Require(!err.empty());
      p::EncodeRepairEntriesRequest(&again, q);
      break;
    }
    case p::FrameType::kRepairApply: {
      p::RepairApplyRequest q;
      if (!p::DecodeRepairApplyRequest(body, &q, &err)) return Require(!err.empty());
      p::EncodeRepairApplyHead(&again, q.range, q.session, static_cast<uint32_t>(q.entries.size()));
      for (const auto& e : q.entries) p::EncodeRepairEntry(&again, e);
      break;
    }
    case p::FrameType::kRepairData: {
      p::RepairData d;
      if (!p::DecodeRepairData(body, &d, &err)) return Require(!err.empty());
      p::EncodeRepairData(&again, d);
      break;
    }
    default:
      return;
  }
  Require(again == body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kv::proto::DecodeResult;
  using kv::proto::FrameDecoder;
  if (size == 0) return 0;
  const auto role = (data[0] & 1) ? FrameDecoder::Role::kClient : FrameDecoder::Role::kServer;
  const size_t chunk = data[0] >> 1;
  const char* in = reinterpret_cast<const char*>(data + 1);
  const size_t n = size - 1;

  FrameDecoder d(role);
  std::string again;  // the decoded frames, encoded again
  bool preface_done = role == FrameDecoder::Role::kClient;
  bool failed = false;
  size_t off = 0;
  kv::proto::Frame f;
  while (off < n && !failed) {
    const size_t take = chunk == 0 ? n - off : std::min(chunk, n - off);
    d.Feed(in + off, take);
    off += take;
    DecodeResult r;
    while ((r = d.Next(&f)) == DecodeResult::kFrame) {
      if (!preface_done) {
        kv::proto::AppendPreface(&again);
        preface_done = true;
      }
      kv::proto::EncodeFrame(&again, f);
      CheckRepairBody(f.type, f.value);
      if (kv::proto::Op op; kv::proto::RequestOp(f.type, &op)) {
        // The typed request encoder agrees with the generic one, and with its size function.
        std::string req;
        kv::proto::EncodeRequest(&req, f.request_id, op, f.key, f.value, f.version, f.expires_ms);
        Require(req.size() == kv::proto::RequestFrameSize(op, f.key, f.value, f.expires_ms));
        Require(again.size() >= req.size() &&
                again.compare(again.size() - req.size(), req.size(), req) == 0);
      } else if (f.type == kv::proto::FrameType::kHandshakeOk ||
                 f.type == kv::proto::FrameType::kAuth) {
        namespace auth = kv::proto::auth;
        static const auth::ClusterKeys keys = [] {
          auth::ClusterKeys k;
          auth::ParseSecrets("fuzz-secret-0123456789", &k);
          return k;
        }();
        const std::string nonce(kv::proto::kNonceBytes, 'n');
        auth::Transcript t{nonce, f.nonce.empty() ? nonce : f.nonce, f.fingerprint, "http://a",
                           f.url.empty() ? "http://b" : f.url};
        const auto who =
            f.type == kv::proto::FrameType::kAuth ? auth::Prover::kClient : auth::Prover::kServer;
        const auth::Verdict v = auth::VerifyProofs(keys, who, t, f.proofs);
        Require(v == (f.proofs.empty() ? auth::Verdict::kMissing : auth::Verdict::kMismatch));
      } else if (f.type == kv::proto::FrameType::kError ||
                 f.type == kv::proto::FrameType::kErrorResponse) {
        Require(!kv::proto::ErrorText(f).empty());
      }
    }
    if (r == DecodeResult::kError) failed = true;
  }
  if (!failed) failed = !d.Finish();
  // Exactness: the re-encoded frames are a prefix of the input, and all of it on success.
  Require(again.size() <= n && std::memcmp(again.data(), in, again.size()) == 0);
  if (!failed) Require(again.size() == n || (again.empty() && n == kv::proto::kPrefaceSize));
  if (failed) {
    Require(d.failed() && !d.error().reason.empty());
    Require(d.Next(&f) == DecodeResult::kError);
  }
  // The sniffer and the server decoder agree on what is not a preface.
  if (role == FrameDecoder::Role::kServer &&
      kv::proto::SniffPreface(in, n) == kv::proto::Sniff::kHttp) {
    Require(failed && d.error().code == kv::proto::ErrorCode::kBadPreface);
  }
  return 0;
}
