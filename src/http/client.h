// One client-side HTTP/1.1 connection on libuv: connects to host:port, writes the bytes the caller
// appends (coalesced into one uv_write per Flush), and parses responses with llhttp into callbacks.
// Caller guarantees: all calls on the loop's thread; the delegate stays valid until Close().
#pragma once
#include <llhttp.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "loop/resolve.h"

namespace kv::net {

class HttpClientConnection;

// Callbacks of one connection, in wire order. None is called after Close(). A delegate may call
// Close() (on this or any connection) from any callback; parsing stops at once.
class HttpClientDelegate {
 public:
  virtual void OnConnected(HttpClientConnection* /*c*/) {}
  // One header of the current response, name and value whole (value trimmed of spaces/tabs).
  virtual void OnResponseHeader(HttpClientConnection* c, std::string_view name,
                                std::string_view value) = 0;
  virtual void OnResponseHeadersDone(HttpClientConnection* /*c*/, int /*status*/) {}
  // A piece of the (de-chunked) body; may be called several times per response.
  virtual void OnResponseBody(HttpClientConnection* c, std::string_view chunk) = 0;
  // The response is complete; keep_alive is false if the server will close after it.
  virtual void OnResponseComplete(HttpClientConnection* c, int status, bool keep_alive) = 0;
  // The connection is dead (connect/resolve failure, EOF, reset, unparsable data). Called at most
  // once; was_connected tells a failed connect apart from a broken connection. The delegate
  // should Close() the connection (nothing more will happen on it otherwise).
  virtual void OnConnectionError(HttpClientConnection* c, std::string_view reason,
                                 bool was_connected) = 0;

 protected:
  ~HttpClientDelegate() = default;
};

class HttpClientConnection {
 public:
  // Allocates a connection whose only way to die is Close(): the object frees itself after
  // libuv's close callback has run on the loop (a pending name lookup is cancelled).
  static HttpClientConnection* Create(uv_loop_t* loop, HttpClientDelegate* delegate);

  // Starts connecting. Numeric IPv4/IPv6 hosts ("[::1]" accepted) are used directly; a name is
  // resolved with uv_getaddrinfo (asynchronously, the first address, IPv4 first) for this
  // connection. Returns 0,
  // or a negative uv error if the attempt could not even start (then no callback follows and
  // the caller should Close()). Call at most once.
  int Connect(std::string_view host, uint16_t port);

  // Output buffer: append whole requests, then Flush(). Bytes appended before the connection is
  // established are written once it is. Capacity is reused across writes.
  std::string& out() { return out_; }
  // Starts writing out() unless a write is already in progress (then the bytes follow when it
  // completes) or the connection is not yet established.
  void Flush();

  // Idempotent; after it no delegate callback runs and the object must not be used.
  void Close();

  bool connected() const { return connected_; }
  bool closing() const { return closing_; }
  // Bytes appended and not yet handed to the kernel (out() plus the write in progress).
  size_t unsent_bytes() const { return out_.size() + writing_.size(); }

  void* user_data = nullptr;  // for the delegate

  HttpClientConnection(const HttpClientConnection&) = delete;
  HttpClientConnection& operator=(const HttpClientConnection&) = delete;

 private:
  HttpClientConnection(uv_loop_t* loop, HttpClientDelegate* delegate);
  ~HttpClientConnection() = default;

  void StartConnect(const sockaddr* addr);
  void Fail(std::string_view reason);
  void StartWrite();

  void OnResolved(int status, Addresses addrs);
  static void OnConnect(uv_connect_t* req, int status);
  static void OnWrite(uv_write_t* req, int status);
  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void OnClosed(uv_handle_t* h);

  static int OnHeaderField(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderFieldDone(llhttp_t* p);
  static int OnHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderValueDone(llhttp_t* p);
  static int OnHeadersComplete(llhttp_t* p);
  static int OnBody(llhttp_t* p, const char* at, size_t len);
  static int OnMessageComplete(llhttp_t* p);
  static const llhttp_settings_t* Settings();

  uv_loop_t* loop_;
  HttpClientDelegate* delegate_;
  uv_tcp_t tcp_;
  uv_connect_t connect_req_;
  uv_write_t write_req_;
  NameLookup* lookup_ = nullptr;  // while a host name resolves
  llhttp_t parser_;
  uint16_t port_ = 0;
  bool connected_ = false;
  bool failed_ = false;
  bool closing_ = false;
  bool writing_now_ = false;
  std::string out_;
  std::string writing_;
  std::string field_;
  std::string value_;
  std::unique_ptr<char[]> read_buf_;
};

// Appends `key` with every byte outside [A-Za-z0-9-._~] written as %XX (upper-case hex).
void AppendPercentEncoded(std::string* out, std::string_view key);

// Short text for a libuv error on a connection: "connection refused", "connection reset", ...
std::string_view UvErrorReason(int uv_status);

}  // namespace kv::net
