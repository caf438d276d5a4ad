// The loops and listeners (loop/worker.*) with a test service: a new connection's first bytes
// are classified and the socket handed over once, with those bytes; work completed in a timer
// callback is flushed in the same iteration's before-poll step, before the loop polls; past
// --max-connections the service is told; a connection that never says enough is closed.
#include "loop/worker.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "unit/net_support/blocking_client.h"
#include "unit/net_support/net_test_util.h"

namespace kv::net {
namespace {

// Protocols by first byte: 'A' -> 1, 'B' -> 2, 'C' -> 3, '?' -> need more, anything else -> 0.
// Protocol 3 marks its connection dirty, then removes it at once (a connection closed after it
// queued an answer, before the flush): the worker must not flush it. An accepted
// connection is answered "<protocol>:<first bytes>:<over_limit>" and closed, either at once
// (protocol 1) or from a 1 ms timer (protocol 2: completed outside the poll phase), through
// the before-poll step.
class TestService final : public Service {
 public:
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    int accepted = 0;
    bool timer_answer_was_flushed = false;  // checked right after the flush of a timer answer
    bool flushed_after_removal = false;     // a connection flushed after it left the worker
  };

  TestService(Worker& w, Shared* shared) : worker_(w), shared_(shared) {
    uv_timer_init(w.loop(), &timer_);
    timer_.data = this;
    uv_check_init(w.loop(), &after_poll_);
    after_poll_.data = this;
    uv_check_start(&after_poll_,
                   [](uv_check_t* h) { static_cast<TestService*>(h->data)->polls_++; });
    uv_unref(reinterpret_cast<uv_handle_t*>(&after_poll_));
  }

  int Classify(std::string_view first) override {
    for (char c : first) {
      if (c == 'A') return 1;
      if (c == 'B') return 2;
      if (c == 'C') return 3;
      if (c != '?') return 0;
    }
    return kNeedMore;
  }

  void Accept(int protocol, uv_tcp_t* h, std::string_view first, bool over_limit) override {
    {
      std::lock_guard<std::mutex> g(shared_->mu);
      ++shared_->accepted;
    }
    shared_->cv.notify_all();
    auto* c = new Conn(this, h);
    c->answer = std::to_string(protocol) + ":" + std::string(first) + ":" +
                (over_limit ? "over" : "ok") + "\n";
    if (protocol == 3) {
      c->Ready();
      c->Remove();
      removed_.push_back(c);  // kept alive to see whether it is flushed
      return;
    }
    if (protocol != 2) return c->Ready();
    later_ = c;
    uv_timer_start(
        &timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<TestService*>(t->data);
          self->timer_polls_ = self->polls_;
          self->later_->Ready();
          self->later_ = nullptr;
        },
        1, 0);
  }

  void BeforePoll() override {}
  size_t pending() const override { return later_ ? 1 : 0; }
  void Close() override {
    for (Conn* c : removed_) delete c;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&after_poll_), nullptr);
  }

 private:
  // Answers through the worker's flush, then closes.
  struct Conn final : Connection {
    Conn(TestService* s, uv_tcp_t* h) : service(s), handle(h) {
      handle->data = this;
      service->worker_.AddConnection(this);
    }
    void Ready() { service->worker_.MarkDirty(this); }
    // Leaves the worker and closes the socket; the object stays.
    void Remove() {
      removed = true;
      service->worker_.RemoveConnection(this);
      uv_close(reinterpret_cast<uv_handle_t*>(handle),
               [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
    }
    void Flush() override {
      if (removed) {
        std::lock_guard<std::mutex> g(service->shared_->mu);
        service->shared_->flushed_after_removal = true;
        return;
      }
      uv_buf_t b = uv_buf_init(answer.data(), static_cast<unsigned>(answer.size()));
      const int wrote = uv_try_write(reinterpret_cast<uv_stream_t*>(handle), &b, 1);
      if (service->timer_polls_ >= 0) {
        // Flushed in the iteration whose timer phase answered: no poll in between, and the
        // bytes went into the socket in this flush. (Whether the client's socket already holds
        // them is up to the kernel's loopback path, which may defer delivery under load.)
        std::lock_guard<std::mutex> g(service->shared_->mu);
        service->shared_->timer_answer_was_flushed =
            wrote == static_cast<int>(answer.size()) && service->polls_ == service->timer_polls_;
        service->timer_polls_ = -1;
      }
      Abort();
    }
    void Sweep(uint64_t) override {}
    void Drain() override {}
    void Abort() override {
      service->worker_.RemoveConnection(this);
      uv_close(reinterpret_cast<uv_handle_t*>(handle),
               [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
      delete this;
    }
    TestService* service;
    uv_tcp_t* handle;
    std::string answer;
    bool removed = false;
  };

  Worker& worker_;
  Shared* shared_;
  uv_timer_t timer_;
  uv_check_t after_poll_;
  int64_t polls_ = 0;
  int64_t timer_polls_ = -1;
  Conn* later_ = nullptr;
  std::vector<Conn*> removed_;
};

struct Node {
  TestService::Shared shared;
  std::unique_ptr<Server> server;
  uint16_t port = 0;

  explicit Node(uint64_t max_connections = 100, uint64_t first_bytes_timeout_ms = 10000) {
    {
      test::Loop l;
      port = test::DeadPort(&l.loop);
    }
    WorkerOptions o;
    o.port = port;
    o.threads = 1;
    o.max_connections = max_connections;
    o.idle_timeout_ms = 200;  // sweep every 50 ms
    o.first_bytes_timeout_ms = first_bytes_timeout_ms;
    server = std::make_unique<Server>(
        o, [this](Worker& w) { return std::make_unique<TestService>(w, &shared); });
    std::string err;
    REQUIRE_MESSAGE(server->Start(&err), err);
  }
  ~Node() {
    server->Stop();
    server->Wait();
  }
  static std::string ReadAll(test::BlockingClient& c) { return c.ReadToEof(); }
};

TEST_CASE("a connection is classified by its first bytes and handed over once, with them") {
  Node n;
  test::BlockingClient a(n.port);
  a.Send("xyz");
  CHECK(Node::ReadAll(a) == "0:xyz:ok\n");

  test::BlockingClient b(n.port);
  b.Send("??");  // not enough to decide: the worker waits for more and keeps what it read
  b.Send("?A-rest");
  std::string got = Node::ReadAll(b);
  // The service saw every byte read before it decided: the first read ("??") and the next.
  CHECK(got.rfind("1:???A", 0) == 0);
  CHECK(n.shared.accepted == 2);
}

TEST_CASE("work completed in a timer callback is flushed before the loop next polls") {
  Node n;
  test::BlockingClient c(n.port);
  c.Send("B");
  CHECK(Node::ReadAll(c) == "2:B:ok\n");
  std::lock_guard<std::mutex> g(n.shared.mu);
  CHECK(n.shared.timer_answer_was_flushed);
}

TEST_CASE("past max_connections the service is told the connection is over the limit") {
  Node n(1);
  test::BlockingClient first(n.port);
  first.Send("?");  // stays open, unclassified: it counts (accepted before the second)
  test::BlockingClient second(n.port);
  second.Send("A");
  CHECK(Node::ReadAll(second) == "0::over\n");
  first.Send("A");
  CHECK(Node::ReadAll(first) == "1:?A:ok\n");
}

TEST_CASE("a connection removed after it was marked dirty is not flushed") {
  Node n;
  test::BlockingClient c(n.port);
  c.Send("C");
  CHECK(c.ReadToEof().empty());    // closed without an answer
  test::BlockingClient d(n.port);  // a later iteration's flush has run meanwhile
  d.Send("A");
  CHECK(Node::ReadAll(d) == "1:A:ok\n");
  std::lock_guard<std::mutex> g(n.shared.mu);
  CHECK_FALSE(n.shared.flushed_after_removal);
}

TEST_CASE("a connection that never says enough to classify is closed") {
  Node n(100, 100);
  test::BlockingClient c(n.port);
  c.Send("?");
  CHECK(Node::ReadAll(c).empty());  // EOF from the sweep, nothing handed over
  CHECK(n.shared.accepted == 0);
}

}  // namespace
}  // namespace kv::net

namespace kv::net {
namespace {

TEST_CASE("ParseRunDelayNs: the second field of a thread's schedstat") {
  uint64_t ns = 0;
  CHECK(ParseRunDelayNs("276845 69412 2\n", &ns));
  CHECK(ns == 69412);
  CHECK(ParseRunDelayNs("1 18446744073709551615 3", &ns));
  CHECK(ns == UINT64_MAX);
  CHECK_FALSE(ParseRunDelayNs("", &ns));
  CHECK_FALSE(ParseRunDelayNs("276845", &ns));
  CHECK_FALSE(ParseRunDelayNs("276845 ", &ns));
  CHECK_FALSE(ParseRunDelayNs("276845 x9 2", &ns));
  CHECK_FALSE(ParseRunDelayNs("276845 99999999999999999999 2", &ns));
  CHECK_FALSE(ParseRunDelayNs("-1 5 2", &ns));
  // This thread's own file, as the worker reads it.
  char text[96];
  FILE* f = fopen("/proc/thread-self/schedstat", "r");
  if (f != nullptr) {
    const size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    CHECK(ParseRunDelayNs(std::string_view(text, n), &ns));
  }
}

// A loop that spends a window in a callback is busy; one that spends it in its poll is not
// (what hint replay and repair slow down for, cluster/foreground_load.h).
TEST_CASE("busy_permille: the share of a window spent outside the poll") {
  TestService::Shared shared;
  WorkerOptions o;
  o.threads = 1;
  o.idle_timeout_ms = 3600000;  // no sweep wake-ups during the idle window
  Server server(o, [&shared](Worker& w) { return std::make_unique<TestService>(w, &shared); });
  server.StartDetached();
  Worker& w = server.worker(0);
  uv_loop_t* loop = w.loop();
  uv_run(loop, UV_RUN_NOWAIT);  // the first before-poll step marks the window's start
  uv_timer_t t;
  uv_timer_init(loop, &t);
  // Busy: a timer callback that runs for three windows without returning to the poll.
  uv_timer_start(
      &t,
      [](uv_timer_t* h) {
        const uint64_t end = uv_hrtime() + 3 * Worker::kBusyWindowMs * 1000000;
        while (uv_hrtime() < end) {
        }
      },
      0, 0);
  uv_run(loop, UV_RUN_NOWAIT);  // the callback
  uv_run(loop, UV_RUN_NOWAIT);  // the next before-poll step samples the window
  CHECK(w.busy_permille() > 500);
  // Idle: three windows blocked in the poll until a timer fires.
  uv_timer_start(
      &t, [](uv_timer_t*) {}, 3 * Worker::kBusyWindowMs, 0);
  uv_run(loop, UV_RUN_ONCE);
  uv_run(loop, UV_RUN_NOWAIT);
  CHECK(w.busy_permille() < 500);
  uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
  server.Stop();
  while (uv_run(loop, UV_RUN_DEFAULT) != 0) {
  }
}

}  // namespace
}  // namespace kv::net
