// RepositoryCore (repository.h): the non-template part of every
// AggregateRepository: reading a stream into an aggregate, from a snapshot
// when one is usable, tenant checks, saving with stamps, publishing,
// snapshot strategy, spans, counters and log lines.
#include "eventsource/repository.h"

#include <fmt/format.h>

#include <array>
#include <exception>

#include "clock.h"

namespace eventsource {
namespace {

// Runs user code (a publisher) and turns what it throws into a message.
template <class Fn>
std::string run_guarded(Fn&& fn) {
  try {
    fn();
    return {};
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace

SaveContext SaveContext::caused_by(const EventRecord& prior) {
  SaveContext c;
  c.causation_id = prior.id;
  c.correlation_id = prior.correlation_id.is_nil() ? prior.id : prior.correlation_id;
  return c;
}

SaveContext SaveContext::caused_by(const StoredEvent& prior) { return caused_by(prior.view()); }

SaveContext SaveContext::from_command(const Uuid& command_id, const Uuid& correlation_id) {
  SaveContext c;
  c.causation_id = command_id;
  c.correlation_id = correlation_id.is_nil() ? command_id : correlation_id;
  return c;
}

RepositoryCore::RepositoryCore(EventStore& store, std::string aggregate_type,
                               RepositoryOptions options)
    : store_(store), type_(std::move(aggregate_type)), options_(std::move(options)) {}

Status RepositoryCore::not_found(const std::string& id) const {
  return Status(
      Code::kNotFound,
      fmt::format(
          "aggregate {} has no events{}; load_or_create makes a new one", stream(id).name(),
          options_.tenant ? fmt::format(" for tenant \"{}\"", *options_.tenant) : std::string()));
}

Status RepositoryCore::wrap(const std::string& id, std::string_view what,
                            const Status& cause) const {
  Status s(cause.code(),
           fmt::format("{} of aggregate {}: {}", what, stream(id).name(), cause.message()));
  s.with_actual_version(cause.actual_version()).with_expected_version(cause.expected_version());
  s.with_location(cause.segment(), cause.offset()).with_errno(cause.sys_errno());
  return s;
}

Status RepositoryCore::check_tenant(const std::string& id, const EventRecord& e) const {
  if (!options_.tenant || e.tenant == *options_.tenant) return Status();
  // Refused like a missing aggregate: another tenant's data is not named.
  return not_found(id);
}

Result<StreamVersion> RepositoryCore::load(const std::string& id, const LoadRequest& request,
                                           const Replay& replay) const {
  Span span(options_.observability.tracer, span_names::kRepositoryLoad);
  span.set_attribute("stream", stream(id).name());
  Metrics* metrics = options_.observability.metrics;
  const StreamId st = stream(id);
  StreamVersion reached = request.after;
  bool tenant_checked = request.after.value > 0;  // a cached aggregate passed the check

  // The newest usable snapshot, when on and not time travelling.
  if (options_.snapshots != nullptr && request.use_snapshot && request.after.value == 0) {
    Result<std::optional<SnapshotRecord>> snap = options_.snapshots->get(st);
    Metrics::SnapshotMiss miss = Metrics::SnapshotMiss::kNone;
    bool hit = false;
    if (!snap.ok()) {
      miss = Metrics::SnapshotMiss::kDecode;
      log_to(
          options_.observability.log, LogLevel::kWarn, "snapshot unreadable, replaying",
          std::array{LogField{"stream", st.name()}, LogField{"error", snap.status().to_string()}});
    } else if (*snap && (*snap)->schema_version != options_.state_schema_version) {
      miss = Metrics::SnapshotMiss::kSchema;
    } else if (*snap) {
      const Status restored = replay.restore((*snap)->state, (*snap)->version);
      hit = restored.ok();
      if (hit) {
        reached = (*snap)->version;
      } else {
        miss = Metrics::SnapshotMiss::kDecode;
        replay.reset();
        log_to(options_.observability.log, LogLevel::kWarn, "snapshot does not decode, replaying",
               std::array{LogField{"stream", st.name()}, LogField{"error", restored.to_string()}});
      }
    }
    if (metrics) hit ? metrics->count_snapshot_hit() : metrics->count_snapshot_miss(miss);
    span.set_attribute("snapshot", hit ? "hit" : "miss");
  }

  // A tenant-scoped load from a snapshot still checks whose stream it is.
  if (options_.tenant && !tenant_checked && reached.value > 0) {
    Status owner;
    EVENTSOURCE_RETURN_IF_ERROR(store_.read_stream(st, {.max_count = 1}, [&](const EventRecord& e) {
      owner = check_tenant(id, e);
      return false;
    }));
    EVENTSOURCE_RETURN_IF_ERROR(owner);
    tenant_checked = true;
  }

  StreamReadOptions read;
  read.from = StreamVersion(reached.value + 1);
  read.to = request.up_to;
  if (request.up_to.value != 0 && request.up_to <= reached) read.max_count = 0;
  Status failed;
  Status s = store_.read_stream(st, read, [&](const EventRecord& e) {
    if (request.as_of_us != 0 && e.timestamp_us > request.as_of_us) return false;
    if (!tenant_checked) {
      failed = check_tenant(id, e);
      if (!failed.ok()) return false;
      tenant_checked = true;
    }
    failed = replay.apply(e);
    if (!failed.ok()) {
      failed = Status(failed.code(),
                      fmt::format("event {} at version {} (position {}) does not decode: {}",
                                  e.type, e.version.value, e.position.value, failed.message()));
      return false;
    }
    reached = e.version;
    return true;
  });
  if (s.ok()) s = std::move(failed);
  if (s.ok() && request.after.value == 0 && reached.value > 0 && read.from.value > 1) {
    // Loaded from a snapshot: the stream must hold at least its version.
    Result<StreamVersion> v = store_.stream_version(st);
    if (!v.ok())
      s = v.take_status();
    else if (*v < reached)
      s = corruption(fmt::format("the snapshot is at version {}, but the stream has {} events",
                                 reached.value, v->value),
                     -1, -1);
  }
  if (!s.ok()) {
    Status w = wrap(id, "load", s);
    span.record_error(w.to_string());
    return w;
  }
  span.set_attribute("version", static_cast<int64_t>(reached.value));
  return reached;
}

Result<bool> RepositoryCore::exists(const std::string& id) const {
  bool found = false;
  Status owner;
  EVENTSOURCE_RETURN_IF_ERROR(
      store_.read_stream(stream(id), {.max_count = 1}, [&](const EventRecord& e) {
        owner = check_tenant(id, e);
        found = owner.ok();
        return false;
      }));
  return found;
}

Result<AppendResult> RepositoryCore::save(const std::string& id, StreamVersion expected,
                                          std::vector<NewEvent> events,
                                          const SaveContext& context) {
  Span span(options_.observability.tracer, span_names::kRepositorySave);
  const StreamId st = stream(id);
  span.set_attribute("stream", st.name());
  span.set_attribute("events", static_cast<int64_t>(events.size()));
  if (events.empty()) {
    AppendResult none;
    none.version = expected;
    return none;
  }
  // Stamped here, not by the store, so the publisher sees what is stored.
  const int64_t now = context.timestamp_us != 0
                          ? context.timestamp_us
                          : std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  for (NewEvent& e : events) {
    if (options_.tenant) e.tenant = *options_.tenant;
    e.actor = context.actor;
    e.correlation_id = context.correlation_id;
    e.causation_id = context.causation_id;
    e.metadata = context.metadata;
    e.timestamp_us = now;
    if (e.id.is_nil()) e.id = Uuid::random();  // known ids: published as stored
  }
  // Without a publisher nothing reads the events after the append: let the
  // store take their bytes.
  Result<AppendResult> r =
      options_.publisher
          ? store_.append_events(st, ExpectedVersion::exact(expected), events)
          : store_.append_events(st, ExpectedVersion::exact(expected), std::move(events));
  if (!r.ok()) {
    Status w = wrap(id, "save", r.status());
    span.record_error(w.to_string());
    return w;
  }
  if (options_.publisher) {
    std::vector<StoredEvent> stored(events.size());
    for (size_t i = 0; i < events.size(); ++i) {
      const NewEvent& n = events[i];
      StoredEvent& e = stored[i];
      e.position = GlobalPosition(r->first_position.value + i);
      e.version = StreamVersion(expected.value + 1 + i);
      e.timestamp_us = n.timestamp_us;
      e.schema_version = n.schema_version;
      e.id = n.id;
      e.correlation_id = n.correlation_id;
      e.causation_id = n.causation_id;
      e.stream = st;
      e.type = n.type;
      e.tenant = n.tenant;
      e.actor = n.actor;
      e.metadata = n.metadata;
      e.payload = n.payload;
    }
    const std::string thrown = run_guarded([&] { options_.publisher(stored); });
    if (!thrown.empty())
      log_to(options_.observability.log, LogLevel::kError, "publisher threw; the save stands",
             std::array{LogField{"stream", st.name()}, LogField{"error", thrown}});
  }
  span.set_attribute("version", static_cast<int64_t>(r->version.value));
  return r;
}

void RepositoryCore::maybe_snapshot(const std::string& id, StreamVersion before,
                                    StreamVersion after,
                                    const std::function<Result<std::string>()>& encode_state) {
  if (options_.snapshots == nullptr || after <= before) return;
  const uint64_t every = options_.snapshot_every;
  bool due = every > 0 && after.value / every > before.value / every;
  std::string thrown;
  if (!due && options_.snapshot_when)
    thrown = run_guarded([&] { due = options_.snapshot_when(before, after); });
  Status s;
  if (!thrown.empty()) {
    s = invalid_argument("snapshot_when threw: " + thrown);
  } else if (due) {
    Result<std::string> bytes = invalid_argument("not encoded");
    thrown = run_guarded([&] { bytes = encode_state(); });
    if (!thrown.empty())
      s = invalid_argument("the state codec threw: " + thrown);
    else if (!bytes.ok())
      s = bytes.take_status();
    else
      s = options_.snapshots->save(
          SnapshotRecord{stream(id), after, options_.state_schema_version, 0, std::move(*bytes)});
  }
  if (!s.ok())
    log_to(options_.observability.log, LogLevel::kWarn, "snapshot not taken; the save stands",
           std::array{LogField{"stream", stream(id).name()}, LogField{"error", s.to_string()}});
}

}  // namespace eventsource
