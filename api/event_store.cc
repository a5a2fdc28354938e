// The EventStore's public calls: the argument checks every backend shares,
// spans and counters, and the boundary that turns a callback's exception
// into an error (event_store.h).
#include "eventsource/event_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <unordered_set>

#include "envelope.h"

namespace eventsource {
namespace {

struct UuidHash {
  size_t operator()(const Uuid& u) const {
    uint64_t a, b;
    std::memcpy(&a, u.bytes.data(), 8);
    std::memcpy(&b, u.bytes.data() + 8, 8);
    return a ^ (b * 0x9e3779b97f4a7c15ull);
  }
};

// Wraps a user callback: an exception stops the read and becomes `*error`.
RecordCallback guarded(const RecordCallback& fn, std::string_view what, Status* error) {
  return [&fn, what, error](const EventRecord& e) {
    try {
      return fn(e);
    } catch (const std::exception& ex) {
      *error = invalid_argument(fmt::format("{}: the callback threw at position {} ({}): {}", what,
                                            e.position.value, e.type, ex.what()));
    } catch (...) {
      *error = invalid_argument(fmt::format("{}: the callback threw at position {} ({})", what,
                                            e.position.value, e.type));
    }
    return false;
  };
}

int64_t expected_number(ExpectedVersion expected) {
  switch (expected.kind()) {
    case ExpectedVersion::Kind::kExact:
      return static_cast<int64_t>(expected.version().value);
    case ExpectedVersion::Kind::kNoStream:
      return 0;
    default:
      return -1;
  }
}

template <class Read>
Status counted_read(const Observability& obs, std::string_view what, const RecordCallback& fn,
                    Read&& read) {
  Span span(obs.tracer, span_names::kGetEvents);
  span.set_attribute("read", what);
  uint64_t events = 0, bytes = 0;
  Status thrown;
  const RecordCallback inner = guarded(fn, what, &thrown);
  Status s = read([&](const EventRecord& e) {
    ++events;
    bytes += e.payload.size() + e.metadata.size();
    return inner(e);
  });
  if (s.ok() && !thrown.ok()) s = std::move(thrown);
  if (obs.metrics) obs.metrics->count_read(events, bytes);
  span.set_attribute("events", static_cast<int64_t>(events));
  if (!s.ok()) span.record_error(s.to_string());
  return s;
}

}  // namespace

struct EventStore::AppendSignal {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t appends = 0;  // bumped by every append while someone waits
  uint64_t wakes = 0;    // bumped by wake_waiters
  std::atomic<int> waiters{0};
};

EventStore::EventStore(Observability obs)
    : obs_(std::move(obs)), signal_(std::make_unique<AppendSignal>()) {}

EventStore::~EventStore() = default;

Result<GlobalPosition> EventStore::wait_for_events(GlobalPosition after,
                                                   std::chrono::milliseconds timeout,
                                                   std::chrono::milliseconds poll) const {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + timeout;
  poll = std::max(poll, std::chrono::milliseconds(1));
  AppendSignal& sig = *signal_;
  sig.waiters.fetch_add(1);
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { n.fetch_sub(1); }
  } leave{sig.waiters};
  uint64_t wakes = 0;
  {
    std::lock_guard lock(sig.mu);
    wakes = sig.wakes;
  }
  while (true) {
    // Registered as a waiter before looking: an append after this look
    // bumps `appends` and wakes the wait below.
    uint64_t appends = 0;
    {
      std::lock_guard lock(sig.mu);
      appends = sig.appends;
      if (sig.wakes != wakes) return do_refresh();
    }
    Result<GlobalPosition> head = do_refresh();
    if (!head.ok() || head->value > after.value) return head;
    const Clock::time_point now = Clock::now();
    if (now >= deadline) return head;
    std::unique_lock lock(sig.mu);
    sig.cv.wait_until(lock, std::min(deadline, now + poll),
                      [&] { return sig.appends != appends || sig.wakes != wakes; });
  }
}

void EventStore::wake_waiters() const {
  AppendSignal& sig = *signal_;
  {
    std::lock_guard lock(sig.mu);
    ++sig.wakes;
  }
  sig.cv.notify_all();
}

StoredEvent EventRecord::to_stored() const {
  StoredEvent s;
  copy_to(s);
  return s;
}

void EventRecord::copy_to(StoredEvent& s) const {
  s.position = position;
  s.version = version;
  s.timestamp_us = timestamp_us;
  s.schema_version = schema_version;
  s.id = id;
  s.correlation_id = correlation_id;
  s.causation_id = causation_id;
  s.stream.type.assign(stream_type);
  s.stream.id.assign(stream_id);
  s.type.assign(type);
  s.tenant.assign(tenant);
  s.actor.assign(actor);
  s.metadata.assign(metadata);
  s.payload.assign(payload);
}

EventRecord StoredEvent::view() const {
  EventRecord r;
  r.position = position;
  r.version = version;
  r.timestamp_us = timestamp_us;
  r.schema_version = schema_version;
  r.id = id;
  r.correlation_id = correlation_id;
  r.causation_id = causation_id;
  r.stream_type = stream.type;
  r.stream_id = stream.id;
  r.type = type;
  r.tenant = tenant;
  r.actor = actor;
  r.metadata = metadata;
  r.payload = payload;
  return r;
}

Status check_append(const StreamId& stream, std::span<const NewEvent> events) {
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  if (events.empty() || events.size() > kMaxBatchEvents)
    return invalid_argument(fmt::format("stream {}: a batch holds 1..{} events, got {}",
                                        stream.name(), kMaxBatchEvents, events.size()));
  std::unordered_set<Uuid, UuidHash> ids;
  for (size_t i = 0; i < events.size(); ++i) {
    const NewEvent& e = events[i];
    auto bad = [&](std::string_view why) {
      return invalid_argument(
          fmt::format("stream {}: event {} of the batch ({}): {}", stream.name(), i, e.type, why));
    };
    if (e.type.empty() || e.type.size() > 255) return bad("the type must be 1..255 bytes");
    if (e.tenant.size() > 255) return bad("the tenant must be 0..255 bytes");
    if (e.schema_version == 0) return bad("schema versions start at 1");
    if (e.actor.size() > 255) return bad("the actor must be 0..255 bytes");
    const Status meta = api_internal::check_metadata(e.metadata);
    if (!meta.ok()) return bad(meta.message());
    if (!e.id.is_nil() && !ids.insert(e.id).second)
      return bad(fmt::format("id {} is used twice in the batch", e.id.to_string()));
  }
  return Status();
}

bool matches(const AllReadOptions& o, const EventRecord& e) {
  auto any_of = [](const std::vector<std::string>& set, std::string_view v) {
    return set.empty() || std::find(set.begin(), set.end(), v) != set.end();
  };
  return any_of(o.event_types, e.type) && any_of(o.stream_types, e.stream_type) &&
         (!o.tenant || *o.tenant == e.tenant) && e.timestamp_us >= o.from_time_us;
}

template <class Write>
Result<AppendResult> EventStore::checked_append(const StreamId& stream, ExpectedVersion expected,
                                                std::span<const NewEvent> events, Write&& write) {
  Span span(obs_.tracer, span_names::kAppendEvents);
  if (span.recording()) {
    span.set_attribute("stream", stream.name());
    span.set_attribute("events", static_cast<int64_t>(events.size()));
  }
  Status s = check_append(stream, events);
  if (s.ok()) {
    // Counted before the write, which may take the events' bytes.
    uint64_t bytes = 0;
    if (obs_.metrics)
      for (const NewEvent& e : events) bytes += e.payload.size() + e.metadata.size();
    const size_t n = events.size();
    Result<AppendResult> r = write();
    if (r.ok()) {
      if (obs_.metrics && !r->deduplicated) obs_.metrics->count_append(n, bytes);
      if (signal_->waiters.load() > 0 && !r->deduplicated) {
        {
          std::lock_guard lock(signal_->mu);
          ++signal_->appends;
        }
        signal_->cv.notify_all();
      }
      span.set_attribute("position", static_cast<int64_t>(r->last_position.value));
      return r;
    }
    s = r.take_status();
  }
  if (s.code() == Code::kConflict) {
    s.with_expected_version(expected_number(expected));
    if (obs_.metrics) obs_.metrics->count_conflict();
  }
  span.record_error(s.to_string());
  log_to(
      obs_.log, LogLevel::kWarn, "append failed",
      std::array<LogField, 2>{LogField{"stream", stream.name()}, LogField{"error", s.to_string()}});
  return s;
}

Result<AppendResult> EventStore::append_events(const StreamId& stream, ExpectedVersion expected,
                                               std::span<const NewEvent> events) {
  return checked_append(stream, expected, events,
                        [&] { return do_append(stream, expected, events); });
}

Result<AppendResult> EventStore::append_events(const StreamId& stream, ExpectedVersion expected,
                                               std::vector<NewEvent>&& events) {
  return checked_append(stream, expected, events,
                        [&] { return do_append_owned(stream, expected, events); });
}

Status EventStore::read_stream(const StreamId& stream, const StreamReadOptions& options,
                               const RecordCallback& fn) const {
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  const std::string what = fmt::format("read of stream {}", stream.name());
  return counted_read(obs_, what, fn, [&](const RecordCallback& inner) {
    return do_read_stream(stream, options, inner);
  });
}

Status EventStore::read_all(const AllReadOptions& options, const RecordCallback& fn) const {
  const std::string what = fmt::format("read of all events from position {}", options.from.value);
  return counted_read(obs_, what, fn,
                      [&](const RecordCallback& inner) { return do_read_all(options, inner); });
}

Status EventStore::read_category(std::string_view stream_type, const CategoryReadOptions& options,
                                 const RecordCallback& fn) const {
  if (stream_type.empty())
    return invalid_argument("read_category: the stream type must not be empty");
  AllReadOptions all;
  all.from = options.from;
  all.max_count = options.max_count;
  all.stream_types = {std::string(stream_type)};
  all.tenant = options.tenant;
  all.from_time_us = options.from_time_us;
  return read_all(all, fn);
}

Result<std::vector<StoredEvent>> EventStore::get_events(const StreamId& stream,
                                                        const StreamReadOptions& options) const {
  std::vector<StoredEvent> out;
  EVENTSOURCE_RETURN_IF_ERROR(read_stream(stream, options, [&](const EventRecord& e) {
    out.push_back(e.to_stored());
    return true;
  }));
  return out;
}

Result<std::vector<StoredEvent>> EventStore::get_all(const AllReadOptions& options) const {
  std::vector<StoredEvent> out;
  EVENTSOURCE_RETURN_IF_ERROR(read_all(options, [&](const EventRecord& e) {
    out.push_back(e.to_stored());
    return true;
  }));
  return out;
}

Result<bool> EventStore::event_exists(const Uuid& id) const { return do_event_exists(id); }

Result<GlobalPosition> EventStore::current_position() const { return do_current_position(); }

Result<StreamVersion> EventStore::stream_version(const StreamId& stream) const {
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  return do_stream_version(stream);
}

}  // namespace eventsource
