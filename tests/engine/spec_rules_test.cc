// format-spec.md conformance: each test breaks exactly one [F-n] rule in a
// closed store and re-signs every checksum over the edited bytes
// (tests/fuzz/resign.h), so that only that rule can reject them. Then open
// (read-write and read-only), verify and the readers must judge the bytes the
// same way, as the rule says. Test names cite the rule they check.
#include <doctest/doctest.h>
#include <zstd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/checkpoint_file.h"
#include "engine/coding.h"
#include "engine/format.h"
#include "engine/os.h"
#include "engine/segment.h"
#include "eventsource/store.h"
#include "tests/fuzz/resign.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
namespace ih = format::index_header;
namespace ie = format::index_entry;
namespace rec = format::record;

uint8_t* at(std::string& bytes, uint64_t offset) {
  return reinterpret_cast<uint8_t*>(bytes.data()) + offset;
}

// What the edits of a closed store go by: its header and its checkpoint.
struct Layout {
  FileHeader header;
  Checkpoint ckpt;

  uint64_t seed() const { return header.seed(); }
  uint64_t slot_offset(uint64_t slot) const {
    return format::kFileHeaderSize + slot * header.segment_size;
  }
  int64_t slot_of(uint64_t offset) const {
    return static_cast<int64_t>((offset - format::kFileHeaderSize) / header.segment_size);
  }
};

Layout layout_of(const std::string& path) {
  Layout l;
  const std::string data = read_file(path);
  REQUIRE(parse_file_header(reinterpret_cast<const uint8_t*>(data.data()), data.size(), &l.header)
              .empty());
  std::string why;
  Result<std::optional<Checkpoint>> c =
      read_checkpoint_file(*default_os(), path, l.header.store_id, l.seed(), &why);
  EVENTSOURCE_REQUIRE_OK(c);
  REQUIRE(c->has_value());
  l.ckpt = **c;
  return l;
}

// One batch (one frame) of `n` events.
void append_batch(Store& store, const StreamId& stream, int n, const std::string& payload) {
  std::vector<EventData> events;
  for (int i = 0; i < n; ++i) events.push_back(make_event("Happened", payload + std::to_string(i)));
  EVENTSOURCE_REQUIRE_OK(store.append(stream, ExpectedVersion::any(), events));
}

// Re-signs the frame at `offset` of a data image: its records when
// uncompressed, then the frame checksum.
void resign_frame_at(std::string& data, const Layout& l, uint64_t offset) {
  const uint64_t end = l.slot_offset(static_cast<uint64_t>(l.slot_of(offset)) + 1);
  REQUIRE(fuzz::resign_frame(at(data, offset), end - offset, l.seed()) != 0);
}

// Rewrites PATH.ckpt (re-signed) so that it names no index: open then scans
// the whole log, and verify checks no index.
void drop_index_from_checkpoint(const std::string& path, const Layout& l) {
  Checkpoint c = l.ckpt;
  c.index_slot = kNoSlot;
  c.index_epoch = 0;
  EVENTSOURCE_REQUIRE_OK(write_checkpoint_file(*default_os(), path, c, l.seed(), 0600));
}

// Offset and length of the index blob the checkpoint names.
struct Blob {
  uint64_t offset = 0;
  uint64_t len = 0;
};
Blob index_blob(std::string& data, const Layout& l) {
  REQUIRE(l.ckpt.index_slot != kNoSlot);
  const uint64_t base = l.slot_offset(l.ckpt.index_slot);
  return Blob{base + sh::kSize, get_u64(at(data, base) + sh::kPayloadLen)};
}

// File offsets of the records of the uncompressed frame at `frame`.
std::vector<uint64_t> record_offsets(std::string& data, uint64_t frame) {
  std::vector<uint64_t> out;
  const uint32_t count = get_u32(at(data, frame) + fh::kCount);
  uint64_t off = frame + fh::kSize;
  for (uint32_t i = 0; i < count; ++i) {
    out.push_back(off);
    off += get_u32(at(data, off) + rec::kRecordLen);
  }
  return out;
}

StoreOptions mode_options(OpenMode mode) {
  StoreOptions o = small_store_options();
  o.mode = mode;
  o.create = CreateMode::kMustExist;
  return o;
}

// The status of opening the store (closing it again when that worked).
Status open_status(const std::string& path, OpenMode mode) {
  Result<std::unique_ptr<Store>> s = Store::open(path, mode_options(mode));
  if (!s.ok()) return s.status();
  return (*s)->close();
}

VerifyReport verify_or_fail(const std::string& path) {
  Result<VerifyReport> r = Store::verify(path);
  EVENTSOURCE_REQUIRE_OK(r);
  for (const VerifyProblem& p : r->problems)
    MESSAGE("verify: segment ", p.segment, " offset ", p.offset, ": ", p.what);
  return *r;
}

bool has_problem_at(const VerifyReport& r, int64_t segment, int64_t offset) {
  for (const VerifyProblem& p : r.problems)
    if (p.segment == segment && p.offset == offset) return true;
  return false;
}

bool has_problem_in(const VerifyReport& r, int64_t segment) {
  for (const VerifyProblem& p : r.problems)
    if (p.segment == segment) return true;
  return false;
}

// A JSON-ish payload that zstd compresses well.
const std::string kCompressible =
    R"({"customer":"acme","lines":[{"sku":"A-1","qty":2},{"sku":"A-1","qty":2}],"n":)";

}  // namespace

TEST_SUITE("spec-rules") {
  TEST_CASE("[F-12] a compressed body is exactly one zstd frame: nothing may follow it") {
    TempDir dir("es-spec");
    const std::string path = dir.file("s.evs");
    StoreOptions o = small_store_options();
    o.compress_min_bytes = 256;
    {
      std::unique_ptr<Store> s = open_or_fail(path, o);
      append_batch(*s, {"Zip", "1"}, 8, kCompressible);
      append_batch(*s, {"Zip", "2"}, 8, kCompressible);
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    const Layout l = layout_of(path);
    const uint64_t off = l.ckpt.last_frame_offset;
    // A reader that opened before the edit: its read_all meets the new bytes.
    std::unique_ptr<Store> reader = open_or_fail(path, mode_options(OpenMode::kReadOnly));
    std::string data = read_file(path);
    REQUIRE((*at(data, off + fh::kFlags) & format::kFrameFlagZstd) != 0);

    std::string trailer;
    SUBCASE("an empty zstd frame") {
      trailer.resize(ZSTD_compressBound(0));
      const size_t n = ZSTD_compress(trailer.data(), trailer.size(), "", 0, 1);
      REQUIRE(!ZSTD_isError(n));
      trailer.resize(n);
    }
    SUBCASE("a skippable frame") {
      // Magic 0x184D2A50, u32 length 4, then 4 bytes of user data.
      trailer = std::string("\x50\x2a\x4d\x18\x04\x00\x00\x00wxyz", 12);
    }
    // The body grows by the trailer; the frame grows to hold it (it is the
    // last frame of its segment, so nothing moves) and is re-signed.
    const uint32_t body_len = get_u32(at(data, off) + fh::kBodyLen);
    const uint32_t new_len = body_len + static_cast<uint32_t>(trailer.size());
    data.replace(off + fh::kSize + body_len, trailer.size(), trailer);
    put_u32(at(data, off) + fh::kBodyLen, new_len);
    put_u32(at(data, off) + fh::kFrameLen,
            static_cast<uint32_t>(align_up(fh::kSize + new_len, format::kFrameAlign)));
    resign_frame_at(data, l, off);
    restore_file(path, data);
    drop_index_from_checkpoint(path, l);  // open scans (decodes) the frame

    const ReadResult all = read_all_events(*reader);
    EVENTSOURCE_CHECK_CODE(all.status, Code::kCorruption);
    CHECK(mentions_offset(all.status.message(), static_cast<int64_t>(off)));
    CHECK(has_problem_at(verify_or_fail(path), l.slot_of(off), static_cast<int64_t>(off)));
    EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadOnly), Code::kCorruption);
    EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadWrite), Code::kCorruption);
  }

  TEST_CASE("[F-30] the first event segment in log order must start at position 1") {
    TempDir dir("es-spec");
    const std::string path = dir.file("s.evs");
    {
      std::unique_ptr<Store> s = open_or_fail(path, small_store_options());
      for (int b = 0; b < 3; ++b) append_batch(*s, {"First", "1"}, 2, "x");
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    const Layout l = layout_of(path);
    std::string data = read_file(path);
    // Slot 0 holds the first event segment; its frames still start at 1.
    uint8_t* h = at(data, l.slot_offset(0));
    REQUIRE(get_u16(h + sh::kKind) == static_cast<uint16_t>(format::SegmentKind::kEvents));
    REQUIRE(get_u64(h + sh::kFirstPosition) == 1);
    put_u64(h + sh::kFirstPosition, 2);
    put_u64(h + sh::kChecksum, checksum64(h, sh::kChecksum, l.seed()));
    restore_file(path, data);
    SUBCASE("open through the persisted index") {}
    SUBCASE("open by a full scan") { drop_index_from_checkpoint(path, l); }

    CHECK(has_problem_at(verify_or_fail(path), 0, static_cast<int64_t>(l.slot_offset(0))));
    EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadOnly), Code::kCorruption);
    EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadWrite), Code::kCorruption);
  }

  TEST_CASE("[F-20] an index whose locators do not add up to covers_position is not used") {
    TempDir dir("es-spec");
    const std::string path = dir.file("s.evs");
    {
      std::unique_ptr<Store> s = open_or_fail(path, small_store_options());
      append_batch(*s, {"Acct", "1"}, 4, "a");
      append_batch(*s, {"Zed", "1"}, 3, "z");  // last in the directory (name order)
      append_batch(*s, {"Acct", "1"}, 2, "a");
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    const Layout l = layout_of(path);
    std::string data = read_file(path);
    // Hide Zed-1's last event: one locator fewer in its entry and in the blob
    // header; covers_position still says 9.
    const Blob blob = index_blob(data, l);
    uint8_t* b = at(data, blob.offset);
    REQUIRE(get_u64(b + ih::kCoversPosition) == 9);
    const uint64_t streams = get_u64(b + ih::kStreamCount);
    REQUIRE(streams == 2);
    uint8_t* last = b + ih::kSize + (streams - 1) * ie::kSize;
    REQUIRE(get_u64(last + ie::kCount) == 3);
    put_u64(last + ie::kCount, 2);
    put_u64(b + ih::kLocatorCount, get_u64(b + ih::kLocatorCount) - 1);
    fuzz::resign_index_blob(b, blob.len, l.seed());
    restore_file(path, data);

    CHECK(has_problem_in(verify_or_fail(path), static_cast<int64_t>(l.ckpt.index_slot)));
    std::unique_ptr<Store> s = open_or_fail(path, mode_options(OpenMode::kReadWrite));
    CHECK(s->stream_version({"Zed", "1"}) == StreamVersion(3));
    const ReadResult zed = read_stream_events(*s, {"Zed", "1"});
    EVENTSOURCE_CHECK_OK(zed.status);
    CHECK(zed.events.size() == 3);
    // The next append continues the stream instead of writing version 3 again.
    const std::vector<EventData> more = {make_event("T", "4")};
    EVENTSOURCE_CHECK_OK(s->append({"Zed", "1"}, ExpectedVersion::exact(StreamVersion(3)), more));
  }

  TEST_CASE(
      "[F-21] an index whose log_end_offset is not where the checkpoint's last frame ends "
      "is not used") {
    TempDir dir("es-spec");
    const std::string path = dir.file("s.evs");
    {
      std::unique_ptr<Store> s = open_or_fail(path, small_store_options());
      for (int b = 0; b < 3; ++b) append_batch(*s, {"End", "1"}, 2, "e");
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    const Layout l = layout_of(path);
    std::string data = read_file(path);
    const uint64_t frame_end =
        l.ckpt.last_frame_offset + get_u32(at(data, l.ckpt.last_frame_offset) + fh::kFrameLen);
    const Blob blob = index_blob(data, l);
    uint8_t* b = at(data, blob.offset);
    REQUIRE(get_u64(b + ih::kLogEndOffset) == frame_end);
    uint64_t log_end = 0;
    // Before the end, a read-write open would cut the durable last frame as a
    // torn tail; past it, appends would land where no scan finds them.
    SUBCASE("at the start of the last frame") { log_end = l.ckpt.last_frame_offset; }
    SUBCASE("past the end of the last frame") { log_end = frame_end + format::kFrameAlign; }
    put_u64(b + ih::kLogEndOffset, log_end);
    fuzz::resign_index_blob(b, blob.len, l.seed());
    restore_file(path, data);

    CHECK(has_problem_in(verify_or_fail(path), static_cast<int64_t>(l.ckpt.index_slot)));
    {
      std::unique_ptr<Store> s = open_or_fail(path, mode_options(OpenMode::kReadWrite));
      const ReadResult all = read_all_events(*s);
      EVENTSOURCE_CHECK_OK(all.status);
      CHECK(all.events.size() == 6);
      const std::vector<EventData> more = {make_event("T", "7")};
      EVENTSOURCE_CHECK_OK(s->append({"End", "1"}, ExpectedVersion::exact(StreamVersion(6)), more));
      EVENTSOURCE_CHECK_OK(s->close());
    }
    std::unique_ptr<Store> s = open_or_fail(path, mode_options(OpenMode::kReadOnly));
    const ReadResult all = read_all_events(*s);
    EVENTSOURCE_CHECK_OK(all.status);
    CHECK(all.events.size() == 7);
    CHECK(verify_or_fail(path).clean());
  }

  TEST_CASE("[F-16] a version jump inside the indexed log is caught by read_stream and verify") {
    TempDir dir("es-spec");
    const std::string path = dir.file("s.evs");
    {
      std::unique_ptr<Store> s = open_or_fail(path, small_store_options());
      append_batch(*s, {"Jump", "1"}, 3, "j");
      append_batch(*s, {"Other", "1"}, 2, "o");
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    const Layout l = layout_of(path);
    std::string data = read_file(path);
    const uint64_t frame = l.slot_offset(0) + sh::kSize;  // Jump-1's frame
    const std::vector<uint64_t> records = record_offsets(data, frame);
    REQUIRE(records.size() == 3);
    REQUIRE(get_u64(at(data, records[1]) + rec::kVersion) == 2);
    put_u64(at(data, records[1]) + rec::kVersion, 7);
    resign_frame_at(data, l, frame);
    restore_file(path, data);

    CHECK(has_problem_at(verify_or_fail(path), 0, static_cast<int64_t>(frame)));
    SUBCASE("indexed: open trusts the index, read_stream checks each record") {
      std::unique_ptr<Store> s = open_or_fail(path, mode_options(OpenMode::kReadOnly));
      const ReadResult jump = read_stream_events(*s, {"Jump", "1"});
      EVENTSOURCE_CHECK_CODE(jump.status, Code::kCorruption);
      CHECK(jump.events.size() == 1);
      // read_all applies [F-11]/[F-12] only: it delivers the record as stored.
      const ReadResult all = read_all_events(*s);
      EVENTSOURCE_CHECK_OK(all.status);
      CHECK(all.events.size() == 5);
    }
    SUBCASE("scanned: open's index build rejects the frame") {
      drop_index_from_checkpoint(path, l);
      EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadOnly), Code::kCorruption);
      EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadWrite), Code::kCorruption);
    }
  }

  TEST_CASE("[F-16] verify rejects a stream type containing '-' as open's scan does") {
    TempDir dir("es-spec");
    const std::string path = dir.file("s.evs");
    {
      std::unique_ptr<Store> s = open_or_fail(path, small_store_options());
      append_batch(*s, {"Ab", "1"}, 1, "a");
      append_batch(*s, {"Other", "1"}, 2, "o");
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    const Layout l = layout_of(path);
    std::string data = read_file(path);
    const uint64_t frame = l.slot_offset(0) + sh::kSize;  // Ab-1's frame
    const uint64_t record = record_offsets(data, frame).at(0);
    REQUIRE(*at(data, record + rec::kStreamTypeLen) == 2);
    REQUIRE(*at(data, record + rec::kSize + 1) == 'b');
    *at(data, record + rec::kSize + 1) = '-';  // "Ab" -> "A-": version 1 of "A--1"
    resign_frame_at(data, l, frame);
    restore_file(path, data);
    drop_index_from_checkpoint(path, l);

    CHECK(has_problem_at(verify_or_fail(path), 0, static_cast<int64_t>(frame)));
    EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadOnly), Code::kCorruption);
    EVENTSOURCE_CHECK_CODE(open_status(path, OpenMode::kReadWrite), Code::kCorruption);
  }
}

}  // namespace eventsource::testing
