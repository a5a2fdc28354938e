// verify() judges damage the way open() does: a bad tail frame holding a
// durable position is damage (not a torn write) while one that open cuts is a
// torn tail, the checkpoint's claim about its last frame is checked, and two
// event segments with one epoch are reported. Files are edited with the
// engine's own codecs (tests may reach inside) so that only the intended field
// is wrong. Suite verify-live: verify of a healthy store whose writer appends,
// rolls segments and checkpoints between verify's steps reports nothing.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>

#include "engine/checkpoint_file.h"
#include "engine/coding.h"
#include "engine/format.h"
#include "engine/os.h"
#include "engine/segment.h"
#include "eventsource/store.h"
#include "tests/support/codec_text.h"
#include "tests/support/files.h"
#include "tests/support/forwarding_os.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using namespace eventsource;

namespace {

struct VerifyDir {
  fs::path path;
  VerifyDir() {
    path = fs::temp_directory_path() /
           fmt::format("es-verify-{}-{}", ::getpid(), std::random_device{}());
    fs::create_directories(path);
  }
  ~VerifyDir() { fs::remove_all(path); }
  std::string store() const { return (path / "v.evs").string(); }
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const std::string& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A closed store of `batches` batches; returns the file offset of the last frame.
uint64_t make_store(const std::string& path, int batches, size_t payload = 100) {
  StoreOptions o;
  o.segment_size = 1 << 20;
  o.durability = Durability::kNone;
  auto s = Store::open(path, o);
  REQUIRE(s.ok());
  for (int b = 0; b < batches; ++b) {
    std::vector<EventData> ev(2);
    for (auto& e : ev) {
      e.type = std::string(1, 'T');  // (not = "T": GCC 12 -Wrestrict false positive)
      e.payload = std::string(payload, static_cast<char>('a' + b % 26));
    }
    REQUIRE((*s)->append(StreamId{"V", std::to_string(b % 3)}, ExpectedVersion::any(), ev).ok());
  }
  REQUIRE((*s)->close().ok());
  std::string why;
  FileHeader fh;
  std::string bytes = slurp(path);
  REQUIRE(testing::parse_file_header_text(reinterpret_cast<const uint8_t*>(bytes.data()),
                                          bytes.size(), &fh)
              .empty());
  auto c = testing::read_checkpoint_file_text(*default_os(), path, fh.store_id, fh.seed(), &why);
  REQUIRE(c.ok());
  REQUIRE(c->has_value());
  return (*c)->last_frame_offset;
}

bool has_problem_at(const VerifyReport& r, int64_t segment, int64_t offset) {
  for (const auto& p : r.problems)
    if (p.segment == segment && p.offset == offset) return true;
  return false;
}

// Every problem of a report, one per line, for failure messages.
std::string describe(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems)
    out += fmt::format("{}: segment {} offset {}: {}\n", p.file, p.segment, p.offset, p.what);
  return out;
}

// A store with its writer open in this process (1 MiB segments, no syncs, no
// automatic checkpoint), for verify runs between the writer's steps.
struct LiveStore {
  testing::TempDir dir{"es-verify-live"};
  std::string path = dir.file("live.evs");
  std::unique_ptr<Store> store = testing::open_or_fail(path, testing::small_store_options());
  uint64_t batches = 0;

  void append() {
    std::vector<EventData> events;
    for (int i = 0; i < 4; ++i)
      events.push_back(testing::make_event("Noted", std::string(1000, static_cast<char>('a' + i))));
    ++batches;
    EVENTSOURCE_CHECK_OK(store->append(StreamId{"Live", std::to_string(batches % 5)},
                                       ExpectedVersion::any(), events));
  }
  // Appends until the writer has rolled into a new event segment.
  void append_until_roll() {
    const uint32_t before = store->stats().event_segments;
    while (store->stats().event_segments == before) append();
  }
};

// The checkpoint file of the store at `path`.
Checkpoint checkpoint_of(const std::string& path) {
  const std::string bytes = slurp(path);
  FileHeader fh;
  REQUIRE(testing::parse_file_header_text(reinterpret_cast<const uint8_t*>(bytes.data()),
                                          bytes.size(), &fh)
              .empty());
  std::string why;
  auto c = testing::read_checkpoint_file_text(*default_os(), path, fh.store_id, fh.seed(), &why);
  REQUIRE(c.ok());
  REQUIRE_MESSAGE(c->has_value(), why);
  return **c;
}

// The files a writer leaves when it dies after 3 batches, a checkpoint and 4
// more batches that were never synced (small_store_options: no syncs). Returns
// the offset of the first frame past the checkpoint's durable end.
uint64_t crash_image_with_unsynced_tail(LiveStore& w) {
  for (int b = 0; b < 3; ++b) w.append();
  EVENTSOURCE_REQUIRE_OK(w.store->checkpoint());
  for (int b = 0; b < 4; ++b) w.append();
  const std::string data = slurp(w.path);
  const std::string ckpt = slurp(checkpoint_path(w.path));
  EVENTSOURCE_REQUIRE_OK(w.store->close());
  spit(w.path, data);
  spit(checkpoint_path(w.path), ckpt);
  const uint64_t last = checkpoint_of(w.path).last_frame_offset;
  return last + get_u32(reinterpret_cast<const uint8_t*>(data.data()) + last +
                        format::frame_header::kFrameLen);
}

// The real OS layer, calling `hook` between the steps of verify (or of a
// writer): with "open PATH" right after each open, "fallocate" right after
// each fallocate that allocates, and "map_read" or "ftruncate" right before
// each such call.
class HookOs final : public testing::ForwardingOs {
 public:
  explicit HookOs(std::function<void(const std::string& call)> hook) : hook_(std::move(hook)) {}
  int open(const std::string& path, int flags, unsigned mode) override {
    const int fd = ForwardingOs::open(path, flags, mode);
    if (fd >= 0) hook_("open " + path);
    return fd;
  }
  int fallocate(int fd, int mode, uint64_t offset, uint64_t len) override {
    const int r = ForwardingOs::fallocate(fd, mode, offset, len);
    if (mode == 0) hook_("fallocate");
    return r;
  }
  int ftruncate(int fd, uint64_t size) override {
    hook_("ftruncate");
    return ForwardingOs::ftruncate(fd, size);
  }
  const void* map_read(int fd, uint64_t offset, size_t len, int* err) override {
    hook_("map_read");
    return ForwardingOs::map_read(fd, offset, len, err);
  }

 private:
  std::function<void(const std::string& call)> hook_;
};

}  // namespace

TEST_SUITE("corruption") {
  TEST_CASE("verify reports a damaged last frame before the durable end at its own location") {
    VerifyDir dir;
    const uint64_t last = make_store(dir.store(), 5);
    std::string bytes = slurp(dir.store());
    // Zero the last frame's header: to a scanner it looks like a torn tail,
    // but the checkpoint says its events were durable.
    std::memset(bytes.data() + last, 0, format::frame_header::kSize);
    spit(dir.store(), bytes);
    auto r = Store::verify(dir.store());
    REQUIRE(r.ok());
    const int64_t slot = static_cast<int64_t>((last - format::kFileHeaderSize) >> 20);
    CHECK_MESSAGE(has_problem_at(*r, slot, static_cast<int64_t>(last)), "no problem at segment ",
                  slot, " offset ", last);
    CHECK(!r->torn_tail.has_value());  // damage, not a torn tail
    // open agrees: damage before the durable end.
    auto s = Store::open(dir.store(), StoreOptions{});
    CHECK(!s.ok());
  }

  TEST_CASE("verify checks the frame the checkpoint names as its last") {
    VerifyDir dir;
    const uint64_t last = make_store(dir.store(), 5);
    std::string bytes = slurp(dir.store());
    FileHeader fh;
    REQUIRE(testing::parse_file_header_text(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            bytes.size(), &fh)
                .empty());
    std::string why;
    auto c = testing::read_checkpoint_file_text(*default_os(), dir.store(), fh.store_id, fh.seed(),
                                                &why);
    REQUIRE(c.ok());
    Checkpoint cp = **c;
    cp.last_frame_offset =
        format::kFileHeaderSize + format::segment_header::kSize;  // the first frame
    REQUIRE(last != cp.last_frame_offset);
    REQUIRE(write_checkpoint_file(*default_os(), dir.store(), cp, fh.seed(), 0600).ok());
    auto r = Store::verify(dir.store());
    REQUIRE(r.ok());
    bool found = false;
    for (const auto& p : r->problems)
      found |= p.file == checkpoint_path(dir.store()) &&
               p.offset == static_cast<int64_t>(format::checkpoint::kLastFrameOffset);
    CHECK(found);
    CHECK(!Store::open(dir.store(), StoreOptions{}).ok());  // open refuses the same claim
  }

  TEST_CASE("verify reports two event segments that share an epoch") {
    VerifyDir dir;
    make_store(dir.store(), 2000, 400);  // > 1 MiB of events: several segments
    std::string bytes = slurp(dir.store());
    FileHeader fh;
    REQUIRE(testing::parse_file_header_text(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            bytes.size(), &fh)
                .empty());
    const uint64_t seg = 1 << 20;
    auto header_at = [&](uint64_t slot, SegmentHeader* h) {
      std::string w;
      return testing::parse_segment_header_text(reinterpret_cast<const uint8_t*>(bytes.data()) +
                                                    format::kFileHeaderSize + slot * seg,
                                                slot, fh.seed(), h,
                                                &w) == SegmentHeaderState::kValid;
    };
    SegmentHeader h0, h1;
    REQUIRE(header_at(0, &h0));
    REQUIRE(header_at(1, &h1));
    REQUIRE(h0.kind == format::SegmentKind::kEvents);
    REQUIRE(h1.kind == format::SegmentKind::kEvents);
    h1.epoch = h0.epoch;
    encode_segment_header(h1, fh.seed(),
                          reinterpret_cast<uint8_t*>(bytes.data()) + format::kFileHeaderSize + seg);
    spit(dir.store(), bytes);
    auto r = Store::verify(dir.store());
    REQUIRE(r.ok());
    bool found = false;
    for (const auto& p : r->problems) found |= p.what.find("share epoch") != std::string::npos;
    CHECK(found);
  }
}

TEST_SUITE("corruption") {
  TEST_CASE("verify reports a tail that open cuts as a torn tail, not as damage") {
    // A power loss tore the first unsynced batch but kept later ones: the
    // frames after it do not say it was durable, so open cuts the log there.
    LiveStore w;
    const uint64_t hole = crash_image_with_unsynced_tail(w);
    testing::write_at(w.path, hole, std::string(8, '\x5a'));  // its checksum
    auto r = Store::verify(w.path);
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK_MESSAGE(r->clean(), describe(*r));
    REQUIRE(r->torn_tail.has_value());
    CHECK(r->torn_tail->segment == 0);
    CHECK(r->torn_tail->offset == static_cast<int64_t>(hole));
    const uint64_t durable = checkpoint_of(w.path).durable_position;
    CHECK(r->events == durable);
    // open agrees: it cuts there, and then there is nothing left to report.
    auto store = testing::open_or_fail(w.path, testing::small_store_options());
    CHECK(store->committed_position().value == durable);
    EVENTSOURCE_REQUIRE_OK(store->close());
    auto after = Store::verify(w.path);
    EVENTSOURCE_REQUIRE_OK(after);
    CHECK_MESSAGE(after->clean(), describe(*after));
    CHECK(!after->torn_tail.has_value());
  }

  TEST_CASE("verify reports a last batch cut off mid-write as a torn tail") {
    LiveStore w;
    const uint64_t first = crash_image_with_unsynced_tail(w);
    const std::string data = slurp(w.path);
    const auto frame_len = [&](uint64_t off) {
      return get_u32(reinterpret_cast<const uint8_t*>(data.data()) + off +
                     format::frame_header::kFrameLen);
    };
    uint64_t last = 0;
    for (uint64_t off = first; frame_len(off) != 0; off += frame_len(off)) last = off;
    // The last frame's header made it to disk, its body did not.
    testing::write_at(w.path, last + format::frame_header::kSize, std::string(200, '\0'));
    auto r = Store::verify(w.path);
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK_MESSAGE(r->clean(), describe(*r));
    REQUIRE(r->torn_tail.has_value());
    CHECK(r->torn_tail->offset == static_cast<int64_t>(last));
    auto store = testing::open_or_fail(w.path, testing::small_store_options());
    CHECK(store->committed_position().value == checkpoint_of(w.path).durable_position + 3 * 4);
  }
}

TEST_SUITE("verify-live") {
  TEST_CASE("checkpoints and segment rolls while verify walks the log are not damage") {
    LiveStore w;
    w.append_until_roll();
    w.append_until_roll();
    EVENTSOURCE_REQUIRE_OK(w.store->checkpoint());
    int calls = 0;
    VerifyOptions options;
    options.progress = [&](uint64_t, uint64_t) {
      // Twice while verify goes through the data file: a roll and a
      // checkpoint (a new index segment; the one verify may have looked at is
      // zeroed and freed, and the next roll may take its slot).
      if (calls++ >= 2) return;
      w.append_until_roll();
      EVENTSOURCE_CHECK_OK(w.store->checkpoint());
    };
    auto r = Store::verify(w.path, options);
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK(calls >= 2);
    CHECK_MESSAGE(r->clean(), describe(*r));
    CHECK(r->events > 0);
  }

  TEST_CASE("a checkpoint that replaces the checkpoint file while verify reads it is not damage") {
    LiveStore w;
    w.append_until_roll();
    EVENTSOURCE_REQUIRE_OK(w.store->checkpoint());
    int hooks = 0;
    // Right after verify opens PATH.ckpt, three times: the writer renames a
    // new checkpoint over it and frees the index segment the open one names;
    // the roll that follows reuses that slot for events.
    auto os = std::make_shared<HookOs>([&](const std::string& call) {
      if (!call.ends_with(".ckpt") || hooks++ >= 3) return;
      w.append();
      EVENTSOURCE_CHECK_OK(w.store->checkpoint());
      w.append_until_roll();
    });
    auto r = Store::verify(w.path, {.os = os});
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK(hooks >= 1);
    CHECK_MESSAGE(r->clean(), describe(*r));
  }

  TEST_CASE(
      "verify gives up with kBusy, reporting nothing, when the checkpoint never holds still") {
    LiveStore w;
    w.append();
    EVENTSOURCE_REQUIRE_OK(w.store->checkpoint());
    int hooks = 0;
    // Every time verify opens PATH.ckpt, the writer has a new one.
    auto os = std::make_shared<HookOs>([&](const std::string& call) {
      if (!call.ends_with(".ckpt")) return;
      ++hooks;
      w.append();
      EVENTSOURCE_CHECK_OK(w.store->checkpoint());
    });
    auto r = Store::verify(w.path, {.os = os});
    EVENTSOURCE_CHECK_CODE(r, Code::kBusy);
    CHECK(hooks == 200);  // 100 attempts, two reads each
  }

  TEST_CASE("segments the writer adds after verify sized the file are not a gap") {
    LiveStore w;
    w.append();
    EVENTSOURCE_REQUIRE_OK(w.store->checkpoint());  // slot 0: events, slot 1: index
    bool hooked = false;
    // Between verify's size of the data file and its mapping: a roll appends
    // slot 2, a checkpoint frees slot 1, the next roll reuses it. In the
    // mapped slots verify finds the third segment, not the second.
    auto os = std::make_shared<HookOs>([&](const std::string& call) {
      if (call != "map_read" || std::exchange(hooked, true)) return;
      w.append_until_roll();
      EVENTSOURCE_CHECK_OK(w.store->checkpoint());
      w.append_until_roll();
    });
    auto r = Store::verify(w.path, {.os = os});
    EVENTSOURCE_REQUIRE_OK(r);
    CHECK(hooked);
    CHECK_MESSAGE(r->clean(), describe(*r));
    CHECK(w.store->stats().event_segments == 3);
  }

  TEST_CASE("a slot the writer is allocating at the end of the file is not damage") {
    // The writer has extended the file by a slot for its first index segment
    // and allocated its bytes, but not yet written its header, when verify
    // runs.
    testing::TempDir dir("es-verify-live");
    const std::string path = dir.file("live.evs");
    std::optional<Result<VerifyReport>> r;
    bool armed = false;
    StoreOptions options = testing::small_store_options();
    options.os = std::make_shared<HookOs>([&](const std::string& call) {
      if (armed && call == "fallocate" && !r) r = Store::verify(path);
    });
    auto store = testing::open_or_fail(path, options);
    const std::vector<EventData> events = {testing::make_event("Noted", "x")};
    EVENTSOURCE_REQUIRE_OK(store->append(StreamId{"Live", "1"}, ExpectedVersion::any(), events));
    armed = true;
    EVENTSOURCE_REQUIRE_OK(store->checkpoint());
    REQUIRE(r.has_value());
    EVENTSOURCE_REQUIRE_OK(*r);
    CHECK_MESSAGE((*r)->clean(), describe(**r));
  }

  TEST_CASE("the writer's file ends on a slot boundary at every step of an allocation") {
    // verify and read-only handles size the file twice and take a partial
    // slot at the end whose header is written for damage. A writer preempted
    // between extending the file to a segment's first bytes and to its whole
    // slot once left exactly that (a verify false alarm about one run in
    // twenty beside aux compaction): it must extend by whole slots first.
    testing::TempDir dir("es-verify-live");
    const std::string path = dir.file("live.evs");
    int allocations = 0;
    StoreOptions options = testing::small_store_options();
    options.os = std::make_shared<HookOs>([&](const std::string& call) {
      if (call != "fallocate") return;
      ++allocations;
      const auto size = fs::file_size(path);
      CHECK_MESSAGE((size - format::kFileHeaderSize) % options.segment_size == 0, "file size ",
                    size, " after allocation ", allocations);
    });
    auto store = testing::open_or_fail(path, options);
    const StreamId stream{"Live", "1"};
    const std::string blob(16 << 10, 'x');
    for (int i = 0; i < 3000; ++i) {  // > 1 MiB of events: the log rolls
      const std::vector<EventData> events = {testing::make_event("Noted", std::string(400, 'y'))};
      EVENTSOURCE_REQUIRE_OK(store->append(stream, ExpectedVersion::any(), events));
    }
    EVENTSOURCE_REQUIRE_OK(store->checkpoint());                                     // index
    EVENTSOURCE_REQUIRE_OK(store->put_snapshot(stream, StreamVersion(1), 1, blob));  // aux
    EVENTSOURCE_REQUIRE_OK(store->save_projection_state("p", GlobalPosition(1), blob));
    CHECK(allocations >= 4);
  }

  TEST_CASE("verify after an append that rolls a segment and a checkpoint reports nothing") {
    LiveStore w;
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      w.append_until_roll();
      EVENTSOURCE_REQUIRE_OK(w.store->checkpoint());
      auto r = Store::verify(w.path);
      EVENTSOURCE_REQUIRE_OK(r);
      CHECK_MESSAGE(r->clean(), describe(*r));
    }
  }
}
