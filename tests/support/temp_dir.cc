// TempDir: mkdtemp under $ES_FAST_TMPDIR (with room), $TMPDIR or /tmp,
// std::filesystem::remove_all on destruction. Failures to create abort the
// test binary: nothing works without it.
#include "tests/support/temp_dir.h"

#include <stdlib.h>
#include <sys/statvfs.h>

#include <cstdio>
#include <filesystem>
#include <system_error>
#include <vector>

namespace eventsource::testing {

namespace {

// The suites that ask for a tmpfs write a few hundred MiB at most, side by
// side; a smaller one (a container's 64 MiB /dev/shm) would fail them with
// ENOSPC, so they use the disk instead.
constexpr unsigned long long kFastTmpMinFree = 2ull << 30;

std::string default_root() {
  if (const char* fast = getenv("ES_FAST_TMPDIR"); fast != nullptr && *fast != '\0') {
    struct statvfs st;
    if (statvfs(fast, &st) == 0 &&
        static_cast<unsigned long long>(st.f_bavail) * st.f_frsize >= kFastTmpMinFree)
      return fast;
  }
  const char* base = getenv("TMPDIR");
  return base != nullptr && *base != '\0' ? base : "/tmp";
}

}  // namespace

TempDir::TempDir(const std::string& tag, const std::string& under) {
  std::string root = !under.empty() ? under : default_root();
  std::string templ = root + "/" + tag + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::perror(("mkdtemp " + templ).c_str());
    abort();
  }
  path_ = buf.data();
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::file(const std::string& name) const { return path_ + "/" + name; }

}  // namespace eventsource::testing
