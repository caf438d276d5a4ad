#include "common/fingerprint.h"

#include <xxhash.h>

#include <algorithm>
#include <string_view>

namespace kv {

uint64_t ClusterFingerprint(const std::vector<std::string>& cluster_urls) {
  std::vector<std::string_view> sorted(cluster_urls.begin(), cluster_urls.end());
  std::sort(sorted.begin(), sorted.end());
  std::string joined;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0) joined.push_back('\n');
    joined.append(sorted[i]);
  }
  return XXH3_64bits(joined.data(), joined.size());
}

}  // namespace kv
