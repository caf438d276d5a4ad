// The HTTP server's loop thread with a handler that answers later, from a timer callback (as
// the coordinator does when a peer transport's deadline timer fails a replica request).
#include "net/server.h"

#include <doctest/doctest.h>
#include <uv.h>

#include <atomic>
#include <memory>
#include <string>

#include "net/http.h"
#include "unit/net/blocking_client.h"
#include "unit/net/net_test_util.h"

namespace kv::net {
namespace {

// Answers every request 1 ms later from a uv timer, then records the timeout the loop's next poll
// would block for.
class LateHandler final : public RequestHandler {
 public:
  LateHandler(Worker& w, std::atomic<int>* poll_timeout) : poll_timeout_(poll_timeout) {
    uv_timer_init(w.loop(), &timer_);
    timer_.data = this;
  }
  void Handle(Request&, Responder responder) override {
    responder_ = responder;
    ++pending_;
    // Not closed in its callback: a closing handle would itself keep the next poll from
    // blocking and hide what is measured.
    uv_timer_start(
        &timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<LateHandler*>(t->data);
          self->responder_.Respond(200, "late");
          --self->pending_;
          self->poll_timeout_->store(uv_backend_timeout(t->loop));
        },
        1, 0);
  }
  void AdoptPeerConnection(void* h, std::string_view) override {
    uv_close(static_cast<uv_handle_t*>(h),
             [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
  }
  size_t pending() const override { return pending_; }
  void Close() override { uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr); }

 private:
  uv_timer_t timer_;
  Responder responder_;
  size_t pending_ = 0;
  std::atomic<int>* poll_timeout_;
};

TEST_CASE("an answer completed in a timer callback does not wait for the next poll wakeup") {
  uint16_t port;
  {
    test::Loop l;
    port = test::DeadPort(&l.loop);
  }
  Config cfg;
  cfg.port = port;
  cfg.threads = 1;
  std::atomic<int> poll_timeout{-2};
  Server server(
      cfg, [&poll_timeout](Worker& w) { return std::make_unique<LateHandler>(w, &poll_timeout); });
  std::string err;
  REQUIRE_MESSAGE(server.Start(&err), err);

  test::BlockingClient c(port);
  c.Send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
  test::HttpAnswer a;
  REQUIRE(c.Read(&a));
  c.Close();
  CHECK(a.status == 200);
  CHECK(a.body == "late");
  // The worker's idle handle was active once the answer was queued: the poll right after the
  // timer phase returns at once instead of blocking until the next timer (the server's sweep,
  // up to 1 s), and the answer is written in that iteration's check phase.
  CHECK(poll_timeout.load() == 0);
  server.Stop();
  server.Wait();
}

}  // namespace
}  // namespace kv::net
