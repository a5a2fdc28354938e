// Unit tests of engine/frame.{h,cc}: FrameEncoder round trips (one record,
// many, compressed), and the frame and record validity rules of
// format-spec.md "Frames" and "Records" ([F-11], [F-12], [F-13], [F-15],
// [F-17]) as a corruption table over the header and the records. Each bad
// case is re-signed (tests/fuzz/resign.h) so that only the rule it names can
// reject it, and the test checks that rule's reason was given.
#include "engine/frame.h"

#include <doctest/doctest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "eventsource/types.h"
#include "tests/fuzz/resign.h"
#include "tests/support/codec_text.h"
#include "tests/support/record_layout.h"
#include "tests/support/store_helpers.h"

namespace eventsource::testing {
namespace {

namespace fh = format::frame_header;
namespace rec = format::record;

// format-spec.md "Worked example": store id 00 01 .. 0F, first frame of
// slot 0 at 0x1040 in epoch 1, 1 MiB segments.
constexpr uint64_t kSeed = 0x0808080808080808ull;
constexpr uint64_t kOffset = 0x1040;
constexpr uint64_t kEpoch = 1;
constexpr uint64_t kSegmentSize = format::kMinSegmentSize;
// Zero bytes after each encoded frame: the never-written rest of the segment.
constexpr size_t kSlack = 64;

// One record to encode; FrameEncoder::RecordFields points into it.
struct Input {
  StreamId stream;
  EventData event;
  uint64_t position = 0;
  uint64_t version = 0;

  OwnedEvent expected() const {
    return {GlobalPosition(position),
            StreamVersion(version),
            event.timestamp_us,
            event.id,
            event.correlation_id,
            event.causation_id,
            stream.type,
            stream.id,
            event.type,
            event.tenant,
            event.metadata,
            event.payload};
  }
};

enum class Payload : uint8_t { kCompressible, kRandom };

// `n` records at positions first.. over three streams, every field set.
std::vector<Input> make_inputs(uint32_t n, uint64_t first, size_t payload_size,
                               Payload kind = Payload::kCompressible) {
  std::mt19937_64 rng(n * 7919 + payload_size);
  std::vector<Input> out;
  for (uint32_t i = 0; i < n; ++i) {
    Input in;
    in.stream = StreamId{"Order", std::to_string(i % 3)};
    std::string payload;
    if (kind == Payload::kCompressible) {
      payload = "{\"n\":" + std::to_string(i) + ",\"pad\":\"";
      payload.resize(payload_size, 'p');
    } else {
      for (size_t k = 0; k < payload_size; ++k) payload += static_cast<char>(rng());
    }
    in.event = make_event(i % 2 ? "OrderPaid" : "OrderPlaced", payload, "{\"m\":1}");
    in.event.id = make_uuid(0xe0 + i, i);
    in.event.tenant = "acme";
    in.event.timestamp_us = 1700000000000000 + i;
    in.event.correlation_id = make_uuid(0xc0, i);
    in.event.causation_id = make_uuid(0xca, i);
    in.position = first + i;
    in.version = i / 3 + 1;
    out.push_back(std::move(in));
  }
  return out;
}

// The frame at file offset kOffset of epoch kEpoch, followed by kSlack zero
// bytes (so `avail` = size()). compress_min 0 = never compress.
std::vector<uint8_t> encode(const std::vector<Input>& inputs, uint32_t compress_min = 0,
                            FrameEncoder* encoder = nullptr, uint64_t durable = 0) {
  FrameEncoder local;
  FrameEncoder& enc = encoder ? *encoder : local;
  enc.reset();
  for (const Input& in : inputs)
    enc.add({&in.stream, &in.event, in.event.id, in.event.timestamp_us, in.position, in.version},
            kSeed);
  std::span<const uint8_t> f =
      enc.finish(kOffset, kEpoch, inputs.front().position, durable, compress_min, 1, kSeed);
  std::vector<uint8_t> out(f.begin(), f.end());
  out.resize(out.size() + kSlack, 0);
  return out;
}

FrameState check(const std::vector<uint8_t>& bytes, FrameHeader* h, std::string* error,
                 uint64_t avail) {
  return check_frame_text(bytes.data(), avail, kOffset, kEpoch, kSeed, h, error, kSegmentSize);
}

struct Decoded {
  bool ok = false;
  std::string error;
  std::vector<OwnedEvent> events;
  std::vector<uint32_t> body_offsets;
};

Decoded decode_all(const uint8_t* frame, const FrameHeader& h,
                   RecordCheck check = RecordCheck::kVerifyChecksum) {
  Decoded d;
  std::string buf;
  d.ok = for_each_record_text(
      frame, h, kSeed, &buf, &d.error,
      [&](const RecordedEvent& e, uint32_t i, uint32_t body_off) {
        CHECK(i == d.events.size());
        d.events.push_back(OwnedEvent::from(e));
        d.body_offsets.push_back(body_off);
        return true;
      },
      check);
  return d;
}

// Checks the frame at the start of `bytes` and decodes it; REQUIREs validity.
Decoded check_and_decode(const std::vector<uint8_t>& bytes, FrameHeader* h) {
  std::string error;
  REQUIRE_MESSAGE(check(bytes, h, &error, bytes.size()) == FrameState::kValid, error);
  return decode_all(bytes.data(), *h);
}

void expect_events(const Decoded& d, const std::vector<Input>& inputs) {
  REQUIRE_MESSAGE(d.ok, d.error);
  REQUIRE(d.events.size() == inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) CHECK(d.events[i] == inputs[i].expected());
}

// Where a mutated frame must fail.
enum class Outcome : uint8_t {
  kFrameBad,    // check_frame says kBad ([F-11])
  kRecordsBad,  // the frame is valid, decoding its body fails ([F-12], [F-15])
  kValid,       // nothing judges the field but the checksum
};
// What is recomputed after the mutation.
enum class Resign : uint8_t {
  kAll,        // record checksums (uncompressed body) and the frame checksum
  kFrameOnly,  // the frame checksum alone
  kNone,
};
enum class Body : uint8_t { kPlain, kZstd };

struct Case {
  const char* behaviour;
  const char* rule;
  Body body;
  void (*mutate)(uint8_t* frame, uint64_t avail);
  Resign resign;
  Outcome outcome;
  const char* reason;  // a substring of the error; nullptr: any reason
};

uint32_t u32_at(const uint8_t* p, size_t off) { return get_u32(p + off); }
uint64_t u64_at(const uint8_t* p, size_t off) { return get_u64(p + off); }
// Field offsets of the record at frame offset `at` of an uncompressed frame.
RecordLayout layout_at(const uint8_t* p, size_t at) {
  return record_layout(p + at, fh::kSize + u32_at(p, fh::kBodyLen) - at);
}
// Offset of the second record of an uncompressed frame.
size_t second_record(const uint8_t* p) { return fh::kSize + layout_at(p, fh::kSize).end; }

const Case kCases[] = {
    // [F-11] structure, judged before the checksum.
    {"type 0 with a non-zero header is not a frame", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kType] = 0; }, Resign::kAll, Outcome::kFrameBad,
     "unknown frame type"},
    {"type 2 is unknown", "[F-11]", Body::kPlain, [](uint8_t* p, uint64_t) { p[fh::kType] = 2; },
     Resign::kAll, Outcome::kFrameBad, "unknown frame type"},
    {"frame_len 0", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kFrameLen, 0); }, Resign::kAll, Outcome::kFrameBad,
     "frame length 0 is impossible"},
    {"frame_len below the header size", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kFrameLen, fh::kSize - 8); }, Resign::kAll,
     Outcome::kFrameBad, "frame length 56 is impossible"},
    {"frame_len not a multiple of 8", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kFrameLen, u32_at(p, fh::kFrameLen) + 4); },
     Resign::kAll, Outcome::kFrameBad, "is impossible here"},
    {"frame_len past the end of the segment", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t avail) {
       put_u32(p + fh::kFrameLen, static_cast<uint32_t>(avail + 8));
     },
     Resign::kAll, Outcome::kFrameBad, "is impossible here"},
    {"frame_len one alignment step longer than its body needs", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kFrameLen, u32_at(p, fh::kFrameLen) + 8); },
     Resign::kAll, Outcome::kFrameBad, "does not match frame length"},
    {"body_len larger than the frame", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kBodyLen, u32_at(p, fh::kFrameLen)); },
     Resign::kAll, Outcome::kFrameBad, "does not match frame length"},
    {"body_len 8 short, leaving more than 7 padding bytes", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kBodyLen, u32_at(p, fh::kBodyLen) - 8); },
     Resign::kAll, Outcome::kFrameBad, "does not match frame length"},
    {"file_offset of another place (a shifted or copied frame)", "[F-11] [F-13]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u64(p + fh::kFileOffset, kOffset + 8); }, Resign::kAll,
     Outcome::kFrameBad, "misplaced or stale frame"},
    {"epoch of an earlier use of the slot", "[F-11] [F-13]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u64(p + fh::kSegmentEpoch, kEpoch - 1); }, Resign::kAll,
     Outcome::kFrameBad, "(stale frame)"},
    {"epoch of a later segment", "[F-11] [F-13]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u64(p + fh::kSegmentEpoch, kEpoch + 1); }, Resign::kAll,
     Outcome::kFrameBad, "(stale frame)"},
    // [F-11] checksum, over [8, frame_len).
    {"a checksum bit flipped", "[F-1] [F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kChecksum + 3] ^= 0x10; }, Resign::kNone, Outcome::kFrameBad,
     "frame checksum mismatch"},
    {"durable_position changed, not re-signed", "[F-1] [F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kDurablePosition] ^= 1; }, Resign::kNone, Outcome::kFrameBad,
     "frame checksum mismatch"},
    {"a body byte changed, not re-signed", "[F-1] [F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kSize + layout_at(p, fh::kSize).payload] ^= 1; },
     Resign::kNone, Outcome::kFrameBad, "frame checksum mismatch"},
    {"a padding byte non-zero, not re-signed", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[u32_at(p, fh::kFrameLen) - 1] = 0xAA; }, Resign::kNone,
     Outcome::kFrameBad, "frame checksum mismatch"},
    {"a compressed body byte changed, not re-signed", "[F-11]", Body::kZstd,
     [](uint8_t* p, uint64_t) { p[fh::kSize + u32_at(p, fh::kBodyLen) / 2] ^= 4; }, Resign::kNone,
     Outcome::kFrameBad, "frame checksum mismatch"},
    // [F-11] rules behind the checksum.
    {"an unknown flag bit", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kFlags] |= 0x80; }, Resign::kAll, Outcome::kFrameBad,
     "unknown flags or non-zero reserved"},
    {"reserved u16 at 14 non-zero", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kReserved0 + 1] = 1; }, Resign::kAll, Outcome::kFrameBad,
     "unknown flags or non-zero reserved"},
    {"reserved u32 at 60 non-zero", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kReserved1 + 3] = 0x80; }, Resign::kAll, Outcome::kFrameBad,
     "unknown flags or non-zero reserved"},
    {"count 0", "[F-11]", Body::kPlain, [](uint8_t* p, uint64_t) { put_u32(p + fh::kCount, 0); },
     Resign::kAll, Outcome::kFrameBad, "inconsistent (count 0,"},
    {"count above 32767", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kCount, format::kMaxEventsPerBatch + 1); },
     Resign::kAll, Outcome::kFrameBad, "inconsistent (count 32768,"},
    {"count whose minimal records exceed raw_len", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       put_u32(p + fh::kCount, static_cast<uint32_t>(u32_at(p, fh::kRawLen) / rec::kMinSize + 1));
     },
     Resign::kAll, Outcome::kFrameBad, "inconsistent"},
    {"first_position 0", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u64(p + fh::kFirstPosition, 0); }, Resign::kAll,
     Outcome::kFrameBad, "inconsistent"},
    {"raw_len differs from body_len in an uncompressed frame", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kRawLen, u32_at(p, fh::kBodyLen) + 8); },
     Resign::kAll, Outcome::kFrameBad, "inconsistent"},
    {"raw_len of a compressed frame larger than a segment holds", "[F-11]", Body::kZstd,
     [](uint8_t* p, uint64_t) {
       put_u32(p + fh::kRawLen, static_cast<uint32_t>(kSegmentSize - 2 * fh::kSize + 1));
     },
     Resign::kAll, Outcome::kFrameBad, "inconsistent"},
    // Fields no rule judges on their own: valid once re-signed.
    {"durable_position changed and re-signed", "[F-11]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u64(p + fh::kDurablePosition, 12345); }, Resign::kAll,
     Outcome::kValid, nullptr},
    {"a padding byte non-zero and re-signed (padding is checked only by the checksum)", "[F-11]",
     Body::kPlain, [](uint8_t* p, uint64_t) { p[u32_at(p, fh::kFrameLen) - 1] = 0xAA; },
     Resign::kAll, Outcome::kValid, nullptr},
    {"raw_len of a compressed frame at the segment bound is not judged by the header",
     "[F-11] [F-12]", Body::kZstd,
     [](uint8_t* p, uint64_t) {
       put_u32(p + fh::kRawLen, static_cast<uint32_t>(kSegmentSize - 2 * fh::kSize));
     },
     Resign::kAll, Outcome::kRecordsBad, "compressed body declares"},
    // [F-12] a valid frame whose body does not decode.
    {"count one more than the records", "[F-12]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kCount, u32_at(p, fh::kCount) + 1); }, Resign::kAll,
     Outcome::kRecordsBad,
     "record 3 of frame: record length varint runs past the end (0 bytes left)"},
    {"count one fewer than the records", "[F-12]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kCount, u32_at(p, fh::kCount) - 1); }, Resign::kAll,
     Outcome::kRecordsBad, "bytes after its last record"},
    {"first_position not the first record's position", "[F-12]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       put_u64(p + fh::kFirstPosition, u64_at(p, fh::kFirstPosition) + 1);
     },
     Resign::kAll, Outcome::kRecordsBad, "record 0 has position"},
    {"a record's position out of sequence", "[F-12]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       const size_t r = second_record(p);
       p[r + layout_at(p, r).position] += 1;  // a 1-byte varint: 8 -> 9
     },
     Resign::kAll, Outcome::kRecordsBad, "record 1 has position"},
    {"zstd flag on a body that is not zstd", "[F-12]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kFlags] |= format::kFrameFlagZstd; }, Resign::kAll,
     Outcome::kRecordsBad, "does not start with a zstd frame"},
    {"compressed raw_len differs from the zstd content size", "[F-12]", Body::kZstd,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kRawLen, u32_at(p, fh::kRawLen) + 8); },
     Resign::kAll, Outcome::kRecordsBad, "compressed body declares"},
    {"compressed body truncated by one byte", "[F-12]", Body::kZstd,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kBodyLen, u32_at(p, fh::kBodyLen) - 1); },
     Resign::kAll, Outcome::kRecordsBad, "zstd:"},
    // [F-15] records of a valid frame.
    {"a record's payload byte changed, frame re-signed", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[second_record(p) - 1] ^= 0x20; }, Resign::kFrameOnly,
     Outcome::kRecordsBad, "record 0 of frame: record checksum mismatch"},
    {"a record checksum bit flipped, frame re-signed", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       p[second_record(p) + layout_at(p, second_record(p)).checksum] ^= 1;
     },
     Resign::kFrameOnly, Outcome::kRecordsBad, "record 1 of frame: record checksum mismatch"},
    {"a record's unknown flag bit", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kSize + layout_at(p, fh::kSize).flags] |= 0x10; },
     Resign::kAll, Outcome::kRecordsBad, "record 0 of frame: record has unknown flags 0x1f"},
    {"a record's tenant length past the record's end", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       const size_t r = second_record(p);
       p[r + layout_at(p, r).tenant] = 255;
     },
     Resign::kAll, Outcome::kRecordsBad, "record 1 of frame: record tenant of 255 bytes runs past"},
    {"a record's len below the smallest record", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       REQUIRE(layout_at(p, fh::kSize).len_size == 2);
       p[fh::kSize] = rec::kMinLen - 1;  // a 1-byte varint now; the next byte is the checksum's
     },
     Resign::kFrameOnly, Outcome::kRecordsBad, "record length 33 is impossible"},
    {"a record's len past the end of the body", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       REQUIRE(layout_at(p, second_record(p)).len_size == 2);
       REQUIRE(varint_size(u32_at(p, fh::kBodyLen)) == 2);
       put_varint(p + second_record(p), u32_at(p, fh::kBodyLen));
     },
     Resign::kFrameOnly, Outcome::kRecordsBad, "record 1 of frame: record length"},
};

// The table's frame: three records, with the first payload size from `base`
// on whose stored body ends 2..7 bytes into its last 8-byte word (padding to
// damage, and room to cut a byte off the body with frame_len unchanged).
std::vector<uint8_t> table_frame(Body body) {
  const bool zstd = body == Body::kZstd;
  const size_t base = zstd ? 600 : 37;
  // (A compressed body of repetitive payloads barely changes size with the
  // payload: the first position's varint moves it too.)
  for (uint64_t first : {7, 300, 70000})
    for (size_t payload = base; payload < base + 64; ++payload) {
      std::vector<uint8_t> f = encode(make_inputs(3, first, payload), zstd ? 1 : 0);
      if (get_u32(f.data() + fh::kBodyLen) % 8 > 1) return f;
    }
  FAIL("no payload size gives a body with 2..7 bytes in its last word");
  return {};
}

TEST_SUITE("frame") {
  TEST_CASE("the worked example's two records give its frame, byte counts and checksums") {
    // format-spec.md "Worked example".
    std::vector<Input> in(2);
    in[0].stream = in[1].stream = StreamId{"Order", "42"};
    in[0].event = make_event("OrderPlaced", R"({"sku":"A-1","qty":2})");
    in[1].event = make_event("OrderPaid", R"({"amount":1999})");
    for (int i = 0; i < 2; ++i) {
      in[i].event.tenant = "acme";
      in[i].event.id = make_uuid(1, i);
      in[i].position = in[i].version = i + 1;
    }
    FrameEncoder enc;
    std::vector<uint8_t> f = encode(in, 0, &enc);
    const uint8_t* p = f.data();
    CHECK(u32_at(p, fh::kFrameLen) == 216);
    CHECK(u32_at(p, fh::kBodyLen) == 150);
    CHECK(u32_at(p, fh::kRawLen) == 150);
    CHECK(enc.record_offsets() == std::vector<uint32_t>{0, 79});
    CHECK(record_size(in[0].stream, in[0].event, 1, 1) == 79);
    CHECK(record_size(in[1].stream, in[1].event, 2, 2) == 71);
    // Before positions are known, position and version count 10 bytes each.
    CHECK(record_size(in[0].stream, in[0].event) == 79 + 18);
    CHECK(p[64 + 150] == 0);  // two padding bytes
    CHECK(p[64 + 151] == 0);
    // Record 1, field by field (format-spec.md "Worked example").
    const uint8_t* r = p + fh::kSize;
    CHECK(r[0] == 78);               // len: a 1-byte varint, the 78 bytes after it
    CHECK(r[5] == rec::kHasTenant);  // flags
    CHECK(r[6] == 1);                // position
    CHECK(r[7] == 1);                // version
    CHECK(u64_at(r, 8) == 0);        // timestamp
    CHECK(std::memcmp(r + 16, in[0].event.id.bytes.data(), 16) == 0);
    CHECK(r[32] == 5);
    CHECK(r[38] == 2);
    CHECK(r[41] == 11);
    CHECK(r[53] == 4);
    auto text = [](const uint8_t* q, size_t n) {
      return std::string(reinterpret_cast<const char*>(q), n);
    };
    CHECK(text(r + 33, 5) == "Order");
    CHECK(text(r + 39, 2) == "42");
    CHECK(text(r + 42, 11) == "OrderPlaced");
    CHECK(text(r + 54, 4) == "acme");
    CHECK(text(r + 58, 21) == R"({"sku":"A-1","qty":2})");
    const RecordLayout l = record_layout(r, 150);
    CHECK(l.end == 79);
    CHECK(l.payload == 58);
    // Record 2 at body offset 79.
    CHECK(r[79] == 70);
    CHECK(text(r + 79 + 56, 15) == R"({"amount":1999})");
    // [F-1] Both checksums cover exactly the ranges of "Checksums".
    CHECK(u64_at(p, fh::kChecksum) == checksum64(p + 8, 216 - 8, kSeed));
    CHECK(u32_at(r, 1) == static_cast<uint32_t>(checksum64(r + 5, 79 - 5, kSeed)));
    CHECK(u32_at(r + 79, 1) == static_cast<uint32_t>(checksum64(r + 79 + 5, 71 - 5, kSeed)));
  }

  TEST_CASE("one record round-trips with every header and record field") {
    std::vector<Input> in = make_inputs(1, 41, 50);
    FrameEncoder enc;
    std::vector<uint8_t> f = encode(in, 0, &enc, /*durable=*/40);
    FrameHeader h;
    Decoded d = check_and_decode(f, &h);
    expect_events(d, in);
    const uint64_t len = record_size(in[0].stream, in[0].event, 41, in[0].version);
    CHECK(h.checksum == u64_at(f.data(), fh::kChecksum));
    CHECK(h.frame_len == align_up(fh::kSize + len, 8));
    CHECK(h.type == static_cast<uint8_t>(format::FrameType::kEvents));
    CHECK(h.flags == 0);
    CHECK_FALSE(h.compressed());
    CHECK(h.file_offset == kOffset);
    CHECK(h.epoch == kEpoch);
    CHECK(h.first_position == 41);
    CHECK(h.durable_position == 40);
    CHECK(h.count == 1);
    CHECK(h.body_len == len);
    CHECK(h.raw_len == len);
    CHECK(enc.raw_body_len() == len);
    CHECK(enc.uncompressed_frame_len() == h.frame_len);
    CHECK_FALSE(enc.compressed());
    CHECK(d.body_offsets == std::vector<uint32_t>{0});
  }

  TEST_CASE("many records round-trip in order at the encoder's body offsets") {
    std::vector<Input> in = make_inputs(500, 1000, 33);
    FrameEncoder enc;
    std::vector<uint8_t> f = encode(in, 0, &enc);
    FrameHeader h;
    Decoded d = check_and_decode(f, &h);
    expect_events(d, in);
    CHECK(h.count == 500);
    CHECK(d.body_offsets == enc.record_offsets());
    // Records are back to back, not padded ([F-12]).
    uint64_t sum = 0;
    for (const Input& i : in) sum += record_size(i.stream, i.event, i.position, i.version);
    CHECK(h.raw_len == sum);
  }

  TEST_CASE("a compressible body is stored as one zstd frame and decodes to the same records") {
    // [F-17] [F-18]
    std::vector<Input> in = make_inputs(100, 1, 300);
    FrameEncoder plain_enc;
    std::vector<uint8_t> plain = encode(in, 0, &plain_enc);
    FrameEncoder enc;
    std::vector<uint8_t> z = encode(in, 1, &enc);
    FrameHeader h;
    Decoded d = check_and_decode(z, &h);
    expect_events(d, in);
    CHECK(enc.compressed());
    CHECK(h.compressed());
    CHECK(h.flags == format::kFrameFlagZstd);
    CHECK(h.raw_len == enc.raw_body_len());
    CHECK(h.body_len <= h.raw_len - h.raw_len / 8);
    CHECK(h.frame_len == align_up(fh::kSize + h.body_len, 8));
    CHECK(enc.uncompressed_frame_len() == plain.size() - kSlack);
    CHECK(enc.uncompressed_frame_len() > h.frame_len);
    CHECK(d.body_offsets == plain_enc.record_offsets());
    // frame_body gives the raw records, byte for byte those of the plain frame.
    std::string buf, error;
    const uint8_t* body = nullptr;
    REQUIRE_MESSAGE(frame_body_text(z.data(), h, &buf, &body, &error), error);
    CHECK(body == reinterpret_cast<const uint8_t*>(buf.data()));
    CHECK(std::string(reinterpret_cast<const char*>(body), h.raw_len) ==
          std::string(reinterpret_cast<const char*>(plain.data() + fh::kSize), h.raw_len));
  }

  TEST_CASE("an uncompressed frame's body is read in place") {
    // [F-18]
    std::vector<uint8_t> f = encode(make_inputs(2, 1, 20));
    FrameHeader h;
    std::string error, buf;
    REQUIRE(check(f, &h, &error, f.size()) == FrameState::kValid);
    const uint8_t* body = nullptr;
    REQUIRE(frame_body_text(f.data(), h, &buf, &body, &error));
    CHECK(body == f.data() + fh::kSize);
    CHECK(buf.empty());
  }

  TEST_CASE("a body is not compressed when compression is off, too small, or saves under 1/8") {
    // [F-17]
    std::vector<Input> text = make_inputs(20, 1, 300);
    FrameEncoder enc;
    encode(text, 0, &enc);
    CHECK_FALSE(enc.compressed());
    const uint32_t raw = static_cast<uint32_t>(enc.raw_body_len());
    encode(text, raw + 1, &enc);
    CHECK_FALSE(enc.compressed());
    encode(text, raw, &enc);
    CHECK(enc.compressed());
    std::vector<Input> noise = make_inputs(20, 1, 4000, Payload::kRandom);
    std::vector<uint8_t> f = encode(noise, 1, &enc);
    CHECK_FALSE(enc.compressed());
    FrameHeader h;
    expect_events(check_and_decode(f, &h), noise);
    CHECK(h.flags == 0);
  }

  TEST_CASE("an encoder reused after reset() writes the same bytes as a fresh one") {
    std::vector<Input> a = make_inputs(30, 1, 400);
    std::vector<Input> b = make_inputs(2, 31, 4000, Payload::kRandom);
    FrameEncoder reused;
    encode(a, 1, &reused);
    REQUIRE(reused.compressed());
    std::vector<uint8_t> again = encode(b, 1, &reused);
    CHECK_FALSE(reused.compressed());
    CHECK(again == encode(b, 1));
    CHECK(reused.record_offsets().size() == 2);
  }

  TEST_CASE("for_each_record stops when the callback returns false") {
    std::vector<uint8_t> f = encode(make_inputs(5, 1, 10));
    FrameHeader h;
    std::string error, buf;
    REQUIRE(check(f, &h, &error, f.size()) == FrameState::kValid);
    int calls = 0;
    CHECK(for_each_record_text(f.data(), h, kSeed, &buf, &error,
                               [&](const RecordedEvent&, uint32_t i, uint32_t) {
                                 ++calls;
                                 return i < 1;
                               }));
    CHECK(calls == 2);
  }

  TEST_CASE("a frame read at another offset, in another epoch or store never validates") {
    // [F-13]; the store seed mixes the store id ("Checksums").
    std::vector<uint8_t> f = encode(make_inputs(2, 1, 10));
    FrameHeader h;
    std::string error;
    for (uint64_t off : {kOffset - 8, kOffset + 8, kOffset + f.size()}) {
      error.clear();
      CHECK(check_frame_text(f.data(), f.size(), off, kEpoch, kSeed, &h, &error) ==
            FrameState::kBad);
      CHECK(error.find("misplaced or stale") != std::string::npos);
    }
    CHECK(check_frame_text(f.data(), f.size(), kOffset, kEpoch + 1, kSeed, &h, &error) ==
          FrameState::kBad);
    CHECK(error.find("stale frame") != std::string::npos);
    CHECK(check_frame_text(f.data(), f.size(), kOffset, kEpoch, kSeed + 1, &h, &error) ==
          FrameState::kBad);
    CHECK(error == "frame checksum mismatch");
  }

  TEST_CASE("corruption table: each bad header or record field is rejected by its own rule") {
    for (const Case& c : kCases) {
      const std::string label = std::string(c.rule) + " " + c.behaviour;
      INFO(label);
      std::vector<uint8_t> f = table_frame(c.body);
      uint8_t* p = f.data();
      const uint64_t avail = f.size();
      REQUIRE(((p[fh::kFlags] & format::kFrameFlagZstd) != 0) == (c.body == Body::kZstd));
      c.mutate(p, avail);
      if (c.resign == Resign::kAll) {
        fuzz::resign_frame(p, avail, kSeed);
      } else if (c.resign == Resign::kFrameOnly) {
        put_u64(p + fh::kChecksum,
                checksum64(p + fh::kFrameLen, get_u32(p + fh::kFrameLen) - fh::kFrameLen, kSeed));
      }
      FrameHeader h;
      std::string error;
      FrameState st = check(f, &h, &error, avail);
      CAPTURE(error);
      if (c.outcome == Outcome::kFrameBad) {
        CHECK(st == FrameState::kBad);
        if (c.reason) CHECK(error.find(c.reason) != std::string::npos);
        continue;
      }
      REQUIRE(st == FrameState::kValid);
      Decoded d = decode_all(p, h);
      CAPTURE(d.error);
      if (c.outcome == Outcome::kValid) {
        CHECK(d.ok);
        CHECK(d.events.size() == h.count);
      } else {
        CHECK_FALSE(d.ok);
        if (c.reason) CHECK(d.error.find(c.reason) != std::string::npos);
      }
    }
  }

  TEST_CASE("raw_len beyond the segment size given to check_frame is refused before decoding") {
    // [F-11]: 64 + raw_len <= segment_size - 64, so a reader never allocates
    // more than a segment to decompress a frame.
    std::vector<uint8_t> f = table_frame(Body::kZstd);
    FrameHeader h;
    std::string error;
    REQUIRE(check(f, &h, &error, f.size()) == FrameState::kValid);
    const uint64_t tight = 2 * fh::kSize + h.raw_len;
    CHECK(check_frame_text(f.data(), f.size(), kOffset, kEpoch, kSeed, &h, &error, tight) ==
          FrameState::kValid);
    CHECK(check_frame_text(f.data(), f.size(), kOffset, kEpoch, kSeed, &h, &error, tight - 1) ==
          FrameState::kBad);
    CHECK(error.find("inconsistent") != std::string::npos);
  }

  TEST_CASE("every truncation of a frame is bad; the whole frame is valid") {
    // [F-11]: avail < 64 with non-zero bytes, or frame_len > avail. Covers
    // every header field boundary and every record boundary of the body.
    for (Body body : {Body::kPlain, Body::kZstd}) {
      std::vector<uint8_t> f = table_frame(body);
      const uint32_t frame_len = get_u32(f.data() + fh::kFrameLen);
      FrameHeader h;
      std::string error;
      for (uint64_t avail = 1; avail < frame_len; ++avail) {
        CAPTURE(avail);
        error.clear();
        CHECK(check(f, &h, &error, avail) == FrameState::kBad);
        CHECK_FALSE(error.empty());
      }
      CHECK(check(f, &h, &error, frame_len) == FrameState::kValid);
    }
  }

  TEST_CASE("an all-zero header is never written, whatever follows it") {
    // [F-11]
    std::vector<uint8_t> zero(fh::kSize + 16, 0);
    zero[fh::kSize + 3] = 0x5A;
    FrameHeader h;
    std::string error;
    for (uint64_t avail = 0; avail <= zero.size(); ++avail) {
      CAPTURE(avail);
      CHECK(check(zero, &h, &error, avail) == FrameState::kNeverWritten);
    }
    // Fewer than 64 bytes left: never written only if they are all zero.
    for (uint64_t avail = 1; avail < fh::kSize; ++avail) {
      CAPTURE(avail);
      std::vector<uint8_t> tail(avail, 0);
      tail[avail - 1] = 1;
      error.clear();
      CHECK(check(tail, &h, &error, avail) == FrameState::kBad);
      CHECK(error.find("do not form a frame header") != std::string::npos);
    }
    // One non-zero byte anywhere in a full-size header makes it a (bad) frame.
    for (size_t i = 0; i < fh::kSize; ++i) {
      CAPTURE(i);
      std::vector<uint8_t> one(fh::kSize, 0);
      one[i] = 1;
      CHECK(check(one, &h, &error, one.size()) == FrameState::kBad);
    }
  }

  TEST_CASE("decode_record: every truncation of a record is refused; the whole record decodes") {
    // [F-15]: the len varint lies within avail and len <= avail - its size.
    std::vector<Input> in = make_inputs(1, 1, 21);
    std::vector<uint8_t> f = encode(in);
    const uint8_t* r = f.data() + fh::kSize;
    const RecordLayout l = record_layout(r, f.size() - fh::kSize);
    RecordedEvent ev;
    uint32_t got = 0;
    std::string error;
    for (size_t avail = 0; avail < l.end; ++avail) {
      CAPTURE(avail);
      // Exactly-sized heap copy: ASan reports any read past avail.
      std::vector<uint8_t> cut(r, r + avail);
      error.clear();
      CHECK_FALSE(decode_record_text(cut.data(), avail, kSeed, &ev, &got, &error));
      CHECK(error.find(avail < l.len_size ? "record length varint runs past the end"
                                          : "is impossible") != std::string::npos);
    }
    std::vector<uint8_t> whole(r, r + l.end);
    REQUIRE(decode_record_text(whole.data(), l.end, kSeed, &ev, &got, &error));
    CHECK(got == l.end);
    CHECK(OwnedEvent::from(ev) == in[0].expected());
    // Views point into the record, not into a copy.
    CHECK(reinterpret_cast<const uint8_t*>(ev.stream_type.data()) ==
          whole.data() + l.stream_type + 1);
    CHECK(reinterpret_cast<const uint8_t*>(ev.payload.data()) == whole.data() + l.payload);
  }

  TEST_CASE("decode_record: kFrameVerified skips only the record checksum") {
    // [F-15] For records of a frame whose checksum was just verified.
    std::vector<uint8_t> f = encode(make_inputs(1, 1, 21));
    uint8_t* r = f.data() + fh::kSize;
    const RecordLayout l = record_layout(r, f.size() - fh::kSize);
    const uint32_t len = static_cast<uint32_t>(l.end);
    RecordedEvent ev;
    uint32_t got = 0;
    std::string error;
    r[len - 1] ^= 0x01;  // last payload byte
    CHECK_FALSE(decode_record_text(r, len, kSeed, &ev, &got, &error));
    CHECK(error == "record checksum mismatch");
    CHECK(decode_record_text(r, len, kSeed, &ev, &got, &error, RecordCheck::kFrameVerified));
    // Another store's seed fails the same record.
    r[len - 1] ^= 0x01;
    CHECK(decode_record_text(r, len, kSeed, &ev, &got, &error));
    CHECK_FALSE(decode_record_text(r, len, kSeed ^ 1, &ev, &got, &error));
    // Flags and lengths are still checked.
    r[l.flags] |= 0x80;
    CHECK_FALSE(decode_record_text(r, len, kSeed, &ev, &got, &error, RecordCheck::kFrameVerified));
    CHECK(error == "record has unknown flags 0x8f");
    r[l.flags] &= 0x7f;
    r[l.event_type] = 255;
    CHECK_FALSE(decode_record_text(r, len, kSeed, &ev, &got, &error, RecordCheck::kFrameVerified));
    CHECK(error == "record event type of 255 bytes runs past its end");
  }

  TEST_CASE("varints: canonical encodings round-trip; overlong, unterminated and long ones fail") {
    // format-spec.md "Varints".
    const uint64_t values[] = {0,
                               1,
                               127,
                               128,
                               16383,
                               16384,
                               (1u << 21) - 1,
                               1u << 21,
                               0xffffffffu,
                               1ull << 35,
                               1ull << 56,
                               (1ull << 63) - 1,
                               1ull << 63,
                               UINT64_MAX};
    for (uint64_t v : values) {
      CAPTURE(v);
      uint8_t b[kMaxVarintLen];
      const size_t n = static_cast<size_t>(put_varint(b, v) - b);
      CHECK(n == varint_size(v));
      CHECK(n == (v == 0 ? 1 : (64 - __builtin_clzll(v) + 6) / 7));
      std::vector<uint8_t> exact(b, b + n);  // ASan sees a read past the end
      const uint8_t* q = exact.data();
      uint64_t got = 0;
      CHECK(get_varint(&q, exact.data() + n, &got) == nullptr);
      CHECK(got == v);
      CHECK(q == exact.data() + n);
      for (size_t cut = 0; cut < n; ++cut) {
        const uint8_t* c = exact.data();
        CHECK(std::string(get_varint(&c, exact.data() + cut, &got)) == "runs past the end");
        CHECK(c == exact.data());
      }
      // The same value with a redundant zero group: overlong, refused.
      if (n < kMaxVarintLen) {
        std::vector<uint8_t> overlong(b, b + n);
        overlong.back() |= 0x80;
        overlong.push_back(0);
        const uint8_t* o = overlong.data();
        CHECK(std::string(get_varint(&o, overlong.data() + overlong.size(), &got)) ==
              "is not minimally encoded");
      }
    }
    const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    for (std::span<const uint8_t> bad :
         {std::span<const uint8_t>(eleven), std::span<const uint8_t>(big)}) {
      const uint8_t* q = bad.data();
      uint64_t got;
      CHECK(std::string(get_varint(&q, bad.data() + bad.size(), &got)) ==
            "is longer than 10 bytes or exceeds 64 bits");
    }
  }

  TEST_CASE("record corruption table: each malformed record field is rejected by [F-15]") {
    // Records written field by field (RawRecord), checksums correct, so only
    // the named rule can reject them.
    struct RecordCase {
      const char* behaviour;
      std::string bytes;   // the record
      size_t avail;        // bytes given to decode_record
      const char* reason;  // the error; nullptr: valid
    };
    // flags, position 5, version 2, timestamp, event id; then what the case adds.
    auto head = [](uint8_t flags) {
      RawRecord r;
      r.u8(flags).varint(5).varint(2).i64(1700000000000000).id(0xe1);
      return r;
    };
    // Stream type "Order", stream id "42", event type "Placed".
    auto names = [](RawRecord r) {
      r.u8(5).raw("Order").varint(2).raw("42").u8(6).raw("Placed");
      return r;
    };
    std::vector<RecordCase> cases;
    auto add = [&](const char* behaviour, std::string b, const char* reason) {
      const size_t n = b.size();
      cases.push_back({behaviour, std::move(b), n, reason});
    };
    const RawRecord plain = names(head(0)).raw("{}");
    add("a record without optional fields", plain.bytes(kSeed), nullptr);
    add("the smallest record: empty names and payload", head(0).u8(0).varint(0).u8(0).bytes(kSeed),
        nullptr);
    {
      std::string b = plain.bytes(kSeed);
      cases.push_back({"len one more than avail", b, b.size() - 1, "is impossible"});
      b = plain.bytes(kSeed, plain.fields.size() + 4 + 1);
      cases.push_back({"len one more than the bytes after it", b, b.size(), "is impossible"});
      b = head(0).u8(0).varint(0).bytes(kSeed);
      cases.push_back(
          {"len 33, below the smallest record", b, b.size(), "record length 33 is impossible"});
    }
    {
      // len as an overlong 2-byte varint (0x80 | n, 0x00).
      std::string b = plain.bytes(kSeed);
      REQUIRE(static_cast<uint8_t>(b[0]) < 0x80);
      b[0] = static_cast<char>(b[0] | 0x80);
      b.insert(b.begin() + 1, '\0');
      add("len as an overlong varint", b, "record length varint is not minimally encoded");
      cases.push_back({"len varint cut by avail", "\x85", 1, "record length varint runs past"});
    }
    {
      RawRecord r;
      r.u8(0).raw(std::string("\x85\x00", 2)).varint(2).i64(0).id(0xe1);
      add("position as an overlong varint", names(r).bytes(kSeed),
          "record position varint is not minimally encoded");
    }
    {
      RawRecord r;
      r.u8(0).varint(5).raw(std::string(10, '\xff')).raw(std::string("\x01", 1)).i64(0).id(1);
      add("version as an 11-byte varint", names(r).bytes(kSeed),
          "record version varint is longer than 10 bytes");
    }
    {
      RawRecord r;
      r.u8(0).varint(UINT64_MAX).varint(UINT64_MAX).i64(-1).id(1);
      add("position and version 2^64 - 1 as 10-byte varints", names(r).bytes(kSeed), nullptr);
    }
    for (uint8_t bit = 0x10; bit != 0; bit = static_cast<uint8_t>(bit << 1))
      add("an unknown flag bit", names(head(bit)).bytes(kSeed), "record has unknown flags");
    add("correlation flag with a nil id",
        names(head(rec::kHasCorrelationId).raw(std::string(16, '\0'))).bytes(kSeed),
        "record has the correlation flag but a nil id");
    add("causation flag with a nil id",
        names(head(rec::kHasCausationId).raw(std::string(16, '\0'))).bytes(kSeed),
        "record has the causation flag but a nil id");
    add("both id flags, only one id before the end",
        head(rec::kHasCorrelationId | rec::kHasCausationId).id(0xc0).bytes(kSeed),
        "record timestamp and ids run past its end");
    add("tenant flag with an empty tenant", names(head(rec::kHasTenant)).u8(0).bytes(kSeed),
        "record has the tenant flag but an empty tenant");
    add("tenant flag and a 1-byte tenant", names(head(rec::kHasTenant)).u8(1).raw("t").bytes(kSeed),
        nullptr);
    add("metadata flag with empty metadata", names(head(rec::kHasMetadata)).varint(0).bytes(kSeed),
        "record has the metadata flag but empty metadata");
    add("metadata flag without metadata: its length runs past the end",
        names(head(rec::kHasMetadata)).bytes(kSeed), "record metadata length varint runs past");
    add("stream type length past the record's end", head(0).u8(200).raw("Order..").bytes(kSeed),
        "record stream type of 200 bytes runs past its end");
    add("stream id length past the record's end",
        head(0).u8(1).raw("O").varint(300).raw("42").u8(0).bytes(kSeed),
        "record stream id of 300 bytes runs past its end");
    add("stream id length 65536",
        head(0)
            .u8(1)
            .raw("O")
            .varint(65536)
            .raw(std::string(65536, 'i'))
            .u8(1)
            .raw("T")
            .bytes(kSeed),
        "record stream id length 65536 exceeds 65535");
    add("stream id length as an overlong varint",
        head(0).u8(1).raw("O").raw(std::string("\x82\x00", 2)).raw("42").u8(0).bytes(kSeed),
        "record stream id length varint is not minimally encoded");
    add("stream id length varint cut by the record's end",
        head(0).u8(2).raw("Or").raw("\x80").bytes(kSeed),
        "record stream id length varint runs past the end");
    add("event type length past the record's end",
        head(0).u8(1).raw("O").varint(1).raw("1").u8(7).raw("Placed").bytes(kSeed),
        "record event type of 7 bytes runs past its end");
    add("event type length missing", head(0).u8(1).raw("O").varint(2).raw("42").bytes(kSeed),
        "record event type length runs past its end");
    add("tenant length past the record's end",
        names(head(rec::kHasTenant)).u8(5).raw("acme").bytes(kSeed),
        "record tenant of 5 bytes runs past its end");
    add("metadata length past the record's end",
        names(head(rec::kHasMetadata)).varint(3).raw("{}").bytes(kSeed),
        "record metadata of 3 bytes runs past its end");
    add("metadata length 65536",
        names(head(rec::kHasMetadata)).varint(65536).raw(std::string(65536, 'm')).bytes(kSeed),
        "record metadata length 65536 exceeds 65535");

    for (const RecordCase& c : cases) {
      INFO(c.behaviour);
      std::vector<uint8_t> bytes(c.bytes.begin(), c.bytes.begin() + c.avail);
      RecordedEvent ev;
      uint32_t got = 0;
      std::string error;
      const bool ok = decode_record_text(bytes.data(), c.avail, kSeed, &ev, &got, &error);
      CAPTURE(error);
      if (c.reason == nullptr) {
        CHECK(ok);
        CHECK(got == c.avail);
      } else {
        CHECK_FALSE(ok);
        CHECK(error.find(c.reason) != std::string::npos);
      }
    }
  }

  TEST_CASE("records at the edge sizes round-trip and each has one encoding") {
    // [F-14] limits, [F-15] flags: an optional field is present iff its flag is set.
    struct Edge {
      const char* name;
      void (*set)(Input*);
      uint8_t flags;
    };
    const Edge edges[] = {
        {"no optional field, empty payload", [](Input*) {}, 0},
        {"255-byte stream type", [](Input* i) { i->stream.type.assign(255, 'T'); }, 0},
        {"65535-byte stream id", [](Input* i) { i->stream.id.assign(65535, '7'); }, 0},
        {"255-byte event type", [](Input* i) { i->event.type.assign(255, 'E'); }, 0},
        {"1-byte tenant", [](Input* i) { i->event.tenant = "t"; }, rec::kHasTenant},
        {"255-byte tenant", [](Input* i) { i->event.tenant.assign(255, 'a'); }, rec::kHasTenant},
        {"1-byte metadata", [](Input* i) { i->event.metadata = "m"; }, rec::kHasMetadata},
        {"65535-byte metadata", [](Input* i) { i->event.metadata.assign(65535, 'm'); },
         rec::kHasMetadata},
        {"correlation id only", [](Input* i) { i->event.correlation_id = make_uuid(0xc0, 1); },
         rec::kHasCorrelationId},
        {"causation id only", [](Input* i) { i->event.causation_id = make_uuid(0xca, 1); },
         rec::kHasCausationId},
        {"both ids",
         [](Input* i) {
           i->event.correlation_id = make_uuid(0xc0, 1);
           i->event.causation_id = make_uuid(0xca, 1);
         },
         rec::kHasCorrelationId | rec::kHasCausationId},
        {"position and version 2^63, a 100 KiB payload",
         [](Input* i) {
           i->position = i->version = 1ull << 63;
           i->event.payload.assign(100 << 10, 'p');
         },
         0},
    };
    for (const Edge& e : edges) {
      INFO(e.name);
      Input in;
      in.stream = StreamId{"Order", "1"};
      in.event = make_event("Placed", "");
      in.event.id = make_uuid(0xe0, 1);
      in.position = in.version = 1;
      e.set(&in);
      std::vector<uint8_t> f = encode({in});
      FrameHeader h;
      Decoded d = check_and_decode(f, &h);
      expect_events(d, {in});
      const uint8_t* r = f.data() + fh::kSize;
      const RecordLayout l = record_layout(r, h.raw_len);
      CHECK(l.end == h.raw_len);
      CHECK(l.end == record_size(in.stream, in.event, in.position, in.version));
      CHECK(record_size(in.stream, in.event) >= l.end);
      CHECK(r[l.flags] == e.flags);
      CHECK((l.tenant != kAbsent) == !in.event.tenant.empty());
      CHECK((l.metadata != kAbsent) == !in.event.metadata.empty());
      CHECK(l.payload + in.event.payload.size() == l.end);
      // Each id present costs 16 bytes; absent ids decode as nil.
      CHECK(l.stream_type - l.event_id ==
            16 + 16 * static_cast<size_t>(std::popcount(static_cast<unsigned>(e.flags & 3))));
      // Setting the flag of an absent field (re-signed) is not another encoding of it.
      for (uint8_t bit :
           {rec::kHasCorrelationId, rec::kHasCausationId, rec::kHasTenant, rec::kHasMetadata}) {
        if (e.flags & bit) continue;
        std::vector<uint8_t> g(r, r + l.end);
        g[l.flags] |= bit;
        fuzz::resign_records(g.data(), g.size(), kSeed);
        RecordedEvent ev;
        uint32_t got = 0;
        std::string error;
        const bool ok = decode_record_text(g.data(), g.size(), kSeed, &ev, &got, &error);
        // Either rejected, or read as other fields (the next bytes taken for it).
        if (ok) CHECK(OwnedEvent::from(ev) != in.expected());
      }
    }
  }
}

}  // namespace
}  // namespace eventsource::testing
