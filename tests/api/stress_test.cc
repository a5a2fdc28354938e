// The api/ pieces at once, as an app runs them (shared/reliability.md row
// 13; the TSan stage runs this suite): 8 threads save through a repository
// over the engine (group commit) that publishes to an async bus with two
// subscribers; two checkpointed projections run in a ProjectionRunner; two
// live subscriptions follow the log; another thread asks for health, waits
// for positions, checkpoints the store and reads. Every event reaches
// every consumer exactly once (the projections: at least once, and here
// exactly once since nothing crashes), in order where order is promised.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/engine_event_store.h"
#include "eventsource/event_bus.h"
#include "eventsource/projection_runner.h"
#include "eventsource/repository.h"
#include "tests/api/api_test_support.h"
#include "tests/support/temp_dir.h"

namespace stress_test {

using namespace eventsource;
using namespace std::chrono_literals;

// Counts events per stream; checks each stream's versions arrive in order.
class PerStream final : public Projection {
 public:
  explicit PerStream(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  Status handle(const EventRecord& e) override {
    std::lock_guard lock(mu_);
    uint64_t& last = versions_[std::string(e.stream_id)];
    if (e.version.value != last + 1)
      return invalid_argument("stream " + std::string(e.stream_id) + ": version " +
                              std::to_string(e.version.value) + " after " + std::to_string(last));
    last = e.version.value;
    ++events_;
    return Status();
  }
  uint64_t events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::map<std::string, uint64_t> versions() const {
    std::lock_guard lock(mu_);
    return versions_;
  }

 private:
  std::string name_;
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> versions_;
  uint64_t events_ = 0;
};

TEST_SUITE("api-stress") {
  TEST_CASE("8 savers, an async bus, 2 projections and 2 live readers at once") {
    testing::TempDir dir("es-stress");
    auto opened = EngineEventStore::open(dir.file("events.es"));
    REQUIRE(opened.ok());
    EngineEventStore& store = **opened;
    EngineProjectionStore state(store.shared_store());

    InMemoryEventBus bus({.mode = DispatchMode::kAsync, .workers = 2, .queue_capacity = 64});
    std::mutex bus_mu;
    std::multiset<uint64_t> bus_a, bus_b;
    auto collect = [&](std::multiset<uint64_t>& into) {
      return [&](const StoredEvent& e) {
        std::lock_guard lock(bus_mu);
        into.insert(e.position.value);
        return Status();
      };
    };
    REQUIRE(bus.subscribe_all("mailer", collect(bus_a)).ok());
    REQUIRE(
        bus.subscribe("auditor", std::vector<std::string>{"Opened", "Added"}, collect(bus_b)).ok());

    PerStream totals("totals"), audit("audit");
    ProjectionRunner runner(store, state);
    REQUIRE(runner.add(totals).ok());
    REQUIRE(runner
                .add(audit,
                     SubscriptionOptions{.checkpoint = {.every = CheckpointPolicy::Every::kEvent},
                                         .batch_size = 16})
                .ok());
    REQUIRE(runner.start().ok());

    struct Follower {
      std::mutex mu;
      uint64_t last = 0;
      bool in_order = true;
    } f1, f2;
    auto follow = [&](Follower& f) {
      return [&f](const EventRecord& e) {
        std::lock_guard lock(f.mu);
        if (e.position.value != f.last + 1) f.in_order = false;
        f.last = e.position.value;
        return Status();
      };
    };
    auto r1 =
        Subscription::start(store, "follower-1", follow(f1),
                            {.failure = {.max_attempts = 1, .then = FailurePolicy::Then::kStop}});
    auto r2 = Subscription::start_batched(
        store, "follower-2",
        [&](std::span<const StoredEvent> batch) {
          std::lock_guard lock(f2.mu);
          for (const StoredEvent& e : batch) {
            if (e.position.value != f2.last + 1) f2.in_order = false;
            f2.last = e.position.value;
          }
          return Status();
        },
        {.failure = {.max_attempts = 1, .then = FailurePolicy::Then::kStop}});
    REQUIRE(r1.ok());
    REQUIRE(r2.ok());

    RepositoryOptions options;
    options.publisher = bus.publisher();
    RepositoryCore repo(store, "Cart", std::move(options));
    constexpr int kSavers = 8, kSaves = 150;
    std::atomic<uint64_t> events_saved{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kSavers; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kSaves; ++i) {
          // Half the carts are shared by two threads: conflicts, retried.
          const std::string cart = std::to_string(i % 2 == 0 ? t : t / 2 + 100);
          while (true) {
            auto version = store.stream_version({"Cart", cart});
            if (!version.ok()) {
              CHECK_MESSAGE(false, version.status().to_string());
              return;
            }
            std::vector<NewEvent> batch = {
                testing::new_event(version->value == 0 ? "Opened" : "Added"),
                testing::new_event("Touched")};
            batch.resize(1 + static_cast<size_t>(i % 2));
            auto saved = repo.save(cart, *version, batch, {});
            if (saved.ok()) {
              events_saved += batch.size();
              break;
            }
            if (saved.status().code() != Code::kConflict) {
              CHECK_MESSAGE(false, saved.status().to_string());
              return;
            }
          }
        }
      });
    }
    threads.emplace_back([&] {
      while (!done) {
        for (const ProjectionHealth& h : runner.health())
          CHECK(h.state != SubscriptionState::kError);
        auto head = store.current_position();
        CHECK(head.ok());
        if (!head.ok()) return;
        CHECK(runner.wait_until(*head, 30s).ok());
        CHECK(store.store().checkpoint().ok());
        (void)store.get_all({.max_count = 5});
        (void)bus.stats();
      }
    });
    for (int t = 0; t < kSavers; ++t) threads[t].join();
    done = true;
    threads.back().join();

    const GlobalPosition head = *store.current_position();
    CHECK(head.value == events_saved.load());
    REQUIRE(runner.wait_until(head, 30s).ok());
    REQUIRE((*r1)->wait_until(head, 30s).ok());
    REQUIRE((*r2)->wait_until(head, 30s).ok());
    bus.wait_idle();
    CHECK(totals.events() == head.value);
    CHECK(audit.events() == head.value);
    CHECK(totals.versions() == audit.versions());
    {
      std::lock_guard lock(f1.mu);
      CHECK(f1.in_order);
      CHECK(f1.last == head.value);
    }
    {
      std::lock_guard lock(f2.mu);
      CHECK(f2.in_order);
      CHECK(f2.last == head.value);
    }
    {
      std::lock_guard lock(bus_mu);
      CHECK(bus_a.size() == head.value);
      CHECK(std::set<uint64_t>(bus_a.begin(), bus_a.end()).size() == head.value);
      for (uint64_t p : bus_b) CHECK(bus_a.count(p) == 1);
    }
    REQUIRE(runner.stop().ok());
    REQUIRE((*r1)->stop().ok());
    REQUIRE((*r2)->stop().ok());
    bus.shutdown();
    auto cp = state.load_checkpoint("audit@v1");
    REQUIRE(cp.ok());
    REQUIRE(cp->has_value());
    CHECK((*cp)->position == head);
    REQUIRE(store.close().ok());
  }
}

}  // namespace stress_test
