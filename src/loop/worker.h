// The node's loops and listeners: N worker threads, each one libuv loop accepting on its own
// SO_REUSEPORT listener. A worker knows no protocol: it reads each new connection's first bytes,
// lets its Service classify them, and hands the socket over once (HTTP or the binary peer
// protocol). It owns the one place per iteration where batched work happens before the loop
// polls (Service::BeforePoll, then the dirty connections' Flush), the idle sweep, and the
// graceful drain. Start() binds every listener before returning (a busy port fails fast);
// Stop() drains from any thread.
#pragma once
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kv::net {

uint64_t MonotonicNs();
// The run delay (ns a thread spent runnable, waiting for a CPU) from the text of
// /proc/<pid>/task/<tid>/schedstat ("<on-CPU ns> <run delay ns> <timeslices>"); false when the
// text is not that.
bool ParseRunDelayNs(std::string_view schedstat, uint64_t* ns);

// A connection the worker tracks: flushed before the loop polls when marked dirty, swept by the
// idle timer, drained at shutdown. Loop thread only.
class Connection {
 public:
  virtual ~Connection() = default;
  // Writes what was queued since the last flush (answers, streamed bodies).
  virtual void Flush() = 0;
  // Closes the connection if it has been idle or stuck longer than its limits allow.
  virtual void Sweep(uint64_t now_ms) = 0;
  // Graceful shutdown: close once nothing is left to answer.
  virtual void Drain() = 0;
  // Immediate close (shutdown deadline).
  virtual void Abort() = 0;

  bool dirty = false;  // in the worker's list for Flush (set and cleared by the worker only)
  Connection* prev = nullptr;  // worker's intrusive list of live connections
  Connection* next = nullptr;
};

class Worker;

// The application of one loop (the node: routes, coordinator, peer transports).
class Service {
 public:
  virtual ~Service() = default;
  // Decides a new connection's protocol from its first bytes: kNeedMore to wait for more.
  static constexpr int kNeedMore = -1;
  virtual int Classify(std::string_view first_bytes) = 0;
  // Takes an accepted socket (allocated with new, reading stopped, `first_bytes` already read
  // from it) whose protocol Classify returned; over_limit: past --max-connections (the service
  // should refuse it politely).
  virtual void Accept(int protocol, uv_tcp_t* handle, std::string_view first_bytes,
                      bool over_limit) = 0;
  // Work batched during the iteration (peer frames, then local replica commits), once before
  // the loop polls; called again after the connections were flushed (a flush can dispatch
  // queued requests).
  virtual void BeforePoll() = 0;
  // Requests still waiting for an answer (graceful shutdown waits for zero).
  virtual size_t pending() const = 0;
  // Closes this loop's handles; called once at shutdown.
  virtual void Close() = 0;
};

struct WorkerOptions {
  uint16_t port = 0;
  int threads = 1;
  uint64_t max_connections = 10000;
  uint64_t idle_timeout_ms = 60000;  // also sets the sweep period
  // A connection that sent too few bytes to classify is closed after this long.
  uint64_t first_bytes_timeout_ms = 10000;
};

class Server;

class Worker {
 public:
  Worker(Server* server, int index);
  ~Worker();
  uv_loop_t* loop() { return &loop_; }
  int index() const { return index_; }
  Server* server() { return server_; }
  Service* service() { return service_.get(); }

  // Connection bookkeeping (loop thread only).
  void AddConnection(Connection* c);
  void RemoveConnection(Connection* c);
  // Queues c->Flush() for this iteration's before-poll step.
  void MarkDirty(Connection* c);
  // Keeps the next poll from blocking, so the before-poll step runs again promptly (a streamed
  // body that yielded, work queued by the step itself).
  void Wake();
  // Read buffer shared by all connections of this loop: data is consumed inside the read
  // callback, so one buffer per thread serves every connection.
  char* read_buffer() { return read_buf_.get(); }
  static constexpr size_t kReadBufferSize = 64 * 1024;
  bool draining() const { return draining_; }
  // How busy this loop was over its last sampling window (~kBusyWindowMs), in permille: the share
  // of wall time spent outside its poll (libuv's idle-time metric) plus the share its thread
  // spent runnable but waiting for a CPU (its run delay, /proc/thread-self/schedstat), capped at
  // 1000. The run delay shows a machine whose cores are taken by other processes (other nodes,
  // the load generator, other tenants): a wake-up from the poll that waits for a CPU counts as
  // idle in libuv's metric. Without schedstat, the first share alone. Any thread.
  uint32_t busy_permille() const { return busy_permille_.load(std::memory_order_relaxed); }
  // Called on the loop thread with each new busy level (once a window), e.g. to publish it.
  void set_on_busy(std::function<void(uint32_t)> fn) { on_busy_ = std::move(fn); }
  static constexpr uint64_t kBusyWindowMs = 100;

  // Serves an accepted socket (allocated with new) as the listener serves each connection it
  // accepts: classified by its first bytes, then handed to the service. The way in for the
  // caller of a detached server (Server::StartDetached).
  void Serve(uv_tcp_t* handle);

 private:
  friend class Server;
  class Sniffer;
  bool Listen(uint16_t port, std::string* err);
  void Arm();  // starts the before-poll step and the sweep timer
  void Run();
  static void OnConnection(uv_stream_t* listener, int status);
  static void OnPrepare(uv_prepare_t* h);
  static void OnSweep(uv_timer_t* t);
  static void OnStop(uv_async_t* a);
  void BeginDrain();
  void MaybeFinish();
  void SampleBusy();  // before-poll step: a new busy level once a window has passed

  Server* server_;
  int index_;
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_prepare_t prepare_;
  uv_idle_t idle_;
  uv_timer_t sweep_;
  uv_async_t stop_async_;
  std::unique_ptr<char[]> read_buf_;
  std::vector<Connection*> dirty_;
  std::vector<Connection*> flushing_;
  Connection* conns_ = nullptr;
  size_t conn_count_ = 0;
  bool draining_ = false;
  uint64_t busy_mark_ms_ = 0, busy_mark_ns_ = 0, idle_mark_ns_ = 0, delay_mark_ns_ = 0;
  int schedstat_fd_ = -2;  // the loop thread's /proc/thread-self/schedstat; -2 unopened, -1 none
  std::atomic<uint32_t> busy_permille_{0};
  std::function<void(uint32_t)> on_busy_;
  std::atomic<bool> forced_{false};
  std::mutex async_mu_;  // guards stop_async_ against a send after it was closed
  bool async_closed_ = false;
  bool finished_ = false;
  std::unique_ptr<Service> service_;
  std::thread thread_;
};

class Server {
 public:
  using ServiceFactory = std::function<std::unique_ptr<Service>(Worker&)>;
  Server(const WorkerOptions& opts, ServiceFactory factory);
  ~Server();
  // Binds all listeners and starts the worker threads. False (with *err) if a bind fails.
  bool Start(std::string* err);
  // For fuzzers and tests: the workers and their services without listeners or threads. The
  // caller runs worker(i).loop() on its own thread and hands it sockets (Worker::Serve); after
  // Stop() it runs each loop until uv_run returns, before destroying the server.
  void StartDetached();
  // Stop accepting, finish in-flight requests, then return from Wait(). Any thread.
  void Stop();
  // Like Stop(), but closes connections that are still busy.
  void ForceStop();
  void Wait();

  const WorkerOptions& options() const { return opts_; }
  // Connections the workers track (HTTP and not yet classified), for --max-connections.
  std::atomic<int64_t>& open_connections() { return open_connections_; }
  uint64_t start_time_ms() const { return start_ms_; }
  size_t worker_count() const { return workers_.size(); }
  Worker& worker(size_t i) { return *workers_[i]; }

 private:
  WorkerOptions opts_;
  ServiceFactory factory_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int64_t> open_connections_{0};
  uint64_t start_ms_ = 0;
  friend class Worker;
};

}  // namespace kv::net
