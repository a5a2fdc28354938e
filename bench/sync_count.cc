// fdatasync(2) and fsync(2) that count their calls, then make the syscall as
// libc would. Defined in the esbench executable, they take the place of libc's
// for the engine (linked into it) and for libsqlite3 (the executable exports
// them because a shared library it links references them). Cost: one relaxed
// atomic increment per sync, next to a sync of milliseconds.
#include "bench/sync_count.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace esbench {
namespace {

std::atomic<uint64_t> g_sync_calls{0};

}  // namespace

uint64_t sync_calls() { return g_sync_calls.load(std::memory_order_relaxed); }

}  // namespace esbench

extern "C" int fdatasync(int fd) {
  esbench::g_sync_calls.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(::syscall(SYS_fdatasync, fd));
}

extern "C" int fsync(int fd) {
  esbench::g_sync_calls.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(::syscall(SYS_fsync, fd));
}
