// Fuzz target: check_frame + for_each_record on untrusted bytes.
//
// Each input is tried twice:
//  1. the whole input is a frame at file offset kOffset of a segment of epoch
//     kEpoch in a store of seed kSeed (fuzz_util.h), with `size` bytes left in
//     the segment;
//  2. if it is at least 25 bytes long, as
//       [u64 seed][u64 file offset][u64 epoch][u8 fixups][frame bytes ...]
//     so frames cut from real stores (make_corpus.cc) carry the parameters
//     their checksums need. Fixup bits, applied to a copy before checking:
//       1: recompute the record checksums of an uncompressed body,
//       2: write the given offset and epoch into the frame header,
//       4: recompute the frame checksum,
//     which lets mutations reach the checks behind the checksums.
// A valid frame whose records decode is re-encoded with FrameEncoder: the
// records (and, uncompressed, the header fields) must come out byte-identical.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/frame.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/resign.h"
#include "tests/support/codec_text.h"

namespace {

using namespace eventsource;
namespace fh = format::frame_header;
namespace rec = format::record;

struct OwnedRecord {
  StreamId stream;
  EventData event;
  Uuid id;
  int64_t timestamp_us;
  uint64_t position;
  uint64_t version;
};

void check_one(const uint8_t* p, uint64_t avail, uint64_t offset, uint64_t epoch, uint64_t seed) {
  FrameHeader h;
  std::string error;
  // Frames in the corpus come from 1 MiB segments; the cap bounds decompression.
  FrameState st =
      testing::check_frame_text(p, avail, offset, epoch, seed, &h, &error, format::kMinSegmentSize);
  if (st != FrameState::kValid) {
    FUZZ_CHECK(st == FrameState::kNeverWritten || !error.empty(), "bad frame without a reason");
    return;
  }
  FUZZ_CHECK(h.frame_len <= avail && h.frame_len >= fh::kSize && h.frame_len % 8 == 0,
             "valid frame with an impossible length");
  FUZZ_CHECK(h.file_offset == offset && h.epoch == epoch, "valid frame in the wrong place");

  // Stop after the first record (the early-exit path).
  std::string buf;
  std::string err1;
  uint32_t seen_early = 0;
  testing::for_each_record_text(p, h, seed, &buf, &err1,
                                [&](const RecordedEvent& ev, uint32_t, uint32_t) {
                                  eventsource::fuzz::sink(eventsource::fuzz::touch_event(ev));
                                  ++seen_early;
                                  return false;
                                });
  FUZZ_CHECK(seen_early <= 1, "for_each_record went on after the callback said stop");

  // All records, keeping copies to re-encode.
  std::vector<OwnedRecord> records;
  std::vector<uint32_t> offsets;
  std::string err;
  bool ok = testing::for_each_record_text(
      p, h, seed, &buf, &err, [&](const RecordedEvent& ev, uint32_t i, uint32_t body_off) {
        eventsource::fuzz::sink(eventsource::fuzz::touch_event(ev));
        FUZZ_CHECK(i == records.size(), "record indexes are not consecutive");
        FUZZ_CHECK(ev.position.value == h.first_position + i, "record position not checked");
        OwnedRecord r;
        r.stream.type.assign(ev.stream_type);
        r.stream.id.assign(ev.stream_id);
        r.event.type.assign(ev.type);
        r.event.payload.assign(ev.payload);
        r.event.tenant.assign(ev.tenant);
        r.event.metadata.assign(ev.metadata);
        r.event.correlation_id = ev.correlation_id;
        r.event.causation_id = ev.causation_id;
        r.event.id = ev.id;
        r.event.timestamp_us = ev.timestamp_us;
        r.id = ev.id;
        r.timestamp_us = ev.timestamp_us;
        r.position = ev.position.value;
        r.version = ev.version.value;
        records.push_back(std::move(r));
        offsets.push_back(body_off);
        return true;
      });
  if (!ok) {
    FUZZ_CHECK(!err.empty(), "records rejected without a reason");
    return;
  }
  FUZZ_CHECK(records.size() == h.count, "a good frame delivered the wrong number of records");

  // Round trip: re-encoding the decoded records gives the same body bytes.
  const uint8_t* raw =
      h.compressed() ? reinterpret_cast<const uint8_t*>(buf.data()) : p + fh::kSize;
  FrameEncoder enc;
  enc.reset();
  for (const OwnedRecord& r : records)
    enc.add({&r.stream, &r.event, r.id, r.timestamp_us, r.position, r.version}, seed);
  FUZZ_CHECK(enc.raw_body_len() == h.raw_len, "re-encoded body has another length");
  FUZZ_CHECK(enc.record_offsets() == offsets, "re-encoded records sit at other offsets");
  std::span<const uint8_t> again = enc.finish(offset, epoch, h.first_position, h.durable_position,
                                              /*compress_min=*/0, 1, seed);
  FUZZ_CHECK(again.size() >= fh::kSize + h.raw_len, "re-encoded frame too short");
  FUZZ_CHECK(std::memcmp(again.data() + fh::kSize, raw, h.raw_len) == 0,
             "re-encoded records differ from the decoded ones");
  if (!h.compressed()) {
    // Header from frame_len on, and the body; only padding may differ.
    FUZZ_CHECK(again.size() == h.frame_len, "re-encoded frame has another length");
    FUZZ_CHECK(std::memcmp(again.data() + fh::kFrameLen, p + fh::kFrameLen,
                           fh::kSize + h.body_len - fh::kFrameLen) == 0,
               "re-encoded frame header differs");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_one(data, size, eventsource::fuzz::kOffset, eventsource::fuzz::kEpoch,
            eventsource::fuzz::kSeed);

  constexpr size_t kPrefix = 25;
  if (size < kPrefix) return 0;
  const uint64_t seed = get_u64(data);
  const uint64_t offset = get_u64(data + 8);
  const uint64_t epoch = get_u64(data + 16);
  const uint8_t fixups = data[24];
  const uint64_t avail = size - kPrefix;
  if ((fixups & 7) == 0) {
    check_one(data + kPrefix, avail, offset, epoch, seed);
    return 0;
  }
  // Exactly-sized heap copy, so ASan still sees reads past the end.
  std::vector<uint8_t> copy(data + kPrefix, data + size);
  uint8_t* p = copy.data();
  if (avail >= fh::kSize) {
    uint32_t frame_len = get_u32(p + fh::kFrameLen);
    uint32_t body_len = get_u32(p + fh::kBodyLen);
    if ((fixups & 1) && (p[fh::kFlags] & format::kFrameFlagZstd) == 0 &&
        body_len <= avail - fh::kSize)
      eventsource::fuzz::resign_records(p + fh::kSize, body_len, seed);
    if (fixups & 2) {
      put_u64(p + fh::kFileOffset, offset);
      put_u64(p + fh::kSegmentEpoch, epoch);
    }
    if ((fixups & 4) && frame_len >= fh::kFrameLen && frame_len <= avail)
      put_u64(p + fh::kChecksum, checksum64(p + fh::kFrameLen, frame_len - fh::kFrameLen, seed));
  }
  check_one(p, avail, offset, epoch, seed);
  return 0;
}
