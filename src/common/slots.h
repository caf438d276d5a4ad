// Values parked under small integer ids, e.g. what a waiter needs to answer a request, passed as
// its 64-bit cookie. Ids are reused once taken back; no allocation once warm. One thread.
#pragma once
#include <cstdint>
#include <vector>

namespace kv {

template <typename T>
class Slots {
 public:
  uint64_t Put(const T& value) {
    if (free_.empty()) {
      items_.push_back(value);
      return items_.size() - 1;
    }
    const uint64_t id = free_.back();
    free_.pop_back();
    items_[id] = value;
    return id;
  }
  // The value parked under id, which Put may hand out again from now on.
  T Take(uint64_t id) {
    free_.push_back(id);
    return items_[id];
  }

 private:
  std::vector<T> items_;
  std::vector<uint64_t> free_;
};

}  // namespace kv
