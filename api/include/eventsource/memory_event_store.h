// InMemoryEventStore: the EventStore for tests and prototypes. Everything
// lives in memory, nothing survives the object; it follows every rule of
// event_store.h, so code tested against it runs unchanged on the engine.
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "eventsource/event_store.h"

namespace eventsource {

class InMemoryEventStore final : public EventStore {
 public:
  explicit InMemoryEventStore(Observability observability = {});
  ~InMemoryEventStore() override;

  std::string_view backend() const override { return "memory"; }
  Status close() override;

 private:
  Result<AppendResult> do_append(const StreamId& stream, ExpectedVersion expected,
                                 std::span<const NewEvent> events) override;
  Status do_read_stream(const StreamId& stream, const StreamReadOptions& options,
                        const RecordCallback& fn) const override;
  Status do_read_all(const AllReadOptions& options, const RecordCallback& fn) const override;
  Result<bool> do_event_exists(const Uuid& id) const override;
  Result<GlobalPosition> do_current_position() const override;
  Result<StreamVersion> do_stream_version(const StreamId& stream) const override;

  struct UuidHash {
    size_t operator()(const Uuid& u) const;
  };
  using EventPtr = std::shared_ptr<const StoredEvent>;

  Status check_open() const;  // under mu_

  // Readers copy a page of pointers under the lock and call back without
  // it, so a callback may call any read (or append) on this store.
  mutable std::shared_mutex mu_;
  bool closed_ = false;
  std::vector<EventPtr> log_;                          // log_[p - 1] is position p
  std::map<StreamId, std::vector<EventPtr>> streams_;  // [v - 1] is version v
  std::unordered_map<Uuid, EventPtr, UuidHash> ids_;
};

}  // namespace eventsource
