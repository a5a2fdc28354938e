// Subscription (subscription.h): start positions, catch-up then live with
// no gap and no duplicate, filters, batch handlers, pause / resume / stop
// with drain, handler time limits, states, the failure ladder (retry with
// backoff, dead letter, pause at a poison event, stop), checkpoints and
// their policies, dead-letter retry (also marked from outside), rebuild,
// counters, a reader process following a writer process, and control calls
// racing appends (TSan).
#include "eventsource/subscription.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/engine_event_store.h"
#include "eventsource/memory_event_store.h"
#include "eventsource/projection_store.h"
#include "tests/api/api_test_support.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace subscription_test {

using namespace eventsource;
using namespace std::chrono_literals;
using testing::append_one;
using testing::mentions;
using testing::new_event;
using testing::TempDir;

// Appends `n` events of `type` to `stream` (one per append); the last position.
GlobalPosition append_n(EventStore& store, int n, const std::string& type = "Tick",
                        const StreamId& stream = {"Clock", "1"}, const std::string& tenant = "") {
  GlobalPosition last;
  for (int i = 0; i < n; ++i) {
    NewEvent e = new_event(type, "{\"i\":" + std::to_string(i) + "}");
    e.tenant = tenant;
    auto r = append_one(store, stream, ExpectedVersion::any(), std::move(e));
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    last = r->last_position;
  }
  return last;
}

// Records the positions a handler saw, safe across threads.
class Seen {
 public:
  RecordHandler handler() {
    return [this](const EventRecord& e) {
      std::lock_guard lock(mu_);
      positions_.push_back(e.position.value);
      return Status();
    };
  }
  std::vector<uint64_t> positions() const {
    std::lock_guard lock(mu_);
    return positions_;
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return positions_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<uint64_t> positions_;
};

std::vector<uint64_t> range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t p = first; p <= last; ++p) out.push_back(p);
  return out;
}

std::unique_ptr<Subscription> start(EventStore& store, const std::string& name, RecordHandler fn,
                                    SubscriptionOptions options = {}) {
  auto r = Subscription::start(store, name, std::move(fn), std::move(options));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

void require_ok(const Status& s) { REQUIRE_MESSAGE(s.ok(), s.to_string()); }

// Fast retries for tests.
FailurePolicy quick(uint32_t attempts, FailurePolicy::Then then) {
  FailurePolicy p;
  p.max_attempts = attempts;
  p.initial_backoff = 1ms;
  p.max_backoff = 4ms;
  p.then = then;
  return p;
}

TEST_SUITE("api-subscriptions") {
  TEST_CASE("catch-up switches to live with no gap and no duplicate while appends race") {
    InMemoryEventStore store;
    append_n(store, 300);
    Seen seen;
    std::atomic<bool> go{false};
    std::thread writer([&] {
      while (!go.load()) std::this_thread::yield();
      append_n(store, 700);
    });
    auto sub = start(store, "all", seen.handler(), {.batch_size = 7});
    go = true;
    writer.join();
    require_ok(sub->wait_until(GlobalPosition(1000), 10s));
    CHECK(seen.positions() == range(1, 1000));
    require_ok(sub->wait_live(10s));
    CHECK(sub->state() == SubscriptionState::kLive);
    // Live: new appends arrive, still in order, once each.
    append_n(store, 5);
    require_ok(sub->wait_until(GlobalPosition(1005), 10s));
    CHECK(seen.positions() == range(1, 1005));
    require_ok(sub->stop());
    CHECK(sub->state() == SubscriptionState::kStopped);
  }

  TEST_CASE("start positions: beginning, end, a position, a saved checkpoint") {
    InMemoryEventStore store;
    InMemoryProjectionStore checkpoints;
    append_n(store, 10);
    Seen from_start, from_end, from_five, resumed;
    auto a = start(store, "a", from_start.handler(), {.from = StartFrom::beginning()});
    auto b = start(store, "b", from_end.handler(), {.from = StartFrom::end()});
    auto c = start(store, "c", from_five.handler(), {.from = StartFrom::at(GlobalPosition(5))});
    {
      auto d = start(store, "d", resumed.handler(), {.store = &checkpoints});
      require_ok(d->wait_until(GlobalPosition(10), 10s));
      require_ok(d->stop());
    }
    auto saved = checkpoints.load_checkpoint("d@v1");
    REQUIRE(saved.ok());
    REQUIRE(saved->has_value());
    CHECK((*saved)->position.value == 10);
    append_n(store, 3);
    Seen after;
    auto d2 = start(store, "d", after.handler(), {.store = &checkpoints});
    for (auto* s : {a.get(), b.get(), c.get(), d2.get()})
      require_ok(s->wait_until(GlobalPosition(13), 10s));
    CHECK(from_start.positions() == range(1, 13));
    CHECK(from_end.positions() == range(11, 13));
    CHECK(from_five.positions() == range(5, 13));
    CHECK(after.positions() == range(11, 13));  // resumed after its checkpoint
  }

  TEST_CASE(
      "filters: types, stream types and tenant; filtered-out events still count as got through") {
    InMemoryEventStore store;
    append_n(store, 3, "Placed", {"Order", "1"}, "acme");
    append_n(store, 3, "Shipped", {"Order", "1"}, "acme");
    append_n(store, 3, "Placed", {"Cart", "1"}, "acme");
    append_n(store, 3, "Placed", {"Order", "2"}, "globex");
    const GlobalPosition last = append_n(store, 1, "Other", {"Misc", "1"});
    Seen seen;
    auto sub = start(store, "orders", seen.handler(),
                     {.event_types = {"Placed"}, .stream_types = {"Order"}, .tenant = "acme"});
    require_ok(sub->wait_until(last, 10s));  // the last event is filtered out: still reached
    CHECK(seen.positions() == range(1, 3));
    CHECK(sub->position() == last);
  }

  TEST_CASE("a batch handler gets every event in order, in batches") {
    InMemoryEventStore store;
    append_n(store, 250);
    std::mutex mu;
    std::vector<size_t> sizes;
    std::vector<uint64_t> positions;
    auto r = Subscription::start_batched(store, "batched",
                                         [&](std::span<const StoredEvent> batch) {
                                           std::lock_guard lock(mu);
                                           sizes.push_back(batch.size());
                                           for (const StoredEvent& e : batch)
                                             positions.push_back(e.position.value);
                                           return Status();
                                         },
                                         {.batch_size = 100});
    REQUIRE(r.ok());
    require_ok((*r)->wait_until(GlobalPosition(250), 10s));
    std::lock_guard lock(mu);
    CHECK(positions == range(1, 250));
    CHECK(sizes.front() == 100);
    CHECK(sizes.size() >= 3);
  }

  TEST_CASE(
      "a failing batch is handled again one event at a time; the poison one is dead-lettered") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 20);
    std::mutex mu;
    std::set<uint64_t> handled;
    auto r = Subscription::start_batched(
        store, "batched",
        [&](std::span<const StoredEvent> batch) {
          for (const StoredEvent& e : batch)
            if (e.position.value == 13) return invalid_argument("position 13 is poison");
          std::lock_guard lock(mu);
          for (const StoredEvent& e : batch) handled.insert(e.position.value);
          return Status();
        },
        {.store = &dlq, .failure = quick(2, FailurePolicy::Then::kDeadLetter), .batch_size = 8});
    REQUIRE(r.ok());
    require_ok((*r)->wait_until(GlobalPosition(20), 10s));
    auto letters = dlq.dead_letters();
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    CHECK((*letters)[0].position.value == 13);
    CHECK((*letters)[0].projection == "batched");
    std::lock_guard lock(mu);
    std::set<uint64_t> want;
    for (uint64_t p = 1; p <= 20; ++p)
      if (p != 13) want.insert(p);
    CHECK(handled == want);
  }

  TEST_CASE("pause holds deliveries, resume catches up; stop(kDrain) delivers what was stored") {
    InMemoryEventStore store;
    Seen seen;
    auto sub = start(store, "p", seen.handler());
    append_n(store, 5);
    require_ok(sub->wait_until(GlobalPosition(5), 10s));
    sub->pause();
    for (int i = 0; i < 200 && sub->state() != SubscriptionState::kPaused; ++i)
      std::this_thread::sleep_for(5ms);
    REQUIRE(sub->state() == SubscriptionState::kPaused);
    append_n(store, 5);
    CHECK(sub->wait_until(GlobalPosition(10), 50ms).code() == Code::kTimedOut);
    CHECK(seen.size() == 5);
    sub->resume();
    require_ok(sub->wait_until(GlobalPosition(10), 10s));
    CHECK(seen.positions() == range(1, 10));
    sub->pause();
    append_n(store, 5);
    sub->resume();
    require_ok(sub->stop(Subscription::StopMode::kDrain));
    CHECK(seen.positions() == range(1, 15));
    CHECK(sub->wait_until(GlobalPosition(16), 10s).code() == Code::kClosed);

    // Paused, then stopped with drain: it stops where it is, promptly.
    Seen second;
    auto paused = start(store, "p2", second.handler());
    require_ok(paused->wait_until(GlobalPosition(15), 10s));
    paused->pause();
    append_n(store, 3);
    require_ok(paused->stop(Subscription::StopMode::kDrain, 5s));
    CHECK(second.size() <= 18);
  }

  TEST_CASE("stop(kNow) returns promptly mid-backlog and the checkpoint is what was handled") {
    InMemoryEventStore store;
    InMemoryProjectionStore checkpoints;
    append_n(store, 2000);
    std::atomic<int> calls{0};
    auto sub = start(store, "slow",
                     [&](const EventRecord&) {
                       std::this_thread::sleep_for(100us);
                       ++calls;
                       return Status();
                     },
                     {.store = &checkpoints, .batch_size = 50});
    while (calls.load() < 10) std::this_thread::sleep_for(1ms);
    require_ok(sub->stop(Subscription::StopMode::kNow));
    const uint64_t got = sub->position().value;
    CHECK(got < 2000);
    auto saved = checkpoints.load_checkpoint("slow@v1");
    REQUIRE(saved.ok());
    REQUIRE(saved->has_value());
    CHECK((*saved)->position.value == got);
    CHECK(static_cast<uint64_t>(calls.load()) == got);  // never ahead of what was handled
  }

  TEST_CASE("the failure ladder: retries with backoff, then a dead letter, and it goes on") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 10);
    std::map<uint64_t, int> calls;
    std::mutex mu;
    FailurePolicy policy = quick(4, FailurePolicy::Then::kDeadLetter);
    policy.initial_backoff = 10ms;
    policy.max_backoff = 40ms;
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = start(store, "ladder",
                     [&](const EventRecord& e) {
                       std::lock_guard lock(mu);
                       int n = ++calls[e.position.value];
                       if (e.position.value == 3 && n <= 2)
                         return invalid_argument("flaky");  // then ok
                       if (e.position.value == 7) return invalid_argument("always fails at 7");
                       return Status();
                     },
                     {.store = &dlq, .failure = policy});
    require_ok(sub->wait_until(GlobalPosition(10), 10s));
    const auto took = std::chrono::steady_clock::now() - t0;
    {
      std::lock_guard lock(mu);
      CHECK(calls[3] == 3);
      CHECK(calls[7] == 4);
      CHECK(calls[10] == 1);
    }
    // Backoff waited 10 + 20 (flaky 3) and 10 + 20 + 40 (poison 7) at least.
    CHECK(took >= 100ms);
    auto letters = dlq.dead_letters("ladder");
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    const DeadLetter& d = (*letters)[0];
    CHECK(d.position.value == 7);
    CHECK(d.attempts == 4);
    CHECK(d.error.find("always fails at 7") != std::string::npos);
    CHECK(d.first_failure_us > 0);
    const ProjectionHealth h = sub->health();
    CHECK(h.failures == 6);
    CHECK(h.dead_letters == 1);
    CHECK(h.handled == 9);
    CHECK(h.last_error.find("always fails at 7") != std::string::npos);
  }

  TEST_CASE("a throwing handler is a failure, not a crash") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 3);
    auto sub = start(store, "thrower",
                     [&](const EventRecord& e) -> Status {
                       if (e.position.value == 2) throw std::runtime_error("boom");
                       return Status();
                     },
                     {.store = &dlq, .failure = quick(2, FailurePolicy::Then::kDeadLetter)});
    require_ok(sub->wait_until(GlobalPosition(3), 10s));
    auto letters = dlq.dead_letters();
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    CHECK((*letters)[0].error.find("boom") != std::string::npos);
  }

  TEST_CASE(
      "kPause stops at the poison event until resume() retries it or skip() dead-letters it") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 6);
    std::atomic<bool> fixed{false};
    Seen seen;
    auto sub = start(store, "careful",
                     [&](const EventRecord& e) {
                       if ((e.position.value == 2 && !fixed) || e.position.value == 4)
                         return invalid_argument("poison at " + std::to_string(e.position.value));
                       return seen.handler()(e);
                     },
                     {.store = &dlq, .failure = quick(2, FailurePolicy::Then::kPause)});
    CHECK(sub->wait_until(GlobalPosition(2), 300ms).code() == Code::kTimedOut);
    CHECK(sub->state() == SubscriptionState::kPaused);
    CHECK(sub->position().value == 1);
    fixed = true;
    sub->resume();  // retries position 2, which now works
    CHECK(sub->wait_until(GlobalPosition(4), 300ms).code() == Code::kTimedOut);
    CHECK(sub->position().value == 3);
    CHECK(sub->state() == SubscriptionState::kPaused);
    require_ok(sub->skip());  // 4 is dead-lettered, never silently dropped
    require_ok(sub->wait_until(GlobalPosition(6), 10s));
    CHECK(seen.positions() == std::vector<uint64_t>{1, 2, 3, 5, 6});
    auto letters = dlq.dead_letters();
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    CHECK((*letters)[0].position.value == 4);
    CHECK(sub->skip().code() == Code::kInvalidArgument);  // not at a poison event now
  }

  TEST_CASE("kStop ends in kError, and waits report the error") {
    InMemoryEventStore store;
    append_n(store, 3);
    auto sub = start(store, "strict",
                     [&](const EventRecord& e) {
                       return e.position.value == 2 ? invalid_argument("no") : Status();
                     },
                     {.failure = quick(1, FailurePolicy::Then::kStop)});
    Status s = sub->wait_until(GlobalPosition(3), 10s);
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(mentions(s, "strict"));
    CHECK(sub->state() == SubscriptionState::kError);
    CHECK(sub->position().value == 1);
    CHECK(sub->last_error().message() == "no");
  }

  TEST_CASE("without a ProjectionStore a poison event stops the subscription, never skipped") {
    InMemoryEventStore store;
    append_n(store, 3);
    auto sub = start(store, "nowhere",
                     [](const EventRecord& e) {
                       return e.position.value == 2 ? invalid_argument("bad") : Status();
                     },
                     {.failure = quick(2, FailurePolicy::Then::kDeadLetter)});
    Status s = sub->wait_until(GlobalPosition(3), 10s);
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(sub->state() == SubscriptionState::kError);
    CHECK(sub->position().value == 1);
    CHECK(mentions(sub->last_error(), "no ProjectionStore"));
    auto bad = Subscription::start(store, "$x", [](const EventRecord&) { return Status(); });
    CHECK(bad.status().code() == Code::kInvalidArgument);
    auto empty = Subscription::start(store, "x", RecordHandler());
    CHECK(empty.status().code() == Code::kInvalidArgument);
  }

  TEST_CASE("a handler over its time limit fails with kTimedOut") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 3);
    auto sub = start(store, "sluggish",
                     [&](const EventRecord& e) {
                       if (e.position.value == 2) std::this_thread::sleep_for(30ms);
                       return Status();
                     },
                     {.store = &dlq,
                      .failure = quick(2, FailurePolicy::Then::kDeadLetter),
                      .handler_timeout = 10ms});
    require_ok(sub->wait_until(GlobalPosition(3), 10s));
    auto letters = dlq.dead_letters();
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    CHECK((*letters)[0].position.value == 2);
    CHECK((*letters)[0].error.find("timed out") != std::string::npos);
  }

  TEST_CASE("health shows a handler call that is running long") {
    InMemoryEventStore store;
    append_n(store, 1);
    std::atomic<bool> release{false};
    auto sub = start(store, "stuck",
                     [&](const EventRecord&) {
                       while (!release.load()) std::this_thread::sleep_for(1ms);
                       return Status();
                     },
                     {.failure = quick(1, FailurePolicy::Then::kStop)});
    std::this_thread::sleep_for(60ms);
    const ProjectionHealth h = sub->health();
    CHECK(h.handler_running_ms >= 40);
    CHECK(h.lag_events == 1);
    CHECK(h.state == SubscriptionState::kCatchingUp);
    CHECK(sub->stop(Subscription::StopMode::kNow, 20ms).code() == Code::kTimedOut);
    release = true;
    require_ok(sub->stop(Subscription::StopMode::kNow));
  }

  TEST_CASE("checkpoint policies: every event, every batch, and by interval") {
    InMemoryEventStore store;
    append_n(store, 30);
    for (auto every : {CheckpointPolicy::Every::kEvent, CheckpointPolicy::Every::kBatch,
                       CheckpointPolicy::Every::kInterval}) {
      CAPTURE(static_cast<int>(every));
      InMemoryProjectionStore checkpoints;
      std::mutex mu;
      std::vector<uint64_t> ahead;  // checkpoint positions seen past what was handled
      uint64_t handled = 0;
      auto sub = start(store, "cp",
                       [&](const EventRecord& e) {
                         auto saved = checkpoints.load_checkpoint("cp@v1");
                         std::lock_guard lock(mu);
                         if (saved.ok() && *saved && (*saved)->position.value > handled)
                           ahead.push_back((*saved)->position.value);
                         handled = e.position.value;
                         return Status();
                       },
                       {.store = &checkpoints,
                        .checkpoint = {.every = every, .interval = 1h},
                        .batch_size = 10});
      require_ok(sub->wait_until(GlobalPosition(30), 10s));
      require_ok(sub->stop());
      auto saved = checkpoints.load_checkpoint("cp@v1");
      REQUIRE(saved.ok());
      REQUIRE(saved->has_value());
      CHECK((*saved)->position.value == 30);
      CHECK(ahead.empty());
    }
  }

  TEST_CASE("retry_dead_letter: a fixed handler clears the letter; a failing one updates it") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 3);
    std::atomic<bool> fixed{false};
    auto sub =
        start(store, "r",
              [&](const EventRecord& e) {
                return e.position.value == 2 && !fixed ? invalid_argument("bad 2") : Status();
              },
              {.store = &dlq, .failure = quick(1, FailurePolicy::Then::kDeadLetter)});
    require_ok(sub->wait_until(GlobalPosition(3), 10s));
    auto letters = dlq.dead_letters();
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    const uint64_t id = (*letters)[0].id;
    Status again = sub->retry_dead_letter(id);
    CHECK(again.code() == Code::kInvalidArgument);
    letters = dlq.dead_letters();
    REQUIRE(letters->size() == 1);
    CHECK((*letters)[0].attempts == 2);
    CHECK((*letters)[0].id != id);
    fixed = true;
    require_ok(sub->retry_dead_letter((*letters)[0].id));
    CHECK(dlq.dead_letters()->empty());
    CHECK(sub->retry_dead_letter(999).code() == Code::kNotFound);
  }

  TEST_CASE("letters marked for retry are replayed when the subscription starts") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 4);
    std::atomic<bool> fixed{false};
    std::atomic<int> fours{0};
    auto handler = [&](const EventRecord& e) {
      if (e.position.value == 4) {
        if (!fixed) return invalid_argument("bad 4");
        ++fours;
      }
      return Status();
    };
    {
      auto sub = start(store, "m", handler,
                       {.store = &dlq, .failure = quick(1, FailurePolicy::Then::kDeadLetter)});
      require_ok(sub->wait_until(GlobalPosition(4), 10s));
    }
    auto letters = dlq.dead_letters();
    REQUIRE(letters->size() == 1);
    const uint64_t id = (*letters)[0].id;
    REQUIRE(dlq.mark_for_retry(std::vector<uint64_t>{id}).ok());
    CHECK(dlq.mark_for_retry(std::vector<uint64_t>{id, 77}).status().code() == Code::kNotFound);
    fixed = true;
    auto sub = start(store, "m", handler,
                     {.store = &dlq, .failure = quick(1, FailurePolicy::Then::kDeadLetter)});
    require_ok(sub->wait_live(10s));
    CHECK(fours.load() == 1);
    CHECK(dlq.dead_letters()->empty());
    CHECK(dlq.marked_for_retry()->empty());
  }

  TEST_CASE("rebuild resets the read model, replays everything, and reports the failures") {
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 10);
    struct Counter : Projection {
      std::atomic<int> n{0};
      std::atomic<int> resets{0};
      std::string_view name() const override { return "counter"; }
      Status handle(const EventRecord& e) override {
        if (e.position.value == 5) return invalid_argument("five");
        ++n;
        return Status();
      }
      Status reset() override {
        n = 0;
        ++resets;
        return Status();
      }
    } counter;
    auto r = Subscription::start(
        store, counter, {.store = &dlq, .failure = quick(1, FailurePolicy::Then::kDeadLetter)});
    REQUIRE(r.ok());
    auto& sub = *r;
    require_ok(sub->wait_until(GlobalPosition(10), 10s));
    CHECK(counter.n == 9);
    auto report = sub->rebuild(10s);
    REQUIRE_MESSAGE(report.ok(), report.status().to_string());
    CHECK(counter.resets == 1);
    CHECK(counter.n == 9);
    CHECK(report->through.value == 10);
    CHECK(report->handled == 9);
    REQUIRE(report->dead_letters.size() == 1);
    CHECK(report->dead_letters[0].position.value == 5);
    CHECK(report->dead_letters[0].attempts == 2);  // the earlier letter's attempt added up
    CHECK(dlq.dead_letters()->size() == 1);        // one letter per (projection, position)
  }

  TEST_CASE(
      "counters: events dispatched, handler failures, dead letters and lag, as Prometheus text") {
    Metrics metrics;
    InMemoryEventStore store;
    InMemoryProjectionStore dlq;
    append_n(store, 5);
    auto sub = start(store, "metered",
                     [&](const EventRecord& e) {
                       return e.position.value == 3 ? invalid_argument("three") : Status();
                     },
                     {.store = &dlq,
                      .failure = quick(2, FailurePolicy::Then::kDeadLetter),
                      .observability = {.metrics = &metrics}});
    require_ok(sub->wait_until(GlobalPosition(5), 10s));
    require_ok(sub->stop());
    const Counters c = metrics.counters();
    CHECK(c.events_dispatched == 4);
    CHECK(c.handler_failures == 2);
    CHECK(c.dead_letters == 1);
    REQUIRE(c.projection_lag.size() == 1);
    CHECK(c.projection_lag[0].projection == "metered");
    CHECK(c.projection_lag[0].events == 0);
    const std::string text = metrics.prometheus_text();
    CHECK(text.find("eventsource_events_dispatched_total 4") != std::string::npos);
    CHECK(text.find("eventsource_dead_letters_total 1") != std::string::npos);
    CHECK(text.find("eventsource_projection_lag_events{projection=\"metered\"} 0") !=
          std::string::npos);
  }

  // shared/reliability.md row 16, for subscriptions and dead letters: a
  // writer child appends random events of three tenants and is killed; after
  // recovery, each tenant's subscription delivers exactly the model's events
  // of that tenant, and a tenant-filtered projection's dead letters name only
  // its tenant's events.
  TEST_CASE("tenant-filtered subscriptions and dead letters equal the model after recovery") {
    const uint64_t seed = testing::seed_from_env_or_random();
    CAPTURE(seed);
    TempDir dir("es-tenants");
    const std::string path = dir.file("events.es");
    const char* const tenants[] = {"", "acme", "globex"};
    int started[2];  // the child says when its first append is acknowledged
    REQUIRE(pipe(started) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      close(started[0]);
      std::mt19937_64 rng(seed);
      auto store = EngineEventStore::open(path);
      if (!store.ok()) _exit(3);
      for (int i = 0;; ++i) {
        std::vector<NewEvent> batch(1 + rng() % 4);
        const std::string tenant = tenants[rng() % 3];
        for (NewEvent& e : batch) {
          e = new_event(rng() % 5 == 0 ? "Poison" : "Tick", "{}");
          e.tenant = tenant;
        }
        auto r = (*store)->append_events({"T", std::to_string(rng() % 7)}, ExpectedVersion::any(),
                                         std::move(batch));
        if (!r.ok()) _exit(4);
        if (i == 0 && write(started[1], "x", 1) != 1) _exit(5);
      }
    }
    close(started[1]);
    char byte = 0;
    REQUIRE(read(started[0], &byte, 1) == 1);  // however slow the child (sanitizers)
    close(started[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(seed % 60));
    REQUIRE(kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    auto opened = EngineEventStore::open(path);  // recovery
    REQUIRE(opened.ok());
    EventStore& store = **opened;
    std::map<std::string, std::vector<uint64_t>> model;
    std::map<std::string, std::set<uint64_t>> poison;
    for (const StoredEvent& e : testing::read_all_stored(store)) {
      model[e.tenant].push_back(e.position.value);
      if (e.type == "Poison") poison[e.tenant].insert(e.position.value);
    }
    const GlobalPosition head = *store.current_position();
    REQUIRE(head.value > 0);
    InMemoryProjectionStore dlq;
    for (const char* tenant : tenants) {
      CAPTURE(tenant);
      Seen seen;
      const std::string name = std::string("t-") + tenant;
      auto sub = start(store, name,
                       [&](const EventRecord& e) {
                         if (e.type == "Poison") return invalid_argument("poison");
                         return seen.handler()(e);
                       },
                       {.store = &dlq,
                        .failure = quick(1, FailurePolicy::Then::kDeadLetter),
                        .tenant = std::string(tenant)});
      require_ok(sub->wait_until(head, 30s));
      std::vector<uint64_t> want;
      for (uint64_t p : model[tenant])
        if (!poison[tenant].contains(p)) want.push_back(p);
      CHECK(seen.positions() == want);
      auto letters = dlq.dead_letters(name);
      REQUIRE(letters.ok());
      std::set<uint64_t> lettered;
      for (const DeadLetter& d : *letters) lettered.insert(d.position.value);
      CHECK(lettered == poison[tenant]);
    }
  }

  TEST_CASE("a reader process follows a writer process (engine, read-only handle)") {
    TempDir dir("es-follow");
    const std::string path = dir.file("events.es");
    auto writer = EngineEventStore::open(path);
    REQUIRE(writer.ok());
    append_n(**writer, 10);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      close(fds[0]);
      EngineEventStoreOptions o;
      o.store.mode = OpenMode::kReadOnly;
      auto reader = EngineEventStore::open(path, o);
      if (!reader.ok()) _exit(3);
      std::string out;
      std::mutex mu;
      auto sub =
          Subscription::start(**reader, "follower",
                              [&](const EventRecord& e) {
                                std::lock_guard lock(mu);
                                out += std::to_string(e.position.value) + "\n";
                                return Status();
                              },
                              {.failure = {.max_attempts = 1, .then = FailurePolicy::Then::kStop}});
      if (!sub.ok()) _exit(4);
      if (!(*sub)->wait_until(GlobalPosition(510), std::chrono::seconds(30)).ok()) _exit(5);
      (*sub)->stop().ignore_error();
      std::lock_guard lock(mu);
      if (write(fds[1], out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(6);
      _exit(0);
    }
    close(fds[1]);
    for (int i = 0; i < 50; ++i) {
      append_n(**writer, 10);
      std::this_thread::sleep_for(1ms);
    }
    std::string got;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    std::string want;
    for (uint64_t p = 1; p <= 510; ++p) want += std::to_string(p) + "\n";
    CHECK(got == want);
  }

  TEST_CASE("control calls race appends, reads and each other (TSan)") {
    TempDir dir("es-sub-race");
    auto opened = EngineEventStore::open(dir.file("events.es"));
    REQUIRE(opened.ok());
    EngineEventStore& store = **opened;
    EngineProjectionStore state(store.shared_store());
    Seen a_seen, b_seen;
    auto a = start(store, "a", a_seen.handler(), {.store = &state});
    auto b = start(store, "b", b_seen.handler(),
                   {.store = &state, .checkpoint = {.every = CheckpointPolicy::Every::kEvent}});
    std::atomic<bool> done{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] { append_n(store, 100, "Tick", {"Clock", std::to_string(t)}); });
    threads.emplace_back([&] {
      while (!done) {
        a->pause();
        (void)a->health();
        a->resume();
        std::this_thread::sleep_for(1ms);
      }
    });
    threads.emplace_back([&] {
      while (!done) {
        (void)b->health();
        (void)b->state();
        (void)store.get_all({.max_count = 10});
      }
    });
    for (int t = 0; t < 4; ++t) threads[t].join();
    require_ok(a->wait_until(GlobalPosition(400), 30s));
    require_ok(b->wait_until(GlobalPosition(400), 30s));
    done = true;
    for (size_t t = 4; t < threads.size(); ++t) threads[t].join();
    CHECK(a_seen.positions() == range(1, 400));
    CHECK(b_seen.positions() == range(1, 400));
    require_ok(a->stop());
    require_ok(b->stop());
    auto saved = state.load_checkpoint("b@v1");
    REQUIRE(saved.ok());
    REQUIRE(saved->has_value());
    CHECK((*saved)->position.value == 400);
    require_ok(store.close());
    // A stopped subscription's calls are answered, not hung.
    CHECK(a->wait_until(GlobalPosition(401), 10s).code() == Code::kClosed);
  }
}

}  // namespace subscription_test
