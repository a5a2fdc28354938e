// EngineEventStore: the EventStore on the file engine (store.h), the
// default backend. The envelope fields the engine's record has no place for
// (schema version, actor, user metadata) travel in its metadata bytes as a
// small JSON object, left out when they hold their defaults (README,
// "The envelope on disk").
//
// It shares the Store: snapshots and projection state of api/ live in the
// same file (Store's aux records), and esdump reads it as any store.
#pragma once

#include <memory>
#include <string>

#include "eventsource/event_store.h"
#include "eventsource/options.h"
#include "eventsource/store.h"

namespace eventsource {

struct EngineEventStoreOptions {
  StoreOptions store = {};  // how the file is opened (durability, segment size, ...)
  Observability observability = {};
};

class EngineEventStore final : public EventStore {
 public:
  // Opens (or creates) the store file at `path`.
  static Result<std::unique_ptr<EngineEventStore>> open(
      const std::string& path, const EngineEventStoreOptions& options = {});
  // Over a Store opened by the caller, shared with other components.
  // `durability`: the Store's (StoreOptions::durability), for the syncs
  // counter: appends then count one sync each unless it is kNone.
  EngineEventStore(std::shared_ptr<Store> store, Observability observability = {},
                   Durability durability = Durability::kGroup);
  ~EngineEventStore() override;

  std::string_view backend() const override { return "engine"; }
  // Closes the Store (for every component sharing it).
  Status close() override;

  Store& store() const { return *store_; }
  const std::shared_ptr<Store>& shared_store() const { return store_; }

 private:
  Result<AppendResult> do_append(const StreamId& stream, ExpectedVersion expected,
                                 std::span<const NewEvent> events) override;
  Result<AppendResult> do_append_owned(const StreamId& stream, ExpectedVersion expected,
                                       std::vector<NewEvent>& events) override;
  Result<AppendResult> write(const StreamId& stream, ExpectedVersion expected,
                             std::span<const EventData> data);
  Status do_read_stream(const StreamId& stream, const StreamReadOptions& options,
                        const RecordCallback& fn) const override;
  Status do_read_all(const AllReadOptions& options, const RecordCallback& fn) const override;
  Result<bool> do_event_exists(const Uuid& id) const override;
  Result<GlobalPosition> do_current_position() const override;
  Result<StreamVersion> do_stream_version(const StreamId& stream) const override;
  Result<GlobalPosition> do_refresh() const override;

  Status closed_error() const;

  std::shared_ptr<Store> store_;
  Durability durability_;
};

}  // namespace eventsource
