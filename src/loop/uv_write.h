// Writing without a write request when the socket takes the bytes at once (the common case for
// small answers and frames). A completed uv_write costs an epoll_ctl, because libuv re-registers
// the socket after draining its write queue; uv_try_write does not.
#pragma once
#include <uv.h>

#include <string>

namespace kv::net {

// Writes as much of *buf as the socket accepts now and erases it from *buf. Returns 0 (all or
// part written, or the socket is full) or a negative uv error. The caller sends what is left of
// *buf with uv_write.
inline int TryWriteNow(uv_stream_t* stream, std::string* buf) {
  if (buf->empty()) return 0;
  uv_buf_t b = uv_buf_init(buf->data(), static_cast<unsigned>(buf->size()));
  int n = uv_try_write(stream, &b, 1);
  if (n == UV_EAGAIN) return 0;
  if (n < 0) return n;
  buf->erase(0, static_cast<size_t>(n));
  return 0;
}

}  // namespace kv::net
