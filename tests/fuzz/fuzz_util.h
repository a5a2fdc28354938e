// Helpers shared by the fuzz targets (tests/fuzz/fuzz_*.cc): the fixed
// checksum parameters of the corpus, a sink that makes every byte of a view
// be read (so ASan checks it), a check that aborts with a message, and a
// per-process scratch directory for targets that go through files.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "eventsource/types.h"

namespace eventsource::fuzz {

// The worked example of format-spec.md: store id 00 01 .. 0F, so the store
// seed is 0x0808080808080808; its first frame sits at 0x1040 in epoch 1.
inline constexpr uint64_t kSeed = 0x0808080808080808ull;
inline constexpr uint64_t kOffset = 0x1040;
inline constexpr uint64_t kEpoch = 1;

inline Uuid example_store_id() {
  Uuid u;
  for (int i = 0; i < 16; ++i) u.bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
  return u;
}

// Reads every byte of `v`; the result only feeds a volatile sink.
inline uint64_t touch(std::string_view v) {
  uint64_t h = v.size();
  for (char c : v) h = h * 31 + static_cast<uint8_t>(c);
  return h;
}

inline void sink(uint64_t v) {
  static volatile uint64_t s;
  s = s + v;
}

inline uint64_t touch_event(const RecordedEvent& e) {
  uint64_t h = e.position.value ^ (e.version.value << 1) ^ static_cast<uint64_t>(e.timestamp_us);
  for (uint8_t b : e.id.bytes) h += b;
  for (uint8_t b : e.correlation_id.bytes) h += b;
  for (uint8_t b : e.causation_id.bytes) h += b;
  return h + touch(e.stream_type) + touch(e.stream_id) + touch(e.type) + touch(e.tenant) +
         touch(e.metadata) + touch(e.payload);
}

// An invariant of the engine failed: print why and abort (a fuzzer finding).
[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, what.c_str());
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(cond, what)                                        \
  do {                                                                \
    if (!(cond)) ::eventsource::fuzz::fail(__FILE__, __LINE__, what); \
  } while (0)

// A directory private to this process, under $ES_FUZZ_TMPDIR, else /dev/shm
// when it exists (the store target writes megabytes per input), else $TMPDIR
// or /tmp; removed at a normal exit (a crash leaves it behind).
class ScratchDir {
 public:
  static ScratchDir& get() {
    static ScratchDir* d = new ScratchDir;  // never destroyed: used by the atexit handler
    return *d;
  }
  const std::string& path() const { return path_; }
  std::string file(const char* name) const { return path_ + "/" + name; }
  // Removes every file in the directory (the targets create no subdirectories).
  void clean() const {
    DIR* d = opendir(path_.c_str());
    if (d == nullptr) return;
    while (dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      unlink((path_ + "/" + e->d_name).c_str());
    }
    closedir(d);
  }

 private:
  ScratchDir() {
    struct stat st;
    std::string base;
    if (const char* e = std::getenv("ES_FUZZ_TMPDIR"); e != nullptr && *e != '\0') {
      base = e;  // run_fuzzers.sh: a directory it removes afterwards, crash or not
    } else if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) {
      base = "/dev/shm";
    } else {
      const char* t = std::getenv("TMPDIR");
      base = t != nullptr && *t != '\0' ? t : "/tmp";
    }
    std::string tmpl = base + "/es-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("es fuzz: mkdtemp");
      std::abort();
    }
    path_ = tmpl;
    std::atexit([] {
      ScratchDir& d = get();
      d.clean();
      rmdir(d.path_.c_str());
    });
  }
  std::string path_;
};

// Writes [p, p+n) to `path` (truncating); aborts on failure (the harness's
// own I/O must not fail silently).
inline void write_file(const std::string& path, const uint8_t* p, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror(path.c_str());
    std::abort();
  }
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) {
      std::perror(path.c_str());
      std::abort();
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  ::close(fd);
}

}  // namespace eventsource::fuzz
