// TempDir: mkdtemp under $TMPDIR (or /tmp), std::filesystem::remove_all on
// destruction. Failures to create abort the test binary: nothing works without it.
#include "tests/support/temp_dir.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <system_error>
#include <vector>

namespace eventsource::testing {

TempDir::TempDir(const std::string& tag, const std::string& under) {
  const char* base = getenv("TMPDIR");
  std::string root = !under.empty() ? under : (base != nullptr && *base != '\0') ? base : "/tmp";
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
