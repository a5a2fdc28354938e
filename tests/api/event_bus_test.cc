// InMemoryEventBus (event_bus.h): subscriptions by type / types / all, sync
// reports, failing and throwing handlers, async order and backpressure,
// unsubscribe (also from inside a handler), shutdown draining, spans, and
// the repository wired through publisher().
#include "eventsource/event_bus.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/json.h"
#include "eventsource/memory_event_store.h"
#include "eventsource/repository.h"
#include "tests/api/api_test_support.h"

namespace bus_test {

struct CartOpened {
  std::string owner;
};
EVENTSOURCE_JSON(CartOpened, owner)

using namespace eventsource;
using namespace std::chrono_literals;

// An event of `type` at `position`, with `payload`.
StoredEvent event(std::string type, uint64_t position, std::string payload = "{}") {
  StoredEvent e;
  e.type = std::move(type);
  e.position = GlobalPosition(position);
  e.version = StreamVersion(position);
  e.id = Uuid::random();
  e.stream = StreamId{"Cart", "1"};
  e.payload = std::move(payload);
  return e;
}

// Records what a handler saw, safe across threads.
class Seen {
 public:
  EventHandler handler(std::string tag) {
    return [this, tag](const StoredEvent& e) {
      std::lock_guard lock(mu_);
      log_.push_back(tag + ":" + e.type + "@" + std::to_string(e.position.value));
      return Status();
    };
  }
  std::vector<std::string> log() const {
    std::lock_guard lock(mu_);
    return log_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> log_;
};

// A handler that blocks until released; counts the calls it entered.
class Gate {
 public:
  EventHandler handler() {
    return [this](const StoredEvent&) {
      std::unique_lock lock(mu_);
      ++entered_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return open_; });
      return Status();
    };
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait_entered(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_ >= n; });
  }
  int entered() {
    std::lock_guard lock(mu_);
    return entered_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
};

// Records span names and whether each span recorded an error.
class NamesTracer final : public Tracer {
 public:
  struct Record {
    std::string name;
    bool error = false;
    bool ended = false;
  };
  std::unique_ptr<TraceSpan> start_span(std::string_view name) override {
    std::lock_guard lock(mu_);
    records_.push_back(std::make_shared<Record>(Record{std::string(name)}));
    return std::make_unique<Recorded>(records_.back());
  }
  std::vector<Record> records() {
    std::lock_guard lock(mu_);
    std::vector<Record> out;
    for (const auto& r : records_) out.push_back(*r);
    return out;
  }

 private:
  class Recorded final : public TraceSpan {
   public:
    explicit Recorded(std::shared_ptr<Record> r) : r_(std::move(r)) {}
    void set_attribute(std::string_view, std::string_view) override {}
    void set_attribute(std::string_view, int64_t) override {}
    void record_error(std::string_view) override { r_->error = true; }
    void end() override { r_->ended = true; }

   private:
    std::shared_ptr<Record> r_;
  };
  std::mutex mu_;
  std::vector<std::shared_ptr<Record>> records_;
};

TEST_SUITE("api-bus") {
  TEST_CASE("one type, several types and all events") {
    InMemoryEventBus bus;
    Seen seen;
    REQUIRE(bus.subscribe("one", "A", seen.handler("one")).ok());
    REQUIRE(bus.subscribe("some", std::vector<std::string>{"A", "B"}, seen.handler("some")).ok());
    REQUIRE(bus.subscribe_all("all", seen.handler("all")).ok());
    const std::vector<StoredEvent> events = {event("A", 1), event("B", 2), event("C", 3)};
    auto report = bus.publish(events);
    REQUIRE(report.ok());
    CHECK(report->accepted == 3);
    CHECK(report->delivered == 6);
    CHECK(report->ok());
    CHECK(seen.log() == std::vector<std::string>{"one:A@1", "some:A@1", "all:A@1", "some:B@2",
                                                 "all:B@2", "all:C@3"});
    CHECK(bus.subscribe("none", std::vector<std::string>{}, seen.handler("x")).status().code() ==
          Code::kInvalidArgument);
    CHECK(bus.subscribe_all("empty", EventHandler{}).status().code() == Code::kInvalidArgument);
  }

  TEST_CASE("a failing and a throwing handler: the others run, both are reported") {
    std::vector<HandlerFailure> async_side;
    std::mutex mu;
    std::atomic<int> logged{0};
    EventBusOptions options;
    options.on_failure = [&](const HandlerFailure& f) {
      std::lock_guard lock(mu);
      async_side.push_back(f);
    };
    options.observability.log = [&](LogLevel level, std::string_view, std::span<const LogField>) {
      if (level == LogLevel::kWarn) ++logged;
    };
    InMemoryEventBus bus(options);
    Seen seen;
    REQUIRE(bus.subscribe_all("fails", [](const StoredEvent&) { return rejected("no"); }).ok());
    REQUIRE(bus.subscribe_all(
                   "throws", [](const StoredEvent&) -> Status { throw std::runtime_error("boom"); })
                .ok());
    REQUIRE(bus.subscribe_all("works", seen.handler("works")).ok());
    const StoredEvent e = event("A", 7);
    auto report = bus.publish(e);
    REQUIRE(report.ok());
    CHECK(report->delivered == 1);
    REQUIRE(report->failures.size() == 2);
    CHECK(report->failures[0].handler == "fails");
    CHECK(report->failures[0].error.code() == Code::kRejected);
    CHECK(report->failures[0].position == GlobalPosition(7));
    CHECK(report->failures[0].event_id == e.id);
    CHECK(report->failures[0].event_type == "A");
    CHECK(report->failures[1].handler == "throws");
    CHECK(report->failures[1].error.code() == Code::kInvalidArgument);
    CHECK(report->failures[1].error.message().find("boom") != std::string::npos);
    CHECK(seen.log() == std::vector<std::string>{"works:A@7"});
    CHECK(async_side.size() == 2);
    CHECK(logged.load() == 2);
    CHECK(bus.stats().failures == 2);
    CHECK(bus.stats().delivered == 1);
  }

  TEST_CASE("typed subscribe decodes with the registry; a decode error is a failure") {
    EventRegistry registry;
    REQUIRE(registry.add<CartOpened>("CartOpened").ok());
    InMemoryEventBus bus;
    std::vector<std::string> owners;
    REQUIRE(bus.subscribe<CartOpened>(registry, "owners",
                                      [&](const CartOpened& c, const StoredEvent&) {
                                        owners.push_back(c.owner);
                                        return Status();
                                      })
                .ok());
    auto good = bus.publish(event("CartOpened", 1, R"({"owner":"ann"})"));
    REQUIRE(good.ok());
    CHECK(good->delivered == 1);
    auto bad = bus.publish(event("CartOpened", 2, "not json"));
    REQUIRE(bad.ok());
    REQUIRE(bad->failures.size() == 1);
    CHECK(bad->failures[0].error.code() == Code::kCorruption);
    CHECK(owners == std::vector<std::string>{"ann"});
    struct Unregistered {};
    auto none = bus.subscribe<Unregistered>(
        registry, "x", [](const Unregistered&, const StoredEvent&) { return Status(); });
    CHECK(none.status().code() == Code::kNotFound);
  }

  TEST_CASE("async: each subscriber sees the publish order, from several publishers") {
    constexpr int kThreads = 4;
    constexpr int kPerThread = 1000;
    InMemoryEventBus bus({.mode = DispatchMode::kAsync, .workers = 3, .queue_capacity = 64});
    // Per subscriber, per publisher thread: the last sequence number seen.
    struct Track {
      std::map<std::string, int> last;
      int count = 0;
      bool in_order = true;
    };
    std::vector<Track> tracks(5);
    std::vector<std::string> global_order[5];
    for (int s = 0; s < 5; ++s) {
      REQUIRE(bus.subscribe_all("sub" + std::to_string(s),
                                [&tracks, &global_order, s](const StoredEvent& e) {
                                  // One worker per subscription: no lock needed for its own track.
                                  Track& t = tracks[s];
                                  const int n = std::stoi(e.payload);
                                  auto [it, fresh] = t.last.try_emplace(e.type, -1);
                                  if (n != it->second + 1) t.in_order = false;
                                  it->second = n;
                                  ++t.count;
                                  global_order[s].push_back(e.type + "/" + e.payload);
                                  return Status();
                                })
                  .ok());
    }
    std::vector<std::thread> publishers;
    for (int p = 0; p < kThreads; ++p) {
      publishers.emplace_back([&bus, p] {
        for (int i = 0; i < kPerThread; ++i) {
          auto r = bus.publish(event("T" + std::to_string(p), 1, std::to_string(i)));
          CHECK(r.ok());
        }
      });
    }
    for (auto& t : publishers) t.join();
    bus.wait_idle();
    for (int s = 0; s < 5; ++s) {
      CHECK(tracks[s].count == kThreads * kPerThread);
      CHECK(tracks[s].in_order);
      // Every subscriber sees the same interleaving (the acceptance order).
      CHECK(global_order[s] == global_order[0]);
    }
    CHECK(bus.stats().delivered == 5u * kThreads * kPerThread);
  }

  TEST_CASE("async backpressure: a full queue blocks publish, try_publish is kBusy") {
    InMemoryEventBus bus({.mode = DispatchMode::kAsync, .workers = 1, .queue_capacity = 4});
    Gate gate;
    REQUIRE(bus.subscribe_all("slow", gate.handler()).ok());
    for (int i = 1; i <= 4; ++i) REQUIRE(bus.publish(event("A", i)).ok());
    gate.wait_entered(1);  // one event is being dispatched: it still counts
    CHECK(bus.stats().queued == 4);
    auto busy = bus.try_publish(event("A", 5));
    CHECK(busy.status().code() == Code::kBusy);
    std::atomic<bool> returned{false};
    std::thread blocked([&] {
      CHECK(bus.publish(event("A", 6)).ok());
      returned = true;
    });
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(returned.load());    // blocked by the full queue
    CHECK(bus.stats().queued == 4);  // memory bounded
    gate.open();
    blocked.join();
    CHECK(returned.load());
    bus.wait_idle();
    CHECK(gate.entered() == 5);
    CHECK(bus.stats().queued == 0);
  }

  TEST_CASE("unsubscribe stops delivery, also from inside the handler") {
    for (DispatchMode mode : {DispatchMode::kSync, DispatchMode::kAsync}) {
      CAPTURE(static_cast<int>(mode));
      InMemoryEventBus bus({.mode = mode, .workers = 2});
      Seen seen;
      auto a = bus.subscribe_all("a", seen.handler("a"));
      REQUIRE(a.ok());
      std::atomic<int> self_calls{0};
      SubscriptionId self_id;
      std::mutex id_mu;
      auto self = bus.subscribe_all("self", [&](const StoredEvent&) {
        ++self_calls;
        std::lock_guard lock(id_mu);
        CHECK(bus.unsubscribe(self_id).ok());  // must not deadlock
        return Status();
      });
      REQUIRE(self.ok());
      {
        std::lock_guard lock(id_mu);
        self_id = *self;
      }
      // One batch: a sync publish dispatches it with the subscriptions of
      // its start, so the self-unsubscribe must be honoured within it.
      const std::vector<StoredEvent> batch = {event("A", 1), event("A", 2)};
      REQUIRE(bus.publish(batch).ok());
      bus.wait_idle();
      REQUIRE(bus.unsubscribe(*a).ok());
      CHECK(bus.unsubscribe(*a).code() == Code::kNotFound);
      REQUIRE(bus.publish(event("A", 3)).ok());
      REQUIRE(bus.publish(event("A", 4)).ok());
      bus.wait_idle();
      CHECK(seen.log() == std::vector<std::string>{"a:A@1", "a:A@2"});
      CHECK(self_calls.load() == 1);
    }
  }

  TEST_CASE("async unsubscribe waits for the call in flight") {
    InMemoryEventBus bus({.mode = DispatchMode::kAsync});
    Gate gate;
    auto sub = bus.subscribe_all("slow", gate.handler());
    REQUIRE(sub.ok());
    REQUIRE(bus.publish(event("A", 1)).ok());
    REQUIRE(bus.publish(event("A", 2)).ok());
    gate.wait_entered(1);
    std::atomic<bool> done{false};
    std::thread t([&] {
      CHECK(bus.unsubscribe(*sub).ok());
      done = true;
    });
    std::this_thread::sleep_for(30ms);
    CHECK_FALSE(done.load());  // the first call is still running
    gate.open();
    t.join();
    bus.wait_idle();
    CHECK(gate.entered() == 1);  // the second event was not delivered
  }

  TEST_CASE("shutdown drains every accepted event in order; later publishes are kClosed") {
    auto bus = std::make_unique<InMemoryEventBus>(
        EventBusOptions{.mode = DispatchMode::kAsync, .workers = 2, .queue_capacity = 1000});
    std::vector<uint64_t> got;
    Gate gate;
    REQUIRE(bus->subscribe_all("first", gate.handler()).ok());  // worker 0, blocks
    REQUIRE(bus->subscribe_all("collect",
                               [&](const StoredEvent& e) {
                                 got.push_back(e.position.value);
                                 return Status();
                               })
                .ok());
    for (uint64_t i = 1; i <= 500; ++i) REQUIRE(bus->publish(event("A", i)).ok());
    gate.wait_entered(1);
    std::thread closer([&] { bus->shutdown(); });
    std::this_thread::sleep_for(20ms);
    gate.open();
    closer.join();
    REQUIRE(got.size() == 500);
    for (uint64_t i = 0; i < 500; ++i) CHECK(got[i] == i + 1);
    CHECK(gate.entered() == 500);
    CHECK(bus->publish(event("A", 501)).status().code() == Code::kClosed);
    CHECK(bus->try_publish(event("A", 501)).status().code() == Code::kClosed);
    CHECK(bus->subscribe_all("late", gate.handler()).status().code() == Code::kClosed);
    bus.reset();  // the destructor's shutdown is a no-op now

    InMemoryEventBus sync_bus;
    sync_bus.shutdown();
    CHECK(sync_bus.publish(event("A", 1)).status().code() == Code::kClosed);
  }

  TEST_CASE("spans: event.dispatch.<Type> and event_handler.<Name>") {
    NamesTracer tracer;
    InMemoryEventBus bus({.observability = {.tracer = &tracer}});
    REQUIRE(bus.subscribe("ok", "Placed", [](const StoredEvent&) { return Status(); }).ok());
    REQUIRE(bus.subscribe("bad", "Placed", [](const StoredEvent&) { return rejected("x"); }).ok());
    REQUIRE(bus.publish(event("Placed", 1)).ok());
    REQUIRE(bus.publish(event("Other", 2)).ok());  // no handler: no span
    auto records = tracer.records();
    REQUIRE(records.size() == 3);
    CHECK(records[0].name == "event.dispatch.Placed");
    CHECK(records[0].error);
    CHECK(records[1].name == "event_handler.ok");
    CHECK_FALSE(records[1].error);
    CHECK(records[2].name == "event_handler.bad");
    CHECK(records[2].error);
    for (const auto& r : records) CHECK(r.ended);
  }

  TEST_CASE(
      "the repository publishes saved events through publisher(); a conflict publishes none") {
    InMemoryEventStore store;
    InMemoryEventBus bus;
    std::vector<StoredEvent> got;
    REQUIRE(bus.subscribe_all("collect",
                              [&](const StoredEvent& e) {
                                got.push_back(e);
                                return Status();
                              })
                .ok());
    RepositoryOptions options;
    options.publisher = bus.publisher();
    RepositoryCore repo(store, "Cart", std::move(options));
    std::vector<NewEvent> two = {eventsource::testing::new_event("CartOpened", R"({"owner":"a"})"),
                                 eventsource::testing::new_event("ItemAdded")};
    auto saved = repo.save("1", StreamVersion(0), two, {});
    REQUIRE_MESSAGE(saved.ok(), saved.status().to_string());
    REQUIRE(got.size() == 2);
    CHECK(got[0].type == "CartOpened");
    CHECK(got[1].type == "ItemAdded");
    CHECK(got[0].stream == StreamId{"Cart", "1"});
    // What the bus got is what the store holds.
    CHECK(got == eventsource::testing::read_all_stored(store));

    auto conflict = repo.save("1", StreamVersion(0), {eventsource::testing::new_event("X")}, {});
    CHECK(conflict.status().code() == Code::kConflict);
    CHECK(got.size() == 2);
  }
}

}  // namespace bus_test
