// Subscription: runs one Projection (or a handler) over an EventStore on a
// thread of its own: from where it starts, through the stored events
// (catching up), then live, woken by appends. It is the one loop every
// projection, read model and follower runs on.
//
//   InMemoryProjectionStore checkpoints;  // or EngineProjectionStore
//   auto sub = Subscription::start(store, totals, {.store = &checkpoints});
//   ...append...
//   sub->wait_until(appended.last_position, 1s);  // read your writes
//
// Positions. A subscription reads the store in global order and remembers
// the last position it got through (handled, skipped by a filter, or
// dead-lettered): position(). Catch-up and live delivery are one loop that
// reads from position() + 1, so there is no gap and no duplicate when it
// switches between them. Appends through this EventStore object wake it at
// once; appends made elsewhere (another process appending to the same
// file, another handle) are found by polling every poll_interval (the
// engine's read-only handles refresh then), as `esdump events --follow`.
//
// Delivery: in order, one call at a time, on the subscription's thread.
// Each batch (up to batch_size events) is bracketed by the projection's
// begin_batch / end_batch. At least once: after a crash, the events since
// the last checkpoint come again.
//
// Failures (FailurePolicy): a failing event (non-ok Status, a throw, or a
// call over handler_timeout) is retried with exponential backoff, up to
// max_attempts calls; then it is dead-lettered and passed (kDeadLetter, the
// default: counted, never silent), or the subscription pauses at it until
// an operator calls resume() (try again) or skip() (dead-letter it and go
// on), or it stops in kError (kStop). A batch whose end_batch fails is rolled
// back (abort_batch) and handled again one event at a time.
//
// Checkpoints (CheckpointPolicy) go to options.store under
// checkpoint_name(projection), unless the projection owns its checkpoint.
// A checkpoint is never ahead of the events handled; it is also written
// when the subscription catches up and when it stops.
//
// Thread safety: every member is safe for concurrent use. Do not call
// stop(), reset() or retry_dead_letter() from inside the projection's own
// calls (they wait for the subscription's thread): they return
// kInvalidArgument there.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eventsource/event_store.h"
#include "eventsource/observability.h"
#include "eventsource/projection.h"
#include "eventsource/projection_store.h"
#include "eventsource/status.h"

namespace eventsource {

enum class SubscriptionState : uint8_t {
  kStarting,    // loading its checkpoint
  kCatchingUp,  // reading stored events behind the head
  kLive,        // at the head, waiting for appends
  kPaused,      // by pause(), or at a poison event (FailurePolicy::kPause)
  kStopped,     // stop() returned, or the store closed
  kError,       // stopped by a failure (last_error() says which)
};
std::string_view state_name(SubscriptionState state);  // "starting" .. "error"

// Where a subscription starts.
struct StartFrom {
  enum class Kind : uint8_t {
    kCheckpoint,  // after its saved checkpoint; from the beginning when none
    kBeginning,   // the first event
    kEnd,         // after the last event stored at start: only new events
    kPosition,    // `position` is the first position delivered
  };
  Kind kind = Kind::kCheckpoint;
  GlobalPosition position = {};

  static StartFrom checkpoint() { return {}; }
  static StartFrom beginning() { return {Kind::kBeginning, {}}; }
  static StartFrom end() { return {Kind::kEnd, {}}; }
  static StartFrom at(GlobalPosition first) { return {Kind::kPosition, first}; }
};

// What happens when an event keeps failing.
struct FailurePolicy {
  enum class Then : uint8_t {
    kDeadLetter,  // record a dead letter, count it, go on (without options.store: kStop)
    kPause,       // pause at the event until resume() or skip()
    kStop,        // stop in kError
  };
  uint32_t max_attempts = 5;                      // calls per event, retries included (>= 1)
  std::chrono::milliseconds initial_backoff{10};  // before the first retry
  std::chrono::milliseconds max_backoff{1000};    // cap; each wait doubles the last
  Then then = Then::kDeadLetter;
};

struct CheckpointPolicy {
  enum class Every : uint8_t {
    kEvent,     // after every event (batches of one): the smallest window
    kBatch,     // after every batch
    kInterval,  // at most once per `interval` (and when caught up or stopping)
  };
  Every every = Every::kBatch;
  std::chrono::milliseconds interval{1000};
};

struct SubscriptionOptions {
  StartFrom from = {};
  // Checkpoints and dead letters; not owned, must outlive the subscription.
  // Without it there are no checkpoints (unless the projection owns its
  // own), and a poison event stops the subscription (kError) instead of
  // being dead-lettered: it is never skipped silently.
  ProjectionStore* store = nullptr;
  CheckpointPolicy checkpoint = {};
  FailurePolicy failure = {};
  // Filters (empty: all); combined with the projection's event_types().
  std::vector<std::string> event_types = {};
  std::vector<std::string> stream_types = {};
  std::optional<std::string> tenant = {};
  size_t batch_size = 1000;  // events per batch (>= 1)
  // A handler call that takes longer fails (after it returns: a running call
  // cannot be interrupted safely; health() shows its age meanwhile). 0: none.
  std::chrono::milliseconds handler_timeout{0};
  // How often to look for appends made by other processes or handles.
  std::chrono::milliseconds poll_interval{2};
  // Spans "projection.<name>.batch", logs, counters (events dispatched,
  // handler failures, dead letters, lag).
  Observability observability = {};
};

// One projection's health at one moment.
struct ProjectionHealth {
  std::string name;
  uint32_t version = 1;
  SubscriptionState state = SubscriptionState::kStarting;
  GlobalPosition position;    // got through
  GlobalPosition head;        // the store's last position
  uint64_t lag_events = 0;    // head - position
  double lag_seconds = 0;     // age of the oldest event not yet got through (0 when none)
  uint64_t handled = 0;       // handler calls that succeeded
  uint64_t failures = 0;      // handler calls that failed (retries included)
  uint64_t dead_letters = 0;  // events dead-lettered by this subscription
  std::string last_error;     // "" when none
  int64_t last_error_us = 0;
  int64_t handler_running_ms = 0;  // age of the call running now (0: none)
  bool active = true;              // ProjectionRunner: serving reads (see versions)
};

// What a reset or rebuild met on its way back to the head.
struct RebuildReport {
  GlobalPosition through;                // position reached
  uint64_t handled = 0;                  // events handled
  std::vector<DeadLetter> dead_letters;  // events dead-lettered on the way
  std::string error;                     // "" unless it stopped or paused on a failure
  double seconds = 0;
};

using RecordHandler = std::function<Status(const EventRecord& event)>;
using BatchHandler = std::function<Status(std::span<const StoredEvent> events)>;

class Subscription {
 public:
  // Runs `projection` (not owned; must outlive the subscription). Errors:
  // kInvalidArgument (options, the projection's check()), kNotFound/...
  // from loading the checkpoint.
  static Result<std::unique_ptr<Subscription>> start(EventStore& store, Projection& projection,
                                                     SubscriptionOptions options = {});
  // Runs `handler`, named `name`, on every event one at a time.
  static Result<std::unique_ptr<Subscription>> start(EventStore& store, std::string name,
                                                     RecordHandler handler,
                                                     SubscriptionOptions options = {});
  // Runs `handler` on whole batches (copied out), for speed. A failed batch
  // is retried as a batch of one event at a time.
  static Result<std::unique_ptr<Subscription>> start_batched(EventStore& store, std::string name,
                                                             BatchHandler handler,
                                                             SubscriptionOptions options = {});

  // stop(kNow).
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  std::string_view name() const;
  SubscriptionState state() const;
  GlobalPosition position() const;
  // The last failure (ok when none).
  Status last_error() const;
  ProjectionHealth health() const;

  // Returns once position() >= `position`: ok; kTimedOut after `timeout`;
  // the error when the subscription stops or fails first.
  Status wait_until(GlobalPosition position, std::chrono::milliseconds timeout) const;
  // Returns once the subscription is live (caught up), as wait_until.
  Status wait_live(std::chrono::milliseconds timeout) const;

  // Pause: the current event finishes, no other starts until resume().
  void pause();
  // Resumes after pause(), or retries the poison event it paused at.
  void resume();
  // At a poison event (paused by FailurePolicy::kPause): dead-letters it
  // and goes on. kInvalidArgument when not paused at one.
  Status skip();

  enum class StopMode : uint8_t {
    kNow,    // after the event being handled
    kDrain,  // after every event stored when stop() was called
  };
  // Stops the thread (writing a checkpoint first). Idempotent. A paused
  // subscription stops where it is, whatever the mode. kTimedOut
  // when it did not stop within `timeout` (a handler that does not return);
  // then it still stops once it can.
  Status stop(StopMode mode = StopMode::kDrain,
              std::chrono::milliseconds timeout = std::chrono::minutes(1));

  // Clears the read model (Projection::reset), moves the checkpoint to 0 and
  // handles every event again; waits (up to `timeout`) until it is back at
  // the head as of the call, and reports the failures it met.
  Result<RebuildReport> rebuild(std::chrono::milliseconds timeout = std::chrono::minutes(10));

  // Hands dead letter `id` (of this projection) to the projection again, on
  // its thread. Ok: handled; the letter is removed. A failure updates the
  // letter (attempts, error, time; it gets a new id) and is returned.
  Status retry_dead_letter(uint64_t id);

  class Impl;

 private:
  explicit Subscription(std::unique_ptr<Impl> impl);
  // Runs `projection` (owned when `owned` holds it).
  static Result<std::unique_ptr<Subscription>> create(EventStore& store, Projection& projection,
                                                      std::unique_ptr<Projection> owned,
                                                      SubscriptionOptions options);
  std::unique_ptr<Impl> impl_;
};

}  // namespace eventsource
