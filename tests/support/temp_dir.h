// A per-test scratch directory under $ES_FAST_TMPDIR (a tmpfs, when it has
// room), else $TMPDIR, else /tmp, removed with everything in it when the test
// is done, so stores never leak between tests.
#pragma once

#include <string>

namespace eventsource::testing {

// Move-only; the directory is created by the constructor and removed
// recursively by the destructor.
class TempDir {
 public:
  // `tag` becomes part of the directory name, to tell leftovers apart.
  // `under`: the parent directory ("" = as above).
  explicit TempDir(const std::string& tag = "es-test", const std::string& under = "");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string file(const std::string& name) const;

 private:
  std::string path_;
};

}  // namespace eventsource::testing
