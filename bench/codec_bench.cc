// Micro-benchmarks of the JSON event codec (api/ json.h, events.h): encode and
// decode of a ~200-byte OrderPlaced event through to_json / from_json, and
// the same through the EventRegistry (lookup, codec, error wrapping), plus a
// decode that runs one typed upcaster. Target: well under 1 us per event.
#include <benchmark/benchmark.h>

#include <string>
#include <variant>
#include <vector>

#include "eventsource/events.h"
#include "eventsource/json.h"

namespace bench {
namespace {

using eventsource::EventRecord;
using eventsource::EventRegistry;
using eventsource::NewEvent;

struct Item {
  std::string sku;
  uint32_t qty = 0;
  double price = 0;
};
EVENTSOURCE_JSON(Item, sku, qty, price)

struct OrderPlaced {
  eventsource::Uuid order_id;
  std::string customer;
  double total = 0;
  std::string currency;
  std::vector<Item> items;
};
EVENTSOURCE_JSON(OrderPlaced, order_id, customer, total, currency, items)

struct OrderShipped {
  std::string carrier;
};
EVENTSOURCE_JSON(OrderShipped, carrier)

// The schema before `currency` was split out of the customer record.
struct OrderPlacedV1 {
  eventsource::Uuid order_id;
  std::string customer;
  double total = 0;
  std::vector<Item> items;
};
EVENTSOURCE_JSON(OrderPlacedV1, order_id, customer, total, items)

using OrderEvent = std::variant<OrderPlaced, OrderShipped>;

OrderPlaced sample() {
  OrderPlaced o;
  o.order_id = *eventsource::Uuid::parse("3f2b8c1e-9a4d-4e7b-8f61-2c5d0a9e7b13");
  o.customer = "Ada Lovelace";
  o.total = 129.95;
  o.currency = "EUR";
  o.items = {{"SKU-000123", 2, 49.99}, {"SKU-004567", 1, 29.97}};
  return o;
}

EventRegistry registry() {
  EventRegistry r;
  if (!r.add<OrderPlaced>("OrderPlaced", 2).ok() || !r.add<OrderShipped>("OrderShipped").ok() ||
      !r.add_upcaster<OrderPlacedV1, OrderPlaced>("OrderPlaced", 1, [](const OrderPlacedV1& o) {
          return OrderPlaced{o.order_id, o.customer, o.total, "EUR", o.items};
        }).ok()) {
    std::abort();
  }
  return r;
}

EventRecord record_of(const NewEvent& e) {
  EventRecord r;
  r.position = eventsource::GlobalPosition(1);
  r.version = eventsource::StreamVersion(1);
  r.stream_type = "Order";
  r.stream_id = "42";
  r.type = e.type;
  r.schema_version = e.schema_version;
  r.payload = e.payload;
  return r;
}

void set_counters(benchmark::State& state, size_t bytes) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["payload_bytes"] = static_cast<double>(bytes);
}

// to_json into a reused string (as the registry does into NewEvent::payload).
void BM_JsonEncode(benchmark::State& state) {
  const OrderPlaced order = sample();
  std::string out;
  for (auto _ : state) {
    if (!eventsource::to_json(order, out).ok()) state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(out.data());
  }
  set_counters(state, out.size());
}
BENCHMARK(BM_JsonEncode);

// to_json returning a fresh string each time.
void BM_JsonEncodeFresh(benchmark::State& state) {
  const OrderPlaced order = sample();
  size_t bytes = 0;
  for (auto _ : state) {
    eventsource::Result<std::string> out = eventsource::to_json(order);
    if (!out.ok()) state.SkipWithError("encode failed");
    bytes = out->size();
    benchmark::DoNotOptimize(out->data());
  }
  set_counters(state, bytes);
}
BENCHMARK(BM_JsonEncodeFresh);

// from_json into a fresh struct (strings and the vector allocated anew).
void BM_JsonDecode(benchmark::State& state) {
  const std::string json = eventsource::to_json(sample()).value();
  for (auto _ : state) {
    OrderPlaced order;
    if (!eventsource::from_json(json, order).ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(order.items.data());
  }
  set_counters(state, json.size());
}
BENCHMARK(BM_JsonDecode);

void BM_RegistryEncode(benchmark::State& state) {
  const EventRegistry r = registry();
  const OrderPlaced order = sample();
  NewEvent e;
  for (auto _ : state) {
    if (!r.encode(order, e).ok()) state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(e.payload.data());
  }
  set_counters(state, e.payload.size());
}
BENCHMARK(BM_RegistryEncode);

// The Result<NewEvent> form: a fresh NewEvent (and payload) per event.
void BM_RegistryEncodeFresh(benchmark::State& state) {
  const EventRegistry r = registry();
  const OrderPlaced order = sample();
  size_t bytes = 0;
  for (auto _ : state) {
    eventsource::Result<NewEvent> e = r.encode(order);
    if (!e.ok()) state.SkipWithError("encode failed");
    bytes = e->payload.size();
    benchmark::DoNotOptimize(e->payload.data());
  }
  set_counters(state, bytes);
}
BENCHMARK(BM_RegistryEncodeFresh);

void BM_RegistryDecode(benchmark::State& state) {
  const EventRegistry r = registry();
  const NewEvent e = r.encode(sample()).value();
  const EventRecord record = record_of(e);
  for (auto _ : state) {
    eventsource::Result<OrderPlaced> order = r.decode<OrderPlaced>(record);
    if (!order.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(order->items.data());
  }
  set_counters(state, e.payload.size());
}
BENCHMARK(BM_RegistryDecode);

void BM_RegistryDecodeVariant(benchmark::State& state) {
  const EventRegistry r = registry();
  const NewEvent e = r.encode(sample()).value();
  const EventRecord record = record_of(e);
  for (auto _ : state) {
    eventsource::Result<OrderEvent> event = r.decode_variant<OrderEvent>(record);
    if (!event.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(&*event);
  }
  set_counters(state, e.payload.size());
}
BENCHMARK(BM_RegistryDecodeVariant);

// A v1 record: decode as v1, upcast, encode as v2, decode (what old events cost).
void BM_RegistryDecodeUpcast(benchmark::State& state) {
  const EventRegistry r = registry();
  const OrderPlaced o = sample();
  NewEvent e;
  e.type = "OrderPlaced";
  e.schema_version = 1;
  e.payload = eventsource::to_json(OrderPlacedV1{o.order_id, o.customer, o.total, o.items}).value();
  const EventRecord record = record_of(e);
  for (auto _ : state) {
    eventsource::Result<OrderPlaced> order = r.decode<OrderPlaced>(record);
    if (!order.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(order->items.data());
  }
  set_counters(state, e.payload.size());
}
BENCHMARK(BM_RegistryDecodeUpcast);

}  // namespace
}  // namespace bench

BENCHMARK_MAIN();
