// Files the store creates are private by default (0600) or get the mode the
// caller asks for, and every descriptor the engine opens is close-on-exec.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "eventsource/store.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

// Sets the umask for a scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

void write_some(const std::string& path, const StoreOptions& options) {
  std::unique_ptr<Store> store = open_or_fail(path, options);
  std::vector<EventData> events = {make_event("Placed", "{}")};
  EVENTSOURCE_REQUIRE_OK(store->append(StreamId{"Order", "1"}, ExpectedVersion::any(), events));
  EVENTSOURCE_REQUIRE_OK(store->checkpoint());
  EVENTSOURCE_REQUIRE_OK(store->close());
}

TEST_SUITE("file-mode") {
  TEST_CASE("store files are created with mode 0600 by default") {
    ScopedUmask umask(022);
    TempDir dir("es-mode");
    const std::string path = dir.file("private.evs");
    write_some(path, small_store_options());
    CHECK(file_mode_bits(path) == 0600u);
    REQUIRE(file_exists(path + ".ckpt"));
    CHECK(file_mode_bits(path + ".ckpt") == 0600u);
  }

  TEST_CASE("store files get the file_mode the caller asks for, under the umask") {
    TempDir dir("es-mode");
    StoreOptions options = small_store_options();
    options.file_mode = 0640;
    {
      ScopedUmask umask(0);
      const std::string path = dir.file("shared.evs");
      write_some(path, options);
      CHECK(file_mode_bits(path) == 0640u);
      CHECK(file_mode_bits(path + ".ckpt") == 0640u);
    }
    {
      ScopedUmask umask(027);
      options.file_mode = 0666;
      const std::string path = dir.file("masked.evs");
      write_some(path, options);
      CHECK(file_mode_bits(path) == 0640u);
      CHECK(file_mode_bits(path + ".ckpt") == 0640u);
    }
  }

  TEST_CASE("every descriptor the engine opens is close-on-exec") {
    TempDir dir("es-mode");
    const std::string path = dir.file("cloexec.evs");
    write_some(path, small_store_options());  // so that a checkpoint file exists
    std::unique_ptr<Store> writer = open_or_fail(path, small_store_options());
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> reader = open_or_fail(path, ro);

    int store_fds = 0;
    DIR* fds = ::opendir("/proc/self/fd");
    REQUIRE(fds != nullptr);
    while (struct dirent* entry = ::readdir(fds)) {
      if (entry->d_name[0] == '.') continue;
      const int fd = std::atoi(entry->d_name);
      if (fd == ::dirfd(fds)) continue;
      char target[PATH_MAX] = {};
      const std::string link = std::string("/proc/self/fd/") + entry->d_name;
      const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      const std::string file(target, static_cast<size_t>(n));
      if (file.rfind(dir.path(), 0) != 0) continue;  // not one of this store's files
      ++store_fds;
      const int flags = ::fcntl(fd, F_GETFD);
      INFO("fd " << fd << " -> " << file);
      CHECK(flags >= 0);
      CHECK((flags & FD_CLOEXEC) != 0);
    }
    ::closedir(fds);
    CHECK(store_fds >= 2);  // at least the writer's and the reader's data file
    EVENTSOURCE_CHECK_OK(reader->close());
    EVENTSOURCE_CHECK_OK(writer->close());
  }
}

}  // namespace
}  // namespace eventsource::testing
