// The stream index: stream -> locators of its events by version. Streams of
// the persisted index are looked up in its sorted, mapped directory on first
// use (a binary search, each probed entry checked against its own
// checksum), so open is flat in the number of streams and events; a stream
// looked up or appended to since gets an in-memory entry: its persisted
// slice plus a delta of what was appended since. See format-spec.md "Index
// segment".
// Thread safety: callers serialize writes (find() on a non-const index,
// get_or_add, load, clear); const calls may run concurrently with each
// other (the store guards it with a shared_mutex).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/coding.h"
#include "engine/id_table.h"
#include "engine/mutex.h"

namespace eventsource {

class StreamIndex {
 public:
  struct Entry {
    uint8_t type_len = 0;                // key = type + '-' + id; type_len splits it
    const uint8_t* persisted = nullptr;  // `persisted_count` little-endian u64 locators
    uint64_t persisted_count = 0;
    uint64_t persisted_sum = 0;
    std::unique_ptr<std::atomic<bool>> verified = std::make_unique<std::atomic<bool>>(false);
    std::vector<uint64_t> delta;
    // Set when the persisted directory is damaged where the lookup went:
    // the stream's events cannot be found (verify_entry reports it).
    std::string damage;

    uint64_t version() const { return persisted_count + delta.size(); }
    // REQUIRES: v in [1, version()].
    uint64_t locator(uint64_t v) const;
  };

  StreamIndex();
  StreamIndex(StreamIndex&&) noexcept;
  StreamIndex& operator=(StreamIndex&&) noexcept;
  ~StreamIndex();

  // key = "<type>-<id>". nullptr when the stream has no event; an entry
  // whose `damage` is set when the persisted directory could not be
  // searched (check with verify_entry before use).
  Entry* find(std::string_view key);
  const Entry* find(std::string_view key) const;
  // The stream's entry, created (empty) if it has none. REQUIRES: a find()
  // of the key returned an undamaged entry or nullptr.
  Entry& get_or_add(const std::string& key, uint8_t type_len);
  uint64_t stream_count() const { return persisted_streams_ + map_.size(); }
  uint64_t event_count() const { return events_; }
  void note_added(uint64_t n) { events_ += n; }
  void clear();

  // Calls fn(key, entry) for every stream (in no particular order),
  // checking each persisted directory entry first. Fails with the first
  // damage found (then fn saw only part).
  template <class Fn>
  Status for_each(Fn&& fn) const;

  // Event id -> locator, for every indexed event.
  IdTable& ids() { return ids_; }
  const IdTable& ids() const { return ids_; }

  // Serializes the whole index (persisted + delta, streams and event ids) as
  // an index blob covering `covers_position`, with the log continuing at
  // `log_end_offset`. Fails when a persisted part it copies is damaged.
  Result<std::string> build_blob(uint64_t covers_position, uint64_t log_end_offset,
                                 uint64_t seed) const;
  // The blob checksum [F-20] of the blob at [p, p+n) as its header lays it
  // out; 0 when the layout does not fit in n bytes.
  static uint64_t blob_checksum(const uint8_t* p, uint64_t n, uint64_t seed);
  // The checksum of directory entry `d` (its first 32 bytes) and its name.
  static uint64_t entry_checksum(const uint8_t* d, const uint8_t* name, uint64_t name_len,
                                 uint64_t seed);

  struct BlobInfo {
    uint64_t covers_position = 0;
    uint64_t log_end_offset = 0;
    uint64_t stream_count = 0;
    uint64_t locator_count = 0;
  };
  // Replaces the index with the blob at [p, p+n). With `copy` the blob is
  // copied and every entry, locator and id block is checked now (the
  // mapping may go away); without, the index points into the blob and
  // checks each part on first use. Fails saying why the blob is invalid by
  // format-spec.md [F-20] (then the index is left empty).
  Status load_blob(const uint8_t* p, uint64_t n, uint64_t seed, bool copy, BlobInfo* info);

  // Checks an entry: its directory damage, and its persisted slice's
  // checksum (once).
  static Status verify_entry(const Entry& e, uint64_t seed);

 private:
  struct Dir;  // the persisted directory
  struct Probe {
    uint64_t first = 0, count = 0, sum = 0;
    uint8_t type_len = 0;
    std::string_view type, id;
  };
  // Checks directory entry i; fails saying why it is damaged.
  Status probe(uint64_t i, Probe* out) const;
  // Checks every persisted entry in order, and that they tile the locators
  // in strict name order [F-20]; calls fn(key, probe) -> Status for each.
  template <class Fn>
  Status walk(Fn&& fn) const;
  // Binary search of the persisted directory: *found is its index or ~0.
  Status search(std::string_view key, uint64_t* found) const;
  const Entry* lookup(std::string_view key) const;
  Entry from_probe(const Probe& p) const;

  std::unordered_map<std::string, Entry> map_;  // streams created since the blob
  std::unique_ptr<Dir> dir_;
  uint64_t persisted_streams_ = 0;
  IdTable ids_;
  uint64_t events_ = 0;
};

struct StreamIndex::Dir {
  const uint8_t* entries = nullptr;
  const uint8_t* names = nullptr;
  uint64_t names_len = 0;
  const uint8_t* locators = nullptr;
  uint64_t locator_count = 0;
  uint64_t seed = 0;
  std::string copy;  // the blob, when loaded with copy
  // Persisted streams looked up since load: stable nodes, so entries handed
  // out stay valid; readers add to it under `mu`.
  mutable Mutex mu;
  mutable std::unordered_map<std::string, Entry> looked_up EVENTSOURCE_GUARDED_BY(mu);
  mutable Entry damaged EVENTSOURCE_GUARDED_BY(mu);
};

template <class Fn>
Status StreamIndex::walk(Fn&& fn) const {
  uint64_t expect_loc = 0;
  std::string prev, key;
  for (uint64_t i = 0; i < persisted_streams_; ++i) {
    Probe p;
    EVENTSOURCE_RETURN_IF_ERROR(probe(i, &p));
    if (p.first != expect_loc)
      return bad_bytes("index entry " + std::to_string(i) + " is inconsistent");
    key.assign(p.type);
    key += '-';
    key.append(p.id);
    if (i > 0 && key == prev) return bad_bytes("index lists stream " + key + " twice");
    if (i > 0 && key < prev)
      return bad_bytes("index directory is not in name order at entry " + std::to_string(i));
    EVENTSOURCE_RETURN_IF_ERROR(fn(key, p));
    expect_loc += p.count;
    prev.swap(key);
  }
  if (dir_ != nullptr && expect_loc != dir_->locator_count)
    return bad_bytes("index entries do not account for every locator");
  return Status();
}

template <class Fn>
Status StreamIndex::for_each(Fn&& fn) const {
  Status damage = walk([&](const std::string& key, const Probe& p) -> Status {
    const Entry* e = nullptr;
    {
      MutexLock lock(&dir_->mu);
      auto it = dir_->looked_up.find(key);
      if (it != dir_->looked_up.end()) e = &it->second;
    }
    if (e != nullptr) {
      fn(key, *e);
    } else {
      const Entry temp = from_probe(p);
      fn(key, temp);
    }
    return Status();
  });
  EVENTSOURCE_RETURN_IF_ERROR(damage);
  for (const auto& [k, e] : map_) fn(k, e);
  return Status();
}

}  // namespace eventsource
