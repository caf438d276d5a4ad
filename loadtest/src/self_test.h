#pragma once

namespace kvload {
// Runs kvload's built-in unit tests; prints "N passed, M failed"; returns the exit status.
int run_self_test();
}  // namespace kvload
