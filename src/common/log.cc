#include "common/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace kv {

std::atomic<int> g_log_level{static_cast<int>(LogLevel::kInfo)};

void set_log_level(LogLevel l) {
  g_log_level.store(static_cast<int>(l));
}

void log_write(LogLevel l, const char* fmt, ...) {
  static const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  char buf[1024];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  int n = snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03ld %s ", t.tm_hour, t.tm_min, t.tm_sec,
                   ts.tv_nsec / 1000000, kNames[static_cast<int>(l)]);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
  va_end(ap);
  size_t len = n + (m < 0 ? 0 : (m > int(sizeof buf) - n - 2 ? int(sizeof buf) - n - 2 : m));
  buf[len++] = '\n';
  fwrite(buf, 1, len, stderr);
}

}  // namespace kv
