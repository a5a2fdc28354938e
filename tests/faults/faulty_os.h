// A fault-injecting OS layer for the engine: fail the Nth call (EIO, ENOSPC,
// EINTR, short write; transient or persistent), "crash" at the Nth call (every
// later call fails and nothing more reaches the disk), and simulate power
// loss: each sector written since its file's last sync reverts to one of the
// contents it had since then (the synced one included), chosen at random.
// Thread-safe. Syncs reach the model only (not the disk), so loops stay fast.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/os.h"

namespace eventsource::testing {

enum class FaultKind : uint8_t { kError, kShortWrite };
enum class Persistence : uint8_t { kTransient, kPersistent };

class FaultyOs final : public Os {
 public:
  explicit FaultyOs(std::shared_ptr<Os> base = default_os()) : base_(std::move(base)) {}

  // The `n`th call from now (1-based) fails with `err` (or is a short write).
  // Persistent: every later call of the same kind (writes/syncs/allocs) fails too.
  void fail_at(uint64_t n, int err, FaultKind kind, Persistence p);
  // From the `n`th call from now on, the "process" is dead: calls fail with
  // EIO and change nothing.
  void crash_at(uint64_t n);
  bool crashed() const;
  bool fault_fired() const;
  uint64_t calls() const;

  // Applies a power loss to the files on disk (call after every store using
  // this layer is gone). Returns the number of sectors whose content changed.
  // The model is kept: after restoring the files to their crash-time copy,
  // another seed gives another image.
  uint64_t power_loss(uint64_t seed);
  // Number of file syncs seen, and the call number of each (sync points).
  uint64_t syncs() const;
  std::vector<uint64_t> sync_calls() const;

  int open(const std::string& path, int flags, unsigned mode) override;
  int close(int fd) override;
  ssize_t pread(int fd, void* buf, size_t n, uint64_t offset) override;
  ssize_t pwrite(int fd, const void* buf, size_t n, uint64_t offset) override;
  int fdatasync(int fd) override;
  int fsync(int fd) override;
  int fallocate(int fd, int mode, uint64_t offset, uint64_t len) override;
  int ftruncate(int fd, uint64_t size) override;
  int64_t file_size(int fd) override;
  int rename(const std::string& from, const std::string& to) override;
  int unlink(const std::string& path) override;
  int sync_dir_of(const std::string& path) override;
  const void* map_read(int fd, uint64_t offset, size_t len, int* err) override;
  void unmap(const void* addr, size_t len) override;
  int lock_exclusive(int fd, int* holder_pid) override;

 private:
  static constexpr uint64_t kSector = 512;
  enum class Op : uint8_t { kRead, kWrite, kSync, kOther };
  // Counts the call; returns 0 to proceed or -errno to fail it. *short_write
  // is set when a write should be cut short.
  int gate(Op op, bool* short_write = nullptr);
  void record_before(int fd, uint64_t offset, uint64_t len);
  void record_after(int fd, uint64_t offset, uint64_t len);
  void synced(int fd);

  std::shared_ptr<Os> base_;
  mutable std::mutex mu_;
  uint64_t calls_ = 0;
  uint64_t fail_call_ = 0;
  int fail_err_ = 0;
  FaultKind fail_kind_ = FaultKind::kError;
  Persistence fail_persist_ = Persistence::kTransient;
  bool failing_ = false;  // a persistent fault has fired
  bool fired_ = false;
  uint64_t crash_call_ = 0;
  bool crashed_ = false;
  uint64_t syncs_ = 0;
  std::vector<uint64_t> sync_calls_;
  std::map<int, std::string> paths_;
  // path -> sector index -> contents since the last sync (first = synced content)
  std::map<std::string, std::map<uint64_t, std::vector<std::string>>> dirty_;
};

}  // namespace eventsource::testing
