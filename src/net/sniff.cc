#include "net/sniff.h"

#include "proto/wire.h"

namespace kv::net {

SniffResult SniffConnection(const char* data, size_t n) {
  switch (proto::SniffPreface(data, n)) {
    case proto::Sniff::kBinary:
      return SniffResult::kBinary;
    case proto::Sniff::kNeedMore:
      return SniffResult::kNeedMore;
    default:
      return SniffResult::kHttp;
  }
}

}  // namespace kv::net
