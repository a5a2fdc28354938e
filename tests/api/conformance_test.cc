// The EventStore conformance suite: the same cases against every backend,
// so that no backend drifts from event_store.h's rules. Every backend must
// pass all of it; a new backend adds one entry to backends() below.
#include <doctest/doctest.h>

#include <atomic>
#include <barrier>
#include <functional>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/engine_event_store.h"
#include "eventsource/event_store.h"
#include "eventsource/memory_event_store.h"
#include "eventsource/sqlite_event_store.h"
#include "tests/api/api_test_support.h"
#include "tests/support/temp_dir.h"

namespace eventsource {
namespace {

using testing::append_one;
using testing::new_event;
using testing::open_sqlite_events;
using testing::read_all_stored;
using testing::TempDir;
using testing::with_id;

struct BackendUnderTest {
  std::string name;
  bool durable;  // survives close and open again in the same directory
  // Opens the backend's store in `dir` (again, for a reopen).
  std::function<std::unique_ptr<EventStore>(const std::string& dir)> open;
};

std::unique_ptr<EventStore> open_engine(const std::string& dir) {
  EngineEventStoreOptions o;
  o.store.segment_size = 4 << 20;  // a batch of kMaxBatchEvents small events fits
  o.store.durability = Durability::kNone;
  auto r = EngineEventStore::open(dir + "/events.es", o);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

std::unique_ptr<EventStore> open_sqlite(const std::string& dir) {
  // NORMAL: no fsync per append; these cases test rules, not durability.
  return open_sqlite_events(dir + "/events.db", {.synchronous_full = false});
}

// Add a backend here. `durable` backends also run the reopen cases.
std::vector<BackendUnderTest> backends() {
  return {
      {"engine", true, open_engine},
      {"memory", false, [](const std::string&) { return std::make_unique<InMemoryEventStore>(); }},
      {"sqlite", true, open_sqlite},
  };
}

// Runs `body` once per backend, each in its own subcase and directory.
#define FOR_EACH_BACKEND(b, dir)                \
  for (const BackendUnderTest& b : backends())  \
    if (TempDir dir("es-conformance"); false) { \
    } else                                      \
      SUBCASE(b.name.c_str())

StreamId order(std::string id) { return StreamId{"Order", std::move(id)}; }

std::vector<uint64_t> positions(const std::vector<StoredEvent>& events) {
  std::vector<uint64_t> out;
  for (const auto& e : events) out.push_back(e.position.value);
  return out;
}

std::vector<uint64_t> versions(const std::vector<StoredEvent>& events) {
  std::vector<uint64_t> out;
  for (const auto& e : events) out.push_back(e.version.value);
  return out;
}

uint64_t position_of(const EventStore& s) {
  auto p = s.current_position();
  REQUIRE(p.ok());
  return p->value;
}

uint64_t version_of(const EventStore& s, const StreamId& stream) {
  auto v = s.stream_version(stream);
  REQUIRE(v.ok());
  return v->value;
}

TEST_SUITE("api-conformance") {
  TEST_CASE("every expected-version rule, and conflicts carry both versions") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      const StreamId a = order("a");
      // no_stream: only on a new stream.
      REQUIRE(append_one(*s, a, ExpectedVersion::no_stream(), new_event("Placed")).ok());
      auto r = append_one(*s, a, ExpectedVersion::no_stream(), new_event("Placed"));
      REQUIRE(r.status().code() == Code::kConflict);
      CHECK(r.status().actual_version() == 1);
      CHECK(r.status().expected_version() == 0);
      CHECK(r.status().message().find("Order-a") != std::string::npos);
      // exists: only on an existing stream.
      CHECK(append_one(*s, order("b"), ExpectedVersion::exists(), new_event("X")).status().code() ==
            Code::kConflict);
      auto ok = append_one(*s, a, ExpectedVersion::exists(), new_event("ItemAdded"));
      REQUIRE(ok.ok());
      CHECK(ok->version.value == 2);
      // exact: only at that version.
      r = append_one(*s, a, ExpectedVersion::exact(StreamVersion(1)), new_event("ItemAdded"));
      REQUIRE(r.status().code() == Code::kConflict);
      CHECK(r.status().actual_version() == 2);
      CHECK(r.status().expected_version() == 1);
      REQUIRE(
          append_one(*s, a, ExpectedVersion::exact(StreamVersion(2)), new_event("ItemAdded")).ok());
      // exact(0) is no_stream.
      CHECK(append_one(*s, order("c"), ExpectedVersion::exact(StreamVersion(0)), new_event("P"))
                .ok());
      CHECK(append_one(*s, order("c"), ExpectedVersion::exact(StreamVersion(0)), new_event("P"))
                .status()
                .code() == Code::kConflict);
      // any: always.
      CHECK(append_one(*s, a, ExpectedVersion::any(), new_event("Shipped"))->version.value == 4);
      CHECK(append_one(*s, order("d"), ExpectedVersion::any(), new_event("P"))->version.value == 1);
      // A refused append wrote nothing.
      CHECK(version_of(*s, a) == 4);
      CHECK(position_of(*s) == 6);
    }
  }

  TEST_CASE("an idempotent retry writes nothing and answers as the first append did") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      const StreamId a = order("a");
      const std::vector<NewEvent> batch = {with_id(new_event("Placed"), Uuid::random()),
                                           with_id(new_event("ItemAdded"), Uuid::random())};
      auto first = s->append_events(a, ExpectedVersion::no_stream(), batch);
      REQUIRE(first.ok());
      CHECK_FALSE(first->deduplicated);
      // The same batch again, with the same expectation: a retry.
      auto again = s->append_events(a, ExpectedVersion::no_stream(), batch);
      REQUIRE_MESSAGE(again.ok(), again.status().to_string());
      CHECK(again->deduplicated);
      CHECK(again->first_position == first->first_position);
      CHECK(again->last_position == first->last_position);
      CHECK(again->version.value == 2);
      CHECK(position_of(*s) == 2);
      // With any(), even after other appends landed.
      REQUIRE(append_one(*s, a, ExpectedVersion::any(), new_event("Shipped")).ok());
      auto later = s->append_events(a, ExpectedVersion::any(), batch);
      REQUIRE(later.ok());
      CHECK(later->deduplicated);
      CHECK(later->version.value == 3);
      // A retry whose expectation no longer holds is a conflict.
      auto stale = s->append_events(a, ExpectedVersion::exact(StreamVersion(2)), batch);
      CHECK(stale.status().code() == Code::kConflict);
      CHECK(position_of(*s) == 3);
      CHECK(read_all_stored(*s).size() == 3);
    }
  }

  TEST_CASE("reusing a stored id any other way is a duplicate, and nothing is written") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      const Uuid x = Uuid::random(), y = Uuid::random();
      REQUIRE(s->append_events(order("a"), ExpectedVersion::any(),
                               std::vector{with_id(new_event("P"), x), with_id(new_event("Q"), y)})
                  .ok());
      // Part of the batch: stored and new ids mixed.
      auto mixed = s->append_events(order("a"), ExpectedVersion::any(),
                                    std::vector{with_id(new_event("P"), x), new_event("New")});
      CHECK(mixed.status().code() == Code::kDuplicateEvent);
      // Another order.
      auto swapped =
          s->append_events(order("a"), ExpectedVersion::any(),
                           std::vector{with_id(new_event("Q"), y), with_id(new_event("P"), x)});
      CHECK(swapped.status().code() == Code::kDuplicateEvent);
      // Another stream.
      auto elsewhere =
          append_one(*s, order("b"), ExpectedVersion::any(), with_id(new_event("P"), x));
      CHECK(elsewhere.status().code() == Code::kDuplicateEvent);
      CHECK(elsewhere.status().message().find("Order-a") != std::string::npos);
      // Twice in one batch.
      const Uuid z = Uuid::random();
      auto twice =
          s->append_events(order("c"), ExpectedVersion::any(),
                           std::vector{with_id(new_event("P"), z), with_id(new_event("P"), z)});
      CHECK(twice.status().code() == Code::kInvalidArgument);
      CHECK(position_of(*s) == 2);
      CHECK(version_of(*s, order("b")) == 0);
      auto exists = s->event_exists(z);
      REQUIRE(exists.ok());
      CHECK_FALSE(*exists);
      CHECK(*s->event_exists(x));
    }
  }

  TEST_CASE("empty, oversized and malformed batches are refused whole") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      CHECK(s->append_events(order("a"), ExpectedVersion::any(), std::vector<NewEvent>{})
                .status()
                .code() == Code::kInvalidArgument);
      std::vector<NewEvent> big(kMaxBatchEvents + 1, new_event("Tick", "1"));
      CHECK(s->append_events(order("a"), ExpectedVersion::any(), big).status().code() ==
            Code::kInvalidArgument);
      big.pop_back();
      auto most = s->append_events(order("a"), ExpectedVersion::any(), big);
      REQUIRE_MESSAGE(most.ok(), most.status().to_string());
      CHECK(most->last_position.value == kMaxBatchEvents);
      // One bad event spoils the batch.
      std::vector<NewEvent> bad = {new_event("Fine"), new_event("")};
      CHECK(s->append_events(order("b"), ExpectedVersion::any(), bad).status().code() ==
            Code::kInvalidArgument);
      bad[1] = new_event("Fine");
      bad[1].metadata = "[1, 2]";
      CHECK(s->append_events(order("b"), ExpectedVersion::any(), bad).status().code() ==
            Code::kInvalidArgument);
      bad[1].metadata = "{\"unclosed\": ";
      CHECK(s->append_events(order("b"), ExpectedVersion::any(), bad).status().code() ==
            Code::kInvalidArgument);
      bad[1].metadata = {};
      bad[1].schema_version = 0;
      CHECK(s->append_events(order("b"), ExpectedVersion::any(), bad).status().code() ==
            Code::kInvalidArgument);
      CHECK(append_one(*s, StreamId{"Bad-Type", "1"}, ExpectedVersion::any(), new_event("P"))
                .status()
                .code() == Code::kInvalidArgument);
      CHECK(append_one(*s, StreamId{"", "1"}, ExpectedVersion::any(), new_event("P"))
                .status()
                .code() == Code::kInvalidArgument);
      CHECK(version_of(*s, order("b")) == 0);
      CHECK(position_of(*s) == kMaxBatchEvents);
    }
  }

  TEST_CASE("the global feed is dense and in order, across refused appends") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      const Uuid dup = Uuid::random();
      std::vector<uint64_t> want;
      for (int i = 0; i < 60; ++i) {
        const StreamId st = order(std::to_string(i % 7));
        const uint64_t before = version_of(*s, st);
        auto r = append_one(*s, st, ExpectedVersion::exact(StreamVersion(before)), new_event("E"));
        REQUIRE(r.ok());
        want.push_back(r->last_position.value);
        // Refused appends in between must leave no gap.
        CHECK(append_one(*s, st, ExpectedVersion::exact(StreamVersion(before)), new_event("E"))
                  .status()
                  .code() == Code::kConflict);
        if (i == 0)
          REQUIRE(append_one(*s, order("dup"), ExpectedVersion::any(), with_id(new_event("D"), dup))
                      .ok());
        if (i == 0) want.push_back(2);
        CHECK(append_one(*s, order("x"), ExpectedVersion::any(), with_id(new_event("D"), dup))
                  .status()
                  .code() == Code::kDuplicateEvent);
      }
      const auto events = read_all_stored(*s);
      std::vector<uint64_t> dense(events.size());
      for (size_t i = 0; i < dense.size(); ++i) dense[i] = i + 1;
      CHECK(positions(events) == dense);
      CHECK(events.size() == 61);
      // Each stream's versions are dense too.
      for (int k = 0; k < 7; ++k) {
        auto got = s->get_events(order(std::to_string(k)));
        REQUIRE(got.ok());
        for (size_t i = 0; i < got->size(); ++i) CHECK((*got)[i].version.value == i + 1);
      }
      // From a position, with a limit.
      CHECK(positions(read_all_stored(*s, {.from = GlobalPosition(50), .max_count = 5})) ==
            std::vector<uint64_t>{50, 51, 52, 53, 54});
      CHECK(read_all_stored(*s, {.from = GlobalPosition(62)}).empty());
      CHECK(read_all_stored(*s, {.max_count = 0}).empty());
      CHECK(position_of(*s) == 61);
    }
  }

  TEST_CASE("read_stream: forward, backward, version ranges and limits") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      const StreamId a = order("a");
      for (int i = 0; i < 10; ++i) {
        REQUIRE(append_one(*s, a, ExpectedVersion::any(), new_event("E")).ok());
        REQUIRE(append_one(*s, order("other"), ExpectedVersion::any(), new_event("E")).ok());
      }
      auto read = [&](StreamReadOptions o) {
        auto r = s->get_events(a, o);
        REQUIRE(r.ok());
        return versions(*r);
      };
      using V = std::vector<uint64_t>;
      const auto back = ReadDirection::kBackward;
      CHECK(read({}) == V{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
      CHECK(read({.from = StreamVersion(8)}) == V{8, 9, 10});
      CHECK(read({.from = StreamVersion(3), .to = StreamVersion(5)}) == V{3, 4, 5});
      CHECK(read({.from = StreamVersion(3), .max_count = 2}) == V{3, 4});
      CHECK(read({.from = StreamVersion(11)}).empty());
      CHECK(read({.max_count = 0}).empty());
      CHECK(read({.direction = back}) == V{10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
      CHECK(read({.from = StreamVersion(4), .direction = back}) == V{4, 3, 2, 1});
      CHECK(read({.from = StreamVersion(99), .max_count = 2, .direction = back}) == V{10, 9});
      CHECK(read({.from = StreamVersion(7), .to = StreamVersion(5), .direction = back}) ==
            V{7, 6, 5});
      // Positions belong to the events: the other stream's interleave.
      auto events = s->get_events(a);
      REQUIRE(events.ok());
      CHECK((*events)[1].position.value == 3);
      // A missing stream reads as empty.
      auto none = s->get_events(order("missing"));
      REQUIRE(none.ok());
      CHECK(none->empty());
      CHECK(version_of(*s, order("missing")) == 0);
      CHECK(version_of(*s, a) == 10);
      // Stopping early.
      int seen = 0;
      REQUIRE(s->read_stream(a, {}, [&](const EventRecord&) { return ++seen < 3; }).ok());
      CHECK(seen == 3);
    }
  }

  TEST_CASE("every read_all filter, alone and combined, and read_category") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      // 24 events: 3 stream types x 2 tenants (and none) x types, times 100..123.
      const char* types[] = {"Order", "Cart", "User"};
      const char* tenants[] = {"acme", "globex", ""};
      for (int i = 0; i < 24; ++i) {
        NewEvent e = new_event(i % 2 ? "Odd" : "Even");
        e.tenant = tenants[i % 3];
        e.timestamp_us = 100 + i;
        REQUIRE(append_one(*s, StreamId{types[(i / 3) % 3], std::to_string(i % 4)},
                           ExpectedVersion::any(), e)
                    .ok());
      }
      const auto everything = read_all_stored(*s);
      REQUIRE(everything.size() == 24);
      // Every filter against the same predicate evaluated here.
      auto expect = [&](const AllReadOptions& o) {
        std::vector<uint64_t> want;
        for (const auto& e : everything) {
          if (e.position < o.from || want.size() >= o.max_count) continue;
          bool ok = (o.event_types.empty() ||
                     std::count(o.event_types.begin(), o.event_types.end(), e.type)) &&
                    (o.stream_types.empty() ||
                     std::count(o.stream_types.begin(), o.stream_types.end(), e.stream.type)) &&
                    (!o.tenant || *o.tenant == e.tenant) && e.timestamp_us >= o.from_time_us;
          if (ok) want.push_back(e.position.value);
        }
        return want;
      };
      std::vector<AllReadOptions> cases = {
          {.event_types = {"Odd"}},
          {.event_types = {"Odd", "Even"}},
          {.event_types = {"Nope"}},
          {.stream_types = {"Cart"}},
          {.stream_types = {"Cart", "User"}},
          {.tenant = "acme"},
          {.tenant = ""},
          {.from_time_us = 117},
          {.from = GlobalPosition(5), .max_count = 3, .event_types = {"Even"}, .tenant = "globex"},
          {.max_count = 2, .stream_types = {"Order", "User"}, .tenant = "acme"},
          {.from = GlobalPosition(3),
           .max_count = 4,
           .stream_types = {"User", "Cart"},
           .from_time_us = 105},
          {.event_types = {"Odd"},
           .stream_types = {"Order"},
           .tenant = "globex",
           .from_time_us = 101},
      };
      for (size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(i);
        const auto want = expect(cases[i]);
        CHECK(positions(read_all_stored(*s, cases[i])) == want);
        if (i != 2) CHECK_FALSE(want.empty());
      }
      // A category: one stream type, for a tenant, from a position or a time.
      auto category = [&](const CategoryReadOptions& o) {
        std::vector<uint64_t> got;
        REQUIRE(s->read_category("Cart", o, [&](const EventRecord& e) {
                   CHECK(e.stream_type == "Cart");
                   got.push_back(e.position.value);
                   return true;
                 }).ok());
        return got;
      };
      CHECK(category({}) == expect({.stream_types = {"Cart"}}));
      CHECK(category({.tenant = "acme"}) == expect({.stream_types = {"Cart"}, .tenant = "acme"}));
      CHECK(category({.from = GlobalPosition(12)}) ==
            expect({.from = GlobalPosition(12), .stream_types = {"Cart"}}));
      CHECK(category({.from_time_us = 112}) ==
            expect({.stream_types = {"Cart"}, .from_time_us = 112}));
      CHECK(s->read_category("", {}, [](const EventRecord&) { return true; }).code() ==
            Code::kInvalidArgument);
    }
  }

  TEST_CASE("appending a moved vector stores the same as appending a span") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      NewEvent e = new_event("Placed", std::string(300, 'p'));
      e.actor = "alice";
      e.metadata = "{\"k\":1}";
      e.schema_version = 2;
      e.tenant = "acme";
      const std::vector<NewEvent> batch = {e, new_event("Shipped", "{\"t\":1}")};
      REQUIRE(s->append_events(order("span"), ExpectedVersion::no_stream(), batch).ok());
      std::vector<NewEvent> owned = batch;
      auto r = s->append_events(order("moved"), ExpectedVersion::no_stream(), std::move(owned));
      REQUIRE(r.ok());
      CHECK(r->last_position.value == 4);
      // Refused like a span: a conflict, with nothing written.
      std::vector<NewEvent> again = batch;
      CHECK(s->append_events(order("moved"), ExpectedVersion::no_stream(), std::move(again))
                .status()
                .code() == Code::kConflict);
      auto a = s->get_events(order("span"));
      auto m = s->get_events(order("moved"));
      REQUIRE((a.ok() && m.ok()));
      REQUIRE(a->size() == 2);
      REQUIRE(m->size() == 2);
      for (size_t i = 0; i < 2; ++i) {
        CHECK((*m)[i].payload == (*a)[i].payload);
        CHECK((*m)[i].type == (*a)[i].type);
        CHECK((*m)[i].tenant == (*a)[i].tenant);
        CHECK((*m)[i].actor == (*a)[i].actor);
        CHECK((*m)[i].metadata == (*a)[i].metadata);
        CHECK((*m)[i].schema_version == (*a)[i].schema_version);
      }
      CHECK(position_of(*s) == 4);
    }
  }

  TEST_CASE("events stamped before 1970 are read like any other") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      NewEvent old = new_event("Founded");
      old.timestamp_us = -86'400'000'000;  // 1969-12-31
      REQUIRE(append_one(*s, order("a"), ExpectedVersion::any(), old).ok());
      auto events = read_all_stored(*s);
      REQUIRE(events.size() == 1);
      CHECK(events[0].timestamp_us == old.timestamp_us);
      CHECK(read_all_stored(*s, {.from_time_us = -86'400'000'001}).size() == 1);
      CHECK(read_all_stored(*s, {.from_time_us = 0}).empty());
      size_t n = 0;
      REQUIRE(s->read_category("Order", {}, [&](const EventRecord&) { return ++n > 0; }).ok());
      CHECK(n == 1);
    }
  }

  TEST_CASE("a tenant's reads never see another tenant's events") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      for (int i = 0; i < 40; ++i) {
        NewEvent e = new_event("Placed", "{\"n\":" + std::to_string(i) + "}");
        e.tenant = i % 2 ? "acme" : "globex";
        // Same stream names under both tenants.
        REQUIRE(append_one(*s, order(std::to_string(i % 5)), ExpectedVersion::any(), e).ok());
      }
      for (const char* t : {"acme", "globex"}) {
        CAPTURE(t);
        size_t n = 0;
        REQUIRE(s->read_all({.tenant = t}, [&](const EventRecord& e) {
                   CHECK(e.tenant == t);
                   ++n;
                   return true;
                 }).ok());
        CHECK(n == 20);
        n = 0;
        REQUIRE(s->read_category("Order", {.tenant = t}, [&](const EventRecord& e) {
                   CHECK(e.tenant == t);
                   ++n;
                   return true;
                 }).ok());
        CHECK(n == 20);
      }
      CHECK(read_all_stored(*s, {.tenant = "initech"}).empty());
    }
  }

  TEST_CASE("the whole envelope comes back byte for byte, after reopen for durable backends") {
    FOR_EACH_BACKEND(b, dir) {
      NewEvent e = new_event("Placed", std::string("{\"bin\":\"\0\xff\xfe\",\"x\":1}", 19));
      e.schema_version = 3;
      e.id = Uuid::random();
      e.tenant = "t\xc3\xa9nant";
      e.timestamp_us = 1'700'000'000'123'456;
      e.correlation_id = Uuid::random();
      e.causation_id = Uuid::random();
      e.actor = "alice@example.com";
      e.metadata = "{\"ip\":\"10.0.0.1\",\"nested\":{\"a\":[1,2]}}";
      NewEvent plain = new_event("Shipped");
      const StreamId odd{"Order", std::string("id\0with\xffraw", 11)};
      StoredEvent first, second;
      {
        auto s = b.open(dir.path());
        REQUIRE(s->append_events(odd, ExpectedVersion::no_stream(), std::vector{e, plain}).ok());
        auto got = s->get_events(odd);
        REQUIRE(got.ok());
        REQUIRE(got->size() == 2);
        first = (*got)[0];
        second = (*got)[1];
        REQUIRE(s->close().ok());
        REQUIRE(s->close().ok());  // idempotent
      }
      CHECK(first.payload == e.payload);
      CHECK(first.schema_version == 3);
      CHECK(first.id == e.id);
      CHECK(first.tenant == e.tenant);
      CHECK(first.timestamp_us == e.timestamp_us);
      CHECK(first.correlation_id == e.correlation_id);
      CHECK(first.causation_id == e.causation_id);
      CHECK(first.actor == e.actor);
      CHECK(first.metadata == e.metadata);
      CHECK(first.stream == odd);
      CHECK(first.type == "Placed");
      CHECK(first.version.value == 1);
      CHECK(first.position.value == 1);
      // Defaults: schema 1, no actor or metadata, a fresh id, now.
      CHECK(second.schema_version == 1);
      CHECK(second.actor.empty());
      CHECK(second.metadata.empty());
      CHECK_FALSE(second.id.is_nil());
      CHECK(second.timestamp_us > 1'700'000'000'000'000);
      if (b.durable) {
        auto s = b.open(dir.path());
        auto got = s->get_events(odd);
        REQUIRE(got.ok());
        REQUIRE(got->size() == 2);
        CHECK((*got)[0] == first);
        CHECK((*got)[1] == second);
        CHECK(*s->event_exists(e.id));
        CHECK(position_of(*s) == 2);
        CHECK(version_of(*s, odd) == 2);
        // The rules hold across the reopen: a retry, then a conflict.
        NewEvent plain_again = plain;
        plain_again.id = second.id;
        auto retry =
            s->append_events(odd, ExpectedVersion::no_stream(), std::vector{e, plain_again});
        REQUIRE_MESSAGE(retry.ok(), retry.status().to_string());
        CHECK(retry->deduplicated);
        CHECK(append_one(*s, odd, ExpectedVersion::exact(StreamVersion(1)), new_event("X"))
                  .status()
                  .code() == Code::kConflict);
      }
    }
  }

  TEST_CASE("concurrent appenders to one stream: exactly one wins each version") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      const StreamId hot = order("hot");
      constexpr int kThreads = 6, kRounds = 40;
      std::atomic<int> wins{0}, conflicts{0}, other{0};
      std::vector<int> wins_per_round(kRounds, 0);
      std::barrier sync(kThreads);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
          for (int round = 0; round < kRounds; ++round) {
            sync.arrive_and_wait();
            auto r = append_one(*s, hot, ExpectedVersion::exact(StreamVersion(round)),
                                new_event("Bid", "{\"t\":" + std::to_string(t) + "}"));
            if (r.ok()) {
              ++wins;
              __atomic_add_fetch(&wins_per_round[round], 1, __ATOMIC_RELAXED);
            } else if (r.status().code() == Code::kConflict) {
              ++conflicts;
            } else {
              ++other;
            }
            sync.arrive_and_wait();
          }
        });
      for (auto& t : threads) t.join();
      CHECK(other == 0);
      CHECK(wins == kRounds);
      CHECK(conflicts == kRounds * (kThreads - 1));
      for (int round = 0; round < kRounds; ++round) CHECK(wins_per_round[round] == 1);
      CHECK(version_of(*s, hot) == kRounds);
      CHECK(positions(read_all_stored(*s)).back() == kRounds);
    }
  }

  TEST_CASE("many threads appending and reading at once keep the feed whole") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      constexpr int kWriters = 4, kPerWriter = 150;
      std::atomic<bool> done{false};
      std::atomic<int> failures{0};
      std::vector<std::thread> threads;
      for (int w = 0; w < kWriters; ++w)
        threads.emplace_back([&, w] {
          for (int i = 0; i < kPerWriter; ++i)
            if (!append_one(*s, order("w" + std::to_string(w)), ExpectedVersion::any(),
                            new_event("E"))
                     .ok())
              ++failures;
        });
      threads.emplace_back([&] {
        while (!done) {
          uint64_t expect = 1;
          Status st = s->read_all({}, [&](const EventRecord& e) {
            if (e.position.value != expect++) ++failures;
            return true;
          });
          if (!st.ok()) ++failures;
        }
      });
      for (int w = 0; w < kWriters; ++w) threads[w].join();
      done = true;
      threads.back().join();
      CHECK(failures == 0);
      CHECK(position_of(*s) == kWriters * kPerWriter);
    }
  }

  TEST_CASE("a callback may read the store again, and one that throws becomes an error") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      for (int i = 0; i < 5; ++i)
        REQUIRE(
            append_one(*s, order(std::to_string(i)), ExpectedVersion::any(), new_event("E")).ok());
      size_t inner = 0;
      REQUIRE(s->read_all({}, [&](const EventRecord& e) {
                 auto nested = s->get_events(e.stream());
                 REQUIRE(nested.ok());
                 inner += nested->size();
                 return version_of(*s, e.stream()) == 1;
               }).ok());
      CHECK(inner == 5);
      Status thrown = s->read_all({}, [](const EventRecord& e) -> bool {
        if (e.position.value == 3) throw std::runtime_error("handler broke");
        return true;
      });
      CHECK(thrown.code() == Code::kInvalidArgument);
      CHECK(thrown.message().find("handler broke") != std::string::npos);
      CHECK(thrown.message().find("position 3") != std::string::npos);
      Status stream_throw =
          s->read_stream(order("1"), {}, [](const EventRecord&) -> bool { throw 42; });
      CHECK(stream_throw.code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("after close every call is refused with kClosed") {
    FOR_EACH_BACKEND(b, dir) {
      auto s = b.open(dir.path());
      REQUIRE(append_one(*s, order("a"), ExpectedVersion::any(), new_event("E")).ok());
      REQUIRE(s->close().ok());
      CHECK(append_one(*s, order("a"), ExpectedVersion::any(), new_event("E")).status().code() ==
            Code::kClosed);
      CHECK(s->read_all({}, [](const EventRecord&) { return true; }).code() == Code::kClosed);
      CHECK(s->read_stream(order("a"), {}, [](const EventRecord&) { return true; }).code() ==
            Code::kClosed);
      CHECK(s->current_position().status().code() == Code::kClosed);
      CHECK(s->stream_version(order("a")).status().code() == Code::kClosed);
      CHECK(s->event_exists(Uuid::random()).status().code() == Code::kClosed);
      CHECK(s->close().ok());
    }
  }
}

}  // namespace
}  // namespace eventsource
