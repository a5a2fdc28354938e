// Bit rot in committed records: a flipped bit inside an event's payload is
// found by verify() with its segment and offset, reading the damaged event
// fails with kCorruption (never returning the damaged bytes), and the other
// streams still read fine. Damage before the durable end fails open with its
// location, and repair() cuts after the last good frame, saving what it cuts.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "eventsource/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

constexpr int kStreams = 5;
constexpr int kEventsPerStream = 20;
constexpr int kVictimStream = 2;
constexpr int kVictimVersion = 7;
// How far from the flipped byte a reported offset may be: the frame or
// record holding a small event starts a few hundred bytes before its payload.
constexpr int64_t kNear = 1024;

std::string marker(int stream, int version) {
  return "BITROT-" + std::to_string(stream) + "-" + std::to_string(version) + "-MARK";
}

std::string payload(int stream, int version) {
  return "{\"marker\":\"" + marker(stream, version) + "\",\"pad\":\"" +
         std::string(40 + version, 'p') + "\"}";
}

StreamId victim_id(int stream) { return StreamId{"Victim", std::to_string(stream)}; }

// Writes kStreams streams of single-event batches, interleaved, and closes.
void write_store(const std::string& path) {
  std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
  for (int v = 1; v <= kEventsPerStream; ++v) {
    for (int s = 0; s < kStreams; ++s) {
      std::vector<EventData> events = {make_event("Written", payload(s, v))};
      EVENTSOURCE_REQUIRE_OK(
          store->append(victim_id(s), ExpectedVersion::exact(StreamVersion(v - 1)), events));
    }
  }
  EVENTSOURCE_REQUIRE_OK(store->close());
}

// True when the payload is one this test wrote (so not damaged data).
bool is_original_payload(const OwnedEvent& e) {
  for (int s = 0; s < kStreams; ++s) {
    for (int v = 1; v <= kEventsPerStream; ++v) {
      if (e.payload == payload(s, v)) return true;
    }
  }
  return false;
}

void check_all_original(const std::vector<OwnedEvent>& events) {
  for (const OwnedEvent& e : events) {
    INFO("delivered " << e.describe());
    CHECK(is_original_payload(e));
  }
}

int64_t distance(int64_t a, int64_t b) { return a > b ? a - b : b - a; }

TEST_SUITE("corruption") {
  TEST_CASE("a bit flip in a committed payload is reported with its location, never returned") {
    TempDir dir("es-bitrot");
    const std::string path = dir.file("rot.evs");
    write_store(path);

    // Find the victim's payload in the data file and flip one bit in it.
    const std::string image = read_file(path);
    const std::vector<uint64_t> hits = find_all(image, marker(kVictimStream, kVictimVersion));
    REQUIRE(hits.size() == 1);
    const uint64_t flip_at = hits[0] + 4;
    const int bit = static_cast<int>(std::random_device{}() % 8);
    CAPTURE(flip_at);
    CAPTURE(bit);
    flip_bit(path, flip_at, bit);

    // verify() names segment and offset near the flip.
    Result<VerifyReport> report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    REQUIRE_FALSE(report->clean());
    bool located = false;
    for (const VerifyProblem& p : report->problems) {
      INFO("problem: " << p.file << " segment " << p.segment << " offset " << p.offset << ": "
                       << p.what);
      CHECK(p.file.find(path) != std::string::npos);
      if (p.segment >= 0 && p.offset >= 0 &&
          distance(p.offset, static_cast<int64_t>(flip_at)) < kNear) {
        located = true;
      }
    }
    CHECK_MESSAGE(located, "no verify problem with a segment and an offset near the flip");

    // The checkpoint lets open skip the log; if open scans it, it must report
    // the damage with its location instead.
    Result<std::unique_ptr<Store>> opened = Store::open(path, small_store_options());
    if (!opened.ok()) {
      INFO("open -> " << opened.status().to_string());
      CHECK(opened.status().code() == Code::kCorruption);
      CHECK(opened.status().segment() >= 0);
      CHECK(distance(opened.status().offset(), static_cast<int64_t>(flip_at)) < kNear);
      MESSAGE("open itself reported the damage; the read checks are skipped");
      return;
    }
    Store& store = **opened;

    // The victim stream: kCorruption with a location, never the damaged event.
    for (ReadDirection dir : {ReadDirection::kForward, ReadDirection::kBackward}) {
      const bool forward = dir == ReadDirection::kForward;
      INFO("read_stream " << (forward ? "forward" : "backward"));
      ReadResult r = read_stream_events(store, victim_id(kVictimStream),
                                        StreamVersion(forward ? 1 : 0), kUnlimited, dir);
      INFO("-> " << r.status.to_string());
      CHECK(r.status.code() == Code::kCorruption);
      CHECK(r.status.segment() >= 0);
      CHECK(distance(r.status.offset(), static_cast<int64_t>(flip_at)) < kNear);
      CHECK(mentions_offset(r.status.message(), r.status.offset()));
      check_all_original(r.events);
      for (const OwnedEvent& e : r.events) CHECK(e.version != StreamVersion(kVictimVersion));
    }
    // The versions before and after the damaged one are intact on their own.
    {
      ReadResult before =
          read_stream_events(store, victim_id(kVictimStream), StreamVersion(1), kVictimVersion - 1);
      EVENTSOURCE_CHECK_OK(before.status);
      CHECK(before.events.size() == kVictimVersion - 1);
      check_all_original(before.events);
      ReadResult after =
          read_stream_events(store, victim_id(kVictimStream), StreamVersion(kVictimVersion + 1));
      EVENTSOURCE_CHECK_OK(after.status);
      CHECK(after.events.size() == kEventsPerStream - kVictimVersion);
      check_all_original(after.events);
    }

    // read_all runs into the damage: kCorruption, and only good events before.
    {
      ReadResult all = read_all_events(store);
      INFO("read_all -> " << all.status.to_string());
      CHECK(all.status.code() == Code::kCorruption);
      CHECK(all.events.size() < static_cast<size_t>(kStreams * kEventsPerStream));
      check_all_original(all.events);
    }

    // Every other stream reads whole and intact.
    for (int s = 0; s < kStreams; ++s) {
      if (s == kVictimStream) continue;
      INFO("stream " << victim_id(s).name());
      ReadResult r = read_stream_events(store, victim_id(s));
      EVENTSOURCE_CHECK_OK(r.status);
      REQUIRE(r.events.size() == kEventsPerStream);
      for (int v = 1; v <= kEventsPerStream; ++v) {
        CHECK(r.events[v - 1].payload == payload(s, v));
        CHECK(r.events[v - 1].version == StreamVersion(v));
      }
    }
    EVENTSOURCE_CHECK_OK(store.close());
  }

  TEST_CASE("an intact store verifies clean and counts its frames and events") {
    TempDir dir("es-bitrot");
    const std::string path = dir.file("clean.evs");
    write_store(path);
    Result<VerifyReport> report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    CHECK(report->clean());
    CHECK(report->events == kStreams * kEventsPerStream);
    CHECK(report->frames == kStreams * kEventsPerStream);  // one frame per single-event batch
    CHECK(report->streams == kStreams);
    CHECK(report->bytes_checked > 0);
  }
  TEST_CASE("damage before the durable end fails open with its location and repair cuts it") {
    constexpr MarkedBatchSpec kSpec{2, 40, 120};
    constexpr uint64_t kBatches = 10;
    constexpr uint64_t kDamaged = 5;
    TempDir dir("es-bitrot");
    const std::string path = dir.file("durable.evs");
    // Synced batches from a writer that dies without a checkpoint: the frames
    // after the damaged one prove it was durable.
    Child writer = Child::spawn([&](const ChildPipes&) -> int {
      StoreOptions options = small_store_options();
      options.durability = Durability::kEach;
      Result<std::unique_ptr<Store>> store = Store::open(path, options);
      if (!store.ok()) return 3;
      for (uint64_t b = 1; b <= kBatches; ++b) {
        const auto events =
            make_marked_batch(b, kSpec.events, kSpec.min_payload, kSpec.max_payload);
        if (!(*store)->append(marked_stream(b), ExpectedVersion::any(), events).ok()) return 5;
      }
      _exit(0);
    });
    INFO("writer " << describe_wait_status(writer.wait()));
    REQUIRE(writer.wait_exit_code() == 0);

    const std::string damaged_payload =
        marked_payload(kDamaged, 1, kSpec.min_payload, kSpec.max_payload);
    const std::vector<uint64_t> hits = find_all(read_file(path), damaged_payload);
    REQUIRE(hits.size() == 1);
    const uint64_t flip_at = hits[0] + damaged_payload.size() / 2;
    CAPTURE(flip_at);
    flip_bit(path, flip_at, 2);

    for (OpenMode mode : {OpenMode::kReadWrite, OpenMode::kReadOnly}) {
      INFO("mode " << static_cast<int>(mode));
      StoreOptions options = small_store_options();
      options.mode = mode;
      Result<std::unique_ptr<Store>> opened = Store::open(path, options);
      INFO("open -> " << opened.status().to_string());
      REQUIRE_FALSE(opened.ok());
      CHECK(opened.status().code() == Code::kCorruption);
      CHECK(opened.status().segment() >= 0);
      CHECK(distance(opened.status().offset(), static_cast<int64_t>(flip_at)) < kNear);
      CHECK(opened.status().message().find(path) != std::string::npos);
      CHECK(mentions_offset(opened.status().message(), opened.status().offset()));
    }

    Result<RepairReport> repaired = Store::repair(path);
    EVENTSOURCE_REQUIRE_OK(repaired);
    CHECK(repaired->changed);
    CHECK(repaired->kept_through == GlobalPosition((kDamaged - 1) * kSpec.events));
    CHECK(repaired->bytes_cut > 0);
    CHECK_FALSE(repaired->problems.empty());
    REQUIRE_FALSE(repaired->side_file.empty());
    REQUIRE(file_exists(repaired->side_file));
    // What was cut is kept: the batches after the damage are in the side file.
    const std::string side = read_file(repaired->side_file);
    CHECK(
        find_all(side, marked_payload(kBatches, 0, kSpec.min_payload, kSpec.max_payload)).size() ==
        1);

    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    CHECK(store->committed_position() == GlobalPosition((kDamaged - 1) * kSpec.events));
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_REQUIRE_OK(all.status);
    const std::string problem = check_marked_log(all.events, kSpec);
    INFO(problem);
    CHECK(problem.empty());
    EVENTSOURCE_REQUIRE_OK(store->close());
    Result<VerifyReport> report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    CHECK(report->clean());
    // Nothing left to repair.
    Result<RepairReport> again = Store::repair(path);
    EVENTSOURCE_REQUIRE_OK(again);
    CHECK_FALSE(again->changed);
  }
}

}  // namespace
}  // namespace eventsource::testing
