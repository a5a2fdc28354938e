// The EventStore interface: what the repository, projections and apps use
// to append and read events, whichever backend holds them. Three backends
// implement it and pass one conformance suite (tests/api/conformance_test.cc):
//   EngineEventStore   (engine_event_store.h)  the file engine, the default
//   InMemoryEventStore (memory_event_store.h)  for tests, no I/O
//   SQLiteEventStore   (sqlite_event_store.h)  an event table in SQLite
//
// The envelope: every stored event carries its id, type, schema version,
// stream (type + id), stream version, global position, tenant, time,
// correlation and causation ids, actor and user metadata. Positions are
// 1-based and dense in every backend; versions are 1-based and dense per
// stream.
//
// The rules every backend shares (the public calls check them before a
// backend sees the call, so they cannot drift):
//  - a batch holds 1 .. kMaxBatchEvents events, appended all-or-nothing;
//  - the expected version is checked against the stream's current version
//    (kConflict: actual_version() and expected_version() carry both);
//  - event ids are unique in the store. A batch whose ids are all stored,
//    in this stream at consecutive versions in batch order, is an
//    idempotent retry when the expected version accepts the version before
//    them: nothing is written and the result has deduplicated = true. Any
//    other reuse of a stored id is kDuplicateEvent, and nothing is written.
//  - a tenant-filtered read returns that tenant's events only.
//
// Errors are values; an exception thrown by a callback is caught at this
// boundary and returned as kInvalidArgument naming the read. Thread safety:
// every backend is safe for concurrent use; appends to one stream from
// several threads serialize, and exactly one of two appends expecting the
// same version wins.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eventsource/observability.h"
#include "eventsource/status.h"
#include "eventsource/store.h"
#include "eventsource/types.h"

namespace eventsource {

// The most events one append may carry (the engine's frame limit, applied to
// every backend alike).
inline constexpr size_t kMaxBatchEvents = 32767;

// One event to append. The type's codec fills type, schema_version and
// payload (events.h); the rest is the envelope.
struct NewEvent {
  std::string type;             // 1..255 bytes, e.g. "OrderPlaced"
  std::string payload;          // the encoded event (JSON by default)
  uint32_t schema_version = 1;  // the payload's schema version (>= 1)
  Uuid id;                      // nil: a random v4 id is generated
  std::string tenant;           // 0..255 bytes; empty = no tenant
  int64_t timestamp_us = 0;     // microseconds since the Unix epoch; 0: now
  Uuid correlation_id;          // nil = none
  Uuid causation_id;            // nil = none
  std::string actor;            // who caused it (user, service); empty = unknown
  std::string metadata;         // user metadata: a JSON object's text, or empty
};

struct StoredEvent;

// A stored event as a read delivers it. The views are valid during the
// callback only; to_stored() copies it out.
struct EventRecord {
  GlobalPosition position;
  StreamVersion version;
  int64_t timestamp_us = 0;
  uint32_t schema_version = 1;
  Uuid id;
  Uuid correlation_id;
  Uuid causation_id;
  std::string_view stream_type;
  std::string_view stream_id;
  std::string_view type;
  std::string_view tenant;
  std::string_view actor;
  std::string_view metadata;  // a JSON object's text, or empty
  std::string_view payload;

  StreamId stream() const { return StreamId{std::string(stream_type), std::string(stream_id)}; }
  StoredEvent to_stored() const;
  // Copies into `out`, reusing the capacity of its strings.
  void copy_to(StoredEvent& out) const;
};

// An EventRecord that owns its bytes.
struct StoredEvent {
  GlobalPosition position;
  StreamVersion version;
  int64_t timestamp_us = 0;
  uint32_t schema_version = 1;
  Uuid id;
  Uuid correlation_id;
  Uuid causation_id;
  StreamId stream;
  std::string type;
  std::string tenant;
  std::string actor;
  std::string metadata;
  std::string payload;

  EventRecord view() const;
  bool operator==(const StoredEvent&) const = default;
};

// from_time_us for "any time" (events may carry times before 1970).
inline constexpr int64_t kAnyTime = INT64_MIN;

// Return true to go on, false to stop the read early.
using RecordCallback = std::function<bool(const EventRecord&)>;

// What read_stream reads. Example: {.from = StreamVersion(10), .max_count = 5}.
struct StreamReadOptions {
  // Forward: the first version (0 or 1 = the first event). Backward: the
  // version to read back from (0, or past the end = the last event).
  StreamVersion from = {};
  // Forward: the last version to read (0 = no bound). Backward: the lowest
  // version to read (0 = down to the first).
  StreamVersion to = {};
  uint64_t max_count = kNoLimit;
  ReadDirection direction = ReadDirection::kForward;
};

// What read_all reads, in global order. Empty filters match everything; a
// filter with several values matches any of them.
struct AllReadOptions {
  GlobalPosition from = {};       // the first position (0 or 1 = the first event)
  uint64_t max_count = kNoLimit;  // at most this many events that pass the filters
  std::vector<std::string> event_types = {};
  std::vector<std::string> stream_types = {};
  std::optional<std::string> tenant = {};  // "" = events without a tenant
  int64_t from_time_us = kAnyTime;         // only events stamped at or after this time
};

// What read_category reads: the events of every stream of one type.
struct CategoryReadOptions {
  GlobalPosition from = {};
  uint64_t max_count = kNoLimit;
  std::optional<std::string> tenant = {};
  int64_t from_time_us = kAnyTime;
};

class EventStore {
 public:
  virtual ~EventStore();
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  // "engine", "memory" or "sqlite".
  virtual std::string_view backend() const = 0;

  // Appends `events` to `stream` if `expected` accepts its current version.
  // Span event_store.append_events. Errors: kInvalidArgument (empty or
  // oversized batch, a bad stream name, type or metadata, two events of the
  // batch with one id), kConflict, kDuplicateEvent, kClosed, kIoError.
  Result<AppendResult> append_events(const StreamId& stream, ExpectedVersion expected,
                                     std::span<const NewEvent> events);
  // The same, taking the events: a backend may move their bytes instead of
  // copying them (the engine's does). `events` is left valid but unspecified.
  Result<AppendResult> append_events(const StreamId& stream, ExpectedVersion expected,
                                     std::vector<NewEvent>&& events);

  // Calls `fn` for `stream`'s events that `options` select, in version order
  // (or reverse). A missing stream reads as empty. Span event_store.get_events.
  Status read_stream(const StreamId& stream, const StreamReadOptions& options,
                     const RecordCallback& fn) const;
  // Calls `fn` for the events that `options` select, in global order.
  Status read_all(const AllReadOptions& options, const RecordCallback& fn) const;
  // The events of every stream of `stream_type`, in global order.
  Status read_category(std::string_view stream_type, const CategoryReadOptions& options,
                       const RecordCallback& fn) const;

  // The same reads, copied out.
  Result<std::vector<StoredEvent>> get_events(const StreamId& stream,
                                              const StreamReadOptions& options = {}) const;
  Result<std::vector<StoredEvent>> get_all(const AllReadOptions& options = {}) const;

  Result<bool> event_exists(const Uuid& id) const;
  // The last position stored (0 = empty).
  Result<GlobalPosition> current_position() const;
  // The stream's version (0 = no such stream).
  Result<StreamVersion> stream_version(const StreamId& stream) const;

  // Waits until the store holds an event past `after`, then returns the
  // last position. Returns earlier, with the last position (which may be
  // <= after), when `timeout` passes or wake_waiters() is called. Appends
  // through this object wake it at once; appends made elsewhere (another
  // process, another handle on the same file) are seen by looking every
  // `poll` (the engine's read-only handles refresh then). Errors: kClosed.
  Result<GlobalPosition> wait_for_events(
      GlobalPosition after, std::chrono::milliseconds timeout,
      std::chrono::milliseconds poll = std::chrono::milliseconds(2)) const;
  // Makes every wait_for_events in progress return now.
  void wake_waiters() const;

  // Releases the backend's files; later calls return kClosed. Idempotent.
  virtual Status close() = 0;

  const Observability& observability() const { return obs_; }

 protected:
  explicit EventStore(Observability obs);

  // The backend's part. The public calls have checked the arguments, and
  // read_all's filters are the backend's to apply (all of them, exactly).
  virtual Result<AppendResult> do_append(const StreamId& stream, ExpectedVersion expected,
                                         std::span<const NewEvent> events) = 0;
  // May take the events' bytes; by default the same as do_append.
  virtual Result<AppendResult> do_append_owned(const StreamId& stream, ExpectedVersion expected,
                                               std::vector<NewEvent>& events) {
    return do_append(stream, expected, events);
  }
  virtual Status do_read_stream(const StreamId& stream, const StreamReadOptions& options,
                                const RecordCallback& fn) const = 0;
  virtual Status do_read_all(const AllReadOptions& options, const RecordCallback& fn) const = 0;
  virtual Result<bool> do_event_exists(const Uuid& id) const = 0;
  virtual Result<GlobalPosition> do_current_position() const = 0;
  virtual Result<StreamVersion> do_stream_version(const StreamId& stream) const = 0;
  // The last position, after picking up appends made elsewhere (the
  // engine's read-only handles refresh). By default do_current_position.
  virtual Result<GlobalPosition> do_refresh() const { return do_current_position(); }

 private:
  struct AppendSignal;
  // The checks, spans and counters around one append; `write` is do_append
  // or do_append_owned.
  template <class Write>
  Result<AppendResult> checked_append(const StreamId& stream, ExpectedVersion expected,
                                      std::span<const NewEvent> events, Write&& write);

  Observability obs_;
  std::unique_ptr<AppendSignal> signal_;  // wait_for_events' wake-ups
};

// Checks one append's arguments as every backend must (exposed for the
// backends and their tests): batch size, stream name, types, tenants,
// schema versions, metadata, ids unique within the batch.
Status check_append(const StreamId& stream, std::span<const NewEvent> events);

// Whether `e` passes `options`' filters (type, stream type, tenant, time);
// positions and counts are the caller's.
bool matches(const AllReadOptions& options, const EventRecord& e);

}  // namespace eventsource
