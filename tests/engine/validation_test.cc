// Bad input is an error value, never a crash: malformed streams, events and
// batches are refused with kInvalidArgument and change nothing; writes on a
// read-only store are kReadOnly; every call on a closed store is kClosed;
// bad options and files that are not stores are refused untouched.
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

struct BadAppend {
  std::string name;
  StreamId stream;
  std::vector<EventData> events;
};

std::vector<BadAppend> bad_appends() {
  const StreamId good{"Order", "1"};
  const EventData ok = make_event("Placed", "{}");
  std::vector<BadAppend> cases;
  auto with = [&](const std::string& name, const std::function<void(EventData&)>& change) {
    EventData e = ok;
    change(e);
    cases.push_back({name, good, {e}});
  };
  with("empty event type", [](EventData& e) { e.type = ""; });
  with("event type of 256 bytes", [](EventData& e) { e.type = std::string(256, 't'); });
  with("tenant of 256 bytes", [](EventData& e) { e.tenant = std::string(256, 'x'); });
  with("metadata over 64 KiB", [](EventData& e) { e.metadata = std::string(64 * 1024 + 1, 'm'); });
  with("payload larger than a segment",
       [](EventData& e) { e.payload = std::string(2 * kMiB, 'p'); });
  cases.push_back({"empty stream type", StreamId{"", "1"}, {ok}});
  cases.push_back({"stream type with '-'", StreamId{"Or-der", "1"}, {ok}});
  cases.push_back({"stream type of 256 bytes", StreamId{std::string(256, 's'), "1"}, {ok}});
  cases.push_back({"empty stream id", StreamId{"Order", ""}, {ok}});
  cases.push_back({"batch of 0 events", good, {}});
  {
    EventData a = make_event("Placed", "a");
    EventData b = make_event("Placed", "b");
    a.id = b.id = make_uuid(42, 42);
    cases.push_back({"duplicate event ids in one batch", good, {a, b}});
  }
  {
    std::vector<EventData> events(3, ok);
    for (size_t i = 0; i < events.size(); ++i) events[i].id = make_uuid(7, i);
    events[2].type = "";
    cases.push_back({"one bad event among good ones", good, events});
  }
  return cases;
}

TEST_SUITE("validation") {
  TEST_CASE("malformed appends are refused with kInvalidArgument and change nothing") {
    TempDir dir("es-valid");
    const std::string path = dir.file("valid.evs");
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    std::vector<EventData> first = {make_event("Placed", "first")};
    EVENTSOURCE_REQUIRE_OK(store->append(StreamId{"Order", "1"}, ExpectedVersion::any(), first));

    for (const BadAppend& c : bad_appends()) {
      INFO("case: " << c.name);
      for (const ExpectedVersion& expected :
           {ExpectedVersion::any(), ExpectedVersion::exact(StreamVersion(1))}) {
        Result<AppendResult> r = store->append(c.stream, expected, c.events);
        INFO("append -> " << r.status().to_string());
        CHECK(r.status().code() == Code::kInvalidArgument);
        CHECK_FALSE(r.status().message().empty());
      }
      CHECK(store->committed_position() == GlobalPosition(1));
      CHECK(store->stream_version(StreamId{"Order", "1"}) == StreamVersion(1));
    }
    CHECK(store->list_streams().size() == 1);
    // The store is still fine for good appends, and the refused ones left no trace.
    std::vector<EventData> second = {make_event("Placed", "second")};
    Result<AppendResult> r = store->append(StreamId{"Order", "1"}, ExpectedVersion::any(), second);
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK(r->first_position == GlobalPosition(2));
    EVENTSOURCE_REQUIRE_OK(store->close());
    std::unique_ptr<Store> reopened = open_or_fail(path, small_store_options());
    CHECK(reopened->committed_position() == GlobalPosition(2));
    EVENTSOURCE_CHECK_OK(reopened->close());
  }

  TEST_CASE("stream names are validated and parsed at the first '-'") {
    CHECK(StreamId{"Order", "42"}.validate().ok());
    CHECK(StreamId{"Order", "a-b-c"}.validate().ok());
    CHECK(StreamId{"", "42"}.validate().code() == Code::kInvalidArgument);
    CHECK(StreamId{"Or-der", "42"}.validate().code() == Code::kInvalidArgument);
    CHECK(StreamId{"Order", ""}.validate().code() == Code::kInvalidArgument);
    Result<StreamId> parsed = StreamId::parse("Order-42-x");
    EVENTSOURCE_REQUIRE_OK(parsed);
    CHECK(parsed->type == "Order");
    CHECK(parsed->id == "42-x");
    CHECK(parsed->name() == "Order-42-x");
    CHECK_FALSE(StreamId::parse("NoDash").ok());
    CHECK_FALSE(StreamId::parse("-42").ok());
    CHECK_FALSE(StreamId::parse("Order-").ok());
  }

  TEST_CASE("uuids round-trip through text and random ones are distinct version 4") {
    const Uuid a = Uuid::random();
    const Uuid b = Uuid::random();
    CHECK(a != b);
    CHECK_FALSE(a.is_nil());
    CHECK((a.bytes[6] >> 4) == 4);
    const std::string text = a.to_string();
    CHECK(text.size() == 36);
    std::optional<Uuid> back = Uuid::parse(text);
    REQUIRE(back.has_value());
    CHECK(*back == a);
    CHECK(Uuid().is_nil());
    CHECK_FALSE(Uuid::parse("not-a-uuid").has_value());
    CHECK_FALSE(Uuid::parse(text.substr(1)).has_value());
  }

  TEST_CASE("the largest batch the API allows is appended whole") {
    TempDir dir("es-valid");
    StoreOptions options = small_store_options();
    options.segment_size = 16 * kMiB;
    std::unique_ptr<Store> store = open_or_fail(dir.file("big.evs"), options);
    std::vector<EventData> events(32767, make_event("Tiny", "x"));
    Result<AppendResult> r = store->append(StreamId{"Big", "1"}, ExpectedVersion::any(), events);
    INFO("32767 events -> " << r.status().to_string());
    REQUIRE_MESSAGE(r.ok(),
                    "store.h promises batches of 1..32767 events (esdump and esbench rely on it)");
    CHECK(r->last_position == GlobalPosition(32767));
    CHECK(store->stream_version(StreamId{"Big", "1"}) == StreamVersion(32767));
    events.push_back(make_event("Tiny", "x"));
    Result<AppendResult> too_many =
        store->append(StreamId{"Big", "2"}, ExpectedVersion::any(), events);
    INFO("32768 events -> " << too_many.status().to_string());
    CHECK(too_many.status().code() == Code::kInvalidArgument);
    EVENTSOURCE_CHECK_OK(store->close());
  }

  TEST_CASE("appending to a read-only store fails with kReadOnly") {
    TempDir dir("es-valid");
    const std::string path = dir.file("ro.evs");
    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      std::vector<EventData> events = {make_event("Placed", "one")};
      EVENTSOURCE_REQUIRE_OK(store->append(StreamId{"Order", "1"}, ExpectedVersion::any(), events));
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    const std::string image = read_file(path);
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> store = open_or_fail(path, ro);
    std::vector<EventData> events = {make_event("Placed", "two")};
    Result<AppendResult> r = store->append(StreamId{"Order", "1"}, ExpectedVersion::any(), events);
    INFO("append -> " << r.status().to_string());
    CHECK(r.status().code() == Code::kReadOnly);
    CHECK(store->committed_position() == GlobalPosition(1));
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_CHECK_OK(all.status);
    CHECK(all.events.size() == 1);
    EVENTSOURCE_CHECK_OK(store->close());
    CHECK(read_file(path) == image);  // a read-only handle wrote nothing
  }

  TEST_CASE("every call on a closed store fails with kClosed") {
    TempDir dir("es-valid");
    const std::string path = dir.file("closed.evs");
    for (OpenMode mode : {OpenMode::kReadWrite, OpenMode::kReadOnly}) {
      INFO("mode " << static_cast<int>(mode));
      StoreOptions options = small_store_options();
      options.mode = mode;
      std::unique_ptr<Store> store = open_or_fail(path, options);
      if (mode == OpenMode::kReadWrite) {
        std::vector<EventData> events = {make_event("Placed", "one")};
        EVENTSOURCE_REQUIRE_OK(
            store->append(StreamId{"Order", "1"}, ExpectedVersion::any(), events));
      }
      EVENTSOURCE_REQUIRE_OK(store->close());
      std::vector<EventData> events = {make_event("Placed", "late")};
      EVENTSOURCE_CHECK_CODE(store->append(StreamId{"Order", "1"}, ExpectedVersion::any(), events),
                             Code::kClosed);
      bool called = false;
      auto fn = [&](const RecordedEvent&) {
        called = true;
        return true;
      };
      EVENTSOURCE_CHECK_CODE(store->read_stream(StreamId{"Order", "1"},
                                                {.from = StreamVersion(1), .max_count = 10}, fn),
                             Code::kClosed);
      EVENTSOURCE_CHECK_CODE(store->read_all({.from = GlobalPosition(1), .max_count = 10}, fn),
                             Code::kClosed);
      CHECK_FALSE(called);
      EVENTSOURCE_CHECK_CODE(store->refresh(), Code::kClosed);
      EVENTSOURCE_CHECK_CODE(store->checkpoint(), Code::kClosed);
      EVENTSOURCE_CHECK_OK(store->close());  // idempotent
    }
  }

  TEST_CASE("bad store options are refused with kInvalidArgument") {
    TempDir dir("es-valid");
    for (uint64_t size : {uint64_t{1000}, 3 * kMiB, kMiB / 2, 2048 * kMiB}) {
      INFO("segment_size " << size);
      StoreOptions options = small_store_options();
      options.segment_size = size;
      const std::string path = dir.file("opt-" + std::to_string(size) + ".evs");
      Result<std::unique_ptr<Store>> r = Store::open(path, options);
      INFO("open -> " << r.status().to_string());
      CHECK(r.status().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("opening a missing store with kMustExist or read-only fails and creates nothing") {
    TempDir dir("es-valid");
    const std::string path = dir.file("missing.evs");
    StoreOptions must = small_store_options();
    must.create = CreateMode::kMustExist;
    Result<std::unique_ptr<Store>> r = Store::open(path, must);
    INFO("kMustExist -> " << r.status().to_string());
    CHECK(r.status().code() == Code::kNotFound);
    CHECK(r.status().message().find(path) != std::string::npos);
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    Result<std::unique_ptr<Store>> r2 = Store::open(path, ro);
    INFO("read-only -> " << r2.status().to_string());
    CHECK_FALSE(r2.ok());
    CHECK_FALSE(file_exists(path));
    CHECK_FALSE(file_exists(path + ".ckpt"));
  }

  TEST_CASE("a file that is not a store is refused and left untouched") {
    TempDir dir("es-valid");
    const std::string path = dir.file("notastore.evs");
    std::string junk;
    for (int i = 0; i < 3 * 4096; ++i) junk += static_cast<char>((i * 131 + 7) % 251);
    write_file(path, junk);
    for (OpenMode mode : {OpenMode::kReadWrite, OpenMode::kReadOnly}) {
      INFO("mode " << static_cast<int>(mode));
      StoreOptions options = small_store_options();
      options.mode = mode;
      Result<std::unique_ptr<Store>> r = Store::open(path, options);
      INFO("open -> " << r.status().to_string());
      CHECK_FALSE(r.ok());
      CHECK((r.status().code() == Code::kCorruption || r.status().code() == Code::kNotSupported));
      CHECK(r.status().message().find(path) != std::string::npos);
      CHECK(read_file(path) == junk);
    }
    Result<VerifyReport> report = Store::verify(path);
    CHECK((!report.ok() || !report->clean()));
    CHECK(read_file(path) == junk);
  }
}

}  // namespace
}  // namespace eventsource::testing
