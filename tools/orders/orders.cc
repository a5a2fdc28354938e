// es_orders: the example app of api/, the README's main job. An order
// workflow for two tenants on one store file:
//  - Order is a decider (place, add items, ship, cancel, with business rules);
//  - Customer is an aggregate root (registration and a credit limit that
//    orders reserve and cancellations release);
//  - both go through tenant-scoped AggregateRepositories with snapshots in
//    the same file, and every step prints what it did.
// It shows a rejection, an optimistic-locking conflict and its retry, a
// load from a snapshot, time travel and the counters. The read side: the
// repositories publish saved events to a bus whose subscriber prints
// notifications; a ProjectionRunner keeps order totals per customer (a read
// model the app answers from once wait_until says it has the last save),
// and a shipping-label projection dead-letters a malformed event that a
// legacy writer appended. It leaves a store that esdump shows (esdump dlq
// lists the dead letter). Usage: es_orders STORE
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "eventsource/aggregate.h"
#include "eventsource/engine_event_store.h"
#include "eventsource/event_bus.h"
#include "eventsource/events.h"
#include "eventsource/json.h"
#include "eventsource/observability.h"
#include "eventsource/projection.h"
#include "eventsource/projection_runner.h"
#include "eventsource/projection_store.h"
#include "eventsource/repository.h"
#include "eventsource/snapshot_store.h"

namespace orders {

using eventsource::invalid_argument;
using eventsource::rejected;
using eventsource::Result;
using eventsource::Status;

// --- Order: a decider ---
struct OrderPlaced {
  std::string customer_id;
  std::string currency;
};
struct ItemAdded {
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_price_cents = 0;
};
struct OrderShipped {
  std::string tracking_number;
};
struct OrderCancelled {
  std::string reason;
};
EVENTSOURCE_JSON(OrderPlaced, customer_id, currency)
EVENTSOURCE_JSON(ItemAdded, sku, quantity, unit_price_cents)
EVENTSOURCE_JSON(OrderShipped, tracking_number)
EVENTSOURCE_JSON(OrderCancelled, reason)

struct PlaceOrder {
  std::string customer_id;
};
struct AddItem {
  std::string sku;
  int64_t quantity = 1;
  int64_t unit_price_cents = 0;
};
struct ShipOrder {
  std::string tracking_number;
};
struct CancelOrder {
  std::string reason;
};

enum class OrderStatus : int { kNone, kOpen, kShipped, kCancelled };

struct OrderState {
  OrderStatus status = OrderStatus::kNone;
  std::string customer_id;
  int64_t lines = 0;
  int64_t total_cents = 0;
};
EVENTSOURCE_JSON(OrderState, status, customer_id, lines, total_cents)

constexpr int64_t kMaxLines = 20;
constexpr int64_t kMaxQuantity = 100;

struct OrderDecider {
  static constexpr std::string_view kAggregateType = "Order";
  using State = OrderState;
  using Command = std::variant<PlaceOrder, AddItem, ShipOrder, CancelOrder>;
  using Event = std::variant<OrderPlaced, ItemAdded, OrderShipped, OrderCancelled>;

  static State initial_state() { return {}; }

  static Result<std::vector<Event>> decide(const Command& command, const State& s) {
    return std::visit([&](const auto& c) { return decide_one(c, s); }, command);
  }

  static State evolve(State s, const Event& event) {
    std::visit(
        [&](const auto& e) {
          using E = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<E, OrderPlaced>) {
            s.status = OrderStatus::kOpen;
            s.customer_id = e.customer_id;
          } else if constexpr (std::is_same_v<E, ItemAdded>) {
            ++s.lines;
            s.total_cents += e.quantity * e.unit_price_cents;
          } else if constexpr (std::is_same_v<E, OrderShipped>) {
            s.status = OrderStatus::kShipped;
          } else {
            s.status = OrderStatus::kCancelled;
          }
        },
        event);
    return s;
  }

 private:
  using Events = Result<std::vector<Event>>;
  static Events decide_one(const PlaceOrder& c, const State& s) {
    if (s.status != OrderStatus::kNone) return rejected("the order is already placed");
    return std::vector<Event>{OrderPlaced{c.customer_id, "EUR"}};
  }
  static Events decide_one(const AddItem& c, const State& s) {
    if (s.status != OrderStatus::kOpen) return rejected("items can be added to open orders only");
    if (c.quantity < 1 || c.quantity > kMaxQuantity)
      return rejected(fmt::format("quantity {} is not in 1..{}", c.quantity, kMaxQuantity));
    if (s.lines >= kMaxLines) return rejected("an order holds at most 20 lines");
    return std::vector<Event>{ItemAdded{c.sku, c.quantity, c.unit_price_cents}};
  }
  static Events decide_one(const ShipOrder& c, const State& s) {
    if (s.status != OrderStatus::kOpen) return rejected("only open orders ship");
    if (s.lines == 0) return rejected("an empty order cannot ship");
    return std::vector<Event>{OrderShipped{c.tracking_number}};
  }
  static Events decide_one(const CancelOrder& c, const State& s) {
    if (s.status != OrderStatus::kOpen) return rejected("only open orders can be cancelled");
    return std::vector<Event>{OrderCancelled{c.reason}};
  }
};
using Order = eventsource::DeciderAggregate<OrderDecider>;

// --- Customer: an aggregate root ---
struct CustomerRegistered {
  std::string name;
  int64_t credit_limit_cents = 0;
};
struct CreditReserved {
  std::string order_id;
  int64_t amount_cents = 0;
};
struct CreditReleased {
  std::string order_id;
  int64_t amount_cents = 0;
};
EVENTSOURCE_JSON(CustomerRegistered, name, credit_limit_cents)
EVENTSOURCE_JSON(CreditReserved, order_id, amount_cents)
EVENTSOURCE_JSON(CreditReleased, order_id, amount_cents)

struct CustomerState {
  std::string name;
  int64_t credit_limit_cents = 0;
  int64_t reserved_cents = 0;
  int64_t orders = 0;
};
EVENTSOURCE_JSON(CustomerState, name, credit_limit_cents, reserved_cents, orders)

class Customer : public eventsource::AggregateRoot<
                     Customer, std::variant<CustomerRegistered, CreditReserved, CreditReleased>,
                     CustomerState> {
 public:
  static constexpr std::string_view kAggregateType = "Customer";
  using AggregateRoot::AggregateRoot;

  Status register_as(const std::string& name, int64_t limit_cents) {
    if (!state().name.empty()) return rejected("customer already registered");
    raise(CustomerRegistered{name, limit_cents});
    return {};
  }
  Status reserve(const std::string& order_id, int64_t cents) {
    if (state().name.empty()) return rejected("unknown customer");
    if (state().reserved_cents + cents > state().credit_limit_cents)
      return rejected(fmt::format("credit limit {:.2f} EUR would be exceeded",
                                  state().credit_limit_cents / 100.0));
    raise(CreditReserved{order_id, cents});
    return {};
  }
  Status release(const std::string& order_id, int64_t cents) {
    raise(CreditReleased{order_id, cents});
    return {};
  }

  void apply(const CustomerRegistered& e) {
    mutable_state().name = e.name;
    mutable_state().credit_limit_cents = e.credit_limit_cents;
  }
  void apply(const CreditReserved& e) {
    mutable_state().reserved_cents += e.amount_cents;
    ++mutable_state().orders;
  }
  void apply(const CreditReleased& e) { mutable_state().reserved_cents -= e.amount_cents; }
};

struct Product {
  const char* sku;
  int64_t price_cents;
};
constexpr Product kProducts[] = {{"SKU-1001", 1890},
                                 {"SKU-1002", 12900},
                                 {"SKU-1003", 1450},
                                 {"SKU-1004", 390},
                                 {"SKU-1005", 5990}};
constexpr const char* kTenants[] = {"acme", "globex"};
constexpr const char* kCustomers[] = {"Ada Lovelace", "Grace Hopper", "Alan Turing"};

Status registry_for(eventsource::EventRegistry& r) {
  for (Status s :
       {r.add<OrderPlaced>("OrderPlaced"), r.add<ItemAdded>("ItemAdded"),
        r.add<OrderShipped>("OrderShipped"), r.add<OrderCancelled>("OrderCancelled"),
        r.add<CustomerRegistered>("CustomerRegistered"), r.add<CreditReserved>("CreditReserved"),
        r.add<CreditReleased>("CreditReleased")})
    if (!s.ok()) return s;
  return Status();
}

eventsource::RepositoryOptions options_for(const std::string& tenant,
                                           eventsource::SnapshotStore* snapshots,
                                           eventsource::Metrics* metrics,
                                           eventsource::InMemoryEventBus* bus) {
  eventsource::RepositoryOptions o;
  o.publisher = bus->publisher();  // saved events, once durable
  o.tenant = tenant;
  o.snapshots = snapshots;
  o.snapshot_every = 5;
  o.cache_capacity = 64;
  o.observability.metrics = metrics;
  return o;
}

// One tenant's repositories over the shared store.
struct Shop {
  Shop(std::string t, eventsource::EventStore& store, const eventsource::EventRegistry& registry,
       eventsource::SnapshotStore* snapshots, eventsource::Metrics* metrics,
       eventsource::InMemoryEventBus* bus)
      : tenant(std::move(t)),
        orders(store, registry, options_for(tenant, snapshots, metrics, bus)),
        customers(store, registry, options_for(tenant, snapshots, metrics, bus)) {}

  std::string tenant;
  eventsource::AggregateRepository<Order> orders;
  eventsource::AggregateRepository<Customer> customers;
  std::string shipped_order;  // one this run shipped
};

// --- The read side ---
using eventsource::EventRecord;

// Order totals per customer, from the order events. In memory, so it starts
// from the first event on every run (a persistent read model would resume
// from its checkpoint). Queried from the main thread while it runs.
class CustomerTotals final : public eventsource::DeclarativeProjection {
 public:
  struct Total {
    int64_t orders = 0;
    int64_t cents = 0;
  };
  explicit CustomerTotals(const eventsource::EventRegistry& r)
      : DeclarativeProjection("customer-totals") {
    on<OrderPlaced>(r, [this](const OrderPlaced& e, const EventRecord& at) {
      std::lock_guard lock(mu_);
      Order& o = orders_[std::string(at.stream_id)];
      o.customer = e.customer_id;
      ++totals_[o.customer].orders;
      return Status();
    });
    on<ItemAdded>(r, [this](const ItemAdded& e, const EventRecord& at) {
      std::lock_guard lock(mu_);
      Order& o = orders_[std::string(at.stream_id)];
      o.cents += e.quantity * e.unit_price_cents;
      totals_[o.customer].cents += e.quantity * e.unit_price_cents;
      return Status();
    });
    on<OrderCancelled>(r, [this](const OrderCancelled&, const EventRecord& at) {
      std::lock_guard lock(mu_);
      const Order& o = orders_[std::string(at.stream_id)];
      Total& t = totals_[o.customer];
      --t.orders;
      t.cents -= o.cents;
      return Status();
    });
  }
  std::map<std::string, Total> totals() const {
    std::lock_guard lock(mu_);
    return totals_;
  }

 private:
  struct Order {
    std::string customer;
    int64_t cents = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, Order> orders_;
  std::map<std::string, Total> totals_;
};

// Shipping labels for shipped orders (counted here). A shipment event that
// does not decode fails, is retried, then dead-lettered: the projection
// goes on, and `esdump dlq STORE` lists the letter.
class ShippingLabels final : public eventsource::DeclarativeProjection {
 public:
  explicit ShippingLabels(const eventsource::EventRegistry& r)
      : DeclarativeProjection("shipping-labels") {
    on<OrderShipped>(r, [this](const OrderShipped& e, const EventRecord&) {
      if (e.tracking_number.empty()) return invalid_argument("no tracking number");
      labels_.fetch_add(1);
      return Status();
    });
  }
  int64_t labels() const { return labels_.load(); }

 private:
  std::atomic<int64_t> labels_{0};
};

int fail(std::string_view what, const Status& s) {
  fmt::print(stderr, "es_orders: {}: {}\n", what, s.to_string());
  return 1;
}

int run(const std::string& path) {
  eventsource::Metrics metrics;
  eventsource::EngineEventStoreOptions store_options;
  store_options.observability.metrics = &metrics;
  auto opened = eventsource::EngineEventStore::open(path, store_options);
  if (!opened.ok()) return fail("cannot open " + path, opened.status());
  std::unique_ptr<eventsource::EngineEventStore> store = std::move(opened).value();
  eventsource::EngineSnapshotStore snapshots(store->shared_store());
  eventsource::EventRegistry registry;
  if (Status s = registry_for(registry); !s.ok()) return fail("registry", s);

  // Runs number their orders after earlier runs' (same store, new ids).
  const uint64_t run_number = store->current_position()->value;
  std::mt19937 rng(static_cast<uint32_t>(run_number + 7));
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };

  // The bus: a notifier prints what customers would be told. Synchronous,
  // so its lines come right after the save that caused them.
  eventsource::InMemoryEventBus bus({.observability = {.metrics = &metrics}});
  auto notify = [](const char* what) {
    return [what](const auto&, const eventsource::StoredEvent& e) {
      fmt::print("  [bus] notify {}: order {} {}\n", e.tenant, e.stream.id, what);
      return Status();
    };
  };
  for (Status s :
       {bus.subscribe<OrderShipped>(registry, "notifier", notify("shipped")).status(),
        bus.subscribe<OrderCancelled>(registry, "notifier", notify("cancelled")).status()})
    if (!s.ok()) return fail("bus", s);

  // Projections: checkpoints and dead letters in the store file itself.
  eventsource::EngineProjectionStore projection_state(store->shared_store());
  eventsource::SubscriptionOptions defaults;
  defaults.failure.max_attempts = 3;
  defaults.failure.initial_backoff = std::chrono::milliseconds(5);
  defaults.observability.metrics = &metrics;
  eventsource::ProjectionRunner runner(*store, projection_state, {.defaults = defaults});
  CustomerTotals totals(registry);
  ShippingLabels labels(registry);
  eventsource::SubscriptionOptions from_first = defaults;
  from_first.from = eventsource::StartFrom::beginning();  // an in-memory read model
  for (Status s : {runner.add(totals, from_first), runner.add(labels), runner.start()})
    if (!s.ok()) return fail("projections", s);

  std::vector<std::unique_ptr<Shop>> shops;
  for (const char* t : kTenants)
    shops.push_back(std::make_unique<Shop>(t, *store, registry, &snapshots, &metrics, &bus));

  int shipped = 0, cancelled = 0, refused = 0;
  for (const auto& shop_ptr : shops) {
    Shop& shop = *shop_ptr;
    fmt::print("== tenant {}\n", shop.tenant);
    // Customers: registered once, reused by later runs.
    std::vector<std::string> customer_ids;
    for (size_t c = 0; c < std::size(kCustomers); ++c) {
      const std::string id = fmt::format("{}-c{}", shop.tenant, c + 1);
      customer_ids.push_back(id);
      auto done = shop.customers.execute(id, [&](Customer& cu) -> Status {
        if (!cu.state().name.empty()) return {};
        return cu.register_as(kCustomers[c], 40000);
      });
      if (!done.ok()) return fail("register " + id, done.status());
      fmt::print("customer {:<10} {:<14} credit {:>7.2f} EUR, reserved {:>7.2f}, version {}\n", id,
                 done->state().name, done->state().credit_limit_cents / 100.0,
                 done->state().reserved_cents / 100.0, done->stored_version().value);
    }
    for (int n = 0; n < 6; ++n) {
      const std::string order_id = fmt::format("{}-{:06}-{}", shop.tenant, run_number, n + 1);
      const std::string& customer_id = customer_ids[pick(customer_ids.size())];
      Order order(order_id);
      Status s = order.handle(PlaceOrder{customer_id});
      const size_t lines = 1 + pick(3);
      for (size_t i = 0; i < lines && s.ok(); ++i) {
        const Product& p = kProducts[pick(std::size(kProducts))];
        s = order.handle(AddItem{p.sku, static_cast<int64_t>(1 + pick(3)), p.price_cents});
      }
      if (!s.ok()) return fail("order " + order_id, s);
      // The customer's credit first: a rejection stops the order here.
      const int64_t total = order.state().total_cents;
      auto credit = shop.customers.execute(
          customer_id, [&](Customer& cu) { return cu.reserve(order_id, total); });
      if (!credit.ok()) {
        ++refused;
        fmt::print("order {} for {:.2f} EUR refused: {}\n", order_id, total / 100.0,
                   credit.status().message());
        continue;
      }
      auto saved = shop.orders.save(order, eventsource::SaveContext{.actor = "web"});
      if (!saved.ok()) return fail("save " + order_id, saved.status());
      fmt::print("order {} placed: {} lines, {:.2f} EUR, positions {}..{}\n", order_id,
                 order.state().lines, total / 100.0, saved->first_position.value,
                 saved->last_position.value);
      // Ship most, cancel some (releasing the credit).
      if (n % 3 != 2) {
        auto done = shop.orders.execute(order_id, [&](Order& o) {
          return o.handle(ShipOrder{fmt::format("TRACK-{}-{}", run_number, n)});
        });
        if (!done.ok()) return fail("ship " + order_id, done.status());
        ++shipped;
        if (shop.shipped_order.empty()) shop.shipped_order = order_id;
        fmt::print("order {} shipped (version {})\n", order_id, done->stored_version().value);
      } else {
        auto done = shop.orders.execute(
            order_id, [&](Order& o) { return o.handle(CancelOrder{"customer changed mind"}); });
        if (!done.ok()) return fail("cancel " + order_id, done.status());
        auto released = shop.customers.execute(
            customer_id, [&](Customer& cu) { return cu.release(order_id, total); });
        if (!released.ok()) return fail("release " + customer_id, released.status());
        ++cancelled;
        fmt::print("order {} cancelled, {:.2f} EUR of credit released\n", order_id, total / 100.0);
      }
    }
  }

  // A business rule at work: a shipped order takes no more items.
  Shop& acme = *shops[0];
  const std::string first_order = acme.shipped_order;
  if (first_order.empty()) return fail("the run", invalid_argument("acme shipped no order"));
  auto late = acme.orders.execute(first_order, [](Order& o) {
    return o.handle(AddItem{"SKU-1004", 1, 390});
  });
  fmt::print("adding to shipped order {}: {}\n", first_order, late.status().to_string());

  // Optimistic locking: two copies of one customer; the second save loses,
  // and execute() retries it on a fresh load.
  const std::string cid = "acme-c1";
  auto a = acme.customers.load(cid);
  auto b = acme.customers.load(cid);
  if (!a.ok() || !b.ok()) return fail("load " + cid, a.ok() ? b.status() : a.status());
  if (Status s = a->reserve("manual-1", 100); !s.ok()) return fail("reserve", s);
  if (Status s = b->reserve("manual-2", 100); !s.ok()) return fail("reserve", s);
  if (auto r = acme.customers.save(*a); !r.ok()) return fail("save " + cid, r.status());
  auto lost = acme.customers.save(*b);
  fmt::print("second writer of {}: {} (expected {}, actual {})\n", cid, lost.status().to_string(),
             lost.status().expected_version(), lost.status().actual_version());
  auto retried =
      acme.customers.execute(cid, [](Customer& cu) { return cu.release("manual-1", 100); });
  if (!retried.ok()) return fail("retry " + cid, retried.status());
  fmt::print("retried with execute(): {} now at version {}\n", cid,
             retried->stored_version().value);

  // Tenancy: globex cannot see acme's customer.
  auto foreign = shops[1]->customers.load(cid);
  fmt::print("globex loading {}: {}\n", cid, foreign.status().to_string());

  // Time travel: the first order as it was after its first event.
  auto past = acme.orders.load_at(first_order, eventsource::StreamVersion(1));
  if (!past.ok()) return fail("time travel", past.status());
  fmt::print("order {} at version 1: {} lines, {:.2f} EUR\n", first_order, past->state().lines,
             past->state().total_cents / 100.0);

  // A legacy writer appends a shipment with its tracking number as a
  // number: OrderShipped does not decode, so shipping-labels dead-letters it.
  eventsource::NewEvent legacy;
  legacy.type = "OrderShipped";
  legacy.payload = R"({"tracking_number": 4711})";
  legacy.tenant = "acme";
  legacy.actor = "legacy-import";
  auto appended = store->append_events({"Order", fmt::format("acme-legacy-{}", run_number)},
                                       eventsource::ExpectedVersion::any(),
                                       std::span<const eventsource::NewEvent>(&legacy, 1));
  if (!appended.ok()) return fail("legacy append", appended.status());

  // Read your writes: answer from the read model once it has the last event.
  if (Status s = runner.wait_until(appended->last_position, std::chrono::seconds(30)); !s.ok())
    return fail("waiting for the projections", s);
  fmt::print("\ncustomer totals (read model at position {}):\n", appended->last_position.value);
  for (const auto& [customer, t] : totals.totals())
    fmt::print("  {:<10} {} orders, {:>8.2f} EUR\n", customer, t.orders, t.cents / 100.0);
  fmt::print("shipping labels printed: {}\n", labels.labels());
  for (const eventsource::ProjectionHealth& h : runner.health())
    fmt::print("projection {:<16} {}, position {}, lag {}, {} handled, {} dead-lettered\n", h.name,
               eventsource::state_name(h.state), h.position.value, h.lag_events, h.handled,
               h.dead_letters);
  auto letters = runner.dead_letters();
  if (!letters.ok()) return fail("dead letters", letters.status());
  for (const eventsource::DeadLetter& d : *letters)
    fmt::print("dead letter #{}: {} at position {} after {} attempts: {}\n", d.id, d.projection,
               d.position.value, d.attempts, d.error);
  if (Status s = runner.stop(); !s.ok()) return fail("stopping the projections", s);
  bus.shutdown();

  if (Status s = store->store().checkpoint(); !s.ok()) return fail("checkpoint", s);
  const eventsource::Counters c = metrics.counters();
  fmt::print(
      "\nshipped {}, cancelled {}, refused {}; store at position {}\n"
      "appends {} ({} events, {} bytes), reads {} ({} events), conflicts {}, snapshots: "
      "{} hits, {} misses\n"
      "bus and projections: {} handler calls, {} failed, {} dead letters\n",
      shipped, cancelled, refused, store->current_position()->value, c.appends, c.events_appended,
      c.bytes_appended, c.reads, c.events_read, c.conflicts, c.snapshot_hits,
      c.snapshot_misses_none + c.snapshot_misses_schema + c.snapshot_misses_decode,
      c.events_dispatched, c.handler_failures, c.dead_letters);
  if (Status s = store->close(); !s.ok()) return fail("close", s);
  return 0;
}

}  // namespace orders

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: es_orders STORE   (then: esdump info STORE)\n");
    return 2;
  }
  return orders::run(argv[1]);
}
