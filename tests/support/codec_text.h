// The engine's codecs with the reason as text, for tables of bytes and the
// reason each must be rejected with: true/kValid, or false/kBad with
// *error = the Status message. Header-only, so fuzz harnesses use it too.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "engine/checkpoint_file.h"
#include "engine/frame.h"
#include "engine/segment.h"
#include "tests/support/status_text.h"

namespace eventsource::testing {

inline FrameState check_frame_text(const uint8_t* p, uint64_t avail, uint64_t offset,
                                   uint64_t epoch, uint64_t seed, FrameHeader* out,
                                   std::string* error,
                                   uint64_t segment_size = format::kMaxSegmentSize,
                                   format::FrameType type = format::FrameType::kEvents) {
  Status problem;
  const FrameState st =
      check_frame(p, avail, offset, epoch, seed, out, &problem, segment_size, type);
  *error = why_of(problem);
  return st;
}

inline bool decode_record_text(const uint8_t* p, size_t avail, uint64_t seed, RecordedEvent* out,
                               uint32_t* record_len, std::string* error,
                               RecordCheck check = RecordCheck::kVerifyChecksum) {
  const Status s = decode_record(p, avail, seed, out, record_len, check);
  *error = why_of(s);
  return s.ok();
}

template <class Fn>
bool for_each_record_text(const uint8_t* frame, const FrameHeader& h, uint64_t seed,
                          std::string* buf, std::string* error, Fn&& fn,
                          RecordCheck check = RecordCheck::kVerifyChecksum) {
  const Status s = for_each_record(frame, h, seed, buf, std::forward<Fn>(fn), check);
  *error = why_of(s);
  return s.ok();
}

inline bool frame_body_text(const uint8_t* frame, const FrameHeader& h, std::string* buf,
                            const uint8_t** body, std::string* error) {
  const Status s = frame_body(frame, h, buf, body);
  *error = why_of(s);
  return s.ok();
}

inline SegmentHeaderState parse_segment_header_text(const uint8_t* p, uint64_t slot, uint64_t seed,
                                                    SegmentHeader* out, std::string* error) {
  Status problem;
  const SegmentHeaderState st = parse_segment_header(p, slot, seed, out, &problem);
  *error = why_of(problem);
  return st;
}

inline std::string parse_file_header_text(const uint8_t* p, size_t n, FileHeader* out) {
  return why_of(parse_file_header(p, n, out));
}

inline std::string parse_checkpoint_text(const uint8_t* p, size_t n, uint64_t seed,
                                         Checkpoint* out) {
  return why_of(parse_checkpoint(p, n, seed, out));
}

inline Result<std::optional<Checkpoint>> read_checkpoint_file_text(Os& os,
                                                                   const std::string& data_path,
                                                                   const Uuid& store_id,
                                                                   uint64_t seed,
                                                                   std::string* problem) {
  Status bad;
  Result<std::optional<Checkpoint>> r = read_checkpoint_file(os, data_path, store_id, seed, &bad);
  *problem = why_of(bad);
  return r;
}

}  // namespace eventsource::testing
