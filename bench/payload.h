// Deterministic test data for the benchmarks: a small seeded PRNG and
// JSON-like order-event payloads of an exact byte size, plus the fixed list of
// event types the workloads cycle through.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace esbench {

// The event types events cycle through: event i (0-based) has type
// kEventTypes[i % kEventTypes.size()].
inline constexpr std::array<std::string_view, 5> kEventTypes = {
    "OrderPlaced", "OrderPaid", "OrderShipped", "OrderDelivered", "OrderCancelled"};

// splitmix64: tiny, fast, and the same sequence on every platform (unlike the
// <random> distributions, whose output is implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform-enough integer in [0, bound); bound > 0.
  uint64_t below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
  }

 private:
  uint64_t state_;
};

// Mixes a seed and an index into an independent seed.
uint64_t mix_seed(uint64_t seed, uint64_t index);

// A JSON-like order event of exactly `size` bytes ("order_id", "customer",
// "sku", "qty", "price", "note"), the note filled with words from a fixed list.
// Sizes too small for the full object get a shorter object padded with spaces.
// Deterministic in (seed, index, size).
std::string make_payload(uint64_t seed, uint64_t index, size_t size);

// Sum of the byte values of `bytes` (what readers compute to touch payloads).
inline uint64_t byte_sum(std::string_view bytes) {
  uint64_t sum = 0;
  for (unsigned char c : bytes) sum += c;
  return sum;
}

// A pool of distinct payloads that the workloads cycle through, so that
// generating data costs nothing inside timed loops.
class PayloadPool {
 public:
  PayloadPool(uint64_t seed, size_t payload_size, size_t count);
  const std::string& at(uint64_t event_index) const {
    return payloads_[event_index % payloads_.size()];
  }
  uint64_t sum_at(uint64_t event_index) const { return sums_[event_index % sums_.size()]; }
  size_t size() const { return payloads_.size(); }

 private:
  std::vector<std::string> payloads_;
  std::vector<uint64_t> sums_;
};

}  // namespace esbench
