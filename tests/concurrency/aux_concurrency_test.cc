// Aux records under concurrency (run under TSan by .ci/run): appenders,
// snapshot puts, projection-state saves and dead letters from several
// threads, with readers of the same handle and a read-only handle that
// refreshes, while the aux chain is compacted; verify and a read-only handle
// beside a writer that compacts without pause.
#include <doctest/doctest.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

TEST_CASE("aux writes from several threads beside appends, readers and a refreshing reader") {
  TempDir dir;
  const std::string path = dir.file("aux.evs");
  StoreOptions o = small_store_options();
  o.durability = Durability::kGroup;
  auto store = open_or_fail(path, o);
  StoreOptions ro = small_store_options();
  ro.mode = OpenMode::kReadOnly;
  auto reader = open_or_fail(path, ro);
  constexpr int kWriters = 4, kOps = 120;
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      const StreamId id{"W", std::to_string(t)};
      const std::string blob(3000, static_cast<char>('a' + t));
      for (int i = 1; i <= kOps; ++i) {
        EventData e = make_event("E", "payload");
        CHECK(store->append(id, ExpectedVersion::any(), std::span(&e, 1)).ok());
        CHECK(store->put_snapshot(id, StreamVersion(i), 1, blob).ok());
        CHECK(store->prune_snapshots(id, StreamVersion(i)).ok());
        CHECK(store->save_projection_state("p" + std::to_string(t), GlobalPosition(i), blob).ok());
        if (i % 10 == 0) {
          DeadLetter d;
          d.projection = "p" + std::to_string(t);
          d.error = "e";
          auto added = store->add_dead_letter(d);
          CHECK(added.ok());
          if (added.ok()) CHECK(store->remove_dead_letter(*added).ok());
        }
      }
    });
  }
  std::thread same_handle([&] {
    while (!done.load()) {
      for (int t = 0; t < kWriters; ++t) {
        auto s = store->latest_snapshot(StreamId{"W", std::to_string(t)});
        INFO("latest_snapshot: " << s.status().to_string());
        CHECK(s.ok());
        auto p = store->projection_state("p" + std::to_string(t));
        CHECK(p.ok());
      }
      CHECK(store->dead_letters().ok());
      (void)store->stats();
    }
  });
  std::thread other_handle([&] {
    while (!done.load()) {
      (void)reader->refresh();
      (void)reader->latest_snapshot(StreamId{"W", "0"});
      (void)reader->projection_names();
      (void)reader->dead_letters();
    }
  });
  for (auto& th : threads) th.join();
  done.store(true);
  same_handle.join();
  other_handle.join();
  for (int t = 0; t < kWriters; ++t)
    CHECK(store->projection_state("p" + std::to_string(t)).value()->position ==
          GlobalPosition(kOps));
  CHECK(store->dead_letters().value().empty());
  CHECK(store->stats().aux_compactions >= 1u);
  EVENTSOURCE_REQUIRE_OK(reader->close());
  EVENTSOURCE_REQUIRE_OK(store->close());
  auto again = open_or_fail(path, o);
  for (int t = 0; t < kWriters; ++t)
    CHECK(again->snapshot_versions(StreamId{"W", std::to_string(t)}).value() ==
          std::vector<StreamVersion>{StreamVersion(kOps)});
}

// Compaction writes the live records into new segments, then zeroes and
// frees the old ones. verify and a read-only refresh that read the slot
// headers before it walked a chain that vanished under them: verify reported
// damage, and the read-only handle kept the state of a chain cut short (an
// older projection state) or failed a snapshot read of a moved record.
TEST_CASE("verify and a read-only handle beside a writer compacting the aux chain") {
  TempDir dir;
  const std::string path = dir.file("compacting.evs");
  const StoreOptions o = small_store_options();  // 1 MiB segments
  auto store = open_or_fail(path, o);
  const StreamId stream{"S", "1"};
  EventData e = make_event("E", "payload");
  REQUIRE(store->append(stream, ExpectedVersion::any(), std::span(&e, 1)).ok());
  StoreOptions ro = small_store_options();
  ro.mode = OpenMode::kReadOnly;
  auto reader = open_or_fail(path, ro);
  constexpr int kSaves = 1200;  // 16 KiB each: a compaction about every 64
  std::atomic<bool> done{false};
  std::thread writer([&] {
    const std::string blob(16 << 10, 'x');
    for (int i = 1; i <= kSaves; ++i) {
      CHECK(store->save_projection_state("p", GlobalPosition(i), blob).ok());
      if (i % 7 == 0) CHECK(store->put_snapshot(stream, StreamVersion(1), 1, blob).ok());
    }
    done.store(true);
  });
  std::thread verifier([&] {
    while (!done.load()) {
      auto report = Store::verify(path);
      REQUIRE(report.ok());
      std::string what;
      for (const VerifyProblem& q : report->problems)
        what += "segment " + std::to_string(q.segment) + " offset " + std::to_string(q.offset) +
                ": " + q.what + "; ";
      INFO("verify: " << what);
      CHECK(what.empty());
    }
  });
  std::thread refresher([&] {
    uint64_t seen = 0;
    while (!done.load()) {
      auto r = reader->refresh();
      CHECK(r.ok());
      auto p = reader->projection_state("p");
      REQUIRE(p.ok());
      // Never older than what this handle showed before, never gone again.
      CHECK((p->has_value() || seen == 0));
      if (p->has_value()) {
        CHECK((*p)->position.value >= seen);
        seen = (*p)->position.value;
      }
      auto snap = reader->latest_snapshot(stream);
      INFO("latest_snapshot: " << snap.status().to_string());
      CHECK(snap.ok());
    }
  });
  writer.join();
  verifier.join();
  refresher.join();
  CHECK(store->stats().aux_compactions >= 10u);
  auto report = Store::verify(path);
  REQUIRE(report.ok());
  CHECK(report->problems.empty());
  EVENTSOURCE_REQUIRE_OK(reader->close());
  EVENTSOURCE_REQUIRE_OK(store->close());
}

}  // namespace
}  // namespace eventsource::testing
