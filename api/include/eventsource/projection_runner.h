// ProjectionRunner: runs several projections over one EventStore, each on a
// Subscription of its own (so a slow one never holds up another, nor
// appends), with their checkpoints and dead letters in one ProjectionStore.
//
//   EngineProjectionStore state(events.shared_store());
//   ProjectionRunner runner(events, state);
//   runner.add(customer_totals);
//   runner.add(search_index, SubscriptionOptions{.failure = {.then =
//   FailurePolicy::Then::kPause}}); runner.start();
//   ...
//   runner.wait_until(saved.last_position, 1s);  // every projection has it
//   for (const ProjectionHealth& h : runner.health()) ...
//
// Versions (blue/green rebuilds). Add two projections with one name and
// different versions (the old code and the new): the newest starts from its
// own checkpoint (from the first event, the first time) while the older one
// keeps running and stays `active` (health(), active_version()), so reads
// keep going to the old read model. Once the newest has caught up with the
// head, it becomes active, the older one is stopped and on_switch is called
// (drop the old read model there). Versions older than the two newest are
// not run.
//
// Dead letters: list, show, retry (through the projection they belong to,
// on its thread), resolve (handled by hand: removed), purge. Letters marked
// for retry from the shell (esdump dlq STORE retry) are retried by each
// projection when the runner starts.
//
// Thread safety: every member is safe for concurrent use, except that add()
// and start() must not race stop() or the destructor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "eventsource/event_store.h"
#include "eventsource/projection.h"
#include "eventsource/projection_store.h"
#include "eventsource/subscription.h"

namespace eventsource {

struct ProjectionRunnerOptions {
  // Each projection's options unless add() gives its own (`store` is always
  // the runner's ProjectionStore).
  SubscriptionOptions defaults = {};
  // A new version took over: `retired` has been stopped, `active` serves.
  // Called on a thread of the runner; must not call stop() or the destructor.
  std::function<void(const Projection& retired, const Projection& active)> on_switch = {};
};

struct DeadLetterRetryReport {
  uint64_t retried = 0;               // letters handed back to their projection
  uint64_t succeeded = 0;             // and handled (removed)
  std::vector<std::string> failures;  // one line per letter that failed again
};

class ProjectionRunner {
 public:
  // `events` and `store` must outlive the runner.
  ProjectionRunner(EventStore& events, ProjectionStore& store,
                   ProjectionRunnerOptions options = {});
  // stop(kNow).
  ~ProjectionRunner();
  ProjectionRunner(const ProjectionRunner&) = delete;
  ProjectionRunner& operator=(const ProjectionRunner&) = delete;

  // Adds `projection` (not owned; must outlive the runner), with `options`
  // (nullopt: the runner's defaults). After start() it starts at once.
  // Errors: kInvalidArgument (a bad name, the same name and version twice).
  Status add(Projection& projection, std::optional<SubscriptionOptions> options = std::nullopt);

  // Starts every projection added. Errors: the first projection that
  // failed to start (the others run).
  Status start();

  // Stops every projection (see Subscription::stop). Idempotent.
  Status stop(Subscription::StopMode mode = Subscription::StopMode::kDrain,
              std::chrono::milliseconds timeout = std::chrono::minutes(1));

  // Returns once every running projection (or the active version of
  // `name`) has got through `position`: read-your-writes. kTimedOut after
  // `timeout`; a projection's error if it stops first; kNotFound for an
  // unknown name.
  Status wait_until(GlobalPosition position, std::chrono::milliseconds timeout) const;
  Status wait_until(std::string_view name, GlobalPosition position,
                    std::chrono::milliseconds timeout) const;

  // Every running projection's health (retired versions are not listed).
  std::vector<ProjectionHealth> health() const;
  // The running subscription of `name`'s active version (nullptr: none).
  Subscription* subscription(std::string_view name) const;
  // The active version of `name` (0: not running).
  uint32_t active_version(std::string_view name) const;

  // Rebuilds `name`'s active version from the first event (Subscription::rebuild).
  Result<RebuildReport> rebuild(std::string_view name,
                                std::chrono::milliseconds timeout = std::chrono::minutes(10));

  // Dead letters of every projection (or of `projection`).
  Result<std::vector<DeadLetter>> dead_letters(std::string_view projection = {}) const;
  Result<DeadLetter> dead_letter(uint64_t id) const;
  // Hands letter `id` back to its projection (kNotFound: no such letter, or
  // its projection is not running here).
  Status retry_dead_letter(uint64_t id);
  // Every letter (of `projection`), one at a time.
  Result<DeadLetterRetryReport> retry_dead_letters(std::string_view projection = {});
  // The operator dealt with it by hand: removes it.
  Status resolve_dead_letter(uint64_t id);
  Result<uint64_t> purge_dead_letters(std::string_view projection = {});

 private:
  struct Entry {
    Projection* projection = nullptr;
    SubscriptionOptions options;
    std::unique_ptr<Subscription> sub;
    bool active = false;
    bool retired = false;
  };
  struct Group {
    std::vector<std::unique_ptr<Entry>> versions;  // ascending version
  };

  Status start_group_locked(Group& group);
  void watch_switch(Entry* next, Entry* old);
  Entry* active_locked(std::string_view name) const;

  EventStore& events_;
  ProjectionStore& store_;
  const ProjectionRunnerOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Group, std::less<>> groups_;
  bool started_ = false;
  bool stopping_ = false;
  std::vector<std::thread> watchers_;
};

}  // namespace eventsource
