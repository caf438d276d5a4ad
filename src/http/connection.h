// One accepted client connection: llhttp parsing, requests dispatched to the loop's handler,
// answers written back in request order (pipelining) with one write per loop iteration (the
// worker's before-poll step). Tracked by its Worker; lives on the worker's loop thread only and
// frees itself once its handle is closed and every request it dispatched has been answered.
#pragma once
#include <llhttp.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <string>

#include "http/http.h"
#include "http/metrics.h"
#include "loop/worker.h"

namespace kv::net {

struct HttpLimits {
  uint64_t max_value_bytes = 8ull << 20;  // a body past this answers 413
  uint64_t idle_timeout_ms = 60000;
  uint64_t header_timeout_ms = 10000;     // headers not complete within this: closed
  uint64_t body_timeout_ms = 30000;       // body not complete this long after its headers: 408
  size_t max_header_bytes = 16 * 1024;    // request line + headers; past it 431
  uint64_t send_timeout_ms = 30000;       // output that makes no progress this long: closed
  uint64_t linger_ms = 5000;              // after a final answer, input discarded this long
  size_t linger_max_bytes = 1024 * 1024;  // and this much at most
};

// What the HTTP connections of one loop share.
struct HttpContext {
  Worker* worker = nullptr;
  RequestHandler* handler = nullptr;
  Metrics* metrics = nullptr;
  HttpLimits limits;
};

class HttpConnection final : public Connection {
 public:
  // Takes `handle` (already accepted, allocated with new, reading stopped) and the bytes already
  // read from it; starts reading.
  HttpConnection(HttpContext* ctx, uv_tcp_t* handle, std::string_view first_bytes);
  // Answers 503 and closes: used past --max-connections.
  void RejectOverloaded();

  // The worker's before-poll step: moves finished answers into the output and writes.
  void Flush() override;
  // The worker's sweep timer: closes the connection when idle or stuck in headers.
  void Sweep(uint64_t now_ms) override;
  // Graceful shutdown: close once every dispatched request is answered and written.
  void Drain() override;
  // Immediate close (shutdown deadline).
  void Abort() override { Close(); }

 private:
  friend class Responder;
  struct Slot {
    bool ready = false;
    bool close_after = false;
    bool head_only = false;
    bool http10 = false;
    int method = 0;
    bool dispatched = false;  // handed to the handler (error answers are not)
    bool unsafe = false;      // not GET/HEAD
    uint64_t start_ns = 0;
    std::string bytes;                   // status line + headers (+ body when not streamed)
    std::unique_ptr<BodyStream> stream;  // chunked body pulled after `bytes`
  };

  static int OnMessageBegin(llhttp_t* p);
  static int OnUrl(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderField(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderValueComplete(llhttp_t* p);
  static int OnHeadersComplete(llhttp_t* p);
  static int OnBody(llhttp_t* p, const char* at, size_t len);
  static int OnMessageComplete(llhttp_t* p);
  static const llhttp_settings_t* Settings();

  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnClose(uv_handle_t* h);

  void HandleRead(const char* data, size_t len);
  // Pipelined requests run concurrently only while they are all safe (GET/HEAD); a PUT or
  // DELETE waits for everything before it, and everything after it waits for it, so replicas
  // see one connection's writes in the order it sent them.
  bool CanDispatch(bool unsafe) const {
    return dispatched_unanswered_ == 0 || (!unsafe && unsafe_unanswered_ == 0);
  }
  void Dispatch(uint64_t seq, Request& req);
  void DispatchDeferred();
  bool CountHeaderBytes(size_t len);
  // Queues an error answer that ends the connection (400/413/431/503), after earlier answers.
  void FailRequest(int status);
  uint64_t AddSlot();
  void MarkDirty();
  void StartWrite();
  void MaybeResumeReading();
  void Close();
  // Ends the connection once its last answer is written: see the definition.
  void CloseAfterOutput();
  static void OnShutdown(uv_shutdown_t* req, int status);
  void MaybeFree();
  void PopFrontSlot();
  size_t pending_output() const { return out_.size() + writing_.size(); }
  // Bytes held for this connection: output, answers waiting for an earlier one, and requests
  // waiting to be dispatched (their bodies).
  size_t buffered() const { return pending_output() + answer_bytes_ + deferred_bytes_; }
  // Back-pressure: parse no further request while this holds (see OnMessageComplete).
  bool OverQueued() const;

  HttpContext* ctx_;
  Worker* worker_;
  uv_tcp_t* handle_;
  llhttp_t parser_;
  Request req_;
  std::string header_field_;
  std::string header_value_;
  size_t header_bytes_ = 0;
  bool expect_continue_ = false;
  bool in_headers_ = false;
  uint64_t headers_started_ms_ = 0;
  bool in_body_ = false;  // headers complete, body not yet
  uint64_t body_started_ms_ = 0;
  uint64_t last_active_ms_ = 0;

  std::deque<Slot> slots_;
  uint64_t head_seq_ = 0;  // sequence number of slots_.front()
  size_t unanswered_ = 0;  // slots not yet answered (dispatched or deferred)
  size_t dispatched_unanswered_ = 0;
  size_t unsafe_unanswered_ = 0;
  std::deque<std::pair<uint64_t, Request>> deferred_;  // complete, waiting for CanDispatch
  bool dispatching_deferred_ = false;
  size_t answer_bytes_ = 0;    // in slots_[i].bytes
  size_t deferred_bytes_ = 0;  // targets and bodies in deferred_

  std::string out_;      // answers waiting for the next write
  std::string writing_;  // the write in flight
  uv_write_t write_req_;
  bool write_active_ = false;

  uint64_t send_progress_ms_ = 0;  // when the write in flight last made progress
  size_t send_queue_seen_ = 0;     // its unwritten bytes then

  bool reading_ = false;
  bool read_paused_ = false;   // backpressure: too many queued answers or too much output
  bool parse_paused_ = false;  // llhttp paused after a request (OverQueued); rest in held_input_
  std::string held_input_;     // bytes read and not parsed yet
  bool stop_parsing_ = false;  // after an error or Connection: close: ignore further bytes
  bool close_when_flushed_ = false;
  // An answer that ends the connection is in the output: later answers are dropped. (Not the
  // same as close_when_flushed_, which a client's EOF also sets: it still gets every answer.)
  bool final_answer_out_ = false;
  bool draining_ = false;
  bool peer_eof_ = false;   // the client half-closed: nothing more will arrive
  bool lingering_ = false;  // half-closed by us, discarding input until the client closes
  uint64_t linger_started_ms_ = 0;
  size_t linger_bytes_ = 0;  // input discarded since
  uv_shutdown_t shutdown_req_;
  bool closing_ = false;  // uv_close called
  bool handle_closed_ = false;
};

}  // namespace kv::net
