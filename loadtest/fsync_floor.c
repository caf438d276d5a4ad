// fsync_floor: the smallest PUT server that can do group commit, to measure what --fsync always
// can reach on this machine whatever the server's design (loadtest/bench_compare.sh ONLY=fsync).
//
// One epoll loop thread reads HTTP/1.1 requests (keep-alive, pipelining), appends each request's
// body to a log file with one write(2) per loop iteration, and answers 201 with no body:
// - mode none: at once (as --fsync periodic between its syncs);
// - mode always: after an fdatasync that covers the write. A second thread runs the syncs, one
//   at a time, each covering every batch written before it began (group commit); it wakes the
//   loop through an eventfd. The loop never waits on the disk.
// - mode alwaysK (K = 2..4): as always with K log files, each with its own sync thread; an
//   iteration's batch goes to a log whose thread is idle, so up to K syncs overlap (a disk may
//   take more syncs per second on several files than on one).
// With --peers PORT,PORT --ack K it coordinates a cluster of probes on loopback: each
// iteration's batch goes to every replica as one frame before its local write, and its clients
// get their 201 once K copies (its own among them) are durable (see pend below); a replica
// writes (and syncs) each frame and acknowledges it with one byte.
// --work-ns N spins N ns of CPU per request (on replicas per PUT of a frame) on the loop thread, so
// that the probe's throughput without syncs can be set equal to the node's: the two modes' ratio
// then shows the cost of the sync's latency and of the hand-over alone for a server with the node's
// CPU per request. No parsing beyond what PUT needs: a probe, not a server (no error answers, no
// limits).
//
// Usage: fsync_floor PORT none|always|alwaysK LOG_PATH [--work-ns N] [--peers PORT,PORT --ack K]
// (alwaysK: LOG_PATH and LOG_PATH.2 .. LOG_PATH.K)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kMaxFd = 4096, kInCap = 1 << 16, kMaxWaiters = 4096, kRing = 256, kMaxPeers = 4 };
static const size_t kLogBytes = (size_t)256 << 20;

struct conn {
  int open;
  int peer;  // a coordinator's link to this replica (it sent kPreface): frames, not HTTP
  int link;  // this coordinator's link to replica link - 1: its acknowledgements
  int sniffed;
  unsigned gen;
  size_t len;
  char in[kInCap];
};

struct waiter {  // one answer owed to a connection (fd and its generation: fds are reused), or
  int fd;        // with fd -1 the coordinator's own copy of its batch number `gen` is durable
  unsigned gen;
};

struct batch {  // answers owed once a sync covers the batch's write
  struct waiter w[kMaxWaiters];
  size_t n;
};

static struct conn* conns[kMaxFd];
// Cluster mode (--peers): this process coordinates. Each loop iteration's batch of PUTs is
// written here and sent to every replica as one frame ([u32 bytes][u32 PUTs][bodies]); a replica
// writes it (and syncs it, with a sync mode) and answers one byte per frame, in order. A batch's
// clients get their 201 once `ack` copies are durable, this one counting as one.
static const char kPreface[4] = {'K', 'V', 'P', '1'};
static int link_fd[kMaxPeers], npeers, ack_needed = 1;
static uint64_t link_acked[kMaxPeers], next_seq, answered_seq;
static struct {
  struct batch* b;
  int count;
} pend[kRing];
static int efd, lanes;
static long work_ns;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
// One log and its sync thread. Under mu: the loop fills `handed`, the sync thread takes it and,
// once synced, puts it in `synced` for the loop, which answers it and returns it to the pool.
struct lane {
  int fd, syncing;
  size_t off;
  struct batch *handed, *synced;
};
enum { kMaxLanes = 4 };
static struct lane lane[kMaxLanes];
static struct batch* pool[3 * kMaxLanes + 1];  // at most three per lane in use
static int npool;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void spin(void) {
  if (work_ns <= 0) return;
  const uint64_t end = now_ns() + (uint64_t)work_ns;
  while (now_ns() < end) {
  }
}

static void answer(const struct batch* b) {
  static const char kOk[] = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
  for (size_t i = 0; i < b->n; ++i) {
    if (b->w[i].fd < 0) {  // this coordinator's copy of a batch
      pend[b->w[i].gen % kRing].count++;
      continue;
    }
    struct conn* c = conns[b->w[i].fd];
    if (c == NULL || !c->open || c->gen != b->w[i].gen) continue;
    const char* msg = c->peer ? "A" : kOk;
    if (send(b->w[i].fd, msg, c->peer ? 1 : sizeof kOk - 1, MSG_NOSIGNAL) < 0) c->open = 0;
  }
}

// Answers, in order, the clients of every batch that has its `ack` durable copies.
static void answer_acked(void) {
  while (answered_seq < next_seq && pend[answered_seq % kRing].count >= ack_needed) {
    struct batch* b = pend[answered_seq % kRing].b;
    answer(b);
    b->n = 0;
    answered_seq++;
  }
}

static void send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      perror("send to a replica");
      exit(1);
    }
    p += w;
    n -= (size_t)w;
  }
}

static void* sync_thread(void* arg) {
  struct lane* l = arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (l->handed == NULL) pthread_cond_wait(&cv, &mu);
    struct batch* b = l->handed;  // every write handed over so far: one sync covers them
    l->handed = NULL;
    l->syncing = 1;
    pthread_mutex_unlock(&mu);
    if (fdatasync(l->fd) != 0) {
      perror("fdatasync");
      exit(1);
    }
    pthread_mutex_lock(&mu);
    l->syncing = 0;
    while (l->synced != NULL) pthread_cond_wait(&cv, &mu);  // the loop has not taken the last
    l->synced = b;
    pthread_mutex_unlock(&mu);
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) < 0) perror("eventfd");
  }
  return NULL;
}

// Opens a log written with zeros first, as the node preallocates its log for --fsync always: the
// syncs then write data blocks only, no size or extent change for the file system's journal.
static int open_log(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  char* zeros = calloc(1, 1 << 20);
  for (size_t off = 0; fd >= 0 && off < kLogBytes; off += 1 << 20) {
    if (write(fd, zeros, 1 << 20) != 1 << 20) fd = -1;
  }
  free(zeros);
  if (fd < 0 || fsync(fd) != 0) {
    perror(path);
    exit(1);
  }
  return fd;
}

static void write_log(struct lane* l, const char* buf, size_t len) {
  if (l->off + len > kLogBytes) l->off = 0;  // wraps: the probe keeps nothing
  if (pwrite(l->fd, buf, len, (off_t)l->off) != (ssize_t)len) {
    perror("write");
    exit(1);
  }
  l->off += len;
}

// A replica: every whole frame in c->in goes to the log buffer, and one answer per frame to
// `owed`. Returns 0, or -1 for a frame the probe cannot take.
static int parse_frames(int fd, struct conn* c, char* logbuf, size_t* loglen, size_t logcap,
                        struct batch* owed) {
  size_t off = 0;
  while (c->len - off >= 8) {
    uint32_t bytes, puts;
    memcpy(&bytes, c->in + off, 4);
    memcpy(&puts, c->in + off + 4, 4);
    if (8 + (size_t)bytes > kInCap) return -1;
    if (c->len - off < 8 + (size_t)bytes) break;
    for (uint32_t i = 0; i < puts; ++i) spin();
    if (*loglen + bytes > logcap || owed->n == kMaxWaiters) return -1;
    memcpy(logbuf + *loglen, c->in + off + 8, bytes);
    *loglen += bytes;
    owed->w[owed->n].fd = fd;
    owed->w[owed->n].gen = c->gen;
    owed->n++;
    off += 8 + bytes;
  }
  memmove(c->in, c->in + off, c->len - off);
  c->len -= off;
  return 0;
}

// Parses every whole request in c->in; each one's body goes to the log buffer and its answer to
// `owed`. Returns 0, or -1 for a request the probe cannot take.
static int parse(int fd, struct conn* c, char* logbuf, size_t* loglen, size_t logcap,
                 struct batch* owed) {
  size_t off = 0;
  for (;;) {
    char* start = c->in + off;
    const size_t avail = c->len - off;
    char* end = memmem(start, avail, "\r\n\r\n", 4);
    if (end == NULL) break;
    size_t head = (size_t)(end - start) + 4, body = 0;
    for (char* p = start; p < end; ++p) {
      if ((p == start || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
        body = strtoul(p + 15, NULL, 10);
      }
    }
    if (head + body > kInCap) return -1;
    if (avail < head + body) break;
    spin();
    if (*loglen + body + 16 > logcap || owed->n == kMaxWaiters) return -1;
    memcpy(logbuf + *loglen, start + head, body);
    *loglen += body;
    owed->w[owed->n].fd = fd;
    owed->w[owed->n].gen = c->gen;
    owed->n++;
    off += head + body;
  }
  memmove(c->in, c->in + off, c->len - off);
  c->len -= off;
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc % 2 != 0) {
    fprintf(stderr,
            "usage: %s PORT none|always|alwaysK LOG_PATH [--work-ns N] [--peers PORT,PORT "
            "--ack K]\n",
            argv[0]);
    return 2;
  }
  const char* peers = NULL;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--work-ns") == 0) work_ns = atol(argv[i + 1]);
    if (strcmp(argv[i], "--peers") == 0) peers = argv[i + 1];
    if (strcmp(argv[i], "--ack") == 0) ack_needed = atoi(argv[i + 1]);
  }
  lanes = strncmp(argv[2], "always", 6) == 0 ? (argv[2][6] ? atoi(argv[2] + 6) : 1) : 0;
  if (lanes < 0 || lanes > kMaxLanes) lanes = kMaxLanes;
  lane[0].fd = open_log(argv[3]);
  for (int i = 1; i < lanes; ++i) {
    char other[4096];
    snprintf(other, sizeof other, "%s.%d", argv[3], i + 1);
    lane[i].fd = open_log(other);
  }
  signal(SIGPIPE, SIG_IGN);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr*)&a, sizeof a) != 0 || listen(ls, 1024) != 0) {
    perror("listen");
    return 1;
  }
  int ep = epoll_create1(0);
  efd = eventfd(0, EFD_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  ev.data.fd = efd;
  epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
  for (npool = 0; npool < 3 * kMaxLanes + 1; ++npool) pool[npool] = calloc(1, sizeof(struct batch));
  for (int i = 0; i < kRing; ++i) pend[i].b = calloc(1, sizeof(struct batch));
  // Links to the replicas (loopback ports; they may still be starting: 10 s of retries).
  for (const char* p = peers; p != NULL && *p != '\0' && npeers < kMaxPeers;) {
    struct sockaddr_in pa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(p))};
    pa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = -1;
    for (int tries = 0; tries < 200; ++tries) {
      s = socket(AF_INET, SOCK_STREAM, 0);
      if (connect(s, (struct sockaddr*)&pa, sizeof pa) == 0) break;
      close(s);
      s = -1;
      usleep(50000);
    }
    if (s < 0 || s >= kMaxFd) {
      fprintf(stderr, "cannot reach the replica at port %d\n", atoi(p));
      return 1;
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    send_all(s, kPreface, sizeof kPreface);
    conns[s] = calloc(1, sizeof(struct conn));
    conns[s]->open = 1;
    conns[s]->link = npeers + 1;
    link_fd[npeers++] = s;
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &lev);
    p = strchr(p, ',');
    if (p != NULL) ++p;
  }
  struct batch* owed = calloc(1, sizeof *owed);
  for (int i = 0; i < lanes; ++i) {
    pthread_t t;
    pthread_create(&t, NULL, sync_thread, &lane[i]);
  }
  const size_t logcap = 16 << 20;
  char* logbuf = malloc(logcap);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    size_t loglen = 0;
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        int s;
        while ((s = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          if (s >= kMaxFd) {
            close(s);
            continue;
          }
          if (conns[s] == NULL) conns[s] = calloc(1, sizeof(struct conn));
          conns[s]->open = 1;
          conns[s]->gen++;
          conns[s]->len = 0;
          conns[s]->peer = conns[s]->sniffed = 0;
          setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = s};
          epoll_ctl(ep, EPOLL_CTL_ADD, s, &cev);
        }
        continue;
      }
      if (fd == efd) {
        uint64_t v;
        if (read(efd, &v, sizeof v) < 0) continue;
        for (int k = 0; k < lanes; ++k) {
          pthread_mutex_lock(&mu);
          struct batch* b = lane[k].synced;
          lane[k].synced = NULL;
          pthread_mutex_unlock(&mu);
          if (b == NULL) continue;
          pthread_cond_broadcast(&cv);
          answer(b);
          b->n = 0;
          pthread_mutex_lock(&mu);
          pool[npool++] = b;
          pthread_mutex_unlock(&mu);
        }
        answer_acked();
        continue;
      }
      struct conn* c = conns[fd];
      if (c->link) {  // a replica's acknowledgements: one byte per frame, in order
        char acks[4096];
        const ssize_t r = recv(fd, acks, sizeof acks, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
          fprintf(stderr, "a replica closed its link\n");
          return 1;
        }
        for (ssize_t k = 0; k < r; ++k) pend[link_acked[c->link - 1]++ % kRing].count++;
        answer_acked();
        continue;
      }
      ssize_t r = read(fd, c->in + c->len, kInCap - c->len);
      if (r < 0 && errno == EAGAIN) continue;
      if (r > 0) c->len += (size_t)r;
      if (r > 0 && !c->sniffed && c->len >= sizeof kPreface) {
        c->sniffed = 1;
        if (memcmp(c->in, kPreface, sizeof kPreface) == 0) {
          c->peer = 1;
          memmove(c->in, c->in + sizeof kPreface, c->len - sizeof kPreface);
          c->len -= sizeof kPreface;
        }
      }
      if (r <= 0 || (c->peer ? parse_frames(fd, c, logbuf, &loglen, logcap, owed)
                             : parse(fd, c, logbuf, &loglen, logcap, owed)) != 0) {
        c->open = 0;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
      }
    }
    if (owed->n == 0) continue;
    if (npeers > 0) {
      // One batch: its clients wait in pend until `ack` copies are durable.
      if (next_seq - answered_seq >= kRing) {
        fprintf(stderr, "too many batches in flight\n");
        return 1;
      }
      const uint64_t seq = next_seq++;
      struct batch* pb = pend[seq % kRing].b;
      memcpy(pb->w, owed->w, owed->n * sizeof owed->w[0]);
      pb->n = owed->n;
      pend[seq % kRing].count = 0;
      uint32_t head[2] = {(uint32_t)loglen, (uint32_t)owed->n};
      for (int k = 0; k < npeers; ++k) {  // the frames leave before the local write
        send_all(link_fd[k], (const char*)head, sizeof head);
        send_all(link_fd[k], logbuf, loglen);
      }
      owed->n = 1;  // from here on, the batch's own copy: durable as below
      owed->w[0].fd = -1;
      owed->w[0].gen = (unsigned)seq;
    }
    if (lanes == 0) {
      write_log(&lane[0], logbuf, loglen);
      answer(owed);
      owed->n = 0;
      answer_acked();
      continue;
    }
    // A lane whose thread is idle (its sync covers this write at once), else one with nothing
    // handed over yet (its next sync covers this write alone), else the first.
    pthread_mutex_lock(&mu);
    struct lane* l = &lane[0];
    for (int k = lanes - 1; k >= 0; --k) {
      if (!lane[k].syncing && lane[k].handed == NULL) l = &lane[k];
    }
    if (l->syncing || l->handed != NULL) {
      for (int k = lanes - 1; k >= 0; --k) {
        if (lane[k].handed == NULL) l = &lane[k];
      }
    }
    pthread_mutex_unlock(&mu);
    write_log(l, logbuf, loglen);  // only the loop writes a log: no lock needed for it
    pthread_mutex_lock(&mu);
    if (l->handed == NULL) {
      l->handed = pool[--npool];
      l->handed->n = 0;
    }
    struct batch* h = l->handed;
    if (h->n + owed->n > kMaxWaiters) {
      pthread_mutex_unlock(&mu);
      fprintf(stderr, "too many waiters\n");
      return 1;
    }
    memcpy(h->w + h->n, owed->w, owed->n * sizeof owed->w[0]);
    h->n += owed->n;
    pthread_mutex_unlock(&mu);
    pthread_cond_broadcast(&cv);
    owed->n = 0;
  }
}
