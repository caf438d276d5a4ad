// HTTP/1.1 server side: the parsed Request, the Responder a handler answers through (now or later,
// on the connection's loop thread), and the streaming-body interface used for chunked responses.
// Everything here lives on one loop thread; nothing is thread-safe by itself.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kv::net {

class HttpConnection;

struct Request {
  int method = 0;  // llhttp_method_t (HTTP_GET, HTTP_PUT, ...)
  std::string target;
  std::string body;
  bool keep_alive = true;
  bool http10 = false;
  uint64_t start_ns = 0;  // when the request was complete (monotonic)
  // The application's own headers, X-KV-*: "name:value\n" per header, the name lower-case
  // without the prefix (one buffer, reused across requests). Other headers are not kept.
  std::string kv_headers;

  void Reset();
  // The value of X-KV-<name> (`name` lower-case), or nullopt if absent.
  std::optional<std::string_view> KvHeader(std::string_view name) const;
};

struct Header {
  std::string_view name;
  std::string_view value;
};

// Produces a streamed response body in pieces. The connection pulls only while its pending
// output is under a threshold and this response is at the head of the pipeline; a client that
// disconnects destroys the stream at once.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // Appends up to about `budget` bytes of body to *out. Returns true while more is to come,
  // false once the body is complete. On an internal error, return false after setting *failed
  // to true: the connection is then closed without the terminating chunk (the client sees a
  // truncated body, never a wrong one).
  virtual bool Produce(std::string* out, size_t budget, bool* failed) = 0;
  // A stream fed from elsewhere (peers) may have nothing to add for now: Produce returns true
  // and waiting() true, and the connection pulls no more until the stream calls Wake().
  virtual bool waiting() const { return false; }
  // Set by the connection before the first Produce; valid while the stream lives.
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }

 protected:
  void Wake() {
    if (wake_) wake_();
  }

 private:
  std::function<void()> wake_;
};

// The one way to answer one request. Exactly one of Respond()/Stream() must be called, once,
// on the connection's loop thread; it is safe even after the client went away (then the
// answer is dropped).
class Responder {
 public:
  Responder() = default;
  Responder(HttpConnection* conn, uint64_t seq) : conn_(conn), seq_(seq) {}
  // Formats the status line and headers into the request's slot and marks the connection for
  // its loop's before-poll flush. With a stream, the body is pulled from it (chunked).
  void Respond(int status, std::string_view body, std::initializer_list<Header> headers = {},
               std::unique_ptr<BodyStream> stream = nullptr);
  void Stream(int status, std::unique_ptr<BodyStream> body,
              std::initializer_list<Header> headers = {}) {
    Respond(status, {}, headers, std::move(body));
  }
  bool valid() const { return conn_ != nullptr; }
  // For code that must park the responder in two words (cluster::Completion).
  HttpConnection* connection() const { return conn_; }
  uint64_t sequence() const { return seq_; }
  // The client's IP address ("?" once it went away): for logs.
  std::string RemoteIp() const;

 private:
  HttpConnection* conn_ = nullptr;
  uint64_t seq_ = 0;
};

// The application side, one instance per loop thread: its route table. The connection sends a
// request to the first route whose path equals the request's path (or starts it, for a prefix
// route), straight to that route's member function; a path no route takes is answered 400.
class RequestHandler {
 public:
  using Fn = void (RequestHandler::*)(Request& req, std::string_view path, std::string_view query,
                                      Responder r);
  struct Route {
    std::string_view path;
    bool prefix;
    Fn fn;
  };
  virtual ~RequestHandler() = default;
  const std::vector<Route>& routes() const { return routes_; }

 protected:
  // A derived class's member as a route: Route{"/x", false, Member(&Derived::X)}.
  template <class D>
  static Fn Member(void (D::*fn)(Request&, std::string_view, std::string_view, Responder)) {
    return static_cast<Fn>(fn);
  }
  std::vector<Route> routes_;
};

const char* StatusText(int status);

}  // namespace kv::net
