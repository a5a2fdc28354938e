// Micro-benchmarks of the engine's hot paths through its public API: appends
// (100-event batch, single event), stream_version lookup, read_stream of a
// 100-event stream, and a replay scan of 100k events. Stores live in a temp
// dir ($ES_BENCH_DIR, else /dev/shm, else $TMPDIR or /tmp), removed at exit.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/payload.h"
#include "eventsource/store.h"

namespace {

constexpr size_t kPayloadSize = 200;
constexpr uint64_t kSeed = 42;
constexpr uint64_t kAppendStreams = 1000;
// Append benchmarks start a fresh store after this many events (untimed), so
// that a long run does not fill the temp dir.
constexpr uint64_t kMaxEventsPerStore = 1000000;
constexpr uint64_t kLookupStreams = 10000;
constexpr uint64_t kEventsPerLookupStream = 10;
constexpr uint64_t kBigStreamEvents = 100;

std::string bench_root() {
  if (const char* dir = std::getenv("ES_BENCH_DIR"); dir != nullptr && *dir != '\0') return dir;
  if (::access("/dev/shm", W_OK) == 0) return "/dev/shm";
  if (const char* dir = std::getenv("TMPDIR"); dir != nullptr && *dir != '\0') return dir;
  return "/tmp";
}

// A store in a fresh temp directory; the directory goes with the object.
class TempStore {
 public:
  static std::unique_ptr<TempStore> create(std::string* error) {
    std::string pattern = bench_root() + "/es-micro-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      *error = "mkdtemp " + pattern + " failed";
      return nullptr;
    }
    eventsource::StoreOptions options;
    options.durability = eventsource::Durability::kNone;
    auto store = eventsource::Store::open(pattern + "/micro.evs", options);
    if (!store.ok()) {
      *error = store.status().to_string();
      std::error_code ec;
      std::filesystem::remove_all(pattern, ec);
      return nullptr;
    }
    return std::unique_ptr<TempStore>(new TempStore(pattern, std::move(store).value()));
  }

  ~TempStore() {
    store_->close().ignore_error();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  eventsource::Store& store() { return *store_; }

 private:
  TempStore(std::string dir, std::unique_ptr<eventsource::Store> store)
      : dir_(std::move(dir)), store_(std::move(store)) {}
  std::string dir_;
  std::unique_ptr<eventsource::Store> store_;
};

std::vector<eventsource::EventData> make_events(size_t count, uint64_t first_index) {
  std::vector<eventsource::EventData> events(count);
  for (size_t i = 0; i < count; ++i) {
    events[i].type =
        std::string(esbench::kEventTypes[(first_index + i) % esbench::kEventTypes.size()]);
    events[i].payload = esbench::make_payload(kSeed, first_index + i, kPayloadSize);
  }
  return events;
}

std::vector<eventsource::StreamId> make_streams(const char* type, uint64_t count) {
  std::vector<eventsource::StreamId> ids;
  ids.reserve(count);
  for (uint64_t i = 0; i < count; ++i)
    ids.push_back(eventsource::StreamId{type, std::to_string(i)});
  return ids;
}

// Appends batches of `batch_size` events to kAppendStreams streams round-robin.
void run_append(benchmark::State& state, size_t batch_size) {
  std::string error;
  std::unique_ptr<TempStore> temp = TempStore::create(&error);
  if (temp == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  const std::vector<eventsource::EventData> events = make_events(batch_size, 0);
  const std::vector<eventsource::StreamId> streams = make_streams("Order", kAppendStreams);
  std::vector<uint64_t> versions(streams.size(), 0);
  eventsource::AppendOptions options;
  options.durability = eventsource::Durability::kNone;
  uint64_t in_store = 0;
  uint64_t next = 0;
  for (auto _ : state) {
    if (in_store >= kMaxEventsPerStore) {
      state.PauseTiming();
      temp.reset();
      temp = TempStore::create(&error);
      std::fill(versions.begin(), versions.end(), 0);
      in_store = 0;
      state.ResumeTiming();
      if (temp == nullptr) {
        state.SkipWithError(error.c_str());
        break;
      }
    }
    const uint64_t s = next++ % streams.size();
    auto result = temp->store().append(
        streams[s], eventsource::ExpectedVersion::exact(eventsource::StreamVersion(versions[s])),
        events, options);
    if (!result.ok()) {
      state.SkipWithError(result.status().to_string().c_str());
      break;
    }
    versions[s] += batch_size;
    in_store += batch_size;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch_size));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch_size * kPayloadSize));
}

void BM_AppendBatch100(benchmark::State& state) { run_append(state, 100); }
void BM_AppendOne(benchmark::State& state) { run_append(state, 1); }

// The shared read fixture: kLookupStreams streams of kEventsPerLookupStream
// events, then one "Big-0" stream of kBigStreamEvents events. Built on first use.
struct ReadFixture {
  std::unique_ptr<TempStore> temp;
  std::vector<eventsource::StreamId> streams;
  eventsource::StreamId big{"Big", "0"};
  uint64_t events = 0;
  uint64_t payload_bytes = 0;
  std::string error;
};

std::unique_ptr<ReadFixture>& read_fixture_slot() {
  static std::unique_ptr<ReadFixture> fixture;
  return fixture;
}

ReadFixture& read_fixture() {
  std::unique_ptr<ReadFixture>& slot = read_fixture_slot();
  if (slot != nullptr) return *slot;
  slot = std::make_unique<ReadFixture>();
  ReadFixture& f = *slot;
  f.temp = TempStore::create(&f.error);
  if (f.temp == nullptr) return f;
  f.streams = make_streams("Order", kLookupStreams);
  eventsource::AppendOptions options;
  options.durability = eventsource::Durability::kNone;
  for (const eventsource::StreamId& stream : f.streams) {
    const std::vector<eventsource::EventData> events =
        make_events(kEventsPerLookupStream, f.events);
    auto result =
        f.temp->store().append(stream, eventsource::ExpectedVersion::no_stream(), events, options);
    if (!result.ok()) {
      f.error = result.status().to_string();
      return f;
    }
    f.events += events.size();
    for (const eventsource::EventData& e : events) f.payload_bytes += e.payload.size();
  }
  const std::vector<eventsource::EventData> events = make_events(kBigStreamEvents, f.events);
  auto result =
      f.temp->store().append(f.big, eventsource::ExpectedVersion::no_stream(), events, options);
  if (!result.ok()) {
    f.error = result.status().to_string();
    return f;
  }
  f.events += events.size();
  for (const eventsource::EventData& e : events) f.payload_bytes += e.payload.size();
  return f;
}

// Returns the fixture, or nullptr after marking the benchmark skipped.
ReadFixture* ready_fixture(benchmark::State& state) {
  ReadFixture& f = read_fixture();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return nullptr;
  }
  return &f;
}

void BM_StreamVersion(benchmark::State& state) {
  ReadFixture* f = ready_fixture(state);
  if (f == nullptr) return;
  std::vector<uint32_t> order(4096);
  esbench::Rng rng(kSeed);
  for (uint32_t& i : order) i = static_cast<uint32_t>(rng.below(f->streams.size()));
  size_t next = 0;
  for (auto _ : state) {
    const eventsource::StreamVersion v =
        f->temp->store().stream_version(f->streams[order[next++ % order.size()]]);
    benchmark::DoNotOptimize(v);
    if (v.value != kEventsPerLookupStream) {
      state.SkipWithError("stream_version returned a wrong version");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_ReadStream100(benchmark::State& state) {
  ReadFixture* f = ready_fixture(state);
  if (f == nullptr) return;
  uint64_t bytes = 0;
  for (auto _ : state) {
    uint64_t count = 0;
    uint64_t sum = 0;
    eventsource::Status status = f->temp->store().read_stream(
        f->big, {.from = eventsource::StreamVersion(1), .max_count = UINT64_MAX},
        [&](const eventsource::RecordedEvent& e) {
          ++count;
          sum += esbench::byte_sum(e.payload);
          bytes += e.payload.size();
          return true;
        });
    benchmark::DoNotOptimize(sum);
    if (!status.ok() || count != kBigStreamEvents) {
      state.SkipWithError(status.ok() ? "read_stream returned a wrong count"
                                      : status.to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBigStreamEvents));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void BM_ReplayScan(benchmark::State& state) {
  ReadFixture* f = ready_fixture(state);
  if (f == nullptr) return;
  uint64_t events = 0;
  uint64_t bytes = 0;
  for (auto _ : state) {
    uint64_t count = 0;
    uint64_t sum = 0;
    eventsource::Status status =
        f->temp->store().read_all({.from = eventsource::GlobalPosition(1), .max_count = UINT64_MAX},
                                  [&](const eventsource::RecordedEvent& e) {
                                    ++count;
                                    sum += esbench::byte_sum(e.payload);
                                    bytes += e.payload.size();
                                    return true;
                                  });
    benchmark::DoNotOptimize(sum);
    events += count;
    if (!status.ok() || count != f->events) {
      state.SkipWithError(status.ok() ? "read_all returned a wrong count"
                                      : status.to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

BENCHMARK(BM_AppendBatch100);
BENCHMARK(BM_AppendOne);
BENCHMARK(BM_StreamVersion);
BENCHMARK(BM_ReadStream100);
BENCHMARK(BM_ReplayScan)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  read_fixture_slot().reset();  // closes the fixture store and removes its dir
  return 0;
}
