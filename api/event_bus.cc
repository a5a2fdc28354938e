// InMemoryEventBus (event_bus.h): subscriptions, synchronous dispatch, and
// the asynchronous workers with their bounded per-worker queues.
//
// One mutex guards the subscriptions, the queues and the counts; it is never
// held while a handler (or any other user code) runs, so handlers may call
// back into the bus. A queued event is one shared Slot pushed onto every
// worker's queue: it counts against the capacity until the last worker has
// dispatched it, which bounds memory by queue_capacity events.
#include "eventsource/event_bus.h"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <utility>

namespace eventsource {

struct InMemoryEventBus::Subscription {
  uint64_t id = 0;
  std::string name;
  std::vector<std::string> types;  // empty when `all`
  bool all = false;
  EventHandler handler;
  size_t worker = 0;       // kAsync: the worker that runs its calls
  uint64_t first_seq = 0;  // receives events accepted at or after this
  // Guarded by mu_.
  bool removed = false;
  size_t running = 0;  // calls in progress

  bool matches(const std::string& type) const {
    return all || std::find(types.begin(), types.end(), type) != types.end();
  }
};

struct InMemoryEventBus::Slot {
  StoredEvent event;
  uint64_t seq = 0;
  size_t workers_left = 0;  // guarded by mu_
};

namespace {

// The handler calls in progress on this thread, innermost first, so that
// unsubscribe and shutdown know when waiting would mean waiting for
// themselves (also across nested buses).
struct HandlerFrame {
  const InMemoryEventBus* bus;
  const HandlerFrame* outer;
};
thread_local const HandlerFrame* tls_frames = nullptr;
// The bus whose worker this thread is, if any.
thread_local const InMemoryEventBus* tls_worker_of = nullptr;

bool in_handler_of(const InMemoryEventBus* bus) {
  for (const HandlerFrame* f = tls_frames; f != nullptr; f = f->outer) {
    if (f->bus == bus) return true;
  }
  return false;
}

EventBusOptions normalized(EventBusOptions options) {
  options.workers = std::max<size_t>(options.workers, 1);
  options.queue_capacity = std::max<size_t>(options.queue_capacity, 1);
  return options;
}

}  // namespace

InMemoryEventBus::InMemoryEventBus(EventBusOptions options)
    : options_(normalized(std::move(options))), snapshot_(std::make_shared<const SubList>()) {
  if (options_.mode == DispatchMode::kAsync) {
    queues_.resize(options_.workers);
    workers_.reserve(options_.workers);
    for (size_t w = 0; w < options_.workers; ++w) {
      workers_.emplace_back([this, w] { worker_loop(w); });
    }
  }
}

InMemoryEventBus::~InMemoryEventBus() { shutdown(); }

Status InMemoryEventBus::not_registered(const std::string& name) {
  return not_found(
      fmt::format("event bus: subscription '{}': its event type is not registered", name));
}

Result<SubscriptionId> InMemoryEventBus::subscribe(std::string name, std::string type,
                                                   EventHandler handler) {
  std::vector<std::string> types;
  types.push_back(std::move(type));
  return add(std::move(name), std::move(types), /*all=*/false, std::move(handler));
}

Result<SubscriptionId> InMemoryEventBus::subscribe(std::string name, std::vector<std::string> types,
                                                   EventHandler handler) {
  if (types.empty()) {
    return invalid_argument(
        fmt::format("event bus: subscription '{}' names no event type (subscribe_all?)", name));
  }
  return add(std::move(name), std::move(types), /*all=*/false, std::move(handler));
}

Result<SubscriptionId> InMemoryEventBus::subscribe_all(std::string name, EventHandler handler) {
  return add(std::move(name), {}, /*all=*/true, std::move(handler));
}

Result<SubscriptionId> InMemoryEventBus::add(std::string name, std::vector<std::string> types,
                                             bool all, EventHandler handler) {
  if (!handler) {
    return invalid_argument(fmt::format("event bus: subscription '{}' has no handler", name));
  }
  auto sub = std::make_shared<Subscription>();
  sub->name = std::move(name);
  sub->types = std::move(types);
  sub->all = all;
  sub->handler = std::move(handler);
  std::lock_guard lock(mu_);
  if (closed_) return closed(fmt::format("event bus: subscribe '{}' after shutdown", sub->name));
  sub->id = next_id_++;
  sub->worker = (sub->id - 1) % options_.workers;
  sub->first_seq = next_seq_;
  subs_.emplace(sub->id, sub);
  rebuild_locked();
  return SubscriptionId{sub->id};
}

void InMemoryEventBus::rebuild_locked() {
  auto list = std::make_shared<SubList>();
  list->reserve(subs_.size());
  for (const auto& [id, sub] : subs_) list->push_back(sub);
  snapshot_ = std::move(list);
}

Status InMemoryEventBus::unsubscribe(SubscriptionId id) {
  std::unique_lock lock(mu_);
  auto it = subs_.find(id.value);
  if (it == subs_.end()) {
    return not_found(fmt::format("event bus: no subscription {}", id.value));
  }
  std::shared_ptr<Subscription> sub = it->second;
  subs_.erase(it);
  sub->removed = true;  // dispatch checks it under mu_ before every call
  rebuild_locked();
  // Inside a handler the running call may be this thread's own: waiting
  // could never end.
  if (!in_handler_of(this)) idle_cv_.wait(lock, [&] { return sub->running == 0; });
  return Status();
}

Result<PublishReport> InMemoryEventBus::publish(std::span<const StoredEvent> events) {
  return publish_impl(events, /*may_block=*/true);
}
Result<PublishReport> InMemoryEventBus::publish(const StoredEvent& event) {
  return publish_impl(std::span<const StoredEvent>(&event, 1), /*may_block=*/true);
}
Result<PublishReport> InMemoryEventBus::try_publish(std::span<const StoredEvent> events) {
  return publish_impl(events, /*may_block=*/false);
}
Result<PublishReport> InMemoryEventBus::try_publish(const StoredEvent& event) {
  return publish_impl(std::span<const StoredEvent>(&event, 1), /*may_block=*/false);
}

Result<PublishReport> InMemoryEventBus::publish_impl(std::span<const StoredEvent> events,
                                                     bool may_block) {
  PublishReport report;
  if (options_.mode == DispatchMode::kSync) {
    std::shared_ptr<const SubList> subs;
    uint64_t seq = 0;
    {
      std::lock_guard lock(mu_);
      if (closed_) return closed("event bus: publish after shutdown");
      seq = next_seq_;
      next_seq_ += events.size();
      ++sync_in_flight_;
      subs = snapshot_;
    }
    accepted_ += events.size();
    for (size_t i = 0; i < events.size(); ++i) {
      dispatch(events[i], seq + i, *subs, kAnyWorker, &report);
    }
    report.accepted = events.size();
    std::lock_guard lock(mu_);
    --sync_in_flight_;
    idle_cv_.notify_all();
    return report;
  }

  // kAsync. The copies are made before taking the lock.
  std::vector<std::shared_ptr<Slot>> slots;
  slots.reserve(events.size());
  for (const StoredEvent& e : events) {
    auto slot = std::make_shared<Slot>();
    slot->event = e;
    slots.push_back(std::move(slot));
  }
  const size_t capacity = options_.queue_capacity;
  // A worker waiting for room could be waiting for itself.
  const bool worker = on_worker();
  std::unique_lock lock(mu_);
  if (closed_) return closed("event bus: publish after shutdown");
  if (!may_block && capacity - std::min(pending_, capacity) < slots.size()) {
    return Status(Code::kBusy, fmt::format("event bus: queue full ({} of {} events queued)",
                                           pending_, capacity));
  }
  for (auto& slot : slots) {
    if (worker && pending_ >= capacity) {
      return Status(Code::kBusy, fmt::format("event bus: queue full ({} events) on a handler's "
                                             "publish; {} of {} events accepted",
                                             capacity, report.accepted, slots.size()));
    }
    space_cv_.wait(lock, [&] { return closed_ || pending_ < capacity; });
    if (closed_) {
      return closed(fmt::format("event bus: shut down during publish; {} of {} events accepted",
                                report.accepted, slots.size()));
    }
    slot->seq = next_seq_++;
    slot->workers_left = queues_.size();
    for (auto& q : queues_) q.push_back(slot);
    ++pending_;
    ++report.accepted;
    ++accepted_;
    work_cv_.notify_all();
  }
  return report;
}

void InMemoryEventBus::dispatch(const StoredEvent& event, uint64_t seq, const SubList& subs,
                                size_t worker, PublishReport* report) {
  Tracer* tracer = options_.observability.tracer;
  Span dispatch_span;
  bool span_started = false;
  for (const std::shared_ptr<Subscription>& sub : subs) {
    if (worker != kAnyWorker && sub->worker != worker) continue;
    if (!sub->matches(event.type)) continue;
    {
      std::lock_guard lock(mu_);
      if (sub->removed || seq < sub->first_seq) continue;
      ++sub->running;
    }
    if (tracer != nullptr && !span_started) {
      span_started = true;
      dispatch_span = Span(tracer, fmt::format("event.dispatch.{}", event.type));
      dispatch_span.set_attribute("event.type", event.type);
      dispatch_span.set_attribute("event.position", static_cast<int64_t>(event.position.value));
    }
    Status result;
    {
      Span handler_span;
      if (tracer != nullptr) {
        handler_span = Span(tracer, fmt::format("event_handler.{}", sub->name));
        handler_span.set_attribute("event.type", event.type);
        handler_span.set_attribute("event.position", static_cast<int64_t>(event.position.value));
      }
      HandlerFrame frame{this, tls_frames};
      tls_frames = &frame;
      try {
        result = sub->handler(event);
      } catch (const std::exception& ex) {
        result =
            invalid_argument(fmt::format("event handler '{}' threw: {}", sub->name, ex.what()));
      } catch (...) {
        result = invalid_argument(fmt::format("event handler '{}' threw", sub->name));
      }
      tls_frames = frame.outer;
      if (!result.ok()) handler_span.record_error(result.to_string());
    }
    {
      std::lock_guard lock(mu_);
      --sub->running;
      if (sub->removed) idle_cv_.notify_all();
    }
    if (result.ok()) {
      ++delivered_;
      if (Metrics* m = options_.observability.metrics) m->count_dispatched(1);
      if (report != nullptr) ++report->delivered;
      continue;
    }
    if (span_started) dispatch_span.record_error(result.to_string());
    HandlerFailure failure{sub->name, event.id, event.position, event.type, std::move(result)};
    if (report != nullptr) report->failures.push_back(failure);
    report_failure(std::move(failure));
  }
}

void InMemoryEventBus::report_failure(HandlerFailure failure) {
  ++failures_;
  if (Metrics* m = options_.observability.metrics) m->count_handler_failure();
  if (options_.observability.log) {
    const std::string position = std::to_string(failure.position.value);
    const std::string id = failure.event_id.to_string();
    const std::string error = failure.error.to_string();
    const LogField fields[] = {{"handler", failure.handler},
                               {"event_type", failure.event_type},
                               {"position", position},
                               {"event_id", id},
                               {"error", error}};
    log_to(options_.observability.log, LogLevel::kWarn, "event handler failed", fields);
  }
  if (options_.on_failure) {
    try {
      options_.on_failure(failure);
    } catch (...) {  // the callback's own failure has nowhere to go
    }
  }
}

void InMemoryEventBus::worker_loop(size_t worker) {
  tls_worker_of = this;
  std::deque<std::shared_ptr<Slot>>& queue = queues_[worker];
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return !queue.empty() || stopping_; });
    if (queue.empty()) break;  // stopping, and drained
    std::shared_ptr<Slot> slot = std::move(queue.front());
    queue.pop_front();
    std::shared_ptr<const SubList> subs = snapshot_;
    lock.unlock();
    dispatch(slot->event, slot->seq, *subs, worker, nullptr);
    lock.lock();
    if (--slot->workers_left == 0) {
      --pending_;
      space_cv_.notify_all();
      idle_cv_.notify_all();
    }
  }
  tls_worker_of = nullptr;
}

bool InMemoryEventBus::on_worker() const { return tls_worker_of == this; }

void InMemoryEventBus::wait_idle() {
  if (options_.mode == DispatchMode::kSync || on_worker() || in_handler_of(this)) return;
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return pending_ == 0; });
}

void InMemoryEventBus::shutdown() {
  std::unique_lock lock(mu_);
  closed_ = true;
  stopping_ = true;  // workers leave once their queue is empty
  space_cv_.notify_all();
  work_cv_.notify_all();
  if (on_worker() || in_handler_of(this)) return;  // cannot wait for itself
  idle_cv_.wait(lock, [&] { return pending_ == 0 && sync_in_flight_ == 0; });
  std::vector<std::thread> workers = std::move(workers_);
  workers_.clear();
  lock.unlock();
  for (std::thread& t : workers) t.join();
}

EventPublisher InMemoryEventBus::publisher() {
  return [this](std::span<const StoredEvent> events) {
    Result<PublishReport> published = publish(events);
    if (published.ok()) return;
    const std::string error = published.status().to_string();
    const LogField fields[] = {{"error", error}};
    log_to(options_.observability.log, LogLevel::kWarn, "event bus: publish failed", fields);
  };
}

EventBusStats InMemoryEventBus::stats() const {
  EventBusStats s;
  s.accepted = accepted_.load();
  s.delivered = delivered_.load();
  s.failures = failures_.load();
  std::lock_guard lock(mu_);
  s.queued = pending_;
  return s;
}

}  // namespace eventsource
