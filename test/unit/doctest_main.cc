// main() of every unit-test binary: runs doctest, or one registered child process
// (test_child.h) when started with --child=<name>.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "test_child.h"

namespace kv::test {
namespace {

std::map<std::string, ChildMain>& Children() {
  static std::map<std::string, ChildMain> children;
  return children;
}

}  // namespace

bool RegisterChild(const char* name, ChildMain fn) {
  Children()[name] = fn;
  return true;
}

bool RunChildIfAsked(int argc, char** argv, int* status) {
  const size_t n = sizeof(kChildFlag) - 1;
  if (argc < 2 || std::strncmp(argv[1], kChildFlag, n) != 0) return false;
  auto it = Children().find(argv[1] + n);
  if (it == Children().end()) {
    std::fprintf(stderr, "no test child named %s\n", argv[1] + n);
    *status = 2;
  } else {
    *status = it->second();
  }
  return true;
}

}  // namespace kv::test

int main(int argc, char** argv) {
  int status = 0;
  if (kv::test::RunChildIfAsked(argc, argv, &status)) return status;
  return doctest::Context(argc, argv).run();
}
