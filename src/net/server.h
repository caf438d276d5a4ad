// The node's front door: N worker threads, each one libuv loop accepting on its own
// SO_REUSEPORT listener and serving its connections to completion. Start() binds every listener
// before returning (so a busy port fails fast); Stop() drains gracefully from any thread.
#pragma once
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/config.h"
#include "net/http.h"

namespace kv::net {

class HttpConnection;

// Per-worker counters, written by the worker thread, read by /metrics from any thread.
struct Metrics {
  static constexpr int kMethods = 4;  // GET, PUT, DELETE, other
  static constexpr int kBuckets = 15;
  static const double kBucketBounds[kBuckets];  // seconds; the last is +Inf
  std::atomic<uint64_t> requests[kMethods][600] = {};
  std::atomic<uint64_t> latency_buckets[kBuckets] = {};  // non-cumulative
  std::atomic<uint64_t> latency_sum_ns{0};
  std::atomic<uint64_t> latency_count{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> rejected_connections{0};

  void Record(int method, int status, uint64_t latency_ns);
  static int MethodIndex(int llhttp_method);
};

class Server;

class Worker {
 public:
  Worker(Server* server, int index);
  ~Worker();
  uv_loop_t* loop() { return &loop_; }
  const Config& config() const;
  Metrics& metrics() { return metrics_; }
  RequestHandler* handler() { return handler_.get(); }
  Server* server() { return server_; }

  // Connection bookkeeping (loop thread only).
  void AddConnection(HttpConnection* c);
  void RemoveConnection(HttpConnection* c);
  void MarkDirty(HttpConnection* c);
  // Keeps this iteration's poll from blocking, so OnCheck (the handler's OnLoopIteration, then
  // the flush of answers) runs promptly after a timer callback that completed or scheduled work;
  // OnCheck ends it once nothing is left to flush.
  void Wake();
  // Read buffer shared by all connections of this loop: data is consumed inside the read
  // callback, so one buffer per thread serves every connection.
  char* read_buffer() { return read_buf_.get(); }
  static constexpr size_t kReadBufferSize = 64 * 1024;
  bool draining() const { return draining_; }

 private:
  friend class Server;
  bool Listen(const std::string& host, uint16_t port, std::string* err);
  void Run();
  static void OnConnection(uv_stream_t* listener, int status);
  static void OnCheck(uv_check_t* h);
  static void OnSweep(uv_timer_t* t);
  static void OnStop(uv_async_t* a);
  void BeginDrain();
  void MaybeFinish();

  Server* server_;
  int index_;
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_check_t check_;
  uv_idle_t idle_;
  uv_timer_t sweep_;
  uv_async_t stop_async_;
  std::unique_ptr<char[]> read_buf_;
  std::vector<HttpConnection*> dirty_;
  std::vector<HttpConnection*> flushing_;
  HttpConnection* conns_ = nullptr;
  size_t conn_count_ = 0;
  bool draining_ = false;
  std::atomic<bool> forced_{false};
  std::mutex async_mu_;  // guards stop_async_ against a send after it was closed
  bool async_closed_ = false;
  bool finished_ = false;
  std::unique_ptr<RequestHandler> handler_;
  Metrics metrics_;
  std::thread thread_;
};

class Server {
 public:
  using HandlerFactory = std::function<std::unique_ptr<RequestHandler>(Worker&)>;
  Server(const Config& cfg, HandlerFactory factory);
  ~Server();
  // Binds all listeners and starts the worker threads. False (with *err) if a bind fails.
  bool Start(std::string* err);
  // Stop accepting, finish in-flight requests, then return from Wait(). Any thread.
  void Stop();
  // Like Stop(), but closes connections that are still busy.
  void ForceStop();
  void Wait();

  const Config& config() const { return cfg_; }
  std::atomic<int64_t>& open_connections() { return open_connections_; }
  uint64_t start_time_ms() const { return start_ms_; }
  // Calls f for each worker's metrics (for /metrics).
  void ForEachMetrics(const std::function<void(const Metrics&)>& f) const;
  size_t worker_count() const { return workers_.size(); }
  Worker& worker(size_t i) { return *workers_[i]; }

 private:
  Config cfg_;
  HandlerFactory factory_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int64_t> open_connections_{0};
  uint64_t start_ms_ = 0;
  friend class Worker;
};

uint64_t MonotonicNs();

}  // namespace kv::net
