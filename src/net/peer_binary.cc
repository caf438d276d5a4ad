// Placeholder until the binary transport lands: every request fails as a replica error and
// adopted connections are closed. --peer-protocol http is the working mode meanwhile.
#include "net/peer_binary.h"

namespace kv::net {

namespace {
class FailingTransport final : public cluster::PeerTransport {
 public:
  void Send(const cluster::PeerRequest&, uint64_t, cluster::PeerWaiter* w, uint64_t c) override {
    cluster::PeerResponse r;
    r.error = "binary peer protocol not available";
    w->OnPeerResponse(c, std::move(r));
  }
  size_t in_flight() const override { return 0; }
  void Close() override {}
};

class ClosingServer final : public BinaryPeerServer {
 public:
  void Adopt(uv_tcp_t* h, std::string_view) override {
    uv_close(reinterpret_cast<uv_handle_t*>(h),
             [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
  }
  void Close() override {}
};
}  // namespace

std::unique_ptr<cluster::PeerTransport> MakeBinaryPeerTransport(uv_loop_t*,
                                                                const cluster::PeerEndpoint&) {
  return std::make_unique<FailingTransport>();
}

std::unique_ptr<BinaryPeerServer> MakeBinaryPeerServer(uv_loop_t*, const BinaryServerContext&) {
  return std::make_unique<ClosingServer>();
}

}  // namespace kv::net
