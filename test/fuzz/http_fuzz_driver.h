// Shared by the HTTP fuzz targets: one real Worker (Server::StartDetached, no listener, no
// thread) serves one end of a socketpair per input as it serves an accepted connection (first
// bytes classified by the service, then an HttpConnection); the fuzz
// input is written to the other end in pieces, the loop runs until quiet after each, the answers
// are read back, then the client half-closes and the loop runs until the connection closed. The
// answers are parsed with llhttp (HTTP_RESPONSE) and checked for basic invariants; a violation
// traps (a crash for libFuzzer), so does a connection that never closes after the client's EOF.
#pragma once
#include <fcntl.h>
#include <llhttp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "loop/worker.h"

namespace kv::fuzz {

inline void Require(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "invariant violated: %s\n", what);
    __builtin_trap();
  }
}

// One parsed answer.
struct Answer {
  int status = 0;
  bool close = false;  // Connection: close
  std::string body;
};

// Parses a byte stream of HTTP responses. head_only(i) says whether the i-th final answer
// (1xx excluded) answers a HEAD (no body follows then). complete: the stream ended cleanly
// (every answer whole); ok: no parse error.
class AnswerParser {
 public:
  template <typename HeadOnly>
  void Parse(std::string_view bytes, HeadOnly head_only) {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_status_complete = [](llhttp_t* p) {
      auto* self = static_cast<AnswerParser*>(p->data);
      self->answers.emplace_back();
      self->answers.back().status = p->status_code;
      return 0;
    };
    s.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      auto* self = static_cast<AnswerParser*>(p->data);
      if (self->in_value_) self->field_.clear();
      self->in_value_ = false;
      self->field_.append(at, len);
      return 0;
    };
    s.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      auto* self = static_cast<AnswerParser*>(p->data);
      self->in_value_ = true;
      if (strcasecmp(self->field_.c_str(), "connection") == 0 && len == 5 &&
          strncasecmp(at, "close", 5) == 0) {
        self->answers.back().close = true;
      }
      return 0;
    };
    s.on_headers_complete = [](llhttp_t* p) {
      auto* self = static_cast<AnswerParser*>(p->data);
      self->field_.clear();
      self->in_value_ = false;
      if (p->status_code >= 100 && p->status_code < 200) return 0;
      const size_t final_index = self->finals_++;
      return self->head_only_(self->head_only_ctx_, final_index) ? 1 : 0;
    };
    s.on_body = [](llhttp_t* p, const char* at, size_t len) {
      static_cast<AnswerParser*>(p->data)->answers.back().body.append(at, len);
      return 0;
    };
    head_only_ctx_ = &head_only;
    head_only_ = [](void* ctx, size_t i) { return (*static_cast<HeadOnly*>(ctx))(i); };
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    p.data = this;
    llhttp_errno_t e = llhttp_execute(&p, bytes.data(), bytes.size());
    ok = e == HPE_OK;
    if (ok) complete = llhttp_finish(&p) == HPE_OK;
  }

  std::vector<Answer> answers;
  bool ok = false;
  bool complete = false;

 private:
  std::string field_;
  bool in_value_ = false;
  size_t finals_ = 0;
  void* head_only_ctx_ = nullptr;
  bool (*head_only_)(void*, size_t) = nullptr;
};

// Drives one connection per Run() on worker 0 of a detached server.
class ConnDriver {
 public:
  // Ignores SIGPIPE, as the node does (writes to a socket whose peer closed fail with EPIPE).
  explicit ConnDriver(net::Server* server) : server_(server) { signal(SIGPIPE, SIG_IGN); }

  // Writes `input` in pieces (sizes from `seed`; 0: all at once), then half-closes and runs the
  // loop until the node closed its end. Returns every byte the node wrote.
  std::string Run(std::string_view input, uint8_t seed) {
    int sv[2];
    Require(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
            "socketpair");
    net::Worker& w = server_->worker(0);
    auto* h = new uv_tcp_t;
    uv_tcp_init(w.loop(), h);
    Require(uv_tcp_open(h, sv[0]) == 0, "uv_tcp_open");
    w.Serve(h);
    client_ = sv[1];
    out_.clear();
    eof_ = false;
    uint32_t rng = seed * 2654435761u + 1;
    size_t off = 0;
    for (int piece = 0; off < input.size(); ++piece) {
      size_t take = input.size() - off;
      if (seed != 0 && piece < kMaxPieces - 1) {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        take = std::min<size_t>(take, 1 + rng % (seed < 64 ? 8 : 512));
      }
      ssize_t n = write(client_, input.data() + off, take);
      if (n > 0) {
        // One loop iteration reads the piece (and answers what it completed).
        off += static_cast<size_t>(n);
        uv_run(w.loop(), UV_RUN_NOWAIT);
        ReadAnswers();
        continue;
      }
      // The node stopped reading (backpressure, an answer that ends the connection, or it
      // closed): run it and read its answers; give up writing once that changes nothing.
      if (n < 0 && errno != EAGAIN) break;
      if (!RunUntilQuiet() || eof_) break;
    }
    shutdown(client_, SHUT_WR);
    for (int i = 0; i < 100000 && !eof_; ++i) {
      uv_run(w.loop(), UV_RUN_NOWAIT);
      ReadAnswers();
    }
    Require(eof_, "the connection did not close after the client's EOF");
    close(client_);
    // Close callbacks and frees.
    for (int i = 0; i < 4; ++i) uv_run(w.loop(), UV_RUN_NOWAIT);
    return out_;
  }

  // Runs the loop until an iteration reads nothing new; true if anything was read.
  bool RunUntilQuiet() {
    bool any = false;
    int quiet = 0;
    for (int i = 0; i < 10000 && quiet < 2; ++i) {
      uv_run(server_->worker(0).loop(), UV_RUN_NOWAIT);
      if (ReadAnswers()) {
        any = true;
        quiet = 0;
      } else {
        ++quiet;
      }
    }
    return any;
  }

 private:
  bool ReadAnswers() {
    bool got = false;
    char buf[65536];
    while (!eof_) {
      ssize_t n = read(client_, buf, sizeof buf);
      if (n > 0) {
        out_.append(buf, static_cast<size_t>(n));
        got = true;
      } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        eof_ = true;
        got = true;
      } else {
        break;
      }
    }
    return got;
  }

  static constexpr int kMaxPieces = 8;  // the last piece takes the rest

  net::Server* server_;
  int client_ = -1;
  std::string out_;
  bool eof_ = false;
};

}  // namespace kv::fuzz
