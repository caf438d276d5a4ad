// The HTTP server's loop thread with a handler that answers later, from a timer callback (as
// the coordinator does when a peer transport's deadline timer fails a replica request).
#include "net/server.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <memory>
#include <string>

#include "net/http.h"
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

  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};  // a safety net for a broken server, not a measurement
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string req = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
  REQUIRE(::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  while (got.find("late") == std::string::npos) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  CHECK(got.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(got.find("late") != std::string::npos);
  // The worker's idle handle was active once the answer was queued: the poll right after the
  // timer phase returns at once instead of blocking until the next timer (the server's sweep,
  // up to 1 s), and the answer is written in that iteration's check phase.
  CHECK(poll_timeout.load() == 0);
  server.Stop();
  server.Wait();
}

}  // namespace
}  // namespace kv::net
