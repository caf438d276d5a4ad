// The HTTP server connection (http/connection.*) seen from a client socket: parsing limits (431,
// 413, 400), pipelined answers in request order (also when an earlier request is answered later
// through its Responder), Expect: 100-continue, chunked request bodies, and when a connection
// stays open or closes (keep-alive, Connection: close, HTTP/1.0, a client that goes away).
// A real Server with one loop thread, a service that makes every connection HTTP, and a
// recording handler; the test thread is the client.
#include "http/connection.h"

#include <doctest/doctest.h>
#include <llhttp.h>
#include <uv.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http/http.h"
#include "loop/worker.h"
#include "unit/net_support/blocking_client.h"
#include "unit/net_support/net_test_util.h"

namespace kv::net {
namespace {

using test::BlockingClient;
using test::HttpAnswer;

struct Seen {
  std::string method;
  std::string target;
  std::string body;
  bool keep_alive = false;
  bool http10 = false;
};

// What the handler (loop thread) saw, for the test thread.
struct Journal {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Seen> seen;

  // Waits until n requests were handled (10 s safety net) and returns a copy of them.
  std::vector<Seen> WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return seen.size() >= n; });
    return seen;
  }
};

// Answers "<METHOD> <target> <body>" at once, except: "/park" is held until a "/release"
// arrives (on any connection), which first answers every held request with "parked".
class RecordingHandler final : public RequestHandler {
 public:
  explicit RecordingHandler(Journal* journal) : journal_(journal) {
    routes_ = {{"/only", false, Member(&RecordingHandler::Only)},
               {"/tree/", true, Member(&RecordingHandler::Tree)},
               {"/", true, Member(&RecordingHandler::Handle)}};
  }

  // "/only" exactly (not "/only/x", which the catch-all takes): the path and query it was given.
  void Only(Request&, std::string_view path, std::string_view query, Responder responder) {
    responder.Respond(200, "only " + std::string(path) + " ? " + std::string(query));
  }
  // Every path under "/tree/".
  void Tree(Request&, std::string_view path, std::string_view, Responder responder) {
    responder.Respond(200, "tree " + std::string(path));
  }

  void Handle(Request& req, std::string_view, std::string_view, Responder responder) {
    Seen s{llhttp_method_name(static_cast<llhttp_method_t>(req.method)), req.target, req.body,
           req.keep_alive, req.http10};
    {
      std::lock_guard<std::mutex> lock(journal_->mu);
      journal_->seen.push_back(s);
    }
    journal_->cv.notify_all();
    if (req.target == "/park") {
      parked_.push_back(responder);
      return;
    }
    if (req.target == "/release") {
      for (Responder& p : parked_) p.Respond(200, "parked");
      parked_.clear();
    }
    responder.Respond(200, s.method + " " + s.target + " " + s.body);
  }
  size_t pending() const { return parked_.size(); }

 private:
  Journal* journal_;
  std::vector<Responder> parked_;
};

constexpr uint64_t kMaxBody = 1000;
constexpr size_t kMaxHeader = 1024;

// Every connection is HTTP, answered by the recording handler.
class HttpService final : public Service {
 public:
  HttpService(Worker& w, Journal* journal) : handler_(journal) {
    ctx_.worker = &w;
    ctx_.handler = &handler_;
    ctx_.metrics = &metrics_;
    ctx_.limits.max_value_bytes = kMaxBody;
    ctx_.limits.max_header_bytes = kMaxHeader;
  }
  int Classify(std::string_view) override { return 0; }
  void Accept(int, uv_tcp_t* h, std::string_view first, bool over_limit) override {
    auto* c = new HttpConnection(&ctx_, h, first);
    if (over_limit) c->RejectOverloaded();
  }
  void BeforePoll() override {}
  size_t pending() const override { return handler_.pending(); }
  void Close() override {}

 private:
  RecordingHandler handler_;
  Metrics metrics_;
  HttpContext ctx_;
};

struct HttpConn {
  Journal journal;
  std::unique_ptr<Server> server;
  uint16_t port = 0;

  HttpConn() {
    {
      test::Loop l;
      port = test::DeadPort(&l.loop);
    }
    WorkerOptions o;
    o.port = port;
    o.threads = 1;
    server = std::make_unique<Server>(
        o, [this](Worker& w) { return std::make_unique<HttpService>(w, &journal); });
    std::string err;
    REQUIRE_MESSAGE(server->Start(&err), err);
  }
  ~HttpConn() {
    server->Stop();
    server->Wait();
  }

  // Reads one answer from c and checks its status and body.
  static void Expect(BlockingClient& c, int status, const std::string& body) {
    HttpAnswer a;
    REQUIRE(c.Read(&a));
    CHECK(a.status == status);
    CHECK(a.body == body);
  }
  // Reads c's last answer: its status and body, "Connection: close", then the server's EOF.
  static void ExpectClosing(BlockingClient& c, int status, const std::string& body) {
    HttpAnswer a;
    REQUIRE(c.Read(&a));
    CHECK(a.status == status);
    CHECK(a.body == body);
    CHECK(a.header("connection") == "close");
    CHECK(c.ReadEof());
  }
};

// ---- parsing limits ----------------------------------------------------------------------------

TEST_CASE_FIXTURE(HttpConn, "headers over the limit: 431, then the connection closes") {
  BlockingClient c(port);
  c.Send("GET /a HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(kMaxHeader, 'h') + "\r\n\r\n");
  ExpectClosing(c, 431, "");
  CHECK(journal.WaitFor(0).empty());  // never reached the handler

  // A long target counts too; just under the limit is served.
  BlockingClient d(port);
  d.Send("GET /" + std::string(kMaxHeader, 'u') + " HTTP/1.1\r\n\r\n");
  ExpectClosing(d, 431, "");
  BlockingClient e(port);
  const std::string target = "/" + std::string(kMaxHeader / 2, 'u');
  e.Send("GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n");
  Expect(e, 200, "GET " + target + " ");
}

TEST_CASE_FIXTURE(HttpConn, "a body over --max-value-bytes: 413 before it is read, then close") {
  SUBCASE("declared by Content-Length") {
    BlockingClient c(port);
    c.Send("PUT /big HTTP/1.1\r\nContent-Length: " + std::to_string(kMaxBody + 1) + "\r\n\r\n");
    ExpectClosing(c, 413, "");
  }
  SUBCASE("a chunked body that grows past the limit") {
    BlockingClient c(port);
    c.Send("PUT /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string("258\r\n") +
           std::string(600, 'x') + "\r\n258\r\n" + std::string(600, 'y') + "\r\n0\r\n\r\n");
    ExpectClosing(c, 413, "");
  }
  CHECK(journal.WaitFor(0).empty());
  // Exactly the limit is accepted.
  BlockingClient c(port);
  const std::string body(kMaxBody, 'v');
  c.Send("PUT /max HTTP/1.1\r\nContent-Length: " + std::to_string(kMaxBody) + "\r\n\r\n" + body);
  Expect(c, 200, "PUT /max " + body);
}

TEST_CASE_FIXTURE(HttpConn, "malformed requests: 400 after the answers before them, then close") {
  for (const char* bad : {"GET /x HTTP/1.1\r\nNo colon here\r\n\r\n", "GET /x HTTX/1.1\r\n\r\n",
                          "PUT /x HTTP/1.1\r\nContent-Length: 12z\r\n\r\n",
                          "GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) {
    CAPTURE(bad);
    BlockingClient c(port);
    c.Send(std::string("GET /ok HTTP/1.1\r\n\r\n") + bad);
    Expect(c, 200, "GET /ok ");
    ExpectClosing(c, 400, "");
  }
  const auto seen = journal.WaitFor(4);
  CHECK(seen.size() == 4);  // only the good requests reached the handler
  for (const Seen& s : seen) CHECK(s.target == "/ok");
}

// ---- pipelining ------------------------------------------------------------------------------

TEST_CASE_FIXTURE(HttpConn, "pipelined requests in one write are answered in order") {
  BlockingClient c(port);
  c.Send(
      "GET /1 HTTP/1.1\r\n\r\n"
      "PUT /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
      "DELETE /3 HTTP/1.1\r\n\r\n"
      "GET /4 HTTP/1.1\r\n\r\n"
      "HEAD /5 HTTP/1.1\r\n\r\n"
      "GET /6 HTTP/1.1\r\n\r\n");
  Expect(c, 200, "GET /1 ");
  Expect(c, 200, "PUT /2 abc");
  Expect(c, 200, "DELETE /3 ");
  Expect(c, 200, "GET /4 ");
  HttpAnswer head;
  REQUIRE(c.Read(&head, true));  // HEAD: the length of the body it would have, and no body
  CHECK(head.status == 200);
  CHECK(head.header("content-length") == std::to_string(std::string("HEAD /5 ").size()));
  CHECK(head.body.empty());
  Expect(c, 200, "GET /6 ");
  CHECK(journal.WaitFor(6).size() == 6);
}

TEST_CASE_FIXTURE(HttpConn, "the route table: exact paths, prefixes, first match, unknown paths") {
  BlockingClient c(port);
  c.Send(
      "GET /only?a=1&b=%20 HTTP/1.1\r\n\r\n"
      "GET /only/x HTTP/1.1\r\n\r\n"
      "GET /tree/a/b?q HTTP/1.1\r\n\r\n"
      "GET /tree HTTP/1.1\r\n\r\n");
  Expect(c, 200, "only /only ? a=1&b=%20");  // the query undecoded, for the route to parse
  Expect(c, 200, "GET /only/x ");            // not exactly /only: the catch-all
  Expect(c, 200, "tree /tree/a/b");
  Expect(c, 200, "GET /tree ");  // "/tree" does not start with the prefix "/tree/"
  // A path no route takes ("*" does not start with "/"): 400, and the connection stays.
  c.Send("OPTIONS * HTTP/1.1\r\n\r\nGET /only HTTP/1.1\r\n\r\n");
  Expect(c, 400, "unknown path\n");
  Expect(c, 200, "only /only ? ");
}

TEST_CASE_FIXTURE(HttpConn, "an earlier request answered later still goes out first") {
  BlockingClient c(port);
  c.Send(
      "GET /park HTTP/1.1\r\n\r\n"
      "GET /a HTTP/1.1\r\n\r\n"
      "PUT /b HTTP/1.1\r\nContent-Length: 1\r\n\r\nb"
      "GET /c HTTP/1.1\r\n\r\n");
  // The GETs run at once; the PUT waits for everything before it, and /c for the PUT.
  auto seen = journal.WaitFor(2);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].target == "/park");
  CHECK(seen[1].target == "/a");

  BlockingClient other(port);
  other.Send("GET /release HTTP/1.1\r\n\r\n");
  Expect(other, 200, "GET /release ");
  Expect(c, 200, "parked");
  Expect(c, 200, "GET /a ");
  Expect(c, 200, "PUT /b b");
  Expect(c, 200, "GET /c ");
  seen = journal.WaitFor(5);
  REQUIRE(seen.size() == 5);
  CHECK(seen[2].target == "/release");  // the PUT was handed over only after /park was answered
  CHECK(seen[3].target == "/b");
  CHECK(seen[4].target == "/c");
}

// ---- Expect: 100-continue and chunked bodies ----------------------------------------------------

TEST_CASE_FIXTURE(HttpConn, "Expect: 100-continue gets an interim answer before the body") {
  BlockingClient c(port);
  c.Send("PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  HttpAnswer a;
  REQUIRE(c.Read(&a));  // sent before any body byte
  CHECK(a.status == 100);
  CHECK(a.body.empty());
  c.Send("hello");
  Expect(c, 200, "PUT /e hello");

  // Over the limit: the final 413 instead of 100.
  BlockingClient d(port);
  d.Send("PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
  ExpectClosing(d, 413, "");
}

TEST_CASE_FIXTURE(HttpConn, "chunked request bodies are joined, also across writes") {
  BlockingClient c(port);
  c.Send("PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n");
  c.Send("3;ext=1\r\n!!!\r\n");
  c.Send("0\r\n\r\n");
  Expect(c, 200, "PUT /c hello world!!!");
  // Then the connection goes on with the next request.
  c.Send("PUT /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /e HTTP/1.1\r\n\r\n");
  Expect(c, 200, "PUT /d ");
  Expect(c, 200, "GET /e ");
}

// ---- staying open and closing ------------------------------------------------------------------

TEST_CASE_FIXTURE(HttpConn, "HTTP/1.1 keeps the connection; Connection: close ends it") {
  BlockingClient c(port);
  for (int i = 0; i < 3; ++i) {
    c.Send("GET /k HTTP/1.1\r\n\r\n");
    HttpAnswer a;
    REQUIRE(c.Read(&a));
    CHECK(a.status == 200);
    CHECK(a.header("connection").empty());
  }
  // Requests after the closing one in the same write are never handled.
  c.Send("GET /last HTTP/1.1\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
  ExpectClosing(c, 200, "GET /last ");
  const auto seen = journal.WaitFor(4);
  REQUIRE(seen.size() == 4);
  CHECK_FALSE(seen[3].keep_alive);
  CHECK(seen[3].target == "/last");
}

TEST_CASE_FIXTURE(HttpConn, "HTTP/1.0 closes unless it asks for keep-alive") {
  SUBCASE("default: close") {
    BlockingClient c(port);
    c.Send("GET /old HTTP/1.0\r\n\r\n");
    ExpectClosing(c, 200, "GET /old ");  // answered as HTTP/1.1 with a length, then closed
    const auto seen = journal.WaitFor(1);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].http10);
    CHECK_FALSE(seen[0].keep_alive);
  }
  SUBCASE("Connection: keep-alive") {
    BlockingClient c(port);
    for (int i = 0; i < 2; ++i) {
      c.Send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      HttpAnswer a;
      REQUIRE(c.Read(&a));
      CHECK(a.body == "GET /old ");
      CHECK(a.header("connection") == "keep-alive");
    }
    const auto seen = journal.WaitFor(2);
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].http10);
    CHECK(seen[1].keep_alive);
  }
}

TEST_CASE_FIXTURE(HttpConn, "a client that half-closes still gets its answers, then EOF") {
  BlockingClient c(port);
  c.Send("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
  c.ShutdownWrite();
  Expect(c, 200, "GET /1 ");
  Expect(c, 200, "GET /2 ");
  CHECK(c.ReadEof());
}

// Found by http_conn_fuzz: after the client's EOF, answers queued behind a later-answered one
// were dropped (only the first was sent) and the connection closed.
TEST_CASE_FIXTURE(HttpConn, "a half-closed client gets answers that were waiting behind another") {
  BlockingClient c(port);
  c.Send("GET /park HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  c.ShutdownWrite();
  REQUIRE(journal.WaitFor(3).size() == 3);
  BlockingClient other(port);
  other.Send("GET /release HTTP/1.1\r\n\r\n");
  Expect(other, 200, "GET /release ");
  Expect(c, 200, "parked");
  Expect(c, 200, "GET /a ");
  Expect(c, 200, "GET /b ");
  CHECK(c.ReadEof());
}

TEST_CASE_FIXTURE(HttpConn, "a client gone before its answer: the late answer is dropped") {
  {
    BlockingClient c(port);
    c.Send("GET /park HTTP/1.1\r\n\r\n");
    REQUIRE(journal.WaitFor(1).size() == 1);
  }  // closed with the request held by the handler
  BlockingClient other(port);
  other.Send("GET /release HTTP/1.1\r\n\r\n");  // answers the held request of a closed connection
  Expect(other, 200, "GET /release ");
  other.Send("GET /after HTTP/1.1\r\n\r\n");
  Expect(other, 200, "GET /after ");
}

}  // namespace
}  // namespace kv::net
