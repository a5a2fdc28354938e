// Helpers for tests of engine::Store: owned copies of recorded events (the
// engine's views die with the callback), read-everything wrappers, event
// builders, assertion macros that print the Status, and doctest printers.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "eventsource/status.h"
#include "eventsource/store.h"
#include "eventsource/types.h"

namespace eventsource::testing {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();

// A RecordedEvent that owns its bytes.
struct OwnedEvent {
  GlobalPosition position;
  StreamVersion version;
  int64_t timestamp_us = 0;
  Uuid id;
  Uuid correlation_id;
  Uuid causation_id;
  std::string stream_type;
  std::string stream_id;
  std::string type;
  std::string tenant;
  std::string metadata;
  std::string payload;

  static OwnedEvent from(const RecordedEvent& e);
  StreamId stream() const { return StreamId{stream_type, stream_id}; }
  bool operator==(const OwnedEvent&) const = default;
  // One line for failure messages (long payloads are abbreviated).
  std::string describe() const;
};

// Everything read_all / read_stream deliver, with the call's Status. The
// events delivered before a failure are kept: tests check they are valid.
struct ReadResult {
  Status status;
  std::vector<OwnedEvent> events;
};
ReadResult read_all_events(const Store& store, GlobalPosition from = GlobalPosition(1),
                           const ReadFilter& filter = {}, uint64_t max_count = kUnlimited);
ReadResult read_stream_events(const Store& store, const StreamId& stream,
                              StreamVersion from = StreamVersion(1),
                              uint64_t max_count = kUnlimited,
                              ReadDirection direction = ReadDirection::kForward);

// A deterministic, non-nil, version-4-shaped UUID derived from two numbers,
// distinct for distinct (hi < 2^60, lo < 2^62).
Uuid make_uuid(uint64_t hi, uint64_t lo);

// An event with the given type and payload (everything else default).
EventData make_event(std::string type, std::string payload, std::string metadata = {});

// StoreOptions for tests: 1 MiB segments, no sync, no automatic checkpoint.
StoreOptions small_store_options();

// Opens or aborts the test case with the Status printed.
std::unique_ptr<Store> open_or_fail(const std::string& path, const StoreOptions& options);

inline const Status& status_of(const Status& s) { return s; }
template <class T>
const Status& status_of(const Result<T>& r) {
  return r.status();
}

std::string code_string(Code code);

// Whether `message` mentions file offset `offset`, in decimal or in hex.
bool mentions_offset(const std::string& message, int64_t offset);

// ES_TEST_SEED when set (to replay a failure), else a random seed; tests
// CAPTURE it so a failure prints the value to replay.
uint64_t seed_from_env_or_random();

}  // namespace eventsource::testing

// REQUIRE/CHECK that a Status or Result is ok, printing it when it is not.
#define EVENTSOURCE_REQUIRE_OK(expr)                                                \
  do {                                                                              \
    const auto& es_r_ = (expr);                                                     \
    const ::eventsource::Status& es_st_ = ::eventsource::testing::status_of(es_r_); \
    INFO(#expr " -> " << es_st_.to_string());                                       \
    REQUIRE(es_st_.ok());                                                           \
  } while (0)
#define EVENTSOURCE_CHECK_OK(expr)                                                  \
  do {                                                                              \
    const auto& es_r_ = (expr);                                                     \
    const ::eventsource::Status& es_st_ = ::eventsource::testing::status_of(es_r_); \
    INFO(#expr " -> " << es_st_.to_string());                                       \
    CHECK(es_st_.ok());                                                             \
  } while (0)
// CHECK that a Status or Result failed with `code`.
#define EVENTSOURCE_CHECK_CODE(expr, expected_code)                                 \
  do {                                                                              \
    const auto& es_r_ = (expr);                                                     \
    const ::eventsource::Status& es_st_ = ::eventsource::testing::status_of(es_r_); \
    INFO(#expr " -> " << es_st_.to_string());                                       \
    CHECK(es_st_.code() == (expected_code));                                        \
  } while (0)

namespace doctest {
template <class Tag>
struct StringMaker<eventsource::Strong<Tag>> {
  static String convert(const eventsource::Strong<Tag>& v) {
    return std::to_string(v.value).c_str();
  }
};
template <>
struct StringMaker<eventsource::Code> {
  static String convert(eventsource::Code c) {
    return eventsource::testing::code_string(c).c_str();
  }
};
template <>
struct StringMaker<eventsource::Uuid> {
  static String convert(const eventsource::Uuid& u) { return u.to_string().c_str(); }
};
template <>
struct StringMaker<eventsource::testing::OwnedEvent> {
  static String convert(const eventsource::testing::OwnedEvent& e) { return e.describe().c_str(); }
};
}  // namespace doctest
