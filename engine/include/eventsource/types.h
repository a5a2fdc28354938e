// Value types shared by the engine's public API: strong numbers that people
// confuse (positions, versions, segment ids), UUIDs, stream names, the
// expected-version rule of an append, and the event shapes going in and out.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "eventsource/status.h"

namespace eventsource {

// A 64-bit number that does not mix with other 64-bit numbers.
template <class Tag>
struct Strong {
  uint64_t value = 0;
  constexpr Strong() = default;
  constexpr explicit Strong(uint64_t v) : value(v) {}
  constexpr auto operator<=>(const Strong&) const = default;
};

// 1-based, dense position of an event in the whole log (0 = "before the first").
using GlobalPosition = Strong<struct GlobalPositionTag>;
// 1-based, dense version of an event in its stream (0 = "no event yet").
using StreamVersion = Strong<struct StreamVersionTag>;
// Index of a segment slot in the data file (0-based).
using SegmentId = Strong<struct SegmentIdTag>;

// RFC 4122 UUID as 16 raw bytes. The nil UUID (all zero) means "none".
struct Uuid {
  std::array<uint8_t, 16> bytes{};

  static Uuid random();  // version 4, from a per-thread CSPRNG-seeded generator
  static std::optional<Uuid> parse(std::string_view text);  // 8-4-4-4-12 hex
  std::string to_string() const;                            // lower-case 8-4-4-4-12
  // Inline, two word loads: every append asks it of every event id.
  bool is_nil() const {
    uint64_t a, b;
    std::memcpy(&a, bytes.data(), 8);
    std::memcpy(&b, bytes.data() + 8, 8);
    return (a | b) == 0;
  }
  auto operator<=>(const Uuid&) const = default;
};

// A stream is named by a type and an id: "Order" + "42" reads as "Order-42".
// The type is 1..255 bytes without '-'; the id is 1..65535 bytes, any bytes.
// Both are raw bytes, stored and compared as such: no encoding is required
// or checked (UTF-8 is a convention; format-spec.md [F-14]).
struct StreamId {
  std::string type;
  std::string id;

  std::string name() const { return type + "-" + id; }
  // Splits "Order-42" at the first '-'.
  static Result<StreamId> parse(std::string_view name);
  Status validate() const;
  auto operator<=>(const StreamId&) const = default;
};

// The optimistic-concurrency rule of one append.
class ExpectedVersion {
 public:
  enum class Kind : uint8_t { kAny, kNoStream, kStreamExists, kExact };

  static ExpectedVersion any() { return ExpectedVersion(Kind::kAny, 0); }
  static ExpectedVersion no_stream() { return ExpectedVersion(Kind::kNoStream, 0); }
  static ExpectedVersion exists() { return ExpectedVersion(Kind::kStreamExists, 0); }
  // exact(StreamVersion(0)) is the same as no_stream().
  static ExpectedVersion exact(StreamVersion v) { return ExpectedVersion(Kind::kExact, v.value); }

  Kind kind() const { return kind_; }
  StreamVersion version() const { return StreamVersion(version_); }
  // Whether a stream currently at `current` (0 = absent) satisfies the rule.
  bool accepts(StreamVersion current) const;
  std::string to_string() const;

 private:
  ExpectedVersion(Kind k, uint64_t v) : kind_(k), version_(v) {}
  Kind kind_;
  uint64_t version_;
};

// One event to append. Strings are copied into the log; nothing is kept.
// All of them are raw bytes: the store checks no encoding and gives back
// exactly the bytes appended (format-spec.md [F-14]).
struct EventData {
  std::string type;          // event type name, 1..255 raw bytes, e.g. "OrderPlaced"
  std::string payload;       // opaque bytes (JSON by convention), up to the segment size
  Uuid id;                   // nil: a random v4 id is generated
  std::string tenant;        // 0..255 raw bytes; empty = no tenant
  int64_t timestamp_us = 0;  // microseconds since the Unix epoch; 0: now
  Uuid correlation_id;       // nil = none
  Uuid causation_id;         // nil = none
  std::string metadata;      // small opaque bytes (JSON object by convention), up to 64 KiB
};

// One stored event, as seen by readers: its strings are the bytes that were
// appended, unchanged (no encoding is checked). The string views point into
// the store's mapping (uncompressed frames) or into a decode buffer
// (compressed frames): they are valid only during the callback that
// receives them.
struct RecordedEvent {
  GlobalPosition position;
  StreamVersion version;
  int64_t timestamp_us = 0;
  Uuid id;
  Uuid correlation_id;
  Uuid causation_id;
  std::string_view stream_type;
  std::string_view stream_id;
  std::string_view type;
  std::string_view tenant;
  std::string_view metadata;
  std::string_view payload;

  std::string stream_name() const;  // "<stream_type>-<stream_id>"
};

}  // namespace eventsource
