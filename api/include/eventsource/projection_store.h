// ProjectionStore: where projections and subscriptions keep their
// checkpoints and their dead letters (events a projection gave up on).
//
//   EngineProjectionStore   the store file's own projection-state and
//                           dead-letter records (store.h, "Aux records"):
//                           checkpoints live beside the events they count
//   InMemoryProjectionStore for tests, no I/O
//
// Dead letters carry an id, the projection's name, the event's position,
// the error, the attempts and the first and last failure times. An operator
// (or esdump dlq retry) may mark letters for retry; ProjectionRunner replays
// marked letters through their projection when it starts.
//
// Thread safety: both implementations are safe for concurrent use.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eventsource/options.h"
#include "eventsource/status.h"
#include "eventsource/store.h"

namespace eventsource {

class ProjectionStore {
 public:
  virtual ~ProjectionStore() = default;
  ProjectionStore() = default;
  ProjectionStore(const ProjectionStore&) = delete;
  ProjectionStore& operator=(const ProjectionStore&) = delete;

  // "engine" or "memory".
  virtual std::string_view backend() const = 0;

  // A checkpoint: the position `name` has handled (and a small opaque state).
  virtual Result<std::optional<ProjectionState>> load_checkpoint(std::string_view name) const = 0;
  virtual Status save_checkpoint(std::string_view name, GlobalPosition position,
                                 std::string_view state = {}) = 0;

  // Dead letters (see DeadLetter in store.h). add returns the new id.
  virtual Result<uint64_t> add_dead_letter(const DeadLetter& letter) = 0;
  // By id; only `projection`'s when it is not empty.
  virtual Result<std::vector<DeadLetter>> dead_letters(std::string_view projection = {}) const = 0;
  // kNotFound when there is none with this id.
  virtual Result<DeadLetter> dead_letter(uint64_t id) const = 0;
  // kNotFound when absent.
  virtual Status remove_dead_letter(uint64_t id) = 0;
  // Removes all (of `projection` when not empty); returns how many.
  virtual Result<uint64_t> purge_dead_letters(std::string_view projection = {}) = 0;

  // Retry marks. mark: kNotFound (nothing marked) when an id has no letter;
  // returns how many were newly marked. marked: ids with a letter, ascending.
  virtual Result<uint64_t> mark_for_retry(std::span<const uint64_t> ids) = 0;
  virtual Result<std::vector<uint64_t>> marked_for_retry() const = 0;
  virtual Status unmark(std::span<const uint64_t> ids) = 0;
};

struct EngineProjectionStoreOptions {
  // Checkpoints: durability kNone by default (a write, no fdatasync of its
  // own; the next synced write covers it). A checkpoint lost to a power cut
  // only means events handled again, inside the at-least-once window; and
  // the aux chain recovers as a prefix (format-spec.md [F-45]), so a
  // checkpoint never survives without the dead letters written before it.
  AppendOptions checkpoints = {Durability::kNone};
  // Dead letters and retry marks: the Store's durability by default.
  AppendOptions letters = {};
};

// Over the engine's Store (shared with an EngineEventStore, say).
class EngineProjectionStore final : public ProjectionStore {
 public:
  explicit EngineProjectionStore(std::shared_ptr<Store> store,
                                 EngineProjectionStoreOptions options = {});

  std::string_view backend() const override { return "engine"; }
  Result<std::optional<ProjectionState>> load_checkpoint(std::string_view name) const override;
  Status save_checkpoint(std::string_view name, GlobalPosition position,
                         std::string_view state = {}) override;
  Result<uint64_t> add_dead_letter(const DeadLetter& letter) override;
  Result<std::vector<DeadLetter>> dead_letters(std::string_view projection = {}) const override;
  Result<DeadLetter> dead_letter(uint64_t id) const override;
  Status remove_dead_letter(uint64_t id) override;
  Result<uint64_t> purge_dead_letters(std::string_view projection = {}) override;
  Result<uint64_t> mark_for_retry(std::span<const uint64_t> ids) override;
  Result<std::vector<uint64_t>> marked_for_retry() const override;
  Status unmark(std::span<const uint64_t> ids) override;

 private:
  std::shared_ptr<Store> store_;
  EngineProjectionStoreOptions options_;
};

class InMemoryProjectionStore final : public ProjectionStore {
 public:
  std::string_view backend() const override { return "memory"; }
  Result<std::optional<ProjectionState>> load_checkpoint(std::string_view name) const override;
  Status save_checkpoint(std::string_view name, GlobalPosition position,
                         std::string_view state = {}) override;
  Result<uint64_t> add_dead_letter(const DeadLetter& letter) override;
  Result<std::vector<DeadLetter>> dead_letters(std::string_view projection = {}) const override;
  Result<DeadLetter> dead_letter(uint64_t id) const override;
  Status remove_dead_letter(uint64_t id) override;
  Result<uint64_t> purge_dead_letters(std::string_view projection = {}) override;
  Result<uint64_t> mark_for_retry(std::span<const uint64_t> ids) override;
  Result<std::vector<uint64_t>> marked_for_retry() const override;
  Status unmark(std::span<const uint64_t> ids) override;

 private:
  mutable std::mutex mu_;
  std::map<std::string, ProjectionState, std::less<>> checkpoints_;
  std::map<uint64_t, DeadLetter> letters_;
  std::set<uint64_t> marks_;
  uint64_t next_id_ = 1;
};

}  // namespace eventsource
