// Payload generation for the benchmarks: order-event-like JSON objects of an
// exact size, deterministic from a seed.
#include "bench/payload.h"

#include <fmt/format.h>

namespace esbench {
namespace {

constexpr std::array<std::string_view, 48> kWords = {
    "amber",   "birch",   "cobalt",  "delta",  "ember",  "fjord",  "granite", "harbor",
    "indigo",  "juniper", "kestrel", "lumen",  "maple",  "nectar", "onyx",    "pepper",
    "quartz",  "river",   "saffron", "timber", "umber",  "velvet", "willow",  "xenon",
    "yarrow",  "zephyr",  "alpine",  "breeze", "cedar",  "dune",   "echo",    "falcon",
    "glacier", "hazel",   "iris",    "jade",   "kelp",   "lotus",  "meadow",  "north",
    "olive",   "pine",    "quill",   "raven",  "sierra", "tundra", "upland",  "vista"};

std::string_view word(Rng& rng) { return kWords[rng.below(kWords.size())]; }

}  // namespace

uint64_t mix_seed(uint64_t seed, uint64_t index) {
  Rng rng(seed ^ (index * 0xd1b54a32d192ed03ull));
  rng.next();
  return rng.next();
}

std::string make_payload(uint64_t seed, uint64_t index, size_t size) {
  Rng rng(mix_seed(seed, index));
  const uint64_t order_id = 1000000 + rng.below(9000000);
  std::string head = fmt::format(
      R"({{"order_id":{},"customer":"{} {}","sku":"SKU-{:05}","qty":{},"price":{}.{:02},"note":")",
      order_id, word(rng), word(rng), rng.below(100000), 1 + rng.below(9), 1 + rng.below(999),
      rng.below(100));
  constexpr std::string_view kTail = R"("})";
  if (head.size() + kTail.size() <= size) {
    const size_t note_size = size - head.size() - kTail.size();
    std::string out = std::move(head);
    out.reserve(size);
    const size_t note_end = out.size() + note_size;
    while (out.size() < note_end) {
      if (out.back() != '"') out.push_back(' ');
      out.append(word(rng));
    }
    out.resize(note_end);  // the last word may be cut; never ends inside an escape
    if (out.back() == ' ') out.back() = '.';
    out.append(kTail);
    return out;
  }
  // Too small for the full object: a shorter object, padded with spaces.
  std::string small = fmt::format(R"({{"order_id":{})", order_id);
  if (small.size() + 1 <= size) {
    small.append(size - small.size() - 1, ' ');
    small.push_back('}');
    return small;
  }
  std::string tiny(size, ' ');
  if (size >= 2) {
    tiny.front() = '{';
    tiny.back() = '}';
  }
  return tiny;
}

PayloadPool::PayloadPool(uint64_t seed, size_t payload_size, size_t count) {
  if (count == 0) count = 1;
  payloads_.reserve(count);
  sums_.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    payloads_.push_back(make_payload(seed, i, payload_size));
    sums_.push_back(byte_sum(payloads_.back()));
  }
}

}  // namespace esbench
