// Unit tests of engine/stream_index.{h,cc}: lookups and locators by version,
// the index blob round trip (copied and zero-copy loads), its layout
// ([F-19], format-spec.md "Index segment") and a corruption table over the
// blob ([F-20]): each damaged field is re-signed (tests/fuzz/resign.h) so
// that only the rule it names can reject it.
#include "engine/stream_index.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "tests/fuzz/resign.h"
#include "tests/support/status_text.h"

namespace eventsource::testing {
namespace {

namespace ih = format::index_header;
namespace ie = format::index_entry;

constexpr uint64_t kSeed = 0x0808080808080808ull;  // format-spec.md "Worked example"

// A compressed-frame locator ("Locator encoding"): record `index` of the frame at `frame`.
constexpr uint64_t zstd_locator(uint64_t index, uint64_t frame) {
  return format::kLocatorCompressed | index << 48 | frame;
}

// key -> locators, the whole content of an index.
using Content = std::map<std::string, std::vector<uint64_t>>;

// The event id the fixtures give the record at `locator`.
Uuid id_of(uint64_t locator) {
  Uuid id;
  std::memcpy(id.bytes.data(), &locator, 8);
  id.bytes[15] = 0x5a;
  return id;
}

void add_stream(StreamIndex& index, const std::string& type, const std::string& id,
                const std::vector<uint64_t>& locators) {
  StreamIndex::Entry& e = index.get_or_add(type + "-" + id, static_cast<uint8_t>(type.size()));
  e.delta.insert(e.delta.end(), locators.begin(), locators.end());
  for (uint64_t loc : locators) index.ids().add(IdTable::fingerprint(id_of(loc), kSeed), loc);
  index.note_added(locators.size());
}

// The blob of `index`, which must build.
std::string build(const StreamIndex& index, uint64_t covers, uint64_t log_end) {
  Result<std::string> blob = index.build_blob(covers, log_end, kSeed);
  REQUIRE(why_of(blob.status()) == "");
  return *std::move(blob);
}

Content content_of(const StreamIndex& index) {
  Content c;
  const Status damage = index.for_each([&](const std::string& key, const auto& e) {
    std::vector<uint64_t>& locs = c[key];
    for (uint64_t v = 1; v <= e.version(); ++v) locs.push_back(e.locator(v));
  });
  CHECK(why_of(damage) == "");
  return c;
}

// Three streams; sorted, "Cart-x" is entry 0, "Order-1" entry 1, "Order-2" entry 2.
StreamIndex fixture_index() {
  StreamIndex index;
  add_stream(index, "Order", "2", {0x1200, zstd_locator(3, 0x1400), 0x1900});
  add_stream(index, "Order", "1", {0x1080, 0x110b, zstd_locator(0, 0x1400)});
  add_stream(index, "Cart", "x", {0x1300});
  return index;
}
constexpr uint64_t kFixtureEvents = 7;

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }
uint8_t* bytes(std::string& s) { return reinterpret_cast<uint8_t*>(s.data()); }

uint8_t* entry_at(std::string& blob, size_t i) { return bytes(blob) + ih::kSize + i * ie::kSize; }
const uint8_t* entry_at(const std::string& blob, size_t i) {
  return bytes(blob) + ih::kSize + i * ie::kSize;
}
uint64_t names_offset(const std::string& blob) {
  return ih::kSize + get_u64(bytes(blob) + ih::kStreamCount) * ie::kSize;
}
uint64_t field64(const std::string& blob, size_t off) { return get_u64(bytes(blob) + off); }

// The names of the directory entries, in directory order, as "type-id".
std::vector<std::string> directory_names(const std::string& blob) {
  std::vector<std::string> names;
  const char* area = blob.data() + names_offset(blob);
  for (uint64_t i = 0; i < field64(blob, ih::kStreamCount); ++i) {
    const uint8_t* d = entry_at(blob, i);
    const char* name = area + get_u32(d + ie::kNameOffset);
    names.push_back(std::string(name, d[ie::kTypeLen]) + "-" +
                    std::string(name + d[ie::kTypeLen], get_u16(d + ie::kIdLen)));
  }
  return names;
}

enum class Load : uint8_t { kCopy, kInPlace };

struct Loaded {
  std::string error;
  StreamIndex index;
  StreamIndex::BlobInfo info;
};

// Loads into an index that already holds a stream, so a failed load must clear it.
Loaded load(const std::string& blob, Load mode, uint64_t seed = kSeed) {
  Loaded l;
  add_stream(l.index, "Stale", "1", {1});
  l.error = why_of(l.index.load_blob(bytes(blob), blob.size(), seed, mode == Load::kCopy, &l.info));
  return l;
}

// What the table expects of a damaged blob.
enum class Outcome : uint8_t {
  kBad,          // both loads fail with the reason, leaving the index empty
  kEntryBad,     // a copying load fails; an in-place load succeeds, but walking its
                 // directory (for_each) fails with the same reason
  kLocatorsBad,  // a copying load fails; an in-place load succeeds but verify_entry fails
  kValid,        // both loads give the fixture's content
};
enum class Resign : uint8_t {
  kAll,   // locators_offset, every locator checksum and the blob checksum
  kNone,  // as mutated
};

struct Case {
  const char* behaviour;
  const char* rule;
  void (*mutate)(std::string& blob);
  Resign resign;
  Outcome outcome;
  const char* reason;
};

void set64(std::string& b, size_t off, uint64_t v) { put_u64(bytes(b) + off, v); }
void add64(std::string& b, size_t off, int64_t d) { set64(b, off, field64(b, off) + d); }

// Swaps directory entries 1 and 2 ("Order-1", "Order-2": 3 locators each)
// and their locator runs, keeping every entry consistent: the same index in
// the wrong order.
void swap_order_streams(std::string& b) {
  uint8_t* e1 = entry_at(b, 1);
  uint8_t* e2 = entry_at(b, 2);
  uint8_t tmp[ie::kSize];
  std::memcpy(tmp, e1, ie::kSize);
  std::memcpy(e1, e2, ie::kSize);
  std::memcpy(e2, tmp, ie::kSize);
  const uint64_t first1 = get_u64(e2 + ie::kLocatorsIndex);  // entries already swapped
  const uint64_t first2 = get_u64(e1 + ie::kLocatorsIndex);
  put_u64(e1 + ie::kLocatorsIndex, first1);
  put_u64(e2 + ie::kLocatorsIndex, first2);
  uint8_t* locs = bytes(b) + field64(b, ih::kLocatorsOffset);
  uint8_t run[3 * 8];
  std::memcpy(run, locs + first1 * 8, sizeof run);
  std::memcpy(locs + first1 * 8, locs + first2 * 8, sizeof run);
  std::memcpy(locs + first2 * 8, run, sizeof run);
}

const Case kCases[] = {
    // Header: sizes, judged before the checksum.
    {"a bad magic", "[F-20]", [](std::string& b) { b[7] = '1'; }, Resign::kAll, Outcome::kBad,
     "bad magic"},
    {"stream_count above n/32", "[F-20]",
     [](std::string& b) { set64(b, ih::kStreamCount, b.size() / ie::kSize + 1); }, Resign::kAll,
     Outcome::kBad, "counts exceed its size"},
    {"names_len above n", "[F-20]", [](std::string& b) { set64(b, ih::kNamesLen, b.size() + 1); },
     Resign::kAll, Outcome::kBad, "counts exceed its size"},
    {"locator_count above n/8", "[F-20]",
     [](std::string& b) { set64(b, ih::kLocatorCount, b.size() / 8 + 1); }, Resign::kAll,
     Outcome::kBad, "counts exceed its size"},
    {"huge counts that would overflow a multiplication", "[F-20]",
     [](std::string& b) {
       set64(b, ih::kStreamCount, 1ull << 59);
       set64(b, ih::kLocatorCount, 1ull << 61);
     },
     Resign::kAll, Outcome::kBad, "counts exceed its size"},
    {"locators_offset 8 too far", "[F-20]",
     [](std::string& b) { add64(b, ih::kLocatorsOffset, 8); }, Resign::kNone, Outcome::kBad,
     "layout does not match its size"},
    {"locators_offset 8 too near", "[F-20]",
     [](std::string& b) { add64(b, ih::kLocatorsOffset, -8); }, Resign::kNone, Outcome::kBad,
     "layout does not match its size"},
    {"locators_offset not 8-aligned", "[F-20]",
     [](std::string& b) { add64(b, ih::kLocatorsOffset, 1); }, Resign::kNone, Outcome::kBad,
     "layout does not match its size"},
    {"one stream more than the blob holds", "[F-20]",
     [](std::string& b) { add64(b, ih::kStreamCount, 1); }, Resign::kAll, Outcome::kBad,
     "layout does not match its size"},
    {"one locator more than the blob holds", "[F-20]",
     [](std::string& b) { add64(b, ih::kLocatorCount, 1); }, Resign::kAll, Outcome::kBad,
     "layout does not match its size"},
    {"names 8 bytes longer than the blob holds", "[F-20]",
     [](std::string& b) { add64(b, ih::kNamesLen, 8); }, Resign::kAll, Outcome::kBad,
     "layout does not match its size"},
    // The blob checksum: header, directory, names and padding.
    {"a checksum bit flipped", "[F-1] [F-20]", [](std::string& b) { b[ih::kChecksum] ^= 1; },
     Resign::kNone, Outcome::kBad, "blob checksum mismatch"},
    {"covers_position changed, not re-signed", "[F-20]",
     [](std::string& b) { add64(b, ih::kCoversPosition, 1); }, Resign::kNone, Outcome::kBad,
     "blob checksum mismatch"},
    {"a directory byte changed, not re-signed", "[F-20]",
     [](std::string& b) { entry_at(b, 1)[ie::kCount] ^= 0x40; }, Resign::kNone, Outcome::kEntryBad,
     "index entry 1 fails its checksum"},
    {"a name byte changed, not re-signed", "[F-20]",
     [](std::string& b) { b[names_offset(b)] ^= 0x20; }, Resign::kNone, Outcome::kEntryBad,
     "index entry 0 fails its checksum"},
    {"a padding byte non-zero, not re-signed", "[F-20]",
     [](std::string& b) { b[field64(b, ih::kLocatorsOffset) - 1] = 1; }, Resign::kNone,
     Outcome::kBad, "non-zero padding before its locators"},
    // Directory entries, behind the checksum.
    {"an entry's locators_index not the sum of the counts before it", "[F-20]",
     [](std::string& b) { put_u64(entry_at(b, 1) + ie::kLocatorsIndex, 0); }, Resign::kAll,
     Outcome::kEntryBad, "index entry 1 is inconsistent"},
    {"an entry with count 0", "[F-20]",
     [](std::string& b) {
       put_u64(entry_at(b, 2) + ie::kCount, 0);
       add64(b, ih::kLocatorCount, -3);
       add64(b, ih::kCoversPosition, -3);  // (so that only the entry's count is wrong)
       // Entry 2's locators are the last 3: drop them, and their ids.
       const uint64_t loc_off = field64(b, ih::kLocatorsOffset);
       b.resize(loc_off + 4 * 8);
       IdTable ids;
       for (uint64_t i = 0; i < 4; ++i) {
         const uint64_t loc = field64(b, loc_off + i * 8);
         ids.add(IdTable::fingerprint(id_of(loc), kSeed), loc);
       }
       std::string section(IdTable::section_size(4), '\0');
       REQUIRE(ids.write_section(bytes(section), kSeed).ok());
       set64(b, ih::kIdsOffset, b.size());
       b += section;
     },
     Resign::kAll, Outcome::kEntryBad, "index entry 2 is inconsistent"},
    {"the last entry's count past locator_count", "[F-20]",
     [](std::string& b) { put_u64(entry_at(b, 2) + ie::kCount, 4); }, Resign::kAll,
     Outcome::kEntryBad, "index entry 2 is inconsistent"},
    {"an entry with type length 0", "[F-20]",
     [](std::string& b) { entry_at(b, 0)[ie::kTypeLen] = 0; }, Resign::kAll, Outcome::kEntryBad,
     "index entry 0 is inconsistent"},
    {"an entry with id length 0", "[F-20]",
     [](std::string& b) { put_u16(entry_at(b, 1) + ie::kIdLen, 0); }, Resign::kAll,
     Outcome::kEntryBad, "index entry 1 is inconsistent"},
    {"an entry's name past names_len", "[F-20]",
     [](std::string& b) {
       put_u32(entry_at(b, 2) + ie::kNameOffset,
               static_cast<uint32_t>(field64(b, ih::kNamesLen) - 6 + 1));
     },
     Resign::kAll, Outcome::kEntryBad, "index entry 2 is inconsistent"},
    {"an entry's reserved byte non-zero", "[F-20]",
     [](std::string& b) { entry_at(b, 1)[ie::kReserved] = 1; }, Resign::kAll, Outcome::kEntryBad,
     "index entry 1 is inconsistent"},
    {"a stream type containing '-'", "[F-20]", [](std::string& b) { b[names_offset(b) + 1] = '-'; },
     Resign::kAll, Outcome::kEntryBad, "index entry 0 has a stream type containing '-'"},
    {"a name used by an earlier entry", "[F-20]",
     [](std::string& b) {
       put_u32(entry_at(b, 2) + ie::kNameOffset, get_u32(entry_at(b, 1) + ie::kNameOffset));
     },
     Resign::kAll, Outcome::kEntryBad, "lists stream Order-1 twice"},
    {"counts that do not sum to locator_count", "[F-20]",
     [](std::string& b) { put_u64(entry_at(b, 2) + ie::kCount, 2); }, Resign::kAll,
     Outcome::kEntryBad, "do not account for every locator"},
    // Locators: one checksum per stream, checked at a copying load or by verify_entry.
    {"a locator byte changed", "[F-20]",
     [](std::string& b) { b[field64(b, ih::kLocatorsOffset) + 8 * 2 + 1] ^= 1; }, Resign::kNone,
     Outcome::kLocatorsBad, "locators of stream Order-1 fail their checksum"},
    {"a locator checksum bit flipped, blob re-signed", "[F-20]",
     [](std::string& b) {
       entry_at(b, 0)[ie::kLocatorsChecksum] ^= 2;
       const uint8_t* d = entry_at(b, 0);
       set64(b, ih::kSize + ie::kEntryChecksum,  // entry 0's own checksum
             StreamIndex::entry_checksum(d, bytes(b) + names_offset(b), 5, kSeed));
     },
     Resign::kNone, Outcome::kLocatorsBad, "locators of stream Cart-x fail their checksum"},
    // Valid once re-signed: rules readers do not have.
    {"the directory out of sort order", "[F-19]", swap_order_streams, Resign::kAll,
     Outcome::kEntryBad, "index directory is not in name order at entry 2"},
    {"a non-zero padding byte, re-signed", "[F-20]",
     [](std::string& b) { b[field64(b, ih::kLocatorsOffset) - 1] = 1; }, Resign::kAll,
     Outcome::kBad, "non-zero padding before its locators"},
};

TEST_SUITE("stream-index") {
  TEST_CASE("get_or_add creates a stream once; find sees it, and only it") {
    StreamIndex index;
    CHECK(index.find("Order-1") == nullptr);
    StreamIndex::Entry& e = index.get_or_add("Order-1", 5);
    CHECK(e.type_len == 5);
    CHECK(e.version() == 0);
    e.delta.push_back(0x1080);
    StreamIndex::Entry& again = index.get_or_add("Order-1", 9);
    CHECK(&again == &e);
    CHECK(again.type_len == 5);  // the first type_len stays
    CHECK(again.version() == 1);
    CHECK(index.find("Order-1") == &e);
    const StreamIndex& const_index = index;
    CHECK(const_index.find("Order-1") == &e);
    CHECK(index.find("Order-10") == nullptr);
    CHECK(index.find("Order") == nullptr);
    CHECK(index.stream_count() == 1);
    index.note_added(1);
    CHECK(index.event_count() == 1);
    index.clear();
    CHECK(index.stream_count() == 0);
    CHECK(index.event_count() == 0);
    CHECK(index.find("Order-1") == nullptr);
  }

  TEST_CASE("locator(v) is 1-based: persisted locators first, then the delta") {
    StreamIndex built;
    add_stream(built, "Order", "1", {0x1080, 0x110b});
    std::string blob = build(built, 2, 0x1190);
    StreamIndex index;
    StreamIndex::BlobInfo info;
    REQUIRE(why_of(index.load_blob(bytes(blob), blob.size(), kSeed, false, &info)) == "");
    StreamIndex::Entry* e = index.find("Order-1");
    REQUIRE(e != nullptr);
    for (uint64_t loc : {uint64_t{0x1200}, zstd_locator(2, 0x1400)}) {
      e->delta.push_back(loc);
      index.ids().add(IdTable::fingerprint(id_of(loc), kSeed), loc);
    }
    CHECK(e->persisted_count == 2);
    CHECK(e->version() == 4);
    CHECK(e->locator(1) == 0x1080);
    CHECK(e->locator(2) == 0x110b);
    CHECK(e->locator(3) == 0x1200);
    CHECK(e->locator(4) == zstd_locator(2, 0x1400));
    // A blob built from persisted + delta holds all four.
    std::string again = build(index, 4, 0x2000);
    Loaded l = load(again, Load::kCopy);
    REQUIRE(l.error == "");
    CHECK(content_of(l.index) == content_of(index));
  }

  TEST_CASE("build_blob then load_blob round-trips every stream and locator, copied or in place") {
    const StreamIndex index = fixture_index();
    const std::string blob = build(index, kFixtureEvents, 0x1a00);
    for (Load mode : {Load::kCopy, Load::kInPlace}) {
      CAPTURE(mode == Load::kCopy);
      Loaded l = load(blob, mode);
      REQUIRE(l.error == "");
      CHECK(content_of(l.index) == content_of(index));
      CHECK(l.info.covers_position == kFixtureEvents);
      CHECK(l.info.log_end_offset == 0x1a00);
      CHECK(l.info.stream_count == 3);
      CHECK(l.info.locator_count == kFixtureEvents);
      CHECK(l.index.stream_count() == 3);
      CHECK(l.index.event_count() == kFixtureEvents);
      CHECK(l.index.find("Stale-1") == nullptr);
      const StreamIndex::Entry* e = l.index.find("Cart-x");
      REQUIRE(e != nullptr);
      CHECK(e->type_len == 4);
      if (mode == Load::kCopy) {
        // Points into the index's own copy, checked at load.
        CHECK((e->persisted < bytes(blob) || e->persisted >= bytes(blob) + blob.size()));
        CHECK(e->verified->load());
      } else {
        // Points into the blob; verified lazily.
        CHECK(e->persisted >= bytes(blob));
        CHECK(e->persisted + 8 <= bytes(blob) + blob.size());
        CHECK(e->persisted_count == 1);
        CHECK_FALSE(e->verified->load());
        CHECK(why_of(StreamIndex::verify_entry(*e, kSeed)) == "");
        CHECK(e->verified->load());
      }
    }
  }

  TEST_CASE("the worked example's index blob has the spec's layout and checksums") {
    // format-spec.md "Worked example": Order-42 with locators 0x1080, 0x10CF.
    StreamIndex index;
    add_stream(index, "Order", "42", {0x1080, 0x10cf});
    const std::string b = build(index, 2, 0x1118);
    REQUIRE(b.size() == 176);
    CHECK(std::memcmp(b.data(), format::kIndexMagic, 8) == 0);
    CHECK(field64(b, ih::kCoversPosition) == 2);
    CHECK(field64(b, ih::kLogEndOffset) == 0x1118);
    CHECK(field64(b, ih::kStreamCount) == 1);
    CHECK(field64(b, ih::kLocatorCount) == 2);
    CHECK(field64(b, ih::kNamesLen) == 7);
    CHECK(field64(b, ih::kLocatorsOffset) == 120);
    CHECK(field64(b, ih::kIdsOffset) == 136);
    const uint8_t* d = bytes(b) + ih::kSize;
    CHECK(get_u64(d + ie::kLocatorsIndex) == 0);
    CHECK(get_u64(d + ie::kCount) == 2);
    CHECK(get_u32(d + ie::kNameOffset) == 0);
    CHECK(d[ie::kTypeLen] == 5);
    CHECK(d[ie::kReserved] == 0);
    CHECK(get_u16(d + ie::kIdLen) == 2);
    CHECK(b.substr(112, 7) == "Order42");
    CHECK(b[119] == 0);
    CHECK(field64(b, 120) == 0x1080);
    CHECK(field64(b, 128) == 0x10cf);
    // "Event-id table" [F-38]: one fence, one block checksum, one block of
    // two keys (sorted) and their locators.
    const uint32_t k1 = IdTable::key(IdTable::fingerprint(id_of(0x1080), kSeed));
    const uint32_t k2 = IdTable::key(IdTable::fingerprint(id_of(0x10cf), kSeed));
    const bool swapped = k2 < k1;
    CHECK(get_u32(bytes(b) + 136) == std::min(k1, k2));
    CHECK(get_u32(bytes(b) + 140) == 0);
    CHECK(get_u32(bytes(b) + 152) == std::min(k1, k2));
    CHECK(get_u32(bytes(b) + 156) == std::max(k1, k2));
    CHECK(field64(b, 160) == (swapped ? 0x10cf : 0x1080));
    CHECK(field64(b, 168) == (swapped ? 0x1080 : 0x10cf));
    CHECK(field64(b, 144) == checksum64(b.data() + 152, 24, kSeed));
    // [F-1] "Checksums": blob[64:72], entry[24:32] and entry[32:40].
    CHECK(field64(b, ih::kChecksum) ==
          (checksum64(b.data(), 64, kSeed) ^ checksum64(b.data() + 136, 16, kSeed)));
    CHECK(get_u64(d + ie::kLocatorsChecksum) == checksum64(b.data() + 120, 16, kSeed));
    CHECK(get_u64(d + ie::kEntryChecksum) ==
          (checksum64(d, 32, kSeed) ^ checksum64(b.data() + 112, 7, kSeed)));
  }

  TEST_CASE("the directory is in memcmp order of type-id, names packed, locators in order") {
    // [F-19]: unsigned bytes, a prefix first, the '-' part of the key (so
    // "a-z" < "a0-0" although "az" > "a00").
    StreamIndex index;
    const std::vector<std::pair<std::string, std::string>> streams = {
        {"ab", "1"}, {"a", "\xff"}, {"a0", "0"}, {"a", "2"},
        {"a", "z"},  {"a", "10"},   {"B", "x"},  {"a", "1"}};
    uint64_t next = 0x1000;
    for (const auto& [type, id] : streams) {
      std::vector<uint64_t> locs;
      for (size_t k = 0; k <= id.size(); ++k) locs.push_back(next += 8);
      add_stream(index, type, id, locs);
    }
    const std::string b = build(index, index.event_count(), 0);
    CHECK(directory_names(b) ==
          std::vector<std::string>{"B-x", "a-1", "a-10", "a-2", "a-z", "a-\xff", "a0-0", "ab-1"});
    CHECK(b.substr(names_offset(b), field64(b, ih::kNamesLen)) ==
          "Bxa1a10a2aza\xff"
          "a00ab1");
    uint64_t first = 0, name_at = 0;
    for (size_t i = 0; i < streams.size(); ++i) {
      CAPTURE(i);
      const uint8_t* d = entry_at(b, i);
      const std::string key = directory_names(b)[i];
      const StreamIndex::Entry* e = index.find(key);
      REQUIRE(e != nullptr);
      CHECK(get_u64(d + ie::kLocatorsIndex) == first);
      CHECK(get_u64(d + ie::kCount) == e->version());
      CHECK(get_u32(d + ie::kNameOffset) == name_at);
      for (uint64_t v = 1; v <= e->version(); ++v)
        CHECK(field64(b, field64(b, ih::kLocatorsOffset) + (first + v - 1) * 8) == e->locator(v));
      first += e->version();
      name_at += key.size() - 1;
    }
  }

  TEST_CASE("an empty index builds a header-only blob that loads as empty") {
    StreamIndex empty;
    const std::string b = build(empty, 0, 0);
    CHECK(b.size() == ih::kSize);
    CHECK(field64(b, ih::kLocatorsOffset) == ih::kSize);
    for (Load mode : {Load::kCopy, Load::kInPlace}) {
      Loaded l = load(b, mode);
      CHECK(l.error == "");
      CHECK(l.index.stream_count() == 0);
      CHECK(l.index.event_count() == 0);
      CHECK(l.info.stream_count == 0);
    }
  }

  TEST_CASE("verify_entry checks a persisted slice once; delta-only entries need no check") {
    // [F-20]: in-place loads check a stream's locators on first use.
    std::string blob = build(fixture_index(), kFixtureEvents, 0);
    const uint64_t loc_off = field64(blob, ih::kLocatorsOffset);
    Loaded l = load(blob, Load::kInPlace);
    REQUIRE(l.error == "");
    const StreamIndex::Entry& order1 = *l.index.find("Order-1");
    const StreamIndex::Entry& order2 = *l.index.find("Order-2");
    blob[loc_off + 8 * 1] ^= 0x01;  // Order-1's first locator; the mapping changed under us
    CHECK(why_of(StreamIndex::verify_entry(order1, kSeed)) ==
          "persisted index locators fail their checksum");
    CHECK_FALSE(order1.verified->load());
    CHECK(why_of(StreamIndex::verify_entry(order2, kSeed)) == "");
    CHECK(order2.verified->load());
    // Once verified, the slice is trusted: later damage is not looked for again.
    blob[loc_off + 8 * 4] ^= 0x01;
    CHECK(why_of(StreamIndex::verify_entry(order2, kSeed)) == "");
    // Another store's seed fails an unverified slice.
    CHECK_FALSE(StreamIndex::verify_entry(*l.index.find("Cart-x"), kSeed ^ 1).ok());
    StreamIndex::Entry fresh;
    fresh.delta = {0x1080};
    CHECK(why_of(StreamIndex::verify_entry(fresh, 0)) == "");
  }

  TEST_CASE("corruption table: each bad blob field is rejected by its own rule") {
    const StreamIndex index = fixture_index();
    const Content want = content_of(index);
    const std::string good = build(index, kFixtureEvents, 0x1a00);
    REQUIRE(directory_names(good) == std::vector<std::string>{"Cart-x", "Order-1", "Order-2"});
    REQUIRE(field64(good, ih::kLocatorsOffset) > names_offset(good) + field64(good, ih::kNamesLen));
    for (const Case& c : kCases) {
      const std::string label = std::string(c.rule) + " " + c.behaviour;
      INFO(label);
      std::string blob = good;
      c.mutate(blob);
      if (c.resign == Resign::kAll) fuzz::resign_index_blob(bytes(blob), blob.size(), kSeed);
      Loaded copied = load(blob, Load::kCopy);
      Loaded in_place = load(blob, Load::kInPlace);
      CAPTURE(copied.error);
      CAPTURE(in_place.error);
      switch (c.outcome) {
        case Outcome::kBad:
          CHECK(copied.error.find(c.reason) != std::string::npos);
          CHECK(in_place.error == copied.error);
          CHECK(copied.index.stream_count() == 0);
          CHECK(in_place.index.stream_count() == 0);
          CHECK(in_place.index.event_count() == 0);
          break;
        case Outcome::kEntryBad:
          CHECK(copied.error.find(c.reason) != std::string::npos);
          CHECK(copied.index.stream_count() == 0);
          REQUIRE(in_place.error == "");
          CHECK(why_of(in_place.index.for_each([](const std::string&, const auto&) {})) ==
                copied.error);
          break;
        case Outcome::kLocatorsBad: {
          CHECK(copied.error.find(c.reason) != std::string::npos);
          CHECK(copied.index.stream_count() == 0);
          REQUIRE(in_place.error == "");
          int failed = 0;
          CHECK(why_of(in_place.index.for_each([&](const std::string&, const auto& e) {
                  failed += StreamIndex::verify_entry(e, kSeed).ok() ? 0 : 1;
                })) == "");
          CHECK(failed == 1);
          break;
        }
        case Outcome::kValid:
          CHECK(copied.error == "");
          CHECK(in_place.error == "");
          CHECK(content_of(copied.index) == want);
          CHECK(content_of(in_place.index) == want);
          CHECK(why_of(in_place.index.for_each([](const std::string&, const auto& e) {
                  CHECK(why_of(StreamIndex::verify_entry(e, kSeed)) == "");
                })) == "");
          break;
      }
    }
  }

  TEST_CASE("every truncation of a blob is refused by a size rule") {
    // [F-20]: n >= 64; stream_count <= n/32, ...; the layout must fit n.
    const std::string good = build(fixture_index(), kFixtureEvents, 0);
    for (size_t n = 0; n < good.size(); ++n) {
      CAPTURE(n);
      Loaded l = load(good.substr(0, n), Load::kInPlace);
      if (n < ih::kSize) {
        CHECK(l.error == "index blob shorter than its header");
      } else if (n < field64(good, ih::kStreamCount) * ie::kSize) {
        CHECK(l.error == "index blob counts exceed its size");
      } else {
        CHECK(l.error.find("index blob layout does not match its size") == 0);
      }
      CHECK(l.index.stream_count() == 0);
    }
  }

  TEST_CASE("every single-bit flip of a blob is caught by a copying load") {
    // [F-1] [F-20]: the blob checksum covers [0, locators_offset) but its
    // own field, the per-stream checksums cover the locators.
    const std::string good = build(fixture_index(), kFixtureEvents, 0);
    for (size_t i = 0; i < good.size() * 8; ++i) {
      std::string blob = good;
      blob[i / 8] ^= static_cast<char>(1 << (i % 8));
      Loaded l = load(blob, Load::kCopy);
      if (l.error.empty()) FAIL("flip of bit " << i % 8 << " of byte " << i / 8 << " not caught");
    }
    CHECK(load(good, Load::kCopy, kSeed ^ 1).error == "index blob checksum mismatch");
  }
}

}  // namespace
}  // namespace eventsource::testing
