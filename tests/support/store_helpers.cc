// Owned events, read-everything wrappers and builders shared by the engine
// tests.
#include "tests/support/store_helpers.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <utility>

namespace eventsource::testing {
namespace {

std::string abbreviate(std::string_view s) {
  constexpr size_t kMax = 48;
  std::string out;
  for (char c : s.substr(0, kMax)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '.';
  }
  if (s.size() > kMax) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace

OwnedEvent OwnedEvent::from(const RecordedEvent& e) {
  OwnedEvent o;
  o.position = e.position;
  o.version = e.version;
  o.timestamp_us = e.timestamp_us;
  o.id = e.id;
  o.correlation_id = e.correlation_id;
  o.causation_id = e.causation_id;
  o.stream_type = std::string(e.stream_type);
  o.stream_id = std::string(e.stream_id);
  o.type = std::string(e.type);
  o.tenant = std::string(e.tenant);
  o.metadata = std::string(e.metadata);
  o.payload = std::string(e.payload);
  return o;
}

std::string OwnedEvent::describe() const {
  return "{pos " + std::to_string(position.value) + " " + stream_type + "-" + stream_id + "@" +
         std::to_string(version.value) + " type " + type + " tenant '" + tenant + "' id " +
         id.to_string() + " ts " + std::to_string(timestamp_us) + " meta '" + abbreviate(metadata) +
         "' payload '" + abbreviate(payload) + "'}";
}

ReadResult read_all_events(const Store& store, GlobalPosition from, const ReadFilter& filter,
                           uint64_t max_count) {
  ReadResult r;
  r.status = store.read_all({.from = from, .max_count = max_count, .filter = filter},
                            [&](const RecordedEvent& e) {
                              r.events.push_back(OwnedEvent::from(e));
                              return true;
                            });
  return r;
}

ReadResult read_stream_events(const Store& store, const StreamId& stream, StreamVersion from,
                              uint64_t max_count, ReadDirection direction) {
  ReadResult r;
  r.status =
      store.read_stream(stream, {.from = from, .max_count = max_count, .direction = direction},
                        [&](const RecordedEvent& e) {
                          r.events.push_back(OwnedEvent::from(e));
                          return true;
                        });
  return r;
}

Uuid make_uuid(uint64_t hi, uint64_t lo) {
  // The 6 version and variant bits go where they overwrite nothing: the
  // result is distinct for distinct (hi < 2^60, lo < 2^62). (Event ids are
  // unique in a store, so tests must not collide by accident.)
  Uuid u;
  for (int i = 0; i < 6; ++i) u.bytes[i] = static_cast<uint8_t>(hi >> (40 - 8 * i));
  u.bytes[6] = static_cast<uint8_t>(0x40 | ((hi >> 48) & 0x0f));  // version 4
  u.bytes[7] = static_cast<uint8_t>(hi >> 52);
  u.bytes[8] = static_cast<uint8_t>(0x80 | ((lo >> 56) & 0x3f));  // RFC 4122 variant
  for (int i = 9; i < 16; ++i) u.bytes[i] = static_cast<uint8_t>(lo >> (48 - 8 * (i - 9)));
  return u;
}

EventData make_event(std::string type, std::string payload, std::string metadata) {
  EventData e;
  e.type = std::move(type);
  e.payload = std::move(payload);
  e.metadata = std::move(metadata);
  return e;
}

StoreOptions small_store_options() {
  StoreOptions o;
  o.segment_size = kMiB;
  o.durability = Durability::kNone;
  o.checkpoint_interval_bytes = 0;
  return o;
}

std::unique_ptr<Store> open_or_fail(const std::string& path, const StoreOptions& options) {
  Result<std::unique_ptr<Store>> r = Store::open(path, options);
  INFO("Store::open(" << path << ") -> " << r.status().to_string());
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::string code_string(Code code) { return std::string(code_name(code)); }

bool mentions_offset(const std::string& message, int64_t offset) {
  char hex[32];
  char upper[32];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(offset));
  std::snprintf(upper, sizeof upper, "%llX", static_cast<unsigned long long>(offset));
  return message.find(std::to_string(offset)) != std::string::npos ||
         message.find(std::string("0x") + hex) != std::string::npos ||
         message.find(std::string("0x") + upper) != std::string::npos;
}

uint64_t seed_from_env_or_random() {
  if (const char* s = std::getenv("ES_TEST_SEED"); s != nullptr && *s != '\0') {
    return std::strtoull(s, nullptr, 0);
  }
  return (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

}  // namespace eventsource::testing
