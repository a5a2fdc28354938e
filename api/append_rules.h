// The append rules a backend without the engine applies itself (the
// in-memory and SQLite stores): the expected-version check and the
// judgement of stored event ids (idempotent retry, conflict or duplicate),
// exactly as Store::append does them (store.h).
#pragma once

#include <functional>
#include <optional>
#include <span>

#include "eventsource/event_store.h"

namespace eventsource::api_internal {

// Where a stored event lies.
struct IdLocation {
  StreamId stream;
  StreamVersion version;
  GlobalPosition position;
};

// The stored event with this id, if any.
using IdLookup = std::function<Result<std::optional<IdLocation>>(const Uuid& id)>;

// What a backend does with a batch that passed the judgement.
struct AppendPlan {
  bool write = true;   // false: an idempotent retry, `retry` is the result
  AppendResult retry;  // when !write
};

// Judges `events` (already checked by check_append) for `stream`, now at
// `current`: kConflict (both versions set), kDuplicateEvent, a retry, or a
// write. `lookup` is called once per event id that is not nil.
Result<AppendPlan> judge_append(const StreamId& stream, ExpectedVersion expected,
                                StreamVersion current, std::span<const NewEvent> events,
                                const IdLookup& lookup);

// The kConflict error of an append: names the stream and both versions.
Status version_conflict(const StreamId& stream, ExpectedVersion expected, StreamVersion current);

}  // namespace eventsource::api_internal
