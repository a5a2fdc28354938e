// Event ids (format-spec.md [F-25], [F-38]): find_event / event_exists
// through the store-wide id table (in memory, persisted, after reopen, on a
// read-only handle), the id table's own layout and damage, and the append
// rule for every shape of a batch whose ids are already stored: retry,
// duplicate or conflict, never stored twice.
#include <doctest/doctest.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/coding.h"
#include "engine/id_table.h"
#include "eventsource/store.h"
#include "tests/support/files.h"
#include "tests/support/forwarding_os.h"
#include "tests/support/status_text.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

EventData with_id(uint64_t n) {
  EventData e = make_event("T", "payload " + std::to_string(n));
  e.id = make_uuid(0xe1d, n);
  return e;
}

std::vector<EventData> batch_of(std::initializer_list<uint64_t> ids) {
  std::vector<EventData> b;
  for (uint64_t n : ids) b.push_back(with_id(n));
  return b;
}

const StreamId kA{"Order", "a"};
const StreamId kB{"Order", "b"};

// Every event id is stored once: the number of events equals the number of
// distinct ids, and each id is found where read_all sees it.
void check_each_id_once(const Store& store) {
  ReadResult all = read_all_events(store);
  EVENTSOURCE_REQUIRE_OK(all.status);
  std::vector<Uuid> ids;
  for (const OwnedEvent& e : all.events) {
    ids.push_back(e.id);
    auto at = store.find_event(e.id);
    EVENTSOURCE_REQUIRE_OK(at);
    REQUIRE(at->has_value());
    CHECK((*at)->position == e.position);
    CHECK((*at)->stream == e.stream());
    CHECK((*at)->version == e.version);
  }
  std::sort(ids.begin(), ids.end());
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
}

TEST_SUITE("event-ids") {
  TEST_CASE("find_event finds committed events by id: in memory, persisted, after reopen") {
    TempDir dir("es-ids");
    const std::string path = dir.file("s.evs");
    // More events than one persisted block holds, in two checkpoints.
    const uint64_t n = IdTable::kBlockEntries + 700;
    {
      auto store = open_or_fail(path, small_store_options());
      for (uint64_t i = 0; i < n; i += 100) {
        std::vector<EventData> b;
        for (uint64_t k = i; k < std::min(n, i + 100); ++k) b.push_back(with_id(k));
        EVENTSOURCE_REQUIRE_OK(
            store->append(StreamId{"S", std::to_string(i % 7)}, ExpectedVersion::any(), b));
        if (i == 2000) EVENTSOURCE_REQUIRE_OK(store->checkpoint());
      }
      // Half persisted, half in memory.
      check_each_id_once(*store);
      auto missing = store->event_exists(make_uuid(0xe1d, n + 1));
      EVENTSOURCE_REQUIRE_OK(missing);
      CHECK_FALSE(*missing);
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    for (bool read_only : {false, true}) {
      CAPTURE(read_only);
      StoreOptions o = small_store_options();
      if (read_only) o.mode = OpenMode::kReadOnly;
      auto store = open_or_fail(path, o);
      CHECK(store->stats().index_persisted_position == n);
      check_each_id_once(*store);
      auto found = store->find_event(make_uuid(0xe1d, 4321));
      EVENTSOURCE_REQUIRE_OK(found);
      REQUIRE(found->has_value());
      CHECK((*found)->position == GlobalPosition(4322));
      CHECK(*store->event_exists(make_uuid(0xe1d, n - 1)));
      CHECK_FALSE(*store->event_exists(make_uuid(0xe1d, n)));
      CHECK_FALSE(*store->event_exists(Uuid{}));
    }
    // Without a checkpoint the ids come from the scan at open.
    std::filesystem::remove(path + ".ckpt");
    auto store = open_or_fail(path, small_store_options());
    CHECK(store->stats().index_persisted_position == 0);
    check_each_id_once(*store);
  }

  TEST_CASE("generated ids are found too, and closed stores say kClosed") {
    TempDir dir("es-ids");
    auto store = open_or_fail(dir.file("s.evs"), small_store_options());
    EVENTSOURCE_REQUIRE_OK(
        store->append(kA, ExpectedVersion::any(), std::vector{make_event("T", "x")}));
    check_each_id_once(*store);
    EVENTSOURCE_REQUIRE_OK(store->close());
    EVENTSOURCE_CHECK_CODE(store->event_exists(make_uuid(1, 1)), Code::kClosed);
  }

  TEST_CASE("a retry of a stored batch is recognized whatever came after it (any)") {
    TempDir dir("es-ids");
    auto store = open_or_fail(dir.file("s.evs"), small_store_options());
    auto first = store->append(kA, ExpectedVersion::any(), batch_of({1, 2}));
    EVENTSOURCE_REQUIRE_OK(first);
    EVENTSOURCE_REQUIRE_OK(store->append(kB, ExpectedVersion::any(), batch_of({10})));
    EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({3})));
    auto retry = store->append(kA, ExpectedVersion::any(), batch_of({1, 2}));
    EVENTSOURCE_REQUIRE_OK(retry);
    CHECK(retry->deduplicated);
    CHECK(retry->version == StreamVersion(3));  // the stream's current version
    CHECK(retry->first_position == first->first_position);
    CHECK(retry->last_position == first->last_position);
    // The same with the expected version the first append had.
    auto exact = store->append(kA, ExpectedVersion::no_stream(), batch_of({1, 2}));
    EVENTSOURCE_REQUIRE_OK(exact);
    CHECK(exact->deduplicated);
    // A retry of the middle batch of a stream, with exists.
    auto mid = store->append(kA, ExpectedVersion::exists(), batch_of({3}));
    EVENTSOURCE_REQUIRE_OK(mid);
    CHECK(mid->deduplicated);
    CHECK(mid->first_position == GlobalPosition(4));
    // A retry spanning two stored batches of the stream is a retry too:
    // positions 1..4 hold 1, 2, (10 in B), 3.
    auto span = store->append(kA, ExpectedVersion::any(), batch_of({2, 3}));
    EVENTSOURCE_REQUIRE_OK(span);
    CHECK(span->deduplicated);
    CHECK(span->first_position == GlobalPosition(2));
    CHECK(span->last_position == GlobalPosition(4));
    CHECK(store->committed_position() == GlobalPosition(4));
    check_each_id_once(*store);
  }

  TEST_CASE("a retry with an expected version that does not fit where it is stored: kConflict") {
    TempDir dir("es-ids");
    auto store = open_or_fail(dir.file("s.evs"), small_store_options());
    EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({1, 2})));
    EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({3})));
    for (ExpectedVersion e :
         {ExpectedVersion::exact(StreamVersion(3)), ExpectedVersion::exact(StreamVersion(1)),
          ExpectedVersion::exists()}) {
      CAPTURE(e.to_string());
      // (exists does not accept version 0, which the batch was stored after.)
      auto r = store->append(kA, e, batch_of({1, 2}));
      EVENTSOURCE_CHECK_CODE(r, Code::kConflict);
      CHECK(r.status().actual_version() == 3);
      CHECK(r.status().message().find("already stored at versions 1..2") != std::string::npos);
    }
    CHECK(store->committed_position() == GlobalPosition(3));
  }

  TEST_CASE("batches that repeat some stored ids are kDuplicateEvent and write nothing") {
    TempDir dir("es-ids");
    auto store = open_or_fail(dir.file("s.evs"), small_store_options());
    EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({1, 2})));
    EVENTSOURCE_REQUIRE_OK(store->append(kB, ExpectedVersion::any(), batch_of({5})));
    EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({6})));
    struct Shape {
      const char* what;
      StreamId stream;
      std::vector<EventData> batch;
    };
    std::vector<Shape> shapes = {
        {"[E1, e_new] after E1", kA, batch_of({1, 100})},
        {"[e_new, E1]", kA, batch_of({101, 1})},
        {"a partial overlap [E2, e_new]", kA, batch_of({2, 102})},
        {"the stored batch in another order", kA, batch_of({2, 1})},
        {"the stored batch sent to another stream", kB, batch_of({1, 2})},
        {"ids from two streams", kA, batch_of({2, 5})},
        {"one id of another stream", kA, batch_of({5})},
        {"stored at versions that are not consecutive", kA, batch_of({1, 6})},
    };
    // A stored id with a nil-id event beside it is not a whole retry.
    std::vector<EventData> with_nil = batch_of({1, 2});
    with_nil.push_back(make_event("T", "no id"));
    shapes.push_back({"the stored batch plus an event without id", kA, with_nil});
    for (const Shape& s : shapes) {
      CAPTURE(s.what);
      for (ExpectedVersion e : {ExpectedVersion::any(), ExpectedVersion::exact(StreamVersion(3))}) {
        auto r = store->append(s.stream, e, s.batch);
        EVENTSOURCE_CHECK_CODE(r, Code::kDuplicateEvent);
        // The message says where the stored id is.
        CHECK(r.status().message().find("already stored in stream Order-") != std::string::npos);
      }
    }
    CHECK(store->committed_position() == GlobalPosition(4));
    check_each_id_once(*store);
  }

  TEST_CASE("ids are checked against pending batches: an id whose append waits for its sync") {
    // The first append's fdatasync blocks until the second append has been
    // judged: the second must see the pending batch's id.
    struct SlowSyncOs : ForwardingOs {
      std::mutex mu;
      std::condition_variable cv;
      bool block = false, blocked = false, release = false;
      int fdatasync(int fd) override {
        {
          std::unique_lock<std::mutex> lock(mu);
          if (block) {
            blocked = true;
            cv.notify_all();
            cv.wait(lock, [&] { return release; });
            block = false;
          }
        }
        return ForwardingOs::fdatasync(fd);
      }
    };
    auto os = std::make_shared<SlowSyncOs>();
    TempDir dir("es-ids");
    StoreOptions o = small_store_options();
    o.os = os;
    auto store = open_or_fail(dir.file("s.evs"), o);
    EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({1})));
    os->block = true;
    std::thread slow([&] {
      auto r = store->append(kA, ExpectedVersion::any(), batch_of({2, 3}),
                             AppendOptions{.durability = Durability::kEach});
      EVENTSOURCE_CHECK_OK(r);
    });
    {
      std::unique_lock<std::mutex> lock(os->mu);
      os->cv.wait(lock, [&] { return os->blocked; });
    }
    // Pending: invisible to find_event, yet no other batch may store its ids.
    CHECK_FALSE(*store->event_exists(make_uuid(0xe1d, 2)));
    auto dup = store->append(kB, ExpectedVersion::any(), batch_of({3}));
    EVENTSOURCE_CHECK_CODE(dup, Code::kDuplicateEvent);
    {
      std::lock_guard<std::mutex> lock(os->mu);
      os->release = true;
    }
    os->cv.notify_all();
    slow.join();
    CHECK(*store->event_exists(make_uuid(0xe1d, 2)));
    CHECK(store->committed_position() == GlobalPosition(3));
    check_each_id_once(*store);
  }

  TEST_CASE("concurrent appenders retrying the same batch store it once") {
    TempDir dir("es-ids");
    auto store = open_or_fail(dir.file("s.evs"), small_store_options());
    std::vector<std::thread> threads;
    std::atomic<int> written{0}, deduplicated{0};
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&] {
        for (uint64_t b = 0; b < 50; ++b) {
          auto r = store->append(StreamId{"Order", std::to_string(b)}, ExpectedVersion::any(),
                                 batch_of({b * 2, b * 2 + 1}));
          EVENTSOURCE_CHECK_OK(r);
          if (r.ok()) ++(r->deduplicated ? deduplicated : written);
        }
      });
    for (std::thread& t : threads) t.join();
    CHECK(written == 50);
    CHECK(deduplicated == 7 * 50);
    CHECK(store->committed_position() == GlobalPosition(100));
    check_each_id_once(*store);
  }

  TEST_CASE("the id table survives checkpoints and reopen with the retry rule intact") {
    TempDir dir("es-ids");
    const std::string path = dir.file("s.evs");
    {
      auto store = open_or_fail(path, small_store_options());
      EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({1, 2})));
      EVENTSOURCE_REQUIRE_OK(store->checkpoint());
      EVENTSOURCE_REQUIRE_OK(store->append(kA, ExpectedVersion::any(), batch_of({3})));
    }  // closed without an explicit close: the destructor checkpoints
    auto store = open_or_fail(path, small_store_options());
    auto retry = store->append(kA, ExpectedVersion::no_stream(), batch_of({1, 2}));
    EVENTSOURCE_REQUIRE_OK(retry);
    CHECK(retry->deduplicated);
    EVENTSOURCE_CHECK_CODE(store->append(kB, ExpectedVersion::any(), batch_of({3, 4})),
                           Code::kDuplicateEvent);
    auto report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    CHECK(report->clean());
  }
}

TEST_SUITE("event-ids") {
  TEST_CASE("IdTable: equal keys across block boundaries, persisted and in memory") {
    constexpr uint64_t kSeed = 0x0808080808080808ull;
    IdTable t;
    // 3 runs of one key each spanning a block boundary, then distinct keys.
    const uint64_t n = 3 * IdTable::kBlockEntries;
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t key = i < 3000 ? 7 : i < 5000 ? (4096 + 10 < i ? 9 : 8) : i;
      t.add(key << 32 | (i + 1), 0x1000 + i * 8);
    }
    std::string section(IdTable::section_size(n), '\0');
    auto written = t.write_section(reinterpret_cast<uint8_t*>(section.data()), kSeed);
    EVENTSOURCE_REQUIRE_OK(written);
    const uint64_t sum = *written;
    for (bool copy : {true, false}) {
      CAPTURE(copy);
      IdTable loaded;
      uint64_t loaded_sum = 0;
      REQUIRE(why_of(loaded.load_section(reinterpret_cast<const uint8_t*>(section.data()),
                                         section.size(), n, kSeed, copy, &loaded_sum)) == "");
      CHECK(loaded_sum == sum);
      CHECK(why_of(loaded.verify_all()) == "");
      for (uint64_t key : {7, 8, 9}) {
        uint64_t hits = 0;
        CHECK(why_of(loaded.find(key << 32 | 12345, [&](uint64_t) { ++hits; })) == "");
        uint64_t want = 0;
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t k = i < 3000 ? 7 : i < 5000 ? (4096 + 10 < i ? 9 : 8) : i;
          want += k == key;
        }
        CHECK(hits == want);
      }
      // Persisted + new in-memory entries merge into the next section.
      loaded.add(uint64_t{8} << 32 | 1, 0x99);
      std::string next(IdTable::section_size(n + 1), '\0');
      EVENTSOURCE_REQUIRE_OK(loaded.write_section(reinterpret_cast<uint8_t*>(next.data()), kSeed));
      IdTable again;
      uint64_t s2;
      REQUIRE(why_of(again.load_section(reinterpret_cast<const uint8_t*>(next.data()), next.size(),
                                        n + 1, kSeed, true, &s2)) == "");
      bool found = false;
      CHECK(why_of(again.find(uint64_t{8} << 32, [&](uint64_t loc) { found |= loc == 0x99; })) ==
            "");
      CHECK(found);
    }
  }

  TEST_CASE("IdTable: batches that grow the table, collide and repeat fingerprints are all found") {
    IdTable t;
    std::vector<uint64_t> fps, locs;
    // Batches of 1, 100 and 5000 (the last grows the table several times
    // over in one step); every fourth fingerprint lands in one slot chain,
    // and each batch repeats its first fingerprint.
    uint64_t next = 1;
    for (size_t n : {size_t{1}, size_t{100}, size_t{5000}, size_t{37}}) {
      std::vector<uint64_t> bf, bl;
      for (size_t i = 0; i < n; ++i) {
        const uint64_t fp = i % 4 == 0 ? (next << 32 | 5) : (next << 32 | next);
        bf.push_back(i + 1 == n && n > 1 ? bf.front() : fp);
        bl.push_back(next * 8);
        ++next;
      }
      t.add_batch(bf.data(), bl.data(), n);
      fps.insert(fps.end(), bf.begin(), bf.end());
      locs.insert(locs.end(), bl.begin(), bl.end());
    }
    CHECK(t.size() == fps.size());
    for (size_t i = 0; i < fps.size(); ++i) {
      CAPTURE(i);
      bool found = false;
      CHECK(why_of(t.find(fps[i], [&](uint64_t loc) { found |= loc == locs[i]; })) == "");
      CHECK(found);
    }
  }

  TEST_CASE("IdTable: a damaged block fails the lookups that reach it, and the copy load") {
    constexpr uint64_t kSeed = 0x0808080808080808ull;
    IdTable t;
    const uint64_t n = IdTable::kBlockEntries + 10;
    for (uint64_t i = 0; i < n; ++i) t.add(IdTable::fingerprint(make_uuid(3, i), kSeed), i * 8);
    std::string section(IdTable::section_size(n), '\0');
    EVENTSOURCE_REQUIRE_OK(t.write_section(reinterpret_cast<uint8_t*>(section.data()), kSeed));
    section[section.size() - 3] ^= 0x10;  // a locator byte of the last block
    IdTable copied, lazy;
    uint64_t sum;
    CHECK(why_of(copied.load_section(reinterpret_cast<const uint8_t*>(section.data()),
                                     section.size(), n, kSeed, true, &sum)) ==
          "event-id block 1 fails its checksum");
    CHECK(copied.size() == 0);
    REQUIRE(why_of(lazy.load_section(reinterpret_cast<const uint8_t*>(section.data()),
                                     section.size(), n, kSeed, false, &sum)) == "");
    // Block 0 still answers; block 1 does not.
    uint64_t fp0 = 0, fp1 = 0;
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t fp = IdTable::fingerprint(make_uuid(3, i), kSeed);
      if (fp0 == 0 || IdTable::key(fp) < IdTable::key(fp0)) fp0 = fp;
      if (fp1 == 0 || IdTable::key(fp) > IdTable::key(fp1)) fp1 = fp;
    }
    CHECK(why_of(lazy.find(fp0, [](uint64_t) {})) == "");
    CHECK(why_of(lazy.find(fp1, [](uint64_t) {})) == "event-id block 1 fails its checksum");
    CHECK(why_of(lazy.verify_all()) == "event-id block 1 fails its checksum");
  }
}

}  // namespace
}  // namespace eventsource::testing
