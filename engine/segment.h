// The data file's header and the segment headers: encoding, and validation
// of untrusted bytes. See format-spec.md "File header" and "Segments".
#pragma once

#include <cstdint>
#include <string>

#include "engine/format.h"
#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource {

struct FileHeader {
  uint32_t version = format::kFormatVersion;
  uint64_t segment_size = 0;
  Uuid store_id;
  int64_t created_us = 0;

  // Seed of every checksum but the file header's own: mixes the store id, so
  // a frame copied from another store never validates.
  uint64_t seed() const;
};

void encode_file_header(const FileHeader& h, uint8_t out[format::file_header::kSize]);
// Fails (kCorruption, offset 0) saying why the header is not valid. Does not
// judge the version.
Status parse_file_header(const uint8_t* p, size_t n, FileHeader* out);

struct SegmentHeader {
  format::SegmentKind kind = format::SegmentKind::kFree;
  uint64_t slot = 0;
  uint64_t epoch = 0;
  uint64_t first_position = 0;
  uint64_t slot_count = 1;
  uint64_t payload_len = 0;
  int64_t created_us = 0;
};

void encode_segment_header(const SegmentHeader& h, uint64_t seed,
                           uint8_t out[format::segment_header::kSize]);

enum class SegmentHeaderState : uint8_t { kValid, kZero, kBad };
// Validates a segment header read from slot `slot`; kBad fills *problem.
SegmentHeaderState parse_segment_header(const uint8_t* p, uint64_t slot, uint64_t seed,
                                        SegmentHeader* out, Status* problem);

int64_t now_us();

}  // namespace eventsource
