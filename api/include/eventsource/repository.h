// AggregateRepository: loads aggregates (aggregate.h) from an EventStore and
// saves what they raised, with optimistic locking, snapshots, an optional
// cache, tenant scoping and a publisher hook.
//
//   EventRegistry registry;  ... registry.add<OrderPlaced>("OrderPlaced"); ...
//   AggregateRepository<DeciderAggregate<OrderDecider>> orders(store, registry,
//       {.snapshots = &snapshot_store, .snapshot_every = 100});
//   auto order = orders.load_or_create("42");
//   Status s = order->handle(AddItem{"sku-1", 2});
//   auto saved = orders.save(*order);            // kConflict: someone saved first
//   auto done = orders.execute("42", [](auto& o) { return o.handle(Ship{}); });  // retries
//   conflicts
//
// Loading replays the aggregate's stream (aggregate type + id) through the
// registry, from the newest usable snapshot when snapshots are on. A
// snapshot is used only if its schema version is the repository's
// state_schema_version and it decodes; otherwise the load replays every
// event (never a wrong state) and the miss is counted by reason
// (observability.h). Events that no longer decode make the load fail, naming
// the type and position; a partly built aggregate is never returned.
//
// Saving appends the pending events at the version they were raised on
// (kConflict carries both versions; nothing is written then), publishes them
// to the publisher once stored (durable when the store's durability is),
// and takes a snapshot when the strategy says so. A failed snapshot never
// fails a save: it is logged.
//
// Thread safety: a repository is safe for concurrent use (an aggregate
// object is not: one thread at a time).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "eventsource/aggregate.h"
#include "eventsource/event_store.h"
#include "eventsource/events.h"
#include "eventsource/observability.h"
#include "eventsource/snapshot_store.h"

namespace eventsource {

// Receives the events of every successful save, once stored.
using EventPublisher = std::function<void(std::span<const StoredEvent> events)>;

// The envelope a save stamps on every event it writes.
// (Members have initializers so designated initializers may omit any.)
struct SaveContext {
  std::string actor = {};
  Uuid correlation_id = {};   // nil: none
  Uuid causation_id = {};     // nil: none
  std::string metadata = {};  // a JSON object's text, or empty
  int64_t timestamp_us = 0;   // 0: now

  // Caused by a prior event: same correlation (or the event itself when it
  // has none), caused by that event.
  static SaveContext caused_by(const EventRecord& prior);
  static SaveContext caused_by(const StoredEvent& prior);
  // Caused by a command with this id; correlation defaults to it.
  static SaveContext from_command(const Uuid& command_id, const Uuid& correlation_id = {});
};

struct RepositoryOptions {
  // The stream type of these aggregates; "" = the aggregate's kAggregateType.
  std::string aggregate_type = {};
  // Snapshots: off while null.
  SnapshotStore* snapshots = nullptr;
  // Snapshot when a save crosses a multiple of this many events (0: never,
  // unless snapshot_when says so).
  uint64_t snapshot_every = 0;
  // A custom strategy: snapshot when it returns true for a save that moved
  // the aggregate from `before` to `after`.
  std::function<bool(StreamVersion before, StreamVersion after)> snapshot_when = {};
  // The schema version of the state's encoding; bump it when the state
  // changes shape, and old snapshots are ignored.
  uint32_t state_schema_version = 1;
  // Tenant-scoped: saves stamp this tenant, and loading or saving an
  // aggregate with another tenant's events is refused (kNotFound).
  std::optional<std::string> tenant = {};
  // Aggregates kept in memory (LRU by count; 0: no cache). A cached
  // aggregate is brought up to date with the events stored after it (one
  // stream read from its version), and dropped on a conflict.
  size_t cache_capacity = 0;
  EventPublisher publisher = {};
  Observability observability = {};
};

// The compiled part of every AggregateRepository (repository.cc).
class RepositoryCore {
 public:
  RepositoryCore(EventStore& store, std::string aggregate_type, RepositoryOptions options);

  // How a load builds its aggregate; each returns an error to fail the load.
  struct Replay {
    std::function<Status(const EventRecord&)> apply;  // decode and replay one event
    std::function<Status(std::string_view state, StreamVersion version)>
        restore;                  // from a snapshot
    std::function<void()> reset;  // back to a fresh aggregate (a snapshot did not restore)
  };
  struct LoadRequest {
    StreamVersion after = {};  // already applied (a cached aggregate): read after it
    StreamVersion up_to = {};  // time travel: stop at this version (0: the newest)
    int64_t as_of_us = 0;      // time travel: only events stamped at or before (0: all)
    bool use_snapshot = true;
  };
  // Replays the aggregate's stream; returns the version reached, 0 when
  // the stream has no event.
  Result<StreamVersion> load(const std::string& id, const LoadRequest& request,
                             const Replay& replay) const;
  Result<bool> exists(const std::string& id) const;
  // Appends `events` (encoded) at `expected`, stamped with `context` and
  // the tenant, and publishes them.
  Result<AppendResult> save(const std::string& id, StreamVersion expected,
                            std::vector<NewEvent> events, const SaveContext& context);
  // Takes a snapshot if the strategy says so for before -> after; errors are
  // logged, never returned.
  void maybe_snapshot(const std::string& id, StreamVersion before, StreamVersion after,
                      const std::function<Result<std::string>()>& encode_state);

  StreamId stream(const std::string& id) const { return StreamId{type_, id}; }
  const RepositoryOptions& options() const { return options_; }
  Status not_found(const std::string& id) const;
  Status wrap(const std::string& id, std::string_view what, const Status& cause) const;

 private:
  Status check_tenant(const std::string& id, const EventRecord& e) const;

  EventStore& store_;
  std::string type_;
  RepositoryOptions options_;
};

template <class A>
class AggregateRepository {
 public:
  using Aggregate = A;
  using Event = typename A::Event;
  using State = typename A::State;

  // `store` and `registry` must outlive the repository; `state_codec`
  // encodes snapshots (JSON by default: State needs an EVENTSOURCE_JSON).
  AggregateRepository(EventStore& store, const EventRegistry& registry,
                      RepositoryOptions options = {},
                      Codec<State> state_codec = json_codec<State>())
      : registry_(registry),
        core_(store, type_of(options), std::move(options)),
        state_codec_(std::move(state_codec)) {}

  // The aggregate with all its events (from a snapshot when on). kNotFound
  // when it has none.
  Result<A> load(const std::string& id) const {
    Result<std::optional<A>> a = load_latest(id);
    if (!a.ok()) return a.take_status();
    if (!*a) return core_.not_found(id);
    return std::move(**a);
  }
  // The aggregate, or a new one (version 0) when it has no events.
  Result<A> load_or_create(const std::string& id) const {
    Result<std::optional<A>> a = load_latest(id);
    if (!a.ok()) return a.take_status();
    if (!*a) return A(id);
    return std::move(**a);
  }
  Result<bool> exists(const std::string& id) const { return core_.exists(id); }
  // Time travel: the aggregate as it was at `version`, or at time `as_of_us`.
  Result<A> load_at(const std::string& id, StreamVersion version) const {
    return load_bounded(id, {.up_to = version, .use_snapshot = false});
  }
  Result<A> load_as_of(const std::string& id, int64_t as_of_us) const {
    return load_bounded(id, {.as_of_us = as_of_us, .use_snapshot = false});
  }

  // Stores the aggregate's pending events; on success they become its
  // history (mark_saved). No pending events: nothing is written.
  Result<AppendResult> save(A& aggregate, const SaveContext& context = {}) {
    const StreamVersion before = aggregate.stored_version();
    std::vector<NewEvent> encoded;
    encoded.reserve(aggregate.pending_events().size());
    for (const Event& e : aggregate.pending_events()) {
      std::string foreign = std::visit(
          [&](const auto& x) {
            return foreign_name(x, core_.stream(aggregate.id()).type, aggregate.id());
          },
          e);
      if (!foreign.empty())
        return core_.wrap(aggregate.id(), "save",
                          invalid_argument("an event is refused: " + foreign));
      const Status s = registry_.encode(e, encoded.emplace_back());
      if (!s.ok()) return core_.wrap(aggregate.id(), "save", s);
    }
    Result<AppendResult> r = core_.save(aggregate.id(), before, std::move(encoded), context);
    if (!r.ok()) {
      if (r.status().code() == Code::kConflict) forget(aggregate.id());
      return r;
    }
    aggregate.mark_saved();
    remember(aggregate);
    core_.maybe_snapshot(
        aggregate.id(), before, aggregate.stored_version(), [&]() -> Result<std::string> {
          std::string bytes;
          EVENTSOURCE_RETURN_IF_ERROR(state_codec_.encode(aggregate.state(), bytes));
          return bytes;
        });
    return r;
  }

  // Loads (or creates) the aggregate, runs `command` on it, saves; on a
  // conflict, reloads and runs it again, at most `max_attempts` times in all.
  // `command(A&) -> Status`; its error (e.g. kRejected) is returned as is.
  template <class Fn>
  Result<A> execute(const std::string& id, Fn&& command, int max_attempts = 3,
                    const SaveContext& context = {}) {
    Status last;
    for (int attempt = 0; attempt < max_attempts; ++attempt) {
      Result<A> a = load_or_create(id);
      if (!a.ok()) return a.take_status();
      Status s = command(*a);
      if (!s.ok()) return s;
      Result<AppendResult> saved = save(*a, context);
      if (saved.ok()) return std::move(a).value();
      last = saved.take_status();
      if (last.code() != Code::kConflict) return last;
    }
    return last;
  }

  const RepositoryCore& core() const { return core_; }

 private:
  static std::string type_of(const RepositoryOptions& o) {
    return o.aggregate_type.empty() ? std::string(A::kAggregateType) : o.aggregate_type;
  }

  RepositoryCore::Replay replay_into(std::optional<A>& a) const {
    const std::string id = a->id();
    return RepositoryCore::Replay{
        [this, &a](const EventRecord& r) -> Status {
          Result<Event> e = registry_.template decode_variant<Event>(r);
          if (!e.ok()) return e.take_status();
          a->replay(*e);
          return Status();
        },
        [this, &a](std::string_view bytes, StreamVersion version) -> Status {
          State state{};
          EVENTSOURCE_RETURN_IF_ERROR(state_codec_.decode(bytes, state));
          a->restore(std::move(state), version);
          return Status();
        },
        [&a, id] { a.emplace(id); }};
  }

  // nullopt: no events (after the tenant check).
  Result<std::optional<A>> load_latest(const std::string& id) const {
    std::optional<A> a = cached(id);
    RepositoryCore::LoadRequest request;
    if (a)
      request.after = a->stored_version();
    else
      a.emplace(id);
    Result<StreamVersion> v = core_.load(id, request, replay_into(a));
    if (!v.ok()) {
      forget(id);
      return v.take_status();
    }
    if (v->value == 0) return std::optional<A>();
    remember(*a);
    return a;
  }

  Result<A> load_bounded(const std::string& id, const RepositoryCore::LoadRequest& request) const {
    std::optional<A> a(std::in_place, id);
    Result<StreamVersion> v = core_.load(id, request, replay_into(a));
    if (!v.ok()) return v.take_status();
    if (v->value == 0) return core_.not_found(id);
    return std::move(*a);
  }

  // --- The LRU cache (capacity 0: every call is a no-op) ---
  std::optional<A> cached(const std::string& id) const {
    if (core_.options().cache_capacity == 0) return std::nullopt;
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(id);
    if (it == cache_.end()) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first;
  }
  void remember(const A& a) const {
    if (core_.options().cache_capacity == 0) return;
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(a.id());
    if (it != cache_.end()) {
      // Keep the newest: another thread may have cached a later version.
      if (it->second.first.stored_version() <= a.stored_version()) it->second.first = a;
      lru_.splice(lru_.begin(), lru_, it->second.second);
      return;
    }
    lru_.push_front(a.id());
    cache_.emplace(a.id(), std::make_pair(a, lru_.begin()));
    if (cache_.size() > core_.options().cache_capacity) {
      cache_.erase(lru_.back());
      lru_.pop_back();
    }
  }
  void forget(const std::string& id) const {
    if (core_.options().cache_capacity == 0) return;
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(id);
    if (it == cache_.end()) return;
    lru_.erase(it->second.second);
    cache_.erase(it);
  }

  const EventRegistry& registry_;
  RepositoryCore core_;
  Codec<State> state_codec_;
  mutable std::mutex cache_mu_;
  mutable std::list<std::string> lru_;  // most recent first
  mutable std::unordered_map<std::string, std::pair<A, std::list<std::string>::iterator>> cache_;
};

}  // namespace eventsource
