// An Os that passes every call to another one (the real one by default):
// tests derive from it and override only the calls they interfere with.
#pragma once

#include <memory>
#include <string>

#include "engine/os.h"

namespace eventsource::testing {

class ForwardingOs : public Os {
 public:
  explicit ForwardingOs(std::shared_ptr<Os> base = default_os()) : base_(std::move(base)) {}

  int open(const std::string& path, int flags, unsigned mode) override {
    return base_->open(path, flags, mode);
  }
  int close(int fd) override { return base_->close(fd); }
  ssize_t pread(int fd, void* buf, size_t n, uint64_t offset) override {
    return base_->pread(fd, buf, n, offset);
  }
  ssize_t pwrite(int fd, const void* buf, size_t n, uint64_t offset) override {
    return base_->pwrite(fd, buf, n, offset);
  }
  int fdatasync(int fd) override { return base_->fdatasync(fd); }
  int fsync(int fd) override { return base_->fsync(fd); }
  int fallocate(int fd, int mode, uint64_t offset, uint64_t len) override {
    return base_->fallocate(fd, mode, offset, len);
  }
  int ftruncate(int fd, uint64_t size) override { return base_->ftruncate(fd, size); }
  int64_t file_size(int fd) override { return base_->file_size(fd); }
  int64_t allocated_bytes(int fd) override { return base_->allocated_bytes(fd); }
  int rename(const std::string& from, const std::string& to) override {
    return base_->rename(from, to);
  }
  int unlink(const std::string& path) override { return base_->unlink(path); }
  int sync_dir_of(const std::string& path) override { return base_->sync_dir_of(path); }
  const void* map_read(int fd, uint64_t offset, size_t len, int* err) override {
    return base_->map_read(fd, offset, len, err);
  }
  void unmap(const void* addr, size_t len) override { base_->unmap(addr, len); }
  int lock_exclusive(int fd, int* holder_pid) override {
    return base_->lock_exclusive(fd, holder_pid);
  }

 private:
  std::shared_ptr<Os> base_;
};

}  // namespace eventsource::testing
