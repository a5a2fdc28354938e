// UUIDs, stream names, expected-version rules and event helpers.
#include "eventsource/types.h"

#include <fmt/format.h>
#include <pthread.h>

#include <atomic>
#include <random>

namespace eventsource {

namespace {

// Bumped in the child of every fork(): a child inherits its parent's
// generators, and would draw exactly the ids the parent draws next.
std::atomic<uint64_t> fork_generation{0};

std::mt19937_64 seeded() {
  std::random_device rd;
  std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
  return std::mt19937_64(seq);
}

}  // namespace

Uuid Uuid::random() {
  static const bool at_fork = [] {
    pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1); });
    return true;
  }();
  (void)at_fork;
  thread_local std::mt19937_64 gen = seeded();
  thread_local uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  if (const uint64_t now = fork_generation.load(std::memory_order_relaxed); now != generation) {
    gen = seeded();
    generation = now;
  }
  Uuid u;
  uint64_t a = gen(), b = gen();
  for (int i = 0; i < 8; ++i) {
    u.bytes[i] = static_cast<uint8_t>(a >> (8 * i));
    u.bytes[8 + i] = static_cast<uint8_t>(b >> (8 * i));
  }
  u.bytes[6] = (u.bytes[6] & 0x0f) | 0x40;  // version 4
  u.bytes[8] = (u.bytes[8] & 0x3f) | 0x80;  // RFC 4122 variant
  return u;
}

std::optional<Uuid> Uuid::parse(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  Uuid u;
  size_t out = 0;
  for (size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = nibble(text[i]), lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    u.bytes[out++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return u;
}

std::string Uuid::to_string() const {
  const auto& b = bytes;
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:"
      "02x}{:02x}",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
      b[15]);
}

Result<StreamId> StreamId::parse(std::string_view name) {
  size_t dash = name.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == name.size())
    return invalid_argument(fmt::format(
        "stream name '{}' is not '<type>-<id>' (e.g. 'Order-42'): type and id must be non-empty",
        name));
  StreamId s{std::string(name.substr(0, dash)), std::string(name.substr(dash + 1))};
  EVENTSOURCE_RETURN_IF_ERROR(s.validate());
  return s;
}

Status StreamId::validate() const {
  if (type.empty() || type.size() > 255 || type.find('-') != std::string::npos)
    return invalid_argument(fmt::format(
        "stream type '{}' must be 1..255 bytes without '-' (the '-' separates type and id)", type));
  if (id.empty() || id.size() > 65535)
    return invalid_argument(
        fmt::format("stream id of type '{}' must be 1..65535 bytes (got {})", type, id.size()));
  return Status();
}

bool ExpectedVersion::accepts(StreamVersion current) const {
  switch (kind_) {
    case Kind::kAny:
      return true;
    case Kind::kNoStream:
      return current.value == 0;
    case Kind::kStreamExists:
      return current.value > 0;
    case Kind::kExact:
      return current.value == version_;
  }
  return false;
}

std::string ExpectedVersion::to_string() const {
  switch (kind_) {
    case Kind::kAny:
      return "any";
    case Kind::kNoStream:
      return "no stream";
    case Kind::kStreamExists:
      return "stream exists";
    case Kind::kExact:
      return fmt::format("version {}", version_);
  }
  return "?";
}

std::string RecordedEvent::stream_name() const {
  std::string s(stream_type);
  s += '-';
  s += stream_id;
  return s;
}

}  // namespace eventsource
