// FaultyOs: fault injection and the power-loss model (see faulty_os.h).
#include "tests/faults/faulty_os.h"

#include <fcntl.h>
#include <linux/falloc.h>

#include <cerrno>
#include <cstring>

namespace eventsource::testing {

void FaultyOs::fail_at(uint64_t n, int err, FaultKind kind, Persistence p) {
  std::lock_guard l(mu_);
  fail_call_ = calls_ + n;
  fail_err_ = err;
  fail_kind_ = kind;
  fail_persist_ = p;
  failing_ = false;
  fired_ = false;
}

void FaultyOs::crash_at(uint64_t n) {
  std::lock_guard l(mu_);
  crash_call_ = calls_ + n;
}

bool FaultyOs::crashed() const {
  std::lock_guard l(mu_);
  return crashed_;
}
bool FaultyOs::fault_fired() const {
  std::lock_guard l(mu_);
  return fired_;
}
uint64_t FaultyOs::calls() const {
  std::lock_guard l(mu_);
  return calls_;
}
uint64_t FaultyOs::syncs() const {
  std::lock_guard l(mu_);
  return syncs_;
}
std::vector<uint64_t> FaultyOs::sync_calls() const {
  std::lock_guard l(mu_);
  return sync_calls_;
}

int FaultyOs::gate(Op op, bool* short_write) {
  std::lock_guard l(mu_);
  ++calls_;
  if (crash_call_ != 0 && calls_ >= crash_call_) crashed_ = true;
  if (crashed_) return -EIO;
  if (failing_ && op != Op::kRead && op != Op::kOther) return -fail_err_;
  if (fail_call_ != 0 && calls_ == fail_call_) {
    fired_ = true;
    if (fail_persist_ == Persistence::kPersistent) failing_ = true;
    if (fail_kind_ == FaultKind::kShortWrite && op == Op::kWrite && short_write != nullptr) {
      *short_write = true;
      return 0;
    }
    return -fail_err_;
  }
  return 0;
}

void FaultyOs::record_before(int fd, uint64_t offset, uint64_t len) {
  std::lock_guard l(mu_);
  auto it = paths_.find(fd);
  if (it == paths_.end() || len == 0) return;
  auto& sectors = dirty_[it->second];
  int64_t size = base_->file_size(fd);
  for (uint64_t s = offset / kSector; s <= (offset + len - 1) / kSector; ++s) {
    if (sectors.count(s)) continue;
    std::string old(kSector, '\0');
    if (size > 0 && s * kSector < static_cast<uint64_t>(size))
      base_->pread(fd, old.data(), kSector, s * kSector);
    sectors[s].push_back(std::move(old));
  }
}

void FaultyOs::record_after(int fd, uint64_t offset, uint64_t len) {
  std::lock_guard l(mu_);
  auto it = paths_.find(fd);
  if (it == paths_.end() || len == 0) return;
  auto& sectors = dirty_[it->second];
  for (uint64_t s = offset / kSector; s <= (offset + len - 1) / kSector; ++s) {
    std::string now(kSector, '\0');
    base_->pread(fd, now.data(), kSector, s * kSector);
    sectors[s].push_back(std::move(now));
  }
}

void FaultyOs::synced(int fd) {
  std::lock_guard l(mu_);
  ++syncs_;
  sync_calls_.push_back(calls_);
  auto it = paths_.find(fd);
  if (it != paths_.end()) dirty_.erase(it->second);
}

uint64_t FaultyOs::power_loss(uint64_t seed) {
  std::lock_guard l(mu_);
  std::mt19937_64 rng(seed);
  uint64_t changed = 0;
  for (auto& [path, sectors] : dirty_) {
    int fd = base_->open(path, O_RDWR, 0);
    if (fd < 0) continue;
    for (auto& [s, versions] : sectors) {
      const std::string& pick = versions[rng() % versions.size()];
      if (&pick != &versions.back()) ++changed;
      base_->pwrite(fd, pick.data(), pick.size(), s * kSector);
    }
    base_->close(fd);
  }
  // The model is kept, so the same loss can be replayed on a restored copy.
  crashed_ = true;
  return changed;
}

int FaultyOs::open(const std::string& path, int flags, unsigned mode) {
  if (int r = gate(Op::kOther); r < 0) return r;
  int fd = base_->open(path, flags, mode);
  if (fd >= 0) {
    std::lock_guard l(mu_);
    paths_[fd] = path;
  }
  return fd;
}

int FaultyOs::close(int fd) {
  {
    std::lock_guard l(mu_);
    paths_.erase(fd);
  }
  // The fd is released even when the call "fails", as close(2) does.
  int r = gate(Op::kOther);
  int b = base_->close(fd);
  return r < 0 ? r : b;
}

ssize_t FaultyOs::pread(int fd, void* buf, size_t n, uint64_t offset) {
  if (int r = gate(Op::kRead); r < 0) return r;
  return base_->pread(fd, buf, n, offset);
}

ssize_t FaultyOs::pwrite(int fd, const void* buf, size_t n, uint64_t offset) {
  bool short_write = false;
  if (int r = gate(Op::kWrite, &short_write); r < 0) return r;
  if (short_write) n = n > 1 ? n / 2 : n;
  record_before(fd, offset, n);
  ssize_t w = base_->pwrite(fd, buf, n, offset);
  if (w > 0) record_after(fd, offset, static_cast<uint64_t>(w));
  return w;
}

int FaultyOs::fdatasync(int fd) {
  if (int r = gate(Op::kSync); r < 0) return r;
  synced(fd);
  return 0;
}

int FaultyOs::fsync(int fd) {
  if (int r = gate(Op::kSync); r < 0) return r;
  synced(fd);
  return 0;
}

int FaultyOs::fallocate(int fd, int mode, uint64_t offset, uint64_t len) {
  if (int r = gate(Op::kWrite); r < 0) return r;
  bool zeroes = (mode & FALLOC_FL_PUNCH_HOLE) != 0;
  if (zeroes) record_before(fd, offset, len);
  int r = base_->fallocate(fd, mode, offset, len);
  if (zeroes && r == 0) record_after(fd, offset, len);
  return r;
}

int FaultyOs::ftruncate(int fd, uint64_t size) {
  if (int r = gate(Op::kWrite); r < 0) return r;
  return base_->ftruncate(fd, size);
}

int64_t FaultyOs::file_size(int fd) {
  if (int r = gate(Op::kRead); r < 0) return r;
  return base_->file_size(fd);
}

int FaultyOs::rename(const std::string& from, const std::string& to) {
  if (int r = gate(Op::kWrite); r < 0) return r;
  return base_->rename(from, to);
}

int FaultyOs::unlink(const std::string& path) {
  if (int r = gate(Op::kWrite); r < 0) return r;
  return base_->unlink(path);
}

int FaultyOs::sync_dir_of(const std::string& /*path*/) {
  if (int r = gate(Op::kSync); r < 0) return r;
  return 0;
}

const void* FaultyOs::map_read(int fd, uint64_t offset, size_t len, int* err) {
  if (int r = gate(Op::kRead); r < 0) {
    *err = -r;
    return nullptr;
  }
  return base_->map_read(fd, offset, len, err);
}

void FaultyOs::unmap(const void* addr, size_t len) { base_->unmap(addr, len); }

int FaultyOs::lock_exclusive(int fd, int* holder_pid) {
  if (int r = gate(Op::kOther); r < 0) return r;
  return base_->lock_exclusive(fd, holder_pid);
}

}  // namespace eventsource::testing
