// libFuzzer target for the HTTP server connection: llhttp callbacks and the connection's request
// assembly (header limits, chunked bodies, Expect: 100-continue, pipelining, keep-alive and
// close, the binary-preface sniff, backpressure), through a real socketpair (http_fuzz_driver.h).
// Input: byte 0 seeds the sizes of the pieces the rest is written in (0: one write); the rest is
// the client's byte stream. The handler answers from the request alone: at once, or parked until
// the loop's next OnLoopIteration (target starting "/p"), or streamed in slices ("/s"), always
// with a body "<n> <body length>" where n counts the requests handled in this input.
// Checked: the node's output is a sequence of well-formed HTTP/1.1 answers, one per request
// handled, in request order, plus at most one error answer (4xx, Connection: close) that ends
// the connection; no 5xx (the handler never answers one, and a malformed request is the
// client's fault); requests never exceed the limits; the connection closes after the client's
// EOF; nothing leaks (LeakSanitizer).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/http_fuzz_driver.h"
#include "http/connection.h"
#include "http/http.h"
#include "http/metrics.h"
#include "loop/worker.h"
#include "proto/wire.h"

namespace {

using kv::fuzz::Require;

constexpr uint64_t kMaxValue = 4096;
constexpr size_t kMaxHeader = 2048;

struct Handled {
  bool head = false;
};

class StreamBody final : public kv::net::BodyStream {
 public:
  StreamBody(std::string text, size_t slices) : text_(std::move(text)), slices_(slices) {}
  bool Produce(std::string* out, size_t budget, bool*) override {
    out->append(text_.substr(0, std::min(budget, text_.size())));
    text_.clear();
    if (slices_ > 0) {
      out->append(1000, 'x');
      --slices_;
    }
    return slices_ > 0;
  }

 private:
  std::string text_;
  size_t slices_;
};

class FuzzHandler final : public kv::net::RequestHandler {
 public:
  FuzzHandler() { routes_ = {{"/", true, Member(&FuzzHandler::Handle)}}; }

  void Handle(kv::net::Request& req, std::string_view, std::string_view, kv::net::Responder r) {
    Require(req.body.size() <= kMaxValue, "a body over --max-value-bytes was dispatched");
    Require(req.target.size() <= kMaxHeader, "a target over --max-header-bytes was dispatched");
    Require(!req.target.empty(), "empty target");
    handled.push_back(Handled{req.method == HTTP_HEAD});
    std::string body = std::to_string(handled.size()) + " " + std::to_string(req.body.size());
    if (req.target.rfind("/p", 0) == 0) {
      parked_.push_back({r, body});
    } else if (req.target.rfind("/s", 0) == 0) {
      r.Stream(200, std::make_unique<StreamBody>(body, req.target.size() % 4));
    } else {
      r.Respond(req.method == HTTP_PUT ? 201 : 200, body, {{"X-Fuzz", "1"}});
    }
  }

  void AnswerParked() {
    std::vector<Parked> p;
    p.swap(parked_);
    // Later requests first: the connection must put them back in order.
    for (auto it = p.rbegin(); it != p.rend(); ++it) it->r.Respond(200, it->body);
  }
  size_t parked() const { return parked_.size(); }

  std::vector<Handled> handled;

 private:
  struct Parked {
    kv::net::Responder r;
    std::string body;
  };
  std::vector<Parked> parked_;
};

// The loop's service: HTTP connections with FuzzHandler, or (the binary preface) closed at once.
class FuzzService final : public kv::net::Service {
 public:
  explicit FuzzService(kv::net::Worker& w) {
    ctx_.worker = &w;
    ctx_.handler = &handler;
    ctx_.metrics = &metrics_;
    ctx_.limits.max_value_bytes = kMaxValue;
    ctx_.limits.max_header_bytes = kMaxHeader;
    ctx_.limits.header_timeout_ms = 3600000;  // no timer decides anything within one input
    ctx_.limits.idle_timeout_ms = 3600000;
    ctx_.limits.send_timeout_ms = 3600000;
  }
  int Classify(std::string_view first) override {
    switch (kv::proto::SniffPreface(first.data(), first.size())) {
      case kv::proto::Sniff::kBinary:
        return 1;
      case kv::proto::Sniff::kNeedMore:
        return kNeedMore;
      default:
        return 0;
    }
  }
  void Accept(int protocol, uv_tcp_t* handle, std::string_view first, bool over_limit) override {
    if (protocol == 1) {
      adopted = true;
      uv_close(reinterpret_cast<uv_handle_t*>(handle),
               [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
      return;
    }
    auto* c = new kv::net::HttpConnection(&ctx_, handle, first);
    if (over_limit) c->RejectOverloaded();
  }
  // Parked answers come at the loop's next before-poll step.
  void BeforePoll() override { handler.AnswerParked(); }
  size_t pending() const override { return handler.parked(); }
  void Close() override {}

  FuzzHandler handler;
  bool adopted = false;

 private:
  kv::net::Metrics metrics_;
  kv::net::HttpContext ctx_;
};

FuzzService* g_service = nullptr;

kv::net::Server* MakeServer() {
  kv::net::WorkerOptions o;
  o.threads = 1;
  o.idle_timeout_ms = 3600000;
  o.first_bytes_timeout_ms = 3600000;
  auto* s = new kv::net::Server(o, [](kv::net::Worker& w) {
    auto svc = std::make_unique<FuzzService>(w);
    g_service = svc.get();
    return svc;
  });
  s->StartDetached();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kv::net::Server* server = MakeServer();
  static kv::fuzz::ConnDriver driver(server);
  if (size == 0) return 0;
  FuzzHandler& handler = g_service->handler;
  handler.handled.clear();
  g_service->adopted = false;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string out = driver.Run(input, data[0]);
  handler.AnswerParked();
  driver.RunUntilQuiet();

  if (g_service->adopted) {
    Require(out.empty() && handler.handled.empty(), "answers on a binary peer connection");
    return 0;
  }
  const auto& handled = handler.handled;
  kv::fuzz::AnswerParser p;
  p.Parse(out, [&](size_t i) { return i < handled.size() && handled[i].head; });
  Require(p.ok, "the node's output is not a sequence of HTTP responses");
  Require(p.complete, "the node's output ends inside a response");
  size_t finals = 0, errors = 0;
  for (size_t i = 0; i < p.answers.size(); ++i) {
    const kv::fuzz::Answer& a = p.answers[i];
    Require(a.status < 500, "5xx answer");
    if (a.status == 100) {
      Require(finals < handled.size() + 1, "100 Continue after the last request");
      continue;
    }
    if (finals < handled.size()) {
      Require(a.status == 200 || a.status == 201, "a handled request answered another status");
      if (!handled[finals].head) {
        std::string want = std::to_string(finals + 1) + " ";
        Require(a.body.compare(0, want.size(), want) == 0, "answers out of request order");
      }
    } else {
      Require(a.status == 400 || a.status == 413 || a.status == 431,
              "an error answer that is not 400, 413 or 431");
      Require(a.close, "an error answer without Connection: close");
      ++errors;
    }
    ++finals;
  }
  Require(errors <= 1, "more than one error answer");
  if (finals < handled.size()) fprintf(stderr, "output:\n%s\n", out.c_str());
  Require(finals >= handled.size(), "a handled request was not answered");
  return 0;
}
