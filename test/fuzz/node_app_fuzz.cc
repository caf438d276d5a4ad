// libFuzzer target for the node's routing and parameter validation (node_app.cc: /v0/entity
// id/ack/from, internal requests and X-KV-Version, /v0/entities start/end, /v0/status,
// /metrics): a real single node (NodeApp, storage engine in a temporary directory) behind a real
// connection (http_fuzz_driver.h), so the whole HTTP path runs as in the node.
// Input: lines ('\n'), one request each: byte 0 picks the method, byte 1 holds flags (bits 0-4:
// body length, bit 5: Connection: close, bit 6: X-KV-Internal: 1, bit 7: an X-KV-Version header
// whose value is the text after the last '|' of the line), the rest is the request target (bytes
// llhttp refuses in a target are sent %XX-escaped, so every request is well-formed).
// Checked: every request is answered, in order, with a status a client may see from a healthy
// single node (no 5xx; 403 for X-KV-Internal, the node runs binary peers), and the output is
// well-formed HTTP.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cluster/coordinator.h"
#include "fuzz/http_fuzz_driver.h"
#include "http/metrics.h"
#include "loop/worker.h"
#include "node/config.h"
#include "node/node_app.h"
#include "storage/engine.h"

namespace {

using kv::fuzz::Require;

const char* const kMethods[] = {"GET", "PUT", "DELETE", "HEAD", "POST", "OPTIONS", "PATCH"};

struct Node {
  std::string dir;
  std::unique_ptr<kv::storage::Engine> engine;
  std::unique_ptr<kv::cluster::ClusterState> cluster;
  kv::net::Config cfg;
  kv::net::NodeShared shared;
  kv::net::Server* server = nullptr;
  std::unique_ptr<kv::fuzz::ConnDriver> driver;
};

Node* MakeNode() {
  auto* n = new Node;
  char dir[] = "/tmp/kv-node-app-fuzz-XXXXXX";
  Require(mkdtemp(dir) != nullptr, "mkdtemp");
  n->dir = dir;
  kv::storage::Options opts;
  opts.dir = dir;
  // No flush, compaction or fsync within a node's inputs: they are the storage engine's
  // business, and cost more than the request path under the sanitizers. No background threads
  // either: a node's 4096 inputs write at most 128 MiB, so its memtable never freezes, and
  // without them every allocation is the input's own (the flush thread's spare memtable, made
  // while an input ran, once showed up as a LeakSanitizer report that its input alone never
  // reproduced).
  opts.memtable_bytes = 256 << 20;
  opts.fsync = kv::storage::FsyncPolicy::kNever;
  opts.background = false;
  Require(kv::storage::Engine::Open(opts, &n->engine).ok(), "engine open");
  const std::string url = "http://127.0.0.1:1";
  n->cluster = std::make_unique<kv::cluster::ClusterState>(std::vector<std::string>{url}, 0,
                                                           n->engine.get());
  n->cfg.threads = 1;
  n->cfg.cluster = {url};
  n->cfg.self_url = url;
  n->cfg.max_value_bytes = 4096;
  n->cfg.header_timeout_ms = 3600000;
  n->cfg.idle_timeout_ms = 3600000;
  n->cfg.send_timeout_ms = 3600000;
  n->shared.config = &n->cfg;
  n->shared.cluster = n->cluster.get();
  n->shared.loops = 1;
  n->shared.http_metrics = std::make_unique<kv::net::Metrics[]>(1);
  kv::net::NodeShared* shared = &n->shared;
  n->server = new kv::net::Server(kv::net::WorkerOptionsOf(n->cfg), [shared](kv::net::Worker& w) {
    return kv::net::MakeNodeService(w, shared);
  });
  n->server->StartDetached();
  n->driver = std::make_unique<kv::fuzz::ConnDriver>(n->server);
  return n;
}

// Graceful stop on the caller's thread (the worker drains, its handler closes), then the store
// and its directory go.
void DestroyNode(Node* n) {
  n->server->Stop();
  uv_run(n->server->worker(0).loop(), UV_RUN_DEFAULT);
  delete n->server;
  n->engine.reset();
  std::filesystem::remove_all(n->dir);
  delete n;
}

bool PlainTargetByte(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '#';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A fresh node every kInputsPerNode inputs: the store stays small, so a range request does
  // not stream everything earlier inputs wrote.
  constexpr int kInputsPerNode = 4096;
  static Node* node = nullptr;
  static int inputs = 0;
  if (node == nullptr || ++inputs % kInputsPerNode == 0) {
    if (node != nullptr) DestroyNode(node);
    node = MakeNode();
  }
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string stream;
  std::vector<bool> head;  // per request: HEAD (its answer has no body)
  bool closed = false;
  while (!in.empty() && !closed && head.size() < 8) {
    const size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    if (line.size() < 3) continue;
    const char* method = kMethods[static_cast<unsigned char>(line[0]) % 7];
    const auto flags = static_cast<unsigned char>(line[1]);
    std::string_view rest = line.substr(2);
    std::string_view version;
    if (flags & 0x80) {
      const size_t bar = rest.rfind('|');
      if (bar != std::string_view::npos) {
        version = rest.substr(bar + 1);
        rest = rest.substr(0, bar);
      }
    }
    std::string target = rest.empty() || rest[0] != '/' ? "/" : "";
    for (unsigned char c : rest) {
      if (PlainTargetByte(c)) {
        target.push_back(static_cast<char>(c));
      } else {
        static const char kHex[] = "0123456789ABCDEF";
        target += {'%', kHex[c >> 4], kHex[c & 15]};
      }
    }
    const size_t body = flags & 0x1f;
    stream += std::string(method) + " " + target + " HTTP/1.1\r\nHost: f\r\n";
    if (flags & 0x20) {
      stream += "Connection: close\r\n";
      closed = true;
    }
    if (flags & 0x40) stream += "X-KV-Internal: 1\r\n";
    if (flags & 0x80) {
      std::string v;
      for (unsigned char c : version) {
        if (c >= 0x20 && c < 0x7f) v.push_back(static_cast<char>(c));
      }
      stream += "X-KV-Version: " + v + "\r\n";
    }
    stream += "Content-Length: " + std::to_string(body) + "\r\n\r\n" + std::string(body, 'v');
    head.push_back(method[0] == 'H');
  }
  if (head.empty()) return 0;
  const std::string out = node->driver->Run(stream, 0);

  kv::fuzz::AnswerParser p;
  p.Parse(out, [&](size_t i) { return i < head.size() && head[i]; });
  Require(p.ok && p.complete, "the node's output is not a sequence of whole HTTP responses");
  Require(p.answers.size() == head.size(), "not one answer per request");
  for (size_t i = 0; i < p.answers.size(); ++i) {
    const int s = p.answers[i].status;
    // 403: X-KV-Internal from a client in binary peer mode.
    // 503: this node runs without the repair threads (no RepairServer, no driver), so
    // /v0/admin/repair, /v0/admin/compact and /v0/internal/repair/* answer it.
    Require(s == 200 || s == 201 || s == 202 || s == 400 || s == 403 || s == 404 || s == 405 ||
                s == 503,
            "a status a healthy single node does not answer");
  }
  return 0;
}
