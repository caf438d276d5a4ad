// Fixtures shared by the net unit tests: a loop that must close cleanly, a PeerWaiter that
// records every answer, replica request builders, running the loop for a while, a port nothing
// listens on, and stopping a TestHttpServer.
// Single-threaded: everything runs on the test's own loop.
#pragma once
#include <doctest/doctest.h>
#include <uv.h>

#include <functional>
#include <map>
#include <string_view>
#include <vector>

#include "cluster/peer.h"
#include "unit/net/test_server.h"

namespace kv::test {

struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  ~Loop() { CHECK(CloseLoop(&loop)); }
  uint64_t now() { return uv_now(&loop); }
};

// Records every response per cookie; `then` runs after recording (may re-enter the transport).
struct Collector : cluster::PeerWaiter {
  std::map<uint64_t, std::vector<cluster::PeerResponse>> got;
  size_t count = 0;
  std::function<void(uint64_t, const cluster::PeerResponse&)> then;

  void OnPeerResponse(uint64_t cookie, cluster::PeerResponse&& r) override {
    ++count;
    auto& v = got[cookie];
    v.push_back(std::move(r));
    if (then) then(cookie, v.back());
  }
  const cluster::PeerResponse& one(uint64_t cookie) {
    REQUIRE(got.count(cookie) == 1);
    REQUIRE(got[cookie].size() == 1);
    return got[cookie][0];
  }
  bool each_once() const {
    for (auto& [k, v] : got) {
      if (v.size() != 1) return false;
    }
    return true;
  }
};

// A port on 127.0.0.1 nothing listens on (bound, then closed).
inline uint16_t DeadPort(uv_loop_t* loop) {
  uv_tcp_t t;
  uv_tcp_init(loop, &t);
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  REQUIRE(uv_tcp_bind(&t, reinterpret_cast<const sockaddr*>(&addr), 0) == 0);
  sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&t, reinterpret_cast<sockaddr*>(&bound), &len);
  bool closed = false;
  t.data = &closed;
  uv_close(reinterpret_cast<uv_handle_t*>(&t),
           [](uv_handle_t* h) { *static_cast<bool*>(h->data) = true; });
  REQUIRE(RunUntil(loop, [&] { return closed; }));
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

inline cluster::PeerRequest Get(std::string_view key) {
  return cluster::PeerRequest{cluster::PeerOp::kGet, key, {}, 0};
}
inline cluster::PeerRequest Put(std::string_view key, std::string_view value, uint64_t v) {
  return cluster::PeerRequest{cluster::PeerOp::kPut, key, value, v};
}
inline cluster::PeerRequest Remove(std::string_view key, uint64_t v) {
  return cluster::PeerRequest{cluster::PeerOp::kRemove, key, {}, v};
}

// Runs the loop for `ms` of loop time (to step past a documented backoff window).
inline void RunFor(uv_loop_t* loop, uint64_t ms) {
  bool fired = false;
  uv_timer_t t;
  uv_timer_init(loop, &t);
  t.data = &fired;
  uv_timer_start(
      &t, [](uv_timer_t* h) { *static_cast<bool*>(h->data) = true; }, ms, 0);
  while (!fired) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
}

inline void StopServer(uv_loop_t* loop, TestHttpServer* s) {
  s->Stop();
  CHECK(RunUntil(loop, [&] { return s->stopped(); }));
}

}  // namespace kv::test
