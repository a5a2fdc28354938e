// Fuzz target: parse_file_header and parse_segment_header.
//
// Input: [file header, 64 bytes][segment header, 64 bytes]* like the first
// bytes of a data file followed by the first 64 bytes of each slot (what
// make_corpus.cc cuts from real stores), optionally with one extra byte at
// the end (input length = 1 mod 64) holding fixup bits applied to a copy:
//   1: recompute the file header checksum,
//   2: recompute every segment header checksum,
// so mutations reach the checks behind the checksums.
// parse_file_header runs on the whole input. Segment header k (k >= 1 counts
// 64-byte chunks) is parsed as slot k-1, with the file header's seed when it
// is valid, else kSeed; and again as the slot its own bytes name. A valid
// header re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/segment.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/support/codec_text.h"

namespace {

using namespace eventsource;
namespace fhdr = format::file_header;
namespace sh = format::segment_header;

void check_segment(const uint8_t* p, uint64_t slot, uint64_t seed) {
  SegmentHeader h;
  std::string error;
  SegmentHeaderState st = testing::parse_segment_header_text(p, slot, seed, &h, &error);
  if (st == SegmentHeaderState::kZero) return;
  if (st == SegmentHeaderState::kBad) {
    FUZZ_CHECK(!error.empty(), "bad segment header without a reason");
    return;
  }
  FUZZ_CHECK(h.slot == slot && h.epoch != 0 && h.slot_count != 0, "valid header breaks [F-5]");
  FUZZ_CHECK(h.kind == format::SegmentKind::kEvents || h.kind == format::SegmentKind::kIndex ||
                 h.kind == format::SegmentKind::kAux,
             "valid header of unknown kind");
  FUZZ_CHECK(h.kind == format::SegmentKind::kIndex || (h.slot_count == 1 && h.first_position != 0),
             "valid event or aux header breaks [F-5]");
  uint8_t again[sh::kSize];
  encode_segment_header(h, seed, again);
  FUZZ_CHECK(std::memcmp(again, p, sh::kSize) == 0, "segment header does not round-trip");
}

void run(const uint8_t* data, size_t size) {
  FileHeader fh;
  std::string why = testing::parse_file_header_text(data, size, &fh);
  uint64_t seed = eventsource::fuzz::kSeed;
  if (why.empty()) {
    FUZZ_CHECK(size >= fhdr::kSize, "valid file header in a short input");
    uint64_t s = fh.segment_size;
    FUZZ_CHECK(s >= format::kMinSegmentSize && s <= format::kMaxSegmentSize && (s & (s - 1)) == 0,
               "valid file header with a bad segment size");
    uint8_t again[fhdr::kSize];
    encode_file_header(fh, again);
    FUZZ_CHECK(std::memcmp(again, data, fhdr::kSize) == 0, "file header does not round-trip");
    seed = fh.seed();
  }
  for (size_t k = 1; (k + 1) * 64 <= size; ++k) {
    const uint8_t* p = data + k * 64;
    check_segment(p, k - 1, seed);
    check_segment(p, get_u64(p + sh::kSlot), seed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size % 64 != 1) {
    run(data, size);
    return 0;
  }
  const uint8_t fixups = data[size - 1];
  std::vector<uint8_t> copy(data, data + size - 1);
  if ((fixups & 1) && copy.size() >= fhdr::kSize)
    put_u64(copy.data() + fhdr::kChecksum, checksum64(copy.data(), fhdr::kChecksum, 0));
  if (fixups & 2) {
    FileHeader fh;
    uint64_t seed = testing::parse_file_header_text(copy.data(), copy.size(), &fh).empty()
                        ? fh.seed()
                        : eventsource::fuzz::kSeed;
    for (size_t k = 1; (k + 1) * 64 <= copy.size(); ++k)
      put_u64(copy.data() + k * 64 + sh::kChecksum,
              checksum64(copy.data() + k * 64, sh::kChecksum, seed));
  }
  run(copy.data(), copy.size());
  return 0;
}
