// Thin, error-as-value wrappers around the POSIX calls the engine makes on files, plus a
// test-only seams to inject write(2) failures (ENOSPC, short writes) and to watch or hold
// fdatasync(2). Callers own the fds.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <string>
#include <string_view>

#include "storage/status.h"

namespace kv::storage {

// Test seam: when set, every write the engine makes to a file goes through this function
// instead of ::write. It must behave like write(2) (set errno on -1). Production never sets it.
using WriteFn = ssize_t (*)(int fd, const void* buf, size_t n);
extern std::atomic<WriteFn> g_write_hook;
// Test seam: when set, SyncFd calls this instead of ::fdatasync (it must behave like it: 0, or
// -1 with errno). Tests use it to hold a sync and prove nothing is acknowledged before it
// returns. Production never sets it.
using SyncFn = int (*)(int fd);
extern std::atomic<SyncFn> g_sync_hook;

// Maps errno to a Status: ENOSPC/EDQUOT -> kNoSpace, everything else -> kIoError.
Status ErrnoStatus(int err, const std::string& what, const std::string& file);

// Writes all of data at the current position, retrying EINTR and short writes. On failure the
// file may hold a prefix of data; *written (if given) says how much.
Status WriteAll(int fd, std::string_view data, const std::string& file, size_t* written = nullptr);
Status SyncFd(int fd, const std::string& file);  // fdatasync
Status SyncDir(const std::string& dir);          // fsync of the directory entry table
// Reads a whole (small) file into *out.
Status ReadWholeFile(const std::string& path, std::string* out);

}  // namespace kv::storage
