// SQLiteSnapshotStore: the SnapshotStore rules (replace at a version, the
// highest version wins, prune counts), raw bytes and reopens, sharing one
// database file with a SQLiteEventStore (either opened first), files and
// tables it must refuse, the write lock held elsewhere, close, and many
// threads on one handle.
#include "eventsource/sqlite_snapshot_store.h"

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/sqlite_event_store.h"
#include "tests/api/api_test_support.h"
#include "tests/support/temp_dir.h"

namespace eventsource {
namespace {

using testing::file_text;
using testing::mentions;
using testing::new_event;
using testing::open_sqlite_events;
using testing::RawDb;
using testing::TempDir;

std::unique_ptr<SQLiteSnapshotStore> open_snaps(const std::string& path,
                                                const SQLiteSnapshotStoreOptions& options = {}) {
  auto r = SQLiteSnapshotStore::open(path, options);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

SnapshotRecord snap(const StreamId& stream, uint64_t version, std::string state,
                    uint32_t schema_version = 1, int64_t timestamp_us = 1000) {
  return SnapshotRecord{stream, StreamVersion(version), schema_version, timestamp_us,
                        std::move(state)};
}

std::optional<SnapshotRecord> latest(const SnapshotStore& s, const StreamId& stream) {
  auto r = s.get(stream);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

uint64_t prune(SnapshotStore& s, const StreamId& stream, uint64_t keep_from) {
  auto r = s.prune(stream, StreamVersion(keep_from));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return *r;
}

const StreamId kOrder{"Order", "1"};

TEST_SUITE("api-sqlite-snapshots") {
  TEST_CASE("save and get: a new database in WAL mode, the fields back, the time stamped") {
    TempDir dir("es-sqlite-snap");
    const std::string path = dir.file("snaps.db");
    auto s = open_snaps(path);
    CHECK(s->path() == path);
    CHECK(latest(*s, kOrder) == std::nullopt);
    const SnapshotRecord a = snap(kOrder, 3, "{\"total\":3}", 7, 42);
    REQUIRE(s->save(a).ok());
    CHECK(latest(*s, kOrder) == a);
    // Another stream has none; a timestamp of 0 is stamped with now.
    CHECK(latest(*s, StreamId{"Order", "2"}) == std::nullopt);
    REQUIRE(s->save(snap(StreamId{"Order", "2"}, 1, "x", 1, 0)).ok());
    CHECK(latest(*s, StreamId{"Order", "2"})->timestamp_us > 1'600'000'000'000'000);
    // The public calls' checks come first.
    CHECK(s->save(snap(kOrder, 0, "x")).code() == Code::kInvalidArgument);
    CHECK(s->get(StreamId{"", "1"}).status().code() == Code::kInvalidArgument);

    RawDb raw(path);
    CHECK(raw.one("PRAGMA journal_mode") == "wal");
    CHECK(raw.one("SELECT value FROM eventsource_snapshot_meta WHERE name = 'layout'") == "1");
    CHECK(raw.one("SELECT count(*) FROM snapshots") == "2");
  }

  TEST_CASE("a save at a stored version replaces it; the highest version wins") {
    TempDir dir("es-sqlite-snap");
    auto s = open_snaps(dir.file("snaps.db"));
    REQUIRE(s->save(snap(kOrder, 5, "old", 1)).ok());
    REQUIRE(s->save(snap(kOrder, 5, "new", 2)).ok());
    CHECK(latest(*s, kOrder) == snap(kOrder, 5, "new", 2));
    // Saved out of order: get returns the highest version, not the latest save.
    REQUIRE(s->save(snap(kOrder, 10, "ten")).ok());
    REQUIRE(s->save(snap(kOrder, 7, "seven")).ok());
    CHECK(latest(*s, kOrder)->version.value == 10);
    CHECK(latest(*s, kOrder)->state == "ten");
    // Versions compare as numbers, not as text or bytes (9 < 10 < 100).
    REQUIRE(s->save(snap(kOrder, 9, "nine")).ok());
    REQUIRE(s->save(snap(kOrder, 100, "hundred")).ok());
    CHECK(latest(*s, kOrder)->state == "hundred");
    // Streams do not mix, even one whose id extends another's.
    REQUIRE(s->save(snap(StreamId{"Order", "10"}, 1000, "other")).ok());
    CHECK(latest(*s, kOrder)->state == "hundred");
    CHECK(latest(*s, StreamId{"Order", "10"})->state == "other");
    CHECK(latest(*s, StreamId{"Customer", "1"}) == std::nullopt);
  }

  TEST_CASE("prune removes the versions below keep_from and counts them") {
    TempDir dir("es-sqlite-snap");
    auto s = open_snaps(dir.file("snaps.db"));
    const StreamId other{"Order", "2"};
    for (uint64_t v = 1; v <= 5; ++v) REQUIRE(s->save(snap(kOrder, v, std::to_string(v))).ok());
    REQUIRE(s->save(snap(other, 1, "o")).ok());
    CHECK(prune(*s, kOrder, 0) == 0);
    CHECK(prune(*s, kOrder, 1) == 0);
    CHECK(prune(*s, kOrder, 4) == 3);
    CHECK(prune(*s, kOrder, 4) == 0);
    CHECK(latest(*s, kOrder)->state == "5");
    CHECK(prune(*s, StreamId{"Order", "none"}, 100) == 0);
    CHECK(latest(*s, other)->state == "o");  // another stream's are left alone
    // Past every version (beyond SQLite's signed range too): all go.
    CHECK(prune(*s, kOrder, ~uint64_t{0}) == 2);
    CHECK(latest(*s, kOrder) == std::nullopt);
    CHECK(latest(*s, other)->state == "o");
  }

  TEST_CASE("raw bytes in stream ids and state come back identical after a reopen") {
    TempDir dir("es-sqlite-snap");
    const std::string path = dir.file("snaps.db");
    const StreamId binary{std::string("Ord\0er\xff", 7), std::string("\0\x01\xfe\xff", 4)};
    const StreamId lower{"Order", "a"}, upper{"Order", "A"}, nul{"Order", std::string("a\0", 2)};
    const std::string state("\0\0state\xff\xfe\0", 10);
    {
      auto s = open_snaps(path, {.synchronous_full = false});
      REQUIRE(s->save(snap(binary, 2, state, 0xffffffffu, -5)).ok());
      REQUIRE(s->save(snap(lower, 1, "lower")).ok());
      REQUIRE(s->save(snap(upper, 1, "upper")).ok());
      REQUIRE(s->save(snap(nul, 1, "nul")).ok());
      REQUIRE(s->save(snap(StreamId{"Order", "empty"}, 1, "")).ok());
      REQUIRE(s->close().ok());
    }
    auto s = open_snaps(path, {.create_if_missing = false});
    CHECK(latest(*s, binary) == snap(binary, 2, state, 0xffffffffu, -5));
    CHECK(latest(*s, lower)->state == "lower");
    CHECK(latest(*s, upper)->state == "upper");
    CHECK(latest(*s, nul)->state == "nul");
    CHECK(latest(*s, StreamId{"Order", "empty"})->state.empty());
    CHECK(latest(*s, StreamId{std::string("Ord\0er", 6), std::string("\0\x01\xfe\xff", 4)}) ==
          std::nullopt);
    CHECK(prune(*s, binary, 3) == 1);
    RawDb raw(path);
    CHECK(raw.one("SELECT typeof(stream_type) || typeof(stream_id) || typeof(state) FROM "
                  "snapshots WHERE stream_id = x'61'") == "blobblobblob");
    CHECK(raw.one("SELECT typeof(state) FROM snapshots WHERE stream_id = CAST('empty' AS BLOB)") ==
          "blob");
  }

  TEST_CASE("a reopen keeps every snapshot") {
    TempDir dir("es-sqlite-snap");
    const std::string path = dir.file("snaps.db");
    std::vector<SnapshotRecord> saved;
    {
      auto s = open_snaps(path);
      for (int stream = 0; stream < 20; ++stream)
        for (uint64_t v = 1; v <= 3; ++v) {
          saved.push_back(snap(StreamId{"Order", std::to_string(stream)}, v * 10,
                               "state " + std::to_string(stream) + "/" + std::to_string(v)));
          REQUIRE(s->save(saved.back()).ok());
        }
    }                                                     // the destructor closes
    CHECK_FALSE(std::filesystem::exists(path + "-wal"));  // checkpointed by the last close
    auto s = open_snaps(path);
    for (int stream = 0; stream < 20; ++stream) {
      const StreamId id{"Order", std::to_string(stream)};
      CHECK(latest(*s, id) == saved[stream * 3 + 2]);
      CHECK(prune(*s, id, 30) == 2);  // versions 10 and 20 survived the reopen too
    }
  }

  TEST_CASE("one file shared with a SQLiteEventStore, either opened first") {
    TempDir dir("es-sqlite-snap");
    for (const bool events_first : {true, false}) {
      CAPTURE(events_first);
      const std::string path = dir.file(events_first ? "events-first.db" : "snapshots-first.db");
      {
        std::unique_ptr<SQLiteEventStore> events;
        std::unique_ptr<SQLiteSnapshotStore> snaps;
        if (events_first) {
          events = open_sqlite_events(path);
          snaps = open_snaps(path);
        } else {
          snaps = open_snaps(path);
          events = open_sqlite_events(path);
        }
        for (int i = 0; i < 3; ++i) {
          auto r =
              events->append_events(kOrder, ExpectedVersion::any(), std::vector{new_event("E")});
          REQUIRE_MESSAGE(r.ok(), r.status().to_string());
          REQUIRE(snaps->save(snap(kOrder, r->version.value, "s" + std::to_string(i))).ok());
        }
        REQUIRE(snaps->close().ok());
        REQUIRE(events->close().ok());
      }
      // Reopened (snapshots first, neither creating anything), both find theirs.
      auto snaps = open_snaps(path, {.create_if_missing = false});
      auto events = SQLiteEventStore::open(path, {.create_if_missing = false});
      REQUIRE_MESSAGE(events.ok(), events.status().to_string());
      CHECK((*events)->stream_version(kOrder)->value == 3);
      CHECK(latest(*snaps, kOrder) == snap(kOrder, 3, "s2"));
      // Saves and appends go on side by side.
      REQUIRE((*events)
                  ->append_events(kOrder, ExpectedVersion::exact(StreamVersion(3)),
                                  std::vector{new_event("E")})
                  .ok());
      REQUIRE(snaps->save(snap(kOrder, 4, "s3")).ok());
      CHECK(prune(*snaps, kOrder, 4) == 3);
      CHECK((*events)->get_events(kOrder)->size() == 4);
      // Each store's layout row is where the store looks for it.
      RawDb raw(path);
      CHECK(raw.one("SELECT value FROM eventsource_meta WHERE name = 'layout'") == "1");
      CHECK(raw.one("SELECT value FROM eventsource_snapshot_meta WHERE name = 'layout'") == "1");
    }

    // An event store's file holds no snapshot store until one is created.
    const std::string only_events = dir.file("only-events.db");
    open_sqlite_events(only_events)->close().ignore_error();
    auto none = SQLiteSnapshotStore::open(only_events, {.create_if_missing = false});
    REQUIRE_FALSE(none.ok());
    CHECK(none.status().code() == Code::kNotFound);
    CHECK(mentions(none.status(), only_events));
    CHECK(
        RawDb(only_events).rows("SELECT name FROM sqlite_master WHERE name = 'snapshots'").empty());
  }

  TEST_CASE("a file that is not an SQLite database is refused and left as it was") {
    TempDir dir("es-sqlite-snap");
    for (const std::string& text :
         {std::string(4096, 'x'), std::string("short"), std::string(200, '\0') + "zz"}) {
      const std::string path = dir.file("not-a-db");
      { std::ofstream(path, std::ios::binary | std::ios::trunc) << text; }
      auto r = SQLiteSnapshotStore::open(path);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().code() == Code::kCorruption);
      CHECK(mentions(r.status(), path));
      CHECK(mentions(r.status(), "not an SQLite database"));
      CHECK(file_text(path) == text);
    }
    auto r = SQLiteSnapshotStore::open(dir.path());  // a directory
    REQUIRE_FALSE(r.ok());
    CHECK(mentions(r.status(), dir.path()));
  }

  TEST_CASE("refused: in-memory paths, a snapshots table not ours, a newer layout, damage") {
    TempDir dir("es-sqlite-snap");
    for (const std::string& p : {std::string(), std::string(":memory:")})
      CHECK(SQLiteSnapshotStore::open(p).status().code() == Code::kInvalidArgument);

    const std::string missing = dir.file("missing.db");
    auto r = SQLiteSnapshotStore::open(missing, {.create_if_missing = false});
    CHECK(r.status().code() == Code::kNotFound);
    CHECK_FALSE(std::filesystem::exists(missing));

    const std::string app = dir.file("app.db");
    RawDb(app).exec("CREATE TABLE snapshots(id INTEGER PRIMARY KEY, body TEXT)");
    r = SQLiteSnapshotStore::open(app);
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(mentions(r.status(), app));
    CHECK(mentions(r.status(), "snapshots"));

    const std::string path = dir.file("snaps.db");
    open_snaps(path)->close().ignore_error();
    RawDb raw(path);
    raw.exec("UPDATE eventsource_snapshot_meta SET value = 2 WHERE name = 'layout'");
    r = SQLiteSnapshotStore::open(path);
    CHECK(r.status().code() == Code::kNotSupported);
    CHECK(mentions(r.status(), "layout 2"));
    raw.exec(
        "UPDATE eventsource_snapshot_meta SET value = 1 WHERE name = 'layout';"
        "ALTER TABLE snapshots ADD COLUMN extra TEXT");
    r = SQLiteSnapshotStore::open(path);
    CHECK(r.status().code() == Code::kCorruption);
    CHECK(mentions(r.status(), "extra"));
    raw.exec("ALTER TABLE snapshots DROP COLUMN extra; DELETE FROM eventsource_snapshot_meta");
    r = SQLiteSnapshotStore::open(path);
    CHECK(r.status().code() == Code::kCorruption);

    // A row damaged behind the store's back reads as corruption, naming the stream.
    raw.exec("INSERT INTO eventsource_snapshot_meta VALUES('layout', 1)");
    auto s = open_snaps(path);
    REQUIRE(s->save(snap(kOrder, 1, "x")).ok());
    raw.exec("UPDATE snapshots SET schema_version = -1");
    auto got = s->get(kOrder);
    CHECK(got.status().code() == Code::kCorruption);
    CHECK(mentions(got.status(), path));
    CHECK(mentions(got.status(), kOrder.name()));
  }

  TEST_CASE("the write lock held elsewhere: saves wait, then kBusy; gets go on") {
    TempDir dir("es-sqlite-snap");
    const std::string path = dir.file("snaps.db");
    auto s = open_snaps(path, {.busy_timeout_ms = 50});
    REQUIRE(s->save(snap(kOrder, 1, "one")).ok());
    RawDb raw(path);
    raw.exec("BEGIN IMMEDIATE");
    const Status busy = s->save(snap(kOrder, 2, "two"));
    CHECK(busy.code() == Code::kBusy);
    CHECK(mentions(busy, path));
    CHECK(mentions(busy, kOrder.name()));
    CHECK(s->prune(kOrder, StreamVersion(2)).status().code() == Code::kBusy);
    CHECK(latest(*s, kOrder)->state == "one");  // WAL: readers are not blocked
    raw.exec("ROLLBACK");
    CHECK(s->save(snap(kOrder, 2, "two")).ok());
  }

  TEST_CASE("close: twice is fine, later calls are kClosed") {
    TempDir dir("es-sqlite-snap");
    const std::string path = dir.file("snaps.db");
    auto s = open_snaps(path);
    REQUIRE(s->save(snap(kOrder, 1, "one")).ok());
    CHECK(s->close().ok());
    CHECK(s->close().ok());
    const Status saved = s->save(snap(kOrder, 2, "two"));
    CHECK(saved.code() == Code::kClosed);
    CHECK(mentions(saved, path));
    CHECK(s->get(kOrder).status().code() == Code::kClosed);
    CHECK(s->prune(kOrder, StreamVersion(5)).status().code() == Code::kClosed);
    CHECK_FALSE(std::filesystem::exists(path + "-wal"));
    CHECK(latest(*open_snaps(path), kOrder)->state == "one");
  }

  TEST_CASE("concurrent saves, gets and prunes from several threads and two handles") {
    TempDir dir("es-sqlite-snap");
    const std::string path = dir.file("snaps.db");
    auto a = open_snaps(path, {.synchronous_full = false});
    auto b = open_snaps(path, {.synchronous_full = false});
    constexpr int kThreads = 4;
    constexpr uint64_t kVersions = 50;
    const StreamId shared{"Shared", "1"};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        SQLiteSnapshotStore& s = t % 2 == 0 ? *a : *b;
        const StreamId mine{"Order", std::to_string(t)};
        for (uint64_t v = 1; v <= kVersions; ++v) {
          const std::string state = std::to_string(t) + ":" + std::to_string(v);
          if (!s.save(snap(mine, v, state)).ok()) ++failures;
          if (!s.save(snap(shared, v * kThreads + t, state)).ok()) ++failures;
          auto got = s.get(mine);
          // Only this thread writes `mine`: it sees its own latest save.
          if (!got.ok() || !*got || (*got)->state != state) ++failures;
          auto any = s.get(shared);
          if (!any.ok() || !*any) ++failures;
          if (v % 10 == 0 && !s.prune(mine, StreamVersion(v)).ok()) ++failures;
        }
      });
    for (auto& th : threads) th.join();
    CHECK(failures.load() == 0);
    for (int t = 0; t < kThreads; ++t) {
      const StreamId mine{"Order", std::to_string(t)};
      CHECK(latest(*a, mine)->version.value == kVersions);
      CHECK(prune(*b, mine, kVersions) == 0);  // each thread pruned below its last 10th
    }
    CHECK(latest(*b, shared)->version.value == kVersions * kThreads + kThreads - 1);
    CHECK(prune(*a, shared, ~uint64_t{0}) == kVersions * kThreads);
  }
}

}  // namespace
}  // namespace eventsource
