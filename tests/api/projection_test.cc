// Projections (projection.h, projection_runner.h, projection_store.h):
// DeclarativeProjection's typed handlers, skipped types and tenant filter;
// ProjectionRunner with several projections (wait_until for one and all,
// health, a slow projection never blocking appends or the others),
// versioned rebuilds switching from the old read model to the new one,
// dead-letter operations (list, show, retry one / all, resolve, purge);
// both ProjectionStores behaving alike, letters marked for retry in the
// store file (as esdump dlq retry does) replayed on the next start.
#include "eventsource/projection.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/engine_event_store.h"
#include "eventsource/events.h"
#include "eventsource/json.h"
#include "eventsource/memory_event_store.h"
#include "eventsource/projection_runner.h"
#include "eventsource/projection_store.h"
#include "tests/api/api_test_support.h"
#include "tests/support/temp_dir.h"

namespace projection_test {

struct OrderPlaced {
  std::string customer;
  int64_t total = 0;
};
struct OrderCancelled {
  std::string customer;
  int64_t total = 0;
};
EVENTSOURCE_JSON(OrderPlaced, customer, total)
EVENTSOURCE_JSON(OrderCancelled, customer, total)

using namespace eventsource;
using namespace std::chrono_literals;
using testing::append_one;
using testing::TempDir;

void require_ok(const Status& s) { REQUIRE_MESSAGE(s.ok(), s.to_string()); }

EventRegistry make_registry() {
  EventRegistry r;
  REQUIRE(r.add<OrderPlaced>("OrderPlaced").ok());
  REQUIRE(r.add<OrderCancelled>("OrderCancelled").ok());
  return r;
}

template <class E>
GlobalPosition append(EventStore& store, const EventRegistry& registry, const E& event,
                      const std::string& tenant = "", const std::string& order = "1") {
  auto encoded = registry.encode(event);
  REQUIRE(encoded.ok());
  encoded->tenant = tenant;
  auto r = append_one(store, {"Order", order}, ExpectedVersion::any(), std::move(*encoded));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return r->last_position;
}

GlobalPosition append_raw(EventStore& store, const std::string& type, const std::string& payload) {
  auto r = append_one(store, {"Order", "raw"}, ExpectedVersion::any(),
                      testing::new_event(type, payload));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return r->last_position;
}

// Order totals per customer: placed adds, cancelled subtracts.
class CustomerTotals : public DeclarativeProjection {
 public:
  CustomerTotals(const EventRegistry& r, uint32_t version = 1)
      : DeclarativeProjection("customer-totals", version) {
    on<OrderPlaced>(r, [this](const OrderPlaced& e, const EventRecord&) {
      std::lock_guard lock(mu_);
      totals_[e.customer] += e.total * multiplier();
      return Status();
    });
    on<OrderCancelled>(r, [this](const OrderCancelled& e, const EventRecord&) {
      std::lock_guard lock(mu_);
      totals_[e.customer] -= e.total * multiplier();
      return Status();
    });
  }
  Status reset() override {
    std::lock_guard lock(mu_);
    totals_.clear();
    return Status();
  }
  std::map<std::string, int64_t> totals() const {
    std::lock_guard lock(mu_);
    return totals_;
  }

 private:
  // Version 2 counts in cents: a visibly different read model.
  int64_t multiplier() const { return version() >= 2 ? 100 : 1; }
  mutable std::mutex mu_;
  std::map<std::string, int64_t> totals_;
};

// Fails on {"bad":true} payloads until `fixed`; counts the bad ones handled.
class Picky final : public Projection {
 public:
  std::atomic<bool> fixed{false};
  std::atomic<int> handled_bad{0};
  std::string_view name() const override { return "picky"; }
  Status handle(const EventRecord& e) override {
    if (e.payload != "{\"bad\":true}") return Status();
    if (!fixed.load()) return invalid_argument("bad payload");
    ++handled_bad;
    return Status();
  }
};

TEST_SUITE("api-projections") {
  TEST_CASE("a declarative projection decodes its types, skips others, and filters by tenant") {
    EventRegistry registry = make_registry();
    InMemoryEventStore store;
    InMemoryProjectionStore state;
    append(store, registry, OrderPlaced{"ann", 10}, "acme");
    append(store, registry, OrderPlaced{"bob", 5}, "globex");
    append_raw(store, "SomethingElse", "{}");
    append(store, registry, OrderCancelled{"ann", 4}, "acme");
    const GlobalPosition last = append(store, registry, OrderPlaced{"ann", 1}, "acme");
    CustomerTotals all(registry);
    CustomerTotals acme(registry);
    acme.set_tenant("acme");
    auto a = Subscription::start(store, all, {.store = &state});
    REQUIRE(a.ok());
    struct Renamed : CustomerTotals {
      using CustomerTotals::CustomerTotals;
      std::string_view name() const override { return "acme-totals"; }
    } acme_only(registry);
    acme_only.set_tenant("acme");
    auto b = Subscription::start(store, acme_only, {.store = &state});
    REQUIRE(b.ok());
    require_ok((*a)->wait_until(last, 10s));
    require_ok((*b)->wait_until(last, 10s));
    CHECK(all.totals() == std::map<std::string, int64_t>{{"ann", 7}, {"bob", 5}});
    CHECK(acme_only.totals() == std::map<std::string, int64_t>{{"ann", 7}});
    CHECK(all.handled() == 4);
    CHECK(acme_only.skipped() == 1);  // bob's event: another tenant (SomethingElse is not read)
    CHECK(all.event_types() == std::vector<std::string>{"OrderCancelled", "OrderPlaced"});
  }

  TEST_CASE("a malformed payload of a handled type is a failure and ends as a dead letter") {
    EventRegistry registry = make_registry();
    InMemoryEventStore store;
    InMemoryProjectionStore state;
    append(store, registry, OrderPlaced{"ann", 10});
    const GlobalPosition bad = append_raw(store, "OrderPlaced", "{\"customer\": 42}");
    const GlobalPosition last = append(store, registry, OrderPlaced{"ann", 1});
    CustomerTotals totals(registry);
    auto sub = Subscription::start(
        store, totals, {.store = &state, .failure = {.max_attempts = 2, .initial_backoff = 1ms}});
    REQUIRE(sub.ok());
    require_ok((*sub)->wait_until(last, 10s));
    CHECK(totals.totals() == std::map<std::string, int64_t>{{"ann", 11}});
    auto letters = state.dead_letters("customer-totals");
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    CHECK((*letters)[0].position == bad);
    CHECK((*letters)[0].error.find("OrderPlaced") != std::string::npos);
  }

  TEST_CASE(
      "on<E> for an unregistered type refuses to start; so does a projection without handlers") {
    EventRegistry registry;  // nothing registered
    InMemoryEventStore store;
    InMemoryProjectionStore state;
    CustomerTotals totals(registry);
    auto sub = Subscription::start(store, totals, {.store = &state});
    CHECK(sub.status().code() == Code::kInvalidArgument);
    CHECK(testing::mentions(sub.status(), "customer-totals"));
    DeclarativeProjection empty("empty");
    CHECK(Subscription::start(store, empty, {.store = &state}).status().code() ==
          Code::kInvalidArgument);
  }

  TEST_CASE("the runner: wait_until one or all, health, and a slow projection blocks nothing") {
    EventRegistry registry = make_registry();
    InMemoryEventStore store;
    InMemoryProjectionStore state;
    CustomerTotals totals(registry);
    std::atomic<bool> release{false};
    struct Slow : Projection {
      std::atomic<bool>* release;
      std::atomic<uint64_t> last{0};
      std::string_view name() const override { return "slow"; }
      Status handle(const EventRecord& e) override {
        while (!release->load()) std::this_thread::sleep_for(1ms);
        last = e.position.value;
        return Status();
      }
    } slow;
    slow.release = &release;
    ProjectionRunner runner(store, state);
    require_ok(runner.add(totals));
    require_ok(runner.add(slow));
    CHECK(runner.add(totals).code() == Code::kInvalidArgument);  // same name and version
    require_ok(runner.start());
    GlobalPosition last;
    for (int i = 0; i < 200; ++i)
      last = append(store, registry, OrderPlaced{"c" + std::to_string(i % 3), 1});
    // Appends went through while `slow` is stuck on its first event, and
    // the other projection kept up.
    require_ok(runner.wait_until("customer-totals", last, 10s));
    CHECK(runner.wait_until(last, 50ms).code() == Code::kTimedOut);
    auto health = runner.health();
    REQUIRE(health.size() == 2);
    const ProjectionHealth& h_slow = health[1].name == "slow" ? health[1] : health[0];
    const ProjectionHealth& h_fast = health[1].name == "slow" ? health[0] : health[1];
    CHECK(h_slow.lag_events == 200);
    CHECK(h_slow.lag_seconds >= 0.0);
    CHECK(h_slow.handler_running_ms >= 0);
    CHECK(h_fast.lag_events == 0);
    CHECK(h_fast.state == SubscriptionState::kLive);
    CHECK(h_fast.handled == 200);
    release = true;
    require_ok(runner.wait_until(last, 10s));
    CHECK(slow.last.load() == last.value);
    CHECK(runner.wait_until("nope", last, 1ms).code() == Code::kNotFound);
    require_ok(runner.stop());
  }

  TEST_CASE(
      "versions: the old read model serves until the new one has caught up, then they switch") {
    EventRegistry registry = make_registry();
    InMemoryEventStore store;
    InMemoryProjectionStore state;
    GlobalPosition last;
    for (int i = 0; i < 50; ++i) last = append(store, registry, OrderPlaced{"ann", 1});
    CustomerTotals v1(registry, 1);
    {
      ProjectionRunner runner(store, state);
      require_ok(runner.add(v1));
      require_ok(runner.start());
      require_ok(runner.wait_until(last, 10s));
      CHECK(runner.active_version("customer-totals") == 1);
    }
    // The app now ships version 2 beside version 1. v2 is held back on its
    // way so the switch can be watched.
    std::atomic<bool> hold{true};
    struct HeldV2 : CustomerTotals {
      std::atomic<bool>* hold;
      HeldV2(const EventRegistry& r, std::atomic<bool>* h) : CustomerTotals(r, 2), hold(h) {}
      Status handle(const EventRecord& e) override {
        while (hold->load()) std::this_thread::sleep_for(1ms);
        return CustomerTotals::handle(e);
      }
    } v2(registry, &hold);
    std::mutex mu;
    std::vector<std::pair<uint32_t, uint32_t>> switches;
    ProjectionRunner runner(store, state,
                            {.on_switch = [&](const Projection& old, const Projection& next) {
                              std::lock_guard lock(mu);
                              switches.emplace_back(old.version(), next.version());
                            }});
    require_ok(runner.add(v2));
    require_ok(runner.add(v1));
    require_ok(runner.start());
    std::this_thread::sleep_for(50ms);
    CHECK(runner.active_version("customer-totals") == 1);  // v2 is still catching up
    last = append(store, registry, OrderPlaced{"ann", 1});
    require_ok(runner.wait_until("customer-totals", last, 10s));  // v1 serves, current
    CHECK(v1.totals().at("ann") == 51);
    auto health = runner.health();
    REQUIRE(health.size() == 2);
    hold = false;
    for (int i = 0; i < 1000 && runner.active_version("customer-totals") != 2; ++i)
      std::this_thread::sleep_for(5ms);
    REQUIRE(runner.active_version("customer-totals") == 2);
    require_ok(runner.wait_until(last, 10s));
    CHECK(v2.totals().at("ann") == 5100);
    {
      std::lock_guard lock(mu);
      CHECK(switches == std::vector<std::pair<uint32_t, uint32_t>>{{1, 2}});
    }
    health = runner.health();
    REQUIRE(health.size() == 1);
    CHECK(health[0].version == 2);
    CHECK(health[0].active);
    auto v2_checkpoint = state.load_checkpoint("customer-totals@v2");
    REQUIRE(v2_checkpoint.ok());
    REQUIRE(v2_checkpoint->has_value());
  }

  TEST_CASE(
      "dead-letter operations through the runner: list, show, retry one and all, resolve, purge") {
    InMemoryEventStore store;
    InMemoryProjectionStore state;
    Picky picky;
    ProjectionRunner runner(store, state,
                            {.defaults = {.failure = {.max_attempts = 1, .initial_backoff = 1ms}}});
    require_ok(runner.add(picky));
    require_ok(runner.start());
    GlobalPosition last;
    for (int i = 0; i < 6; ++i)
      last = append_raw(store, "Thing", i % 2 == 0 ? "{\"bad\":true}" : "{}");
    require_ok(runner.wait_until(last, 10s));
    auto letters = runner.dead_letters();
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 3);
    auto one = runner.dead_letter((*letters)[0].id);
    REQUIRE(one.ok());
    CHECK(one->projection == "picky");
    CHECK(runner.retry_dead_letter((*letters)[0].id).code() == Code::kInvalidArgument);
    auto report = runner.retry_dead_letters("picky");
    REQUIRE(report.ok());
    CHECK(report->retried == 3);
    CHECK(report->succeeded == 0);
    CHECK(report->failures.size() == 3);
    picky.fixed = true;
    letters = runner.dead_letters();
    REQUIRE(letters->size() == 3);
    require_ok(runner.retry_dead_letter((*letters)[0].id));
    require_ok(runner.resolve_dead_letter((*letters)[1].id));
    CHECK(runner.dead_letters()->size() == 1);
    auto purged = runner.purge_dead_letters("picky");
    REQUIRE(purged.ok());
    CHECK(*purged == 1);
    CHECK(runner.dead_letters()->empty());
    CHECK(runner.resolve_dead_letter(12345).code() == Code::kNotFound);
    CHECK(runner.health()[0].dead_letters == 3);
  }

  TEST_CASE("both ProjectionStores: checkpoints, letters and retry marks behave alike") {
    TempDir dir("es-projection-store");
    auto events = EngineEventStore::open(dir.file("events.es"));
    REQUIRE(events.ok());
    EngineProjectionStore engine_state((*events)->shared_store());
    InMemoryProjectionStore memory_state;
    for (ProjectionStore* s : std::vector<ProjectionStore*>{&engine_state, &memory_state}) {
      CAPTURE(s->backend());
      auto none = s->load_checkpoint("p@v1");
      REQUIRE(none.ok());
      CHECK(!none->has_value());
      require_ok(s->save_checkpoint("p@v1", GlobalPosition(7), "state"));
      auto cp = s->load_checkpoint("p@v1");
      REQUIRE(cp.ok());
      REQUIRE(cp->has_value());
      CHECK((*cp)->position.value == 7);
      CHECK((*cp)->state == "state");
      DeadLetter d;
      d.projection = "p";
      d.position = GlobalPosition(3);
      d.error = "boom";
      d.attempts = 2;
      auto id1 = s->add_dead_letter(d);
      d.projection = "q";
      auto id2 = s->add_dead_letter(d);
      REQUIRE(id1.ok());
      REQUIRE(id2.ok());
      CHECK(*id1 != *id2);
      CHECK(s->dead_letters()->size() == 2);
      CHECK(s->dead_letters("p")->size() == 1);
      CHECK(s->dead_letter(*id1)->error == "boom");
      CHECK(s->mark_for_retry(std::vector<uint64_t>{*id1, 999}).status().code() == Code::kNotFound);
      CHECK(s->marked_for_retry()->empty());
      CHECK(*s->mark_for_retry(std::vector<uint64_t>{*id1, *id2}) == 2);
      CHECK(*s->mark_for_retry(std::vector<uint64_t>{*id1}) == 0);
      require_ok(s->unmark(std::vector<uint64_t>{*id2}));
      CHECK(*s->marked_for_retry() == std::vector<uint64_t>{*id1});
      require_ok(s->remove_dead_letter(*id1));
      CHECK(s->marked_for_retry()->empty());  // a removed letter's mark goes with it
      CHECK(s->remove_dead_letter(*id1).code() == Code::kNotFound);
      CHECK(s->dead_letter(*id1).status().code() == Code::kNotFound);
      CHECK(*s->purge_dead_letters() == 1);
    }
  }

  TEST_CASE("letters marked in the store file are retried by the runner on its next start") {
    TempDir dir("es-marked");
    const std::string path = dir.file("events.es");
    uint64_t id = 0;
    Picky picky;
    const ProjectionRunnerOptions options{.defaults = {.failure = {.max_attempts = 1}}};
    {
      auto events = EngineEventStore::open(path);
      REQUIRE(events.ok());
      EngineProjectionStore state((*events)->shared_store());
      ProjectionRunner runner(**events, state, options);
      require_ok(runner.add(picky));
      require_ok(runner.start());
      append_raw(**events, "Thing", "{}");
      const GlobalPosition last = append_raw(**events, "Thing", "{\"bad\":true}");
      require_ok(runner.wait_until(last, 10s));
      require_ok(runner.stop());
      auto letters = state.dead_letters();
      REQUIRE(letters->size() == 1);
      id = (*letters)[0].id;
      require_ok((*events)->close());
    }
    {
      // What `esdump dlq STORE retry ID` does while the app is down.
      auto store = Store::open(path);
      REQUIRE(store.ok());
      auto marked = (*store)->mark_dead_letters_for_retry(std::vector<uint64_t>{id});
      REQUIRE_MESSAGE(marked.ok(), marked.status().to_string());
      CHECK(*marked == 1);
      require_ok((*store)->close());
    }
    picky.fixed = true;
    auto events = EngineEventStore::open(path);
    REQUIRE(events.ok());
    EngineProjectionStore state((*events)->shared_store());
    ProjectionRunner runner(**events, state, options);
    require_ok(runner.add(picky));
    require_ok(runner.start());
    require_ok(runner.wait_until(GlobalPosition(2), 10s));
    require_ok(runner.subscription("picky")->wait_live(10s));
    CHECK(picky.handled_bad.load() == 1);
    CHECK(state.dead_letters()->empty());
    CHECK(state.marked_for_retry()->empty());
  }
}

}  // namespace projection_test
