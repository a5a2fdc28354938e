// es_example: a small order workflow on the engine's public API. Appends ~20
// orders (placed, items added, paid+shipped or cancelled) for two tenants,
// shows an expected-version conflict and an idempotent retry, reads a stream
// back. Usage: es_example STORE  (then try: esdump info STORE).
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "eventsource/store.h"
#include "tools/event_text.h"

namespace {

using Json = nlohmann::ordered_json;
using eventsource::AppendResult;
using eventsource::EventData;
using eventsource::ExpectedVersion;
using eventsource::GlobalPosition;
using eventsource::Result;
using eventsource::Status;
using eventsource::StreamId;
using eventsource::StreamVersion;
using eventsource::Uuid;

constexpr int kOrders = 20;
constexpr std::string_view kStreamType = "Order";
constexpr const char* kTenants[] = {"acme", "globex"};
constexpr const char* kCustomers[] = {"Ada Lovelace",    "Grace Hopper",   "Alan Turing",
                                      "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth",
                                      "Frances Allen",   "Ken Thompson"};
struct Product {
  const char* sku;
  const char* name;
  int64_t unit_price_cents;
};
constexpr Product kProducts[] = {{"SKU-1001", "Espresso beans 1kg", 1890},
                                 {"SKU-1002", "Burr grinder", 12900},
                                 {"SKU-1003", "Milk jug 600ml", 1450},
                                 {"SKU-1004", "Paper filters x100", 390},
                                 {"SKU-1005", "Gooseneck kettle", 5990}};

struct Order {
  StreamId stream;
  std::string tenant;
  Uuid correlation_id;
  Uuid last_event_id;  // causation of the next event
  uint64_t version = 0;
  int64_t total_cents = 0;
};

// Counts of what this run wrote.
struct Tally {
  uint64_t events = 0;
  uint64_t appends = 0;
  uint64_t first_position = 0;
  uint64_t last_position = 0;
};

std::string metadata_for(const Order& order, std::string_view user) {
  Json m = {{"source", "es_example"}, {"user", user}, {"tenant", order.tenant}};
  return m.dump();
}

EventData make_event(Order& order, std::string type, const Json& payload, std::string_view user) {
  EventData e;
  e.type = std::move(type);
  e.payload = payload.dump();
  e.id = Uuid::random();
  e.tenant = order.tenant;
  e.correlation_id = order.correlation_id;
  e.causation_id = order.last_event_id;
  e.metadata = metadata_for(order, user);
  order.last_event_id = e.id;
  return e;
}

// Appends `events` to `order` expecting `expected`; on success updates the
// order's version and the tally. Prints the failure and returns false otherwise.
bool append(eventsource::Store& store, Order& order, ExpectedVersion expected,
            const std::vector<EventData>& events, Tally& tally) {
  Result<AppendResult> r = store.append(order.stream, expected, events);
  if (!r.ok()) {
    fmt::print(stderr, "es_example: append to {} failed: {}\n", order.stream.name(),
               r.status().to_string());
    return false;
  }
  if (r->deduplicated || r->version.value != order.version + events.size()) {
    fmt::print(stderr, "es_example: append to {} returned version {} (expected {}{})\n",
               order.stream.name(), r->version.value, order.version + events.size(),
               r->deduplicated ? ", and claims to be a duplicate" : "");
    return false;
  }
  order.version = r->version.value;
  ++tally.appends;
  tally.events += events.size();
  if (tally.first_position == 0) tally.first_position = r->first_position.value;
  tally.last_position = r->last_position.value;
  return true;
}

int run(const std::string& path) {
  Result<std::unique_ptr<eventsource::Store>> opened = eventsource::Store::open(path);
  if (!opened.ok()) {
    fmt::print(stderr, "es_example: cannot open {}: {}\n", path, opened.status().to_string());
    return 1;
  }
  std::unique_ptr<eventsource::Store> store = std::move(opened).value();

  // Number this run's orders after the ones earlier runs wrote.
  int first_number = 1;
  for (const eventsource::StreamInfo& s : store->list_streams()) {
    if (s.type == kStreamType) ++first_number;
  }
  std::mt19937 rng(static_cast<uint32_t>(first_number));  // same data for the same store state
  const auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };

  std::vector<Order> orders;
  for (int i = 0; i < kOrders; ++i) {
    Order o;
    o.stream = StreamId{std::string(kStreamType), fmt::format("order-{:04}", first_number + i)};
    o.tenant = kTenants[i % 2];
    o.correlation_id = Uuid::random();
    orders.push_back(std::move(o));
  }
  Tally tally;

  // 1. Place every order: a new stream, so expect that it does not exist yet.
  for (Order& o : orders) {
    Json placed = {{"order_id", o.stream.id},
                   {"customer", kCustomers[pick(static_cast<int>(std::size(kCustomers)))]},
                   {"currency", "EUR"},
                   {"channel", pick(3) == 0 ? "phone" : "web"}};
    if (!append(*store, o, ExpectedVersion::no_stream(),
                {make_event(o, "OrderPlaced", placed, "web")}, tally)) {
      return 1;
    }
  }
  // 2. Add 1..4 items to each order in one batch, at the version we know.
  for (Order& o : orders) {
    std::vector<EventData> batch;
    int items = 1 + pick(4);
    for (int k = 0; k < items; ++k) {
      const Product& p = kProducts[pick(static_cast<int>(std::size(kProducts)))];
      int quantity = 1 + pick(3);
      o.total_cents += p.unit_price_cents * quantity;
      Json item = {{"sku", p.sku},
                   {"name", p.name},
                   {"quantity", quantity},
                   {"unit_price_cents", p.unit_price_cents}};
      batch.push_back(make_event(o, "ItemAdded", item, "web"));
    }
    if (!append(*store, o, ExpectedVersion::exact(StreamVersion(o.version)), batch, tally))
      return 1;
  }
  // 3. Every fifth order is cancelled; the others are paid and shipped.
  int cancelled = 0;
  for (size_t i = 0; i < orders.size(); ++i) {
    Order& o = orders[i];
    std::vector<EventData> batch;
    if (i % 5 == 3) {
      ++cancelled;
      batch.push_back(make_event(o, "OrderCancelled",
                                 {{"reason", "customer request"}, {"refund_cents", 0}}, "support"));
    } else {
      batch.push_back(make_event(
          o, "PaymentCaptured", {{"amount_cents", o.total_cents}, {"method", "card"}}, "payments"));
      batch.push_back(make_event(
          o, "OrderShipped",
          {{"carrier", pick(2) == 0 ? "DHL" : "UPS"},
           {"tracking", fmt::format("TRK{:08}", static_cast<uint32_t>(rng() % 100000000))}},
          "warehouse"));
    }
    if (!append(*store, o, ExpectedVersion::exact(StreamVersion(o.version)), batch, tally))
      return 1;
  }
  fmt::print("appended {} events in {} batches to {} orders ({} cancelled)\n", tally.events,
             tally.appends, orders.size(), cancelled);

  // 4. A writer with a stale view: expects version 1, the stream is further on.
  Order& first = orders.front();
  Order stale = first;
  stale.version = 1;
  EventData note = make_event(stale, "OrderNoteAdded", {{"note", "gift wrap, please"}}, "support");
  Result<AppendResult> conflict =
      store->append(first.stream, ExpectedVersion::exact(StreamVersion(1)), {&note, 1});
  if (conflict.ok() || conflict.status().code() != eventsource::Code::kConflict ||
      conflict.status().actual_version() != static_cast<int64_t>(first.version)) {
    fmt::print(stderr, "es_example: expected a conflict at version {} on {}, got: {}\n",
               first.version, first.stream.name(),
               conflict.ok() ? std::string("success") : conflict.status().to_string());
    return 1;
  }
  fmt::print("conflict, as expected: {} (actual version {})\n", conflict.status().to_string(),
             conflict.status().actual_version());

  // 5. An idempotent retry: the same event ids appended again (say, after a
  //    timeout) are recognised and not written twice.
  Order& second = orders[1];
  uint64_t before = second.version;
  std::vector<EventData> retry_batch = {
      make_event(second, "OrderNoteAdded", {{"note", "leave at the door"}}, "support")};
  if (!append(*store, second, ExpectedVersion::exact(StreamVersion(before)), retry_batch, tally)) {
    return 1;
  }
  Result<AppendResult> retry =
      store->append(second.stream, ExpectedVersion::exact(StreamVersion(before)), retry_batch);
  if (!retry.ok() || !retry->deduplicated || retry->version.value != second.version) {
    fmt::print(stderr, "es_example: retry of {} was not deduplicated: {}\n", second.stream.name(),
               retry.ok() ? fmt::format("version {}, deduplicated={}", retry->version.value,
                                        retry->deduplicated)
                          : retry.status().to_string());
    return 1;
  }
  fmt::print("retry of {}@{} deduplicated=true (position {}, nothing written)\n",
             second.stream.name(), retry->version.value, retry->first_position.value);

  // 6. Read one order back.
  fmt::print("\n{} (version {}):\n", first.stream.name(),
             store->stream_version(first.stream).value);
  uint64_t read = 0;
  Status s = store->read_stream(first.stream, {.from = StreamVersion(1), .max_count = 1000},
                                [&](const eventsource::RecordedEvent& e) {
                                  fmt::print("  {}\n", eventsource::tools::format_event_line(e));
                                  ++read;
                                  return true;
                                });
  if (!s.ok() || read != first.version) {
    fmt::print(stderr, "es_example: reading {} back gave {} events of {}: {}\n",
               first.stream.name(), read, first.version, s.to_string());
    return 1;
  }

  // 7. A snapshot of that order, a projection's checkpoint, and a dead letter
  // the projection gave up on (the records the event-sourcing layer keeps).
  {
    Status snap = store->put_snapshot(first.stream, StreamVersion(first.version), 1,
                                      fmt::format("{{\"lines\":{}}}", first.version));
    Status proj = store->save_projection_state("order-totals", store->committed_position(),
                                               "{\"orders\":20}");
    eventsource::DeadLetter letter;
    letter.projection = "mailer";
    letter.position = GlobalPosition(3);
    letter.error = "smtp: connection refused";
    letter.attempts = 5;
    letter.first_failure_us = 1700000000000000;
    letter.last_failure_us = 1700000060000000;
    Result<uint64_t> dl = store->add_dead_letter(letter);
    if (!snap.ok() || !proj.ok() || !dl.ok()) {
      fmt::print(stderr, "es_example: aux records failed: {} {} {}\n", snap.to_string(),
                 proj.to_string(), dl.status().to_string());
      return 1;
    }
    fmt::print("\nsnapshot of {}@{}, projection order-totals at {}, dead letter {}\n",
               first.stream.name(), first.version, store->committed_position().value, *dl);
  }

  eventsource::StoreStats stats = store->stats();
  Status closed = store->close();
  if (!closed.ok()) {
    fmt::print(stderr, "es_example: closing {} failed: {}\n", path, closed.to_string());
    return 1;
  }
  fmt::print("\nwrote {} events (positions {} .. {}) to {}; it now holds {} events in {} streams\n",
             tally.events, tally.first_position, tally.last_position, path, stats.events,
             stats.streams);
  fmt::print("next: esdump info {0}   esdump events {0} --limit 20\n", path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h") {
    std::FILE* to = argc == 2 ? stdout : stderr;
    std::fputs(
        "usage: es_example STORE\n\n"
        "Creates (or opens) the store STORE (e.g. demo.evs) and appends a small order\n"
        "workflow: 20 orders for tenants acme and globex, a conflict, an idempotent retry.\n",
        to);
    return argc == 2 ? 0 : 2;
  }
  try {
    return run(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "es_example: internal error: %s\n", e.what());
    return 1;
  }
}
