// Leveled logging to stderr, one line per call, safe from any thread.
// The level is process-wide; messages below it cost one relaxed atomic load.
#pragma once
#include <atomic>

namespace kv {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

extern std::atomic<int> g_log_level;
inline bool log_enabled(LogLevel l) {
  return static_cast<int>(l) >= g_log_level.load(std::memory_order_relaxed);
}
void set_log_level(LogLevel l);
void log_write(LogLevel l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace kv

#define KV_LOG(level, ...)                                             \
  do {                                                                 \
    if (::kv::log_enabled(level)) ::kv::log_write(level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) KV_LOG(::kv::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) KV_LOG(::kv::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) KV_LOG(::kv::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) KV_LOG(::kv::LogLevel::kError, __VA_ARGS__)
