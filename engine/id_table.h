// The store-wide event-id table: event id -> locator of its record, so that
// event_exists() and duplicate-id detection need no scan of the log. A
// persisted part (sorted, in the index blob, mapped; each block's checksum
// is verified on first use, so open stays flat in the number of events) and
// an in-memory hash of what was committed since. Entries hold fingerprints,
// not ids: a hit is a candidate that the caller confirms by reading the
// record. See format-spec.md "Event-id table".
// Thread safety: callers serialize writes; const calls may run concurrently
// (the store guards it with index_mu_, as the stream index).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource {

class IdTable {
 public:
  // XXH3-64 of the id's 16 bytes with the store seed, never 0.
  static uint64_t fingerprint(const Uuid& id, uint64_t seed);
  // The persisted key of a fingerprint: its high 32 bits.
  static uint32_t key(uint64_t fp) { return static_cast<uint32_t>(fp >> 32); }

  IdTable() = default;
  IdTable(IdTable&&) noexcept = default;
  IdTable& operator=(IdTable&&) noexcept = default;

  // Adds an in-memory entry (an event committed since the persisted part).
  void add(uint64_t fp, uint64_t locator);
  // Adds n entries at once (a batch): the table grows at most once, and the
  // slots are prefetched ahead of the inserts, which overlaps their cache
  // misses (the table outgrows the caches at about 10^5 entries).
  void add_batch(const uint64_t* fps, const uint64_t* locators, size_t n);
  // Entries in all.
  uint64_t size() const { return persisted_count_ + delta_count_; }
  void clear();

  // Calls fn(locator) for every entry whose fingerprint may be `fp`.
  // Fails saying why a persisted block is damaged (then fn saw only part).
  template <class Fn>
  Status find(uint64_t fp, Fn&& fn) const;

  // The id section of an index blob: its size for `count` entries, and
  // writing it (persisted part merged with the in-memory one) at `p`, which
  // must hold section_size(size()) zeroed bytes. Returns the checksum that
  // the blob's header checksum folds in, or fails saying why a persisted
  // block is damaged (the blob must then not be written).
  static uint64_t section_size(uint64_t count);
  Result<uint64_t> write_section(uint8_t* p, uint64_t seed) const;
  // (Re)computes the block checksums of the section of `count` entries at
  // `p` (section_size(count) bytes) and returns its header-folded checksum.
  static uint64_t sign_section(uint8_t* p, uint64_t count, uint64_t seed);

  // Takes the id section at [p, p+n) holding `count` entries as the
  // persisted part. With `copy` the blocks are copied and verified now;
  // without, they are used in place and verified lazily. Fails saying why
  // the section is invalid; *sum gets the checksum the header folds in.
  Status load_section(const uint8_t* p, uint64_t n, uint64_t count, uint64_t seed, bool copy,
                      uint64_t* sum);

  // Checks every persisted block (sorted, checksummed); fails with the first problem.
  Status verify_all() const;
  // Calls fn(key, locator) for every persisted entry in order (blocks verified).
  template <class Fn>
  Status for_each_persisted(Fn&& fn) const;

  // Entries per persisted block.
  static constexpr uint64_t kBlockEntries = 4096;

 private:
  struct Block {
    const uint8_t* keys;  // u32 each
    const uint8_t* locs;  // u64 each
    uint64_t count;
  };
  Block block(uint64_t b) const;
  Status verify_block(uint64_t b) const;
  uint64_t blocks() const { return (persisted_count_ + kBlockEntries - 1) / kBlockEntries; }
  void grow(size_t min_slots);
  static uint32_t get_key(const uint8_t* keys, uint64_t i) {
    uint32_t v;
    std::memcpy(&v, keys + i * 4, 4);
    return v;
  }
  static uint64_t get_loc(const uint8_t* locs, uint64_t i) {
    uint64_t v;
    std::memcpy(&v, locs + i * 8, 8);
    return v;
  }

  // Persisted part.
  const uint8_t* fences_ = nullptr;  // u32 first key of each block
  const uint8_t* sums_ = nullptr;    // u64 checksum of each block
  const uint8_t* data_ = nullptr;    // the blocks
  uint64_t persisted_count_ = 0;
  uint64_t seed_ = 0;
  std::unique_ptr<std::atomic<bool>[]> verified_;
  std::string copy_;  // the section, when loaded with copy

  // In-memory part: open addressing, linear probing, fp 0 = empty.
  std::vector<std::pair<uint64_t, uint64_t>> slots_;
  uint64_t delta_count_ = 0;
};

template <class Fn>
Status IdTable::find(uint64_t fp, Fn&& fn) const {
  if (!slots_.empty()) {
    const size_t mask = slots_.size() - 1;
    for (size_t i = fp & mask; slots_[i].first != 0; i = (i + 1) & mask)
      if (slots_[i].first == fp) fn(slots_[i].second);
  }
  if (persisted_count_ == 0) return Status();
  const uint32_t k = key(fp);
  // Blocks are sorted by their first key; entries of key k may start in the
  // block before the first block whose first key is >= k.
  uint64_t lo = 0, hi = blocks();
  while (lo < hi) {
    const uint64_t mid = (lo + hi) / 2;
    if (get_key(fences_, mid) < k)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (uint64_t b = lo > 0 ? lo - 1 : 0; b < blocks() && get_key(fences_, b) <= k; ++b) {
    EVENTSOURCE_RETURN_IF_ERROR(verify_block(b));
    const Block blk = block(b);
    uint64_t l = 0, h = blk.count;
    while (l < h) {
      const uint64_t mid = (l + h) / 2;
      if (get_key(blk.keys, mid) < k)
        l = mid + 1;
      else
        h = mid;
    }
    for (; l < blk.count && get_key(blk.keys, l) == k; ++l) fn(get_loc(blk.locs, l));
  }
  return Status();
}

template <class Fn>
Status IdTable::for_each_persisted(Fn&& fn) const {
  for (uint64_t b = 0; b < blocks(); ++b) {
    EVENTSOURCE_RETURN_IF_ERROR(verify_block(b));
    const Block blk = block(b);
    for (uint64_t i = 0; i < blk.count; ++i) fn(get_key(blk.keys, i), get_loc(blk.locs, i));
  }
  return Status();
}

}  // namespace eventsource
