// The result of every storage operation that can fail: a code and a message, returned as a value
// (no exceptions). Callers must check ok() (or code()) before using any output of the call.
#pragma once
#include <string>
#include <utility>

namespace kv::storage {

enum class Code { kOk, kNotFound, kCorruption, kIoError, kNoSpace, kInvalidArgument };

// Errors are values. message() names the file and offset where that applies.
class Status {
 public:
  Status() = default;
  Status(Code c, std::string msg) : code_(c), msg_(std::move(msg)) {}
  static Status Ok() { return Status(); }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }

 private:
  Code code_ = Code::kOk;
  std::string msg_;
};

}  // namespace kv::storage
