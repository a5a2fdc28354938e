// File surgery for corruption and torn-write tests: read and write whole
// files, patch byte ranges, flip bits, truncate, and find byte patterns.
// Every helper aborts the test binary on an unexpected I/O failure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eventsource::testing {

bool file_exists(const std::string& path);
uint64_t file_size(const std::string& path);
// The whole file as bytes.
std::string read_file(const std::string& path);
// std::nullopt when the file does not exist.
std::optional<std::string> read_file_if_exists(const std::string& path);
// Replaces the file's content (creating it, mode 0600, if missing).
void write_file(const std::string& path, std::string_view bytes);
// Writes `bytes` at `offset` without changing anything else.
void write_at(const std::string& path, uint64_t offset, std::string_view bytes);
void truncate_file(const std::string& path, uint64_t size);
// Makes the file's content equal to `bytes` (creating it if missing) while
// writing only the 4 KiB blocks that differ: cheap for restoring a large
// image that a test run changed in a few places.
void restore_file(const std::string& path, std::string_view bytes);
void remove_file(const std::string& path);
// Flips bit `bit` (0..7) of the byte at `offset`.
void flip_bit(const std::string& path, uint64_t offset, int bit);

// Offsets of every occurrence of `needle` in `haystack`.
std::vector<uint64_t> find_all(std::string_view haystack, std::string_view needle);

// The smallest [begin, end) outside of which `a` and `b` are equal, or an
// empty range (begin == end) when they are identical. REQUIRES: same size.
struct ByteRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
};
ByteRange differing_range(std::string_view a, std::string_view b);

// Permission bits (st_mode & 07777) of `path`.
unsigned file_mode_bits(const std::string& path);

}  // namespace eventsource::testing
