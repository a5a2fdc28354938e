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
#include "tests/support/codec_text.h"
#include "tests/support/files.h"
#include "tests/support/record_layout.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

namespace fh = format::frame_header;
namespace sh = format::segment_header;
namespace ih = format::index_header;
namespace ie = format::index_entry;
namespace rec = format::record;

// One append batch, i.e. one frame: `events` events of `stream` whose
// payloads are `payload` followed by the event's index.
struct Batch {
  StreamId stream;
  int events = 1;
  std::string payload = "x";
};

// A store written batch by batch and closed (close() writes a checkpoint and
// an index), in a scratch directory. A test edits `data`, the image of the
// data file, re-signs what it changed and save()s it.
class SpecStore {
 public:
  explicit SpecStore(const std::vector<Batch>& batches,
                     const StoreOptions& options = small_store_options()) {
    {
      std::unique_ptr<Store> s = open_or_fail(path, options);
      for (const Batch& b : batches) {
        std::vector<EventData> events;
        for (int i = 0; i < b.events; ++i)
          events.push_back(make_event("Happened", b.payload + std::to_string(i)));
        EVENTSOURCE_REQUIRE_OK(s->append(b.stream, ExpectedVersion::any(), events));
      }
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    data = read_file(path);
    REQUIRE(parse_file_header_text(at(0), data.size(), &header).empty());
    std::string why;
    Result<std::optional<Checkpoint>> c =
        read_checkpoint_file_text(*default_os(), path, header.store_id, seed(), &why);
    EVENTSOURCE_REQUIRE_OK(c);
    REQUIRE(c->has_value());
    ckpt = **c;
  }

  TempDir dir{"es-spec"};
  const std::string path = dir.file("s.evs");
  FileHeader header;
  Checkpoint ckpt;   // as close() wrote it
  std::string data;  // the data file, to edit

  uint8_t* at(uint64_t offset) { return reinterpret_cast<uint8_t*>(data.data()) + offset; }
  uint64_t seed() const { return header.seed(); }
  uint64_t slot_offset(uint64_t slot) const {
    return format::kFileHeaderSize + slot * header.segment_size;
  }
  int64_t slot_of(uint64_t offset) const {
    return static_cast<int64_t>((offset - format::kFileHeaderSize) / header.segment_size);
  }
  // The first frame of the first event segment.
  uint64_t first_frame() const { return slot_offset(0) + sh::kSize; }

  // Writes `data` back (only the blocks that differ, so a handle that has the
  // file mapped sees the edit).
  void save() { restore_file(path, data); }

  // Re-signs the frame at `offset`: its records when uncompressed, then the
  // frame checksum.
  void resign_frame(uint64_t offset) {
    const uint64_t end = slot_offset(static_cast<uint64_t>(slot_of(offset)) + 1);
    REQUIRE(fuzz::resign_frame(at(offset), end - offset, seed()) != 0);
  }

  // Rewrites PATH.ckpt (re-signed) so that it names no index: open then
  // scans the whole log, and verify checks no index.
  void drop_index_from_checkpoint() {
    Checkpoint c = ckpt;
    c.index_slot = kNoSlot;
    c.index_epoch = 0;
    EVENTSOURCE_REQUIRE_OK(write_checkpoint_file(*default_os(), path, c, seed(), 0600));
  }

  // The index blob the checkpoint names, and its length.
  uint8_t* index_blob(uint64_t* len) {
    REQUIRE(ckpt.index_slot != kNoSlot);
    const uint64_t base = slot_offset(ckpt.index_slot);
    *len = get_u64(at(base) + sh::kPayloadLen);
    return at(base + sh::kSize);
  }

  // File offsets of the records of the uncompressed frame at `frame`.
  std::vector<uint64_t> record_offsets(uint64_t frame) {
    std::vector<uint64_t> out;
    const uint32_t count = get_u32(at(frame) + fh::kCount);
    uint64_t off = frame + fh::kSize;
    for (uint32_t i = 0; i < count; ++i) {
      out.push_back(off);
      off += record_layout(at(off), data.size() - off).end;
    }
    return out;
  }
};

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
    StoreOptions o = small_store_options();
    o.compress_min_bytes = 256;
    SpecStore st({{{"Zip", "1"}, 8, kCompressible}, {{"Zip", "2"}, 8, kCompressible}}, o);
    const uint64_t off = st.ckpt.last_frame_offset;
    REQUIRE((*st.at(off + fh::kFlags) & format::kFrameFlagZstd) != 0);
    // A reader that opened before the edit: its read_all meets the new bytes.
    std::unique_ptr<Store> reader = open_or_fail(st.path, mode_options(OpenMode::kReadOnly));

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
    const uint32_t body_len = get_u32(st.at(off) + fh::kBodyLen);
    const uint32_t new_len = body_len + static_cast<uint32_t>(trailer.size());
    st.data.replace(off + fh::kSize + body_len, trailer.size(), trailer);
    put_u32(st.at(off) + fh::kBodyLen, new_len);
    put_u32(st.at(off) + fh::kFrameLen,
            static_cast<uint32_t>(align_up(fh::kSize + new_len, format::kFrameAlign)));
    st.resign_frame(off);
    st.save();
    st.drop_index_from_checkpoint();  // open scans (decodes) the frame

    const ReadResult all = read_all_events(*reader);
    EVENTSOURCE_CHECK_CODE(all.status, Code::kCorruption);
    CHECK(mentions_offset(all.status.message(), static_cast<int64_t>(off)));
    CHECK(has_problem_at(verify_or_fail(st.path), st.slot_of(off), static_cast<int64_t>(off)));
    EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadOnly), Code::kCorruption);
    EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadWrite), Code::kCorruption);
  }

  TEST_CASE("[F-30] the first event segment in log order must start at position 1") {
    SpecStore st({{{"First", "1"}, 2}, {{"First", "1"}, 2}, {{"First", "1"}, 2}});
    // Slot 0 holds the first event segment; its frames still start at 1.
    uint8_t* h = st.at(st.slot_offset(0));
    REQUIRE(get_u16(h + sh::kKind) == static_cast<uint16_t>(format::SegmentKind::kEvents));
    REQUIRE(get_u64(h + sh::kFirstPosition) == 1);
    put_u64(h + sh::kFirstPosition, 2);
    put_u64(h + sh::kChecksum, checksum64(h, sh::kChecksum, st.seed()));
    st.save();
    SUBCASE("open through the persisted index") {}
    SUBCASE("open by a full scan") { st.drop_index_from_checkpoint(); }

    CHECK(has_problem_at(verify_or_fail(st.path), 0, static_cast<int64_t>(st.slot_offset(0))));
    EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadOnly), Code::kCorruption);
    EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadWrite), Code::kCorruption);
  }

  TEST_CASE("[F-20] an index whose locators do not add up to covers_position is not used") {
    // Zed-1 comes last in the directory (name order).
    SpecStore st({{{"Acct", "1"}, 4}, {{"Zed", "1"}, 3}, {{"Acct", "1"}, 2}});
    // Hide Zed-1's last event: one locator fewer in its entry and in the blob
    // header; covers_position still says 9.
    uint64_t len = 0;
    uint8_t* b = st.index_blob(&len);
    REQUIRE(get_u64(b + ih::kCoversPosition) == 9);
    const uint64_t streams = get_u64(b + ih::kStreamCount);
    REQUIRE(streams == 2);
    uint8_t* last = b + ih::kSize + (streams - 1) * ie::kSize;
    REQUIRE(get_u64(last + ie::kCount) == 3);
    put_u64(last + ie::kCount, 2);
    put_u64(b + ih::kLocatorCount, get_u64(b + ih::kLocatorCount) - 1);
    fuzz::resign_index_blob(b, len, st.seed());
    st.save();

    CHECK(has_problem_in(verify_or_fail(st.path), static_cast<int64_t>(st.ckpt.index_slot)));
    std::unique_ptr<Store> s = open_or_fail(st.path, mode_options(OpenMode::kReadWrite));
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
    SpecStore st({{{"End", "1"}, 2}, {{"End", "1"}, 2}, {{"End", "1"}, 2}});
    const uint64_t frame_end =
        st.ckpt.last_frame_offset + get_u32(st.at(st.ckpt.last_frame_offset) + fh::kFrameLen);
    uint64_t len = 0;
    uint8_t* b = st.index_blob(&len);
    REQUIRE(get_u64(b + ih::kLogEndOffset) == frame_end);
    uint64_t log_end = 0;
    // Before the end, a read-write open would cut the durable last frame as a
    // torn tail; past it, appends would land where no scan finds them.
    SUBCASE("at the start of the last frame") { log_end = st.ckpt.last_frame_offset; }
    SUBCASE("past the end of the last frame") { log_end = frame_end + format::kFrameAlign; }
    put_u64(b + ih::kLogEndOffset, log_end);
    fuzz::resign_index_blob(b, len, st.seed());
    st.save();

    CHECK(has_problem_in(verify_or_fail(st.path), static_cast<int64_t>(st.ckpt.index_slot)));
    {
      std::unique_ptr<Store> s = open_or_fail(st.path, mode_options(OpenMode::kReadWrite));
      const ReadResult all = read_all_events(*s);
      EVENTSOURCE_CHECK_OK(all.status);
      CHECK(all.events.size() == 6);
      const std::vector<EventData> more = {make_event("T", "7")};
      EVENTSOURCE_CHECK_OK(s->append({"End", "1"}, ExpectedVersion::exact(StreamVersion(6)), more));
      EVENTSOURCE_CHECK_OK(s->close());
    }
    std::unique_ptr<Store> s = open_or_fail(st.path, mode_options(OpenMode::kReadOnly));
    const ReadResult all = read_all_events(*s);
    EVENTSOURCE_CHECK_OK(all.status);
    CHECK(all.events.size() == 7);
    CHECK(verify_or_fail(st.path).clean());
  }

  TEST_CASE(
      "[F-21] an index whose log_end_offset is the first frame of the segment the writer "
      "rolled to is used") {
    // The writer had allocated (and synced the header of) a next segment but
    // written no frame there when it checkpointed: its append offset is that
    // segment's offset 64, not the end of the last frame.
    SpecStore st({{{"Roll", "1"}, 2}, {{"Roll", "1"}, 2}, {{"Roll", "1"}, 2}});
    REQUIRE(st.ckpt.index_slot == 1);
    SegmentHeader rolled;
    rolled.kind = format::SegmentKind::kEvents;
    rolled.slot = 2;
    rolled.epoch = st.ckpt.index_epoch + 1;
    rolled.first_position = 7;
    REQUIRE(st.data.size() == st.slot_offset(2));
    st.data.append(st.header.segment_size, '\0');
    encode_segment_header(rolled, st.seed(), st.at(st.slot_offset(2)));
    uint64_t len = 0;
    uint8_t* b = st.index_blob(&len);
    put_u64(b + ih::kLogEndOffset, st.slot_offset(2) + sh::kSize);
    fuzz::resign_index_blob(b, len, st.seed());
    st.save();

    CHECK(verify_or_fail(st.path).clean());
    {
      std::unique_ptr<Store> s = open_or_fail(st.path, mode_options(OpenMode::kReadWrite));
      CHECK(s->stats().index_persisted_position == 6);  // the index was used
      const std::vector<EventData> more = {make_event("T", "7")};
      EVENTSOURCE_CHECK_OK(
          s->append({"Roll", "1"}, ExpectedVersion::exact(StreamVersion(6)), more));
      EVENTSOURCE_CHECK_OK(s->close());
    }
    std::unique_ptr<Store> s = open_or_fail(st.path, mode_options(OpenMode::kReadOnly));
    const ReadResult all = read_all_events(*s);
    EVENTSOURCE_CHECK_OK(all.status);
    REQUIRE(all.events.size() == 7);
    CHECK(all.events[6].position == GlobalPosition(7));
    CHECK(verify_or_fail(st.path).clean());
  }

  TEST_CASE("[F-16] a version jump inside the indexed log is caught by read_stream and verify") {
    SpecStore st({{{"Jump", "1"}, 3}, {{"Other", "1"}, 2}});
    const uint64_t frame = st.first_frame();  // Jump-1's
    const std::vector<uint64_t> records = st.record_offsets(frame);
    REQUIRE(records.size() == 3);
    const RecordLayout l = record_layout(st.at(records[1]), records[2] - records[1]);
    REQUIRE(*st.at(records[1] + l.version) == 2);  // a 1-byte varint
    *st.at(records[1] + l.version) = 7;
    st.resign_frame(frame);
    st.save();

    CHECK(has_problem_at(verify_or_fail(st.path), 0, static_cast<int64_t>(frame)));
    SUBCASE("indexed: open trusts the index, read_stream checks each record") {
      std::unique_ptr<Store> s = open_or_fail(st.path, mode_options(OpenMode::kReadOnly));
      const ReadResult jump = read_stream_events(*s, {"Jump", "1"});
      EVENTSOURCE_CHECK_CODE(jump.status, Code::kCorruption);
      CHECK(jump.events.size() == 1);
      // read_all applies [F-11]/[F-12] only: it delivers the record as stored.
      const ReadResult all = read_all_events(*s);
      EVENTSOURCE_CHECK_OK(all.status);
      CHECK(all.events.size() == 5);
    }
    SUBCASE("scanned: open's index build rejects the frame") {
      st.drop_index_from_checkpoint();
      EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadOnly), Code::kCorruption);
      EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadWrite), Code::kCorruption);
    }
  }

  TEST_CASE("[F-16] verify rejects a stream type containing '-' as open's scan does") {
    SpecStore st({{{"Ab", "1"}, 1}, {{"Other", "1"}, 2}});
    const uint64_t frame = st.first_frame();  // Ab-1's
    const uint64_t record = st.record_offsets(frame).at(0);
    const size_t type = record_layout(st.at(record), st.data.size() - record).stream_type;
    REQUIRE(*st.at(record + type) == 2);
    REQUIRE(*st.at(record + type + 2) == 'b');
    *st.at(record + type + 2) = '-';  // "Ab" -> "A-": version 1 of "A--1"
    st.resign_frame(frame);
    st.save();
    st.drop_index_from_checkpoint();

    CHECK(has_problem_at(verify_or_fail(st.path), 0, static_cast<int64_t>(frame)));
    EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadOnly), Code::kCorruption);
    EVENTSOURCE_CHECK_CODE(open_status(st.path, OpenMode::kReadWrite), Code::kCorruption);
  }

  TEST_CASE("[F-34] a store of another format version is refused with kNotSupported, untouched") {
    // Version 1 (96-byte record headers) and a future version 3 alike.
    SpecStore st({{{"Order", "1"}, 2}});
    for (uint32_t version : {1u, format::kFormatVersion + 1}) {
      CAPTURE(version);
      put_u32(st.at(format::file_header::kVersion), version);
      put_u64(st.at(format::file_header::kChecksum),
              checksum64(st.at(0), format::file_header::kChecksum, 0));
      st.save();
      for (OpenMode mode : {OpenMode::kReadOnly, OpenMode::kReadWrite}) {
        const Status s = open_status(st.path, mode);
        CAPTURE(s.to_string());
        EVENTSOURCE_CHECK_CODE(s, Code::kNotSupported);
        CHECK(s.message().find(st.path) != std::string::npos);
        CHECK(s.message().find("format version " + std::to_string(version)) != std::string::npos);
      }
      Result<VerifyReport> r = Store::verify(st.path);
      EVENTSOURCE_CHECK_CODE(r.status(), Code::kNotSupported);
      CHECK(read_file(st.path) == st.data);
    }
  }
}

}  // namespace eventsource::testing
