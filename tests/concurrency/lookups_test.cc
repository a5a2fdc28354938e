// Lookups that build state lazily, under many threads (run under TSan in
// CI): streams of the persisted directory found on first use by concurrent
// readers while a writer appends to them and checkpoints (which swaps the
// index), and event ids looked up while appenders with caller ids retry
// each other's batches.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <thread>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

constexpr int kStreams = 200;

StreamId stream(int i) { return StreamId{"S", std::to_string(i)}; }

EventData event(uint64_t n) {
  EventData e = make_event("T", fmt::format("event {}", n));
  e.id = make_uuid(0x1d5, n);
  return e;
}

TEST_SUITE("concurrency") {
  TEST_CASE("first lookups of persisted streams race with appends, checkpoints and id lookups") {
    TempDir dir("es-lookups");
    const std::string path = dir.file("s.evs");
    {
      auto store = open_or_fail(path, small_store_options());
      for (int i = 0; i < kStreams; ++i)
        EVENTSOURCE_REQUIRE_OK(store->append(stream(i), ExpectedVersion::any(),
                                             std::vector{event(static_cast<uint64_t>(i))}));
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    auto store = open_or_fail(path, small_store_options());
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> next_id{kStreams};
    std::vector<std::thread> threads;
    // Two appenders: each batch goes to a persisted stream; every 8th is
    // sent twice (the retry must be recognized, never stored again).
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, t] {
        for (int k = 0; k < 150; ++k) {
          const uint64_t id = next_id.fetch_add(1);
          const StreamId s = stream(static_cast<int>(id * 7 + t) % kStreams);
          std::vector<EventData> b{event(id)};
          EVENTSOURCE_CHECK_OK(store->append(s, ExpectedVersion::any(), b));
          if (k % 8 == 0) {
            auto again = store->append(s, ExpectedVersion::any(), b);
            EVENTSOURCE_CHECK_OK(again);
            CHECK((again.ok() && again->deduplicated));
          }
          if (k % 50 == 49) EVENTSOURCE_CHECK_OK(store->checkpoint());
        }
      });
    // Readers: first lookups of persisted streams, versions, ids.
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&, t] {
        uint64_t n = 0;
        while (!stop.load()) {
          const int i = static_cast<int>((n * 13 + static_cast<uint64_t>(t) * 61) % kStreams);
          const StreamVersion v = store->stream_version(stream(i));
          CHECK(v.value >= 1);
          ReadResult r = read_stream_events(*store, stream(i));
          EVENTSOURCE_CHECK_OK(r.status);
          CHECK(r.events.size() >= v.value);
          auto found = store->find_event(make_uuid(0x1d5, n % kStreams));
          EVENTSOURCE_CHECK_OK(found);
          CHECK((found.ok() && found->has_value()));
          ++n;
        }
      });
    for (size_t i = 0; i < 2; ++i) threads[i].join();
    stop.store(true);
    for (size_t i = 2; i < threads.size(); ++i) threads[i].join();
    CHECK(store->committed_position() == GlobalPosition(kStreams + 300));
    auto listed = store->list_streams();
    CHECK(listed.size() == static_cast<size_t>(kStreams));
    uint64_t total = 0;
    for (const StreamInfo& s : listed) total += s.version.value;
    CHECK(total == kStreams + 300);
  }
}

}  // namespace
}  // namespace eventsource::testing
