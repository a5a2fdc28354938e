// The storage backends esbench compares behind one small interface: the
// eventsource engine (engine_backend.cc) and SQLite as a yardstick
// (sqlite_backend.cc). Every call reports failure as an eventsource::Status.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "eventsource/options.h"
#include "eventsource/status.h"
#include "eventsource/types.h"

namespace esbench {

// One event to append: views into the caller's payload pool.
struct BenchEvent {
  std::string_view type;
  std::string_view payload;
};

// One event as read back; the views are valid only during the callback.
struct ReadEvent {
  uint64_t position = 0;
  uint64_t version = 0;
  std::string_view type;
  std::string_view payload;
  // Logical size of the record: payload, type, stream name, tenant, metadata
  // and 72 bytes of fixed fields (position, version, timestamp, three UUIDs).
  uint64_t record_bytes = 0;
};

// Return false to stop a read early.
using ReadFn = std::function<bool(const ReadEvent&)>;

inline constexpr uint64_t kFixedRecordBytes = 72;

// Implementations are safe for concurrent use once open (the SQLite backend
// serializes calls on one connection with a mutex).
class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;

  // Opens or creates the store kept in directory `dir` (which exists).
  virtual eventsource::Status open(const std::string& dir, bool read_only) = 0;
  virtual eventsource::Status close() = 0;

  // Appends `events` to `stream` if its current version is `expected_version`
  // (0 = the stream must not exist), all or nothing.
  virtual eventsource::Status append(const eventsource::StreamId& stream, uint64_t expected_version,
                                     std::span<const BenchEvent> events,
                                     eventsource::Durability durability) = 0;

  // Every event of `stream`, in version order.
  virtual eventsource::Status read_stream(const eventsource::StreamId& stream,
                                          const ReadFn& fn) = 0;

  // Up to `max_count` events from global position `from` (1 = first) in
  // global order; only events of type `type` unless it is empty.
  virtual eventsource::Status read_all(uint64_t from, std::string_view type, uint64_t max_count,
                                       const ReadFn& fn) = 0;

  // The last committed global position (= number of events).
  virtual eventsource::Result<uint64_t> last_position() = 0;

  // Bytes the stored events take, for bytes-per-event figures. Engine: the
  // frames in event segments (StoreStats::log_bytes), without preallocated
  // space, index or checkpoint. SQLite: the database file (page_count *
  // page_size), tables and indexes included.
  virtual eventsource::Result<uint64_t> stored_bytes() = 0;
};

std::unique_ptr<Backend> make_engine_backend();
// Frames of at least `min_bytes` are zstd-compressed in engine stores opened
// from now on (0 = off).
void set_engine_compression(uint32_t min_bytes);
std::unique_ptr<Backend> make_sqlite_backend();

}  // namespace esbench
