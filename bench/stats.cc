// Percentiles, RSS and disk-usage helpers for esbench.
#include "bench/stats.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace esbench {
namespace {

uint64_t status_kib(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  uint64_t kib = 0;
  const size_t key_len = std::strlen(key);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
      kib = std::strtoull(line + key_len + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kib * 1024;
}

}  // namespace

std::optional<double> Samples::percentile(double p) {
  if (us_.empty()) return std::nullopt;
  if (!sorted_) {
    std::sort(us_.begin(), us_.end());
    sorted_ = true;
  }
  const double rank = std::ceil(p / 100.0 * static_cast<double>(us_.size()));
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  if (index >= us_.size()) index = us_.size() - 1;
  return us_[index];
}

uint64_t rss_bytes() { return status_kib("VmRSS"); }
uint64_t peak_rss_bytes() { return status_kib("VmHWM"); }

uint64_t dir_allocated_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const FileBytes& f : dir_files(dir)) total += f.allocated;
  return total;
}

std::vector<FileBytes> dir_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<FileBytes> out;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      out.push_back({it->path().lexically_relative(dir).string(),
                     static_cast<uint64_t>(st.st_blocks) * 512, static_cast<uint64_t>(st.st_size)});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const FileBytes& a, const FileBytes& b) { return a.name < b.name; });
  return out;
}

}  // namespace esbench
