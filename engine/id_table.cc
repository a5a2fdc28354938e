// The event-id table: the in-memory hash and the persisted, block-checksummed
// id section of the index blob (format-spec.md "Event-id table").
#include "engine/id_table.h"

#include <fmt/format.h>

#include <algorithm>

#include "engine/coding.h"

namespace eventsource {
namespace {

constexpr uint64_t kEntries = IdTable::kBlockEntries;

// Bytes of a block of m entries: m u32 keys (padded to 8), then m u64 locators.
uint64_t block_bytes(uint64_t m) { return align_up(4 * m, 8) + 8 * m; }
uint64_t block_count(uint64_t n) { return (n + kEntries - 1) / kEntries; }
// Bytes before the blocks: the fences (u32 each, padded to 8) and the sums.
uint64_t head_bytes(uint64_t n) { return align_up(4 * block_count(n), 8) + 8 * block_count(n); }

}  // namespace

uint64_t IdTable::fingerprint(const Uuid& id, uint64_t seed) {
  const uint64_t fp = checksum64(id.bytes.data(), id.bytes.size(), seed);
  return fp == 0 ? 1 : fp;
}

void IdTable::add(uint64_t fp, uint64_t locator) { add_batch(&fp, &locator, 1); }

void IdTable::add_batch(const uint64_t* fps, const uint64_t* locators, size_t n) {
  if ((delta_count_ + n) * 2 > slots_.size()) grow((delta_count_ + n) * 2);
  const size_t mask = slots_.size() - 1;
  constexpr size_t kAhead = 8;
  for (size_t k = 0; k < std::min(n, kAhead); ++k) __builtin_prefetch(&slots_[fps[k] & mask], 1);
  for (size_t k = 0; k < n; ++k) {
    if (k + kAhead < n) __builtin_prefetch(&slots_[fps[k + kAhead] & mask], 1);
    size_t i = fps[k] & mask;
    while (slots_[i].first != 0) i = (i + 1) & mask;
    slots_[i] = {fps[k], locators[k]};
  }
  delta_count_ += n;
}

void IdTable::grow(size_t min_slots) {
  std::vector<std::pair<uint64_t, uint64_t>> old;
  old.swap(slots_);
  size_t size = std::max<size_t>(64, old.size() * 2);
  while (size < min_slots) size *= 2;
  slots_.assign(size, {0, 0});
  const size_t mask = slots_.size() - 1;
  for (const auto& s : old) {
    if (s.first == 0) continue;
    size_t i = s.first & mask;
    while (slots_[i].first != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void IdTable::clear() { *this = IdTable(); }

IdTable::Block IdTable::block(uint64_t b) const {
  const uint64_t m = std::min(kBlockEntries, persisted_count_ - b * kBlockEntries);
  const uint8_t* base = data_ + b * block_bytes(kBlockEntries);
  return Block{base, base + align_up(4 * m, 8), m};
}

Status IdTable::verify_block(uint64_t b) const {
  if (verified_[b].load(std::memory_order_acquire)) return Status();
  const Block blk = block(b);
  if (checksum64(blk.keys, block_bytes(blk.count), seed_) != get_loc(sums_, b))
    return bad_bytes(fmt::format("event-id block {} fails its checksum", b));
  if (get_key(blk.keys, 0) != get_key(fences_, b))
    return bad_bytes(fmt::format("event-id block {} starts at another key than its fence", b));
  for (uint64_t i = 1; i < blk.count; ++i)
    if (get_key(blk.keys, i) < get_key(blk.keys, i - 1))
      return bad_bytes(fmt::format("event-id block {} is not sorted at entry {}", b, i));
  if (b + 1 < blocks() && get_key(blk.keys, blk.count - 1) > get_key(fences_, b + 1))
    return bad_bytes(fmt::format("event-id block {} ends past the next block's first key", b));
  verified_[b].store(true, std::memory_order_release);
  return Status();
}

Status IdTable::verify_all() const {
  for (uint64_t b = 0; b < blocks(); ++b)
    if (Status why = verify_block(b); !why.ok()) return why;
  return Status();
}

uint64_t IdTable::section_size(uint64_t count) {
  const uint64_t full = count / kEntries, rest = count % kEntries;
  return head_bytes(count) + full * block_bytes(kEntries) + (rest ? block_bytes(rest) : 0);
}

Result<uint64_t> IdTable::write_section(uint8_t* p, uint64_t seed) const {
  // The in-memory entries in key order, merged with the persisted ones.
  std::vector<std::pair<uint32_t, uint64_t>> fresh;
  fresh.reserve(delta_count_);
  for (const auto& s : slots_)
    if (s.first != 0) fresh.emplace_back(key(s.first), s.second);
  std::sort(fresh.begin(), fresh.end());
  const uint64_t n = size();
  uint8_t* fences = p;
  uint8_t* data = p + head_bytes(n);
  uint64_t j = 0;  // entries written
  auto put = [&](uint32_t k, uint64_t loc) {
    const uint64_t b = j / kEntries, i = j % kEntries;
    const uint64_t m = std::min(kEntries, n - b * kEntries);
    uint8_t* base = data + b * block_bytes(kEntries);
    put_u32(base + i * 4, k);
    put_u64(base + align_up(4 * m, 8) + i * 8, loc);
    if (i == 0) put_u32(fences + b * 4, k);
    ++j;
  };
  size_t f = 0;
  for (uint64_t b = 0; b < blocks(); ++b) {
    EVENTSOURCE_RETURN_IF_ERROR(verify_block(b));
    const Block blk = block(b);
    for (uint64_t i = 0; i < blk.count; ++i) {
      const uint32_t k = get_key(blk.keys, i);
      for (; f < fresh.size() && fresh[f].first < k; ++f) put(fresh[f].first, fresh[f].second);
      put(k, get_loc(blk.locs, i));
    }
  }
  for (; f < fresh.size(); ++f) put(fresh[f].first, fresh[f].second);
  return sign_section(p, n, seed);
}

uint64_t IdTable::sign_section(uint8_t* p, uint64_t count, uint64_t seed) {
  const uint64_t nb = block_count(count);
  uint8_t* sums = p + align_up(4 * nb, 8);
  const uint8_t* data = p + head_bytes(count);
  for (uint64_t b = 0; b < nb; ++b) {
    const uint64_t m = std::min(kEntries, count - b * kEntries);
    put_u64(sums + b * 8, checksum64(data + b * block_bytes(kEntries), block_bytes(m), seed));
  }
  return checksum64(p, head_bytes(count), seed);
}

Status IdTable::load_section(const uint8_t* p, uint64_t n, uint64_t count, uint64_t seed, bool copy,
                             uint64_t* sum) {
  clear();
  if (count > n / 12 || section_size(count) != n)
    return bad_bytes(fmt::format("event-id section of {} bytes cannot hold {} entries", n, count));
  if (copy) {
    copy_.assign(reinterpret_cast<const char*>(p), n);
    p = reinterpret_cast<const uint8_t*>(copy_.data());
  }
  const uint64_t nb = block_count(count);
  fences_ = p;
  sums_ = p + align_up(4 * nb, 8);
  data_ = p + head_bytes(count);
  persisted_count_ = count;
  seed_ = seed;
  verified_ = std::make_unique<std::atomic<bool>[]>(nb);
  *sum = checksum64(p, head_bytes(count), seed);
  for (uint64_t b = 1; b < nb; ++b)
    if (get_key(fences_, b) < get_key(fences_, b - 1)) {
      clear();
      return bad_bytes(fmt::format("event-id fences are not sorted at block {}", b));
    }
  if (copy) {
    if (Status why = verify_all(); !why.ok()) {
      clear();
      return why;
    }
  }
  return Status();
}

}  // namespace eventsource
