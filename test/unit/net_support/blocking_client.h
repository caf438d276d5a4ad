// A blocking TCP client for tests that drive a real net::Server from the test thread: sends raw
// bytes and reads HTTP/1.1 answers (Content-Length or chunked bodies, interim 1xx included).
// Every read waits at most 10 s: a safety net for a broken server, never a measurement.
#pragma once
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace kv::test {

struct HttpAnswer {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class BlockingClient {
 public:
  explicit BlockingClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~BlockingClient() { Close(); }
  BlockingClient(const BlockingClient&) = delete;
  BlockingClient& operator=(const BlockingClient&) = delete;

  // Writes all of bytes in one write(2).
  void Send(std::string_view bytes) {
    REQUIRE(::write(fd_, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  }
  // Half-closes: the server reads EOF after what was sent.
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads one answer (to a HEAD request: without a body); false if the connection ended (or the
  // safety net fired) before it was complete or if its bytes are not an HTTP/1.1 answer.
  bool Read(HttpAnswer* a, bool to_head = false) {
    *a = HttpAnswer{};
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    const std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    if (head.rfind("HTTP/1.1 ", 0) != 0 || head.size() < 12) return false;
    a->status = std::atoi(head.c_str() + 9);
    for (size_t pos = head.find("\r\n"); pos != std::string::npos;) {
      const size_t next = head.find("\r\n", pos + 2);
      const std::string line = head.substr(pos + 2, next - pos - 2);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) return false;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      a->headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
      pos = next;
    }
    if (to_head) return true;
    if (a->header("transfer-encoding") == "chunked") return ReadChunked(&a->body);
    const size_t n = std::strtoull(a->header("content-length").c_str(), nullptr, 10);
    return Take(n, &a->body);
  }

  // True if the server closed the connection and nothing more is left to read.
  bool ReadEof() { return buf_.empty() && !Fill(); }
  // Everything until the server closes the connection (or the safety net fires).
  std::string ReadToEof() {
    while (Fill()) {
    }
    std::string all;
    all.swap(buf_);
    return all;
  }
  int fd() const { return fd_; }

 private:
  bool Fill() {
    char tmp[16384];
    const ssize_t n = ::read(fd_, tmp, sizeof tmp);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  bool Take(size_t n, std::string* out) {
    while (buf_.size() < n) {
      if (!Fill()) return false;
    }
    out->append(buf_, 0, n);
    buf_.erase(0, n);
    return true;
  }
  bool ReadChunked(std::string* body) {
    for (;;) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos) {
        if (!Fill()) return false;
      }
      const size_t size = std::strtoull(buf_.c_str(), nullptr, 16);
      buf_.erase(0, eol + 2);
      std::string crlf;
      if (!Take(size, body) || !Take(2, &crlf) || crlf != "\r\n") return false;
      if (size == 0) return true;
    }
  }

  int fd_ = -1;
  std::string buf_;
};

}  // namespace kv::test
