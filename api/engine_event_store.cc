// EngineEventStore (engine_event_store.h): the EventStore calls mapped onto
// Store's, and the envelope's extra fields in and out of the record's
// metadata bytes (api/envelope.h).
#include "eventsource/engine_event_store.h"

#include <fmt/format.h>

#include "envelope.h"

namespace eventsource {
namespace {

// Turns the engine's events into EventRecords, decoding the envelope bytes.
// One per read: nested reads have their own decoder.
class RecordAdapter {
 public:
  RecordAdapter(const Store& store, const RecordCallback& fn) : store_(store), fn_(fn) {}

  bool operator()(const RecordedEvent& e) {
    EventRecord r;
    r.position = e.position;
    r.version = e.version;
    r.timestamp_us = e.timestamp_us;
    r.id = e.id;
    r.correlation_id = e.correlation_id;
    r.causation_id = e.causation_id;
    r.stream_type = e.stream_type;
    r.stream_id = e.stream_id;
    r.type = e.type;
    r.tenant = e.tenant;
    r.payload = e.payload;
    if (!e.metadata.empty()) {
      api_internal::EnvelopeFields f;
      Status s = decoder_.decode(e.metadata, &f);
      if (!s.ok()) {
        error_ = corruption(
            fmt::format("{}: event at position {} (stream {}-{}, type {}): {}", store_.path(),
                        e.position.value, e.stream_type, e.stream_id, e.type, s.message()),
            -1, -1);
        return false;
      }
      r.schema_version = f.schema_version;
      r.actor = f.actor;
      r.metadata = f.metadata;
    }
    return fn_(r);
  }

  // The read's status, or the envelope error that stopped it.
  Status finish(Status read) { return error_.ok() ? std::move(read) : std::move(error_); }

 private:
  const Store& store_;
  const RecordCallback& fn_;
  api_internal::EnvelopeDecoder decoder_;
  Status error_;
};

}  // namespace

Result<std::unique_ptr<EngineEventStore>> EngineEventStore::open(
    const std::string& path, const EngineEventStoreOptions& options) {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::open(path, options.store));
  return std::make_unique<EngineEventStore>(std::shared_ptr<Store>(std::move(store)),
                                            options.observability, options.store.durability);
}

EngineEventStore::EngineEventStore(std::shared_ptr<Store> store, Observability observability,
                                   Durability durability)
    : EventStore(std::move(observability)), store_(std::move(store)), durability_(durability) {}

EngineEventStore::~EngineEventStore() = default;

Status EngineEventStore::close() { return store_->close(); }

Status EngineEventStore::closed_error() const {
  return closed(fmt::format("{}: the event store is closed; open it again", store_->path()));
}

Result<AppendResult> EngineEventStore::do_append(const StreamId& stream, ExpectedVersion expected,
                                                 std::span<const NewEvent> events) {
  std::vector<EventData> data(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    const NewEvent& n = events[i];
    EventData& d = data[i];
    d.type = n.type;
    d.payload = n.payload;
    d.id = n.id;
    d.tenant = n.tenant;
    d.timestamp_us = n.timestamp_us;
    d.correlation_id = n.correlation_id;
    d.causation_id = n.causation_id;
    d.metadata = api_internal::encode_envelope(n.schema_version, n.actor, n.metadata);
  }
  return write(stream, expected, data);
}

Result<AppendResult> EngineEventStore::do_append_owned(const StreamId& stream,
                                                       ExpectedVersion expected,
                                                       std::vector<NewEvent>& events) {
  // The same, moving the strings: no copy of the payloads.
  std::vector<EventData> data(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    NewEvent& n = events[i];
    EventData& d = data[i];
    d.type = std::move(n.type);
    d.payload = std::move(n.payload);
    d.id = n.id;
    d.tenant = std::move(n.tenant);
    d.timestamp_us = n.timestamp_us;
    d.correlation_id = n.correlation_id;
    d.causation_id = n.causation_id;
    d.metadata = api_internal::encode_envelope(n.schema_version, n.actor, n.metadata);
  }
  return write(stream, expected, data);
}

Result<AppendResult> EngineEventStore::write(const StreamId& stream, ExpectedVersion expected,
                                             std::span<const EventData> data) {
  Result<AppendResult> r = store_->append(stream, expected, data);
  // A durable append returned after an fdatasync that covered it (shared
  // with other appends by group commit).
  if (r.ok() && durability_ != Durability::kNone && observability().metrics)
    observability().metrics->count_sync();
  return r;
}

Status EngineEventStore::do_read_stream(const StreamId& stream, const StreamReadOptions& o,
                                        const RecordCallback& fn) const {
  ReadStreamOptions engine;
  engine.from = o.from;
  engine.max_count = o.max_count;
  engine.direction = o.direction;
  const bool forward = o.direction == ReadDirection::kForward;
  // The engine reads open-ended; `to` stops it.
  const RecordCallback bounded = [&](const EventRecord& e) {
    if (o.to.value != 0 && (forward ? e.version > o.to : e.version < o.to)) return false;
    return fn(e);
  };
  RecordAdapter adapt(*store_, o.to.value == 0 ? fn : bounded);
  return adapt.finish(
      store_->read_stream(stream, engine, [&](const RecordedEvent& e) { return adapt(e); }));
}

Status EngineEventStore::do_read_all(const AllReadOptions& o, const RecordCallback& fn) const {
  ReadAllOptions engine;
  engine.from = o.from;
  engine.filter.event_types = o.event_types;
  engine.filter.tenant = o.tenant;
  // The engine filters one stream type; several, or a time, are filtered
  // here, and then the limit is counted here too.
  const bool engine_filters = o.stream_types.size() <= 1 && o.from_time_us == kAnyTime;
  if (o.stream_types.size() == 1) engine.filter.stream_type = o.stream_types.front();
  engine.max_count = engine_filters ? o.max_count : kNoLimit;
  uint64_t left = o.max_count;
  const RecordCallback filtered = [&](const EventRecord& e) {
    if (!matches(o, e)) return true;
    if (left == 0) return false;
    --left;
    return fn(e) && left > 0;
  };
  if (o.max_count == 0) return Status();
  RecordAdapter adapt(*store_, engine_filters ? fn : filtered);
  return adapt.finish(store_->read_all(engine, [&](const RecordedEvent& e) { return adapt(e); }));
}

Result<bool> EngineEventStore::do_event_exists(const Uuid& id) const {
  return store_->event_exists(id);
}

Result<GlobalPosition> EngineEventStore::do_current_position() const {
  GlobalPosition p = store_->committed_position();
  // The engine answers 0 once closed; the API says so.
  if (!store_->is_open()) return closed_error();
  return p;
}

Result<GlobalPosition> EngineEventStore::do_refresh() const {
  // Read-write: a no-op answering the committed position. Read-only: picks
  // up what the writer process committed since.
  Result<GlobalPosition> p = store_->refresh();
  if (!p.ok() && !store_->is_open()) return closed_error();
  return p;
}

Result<StreamVersion> EngineEventStore::do_stream_version(const StreamId& stream) const {
  StreamVersion v = store_->stream_version(stream);
  if (v.value == 0 && !store_->is_open()) return closed_error();
  return v;
}

}  // namespace eventsource
