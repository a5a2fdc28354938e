// Where each field of an encoded record sits (format-spec.md "Records"), for
// tests that edit one field in place, and RawRecord, a record written field by
// field from the spec independently of FrameEncoder, so a test can write any
// field wrongly (overlong varints, unknown flags, lengths past the end).
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/coding.h"
#include "engine/format.h"

namespace eventsource::testing {

inline constexpr size_t kAbsent = static_cast<size_t>(-1);

// Offsets from the record's first byte. Length fields point at the length
// (u8 or varint); the bytes follow it. Optional fields absent: kAbsent.
struct RecordLayout {
  size_t len_size = 0;  // bytes of the len varint
  uint64_t len = 0;     // its value: bytes after it
  size_t checksum = 0, flags = 0, position = 0, version = 0, timestamp = 0, event_id = 0;
  size_t correlation_id = kAbsent, causation_id = kAbsent;
  size_t stream_type = 0, stream_id = 0, event_type = 0;
  size_t tenant = kAbsent, metadata = kAbsent;
  size_t payload = 0;  // first payload byte
  size_t end = 0;      // the record's size
};

// The record at r, with `avail` bytes readable from r.
// REQUIRES (checked): its varints and lengths are well formed.
inline RecordLayout record_layout(const uint8_t* r, size_t avail) {
  namespace rec = format::record;
  RecordLayout l;
  const uint8_t* q = r;
  const uint8_t* const far = r + avail;
  REQUIRE(get_varint(&q, far, &l.len) == nullptr);
  l.len_size = static_cast<size_t>(q - r);
  l.end = l.len_size + l.len;
  REQUIRE(l.end <= avail);
  auto at = [&] { return static_cast<size_t>(q - r); };
  auto varint = [&] {
    uint64_t v = 0;
    REQUIRE(get_varint(&q, far, &v) == nullptr);
    return v;
  };
  l.checksum = at();
  q += rec::kChecksumSize;
  l.flags = at();
  const uint8_t flags = *q++;
  l.position = at();
  varint();
  l.version = at();
  varint();
  l.timestamp = at();
  q += rec::kTimestampSize;
  l.event_id = at();
  q += rec::kIdSize;
  if (flags & rec::kHasCorrelationId) {
    l.correlation_id = at();
    q += rec::kIdSize;
  }
  if (flags & rec::kHasCausationId) {
    l.causation_id = at();
    q += rec::kIdSize;
  }
  l.stream_type = at();
  q += 1 + *q;
  l.stream_id = at();
  q += varint();
  l.event_type = at();
  q += 1 + *q;
  if (flags & rec::kHasTenant) {
    l.tenant = at();
    q += 1 + *q;
  }
  if (flags & rec::kHasMetadata) {
    l.metadata = at();
    q += varint();
  }
  l.payload = at();
  REQUIRE(l.payload <= l.end);
  return l;
}

// A record built field by field. `fields` is everything after the checksum;
// bytes() puts the len varint and the checksum in front.
struct RawRecord {
  std::string fields;

  RawRecord& u8(uint8_t v) {
    fields.push_back(static_cast<char>(v));
    return *this;
  }
  RawRecord& varint(uint64_t v) {
    uint8_t b[kMaxVarintLen];
    fields.append(reinterpret_cast<const char*>(b), put_varint(b, v) - b);
    return *this;
  }
  RawRecord& raw(std::string_view s) {
    fields.append(s);
    return *this;
  }
  RawRecord& i64(int64_t v) {
    uint8_t b[8];
    put_u64(b, static_cast<uint64_t>(v));
    return raw(std::string_view(reinterpret_cast<const char*>(b), 8));
  }
  RawRecord& id(uint8_t fill) { return raw(std::string(16, static_cast<char>(fill))); }

  // The record: len varint (4 + fields.size(), or `len` when given), checksum
  // with `seed` over `fields`.
  std::string bytes(uint64_t seed, uint64_t len = 0) const {
    RawRecord out;
    out.varint(len ? len : format::record::kChecksumSize + fields.size());
    uint8_t sum[4];
    put_u32(sum, static_cast<uint32_t>(checksum64(fields.data(), fields.size(), seed)));
    out.raw(std::string_view(reinterpret_cast<const char*>(sum), 4));
    return out.fields + fields;
  }
};

}  // namespace eventsource::testing
