// Turns a peer's host (a name, or an IPv4/IPv6 literal, "[::1]" accepted) into socket addresses
// off the request path: literals at once, names with uv_getaddrinfo on libuv's thread pool.
// Caller guarantees: every call on the loop's thread.
#pragma once
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kv::net {

using Addresses = std::vector<sockaddr_storage>;

// A numeric IPv4 or IPv6 address (brackets allowed) with `port` into *out; false for a name.
bool ParseIpLiteral(std::string_view host, uint16_t port, sockaddr_storage* out);

// One name lookup in flight. done(status, addresses) runs once on the loop thread: status 0 with
// at least one address (IPv4 ones first, each with `port`), or a negative uv error. Cancel()
// before that means done never runs. The lookup frees itself after its libuv callback.
class NameLookup {
 public:
  using Done = std::function<void(int status, Addresses addresses)>;
  // nullptr with *rc set (and done never called) if the lookup could not start.
  static NameLookup* Start(uv_loop_t* loop, const std::string& host, uint16_t port, Done done,
                           int* rc);
  void Cancel();

 private:
  NameLookup() = default;
  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  uv_getaddrinfo_t req_;
  uint16_t port_ = 0;
  Done done_;
};

// The back-off after a host name failed to resolve (it may not exist yet while a cluster boots):
// min_ms after the first failure, doubling with each one in a row up to max_ms. Loop thread.
class ResolveBackoff {
 public:
  explicit ResolveBackoff(uint64_t min_ms = 100, uint64_t max_ms = 5000)
      : min_ms_(min_ms), max_ms_(max_ms) {}
  // A failure at now_ms; returns how long the back-off it starts lasts.
  uint64_t Failed(uint64_t now_ms);
  void Succeeded() { failures_ = 0; }
  bool Waiting(uint64_t now_ms) const { return now_ms < retry_at_ms_; }

 private:
  uint64_t min_ms_, max_ms_;
  uint32_t failures_ = 0;  // in a row
  uint64_t retry_at_ms_ = 0;
};

// The IP address of the other end of a TCP handle ("?" if unknown).
std::string RemoteIp(const uv_tcp_t* handle);

}  // namespace kv::net
