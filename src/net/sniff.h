// Decides from a connection's first bytes whether it speaks HTTP or the binary peer protocol.
#pragma once
#include <cstddef>

namespace kv::net {

enum class SniffResult { kHttp, kBinary, kNeedMore };
SniffResult SniffConnection(const char* data, size_t n);

}  // namespace kv::net
