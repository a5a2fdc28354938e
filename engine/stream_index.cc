// Stream index lookup and its on-disk blob form.
#include "engine/stream_index.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "engine/coding.h"
#include "engine/format.h"

namespace eventsource {

namespace ih = format::index_header;
namespace ie = format::index_entry;

uint64_t StreamIndex::Entry::locator(uint64_t v) const {
  if (v <= persisted_count) return get_u64(persisted + (v - 1) * 8);
  return delta[v - 1 - persisted_count];
}

StreamIndex::Entry* StreamIndex::find(std::string_view key) {
  auto it = map_.find(std::string(key));
  return it == map_.end() ? nullptr : &it->second;
}

const StreamIndex::Entry* StreamIndex::find(std::string_view key) const {
  auto it = map_.find(std::string(key));
  return it == map_.end() ? nullptr : &it->second;
}

StreamIndex::Entry& StreamIndex::get_or_add(const std::string& key, uint8_t type_len) {
  auto [it, inserted] = map_.try_emplace(key);
  if (inserted) it->second.type_len = type_len;
  return it->second;
}

void StreamIndex::clear() {
  map_.clear();
  ids_.clear();
  events_ = 0;
}

namespace {

// Where the parts of a blob lie, from its header: "" or why they do not
// fit in n bytes (checked before any multiplication can overflow).
struct BlobLayout {
  uint64_t streams, locators, names_len, names_off, loc_off, ids_off;
};
std::string blob_layout(const uint8_t* p, uint64_t n, BlobLayout* l) {
  if (n < ih::kSize) return "index blob shorter than its header";
  l->streams = get_u64(p + ih::kStreamCount);
  l->locators = get_u64(p + ih::kLocatorCount);
  l->names_len = get_u64(p + ih::kNamesLen);
  l->loc_off = get_u64(p + ih::kLocatorsOffset);
  l->ids_off = get_u64(p + ih::kIdsOffset);
  if (l->streams > n / ie::kSize || l->names_len > n || l->locators > n / 8)
    return "index blob counts exceed its size";
  l->names_off = ih::kSize + l->streams * ie::kSize;
  if (l->loc_off != align_up(l->names_off + l->names_len, 8) || l->loc_off + l->locators * 8 > n)
    return "index blob layout does not match its size";
  if (l->ids_off != l->loc_off + l->locators * 8 ||
      IdTable::section_size(l->locators) != n - l->ids_off)
    return "index blob layout does not match its size (the event-id section must fill the rest)";
  return "";
}

// [F-20]: header, directory and names, and the event-id fences and sums
// (`ids_sum`, the id section's own checksum of them).
uint64_t fold_checksum(const uint8_t* p, const BlobLayout& l, uint64_t ids_sum, uint64_t seed) {
  return checksum64(p, ih::kChecksum, seed) ^
         checksum64(p + ih::kSize, l.loc_off - ih::kSize, seed) ^ ids_sum;
}

}  // namespace

uint64_t StreamIndex::blob_checksum(const uint8_t* p, uint64_t n, uint64_t seed) {
  BlobLayout l;
  if (!blob_layout(p, n, &l).empty()) return 0;
  IdTable ids;
  uint64_t ids_sum = 0;
  // (The section's checksum is computed before it is judged.)
  const std::string ignored =
      ids.load_section(p + l.ids_off, n - l.ids_off, l.locators, seed, false, &ids_sum);
  return fold_checksum(p, l, ids_sum, seed);
}

std::string StreamIndex::build_blob(uint64_t covers_position, uint64_t log_end_offset,
                                    uint64_t seed, std::string* error) const {
  std::vector<const std::pair<const std::string, Entry>*> sorted;
  sorted.reserve(map_.size());
  uint64_t names_len = 0, locators = 0;
  for (const auto& kv : map_) {
    sorted.push_back(&kv);
    names_len += kv.first.size() - 1;  // without the '-'
    locators += kv.second.version();
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  const uint64_t dir_off = ih::kSize;
  const uint64_t names_off = dir_off + sorted.size() * ie::kSize;
  const uint64_t loc_off = align_up(names_off + names_len, 8);
  const uint64_t ids_off = loc_off + locators * 8;
  std::string blob(ids_off + IdTable::section_size(ids_.size()), '\0');
  uint8_t* p = reinterpret_cast<uint8_t*>(blob.data());
  uint64_t name_pos = 0, loc_pos = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const std::string& key = sorted[i]->first;
    const Entry& e = sorted[i]->second;
    uint8_t* d = p + dir_off + i * ie::kSize;
    uint8_t* locs = p + loc_off + loc_pos * 8;
    uint64_t n = e.version();
    if (e.persisted_count > 0) std::memcpy(locs, e.persisted, e.persisted_count * 8);
    if (!e.delta.empty())
      std::memcpy(locs + e.persisted_count * 8, e.delta.data(), e.delta.size() * 8);
    put_u64(d + ie::kLocatorsIndex, loc_pos);
    put_u64(d + ie::kCount, n);
    put_u32(d + ie::kNameOffset, static_cast<uint32_t>(name_pos));
    d[ie::kTypeLen] = e.type_len;
    put_u16(d + ie::kIdLen, static_cast<uint16_t>(key.size() - e.type_len - 1));
    put_u64(d + ie::kLocatorsChecksum, checksum64(locs, n * 8, seed));
    std::memcpy(p + names_off + name_pos, key.data(), e.type_len);
    std::memcpy(p + names_off + name_pos + e.type_len, key.data() + e.type_len + 1,
                key.size() - e.type_len - 1);
    name_pos += key.size() - 1;
    loc_pos += n;
  }
  std::memcpy(p + ih::kMagic, format::kIndexMagic, 8);
  put_u64(p + ih::kCoversPosition, covers_position);
  put_u64(p + ih::kLogEndOffset, log_end_offset);
  put_u64(p + ih::kStreamCount, sorted.size());
  put_u64(p + ih::kLocatorCount, locators);
  put_u64(p + ih::kNamesLen, names_len);
  put_u64(p + ih::kLocatorsOffset, loc_off);
  put_u64(p + ih::kIdsOffset, ids_off);
  const uint64_t ids_sum = ids_.write_section(p + ids_off, seed, error);
  if (!error->empty()) return {};
  BlobLayout l;
  if (!blob_layout(p, blob.size(), &l).empty()) {  // (every event has one id and one locator)
    *error = fmt::format("the index holds {} event ids for {} locators", ids_.size(), locators);
    return {};
  }
  put_u64(p + ih::kChecksum, fold_checksum(p, l, ids_sum, seed));
  return blob;
}

std::string StreamIndex::load_blob(const uint8_t* p, uint64_t n, uint64_t seed, bool copy,
                                   BlobInfo* info) {
  clear();
  if (n < ih::kSize) return "index blob shorter than its header";
  if (std::memcmp(p + ih::kMagic, format::kIndexMagic, 8) != 0) return "index blob has a bad magic";
  BlobLayout l;
  if (std::string why = blob_layout(p, n, &l); !why.empty()) return why;
  const uint64_t streams = l.streams, locators = l.locators, names_len = l.names_len;
  const uint64_t dir_off = ih::kSize, names_off = l.names_off, loc_off = l.loc_off;
  uint64_t ids_sum = 0;
  std::string ids_why =
      ids_.load_section(p + l.ids_off, n - l.ids_off, locators, seed, copy, &ids_sum);
  if (fold_checksum(p, l, ids_sum, seed) != get_u64(p + ih::kChecksum)) {
    clear();
    return "index blob checksum mismatch";
  }
  if (!ids_why.empty()) {
    clear();
    return ids_why;
  }
  info->covers_position = get_u64(p + ih::kCoversPosition);
  info->log_end_offset = get_u64(p + ih::kLogEndOffset);
  info->stream_count = streams;
  info->locator_count = locators;
  // The index covers positions 1..covers_position, one locator each: fewer
  // would hide events (and let appends reuse their versions), more would
  // name events that are not there.
  if (locators != info->covers_position) {
    clear();
    return fmt::format("index blob holds {} locators but covers positions 1..{}", locators,
                       info->covers_position);
  }
  map_.reserve(streams);
  uint64_t expect_loc = 0;
  std::string key;
  for (uint64_t i = 0; i < streams; ++i) {
    const uint8_t* d = p + dir_off + i * ie::kSize;
    uint64_t first = get_u64(d + ie::kLocatorsIndex);
    uint64_t count = get_u64(d + ie::kCount);
    uint64_t name_at = get_u32(d + ie::kNameOffset);
    uint8_t type_len = d[ie::kTypeLen];
    uint16_t id_len = get_u16(d + ie::kIdLen);
    if (first != expect_loc || count > locators - first || count == 0 || type_len == 0 ||
        id_len == 0 || name_at + type_len + id_len > names_len || d[ie::kReserved] != 0) {
      clear();
      return fmt::format("index entry {} is inconsistent", i);
    }
    expect_loc += count;
    const char* name = reinterpret_cast<const char*>(p + names_off + name_at);
    key.assign(name, type_len);
    key += '-';
    key.append(name + type_len, id_len);
    if (std::memchr(name, '-', type_len) != nullptr) {
      clear();
      return fmt::format("index entry {} has a stream type containing '-'", i);
    }
    auto [it, inserted] = map_.try_emplace(key);
    if (!inserted) {
      clear();
      return fmt::format("index lists stream {} twice", key);
    }
    Entry& e = it->second;
    e.type_len = type_len;
    const uint8_t* locs = p + loc_off + first * 8;
    e.persisted_sum = get_u64(d + ie::kLocatorsChecksum);
    if (copy) {
      if (checksum64(locs, count * 8, seed) != e.persisted_sum) {
        clear();
        return fmt::format("index locators of stream {} fail their checksum", key);
      }
      e.delta.resize(count);
      std::memcpy(e.delta.data(), locs, count * 8);
      e.verified->store(true);
    } else {
      e.persisted = locs;
      e.persisted_count = count;
    }
  }
  if (expect_loc != locators) {
    clear();
    return "index entries do not account for every locator";
  }
  events_ = locators;
  return "";
}

std::string StreamIndex::verify_entry(const Entry& e, uint64_t seed) {
  if (e.persisted_count == 0 || e.verified->load(std::memory_order_acquire)) return "";
  if (checksum64(e.persisted, e.persisted_count * 8, seed) != e.persisted_sum)
    return "persisted index locators fail their checksum";
  e.verified->store(true, std::memory_order_release);
  return "";
}

}  // namespace eventsource
