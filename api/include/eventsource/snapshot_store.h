// Snapshots of aggregates: the SnapshotStore interface and two of its
// stores, in memory and on the engine's snapshot records (store.h,
// put_snapshot). SQLiteSnapshotStore is in sqlite_snapshot_store.h.
//
// A snapshot is an aggregate's encoded state at a stream version, with the
// schema version of that encoding: a repository uses it only when the
// schema version is the aggregate's current one and it decodes, and falls
// back to a full replay otherwise (repository.h). Every store keeps the
// newest snapshot per stream that prune() leaves.
//
// Thread safety: every store is safe for concurrent use.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "eventsource/observability.h"
#include "eventsource/status.h"
#include "eventsource/store.h"
#include "eventsource/types.h"

namespace eventsource {

struct SnapshotRecord {
  StreamId stream;
  StreamVersion version;        // the last event the state includes (>= 1)
  uint32_t schema_version = 1;  // of the state's encoding
  int64_t timestamp_us = 0;     // when it was taken; 0 on save: now
  std::string state;            // the encoded state

  bool operator==(const SnapshotRecord&) const = default;
};

class SnapshotStore {
 public:
  virtual ~SnapshotStore();
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  // Stores `snapshot` (a second one at the same version replaces the
  // first). Span snapshot_store.save.
  Status save(const SnapshotRecord& snapshot);
  // The newest snapshot of `stream`, or nullopt. Span snapshot_store.get.
  Result<std::optional<SnapshotRecord>> get(const StreamId& stream) const;
  // Removes `stream`'s snapshots older than `keep_from`; returns how many.
  Result<uint64_t> prune(const StreamId& stream, StreamVersion keep_from);

  const Observability& observability() const { return obs_; }

 protected:
  explicit SnapshotStore(Observability obs) : obs_(std::move(obs)) {}
  virtual Status do_save(const SnapshotRecord& snapshot) = 0;
  virtual Result<std::optional<SnapshotRecord>> do_get(const StreamId& stream) const = 0;
  virtual Result<uint64_t> do_prune(const StreamId& stream, StreamVersion keep_from) = 0;

 private:
  Observability obs_;
};

// For tests: a map in memory.
class InMemorySnapshotStore final : public SnapshotStore {
 public:
  explicit InMemorySnapshotStore(Observability observability = {});

 private:
  Status do_save(const SnapshotRecord& snapshot) override;
  Result<std::optional<SnapshotRecord>> do_get(const StreamId& stream) const override;
  Result<uint64_t> do_prune(const StreamId& stream, StreamVersion keep_from) override;

  mutable std::mutex mu_;
  std::map<StreamId, std::map<uint64_t, SnapshotRecord>> snapshots_;  // by version
};

// On the engine's snapshot records, in the store file the events are in
// (share the Store with an EngineEventStore). Durability as the Store's
// appends (StoreOptions::durability).
class EngineSnapshotStore final : public SnapshotStore {
 public:
  explicit EngineSnapshotStore(std::shared_ptr<Store> store, Observability observability = {});

 private:
  Status do_save(const SnapshotRecord& snapshot) override;
  Result<std::optional<SnapshotRecord>> do_get(const StreamId& stream) const override;
  Result<uint64_t> do_prune(const StreamId& stream, StreamVersion keep_from) override;

  std::shared_ptr<Store> store_;
};

}  // namespace eventsource
