#include "loadgen.h"

#include <llhttp.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <queue>
#include <thread>

namespace kvload {

int64_t LoadStats::errors_status() const {
  int64_t n = 0;
  for (size_t s = 400; s < status.size(); s++) n += status[s];
  return n - not_found;
}

void LoadStats::merge(const LoadStats& o) {
  latency_us.merge(o.latency_us);
  completed += o.completed;
  bytes_read += o.bytes_read;
  not_found += o.not_found;
  connect_errors += o.connect_errors;
  read_errors += o.read_errors;
  write_errors += o.write_errors;
  timeouts += o.timeouts;
  parse_errors += o.parse_errors;
  for (size_t i = 0; i < status.size(); i++) status[i] += o.status[i];
  rps_samples.insert(rps_samples.end(), o.rps_samples.begin(), o.rps_samples.end());
  for (int i = 0; i < 3; i++) ops[i] += o.ops[i];
  elapsed_s = std::max(elapsed_s, o.elapsed_s);
  if (seconds.size() < o.seconds.size())
    seconds.resize(o.seconds.size(), Histogram(kPerSecondMax, 2));
  for (size_t i = 0; i < o.seconds.size(); i++) seconds[i].merge(o.seconds[i]);
  start_unix = std::max(start_unix, o.start_unix);
}

namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
// Open loop: a request may leave this much before its scheduled time (then it is measured from
// its actual send); later than that, it waits for the pacing timer.
constexpr uint64_t kEarlyNs = 20'000;
constexpr int kReconnectDelayMs = 10;  // after a failed connect, so a dead server is no spin
constexpr uint64_t kSampleNs = 1'000'000'000;

struct Worker;

struct Conn {
  Worker* w = nullptr;
  int global_index = 0;
  uv_tcp_t* tcp = nullptr;  // heap, replaced on every reconnect
  uint64_t gen = 0;         // bumped on every reconnect; stale write callbacks compare it
  bool connected = false;
  bool in_flight = false;
  bool done = false;  // set by the parser when a response is complete
  llhttp_t parser;
  uv_timer_t timer;      // reconnect delay
  bool waiting = false;  // in the worker's pacing queue until scheduled_ns
  std::string req;
  Op op = Op::kGet;
  uint64_t k = 0;             // index of the current/next request in this connection's schedule
  uint64_t sent_ns = 0;       // when the current request was actually written
  uint64_t scheduled_ns = 0;  // when it was due (open loop)
};

struct WriteReq {
  uv_write_t req;
  Conn* c;
  uint64_t gen;
};

struct Worker {
  const LoadOptions* opt = nullptr;
  uv_loop_t loop;
  uv_timer_t deadline;
  uv_timer_t tick;
  std::vector<std::unique_ptr<Conn>> conns;
  LoadStats stats;
  std::unique_ptr<Workload> workload;
  uint64_t start_ns = 0, end_ns = 0;
  uint64_t interval_ns = 0;  // per-connection spacing of scheduled requests (open loop)
  uint64_t total_conns = 1;
  bool stopping = false;
  uint64_t sample_start_ns = 0;
  int64_t sample_start_count = 0;
  // Open-loop pacing with nanosecond precision: libuv timers count whole milliseconds, and a
  // request sent up to 1 ms after its scheduled time would carry that delay into its latency.
  // Connections waiting for their next scheduled time sit in a min-heap; a timerfd (absolute
  // CLOCK_MONOTONIC, the clock of uv_hrtime) fires for the earliest.
  using Due = std::pair<uint64_t, Conn*>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> pacing;
  int pace_fd = -1;
  uv_poll_t pace_poll;
  uint64_t pace_armed_ns = 0;  // 0: disarmed
  char buf[64 * 1024];
};

llhttp_settings_t g_settings;

int on_message_complete(llhttp_t* p) {
  static_cast<Conn*>(p->data)->done = true;
  return HPE_PAUSED;  // one response per request: stop here and let the caller act on it
}

void start_connect(Conn* c);
void try_send(Conn* c);

void on_tcp_closed(uv_handle_t* h) {
  delete reinterpret_cast<uv_tcp_t*>(h);
}

void drop_connection(Conn* c) {
  if (c->tcp) {
    uv_close(reinterpret_cast<uv_handle_t*>(c->tcp), on_tcp_closed);
    c->tcp = nullptr;
  }
  c->connected = false;
  c->gen++;
  if (c->in_flight) {
    c->in_flight = false;
    c->k++;  // the request is lost; the schedule moves on
  }
}

void on_retry_timer(uv_timer_t* t) {
  start_connect(static_cast<Conn*>(t->data));
}

void reconnect(Conn* c, int delay_ms) {
  drop_connection(c);
  if (c->w->stopping) return;
  if (delay_ms > 0) {
    uv_timer_start(&c->timer, on_retry_timer, static_cast<uint64_t>(delay_ms), 0);
  } else {
    start_connect(c);
  }
}

void finish_response(Conn* c) {
  Worker* w = c->w;
  uint64_t now = uv_hrtime();
  // Open loop: charged from the scheduled time, or from the actual send if it went out early
  // (up to kEarlyNs). Closed loop: from the actual send.
  uint64_t from = c->sent_ns;
  if (w->interval_ns) from = std::min(c->scheduled_ns, c->sent_ns);
  auto us = static_cast<int64_t>((now - from) / 1000);
  w->stats.latency_us.record(us);
  if (w->opt->per_second) {
    size_t i = from > w->start_ns ? (from - w->start_ns) / kSampleNs : 0;
    if (w->stats.seconds.size() <= i) w->stats.seconds.resize(i + 1, Histogram(kPerSecondMax, 2));
    w->stats.seconds[i].record(us);
  }
  w->stats.completed++;
  unsigned status = c->parser.status_code;
  if (status < w->stats.status.size()) w->stats.status[status]++;
  if (status == 404 && c->op == Op::kGet) w->stats.not_found++;
  c->in_flight = false;
  c->k++;
}

void on_alloc(uv_handle_t* h, size_t, uv_buf_t* b) {
  Worker* w = static_cast<Worker*>(h->loop->data);
  *b = uv_buf_init(w->buf, sizeof(w->buf));
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* b) {
  Conn* c = static_cast<Conn*>(s->data);
  Worker* w = c->w;
  if (nread == 0) return;
  if (nread < 0) {
    if (c->in_flight) {
      // A response delimited by the end of the connection completes here.
      if (nread == UV_EOF && llhttp_finish(&c->parser) == HPE_OK && c->done) {
        c->done = false;
        finish_response(c);
      } else {
        w->stats.read_errors++;
      }
    }
    reconnect(c, 0);
    if (!w->stopping) try_send(c);
    return;
  }
  w->stats.bytes_read += nread;
  const char* p = b->base;
  size_t left = static_cast<size_t>(nread);
  while (left > 0) {
    llhttp_errno_t err = llhttp_execute(&c->parser, p, left);
    if (err == HPE_PAUSED) {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&c->parser) - p);
      llhttp_resume(&c->parser);
      p += used;
      left -= used;
      c->done = false;
      if (!c->in_flight) {  // a response nobody asked for
        w->stats.parse_errors++;
        reconnect(c, 0);
        return;
      }
      bool keep_alive = llhttp_should_keep_alive(&c->parser);
      finish_response(c);
      if (!keep_alive || left > 0) {
        // Server closes after this response (or sent more than was asked): start afresh.
        if (left > 0) w->stats.parse_errors++;
        reconnect(c, 0);
      }
      try_send(c);
      return;
    }
    if (err != HPE_OK) {
      w->stats.parse_errors++;
      reconnect(c, 0);
      try_send(c);
      return;
    }
    break;  // all consumed, response incomplete
  }
}

void on_write(uv_write_t* r, int status) {
  auto* wr = reinterpret_cast<WriteReq*>(r);
  Conn* c = wr->c;
  uint64_t gen = wr->gen;
  delete wr;
  if (status < 0 && gen == c->gen && status != UV_ECANCELED) {
    c->w->stats.write_errors++;
    reconnect(c, 0);
    try_send(c);
  }
}

void send_now(Conn* c, uint64_t now) {
  Worker* w = c->w;
  c->op = w->workload->next_request(c->req);
  w->stats.ops[static_cast<int>(c->op)]++;
  c->sent_ns = now;
  c->in_flight = true;
  c->done = false;
  auto* stream = reinterpret_cast<uv_stream_t*>(c->tcp);
  uv_buf_t b = uv_buf_init(c->req.data(), static_cast<unsigned>(c->req.size()));
  int r = uv_try_write(stream, &b, 1);
  if (r == static_cast<int>(c->req.size())) return;
  if (r < 0 && r != UV_EAGAIN) {
    w->stats.write_errors++;
    reconnect(c, 0);
    return;
  }
  size_t off = r > 0 ? static_cast<size_t>(r) : 0;
  b = uv_buf_init(c->req.data() + off, static_cast<unsigned>(c->req.size() - off));
  auto* wr = new WriteReq{{}, c, c->gen};
  if (uv_write(&wr->req, stream, &b, 1, on_write) < 0) {
    delete wr;
    w->stats.write_errors++;
    reconnect(c, 0);
  }
}

void arm_pacing(Worker* w) {
  uint64_t next = w->pacing.empty() ? 0 : w->pacing.top().first;
  if (next == w->pace_armed_ns) return;
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(next / 1'000'000'000);
  its.it_value.tv_nsec = static_cast<long>(next % 1'000'000'000);
  timerfd_settime(w->pace_fd, TFD_TIMER_ABSTIME, &its, nullptr);  // 0: disarms
  w->pace_armed_ns = next;
}

void on_pace(uv_poll_t* h, int, int) {
  Worker* w = static_cast<Worker*>(h->data);
  // Clears the readiness; EAGAIN (re-armed since it fired) is fine: the heap decides what is due.
  uint64_t expirations;
  [[maybe_unused]] ssize_t r = read(w->pace_fd, &expirations, sizeof expirations);
  w->pace_armed_ns = 0;
  uint64_t now = uv_hrtime();
  while (!w->pacing.empty() && w->pacing.top().first <= now + kEarlyNs) {
    auto [due, c] = w->pacing.top();
    w->pacing.pop();
    if (!c->waiting || c->scheduled_ns != due) continue;  // stale entry
    c->waiting = false;
    try_send(c);
  }
  if (!w->stopping) arm_pacing(w);
}

void try_send(Conn* c) {
  Worker* w = c->w;
  if (w->stopping || !c->connected || c->in_flight || c->waiting) return;
  uint64_t now = uv_hrtime();
  if (w->interval_ns) {
    c->scheduled_ns =
        w->start_ns + (c->global_index * w->interval_ns) / w->total_conns + c->k * w->interval_ns;
    if (c->scheduled_ns > now + kEarlyNs) {  // not due yet: the pacing timer sends it
      c->waiting = true;
      w->pacing.emplace(c->scheduled_ns, c);
      arm_pacing(w);
      return;
    }
  }
  send_now(c, now);
}

void on_connect(uv_connect_t* req, int status) {
  Conn* c = static_cast<Conn*>(req->data);
  uv_tcp_t* tcp = reinterpret_cast<uv_tcp_t*>(req->handle);
  delete req;
  if (tcp != c->tcp) return;  // superseded (closed during connect)
  Worker* w = c->w;
  if (status < 0) {
    if (status != UV_ECANCELED) w->stats.connect_errors++;
    reconnect(c, kReconnectDelayMs);
    return;
  }
  c->connected = true;
  llhttp_init(&c->parser, HTTP_RESPONSE, &g_settings);
  c->parser.data = c;
  uv_read_start(reinterpret_cast<uv_stream_t*>(c->tcp), on_alloc, on_read);
  try_send(c);
}

void start_connect(Conn* c) {
  Worker* w = c->w;
  if (w->stopping) return;
  c->tcp = new uv_tcp_t;
  uv_tcp_init(&w->loop, c->tcp);
  c->tcp->data = c;
  uv_tcp_nodelay(c->tcp, 1);
  auto* req = new uv_connect_t;
  req->data = c;
  int r = uv_tcp_connect(req, c->tcp, reinterpret_cast<const sockaddr*>(&w->opt->addr), on_connect);
  if (r < 0) {
    delete req;
    w->stats.connect_errors++;
    reconnect(c, kReconnectDelayMs);
  }
}

void close_walk(uv_handle_t* h, void*) {
  if (uv_is_closing(h)) return;
  uv_close(h, h->type == UV_TCP ? on_tcp_closed : nullptr);
}

void on_deadline(uv_timer_t* t) {
  Worker* w = static_cast<Worker*>(t->data);
  w->stopping = true;
  w->stats.elapsed_s = static_cast<double>(uv_hrtime() - w->start_ns) / 1e9;
  for (auto& c : w->conns) c->tcp = nullptr;  // closed by the walk below
  uv_walk(&w->loop, close_walk, nullptr);
}

void on_tick(uv_timer_t* t) {
  Worker* w = static_cast<Worker*>(t->data);
  uint64_t now = uv_hrtime();
  if (now - w->sample_start_ns >= kSampleNs) {
    double dt = static_cast<double>(now - w->sample_start_ns) / 1e9;
    w->stats.rps_samples.push_back(static_cast<double>(w->stats.completed - w->sample_start_count) /
                                   dt);
    w->sample_start_ns = now;
    w->sample_start_count = w->stats.completed;
  }
  uint64_t timeout_ns = static_cast<uint64_t>(w->opt->timeout_ms) * kNsPerMs;
  for (auto& cp : w->conns) {
    Conn* c = cp.get();
    if (c->in_flight && now - c->sent_ns > timeout_ns) {
      w->stats.timeouts++;
      reconnect(c, 0);
    }
  }
}

void run_worker(Worker* w, int first_conn, int nconns) {
  uv_loop_init(&w->loop);
  w->loop.data = w;
  uv_timer_init(&w->loop, &w->deadline);
  w->deadline.data = w;
  uv_timer_init(&w->loop, &w->tick);
  w->tick.data = w;
  uint64_t now = uv_hrtime();
  uint64_t left_ms = w->end_ns > now ? (w->end_ns - now + kNsPerMs - 1) / kNsPerMs : 0;
  uv_timer_start(&w->deadline, on_deadline, left_ms, 0);
  uv_timer_start(&w->tick, on_tick, 100, 100);
  if (w->interval_ns) {
    w->pace_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (w->pace_fd < 0) {
      perror("kvload: timerfd_create");
      std::exit(1);
    }
    uv_poll_init(&w->loop, &w->pace_poll, w->pace_fd);
    w->pace_poll.data = w;
    uv_poll_start(&w->pace_poll, UV_READABLE, on_pace);
  }
  w->sample_start_ns = w->start_ns;
  for (int i = 0; i < nconns; i++) {
    auto c = std::make_unique<Conn>();
    c->w = w;
    c->global_index = first_conn + i;
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c.get();
    w->conns.push_back(std::move(c));
  }
  for (auto& c : w->conns) start_connect(c.get());
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
  if (w->pace_fd >= 0) close(w->pace_fd);
}

}  // namespace

LoadStats run_load(const LoadOptions& opt) {
  llhttp_settings_init(&g_settings);
  g_settings.on_message_complete = on_message_complete;
  std::shared_ptr<const Zipfian> zipf;
  if (opt.workload.dist == KeyDist::kZipfian) {
    zipf = std::make_shared<Zipfian>(opt.workload.keys, opt.workload.zipf_theta);
  }
  int threads = std::max(1, std::min(opt.threads, opt.connections));
  std::vector<std::unique_ptr<Worker>> workers;
  timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  uint64_t start = uv_hrtime();
  double start_unix = static_cast<double>(wall.tv_sec) + static_cast<double>(wall.tv_nsec) / 1e9;
  uint64_t end = start + static_cast<uint64_t>(opt.duration_s * 1e9);
  uint64_t interval = 0;
  if (opt.rate > 0) interval = static_cast<uint64_t>(1e9 * opt.connections / opt.rate);
  for (int t = 0; t < threads; t++) {
    auto w = std::make_unique<Worker>();
    w->opt = &opt;
    w->workload = std::make_unique<Workload>(opt.workload, zipf, 0x5EED0000ull + t * 7919ull);
    w->start_ns = start;
    w->end_ns = end;
    w->interval_ns = interval;
    w->total_conns = static_cast<uint64_t>(opt.connections);
    workers.push_back(std::move(w));
  }
  std::vector<std::thread> th;
  int first = 0;
  for (int t = 0; t < threads; t++) {
    int n = opt.connections / threads + (t < opt.connections % threads ? 1 : 0);
    th.emplace_back(run_worker, workers[t].get(), first, n);
    first += n;
  }
  for (auto& x : th) x.join();
  LoadStats total;
  total.start_unix = start_unix;
  for (auto& w : workers) total.merge(w->stats);
  return total;
}

}  // namespace kvload
