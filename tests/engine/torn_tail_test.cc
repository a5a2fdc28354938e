// Torn-tail recovery: a child appends batches and exits without closing, and
// the file images before and after its last append locate the last frame.
// For every byte offset of that frame the tail is cut there (zero-filled,
// garbage-filled, truncated), and stale frames are copied after it: open must
// succeed and show the last batch whole iff it was wholly written.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "eventsource/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

constexpr MarkedBatchSpec kSpec{2, 16, 64};
constexpr uint64_t kBatches = 12;
constexpr uint64_t kAlign = 8;  // frames are 8-byte aligned (format-spec.md "Frames")

uint64_t align_up(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }
uint64_t align_down(uint64_t v) { return v / kAlign * kAlign; }

// The store's files after kBatches - 2, kBatches - 1 and kBatches appends by
// a writer that then dies without closing.
struct Images {
  std::string before_prev;  // after kBatches - 2
  std::string before_last;  // after kBatches - 1
  std::string after_last;   // after kBatches
  std::optional<std::string> checkpoint;
};

Images write_and_capture(const std::string& path) {
  Child child = Child::spawn([&](const ChildPipes& pipes) {
    Result<std::unique_ptr<Store>> store = Store::open(path, small_store_options());
    if (!store.ok()) return 3;
    for (uint64_t b = 1; b <= kBatches; ++b) {
      const auto events = make_marked_batch(b, kSpec.events, kSpec.min_payload, kSpec.max_payload);
      if (!(*store)->append(marked_stream(b), ExpectedVersion::any(), events).ok()) return 5;
      if (b + 2 >= kBatches) {
        pipes.send(b);
        (void)pipes.receive();
      }
    }
    _exit(0);  // no close, no checkpoint: the last batches are only in the log
  });
  Images images;
  for (uint64_t want = kBatches - 2; want <= kBatches; ++want) {
    std::optional<uint64_t> got = child.receive();
    REQUIRE(got.has_value());
    REQUIRE(*got == want);
    std::string image = read_file(path);
    if (want == kBatches - 2) images.before_prev = std::move(image);
    if (want == kBatches - 1) images.before_last = std::move(image);
    if (want == kBatches) {
      images.after_last = std::move(image);
      images.checkpoint = read_file_if_exists(path + ".ckpt");
    }
    REQUIRE(child.send(1));
  }
  INFO("writer child " << describe_wait_status(child.wait()));
  REQUIRE(child.wait_exit_code() == 0);
  return images;
}

enum class LastBatch { kAbsent, kPresent, kEither };

const char* to_string(LastBatch b) {
  switch (b) {
    case LastBatch::kAbsent:
      return "absent";
    case LastBatch::kPresent:
      return "present";
    case LastBatch::kEither:
      return "either";
  }
  return "?";
}

// Puts `data` (and the checkpoint as the writer left it) in place, opens
// read-write and checks the recovered log. Returns false on a failed check.
// The writer appended `batches` batches of `spec`; the last is in question.
bool check_recovery(const std::string& path, const std::string& data,
                    const std::optional<std::string>& checkpoint, LastBatch expect,
                    uint64_t batches = kBatches, const MarkedBatchSpec& spec = kSpec) {
  restore_file(path, data);
  if (checkpoint) {
    restore_file(path + ".ckpt", *checkpoint);
  } else {
    remove_file(path + ".ckpt");
  }
  INFO("expecting the last batch " << std::string(to_string(expect)));
  Result<std::unique_ptr<Store>> opened = Store::open(path, small_store_options());
  INFO("open -> " << opened.status().to_string());
  CHECK(opened.ok());
  if (!opened.ok()) return false;
  Store& store = **opened;
  const uint64_t committed = store.committed_position().value;
  CAPTURE(committed);
  bool ok = true;
  const uint64_t without = (batches - 1) * spec.events;
  const uint64_t with = batches * spec.events;
  switch (expect) {
    case LastBatch::kAbsent:
      CHECK(committed == without);
      ok = ok && committed == without;
      break;
    case LastBatch::kPresent:
      CHECK(committed == with);
      ok = ok && committed == with;
      break;
    case LastBatch::kEither:
      CHECK((committed == without || committed == with));
      ok = ok && (committed == without || committed == with);
      break;
  }
  ReadResult all = read_all_events(store);
  EVENTSOURCE_CHECK_OK(all.status);
  CHECK(all.events.size() == committed);
  const std::string problem = check_marked_log(all.events, spec);
  INFO(problem);
  CHECK(problem.empty());
  ok = ok && all.status.ok() && all.events.size() == committed && problem.empty();
  const StreamId last_stream = marked_stream(batches);
  ReadResult last = read_stream_events(store, last_stream);
  EVENTSOURCE_CHECK_OK(last.status);
  CHECK(last.events.size() == store.stream_version(last_stream).value);
  ok = ok && last.status.ok() && last.events.size() == store.stream_version(last_stream).value;
  Status closed = store.close();
  EVENTSOURCE_CHECK_OK(closed);
  ok = ok && closed.ok();
  // What recovery left behind is a clean store.
  Result<VerifyReport> report = Store::verify(path);
  EVENTSOURCE_CHECK_OK(report);
  if (report.ok()) {
    INFO("first problem: " << (report->clean() ? std::string("-")
                                               : report->problems[0].what + " at offset " +
                                                     std::to_string(report->problems[0].offset)));
    CHECK(report->clean());
    ok = ok && report->clean();
  }
  return ok;
}

struct Located {
  Images images;
  ByteRange last;            // bytes the last append changed
  uint64_t frame_begin = 0;  // the last frame, aligned
  uint64_t frame_end = 0;
  uint64_t prev_begin = 0;  // the frame before it, aligned
  uint64_t prev_end = 0;
};

Located locate(const std::string& path) {
  Located l;
  l.images = write_and_capture(path);
  REQUIRE(l.images.before_last.size() == l.images.after_last.size());
  REQUIRE(l.images.before_prev.size() == l.images.before_last.size());
  l.last = differing_range(l.images.before_last, l.images.after_last);
  const ByteRange prev = differing_range(l.images.before_prev, l.images.before_last);
  INFO("last append changed [" << l.last.begin << ", " << l.last.end << "), the one before ["
                               << prev.begin << ", " << prev.end << ")");
  // One small batch is one small frame; anything else (a header rewritten per
  // append, say) would make "the last frame" meaningless here.
  REQUIRE(l.last.size() > 0);
  REQUIRE(l.last.size() < 2048);
  REQUIRE(prev.size() > 0);
  REQUIRE(prev.end <= l.last.begin);
  l.frame_begin = align_down(l.last.begin);
  l.frame_end = align_up(l.last.end);
  l.prev_begin = align_down(prev.begin);
  l.prev_end = align_up(prev.end);
  REQUIRE(l.frame_end + 4096 < l.images.after_last.size());
  return l;
}

// ---- A torn batch that opens a new segment ---------------------------------
constexpr MarkedBatchSpec kRollSpec{2, 900, 1100};

// The store's files just before and just after the append that rolled to a
// second segment, by a writer that then dies without closing.
struct RollImages {
  std::string before;  // padded with zeros to the size of `after`
  std::string after;
  std::optional<std::string> checkpoint;
  uint64_t batches = 0;  // the rolling batch's number
};

RollImages capture_roll(const std::string& path) {
  // The child reports (batch, event segments, log bytes) after each append
  // and waits: 1 = go on, 0 = die.
  Child child = Child::spawn([&](const ChildPipes& pipes) {
    Result<std::unique_ptr<Store>> store = Store::open(path, small_store_options());
    if (!store.ok()) return 3;
    for (uint64_t b = 1; b < 100000; ++b) {
      const auto events =
          make_marked_batch(b, kRollSpec.events, kRollSpec.min_payload, kRollSpec.max_payload);
      if (!(*store)->append(marked_stream(b), ExpectedVersion::any(), events).ok()) return 5;
      const StoreStats stats = (*store)->stats();
      pipes.send(b);
      pipes.send(stats.event_segments);
      pipes.send(stats.log_bytes);
      if (pipes.receive() == 0) _exit(0);
    }
    return 6;
  });
  RollImages images;
  std::string previous;
  for (;;) {
    std::optional<uint64_t> b = child.receive();
    std::optional<uint64_t> segments = child.receive();
    std::optional<uint64_t> log_bytes = child.receive();
    INFO("writer " << (b ? "running" : describe_wait_status(child.wait())));
    REQUIRE(log_bytes.has_value());
    if (*segments >= 2) {
      REQUIRE(*segments == 2);
      REQUIRE_FALSE(previous.empty());
      images.after = read_file(path);
      images.checkpoint = read_file_if_exists(path + ".ckpt");
      images.batches = *b;
      REQUIRE(previous.size() <= images.after.size());
      images.before = previous + std::string(images.after.size() - previous.size(), '\0');
      REQUIRE(child.send(0));
      break;
    }
    // Near the end of the first segment, keep each image: the next append may roll.
    if (*log_bytes + 64 * 1024 > kMiB) previous = read_file(path);
    REQUIRE(child.send(1));
  }
  REQUIRE(child.wait_exit_code() == 0);
  return images;
}

// Tears the rolling batch at offsets [begin, end) chosen by `stride`: every
// byte of the segment and frame headers and the frame's last bytes, and every
// stride-th byte between (stride 1: every byte).
void run_torn_roll(uint64_t stride) {
  const uint64_t seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  TempDir dir("es-torn-roll");
  const std::string path = dir.file("roll.evs");
  const RollImages im = capture_roll(path);
  const ByteRange changed = differing_range(im.before, im.after);
  const uint64_t frame_end = align_up(changed.end);
  const uint64_t headers_end = changed.begin + 64 + 64;  // segment header, frame header
  CAPTURE(changed.begin);
  CAPTURE(changed.end);
  CAPTURE(im.batches);
  // The rolling append wrote a segment header at a slot boundary and one frame.
  REQUIRE(changed.begin % 4096 == 0);
  REQUIRE(changed.size() < 8192);
  REQUIRE(frame_end + 256 < im.after.size());

  constexpr int kMaxFailures = 3;
  int zero_failures = 0;
  int garbage_failures = 0;
  int truncation_failures = 0;
  uint64_t tried = 0;
  for (uint64_t k = changed.begin; k <= frame_end; ++k) {
    const bool dense = k < headers_end || k + 16 >= changed.end;
    if (!dense && (k - changed.begin) % stride != 0) continue;
    ++tried;
    CAPTURE(k);
    if (zero_failures < kMaxFailures) {
      INFO("tail zero-filled from k");
      std::string image = im.after.substr(0, k) + im.before.substr(k);
      const LastBatch expect = k >= changed.end ? LastBatch::kPresent : LastBatch::kAbsent;
      if (!check_recovery(path, image, im.checkpoint, expect, im.batches, kRollSpec)) {
        ++zero_failures;
      }
    }
    // Garbage after a partial segment header cannot come from a crash: the
    // header is synced before any frame is written behind it.
    if (garbage_failures < kMaxFailures && k >= changed.begin + 64) {
      INFO("tail garbage-filled from k");
      std::string image = im.after;
      for (uint64_t i = k; i < frame_end + 256; ++i) image[i] = static_cast<char>(rng());
      if (k < changed.end && image[k] == im.after[k]) image[k] = static_cast<char>(~image[k]);
      const LastBatch expect = k < changed.end ? LastBatch::kAbsent
                               : k < frame_end ? LastBatch::kEither
                                               : LastBatch::kPresent;
      if (!check_recovery(path, image, im.checkpoint, expect, im.batches, kRollSpec)) {
        ++garbage_failures;
      }
    }
    if (truncation_failures < kMaxFailures) {
      INFO("file truncated at k");
      std::string image = im.after.substr(0, k);
      const LastBatch expect = k < changed.end ? LastBatch::kAbsent
                               : k < frame_end ? LastBatch::kEither
                                               : LastBatch::kPresent;
      if (!check_recovery(path, image, im.checkpoint, expect, im.batches, kRollSpec)) {
        ++truncation_failures;
      }
    }
  }
  MESSAGE("tore the rolling batch at " << tried << " offsets of " << frame_end - changed.begin);
  CHECK_MESSAGE(zero_failures == 0,
                "zero-filled tails: stopped after " << kMaxFailures << " failing offsets");
  CHECK_MESSAGE(garbage_failures == 0,
                "garbage-filled tails: stopped after " << kMaxFailures << " failing offsets");
  CHECK_MESSAGE(truncation_failures == 0,
                "truncated files: stopped after " << kMaxFailures << " failing offsets");
}

TEST_SUITE("torn-tail") {
  TEST_CASE("a torn last batch is cut on open at every byte offset, whatever fills the tail") {
    const uint64_t seed = std::random_device{}();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    TempDir dir("es-torn");
    const std::string path = dir.file("torn.evs");
    const Located l = locate(path);
    const Images& im = l.images;
    CAPTURE(l.frame_begin);
    CAPTURE(l.frame_end);

    // Failing offsets per tail kind; a kind stops being tried after a few, so
    // that one broken kind does not hide how the others fare.
    constexpr int kMaxFailures = 3;
    int zero_failures = 0;
    int garbage_failures = 0;
    int truncation_failures = 0;
    for (uint64_t k = l.frame_begin; k <= l.frame_end; ++k) {
      CAPTURE(k);
      // Written up to k, the rest still the preallocated zeros.
      if (zero_failures < kMaxFailures) {
        INFO("tail zero-filled from k");
        std::string image = im.after_last.substr(0, k) + im.before_last.substr(k);
        const LastBatch expect = k >= l.last.end ? LastBatch::kPresent : LastBatch::kAbsent;
        if (!check_recovery(path, image, im.checkpoint, expect)) ++zero_failures;
      }
      // Written up to k, then garbage over the rest of the frame and beyond.
      if (garbage_failures < kMaxFailures) {
        INFO("tail garbage-filled from k");
        std::string image = im.after_last;
        for (uint64_t i = k; i < l.frame_end + 256; ++i) image[i] = static_cast<char>(rng());
        if (k < l.last.end && image[k] == im.after_last[k]) image[k] = static_cast<char>(~image[k]);
        const LastBatch expect = k < l.last.end    ? LastBatch::kAbsent
                                 : k < l.frame_end ? LastBatch::kEither  // garbage in the padding
                                                   : LastBatch::kPresent;
        if (!check_recovery(path, image, im.checkpoint, expect)) ++garbage_failures;
      }
      // The file cut at k.
      if (truncation_failures < kMaxFailures) {
        INFO("file truncated at k");
        std::string image = im.after_last.substr(0, k);
        const LastBatch expect = k < l.last.end    ? LastBatch::kAbsent
                                 : k < l.frame_end ? LastBatch::kEither  // padding cut off
                                                   : LastBatch::kPresent;
        if (!check_recovery(path, image, im.checkpoint, expect)) ++truncation_failures;
      }
    }
    CHECK_MESSAGE(zero_failures == 0,
                  "zero-filled tails: stopped after " << kMaxFailures << " failing offsets");
    CHECK_MESSAGE(garbage_failures == 0,
                  "garbage-filled tails: stopped after " << kMaxFailures << " failing offsets");
    CHECK_MESSAGE(truncation_failures == 0,
                  "truncated files: stopped after " << kMaxFailures << " failing offsets");
  }

  TEST_CASE("a stale copy of an earlier frame after the last one is not read as events") {
    TempDir dir("es-torn");
    const std::string path = dir.file("stale.evs");
    const Located l = locate(path);
    const Images& im = l.images;

    SUBCASE("the previous frame copied after the last") {
      std::string image = im.after_last;
      image.replace(l.frame_end, l.prev_end - l.prev_begin,
                    im.after_last.substr(l.prev_begin, l.prev_end - l.prev_begin));
      REQUIRE(check_recovery(path, image, im.checkpoint, LastBatch::kPresent));
    }
    SUBCASE("the last frame copied after itself") {
      std::string image = im.after_last;
      image.replace(l.frame_end, l.frame_end - l.frame_begin,
                    im.after_last.substr(l.frame_begin, l.frame_end - l.frame_begin));
      REQUIRE(check_recovery(path, image, im.checkpoint, LastBatch::kPresent));
    }
    SUBCASE("the previous frame copied where the last one was torn") {
      // The last frame never made it; a stale copy of the previous frame sits
      // where it would have been.
      std::string image = im.before_last;
      image.replace(l.frame_begin, l.prev_end - l.prev_begin,
                    im.after_last.substr(l.prev_begin, l.prev_end - l.prev_begin));
      REQUIRE(check_recovery(path, image, im.checkpoint, LastBatch::kAbsent));
    }

    // The store goes on from there: the next append lands after the last
    // batch, over the stale bytes, and survives a reopen.
    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      const uint64_t next = store->committed_position().value / kSpec.events + 1;
      const auto events =
          make_marked_batch(next, kSpec.events, kSpec.min_payload, kSpec.max_payload);
      EVENTSOURCE_REQUIRE_OK(store->append(marked_stream(next), ExpectedVersion::any(), events));
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_REQUIRE_OK(all.status);
    const std::string problem = check_marked_log(all.events, kSpec);
    INFO(problem);
    CHECK(problem.empty());
    EVENTSOURCE_CHECK_OK(store->close());
  }
}

TEST_SUITE("torn-tail") {
  TEST_CASE("a torn batch that opens a new segment is cut on open (sampled offsets)") {
    run_torn_roll(53);
  }
}

TEST_SUITE("torn-tail-full") {
  TEST_CASE("a torn batch that opens a new segment is cut on open at every byte offset") {
    run_torn_roll(1);
  }
}

}  // namespace
}  // namespace eventsource::testing
