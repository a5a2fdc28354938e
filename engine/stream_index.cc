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

StreamIndex::StreamIndex() = default;
StreamIndex::StreamIndex(StreamIndex&&) noexcept = default;
StreamIndex& StreamIndex::operator=(StreamIndex&&) noexcept = default;
StreamIndex::~StreamIndex() = default;

uint64_t StreamIndex::entry_checksum(const uint8_t* d, const uint8_t* name, uint64_t name_len,
                                     uint64_t seed) {
  return checksum64(d, ie::kEntryChecksum, seed) ^ checksum64(name, name_len, seed);
}

Status StreamIndex::probe(uint64_t i, Probe* out) const {
  const Dir& dir = *dir_;
  const uint8_t* d = dir.entries + i * ie::kSize;
  const uint64_t first = get_u64(d + ie::kLocatorsIndex);
  const uint64_t count = get_u64(d + ie::kCount);
  const uint64_t name_at = get_u32(d + ie::kNameOffset);
  const uint8_t type_len = d[ie::kTypeLen];
  const uint16_t id_len = get_u16(d + ie::kIdLen);
  // The name's bounds first, then the checksum, then what the fields say.
  if (name_at > dir.names_len || uint64_t{type_len} + id_len > dir.names_len - name_at)
    return bad_bytes(fmt::format("index entry {} is inconsistent", i));
  const uint8_t* name = dir.names + name_at;
  if (entry_checksum(d, name, type_len + id_len, dir.seed) != get_u64(d + ie::kEntryChecksum))
    return bad_bytes(fmt::format("index entry {} fails its checksum", i));
  if (first > dir.locator_count || count > dir.locator_count - first || count == 0 ||
      type_len == 0 || id_len == 0 || d[ie::kReserved] != 0)
    return bad_bytes(fmt::format("index entry {} is inconsistent", i));
  if (std::memchr(name, '-', type_len) != nullptr)
    return bad_bytes(fmt::format("index entry {} has a stream type containing '-'", i));
  out->first = first;
  out->count = count;
  out->sum = get_u64(d + ie::kLocatorsChecksum);
  out->type_len = type_len;
  out->type = std::string_view(reinterpret_cast<const char*>(name), type_len);
  out->id = std::string_view(reinterpret_cast<const char*>(name) + type_len, id_len);
  return Status();
}

namespace {

// memcmp order of `key` against the name type + '-' + id [F-19] (unsigned
// bytes, a prefix first), without building the name.
int compare_name(std::string_view key, std::string_view type, std::string_view id) {
  size_t pos = 0;
  for (std::string_view part : {type, std::string_view("-"), id}) {
    const size_t n = std::min(part.size(), key.size() - pos);
    if (int c = std::memcmp(key.data() + pos, part.data(), n); c != 0) return c;
    if (n < part.size()) return -1;  // the key ended first
    pos += n;
  }
  return pos < key.size() ? 1 : 0;
}

}  // namespace

Status StreamIndex::search(std::string_view key, uint64_t* found) const {
  *found = ~uint64_t{0};
  uint64_t lo = 0, hi = persisted_streams_;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    Probe p;
    if (Status why = probe(mid, &p); !why.ok()) return why;
    const int c = compare_name(key, p.type, p.id);
    if (c == 0) {
      *found = mid;
      return Status();
    }
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return Status();
}

StreamIndex::Entry StreamIndex::from_probe(const Probe& p) const {
  Entry e;
  e.type_len = p.type_len;
  e.persisted = dir_->locators + p.first * 8;
  e.persisted_count = p.count;
  e.persisted_sum = p.sum;
  if (!dir_->copy.empty()) e.verified->store(true);  // checked at load
  return e;
}

const StreamIndex::Entry* StreamIndex::lookup(std::string_view key) const {
  if (auto it = map_.find(std::string(key)); it != map_.end()) return &it->second;
  if (dir_ == nullptr) return nullptr;
  MutexLock lock(&dir_->mu);
  if (auto it = dir_->looked_up.find(std::string(key)); it != dir_->looked_up.end())
    return &it->second;
  uint64_t i;
  Probe p;
  Status why = search(key, &i);
  if (why.ok() && i != ~uint64_t{0}) why = probe(i, &p);
  if (!why.ok()) {
    // Set once: entries handed out before never see it change.
    if (dir_->damaged.damage.empty()) dir_->damaged.damage = why.message();
    return &dir_->damaged;
  }
  if (i == ~uint64_t{0}) return nullptr;
  return &dir_->looked_up.emplace(std::string(key), from_probe(p)).first->second;
}

const StreamIndex::Entry* StreamIndex::find(std::string_view key) const { return lookup(key); }

StreamIndex::Entry* StreamIndex::find(std::string_view key) {
  return const_cast<Entry*>(lookup(key));
}

StreamIndex::Entry& StreamIndex::get_or_add(const std::string& key, uint8_t type_len) {
  Entry* e = find(key);
  if (e != nullptr && e->damage.empty()) return *e;
  auto [it, inserted] = map_.try_emplace(key);
  if (inserted) it->second.type_len = type_len;
  return it->second;
}

void StreamIndex::clear() {
  map_.clear();
  dir_.reset();
  persisted_streams_ = 0;
  ids_.clear();
  events_ = 0;
}

namespace {

// Where the parts of a blob lie, from its header, or why they do not fit in
// n bytes (checked before any multiplication can overflow).
struct BlobLayout {
  uint64_t streams, locators, names_len, names_off, loc_off, ids_off;
};
Status blob_layout(const uint8_t* p, uint64_t n, BlobLayout* l) {
  if (n < ih::kSize) return bad_bytes("index blob shorter than its header");
  l->streams = get_u64(p + ih::kStreamCount);
  l->locators = get_u64(p + ih::kLocatorCount);
  l->names_len = get_u64(p + ih::kNamesLen);
  l->loc_off = get_u64(p + ih::kLocatorsOffset);
  l->ids_off = get_u64(p + ih::kIdsOffset);
  if (l->streams > n / ie::kSize || l->names_len > n || l->locators > n / 8)
    return bad_bytes("index blob counts exceed its size");
  l->names_off = ih::kSize + l->streams * ie::kSize;
  if (l->loc_off != align_up(l->names_off + l->names_len, 8) || l->loc_off + l->locators * 8 > n)
    return bad_bytes("index blob layout does not match its size");
  if (l->ids_off != l->loc_off + l->locators * 8 ||
      IdTable::section_size(l->locators) != n - l->ids_off)
    return bad_bytes(
        "index blob layout does not match its size (the event-id section must fill the rest)");
  return Status();
}

// [F-20]: the header and the event-id fences and sums (`ids_sum`, the id
// section's own checksum of them). Directory entries carry their own.
uint64_t fold_checksum(const uint8_t* p, uint64_t ids_sum, uint64_t seed) {
  return checksum64(p, ih::kChecksum, seed) ^ ids_sum;
}

}  // namespace

uint64_t StreamIndex::blob_checksum(const uint8_t* p, uint64_t n, uint64_t seed) {
  BlobLayout l;
  if (!blob_layout(p, n, &l).ok()) return 0;
  IdTable ids;
  uint64_t ids_sum = 0;
  // (The section's checksum is computed before it is judged.)
  ids.load_section(p + l.ids_off, n - l.ids_off, l.locators, seed, false, &ids_sum).ignore_error();
  return fold_checksum(p, ids_sum, seed);
}

Result<std::string> StreamIndex::build_blob(uint64_t covers_position, uint64_t log_end_offset,
                                            uint64_t seed) const {
  struct Stream {
    std::string key;
    uint8_t type_len;
    const uint8_t* persisted;
    uint64_t persisted_count;
    const std::vector<uint64_t>* delta;  // (null: none)
  };
  std::vector<Stream> sorted;
  sorted.reserve(stream_count());
  uint64_t names_len = 0, locators = 0;
  Status damage;
  Status walked = for_each([&](const std::string& key, const Entry& e) {
    // A persisted slice is copied only once its checksum holds: a damaged
    // one must not be signed again as good.
    if (Status why = verify_entry(e, seed); !why.ok() && damage.ok())
      damage = bad_bytes(fmt::format("stream {}: {}", key, why.message()));
    sorted.push_back(
        {key, e.type_len, e.persisted, e.persisted_count, e.delta.empty() ? nullptr : &e.delta});
    names_len += key.size() - 1;  // without the '-'
    locators += e.version();
  });
  EVENTSOURCE_RETURN_IF_ERROR(walked);
  EVENTSOURCE_RETURN_IF_ERROR(damage);
  std::sort(sorted.begin(), sorted.end(),
            [](const Stream& a, const Stream& b) { return a.key < b.key; });
  const uint64_t dir_off = ih::kSize;
  const uint64_t names_off = dir_off + sorted.size() * ie::kSize;
  const uint64_t loc_off = align_up(names_off + names_len, 8);
  const uint64_t ids_off = loc_off + locators * 8;
  std::string blob(ids_off + IdTable::section_size(ids_.size()), '\0');
  uint8_t* p = reinterpret_cast<uint8_t*>(blob.data());
  uint64_t name_pos = 0, loc_pos = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const Stream& st = sorted[i];
    uint8_t* d = p + dir_off + i * ie::kSize;
    uint8_t* locs = p + loc_off + loc_pos * 8;
    const uint64_t delta = st.delta ? st.delta->size() : 0;
    const uint64_t n = st.persisted_count + delta;
    if (st.persisted_count > 0) std::memcpy(locs, st.persisted, st.persisted_count * 8);
    if (delta > 0) std::memcpy(locs + st.persisted_count * 8, st.delta->data(), delta * 8);
    const uint64_t id_len = st.key.size() - st.type_len - 1;
    uint8_t* name = p + names_off + name_pos;
    std::memcpy(name, st.key.data(), st.type_len);
    std::memcpy(name + st.type_len, st.key.data() + st.type_len + 1, id_len);
    put_u64(d + ie::kLocatorsIndex, loc_pos);
    put_u64(d + ie::kCount, n);
    put_u32(d + ie::kNameOffset, static_cast<uint32_t>(name_pos));
    d[ie::kTypeLen] = st.type_len;
    put_u16(d + ie::kIdLen, static_cast<uint16_t>(id_len));
    put_u64(d + ie::kLocatorsChecksum, checksum64(locs, n * 8, seed));
    put_u64(d + ie::kEntryChecksum, entry_checksum(d, name, st.key.size() - 1, seed));
    name_pos += st.key.size() - 1;
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
  EVENTSOURCE_ASSIGN_OR_RETURN(const uint64_t ids_sum, ids_.write_section(p + ids_off, seed));
  BlobLayout l;
  if (!blob_layout(p, blob.size(), &l).ok())  // (every event has one id and one locator)
    return bad_bytes(
        fmt::format("the index holds {} event ids for {} locators", ids_.size(), locators));
  put_u64(p + ih::kChecksum, fold_checksum(p, ids_sum, seed));
  return blob;
}

Status StreamIndex::load_blob(const uint8_t* p, uint64_t n, uint64_t seed, bool copy,
                              BlobInfo* info) {
  clear();
  if (n < ih::kSize) return bad_bytes("index blob shorter than its header");
  if (std::memcmp(p + ih::kMagic, format::kIndexMagic, 8) != 0)
    return bad_bytes("index blob has a bad magic");
  BlobLayout l;
  if (Status why = blob_layout(p, n, &l); !why.ok()) return why;
  auto dir = std::make_unique<Dir>();
  if (copy) {
    dir->copy.assign(reinterpret_cast<const char*>(p), n);
    p = reinterpret_cast<const uint8_t*>(dir->copy.data());
  }
  if (!all_zero(p + l.names_off + l.names_len, l.loc_off - l.names_off - l.names_len))
    return bad_bytes("index blob has non-zero padding before its locators");
  uint64_t ids_sum = 0;
  Status ids_why =
      ids_.load_section(p + l.ids_off, n - l.ids_off, l.locators, seed, copy, &ids_sum);
  if (fold_checksum(p, ids_sum, seed) != get_u64(p + ih::kChecksum)) {
    clear();
    return bad_bytes("index blob checksum mismatch");
  }
  if (!ids_why.ok()) {
    clear();
    return ids_why;
  }
  info->covers_position = get_u64(p + ih::kCoversPosition);
  info->log_end_offset = get_u64(p + ih::kLogEndOffset);
  info->stream_count = l.streams;
  info->locator_count = l.locators;
  // The index covers positions 1..covers_position, one locator each: fewer
  // would hide events (and let appends reuse their versions), more would
  // name events that are not there.
  if (l.locators != info->covers_position) {
    clear();
    return bad_bytes(fmt::format("index blob holds {} locators but covers positions 1..{}",
                                 l.locators, info->covers_position));
  }
  dir->entries = p + ih::kSize;
  dir->names = p + l.names_off;
  dir->names_len = l.names_len;
  dir->locators = p + l.loc_off;
  dir->locator_count = l.locators;
  dir->seed = seed;
  dir_ = std::move(dir);
  persisted_streams_ = l.streams;
  events_ = l.locators;
  if (!copy) return Status();  // each entry is checked on first use
  // A copy is checked whole now: the directory, and each locator slice.
  Status why = walk([&](const std::string& key, const Probe& pr) -> Status {
    if (checksum64(dir_->locators + pr.first * 8, pr.count * 8, seed) != pr.sum)
      return bad_bytes("index locators of stream " + key + " fail their checksum");
    return Status();
  });
  if (!why.ok()) clear();
  return why;
}

Status StreamIndex::verify_entry(const Entry& e, uint64_t seed) {
  if (!e.damage.empty()) return bad_bytes(e.damage);
  if (e.persisted_count == 0 || e.verified->load(std::memory_order_acquire)) return Status();
  if (checksum64(e.persisted, e.persisted_count * 8, seed) != e.persisted_sum)
    return bad_bytes("persisted index locators fail their checksum");
  e.verified->store(true, std::memory_order_release);
  return Status();
}

}  // namespace eventsource
