// The persisted stream directory is searched on first use, not loaded at
// open (format-spec.md [F-20], [F-21]): a damaged directory entry is found
// when a lookup reaches it. A read-write open whose scan meets it drops the
// persisted index and scans the whole log; afterwards, reads of a stream
// behind it fail with kCorruption naming the entry, other streams stay
// readable, and verify reports it.
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "eventsource/store.h"
#include "tests/support/files.h"
#include "tests/support/forwarding_os.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

const StreamId kA{"A", "1"}, kB{"B", "1"}, kC{"C", "1"};

void append(Store& store, const StreamId& s, int n) {
  std::vector<EventData> batch;
  for (int i = 0; i < n; ++i) batch.push_back(make_event("T", s.name() + std::to_string(i)));
  EVENTSOURCE_REQUIRE_OK(store.append(s, ExpectedVersion::any(), batch));
}

// File offset of directory entry `i` of the index the checkpoint names.
uint64_t entry_offset(const std::string& path, uint64_t i) {
  const std::string ckpt = read_file(path + format::kCheckpointSuffix);
  const uint64_t slot =
      get_u64(reinterpret_cast<const uint8_t*>(ckpt.data()) + format::checkpoint::kIndexSlot);
  return format::kFileHeaderSize + slot * kMiB + format::segment_header::kSize +
         format::index_header::kSize + i * format::index_entry::kSize;
}

TEST_SUITE("lazy-index") {
  TEST_CASE("a damaged directory entry met by open's scan: open scans the whole log instead") {
    TempDir dir("es-lazy");
    const std::string path = dir.file("s.evs"), image = dir.file("image.evs");
    {
      auto store = open_or_fail(path, small_store_options());
      for (const StreamId& s : {kA, kB, kC}) append(*store, s, 3);
      EVENTSOURCE_REQUIRE_OK(store->checkpoint());
      append(*store, kA, 2);  // past the checkpoint: open's scan looks A up
      // A crash image: the log past the checkpoint, not checkpointed again.
      std::filesystem::copy_file(path, image);
      std::filesystem::copy_file(path + ".ckpt", image + ".ckpt");
    }
    flip_bit(image, entry_offset(image, 0) + format::index_entry::kCount, 1);  // entry of A-1
    auto store = open_or_fail(image, small_store_options());
    CHECK(store->stats().index_persisted_position == 0);  // the index was dropped
    CHECK(store->stream_version(kA) == StreamVersion(5));
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_REQUIRE_OK(all.status);
    CHECK(all.events.size() == 11);
    EVENTSOURCE_REQUIRE_OK(read_stream_events(*store, kA).status);
    append(*store, kA, 1);
    CHECK(store->stream_version(kA) == StreamVersion(6));
    // Its close checkpoints a fresh index: the store is whole again.
    EVENTSOURCE_REQUIRE_OK(store->close());
    auto report = Store::verify(image);
    EVENTSOURCE_REQUIRE_OK(report);
    CHECK(report->clean());
  }

  TEST_CASE("a damaged directory entry no scan meets: reads behind it fail, others work") {
    TempDir dir("es-lazy");
    const std::string path = dir.file("s.evs");
    {
      auto store = open_or_fail(path, small_store_options());
      for (const StreamId& s : {kA, kB, kC}) append(*store, s, 3);
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    const uint64_t damaged = entry_offset(path, 2);  // entry of C-1
    flip_bit(path, damaged + format::index_entry::kCount, 0);
    auto store = open_or_fail(path, small_store_options());
    ReadResult c = read_stream_events(*store, kC);
    EVENTSOURCE_CHECK_CODE(c.status, Code::kCorruption);
    CHECK(c.status.message().find("index entry 2 fails its checksum") != std::string::npos);
    EVENTSOURCE_CHECK_CODE(
        store->append(kC, ExpectedVersion::any(), std::vector{make_event("T", "x")}),
        Code::kCorruption);
    // A-1 is found without passing entry 2.
    ReadResult a = read_stream_events(*store, kA);
    EVENTSOURCE_REQUIRE_OK(a.status);
    CHECK(a.events.size() == 3);
    // read_all does not use the directory.
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_REQUIRE_OK(all.status);
    CHECK(all.events.size() == 9);
    // No checkpoint copies the damaged entry as good.
    append(*store, kA, 1);
    EVENTSOURCE_CHECK_CODE(store->checkpoint(), Code::kCorruption);
    store.reset();
    auto report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    CHECK_FALSE(report->clean());
    bool named = false;
    for (const VerifyProblem& p : report->problems)
      named |= p.what.find("index entry 2 fails its checksum") != std::string::npos;
    CHECK(named);
    // A read-only open checks the whole directory at load, and scans instead.
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    auto reader = open_or_fail(path, ro);
    CHECK(reader->stream_version(kC) == StreamVersion(3));
  }
}

TEST_SUITE("lazy-index") {
  TEST_CASE("a read-only refresh that measured the file before the writer extended it") {
    // The writer's checkpoint extends the file by a 2-slot index segment,
    // then writes its header; a reader that measured the file in between
    // saw a header spanning past "the end" and reported corruption (found
    // by reader-kill once index blobs outgrew one 1 MiB slot).
    struct StaleSizeOs : ForwardingOs {
      std::atomic<int64_t> hide{0};
      int64_t file_size(int fd) override { return ForwardingOs::file_size(fd) - hide.load(); }
    };
    TempDir dir("es-lazy");
    const std::string path = dir.file("s.evs");
    auto writer = open_or_fail(path, small_store_options());
    for (int b = 0; b < 600; ++b) append(*writer, StreamId{"S", std::to_string(b % 50)}, 100);
    auto os = std::make_shared<StaleSizeOs>();
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    ro.os = os;
    auto reader = open_or_fail(path, ro);
    const uint64_t before = file_size(path);
    EVENTSOURCE_REQUIRE_OK(writer->checkpoint());
    REQUIRE(file_size(path) >= before + 2 * kMiB);  // the index spans 2 slots at the end
    os->hide = static_cast<int64_t>(kMiB);          // the reader's measure misses its last slot
    append(*writer, kA, 1);
    auto r = reader->refresh();
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK(r->value == 60001);
    os->hide = 0;
    EVENTSOURCE_REQUIRE_OK(reader->refresh());
    CHECK(read_all_events(*reader).events.size() == 60001);
  }
}

}  // namespace
}  // namespace eventsource::testing
