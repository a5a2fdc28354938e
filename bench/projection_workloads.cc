// esbench's event-bus and subscription workloads (projection_workloads.h).
// Each builds its own stores in its directory, checks that every event
// arrived where it was sent, and reports events/s or latency percentiles;
// the figures a ratio needs (catch-up against raw replay) come from one run.
#include "bench/projection_workloads.h"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench/api_workloads.h"
#include "bench/json.h"
#include "eventsource/engine_event_store.h"
#include "eventsource/event_bus.h"
#include "eventsource/memory_event_store.h"
#include "eventsource/projection_store.h"
#include "eventsource/sqlite_event_store.h"
#include "eventsource/subscription.h"

namespace esbench {
namespace {

using eventsource::Durability;
using eventsource::EventRecord;
using eventsource::EventStore;
using eventsource::FailurePolicy;
using eventsource::GlobalPosition;
using eventsource::NewEvent;
using eventsource::Result;
using eventsource::Status;
using eventsource::StoredEvent;
using eventsource::StreamId;
using eventsource::Subscription;
using eventsource::SubscriptionOptions;
using std::chrono::milliseconds;

// bus_dispatch_*: events per run (at most), publishes per latency sample,
// subscribers, and the async bus's shape.
constexpr uint64_t kMaxBusEvents = 300000;
constexpr uint64_t kBusChunk = 1000;
constexpr size_t kBusSubscribers = 4;
constexpr size_t kBusWorkers = 2;
constexpr size_t kBusQueue = 1024;
constexpr uint64_t kBusBatch = 100;  // events per publish call in the batched pass

// projection_catchup: events in the store (SQLite appends ~25k/s through
// the API, and the memory store holds every event on the heap, hence their
// smaller cap), and interleaved rounds whose medians are reported.
constexpr uint64_t kMaxCatchupEvents = 300000;
constexpr uint64_t kMaxSmallCatchupEvents = 50000;
constexpr int kCatchupRounds = 3;

// live_latency*: events appended one at a time, one every kLivePaceNs, or
// as fast as appends return: at the default durability each waits for an
// fdatasync, a millisecond or two on a VM's disk, hence fewer events in the
// cross-process run at that durability.
constexpr uint64_t kLiveEvents = 2000;
constexpr uint64_t kSyncedXprocEvents = 1000;
constexpr int64_t kLivePaceNs = 200000;

// Bounds on every wait, so that a stuck subscription fails the run.
constexpr milliseconds kWaitLimit{60000};
constexpr int kChildLineMs = 30000;  // live_latency_xproc: one protocol line

Status check_failed(std::string message) {
  return eventsource::corruption(std::move(message), -1, -1);
}

Measurement new_measurement(const std::string& workload, const std::string& backend, uint64_t n) {
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

void add_extra(Measurement& m, const std::string& key, std::optional<double> value) {
  m.extra.emplace_back(key, value ? fmt::format("{:.4g}", *value) : std::string("null"));
}

void add_text(Measurement& m, const std::string& key, std::string_view value) {
  m.extra.emplace_back(key, json_string(value));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// CLOCK_MONOTONIC in nanoseconds: one clock for the whole machine, so a
// stamp taken in one process can be compared in another.
int64_t mono_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void sleep_until_ns(int64_t when) {
  const timespec ts{static_cast<time_t>(when / 1000000000), static_cast<long>(when % 1000000000)};
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

StreamId order_stream(uint64_t i) { return StreamId{"Order", std::to_string(i)}; }

// ---- Stores -----------------------------------------------------------------

enum class Access : uint8_t {
  kReadWrite,  // creates the store
  kFollow,     // engine: OpenMode::kReadOnly; SQLite: an existing database only
};

// Opens `backend`'s store at `base` (+ ".evs" / ".db"); `durability` nullopt
// keeps the store's default (engine kGroup, SQLite synchronous=FULL).
Result<std::unique_ptr<EventStore>> open_store(const std::string& backend, const std::string& base,
                                               std::optional<Durability> durability,
                                               Access access = Access::kReadWrite) {
  if (backend == "engine") {
    eventsource::EngineEventStoreOptions o;
    if (durability) o.store.durability = *durability;
    if (access == Access::kFollow) {
      o.store.mode = eventsource::OpenMode::kReadOnly;
      o.store.create = eventsource::CreateMode::kMustExist;
    }
    EVENTSOURCE_ASSIGN_OR_RETURN(auto e, eventsource::EngineEventStore::open(base + ".evs", o));
    return std::unique_ptr<EventStore>(std::move(e));
  }
  if (backend == "sqlite") {
    eventsource::SQLiteEventStoreOptions o;
    if (durability) o.synchronous_full = *durability != Durability::kNone;
    o.create_if_missing = access == Access::kReadWrite;
    EVENTSOURCE_ASSIGN_OR_RETURN(auto s, eventsource::SQLiteEventStore::open(base + ".db", o));
    return std::unique_ptr<EventStore>(std::move(s));
  }
  if (backend == "memory")
    return std::unique_ptr<EventStore>(new eventsource::InMemoryEventStore());
  return eventsource::invalid_argument("no event store named " + backend);
}

std::string durability_text(const std::string& backend, std::optional<Durability> d) {
  if (backend == "memory") return "none (memory)";
  if (backend == "sqlite") {
    return !d || *d != Durability::kNone ? "synchronous=FULL (default)" : "synchronous=NORMAL";
  }
  return d ? durability_name(*d) : "group (default)";
}

// ---- bus_dispatch_sync, bus_dispatch_async ------------------------------------

Result<std::vector<StoredEvent>> bus_events() {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::vector<NewEvent> orders, order_events());
  std::vector<StoredEvent> out(orders.size());
  for (size_t i = 0; i < out.size(); ++i) {
    StoredEvent& e = out[i];
    e.position = GlobalPosition(i + 1);
    e.version = eventsource::StreamVersion(1);
    e.timestamp_us = 1;
    e.id = eventsource::Uuid::random();
    e.stream = order_stream(i);
    e.type = orders[i].type;
    e.payload = std::move(orders[i].payload);
  }
  return out;
}

// Publishes n pool events to 4 no-op subscribers, one per publish call;
// kAsync: 2 workers, a queue of 1024, timed until wait_idle returns.
Status run_bus(eventsource::DispatchMode mode, Measurement& m) {
  using eventsource::PublishReport;
  const bool sync = mode == eventsource::DispatchMode::kSync;
  const uint64_t n = m.n;
  EVENTSOURCE_ASSIGN_OR_RETURN(std::vector<StoredEvent> events, bus_events());
  if (events.size() < kBusBatch) return check_failed("the event pool is too small");
  eventsource::InMemoryEventBus bus(
      {.mode = mode, .workers = kBusWorkers, .queue_capacity = kBusQueue});
  for (size_t i = 0; i < kBusSubscribers; ++i) {
    EVENTSOURCE_RETURN_IF_ERROR(bus.subscribe(fmt::format("noop-{}", i), events[0].type,
                                              [](const StoredEvent&) { return Status(); })
                                    .status());
  }
  // A report that lost an event or (kSync) a delivery fails the run.
  auto check = [&](const Result<PublishReport>& r, size_t count) -> Status {
    if (!r.ok()) return r.status();
    if (r->accepted != count || (sync && (!r->ok() || r->delivered != count * kBusSubscribers))) {
      return check_failed(fmt::format("publish of {} events: accepted {}, delivered {}, {} failed",
                                      count, r->accepted, r->delivered, r->failures.size()));
    }
    return Status();
  };
  uint64_t published = 0;
  for (uint64_t i = 0; i < kBusChunk; ++i, ++published) {
    EVENTSOURCE_RETURN_IF_ERROR(check(bus.publish(events[i % events.size()]), 1));
  }
  bus.wait_idle();

  Samples per_event;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; i += kBusChunk) {
    const uint64_t end = std::min(n, i + kBusChunk);
    const auto c0 = Clock::now();
    for (uint64_t j = i; j < end; ++j, ++published) {
      EVENTSOURCE_RETURN_IF_ERROR(check(bus.publish(events[j % events.size()]), 1));
    }
    per_event.add_us(seconds_since(c0) * 1e6 / static_cast<double>(end - i));
  }
  bus.wait_idle();
  const double secs = seconds_since(t0);

  // The same events, kBusBatch per publish call.
  const auto b0 = Clock::now();
  for (uint64_t i = 0; i < n; i += kBusBatch) {
    const size_t count = static_cast<size_t>(std::min(kBusBatch, n - i));
    const size_t first =
        static_cast<size_t>((i / kBusBatch) % (events.size() / kBusBatch)) * kBusBatch;
    EVENTSOURCE_RETURN_IF_ERROR(
        check(bus.publish(std::span<const StoredEvent>(events.data() + first, count)), count));
    published += count;
  }
  bus.wait_idle();
  const double batch_secs = seconds_since(b0);

  const eventsource::EventBusStats st = bus.stats();
  bus.shutdown();
  if (st.accepted != published || st.delivered != published * kBusSubscribers || st.failures != 0) {
    return check_failed(fmt::format(
        "bus accepted {} of {} events, delivered {} of {} calls, {} failed", st.accepted, published,
        st.delivered, published * kBusSubscribers, st.failures));
  }
  set_rate(m, n, secs);
  m.p50_us = per_event.percentile(50);
  m.p99_us = per_event.percentile(99);
  const double ns = secs * 1e9 / static_cast<double>(n);
  const double batch_ns = batch_secs * 1e9 / static_cast<double>(n);
  add_extra(m, "ns_per_event", ns);
  add_extra(m, "batch100_ns_per_event", batch_ns);
  add_extra(m, "subscribers", kBusSubscribers);
  if (!sync) {
    add_extra(m, "workers", kBusWorkers);
    add_extra(m, "queue_capacity", kBusQueue);
  }
  m.note = fmt::format(
      "{} ns/event, {} no-op subscribers, 1 event per publish{}; {} per publish: {:.0f} "
      "ns/event; p50/p99 per event over {}-publish chunks; no store",
      fmt::format("{:.0f}", ns), kBusSubscribers,
      sync ? "" : fmt::format(", {} workers, queue {}, until wait_idle", kBusWorkers, kBusQueue),
      kBusBatch, batch_ns, kBusChunk);
  return Status();
}

// ---- projection_catchup ---------------------------------------------------------

// Appends n pool events, `batch` per append, round-robin over `streams`.
Status fill(EventStore& store, const std::vector<NewEvent>& orders, uint64_t n, uint64_t batch,
            uint64_t streams) {
  std::vector<NewEvent> events;
  for (uint64_t i = 0, k = 0; i < n; i += batch, ++k) {
    events.clear();
    for (uint64_t j = i; j < std::min(n, i + batch); ++j)
      events.push_back(orders[j % orders.size()]);
    EVENTSOURCE_RETURN_IF_ERROR(store
                                    .append_events(order_stream(k % std::max<uint64_t>(streams, 1)),
                                                   eventsource::ExpectedVersion::any(),
                                                   std::move(events))
                                    .status());
  }
  return Status();
}

enum class Catchup : uint8_t {
  kReadAll,          // EventStore::read_all, a no-op callback: the raw replay
  kHandler,          // Subscription, a no-op RecordHandler, no checkpoints
  kCheckpoint,       // the same, checkpoint after every batch (default durability: none)
  kCheckpointGroup,  // the same, checkpoints with durability group (an fdatasync each)
  kBatched,          // Subscription::start_batched, a no-op BatchHandler
};
constexpr Catchup kCatchups[] = {Catchup::kReadAll, Catchup::kHandler, Catchup::kCheckpoint,
                                 Catchup::kCheckpointGroup, Catchup::kBatched};

// The checkpoint store of the kCheckpoint* variants: the engine file's own
// records, or (memory store) InMemoryProjectionStore; nullptr for SQLite,
// which has no ProjectionStore.
std::unique_ptr<eventsource::ProjectionStore> checkpoint_store(EventStore& store, Catchup c) {
  if (store.backend() == "memory") return std::make_unique<eventsource::InMemoryProjectionStore>();
  if (store.backend() != "engine") return nullptr;
  auto& engine = static_cast<eventsource::EngineEventStore&>(store);
  eventsource::EngineProjectionStoreOptions o;  // kCheckpoint: the default (none)
  if (c == Catchup::kCheckpointGroup) o.checkpoints.durability = Durability::kGroup;
  return std::make_unique<eventsource::EngineProjectionStore>(engine.shared_store(), o);
}

// Seconds to get through positions 1..last.
Result<double> catch_up(EventStore& store, uint64_t last, Catchup c) {
  if (c == Catchup::kReadAll) {
    uint64_t seen = 0;
    const auto t0 = Clock::now();
    EVENTSOURCE_RETURN_IF_ERROR(store.read_all({}, [&seen](const EventRecord&) {
      ++seen;
      return true;
    }));
    const double secs = seconds_since(t0);
    if (seen != last) return check_failed(fmt::format("read_all read {} of {} events", seen, last));
    return secs;
  }
  std::unique_ptr<eventsource::ProjectionStore> checkpoints;
  if (c == Catchup::kCheckpoint || c == Catchup::kCheckpointGroup) {
    checkpoints = checkpoint_store(store, c);
    if (!checkpoints) return eventsource::invalid_argument("no checkpoint store for this backend");
  }
  const SubscriptionOptions options{
      .from = eventsource::StartFrom::beginning(),
      .store = checkpoints.get(),
      .checkpoint = {.every = eventsource::CheckpointPolicy::Every::kBatch},
      .failure = {.then = FailurePolicy::Then::kStop}};
  const std::string name = c == Catchup::kBatched ? "noop-batched" : "noop";
  const auto t0 = Clock::now();
  Result<std::unique_ptr<Subscription>> sub =
      c == Catchup::kBatched
          ? Subscription::start_batched(
                store, name, [](std::span<const StoredEvent>) { return Status(); }, options)
          : Subscription::start(
                store, name, [](const EventRecord&) { return Status(); }, options);
  if (!sub.ok()) return sub.take_status();
  const Status reached = (*sub)->wait_until(GlobalPosition(last), kWaitLimit);
  const double secs = seconds_since(t0);
  const Status stopped = (*sub)->stop();
  EVENTSOURCE_RETURN_IF_ERROR(reached);
  EVENTSOURCE_RETURN_IF_ERROR(stopped);
  const eventsource::ProjectionHealth health = (*sub)->health();
  if (health.handled != last || health.position.value != last || health.failures != 0) {
    return check_failed(fmt::format("subscription {}: handled {} of {} events, at {}, {} failures",
                                    name, health.handled, last, health.position.value,
                                    health.failures));
  }
  if (checkpoints) {
    // checkpoint_name(): "<name>@v<version>".
    EVENTSOURCE_ASSIGN_OR_RETURN(auto saved, checkpoints->load_checkpoint(name + "@v1"));
    if (!saved || saved->position.value != last) {
      return check_failed(fmt::format("subscription {}: checkpoint at {} after {} events", name,
                                      saved ? saved->position.value : 0, last));
    }
  }
  return secs;
}

Status run_catchup(const Config& cfg, const std::string& backend, const std::string& dir,
                   std::vector<Measurement>& out) {
  const uint64_t n =
      std::min<uint64_t>(std::max<uint64_t>(cfg.n, 1),
                         backend == "engine" ? kMaxCatchupEvents : kMaxSmallCatchupEvents);
  EVENTSOURCE_ASSIGN_OR_RETURN(std::vector<NewEvent> orders, order_events());
  EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<EventStore> store,
                               open_store(backend, dir + "/catchup", cfg.durability));
  // Filled at --durability (none by default): the first synced checkpoint
  // also flushes the fill's pages, one reason for the rounds and medians.
  EVENTSOURCE_RETURN_IF_ERROR(fill(*store, orders, n, cfg.batch, cfg.streams));
  EVENTSOURCE_ASSIGN_OR_RETURN(GlobalPosition last, store->current_position());
  if (last.value != n) return check_failed(fmt::format("{} events stored of {}", last.value, n));

  const bool checkpoints = backend != "sqlite";
  std::vector<double> secs[std::size(kCatchups)];
  for (int round = 0; round < kCatchupRounds; ++round) {
    for (size_t v = 0; v < std::size(kCatchups); ++v) {
      const Catchup c = kCatchups[v];
      // Checkpoint durability is the engine's alone.
      if ((c == Catchup::kCheckpoint && !checkpoints) ||
          (c == Catchup::kCheckpointGroup && backend != "engine")) {
        continue;
      }
      EVENTSOURCE_ASSIGN_OR_RETURN(double s, catch_up(*store, n, c));
      secs[v].push_back(s);
    }
  }
  // The engine's own read_all beneath the API, for scale.
  std::optional<double> engine_rate;
  if (backend == "engine") {
    auto& engine = static_cast<eventsource::EngineEventStore&>(*store);
    uint64_t seen = 0;
    const auto t0 = Clock::now();
    EVENTSOURCE_RETURN_IF_ERROR(
        engine.store().read_all({}, [&seen](const eventsource::RecordedEvent&) {
          ++seen;
          return true;
        }));
    const double s = seconds_since(t0);
    if (seen != n) return check_failed(fmt::format("Store::read_all read {} of {}", seen, n));
    engine_rate = n / s;
  }
  EVENTSOURCE_RETURN_IF_ERROR(store->close());

  const double raw = median(secs[0]);
  const double ckpt_group = secs[3].empty() ? 0 : median(secs[3]);  // 0: not measured
  for (size_t v = 0; v < std::size(kCatchups); ++v) {
    const Catchup c = kCatchups[v];
    if (c == Catchup::kCheckpointGroup || secs[v].empty()) continue;
    static constexpr const char* kNames[] = {"catchup_read_all", "catchup_handler",
                                             "catchup_checkpoint", "", "catchup_batched"};
    Measurement m = new_measurement(kNames[v], backend, n);
    const double s = median(secs[v]);
    set_rate(m, n, s);
    add_extra(m, "to_raw", raw / s);
    add_extra(m, "rounds", kCatchupRounds);
    const std::string share =
        fmt::format("{:.0f}% of raw read_all ({:.0f}/s)", 100 * raw / s, n / raw);
    switch (c) {
      case Catchup::kReadAll:
        m.note = "EventStore::read_all, no-op callback (raw replay)";
        if (engine_rate) {
          add_extra(m, "engine_read_all_ops_per_s", *engine_rate);
          m.note += fmt::format("; engine Store::read_all {:.0f}/s", *engine_rate);
        }
        break;
      case Catchup::kHandler:
        m.note = "Subscription, no-op handler: " + share + "; target >= 50%";
        break;
      case Catchup::kCheckpoint:
        m.note = fmt::format("+ checkpoint per 1000-event batch ({}): {}",
                             backend == "engine" ? "engine records, default durability none"
                                                 : "InMemoryProjectionStore",
                             share);
        if (ckpt_group > 0) {
          add_extra(m, "checkpoint_group_ops_per_s", n / ckpt_group);
          m.note += fmt::format("; checkpoints with durability group {:.0f}/s ({:.0f}%)",
                                n / ckpt_group, 100 * raw / ckpt_group);
        }
        break;
      case Catchup::kBatched:
        m.note = "start_batched, no-op batch handler (events copied): " + share;
        break;
      case Catchup::kCheckpointGroup:
        break;
    }
    m.note = fmt::format("medians of {}: {}", kCatchupRounds, m.note);
    out.push_back(std::move(m));
  }
  return Status();
}

// ---- live_latency, live_latency_xproc ----------------------------------------------

// Each live event's payload starts with the CLOCK_MONOTONIC time its append
// started: {"append_ns":<ns>,"order":<an order event>}.
constexpr std::string_view kStampKey = "{\"append_ns\":";

std::string stamped_payload(int64_t ns, std::string_view order_json) {
  return fmt::format("{}{},\"order\":{}}}", kStampKey, ns, order_json);
}

Result<int64_t> read_stamp(std::string_view payload) {
  if (payload.substr(0, kStampKey.size()) != kStampKey) {
    return eventsource::invalid_argument("live event without an append_ns stamp");
  }
  int64_t ns = 0;
  const char* end = payload.data() + payload.size();
  const auto [p, ec] = std::from_chars(payload.data() + kStampKey.size(), end, ns);
  if (ec != std::errc() || p == end || *p != ',') {
    return eventsource::invalid_argument("live event with a bad append_ns stamp");
  }
  return ns;
}

// Appends k stamped events one at a time, one every kLivePaceNs (or as fast
// as appends return, when slower). Returns the append calls' latencies.
Result<Samples> paced_append(EventStore& store, const std::vector<NewEvent>& orders, uint64_t k,
                             double* seconds) {
  Samples append;
  append.reserve(k);
  const int64_t begin = mono_ns();
  for (uint64_t i = 0; i < k; ++i) {
    sleep_until_ns(begin + static_cast<int64_t>(i) * kLivePaceNs);
    const NewEvent& order = orders[i % orders.size()];
    std::vector<NewEvent> one(1);
    one[0].type = order.type;
    const int64_t stamp = mono_ns();
    one[0].payload = stamped_payload(stamp, order.payload);
    EVENTSOURCE_RETURN_IF_ERROR(store
                                    .append_events(order_stream(i % 10),
                                                   eventsource::ExpectedVersion::any(),
                                                   std::move(one))
                                    .status());
    append.add_us(static_cast<double>(mono_ns() - stamp) / 1e3);
  }
  *seconds = static_cast<double>(mono_ns() - begin) / 1e9;
  return append;
}

// A live Subscription recording, for each of k events after `base`, now
// minus the stamp in its payload. Not movable: its handler points at it.
class Follower {
 public:
  Follower(uint64_t base, uint64_t k) : base_(base), latency_ns_(k, -1) {}
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  // Starts after `base` and waits until the subscription is live.
  Status start(EventStore& store, milliseconds poll) {
    const SubscriptionOptions options{.from = eventsource::StartFrom::at(GlobalPosition(base_ + 1)),
                                      .failure = {.then = FailurePolicy::Then::kStop},
                                      .poll_interval = poll};
    EVENTSOURCE_ASSIGN_OR_RETURN(
        sub_, Subscription::start(
                  store, "live-latency",
                  [this](const EventRecord& e) -> Status {
                    const int64_t now = mono_ns();
                    EVENTSOURCE_ASSIGN_OR_RETURN(int64_t stamp, read_stamp(e.payload));
                    const uint64_t p = e.position.value;
                    if (p <= base_ || p - base_ > latency_ns_.size()) {
                      return eventsource::invalid_argument(
                          fmt::format("live event at unexpected position {}", p));
                    }
                    latency_ns_[p - base_ - 1] = now - stamp;
                    return Status();
                  },
                  options));
    return sub_->wait_live(kWaitLimit);
  }

  // Waits for all k events, stops; their latencies in µs.
  Result<Samples> finish() {
    const Status reached = sub_->wait_until(GlobalPosition(base_ + latency_ns_.size()), kWaitLimit);
    const Status stopped = sub_->stop();
    EVENTSOURCE_RETURN_IF_ERROR(reached);
    EVENTSOURCE_RETURN_IF_ERROR(stopped);
    Samples out;
    out.reserve(latency_ns_.size());
    for (size_t i = 0; i < latency_ns_.size(); ++i) {
      if (latency_ns_[i] < 0) {
        return check_failed(fmt::format("live event {} never reached the handler", base_ + i + 1));
      }
      out.add_us(static_cast<double>(latency_ns_[i]) / 1e3);
    }
    return out;
  }

 private:
  const uint64_t base_;
  std::vector<int64_t> latency_ns_;
  std::unique_ptr<Subscription> sub_;
};

// Append-to-handler latency percentiles, µs.
struct Latency {
  double p50 = 0, p99 = 0, p999 = 0, max = 0;
};

Latency latency_of(Samples& s) {
  return {*s.percentile(50), *s.percentile(99), *s.percentile(99.9), *s.percentile(100)};
}

// Fills m's figures; the note is left to the caller.
void set_latency(Measurement& m, const Latency& latency, Samples& append, double seconds,
                 const std::string& durability) {
  set_rate(m, m.n, seconds);
  m.p50_us = latency.p50;
  m.p99_us = latency.p99;
  add_extra(m, "p999_us", latency.p999);
  add_extra(m, "max_us", latency.max);
  add_extra(m, "append_p50_us", append.percentile(50));
  add_extra(m, "append_p99_us", append.percentile(99));
  add_extra(m, "pace_us", kLivePaceNs / 1e3);
  add_text(m, "durability", durability);
}

Status run_live(const std::string& backend, const std::string& base,
                std::optional<Durability> durability, Measurement& m) {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::vector<NewEvent> orders, order_events());
  EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<EventStore> store,
                               open_store(backend, base, durability));
  EVENTSOURCE_ASSIGN_OR_RETURN(GlobalPosition first, store->current_position());
  Follower follower(first.value, m.n);
  // Appends through this store object wake the subscription at once; the
  // poll interval (default) does not matter here.
  EVENTSOURCE_RETURN_IF_ERROR(follower.start(*store, SubscriptionOptions{}.poll_interval));
  double seconds = 0;
  EVENTSOURCE_ASSIGN_OR_RETURN(Samples append, paced_append(*store, orders, m.n, &seconds));
  EVENTSOURCE_ASSIGN_OR_RETURN(Samples samples, follower.finish());
  EVENTSOURCE_RETURN_IF_ERROR(store->close());
  const Latency latency = latency_of(samples);
  const std::string d = durability_text(backend, durability);
  set_latency(m, latency, append, seconds, d);
  m.note = fmt::format(
      "append start -> handler, same process, 1 event per >= {:.0f} us, durability {}; "
      "p99.9 {:.0f} us; append p50 {:.0f} us",
      kLivePaceNs / 1e3, d, latency.p999, *append.percentile(50));
  return Status();
}

// The protocol of live_latency_xproc, one text line each way at a time on a
// socket pair: parent "go" (the store exists), child "ready" (live), then
// child "ok <p50> <p99> <p999> <max>" in µs, or "error <message>".
Status send_line(int fd, std::string_view line) {
  std::string text = std::string(line) + "\n";
  size_t sent = 0;
  while (sent < text.size()) {
    const ssize_t r = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return eventsource::io_error("live_latency_xproc: send to the other process", errno);
    sent += static_cast<size_t>(r);
  }
  return Status();
}

// One line (without its '\n'), waiting at most `timeout_ms` for it.
Result<std::string> read_line(int fd, int timeout_ms) {
  std::string line;
  const int64_t deadline = mono_ns() + static_cast<int64_t>(timeout_ms) * 1000000;
  while (true) {
    const int64_t left_ms = (deadline - mono_ns()) / 1000000;
    if (left_ms <= 0) {
      return Status(
          eventsource::Code::kTimedOut,
          fmt::format("live_latency_xproc: no answer from the other process in {} ms", timeout_ms));
    }
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left_ms));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return eventsource::io_error("live_latency_xproc: poll", errno);
    if (r == 0) continue;
    char c;
    const ssize_t got = ::read(fd, &c, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return eventsource::io_error("live_latency_xproc: read", errno);
    if (got == 0) return check_failed("live_latency_xproc: the other process hung up");
    if (c == '\n') return line;
    line.push_back(c);
  }
}

// The child's work: follow the store read-only, report the percentiles.
Result<std::string> follow_in_child(const std::string& backend, const std::string& base,
                                    milliseconds poll, uint64_t k, int fd) {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::string go, read_line(fd, kChildLineMs));
  if (go != "go") return check_failed("live_latency_xproc: child got '" + go + "', not go");
  EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<EventStore> store,
                               open_store(backend, base, std::nullopt, Access::kFollow));
  EVENTSOURCE_ASSIGN_OR_RETURN(GlobalPosition first, store->current_position());
  Follower follower(first.value, k);
  EVENTSOURCE_RETURN_IF_ERROR(follower.start(*store, poll));
  EVENTSOURCE_RETURN_IF_ERROR(send_line(fd, "ready"));
  EVENTSOURCE_ASSIGN_OR_RETURN(Samples samples, follower.finish());
  EVENTSOURCE_RETURN_IF_ERROR(store->close());
  const Latency l = latency_of(samples);
  return fmt::format("ok {:.3f} {:.3f} {:.3f} {:.3f}", l.p50, l.p99, l.p999, l.max);
}

// Runs in the forked child; never returns (_exit: none of the parent's
// destructors or atexit handlers may run here).
[[noreturn]] void xproc_child(const std::string& backend, const std::string& base,
                              milliseconds poll, uint64_t k, int fd) {
  std::string line;
  try {
    Result<std::string> r = follow_in_child(backend, base, poll, k, fd);
    line = r.ok() ? *r : "error " + r.status().to_string();
  } catch (const std::exception& e) {
    line = std::string("error exception: ") + e.what();
  } catch (...) {
    line = "error unknown exception";
  }
  std::replace(line.begin(), line.end(), '\n', ' ');
  const bool sent = send_line(fd, line).ok();
  ::_exit(sent && line.rfind("ok ", 0) == 0 ? 0 : 1);
}

// The child process and its socket; the destructor kills and reaps a child
// still running (the parent failed or timed out).
struct Child {
  pid_t pid = -1;
  int fd = -1;
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (fd >= 0) ::close(fd);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  // Reaps the child, which should exit by itself; kills it after 10 s.
  Status reap() {
    const int64_t deadline = mono_ns() + 10'000'000'000;
    int status = 0;
    while (true) {
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (r < 0 && errno != EINTR)
        return eventsource::io_error("live_latency_xproc: waitpid", errno);
      if (mono_ns() > deadline) return check_failed("live_latency_xproc: the child did not exit");
      ::usleep(1000);
    }
    pid = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return check_failed(
          fmt::format("live_latency_xproc: the child ended with status {:#x}", status));
    }
    return Status();
  }
};

// The follower's "error <status>" line (or anything unexpected) as a Status.
Status follower_failed(const std::string& line) {
  return Status(eventsource::Code::kIoError,
                "live_latency_xproc: the follower process failed: " +
                    (line.rfind("error ", 0) == 0 ? line.substr(6) : "it said '" + line + "'"));
}

// `durability` nullopt: the store's default.
Status run_xproc(const std::string& backend, const std::string& base, milliseconds poll,
                 std::optional<Durability> durability, Measurement& m) {
  EVENTSOURCE_ASSIGN_OR_RETURN(std::vector<NewEvent> orders, order_events());
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return eventsource::io_error("live_latency_xproc: socketpair", errno);
  }
  // Forked before this process opens the store: the child shares no
  // handle, connection or lock with the writer.
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    return eventsource::io_error("live_latency_xproc: fork", e);
  }
  if (pid == 0) {
    ::close(sv[0]);
    xproc_child(backend, base, poll, m.n, sv[1]);
  }
  ::close(sv[1]);
  Child child;
  child.pid = pid;
  child.fd = sv[0];

  EVENTSOURCE_ASSIGN_OR_RETURN(std::unique_ptr<EventStore> store,
                               open_store(backend, base, durability));
  EVENTSOURCE_ASSIGN_OR_RETURN(GlobalPosition first, store->current_position());
  if (first.value != 0) return check_failed("live_latency_xproc: the store is not empty");
  EVENTSOURCE_RETURN_IF_ERROR(send_line(child.fd, "go"));
  EVENTSOURCE_ASSIGN_OR_RETURN(std::string ready, read_line(child.fd, kChildLineMs));
  if (ready != "ready") return follower_failed(ready);
  double seconds = 0;
  EVENTSOURCE_ASSIGN_OR_RETURN(Samples append, paced_append(*store, orders, m.n, &seconds));
  EVENTSOURCE_ASSIGN_OR_RETURN(std::string result, read_line(child.fd, kChildLineMs * 2));
  EVENTSOURCE_RETURN_IF_ERROR(child.reap());
  EVENTSOURCE_RETURN_IF_ERROR(store->close());

  Latency l;
  const char* at = result.c_str();
  bool ok = result.rfind("ok ", 0) == 0;
  if (ok) at += 3;
  for (double* v : {&l.p50, &l.p99, &l.p999, &l.max}) {
    char* end = nullptr;
    *v = ok ? std::strtod(at, &end) : 0;
    ok = ok && end != at;
    at = end;
  }
  if (!ok) return follower_failed(result);
  const std::string d = durability_text(backend, durability);
  set_latency(m, l, append, seconds, d);
  add_extra(m, "poll_ms", static_cast<double>(poll.count()));
  m.note = fmt::format(
      "append start -> handler in another process following the store{}, poll {} ms, 1 event "
      "per >= {:.0f} us, durability {}; p99.9 {:.0f} us; append p50 {:.0f} us",
      backend == "engine" ? " read-only" : "", poll.count(), kLivePaceNs / 1e3, d, l.p999,
      *append.percentile(50));
  return Status();
}

}  // namespace

bool is_projection_workload(std::string_view name) {
  return name == "bus_dispatch_sync" || name == "bus_dispatch_async" ||
         name == "projection_catchup" || name == "live_latency" || name == "live_latency_xproc";
}

std::vector<Measurement> run_projection_workload(const Config& cfg, const std::string& workload,
                                                 const std::string& backend,
                                                 const std::string& dir) {
  std::vector<Measurement> out;
  // Runs one step; a failure becomes the error of its own row.
  auto step = [&out](Measurement m, const std::function<Status(Measurement&)>& fn) {
    if (Status s = fn(m); !s.ok()) m.error = s.to_string();
    out.push_back(std::move(m));
  };
  const bool engine = backend == "engine";
  // One live event per 100 of --n, at most kLiveEvents (the default --n
  // gets all of them; the CI smoke run's 20000, 200).
  const uint64_t live = std::min(std::max<uint64_t>(cfg.n / 100, 1), kLiveEvents);
  const uint64_t synced_xproc = std::min(live, kSyncedXprocEvents);
  if (workload == "bus_dispatch_sync" || workload == "bus_dispatch_async") {
    if (!engine) return out;  // no store: once per run
    const auto mode = workload == "bus_dispatch_sync" ? eventsource::DispatchMode::kSync
                                                      : eventsource::DispatchMode::kAsync;
    step(new_measurement(workload, backend, std::min(std::max<uint64_t>(cfg.n, 1), kMaxBusEvents)),
         [&](Measurement& m) { return run_bus(mode, m); });
  } else if (workload == "projection_catchup") {
    for (const std::string& b : engine ? std::vector<std::string>{"engine", "memory"}
                                       : std::vector<std::string>{backend}) {
      std::vector<Measurement> rows;
      if (Status s = run_catchup(cfg, b, dir, rows); !s.ok()) {
        Measurement m = new_measurement(workload, b, cfg.n);
        m.error = s.to_string();
        rows.push_back(std::move(m));
      }
      out.insert(out.end(), std::make_move_iterator(rows.begin()),
                 std::make_move_iterator(rows.end()));
    }
  } else if (workload == "live_latency") {
    step(new_measurement(workload, backend, live),
         [&](Measurement& m) { return run_live(backend, dir + "/live", std::nullopt, m); });
    if (engine) {
      step(new_measurement("live_latency_none", backend, live), [&](Measurement& m) {
        return run_live(backend, dir + "/live-none", Durability::kNone, m);
      });
      step(new_measurement(workload, "memory", live),
           [&](Measurement& m) { return run_live("memory", "", std::nullopt, m); });
    }
  } else if (workload == "live_latency_xproc") {
    // Durability none keeps the writer at its pace, so that events land at
    // random points of the follower's poll cycle: what polling costs. A
    // read-only engine follower sees a frame once it is written, before the
    // writer's fdatasync returns, so a sync per append mostly sets the pace
    // (and can lock it to the poll cycle); the _group row shows the default.
    struct Variant {
      const char* suffix;
      int poll_ms;
      std::optional<Durability> durability;
      uint64_t events;
    };
    for (const Variant& v :
         {Variant{"", 1, Durability::kNone, live}, Variant{"_2ms", 2, Durability::kNone, live},
          Variant{"_group", 1, std::nullopt, synced_xproc}}) {
      step(new_measurement(workload + v.suffix, backend, v.events), [&](Measurement& m) {
        return run_xproc(backend, fmt::format("{}/xproc{}", dir, v.suffix), milliseconds(v.poll_ms),
                         v.durability, m);
      });
    }
  } else {
    Measurement m = new_measurement(workload, backend, cfg.n);
    m.error = "unknown workload";
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace esbench
