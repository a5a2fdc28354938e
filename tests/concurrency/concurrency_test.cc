// Reliability target 13 (the TSan half): 8 appenders sharing group commits,
// 2 live in-process readers and a stats/list poller on one store, with
// checkpoints (index swaps) happening under the readers. Every read must see
// a dense prefix of whole batches; afterwards the store reopens intact.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "eventsource/store.h"

namespace fs = std::filesystem;
using namespace eventsource;

namespace {

constexpr int kAppenders = 8;
constexpr int kReaders = 2;
constexpr int kStreamsPerAppender = 4;

std::string payload(int t, int b, int i, int n) {
  return fmt::format("t={} b={} i={} n={};{}", t, b, i, n, std::string(40 + (b % 7) * 13, 'p'));
}

// Checks one read_all pass: dense positions, batches whole and in per-thread order.
std::string check_pass(const Store& store, uint64_t* seen_out) {
  uint64_t expected = 1;
  std::map<int, int> last_batch;  // appender -> last batch seen
  int cur_t = -1, cur_b = -1, cur_i = 0, cur_n = 0;
  std::string error;
  const uint64_t committed = store.committed_position().value;
  Status s = store.read_all({.from = GlobalPosition(1)}, [&](const RecordedEvent& e) {
    if (e.position.value != expected) {
      error = fmt::format("position {} after {}", e.position.value, expected - 1);
      return false;
    }
    ++expected;
    int t, b, i, n;
    if (std::sscanf(std::string(e.payload.substr(0, 48)).c_str(), "t=%d b=%d i=%d n=%d;", &t, &b,
                    &i, &n) != 4 ||
        e.payload != payload(t, b, i, n)) {
      error = fmt::format("position {}: payload not written by the test", e.position.value);
      return false;
    }
    if (i == 0) {
      if (cur_i != cur_n) {
        error = fmt::format("batch {}/{} cut after {} of {} events", cur_t, cur_b, cur_i, cur_n);
        return false;
      }
      auto it = last_batch.find(t);
      if (it != last_batch.end() && it->second >= b) {
        error = fmt::format("appender {} batch {} after batch {}", t, b, it->second);
        return false;
      }
      last_batch[t] = b;
      cur_t = t, cur_b = b, cur_i = 0, cur_n = n;
    } else if (t != cur_t || b != cur_b || i != cur_i) {
      error = fmt::format("position {}: event {} of batch {}/{} interleaved", e.position.value, i,
                          t, b);
      return false;
    }
    ++cur_i;
    return true;
  });
  if (!s.ok()) return "read_all: " + s.to_string();
  if (!error.empty()) return error;
  if (cur_i != cur_n)
    return fmt::format("last batch {}/{} has {} of {} events", cur_t, cur_b, cur_i, cur_n);
  if (expected - 1 < committed)
    return fmt::format("read {} events but {} were committed before the read", expected - 1,
                       committed);
  *seen_out = expected - 1;
  return "";
}

}  // namespace

TEST_CASE("8 group-committing appenders, 2 live readers and checkpoints keep every read whole") {
  fs::path dir = fs::temp_directory_path() / fmt::format("es-conc-{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "c.evs").string();
  StoreOptions o;
  o.segment_size = 1 << 20;
  o.durability = Durability::kGroup;
  o.group_commit_window_us = 50;
  o.checkpoint_interval_bytes = 64 << 10;  // index swaps while readers read
  auto opened = Store::open(path, o);
  REQUIRE(opened.ok());
  std::unique_ptr<Store> store = std::move(opened).value();
  const int batches = std::getenv("ES_SOAK") ? 600 : 120;

  std::atomic<int> done{0};
  std::atomic<uint64_t> read_passes{0};
  std::vector<std::string> errors(kAppenders + kReaders + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kAppenders; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<uint64_t> versions(kStreamsPerAppender, 0);
      for (int b = 0; b < batches && errors[t].empty(); ++b) {
        int k = b % kStreamsPerAppender;
        int n = 1 + static_cast<int>(rng() % 3);
        std::vector<EventData> events(n);
        for (int i = 0; i < n; ++i) {
          events[i].type = i == 0 ? "Opened" : "Changed";
          events[i].payload = payload(t, b, i, n);
        }
        // Mostly durable appends; every fourth one without waiting for a sync.
        AppendOptions ao;
        if (b % 4 == 3) ao.durability = Durability::kNone;
        auto r = store->append(StreamId{fmt::format("T{}", t), std::to_string(k)},
                               ExpectedVersion::exact(StreamVersion(versions[k])), events, ao);
        if (!r.ok()) {
          errors[t] = r.status().to_string();
          break;
        }
        versions[k] = r->version.value;
      }
      done.fetch_add(1);
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(100 + r);
      uint64_t seen = 0;
      while (errors[kAppenders + r].empty()) {
        bool last = done.load() == kAppenders;
        std::string e = check_pass(*store, &seen);
        if (!e.empty()) errors[kAppenders + r] = e;
        // A random stream, forward: versions dense from 1.
        StreamId sid{fmt::format("T{}", rng() % kAppenders),
                     std::to_string(rng() % kStreamsPerAppender)};
        uint64_t v = 0;
        Status s =
            store->read_stream(sid, {.from = StreamVersion(1)}, [&](const RecordedEvent& ev) {
              if (ev.version.value != ++v) return false;
              return true;
            });
        if (!s.ok()) errors[kAppenders + r] = "read_stream: " + s.to_string();
        read_passes.fetch_add(1);
        if (last) break;
      }
    });
  }
  threads.emplace_back([&] {
    while (done.load() < kAppenders) {
      StoreStats st = store->stats();
      std::vector<StreamInfo> streams = store->list_streams();
      if (streams.size() > kAppenders * kStreamsPerAppender || st.events > st.last_position.value)
        errors.back() = fmt::format("stats/list inconsistent: {} streams, {} events, last {}",
                                    streams.size(), st.events, st.last_position.value);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  for (auto& th : threads) th.join();
  for (size_t i = 0; i < errors.size(); ++i)
    CHECK_MESSAGE(errors[i].empty(), "thread ", i, ": ", errors[i]);
  uint64_t seen = 0;
  CHECK(check_pass(*store, &seen) == "");
  const uint64_t total = store->committed_position().value;
  CHECK(seen == total);
  MESSAGE("events ", total, ", reader passes ", read_passes.load());
  REQUIRE(store->close().ok());
  store.reset();

  auto again = Store::open(path, o);
  REQUIRE(again.ok());
  CHECK((*again)->committed_position().value == total);
  CHECK(check_pass(**again, &seen) == "");
  CHECK((*again)->list_streams().size() == kAppenders * kStreamsPerAppender);
  REQUIRE((*again)->close().ok());
  auto v = Store::verify(path);
  REQUIRE(v.ok());
  CHECK(v->clean());
  fs::remove_all(dir);
}
