#include "http/connection.h"

#include <cstring>

#include "common/decimal.h"
#include "common/log.h"
#include "http/url.h"
#include "loop/resolve.h"
#include "loop/uv_write.h"

namespace kv::net {

namespace {
constexpr size_t kKeptValueBytes = 256;           // of a header value (see OnHeaderValue)
constexpr size_t kMaxQueuedAnswers = 256;         // pause reading past this many pipelined
constexpr size_t kMaxPendingOutput = 256 * 1024;  // pause reading / streaming past this
constexpr size_t kStreamSlice = 64 * 1024;        // body bytes produced per loop iteration
constexpr size_t kMaxKeptHeader = 256;            // bytes kept of a header's name and of its value

// v < 2^32 (a chunk is at most a slice plus one record) as exactly 8 hex digits at p.
void WriteHex8(char* p, size_t v) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = 7; i >= 0; --i) {
    p[i] = kHex[v & 15];
    v >>= 4;
  }
}

uint64_t NowMs(uv_loop_t* loop) {
  return uv_now(loop);
}
}  // namespace

void Request::Reset() {
  method = 0;
  target.clear();
  body.clear();
  keep_alive = true;
  http10 = false;
  start_ns = 0;
  kv_headers.clear();
}

std::optional<std::string_view> Request::KvHeader(std::string_view name) const {
  std::string_view all = kv_headers;
  while (!all.empty()) {
    const size_t nl = all.find('\n');
    std::string_view line = all.substr(0, nl);
    all = nl == std::string_view::npos ? std::string_view() : all.substr(nl + 1);
    const size_t colon = line.find(':');
    if (line.substr(0, colon) == name) return line.substr(colon + 1);
  }
  return std::nullopt;
}

const char* StatusText(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 422:
      return "Unprocessable Content";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 507:
      return "Insufficient Storage";
    default:
      return "Unknown";
  }
}

// ---- Responder ---------------------------------------------------------------------------------

std::string Responder::RemoteIp() const {
  return conn_ != nullptr ? net::RemoteIp(conn_->handle_) : "?";
}

// ---- lifecycle ---------------------------------------------------------------------------------

HttpConnection::HttpConnection(HttpContext* ctx, uv_tcp_t* handle, std::string_view first_bytes)
    : ctx_(ctx), worker_(ctx->worker), handle_(handle) {
  handle_->data = this;
  llhttp_init(&parser_, HTTP_REQUEST, Settings());
  parser_.data = this;
  last_active_ms_ = NowMs(worker_->loop());
  worker_->AddConnection(this);
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(handle_), OnAlloc, OnRead) != 0) {
    Close();
    return;
  }
  reading_ = true;
  if (!first_bytes.empty()) HandleRead(first_bytes.data(), first_bytes.size());
}

void HttpConnection::RejectOverloaded() {
  ctx_->metrics->rejected_connections.fetch_add(1, std::memory_order_relaxed);
  FailRequest(503);
}

void HttpConnection::Close() {
  if (closing_) return;
  closing_ = true;
  if (reading_) uv_read_stop(reinterpret_cast<uv_stream_t*>(handle_));
  reading_ = false;
  // Streams hold storage snapshots: release them now, not when the last answer arrives.
  for (Slot& s : slots_) s.stream.reset();
  unanswered_ -= deferred_.size();  // never dispatched: nobody will answer them
  deferred_.clear();
  deferred_bytes_ = 0;
  std::string().swap(held_input_);
  worker_->RemoveConnection(this);
  uv_close(reinterpret_cast<uv_handle_t*>(handle_), OnClose);
}

void HttpConnection::OnClose(uv_handle_t* h) {
  auto* self = static_cast<HttpConnection*>(h->data);
  delete reinterpret_cast<uv_tcp_t*>(h);
  self->handle_ = nullptr;
  self->handle_closed_ = true;
  self->MaybeFree();
}

void HttpConnection::MaybeFree() {
  // A pending uv_write on a closing handle is cancelled before the close callback runs.
  if (handle_closed_ && unanswered_ == 0 && !write_active_) delete this;
}

void HttpConnection::Drain() {
  draining_ = true;
  if (lingering_) {
    Close();
    return;
  }
  if (!stop_parsing_ && !in_headers_ && !in_body_ && slots_.empty() && !write_active_ &&
      out_.empty()) {
    Close();
    return;
  }
  close_when_flushed_ = true;
}

void HttpConnection::Sweep(uint64_t now_ms) {
  if (closing_) return;
  const HttpLimits& cfg = ctx_->limits;
  if (lingering_) {
    if (now_ms - linger_started_ms_ > cfg.linger_ms) Close();
    return;
  }
  if (in_headers_ && now_ms - headers_started_ms_ > cfg.header_timeout_ms) {
    LOG_DEBUG("closing connection: headers not complete within %llu ms",
              static_cast<unsigned long long>(cfg.header_timeout_ms));
    Close();
    return;
  }
  if (in_body_ && now_ms - body_started_ms_ > cfg.body_timeout_ms) {
    // A body trickled slowly enough to dodge the idle timeout: answered 408, then closed.
    LOG_DEBUG("closing connection: body not complete within %llu ms",
              static_cast<unsigned long long>(cfg.body_timeout_ms));
    in_body_ = false;
    FailRequest(408);
    return;
  }
  if (write_active_) {
    // A client that does not read: its output makes no progress.
    const size_t queued = handle_->write_queue_size;
    if (queued != send_queue_seen_) {
      send_queue_seen_ = queued;
      send_progress_ms_ = now_ms;
    } else if (now_ms - send_progress_ms_ > cfg.send_timeout_ms) {
      LOG_DEBUG("closing connection: no output written for %llu ms",
                static_cast<unsigned long long>(cfg.send_timeout_ms));
      Close();
      return;
    }
  }
  bool idle = slots_.empty() && !write_active_ && out_.empty() && !in_headers_ && !in_body_;
  if (idle && now_ms - last_active_ms_ > cfg.idle_timeout_ms) Close();
}

// ---- reading -----------------------------------------------------------------------------------

void HttpConnection::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<HttpConnection*>(h->data);
  buf->base = self->worker_->read_buffer();
  buf->len = Worker::kReadBufferSize;
}

void HttpConnection::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<HttpConnection*>(s->data);
  if (self->lingering_) {
    // Input after the final answer is discarded, up to a bound; the client's end ends it.
    if (nread > 0) self->linger_bytes_ += static_cast<size_t>(nread);
    if (nread < 0 || self->linger_bytes_ > self->ctx_->limits.linger_max_bytes) self->Close();
    return;
  }
  if (nread > 0) {
    self->last_active_ms_ = NowMs(self->worker_->loop());
    self->HandleRead(buf->base, static_cast<size_t>(nread));
    return;
  }
  if (nread == 0) return;
  // EOF or error: answer what was already asked (the client may have half-closed), then close.
  if (self->reading_) uv_read_stop(s);
  self->reading_ = false;
  self->stop_parsing_ = true;
  self->peer_eof_ = true;
  if (nread != UV_EOF || (self->slots_.empty() && !self->write_active_ && self->out_.empty())) {
    self->Close();
  } else {
    self->close_when_flushed_ = true;
    self->MarkDirty();
  }
}

void HttpConnection::HandleRead(const char* data, size_t len) {
  if (stop_parsing_) return;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  if (err == HPE_OK) {
    // fallthrough to backpressure check
  } else if (err == HPE_PAUSED && parse_paused_ && !stop_parsing_) {
    // Back-pressure after a complete request: keep the rest, read no more until it drains.
    const char* pos = llhttp_get_error_pos(&parser_);
    held_input_.assign(pos, static_cast<size_t>(data + len - pos));
    read_paused_ = true;
  } else if (err == HPE_PAUSED || stop_parsing_) {
    stop_parsing_ = true;
  } else {
    ctx_->metrics->protocol_errors.fetch_add(1, std::memory_order_relaxed);
    LOG_DEBUG("bad request: %s (%s)", llhttp_errno_name(err), llhttp_get_error_reason(&parser_));
    FailRequest(400);
  }
  if ((stop_parsing_ || parse_paused_) && reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(handle_));
    reading_ = false;
  } else if (reading_ && OverQueued()) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(handle_));
    reading_ = false;
    read_paused_ = true;
  }
}

bool HttpConnection::OverQueued() const {
  return slots_.size() >= kMaxQueuedAnswers || buffered() > kMaxPendingOutput;
}

void HttpConnection::MaybeResumeReading() {
  if (!read_paused_ || closing_ || stop_parsing_) return;
  if (slots_.size() >= kMaxQueuedAnswers / 2 || buffered() > kMaxPendingOutput / 2) return;
  read_paused_ = false;
  if (parse_paused_) {
    // The requests read before the pause first; they may pause parsing again.
    parse_paused_ = false;
    llhttp_resume(&parser_);
    std::string held;
    held.swap(held_input_);
    HandleRead(held.data(), held.size());
    if (read_paused_ || stop_parsing_ || closing_ || reading_) return;
  }
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(handle_), OnAlloc, OnRead) == 0) reading_ = true;
}

bool HttpConnection::CountHeaderBytes(size_t len) {
  header_bytes_ += len;
  if (header_bytes_ <= ctx_->limits.max_header_bytes) return true;
  FailRequest(431);
  return false;
}

// ---- llhttp callbacks --------------------------------------------------------------------------

const llhttp_settings_t* HttpConnection::Settings() {
  static llhttp_settings_t s = [] {
    llhttp_settings_t x;
    llhttp_settings_init(&x);
    x.on_message_begin = OnMessageBegin;
    x.on_url = OnUrl;
    x.on_header_field = OnHeaderField;
    x.on_header_value = OnHeaderValue;
    x.on_header_value_complete = OnHeaderValueComplete;
    x.on_headers_complete = OnHeadersComplete;
    x.on_body = OnBody;
    x.on_message_complete = OnMessageComplete;
    return x;
  }();
  return &s;
}

int HttpConnection::OnMessageBegin(llhttp_t* p) {
  auto* self = static_cast<HttpConnection*>(p->data);
  self->req_.Reset();
  self->header_field_.clear();
  self->header_value_.clear();
  self->header_bytes_ = 0;
  self->expect_continue_ = false;
  self->in_headers_ = true;
  self->headers_started_ms_ = NowMs(self->worker_->loop());
  return 0;
}

int HttpConnection::OnUrl(llhttp_t* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (!self->CountHeaderBytes(len)) return -1;
  self->req_.target.append(at, len);
  return 0;
}

int HttpConnection::OnHeaderField(llhttp_t* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (!self->CountHeaderBytes(len)) return -1;
  // Only a few header names matter; longer names are kept short to bound memory.
  if (self->header_field_.size() < kMaxKeptHeader) {
    self->header_field_.append(at, std::min<size_t>(len, kMaxKeptHeader));
  }
  return 0;
}

int HttpConnection::OnHeaderValue(llhttp_t* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (!self->CountHeaderBytes(len)) return -1;
  if (self->header_value_.size() < kMaxKeptHeader) {
    self->header_value_.append(at, std::min<size_t>(len, kMaxKeptHeader));
  }
  return 0;
}

int HttpConnection::OnHeaderValueComplete(llhttp_t* p) {
  auto* self = static_cast<HttpConnection*>(p->data);
  const std::string& f = self->header_field_;
  const std::string& v = self->header_value_;
  static constexpr std::string_view kPrefix = "x-kv-";
  if (f.size() > kPrefix.size() &&
      EqualsIgnoreCase(std::string_view(f).substr(0, kPrefix.size()), kPrefix)) {
    std::string& out = self->req_.kv_headers;
    for (size_t i = kPrefix.size(); i < f.size(); ++i) {
      const char c = f[i];
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    }
    out.push_back(':');
    out.append(v);
    out.push_back('\n');
  } else if (EqualsIgnoreCase(f, "expect")) {
    self->expect_continue_ = EqualsIgnoreCase(v, "100-continue");
  }
  self->header_field_.clear();
  self->header_value_.clear();
  return 0;
}

int HttpConnection::OnHeadersComplete(llhttp_t* p) {
  auto* self = static_cast<HttpConnection*>(p->data);
  self->in_headers_ = false;
  self->in_body_ = true;
  self->body_started_ms_ = NowMs(self->worker_->loop());
  Request& r = self->req_;
  r.method = p->method;
  r.http10 = p->http_major == 1 && p->http_minor == 0;
  r.keep_alive = llhttp_should_keep_alive(p);
  uint64_t max = self->ctx_->limits.max_value_bytes;
  bool has_length = (p->flags & F_CONTENT_LENGTH) != 0;
  if (has_length && p->content_length > max) {
    self->FailRequest(413);
    return -1;
  }
  if (self->expect_continue_ && !r.http10 && self->slots_.empty() && !self->write_active_ &&
      self->out_.empty()) {
    // Nothing is queued before this request, so "100 Continue" can go out right away.
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    self->out_.append(kContinue, sizeof kContinue - 1);
    self->MarkDirty();
  }
  if (has_length) r.body.reserve(static_cast<size_t>(p->content_length));
  return 0;
}

int HttpConnection::OnBody(llhttp_t* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (self->req_.body.size() + len > self->ctx_->limits.max_value_bytes) {
    self->FailRequest(413);  // a chunked body that grew past the limit
    return -1;
  }
  self->req_.body.append(at, len);
  return 0;
}

int HttpConnection::OnMessageComplete(llhttp_t* p) {
  auto* self = static_cast<HttpConnection*>(p->data);
  self->in_body_ = false;
  self->req_.start_ns = MonotonicNs();
  uint64_t seq = self->AddSlot();
  bool keep = self->req_.keep_alive && !self->draining_;
  if (!keep) {
    self->slots_.back().close_after = true;
    self->stop_parsing_ = true;
  }
  Slot& slot = self->slots_.back();
  slot.head_only = p->method == HTTP_HEAD;
  slot.http10 = self->req_.http10;
  slot.method = self->req_.method;
  slot.start_ns = self->req_.start_ns;
  slot.unsafe = p->method != HTTP_GET && p->method != HTTP_HEAD;
  if (self->deferred_.empty() && self->CanDispatch(slot.unsafe)) {
    self->Dispatch(seq, self->req_);
  } else {
    self->deferred_bytes_ += self->req_.target.size() + self->req_.body.size();
    self->deferred_.emplace_back(seq, std::move(self->req_));
  }
  // Pause after a request that ends the connection so llhttp stops here, and after one that
  // fills the queue (answers or requests waiting, output unwritten): the rest of the input
  // waits, unparsed, until the client read enough (MaybeResumeReading). So a client that
  // pipelines without reading holds at most kMaxQueuedAnswers requests and about
  // kMaxPendingOutput bytes, plus the answers to requests already dispatched.
  if (self->stop_parsing_) return HPE_PAUSED;
  if (self->OverQueued()) {
    self->parse_paused_ = true;
    return HPE_PAUSED;
  }
  return 0;
}

void HttpConnection::Dispatch(uint64_t seq, Request& req) {
  Slot& slot = slots_[seq - head_seq_];
  slot.dispatched = true;
  ++dispatched_unanswered_;
  if (slot.unsafe) ++unsafe_unanswered_;
  std::string_view path, query;
  SplitTarget(req.target, &path, &query);
  RequestHandler* h = ctx_->handler;
  for (const RequestHandler::Route& route : h->routes()) {
    if (route.prefix ? path.starts_with(route.path) : path == route.path) {
      return (h->*route.fn)(req, path, query, Responder(this, seq));
    }
  }
  Responder(this, seq).Respond(400, "unknown path\n");
}

void HttpConnection::DispatchDeferred() {
  if (dispatching_deferred_) return;  // a synchronous answer inside Dispatch: the loop continues
  dispatching_deferred_ = true;
  while (!deferred_.empty() && !closing_) {
    auto& [seq, req] = deferred_.front();
    if (!CanDispatch(slots_[seq - head_seq_].unsafe)) break;
    Request r = std::move(req);
    uint64_t s = seq;
    deferred_bytes_ -= r.target.size() + r.body.size();
    deferred_.pop_front();
    Dispatch(s, r);
  }
  dispatching_deferred_ = false;
}

// ---- answers -----------------------------------------------------------------------------------

uint64_t HttpConnection::AddSlot() {
  slots_.emplace_back();
  ++unanswered_;
  return head_seq_ + slots_.size() - 1;
}

void HttpConnection::FailRequest(int status) {
  if (stop_parsing_ && status != 503) return;  // already ending
  stop_parsing_ = true;
  in_headers_ = false;
  in_body_ = false;
  uint64_t seq = AddSlot();
  slots_.back().close_after = true;
  slots_.back().start_ns = MonotonicNs();
  Responder(this, seq).Respond(status, "");
}

void Responder::Respond(int status, std::string_view body, std::initializer_list<Header> headers,
                        std::unique_ptr<BodyStream> stream) {
  HttpConnection* c = conn_;
  if (c == nullptr) return;
  conn_ = nullptr;
  --c->unanswered_;
  if (c->closing_) {
    c->MaybeFree();
    return;
  }
  HttpConnection::Slot& s = c->slots_[seq_ - c->head_seq_];
  s.ready = true;
  if (s.dispatched) {
    --c->dispatched_unanswered_;
    if (s.unsafe) --c->unsafe_unanswered_;
  }
  c->ctx_->metrics->Record(s.method, status, MonotonicNs() - s.start_ns);
  std::string& out = s.bytes;
  out.reserve(128 + (s.head_only ? 0 : body.size()));
  out.append("HTTP/1.1 ");
  AppendDecimal(&out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(StatusText(status));
  out.append("\r\n");
  if (stream) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else {
    out.append("Content-Length: ");
    AppendDecimal(&out, body.size());
    out.append("\r\n");
  }
  for (const Header& h : headers) {
    out.append(h.name);
    out.append(": ");
    out.append(h.value);
    out.append("\r\n");
  }
  if (s.close_after) {
    out.append("Connection: close\r\n");
  } else if (s.http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  if (!s.head_only) {
    if (stream) {
      s.stream = std::move(stream);
      s.stream->set_wake([c] { c->MarkDirty(); });
    } else {
      out.append(body);
    }
  }
  c->answer_bytes_ += out.size();
  c->MarkDirty();
  if (!c->deferred_.empty()) c->DispatchDeferred();
}

void HttpConnection::MarkDirty() {
  if (!dirty && !closing_) worker_->MarkDirty(this);
}

void HttpConnection::Flush() {
  if (closing_) return;
  bool more_stream = false;
  while (!slots_.empty() && slots_.front().ready) {
    if (final_answer_out_) {
      PopFrontSlot();  // answers after a closing one are never sent
      continue;
    }
    Slot& s = slots_.front();
    if (!s.bytes.empty()) {
      answer_bytes_ -= s.bytes.size();
      if (out_.empty()) {
        out_.swap(s.bytes);
      } else {
        out_.append(s.bytes);
        s.bytes.clear();
      }
    }
    if (s.stream) {
      if (pending_output() >= kMaxPendingOutput) break;  // resumed when the write completes
      size_t mark = out_.size();
      out_.append("00000000\r\n");  // chunk-size placeholder, rewritten below
      size_t body_start = out_.size();
      bool failed = false;
      bool more = s.stream->Produce(&out_, kStreamSlice, &failed);
      size_t n = out_.size() - body_start;
      if (n == 0) {
        out_.resize(mark);
      } else {
        // The size in place of the placeholder, as 8 hex digits with leading zeros (allowed by
        // RFC 9112's chunk-size = 1*HEXDIG): the chunk's bytes are not moved.
        WriteHex8(&out_[mark], n);
        out_.append("\r\n");
      }
      if (failed) {
        s.stream.reset();
        s.close_after = true;
        close_when_flushed_ = true;
        stop_parsing_ = true;
      } else if (more) {
        // Yield: continue next iteration, or once a waiting stream wakes the connection.
        if (!s.stream->waiting()) more_stream = true;
        break;
      } else {
        s.stream.reset();
        out_.append("0\r\n\r\n");
      }
    }
    if (s.close_after) {
      close_when_flushed_ = true;
      stop_parsing_ = true;
      final_answer_out_ = true;
    }
    PopFrontSlot();
  }
  StartWrite();
  if (more_stream && !write_active_) MarkDirty();
  if (!write_active_ && out_.empty() && close_when_flushed_ && slots_.empty()) {
    CloseAfterOutput();
    return;
  }
  MaybeResumeReading();
}

// A staged close (RFC 9112 section 9.6): half-close, so the client reads every answer and then
// the end, and discard its input until it closes too or linger_ms pass. Closing at once while
// the client is still sending (a body answered 408 or 413 midway) leaves unread input in the
// kernel, which then sends a reset instead of the end; the reset can destroy the last answer in
// the client's receive buffer before the client reads it. Bounded in time and bytes, so a
// client that goes on sending a huge body is not read to its end.
void HttpConnection::CloseAfterOutput() {
  if (closing_ || lingering_) return;
  if (peer_eof_ || draining_) {
    Close();
    return;
  }
  lingering_ = true;
  linger_started_ms_ = NowMs(worker_->loop());
  auto* stream = reinterpret_cast<uv_stream_t*>(handle_);
  if (uv_shutdown(&shutdown_req_, stream, OnShutdown) != 0) {
    Close();
    return;
  }
  if (!reading_ && uv_read_start(stream, OnAlloc, OnRead) == 0) reading_ = true;
}

void HttpConnection::OnShutdown(uv_shutdown_t* req, int status) {
  // With status UV_ECANCELED when the handle is closed first: runs before OnClose.
  auto* self = static_cast<HttpConnection*>(req->handle->data);
  if (status < 0 && !self->closing_) self->Close();
}

void HttpConnection::PopFrontSlot() {
  answer_bytes_ -= slots_.front().bytes.size();
  slots_.pop_front();
  ++head_seq_;
}

void HttpConnection::StartWrite() {
  if (write_active_ || out_.empty()) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(handle_);
  if (TryWriteNow(stream, &out_) < 0) {
    Close();
    return;
  }
  if (out_.empty()) {
    last_active_ms_ = NowMs(worker_->loop());
    return;
  }
  writing_.swap(out_);
  uv_buf_t buf = uv_buf_init(writing_.data(), static_cast<unsigned>(writing_.size()));
  if (uv_write(&write_req_, stream, &buf, 1, OnWrite) != 0) {
    writing_.clear();
    Close();
    return;
  }
  write_active_ = true;
  send_progress_ms_ = NowMs(worker_->loop());
  send_queue_seen_ = handle_->write_queue_size;
}

void HttpConnection::OnWrite(uv_write_t* req, int status) {
  auto* self = static_cast<HttpConnection*>(req->handle->data);
  self->write_active_ = false;
  self->writing_.clear();
  if (self->writing_.capacity() > kMaxPendingOutput) std::string().swap(self->writing_);
  if (self->closing_) {
    self->MaybeFree();
    return;
  }
  if (status < 0) {
    self->Close();
    return;
  }
  self->last_active_ms_ = NowMs(self->worker_->loop());
  self->Flush();
}

}  // namespace kv::net
