#include "net/server.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/log.h"
#include "net/http_conn.h"

namespace kv::net {

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// ---- Metrics -----------------------------------------------------------------------------------

const double Metrics::kBucketBounds[kBuckets] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                 0.005,  0.01,    0.025,  0.05,  0.1,
                                                 0.25,   0.5,     1.0,    2.5,   1e300};

int Metrics::MethodIndex(int m) {
  switch (m) {
    case HTTP_GET:
      return 0;
    case HTTP_PUT:
      return 1;
    case HTTP_DELETE:
      return 2;
    default:
      return 3;
  }
}

void Metrics::Record(int method, int status, uint64_t latency_ns) {
  if (status < 0 || status >= 600) status = 599;
  requests[MethodIndex(method)][status].fetch_add(1, std::memory_order_relaxed);
  double s = static_cast<double>(latency_ns) / 1e9;
  int b = 0;
  while (b < kBuckets - 1 && s > kBucketBounds[b]) ++b;
  latency_buckets[b].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ns.fetch_add(latency_ns, std::memory_order_relaxed);
  latency_count.fetch_add(1, std::memory_order_relaxed);
}

// ---- Worker ------------------------------------------------------------------------------------

Worker::Worker(Server* server, int index)
    : server_(server), index_(index), read_buf_(new char[kReadBufferSize]) {
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_idle_init(&loop_, &idle_);
  idle_.data = this;
  uv_timer_init(&loop_, &sweep_);
  sweep_.data = this;
  uv_async_init(&loop_, &stop_async_, OnStop);
  stop_async_.data = this;
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
}

Worker::~Worker() {
  if (thread_.joinable()) thread_.join();
  uv_loop_close(&loop_);
}

const Config& Worker::config() const {
  return server_->config();
}

namespace {

// A non-blocking SO_REUSEPORT socket bound to the wildcard address of `family` on `port`, or -1
// with errno set. AF_INET6 sockets also accept IPv4 (IPV6_V6ONLY off), so peers and clients may
// name this node by an IPv4 or an IPv6 address, or by a name that resolves to either.
int BindWildcard(int family, uint16_t port, bool reuseport) {
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  sockaddr_storage addr{};
  socklen_t len;
  if (family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    a6->sin6_addr = in6addr_any;
    len = sizeof *a6;
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    a4->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof *a4;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

// Dual-stack where the kernel has IPv6; IPv4 only where it has not (or IPv6 is disabled). On
// failure *err says why.
int BindNodePort(uint16_t port, bool reuseport, std::string* err) {
  int fd = BindWildcard(AF_INET6, port, reuseport);
  if (fd < 0 && errno != EADDRINUSE) fd = BindWildcard(AF_INET, port, reuseport);
  if (fd < 0) *err = "cannot listen on port " + std::to_string(port) + ": " + strerror(errno);
  return fd;
}

}  // namespace

bool Worker::Listen(const std::string& host, uint16_t port, std::string* err) {
  (void)host;
  // One listener per loop (SO_REUSEPORT); the kernel spreads new connections across them.
  int fd = BindNodePort(port, true, err);
  if (fd < 0) return false;
  int rc = uv_tcp_open(&listener_, fd);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 1024, OnConnection);
  if (rc != 0) {
    *err = "cannot listen on port " + std::to_string(port) + ": " + uv_strerror(rc);
    return false;
  }
  return true;
}

void Worker::Run() {
  char name[16];
  snprintf(name, sizeof name, "kv-loop-%d", index_);
  pthread_setname_np(pthread_self(), name);
  uv_check_start(&check_, OnCheck);
  uint64_t sweep = config().idle_timeout_ms / 4;
  if (sweep < 50) sweep = 50;
  if (sweep > 1000) sweep = 1000;
  uv_timer_start(&sweep_, OnSweep, sweep, sweep);
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Anything still open (a handler's stray handle) is closed before the loop is.
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
}

void Worker::OnConnection(uv_stream_t* listener, int status) {
  auto* self = static_cast<Worker*>(listener->data);
  if (status < 0) {
    LOG_WARN("accept: %s", uv_strerror(status));
    return;
  }
  auto* h = new uv_tcp_t;
  uv_tcp_init(&self->loop_, h);
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(h)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(h),
             [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
    return;
  }
  bool over = self->server_->open_connections().load(std::memory_order_relaxed) >=
              static_cast<int64_t>(self->config().max_connections);
  auto* c = new HttpConnection(self, h);
  if (over) c->RejectOverloaded();
}

void Worker::AddConnection(HttpConnection* c) {
  c->prev = nullptr;
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++conn_count_;
}

void Worker::RemoveConnection(HttpConnection* c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    conns_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --conn_count_;
  if (draining_) MaybeFinish();
}

void Worker::MarkDirty(HttpConnection* c) {
  c->dirty = true;
  dirty_.push_back(c);
  // Flushed in OnCheck, after this iteration's poll. An answer completed outside the poll phase
  // (a peer transport's deadline timer failing a replica request) must not wait in a blocking
  // poll for the next unrelated wakeup (up to a second).
  Wake();
}

void Worker::Wake() {
  uv_idle_start(&idle_, [](uv_idle_t*) {});
}

void Worker::OnCheck(uv_check_t* h) {
  auto* self = static_cast<Worker*>(h->data);
  if (self->handler_) self->handler_->OnLoopIteration();
  self->flushing_.clear();
  self->flushing_.swap(self->dirty_);
  for (HttpConnection* c : self->flushing_) c->Flush();
  // Streams that yielded want another turn without waiting for I/O: keep the loop spinning.
  if (self->dirty_.empty()) {
    uv_idle_stop(&self->idle_);
  } else if (!self->finished_) {
    self->Wake();
  }
}

void Worker::OnSweep(uv_timer_t* t) {
  auto* self = static_cast<Worker*>(t->data);
  uint64_t now = uv_now(&self->loop_);
  for (HttpConnection* c = self->conns_; c;) {
    HttpConnection* next = c->next;
    c->Sweep(now);
    c = next;
  }
  if (self->draining_) self->MaybeFinish();
}

void Worker::OnStop(uv_async_t* a) {
  auto* self = static_cast<Worker*>(a->data);
  self->BeginDrain();
}

void Worker::BeginDrain() {
  if (!draining_) {
    draining_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    for (HttpConnection* c = conns_; c;) {
      HttpConnection* next = c->next;
      c->Drain();
      c = next;
    }
  }
  if (forced_) {
    for (HttpConnection* c = conns_; c;) {
      HttpConnection* next = c->next;
      c->Abort();
      c = next;
    }
  }
  MaybeFinish();
}

void Worker::MaybeFinish() {
  if (finished_ || conn_count_ != 0) return;
  if (!forced_ && handler_ && handler_->pending() != 0) return;
  finished_ = true;
  if (handler_) handler_->Close();
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), nullptr);
  std::lock_guard<std::mutex> g(async_mu_);
  async_closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&stop_async_), nullptr);
}

// ---- Server ----

static bool ProbePortFree(uint16_t port, std::string* err) {
  int fd = BindNodePort(port, false, err);
  if (fd < 0) return false;
  close(fd);
  return true;
}

Server::Server(const Config& cfg, HandlerFactory factory)
    : cfg_(cfg), factory_(std::move(factory)) {}

Server::~Server() {
  Stop();
  Wait();
}

bool Server::Start(std::string* err) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  start_ms_ = static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  // SO_REUSEPORT would let a second node share this port silently: a plain bind first proves the
  // port is free (another process's reuseport sockets make it fail with EADDRINUSE).
  if (!ProbePortFree(cfg_.port, err)) return false;
  for (int i = 0; i < cfg_.threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(this, i));
    if (!workers_.back()->Listen("", cfg_.port, err)) return false;
  }
  for (auto& w : workers_) w->handler_ = factory_(*w);
  for (auto& w : workers_) {
    Worker* raw = w.get();
    w->thread_ = std::thread([raw] { raw->Run(); });
  }
  return true;
}

void Server::Stop() {
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> g(w->async_mu_);
    if (!w->async_closed_) uv_async_send(&w->stop_async_);
  }
}

void Server::ForceStop() {
  for (auto& w : workers_) w->forced_ = true;
  Stop();
}

void Server::Wait() {
  for (auto& w : workers_) {
    if (w->thread_.joinable()) w->thread_.join();
  }
}

void Server::ForEachMetrics(const std::function<void(const Metrics&)>& f) const {
  for (const auto& w : workers_) f(w->metrics_);
}

}  // namespace kv::net
