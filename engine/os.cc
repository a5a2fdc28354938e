// The real OS layer: POSIX calls with EINTR retried, O_CLOEXEC always.
#include "engine/os.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace eventsource {
namespace {

template <class F>
auto retry_eintr(F f) {
  for (;;) {
    auto r = f();
    if (r >= 0 || errno != EINTR) return r < 0 ? decltype(r)(-errno) : r;
  }
}

class PosixOs final : public Os {
 public:
  int open(const std::string& path, int flags, unsigned mode) override {
    return retry_eintr([&] { return ::open(path.c_str(), flags | O_CLOEXEC, mode); });
  }
  int close(int fd) override { return ::close(fd) == 0 ? 0 : -errno; }
  ssize_t pread(int fd, void* buf, size_t n, uint64_t off) override {
    return retry_eintr([&] { return ::pread(fd, buf, n, static_cast<off_t>(off)); });
  }
  ssize_t pwrite(int fd, const void* buf, size_t n, uint64_t off) override {
    return retry_eintr([&] { return ::pwrite(fd, buf, n, static_cast<off_t>(off)); });
  }
  int fdatasync(int fd) override {
    return retry_eintr([&] { return ::fdatasync(fd); });
  }
  int fsync(int fd) override {
    return retry_eintr([&] { return ::fsync(fd); });
  }
  int fallocate(int fd, int mode, uint64_t off, uint64_t len) override {
    if (mode == 0) {
      // posix_fallocate returns the error instead of setting errno.
      int r = ::posix_fallocate(fd, static_cast<off_t>(off), static_cast<off_t>(len));
      return -r;
    }
    return retry_eintr(
        [&] { return ::fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len)); });
  }
  int ftruncate(int fd, uint64_t size) override {
    return retry_eintr([&] { return ::ftruncate(fd, static_cast<off_t>(size)); });
  }
  int64_t file_size(int fd) override {
    struct stat st;
    if (::fstat(fd, &st) != 0) return -errno;
    return st.st_size;
  }
  int rename(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : -errno;
  }
  int unlink(const std::string& path) override { return ::unlink(path.c_str()) == 0 ? 0 : -errno; }
  int sync_dir_of(const std::string& path) override {
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    int fd = retry_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
    if (fd < 0) return fd;
    int r = retry_eintr([&] { return ::fsync(fd); });
    ::close(fd);
    return r < 0 ? r : 0;
  }
  const void* map_read(int fd, uint64_t off, size_t len, int* err) override {
    void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(off));
    if (p == MAP_FAILED) {
      *err = errno;
      return nullptr;
    }
    return p;
  }
  void unmap(const void* addr, size_t len) override { ::munmap(const_cast<void*>(addr), len); }
  int lock_exclusive(int fd, int* holder_pid) override {
    *holder_pid = 0;
    // Byte 0: an open-file-description lock, the real exclusion (also within
    // one process, and not dropped when another fd of the file is closed).
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) {
      int e = errno;
      // Byte 1: a classic POSIX lock the holder also takes, only so that
      // F_GETLK can tell us its pid.
      struct flock q = {};
      q.l_type = F_WRLCK;
      q.l_whence = SEEK_SET;
      q.l_start = 1;
      q.l_len = 1;
      if (::fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK) *holder_pid = q.l_pid;
      return -e;
    }
    struct flock pid_lock = {};
    pid_lock.l_type = F_WRLCK;
    pid_lock.l_whence = SEEK_SET;
    pid_lock.l_start = 1;
    pid_lock.l_len = 1;
    ::fcntl(fd, F_SETLK, &pid_lock);  // advisory pid only; failure is harmless
    return 0;
  }
};

}  // namespace

int64_t Os::allocated_bytes(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return -errno;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

std::shared_ptr<Os> default_os() {
  static std::shared_ptr<Os> os = std::make_shared<PosixOs>();
  return os;
}

int write_full(Os& os, int fd, const void* p, size_t n, uint64_t offset) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = os.pwrite(fd, b, n, offset);
    if (w < 0) return static_cast<int>(w);
    if (w == 0) return -EIO;
    b += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return 0;
}

}  // namespace eventsource
