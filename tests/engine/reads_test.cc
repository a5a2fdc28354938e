// Read paths as callers re-enter them, and the automatic checkpoint as a
// failing disk meets it: reads nested inside read callbacks (the views of
// the outer read must survive, compressed frames included), and automatic
// checkpoints that fail back off and are counted instead of being retried
// after every append.
#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/forwarding_os.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

// A store whose every batch is a compressed frame.
std::unique_ptr<Store> compressed_store(const TempDir& dir, int streams, int batches) {
  StoreOptions o = small_store_options();
  o.compress_min_bytes = 64;
  std::unique_ptr<Store> store = open_or_fail(dir.file("nested.evs"), o);
  for (int b = 0; b < batches; ++b) {
    std::vector<EventData> batch;
    for (int i = 0; i < 8; ++i)
      batch.push_back(make_event("T", std::string(200, static_cast<char>('a' + (b + i) % 26))));
    auto r =
        store->append(StreamId{"S", std::to_string(b % streams)}, ExpectedVersion::any(), batch);
    REQUIRE(r.ok());
  }
  REQUIRE(store->stats().compressed_frames == static_cast<uint64_t>(batches));
  return store;
}

// Copies out what a view shows, touching every byte (ASan sees a freed buffer).
std::string own(std::string_view v) { return std::string(v); }

TEST_SUITE("reentrant-reads") {
  TEST_CASE("read_all nested in a read_all callback keeps the outer views valid (compressed)") {
    TempDir dir("es-nested");
    std::unique_ptr<Store> store = compressed_store(dir, 3, 40);
    uint64_t outer = 0;
    EVENTSOURCE_REQUIRE_OK(store->read_all({}, [&](const RecordedEvent& e) {
      const std::string before = own(e.payload);
      // A nested read decodes other compressed frames on this thread.
      uint64_t inner = 0;
      Status s =
          store->read_all({.from = GlobalPosition(e.position.value % 300 + 1), .max_count = 20},
                          [&](const RecordedEvent& n) {
                            inner += n.payload.size();
                            return true;
                          });
      CHECK(s.ok());
      CHECK(inner > 0);
      CHECK(own(e.payload) == before);  // the outer view still shows its event
      CHECK(own(e.type) == "T");
      ++outer;
      return true;
    }));
    CHECK(outer == 320);
  }

  TEST_CASE("read_stream nested in a read_stream callback keeps the outer views valid") {
    TempDir dir("es-nested");
    std::unique_ptr<Store> store = compressed_store(dir, 2, 30);
    uint64_t outer = 0;
    EVENTSOURCE_REQUIRE_OK(store->read_stream(StreamId{"S", "0"}, {}, [&](const RecordedEvent& e) {
      const std::string before = own(e.payload);
      ReadResult other = read_stream_events(*store, StreamId{"S", "1"});
      CHECK(other.status.ok());
      CHECK(other.events.size() == 120);
      ReadResult all = read_all_events(*store, GlobalPosition(1), {}, 50);
      CHECK(all.status.ok());
      CHECK(own(e.payload) == before);
      ++outer;
      return true;
    }));
    CHECK(outer == 120);
  }
}

// Fails every rename (the checkpoint file's atomic replace) while armed, and
// counts the attempts.
class FailingRenameOs final : public ForwardingOs {
 public:
  std::atomic<bool> fail{false};
  std::atomic<int> attempts{0};
  int rename(const std::string& from, const std::string& to) override {
    if (!fail.load()) return ForwardingOs::rename(from, to);
    attempts.fetch_add(1);
    return -EIO;
  }
};

TEST_SUITE("checkpoint-backoff") {
  TEST_CASE("a failing automatic checkpoint backs off, is counted, and never fails an append") {
    TempDir dir("es-ckpt");
    auto os = std::make_shared<FailingRenameOs>();
    StoreOptions o = small_store_options();
    o.checkpoint_interval_bytes = 4096;  // due after every few batches
    o.os = os;
    std::unique_ptr<Store> store = open_or_fail(dir.file("b.evs"), o);
    os->fail = true;
    std::vector<EventData> batch(4, make_event("T", std::string(400, 'c')));
    for (int i = 0; i < 200; ++i)
      EVENTSOURCE_REQUIRE_OK(store->append(StreamId{"S", "1"}, ExpectedVersion::any(), batch));
    // Without the back-off every one of the 200 appends retried (an fdatasync
    // and a full index blob each); with it, the next try waits a second.
    CHECK(os->attempts.load() >= 1);
    CHECK(os->attempts.load() <= 3);
    StoreStats st = store->stats();
    CHECK(st.checkpoint_failures == static_cast<uint64_t>(os->attempts.load()));
    CHECK(st.checkpoint_failures_in_row == st.checkpoint_failures);
    CHECK(st.last_checkpoint_error.find("b.evs.ckpt") != std::string::npos);
    CHECK(st.index_persisted_position == 0);

    // An explicit checkpoint reports its error, and a good one clears the streak.
    CHECK(store->checkpoint().code() == Code::kIoError);
    os->fail = false;
    EVENTSOURCE_CHECK_OK(store->checkpoint());
    st = store->stats();
    CHECK(st.checkpoint_failures_in_row == 0);
    CHECK(st.last_checkpoint_error.empty());
    CHECK(st.index_persisted_position == 800);
    CHECK(st.index_segments == 1);  // the failed attempts left no index segment behind
    EVENTSOURCE_CHECK_OK(store->close());
  }

  TEST_CASE("checkpoint() on a read-only handle is refused") {
    TempDir dir("es-ckpt");
    std::unique_ptr<Store> w = open_or_fail(dir.file("r.evs"), small_store_options());
    EventData e = make_event("T", "x");
    EVENTSOURCE_REQUIRE_OK(w->append(StreamId{"S", "1"}, ExpectedVersion::any(), {&e, 1}));
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    std::unique_ptr<Store> r = open_or_fail(dir.file("r.evs"), ro);
    CHECK(r->checkpoint().code() == Code::kReadOnly);
  }
}

}  // namespace
}  // namespace eventsource::testing
