// Fixtures shared by the net unit tests: a loop that must close cleanly, a PeerWaiter that
// records every answer, replica request builders, running the loop for a while, a port nothing
// listens on, and stopping a TestHttpServer.
// Single-threaded: everything runs on the test's own loop.
#pragma once
#include <doctest/doctest.h>
#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include "cluster/peer.h"
#include "unit/net_support/test_server.h"

namespace kv::test {

// A test's loop, which also plays the worker's before-poll step: every flush registered with
// Flushed() runs before each poll, as the node's step flushes its transports and servers.
struct Loop {
  uv_loop_t loop;
  uv_prepare_t before_poll;
  std::map<uint64_t, std::function<void()>> flushes;
  uint64_t next_flush = 0;

  Loop() {
    uv_loop_init(&loop);
    uv_prepare_init(&loop, &before_poll);
    before_poll.data = this;
    uv_prepare_start(&before_poll, [](uv_prepare_t* h) {
      auto* self = static_cast<Loop*>(h->data);
      for (auto it = self->flushes.begin(); it != self->flushes.end();) (it++)->second();
    });
    uv_unref(reinterpret_cast<uv_handle_t*>(&before_poll));
  }
  ~Loop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&before_poll), nullptr);
    CHECK(CloseLoop(&loop));
  }
  uint64_t now() { return uv_now(&loop); }

  // An owner of a transport or server whose Flush the loop calls before each poll while it
  // lives (a unique_ptr with the registration attached).
  template <typename T>
  class Flushing {
   public:
    Flushing() = default;
    Flushing(Loop* l, std::unique_ptr<T> p) { Reset(l, std::move(p)); }
    Flushing(Flushing&& o) noexcept : loop_(o.loop_), p_(std::move(o.p_)), id_(o.id_) {
      o.loop_ = nullptr;
    }
    ~Flushing() { reset(); }
    Flushing& operator=(Flushing&& o) noexcept {
      reset();
      loop_ = o.loop_;
      p_ = std::move(o.p_);
      id_ = o.id_;
      o.loop_ = nullptr;
      return *this;
    }
    T* operator->() const { return p_.get(); }
    T& operator*() const { return *p_; }
    T* get() const { return p_.get(); }
    explicit operator bool() const { return p_ != nullptr; }
    void reset() {
      if (loop_ && p_) loop_->flushes.erase(id_);
      p_.reset();
    }

   private:
    void Reset(Loop* l, std::unique_ptr<T> p) {
      loop_ = l;
      p_ = std::move(p);
      id_ = l->next_flush++;
      T* raw = p_.get();
      l->flushes[id_] = [raw] { raw->Flush(); };
    }
    Loop* loop_ = nullptr;
    std::unique_ptr<T> p_;
    uint64_t id_ = 0;
  };
  template <typename T>
  Flushing<T> Flushed(std::unique_ptr<T> p) {
    return Flushing<T>(this, std::move(p));
  }
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
