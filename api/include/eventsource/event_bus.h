// InMemoryEventBus: an in-process event bus. Handlers subscribe to one event
// type, several, or all; published events (e.g. a repository's saved ones,
// through publisher()) are dispatched to them synchronously, or on worker
// threads behind a bounded queue.
//
//   InMemoryEventBus bus({.mode = DispatchMode::kAsync, .workers = 2,
//                         .queue_capacity = 1024});
//   auto sub = bus.subscribe<OrderPlaced>(registry, "mailer",
//       [](const OrderPlaced& e, const StoredEvent& stored) { return send(e); });
//   AggregateRepository<...> orders(store, registry, {.publisher = bus.publisher()});
//
// Failures: every matching handler runs even when another fails or throws
// (a throw is caught and becomes kInvalidArgument). Each failure is counted,
// logged (Observability::log, kWarn) and given to on_failure; a synchronous
// publish also returns them in its PublishReport.
//
// Ordering: a subscription sees events in the order the bus accepted them.
// Acceptance is serialized by the bus, so the events of one publish call
// stay in their order, and calls from one thread stay in call order;
// calls from several threads are accepted in some interleaving, and every
// subscription sees that same interleaving.
//  - kAsync: each subscription is pinned to one worker (by id, round
//    robin), which runs its calls one at a time in acceptance order. Calls
//    of different subscriptions run in parallel on different workers.
//  - kSync: handlers run on the publishing thread, before publish returns.
//    Concurrent publishes from several threads run concurrently: a handler
//    may then be called from several threads at once, and sees each
//    thread's events in that thread's order only.
// A subscription receives the events accepted after subscribe() returned.
//
// Backpressure (kAsync): at most queue_capacity accepted events wait or are
// being dispatched; publish blocks while the queue is full (try_publish
// returns kBusy instead), so memory stays bounded by a slow handler. From
// inside a handler on a worker, publish does not block (that could wait for
// itself): it returns kBusy when the queue is full.
//
// Unsubscribe: once unsubscribe() returns, the handler is not called again.
// If a call of it is running on another thread (an async delivery in flight,
// or a concurrent sync publish), unsubscribe waits for that call to end. From
// inside any handler of this bus it does not wait (it could wait for itself):
// no new call starts, but one already running on another thread may still be
// finishing.
//
// Shutdown: stops accepting (publish returns kClosed), delivers every event
// already accepted, in order, then joins the workers. The destructor calls it.
//
// Spans: "event.dispatch.<Type>" around dispatching one event to the
// handlers matching it (in kAsync, one per worker that has such a handler),
// and "event_handler.<Name>" around each handler call.
//
// Thread safety: every member is safe for concurrent use; handlers may
// publish, subscribe and unsubscribe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "eventsource/event_store.h"
#include "eventsource/events.h"
#include "eventsource/observability.h"
#include "eventsource/repository.h"

namespace eventsource {

// What a handler returns: a non-ok Status is a failure (reported, never
// stopping the other handlers).
using EventHandler = std::function<Status(const StoredEvent& event)>;

enum class DispatchMode : uint8_t {
  kSync,   // publish runs the handlers on its own thread, then returns
  kAsync,  // publish queues the event; worker threads run the handlers
};

// One handler call that failed.
struct HandlerFailure {
  std::string handler;  // the subscription's name
  Uuid event_id;
  GlobalPosition position;
  std::string event_type;
  Status error;
};

struct PublishReport {
  size_t accepted = 0;                        // events accepted (kSync: dispatched; kAsync: queued)
  size_t delivered = 0;                       // kSync: handler calls that succeeded (kAsync: 0)
  std::vector<HandlerFailure> failures = {};  // kSync: the calls that failed

  bool ok() const { return failures.empty(); }
};

struct EventBusOptions {
  DispatchMode mode = DispatchMode::kSync;
  // kAsync: worker threads (at least 1); subscriptions are spread over them.
  size_t workers = 1;
  // kAsync: accepted events not yet dispatched to every handler (at least 1).
  // A full queue blocks publish: the bound on memory and the backpressure.
  size_t queue_capacity = 1024;
  // Called for every failed handler call (on the thread that made the call).
  // May be empty; anything it throws is dropped.
  std::function<void(const HandlerFailure&)> on_failure = {};
  // tracer: the spans above; log: one kWarn line per failure.
  Observability observability = {};
};

// Counters (monotonic) and the queue's depth at one moment.
struct EventBusStats {
  uint64_t accepted = 0;   // events accepted by publish
  uint64_t delivered = 0;  // handler calls that succeeded
  uint64_t failures = 0;   // handler calls that failed
  size_t queued = 0;       // kAsync: accepted events not yet fully dispatched
};

// A subscription, as subscribe returns it; unsubscribe takes it back.
struct SubscriptionId {
  uint64_t value = 0;
  bool operator==(const SubscriptionId&) const = default;
};

class InMemoryEventBus {
 public:
  explicit InMemoryEventBus(EventBusOptions options = {});
  // Calls shutdown(); must not run inside one of its handlers.
  ~InMemoryEventBus();
  InMemoryEventBus(const InMemoryEventBus&) = delete;
  InMemoryEventBus& operator=(const InMemoryEventBus&) = delete;

  // Subscribes `handler`, named `name` (spans, failures, logs), to events
  // whose type is `type` / one of `types` / any type. Errors:
  // kInvalidArgument (empty handler, an empty types list), kClosed (after
  // shutdown).
  Result<SubscriptionId> subscribe(std::string name, std::string type, EventHandler handler);
  Result<SubscriptionId> subscribe(std::string name, std::vector<std::string> types,
                                   EventHandler handler);
  Result<SubscriptionId> subscribe_all(std::string name, EventHandler handler);

  // Typed: subscribes to E's registered name and decodes each event with
  // `registry` (which must outlive the subscription). A decode error is the
  // handler's failure. kNotFound when E is not registered.
  template <class E, class F>
  requires std::is_invocable_r_v<Status, F&, const E&, const StoredEvent&> Result<SubscriptionId>
  subscribe(const EventRegistry& registry, std::string name, F handler) {
    const EventTypeInfo* info = registry.find<E>();
    if (info == nullptr) return not_registered(name);
    return subscribe(std::move(name), info->name,
                     [&registry, handler = std::move(handler)](const StoredEvent& event) mutable {
                       Result<E> decoded = registry.decode<E>(event.view());
                       if (!decoded.ok()) return decoded.status();
                       return Status(handler(*decoded, event));
                     });
  }

  // Stops the subscription (see the file comment for in-flight calls).
  // kNotFound: not subscribed (or already unsubscribed).
  Status unsubscribe(SubscriptionId id);

  // Publishes `events` in order. kSync: returns once every matching handler
  // ran, with the report. kAsync: returns once every event is queued,
  // blocking while the queue is full. Errors: kClosed after shutdown (in
  // kAsync, events accepted before it are still delivered: the report's
  // count is lost then, so publish one event at a time to know).
  Result<PublishReport> publish(std::span<const StoredEvent> events);
  Result<PublishReport> publish(const StoredEvent& event);
  // As publish, but never blocks: kBusy when the queue has no room for all
  // of `events` (nothing is queued then). kSync: the same as publish.
  Result<PublishReport> try_publish(std::span<const StoredEvent> events);
  Result<PublishReport> try_publish(const StoredEvent& event);

  // Blocks until every accepted event has been dispatched (kAsync); returns
  // at once in kSync or from inside a handler.
  void wait_idle();

  // Stops accepting, delivers every accepted event, joins the workers.
  // Idempotent. From inside a handler it only stops accepting (the
  // destructor joins).
  void shutdown();

  // Publishes to this bus; for RepositoryOptions::publisher. The bus must
  // outlive it. Errors (kClosed) are logged, since a publisher returns none.
  EventPublisher publisher();

  EventBusStats stats() const;
  const EventBusOptions& options() const { return options_; }

 private:
  struct Subscription;
  struct Slot;
  using SubList = std::vector<std::shared_ptr<Subscription>>;

  static Status not_registered(const std::string& name);
  Result<SubscriptionId> add(std::string name, std::vector<std::string> types, bool all,
                             EventHandler handler);
  Result<PublishReport> publish_impl(std::span<const StoredEvent> events, bool may_block);
  // Runs the handlers of `subs` matching `event` (pinned to `worker` unless
  // it is kAnyWorker); failures go to `report` when not null.
  void dispatch(const StoredEvent& event, uint64_t seq, const SubList& subs, size_t worker,
                PublishReport* report);
  void report_failure(HandlerFailure failure);
  void worker_loop(size_t worker);
  bool on_worker() const;
  void rebuild_locked();

  static constexpr size_t kAnyWorker = SIZE_MAX;

  const EventBusOptions options_;  // normalized: workers, queue_capacity >= 1
  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // a worker queue got an event, or stopping
  std::condition_variable space_cv_;  // the queue has room, or closed
  std::condition_variable idle_cv_;   // a handler call ended / an event done / sync publish ended
  std::map<uint64_t, std::shared_ptr<Subscription>> subs_;  // by id: call order
  std::shared_ptr<const SubList> snapshot_;                 // subs_ as a list; replaced on change
  uint64_t next_id_ = 1;
  uint64_t next_seq_ = 1;  // acceptance order
  size_t pending_ = 0;     // kAsync: accepted, not yet dispatched by every worker
  size_t sync_in_flight_ = 0;
  bool closed_ = false;
  bool stopping_ = false;
  std::vector<std::deque<std::shared_ptr<Slot>>> queues_;  // one per worker
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> accepted_{0}, delivered_{0}, failures_{0};
};

}  // namespace eventsource
