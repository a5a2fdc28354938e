// Reopen tests: what a clean close leaves is read back exactly (read-write
// and read-only), the checkpoint file is only an accelerator (the data file
// alone reopens to the same state), and appends and idempotent retries carry
// on across a reopen.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

struct Snapshot {
  std::vector<OwnedEvent> events;
  std::vector<StreamInfo> streams;
  GlobalPosition committed;
  StoreStats stats;
};

Snapshot take_snapshot(const Store& store) {
  Snapshot s;
  ReadResult all = read_all_events(store);
  EVENTSOURCE_REQUIRE_OK(all.status);
  s.events = std::move(all.events);
  s.streams = store.list_streams();
  s.committed = store.committed_position();
  s.stats = store.stats();
  return s;
}

void require_same_state(const Store& store, const Snapshot& want) {
  const Snapshot got = take_snapshot(store);
  REQUIRE(got.committed == want.committed);
  REQUIRE(got.events.size() == want.events.size());
  for (size_t i = 0; i < got.events.size(); ++i) {
    INFO("event #" << i);
    REQUIRE(got.events[i] == want.events[i]);
  }
  REQUIRE(got.streams.size() == want.streams.size());
  for (size_t i = 0; i < got.streams.size(); ++i) {
    INFO("stream #" << i << " " << want.streams[i].type << "-" << want.streams[i].id);
    CHECK(got.streams[i].type == want.streams[i].type);
    CHECK(got.streams[i].id == want.streams[i].id);
    CHECK(got.streams[i].version == want.streams[i].version);
    // Each stream read on its own matches the global log filtered to it.
    const StreamId id{want.streams[i].type, want.streams[i].id};
    ReadResult one = read_stream_events(store, id);
    EVENTSOURCE_REQUIRE_OK(one.status);
    std::vector<OwnedEvent> expected;
    for (const OwnedEvent& e : want.events) {
      if (e.stream() == id) expected.push_back(e);
    }
    CHECK(one.events == expected);
    CHECK(store.stream_version(id) == want.streams[i].version);
  }
  CHECK(got.stats.events == want.stats.events);
  CHECK(got.stats.streams == want.stats.streams);
  CHECK(got.stats.segment_size == want.stats.segment_size);
  CHECK(got.stats.first_position == want.stats.first_position);
  CHECK(got.stats.last_position == want.stats.last_position);
}

struct LastAppend {
  StreamId stream;
  ExpectedVersion expected = ExpectedVersion::any();
  std::vector<EventData> events;
  AppendResult result;
};

// Appends `appends` seeded batches with every field varied and payloads up to
// 20 KiB (so 1 MiB segments roll). Returns the last append for retries.
LastAppend fill_varied(Store& store, int appends, uint64_t seed) {
  std::mt19937_64 rng(seed);
  LastAppend last;
  for (int a = 0; a < appends; ++a) {
    const StreamId stream{a % 3 == 0 ? "Order" : "Customer", "c" + std::to_string(rng() % 20)};
    std::vector<EventData> events(1 + rng() % 4);
    for (size_t i = 0; i < events.size(); ++i) {
      EventData& e = events[i];
      e.type = "Happened" + std::to_string(rng() % 4);
      e.payload = std::string(rng() % 20000, static_cast<char>('A' + rng() % 26));
      e.payload += "#" + std::to_string(a) + "." + std::to_string(i);
      e.id = make_uuid(seed + a, i);
      e.tenant = rng() % 3 == 0 ? "" : "tenant" + std::to_string(rng() % 2);
      e.timestamp_us = 1'650'000'000'000'000 + a;
      if (rng() % 2) e.correlation_id = make_uuid(rng(), rng());
      if (rng() % 2) e.causation_id = make_uuid(rng(), rng());
      e.metadata = "{\"a\":" + std::to_string(a) + "}";
    }
    const ExpectedVersion expected = ExpectedVersion::exact(store.stream_version(stream));
    Result<AppendResult> r = store.append(stream, expected, events);
    EVENTSOURCE_REQUIRE_OK(r);
    last = LastAppend{stream, expected, events, r.value()};
  }
  return last;
}

TEST_SUITE("reopen") {
  TEST_CASE("a store reopened after a clean close reads back exactly what was written") {
    TempDir dir("es-reopen");
    const std::string path = dir.file("clean.evs");
    Snapshot before;
    LastAppend last;
    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      last = fill_varied(*store, 300, 11);
      before = take_snapshot(*store);
      REQUIRE(before.stats.event_segments >= 2);
      EVENTSOURCE_REQUIRE_OK(store->close());
      EVENTSOURCE_CHECK_OK(store->close());  // idempotent
    }
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    require_same_state(*store, before);

    // Appends continue where the log ended, in the same streams.
    const StreamId stream = last.stream;
    const uint64_t version = store->stream_version(stream).value;
    std::vector<EventData> more = {make_event("After", "after reopen")};
    Result<AppendResult> r =
        store->append(stream, ExpectedVersion::exact(StreamVersion(version)), more);
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK(r->first_position == GlobalPosition(before.committed.value + 1));
    CHECK(r->version == StreamVersion(version + 1));
    EVENTSOURCE_REQUIRE_OK(store->close());

    // A read-only open sees everything, including the append after reopen.
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> reader = open_or_fail(path, ro);
    CHECK(reader->committed_position() == GlobalPosition(before.committed.value + 1));
    ReadResult tail = read_all_events(*reader, before.committed);
    EVENTSOURCE_REQUIRE_OK(tail.status);
    REQUIRE(tail.events.size() == 2);
    CHECK(tail.events[0] == before.events.back());
    CHECK(tail.events[1].payload == "after reopen");
    EVENTSOURCE_CHECK_OK(reader->close());
  }

  TEST_CASE("an idempotent retry is still deduplicated after a reopen") {
    TempDir dir("es-reopen");
    const std::string path = dir.file("retry.evs");
    LastAppend last;
    GlobalPosition committed;
    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      last = fill_varied(*store, 40, 12);
      committed = store->committed_position();
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    Result<AppendResult> r = store->append(last.stream, last.expected, last.events);
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK(r->deduplicated);
    CHECK(r->first_position == last.result.first_position);
    CHECK(r->last_position == last.result.last_position);
    CHECK(r->version == last.result.version);
    CHECK(store->committed_position() == committed);
    EVENTSOURCE_CHECK_OK(store->close());
  }

  TEST_CASE("a store reopens from the data file alone when the checkpoint file is missing") {
    TempDir dir("es-reopen");
    const std::string path = dir.file("nockpt.evs");
    Snapshot before;
    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      (void)fill_varied(*store, 200, 13);
      before = take_snapshot(*store);
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    REQUIRE(file_exists(path + ".ckpt"));
    remove_file(path + ".ckpt");
    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      require_same_state(*store, before);
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    CHECK(file_exists(path + ".ckpt"));  // close wrote a new one
    // Read-only without a checkpoint too.
    remove_file(path + ".ckpt");
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> reader = open_or_fail(path, ro);
    require_same_state(*reader, before);
    EVENTSOURCE_CHECK_OK(reader->close());
  }

  TEST_CASE("an empty store reopens empty") {
    TempDir dir("es-reopen");
    const std::string path = dir.file("empty.evs");
    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    CHECK(store->committed_position() == GlobalPosition(0));
    CHECK(store->list_streams().empty());
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_CHECK_OK(all.status);
    CHECK(all.events.empty());
    ReadResult none = read_stream_events(*store, StreamId{"Order", "1"});
    EVENTSOURCE_CHECK_OK(none.status);
    CHECK(none.events.empty());
    CHECK(store->stream_version(StreamId{"Order", "1"}) == StreamVersion(0));
    EVENTSOURCE_CHECK_OK(store->close());
  }

  TEST_CASE("read-only and read-write opens of a file cut short inside a segment agree") {
    // A file copied half-way or truncated ends inside its last segment. The
    // bytes that are there hold events the checkpoint does not cover; a
    // read-write open pads the file (the missing bytes read as zeros: a torn
    // tail) and a read-only one must read the same events without writing.
    TempDir dir("es-reopen");
    const std::string path = dir.file("cut.evs");
    StoreOptions options = small_store_options();  // 1 MiB segments
    std::string image, ckpt;
    uint64_t second_segment = 0;
    {
      std::unique_ptr<Store> store = open_or_fail(path, options);
      const StreamId stream{"Order", "1"};
      for (int i = 0; i < 3200; ++i) {
        if (i == 200) EVENTSOURCE_REQUIRE_OK(store->checkpoint());
        const std::vector<EventData> e = {make_event("Placed", std::string(400, 'p'))};
        EVENTSOURCE_REQUIRE_OK(store->append(stream, ExpectedVersion::any(), e));
      }
      REQUIRE(store->stats().event_segments >= 2);
      image = read_file(path);  // as a crash would leave it: no final checkpoint
      ckpt = read_file(path + ".ckpt");
      // The segment the log rolled into is the last slot (the checkpoint's
      // index segment took the one before it).
      second_segment = image.size() - (1 << 20);
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    // Cut at several places in the second segment: in its header, in a frame
    // header, in a record, and on a page boundary.
    const uint64_t index_segment = second_segment - (1 << 20);
    for (uint64_t cut : {index_segment + 100, index_segment + 3 * 4096, second_segment + 30,
                         second_segment + 64 + 10, second_segment + 20000, second_segment + 65536,
                         second_segment + 300000 + 3}) {
      CAPTURE(cut);
      REQUIRE(cut < image.size());
      write_file(path, std::string_view(image).substr(0, cut));
      write_file(path + ".ckpt", ckpt);
      StoreOptions ro = options;
      ro.mode = OpenMode::kReadOnly;
      uint64_t ro_events = 0;
      {
        std::unique_ptr<Store> reader = open_or_fail(path, ro);
        ReadResult all = read_all_events(*reader);
        EVENTSOURCE_CHECK_OK(all.status);
        ro_events = all.events.size();
        CHECK(reader->committed_position() == GlobalPosition(ro_events));
        CHECK(reader->stream_version(StreamId{"Order", "1"}) == StreamVersion(ro_events));
        EVENTSOURCE_CHECK_OK(reader->close());
      }
      CHECK(file_size(path) == cut);  // the read-only open wrote nothing
      {
        // verify reads the same events, and says the file was cut short.
        auto v = Store::verify(path);
        EVENTSOURCE_REQUIRE_OK(v);
        CHECK(v->events == ro_events);
        bool said = false;
        for (const VerifyProblem& q : v->problems)
          said |= q.what.find("the file was cut short") != std::string::npos &&
                  q.offset == static_cast<int64_t>(cut);
        CHECK(said);
      }
      CHECK(ro_events >= 201);  // the checkpointed events at least
      {
        std::unique_ptr<Store> writer = open_or_fail(path, options);
        ReadResult all = read_all_events(*writer);
        EVENTSOURCE_CHECK_OK(all.status);
        CHECK(all.events.size() == ro_events);
        EVENTSOURCE_CHECK_OK(writer->close());
      }
      std::unique_ptr<Store> again = open_or_fail(path, ro);  // the padded file
      CHECK(again->committed_position() == GlobalPosition(ro_events));
      EVENTSOURCE_CHECK_OK(again->close());
    }
    // A read-only handle on the cut file goes on reading when a writer pads
    // it and appends into the slot it had copied.
    write_file(path, std::string_view(image).substr(0, second_segment + 20000));
    write_file(path + ".ckpt", ckpt);
    StoreOptions ro = options;
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> reader = open_or_fail(path, ro);
    const uint64_t before = reader->committed_position().value;
    std::unique_ptr<Store> writer = open_or_fail(path, options);
    for (int i = 0; i < 10; ++i) {
      const std::vector<EventData> e = {make_event("Shipped", std::string(400, 's'))};
      EVENTSOURCE_REQUIRE_OK(writer->append(StreamId{"Order", "2"}, ExpectedVersion::any(), e));
    }
    auto refreshed = reader->refresh();
    EVENTSOURCE_REQUIRE_OK(refreshed);
    CHECK(refreshed->value == before + 10);
    ReadResult all = read_all_events(*reader);
    EVENTSOURCE_CHECK_OK(all.status);
    REQUIRE(all.events.size() == before + 10);
    CHECK(all.events.back().type == "Shipped");
    EVENTSOURCE_CHECK_OK(writer->close());
    EVENTSOURCE_CHECK_OK(reader->close());
  }
}

}  // namespace
}  // namespace eventsource::testing
