// Child processes for tests that must kill or crash a process. A test re-executes its own binary
// as `/proc/self/exe --child=<name>`; main() (doctest_main.cc) then runs the function registered
// under that name instead of the test cases and exits with its return value. A child is not a
// test case: it never shows up in, or counts towards, a doctest run.
// Caller guarantees: names are unique within one binary; registration happens at static
// initialisation (KV_TEST_CHILD), before main() runs.
#pragma once

namespace kv::test {

using ChildMain = int (*)();

// Registers fn under name; returns true so that it can initialise a namespace-scope constant.
bool RegisterChild(const char* name, ChildMain fn);

// If argv[1] is "--child=<name>": runs that child, stores its exit status in *status (2 and a
// message on stderr for an unknown name) and returns true. Otherwise returns false.
bool RunChildIfAsked(int argc, char** argv, int* status);

// The argument that starts the child registered under name.
inline constexpr char kChildFlag[] = "--child=";

}  // namespace kv::test

#define KV_TEST_CHILD_CAT2(a, b) a##b
#define KV_TEST_CHILD_CAT(a, b) KV_TEST_CHILD_CAT2(a, b)
// KV_TEST_CHILD("name", function): registers function (int(), the child's exit status).
#define KV_TEST_CHILD(name, fn)                                                               \
  [[maybe_unused]] static const bool KV_TEST_CHILD_CAT(kv_test_child_registered_, __LINE__) = \
      ::kv::test::RegisterChild(name, fn)
