// Small helpers shared by the binary peer client (peer_binary.cc) and server
// (peer_binary_server.cc). Loop-thread only; nothing here owns a handle.
#pragma once
#include <uv.h>

#include <cstddef>
#include <string>

namespace kv::net::binary_io {

// Read buffer for uv_read_start: one per thread, shared by every binary connection on the
// thread's loop. Safe because each read callback hands the bytes to its FrameDecoder (which
// copies them) before the loop asks for the next buffer.
inline void AllocReadBuffer(uv_handle_t*, size_t, uv_buf_t* buf) {
  static thread_local char storage[64 << 10];
  buf->base = storage;
  buf->len = sizeof storage;
}

// Output buffers keep their capacity between writes (no allocation per frame) unless one large
// value made them grow past this; then they are released once written.
inline constexpr size_t kKeepBufferCapacity = 1u << 20;

inline void ResetWritten(std::string* s) {
  if (s->capacity() > kKeepBufferCapacity) {
    std::string().swap(*s);
  } else {
    s->clear();
  }
}

}  // namespace kv::net::binary_io
