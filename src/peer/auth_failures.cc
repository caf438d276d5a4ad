#include "peer/auth_failures.h"

#include <atomic>
#include <mutex>
#include <unordered_map>

#include "common/log.h"

namespace kv::net {

namespace {

constexpr uint64_t kLogEveryMs = 60000;
constexpr size_t kMaxRemembered = 4096;  // (address, reason) pairs; forgotten all at once past it

std::atomic<uint64_t> g_counts[kAuthFailureKinds];
std::mutex g_mu;
std::unordered_map<std::string, uint64_t>* g_last_logged = nullptr;  // guarded by g_mu

}  // namespace

const char* AuthFailureName(AuthFailure kind) {
  switch (kind) {
    case AuthFailure::kBinaryMissing:
      return "binary_missing";
    case AuthFailure::kBinaryMismatch:
      return "binary_mismatch";
    case AuthFailure::kBinaryServerMissing:
      return "binary_server_missing";
    case AuthFailure::kBinaryServerMismatch:
      return "binary_server_mismatch";
    case AuthFailure::kHttpMissing:
      return "http_missing";
    case AuthFailure::kHttpMalformed:
      return "http_malformed";
    case AuthFailure::kHttpStale:
      return "http_stale";
    case AuthFailure::kHttpMismatch:
      return "http_mismatch";
    case AuthFailure::kCount:
      break;
  }
  return "unknown";
}

bool NoteAuthFailure(AuthFailure kind, std::string_view peer, std::string_view detail) {
  g_counts[static_cast<size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  const uint64_t now_ms = uv_hrtime() / 1000000;
  std::string key(peer);
  key += ' ';
  key += AuthFailureName(kind);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_last_logged == nullptr) g_last_logged = new std::unordered_map<std::string, uint64_t>;
    if (g_last_logged->size() >= kMaxRemembered) g_last_logged->clear();
    auto [it, fresh] = g_last_logged->try_emplace(key, now_ms);
    if (!fresh) {
      if (now_ms - it->second < kLogEveryMs) return false;
      it->second = now_ms;
    }
  }
  LOG_WARN(
      "peer authentication refused: %s from %.*s (%.*s); logged once a minute per peer "
      "and reason, counted in kv_peer_auth_failures_total",
      AuthFailureName(kind), static_cast<int>(peer.size()), peer.data(),
      static_cast<int>(detail.size()), detail.data());
  return true;
}

uint64_t AuthFailureCount(AuthFailure kind) {
  return g_counts[static_cast<size_t>(kind)].load(std::memory_order_relaxed);
}

}  // namespace kv::net
