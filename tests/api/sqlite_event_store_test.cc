// SQLiteEventStore's own behaviour; the rules every backend shares are in
// conformance_test.cc. Here: the database it leaves (WAL, layout row,
// indexes the feeds use), raw bytes across a reopen, other handles and
// processes, files it must refuse, the write lock held elsewhere, rows
// damaged behind its back, snapshots of reads, and close.
#include "eventsource/sqlite_event_store.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/api/api_test_support.h"
#include "tests/support/child.h"
#include "tests/support/temp_dir.h"

namespace eventsource {
namespace {

using testing::append_one;
using testing::Child;
using testing::ChildPipes;
using testing::file_text;
using testing::mentions;
using testing::new_event;
using testing::open_sqlite_events;
using testing::RawDb;
using testing::read_all_stored;
using testing::TempDir;
using testing::with_id;

// A forked child's ids. Not Uuid::random(): its generator is thread_local
// state seeded once, which fork copies, so a child draws the very ids its
// parent draws next (and its appends fail as duplicates).
Uuid child_id() {
  static std::random_device rd;
  Uuid u;
  for (size_t i = 0; i < u.bytes.size(); i += 4) {
    const uint32_t r = rd();
    std::memcpy(u.bytes.data() + i, &r, 4);
  }
  return u;
}

TEST_SUITE("api-sqlite") {
  TEST_CASE("a new store is in WAL mode, with its layout row and the indexes its feeds use") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    auto s = open_sqlite_events(path);
    CHECK(s->backend() == "sqlite");
    CHECK(s->path() == path);
    RawDb raw(path);
    CHECK(raw.one("PRAGMA journal_mode") == "wal");
    CHECK(raw.one("SELECT value FROM eventsource_meta WHERE name = 'layout'") == "1");
    const auto indexes = raw.rows(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
        "ORDER BY name");
    CHECK(indexes == std::vector<std::string>{"events_by_id", "events_by_stream",
                                              "events_by_stream_type", "events_by_tenant",
                                              "events_by_type"});
    // The two unique ones are the store's rules: ids unique, one event per
    // stream version (the optimistic lock).
    CHECK(raw.rows("SELECT name FROM pragma_index_list('events') WHERE \"unique\" = 1 AND "
                   "origin = 'c' ORDER BY name") ==
          std::vector<std::string>{"events_by_id", "events_by_stream"});
    CHECK(raw.rows("SELECT name FROM pragma_index_info('events_by_stream')") ==
          std::vector<std::string>{"stream_type", "stream_id", "version"});
    // read_all's SQL shapes (filters as WHERE terms) walk the indexes.
    auto plan = [&](const std::string& where) {
      std::string text;
      for (const auto& row :
           raw.rows("EXPLAIN QUERY PLAN SELECT position FROM events WHERE position >= 1 AND "
                    "timestamp_us >= 0 AND " +
                        where + " ORDER BY position LIMIT -1",
                    3))  // the plan's detail column
        text += row;
      return text;
    };
    CHECK(plan("type IN (x'41')").find("events_by_type") != std::string::npos);
    CHECK(plan("stream_type IN (x'41')").find("events_by_stream_type") != std::string::npos);
    CHECK(plan("tenant = x'41'").find("events_by_tenant") != std::string::npos);
    CHECK(s->close().ok());
  }

  TEST_CASE("raw bytes come back identical after a reopen, and compare as bytes") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    const StreamId binary{std::string("Ord\0er\xff", 7), std::string("\0\x01\xfe", 3)};
    const StreamId lower{"Order", "a"}, upper{"Order", "A"}, nul{"Order", std::string("a\0", 2)};
    NewEvent e = new_event(std::string("Type\0\xc3\x28", 7), std::string("\0\0payload\xff", 10));
    e.tenant = std::string("t\0\xff", 3);
    e.actor = std::string("\xfe\xff", 2);
    e.metadata = "{\"k\":\"v\"}";
    e.schema_version = 0xffffffffu;
    e.timestamp_us = 1;
    e.correlation_id = Uuid::random();
    NewEvent empty = new_event("Empty", "");
    std::vector<StoredEvent> before;
    {
      auto s = open_sqlite_events(path, {.synchronous_full = false});
      REQUIRE(s->append_events(binary, ExpectedVersion::no_stream(), std::vector{e, empty}).ok());
      for (const StreamId& st : {lower, upper, nul})
        REQUIRE(append_one(*s, st, ExpectedVersion::no_stream(), new_event("P")).ok());
      before = read_all_stored(*s);
      REQUIRE(s->close().ok());
    }
    auto s = open_sqlite_events(path);
    const auto after = read_all_stored(*s);
    REQUIRE(after.size() == 5);
    CHECK(after == before);
    CHECK(after[0].stream == binary);
    CHECK(after[0].type == e.type);
    CHECK(after[0].payload == e.payload);
    CHECK(after[0].tenant == e.tenant);
    CHECK(after[0].actor == e.actor);
    CHECK(after[0].schema_version == 0xffffffffu);
    CHECK(after[0].timestamp_us == 1);
    CHECK(after[0].correlation_id == e.correlation_id);
    CHECK(after[0].causation_id.is_nil());
    CHECK(after[1].payload.empty());
    // "a", "A" and "a\0" are three streams, found by their exact bytes.
    for (const StreamId& st : {lower, upper, nul}) CHECK(s->stream_version(st).value().value == 1);
    CHECK(read_all_stored(*s, {.tenant = std::string("t\0\xff", 3)}).size() == 1);
    CHECK(read_all_stored(*s, {.tenant = "t"}).empty());
    CHECK(read_all_stored(*s, {.tenant = ""}).size() == 4);
    // Stored as BLOBs; a nil id as NULL, no tenant as the empty BLOB.
    RawDb raw(path);
    CHECK(raw.one("SELECT typeof(stream_id) || typeof(type) || typeof(tenant) || "
                  "typeof(payload) || typeof(causation_id) FROM events WHERE position = 1") ==
          "blobblobblobblobnull");
    CHECK(raw.one("SELECT count(*) FROM events WHERE tenant = x''") == "4");
  }

  TEST_CASE("another handle and another process see the appends") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    // Forked before this process opens the database: a child must not
    // inherit SQLite's state of open connections.
    Child child = Child::spawn([&](const ChildPipes& pipes) {
      pipes.receive();  // the parent has appended
      auto r = SQLiteEventStore::open(path);
      if (!r.ok()) return 1;
      auto n = (*r)->get_all();
      if (!n.ok()) return 2;
      pipes.send(n->size());
      auto mine = append_one(**r, StreamId{"Child", "1"}, ExpectedVersion::no_stream(),
                             with_id(new_event("Hi"), child_id()));
      if (!mine.ok()) return 3;
      pipes.send(mine->last_position.value);
      // Then both append to one stream at once.
      pipes.receive();
      for (int i = 0; i < 100; ++i)
        if (!append_one(**r, StreamId{"Shared", "1"}, ExpectedVersion::any(),
                        with_id(new_event("C"), child_id()))
                 .ok())
          return 4;
      return (*r)->close().ok() ? 0 : 5;
    });
    auto a = open_sqlite_events(path);
    auto b = open_sqlite_events(path);
    for (int i = 0; i < 3; ++i)
      REQUIRE(append_one(*a, StreamId{"Order", "1"}, ExpectedVersion::any(), new_event("E")).ok());
    CHECK(b->stream_version(StreamId{"Order", "1"})->value == 3);
    REQUIRE(append_one(*b, StreamId{"Order", "1"}, ExpectedVersion::exact(StreamVersion(3)),
                       new_event("FromB"))
                .ok());
    CHECK(a->current_position()->value == 4);
    CHECK(append_one(*a, StreamId{"Order", "1"}, ExpectedVersion::exact(StreamVersion(3)),
                     new_event("X"))
              .status()
              .code() == Code::kConflict);

    REQUIRE(child.send(1));
    CHECK(child.receive() == std::optional<uint64_t>(4));
    CHECK(child.receive() == std::optional<uint64_t>(5));
    CHECK(a->stream_version(StreamId{"Child", "1"})->value == 1);
    REQUIRE(child.send(1));
    for (int i = 0; i < 100; ++i)
      REQUIRE(append_one(*a, StreamId{"Shared", "1"}, ExpectedVersion::any(), new_event("P")).ok());
    CHECK(child.wait_exit_code() == 0);
    // Every append of both processes landed, densely.
    const auto events = read_all_stored(*b);
    REQUIRE(events.size() == 205);
    for (size_t i = 0; i < events.size(); ++i) CHECK(events[i].position.value == i + 1);
    auto shared = b->get_events(StreamId{"Shared", "1"});
    REQUIRE(shared.ok());
    REQUIRE(shared->size() == 200);
    for (size_t i = 0; i < shared->size(); ++i) CHECK((*shared)[i].version.value == i + 1);
  }

  TEST_CASE("a file that is not an SQLite database is refused and left as it was") {
    TempDir dir("es-sqlite");
    for (const std::string& text :
         {std::string(4096, 'x'), std::string("short"), std::string(200, '\0') + "zz"}) {
      const std::string path = dir.file("not-a-db");
      { std::ofstream(path, std::ios::binary | std::ios::trunc) << text; }
      auto r = SQLiteEventStore::open(path);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().code() == Code::kCorruption);
      CHECK(mentions(r.status(), path));
      CHECK(mentions(r.status(), "not an SQLite database"));
      CHECK(file_text(path) == text);
    }
    // A directory is no database either.
    auto r = SQLiteEventStore::open(dir.path());
    REQUIRE_FALSE(r.ok());
    CHECK(mentions(r.status(), dir.path()));
  }

  TEST_CASE("an events table that is not ours is refused; other tables are left alone") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("app.db");
    {
      RawDb raw(path);
      raw.exec(
          "CREATE TABLE events(id INTEGER PRIMARY KEY, body TEXT);"
          "INSERT INTO events(body) VALUES('theirs')");
    }
    auto r = SQLiteEventStore::open(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(mentions(r.status(), path));
    CHECK(mentions(r.status(), "events"));
    {
      RawDb raw(path);
      CHECK(raw.rows("SELECT name FROM sqlite_master WHERE name = 'eventsource_meta'").empty());
      CHECK(raw.one("SELECT body FROM events") == "theirs");
      CHECK(raw.one("PRAGMA journal_mode") == "delete");  // not switched to WAL
    }

    // An app's database with tables of its own: ours go beside them.
    const std::string shared = dir.file("shared.db");
    {
      RawDb raw(shared);
      raw.exec("CREATE TABLE users(name TEXT); INSERT INTO users VALUES('ann')");
    }
    auto s = open_sqlite_events(shared);
    REQUIRE(
        append_one(*s, StreamId{"User", "ann"}, ExpectedVersion::any(), new_event("Joined")).ok());
    RawDb raw(shared);
    CHECK(raw.one("SELECT name FROM users") == "ann");
  }

  TEST_CASE("a newer layout is not supported, an altered table is corruption") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    open_sqlite_events(path)->close().ignore_error();
    RawDb raw(path);
    raw.exec("UPDATE eventsource_meta SET value = 2 WHERE name = 'layout'");
    auto newer = SQLiteEventStore::open(path);
    REQUIRE_FALSE(newer.ok());
    CHECK(newer.status().code() == Code::kNotSupported);
    CHECK(mentions(newer.status(), path));
    CHECK(mentions(newer.status(), "layout 2"));

    raw.exec(
        "UPDATE eventsource_meta SET value = 1 WHERE name = 'layout';"
        "ALTER TABLE events ADD COLUMN extra TEXT");
    auto altered = SQLiteEventStore::open(path);
    REQUIRE_FALSE(altered.ok());
    CHECK(altered.status().code() == Code::kCorruption);
    CHECK(mentions(altered.status(), "extra"));

    raw.exec("ALTER TABLE events DROP COLUMN extra; DELETE FROM eventsource_meta");
    auto no_layout = SQLiteEventStore::open(path);
    REQUIRE_FALSE(no_layout.ok());
    CHECK(no_layout.status().code() == Code::kCorruption);
  }

  TEST_CASE("a dropped index is created again on open") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    open_sqlite_events(path)->close().ignore_error();
    RawDb raw(path);
    raw.exec("DROP INDEX events_by_tenant");
    auto s = open_sqlite_events(path, {.create_if_missing = false});
    CHECK(raw.rows("SELECT name FROM sqlite_master WHERE name = 'events_by_tenant'").size() == 1);
  }

  TEST_CASE("create_if_missing off: no store is kNotFound, and nothing is created") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("missing.db");
    auto r = SQLiteEventStore::open(path, {.create_if_missing = false});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kNotFound);
    CHECK(mentions(r.status(), path));
    CHECK_FALSE(std::filesystem::exists(path));
    // An SQLite database without our tables holds no store either.
    { RawDb(path).exec("CREATE TABLE other(x)"); }
    auto empty = SQLiteEventStore::open(path, {.create_if_missing = false});
    CHECK(empty.status().code() == Code::kNotFound);
    RawDb raw(path);
    CHECK(raw.rows("SELECT name FROM sqlite_master WHERE name = 'events'").empty());
    CHECK(raw.one("PRAGMA journal_mode") == "delete");
  }

  TEST_CASE("in-memory paths are refused; a 'file:' path is a file name") {
    for (const char* p : {"", ":memory:"}) {
      auto r = SQLiteEventStore::open(p);
      CHECK(r.status().code() == Code::kInvalidArgument);
    }
    TempDir dir("es-sqlite");
    char cwd[4096];
    REQUIRE(getcwd(cwd, sizeof cwd) != nullptr);
    REQUIRE(chdir(dir.path().c_str()) == 0);
    auto r = SQLiteEventStore::open("file:events.db?mode=memory");
    const bool ok = r.ok();
    if (ok) (*r)->close().ignore_error();
    const bool created = std::filesystem::exists("file:events.db?mode=memory");
    REQUIRE(chdir(cwd) == 0);
    CHECK(ok);
    CHECK(created);
  }

  TEST_CASE("a row damaged behind the store's back reads as corruption") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    auto s = open_sqlite_events(path);
    for (int i = 0; i < 3; ++i)
      REQUIRE(append_one(*s, StreamId{"Order", "1"}, ExpectedVersion::any(), new_event("E")).ok());
    RawDb raw(path);
    raw.exec("UPDATE events SET id = x'0102' WHERE position = 2");
    int seen = 0;
    Status st = s->read_all({}, [&](const EventRecord&) { return ++seen > 0; });
    CHECK(st.code() == Code::kCorruption);
    CHECK(mentions(st, path));
    CHECK(mentions(st, "position 2"));
    CHECK(seen == 1);
    raw.exec("UPDATE events SET id = randomblob(16), schema_version = 0 WHERE position = 2");
    CHECK(s->get_events(StreamId{"Order", "1"}).status().code() == Code::kCorruption);
  }

  TEST_CASE("the write lock held elsewhere: appends wait, then kBusy; reads go on") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    auto s = open_sqlite_events(path, {.busy_timeout_ms = 200});
    REQUIRE(append_one(*s, StreamId{"Order", "1"}, ExpectedVersion::any(), new_event("E")).ok());
    RawDb raw(path);
    raw.exec("BEGIN IMMEDIATE");
    const auto start = std::chrono::steady_clock::now();
    auto r = append_one(*s, StreamId{"Order", "1"}, ExpectedVersion::any(), new_event("E"));
    const auto waited = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kBusy);
    CHECK(mentions(r.status(), path));
    CHECK(waited >= std::chrono::milliseconds(150));
    // WAL: readers are not blocked by a writer.
    CHECK(read_all_stored(*s).size() == 1);
    CHECK(s->current_position()->value == 1);
    raw.exec("COMMIT");
    auto after = append_one(*s, StreamId{"Order", "1"}, ExpectedVersion::any(), new_event("E"));
    REQUIRE(after.ok());
    CHECK(after->last_position.value == 2);  // no gap from the refused one
  }

  TEST_CASE("a read sees one snapshot, and its callback may append") {
    TempDir dir("es-sqlite");
    auto s = open_sqlite_events(dir.file("events.db"));
    for (int i = 0; i < 3; ++i)
      REQUIRE(append_one(*s, StreamId{"Order", std::to_string(i)}, ExpectedVersion::any(),
                         new_event("E"))
                  .ok());
    int seen = 0;
    REQUIRE(s->read_all({}, [&](const EventRecord& e) {
               ++seen;
               auto r = append_one(*s, StreamId{"Echo", std::to_string(e.position.value)},
                                   ExpectedVersion::no_stream(), new_event("Echo"));
               CHECK_MESSAGE(r.ok(), r.status().to_string());
               return true;
             }).ok());
    CHECK(seen == 3);  // not the echoes appended during the read
    CHECK(s->current_position()->value == 6);
  }

  TEST_CASE("synchronous FULL counts a sync per written append, NORMAL none") {
    TempDir dir("es-sqlite");
    for (const bool full : {true, false}) {
      Metrics metrics;
      SQLiteEventStoreOptions options;
      options.observability.metrics = &metrics;
      options.synchronous_full = full;
      auto s = open_sqlite_events(dir.file(full ? "full.db" : "normal.db"), options);
      NewEvent e = new_event("E");
      e.id = Uuid::random();
      REQUIRE(append_one(*s, StreamId{"Order", "1"}, ExpectedVersion::any(), e).ok());
      REQUIRE(append_one(*s, StreamId{"Order", "1"}, ExpectedVersion::any(), e)->deduplicated);
      CHECK(metrics.counters().syncs == (full ? 1u : 0u));
      CHECK(metrics.counters().appends == 1);
    }
  }

  TEST_CASE("close: twice is fine, later calls are kClosed, a read under way finishes") {
    TempDir dir("es-sqlite");
    const std::string path = dir.file("events.db");
    auto s = open_sqlite_events(path);
    for (int i = 0; i < 5; ++i)
      REQUIRE(append_one(*s, StreamId{"Order", "1"}, ExpectedVersion::any(), new_event("E")).ok());
    int seen = 0;
    REQUIRE(s->read_all({}, [&](const EventRecord&) {
               if (++seen == 1) CHECK(s->close().ok());
               return true;
             }).ok());
    CHECK(seen == 5);
    CHECK(s->close().ok());
    CHECK(s->close().ok());
    const StreamId a{"Order", "1"};
    auto appended = append_one(*s, a, ExpectedVersion::any(), new_event("E"));
    CHECK(appended.status().code() == Code::kClosed);
    CHECK(mentions(appended.status(), path));
    CHECK(s->read_all({}, [](const EventRecord&) { return true; }).code() == Code::kClosed);
    CHECK(s->read_stream(a, {}, [](const EventRecord&) { return true; }).code() == Code::kClosed);
    CHECK(s->current_position().status().code() == Code::kClosed);
    CHECK(s->stream_version(a).status().code() == Code::kClosed);
    CHECK(s->event_exists(Uuid::random()).status().code() == Code::kClosed);
    // Every connection is closed: the last one checkpointed the WAL away.
    CHECK_FALSE(std::filesystem::exists(path + "-wal"));
    CHECK(open_sqlite_events(path)->current_position()->value == 5);
  }
}

}  // namespace
}  // namespace eventsource
