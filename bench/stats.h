// Measurement helpers for esbench: a steady-clock stopwatch, percentiles from
// sorted latency samples, process RSS, and the on-disk size of a directory and
// of each file in it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace esbench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Latency samples in microseconds.
class Samples {
 public:
  void reserve(size_t n) { us_.reserve(n); }
  void add_seconds(double s) { us_.push_back(s * 1e6); }
  void add_us(double us) { us_.push_back(us); }
  void merge(const Samples& other) { us_.insert(us_.end(), other.us_.begin(), other.us_.end()); }
  size_t size() const { return us_.size(); }
  // Nearest-rank percentile (p in 0..100); nullopt when there are no samples.
  // Sorts the samples on first use.
  std::optional<double> percentile(double p);

 private:
  std::vector<double> us_;
  bool sorted_ = false;
};

// VmRSS of this process from /proc/self/status, in bytes (0 if unreadable).
uint64_t rss_bytes();
// VmHWM (peak RSS) of this process, in bytes (0 if unreadable).
uint64_t peak_rss_bytes();

// Allocated size (st_blocks * 512) of every regular file under `dir`.
uint64_t dir_allocated_bytes(const std::string& dir);

// One regular file under a directory: its path relative to the directory, its
// allocated size (st_blocks * 512) and its length (st_size).
struct FileBytes {
  std::string name;
  uint64_t allocated = 0;
  uint64_t length = 0;
};
// Every regular file under `dir`, in name order.
std::vector<FileBytes> dir_files(const std::string& dir);

}  // namespace esbench
