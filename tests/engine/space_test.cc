// Space on disk [F-8]: event segments are allocated in extents as they
// fill, so a small store takes kilobytes, not a whole segment; the extents
// keep growing across reopen, segment rolls and a cut torn tail.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

uint64_t allocated_bytes(const std::string& path) {
  struct stat st;
  uint64_t total = 0;
  for (const std::string& p : {path, path + ".ckpt"})
    if (::stat(p.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  return total;
}

void append_events(Store& store, int batches, int per_batch, size_t payload) {
  std::vector<EventData> batch(per_batch, make_event("T", std::string(payload, 'p')));
  for (int b = 0; b < batches; ++b)
    EVENTSOURCE_REQUIRE_OK(
        store.append(StreamId{"S", std::to_string(b % 7)}, ExpectedVersion::any(), batch));
}

TEST_SUITE("small-store") {
  TEST_CASE("an empty store and a 100-event store each take under 1 MiB on disk") {
    TempDir dir("es-space");
    const std::string path = dir.file("small.evs");
    StoreOptions o;  // default 64 MiB segments
    o.durability = Durability::kNone;
    std::unique_ptr<Store> store = open_or_fail(path, o);
    CHECK(store->stats().file_bytes < (1u << 20));
    append_events(*store, 100, 1, 200);
    EVENTSOURCE_REQUIRE_OK(store->close());
    CHECK(allocated_bytes(path) < (1u << 20));
    std::unique_ptr<Store> again = open_or_fail(path, o);
    CHECK(again->committed_position().value == 100);
    CHECK(again->stats().file_bytes < (1u << 20));
  }

  TEST_CASE("extents grow as the log fills, across reopen, up to whole segments") {
    TempDir dir("es-space");
    const std::string path = dir.file("grow.evs");
    StoreOptions o = small_store_options();  // 1 MiB segments
    std::unique_ptr<Store> store = open_or_fail(path, o);
    append_events(*store, 50, 10, 300);  // ~170 KiB: a few extents
    const uint64_t part = allocated_bytes(path);
    CHECK(part < (1u << 20));
    EVENTSOURCE_REQUIRE_OK(store->close());
    store = open_or_fail(path, o);
    append_events(*store, 700, 10, 300);  // several whole segments
    CHECK(store->stats().event_segments >= 3);
    EVENTSOURCE_REQUIRE_OK(store->close());
    CHECK(allocated_bytes(path) > part);
    store = open_or_fail(path, o);
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_CHECK_OK(all.status);
    CHECK(all.events.size() == 7500);
    EVENTSOURCE_REQUIRE_OK(store->close());
    Result<VerifyReport> report = Store::verify(path);
    REQUIRE(report.ok());
    CHECK(report->clean());
  }
}

}  // namespace
}  // namespace eventsource::testing
