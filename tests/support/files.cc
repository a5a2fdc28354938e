// File surgery helpers, plain POSIX calls. Unexpected failures print the
// file and errno and abort: a test that cannot set up its files is broken.
#include "tests/support/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace eventsource::testing {
namespace {

[[noreturn]] void die(const std::string& what, const std::string& path) {
  std::fprintf(stderr, "test support: %s %s: %s\n", what.c_str(), path.c_str(),
               std::strerror(errno));
  std::abort();
}

void pwrite_all(int fd, const std::string& path, std::string_view bytes, uint64_t offset) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("pwrite", path);
    done += static_cast<size_t>(n);
  }
}

}  // namespace

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) die("stat", path);
  return static_cast<uint64_t>(st.st_size);
}

std::string read_file(const std::string& path) {
  std::optional<std::string> bytes = read_file_if_exists(path);
  if (!bytes) die("open", path);
  return *bytes;
}

std::optional<std::string> read_file_if_exists(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    die("open", path);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) die("fstat", path);
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("pread", path);
    if (n == 0) break;  // shrank under us
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  ::close(fd);
  return bytes;
}

void write_file(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) die("open", path);
  if (::ftruncate(fd, static_cast<off_t>(bytes.size())) != 0) die("ftruncate", path);
  pwrite_all(fd, path, bytes, 0);
  ::close(fd);
}

void write_at(const std::string& path, uint64_t offset, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open", path);
  pwrite_all(fd, path, bytes, offset);
  ::close(fd);
}

void restore_file(const std::string& path, std::string_view bytes) {
  std::optional<std::string> current = read_file_if_exists(path);
  if (!current) return write_file(path, bytes);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open", path);
  if (current->size() != bytes.size()) {
    if (::ftruncate(fd, static_cast<off_t>(bytes.size())) != 0) die("ftruncate", path);
  }
  constexpr size_t kBlock = 4096;
  for (size_t at = 0; at < bytes.size(); at += kBlock) {
    const size_t n = std::min(kBlock, bytes.size() - at);
    std::string_view want = bytes.substr(at, n);
    if (at + n <= current->size() && std::string_view(*current).substr(at, n) == want) continue;
    pwrite_all(fd, path, want, at);
  }
  ::close(fd);
}

void truncate_file(const std::string& path, uint64_t size) {
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) die("truncate", path);
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) die("unlink", path);
}

void flip_bit(const std::string& path, uint64_t offset, int bit) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open", path);
  unsigned char byte = 0;
  if (::pread(fd, &byte, 1, static_cast<off_t>(offset)) != 1) die("pread", path);
  byte = static_cast<unsigned char>(byte ^ (1u << bit));
  pwrite_all(fd, path, std::string_view(reinterpret_cast<const char*>(&byte), 1), offset);
  ::close(fd);
}

std::vector<uint64_t> find_all(std::string_view haystack, std::string_view needle) {
  std::vector<uint64_t> hits;
  if (needle.empty()) return hits;
  for (size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    hits.push_back(at);
  }
  return hits;
}

ByteRange differing_range(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  size_t begin = 0;
  while (begin < n && a[begin] == b[begin]) ++begin;
  if (begin == n && a.size() == b.size()) return ByteRange{};
  size_t end = std::max(a.size(), b.size());
  while (end > begin && end <= n && a[end - 1] == b[end - 1]) --end;
  return ByteRange{begin, end};
}

unsigned file_mode_bits(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) die("stat", path);
  return static_cast<unsigned>(st.st_mode) & 07777u;
}

}  // namespace eventsource::testing
