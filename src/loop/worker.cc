#include "loop/worker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/log.h"

namespace kv::net {

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool ParseRunDelayNs(std::string_view text, uint64_t* ns) {
  const char* end = text.data() + text.size();
  uint64_t on_cpu = 0;
  auto r = std::from_chars(text.data(), end, on_cpu);
  if (r.ec != std::errc() || r.ptr == end || *r.ptr != ' ') return false;
  r = std::from_chars(r.ptr + 1, end, *ns);
  return r.ec == std::errc() && (r.ptr == end || *r.ptr == ' ' || *r.ptr == '\n');
}

// ---- Worker ------------------------------------------------------------------------------------

Worker::Worker(Server* server, int index)
    : server_(server), index_(index), read_buf_(new char[kReadBufferSize]) {
  uv_loop_init(&loop_);
  uv_loop_configure(&loop_, UV_METRICS_IDLE_TIME);  // for busy_permille()
  loop_.data = this;
  uv_prepare_init(&loop_, &prepare_);
  prepare_.data = this;
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
  if (schedstat_fd_ >= 0) close(schedstat_fd_);
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

bool Worker::Listen(uint16_t port, std::string* err) {
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

void Worker::Arm() {
  uv_prepare_start(&prepare_, OnPrepare);
  uint64_t sweep = server_->opts_.idle_timeout_ms / 4;
  if (sweep < 50) sweep = 50;
  if (sweep > 1000) sweep = 1000;
  uv_timer_start(&sweep_, OnSweep, sweep, sweep);
}

void Worker::Run() {
  char name[16];
  snprintf(name, sizeof name, "kv-loop-%d", index_);
  pthread_setname_np(pthread_self(), name);
  Arm();
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Anything still open (a service's stray handle) is closed before the loop is.
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
}

// A new connection until its first bytes tell its protocol: then the socket goes, with those
// bytes, to the service, once. Closed if it says too little within first_bytes_timeout_ms.
class Worker::Sniffer final : public Connection {
 public:
  Sniffer(Worker* w, uv_tcp_t* h) : worker_(w), handle_(h), started_ms_(uv_now(w->loop())) {
    handle_->data = this;
    worker_->AddConnection(this);
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(handle_), OnAlloc, OnRead) != 0) Close();
  }
  void Flush() override {}
  void Sweep(uint64_t now_ms) override {
    if (now_ms - started_ms_ > worker_->server_->opts_.first_bytes_timeout_ms) Close();
  }
  void Drain() override { Close(); }
  void Abort() override { Close(); }

 private:
  static constexpr size_t kMaxSniffBytes = 64;  // every protocol decides within this many

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* self = static_cast<Sniffer*>(h->data);
    buf->base = self->worker_->read_buffer();
    buf->len = kReadBufferSize;
  }
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<Sniffer*>(s->data);
    if (nread == 0) return;
    if (nread < 0) return self->Close();
    std::string_view first(buf->base, static_cast<size_t>(nread));
    if (!self->buf_.empty()) {
      self->buf_.append(first);
      first = self->buf_;
    }
    const int protocol = self->worker_->service_->Classify(first);
    if (protocol == Service::kNeedMore && first.size() < kMaxSniffBytes) {
      if (self->buf_.empty()) self->buf_.assign(first);
      return;
    }
    // Handed over: reading stopped, off the list, the socket and its bytes to the service.
    uv_read_stop(s);
    Worker* w = self->worker_;
    uv_tcp_t* h = self->handle_;
    std::string bytes(first);
    w->RemoveConnection(self);
    delete self;
    w->service_->Accept(protocol == Service::kNeedMore ? 0 : protocol, h, bytes, false);
  }
  void Close() {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(handle_));
    worker_->RemoveConnection(this);
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
    delete this;
  }

  Worker* worker_;
  uv_tcp_t* handle_;
  uint64_t started_ms_;
  std::string buf_;
};

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
  self->Serve(h);
}

void Worker::Serve(uv_tcp_t* h) {
  uv_tcp_nodelay(h, 1);
  if (server_->open_connections().load(std::memory_order_relaxed) >=
      static_cast<int64_t>(server_->opts_.max_connections)) {
    return service_->Accept(0, h, {}, true);
  }
  new Sniffer(this, h);
}

void Worker::AddConnection(Connection* c) {
  c->prev = nullptr;
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++conn_count_;
  server_->open_connections_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::RemoveConnection(Connection* c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    conns_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  if (c->dirty) {
    // Gone before its flush (closed, then freed by its close callback): not flushed.
    for (Connection*& d : dirty_) d = d == c ? nullptr : d;
    for (Connection*& d : flushing_) d = d == c ? nullptr : d;
    c->dirty = false;
  }
  --conn_count_;
  server_->open_connections_.fetch_sub(1, std::memory_order_relaxed);
  if (draining_) MaybeFinish();
}

void Worker::MarkDirty(Connection* c) {
  if (c->dirty) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void Worker::Wake() {
  uv_idle_start(&idle_, [](uv_idle_t*) {});
}

void Worker::SampleBusy() {
  const uint64_t now_ms = uv_now(&loop_);
  if (now_ms - busy_mark_ms_ < kBusyWindowMs) return;
  const uint64_t now_ns = uv_hrtime();
  const uint64_t idle_ns = uv_metrics_idle_time(&loop_);
  // This thread's run delay (SampleBusy runs on the loop thread): one pread of a file kept open.
  if (schedstat_fd_ == -2)
    schedstat_fd_ = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  uint64_t delay_ns = delay_mark_ns_;
  if (schedstat_fd_ >= 0) {
    char text[96];
    const ssize_t n = pread(schedstat_fd_, text, sizeof text, 0);
    if (n <= 0 || !ParseRunDelayNs(std::string_view(text, static_cast<size_t>(n)), &delay_ns)) {
      delay_ns = delay_mark_ns_;
    }
  }
  if (busy_mark_ns_ != 0 && now_ns > busy_mark_ns_) {
    const uint64_t wall = now_ns - busy_mark_ns_;
    const uint64_t idle = std::min(wall, idle_ns - std::min(idle_ns, idle_mark_ns_));
    const uint64_t waited = std::min(wall, delay_ns - std::min(delay_ns, delay_mark_ns_));
    const auto busy =
        static_cast<uint32_t>(std::min<uint64_t>(1000, (wall - idle + waited) * 1000 / wall));
    busy_permille_.store(busy, std::memory_order_relaxed);
    if (on_busy_) on_busy_(busy);
  }
  busy_mark_ms_ = now_ms;
  busy_mark_ns_ = now_ns;
  idle_mark_ns_ = idle_ns;
  delay_mark_ns_ = delay_ns;
}

// The one before-poll step of this loop (as Redis's beforeSleep). Every callback that can queue
// work (I/O, timers, the group committer's wake-up) runs before the next prepare phase, and the
// poll that follows computes its timeout after this step, so nothing queued waits for a wake-up.
void Worker::OnPrepare(uv_prepare_t* h) {
  auto* self = static_cast<Worker*>(h->data);
  self->SampleBusy();
  if (self->service_) self->service_->BeforePoll();
  // The dirty HTTP connections: the worker owns the flag (a connection may also flush itself).
  self->flushing_.clear();
  self->flushing_.swap(self->dirty_);
  for (Connection* c : self->flushing_) {
    if (c == nullptr) continue;
    c->dirty = false;
    c->Flush();
  }
  // Answers written may have dispatched pipelined requests that queued peer frames or writes.
  if (self->service_) self->service_->BeforePoll();
  // Streams that yielded, or answers completed just now: no blocking poll before their flush.
  if (self->dirty_.empty()) {
    uv_idle_stop(&self->idle_);
  } else if (!self->finished_) {
    self->Wake();
  }
}

void Worker::OnSweep(uv_timer_t* t) {
  auto* self = static_cast<Worker*>(t->data);
  uint64_t now = uv_now(&self->loop_);
  for (Connection* c = self->conns_; c;) {
    Connection* next = c->next;
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
    for (Connection* c = conns_; c;) {
      Connection* next = c->next;
      c->Drain();
      c = next;
    }
  }
  if (forced_) {
    for (Connection* c = conns_; c;) {
      Connection* next = c->next;
      c->Abort();
      c = next;
    }
  }
  MaybeFinish();
}

void Worker::MaybeFinish() {
  if (finished_ || conn_count_ != 0) return;
  if (!forced_ && service_ && service_->pending() != 0) return;
  finished_ = true;
  if (service_) service_->Close();
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
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

Server::Server(const WorkerOptions& opts, ServiceFactory factory)
    : opts_(opts), factory_(std::move(factory)) {}

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
  if (!ProbePortFree(opts_.port, err)) return false;
  for (int i = 0; i < opts_.threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(this, i));
    if (!workers_.back()->Listen(opts_.port, err)) return false;
  }
  for (auto& w : workers_) w->service_ = factory_(*w);
  for (auto& w : workers_) {
    Worker* raw = w.get();
    w->thread_ = std::thread([raw] { raw->Run(); });
  }
  return true;
}

void Server::StartDetached() {
  start_ms_ = MonotonicNs() / 1000000;
  for (int i = 0; i < opts_.threads; ++i) workers_.push_back(std::make_unique<Worker>(this, i));
  for (auto& w : workers_) w->service_ = factory_(*w);
  for (auto& w : workers_) w->Arm();
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

}  // namespace kv::net
