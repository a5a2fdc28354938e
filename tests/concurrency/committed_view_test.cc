// Issue 9's races, as users hit them with several threads on one store (run
// under TSan in CI): the committed view (a batch whose sync is pending or
// failed is invisible to every read-side call), close() while reads are in
// flight, an append racing close(), and a read-only handle refreshed while
// other threads read it and a writer appends.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/forwarding_os.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

using namespace std::chrono_literals;

// The real OS layer, except that fdatasync can be held at a gate (and then
// made to fail), so a test can freeze an append between write and sync.
class GatedSyncOs final : public ForwardingOs {
 public:
  // From now on fdatasync waits until open_gate().
  void close_gate() {
    std::lock_guard lock(mu_);
    gated_ = true;
  }
  // Lets held syncs go on; with `fail`, they (and later ones) fail with EIO.
  void open_gate(bool fail) {
    std::lock_guard lock(mu_);
    gated_ = false;
    fail_ = fail;
    cv_.notify_all();
  }
  // Waits until a sync is held at the gate.
  bool wait_held() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return held_ > 0; });
  }

  int fdatasync(int fd) override {
    std::unique_lock lock(mu_);
    ++held_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !gated_; });
    --held_;
    if (fail_) return -EIO;
    lock.unlock();
    return ForwardingOs::fdatasync(fd);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool gated_ = false;
  bool fail_ = false;
  int held_ = 0;
};

const StreamId kStream{"Order", "1"};

// Every read-side call's answer for kStream and the store, in one line.
std::string committed_view(const Store& store) {
  const ReadResult stream = read_stream_events(store, kStream);
  const ReadResult all = read_all_events(store);
  std::string listed = "none";
  for (const StreamInfo& s : store.list_streams())
    listed = fmt::format("{}-{}@{}", s.type, s.id, s.version.value);
  return fmt::format(
      "stream_version={} list_streams={} read_stream={} read_all={} committed={} "
      "stats.events={} stats.streams={}",
      store.stream_version(kStream).value, listed, stream.events.size(), all.events.size(),
      store.committed_position().value, store.stats().events, store.stats().streams);
}

std::string view_of(uint64_t n) {
  return fmt::format(
      "stream_version={0} list_streams={1} read_stream={0} read_all={0} committed={0} "
      "stats.events={0} stats.streams={2}",
      n, n == 0 ? std::string("none") : fmt::format("Order-1@{}", n), n == 0 ? 0 : 1);
}

struct GatedStore {
  TempDir dir{"es-view"};
  std::shared_ptr<GatedSyncOs> os = std::make_shared<GatedSyncOs>();
  std::unique_ptr<Store> store;

  explicit GatedStore(Durability mode) {
    StoreOptions o = small_store_options();
    o.durability = mode;
    o.group_commit_window_us = 0;
    o.os = os;
    store = open_or_fail(dir.file("view.evs"), o);
  }
};

TEST_SUITE("committed-view") {
  TEST_CASE("a batch whose sync is pending is invisible to every read-side call") {
    for (Durability mode : {Durability::kGroup, Durability::kEach}) {
      CAPTURE(static_cast<int>(mode));
      GatedStore g(mode);
      EventData a = make_event("Placed", "a");
      EVENTSOURCE_REQUIRE_OK(g.store->append(kStream, ExpectedVersion::no_stream(), {&a, 1}));
      CHECK(committed_view(*g.store) == view_of(1));

      g.os->close_gate();
      std::thread b([&] {
        EventData e = make_event("Paid", "b");
        auto r = g.store->append(kStream, ExpectedVersion::exact(StreamVersion(1)), {&e, 1});
        CHECK(r.ok());
      });
      REQUIRE(g.os->wait_held());
      // B is written and its sync is held: nothing of it shows.
      CHECK(committed_view(*g.store) == view_of(1));
      // The writer's own bookkeeping runs ahead: a third append expecting
      // version 1 conflicts with B, which holds version 2.
      EventData c = make_event("Late", "c");
      auto conflict = g.store->append(kStream, ExpectedVersion::exact(StreamVersion(1)), {&c, 1},
                                      {.durability = Durability::kNone});
      CHECK(conflict.status().code() == Code::kConflict);
      g.os->open_gate(/*fail=*/false);
      b.join();
      CHECK(committed_view(*g.store) == view_of(2));
    }
  }

  TEST_CASE("a batch whose sync failed never becomes visible") {
    GatedStore g(Durability::kGroup);
    EventData a = make_event("Placed", "a");
    EVENTSOURCE_REQUIRE_OK(g.store->append(kStream, ExpectedVersion::no_stream(), {&a, 1}));
    g.os->close_gate();
    std::thread b([&] {
      EventData e = make_event("Paid", "b");
      auto r = g.store->append(kStream, ExpectedVersion::any(), {&e, 1});
      CHECK(r.status().code() == Code::kIoError);
    });
    REQUIRE(g.os->wait_held());
    g.os->open_gate(/*fail=*/true);
    b.join();
    CHECK(committed_view(*g.store) == view_of(1));
  }

  TEST_CASE("a stream first created by a pending batch is not listed") {
    GatedStore g(Durability::kEach);
    // (Another stream first: the first append rolls a segment and syncs
    // under the writer lock, which stats() would wait for.)
    EventData other = make_event("Other", "o");
    EVENTSOURCE_REQUIRE_OK(
        g.store->append(StreamId{"Audit", "1"}, ExpectedVersion::no_stream(), {&other, 1}));
    const std::string before =
        "stream_version=0 list_streams=Audit-1@1 read_stream=0 read_all=1 committed=1 "
        "stats.events=1 stats.streams=1";
    CHECK(committed_view(*g.store) == before);
    g.os->close_gate();
    std::thread b([&] {
      EventData e = make_event("Placed", "a");
      CHECK(g.store->append(kStream, ExpectedVersion::no_stream(), {&e, 1}).ok());
    });
    REQUIRE(g.os->wait_held());
    CHECK(committed_view(*g.store) == before);
    g.os->open_gate(/*fail=*/false);
    b.join();
    CHECK(committed_view(*g.store) ==
          "stream_version=1 list_streams=Order-1@1 read_stream=1 read_all=2 committed=2 "
          "stats.events=2 stats.streams=2");
  }
}

TEST_SUITE("close-during-reads") {
  TEST_CASE("close() waits for reads in flight; calls after it return kClosed") {
    for (int kind = 0; kind < 2; ++kind) {
      TempDir dir("es-close");
      std::unique_ptr<Store> store = open_or_fail(dir.file("c.evs"), small_store_options());
      std::vector<EventData> batch(50, make_event("T", std::string(300, 'x')));
      for (int i = 0; i < 20; ++i)
        EVENTSOURCE_REQUIRE_OK(store->append(kStream, ExpectedVersion::any(), batch));
      std::atomic<bool> inside{false};
      std::atomic<bool> closed_done{false};
      uint64_t sum = 0;
      std::thread reader([&] {
        EventCallback fn = [&](const RecordedEvent& e) {
          if (!inside.exchange(true)) std::this_thread::sleep_for(100ms);   // close() starts now
          for (char ch : e.payload) sum += static_cast<unsigned char>(ch);  // views still mapped
          CHECK_FALSE(closed_done.load());
          return true;
        };
        Status s = kind == 0 ? store->read_all({}, fn) : store->read_stream(kStream, {}, fn);
        CHECK(s.ok());
      });
      while (!inside.load()) std::this_thread::yield();
      EVENTSOURCE_CHECK_OK(store->close());
      closed_done = true;
      reader.join();
      CHECK(sum == uint64_t{1000} * 300 * 'x');
      CHECK(store->read_all({}, [](const RecordedEvent&) { return true; }).code() == Code::kClosed);
      CHECK(store->read_stream(kStream, {}, [](const RecordedEvent&) { return true; }).code() ==
            Code::kClosed);
      CHECK(store->stream_version(kStream).value == 0);
      CHECK(store->list_streams().empty());
      CHECK(store->checkpoint().code() == Code::kClosed);
      CHECK(store->refresh().status().code() == Code::kClosed);
    }
  }

  TEST_CASE("close() from inside a read callback is refused, not a deadlock") {
    TempDir dir("es-close");
    std::unique_ptr<Store> store = open_or_fail(dir.file("c.evs"), small_store_options());
    EventData e = make_event("T", "x");
    EVENTSOURCE_REQUIRE_OK(store->append(kStream, ExpectedVersion::any(), {&e, 1}));
    Status inner;
    EVENTSOURCE_CHECK_OK(store->read_all({}, [&](const RecordedEvent&) {
      inner = store->close();
      return true;
    }));
    CHECK(inner.code() == Code::kInvalidArgument);
    EVENTSOURCE_CHECK_OK(store->close());
  }

  TEST_CASE("appends racing close() get kClosed or succeed, never an I/O error") {
    for (int round = 0; round < 20; ++round) {
      TempDir dir("es-close");
      StoreOptions o = small_store_options();
      o.durability = round % 2 == 0 ? Durability::kNone : Durability::kGroup;
      std::unique_ptr<Store> store = open_or_fail(dir.file("c.evs"), o);
      std::atomic<bool> go{false};
      std::atomic<uint64_t> acked{0};
      std::vector<std::thread> appenders;
      for (int t = 0; t < 4; ++t) {
        appenders.emplace_back([&, t] {
          while (!go.load()) std::this_thread::yield();
          EventData e = make_event("T", std::string(100, 'a'));
          for (int i = 0; i < 200; ++i) {
            auto r =
                store->append(StreamId{"S", std::to_string(t)}, ExpectedVersion::any(), {&e, 1});
            if (r.ok()) {
              acked.fetch_add(1);
              continue;
            }
            CHECK_MESSAGE(r.status().code() == Code::kClosed, r.status().to_string());
            break;
          }
        });
      }
      go = true;
      std::this_thread::sleep_for(std::chrono::microseconds(200 * round));
      EVENTSOURCE_CHECK_OK(store->close());
      for (auto& a : appenders) a.join();
      // Everything acknowledged is there after reopening.
      std::unique_ptr<Store> again = open_or_fail(dir.file("c.evs"), o);
      CHECK(again->committed_position().value == acked.load());
    }
  }
}

TEST_SUITE("read-only-refresh") {
  TEST_CASE("refresh() under readers: never a stream version ahead of its events") {
    TempDir dir("es-refresh");
    const std::string path = dir.file("r.evs");
    StoreOptions wo = small_store_options();
    wo.checkpoint_interval_bytes = 256 << 10;  // index swaps under the readers
    std::unique_ptr<Store> writer = open_or_fail(path, wo);
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> reader = open_or_fail(path, ro);

    std::atomic<bool> done{false};
    std::thread appender([&] {
      std::vector<EventData> batch(5, make_event("T", std::string(500, 'w')));
      for (int i = 0; i < 600; ++i) {
        auto r =
            writer->append(StreamId{"S", std::to_string(i % 3)}, ExpectedVersion::any(), batch);
        CHECK(r.ok());
      }
      done = true;
    });
    std::thread refresher([&] {
      while (!done.load()) CHECK(reader->refresh().ok());
      CHECK(reader->refresh().ok());
    });
    std::vector<std::thread> readers;
    std::atomic<uint64_t> disagreements{0};
    for (int t = 0; t < 2; ++t) {
      readers.emplace_back([&, t] {
        const StreamId s{"S", std::to_string(t)};
        while (!done.load()) {
          const uint64_t v = reader->stream_version(s).value;
          const ReadResult r = read_stream_events(*reader, s);
          CHECK(r.status.ok());
          if (r.events.size() < v) disagreements.fetch_add(1);  // the version ran ahead
          const ReadResult all = read_all_events(*reader);
          CHECK(all.status.ok());
          for (const StreamInfo& info : reader->list_streams()) (void)info;
        }
      });
    }
    appender.join();
    refresher.join();
    for (auto& r : readers) r.join();
    CHECK(disagreements.load() == 0);
    CHECK(reader->committed_position() == writer->committed_position());
    CHECK(reader->checkpoint().code() == Code::kReadOnly);
  }
}

}  // namespace
}  // namespace eventsource::testing
