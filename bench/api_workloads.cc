// esbench's api/ workloads (api_workloads.h). Each builds its own stores in
// its directory and reports events/s or per-operation latency; the raw
// engine's figures, where the issue asks for a ratio, come from the same run.
#include "bench/api_workloads.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <variant>

#include "bench/projection_workloads.h"
#include "eventsource/engine_event_store.h"
#include "eventsource/events.h"
#include "eventsource/json.h"
#include "eventsource/repository.h"
#include "eventsource/snapshot_store.h"
#include "eventsource/sqlite_event_store.h"
#include "eventsource/sqlite_snapshot_store.h"
#include "eventsource/store.h"

namespace esbench_api {

// A ~200-byte order event, as apps write them.
struct LineItem {
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_price_cents = 0;
};
struct OrderPlaced {
  std::string order_id;
  std::string customer;
  std::string email;
  std::string currency;
  int64_t total_cents = 0;
  std::vector<LineItem> items;
};
EVENTSOURCE_JSON(LineItem, sku, quantity, unit_price_cents)
EVENTSOURCE_JSON(OrderPlaced, order_id, customer, email, currency, total_cents, items)

// The aggregate of api_aggregate and api_save: a ledger of orders.
struct Ledger {
  int64_t orders = 0;
  int64_t total_cents = 0;
};
EVENTSOURCE_JSON(Ledger, orders, total_cents)

struct LedgerDecider {
  static constexpr std::string_view kAggregateType = "Ledger";
  using State = Ledger;
  using Command = std::variant<OrderPlaced>;
  using Event = std::variant<OrderPlaced>;
  static State initial_state() { return {}; }
  static eventsource::Result<std::vector<Event>> decide(const Command& c, const State&) {
    return std::vector<Event>{std::get<OrderPlaced>(c)};
  }
  static State evolve(State s, const Event& e) {
    ++s.orders;
    s.total_cents += std::get<OrderPlaced>(e).total_cents;
    return s;
  }
};
using LedgerAggregate = eventsource::DeciderAggregate<LedgerDecider>;

}  // namespace esbench_api

namespace esbench {
namespace {

using esbench_api::OrderPlaced;
using eventsource::EventRegistry;
using eventsource::EventStore;
using eventsource::NewEvent;
using eventsource::Result;
using eventsource::Status;
using eventsource::StreamId;

constexpr size_t kPoolEvents = 1024;
// Caps that keep each workload to seconds at the default --n.
constexpr uint64_t kMaxApiEvents = 300000;
constexpr uint64_t kAggregateEvents = 1000;
constexpr int kAggregateLoads = 200;
constexpr int kSaves = 2000;
constexpr uint64_t kCodecOps = 200000;

std::vector<OrderPlaced> order_pool() {
  const char* names[] = {"Ada Lovelace", "Grace Hopper", "Alan Turing", "Barbara Liskov"};
  std::vector<OrderPlaced> pool(kPoolEvents);
  for (size_t i = 0; i < pool.size(); ++i) {
    OrderPlaced& o = pool[i];
    o.order_id = eventsource::Uuid::random().to_string();
    o.customer = names[i % 4];
    o.email = fmt::format("customer{}@example.com", i);
    o.currency = "EUR";
    o.items = {{fmt::format("SKU-{}", 1000 + i % 97), 1 + int64_t(i % 3), 1890},
               {fmt::format("SKU-{}", 2000 + i % 89), 2, 12900}};
    o.total_cents = o.items[0].quantity * 1890 + 2 * 12900;
  }
  return pool;
}

// A binary codec: length-prefixed fields, for the "binary codec" ratio.
void put(std::string& out, std::string_view s) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  out.append(reinterpret_cast<const char*>(&n), 4).append(s);
}
void put(std::string& out, int64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
bool get(std::string_view& in, std::string& s) {
  uint32_t n;
  if (in.size() < 4) return false;
  std::memcpy(&n, in.data(), 4);
  if (in.size() - 4 < n) return false;
  s.assign(in.substr(4, n));
  in.remove_prefix(4 + n);
  return true;
}
bool get(std::string_view& in, int64_t& v) {
  if (in.size() < 8) return false;
  std::memcpy(&v, in.data(), 8);
  in.remove_prefix(8);
  return true;
}

eventsource::Codec<OrderPlaced> binary_codec() {
  eventsource::Codec<OrderPlaced> c;
  c.encode = [](const OrderPlaced& o, std::string& out) {
    out.reserve(out.size() + 128 + o.items.size() * 32);
    put(out, o.order_id);
    put(out, o.customer);
    put(out, o.email);
    put(out, o.currency);
    put(out, o.total_cents);
    put(out, static_cast<int64_t>(o.items.size()));
    for (const auto& i : o.items) {
      put(out, i.sku);
      put(out, i.quantity);
      put(out, i.unit_price_cents);
    }
    return Status();
  };
  c.decode = [](std::string_view in, OrderPlaced& o) {
    int64_t n = 0;
    bool ok = get(in, o.order_id) && get(in, o.customer) && get(in, o.email) &&
              get(in, o.currency) && get(in, o.total_cents) && get(in, n) && n >= 0 && n < 1000;
    o.items.resize(ok ? static_cast<size_t>(n) : 0);
    for (auto& i : o.items)
      ok = ok && get(in, i.sku) && get(in, i.quantity) && get(in, i.unit_price_cents);
    return ok && in.empty() ? Status() : eventsource::invalid_argument("bad binary OrderPlaced");
  };
  return c;
}

Result<EventRegistry*> registry(bool binary) {
  static EventRegistry json, bin;
  static const Status json_ok = json.add<OrderPlaced>("OrderPlaced");
  static const Status bin_ok = bin.add<OrderPlaced>("OrderPlaced", 1, binary_codec());
  const Status& s = binary ? bin_ok : json_ok;
  if (!s.ok()) return s;
  return binary ? &bin : &json;
}

struct Stores {
  std::unique_ptr<EventStore> events;
  std::unique_ptr<eventsource::SnapshotStore> snapshots;
};

Result<Stores> open_stores(const Config& cfg, const std::string& backend, const std::string& dir,
                           const std::string& name) {
  Stores s;
  if (backend == "engine") {
    eventsource::EngineEventStoreOptions o;
    o.store.durability = cfg.durability;
    EVENTSOURCE_ASSIGN_OR_RETURN(auto e,
                                 eventsource::EngineEventStore::open(dir + "/" + name + ".evs", o));
    s.snapshots = std::make_unique<eventsource::EngineSnapshotStore>(e->shared_store());
    s.events = std::move(e);
  } else if (backend == "sqlite") {
    // kNone: WAL with synchronous=NORMAL (no sync per commit), as the engine's.
    const bool full = cfg.durability != eventsource::Durability::kNone;
    const std::string path = dir + "/" + name + ".db";
    EVENTSOURCE_ASSIGN_OR_RETURN(
        s.events, eventsource::SQLiteEventStore::open(path, {.synchronous_full = full}));
    EVENTSOURCE_ASSIGN_OR_RETURN(
        s.snapshots, eventsource::SQLiteSnapshotStore::open(path, {.synchronous_full = full}));
  } else {
    return eventsource::invalid_argument("no api/ backend named " + backend);
  }
  return s;
}

Measurement start(const std::string& workload, const std::string& backend, uint64_t n) {
  Measurement m;
  m.workload = workload;
  m.backend = backend;
  m.n = n;
  return m;
}

void set_rate(Measurement& m, uint64_t ops, double seconds) {
  m.seconds = seconds;
  m.ops_per_s = seconds > 0 ? ops / seconds : 0;
}

void add_extra(Measurement& m, const std::string& key, double value) {
  m.extra.emplace_back(key, fmt::format("{:.4g}", value));
}

std::vector<StreamId> stream_ids(uint64_t count) {
  std::vector<StreamId> ids;
  for (uint64_t i = 0; i < std::max<uint64_t>(count, 1); ++i)
    ids.push_back(StreamId{"Order", std::to_string(i)});
  return ids;
}

// Appends `n` pool events through the API, `batch` per append, round-robin
// over the streams; returns seconds.
Result<double> api_append(EventStore& store, const EventRegistry& reg,
                          const std::vector<OrderPlaced>& pool,
                          const std::vector<StreamId>& streams, uint64_t n, uint64_t batch) {
  std::vector<NewEvent> events;
  const auto t0 = Clock::now();
  for (uint64_t i = 0, k = 0; i < n; i += batch, ++k) {
    events.clear();
    for (uint64_t j = i; j < std::min(n, i + batch); ++j)
      EVENTSOURCE_RETURN_IF_ERROR(reg.encode(pool[j % pool.size()], events.emplace_back()));
    EVENTSOURCE_RETURN_IF_ERROR(store
                                    .append_events(streams[k % streams.size()],
                                                   eventsource::ExpectedVersion::any(),
                                                   std::move(events))
                                    .status());
  }
  return seconds_since(t0);
}

// The same through Store::append, payloads encoded beforehand.
Result<double> raw_append(const Config& cfg, const std::string& path,
                          const std::vector<std::string>& payloads,
                          const std::vector<StreamId>& streams, uint64_t n, uint64_t batch) {
  eventsource::StoreOptions o;
  o.durability = cfg.durability;
  EVENTSOURCE_ASSIGN_OR_RETURN(auto store, eventsource::Store::open(path, o));
  std::vector<eventsource::EventData> events;
  const auto t0 = Clock::now();
  for (uint64_t i = 0, k = 0; i < n; i += batch, ++k) {
    events.clear();
    for (uint64_t j = i; j < std::min(n, i + batch); ++j) {
      eventsource::EventData& e = events.emplace_back();
      e.type = "OrderPlaced";
      e.payload = payloads[j % payloads.size()];
    }
    EVENTSOURCE_RETURN_IF_ERROR(
        store->append(streams[k % streams.size()], eventsource::ExpectedVersion::any(), events)
            .status());
  }
  const double s = seconds_since(t0);
  EVENTSOURCE_RETURN_IF_ERROR(store->close());
  return s;
}

// Rounds of each variant, interleaved, so that page-cache and allocator
// warm-up fall on all alike; the medians are reported.
constexpr int kAppendRounds = 3;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Status run_append(const Config& cfg, const std::string& backend, const std::string& dir,
                  Measurement& m) {
  const auto pool = order_pool();
  const auto streams = stream_ids(cfg.streams);
  const uint64_t n = m.n;
  EVENTSOURCE_ASSIGN_OR_RETURN(EventRegistry * json, registry(false));
  EVENTSOURCE_ASSIGN_OR_RETURN(EventRegistry * bin, registry(true));
  // The raw engine appends the very bytes each codec produces.
  std::vector<std::string> json_bytes, bin_bytes;
  for (const auto& o : pool) {
    EVENTSOURCE_ASSIGN_OR_RETURN(NewEvent j, json->encode(o));
    EVENTSOURCE_ASSIGN_OR_RETURN(NewEvent b, bin->encode(o));
    json_bytes.push_back(std::move(j.payload));
    bin_bytes.push_back(std::move(b.payload));
  }
  const bool engine = backend == "engine";
  // Variants: the API with JSON, then (engine only) the raw engine with the
  // JSON bytes, the API with the binary codec, the raw engine with its bytes.
  std::vector<double> secs[4];
  for (int round = 0; round < kAppendRounds; ++round) {
    for (int variant = 0; variant < (engine ? 4 : 1); ++variant) {
      const std::string name = fmt::format("v{}-r{}", variant, round);
      double s = 0;
      if (variant % 2 == 1) {
        EVENTSOURCE_ASSIGN_OR_RETURN(
            s, raw_append(cfg, dir + "/" + name + ".evs", variant == 1 ? json_bytes : bin_bytes,
                          streams, n, cfg.batch));
      } else {
        EVENTSOURCE_ASSIGN_OR_RETURN(Stores st, open_stores(cfg, backend, dir, name));
        EVENTSOURCE_ASSIGN_OR_RETURN(
            s, api_append(*st.events, variant == 0 ? *json : *bin, pool, streams, n, cfg.batch));
        EVENTSOURCE_RETURN_IF_ERROR(st.events->close());
      }
      secs[variant].push_back(s);
    }
  }
  const double api_s = median(secs[0]);
  set_rate(m, n, api_s);
  if (!engine) return Status();
  const double raw_json = median(secs[1]), bin_s = median(secs[2]), raw_bin = median(secs[3]);
  add_extra(m, "raw_ops_per_s", n / raw_json);
  add_extra(m, "json_to_raw", raw_json / api_s);
  add_extra(m, "binary_ops_per_s", n / bin_s);
  add_extra(m, "raw_binary_ops_per_s", n / raw_bin);
  add_extra(m, "binary_to_raw", raw_bin / bin_s);
  m.note = fmt::format(
      "medians of {}: JSON {:.0f}% of raw ({:.0f}/s); binary codec {:.0f}/s, {:.0f}% of raw "
      "({:.0f}/s)",
      kAppendRounds, 100 * raw_json / api_s, n / raw_json, n / bin_s, 100 * raw_bin / bin_s,
      n / raw_bin);
  return Status();
}

Status run_load(const Config& cfg, const std::string& backend, const std::string& dir,
                Measurement& m) {
  const auto pool = order_pool();
  const uint64_t n = m.n;
  EVENTSOURCE_ASSIGN_OR_RETURN(EventRegistry * json, registry(false));
  EVENTSOURCE_ASSIGN_OR_RETURN(Stores s, open_stores(cfg, backend, dir, "load"));
  EVENTSOURCE_RETURN_IF_ERROR(
      api_append(*s.events, *json, pool, stream_ids(cfg.streams), n, cfg.batch).status());
  // Decode every event in global order, as a projection rebuild does.
  int64_t sum = 0;
  uint64_t seen = 0;
  Status bad;
  const auto t0 = Clock::now();
  EVENTSOURCE_RETURN_IF_ERROR(s.events->read_all({}, [&](const eventsource::EventRecord& r) {
    Result<OrderPlaced> o = json->decode<OrderPlaced>(r);
    if (!o.ok()) {
      bad = o.take_status();
      return false;
    }
    sum += o->total_cents;
    ++seen;
    return true;
  }));
  const double secs = seconds_since(t0);
  EVENTSOURCE_RETURN_IF_ERROR(bad);
  if (seen != n || sum <= 0)
    return eventsource::corruption(fmt::format("decoded {} of {} events", seen, n), -1, -1);
  set_rate(m, n, secs);
  if (backend == "engine") {
    auto* engine = static_cast<eventsource::EngineEventStore*>(s.events.get());
    uint64_t bytes = 0;
    const auto r0 = Clock::now();
    EVENTSOURCE_RETURN_IF_ERROR(
        engine->store().read_all({}, [&](const eventsource::RecordedEvent& e) {
          bytes += e.payload.size();
          return true;
        }));
    const double raw = seconds_since(r0);
    add_extra(m, "raw_read_ops_per_s", n / raw);
    m.note = fmt::format("raw engine read_all {:.0f}/s (no decode)", n / raw);
  }
  return s.events->close();
}

// One 1000-event ledger; loads timed without and with a snapshot.
Status run_aggregate(const Config& cfg, const std::string& backend, const std::string& dir,
                     std::vector<Measurement>& out) {
  using Repo = eventsource::AggregateRepository<esbench_api::LedgerAggregate>;
  const auto pool = order_pool();
  EVENTSOURCE_ASSIGN_OR_RETURN(EventRegistry * json, registry(false));
  EVENTSOURCE_ASSIGN_OR_RETURN(Stores s, open_stores(cfg, backend, dir, "aggregate"));
  Repo plain(*s.events, *json);
  Repo snapped(*s.events, *json,
               {.snapshots = s.snapshots.get(), .snapshot_every = kAggregateEvents});
  esbench_api::LedgerAggregate ledger("hot");
  for (uint64_t i = 0; i < kAggregateEvents; ++i) {
    EVENTSOURCE_RETURN_IF_ERROR(ledger.handle(pool[i % pool.size()]));
    if ((i + 1) % 100 == 0) EVENTSOURCE_RETURN_IF_ERROR(snapped.save(ledger).status());
  }
  for (const bool with_snapshot : {false, true}) {
    Measurement m =
        start(with_snapshot ? "aggregate_load_snap" : "aggregate_load", backend, kAggregateEvents);
    const Repo& repo = with_snapshot ? snapped : plain;
    Samples lat;
    const auto t0 = Clock::now();
    for (int i = 0; i < kAggregateLoads; ++i) {
      const auto l0 = Clock::now();
      EVENTSOURCE_ASSIGN_OR_RETURN(auto a, repo.load("hot"));
      lat.add_seconds(seconds_since(l0));
      if (a.state().orders != static_cast<int64_t>(kAggregateEvents))
        return eventsource::corruption("the ledger loaded wrong", -1, -1);
    }
    set_rate(m, kAggregateLoads, seconds_since(t0));
    m.p50_us = lat.percentile(50);
    m.p99_us = lat.percentile(99);
    m.note = with_snapshot ? "from the snapshot at version 1000" : "replays 1000 events";
    out.push_back(std::move(m));
  }
  return s.events->close();
}

Status run_save(const Config& cfg, const std::string& backend, const std::string& dir,
                Measurement& m) {
  using Repo = eventsource::AggregateRepository<esbench_api::LedgerAggregate>;
  const auto pool = order_pool();
  EVENTSOURCE_ASSIGN_OR_RETURN(EventRegistry * json, registry(false));
  EVENTSOURCE_ASSIGN_OR_RETURN(Stores s, open_stores(cfg, backend, dir, "save"));
  Repo repo(*s.events, *json);
  esbench_api::LedgerAggregate ledger("saved");
  Samples lat;
  const auto t0 = Clock::now();
  for (int i = 0; i < kSaves; ++i) {
    const auto l0 = Clock::now();
    EVENTSOURCE_RETURN_IF_ERROR(ledger.handle(pool[i % pool.size()]));
    EVENTSOURCE_RETURN_IF_ERROR(repo.save(ledger).status());
    lat.add_seconds(seconds_since(l0));
  }
  set_rate(m, kSaves, seconds_since(t0));
  m.p50_us = lat.percentile(50);
  m.p99_us = lat.percentile(99);
  m.note = fmt::format("decide + encode + append of one event, durability {}",
                       durability_name(cfg.durability));
  return s.events->close();
}

// JSON encode and decode of one ~200-byte event through the registry.
Status run_codec(std::vector<Measurement>& out) {
  const auto pool = order_pool();
  EVENTSOURCE_ASSIGN_OR_RETURN(EventRegistry * json, registry(false));
  std::vector<NewEvent> encoded;
  for (const auto& o : pool) {
    EVENTSOURCE_ASSIGN_OR_RETURN(NewEvent e, json->encode(o));
    encoded.push_back(std::move(e));
  }
  size_t bytes = 0;
  for (const auto& e : encoded) bytes += e.payload.size();
  constexpr uint64_t kChunk = 1000;
  for (const bool decode : {false, true}) {
    Measurement m = start(decode ? "json_decode" : "json_encode", "engine", kCodecOps);
    Samples per_op;
    int64_t check = 0;
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < kCodecOps; i += kChunk) {
      const auto c0 = Clock::now();
      for (uint64_t j = i; j < i + kChunk; ++j) {
        const size_t k = j % pool.size();
        if (decode) {
          eventsource::EventRecord r;
          r.type = encoded[k].type;
          r.payload = encoded[k].payload;
          r.position = eventsource::GlobalPosition(j + 1);
          EVENTSOURCE_ASSIGN_OR_RETURN(OrderPlaced o, json->decode<OrderPlaced>(r));
          check += o.total_cents;
        } else {
          EVENTSOURCE_ASSIGN_OR_RETURN(NewEvent e, json->encode(pool[k]));
          check += static_cast<int64_t>(e.payload.size());
        }
      }
      per_op.add_us(seconds_since(c0) * 1e6 / kChunk);
    }
    set_rate(m, kCodecOps, seconds_since(t0));
    if (check <= 0) return eventsource::corruption("codec produced nothing", -1, -1);
    m.p50_us = per_op.percentile(50);
    m.p99_us = per_op.percentile(99);
    m.note = fmt::format("{:.0f}-byte events (mean), registry + JSON codec",
                         double(bytes) / pool.size());
    out.push_back(std::move(m));
  }
  return Status();
}

}  // namespace

bool is_api_workload(std::string_view name) {
  for (std::string_view w : kApiWorkloads)
    if (w == name) return true;
  return false;
}

Result<std::vector<NewEvent>> order_events() {
  EVENTSOURCE_ASSIGN_OR_RETURN(EventRegistry * json, registry(false));
  std::vector<NewEvent> out;
  for (const OrderPlaced& o : order_pool()) {
    EVENTSOURCE_ASSIGN_OR_RETURN(NewEvent e, json->encode(o));
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Measurement> run_api_workload(const Config& cfg, const std::string& workload,
                                          const std::string& backend, const std::string& dir) {
  if (is_projection_workload(workload)) return run_projection_workload(cfg, workload, backend, dir);
  std::vector<Measurement> out;
  Status s;
  const uint64_t n = std::min<uint64_t>(std::max<uint64_t>(cfg.n, 1), kMaxApiEvents);
  if (workload == "api_append" || workload == "api_load" || workload == "api_save") {
    Measurement m = start(workload, backend, workload == "api_save" ? kSaves : n);
    if (workload == "api_append")
      s = run_append(cfg, backend, dir, m);
    else if (workload == "api_load")
      s = run_load(cfg, backend, dir, m);
    else
      s = run_save(cfg, backend, dir, m);
    out.push_back(std::move(m));
  } else if (workload == "api_aggregate") {
    s = run_aggregate(cfg, backend, dir, out);
  } else if (workload == "json_codec") {
    if (backend == "engine")
      s = run_codec(out);  // the same code for every backend
    else
      return out;
  } else {
    s = eventsource::invalid_argument("unknown api workload " + workload);
  }
  if (!s.ok()) {
    if (out.empty()) out.push_back(start(workload, backend, n));
    out.back().error = s.to_string();
  }
  return out;
}

}  // namespace esbench
