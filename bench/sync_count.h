// Counts the fdatasync and fsync calls of this process, so esbench can report
// how many appends share one sync under group commit without reaching inside
// the engine. sync_count.cc defines both libc functions: the linker binds the
// engine's calls (and SQLite's) to them, and they forward to the syscalls.
#pragma once

#include <cstdint>

namespace esbench {

// fdatasync + fsync calls made so far by any thread of this process.
uint64_t sync_calls();

}  // namespace esbench
