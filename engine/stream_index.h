// The stream index: stream -> locators of its events by version. Each stream
// has a persisted part (a slice of a mapped index segment, loaded without
// copying so open is flat in the number of events) and an in-memory delta of
// what was appended since. See format-spec.md "Index segment".
// Thread safety: callers serialize (the store guards it with a shared_mutex).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/id_table.h"

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

    uint64_t version() const { return persisted_count + delta.size(); }
    // REQUIRES: v in [1, version()].
    uint64_t locator(uint64_t v) const;
  };

  // key = "<type>-<id>"
  Entry* find(std::string_view key);
  const Entry* find(std::string_view key) const;
  Entry& get_or_add(const std::string& key, uint8_t type_len);
  size_t stream_count() const { return map_.size(); }
  uint64_t event_count() const { return events_; }
  void note_added(uint64_t n) { events_ += n; }
  void clear();

  const std::unordered_map<std::string, Entry>& entries() const { return map_; }

  // Event id -> locator, for every indexed event.
  IdTable& ids() { return ids_; }
  const IdTable& ids() const { return ids_; }

  // Serializes the whole index (persisted + delta, streams and event ids) as
  // an index blob covering `covers_position`, with the log continuing at
  // `log_end_offset`. Fails (with why in *error) when a persisted part it
  // copies is damaged.
  std::string build_blob(uint64_t covers_position, uint64_t log_end_offset, uint64_t seed,
                         std::string* error) const;
  // The blob checksum [F-20] of the blob at [p, p+n) as its header lays it
  // out; 0 when the layout does not fit in n bytes.
  static uint64_t blob_checksum(const uint8_t* p, uint64_t n, uint64_t seed);

  struct BlobInfo {
    uint64_t covers_position = 0;
    uint64_t log_end_offset = 0;
    uint64_t stream_count = 0;
    uint64_t locator_count = 0;
  };
  // Replaces the index with the blob at [p, p+n). With `copy` the locators are
  // copied and verified now (the mapping may go away); without, entries point
  // into the blob and are verified lazily by verify_entry(). Returns "" or why
  // the blob is invalid by format-spec.md [F-20], locator_count =
  // covers_position included (then the index is left empty).
  std::string load_blob(const uint8_t* p, uint64_t n, uint64_t seed, bool copy, BlobInfo* info);

  // Checks a persisted slice's checksum once; "" or the reason.
  static std::string verify_entry(const Entry& e, uint64_t seed);

 private:
  std::unordered_map<std::string, Entry> map_;
  IdTable ids_;
  uint64_t events_ = 0;
};

}  // namespace eventsource
