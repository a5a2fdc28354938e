// The thin file/OS layer every syscall of the engine goes through, so tests
// can inject faults (failed or short calls, crashes, power loss). Calls return
// the syscall's result, or -errno on failure; callers turn that into a Status
// naming the file and the operation. Implementations must be thread-safe.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace eventsource {

class Os {
 public:
  virtual ~Os() = default;

  // open(2); the engine always adds O_CLOEXEC. Returns fd or -errno.
  virtual int open(const std::string& path, int flags, unsigned mode) = 0;
  virtual int close(int fd) = 0;
  // Returns bytes transferred (may be short) or -errno.
  virtual ssize_t pread(int fd, void* buf, size_t n, uint64_t offset) = 0;
  virtual ssize_t pwrite(int fd, const void* buf, size_t n, uint64_t offset) = 0;
  virtual int fdatasync(int fd) = 0;
  virtual int fsync(int fd) = 0;
  // fallocate(2) with `mode` (0 = allocate and extend).
  virtual int fallocate(int fd, int mode, uint64_t offset, uint64_t len) = 0;
  virtual int ftruncate(int fd, uint64_t size) = 0;
  // File size in bytes, or -errno.
  virtual int64_t file_size(int fd) = 0;
  // Bytes the file occupies on disk (holes excluded), or -errno. For reports only.
  virtual int64_t allocated_bytes(int fd);
  virtual int rename(const std::string& from, const std::string& to) = 0;
  virtual int unlink(const std::string& path) = 0;
  // Opens the directory containing `path` and fsyncs it (makes a rename durable).
  virtual int sync_dir_of(const std::string& path) = 0;
  // Read-only shared mapping; returns nullptr and sets *err (errno) on failure.
  virtual const void* map_read(int fd, uint64_t offset, size_t len, int* err) = 0;
  virtual void unmap(const void* addr, size_t len) = 0;
  // Exclusive, non-blocking writer lock on `fd` (open-file-description lock,
  // so it also excludes a second open in the same process). Returns 0, or
  // -EAGAIN/-EACCES when held elsewhere (then *holder_pid is the holder's pid
  // when known, else 0), or -errno.
  virtual int lock_exclusive(int fd, int* holder_pid) = 0;
};

// Writes all `n` bytes at `offset` through os.pwrite, continuing after short
// writes. Returns 0, or -errno (-EIO when a write makes no progress). The one
// write loop of the engine: callers turn the result into a Status.
int write_full(Os& os, int fd, const void* p, size_t n, uint64_t offset);

// The real thing: plain POSIX calls, retrying EINTR.
std::shared_ptr<Os> default_os();

}  // namespace eventsource
