// Test helpers for the net module: an in-process HTTP/1.1 server on 127.0.0.1:<ephemeral> that
// answers the internal replica wire format from a std::map (or misbehaves on request), and a
// bounded loop driver. Caller guarantees: same loop thread; Stop() then run the loop until
// stopped() before destroying the server.
#pragma once
#include <llhttp.h>
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kv::test {

// Drives `loop` until done() holds or limit_ms of loop time passed (safety net, not a sleep).
inline bool RunUntil(uv_loop_t* loop, const std::function<bool()>& done,
                     uint64_t limit_ms = 10000) {
  bool expired = false;
  uv_timer_t timer;
  uv_timer_init(loop, &timer);
  timer.data = &expired;
  uv_timer_start(
      &timer, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, limit_ms, 0);
  while (!done() && !expired) uv_run(loop, UV_RUN_ONCE);
  bool ok = done();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);  // runs the timer's close
  return ok;
}

// Runs what is left (close callbacks, requests such as a name lookup finishing) and closes the
// loop; false if a handle was left open (then the loop is not closed).
inline bool CloseLoop(uv_loop_t* loop) {
  bool leaked = false;
  uv_walk(
      loop,
      [](uv_handle_t* h, void* arg) {
        if (!uv_is_closing(h)) *static_cast<bool*>(arg) = true;
      },
      &leaked);
  if (leaked) return false;
  uv_run(loop, UV_RUN_DEFAULT);  // only closing handles and finishing requests remain
  return uv_loop_close(loop) == 0;
}

struct TestRequest {
  std::string method;
  std::string url;
  std::string key;                             // percent-decoded id
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class TestHttpServer {
 public:
  enum class Mode {
    kNormal,            // answer from the store
    kHold,              // compute answers but keep them until ReleaseHeld()
    kCloseMidResponse,  // write half an answer and close the connection (then back to kNormal)
    kStatus507,         // answer 507
    kGarbage,           // answer bytes that are not HTTP
    kConnectionClose,   // answer normally with "Connection: close", then close
  };
  struct Entry {
    std::string value;
    uint64_t version = 0;
    bool tombstone = false;
  };

  explicit TestHttpServer(uv_loop_t* loop) : loop_(loop) {
    uv_tcp_init(loop_, &listener_);
    listener_.data = this;
  }
  ~TestHttpServer() = default;

  // Binds host:port (port 0: ephemeral; host a numeric loopback address) and listens; returns 0
  // or a uv error.
  int Listen(uint16_t port = 0, const char* host = "127.0.0.1") {
    sockaddr_storage addr{};
    if (std::string_view(host).find(':') != std::string_view::npos) {
      uv_ip6_addr(host, port, reinterpret_cast<sockaddr_in6*>(&addr));
    } else {
      uv_ip4_addr(host, port, reinterpret_cast<sockaddr_in*>(&addr));
    }
    int rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, &OnConnection);
    if (rc != 0) return rc;
    sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    return 0;
  }
  uint16_t port() const { return port_; }

  // Closes the listener and every connection.
  void Stop() {
    if (!listener_closed_) {
      listener_closed_ = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&listener_), &OnListenerClosed);
    }
    for (ServerConn* c : std::set<ServerConn*>(conns_)) c->Close();
  }
  bool stopped() const { return listener_gone_ && conns_.empty(); }

  // Closes every open connection (the listener stays).
  void DropConnections() {
    for (ServerConn* c : std::set<ServerConn*>(conns_)) c->Close();
  }

  // Writes every answer held in kHold mode (to connections still open).
  void ReleaseHeld() {
    for (ServerConn* c : conns_) {
      if (!c->held.empty()) c->Write(std::move(c->held));
      c->held.clear();
    }
  }
  size_t held_answers() const { return held_count_; }

  Mode mode = Mode::kNormal;
  // If set, kNormal answers are these bytes instead of the store's answer.
  std::function<std::string(const TestRequest&)> responder;
  std::map<std::string, Entry> store;
  std::vector<TestRequest> log;
  size_t accepted = 0;
  size_t requests = 0;
  size_t max_requests_per_read = 0;
  size_t open_connections() const { return conns_.size(); }

 private:
  struct ServerConn {
    TestHttpServer* server;
    uv_tcp_t tcp;
    llhttp_t parser;
    TestRequest req;
    std::string field;
    bool in_value = false;
    std::string held;
    bool closing = false;
    bool close_after_write = false;
    size_t completed_this_read = 0;
    char buf[65536];

    void Close() {
      if (closing) return;
      closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), [](uv_handle_t* h) {
        auto* c = static_cast<ServerConn*>(h->data);
        c->server->conns_.erase(c);
        delete c;
      });
    }

    struct WriteReq {
      uv_write_t req;
      std::string data;
      ServerConn* conn;
    };
    void Write(std::string data) {
      if (closing) return;
      auto* w = new WriteReq{{}, std::move(data), this};
      w->req.data = w;
      uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
      int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                        [](uv_write_t* r, int status) {
                          auto* w = static_cast<WriteReq*>(r->data);
                          if (status == 0 && w->conn->close_after_write) w->conn->Close();
                          delete w;
                        });
      if (rc != 0) {
        delete w;
        Close();
      }
    }
  };

  static std::string Decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size()) {
        out.push_back(
            static_cast<char>(std::strtol(std::string(s.substr(i + 1, 2)).c_str(), nullptr, 16)));
        i += 2;
      } else {
        out.push_back(s[i]);
      }
    }
    return out;
  }

  static std::string Response(int status, const char* text, std::string_view extra_headers,
                              std::string_view body, bool close = false) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + text + "\r\n";
    r += extra_headers;
    if (close) r += "Connection: close\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    r += body;
    return r;
  }

  std::string Answer(const TestRequest& q, bool close) {
    if (!q.headers.count("x-kv-internal") || q.url.rfind("/v0/entity?id=", 0) != 0) {
      return Response(400, "Bad Request", "", "", close);
    }
    auto version_of = [&]() -> uint64_t {
      auto it = q.headers.find("x-kv-version");
      return it == q.headers.end() ? 0 : std::strtoull(it->second.c_str(), nullptr, 10);
    };
    if (q.method == "GET") {
      auto it = store.find(q.key);
      if (it == store.end()) return Response(404, "Not Found", "", "", close);
      std::string v = "X-KV-Version: " + std::to_string(it->second.version) + "\r\n";
      if (it->second.tombstone) {
        return Response(404, "Not Found", v + "X-KV-Tombstone: 1\r\n", "", close);
      }
      return Response(200, "OK", v, it->second.value, close);
    }
    if (q.method == "PUT" || q.method == "DELETE") {
      bool put = q.method == "PUT";
      uint64_t v = version_of();
      Entry& e = store[q.key];
      if (v > e.version) e = Entry{put ? q.body : std::string(), v, !put};
      std::string h = "X-KV-Version: " + std::to_string(e.version) + "\r\n";
      return put ? Response(201, "Created", h, "", close) : Response(202, "Accepted", h, "", close);
    }
    return Response(405, "Method Not Allowed", "", "", close);
  }

  void Handle(ServerConn* c) {
    ++requests;
    ++c->completed_this_read;
    log.push_back(c->req);
    const TestRequest& q = log.back();
    switch (mode) {
      case Mode::kNormal:
        c->Write(responder ? responder(q) : Answer(q, false));
        break;
      case Mode::kHold:
        c->held += Answer(q, false);
        ++held_count_;
        break;
      case Mode::kCloseMidResponse: {
        mode = Mode::kNormal;
        std::string a = Response(200, "OK", "X-KV-Version: 1\r\n", "0123456789abcdef");
        uv_buf_t b = uv_buf_init(a.data(), static_cast<unsigned>(a.size() / 2));
        uv_try_write(reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1);
        c->Close();
        break;
      }
      case Mode::kStatus507:
        c->Write(Response(507, "Insufficient Storage", "", ""));
        break;
      case Mode::kGarbage:
        c->Write("this is not http\r\n\r\n");
        break;
      case Mode::kConnectionClose:
        c->close_after_write = true;
        c->Write(Answer(q, true));
        break;
    }
  }

  static const llhttp_settings_t* Settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t s;
      llhttp_settings_init(&s);
      s.on_url = [](llhttp_t* p, const char* at, size_t n) {
        static_cast<ServerConn*>(p->data)->req.url.append(at, n);
        return 0;
      };
      s.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
        auto* c = static_cast<ServerConn*>(p->data);
        if (c->in_value) c->field.clear();
        c->in_value = false;
        for (size_t i = 0; i < n; ++i) c->field.push_back(static_cast<char>(std::tolower(at[i])));
        return 0;
      };
      s.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
        auto* c = static_cast<ServerConn*>(p->data);
        c->in_value = true;
        c->req.headers[c->field].append(at, n);
        return 0;
      };
      s.on_body = [](llhttp_t* p, const char* at, size_t n) {
        static_cast<ServerConn*>(p->data)->req.body.append(at, n);
        return 0;
      };
      s.on_message_complete = [](llhttp_t* p) {
        auto* c = static_cast<ServerConn*>(p->data);
        c->req.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
        std::string_view url = c->req.url;
        size_t eq = url.find("?id=");
        if (eq != std::string_view::npos) c->req.key = Decode(url.substr(eq + 4));
        c->server->Handle(c);
        c->req = TestRequest();
        c->field.clear();
        c->in_value = false;
        return c->closing ? -1 : 0;
      };
      return s;
    }();
    return &s;
  }

  static void OnConnection(uv_stream_t* l, int status) {
    auto* self = static_cast<TestHttpServer*>(l->data);
    if (status != 0) return;
    auto* c = new ServerConn();
    c->server = self;
    uv_tcp_init(self->loop_, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(l, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
               [](uv_handle_t* h) { delete static_cast<ServerConn*>(h->data); });
      return;
    }
    self->conns_.insert(c);
    ++self->accepted;
    llhttp_init(&c->parser, HTTP_REQUEST, Settings());
    c->parser.data = c;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* c = static_cast<ServerConn*>(h->data);
          *b = uv_buf_init(c->buf, sizeof c->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* c = static_cast<ServerConn*>(s->data);
          if (c->closing) return;
          if (n < 0) {
            c->Close();
            return;
          }
          c->completed_this_read = 0;
          llhttp_errno_t err = llhttp_execute(&c->parser, b->base, static_cast<size_t>(n));
          TestHttpServer* srv = c->server;
          srv->max_requests_per_read = std::max(srv->max_requests_per_read, c->completed_this_read);
          if (err != HPE_OK && !c->closing) c->Close();
        });
  }

  static void OnListenerClosed(uv_handle_t* h) {
    static_cast<TestHttpServer*>(h->data)->listener_gone_ = true;
  }

  uv_loop_t* loop_;
  uv_tcp_t listener_;
  uint16_t port_ = 0;
  bool listener_closed_ = false;
  bool listener_gone_ = false;
  size_t held_count_ = 0;
  std::set<ServerConn*> conns_;
};

}  // namespace kv::test
