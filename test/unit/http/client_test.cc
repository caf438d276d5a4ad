#include "http/client.h"

#include <doctest/doctest.h>
#include <netdb.h>

#include <string>
#include <utility>
#include <vector>

#include "unit/net_support/net_test_util.h"

namespace {

using kv::test::DeadPort;
using kv::test::Loop;
using kv::test::StopServer;

using kv::net::HttpClientConnection;
using kv::test::RunUntil;
using kv::test::TestHttpServer;

struct Recorder : kv::net::HttpClientDelegate {
  struct Resp {
    int status = 0;
    int status_at_headers = 0;
    bool keep_alive = false;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
  };
  std::vector<Resp> done;
  Resp cur;
  bool connected = false;
  int errors = 0;
  std::string error;
  bool error_was_connected = false;
  bool close_after_first = false;

  void OnConnected(HttpClientConnection*) override { connected = true; }
  void OnResponseHeader(HttpClientConnection*, std::string_view n, std::string_view v) override {
    cur.headers.emplace_back(n, v);
  }
  void OnResponseHeadersDone(HttpClientConnection*, int status) override {
    cur.status_at_headers = status;
  }
  void OnResponseBody(HttpClientConnection*, std::string_view chunk) override {
    cur.body.append(chunk);
  }
  void OnResponseComplete(HttpClientConnection* c, int status, bool keep_alive) override {
    cur.status = status;
    cur.keep_alive = keep_alive;
    done.push_back(std::move(cur));
    cur = Resp();
    if (close_after_first) c->Close();
  }
  void OnConnectionError(HttpClientConnection* c, std::string_view reason,
                         bool was_connected) override {
    ++errors;
    error = reason;
    error_was_connected = was_connected;
    c->Close();
  }
  std::string Header(size_t i, std::string_view name) const {
    for (auto& [n, v] : done[i].headers) {
      if (n == name) return v;
    }
    return "<none>";
  }
};

}  // namespace

TEST_CASE("http client: pipelined requests on one keep-alive connection, answers in order") {
  Loop l;
  TestHttpServer server(&l.loop);
  REQUIRE(server.Listen() == 0);
  Recorder rec;
  HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
  REQUIRE(c->Connect("127.0.0.1", server.port()) == 0);
  c->out() +=
      "PUT /v0/entity?id=a HTTP/1.1\r\nHost: x\r\nX-KV-Internal: 1\r\nX-KV-Version: 3\r\n"
      "Content-Length: 5\r\n\r\nhello";
  c->out() += "GET /v0/entity?id=a HTTP/1.1\r\nHost: x\r\nX-KV-Internal: 1\r\n\r\n";
  c->out() += "GET /v0/entity?id=b HTTP/1.1\r\nHost: x\r\nX-KV-Internal: 1\r\n\r\n";
  c->Flush();  // not connected yet: written on connect
  REQUIRE(RunUntil(&l.loop, [&] { return rec.done.size() == 3 || rec.errors > 0; }));
  CHECK(rec.connected);
  CHECK(rec.errors == 0);
  CHECK(server.accepted == 1);
  CHECK(server.max_requests_per_read == 3);  // one write carried all three
  CHECK(rec.done[0].status == 201);
  CHECK(rec.Header(0, "X-KV-Version") == "3");
  CHECK(rec.done[1].status == 200);
  CHECK(rec.done[1].status_at_headers == 200);
  CHECK(rec.done[1].body == "hello");
  CHECK(rec.done[1].keep_alive);
  CHECK(rec.done[2].status == 404);
  CHECK(rec.done[2].body.empty());
  CHECK(c->unsent_bytes() == 0);

  // More requests later on the same connection.
  c->out() += "GET /v0/entity?id=a HTTP/1.1\r\nHost: x\r\nX-KV-Internal: 1\r\n\r\n";
  c->Flush();
  REQUIRE(RunUntil(&l.loop, [&] { return rec.done.size() == 4; }));
  CHECK(rec.done[3].body == "hello");
  CHECK(server.accepted == 1);
  c->Close();
  StopServer(&l.loop, &server);
}

TEST_CASE("http client: chunked body, padded header values, Connection: close") {
  Loop l;
  TestHttpServer server(&l.loop);
  REQUIRE(server.Listen() == 0);
  server.responder = [](const kv::test::TestRequest&) {
    return std::string(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-thing:   padded \t\r\n"
        "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  };
  Recorder rec;
  HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
  REQUIRE(c->Connect("127.0.0.1", server.port()) == 0);
  c->out() += "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  c->Flush();
  REQUIRE(RunUntil(&l.loop, [&] { return rec.done.size() == 1; }));
  CHECK(rec.done[0].body == "hello world");
  CHECK(rec.Header(0, "x-thing") == "padded");
  CHECK_FALSE(rec.done[0].keep_alive);
  c->Close();
  StopServer(&l.loop, &server);
}

TEST_CASE("http client: connection refused is reported as a failed connect") {
  Loop l;
  uint16_t port = DeadPort(&l.loop);
  Recorder rec;
  HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
  REQUIRE(c->Connect("127.0.0.1", port) == 0);
  c->out() += "GET / HTTP/1.1\r\n\r\n";
  c->Flush();
  REQUIRE(RunUntil(&l.loop, [&] { return rec.errors > 0; }));
  CHECK(rec.errors == 1);
  CHECK(rec.error == "connection refused");
  CHECK_FALSE(rec.error_was_connected);
  CHECK_FALSE(rec.connected);
}

TEST_CASE("http client: server closing or sending garbage breaks the connection once") {
  Loop l;
  TestHttpServer server(&l.loop);
  REQUIRE(server.Listen() == 0);

  SUBCASE("EOF") {
    Recorder rec;
    HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
    REQUIRE(c->Connect("127.0.0.1", server.port()) == 0);
    REQUIRE(RunUntil(&l.loop, [&] { return rec.connected && server.open_connections() == 1; }));
    server.DropConnections();
    REQUIRE(RunUntil(&l.loop, [&] { return rec.errors > 0; }));
    CHECK(rec.errors == 1);
    CHECK((rec.error == "connection closed" || rec.error == "connection reset"));
    CHECK(rec.error_was_connected);
  }
  SUBCASE("garbage") {
    server.mode = TestHttpServer::Mode::kGarbage;
    Recorder rec;
    HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
    REQUIRE(c->Connect("127.0.0.1", server.port()) == 0);
    c->out() += "GET /v0/entity?id=a HTTP/1.1\r\nHost: x\r\nX-KV-Internal: 1\r\n\r\n";
    c->Flush();
    REQUIRE(RunUntil(&l.loop, [&] { return rec.errors > 0; }));
    CHECK(rec.errors == 1);
    CHECK(rec.error.rfind("bad response", 0) == 0);
    CHECK(rec.done.empty());
  }
  SUBCASE("half a response, then close") {
    server.mode = TestHttpServer::Mode::kCloseMidResponse;
    Recorder rec;
    HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
    REQUIRE(c->Connect("127.0.0.1", server.port()) == 0);
    c->out() += "GET /v0/entity?id=a HTTP/1.1\r\nHost: x\r\nX-KV-Internal: 1\r\n\r\n";
    c->Flush();
    REQUIRE(RunUntil(&l.loop, [&] { return rec.errors > 0; }));
    CHECK(rec.errors == 1);
    CHECK(rec.done.empty());
  }
  StopServer(&l.loop, &server);
}

TEST_CASE("http client: Close() from a response callback stops delivery at once") {
  Loop l;
  TestHttpServer server(&l.loop);
  REQUIRE(server.Listen() == 0);
  Recorder rec;
  rec.close_after_first = true;
  HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
  REQUIRE(c->Connect("127.0.0.1", server.port()) == 0);
  for (int i = 0; i < 3; ++i)
    c->out() += "GET /v0/entity?id=a HTTP/1.1\r\nX-KV-Internal: 1\r\n\r\n";
  c->Flush();
  REQUIRE(RunUntil(&l.loop, [&] { return rec.done.size() == 1; }));
  // The server answered all three at once; the closed connection reports nothing more.
  CHECK(RunUntil(&l.loop, [&] { return server.open_connections() == 0; }));
  CHECK(rec.done.size() == 1);
  CHECK(rec.errors == 0);
  StopServer(&l.loop, &server);
}

TEST_CASE("http client: Close() while connecting or with a write queued frees everything") {
  Loop l;
  TestHttpServer server(&l.loop);
  REQUIRE(server.Listen() == 0);
  Recorder rec;
  HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
  REQUIRE(c->Connect("127.0.0.1", server.port()) == 0);
  c->out() += "GET / HTTP/1.1\r\n\r\n";
  c->Close();
  c->Close();  // idempotent
  HttpClientConnection* never = HttpClientConnection::Create(&l.loop, &rec);
  never->Close();  // never connected
  HttpClientConnection* named = HttpClientConnection::Create(&l.loop, &rec);
  REQUIRE(named->Connect("localhost", server.port()) == 0);
  named->Close();  // while resolving
  StopServer(&l.loop, &server);
  CHECK(rec.done.empty());
  CHECK(rec.errors == 0);
  CHECK_FALSE(rec.connected);
}

TEST_CASE("http client: IPv6 literal and resolved names") {
  Loop l;
  SUBCASE("[::1]") {
    TestHttpServer server(&l.loop);
    if (server.Listen(0, "::1") != 0) {
      MESSAGE("no IPv6 loopback here; skipped");
      StopServer(&l.loop, &server);
      return;
    }
    for (const char* host : {"[::1]", "::1"}) {
      Recorder rec;
      HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
      REQUIRE(c->Connect(host, server.port()) == 0);
      c->out() += "GET /v0/entity?id=z HTTP/1.1\r\nX-KV-Internal: 1\r\n\r\n";
      c->Flush();
      REQUIRE(RunUntil(&l.loop, [&] { return rec.done.size() == 1 || rec.errors > 0; }));
      CHECK(rec.done.size() == 1);
      c->Close();
    }
    StopServer(&l.loop, &server);
  }
  SUBCASE("localhost") {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    bool v4_first =
        getaddrinfo("localhost", nullptr, &hints, &res) == 0 && res && res->ai_family == AF_INET;
    if (res) freeaddrinfo(res);
    if (!v4_first) {
      MESSAGE("localhost does not resolve to IPv4 first here; skipped");
      return;
    }
    TestHttpServer server(&l.loop);
    REQUIRE(server.Listen() == 0);
    Recorder rec;
    HttpClientConnection* c = HttpClientConnection::Create(&l.loop, &rec);
    REQUIRE(c->Connect("localhost", server.port()) == 0);
    c->out() += "GET /v0/entity?id=z HTTP/1.1\r\nX-KV-Internal: 1\r\n\r\n";
    c->Flush();
    REQUIRE(RunUntil(&l.loop, [&] { return rec.done.size() == 1 || rec.errors > 0; }));
    CHECK(rec.done.size() == 1);
    CHECK(rec.done[0].status == 404);
    c->Close();
    StopServer(&l.loop, &server);
  }
}

TEST_CASE("percent-encoding keeps unreserved bytes and escapes the rest") {
  std::string out;
  kv::net::AppendPercentEncoded(&out, std::string_view("aZ09-._~ /?%\x00\xff", 14));
  CHECK(out == "aZ09-._~%20%2F%3F%25%00%FF");
}
