// The binary peer protocol over libuv (proto_spec/peer-protocol.md): the client transport, one
// per (loop thread, peer), and the server side that serves peers' connections on this loop.
// Everything runs on the owning loop thread.
#pragma once
#include <uv.h>

#include <memory>
#include <string_view>

#include "cluster/hlc.h"
#include "cluster/peer.h"
#include "cluster/ring.h"
#include "storage/engine.h"

namespace kv::net {

std::unique_ptr<cluster::PeerTransport> MakeBinaryPeerTransport(uv_loop_t* loop,
                                                                const cluster::PeerEndpoint& ep);

struct BinaryServerContext {
  storage::Engine* engine = nullptr;
  const cluster::Ring* ring = nullptr;  // for the handshake: peer URL in ring, same fingerprint
  size_t self_index = 0;
  cluster::Hlc* hlc = nullptr;          // observes the versions of incoming writes
};

class BinaryPeerServer {
 public:
  virtual ~BinaryPeerServer() = default;
  // Takes ownership of an accepted connection (allocated with new, reading stopped) whose first
  // bytes (`first_bytes`, already read) begin with the preface.
  virtual void Adopt(uv_tcp_t* handle, std::string_view first_bytes) = 0;
  // Closes every adopted connection (shutdown).
  virtual void Close() = 0;
};

std::unique_ptr<BinaryPeerServer> MakeBinaryPeerServer(uv_loop_t* loop,
                                                       const BinaryServerContext& ctx);

}  // namespace kv::net
