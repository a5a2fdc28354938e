// Aggregates (both styles), the testing kit, AggregateRepository and
// snapshots: every feature of aggregate.h, testing.h, repository.h and
// snapshot_store.h, on the in-memory and engine backends.
#include "eventsource/repository.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "eventsource/aggregate.h"
#include "eventsource/engine_event_store.h"
#include "eventsource/events.h"
#include "eventsource/json.h"
#include "eventsource/memory_event_store.h"
#include "eventsource/snapshot_store.h"
#include "eventsource/testing.h"
#include "tests/api/api_test_support.h"
#include "tests/support/temp_dir.h"

namespace shop {

// --- A decider: orders ---
struct OrderPlaced {
  std::string customer;
  bool operator==(const OrderPlaced&) const = default;
};
struct ItemAdded {
  std::string sku;
  int64_t quantity = 0;
  bool operator==(const ItemAdded&) const = default;
};
struct OrderShipped {
  std::string tracking;
  bool operator==(const OrderShipped&) const = default;
};
EVENTSOURCE_JSON(OrderPlaced, customer)
EVENTSOURCE_JSON(ItemAdded, sku, quantity)
EVENTSOURCE_JSON(OrderShipped, tracking)

struct PlaceOrder {
  std::string customer;
};
struct AddItem {
  std::string sku;
  int64_t quantity = 1;
};
struct Ship {
  std::string tracking;
};

struct OrderState {
  bool placed = false;
  bool shipped = false;
  std::string customer;
  int64_t items = 0;
};
EVENTSOURCE_JSON(OrderState, placed, shipped, customer, items)

struct OrderDecider {
  static constexpr std::string_view kAggregateType = "Order";
  using State = OrderState;
  using Command = std::variant<PlaceOrder, AddItem, Ship>;
  using Event = std::variant<OrderPlaced, ItemAdded, OrderShipped>;

  static State initial_state() { return {}; }

  static eventsource::Result<std::vector<Event>> decide(const Command& c, const State& s) {
    using eventsource::rejected;
    if (auto* p = std::get_if<PlaceOrder>(&c)) {
      if (s.placed) return rejected("the order is already placed");
      return std::vector<Event>{OrderPlaced{p->customer}};
    }
    if (!s.placed) return rejected("no order placed yet");
    if (s.shipped) return rejected("the order has shipped");
    if (auto* a = std::get_if<AddItem>(&c)) {
      if (a->quantity <= 0) return rejected("quantity must be positive");
      return std::vector<Event>{ItemAdded{a->sku, a->quantity}};
    }
    if (s.items == 0) return rejected("an empty order cannot ship");
    return std::vector<Event>{OrderShipped{std::get<Ship>(c).tracking}};
  }

  static State evolve(State s, const Event& e) {
    if (auto* p = std::get_if<OrderPlaced>(&e)) {
      s.placed = true;
      s.customer = p->customer;
    } else if (auto* a = std::get_if<ItemAdded>(&e)) {
      s.items += a->quantity;
    } else {
      s.shipped = true;
    }
    return s;
  }
};
using Order = eventsource::DeciderAggregate<OrderDecider>;

// --- An aggregate root: carts, whose events name their aggregate ---
struct CartOpened {
  std::string aggregate_id;
  bool operator==(const CartOpened&) const = default;
};
struct CartItemAdded {
  std::string aggregate_id;
  std::string sku;
  bool operator==(const CartItemAdded&) const = default;
};
EVENTSOURCE_JSON(CartOpened, aggregate_id)
EVENTSOURCE_JSON(CartItemAdded, aggregate_id, sku)

struct CartState {
  bool open = false;
  std::vector<std::string> skus;
};
EVENTSOURCE_JSON(CartState, open, skus)

class Cart
    : public eventsource::AggregateRoot<Cart, std::variant<CartOpened, CartItemAdded>, CartState> {
 public:
  static constexpr std::string_view kAggregateType = "Cart";
  using AggregateRoot::AggregateRoot;

  eventsource::Status open() {
    if (state().open) return eventsource::rejected("cart already open");
    raise(CartOpened{id()});
    return {};
  }
  eventsource::Status add(const std::string& sku, const std::string& name_as = "") {
    if (!state().open) return eventsource::rejected("cart is not open");
    raise(CartItemAdded{name_as.empty() ? id() : name_as, sku});
    return {};
  }
  void apply(const CartOpened&) { mutable_state().open = true; }
  void apply(const CartItemAdded& e) { mutable_state().skus.push_back(e.sku); }
};

}  // namespace shop

namespace eventsource {
namespace {

using namespace shop;
using testing::append_one;
using testing::TempDir;

void register_all(EventRegistry& r) {
  REQUIRE(r.add<OrderPlaced>("OrderPlaced").ok());
  REQUIRE(r.add<ItemAdded>("ItemAdded").ok());
  REQUIRE(r.add<OrderShipped>("OrderShipped").ok());
  REQUIRE(r.add<CartOpened>("CartOpened").ok());
  REQUIRE(r.add<CartItemAdded>("CartItemAdded").ok());
}

// One store per backend, in its own directory.
struct Fixture {
  TempDir dir{"es-repo"};
  EventRegistry registry;
  Metrics metrics;
  std::unique_ptr<EventStore> store;
  std::shared_ptr<Store> engine;  // set for the engine backend

  explicit Fixture(const std::string& backend) {
    register_all(registry);
    if (backend == "engine") {
      EngineEventStoreOptions o;
      o.store.segment_size = 1 << 20;
      o.store.durability = Durability::kNone;
      o.observability.metrics = &metrics;
      auto s = EngineEventStore::open(dir.file("events.es"), o);
      REQUIRE_MESSAGE(s.ok(), s.status().to_string());
      engine = (*s)->shared_store();
      store = std::move(s).value();
    } else {
      store = std::make_unique<InMemoryEventStore>(Observability{.metrics = &metrics});
    }
  }
};

const char* const kBackends[] = {"memory", "engine"};

#define FOR_EACH_REPO_BACKEND(f)        \
  for (const char* backend : kBackends) \
    if (Fixture f(backend); false) {    \
    } else                              \
      SUBCASE(backend)

Order placed_order(AggregateRepository<Order>& repo, const std::string& id, int items) {
  auto o = repo.load_or_create(id);
  REQUIRE(o.ok());
  REQUIRE(o->handle(PlaceOrder{"ann"}).ok());
  for (int i = 0; i < items; ++i) REQUIRE(o->handle(AddItem{"sku" + std::to_string(i), 1}).ok());
  auto saved = repo.save(*o);
  REQUIRE_MESSAGE(saved.ok(), saved.status().to_string());
  return std::move(o).value();
}

// Records the name of every span started, and how many ended.
class NameTracer final : public Tracer {
 public:
  class Named final : public TraceSpan {
   public:
    explicit Named(NameTracer* t) : t_(t) {}
    void set_attribute(std::string_view, std::string_view) override {}
    void set_attribute(std::string_view, int64_t) override {}
    void record_error(std::string_view) override {}
    void end() override {
      std::lock_guard lock(t_->mu);
      ++t_->ended;
    }

   private:
    NameTracer* t_;
  };
  std::unique_ptr<TraceSpan> start_span(std::string_view name) override {
    std::lock_guard lock(mu);
    names.emplace_back(name);
    return std::make_unique<Named>(this);
  }
  bool saw(std::string_view name) const {
    std::lock_guard lock(mu);
    return std::find(names.begin(), names.end(), name) != names.end();
  }
  mutable std::mutex mu;
  std::vector<std::string> names;
  int ended = 0;
};

TEST_SUITE("api-repository") {
  TEST_CASE("spans and counters: the repository and the stores under it report what they did") {
    TempDir dir("es-repo-obs");
    NameTracer tracer;
    Metrics metrics;
    EventRegistry registry;
    register_all(registry);
    const Observability obs{.tracer = &tracer, .metrics = &metrics};
    EngineEventStoreOptions o;
    o.store.durability = Durability::kGroup;
    o.observability = obs;
    auto store = EngineEventStore::open(dir.file("events.es"), o);
    REQUIRE(store.ok());
    EngineSnapshotStore snaps((*store)->shared_store(), obs);
    AggregateRepository<Order> orders(
        **store, registry, {.snapshots = &snaps, .snapshot_every = 2, .observability = obs});
    Order order("1");
    REQUIRE(order.handle(PlaceOrder{"ann"}).ok());
    REQUIRE(order.handle(AddItem{"a"}).ok());
    REQUIRE(orders.save(order).ok());
    REQUIRE(orders.load("1").ok());
    for (std::string_view name :
         {span_names::kRepositorySave, span_names::kAppendEvents, span_names::kSnapshotSave,
          span_names::kRepositoryLoad, span_names::kSnapshotGet, span_names::kGetEvents})
      CHECK_MESSAGE(tracer.saw(name), name);
    CHECK(tracer.ended == static_cast<int>(tracer.names.size()));
    const Counters c = metrics.counters();
    CHECK(c.appends == 1);
    CHECK(c.events_appended == 2);
    CHECK(c.syncs == 1);  // kGroup: the append waited for an fdatasync
    CHECK(c.snapshot_hits == 1);
    CHECK(c.conflicts == 0);
    Order stale("1");
    REQUIRE(stale.handle(PlaceOrder{"bob"}).ok());
    CHECK(orders.save(stale).status().code() == Code::kConflict);
    CHECK(metrics.counters().conflicts == 1);
    CHECK(metrics.prometheus_text().find("eventsource_syncs_total 1") != std::string::npos);
  }

  TEST_CASE("the testing kit: given, when, then, and it fails when it should") {
    using S = Scenario<Order>;
    CHECK(S().given({OrderPlaced{"ann"}}).when(AddItem{"a", 2}).then({ItemAdded{"a", 2}}).ok());
    CHECK(S().when(AddItem{"a", 2}).then_rejected("no order placed").ok());
    CHECK(S().given({OrderPlaced{"ann"}, OrderShipped{"T"}})
              .when(AddItem{"a", 1})
              .then_rejected("shipped")
              .ok());
    // The kit reports wrong expectations.
    CHECK_FALSE(
        S().given({OrderPlaced{"ann"}}).when(AddItem{"a", 2}).then({ItemAdded{"a", 3}}).ok());
    CHECK_FALSE(S().when(PlaceOrder{"x"}).then_rejected().ok());
    CHECK_FALSE(S().when(AddItem{"a", 1}).then({ItemAdded{"a", 1}}).ok());
    CHECK_FALSE(S().given({OrderPlaced{"ann"}}).when(Ship{"T"}).then({}).ok());
    CHECK(S().then({}).code() == Code::kInvalidArgument);  // no when()
    // An aggregate root through a callable.
    auto cart =
        Scenario<Cart>("c1").given({CartOpened{"c1"}}).when([](Cart& c) { return c.add("sku-9"); });
    CHECK(cart.then({CartItemAdded{"c1", "sku-9"}}).ok());
    CHECK(cart.aggregate().state().skus == std::vector<std::string>{"sku-9"});
    CHECK(cart.aggregate().version().value == 2);
    CHECK(cart.aggregate().stored_version().value == 1);
  }

  TEST_CASE("a decider's rejection changes nothing; state changes only by events") {
    Order o("1");
    CHECK(o.handle(AddItem{"a"}).code() == Code::kRejected);
    CHECK(o.pending_events().empty());
    REQUIRE(o.handle(PlaceOrder{"ann"}).ok());
    CHECK(o.handle(PlaceOrder{"bob"}).code() == Code::kRejected);
    CHECK(o.state().customer == "ann");
    CHECK(o.version().value == 1);
    CHECK(o.stored_version().value == 0);
  }

  TEST_CASE("save and load round trip both styles; missing aggregates are kNotFound") {
    FOR_EACH_REPO_BACKEND(f) {
      AggregateRepository<Order> orders(*f.store, f.registry);
      CHECK(orders.load("1").status().code() == Code::kNotFound);
      CHECK(orders.load("1").status().message().find("Order-1") != std::string::npos);
      CHECK_FALSE(*orders.exists("1"));
      placed_order(orders, "1", 3);
      auto back = orders.load("1");
      REQUIRE_MESSAGE(back.ok(), back.status().to_string());
      CHECK(back->state().items == 3);
      CHECK(back->state().customer == "ann");
      CHECK(back->stored_version().value == 4);
      CHECK(back->pending_events().empty());
      CHECK(*orders.exists("1"));
      // Nothing pending: nothing written.
      auto again = orders.save(*back);
      REQUIRE(again.ok());
      CHECK(f.store->current_position()->value == 4);

      AggregateRepository<Cart> carts(*f.store, f.registry);
      auto cart = carts.load_or_create("c1");
      REQUIRE(cart.ok());
      REQUIRE(cart->open().ok());
      REQUIRE(cart->add("x").ok());
      REQUIRE(carts.save(*cart).ok());
      auto cart_back = carts.load("c1");
      REQUIRE(cart_back.ok());
      CHECK(cart_back->state().skus == std::vector<std::string>{"x"});
      auto stored = f.store->get_events(StreamId{"Cart", "c1"});
      REQUIRE(stored.ok());
      REQUIRE(stored->size() == 2);
      CHECK((*stored)[1].type == "CartItemAdded");
      CHECK((*stored)[1].payload.find("\"sku\":\"x\"") != std::string::npos);
    }
  }

  TEST_CASE("a concurrent save is a conflict carrying both versions, and writes nothing") {
    FOR_EACH_REPO_BACKEND(f) {
      AggregateRepository<Order> orders(*f.store, f.registry);
      placed_order(orders, "1", 1);
      auto a = orders.load("1");
      auto b = orders.load("1");
      REQUIRE((a.ok() && b.ok()));
      REQUIRE(a->handle(AddItem{"a"}).ok());
      REQUIRE(b->handle(AddItem{"b"}).ok());
      REQUIRE(b->handle(AddItem{"c"}).ok());
      REQUIRE(orders.save(*a).ok());
      auto lost = orders.save(*b);
      REQUIRE(lost.status().code() == Code::kConflict);
      CHECK(lost.status().actual_version() == 3);
      CHECK(lost.status().expected_version() == 2);
      CHECK(lost.status().message().find("Order-1") != std::string::npos);
      CHECK(b->pending_events().size() == 2);  // still pending: the caller decides
      CHECK(orders.load("1")->state().items == 2);
    }
  }

  TEST_CASE("execute retries a command on conflict, a bounded number of times") {
    FOR_EACH_REPO_BACKEND(f) {
      AggregateRepository<Order> orders(*f.store, f.registry);
      placed_order(orders, "1", 0);
      int runs = 0;
      // The first run loses a race to another writer; the second wins.
      auto done = orders.execute("1", [&](Order& o) {
        if (++runs == 1) {
          auto other = orders.load("1");
          REQUIRE(other->handle(AddItem{"rival"}).ok());
          REQUIRE(orders.save(*other).ok());
        }
        return o.handle(AddItem{"mine"});
      });
      REQUIRE_MESSAGE(done.ok(), done.status().to_string());
      CHECK(runs == 2);
      CHECK(done->state().items == 2);
      // Always losing: the last conflict comes back after max_attempts.
      runs = 0;
      auto lost = orders.execute(
          "1",
          [&](Order& o) {
            ++runs;
            auto other = orders.load("1");
            REQUIRE(other->handle(AddItem{"rival"}).ok());
            REQUIRE(orders.save(*other).ok());
            return o.handle(AddItem{"mine"});
          },
          3);
      CHECK(lost.status().code() == Code::kConflict);
      CHECK(runs == 3);
      // A rejection is returned at once.
      runs = 0;
      auto refused = orders.execute("2", [&](Order& o) {
        ++runs;
        return o.handle(Ship{"T"});
      });
      CHECK(refused.status().code() == Code::kRejected);
      CHECK(runs == 1);
    }
  }

  TEST_CASE("concurrent executes on one aggregate all land, none lost") {
    FOR_EACH_REPO_BACKEND(f) {
      AggregateRepository<Order> orders(*f.store, f.registry);
      placed_order(orders, "hot", 0);
      constexpr int kThreads = 4, kEach = 25;
      std::atomic<int> failures{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
          for (int i = 0; i < kEach; ++i) {
            auto r = orders.execute(
                "hot", [](Order& o) { return o.handle(AddItem{"x"}); }, 1000);
            if (!r.ok()) ++failures;
          }
        });
      for (auto& t : threads) t.join();
      CHECK(failures == 0);
      CHECK(orders.load("hot")->state().items == kThreads * kEach);
    }
  }

  TEST_CASE("snapshots: taken every N, used on load, and never a wrong state") {
    FOR_EACH_REPO_BACKEND(f) {
      std::unique_ptr<SnapshotStore> snaps;
      if (f.engine)
        snaps = std::make_unique<EngineSnapshotStore>(f.engine);
      else
        snaps = std::make_unique<InMemorySnapshotStore>();
      RepositoryOptions opts;
      opts.snapshots = snaps.get();
      opts.snapshot_every = 5;
      opts.observability.metrics = &f.metrics;
      AggregateRepository<Order> orders(*f.store, f.registry, opts);
      placed_order(orders, "1", 2);  // versions 1..3: no multiple of 5 crossed
      CHECK_FALSE(snaps->get(StreamId{"Order", "1"})->has_value());
      auto o = orders.load("1");
      CHECK(f.metrics.counters().snapshot_misses_none == 2);  // load_or_create, then load
      REQUIRE(o->handle(AddItem{"a", 1}).ok());
      REQUIRE(o->handle(AddItem{"b", 1}).ok());
      REQUIRE(o->handle(AddItem{"c", 1}).ok());
      REQUIRE(orders.save(*o).ok());  // 3 -> 6 crosses 5
      auto snap = snaps->get(StreamId{"Order", "1"});
      REQUIRE(snap.ok());
      REQUIRE(snap->has_value());
      CHECK((*snap)->version.value == 6);
      CHECK((*snap)->schema_version == 1);
      // One more event after the snapshot, then a load from it.
      REQUIRE(o->handle(AddItem{"d", 10}).ok());
      REQUIRE(orders.save(*o).ok());
      auto loaded = orders.load("1");
      REQUIRE(loaded.ok());
      CHECK(f.metrics.counters().snapshot_hits == 1);
      CHECK(loaded->state().items == 15);
      CHECK(loaded->stored_version().value == 7);

      // A new state schema: the snapshot is ignored, the replay is right.
      RepositoryOptions v2 = opts;
      v2.state_schema_version = 2;
      AggregateRepository<Order> orders_v2(*f.store, f.registry, v2);
      auto replayed = orders_v2.load("1");
      REQUIRE(replayed.ok());
      CHECK(replayed->state().items == 15);
      CHECK(f.metrics.counters().snapshot_misses_schema == 1);

      // A snapshot that does not decode: a replay, counted.
      REQUIRE(snaps->save({StreamId{"Order", "1"}, StreamVersion(7), 1, 0, "{not json"}).ok());
      auto after_bad = orders.load("1");
      REQUIRE(after_bad.ok());
      CHECK(after_bad->state().items == 15);
      CHECK(after_bad->stored_version().value == 7);
      CHECK(f.metrics.counters().snapshot_misses_decode == 1);

      // A snapshot ahead of the stream is not believed.
      REQUIRE(snaps
                  ->save({StreamId{"Order", "1"}, StreamVersion(50), 1, 0,
                          "{\"placed\":true,\"items\":99}"})
                  .ok());
      CHECK(orders.load("1").status().code() == Code::kCorruption);

      // Pruning keeps the newest.
      auto pruned = snaps->prune(StreamId{"Order", "1"}, StreamVersion(50));
      REQUIRE(pruned.ok());
      CHECK(*pruned >= 1);
      CHECK((*snaps->get(StreamId{"Order", "1"}))->version.value == 50);
    }
  }

  TEST_CASE("a custom snapshot strategy, and a failing snapshot never fails a save") {
    FOR_EACH_REPO_BACKEND(f) {
      InMemorySnapshotStore snaps;
      std::vector<std::string> logged;
      RepositoryOptions opts;
      opts.snapshots = &snaps;
      opts.snapshot_when = [](StreamVersion, StreamVersion after) { return after.value >= 2; };
      opts.observability.log = [&](LogLevel, std::string_view m, std::span<const LogField>) {
        logged.emplace_back(m);
      };
      AggregateRepository<Order> orders(*f.store, f.registry, opts);
      placed_order(orders, "1", 0);
      CHECK_FALSE(snaps.get(StreamId{"Order", "1"})->has_value());
      auto o = orders.load("1");
      REQUIRE(o->handle(AddItem{"a"}).ok());
      REQUIRE(orders.save(*o).ok());
      CHECK((*snaps.get(StreamId{"Order", "1"}))->version.value == 2);
      // A state codec that fails: the save stands, the failure is logged.
      Codec<OrderState> broken = json_codec<OrderState>();
      broken.encode = [](const OrderState&, std::string&) -> Status {
        throw std::runtime_error("disk on fire");
      };
      AggregateRepository<Order> fragile(*f.store, f.registry, opts, broken);
      auto p = fragile.load("1");
      REQUIRE(p.ok());
      REQUIRE(p->handle(AddItem{"b"}).ok());
      REQUIRE(fragile.save(*p).ok());
      CHECK(fragile.load("1")->state().items == 2);
      REQUIRE_FALSE(logged.empty());
      CHECK(logged.back().find("snapshot not taken") != std::string::npos);
    }
  }

  TEST_CASE("time travel: an aggregate as it was at a version or a time") {
    FOR_EACH_REPO_BACKEND(f) {
      AggregateRepository<Order> orders(*f.store, f.registry);
      Order o("1");
      REQUIRE(o.handle(PlaceOrder{"ann"}).ok());
      REQUIRE(orders.save(o, {.timestamp_us = 1000}).ok());
      REQUIRE(o.handle(AddItem{"a", 2}).ok());
      REQUIRE(orders.save(o, {.timestamp_us = 2000}).ok());
      REQUIRE(o.handle(AddItem{"b", 3}).ok());
      REQUIRE(orders.save(o, {.timestamp_us = 3000}).ok());
      CHECK(orders.load_at("1", StreamVersion(2))->state().items == 2);
      CHECK(orders.load_at("1", StreamVersion(2))->stored_version().value == 2);
      CHECK(orders.load_at("1", StreamVersion(99))->state().items == 5);
      CHECK(orders.load_as_of("1", 1500)->state().items == 0);
      CHECK(orders.load_as_of("1", 2500)->state().items == 2);
      CHECK(orders.load_as_of("1", 500).status().code() == Code::kNotFound);
    }
  }

  TEST_CASE("the cache fast-forwards hot aggregates and drops them on conflict") {
    FOR_EACH_REPO_BACKEND(f) {
      RepositoryOptions opts;
      opts.cache_capacity = 2;
      opts.observability.metrics = &f.metrics;
      AggregateRepository<Order> orders(*f.store, f.registry, opts);
      AggregateRepository<Order> other(*f.store, f.registry);  // no cache: another process
      placed_order(orders, "1", 20);                           // 21 events
      const uint64_t before = f.metrics.counters().events_read;
      auto hot = orders.load("1");
      REQUIRE(hot.ok());
      CHECK(f.metrics.counters().events_read == before);  // from the cache, nothing to replay
      // Another writer appends: the next load reads only that event.
      auto o = other.load("1");
      REQUIRE(o->handle(AddItem{"z"}).ok());
      REQUIRE(other.save(*o).ok());
      const uint64_t before_ff = f.metrics.counters().events_read;
      auto ff = orders.load("1");
      REQUIRE(ff.ok());
      CHECK(ff->state().items == 21);
      CHECK(f.metrics.counters().events_read == before_ff + 1);
      // A stale cached copy loses its save, and the entry is dropped.
      REQUIRE(o->handle(AddItem{"y"}).ok());
      REQUIRE(other.save(*o).ok());
      REQUIRE(ff->handle(AddItem{"stale"}).ok());
      CHECK(orders.save(*ff).status().code() == Code::kConflict);
      auto fresh = orders.load("1");
      REQUIRE(fresh.ok());
      CHECK(fresh->state().items == 22);
      // LRU by count: a third aggregate evicts the least recent.
      placed_order(orders, "2", 0);
      placed_order(orders, "3", 0);
      const uint64_t mark = f.metrics.counters().events_read;
      REQUIRE(orders.load("1").ok());  // evicted: replayed whole
      CHECK(f.metrics.counters().events_read == mark + 23);
    }
  }

  TEST_CASE("a tenant-scoped repository never loads or saves another tenant's aggregate") {
    FOR_EACH_REPO_BACKEND(f) {
      InMemorySnapshotStore snaps;
      RepositoryOptions acme_opts;
      acme_opts.tenant = "acme";
      acme_opts.snapshots = &snaps;
      acme_opts.snapshot_every = 1;
      RepositoryOptions globex_opts = acme_opts;
      globex_opts.tenant = "globex";
      AggregateRepository<Order> acme(*f.store, f.registry, acme_opts);
      AggregateRepository<Order> globex(*f.store, f.registry, globex_opts);
      placed_order(acme, "1", 1);
      auto events = f.store->get_events(StreamId{"Order", "1"});
      REQUIRE(events.ok());
      for (const auto& e : *events) CHECK(e.tenant == "acme");
      // Through the snapshot path and the replay path alike.
      CHECK(globex.load("1").status().code() == Code::kNotFound);
      CHECK(globex.load("1").status().message().find("acme") == std::string::npos);
      CHECK_FALSE(*globex.exists("1"));
      CHECK(globex.load_at("1", StreamVersion(1)).status().code() == Code::kNotFound);
      // load_or_create then save collides with the stored stream: refused.
      auto fresh = globex.load_or_create("1");
      REQUIRE_FALSE(fresh.ok());
      Order mine("1");
      REQUIRE(mine.handle(PlaceOrder{"eve"}).ok());
      CHECK(globex.save(mine).status().code() == Code::kConflict);
      CHECK(acme.load("1")->state().customer == "ann");
    }
  }

  TEST_CASE("guards: an event naming another aggregate is refused, nothing written") {
    FOR_EACH_REPO_BACKEND(f) {
      AggregateRepository<Cart> carts(*f.store, f.registry);
      Cart c("c1");
      REQUIRE(c.open().ok());
      REQUIRE(c.add("x", "c2").ok());  // names cart c2
      auto r = carts.save(c);
      CHECK(r.status().code() == Code::kInvalidArgument);
      CHECK(r.status().message().find("c2") != std::string::npos);
      CHECK(f.store->current_position()->value == 0);
    }
  }

  TEST_CASE("unregistered and undecodable events are clear errors, never half an aggregate") {
    FOR_EACH_REPO_BACKEND(f) {
      EventRegistry partial;
      REQUIRE(partial.add<OrderPlaced>("OrderPlaced").ok());
      AggregateRepository<Order> orders(*f.store, partial);
      Order o("1");
      REQUIRE(o.handle(PlaceOrder{"ann"}).ok());
      REQUIRE(o.handle(AddItem{"a"}).ok());
      CHECK(orders.save(o).status().code() == Code::kInvalidArgument);  // ItemAdded unknown
      CHECK(f.store->current_position()->value == 0);
      // A stored payload that no longer decodes.
      NewEvent bad;
      bad.type = "OrderPlaced";
      bad.payload = "{\"customer\": 42}";
      REQUIRE(append_one(*f.store, StreamId{"Order", "2"}, ExpectedVersion::any(), bad).ok());
      auto broken = orders.load("2");
      REQUIRE_FALSE(broken.ok());
      CHECK(broken.status().message().find("OrderPlaced") != std::string::npos);
      CHECK(broken.status().message().find("position 1") != std::string::npos);
      // A type the registry does not know.
      bad.type = "Mystery";
      bad.payload = "{}";
      REQUIRE(append_one(*f.store, StreamId{"Order", "3"}, ExpectedVersion::any(), bad).ok());
      auto unknown = orders.load("3");
      REQUIRE_FALSE(unknown.ok());
      CHECK(unknown.status().message().find("Mystery") != std::string::npos);
    }
  }

  TEST_CASE("the publisher sees stored events once durable, never refused ones") {
    FOR_EACH_REPO_BACKEND(f) {
      std::vector<StoredEvent> published;
      RepositoryOptions opts;
      opts.publisher = [&](std::span<const StoredEvent> events) {
        published.insert(published.end(), events.begin(), events.end());
      };
      AggregateRepository<Order> orders(*f.store, f.registry, opts);
      const Uuid command = Uuid::random();
      Order o("1");
      REQUIRE(o.handle(PlaceOrder{"ann"}).ok());
      REQUIRE(o.handle(AddItem{"a"}).ok());
      SaveContext ctx = SaveContext::from_command(command);
      ctx.actor = "alice";
      REQUIRE(orders.save(o, ctx).ok());
      auto stored = f.store->get_events(StreamId{"Order", "1"});
      REQUIRE(stored.ok());
      CHECK(published == *stored);
      CHECK(published[0].causation_id == command);
      CHECK(published[0].correlation_id == command);
      CHECK(published[1].actor == "alice");
      // A conflicting save publishes nothing.
      Order stale("1");
      REQUIRE(stale.handle(PlaceOrder{"bob"}).ok());
      CHECK_FALSE(orders.save(stale).ok());
      CHECK(published.size() == 2);
      // Caused by a prior event: its correlation carries over.
      SaveContext next = SaveContext::caused_by(published[1]);
      CHECK(next.causation_id == published[1].id);
      CHECK(next.correlation_id == command);
      SaveContext first = SaveContext::caused_by(StoredEvent{});
      CHECK(first.correlation_id == first.causation_id);
      // A publisher that throws does not undo the save.
      RepositoryOptions throwing;
      throwing.publisher = [](std::span<const StoredEvent>) {
        throw std::runtime_error("bus down");
      };
      AggregateRepository<Order> loud(*f.store, f.registry, throwing);
      Order p("2");
      REQUIRE(p.handle(PlaceOrder{"cy"}).ok());
      REQUIRE(loud.save(p).ok());
      CHECK(loud.load("2").ok());
    }
  }
}

}  // namespace
}  // namespace eventsource
