#include "peer/http_peer.h"

#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/range_page.h"
#include "unit/net_support/net_test_util.h"

namespace {

using kv::test::Collector;
using kv::test::DeadPort;
using kv::test::Get;
using kv::test::Loop;
using kv::test::Put;
using kv::test::Remove;
using kv::test::RunFor;
using kv::test::StopServer;

using kv::cluster::PeerEndpoint;
using kv::cluster::PeerOp;
using kv::cluster::PeerRequest;
using kv::cluster::PeerResponse;
using kv::cluster::PeerTransport;
using kv::net::HttpPeerOptions;
using kv::net::MakeHttpPeerTransport;
using kv::test::RunUntil;
using kv::test::TestHttpServer;

PeerEndpoint Endpoint(uint16_t port) {
  PeerEndpoint ep;
  ep.host = "127.0.0.1";
  ep.port = port;
  ep.url = "http://127.0.0.1:" + std::to_string(port);
  return ep;
}

constexpr uint64_t kFar = 600000;  // a deadline that never fires within a test

// What most tests start from: a loop, a TestHttpServer listening on a free port, a transport to
// it (default options), a collector and a deadline that never fires. At the end the transport
// is closed, if the test left it, and the server stopped; the loop must then close cleanly.
struct PeerHttp {
  Loop l;
  TestHttpServer server{&l.loop};
  Loop::Flushing<PeerTransport> t;
  Collector w;
  uint64_t d = 0;

  PeerHttp() {
    REQUIRE(server.Listen() == 0);
    t = l.Flushed(MakeHttpPeerTransport(&l.loop, Endpoint(server.port())));
    d = l.now() + kFar;
  }
  ~PeerHttp() {
    if (t) t->Close();
    StopServer(&l.loop, &server);
  }
};

}  // namespace

TEST_CASE_FIXTURE(PeerHttp, "peer http: each op and response kind maps to the right PeerResponse") {
  const std::string odd_key = std::string("a b/\xc3\xa7%?&=") + std::string(1, '\0') + "z";

  t->Send(Put("k", "val", 5), d, &w, 1);
  CHECK(t->in_flight() == 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  t->Send(Get("k"), d, &w, 2);
  t->Send(Get("missing"), d, &w, 3);
  t->Send(Remove("k", 7), d, &w, 4);
  t->Send(Get("k"), d, &w, 5);
  t->Send(Put("k", "older", 3), d, &w, 6);
  t->Send(Put(odd_key, std::string(100000, 'x'), 9), d, &w, 7);
  t->Send(Get(odd_key), d, &w, 8);
  CHECK(t->in_flight() == 7);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 8; }));
  CHECK(t->in_flight() == 0);
  CHECK(w.each_once());

  CHECK(w.one(1).kind == PeerResponse::kStored);
  CHECK(w.one(1).version == 5);
  CHECK(w.one(2).kind == PeerResponse::kValue);
  CHECK(w.one(2).version == 5);
  CHECK(w.one(2).value == "val");
  CHECK(w.one(3).kind == PeerResponse::kAbsent);
  CHECK(w.one(4).kind == PeerResponse::kStored);
  CHECK(w.one(4).version == 7);
  CHECK(w.one(5).kind == PeerResponse::kTombstone);
  CHECK(w.one(5).version == 7);
  CHECK(w.one(6).kind == PeerResponse::kStored);
  CHECK(w.one(6).version == 7);  // the peer keeps the newer tombstone
  CHECK(w.one(7).kind == PeerResponse::kStored);
  CHECK(w.one(8).kind == PeerResponse::kValue);
  CHECK(w.one(8).value == std::string(100000, 'x'));
  CHECK(w.one(8).version == 9);

  // What went over the wire.
  REQUIRE(server.log.size() == 8);
  const auto& put = server.log[0];
  CHECK(put.method == "PUT");
  CHECK(put.url == "/v0/entity?id=k");
  CHECK(put.headers.at("host") == "127.0.0.1:" + std::to_string(server.port()));
  CHECK(put.headers.at("x-kv-internal") == "1");
  CHECK(put.headers.at("x-kv-version") == "5");
  CHECK(put.body == "val");
  CHECK(server.log[1].method == "GET");
  CHECK(server.log[1].headers.count("x-kv-version") == 0);
  CHECK(server.log[3].method == "DELETE");
  CHECK(server.log[3].headers.at("x-kv-version") == "7");
  CHECK(server.log[6].url == "/v0/entity?id=a%20b%2F%C3%A7%25%3F%26%3D%00z");
  CHECK(server.log[6].key == odd_key);
  CHECK(server.accepted == 1);
}

TEST_CASE_FIXTURE(PeerHttp, "peer http: error answers map to kError with a short reason") {
  auto answer = [&](std::string raw) {
    server.responder = [raw](const kv::test::TestRequest&) { return raw; };
  };
  auto expect_error = [&](PeerRequest req, std::string_view reason) {
    size_t before = w.count;
    uint64_t cookie = 1000 + before;
    t->Send(req, d, &w, cookie);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == before + 1; }));
    CHECK(w.one(cookie).kind == PeerResponse::kError);
    CHECK(w.one(cookie).error == reason);
  };

  server.mode = TestHttpServer::Mode::kStatus507;
  expect_error(Put("k", "v", 1), "http 507");
  server.mode = TestHttpServer::Mode::kNormal;
  answer("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
  expect_error(Get("k"), "http 500");
  answer("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
  expect_error(Remove("k", 2), "http 503");
  answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");  // no version
  expect_error(Get("k"), "bad version");
  answer("HTTP/1.1 200 OK\r\nx-kv-version: 12x\r\nContent-Length: 1\r\n\r\nx");
  expect_error(Get("k"), "bad version");
  answer("HTTP/1.1 404 Not Found\r\nX-KV-Tombstone: 1\r\nContent-Length: 0\r\n\r\n");
  expect_error(Get("k"), "bad version");
  answer("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  expect_error(Put("k", "v", 1), "bad version");
  answer("HTTP/1.1 201 Created\r\nX-KV-Version: 4\r\nContent-Length: 0\r\n\r\n");
  expect_error(Get("k"), "http 201");        // right status for the wrong op
  expect_error(Remove("k", 4), "http 201");  // DELETE wants 202
  CHECK(server.accepted == 1);               // none of that broke the connection

  // Header names in any case, and a version without the tombstone marker still means deleted.
  answer("HTTP/1.1 200 OK\r\nx-KV-VERSION:  42 \r\nContent-Length: 2\r\n\r\nhi");
  t->Send(Get("k"), d, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.got.count(1) == 1; }));
  answer("HTTP/1.1 404 Not Found\r\nX-Kv-Version: 8\r\nContent-Length: 0\r\n\r\n");
  t->Send(Get("k"), d, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.got.count(2) == 1; }));
  CHECK(w.one(1).kind == PeerResponse::kValue);
  CHECK(w.one(1).version == 42);
  CHECK(w.one(1).value == "hi");
  CHECK(w.one(2).kind == PeerResponse::kTombstone);
  CHECK(w.one(2).version == 8);

  // Garbage breaks the connection: error, and the next request gets a new connection.
  server.responder = nullptr;
  server.mode = TestHttpServer::Mode::kGarbage;
  t->Send(Get("k"), d, &w, 3);
  REQUIRE(RunUntil(&l.loop, [&] { return w.got.count(3) == 1; }));
  CHECK(w.one(3).kind == PeerResponse::kError);
  CHECK(w.one(3).error.rfind("bad response", 0) == 0);
  server.mode = TestHttpServer::Mode::kNormal;
  t->Send(Get("k"), d, &w, 4);
  REQUIRE(RunUntil(&l.loop, [&] { return w.got.count(4) == 1; }));
  CHECK(w.one(4).kind == PeerResponse::kAbsent);
  CHECK(server.accepted == 2);
  CHECK(t->in_flight() == 0);
  t.reset();  // destruction closes
}

TEST_CASE_FIXTURE(PeerHttp,
                  "peer http: 1000 pipelined requests over the pool, each answered once") {
  constexpr int kN = 1000;
  std::vector<std::string> keys, values;
  for (int i = 0; i < kN; ++i) {
    keys.push_back("key-" + std::to_string(i));
    values.push_back("value-" + std::to_string(i * 7));
  }
  for (int i = 0; i < kN; ++i) t->Send(Put(keys[i], values[i], i + 1), d, &w, i);
  CHECK(t->in_flight() == kN);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count >= kN; }));
  CHECK(w.count == kN);
  CHECK(w.got.size() == kN);
  CHECK(w.each_once());
  CHECK(t->in_flight() == 0);
  CHECK(server.accepted == 4);                // the whole pool, no more
  CHECK(server.max_requests_per_read > 100);  // writes were coalesced
  for (int i = 0; i < kN; ++i) {
    CHECK(w.one(i).kind == PeerResponse::kStored);
    CHECK(w.one(i).version == uint64_t(i + 1));
  }

  // Reads come back matched to the right request across the four pipelines.
  for (int i = 0; i < kN; ++i) t->Send(Get(keys[i]), d, &w, kN + i);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count >= 2 * kN; }));
  CHECK(w.count == 2 * kN);
  for (int i = 0; i < kN; ++i) {
    const PeerResponse& r = w.one(kN + i);
    CHECK(r.kind == PeerResponse::kValue);
    CHECK(r.value == values[i]);
    CHECK(r.version == uint64_t(i + 1));
  }
  CHECK(server.accepted == 4);  // connections were reused
  CHECK(t->in_flight() == 0);
}

TEST_CASE_FIXTURE(PeerHttp, "peer http: light load uses one connection; callbacks may send again") {
  int chain = 0;
  w.then = [&](uint64_t cookie, const PeerResponse& r) {
    CHECK(r.kind == PeerResponse::kStored);
    if (++chain < 200) t->Send(Put("k", "v", chain + 1), d, &w, cookie + 1);
  };
  t->Send(Put("k", "v", 1), d, &w, 0);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 200; }));
  CHECK(w.each_once());
  CHECK(t->in_flight() == 0);
  CHECK(server.accepted == 1);
  CHECK(server.store["k"].version == 200);
}

TEST_CASE("peer http: connection refused fails fast, no back-off: the next Send tries again") {
  Loop l;
  uint16_t port = DeadPort(&l.loop);
  HttpPeerOptions opts;
  opts.max_connections = 128;
  opts.open_new_at = 1;  // the HTTP peer mode: one request per connection
  auto t = l.Flushed(MakeHttpPeerTransport(&l.loop, Endpoint(port), opts));
  Collector w;
  uint64_t d = l.now() + kFar;
  for (int i = 0; i < 3; ++i) t->Send(Get("k"), d, &w, i);
  // Far deadline, bounded wait: the failure cannot be a timeout.
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  for (int i = 0; i < 3; ++i) {
    CHECK(w.one(i).kind == PeerResponse::kError);
    CHECK(w.one(i).error == "connection refused");
    CHECK_FALSE(w.one(i).slow);  // no circuit breaker for a peer that is down
  }
  CHECK(t->in_flight() == 0);

  // While the peer looks down, one connection at a time tries: these three share one.
  for (int i = 10; i < 13; ++i) t->Send(Get("k"), d, &w, i);
  CHECK(w.got.count(10) == 0);  // not failed before Send returned: it is trying again
  REQUIRE(RunUntil(&l.loop, [&] { return w.got.count(12) == 1; }));
  for (int i = 10; i < 13; ++i) CHECK(w.one(i).error == "connection refused");

  // The peer comes up on that port: the very next Send connects.
  TestHttpServer server(&l.loop);
  REQUIRE(server.Listen(port) == 0);
  t->Send(Get("k"), d, &w, 20);
  t->Send(Get("k"), d, &w, 21);
  REQUIRE(RunUntil(&l.loop, [&] { return w.got.count(21) == 1; }));
  CHECK(w.one(20).kind == PeerResponse::kAbsent);
  CHECK(w.one(21).kind == PeerResponse::kAbsent);
  CHECK(server.accepted == 1);  // both on the one connection that tried
  t->Close();
  StopServer(&l.loop, &server);
}

TEST_CASE("peer http: Ping asks GET /v0/status; a 200 is a pong") {
  Loop l;
  TestHttpServer server(&l.loop);
  REQUIRE(server.Listen() == 0);
  server.responder = [](const kv::test::TestRequest& q) -> std::string {
    if (q.url != "/v0/status") return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
  };
  auto t = l.Flushed(MakeHttpPeerTransport(&l.loop, Endpoint(server.port())));
  Collector w;
  t->Ping(l.now() + kFar, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).kind == PeerResponse::kPong);
  REQUIRE(server.log.size() == 1);
  CHECK(server.log.back().method == "GET");
  CHECK(server.log.back().url == "/v0/status");
  // Anything but a 200 is no proof of life.
  server.responder = [](const kv::test::TestRequest&) -> std::string {
    return "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n";
  };
  t->Ping(l.now() + kFar, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  CHECK(w.one(2).kind == PeerResponse::kError);
  t->Close();
  StopServer(&l.loop, &server);
}

TEST_CASE("peer http: a restarted peer is reconnected without intervention") {
  Loop l;
  HttpPeerOptions opts;
  auto server = std::make_unique<TestHttpServer>(&l.loop);
  REQUIRE(server->Listen() == 0);
  uint16_t port = server->port();
  auto t = l.Flushed(MakeHttpPeerTransport(&l.loop, Endpoint(port), opts));
  Collector w;
  uint64_t d = l.now() + kFar;
  t->Send(Put("k", "v", 1), d, &w, 1);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
  CHECK(w.one(1).kind == PeerResponse::kStored);

  StopServer(&l.loop, server.get());  // peer down: the idle connection sees EOF
  t->Send(Get("k"), d, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  CHECK(w.one(2).kind == PeerResponse::kError);

  server = std::make_unique<TestHttpServer>(&l.loop);  // peer back, same port, empty store
  REQUIRE(server->Listen(port) == 0);
  t->Send(Get("k"), d, &w, 3);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  CHECK(w.one(3).kind == PeerResponse::kAbsent);
  CHECK(t->in_flight() == 0);
  t->Close();
  StopServer(&l.loop, server.get());
}

TEST_CASE_FIXTURE(PeerHttp, "peer http: a hung peer times out each request exactly once") {
  server.mode = TestHttpServer::Mode::kHold;
  uint64_t soon = l.now() + 30;
  for (int i = 0; i < 20; ++i) t->Send(Get("k"), soon, &w, i);
  t->Send(Get("k"), l.now() + kFar, &w, 100);  // same pipeline, later deadline
  CHECK(t->in_flight() == 21);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 21; }));
  for (int i = 0; i < 20; ++i) {
    CHECK(w.one(i).kind == PeerResponse::kError);
    CHECK(w.one(i).error == "timeout");
  }
  CHECK(w.one(100).kind == PeerResponse::kError);
  CHECK(w.one(100).error == "aborted: pipeline timed out");
  CHECK(t->in_flight() == 0);

  // The late answers go nowhere: the connections carrying them were closed.
  CHECK(server.held_answers() == 21);
  server.ReleaseHeld();
  REQUIRE(RunUntil(&l.loop, [&] { return server.open_connections() == 0; }));
  CHECK(w.count == 21);
  CHECK(w.each_once());

  // And the peer, answering again, is used again.
  server.mode = TestHttpServer::Mode::kNormal;
  t->Send(Get("k"), l.now() + kFar, &w, 200);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 22; }));
  CHECK(w.one(200).kind == PeerResponse::kAbsent);

  // A deadline already past fails before Send returns.
  t->Send(Get("k"), l.now(), &w, 300);
  CHECK(w.got.count(300) == 1);
  CHECK(w.one(300).error == "timeout");
}

TEST_CASE_FIXTURE(PeerHttp,
                  "peer http: broken or closing connections fail their requests and heal") {
  SUBCASE("closed mid-response") {
    server.mode = TestHttpServer::Mode::kCloseMidResponse;  // once, then normal
    t->Send(Get("k"), d, &w, 1);
    t->Send(Get("k"), d, &w, 2);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
    CHECK(w.one(1).kind == PeerResponse::kError);
    CHECK(w.one(2).kind == PeerResponse::kError);
    CHECK(t->in_flight() == 0);
    t->Send(Put("k", "v", 3), d, &w, 3);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
    CHECK(w.one(3).kind == PeerResponse::kStored);
    CHECK(server.accepted == 2);
  }
  SUBCASE("Connection: close answers") {
    server.mode = TestHttpServer::Mode::kConnectionClose;
    for (uint64_t i = 1; i <= 3; ++i) {
      t->Send(Put("k", "v", i), d, &w, i);
      REQUIRE(RunUntil(&l.loop, [&] { return w.count == i; }));
      CHECK(w.one(i).kind == PeerResponse::kStored);
      CHECK(w.one(i).version == i);
    }
    CHECK(server.accepted == 3);
  }
  SUBCASE("idle connection dropped by the peer") {
    t->Send(Get("k"), d, &w, 1);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 1; }));
    server.DropConnections();
    REQUIRE(RunUntil(&l.loop, [&] { return server.open_connections() == 0; }));
    // Sent before the client has read the EOF, the request dies with the old connection (it
    // cannot know); either way the one after it is answered on a new connection.
    t->Send(Get("k"), d, &w, 2);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
    if (w.one(2).kind == PeerResponse::kError) {
      t->Send(Get("k"), d, &w, 3);
      REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
      CHECK(w.one(3).kind == PeerResponse::kAbsent);
    } else {
      CHECK(w.one(2).kind == PeerResponse::kAbsent);
    }
    CHECK(server.accepted == 2);
  }
  CHECK(t->in_flight() == 0);
}

TEST_CASE_FIXTURE(PeerHttp,
                  "peer http: over the in-flight byte budget Send fails fast with overloaded") {
  PeerEndpoint ep = Endpoint(server.port());
  ep.max_in_flight_bytes = 2000;
  HttpPeerOptions opts;
  opts.max_connections = 1;
  t = l.Flushed(MakeHttpPeerTransport(&l.loop, ep, opts));  // the default one never connected
  server.mode = TestHttpServer::Mode::kHold;
  std::string value(500, 'v');
  int sent = 0;
  while (w.count == 0 && sent < 100) t->Send(Put("k", value, 1), d, &w, sent++);
  REQUIRE(w.count == 1);
  CHECK(sent >= 2);
  CHECK(w.one(sent - 1).error == "overloaded");
  CHECK(t->in_flight() == size_t(sent - 1));
  REQUIRE(RunUntil(&l.loop, [&] { return server.held_answers() == size_t(sent - 1); }));
  server.mode = TestHttpServer::Mode::kNormal;
  server.ReleaseHeld();
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == size_t(sent); }));
  CHECK(t->in_flight() == 0);
  // With nothing in flight, even a request bigger than the budget goes out.
  t->Send(Put("big", std::string(5000, 'b'), 1), d, &w, 1000);
  REQUIRE(RunUntil(&l.loop, [&] { return w.got.count(1000) == 1; }));
  CHECK(w.one(1000).kind == PeerResponse::kStored);
}

TEST_CASE_FIXTURE(PeerHttp,
                  "peer http: Close() fails everything pending once and frees everything") {
  server.mode = TestHttpServer::Mode::kHold;

  SUBCASE("explicit Close with requests on the wire and queued") {
    for (int i = 0; i < 5; ++i) t->Send(Get("k"), d, &w, i);
    REQUIRE(RunUntil(&l.loop, [&] { return server.held_answers() == 5; }));
    for (int i = 5; i < 30; ++i) t->Send(Put("k", "v", 1), d, &w, i);  // some still unflushed
    t->Close();
    CHECK(w.count == 30);
    CHECK(w.each_once());
    for (int i = 0; i < 30; ++i) CHECK(w.one(i).error == "closed");
    CHECK(t->in_flight() == 0);
    t->Send(Get("k"), d, &w, 99);
    CHECK(w.one(99).error == "closed");
    t->Close();  // idempotent
    t.reset();
    CHECK(RunUntil(&l.loop, [&] { return server.accepted > 0 && server.open_connections() == 0; }));
  }
  SUBCASE("destroyed from inside a callback") {
    w.then = [&](uint64_t, const PeerResponse&) {
      if (t) t.reset();  // every later callback sees it already gone
    };
    for (int i = 0; i < 10; ++i) t->Send(Get("k"), l.now() + 20, &w, i);
    REQUIRE(RunUntil(&l.loop, [&] { return w.count == 10; }));
    CHECK(w.each_once());
    CHECK(w.one(0).error == "timeout");
    CHECK(!t);
    CHECK(RunUntil(&l.loop, [&] { return server.accepted > 0 && server.open_connections() == 0; }));
  }
  SUBCASE("destroyed right after Send, loop never ran") {
    t->Send(Get("k"), d, &w, 1);
    t.reset();
    CHECK(w.one(1).error == "closed");
  }
  // The server saw the client connections go away; the loop closes cleanly (Loop dtor).
}

TEST_CASE_FIXTURE(PeerHttp, "peer http: a range page request and its answer") {
  std::string page;
  const size_t begin = kv::range_page::Begin(&page);
  kv::range_page::Append(&page, kv::range_page::Entry{"a b", "1", 5, false});
  const size_t last = kv::range_page::Append(&page, kv::range_page::Entry{"c", "", 6, true});
  kv::range_page::Finish(&page, begin, last, true);
  server.responder = [&](const kv::test::TestRequest& q) -> std::string {
    if (q.url.rfind("/v0/entities?", 0) != 0)
      return "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n";
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(page.size()) + "\r\n\r\n" + page;
  };
  PeerRequest r{};
  r.op = PeerOp::kRange;
  r.key = std::string_view("a b\0", 4);
  r.end = "z&";
  r.has_end = true;
  r.max_keys = 100;
  r.max_bytes = 1 << 20;
  t->Send(r, d, &w, 1);
  r.has_end = false;
  t->Send(r, d, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  CHECK(w.each_once());
  CHECK(w.one(1).kind == PeerResponse::kPage);
  CHECK(w.one(1).value.substr(w.one(1).value_at) == page);
  REQUIRE(server.log.size() == 2);
  CHECK(server.log[0].method == "GET");
  CHECK(server.log[0].url == "/v0/entities?start=a%20b%00&end=z%26&max_keys=100&max_bytes=1048576");
  CHECK(server.log[0].headers.at("x-kv-internal") == "1");
  CHECK(server.log[1].url == "/v0/entities?start=a%20b%00&max_keys=100&max_bytes=1048576");
  // Any other status is a failure of that request.
  server.responder = [](const kv::test::TestRequest&) -> std::string {
    return "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
  };
  t->Send(r, d, &w, 3);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  CHECK(w.one(3).kind == PeerResponse::kError);
}

TEST_CASE_FIXTURE(PeerHttp, "peer http: a HINTS request is a POST of its body; 202 is stored") {
  server.responder = [](const kv::test::TestRequest& q) -> std::string {
    if (q.method != "POST" || q.url != "/v0/internal/hints") {
      return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    }
    if (q.body == "bad") return "HTTP/1.1 400 Bad Request\r\nContent-Length: 8\r\n\r\ninvalid\n";
    return "HTTP/1.1 202 Accepted\r\nX-KV-Version: 3\r\nContent-Length: 0\r\n\r\n";
  };
  const std::string body(300, '\x05');
  t->Send(PeerRequest{PeerOp::kHints, {}, body, 0}, d, &w, 1);
  t->Send(PeerRequest{PeerOp::kHints, {}, "bad", 0}, d, &w, 2);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 2; }));
  CHECK(w.each_once());
  CHECK(w.one(1).kind == PeerResponse::kStored);
  CHECK(w.one(1).version == 3);
  CHECK(w.one(2).kind == PeerResponse::kError);
  REQUIRE(server.log.size() == 2);
  CHECK(server.log[0].method == "POST");
  CHECK(server.log[0].headers.at("x-kv-internal") == "1");
  CHECK(server.log[0].headers.count("x-kv-version") == 0);
  CHECK(server.log[0].body == body);
}

TEST_CASE_FIXTURE(PeerHttp, "peer http: repair requests are POSTs with the body; 200 is data") {
  server.responder = [](const kv::test::TestRequest& q) -> std::string {
    if (q.method == "POST" && q.url == "/v0/internal/repair/entries") {
      return "HTTP/1.1 400 Bad Request\r\nContent-Length: 8\r\n\r\ninvalid\n";
    }
    const std::string b = "data:" + q.body;
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
  };
  const std::string body(40, '\x07');
  t->Send(PeerRequest{PeerOp::kRepairTree, {}, body, 0}, d, &w, 1);
  t->Send(PeerRequest{PeerOp::kRepairEntries, {}, body, 0}, d, &w, 2);
  t->Send(PeerRequest{PeerOp::kRepairApply, {}, body, 0}, d, &w, 3);
  REQUIRE(RunUntil(&l.loop, [&] { return w.count == 3; }));
  CHECK(w.each_once());
  CHECK(w.one(1).kind == PeerResponse::kRepairData);
  CHECK(w.one(1).value == "data:" + body);
  CHECK(w.one(2).kind == PeerResponse::kError);
  CHECK(w.one(3).kind == PeerResponse::kRepairData);
  REQUIRE(server.log.size() == 3);
  CHECK(server.log[0].method == "POST");
  CHECK(server.log[0].url == "/v0/internal/repair/tree");
  CHECK(server.log[0].headers.at("x-kv-internal") == "1");
  CHECK(server.log[0].headers.count("x-kv-version") == 0);
  CHECK(server.log[0].body == body);
  CHECK(server.log[2].url == "/v0/internal/repair/apply");
}
