// A main for the fuzz targets in the normal (gcc, no libFuzzer) build: runs
// LLVMFuzzerTestOneInput once on every file under the directories (or files)
// given as arguments, recursively, in name order, and prints how many it ran.
// Exits non-zero when an argument is missing or holds no file. A crash in
// the target crashes this program, so the test fails; each input's name is
// printed before it runs, so the log names the culprit.
// Like run_fuzzers.sh (-rss_limit_mb=2048), memory is limited to 2 GiB
// (ES_FUZZ_REPLAY_MEMORY_MB overrides, 0 = no limit), so an input that makes
// the engine allocate gigabytes fails here too instead of thrashing.
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ES_REPLAY_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ES_REPLAY_ASAN 1
#endif

#ifdef ES_REPLAY_ASAN
// ASan reserves terabytes of address space, so no RLIMIT_AS: cap single
// allocations instead (an oversized one is reported as an error).
extern "C" const char* __asan_default_options() { return "max_allocation_size_mb=2048"; }
#endif

static void limit_memory() {
#ifndef ES_REPLAY_ASAN
  uint64_t mb = 2048;
  if (const char* e = std::getenv("ES_FUZZ_REPLAY_MEMORY_MB")) mb = std::strtoull(e, nullptr, 10);
  if (mb == 0) return;
  rlimit r{};
  r.rlim_cur = r.rlim_max = mb << 20;
  if (setrlimit(RLIMIT_AS, &r) != 0) std::perror("setrlimit(RLIMIT_AS)");
#endif
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  limit_memory();
  // Targets that write files put them under $ES_FUZZ_TMPDIR (meson points it
  // into the build directory, so a crashing input leaves nothing in /dev/shm).
  if (const char* t = std::getenv("ES_FUZZ_TMPDIR"); t != nullptr && *t != '\0') {
    std::error_code ec;
    fs::create_directories(t, ec);
  }
  int status = 0;
  size_t total = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    std::error_code ec;
    std::vector<fs::path> files;
    if (fs::is_regular_file(arg, ec)) {
      files.push_back(arg);
    } else if (fs::is_directory(arg, ec)) {
      for (fs::recursive_directory_iterator it(arg, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file(ec)) files.push_back(it->path());
      if (ec) {
        std::fprintf(stderr, "%s: cannot list: %s\n", argv[i], ec.message().c_str());
        status = 1;
        continue;
      }
    } else {
      std::fprintf(stderr, "%s: no such directory or file\n", argv[i]);
      status = 1;
      continue;
    }
    if (files.empty()) {
      std::fprintf(stderr, "%s: holds no input\n", argv[i]);
      status = 1;
      continue;
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      std::ifstream in(f, std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "%s: cannot read\n", f.c_str());
        status = 1;
        continue;
      }
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
      std::printf("running %s (%zu bytes)\n", f.c_str(), bytes.size());
      std::fflush(stdout);
      // An exactly-sized heap copy, like libFuzzer's, so reads past the end
      // are caught under ASan.
      std::vector<uint8_t> data(bytes.begin(), bytes.end());
      LLVMFuzzerTestOneInput(data.data(), data.size());
    }
    std::printf("%s: ran %zu inputs\n", argv[i], files.size());
    total += files.size();
  }
  std::printf("ran %zu inputs in all\n", total);
  return status;
}
