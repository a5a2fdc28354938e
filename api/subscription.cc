#include "eventsource/subscription.h"

#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "clock.h"

namespace eventsource {

using api_internal::now_us;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string_view state_name(SubscriptionState state) {
  switch (state) {
    case SubscriptionState::kStarting:
      return "starting";
    case SubscriptionState::kCatchingUp:
      return "catching up";
    case SubscriptionState::kLive:
      return "live";
    case SubscriptionState::kPaused:
      return "paused";
    case SubscriptionState::kStopped:
      return "stopped";
    case SubscriptionState::kError:
      return "error";
  }
  return "unknown";
}

namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// The same clock (CLOCK_MONOTONIC, as steady_clock on Linux) at tick
// resolution, for ~5 ns: when a handler call began, for health().
int64_t coarse_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// A plain handler as a projection.
class HandlerProjection final : public Projection {
 public:
  HandlerProjection(std::string name, RecordHandler fn)
      : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string_view name() const override { return name_; }
  Status handle(const EventRecord& event) override { return fn_(event); }

 private:
  std::string name_;
  RecordHandler fn_;
};

// A batch handler as a projection: handle() copies, end_batch() delivers.
class BatchProjection final : public Projection {
 public:
  BatchProjection(std::string name, BatchHandler fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string_view name() const override { return name_; }
  Status begin_batch() override {
    used_ = 0;
    return Status();
  }
  Status handle(const EventRecord& event) override {
    // The events of earlier batches stay allocated: copying into them
    // reuses their strings.
    if (used_ == batch_.size()) batch_.emplace_back();
    event.copy_to(batch_[used_++]);
    return Status();
  }
  Status end_batch(GlobalPosition) override {
    if (used_ == 0) return Status();
    Status s = fn_(std::span<const StoredEvent>(batch_.data(), used_));
    if (s.ok()) used_ = 0;
    return s;
  }
  void abort_batch() override { used_ = 0; }

 private:
  std::string name_;
  BatchHandler fn_;
  std::vector<StoredEvent> batch_;
  size_t used_ = 0;  // events of this batch in batch_
};

// Runs `fn` (a call into the projection; it returns a Status or a Result),
// turning a throw into an error.
template <class F>
auto guarded(std::string_view name, std::string_view what, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return invalid_argument(fmt::format("projection {}: {} threw: {}", name, what, e.what()));
  } catch (...) {
    return invalid_argument(fmt::format("projection {}: {} threw a non-exception", name, what));
  }
}

}  // namespace

class Subscription::Impl {
 public:
  Impl(EventStore& store, Projection& projection, std::unique_ptr<Projection> owned,
       SubscriptionOptions options)
      : store_(store),
        owned_(std::move(owned)),
        proj_(projection),
        opt_(std::move(options)),
        name_(projection.name()),
        checkpoint_name_(checkpoint_name(projection)) {
    filter_.event_types = opt_.event_types;
    for (std::string& t : proj_.event_types()) filter_.event_types.push_back(std::move(t));
    filter_.stream_types = opt_.stream_types;
    filter_.tenant = opt_.tenant;
    // One filter list of types: the union of both (empty: any type). A
    // projection naming types while the options name none narrows it.
    std::sort(filter_.event_types.begin(), filter_.event_types.end());
    filter_.event_types.erase(std::unique(filter_.event_types.begin(), filter_.event_types.end()),
                              filter_.event_types.end());
  }

  Status validate() const {
    EVENTSOURCE_RETURN_IF_ERROR(check_projection_name(name_));
    EVENTSOURCE_RETURN_IF_ERROR(guarded(name_, "check()", [&] { return proj_.check(); }));
    if (opt_.batch_size == 0)
      return invalid_argument(fmt::format("subscription {}: batch_size must be at least 1", name_));
    if (opt_.failure.max_attempts == 0)
      return invalid_argument(
          fmt::format("subscription {}: failure.max_attempts must be at least 1", name_));
    return Status();
  }

  // Finds the first position to read, then starts the thread.
  Status start() {
    GlobalPosition head;
    EVENTSOURCE_ASSIGN_OR_RETURN(head, store_.current_position());
    uint64_t from = 0;  // the position got through
    switch (opt_.from.kind) {
      case StartFrom::Kind::kBeginning:
        break;
      case StartFrom::Kind::kEnd:
        from = head.value;
        break;
      case StartFrom::Kind::kPosition:
        from = opt_.from.position.value == 0 ? 0 : opt_.from.position.value - 1;
        break;
      case StartFrom::Kind::kCheckpoint: {
        if (proj_.owns_checkpoint()) {
          Result<GlobalPosition> own =
              guarded(name_, "own_checkpoint()", [&] { return proj_.own_checkpoint(); });
          if (!own.ok()) return own.take_status();
          from = own->value;
        } else if (opt_.store != nullptr) {
          Result<std::optional<ProjectionState>> saved =
              opt_.store->load_checkpoint(checkpoint_name_);
          if (!saved.ok()) return saved.take_status();
          if (*saved) from = (*saved)->position.value;
        }
        break;
      }
    }
    position_.store(from);
    saved_ = from;
    thread_running_ = true;
    thread_ = std::thread([this] { run(); });
    return Status();
  }

  ~Impl() {
    stop(StopMode::kNow, std::chrono::hours(24)).ignore_error();
    if (thread_.joinable()) thread_.join();
  }

  // ------------------------------------------------------------ queries --

  std::string_view name() const { return name_; }
  SubscriptionState state() const {
    std::lock_guard lock(mu_);
    return state_;
  }
  GlobalPosition position() const { return GlobalPosition(position_.load()); }
  Status last_error() const {
    std::lock_guard lock(mu_);
    return last_error_;
  }

  ProjectionHealth health() const {
    ProjectionHealth h;
    h.name = name_;
    h.version = proj_.version();
    h.position = position();
    {
      std::lock_guard lock(mu_);
      h.state = state_;
      if (!last_error_.ok()) h.last_error = last_error_.to_string();
      h.last_error_us = last_error_us_;
    }
    h.handled = handled_.load();
    h.failures = failures_.load();
    h.dead_letters = dead_lettered_.load();
    const int64_t started = call_started_ns_.load();
    if (started != 0) h.handler_running_ms = (steady_ns() - started) / 1'000'000;
    Result<GlobalPosition> head = store_.current_position();
    h.head = head.ok() ? *head : h.position;
    if (h.head.value > h.position.value) {
      h.lag_events = h.head.value - h.position.value;
      AllReadOptions next;
      next.from = GlobalPosition(h.position.value + 1);
      next.max_count = 1;
      int64_t oldest_us = 0;
      Status s = store_.read_all(next, [&](const EventRecord& e) {
        oldest_us = e.timestamp_us;
        return false;
      });
      if (s.ok() && oldest_us != 0)
        h.lag_seconds = std::max(0.0, static_cast<double>(now_us() - oldest_us) / 1e6);
    }
    return h;
  }

  Status wait_until(GlobalPosition target, milliseconds timeout) const {
    std::unique_lock lock(mu_);
    const bool reached = cv_.wait_for(
        lock, timeout, [&] { return position_.load() >= target.value || finished_locked(); });
    if (position_.load() >= target.value) return Status();
    if (reached) return stopped_before_locked(fmt::format("position {}", target.value));
    return Status(Code::kTimedOut,
                  fmt::format("subscription {}: at position {}, did not reach position {} within "
                              "{} ms (state {}{}{})",
                              name_, position_.load(), target.value, timeout.count(),
                              state_name(state_), last_error_.ok() ? "" : ", last error: ",
                              last_error_.ok() ? "" : last_error_.to_string()));
  }

  Status wait_live(milliseconds timeout) const {
    std::unique_lock lock(mu_);
    const bool done = cv_.wait_for(lock, timeout, [&] { return live_ || finished_locked(); });
    if (live_) return Status();
    if (done) return stopped_before_locked("the head");
    return Status(Code::kTimedOut,
                  fmt::format("subscription {}: not live within {} ms (at position {}, state {})",
                              name_, timeout.count(), position_.load(), state_name(state_)));
  }

  // ------------------------------------------------------------ control --

  void pause() {
    {
      std::lock_guard lock(mu_);
      paused_ = true;
    }
    cv_.notify_all();
    store_.wake_waiters();
  }

  void resume() {
    {
      std::lock_guard lock(mu_);
      paused_ = false;
      if (at_poison_) poison_action_ = PoisonAction::kRetry;
    }
    cv_.notify_all();
  }

  Status skip() {
    std::unique_lock lock(mu_);
    if (!at_poison_)
      return invalid_argument(
          fmt::format("subscription {}: skip() needs it paused at a poison event (state {})", name_,
                      state_name(state_)));
    poison_action_ = PoisonAction::kSkip;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !at_poison_ || finished_locked(); });
    return Status();
  }

  Status stop(StopMode mode, milliseconds timeout) {
    if (on_own_thread())
      return invalid_argument(
          fmt::format("subscription {}: stop() from inside its own handler", name_));
    {
      std::unique_lock lock(mu_);
      if (!thread_running_) {
        lock.unlock();
        if (thread_.joinable()) thread_.join();
        return Status();
      }
      if (!stop_requested_ || mode == StopMode::kNow) {
        stop_requested_ = true;
        stop_now_ = stop_now_ || mode == StopMode::kNow;
        Result<GlobalPosition> head = store_.current_position();
        drain_target_ = head.ok() ? head->value : 0;
      }
    }
    cv_.notify_all();
    store_.wake_waiters();
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !thread_running_; }))
      return Status(Code::kTimedOut,
                    fmt::format("subscription {}: did not stop within {} ms (a handler call has "
                                "run for {} ms); it stops when the call returns",
                                name_, timeout.count(), handler_running_ms()));
    lock.unlock();
    if (thread_.joinable()) thread_.join();
    return Status();
  }

  Result<RebuildReport> rebuild(milliseconds timeout) {
    const Clock::time_point started = Clock::now();
    {
      std::lock_guard lock(mu_);
      if (!thread_running_)
        return closed(fmt::format("subscription {}: stopped (state {}); start it again to rebuild",
                                  name_, state_name(state_)));
    }
    GlobalPosition target;
    EVENTSOURCE_ASSIGN_OR_RETURN(target, store_.current_position());
    EVENTSOURCE_RETURN_IF_ERROR(on_thread([&]() -> Status {
      EVENTSOURCE_RETURN_IF_ERROR(guarded(name_, "reset()", [&] { return proj_.reset(); }));
      if (!proj_.owns_checkpoint() && opt_.store != nullptr)
        EVENTSOURCE_RETURN_IF_ERROR(opt_.store->save_checkpoint(checkpoint_name_, {}));
      position_.store(0);
      saved_ = 0;
      single_until_ = 0;
      report_ = RebuildReport{};
      reporting_ = true;
      std::lock_guard lock(mu_);
      live_ = false;
      return Status();
    }));
    Status waited = wait_until(target, timeout);
    RebuildReport report;
    on_thread([&]() -> Status {
      report = std::move(report_);
      reporting_ = false;
      return Status();
    }).ignore_error();
    report.through = position();
    report.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (!waited.ok()) report.error = waited.to_string();
    return report;
  }

  Status retry_dead_letter(uint64_t id) {
    if (opt_.store == nullptr)
      return invalid_argument(
          fmt::format("subscription {}: no ProjectionStore holds its dead letters", name_));
    return on_thread([&] { return retry_letter(id); });
  }

 private:
  enum class PoisonAction : uint8_t { kWait, kRetry, kSkip };

  bool finished_locked() const { return !thread_running_; }
  bool on_own_thread() const { return std::this_thread::get_id() == thread_id_.load(); }

  Status stopped_before_locked(std::string_view what) const {
    if (!last_error_.ok() && state_ == SubscriptionState::kError)
      return Status(last_error_.code(),
                    fmt::format("subscription {}: stopped at position {} "
                                "before reaching {}: {}",
                                name_, position_.load(), what, last_error_.message()));
    return closed(fmt::format("subscription {}: stopped at position {} before reaching {}", name_,
                              position_.load(), what));
  }

  int64_t handler_running_ms() const {
    const int64_t started = call_started_ns_.load();
    return started == 0 ? 0 : (steady_ns() - started) / 1'000'000;
  }

  void set_state(SubscriptionState s) {
    {
      std::lock_guard lock(mu_);
      if (state_ == s) return;
      state_ = s;
    }
    cv_.notify_all();
  }

  void advance(uint64_t through) {
    {
      std::lock_guard lock(mu_);
      position_.store(through);
    }
    cv_.notify_all();
  }

  // Runs `task` on the subscription's thread (or here, when it has ended).
  Status on_thread(std::function<Status()> task) {
    if (on_own_thread())
      return invalid_argument(
          fmt::format("subscription {}: called from inside its own handler", name_));
    std::packaged_task<Status()> packaged(std::move(task));
    std::future<Status> done = packaged.get_future();
    bool running = false;
    {
      std::lock_guard lock(mu_);
      running = thread_running_;
      if (running) tasks_.push_back(std::move(packaged));
    }
    if (!running) {
      // The thread has ended (for good): run it here, one caller at a time
      // (inline_mu_ also waits for the thread's last tasks).
      std::lock_guard inline_lock(inline_mu_);
      packaged();
      return done.get();
    }
    cv_.notify_all();
    store_.wake_waiters();
    return done.get();
  }

  void run_tasks() {
    std::deque<std::packaged_task<Status()>> tasks;
    {
      std::lock_guard lock(mu_);
      tasks.swap(tasks_);
    }
    for (auto& t : tasks) t();
  }

  // Records a failure of the projection: counters, last error, log.
  void record_failure(const Status& s, uint64_t position) {
    failures_.fetch_add(1);
    if (Metrics* m = opt_.observability.metrics) m->count_handler_failure();
    {
      std::lock_guard lock(mu_);
      last_error_ = s;
      last_error_us_ = now_us();
    }
    const std::string pos = std::to_string(position);
    const std::string text = s.to_string();
    log_to(opt_.observability.log, LogLevel::kWarn, "projection handler failed",
           std::array<LogField, 3>{LogField{"projection", name_}, LogField{"position", pos},
                                   LogField{"error", text}});
  }

  // One handler call, timed (precisely only when there is a time limit: the
  // per-event cost of a catch-up is in these few nanoseconds).
  Status call_handle(const EventRecord& e) {
    if (opt_.handler_timeout.count() == 0) {
      call_started_ns_.store(coarse_ns(), std::memory_order_relaxed);
      Status s = guarded(name_, "handle()", [&] { return proj_.handle(e); });
      call_started_ns_.store(0, std::memory_order_relaxed);
      return s;
    }
    call_started_ns_.store(steady_ns(), std::memory_order_relaxed);
    Status s = guarded(name_, "handle()", [&] { return proj_.handle(e); });
    return timed(std::move(s), "handle()", e.position.value);
  }
  Status call_end(uint64_t through) {
    call_started_ns_.store(steady_ns(), std::memory_order_relaxed);
    Status s =
        guarded(name_, "end_batch()", [&] { return proj_.end_batch(GlobalPosition(through)); });
    return timed(std::move(s), "end_batch()", through);
  }
  Status timed(Status s, std::string_view what, uint64_t position) {
    const int64_t took_ns = steady_ns() - call_started_ns_.load(std::memory_order_relaxed);
    call_started_ns_.store(0, std::memory_order_relaxed);
    const int64_t limit_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.handler_timeout).count();
    if (s.ok() && limit_ns > 0 && took_ns > limit_ns)
      return Status(
          Code::kTimedOut,
          fmt::format("projection {}: {} at position {} took {} ms, over its limit of "
                      "{} ms",
                      name_, what, position, took_ns / 1'000'000, opt_.handler_timeout.count()));
    return s;
  }
  Status call_begin() {
    return guarded(name_, "begin_batch()", [&] { return proj_.begin_batch(); });
  }
  void call_abort() {
    guarded(name_, "abort_batch()", [&] {
      proj_.abort_batch();
      return Status();
    }).ignore_error();
  }

  bool stop_now() {
    std::lock_guard lock(mu_);
    return stop_requested_ && stop_now_;
  }
  bool should_yield() {
    std::lock_guard lock(mu_);
    return (stop_requested_ && stop_now_) || paused_ || !tasks_.empty();
  }

  // Sleeps `d` unless stop(kNow) or a task comes first; false then.
  bool backoff(milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d,
                         [&] { return (stop_requested_ && stop_now_) || !tasks_.empty(); });
  }

  void checkpoint(bool force) {
    const uint64_t pos = position_.load();
    if (proj_.owns_checkpoint() || opt_.store == nullptr || pos == saved_) return;
    if (!force && opt_.checkpoint.every == CheckpointPolicy::Every::kInterval &&
        Clock::now() - last_save_ < opt_.checkpoint.interval)
      return;
    Status s = opt_.store->save_checkpoint(checkpoint_name_, GlobalPosition(pos));
    if (!s.ok()) {
      record_failure(s, pos);
      return;
    }
    saved_ = pos;
    last_save_ = Clock::now();
  }

  // A dead letter for `e`; one per (projection, position): a letter already
  // there for it (a rebuild meeting it again, a crash before the checkpoint)
  // is replaced with the attempts added up.
  Status dead_letter(const StoredEvent& e, const Status& error, uint32_t attempts) {
    DeadLetter letter;
    letter.projection = name_;
    letter.position = e.position;
    letter.error = error.to_string();
    letter.attempts = attempts;
    letter.first_failure_us = letter.last_failure_us = now_us();
    Result<std::vector<DeadLetter>> old = opt_.store->dead_letters(name_);
    if (old.ok()) {
      for (const DeadLetter& d : *old) {
        if (d.position.value != e.position.value) continue;
        letter.attempts += d.attempts;
        letter.first_failure_us = d.first_failure_us;
        opt_.store->remove_dead_letter(d.id).ignore_error();
      }
    }
    Result<uint64_t> id = opt_.store->add_dead_letter(letter);
    if (!id.ok()) return id.take_status();
    letter.id = *id;
    dead_lettered_.fetch_add(1);
    if (Metrics* m = opt_.observability.metrics) m->count_dead_letter();
    const std::string pos = std::to_string(e.position.value);
    log_to(opt_.observability.log, LogLevel::kError, "projection dead-lettered an event",
           std::array<LogField, 4>{LogField{"projection", name_}, LogField{"position", pos},
                                   LogField{"type", e.type}, LogField{"error", letter.error}});
    if (reporting_) report_.dead_letters.push_back(std::move(letter));
    return Status();
  }

  // Handles `e` once more in a batch of its own.
  Status handle_alone(const StoredEvent& e, uint64_t through) {
    EVENTSOURCE_RETURN_IF_ERROR(call_begin());
    Status s = call_handle(e.view());
    if (s.ok()) s = call_end(through);
    if (!s.ok()) call_abort();
    return s;
  }

  // Passes `e` without handling it (its checkpoint moves past it).
  Status pass(const StoredEvent& e) {
    EVENTSOURCE_RETURN_IF_ERROR(call_begin());
    Status s = call_end(e.position.value);
    if (!s.ok()) {
      call_abort();
      return s;
    }
    advance(e.position.value);
    checkpoint(false);
    return Status();
  }

  // Dead-letters `e` and passes it; false (stop the thread, kError) when
  // either write fails: the event is never skipped without its letter.
  bool park(const StoredEvent& e, const Status& error, uint32_t attempts) {
    Status s = dead_letter(e, error, attempts);
    if (s.ok()) s = pass(e);
    if (s.ok()) return true;
    record_failure(s, e.position.value);
    fail(s);
    return false;
  }

  // The failure ladder for the event that failed. False: stop the thread.
  bool poison(const StoredEvent& e, Status error) {
    uint32_t attempts = 1;
    milliseconds wait = opt_.failure.initial_backoff;
    while (true) {
      record_failure(error, e.position.value);
      if (attempts >= opt_.failure.max_attempts) {
        switch (opt_.failure.then) {
          case FailurePolicy::Then::kDeadLetter: {
            if (opt_.store == nullptr) {
              // Nowhere to park it: stop rather than skip it silently.
              Status s(error.code(),
                       fmt::format("{} (position {}: no ProjectionStore to dead-letter it in; give "
                                   "SubscriptionOptions::store)",
                                   error.message(), e.position.value));
              record_failure(s, e.position.value);
              fail(s);
              return false;
            }
            return park(e, error, attempts);
          }
          case FailurePolicy::Then::kStop:
            fail(error);
            return false;
          case FailurePolicy::Then::kPause: {
            PoisonAction action = wait_poison();
            if (action == PoisonAction::kWait) return false;  // stopping
            if (action == PoisonAction::kSkip) {
              if (opt_.store == nullptr) {
                Status s = invalid_argument(fmt::format(
                    "subscription {}: skip() dead-letters the event, which needs options.store",
                    name_));
                record_failure(s, e.position.value);
                attempts = 0;
                break;
              }
              return park(e, error, attempts);
            }
            attempts = 0;  // retry: a fresh ladder
            wait = milliseconds(0);
            break;
          }
        }
      }
      if (wait.count() > 0 && !backoff(wait)) return !stop_now();
      if (stop_now()) return false;
      wait = std::min(opt_.failure.max_backoff, std::max(wait * 2, milliseconds(1)));
      ++attempts;
      error = handle_alone(e, e.position.value);
      if (error.ok()) {
        handled_.fetch_add(1);
        if (reporting_) ++report_.handled;
        advance(e.position.value);
        checkpoint(false);
        return true;
      }
    }
  }

  PoisonAction wait_poison() {
    std::unique_lock lock(mu_);
    at_poison_ = true;
    poison_action_ = PoisonAction::kWait;
    state_ = SubscriptionState::kPaused;
    cv_.notify_all();
    cv_.wait(lock, [&] { return poison_action_ != PoisonAction::kWait || stop_requested_; });
    at_poison_ = false;
    PoisonAction action = poison_action_;
    poison_action_ = PoisonAction::kWait;
    state_ = live_ ? SubscriptionState::kLive : SubscriptionState::kCatchingUp;
    cv_.notify_all();
    return action;
  }

  void fail(const Status& s) {
    {
      std::lock_guard lock(mu_);
      last_error_ = s;
      last_error_us_ = now_us();
      state_ = SubscriptionState::kError;
      failed_ = true;
    }
    cv_.notify_all();
  }

  // One batch from position_+1 up to `head`. False: stop the thread.
  bool batch(uint64_t head) {
    const uint64_t from = position_.load();
    const bool single =
        opt_.checkpoint.every == CheckpointPolicy::Every::kEvent || from < single_until_;
    Span span;
    if (opt_.observability.tracer) {
      span = Span(opt_.observability.tracer, fmt::format("projection.{}.batch", name_));
      span.set_attribute("from", static_cast<int64_t>(from + 1));
    }
    Status s = call_begin();
    if (!s.ok()) {
      span.record_error(s.to_string());
      record_failure(s, from + 1);
      return backoff(opt_.failure.initial_backoff) || !stop_now();
    }
    AllReadOptions read = filter_;
    read.from = GlobalPosition(from + 1);
    read.max_count = single ? 1 : opt_.batch_size;
    uint64_t through = from;  // the last event handled
    uint64_t delivered = 0;
    int64_t last_time_us = 0;
    bool cut = false;  // stopped before the read's end (pause, stop, a task)
    std::optional<StoredEvent> failed;
    Status failure;
    Status read_status = store_.read_all(read, [&](const EventRecord& e) {
      if (e.position.value > head) return false;
      if (delivered > 0 && (delivered & 63) == 0 && should_yield()) {
        cut = true;
        return false;
      }
      Status hs = call_handle(e);
      if (!hs.ok()) {
        failed = e.to_stored();
        failure = std::move(hs);
        return false;
      }
      through = e.position.value;
      last_time_us = e.timestamp_us;
      ++delivered;
      return true;
    });
    if (!read_status.ok()) {
      call_abort();
      span.record_error(read_status.to_string());
      if (read_status.code() == Code::kClosed) return false;
      record_failure(read_status, from + 1);
      return backoff(opt_.failure.initial_backoff) || !stop_now();
    }
    // How far the read got: a failure or a cut ends at the last event
    // handled; a full batch at its last event; otherwise through the head.
    uint64_t end = through;
    if (failed) {
      end = failed->position.value - 1;
    } else if (!cut && delivered < read.max_count) {
      end = head;
    }
    if (end < from) end = from;
    Status es = call_end(end);
    if (!es.ok()) {
      // The batch failed as a whole: roll it back, then go through its
      // events one at a time to find the one that fails.
      call_abort();
      span.record_error(es.to_string());
      single_until_ = std::max(end, failed ? failed->position.value : end);
      if (single && delivered == 1) {
        // A batch of one: the ladder takes over, with its event.
        std::optional<StoredEvent> only = read_one(from + 1, head);
        if (only) return poison(*only, es);
      }
      record_failure(es, from + 1);
      // Nothing to single out (an empty batch failed): wait, then again.
      if (single || delivered == 0) return backoff(opt_.failure.initial_backoff) || !stop_now();
      return true;
    }
    handled_.fetch_add(delivered);
    if (reporting_) report_.handled += delivered;
    if (Metrics* m = opt_.observability.metrics) {
      m->count_dispatched(delivered);
      const double age = end < head && delivered > 0
                             ? std::max(0.0, static_cast<double>(now_us() - last_time_us) / 1e6)
                             : 0.0;
      m->set_projection_lag(name_, head - end, age);
    }
    advance(end);
    checkpoint(false);
    span.set_attribute("events", static_cast<int64_t>(delivered));
    if (failed) return poison(*failed, std::move(failure));
    return true;
  }

  // The first event at or after `from` that the filters pass, up to `head`.
  std::optional<StoredEvent> read_one(uint64_t from, uint64_t head) {
    AllReadOptions read = filter_;
    read.from = GlobalPosition(from);
    read.max_count = 1;
    std::optional<StoredEvent> out;
    store_
        .read_all(read,
                  [&](const EventRecord& e) {
                    if (e.position.value <= head) out = e.to_stored();
                    return false;
                  })
        .ignore_error();
    return out;
  }

  Status retry_letter(uint64_t id) {
    DeadLetter letter;
    EVENTSOURCE_ASSIGN_OR_RETURN(letter, opt_.store->dead_letter(id));
    if (letter.projection != name_)
      return invalid_argument(
          fmt::format("dead letter #{} belongs to projection {}, not {}: retry it through that one",
                      id, letter.projection, name_));
    std::optional<StoredEvent> event;
    AllReadOptions read;
    read.from = letter.position;
    read.max_count = 1;
    EVENTSOURCE_RETURN_IF_ERROR(store_.read_all(read, [&](const EventRecord& e) {
      if (e.position.value == letter.position.value) event = e.to_stored();
      return false;
    }));
    if (!event)
      return not_found(fmt::format("dead letter #{}: no event at position {} in the store", id,
                                   letter.position.value));
    Status s = handle_alone(*event, position_.load());
    if (s.ok()) {
      handled_.fetch_add(1);
      return opt_.store->remove_dead_letter(id);
    }
    record_failure(s, letter.position.value);
    letter.attempts += 1;
    letter.last_failure_us = now_us();
    letter.error = s.to_string();
    EVENTSOURCE_RETURN_IF_ERROR(opt_.store->remove_dead_letter(id));
    Result<uint64_t> again = opt_.store->add_dead_letter(letter);
    if (!again.ok()) return again.take_status();
    return Status(s.code(), fmt::format("dead letter #{} failed again (now #{}): {}", id, *again,
                                        s.message()));
  }

  // Replays the letters an operator marked for retry (esdump dlq retry).
  void retry_marked() {
    if (opt_.store == nullptr) return;
    Result<std::vector<uint64_t>> marked = opt_.store->marked_for_retry();
    if (!marked.ok()) {
      record_failure(marked.status(), position_.load());
      return;
    }
    std::vector<uint64_t> done;
    for (uint64_t id : *marked) {
      Result<DeadLetter> letter = opt_.store->dead_letter(id);
      if (!letter.ok() || letter->projection != name_) continue;
      Status s = retry_letter(id);
      log_to(opt_.observability.log, s.ok() ? LogLevel::kInfo : LogLevel::kWarn,
             s.ok() ? "marked dead letter retried" : "marked dead letter failed again",
             std::array<LogField, 2>{LogField{"projection", name_},
                                     LogField{"error", s.ok() ? "" : s.to_string()}});
      done.push_back(id);
    }
    if (!done.empty()) {
      Status s = opt_.store->unmark(done);
      if (!s.ok()) record_failure(s, position_.load());
    }
  }

  void run() {
    thread_id_ = std::this_thread::get_id();
    retry_marked();
    set_state(SubscriptionState::kCatchingUp);
    const milliseconds poll = std::max(opt_.poll_interval, milliseconds(1));
    while (true) {
      run_tasks();
      bool paused = false;
      {
        std::unique_lock lock(mu_);
        if (failed_) break;
        if (stop_requested_ && (stop_now_ || position_.load() >= drain_target_)) break;
        paused = paused_;
        if (paused && stop_requested_) break;  // a paused subscription stops where it is
        if (paused) {
          state_ = SubscriptionState::kPaused;
          cv_.notify_all();
          cv_.wait(lock, [&] { return !paused_ || stop_requested_ || !tasks_.empty(); });
          if (!paused_) state_ = live_ ? SubscriptionState::kLive : SubscriptionState::kCatchingUp;
          cv_.notify_all();
          continue;
        }
      }
      const uint64_t pos = position_.load();
      Result<GlobalPosition> head = store_.wait_for_events(GlobalPosition(pos), milliseconds(0));
      if (!head.ok()) {
        if (head.status().code() != Code::kClosed) fail(head.status());
        break;
      }
      if (head->value > pos) {
        if (!batch(head->value)) break;
        continue;
      }
      // At the head: checkpoint what is handled (the first time, and then
      // as the policy says), then wait for appends.
      checkpoint(!live_once_);
      live_once_ = true;
      {
        std::lock_guard lock(mu_);
        if (!live_) {
          live_ = true;
          state_ = SubscriptionState::kLive;
        }
        if (stop_requested_) {
          cv_.notify_all();
          break;
        }
      }
      cv_.notify_all();
      Result<GlobalPosition> next =
          store_.wait_for_events(GlobalPosition(pos), milliseconds(100), poll);
      if (!next.ok()) {
        if (next.status().code() != Code::kClosed) fail(next.status());
        break;
      }
    }
    checkpoint(true);
    {
      // From here on, tasks run on their caller's thread (on_thread), after
      // the ones queued before this point, which run here.
      std::lock_guard inline_lock(inline_mu_);
      {
        std::lock_guard lock(mu_);
        if (state_ != SubscriptionState::kError) state_ = SubscriptionState::kStopped;
        thread_running_ = false;
      }
      run_tasks();
    }
    cv_.notify_all();
  }

  EventStore& store_;
  std::unique_ptr<Projection> owned_;
  Projection& proj_;
  const SubscriptionOptions opt_;
  const std::string name_;
  const std::string checkpoint_name_;
  AllReadOptions filter_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::mutex inline_mu_;  // tasks run on the caller's thread once the thread has ended
  SubscriptionState state_ = SubscriptionState::kStarting;
  Status last_error_;
  int64_t last_error_us_ = 0;
  bool live_ = false;
  bool paused_ = false;
  bool at_poison_ = false;
  PoisonAction poison_action_ = PoisonAction::kWait;
  bool stop_requested_ = false;
  bool stop_now_ = false;
  uint64_t drain_target_ = 0;
  bool thread_running_ = false;
  bool failed_ = false;
  std::deque<std::packaged_task<Status()>> tasks_;
  std::atomic<uint64_t> position_{0};
  std::atomic<uint64_t> handled_{0}, failures_{0}, dead_lettered_{0};
  std::atomic<int64_t> call_started_ns_{0};

  // The subscription thread's own (also tasks run inline after it ended).
  uint64_t saved_ = 0;  // the last checkpoint written
  Clock::time_point last_save_ = Clock::now();
  uint64_t single_until_ = 0;  // one event per batch up to here (a failed batch)
  bool live_once_ = false;     // has been at the head since start
  bool reporting_ = false;     // a rebuild is collecting its report
  RebuildReport report_;

  std::atomic<std::thread::id> thread_id_{};
  std::thread thread_;
};

// ----------------------------------------------------------------- front --

Subscription::Subscription(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Subscription::~Subscription() = default;

Result<std::unique_ptr<Subscription>> Subscription::create(EventStore& store,
                                                           Projection& projection,
                                                           std::unique_ptr<Projection> owned,
                                                           SubscriptionOptions options) {
  auto impl = std::make_unique<Impl>(store, projection, std::move(owned), std::move(options));
  EVENTSOURCE_RETURN_IF_ERROR(impl->validate());
  EVENTSOURCE_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<Subscription>(new Subscription(std::move(impl)));
}

Result<std::unique_ptr<Subscription>> Subscription::start(EventStore& store, Projection& projection,
                                                          SubscriptionOptions options) {
  return create(store, projection, nullptr, std::move(options));
}

Result<std::unique_ptr<Subscription>> Subscription::start(EventStore& store, std::string name,
                                                          RecordHandler handler,
                                                          SubscriptionOptions options) {
  if (!handler) return invalid_argument(fmt::format("subscription {}: empty handler", name));
  auto owned = std::make_unique<HandlerProjection>(std::move(name), std::move(handler));
  Projection& p = *owned;
  return create(store, p, std::move(owned), std::move(options));
}

Result<std::unique_ptr<Subscription>> Subscription::start_batched(EventStore& store,
                                                                  std::string name,
                                                                  BatchHandler handler,
                                                                  SubscriptionOptions options) {
  if (!handler) return invalid_argument(fmt::format("subscription {}: empty handler", name));
  auto owned = std::make_unique<BatchProjection>(std::move(name), std::move(handler));
  Projection& p = *owned;
  return create(store, p, std::move(owned), std::move(options));
}

std::string_view Subscription::name() const { return impl_->name(); }
SubscriptionState Subscription::state() const { return impl_->state(); }
GlobalPosition Subscription::position() const { return impl_->position(); }
Status Subscription::last_error() const { return impl_->last_error(); }
ProjectionHealth Subscription::health() const { return impl_->health(); }
Status Subscription::wait_until(GlobalPosition position, milliseconds timeout) const {
  return impl_->wait_until(position, timeout);
}
Status Subscription::wait_live(milliseconds timeout) const { return impl_->wait_live(timeout); }
void Subscription::pause() { impl_->pause(); }
void Subscription::resume() { impl_->resume(); }
Status Subscription::skip() { return impl_->skip(); }
Status Subscription::stop(StopMode mode, milliseconds timeout) {
  return impl_->stop(mode, timeout);
}
Result<RebuildReport> Subscription::rebuild(milliseconds timeout) {
  return impl_->rebuild(timeout);
}
Status Subscription::retry_dead_letter(uint64_t id) { return impl_->retry_dead_letter(id); }

}  // namespace eventsource
