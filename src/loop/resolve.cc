#include "loop/resolve.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace kv::net {

bool ParseIpLiteral(std::string_view host, uint16_t port, sockaddr_storage* out) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string h(host);
  *out = sockaddr_storage{};
  return uv_ip4_addr(h.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0 ||
         uv_ip6_addr(h.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
}

NameLookup* NameLookup::Start(uv_loop_t* loop, const std::string& host, uint16_t port, Done done,
                              int* rc) {
  auto* l = new NameLookup;
  l->req_.data = l;
  l->port_ = port;
  l->done_ = std::move(done);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  *rc = uv_getaddrinfo(loop, &l->req_, &NameLookup::OnResolved, host.c_str(), nullptr, &hints);
  if (*rc != 0) {
    delete l;
    return nullptr;
  }
  return l;
}

void NameLookup::Cancel() {
  done_ = nullptr;
  // Only speeds things up when the lookup has not started yet; the callback frees this either way.
  uv_cancel(reinterpret_cast<uv_req_t*>(&req_));
}

void NameLookup::OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* self = static_cast<NameLookup*>(req->data);
  Addresses addrs;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    sockaddr_storage s{};
    std::memcpy(&s, a->ai_addr, std::min<size_t>(a->ai_addrlen, sizeof s));
    if (s.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&s)->sin_port = htons(self->port_);
    } else {
      reinterpret_cast<sockaddr_in6*>(&s)->sin6_port = htons(self->port_);
    }
    addrs.push_back(s);
  }
  if (res != nullptr) uv_freeaddrinfo(res);
  // IPv4 first: a node listens on both where it can, but a name may carry an IPv6 address that
  // this host has no route for.
  std::stable_partition(addrs.begin(), addrs.end(),
                        [](const sockaddr_storage& s) { return s.ss_family == AF_INET; });
  if (status == 0 && addrs.empty()) status = UV_EAI_NONAME;
  Done done = std::move(self->done_);
  delete self;
  if (done) done(status, std::move(addrs));
}

uint64_t ResolveBackoff::Failed(uint64_t now_ms) {
  uint64_t backoff = min_ms_;
  for (uint32_t i = 0; i < failures_ && backoff < max_ms_; ++i) backoff *= 2;
  if (backoff > max_ms_) backoff = max_ms_;
  ++failures_;
  retry_at_ms_ = now_ms + backoff;
  return backoff;
}

std::string RemoteIp(const uv_tcp_t* handle) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(handle, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char buf[64] = "?";
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&ss), buf, sizeof buf);
  }
  return buf;
}

}  // namespace kv::net
