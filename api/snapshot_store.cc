// SnapshotStore's public calls (argument checks, spans) and its in-memory
// and engine stores (snapshot_store.h).
#include "eventsource/snapshot_store.h"

#include <fmt/format.h>

#include <chrono>

#include "clock.h"

namespace eventsource {

SnapshotStore::~SnapshotStore() = default;

Status SnapshotStore::save(const SnapshotRecord& snapshot) {
  Span span(obs_.tracer, span_names::kSnapshotSave);
  span.set_attribute("stream", snapshot.stream.name());
  span.set_attribute("version", static_cast<int64_t>(snapshot.version.value));
  Status s = snapshot.stream.validate();
  if (s.ok() && snapshot.version.value == 0)
    s = invalid_argument(
        fmt::format("snapshot of stream {}: the version must be >= 1", snapshot.stream.name()));
  if (s.ok()) {
    SnapshotRecord stamped = snapshot;
    if (stamped.timestamp_us == 0) stamped.timestamp_us = api_internal::now_us();
    s = do_save(stamped);
  }
  if (!s.ok()) span.record_error(s.to_string());
  return s;
}

Result<std::optional<SnapshotRecord>> SnapshotStore::get(const StreamId& stream) const {
  Span span(obs_.tracer, span_names::kSnapshotGet);
  span.set_attribute("stream", stream.name());
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  auto r = do_get(stream);
  if (!r.ok())
    span.record_error(r.status().to_string());
  else
    span.set_attribute("found", static_cast<int64_t>(r->has_value()));
  return r;
}

Result<uint64_t> SnapshotStore::prune(const StreamId& stream, StreamVersion keep_from) {
  EVENTSOURCE_RETURN_IF_ERROR(stream.validate());
  return do_prune(stream, keep_from);
}

InMemorySnapshotStore::InMemorySnapshotStore(Observability observability)
    : SnapshotStore(std::move(observability)) {}

Status InMemorySnapshotStore::do_save(const SnapshotRecord& snapshot) {
  std::lock_guard lock(mu_);
  snapshots_[snapshot.stream][snapshot.version.value] = snapshot;
  return Status();
}

Result<std::optional<SnapshotRecord>> InMemorySnapshotStore::do_get(const StreamId& stream) const {
  std::lock_guard lock(mu_);
  auto it = snapshots_.find(stream);
  if (it == snapshots_.end() || it->second.empty()) return std::optional<SnapshotRecord>();
  return std::optional(it->second.rbegin()->second);
}

Result<uint64_t> InMemorySnapshotStore::do_prune(const StreamId& stream, StreamVersion keep_from) {
  std::lock_guard lock(mu_);
  auto it = snapshots_.find(stream);
  if (it == snapshots_.end()) return uint64_t{0};
  auto& versions = it->second;
  const auto end = versions.lower_bound(keep_from.value);
  const uint64_t n = std::distance(versions.begin(), end);
  versions.erase(versions.begin(), end);
  return n;
}

EngineSnapshotStore::EngineSnapshotStore(std::shared_ptr<Store> store, Observability observability)
    : SnapshotStore(std::move(observability)), store_(std::move(store)) {}

Status EngineSnapshotStore::do_save(const SnapshotRecord& snapshot) {
  // The engine stamps its own time; timestamp_us is given back as stored.
  return store_->put_snapshot(snapshot.stream, snapshot.version, snapshot.schema_version,
                              snapshot.state);
}

Result<std::optional<SnapshotRecord>> EngineSnapshotStore::do_get(const StreamId& stream) const {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::optional<Snapshot> s, store_->latest_snapshot(stream));
  if (!s) return std::optional<SnapshotRecord>();
  return std::optional(
      SnapshotRecord{stream, s->version, s->schema_version, s->timestamp_us, std::move(s->bytes)});
}

Result<uint64_t> EngineSnapshotStore::do_prune(const StreamId& stream, StreamVersion keep_from) {
  return store_->prune_snapshots(stream, keep_from);
}

}  // namespace eventsource
