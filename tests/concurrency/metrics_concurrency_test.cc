// api/ Metrics promises safe concurrent use: threads count while others read
// the counters and the Prometheus text; the totals come out exact (TSan runs
// this in CI).
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "eventsource/observability.h"

namespace eventsource {
namespace {

TEST_CASE("Metrics: concurrent counting and reading add up exactly") {
  Metrics m;
  constexpr int kThreads = 4, kRounds = 20000;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    uint64_t last = 0;
    while (!done.load()) {
      const Counters c = m.counters();
      CHECK(c.appends >= last);  // monotonic
      last = c.appends;
      CHECK(!m.prometheus_text().empty());
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t)
    writers.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        m.count_append(2, 100);
        m.count_read(5, 50);
        m.count_sync();
        if (i % 10 == 0) m.count_conflict();
        m.count_snapshot_miss(Metrics::SnapshotMiss::kDecode);
      }
    });
  for (auto& w : writers) w.join();
  done.store(true);
  reader.join();
  const Counters c = m.counters();
  constexpr uint64_t n = uint64_t{kThreads} * kRounds;
  CHECK(c.appends == n);
  CHECK(c.events_appended == 2 * n);
  CHECK(c.bytes_appended == 100 * n);
  CHECK(c.reads == n);
  CHECK(c.events_read == 5 * n);
  CHECK(c.syncs == n);
  CHECK(c.conflicts == n / 10);
  CHECK(c.snapshot_misses_decode == n);
}

}  // namespace
}  // namespace eventsource
