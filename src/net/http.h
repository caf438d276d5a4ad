// HTTP/1.1 server side: the parsed Request, the Responder a handler answers through (now or later,
// on the connection's loop thread), and the streaming-body interface used for chunked responses.
// Everything here lives on one loop thread; nothing is thread-safe by itself.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace kv::net {

class HttpConnection;

struct Request {
  int method = 0;  // llhttp_method_t (HTTP_GET, HTTP_PUT, ...)
  std::string target;
  std::string body;
  bool keep_alive = true;
  bool http10 = false;
  bool internal = false;   // X-KV-Internal: 1 (a replica request from a peer)
  int version_header = 0;  // 0 absent, 1 valid X-KV-Version, -1 malformed
  uint64_t version = 0;
  std::string version_text;  // X-KV-Version as received (first 256 bytes)
  bool has_auth = false;     // X-KV-Auth present
  std::string auth;          // its value (first 256 bytes: longer ones are malformed anyway)
  uint64_t start_ns = 0;     // when the request was complete (monotonic)

  void Reset();
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
};

// The one way to answer one request. Exactly one of Respond()/Stream() must be called, once,
// on the connection's loop thread; it is safe even after the client went away (then the
// answer is dropped).
class Responder {
 public:
  Responder() = default;
  Responder(HttpConnection* conn, uint64_t seq) : conn_(conn), seq_(seq) {}
  void Respond(int status, std::string_view body, std::initializer_list<Header> headers = {});
  void Stream(int status, std::unique_ptr<BodyStream> body,
              std::initializer_list<Header> headers = {});
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

// The application side, one instance per loop thread.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual void Handle(Request& req, Responder responder) = 0;
  // A connection whose first bytes are the binary peer preface. Takes ownership of `handle`
  // (allocated with new, reading stopped; close it with uv_close and delete it in the close
  // callback). `first_bytes` were already read from it.
  virtual void AdoptPeerConnection(void* uv_tcp_handle, std::string_view first_bytes) = 0;
  // Called once per loop iteration after I/O callbacks, before answers are written: work
  // batched during the iteration (local log writes) is committed here.
  virtual void OnLoopIteration() {}
  // Requests still waiting for an answer from peers (graceful shutdown waits for zero).
  virtual size_t pending() const = 0;
  // Closes this loop's peer transports and handles; called once at shutdown.
  virtual void Close() = 0;
};

const char* StatusText(int status);

}  // namespace kv::net
