// Unit tests of engine/frame.{h,cc}: FrameEncoder round trips (one record,
// many, compressed), and the frame and record validity rules of
// format-spec.md "Frames" and "Records" ([F-11], [F-12], [F-13], [F-15],
// [F-17]) as a corruption table over the header and the records. Each bad
// case is re-signed (tests/fuzz/resign.h) so that only the rule it names can
// reject it, and the test checks that rule's reason was given.
#include "engine/frame.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "eventsource/types.h"
#include "tests/fuzz/resign.h"
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
  return check_frame(bytes.data(), avail, kOffset, kEpoch, kSeed, h, error, kSegmentSize);
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
  d.ok = for_each_record(
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
// Offset of the second record of an uncompressed frame.
size_t second_record(const uint8_t* p) {
  return fh::kSize + u32_at(p + fh::kSize, rec::kRecordLen);
}

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
     [](uint8_t* p, uint64_t) { p[fh::kSize + rec::kSize + 1] ^= 1; }, Resign::kNone,
     Outcome::kFrameBad, "frame checksum mismatch"},
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
       put_u32(p + fh::kCount, static_cast<uint32_t>(u32_at(p, fh::kRawLen) / rec::kSize + 1));
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
     Outcome::kRecordsBad, "record header needs 96 bytes, 0 left"},
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
       uint8_t* r = p + second_record(p);
       put_u64(r + rec::kPosition, get_u64(r + rec::kPosition) + 1);
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
     [](uint8_t* p, uint64_t) { p[second_record(p) + rec::kChecksum] ^= 1; }, Resign::kFrameOnly,
     Outcome::kRecordsBad, "record 1 of frame: record checksum mismatch"},
    {"a record's flags non-zero", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[fh::kSize + rec::kFlags] = 1; }, Resign::kAll,
     Outcome::kRecordsBad, "record 0 of frame: record has non-zero reserved bytes"},
    {"a record's reserved u32 non-zero", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) { p[second_record(p) + rec::kReserved + 2] = 1; }, Resign::kAll,
     Outcome::kRecordsBad, "record 1 of frame: record has non-zero reserved bytes"},
    {"a record's payload length one too long", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       uint8_t* r = p + fh::kSize;
       put_u32(r + rec::kPayloadLen, get_u32(r + rec::kPayloadLen) + 1);
     },
     Resign::kAll, Outcome::kRecordsBad, "field lengths add up to"},
    {"a record's stream id length one too short", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       uint8_t* r = p + second_record(p);
       put_u16(r + rec::kStreamIdLen, static_cast<uint16_t>(get_u16(r + rec::kStreamIdLen) - 1));
     },
     Resign::kAll, Outcome::kRecordsBad, "record 1 of frame: record field lengths add up to"},
    {"a record_len below 96", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) { put_u32(p + fh::kSize + rec::kRecordLen, rec::kSize - 1); },
     Resign::kFrameOnly, Outcome::kRecordsBad, "record length 95 is impossible"},
    {"a record_len past the end of the body", "[F-15]", Body::kPlain,
     [](uint8_t* p, uint64_t) {
       put_u32(p + second_record(p) + rec::kRecordLen, u32_at(p, fh::kBodyLen));
     },
     Resign::kFrameOnly, Outcome::kRecordsBad, "record 1 of frame: record length"},
};

// The table's frame: three records, with the first payload size from `base`
// on whose stored body ends 2..7 bytes into its last 8-byte word (padding to
// damage, and room to cut a byte off the body with frame_len unchanged).
std::vector<uint8_t> table_frame(Body body) {
  const bool zstd = body == Body::kZstd;
  const size_t base = zstd ? 600 : 37;
  for (size_t payload = base; payload < base + 64; ++payload) {
    std::vector<uint8_t> f = encode(make_inputs(3, 7, payload), zstd ? 1 : 0);
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
    CHECK(u32_at(p, fh::kFrameLen) == 336);
    CHECK(u32_at(p, fh::kBodyLen) == 270);
    CHECK(u32_at(p, fh::kRawLen) == 270);
    CHECK(u32_at(p + fh::kSize, rec::kRecordLen) == 139);
    CHECK(u32_at(p + fh::kSize + 139, rec::kRecordLen) == 131);
    CHECK(enc.record_offsets() == std::vector<uint32_t>{0, 139});
    CHECK(record_size(in[0].stream, in[0].event) == 139);
    CHECK(record_size(in[1].stream, in[1].event) == 131);
    CHECK(p[64 + 270] == 0);  // two padding bytes
    CHECK(p[64 + 271] == 0);
    // Strings follow the 96-byte record header in spec order.
    CHECK(std::string(reinterpret_cast<const char*>(p + fh::kSize + rec::kSize), 43) ==
          "Order42OrderPlacedacme"
          R"({"sku":"A-1","qty":2})");
    // [F-1] Both checksums cover exactly the ranges of "Checksums".
    CHECK(u64_at(p, fh::kChecksum) == checksum64(p + 8, 336 - 8, kSeed));
    CHECK(u32_at(p + fh::kSize, rec::kChecksum) ==
          static_cast<uint32_t>(checksum64(p + fh::kSize + 8, 139 - 8, kSeed)));
  }

  TEST_CASE("one record round-trips with every header and record field") {
    std::vector<Input> in = make_inputs(1, 41, 50);
    FrameEncoder enc;
    std::vector<uint8_t> f = encode(in, 0, &enc, /*durable=*/40);
    FrameHeader h;
    Decoded d = check_and_decode(f, &h);
    expect_events(d, in);
    const uint64_t len = record_size(in[0].stream, in[0].event);
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
    for (const Input& i : in) sum += record_size(i.stream, i.event);
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
    REQUIRE_MESSAGE(frame_body(z.data(), h, &buf, &body, &error), error);
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
    REQUIRE(frame_body(f.data(), h, &buf, &body, &error));
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
    CHECK(for_each_record(f.data(), h, kSeed, &buf, &error,
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
      CHECK(check_frame(f.data(), f.size(), off, kEpoch, kSeed, &h, &error) == FrameState::kBad);
      CHECK(error.find("misplaced or stale") != std::string::npos);
    }
    CHECK(check_frame(f.data(), f.size(), kOffset, kEpoch + 1, kSeed, &h, &error) ==
          FrameState::kBad);
    CHECK(error.find("stale frame") != std::string::npos);
    CHECK(check_frame(f.data(), f.size(), kOffset, kEpoch, kSeed + 1, &h, &error) ==
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
    CHECK(check_frame(f.data(), f.size(), kOffset, kEpoch, kSeed, &h, &error, tight) ==
          FrameState::kValid);
    CHECK(check_frame(f.data(), f.size(), kOffset, kEpoch, kSeed, &h, &error, tight - 1) ==
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

  TEST_CASE("decode_record: every truncation and a too-short record_len are refused") {
    // [F-15]: avail >= 96 and 96 <= record_len <= avail.
    std::vector<Input> in = make_inputs(1, 1, 21);
    std::vector<uint8_t> f = encode(in);
    const uint8_t* r = f.data() + fh::kSize;
    const uint32_t len = get_u32(r + rec::kRecordLen);
    RecordedEvent ev;
    uint32_t got = 0;
    std::string error;
    for (size_t avail = 0; avail < len; ++avail) {
      CAPTURE(avail);
      error.clear();
      CHECK_FALSE(decode_record(r, avail, kSeed, &ev, &got, &error));
      CHECK(error.find(avail < rec::kSize ? "record header needs" : "is impossible") !=
            std::string::npos);
    }
    REQUIRE(decode_record(r, len, kSeed, &ev, &got, &error));
    CHECK(got == len);
    CHECK(OwnedEvent::from(ev) == in[0].expected());
    // Views point into the record, not into a copy.
    CHECK(reinterpret_cast<const uint8_t*>(ev.stream_type.data()) == r + rec::kSize);
  }

  TEST_CASE("decode_record: kFrameVerified skips only the record checksum") {
    // [F-15] For records of a frame whose checksum was just verified.
    std::vector<uint8_t> f = encode(make_inputs(1, 1, 21));
    uint8_t* r = f.data() + fh::kSize;
    const uint32_t len = get_u32(r + rec::kRecordLen);
    RecordedEvent ev;
    uint32_t got = 0;
    std::string error;
    r[len - 1] ^= 0x01;  // last payload byte
    CHECK_FALSE(decode_record(r, len, kSeed, &ev, &got, &error));
    CHECK(error == "record checksum mismatch");
    CHECK(decode_record(r, len, kSeed, &ev, &got, &error, RecordCheck::kFrameVerified));
    // Another store's seed fails the same record.
    r[len - 1] ^= 0x01;
    CHECK(decode_record(r, len, kSeed, &ev, &got, &error));
    CHECK_FALSE(decode_record(r, len, kSeed ^ 1, &ev, &got, &error));
    // Lengths and reserved bytes are still checked.
    r[rec::kReserved] = 1;
    CHECK_FALSE(decode_record(r, len, kSeed, &ev, &got, &error, RecordCheck::kFrameVerified));
    CHECK(error == "record has non-zero reserved bytes");
    r[rec::kReserved] = 0;
    put_u32(r + rec::kPayloadLen, get_u32(r + rec::kPayloadLen) - 1);
    CHECK_FALSE(decode_record(r, len, kSeed, &ev, &got, &error, RecordCheck::kFrameVerified));
    CHECK(error.find("add up to") != std::string::npos);
  }
}

}  // namespace
}  // namespace eventsource::testing
