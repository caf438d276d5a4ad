#include "http/client.h"

#include <netinet/in.h>

#include "loop/uv_write.h"

namespace kv::net {

namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
// A write buffer that grew past this (a huge value) is released instead of kept for reuse.
constexpr size_t kKeepCapacity = 1 << 20;

HttpClientConnection* FromParser(llhttp_t* p) {
  return static_cast<HttpClientConnection*>(p->data);
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string_view UvErrorReason(int uv_status) {
  switch (uv_status) {
    case UV_ECONNREFUSED:
      return "connection refused";
    case UV_ECONNRESET:
      return "connection reset";
    case UV_EOF:
      return "connection closed";
    case UV_ETIMEDOUT:
      return "connect timed out";
    case UV_EHOSTUNREACH:
      return "host unreachable";
    case UV_ENETUNREACH:
      return "network unreachable";
    case UV_EPIPE:
      return "broken pipe";
    case UV_ECANCELED:
      return "canceled";
    default:
      return uv_err_name(uv_status);
  }
}

void AppendPercentEncoded(std::string* out, std::string_view key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : key) {
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~';
    if (plain) {
      out->push_back(static_cast<char>(c));
    } else {
      char esc[3] = {'%', kHex[c >> 4], kHex[c & 15]};
      out->append(esc, 3);
    }
  }
}

const llhttp_settings_t* HttpClientConnection::Settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_header_field = &HttpClientConnection::OnHeaderField;
    s.on_header_field_complete = &HttpClientConnection::OnHeaderFieldDone;
    s.on_header_value = &HttpClientConnection::OnHeaderValue;
    s.on_header_value_complete = &HttpClientConnection::OnHeaderValueDone;
    s.on_headers_complete = &HttpClientConnection::OnHeadersComplete;
    s.on_body = &HttpClientConnection::OnBody;
    s.on_message_complete = &HttpClientConnection::OnMessageComplete;
    return s;
  }();
  return &settings;
}

HttpClientConnection::HttpClientConnection(uv_loop_t* loop, HttpClientDelegate* delegate)
    : loop_(loop), delegate_(delegate), read_buf_(new char[kReadBufferSize]) {
  uv_tcp_init(loop_, &tcp_);  // cannot fail for AF_UNSPEC
  tcp_.data = this;
  connect_req_.data = this;
  write_req_.data = this;
  llhttp_init(&parser_, HTTP_RESPONSE, Settings());
  parser_.data = this;
}

HttpClientConnection* HttpClientConnection::Create(uv_loop_t* loop, HttpClientDelegate* delegate) {
  return new HttpClientConnection(loop, delegate);
}

int HttpClientConnection::Connect(std::string_view host, uint16_t port) {
  sockaddr_storage addr;
  if (ParseIpLiteral(host, port, &addr)) {
    int rc = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&addr),
                            &HttpClientConnection::OnConnect);
    if (rc != 0) failed_ = true;
    return rc;
  }
  int rc = 0;
  lookup_ = NameLookup::Start(
      loop_, std::string(host), port,
      [this](int status, Addresses addrs) { OnResolved(status, std::move(addrs)); }, &rc);
  if (lookup_ == nullptr) failed_ = true;
  return rc;
}

void HttpClientConnection::OnResolved(int status, Addresses addrs) {
  lookup_ = nullptr;
  if (status != 0) return Fail("cannot resolve host");
  // The first address (IPv4 first): a node listens on both where it can.
  int rc = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&addrs[0]),
                          &HttpClientConnection::OnConnect);
  if (rc != 0) Fail(UvErrorReason(rc));
}

void HttpClientConnection::OnConnect(uv_connect_t* req, int status) {
  auto* self = static_cast<HttpClientConnection*>(req->data);
  if (self->closing_) return;  // includes UV_ECANCELED from uv_close
  if (status != 0) {
    self->Fail(UvErrorReason(status));
    return;
  }
  self->connected_ = true;
  uv_tcp_nodelay(&self->tcp_, 1);
  int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&self->tcp_),
                         &HttpClientConnection::OnAlloc, &HttpClientConnection::OnRead);
  if (rc != 0) {
    self->Fail(UvErrorReason(rc));
    return;
  }
  self->delegate_->OnConnected(self);
  if (!self->closing_) self->Flush();
}

void HttpClientConnection::Flush() {
  if (!connected_ || failed_ || closing_ || writing_now_ || out_.empty()) return;
  StartWrite();
}

void HttpClientConnection::StartWrite() {
  int tried = TryWriteNow(reinterpret_cast<uv_stream_t*>(&tcp_), &out_);
  if (tried < 0) {
    Fail(UvErrorReason(tried));
    return;
  }
  if (out_.empty()) return;  // all taken by the socket
  writing_.swap(out_);       // out_ takes the (empty) previous write buffer and its capacity
  uv_buf_t buf = uv_buf_init(writing_.data(), static_cast<unsigned>(writing_.size()));
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1,
                    &HttpClientConnection::OnWrite);
  if (rc != 0) {
    Fail(UvErrorReason(rc));
    return;
  }
  writing_now_ = true;
}

void HttpClientConnection::OnWrite(uv_write_t* req, int status) {
  auto* self = static_cast<HttpClientConnection*>(req->data);
  self->writing_now_ = false;
  if (self->writing_.capacity() > kKeepCapacity) {
    std::string().swap(self->writing_);
  } else {
    self->writing_.clear();
  }
  if (self->closing_) return;
  if (status != 0) {
    self->Fail(UvErrorReason(status));
    return;
  }
  self->Flush();
}

void HttpClientConnection::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<HttpClientConnection*>(h->data);
  *buf = uv_buf_init(self->read_buf_.get(), kReadBufferSize);
}

void HttpClientConnection::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<HttpClientConnection*>(s->data);
  if (self->closing_ || self->failed_) return;
  if (nread == 0) return;  // EAGAIN
  if (nread < 0) {
    if (nread == UV_EOF) {
      // A body delimited by EOF completes here; a half-received answer stays unanswered and the
      // delegate hears "connection closed" below.
      llhttp_finish(&self->parser_);
      if (self->closing_) return;
    }
    self->Fail(UvErrorReason(static_cast<int>(nread)));
    return;
  }
  llhttp_errno_t err = llhttp_execute(&self->parser_, buf->base, static_cast<size_t>(nread));
  if (self->closing_) return;
  if (err != HPE_OK) {
    std::string reason = "bad response: ";
    reason += llhttp_errno_name(err);
    self->Fail(reason);
  }
}

int HttpClientConnection::OnHeaderField(llhttp_t* p, const char* at, size_t len) {
  FromParser(p)->field_.append(at, len);
  return 0;
}

int HttpClientConnection::OnHeaderFieldDone(llhttp_t*) {
  return 0;
}

int HttpClientConnection::OnHeaderValue(llhttp_t* p, const char* at, size_t len) {
  FromParser(p)->value_.append(at, len);
  return 0;
}

int HttpClientConnection::OnHeaderValueDone(llhttp_t* p) {
  auto* self = FromParser(p);
  self->delegate_->OnResponseHeader(self, self->field_, Trim(self->value_));
  self->field_.clear();
  self->value_.clear();
  return self->closing_ ? -1 : 0;
}

int HttpClientConnection::OnHeadersComplete(llhttp_t* p) {
  auto* self = FromParser(p);
  self->field_.clear();
  self->value_.clear();
  self->delegate_->OnResponseHeadersDone(self, llhttp_get_status_code(p));
  return self->closing_ ? -1 : 0;
}

int HttpClientConnection::OnBody(llhttp_t* p, const char* at, size_t len) {
  auto* self = FromParser(p);
  self->delegate_->OnResponseBody(self, std::string_view(at, len));
  return self->closing_ ? -1 : 0;
}

int HttpClientConnection::OnMessageComplete(llhttp_t* p) {
  auto* self = FromParser(p);
  self->delegate_->OnResponseComplete(self, llhttp_get_status_code(p),
                                      llhttp_should_keep_alive(p) != 0);
  return self->closing_ ? -1 : 0;
}

void HttpClientConnection::Fail(std::string_view reason) {
  if (failed_ || closing_) return;
  failed_ = true;
  if (connected_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  delegate_->OnConnectionError(this, reason, connected_);
}

void HttpClientConnection::Close() {
  if (closing_) return;
  closing_ = true;
  if (lookup_ != nullptr) lookup_->Cancel();  // its callback will not run
  lookup_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &HttpClientConnection::OnClosed);
}

void HttpClientConnection::OnClosed(uv_handle_t* h) {
  delete static_cast<HttpClientConnection*>(h->data);
}

}  // namespace kv::net
