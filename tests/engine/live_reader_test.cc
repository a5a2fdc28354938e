// A read-only handle follows a live writer in another process: each
// refresh() shows a dense prefix of whole batches (never half a batch, never
// a gap, never a checksum error), across segment rolls, until all are seen.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "eventsource/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

constexpr MarkedBatchSpec kSpec{3, 200, 1200};
constexpr uint64_t kBatches = 1000;

TEST_SUITE("live-reader") {
  TEST_CASE("a read-only handle follows a live writer process batch by batch") {
    TempDir dir("es-live");
    const std::string path = dir.file("live.evs");
    Child writer = Child::spawn([&](const ChildPipes& pipes) {
      Result<std::unique_ptr<Store>> store = Store::open(path, small_store_options());
      if (!store.ok()) return 3;
      pipes.send(0);  // the store exists: the reader may open it
      for (uint64_t b = 1; b <= kBatches; ++b) {
        const auto events =
            make_marked_batch(b, kSpec.events, kSpec.min_payload, kSpec.max_payload);
        if (!(*store)->append(marked_stream(b), ExpectedVersion::any(), events).ok()) return 5;
        usleep(200);  // let the reader catch the writer mid-way
      }
      if (!(*store)->close().ok()) return 6;
      return 0;
    });
    std::optional<uint64_t> created = writer.receive();
    INFO("writer " << (created ? "created the store" : describe_wait_status(writer.wait())));
    REQUIRE(created.has_value());

    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> reader = open_or_fail(path, ro);
    const uint64_t total = kBatches * kSpec.events;
    uint64_t seen = reader->committed_position().value;
    uint64_t polls = 0;
    uint64_t partial_views = 0;  // polls that saw some but not all batches
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (seen < total) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      Result<GlobalPosition> refreshed = reader->refresh();
      EVENTSOURCE_REQUIRE_OK(refreshed);
      const uint64_t now = refreshed->value;
      CAPTURE(now);
      REQUIRE(now >= seen);  // never goes back
      REQUIRE(reader->committed_position() == *refreshed);
      REQUIRE(now % kSpec.events == 0);
      ReadResult all = read_all_events(*reader);
      EVENTSOURCE_REQUIRE_OK(all.status);
      REQUIRE(all.events.size() == now);
      const std::string problem = check_marked_log(all.events, kSpec);
      INFO(problem);
      REQUIRE(problem.empty());
      if (now > 0 && now < total) ++partial_views;
      seen = now;
      ++polls;
      usleep(500);
    }
    CAPTURE(polls);
    CHECK(seen == total);
    CHECK(partial_views > 0);  // the reader really ran beside the writer
    CHECK(reader->stats().event_segments >= 2);
    INFO("writer " << describe_wait_status(writer.wait()));
    CHECK(writer.wait_exit_code() == 0);
    EVENTSOURCE_CHECK_OK(reader->close());
  }
}

}  // namespace
}  // namespace eventsource::testing
